// src/native/statmany.c: the daemon's batch stat must give exactly the numbers fs.statSync
// gives (the node source compares them with what it stored from statSync), and -errno where
// statSync fails.
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Native } from "../../../src/native/addon.js";
import { loadTestNative } from "../../helpers/native.js";

const { ENOENT, ENOTDIR, ENAMETOOLONG } = os.constants.errno;

describe("statMany", () => {
  let native: Native;
  let dispose: () => void;
  let dir: string;
  beforeAll(() => {
    ({ native, dispose } = loadTestNative());
    dir = mkdtempSync(path.join(os.tmpdir(), "pve-nat-statmany-"));
  });
  afterAll(() => {
    dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it("gives ino, size, mtimeMs and ctimeMs as fs.statSync does, -errno where it fails", () => {
    const file = path.join(dir, "107.fw");
    writeFileSync(file, "[RULES]\n\nIN ACCEPT -p tcp -dport 22 # NAT:822\n");
    mkdirSync(path.join(dir, "sub"));
    symlinkSync(file, path.join(dir, "link.fw"));
    const paths = [
      file,
      path.join(dir, "sub"),
      path.join(dir, "link.fw"),
      path.join(dir, "absent.fw"),
      path.join(file, "below-a-file"),
      `/${"x".repeat(5000)}`,
    ];
    const out = new Float64Array(paths.length * 4).fill(7);
    native.statMany(paths, out);
    for (const [i, p] of paths.slice(0, 3).entries()) {
      const st = statSync(p);
      expect([...out.subarray(4 * i, 4 * i + 4)], p).toStrictEqual([
        st.ino,
        st.size,
        st.mtimeMs,
        st.ctimeMs,
      ]);
    }
    expect([...out.subarray(12, 16)]).toStrictEqual([-ENOENT, 0, 0, 0]);
    expect(out[16]).toBe(-ENOTDIR);
    expect(out[20]).toBe(-ENAMETOOLONG);
  });

  it("sees a rewrite: other numbers after the file changed", () => {
    const file = path.join(dir, "108.fw");
    writeFileSync(file, "a");
    const before = new Float64Array(4);
    native.statMany([file], before);
    writeFileSync(file, "abc");
    const after = new Float64Array(4);
    native.statMany([file], after);
    expect(after[1]).toBe(3);
    expect(after[1]).not.toBe(before[1]);
  });

  it("refuses bad arguments instead of writing past the array", () => {
    expect(() => native.statMany([dir, dir], new Float64Array(7))).toThrow(/Float64Array/);
    expect(() => native.statMany([dir], new Float32Array(4) as never)).toThrow(/Float64Array/);
    expect(() => native.statMany([1 as never], new Float64Array(4))).toThrow(/strings/);
    expect(() => (native.statMany as (...a: unknown[]) => void)([dir])).toThrow(/statMany/);
  });
});
