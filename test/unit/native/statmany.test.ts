// src/native/statmany.c: the daemon's batch stat must give exactly the numbers fs.statSync
// gives (the node source compares them with what it stored from statSync), and -errno where
// statSync fails, on every pass of a batch prepared once.
import { mkdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { statPaths } from "../../../src/native/addon.js";
import { nativeWithTempDir } from "../../helpers/native.js";

const { ENOENT, ENOTDIR, ENAMETOOLONG } = os.constants.errno;

describe("statMany", () => {
  const fx = nativeWithTempDir("pve-nat-statmany-");

  it("gives ino, size, mtimeMs and ctimeMs as fs.statSync does, -errno where it fails", () => {
    const file = path.join(fx.dir, "107.fw");
    writeFileSync(file, "[RULES]\n\nIN ACCEPT -p tcp -dport 22 # NAT:822\n");
    mkdirSync(path.join(fx.dir, "sub"));
    symlinkSync(file, path.join(fx.dir, "link.fw"));
    const paths = [
      file,
      path.join(fx.dir, "sub"),
      path.join(fx.dir, "link.fw"),
      path.join(fx.dir, "absent.fw"),
      path.join(file, "below-a-file"),
      `/${"x".repeat(5000)}`,
    ];
    const out = new Float64Array(paths.length * 4).fill(7);
    fx.native.statMany(fx.native.statBatch(paths), out);
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

  it("sees a rewrite: other numbers from the same batch after the file changed", () => {
    const file = path.join(fx.dir, "108.fw");
    writeFileSync(file, "a");
    const batch = fx.native.statBatch([file]);
    const before = new Float64Array(4);
    fx.native.statMany(batch, before);
    writeFileSync(file, "abc");
    const after = new Float64Array(4);
    fx.native.statMany(batch, after);
    expect(after[1]).toBe(3);
    expect(after[1]).not.toBe(before[1]);
  });

  it("stats through the directory as it is now, not as it was when the batch was made", () => {
    const fw = path.join(fx.dir, "fw");
    mkdirSync(fw);
    writeFileSync(path.join(fw, "1.fw"), "one");
    writeFileSync(path.join(fw, "2.fw"), "two!");
    const paths = [path.join(fw, "1.fw"), path.join(fw, "2.fw"), path.join(fx.dir, "107.fw")];
    const stat = statPaths(fx.native);
    const out = new Float64Array(12);
    stat(paths, out);
    expect([out[1], out[5]]).toStrictEqual([3, 4]);
    // The directory replaced (as a restore from backup would): the new files, not the old.
    renameSync(fw, path.join(fx.dir, "fw.old"));
    mkdirSync(fw);
    writeFileSync(path.join(fw, "1.fw"), "one, again");
    stat(paths, out);
    expect(out[0]).toBe(statSync(path.join(fw, "1.fw")).ino);
    expect(out[1]).toBe(10);
    expect(out[4]).toBe(-ENOENT);
    expect(out[8]).toBe(statSync(path.join(fx.dir, "107.fw")).ino);
    // And gone: every file in it as stat(2) says.
    rmSync(fw, { recursive: true });
    stat(paths, out);
    expect([out[0], out[4]]).toStrictEqual([-ENOENT, -ENOENT]);
    expect(out[8]).toBeGreaterThan(0);
  });

  it("takes paths in any order and form: other directories between, relative, trailing /", () => {
    const cwd = process.cwd();
    process.chdir(fx.dir);
    try {
      writeFileSync("rel.fw", "r");
      const paths = [
        path.join(fx.dir, "107.fw"),
        path.join(fx.dir, "sub"),
        "/",
        path.join(fx.dir, "107.fw"),
        "rel.fw",
        `${path.join(fx.dir, "sub")}/`,
        `${path.join(fx.dir, "107.fw")}/`,
      ];
      const out = new Float64Array(paths.length * 4);
      fx.native.statMany(fx.native.statBatch(paths), out);
      for (const [i, p] of paths.slice(0, 6).entries()) expect(out[4 * i], p).toBe(statSync(p).ino);
      expect(out[24]).toBe(-ENOTDIR);
    } finally {
      process.chdir(cwd);
    }
  });

  it("refuses bad arguments instead of writing past the array", () => {
    const two = fx.native.statBatch([fx.dir, fx.dir]);
    expect(() => fx.native.statMany(two, new Float64Array(7))).toThrow(/Float64Array/);
    expect(() => fx.native.statMany(two, new Float32Array(8) as never)).toThrow(/Float64Array/);
    expect(() => fx.native.statMany([fx.dir] as never, new Float64Array(4))).toThrow(/statBatch/);
    expect(() => fx.native.statBatch([1 as never])).toThrow(/strings/);
    expect(() => fx.native.statBatch("x" as never)).toThrow(/array/);
    expect(() => (fx.native.statMany as (...a: unknown[]) => void)(two)).toThrow(/statMany/);
  });
});
