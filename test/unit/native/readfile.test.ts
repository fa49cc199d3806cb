import { mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { nativeWithTempDir } from "../../helpers/native.js";

// pve-nat's own addon (src/native/readfile.c), compiled as the package build compiles it:
// what the node source reads a file it has not seen before with (src/pve/cache.ts).

const { ENOENT, ENOTDIR, EISDIR, ENAMETOOLONG } = os.constants.errno;

describe("readFile", () => {
  const fx = nativeWithTempDir("pve-nat-readfile-");

  it("gives the text fs.readFileSync gives and the numbers fs.statSync gives", () => {
    const files: Array<[string, Buffer]> = [
      ["107.fw", Buffer.from("[RULES]\n\nIN ACCEPT -p tcp -dport 22 # NAT:822 für ssh\n")],
      ["empty.fw", Buffer.alloc(0)],
      // Bytes that are not UTF-8 (a config saved in Latin-1): replaced as Node replaces them.
      ["latin1.conf", Buffer.from([0x68, 0x6f, 0x73, 0x74, 0x3a, 0x20, 0xe9, 0x0a, 0xc3, 0x28])],
      // Larger than one read and than the 8 KiB a file of unknown size starts with.
      ["big.fw", Buffer.from(`${"IN ACCEPT -p tcp -dport 80 # NAT:8080\n".repeat(6000)}`)],
    ];
    for (const [name, bytes] of files) {
      const file = path.join(fx.dir, name);
      writeFileSync(file, bytes);
      const out = new Float64Array(4).fill(7);
      const text = fx.native.readFile(file, out);
      expect(text, name).toBe(readFileSync(file, "utf8"));
      const st = statSync(file);
      expect([...out], name).toStrictEqual([st.ino, st.size, st.mtimeMs, st.ctimeMs]);
    }
    // Through a symlink: the file it names, as readFileSync and statSync follow it.
    const link = path.join(fx.dir, "link.fw");
    symlinkSync(path.join(fx.dir, "107.fw"), link);
    const out = new Float64Array(4);
    expect(fx.native.readFile(link, out)).toBe(readFileSync(link, "utf8"));
    expect(out[0]).toBe(statSync(link).ino);
  });

  it("reads a file whose size says 0 to its end, as /proc files are read", () => {
    const out = new Float64Array(4);
    const text = fx.native.readFile("/proc/self/mountinfo", out);
    expect(text).not.toBeNull();
    expect((text as string).length).toBeGreaterThan(0);
    expect(out[1]).toBe(0);
    expect(text).toContain(" / ");
  });

  it("gives null and -errno where fs.readFileSync would throw", () => {
    mkdirSync(path.join(fx.dir, "sub"));
    writeFileSync(path.join(fx.dir, "file"), "x");
    const cases: Array<[string, number]> = [
      [path.join(fx.dir, "absent.fw"), ENOENT],
      [path.join(fx.dir, "file", "below-a-file"), ENOTDIR],
      [path.join(fx.dir, "sub"), EISDIR],
      [`/${"x".repeat(5000)}`, ENAMETOOLONG],
    ];
    for (const [p, errno] of cases) {
      const out = new Float64Array(4).fill(7);
      expect(fx.native.readFile(p, out), p).toBeNull();
      expect([...out], p).toStrictEqual([-(errno as number), 0, 0, 0]);
      expect(() => readFileSync(p, "utf8")).toThrow();
    }
  });

  it("throws on bad arguments", () => {
    expect(() => fx.native.readFile(7 as unknown as string, new Float64Array(4))).toThrow(
      TypeError,
    );
    expect(() => fx.native.readFile("/etc/hostname", new Float64Array(3))).toThrow(TypeError);
    expect(() =>
      fx.native.readFile("/etc/hostname", new Uint32Array(4) as unknown as Float64Array),
    ).toThrow(TypeError);
  });
});
