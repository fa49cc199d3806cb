// Spawn cost vs. the parent's size (issue 10): child_process.spawn (libuv: fork, which copies
// the parent's page tables) against pve-nat's addon spawn (src/native/spawn.c: posix_spawn,
// clone with CLONE_VM|CLONE_VFORK) of /bin/true, with the process grown to each RSS given
// (a Buffer allocated and touched). Prints per RSS and way the p50 of N runs of
//   total — call → exit and output read (child_process: 'close'; addon: the promise settles),
//   main  — time the call itself holds the main thread (child_process forks inside spawn()).
//
//   node scripts/spawn-cost.mjs [--rss 50,300] [--runs 50]
//
// Small and quick on purpose (one short-lived /bin/true per run); not part of `npm run bench`.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { compileNative } from "../packaging/native.mjs";

const repo = fileURLToPath(new URL("..", import.meta.url));
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const rssTargets = arg("rss", "50,300").split(",").map(Number);
const runs = Number(arg("runs", "50"));

const dir = mkdtempSync(path.join(os.tmpdir(), "pve-nat-spawn-cost-"));
const file = path.join(dir, "pve-nat.node");
compileNative({ repo, out: file });
const mod = { exports: {} };
process.dlopen(mod, file);
const native = mod.exports;
rmSync(dir, { recursive: true, force: true });

const rssMb = () =>
  Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1]) / 1024;

function viaChildProcess() {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn("/bin/true", [], { stdio: ["ignore", "pipe", "pipe"] });
    const main = performance.now() - t0;
    child.on("error", reject);
    child.on("close", () => resolve({ total: performance.now() - t0, main }));
  });
}

async function viaAddon() {
  const t0 = performance.now();
  const p = native.spawn("/bin/true", [], null, 5000, 1 << 20);
  const main = performance.now() - t0;
  const r = await p;
  if (r.code !== 0) throw new Error(`addon spawn: ${JSON.stringify(r)}`);
  return { total: performance.now() - t0, main };
}

const p50 = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

const ballast = [];
console.log(`node ${process.version}, ${runs} runs each, p50 in ms`);
console.log("RSS MB   child_process total/main   addon total/main");
for (const target of rssTargets) {
  const grow = Math.max(0, Math.round(target - rssMb()));
  if (grow > 0) ballast.push(Buffer.alloc(grow * 1024 * 1024).fill(1));
  for (let i = 0; i < 5; i++) {
    await viaChildProcess();
    await viaAddon();
  }
  const cp = [];
  const ad = [];
  // Alternating, so that drift in the machine's load hits both alike.
  for (let i = 0; i < runs; i++) {
    cp.push(await viaChildProcess());
    ad.push(await viaAddon());
  }
  const f = (xs, k) => p50(xs.map((x) => x[k])).toFixed(2);
  console.log(
    `${rssMb().toFixed(0).padStart(6)}   ${f(cp, "total").padStart(13)}/${f(cp, "main")}` +
      `   ${f(ad, "total").padStart(11)}/${f(ad, "main")}`,
  );
}
