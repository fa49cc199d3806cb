// The embedded-addon extraction (src/native/extract.ts): where it goes, that it refuses
// directories others control, and that many processes extracting at once agree on one file.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  addonDir,
  checkPrivateDir,
  extractAddon,
  removeStale,
  SYSTEM_ADDON_DIR,
} from "../../../src/native/extract.js";

const euid = process.geteuid?.() ?? 0;
const NOBODY = 65534;

function payload(text: string) {
  const bytes = new TextEncoder().encode(text);
  return {
    sha256: createHash("sha256").update(bytes).digest("hex"),
    size: bytes.byteLength,
    bytes: () => bytes,
  };
}

let scratch: string;
beforeEach(() => {
  scratch = mkdtempSync(path.join(os.tmpdir(), "pvenat-extract-"));
});
afterEach(() => {
  rmSync(scratch, { recursive: true, force: true });
});

describe("addonDir", () => {
  it.each([
    [{ euid: 0, override: undefined, tmpdir: "/tmp" }, SYSTEM_ADDON_DIR],
    [{ euid: 1000, override: undefined, tmpdir: "/tmp" }, "/tmp/pve-nat-1000/addon"],
    [{ euid: 0, override: "/srv/x", tmpdir: "/tmp" }, "/srv/x"],
    // A relative override would depend on the working directory: ignored.
    [{ euid: 0, override: "rel/x", tmpdir: "/tmp" }, SYSTEM_ADDON_DIR],
    [{ euid: 0, override: "", tmpdir: "/tmp" }, SYSTEM_ADDON_DIR],
  ])("%j → %s", (input, expected) => {
    expect(addonDir(input)).toBe(expected);
  });
});

describe("extractAddon", () => {
  it("writes <sha256>.node once, 0600 in a 0700 directory, and reuses it", () => {
    const dir = path.join(scratch, "a", "addon");
    const p = payload("addon v1");
    const first = extractAddon(p, dir, euid);
    expect(first).toEqual({ file: path.join(dir, `${p.sha256}.node`), written: true });
    expect(readFileSync(first.file, "utf8")).toBe("addon v1");
    expect(statSync(first.file).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(extractAddon(p, dir, euid)).toEqual({ file: first.file, written: false });
    expect(readdirSync(dir)).toEqual([`${p.sha256}.node`]);
  });

  it("an upgrade writes the new version and drops the old one", () => {
    const dir = path.join(scratch, "addon");
    const v1 = payload("addon v1");
    const v2 = payload("addon v2, longer");
    extractAddon(v1, dir, euid);
    const second = extractAddon(v2, dir, euid);
    expect(second.written).toBe(true);
    expect(readdirSync(dir)).toEqual([`${v2.sha256}.node`]);
  });

  it("addons embedded side by side keep each other (zeromq's and pve-nat's own)", () => {
    const dir = path.join(scratch, "addon");
    const old = payload("zeromq v0");
    const zmq = payload("zeromq v1");
    const native = payload("pve-nat addon v1");
    const keep = [zmq.sha256, native.sha256];
    extractAddon(old, dir, euid);
    expect(extractAddon(zmq, dir, euid, keep).written).toBe(true);
    expect(extractAddon(native, dir, euid, keep).written).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(keep.map((sha) => `${sha}.node`).sort());
    // Both found again on the next start, neither written twice.
    expect(extractAddon(zmq, dir, euid, keep).written).toBe(false);
    expect(extractAddon(native, dir, euid, keep).written).toBe(false);
  });

  it("replaces a truncated copy", () => {
    const dir = path.join(scratch, "addon");
    const p = payload("the whole addon");
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(path.join(dir, `${p.sha256}.node`), "the wh");
    expect(extractAddon(p, dir, euid).written).toBe(true);
    expect(readFileSync(path.join(dir, `${p.sha256}.node`), "utf8")).toBe("the whole addon");
  });

  it("rejects a payload whose size does not match the build's record", () => {
    const p = { ...payload("abc"), size: 4 };
    expect(() => extractAddon(p, path.join(scratch, "addon"), euid)).toThrow(/3 bytes, expected 4/);
  });

  it("rejects a malformed hash (it becomes a file name)", () => {
    const p = { ...payload("abc"), sha256: "../../etc/x" };
    expect(() => extractAddon(p, path.join(scratch, "addon"), euid)).toThrow(/bad addon hash/);
  });
});

describe("directories others control are refused", () => {
  it.runIf(euid === 0)("a directory owned by another user", () => {
    const dir = path.join(scratch, "addon");
    mkdirSync(dir, { mode: 0o700 });
    chownSync(dir, NOBODY, NOBODY);
    expect(() => extractAddon(payload("x"), dir, euid)).toThrow(/owned by uid 65534/);
  });

  it.runIf(euid === 0)("an existing copy owned by another user is not trusted", () => {
    const dir = path.join(scratch, "addon");
    const p = payload("genuine");
    mkdirSync(dir, { mode: 0o700 });
    const file = path.join(dir, `${p.sha256}.node`);
    writeFileSync(file, "evil!!!");
    chownSync(file, NOBODY, NOBODY);
    expect(extractAddon(p, dir, euid).written).toBe(true);
    expect(readFileSync(file, "utf8")).toBe("genuine");
    expect(statSync(file).uid).toBe(euid);
  });

  it("a group-writable directory", () => {
    const dir = path.join(scratch, "addon");
    mkdirSync(dir);
    chmodSync(dir, 0o770);
    expect(() => extractAddon(payload("x"), dir, euid)).toThrow(/mode must be 0700/);
  });

  it("a parent others can write into (no sticky bit)", () => {
    const parent = path.join(scratch, "shared");
    mkdirSync(parent);
    chmodSync(parent, 0o777);
    expect(() => extractAddon(payload("x"), path.join(parent, "addon"), euid)).toThrow(
      /shared: writable by others/,
    );
  });

  it.runIf(euid === 0)("a symbolic link to a directory another user owns", () => {
    const theirs = path.join(scratch, "theirs");
    mkdirSync(theirs, { mode: 0o700 });
    chownSync(theirs, NOBODY, NOBODY);
    const link = path.join(scratch, "addon");
    symlinkSync(theirs, link);
    expect(() => checkPrivateDir(link, euid)).toThrow(/owned by uid 65534/);
  });

  it("a sticky world-writable ancestor (/tmp) is fine", () => {
    const sticky = path.join(scratch, "tmp");
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    const dir = path.join(sticky, "pve-nat-0", "addon");
    expect(extractAddon(payload("x"), dir, euid).written).toBe(true);
  });
});

describe("removeStale", () => {
  it("removes other versions and old temp files, keeps fresh temp files", () => {
    const keep = "a".repeat(64);
    const other = "b".repeat(64);
    const now = Date.now();
    const names = {
      keep: `${keep}.node`,
      other: `${other}.node`,
      oldTmp: `.${keep}.123.abcdef.tmp`,
      freshTmp: `.${keep}.124.abcdef.tmp`,
      unrelated: "README",
    };
    for (const n of Object.values(names)) writeFileSync(path.join(scratch, n), "");
    const old = (now - 120_000) / 1000;
    utimesSync(path.join(scratch, names.oldTmp), old, old);
    expect(removeStale(scratch, [keep], now).sort()).toEqual([names.oldTmp, names.other].sort());
    expect(readdirSync(scratch).sort()).toEqual(
      [names.keep, names.freshTmp, names.unrelated].sort(),
    );
  });
});

describe("many processes extracting at once", () => {
  it("agree on one complete file, written by exactly one of them", async () => {
    // Real processes, since the race is between processes: bundle the module for plain node.
    const script = path.join(scratch, "extract.cjs");
    await build({
      entryPoints: [path.resolve(import.meta.dirname, "../../../src/native/extract.ts")],
      outfile: script,
      bundle: true,
      platform: "node",
      format: "cjs",
      logLevel: "silent",
    });
    const bytes = Buffer.alloc(4 * 1024 * 1024, 7);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const dir = path.join(scratch, "addon");
    const child = `
      const { extractAddon } = require(${JSON.stringify(script)});
      const bytes = Buffer.alloc(${bytes.length}, 7);
      const r = extractAddon({ sha256: ${JSON.stringify(sha256)}, size: bytes.length, bytes: () => bytes },
        ${JSON.stringify(dir)}, process.geteuid());
      process.stdout.write(JSON.stringify(r));`;
    const exec = promisify(execFile);
    const results = await Promise.all(
      Array.from({ length: 24 }, () => exec(process.execPath, ["-e", child])),
    );
    const parsed = results.map((r) => JSON.parse(r.stdout) as { file: string; written: boolean });
    expect(new Set(parsed.map((r) => r.file))).toEqual(new Set([path.join(dir, `${sha256}.node`)]));
    expect(parsed.filter((r) => r.written)).toHaveLength(1);
    expect(readdirSync(dir)).toEqual([`${sha256}.node`]);
    expect(readFileSync(path.join(dir, `${sha256}.node`)).equals(bytes)).toBe(true);
    expect(existsSync(script)).toBe(true);
  }, 60_000);
});
