// src/native/dirwatch.c: every kind of change to a pidfile in the watched directory must be
// reported (the node source skips the pidfiles' stats while nothing is), and a watch whose
// directory went away must say so (the source then makes a new one).
import { mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dirEventsOf, type Native } from "../../../src/native/addon.js";
import { loadTestNative } from "../../helpers/native.js";

describe("dirWatch", () => {
  let native: Native;
  let dispose: () => void;
  let top: string;
  beforeAll(() => {
    ({ native, dispose } = loadTestNative());
    top = mkdtempSync(path.join(os.tmpdir(), "pve-nat-dirwatch-"));
  });
  afterAll(() => {
    dispose();
    rmSync(top, { recursive: true, force: true });
  });

  it("reports each change to a file in the directory once, and nothing while none happens", () => {
    const dir = path.join(top, "qemu-server");
    mkdirSync(dir);
    const file = path.join(dir, "101.pid");
    writeFileSync(file, "1234\n");
    const w = native.dirWatch(dir);
    expect(native.dirChanged(w)).toBe(0);
    const changes: [string, () => void][] = [
      ["created", () => writeFileSync(path.join(dir, "102.pid"), "99\n")],
      ["rewritten in place", () => writeFileSync(file, "1235\n")],
      ["its times set", () => utimesSync(file, 1, 1)],
      [
        "replaced by a rename",
        () => {
          writeFileSync(path.join(dir, "tmp"), "77\n");
          renameSync(path.join(dir, "tmp"), file);
        },
      ],
      ["removed", () => rmSync(file)],
    ];
    for (const [what, change] of changes) {
      change();
      expect(native.dirChanged(w), what).toBe(1);
      expect(native.dirChanged(w), `${what}, asked again`).toBe(0);
    }
  });

  it("says gone when the directory is removed or moved, and refuses a missing one", () => {
    for (const end of ["removed", "moved"] as const) {
      const dir = path.join(top, `d-${end}`);
      mkdirSync(dir);
      const w = native.dirWatch(dir);
      if (end === "removed") rmSync(dir, { recursive: true });
      else renameSync(dir, `${dir}.away`);
      expect(native.dirChanged(w), end).toBe(2);
      expect(native.dirChanged(w), `${end}, asked again`).toBe(2);
    }
    expect(() => native.dirWatch(path.join(top, "missing"))).toThrow();
    expect(dirEventsOf(native)(path.join(top, "missing"))).toBeNull();
    expect(() => native.dirChanged({} as never)).toThrow(TypeError);
  });
});
