// src/native/pagedrop.c (in pve-nat's own addon), compiled as the package build compiles it and
// loaded into a plain node process (the daemon loads the same file from its single executable).
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error: plain ESM build script without type declarations
import { compileNative } from "../../../packaging/native.mjs";

const repo = path.resolve(import.meta.dirname, "../../..");

// Runs in a child: drops the pages, then proves the process still works in code that uses
// relocated data (zlib, crypto, regexps, JSON), and reports smaps per mapping before and after.
const CHILD = String.raw`
const fs = require("node:fs");
function maps() {
  const out = [];
  let cur = null;
  for (const line of fs.readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const h = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (h) { cur = { range: h[1] + "-" + h[2], perms: h[3], inode: Number(h[4]), path: h[5], rss: 0, anon: 0 }; out.push(cur); continue; }
    const f = /^(Rss|Anonymous):\s+(\d+) kB/.exec(line);
    if (f && cur) cur[f[1] === "Rss" ? "rss" : "anon"] = Number(f[2]);
  }
  return out;
}
const mod = { exports: {} };
process.dlopen(mod, process.argv[1]);
const before = maps();
const released = mod.exports.drop();
const after = maps();
const zlib = require("node:zlib");
const crypto = require("node:crypto");
const text = JSON.stringify({ a: "x".repeat(10000), n: [1, 2, 3] });
const ok =
  zlib.gunzipSync(zlib.gzipSync(text)).toString() === text &&
  crypto.createHash("sha256").update("abc").digest("hex") ===
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" &&
  /^(a+)+b$/.test("aaab");
process.stdout.write(JSON.stringify({ released, before, after, ok }));
`;

interface Mapping {
  range: string;
  perms: string;
  inode: number;
  path: string;
  rss: number;
  anon: number;
}

describe("pagedrop addon", () => {
  let dir: string;
  let addon: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "pve-nat-pagedrop-"));
    addon = path.join(dir, "pve-nat.node");
    compileNative({ repo, out: addon });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function run(): {
    released: number;
    before: Mapping[];
    after: Mapping[];
    ok: boolean;
  } {
    return JSON.parse(execFileSync(process.execPath, ["-e", CHILD, addon], { encoding: "utf8" }));
  }

  it("gives back the executable's clean pages and the process runs on", () => {
    const r = run();
    const fileKb = (ms: Mapping[]) =>
      ms.filter((m) => m.path.startsWith("/")).reduce((n, m) => n + m.rss - m.anon, 0);
    expect(r.ok).toBe(true);
    expect(r.released).toBeGreaterThan(5 * 1024 * 1024);
    // Node's own binary: most of its resident pages go.
    expect(fileKb(r.after)).toBeLessThan(fileKb(r.before) / 2);
  });

  it("never touches a read-only mapping that holds private (relocated) pages, nor a writable one", () => {
    const r = run();
    const after = new Map(r.after.map((m) => [m.range, m]));
    const keptWhole = r.before.filter(
      (m) => m.path.startsWith("/") && (m.anon > 0 || m.perms[1] === "w"),
    );
    // The dynamic linker's RELRO pages are such mappings in every process.
    expect(keptWhole.some((m) => m.perms.startsWith("r--") && m.anon > 0)).toBe(true);
    for (const m of keptWhole) {
      const a = after.get(m.range);
      expect(a, m.range).toBeDefined();
      expect(a?.anon, `${m.range} ${m.perms} ${m.path}`).toBe(m.anon);
    }
  });

  // exeLargeFolios() and evictExe(), on a copy of node (its page cache is ours to arrange): a
  // start with the cache dropped (`dd iflag=nocache`, nothing mapping the file), so its own
  // faults read it back; a start after the cache was dropped and `cat` read the file whole, as a
  // backup leaves an installed executable, which then evicts; and a start after that. What the
  // answer stands for is the premise of the eviction (a start from large folios maps more of the
  // file), and what the eviction is for is the third start mapping less. The copy lives in the
  // repo's build/ directory, not /tmp, which may be tmpfs (shared memory is never evicted).
  it("exeLargeFolios tells a cache read whole; evictExe takes back most of what it cost", () => {
    mkdirSync(path.join(repo, "build"), { recursive: true });
    const dir2 = mkdtempSync(path.join(repo, "build", "pagedrop-"));
    try {
      const exe = path.join(dir2, "node");
      copyFileSync(process.execPath, exe);
      chmodSync(exe, 0o755);
      const uncache = () =>
        execFileSync("dd", [`if=${exe}`, "iflag=nocache", "count=0", "status=none"]);
      // Its answer, the resident KiB of its mappings of the executable, and (asked) the eviction.
      const run = (evict: boolean) =>
        JSON.parse(
          execFileSync(
            exe,
            [
              "-e",
              "const fs=require('node:fs');const m={exports:{}};process.dlopen(m,process.argv[1]);" +
                "const large=m.exports.exeLargeFolios();let rss=0,mine=false;" +
                "for(const l of fs.readFileSync('/proc/self/smaps','utf8').split('\\n')){" +
                "const h=/^[0-9a-f]+-[0-9a-f]+ \\S+ \\S+ \\S+ \\d+\\s*(.*)$/.exec(l);" +
                "if(h){mine=h[1]===process.execPath;continue;}" +
                "const r=/^Rss:\\s+(\\d+) kB/.exec(l);if(r&&mine)rss+=Number(r[1]);}" +
                "const evicted=process.argv[2]==='evict'?m.exports.evictExe():null;" +
                "process.stdout.write(JSON.stringify({large,rss,evicted}))",
              addon,
              evict ? "evict" : "keep",
            ],
            { encoding: "utf8" },
          ),
        ) as { large: number; rss: number; evicted: number | null };
      uncache();
      const faulted = run(false);
      uncache();
      execFileSync("sh", ["-c", 'cat "$1" > /dev/null', "sh", exe]);
      const whole = run(true);
      const after = run(false);
      expect(whole.evicted).toBe(0);
      if (process.getuid?.() !== 0 || !existsSync("/proc/kpageflags")) {
        // PFNs and /proc/kpageflags are root's, and some kernels have no kpageflags: no answer
        // (-errno), and the daemon evicts as before.
        expect(whole.large).toBeLessThan(0);
        expect(faulted.large).toBe(whole.large);
        return;
      }
      expect(faulted.large).toBe(0);
      if (whole.large === 1) {
        expect(whole.rss).toBeGreaterThan(faulted.rss * 1.2);
        // Most of what the large folios added is gone (here 57.9 → 38.7–39.6 MB, 31.1 from
        // small folios: what the evicting process mapped again on its way out stays cached).
        expect(after.rss).toBeLessThan((whole.rss + faulted.rss) / 2);
      } else {
        // A kernel or file system that caches this file in small folios only: nothing to save.
        expect(whole.large).toBe(0);
        expect(whole.rss).toBeLessThan(faulted.rss * 1.1);
      }
    } finally {
      rmSync(dir2, { recursive: true, force: true });
    }
  });
});
