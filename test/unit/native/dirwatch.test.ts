// src/native/dirwatch.c: every kind of change to a pidfile in the watched directory must be
// reported (the node source skips the pidfiles' stats while nothing is), and a watch whose
// directory went away must say so (the source then makes a new one).
import { mkdirSync, renameSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { dirEventsOf } from "../../../src/native/addon.js";
import { nativeWithTempDir } from "../../helpers/native.js";

describe("dirWatch", () => {
  const fx = nativeWithTempDir("pve-nat-dirwatch-");

  it("reports each change to a file in the directory once, and nothing while none happens", () => {
    const dir = path.join(fx.dir, "qemu-server");
    mkdirSync(dir);
    const file = path.join(dir, "101.pid");
    writeFileSync(file, "1234\n");
    const w = fx.native.dirWatch(dir);
    expect(fx.native.dirChanged(w)).toBe(0);
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
      expect(fx.native.dirChanged(w), what).toBe(1);
      expect(fx.native.dirChanged(w), `${what}, asked again`).toBe(0);
    }
  });

  it("says gone when the directory is removed or moved, and refuses a missing one", () => {
    for (const end of ["removed", "moved"] as const) {
      const dir = path.join(fx.dir, `d-${end}`);
      mkdirSync(dir);
      const w = fx.native.dirWatch(dir);
      if (end === "removed") rmSync(dir, { recursive: true });
      else renameSync(dir, `${dir}.away`);
      expect(fx.native.dirChanged(w), end).toBe(2);
      expect(fx.native.dirChanged(w), `${end}, asked again`).toBe(2);
    }
    expect(() => fx.native.dirWatch(path.join(fx.dir, "missing"))).toThrow();
    expect(dirEventsOf(fx.native)(path.join(fx.dir, "missing"))).toBeNull();
    expect(() => fx.native.dirChanged({} as never)).toThrow(TypeError);
  });
});
