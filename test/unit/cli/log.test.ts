import { Writable } from "node:stream";
import { expect, it } from "vitest";
import { createLogger } from "../../../src/log.js";

it("logs JSON lines at or above the configured level, with bindings", () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const log = createLogger("warn", { vmid: 107 }, sink);
  log.info("hidden");
  log.warn({ rules: 3, ms: 4.2 }, "applied");
  expect(lines).toHaveLength(1);
  const entry = JSON.parse(lines[0] ?? "");
  expect(entry).toMatchObject({
    level: 40,
    name: "pve-nat",
    vmid: 107,
    rules: 3,
    ms: 4.2,
    msg: "applied",
  });
  expect(entry.time).toMatch(/^\d{4}-\d\d-\d\dT/);
});
