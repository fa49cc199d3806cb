// The part of the bench that runs inside the node's network namespace (one backend, every
// guest count): the daemon, its hooks and events, the floor, the old approach. Prints one
// "RESULT <json>" line on stdout; progress goes to stderr.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Request } from "../../src/bus/protocol.js";
import { busClient, type HoldingBus, holdingBus } from "./bus.js";
import { type CycleLog, collectEvents, type Daemon, type EventLog, startDaemon } from "./daemon.js";
import {
  type Backend,
  clearTables,
  floorPayload,
  guestChains,
  saveNat,
  seedArgv,
  seedPayload,
  tool,
} from "./ipt.js";
import { background, runOk, sleep, type Timed, timed, waitFor } from "./proc.js";
import {
  editedPort,
  editFw,
  FIRST_VMID,
  publicPort,
  qemuPidfile,
  RULES_PER_GUEST,
  vmids,
  writeNode,
} from "./simnode.js";
import { timedSpawn } from "./spawn.js";
import { evenlySpaced, mean, median, r1, r2, type Summary, summarize } from "./stats.js";

export interface Runs {
  /** Hook spawns of each phase (pre-start ones also yield apply events), with as many
   *  `node -e 0` and `/bin/true`. */
  hooks: number;
  /** Apply events in all (hooks + direct bus requests); one floor restore each. */
  events: number;
  edits: number;
  /** Wall-time caps (ms) for the apply loop and the edit loop at one guest count: a daemon
   *  whose cycle grows with the node would otherwise make the run unbounded. Hitting one is
   *  reported (budget_hit) with the counts reached. */
  applyBudgetMs: number;
  /** Same, for 1000 guests and more (where a per-event cost that grows with the node shows). */
  applyBudgetBigMs: number;
  editBudgetMs: number;
  /** Full seed-equivalent repetitions per guest count (the 1000-guest one is extrapolated). */
  seedReps: Record<string, number>;
  /** Quiet window after the reconcile: CPU seconds (s) and, under strace, file calls (s). */
  idleSeconds: number;
  /** The quiet window starts this long after the reconcile. What the daemon does once after a
   *  stretch of work (V8 shrinking the heap the reconcile grew, the page trim, the first drift
   *  check parsing the tables the reconcile rewrote) falls in this stretch, measured apart as
   *  `settle`; the window is what a quiet node costs hour after hour. 35 s takes the settling
   *  past the first drift check (drift_interval_ms is 30 s), so a 30 s window holds the
   *  second one: a drift check on a node left as it was. */
  settleSeconds: number;
  fsSeconds: number;
  /** Daemon starts timed at each guest count, each from empty tables; the last one stays for
   *  the count's other figures. One start is one sample of a figure that moves by a fifth from
   *  minute to minute on this machine (2026-12-07, nf_tables at 1000 guests, the same binary:
   *  seven starts in a row at 895-953 ms, seven more a few minutes later at 1057-1306 ms), so
   *  the reconcile is the median of these, with every sample kept. */
  reconciles: number;
}

export interface InnerOptions {
  backend: Backend;
  counts: number[];
  /** argv prefix of the pve-nat under test. */
  bin: string[];
  /** argv prefix that runs this bench bundle (for the run-state holder). */
  self: string[];
  work: string;
  runs: Runs;
  /** log_level = debug: the daemon's per-cycle split is recorded (cycle_split, reconcile.split). */
  debugLog?: boolean;
  /** argv prefix for the daemon when it differs from `bin` (e.g. under `node --cpu-prof`). */
  daemonBin?: string[];
  /** Only the footprint: reconcile, the idle window, the burst (no hooks, edits, seed). */
  footprint?: boolean;
  /** The nodes have pmxcfs's store (default true): see writeNode. */
  store?: boolean;
}

/** What the daemon's memory is made of at one moment, MB: from /proc (rss, anon, file) and
 *  from the daemon itself (`ping` reply: V8 heap used/committed, external, code). */
export interface Footprint {
  rss: number;
  anon: number | null;
  file: number | null;
  heap_used: number | null;
  heap_total: number | null;
  external: number | null;
  array_buffers: number | null;
  code: number | null;
}

export interface IdleResult {
  /** CPU from two polls after the reconcile to the start of the window (absent in results
   *  written before it was measured). */
  settle?: { window_s: number; cpu_s_per_s: number; children_cpu_s_per_s: number };
  window_s: number;
  /** CPU seconds per wall second over the window: the daemon's own, and its children's. */
  cpu_s_per_s: number;
  children_cpu_s_per_s: number;
  /** System calls naming a path (or an fd) under <root>/etc/pve, per second, from strace over
   *  fs_window_s (a separate window: strace slows the process it traces). */
  fs: {
    window_s: number;
    per_s: Record<string, number>;
    stat_open_per_s: number;
    total_per_s: number;
  } | null;
  memory: Footprint;
}

export interface SeedResult {
  rules: number;
  extrapolated: boolean;
  /** Whole runs (flush + every append), ms; for the extrapolated count one estimate. */
  runs_ms: number[];
  ms_p50: number;
  flush_ms: number;
  append_first_ms: number;
  append_last_ms: number;
}

/** The idle window again on a node whose guest configs say `ip=dhcp`: every address is
 *  learned from the PVE IPAM (simnode.ts ipamState). */
export interface LearnedIdle {
  guests: number;
  /** Guests with live chains: one per distinct address (the rest are address conflicts). */
  guests_live: number;
  reconcile_ms: number;
  idle: IdleResult;
}

/** The idle window again on a node of qemu guests (issue 10): their run state is a pidfile and
 *  the command line of the process it names (qemu-server's check_running). */
export interface QemuIdle {
  guests: number;
  /** Bytes of each simulated qemu's command line. */
  cmdline_bytes: number;
  reconcile_ms: number;
  idle: IdleResult;
}

/** One cycle's time by step (the daemon's debug `cycle` line), ms: loading the plan, reading
 *  the tables, deciding and rendering the payload, the restore, and the whole. */
export interface Split {
  load_ms: number;
  read_ms: number;
  render_ms: number;
  restore_ms: number;
  total_ms: number;
}

/** One cycle's split as the results keep it (the daemon logs it at 0.1 ms already). */
function splitOf(c: CycleLog): Split {
  return {
    load_ms: r1(c.loadMs),
    read_ms: r1(c.readMs),
    render_ms: r1(c.renderMs),
    restore_ms: r1(c.restoreMs),
    total_ms: r1(c.ms),
  };
}

export interface CountResult {
  guests: number;
  /** Only for the largest count. */
  learned_idle?: LearnedIdle;
  /** Only for the largest count. */
  qemu_idle?: QemuIdle;
  rules: number;
  reconcile: {
    /** Medians over `samples`. */
    wall_ms: number;
    daemon_ms: number;
    /** Each start in order (the last is the daemon measured afterwards). */
    samples: { wall_ms: number[]; daemon_ms: number[] };
    chains_ok: boolean;
    /** The first (full) cycle's split from the daemon's debug log. */
    split: Split | null;
  };
  /** `hook <vmid> post-start` (rules already live: the daemon checks and acks). */
  hook: Summary;
  /** `hook <vmid> pre-start` (the daemon applies the guest's rules: one restore). */
  hook_pre: Summary;
  hook_failures: number;
  node_e0: Summary;
  bin_true: Summary;
  /** `pve-nat --version`: the executable's start-up alone. */
  bin_version: Summary;
  apply: Summary;
  apply_missing: number;
  /** Outside view of the direct bus requests: send → reply (the reply means "live"). */
  apply_outside: Summary;
  floor: Summary;
  /** apply and floor again, split by what sent the event: a hook process, started just before
   *  and waiting for its answer while the daemon applies, or the bench's own bus connection. A
   *  hook event's floor runs beside a hook waiting likewise (floorBesideHook), a bus event's
   *  beside no process started. */
  by_source: { hook: { apply: Summary; floor: Summary }; bus: { apply: Summary; floor: Summary } };
  apply_budget_hit: boolean;
  /** The daemon's own split of one-guest cycles (debug log), p50 ms. */
  cycle_split: Split & {
    n: number;
    /** The three slowest of those cycles, whole: where an apply p99 goes (the daemon's
     *  JavaScript, the table read, or the restore itself). */
    slowest: Split[];
  };
  edit: Summary;
  edit_failures: number;
  edit_budget_hit: boolean;
  burst: {
    events: number;
    total_ms: number;
    replies_ok: number;
    lost: number;
    chains_missing: number;
    /** Restores the burst took (null without --debug-log). */
    cycles: number | null;
  };
  /** idle: at the end of the quiet window (the daemon left alone; issue 10's "idle");
   *  after_reconcile: right after the initial reconcile, before it has settled;
   *  peak_at_reconcile / peak_before_burst: VmHWM then, so that the peak's stage (the
   *  reconcile, the events and edits, or the burst) shows. */
  rss_mb: {
    idle: number;
    after_reconcile: number;
    peak_at_reconcile: number;
    peak_before_burst: number;
    after_burst: number;
    peak: number;
  };
  idle: IdleResult;
  /** After the burst (peak = VmHWM: the most the daemon ever had resident). */
  memory_after_burst: Footprint;
  seed: SeedResult;
  daemon_errors: string[];
}

let label = "";
const benchStart = performance.now();
function progress(msg: string): void {
  const s = ((performance.now() - benchStart) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[bench ${s}s ${label}] ${msg}\n`);
}

function guestCount(save: string): number {
  return guestChains(save).size;
}

async function waitChains(backend: Backend, want: number, timeoutMs: number): Promise<boolean> {
  return waitFor(async () => guestCount(await saveNat(backend)) === want, timeoutMs, 100);
}

function startHolder(
  self: readonly string[],
  count: number,
): Promise<ReturnType<typeof background>> {
  return new Promise((resolve, reject) => {
    const h = background(
      [...self, "holder", String(FIRST_VMID), String(count)],
      (line) => {
        if (line === "ready") {
          clearTimeout(t);
          resolve(h);
        }
      },
      (line) => progress(`run-state holder: ${line}`),
    );
    const t = setTimeout(() => {
      void h.stop("SIGKILL");
      reject(new Error("run-state holder did not get ready"));
    }, 30_000);
  });
}

/** Guests the timing loops rotate over: spread over the node, same rule count each. */
function sample(count: number): number[] {
  const ids = vmids(count);
  const k = Math.min(10, count);
  return Array.from({ length: k }, (_, i) => ids[Math.floor((i * count) / k)] as number);
}

interface StandIn {
  root: string;
  bus: HoldingBus;
}

/** An empty node whose bus is the bench's holding bus (the hook reads nothing else there). */
async function standInBus(o: InnerOptions): Promise<StandIn> {
  const root = path.join(o.work, "stand-in");
  await mkdir(path.join(root, "run/pve-nat"), { recursive: true });
  return { root, bus: await holdingBus(path.join(root, "run/pve-nat/bus.sock")) };
}

/** The floor of a hook event: the bare restore, run while a hook process (sent to the stand-in
 *  bus) waits for its answer, where the daemon's apply of a hook event runs. A process just
 *  started beside it lengthens a restore on this VM: at 1000 guests (nf_tables, 100 of each,
 *  interleaved) a bare restore took 18.5 ms p50 alone, 22.7 beside an idle `node -e` started
 *  45 ms before and 23.8 beside an idle `pve-nat events`; the daemon's apply of a bus event
 *  17.3 alone and 24.0 beside the same `node -e` (2026-12-08). Bus events keep the bare floor:
 *  nothing was started beside them. */
async function floorBesideHook(
  o: InnerOptions,
  standIn: StandIn,
  vmid: number,
  restore: readonly string[],
  payload: string,
): Promise<Timed> {
  const hook = timed([...o.bin, "hook", String(vmid), "pre-start", "--root", standIn.root]);
  const answer = await standIn.bus.next(10_000);
  if (answer === null) {
    const h = await hook;
    throw new Error(`the stand-in hook sent no request: ${h.stderr.trim()}`);
  }
  let r: Timed;
  try {
    r = await timedSpawn(restore, payload);
  } finally {
    await answer(`vm${vmid} pre-start: answered by the bench's stand-in bus`);
  }
  const h = await hook;
  if (h.code !== 0) throw new Error(`the stand-in hook failed: ${h.stderr.trim()}`);
  return r;
}

async function applyAndFloor(
  o: InnerOptions,
  tree: { root: string },
  events: EventLog,
  payloads: Map<number, string>,
  ids: number[],
  count: number,
): Promise<
  Pick<
    CountResult,
    | "hook"
    | "hook_pre"
    | "hook_failures"
    | "node_e0"
    | "bin_true"
    | "bin_version"
    | "apply"
    | "apply_missing"
    | "apply_outside"
    | "floor"
    | "by_source"
    | "apply_budget_hit"
  >
> {
  const bus = busClient(path.join(tree.root, "run/pve-nat/bus.sock"));
  const standIn = await standInBus(o);
  const hookPost: number[] = [];
  const hookPre: number[] = [];
  const nodeE0: number[] = [];
  const binTrue: number[] = [];
  const binVersion: number[] = [];
  const apply: number[] = [];
  const outside: number[] = [];
  const floor: number[] = [];
  const bySource = {
    hook: { apply: [] as number[], floor: [] as number[] },
    bus: { apply: [] as number[], floor: [] as number[] },
  };
  let hookFailures = 0;
  let missing = 0;
  const restore = [tool(o.backend, "-restore"), "--noflush", "-w", "10"];
  const total = o.runs.events;
  const warmup = 3;
  const budget = count >= 1000 ? o.runs.applyBudgetBigMs : o.runs.applyBudgetMs;
  let budgetHit = false;
  let lastNote = performance.now();
  const started = performance.now();
  const runHook = async (vmid: number, phase: "pre-start" | "post-start", into: number[]) => {
    const r = await timed([...o.bin, "hook", String(vmid), phase, "--root", tree.root]);
    const okLine = r.code === 0 && /forwards? live/.test(r.stderr);
    into.push(r.ms);
    if (!okLine && ++hookFailures <= 3) progress(`hook said: ${r.stderr.trim()}`);
  };
  try {
    for (let i = -warmup; i < total; i++) {
      if (i >= 0 && performance.now() - started > budget) {
        budgetHit = true;
        progress(`apply loop: time budget of ${budget / 1000} s used up after ${i} events`);
        break;
      }
      if (i === 0) hookFailures = 0;
      const vmid = ids[(i + warmup) % ids.length] as number;
      const payload = payloads.get(vmid) as string;
      const record = i >= 0;
      const sink: number[] = [];
      // Hooks are spread evenly over the stage (and the warm-up events are hooks): their bound
      // takes the floor p50 of the whole stage, so sampling them in its first quarter only made
      // a slow minute there (00:04 on 2026-12-08: floor p50 61.6 ms over those events against
      // 40.1 over the stage) read as a miss of the hook.
      const viaHook = i < 0 || evenlySpaced(i, o.runs.hooks, total);
      // Alternate the order so neither side always runs right after the other's work.
      const floorFirst = i % 2 === 0;
      const bySender = bySource[viaHook ? "hook" : "bus"];
      const doFloor = async () => {
        const r = viaHook
          ? await floorBesideHook(o, standIn, vmid, restore, payload)
          : await timedSpawn(restore, payload);
        if (r.code !== 0) throw new Error(`floor restore failed: ${r.stderr}`);
        if (record) {
          floor.push(r.ms);
          bySender.floor.push(r.ms);
        }
      };
      if (floorFirst) await doFloor();
      // pre-start applies the guest's rules at once (SPEC §1): one restore of its two chains,
      // the floor payload. The event is the same whether a hook process or the bus sends it.
      const t0 = performance.now();
      if (viaHook) {
        await runHook(vmid, "pre-start", record ? hookPre : sink);
      } else {
        const req: Request = { v: 1, type: "hook", vmid, phase: "pre-start" };
        const reply = await bus.call(req, 10_000);
        if (record && reply?.ok) outside.push(performance.now() - t0);
        if (!reply?.ok) progress(`bus request failed: ${JSON.stringify(reply)}`);
      }
      const ev = await events.wait(
        (a) => a.at >= t0 && a.e.type === "applied" && a.e.vmid === vmid,
        5000,
      );
      if (record) {
        if (ev) {
          apply.push(ev.e.ms);
          bySender.apply.push(ev.e.ms);
        } else missing++;
        if (missing >= 5 && apply.length === 0) {
          progress("no `applied` event for pre-start of a live guest: apply loop abandoned");
          break;
        }
      }
      if (!floorFirst) await doFloor();
      if (viaHook) {
        // post-start of a guest whose rules are live: the daemon checks and acks.
        await runHook(vmid, "post-start", record ? hookPost : sink);
        if (record) {
          nodeE0.push((await timed([process.execPath, "-e", "0"])).ms);
          binTrue.push((await timed(["/bin/true"])).ms);
          // The executable's own start-up, no bus: hook minus this is bus + daemon time.
          binVersion.push((await timed([...o.bin, "--version"])).ms);
        }
      }
      if (record && ((i + 1) % 50 === 0 || performance.now() - lastNote > 15_000)) {
        lastNote = performance.now();
        progress(
          `apply ${i + 1}/${total}: event p50 ${r1(median(apply))} ms, floor p50 ${r1(median(floor))} ms` +
            (hookPre.length
              ? `, hook pre/post-start p50 ${r1(median(hookPre))}/${r1(median(hookPost))} ms`
              : ""),
        );
      }
    }
  } finally {
    bus.close();
    standIn.bus.close();
  }
  return {
    hook: summarize(hookPost),
    hook_pre: summarize(hookPre),
    hook_failures: hookFailures,
    node_e0: summarize(nodeE0),
    bin_true: summarize(binTrue),
    bin_version: summarize(binVersion),
    apply: summarize(apply),
    apply_missing: missing,
    apply_outside: summarize(outside),
    floor: summarize(floor),
    by_source: {
      hook: { apply: summarize(bySource.hook.apply), floor: summarize(bySource.hook.floor) },
      bus: { apply: summarize(bySource.bus.apply), floor: summarize(bySource.bus.floor) },
    },
    apply_budget_hit: budgetHit,
  };
}

async function edits(
  o: InnerOptions,
  tree: { root: string; pollIntervalMs: number },
  events: EventLog,
  ids: number[],
): Promise<{ edit: Summary; edit_failures: number; edit_budget_hit: boolean }> {
  const ms: number[] = [];
  let failures = 0;
  let budgetHit = false;
  const started = performance.now();
  const variant = new Map<number, 0 | 1>();
  for (let i = 0; i < o.runs.edits; i++) {
    if (performance.now() - started > o.runs.editBudgetMs) {
      budgetHit = true;
      progress(`edits: time budget of ${o.runs.editBudgetMs / 1000} s used up after ${i} edits`);
      break;
    }
    const vmid = ids[i % ids.length] as number;
    const v: 0 | 1 = variant.get(vmid) === 1 ? 0 : 1;
    variant.set(vmid, v);
    // A random phase against the watcher's poll, so the samples cover the whole interval.
    await sleep(Math.random() * tree.pollIntervalMs);
    const t0 = performance.now();
    await editFw(tree.root, vmid, v);
    const ev = await events.wait(
      (a) => a.at >= t0 && a.e.type === "applied" && a.e.vmid === vmid,
      3 * tree.pollIntervalMs + 5000,
    );
    if (!ev) {
      failures++;
      continue;
    }
    ms.push(ev.at - t0);
    // Not timed: the event must mean the edited rule is in the kernel.
    const lines = (await saveNat(o.backend))
      .split("\n")
      .filter((l) => l.startsWith(`-A PVENAT-${vmid}-DNAT `));
    const want = v === 1 ? editedPort(vmid) : publicPort(vmid, 0);
    const gone = v === 1 ? publicPort(vmid, 0) : editedPort(vmid);
    const has = (port: number) => lines.some((l) => l.includes(`--dport ${port} `));
    if (!has(want) || has(gone)) failures++;
    if ((i + 1) % 10 === 0) progress(`edits ${i + 1}/${o.runs.edits}: p50 ${r1(median(ms))} ms`);
  }
  return { edit: summarize(ms), edit_failures: failures, edit_budget_hit: budgetHit };
}

async function burst(
  o: InnerOptions,
  tree: { root: string; socket: string; pollIntervalMs: number },
  count: number,
  daemon: Daemon,
  holder: { h: ReturnType<typeof background> },
): Promise<CountResult["burst"]> {
  // Every guest stops. The sampled guests got pre-start hooks (start grace: their rules stay
  // while "starting"), so they get the post-stop Proxmox sends; the rest just lose their run
  // state, and the watcher removes their chains.
  const stopper = busClient(tree.socket);
  await stopper.burst(
    sample(count).map((vmid) => ({ v: 1, type: "hook", vmid, phase: "post-stop" }) as Request),
    60_000,
  );
  stopper.close();
  await holder.h.stop();
  if (!(await waitChains(o.backend, 0, 10 * tree.pollIntervalMs + 10_000))) {
    throw new Error("chains not removed after the guests stopped");
  }
  await sleep(tree.pollIntervalMs + 200);
  const cyclesBefore = daemon.cycles.length;
  // The guests come back; their post-start events go out as fast as one socket sends them.
  holder.h = await startHolder(o.self, count);
  const bus = busClient(tree.socket);
  const reqs: Request[] = vmids(count).map((vmid) => ({
    v: 1,
    type: "hook",
    vmid,
    phase: "post-start",
  }));
  const { sentAt, replies } = await bus.burst(reqs, 60_000);
  bus.close();
  const ok = replies.filter((r) => r?.reply.ok === true);
  const last = ok.length > 0 ? Math.max(...ok.map((r) => r?.at ?? 0)) : Number.NaN;
  const live = guestCount(await saveNat(o.backend));
  return {
    events: count,
    total_ms: r1(last - sentAt),
    replies_ok: ok.length,
    lost: count - ok.length + Math.max(0, count - live),
    chains_missing: Math.max(0, count - live),
    // Known from the debug log only (--debug-log).
    cycles: o.debugLog ? daemon.cycles.length - cyclesBefore : null,
  };
}

async function seed(o: InnerOptions, save: string, count: number): Promise<SeedResult> {
  const argvs = seedArgv(o.backend, guestChains(save));
  const flushArgv = [tool(o.backend, ""), "-w", "-t", "nat", "-F"];
  const restore = [tool(o.backend, "-restore"), "--noflush", "-w", "10"];
  const appendAll = async (list: readonly string[][]) => {
    const times: number[] = [];
    for (const a of list) {
      const r = await timed(a);
      if (r.code !== 0) throw new Error(`${a.join(" ")}: ${r.stderr}`);
      times.push(r.ms);
    }
    return times;
  };
  const extrapolate = argvs.length > 1500;
  if (!extrapolate) {
    await clearTables(o.backend);
    await runOk(restore, seedPayload(argvs));
    const runs: number[] = [];
    let flushMs = 0;
    let first: number[] = [];
    const reps = o.runs.seedReps[String(count)] ?? 3;
    for (let rep = 0; rep < reps; rep++) {
      const t0 = performance.now();
      const f = await timed(flushArgv);
      const times = await appendAll(argvs);
      runs.push(performance.now() - t0);
      flushMs = f.ms;
      first = times;
      progress(`seed-equivalent ${rep + 1}/${reps}: ${Math.round(runs.at(-1) as number)} ms`);
    }
    await clearTables(o.backend);
    return {
      rules: argvs.length,
      extrapolated: false,
      runs_ms: runs.map(r1),
      ms_p50: r1(median(runs)),
      flush_ms: r1(flushMs),
      append_first_ms: r2(mean(first)),
      append_last_ms: r2(mean(first.slice(-Math.min(500, first.length)))),
    };
  }
  // Too long to run in full (legacy appends copy the whole table): the first 500 appends into
  // an empty table, the last 500 into a table holding the others, a flush of the full table;
  // the total assumes per-append cost grows linearly between the two ends.
  const k = 500;
  await clearTables(o.backend);
  progress(`seed-equivalent: first ${k} of ${argvs.length} appends`);
  const firstTimes = await appendAll(argvs.slice(0, k));
  await clearTables(o.backend);
  await runOk(restore, seedPayload(argvs.slice(0, argvs.length - k)));
  progress(`seed-equivalent: last ${k} of ${argvs.length} appends`);
  const lastTimes = await appendAll(argvs.slice(-k));
  const f = await timed(flushArgv);
  const est = f.ms + (argvs.length * (mean(firstTimes) + mean(lastTimes))) / 2;
  await clearTables(o.backend);
  return {
    rules: argvs.length,
    extrapolated: true,
    runs_ms: [r1(est)],
    ms_p50: r1(est),
    flush_ms: r1(f.ms),
    append_first_ms: r2(mean(firstTimes)),
    append_last_ms: r2(mean(lastTimes)),
  };
}

const MB = 1024 * 1024;

async function footprint(daemon: Daemon, socket: string): Promise<Footprint> {
  // /proc first: the ping reply itself allocates a little.
  const { rss } = await daemon.rssMb();
  const smaps = await daemon.smapsMb();
  const bus = busClient(socket);
  const reply = await bus.call({ v: 1, type: "ping" }, 5000);
  bus.close();
  const m =
    reply?.ok && reply.result && typeof reply.result === "object"
      ? ((reply.result as { memory?: Record<string, number> }).memory ?? null)
      : null;
  const mb = (k: string) => (m && typeof m[k] === "number" ? r1((m[k] as number) / MB) : null);
  return {
    rss: r1(rss),
    anon: smaps ? r1(smaps.anon) : null,
    file: smaps ? r1(smaps.file) : null,
    heap_used: mb("heapUsed"),
    heap_total: mb("heapTotal"),
    external: mb("external"),
    array_buffers: mb("arrayBuffers"),
    code: mb("code"),
  };
}

const STAT_CALLS = new Set(["stat", "lstat", "fstat", "newfstatat", "statx", "fstatat64"]);
const OPEN_CALLS = new Set(["open", "openat", "openat2", "creat"]);

/** Counts, per kind, the system calls of an strace -f -y log that name a path under `dir`. */
export function fsCalls(log: string, dir: string): Record<string, number> {
  const out: Record<string, number> = {
    stat: 0,
    open: 0,
    read: 0,
    getdents: 0,
    close: 0,
    other: 0,
  };
  for (const line of log.split("\n")) {
    if (!line.includes(dir)) continue;
    const m = /^(?:\[pid\s+)?\d+\]?\s+(\w+)\(/.exec(line);
    if (!m) continue; // "<... resumed>" halves are counted at their start
    const name = m[1] as string;
    const kind = STAT_CALLS.has(name)
      ? "stat"
      : OPEN_CALLS.has(name)
        ? "open"
        : name === "read" || name === "pread64" || name === "readv"
          ? "read"
          : name === "getdents64" || name === "getdents"
            ? "getdents"
            : name === "close"
              ? "close"
              : "other";
    out[kind] = (out[kind] ?? 0) + 1;
  }
  return out;
}

/** The daemon left alone: CPU over idleSeconds, then file calls under /etc/pve over fsSeconds. */
async function idle(o: InnerOptions, daemon: Daemon, tree: NodeTreeLike): Promise<IdleResult> {
  // Two polls after the reconcile: the watcher's baseline is taken, nothing is pending.
  await sleep(2 * tree.pollIntervalMs + 200);
  const s0 = await daemon.cpuSeconds();
  const ts = performance.now();
  await sleep(o.runs.settleSeconds * 1000);
  const c0 = await daemon.cpuSeconds();
  const t0 = performance.now();
  const settleWall = (t0 - ts) / 1000;
  const perS = (a: number, b: number, wall: number) =>
    wall > 0 ? Math.round(((b - a) / wall) * 10_000) / 10_000 : 0;
  const settle = {
    window_s: r1(settleWall),
    cpu_s_per_s: perS(s0.self, c0.self, settleWall),
    children_cpu_s_per_s: perS(s0.children, c0.children, settleWall),
  };
  await sleep(o.runs.idleSeconds * 1000);
  const c1 = await daemon.cpuSeconds();
  const wall = (performance.now() - t0) / 1000;
  const memory = await footprint(daemon, tree.socket);
  let fs: IdleResult["fs"] = null;
  const out = path.join(o.work, `strace-${daemon.proc.pid}.log`);
  const strace = background([
    "strace",
    "-f",
    "-qq",
    "-y",
    "-e",
    "trace=%file,%desc",
    "-o",
    out,
    "-p",
    String(daemon.proc.pid),
  ]);
  await sleep(300); // attached
  if (strace.alive()) {
    const s0 = performance.now();
    await sleep(o.runs.fsSeconds * 1000);
    const secs = (performance.now() - s0) / 1000;
    await strace.stop("SIGINT", 5000);
    const log = await readFile(out, "utf8").catch(() => "");
    await rm(out, { force: true });
    const counts = fsCalls(log, path.join(tree.root, "etc/pve/"));
    const per = (n: number) => r1(n / secs);
    const per_s = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, per(v)]));
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    fs = {
      window_s: r1(secs),
      per_s,
      stat_open_per_s: per((counts.stat ?? 0) + (counts.open ?? 0)),
      total_per_s: per(total),
    };
  } else {
    progress("strace not available: no file-call figures");
  }
  return {
    settle,
    window_s: r1(wall),
    cpu_s_per_s: perS(c0.self, c1.self, wall),
    children_cpu_s_per_s: perS(c0.children, c1.children, wall),
    fs,
    memory,
  };
}

type NodeTreeLike = { root: string; socket: string; pollIntervalMs: number };

/** Waits (60 s at most) for the daemon's `reconciled` line; throws when it never comes. */
async function reconciled(daemon: Daemon): Promise<{ at: number; ms: number }> {
  const rec = await Promise.race([
    daemon.reconciled,
    sleep(60_000).then(() => null),
    daemon.proc.exited.then(() => null),
  ]);
  if (rec === null) throw new Error(`daemon did not reconcile: ${daemon.errors.join("; ")}`);
  return rec;
}

/** One of the extra idle windows: a daemon on `tree` from empty tables, with `startRunState`'s
 *  guests running; `want` guests must be live after the reconcile. Stops both and clears the
 *  tables afterwards. */
async function idleOnNode(
  o: InnerOptions,
  what: string,
  tree: NodeTreeLike,
  startRunState: () => Promise<{ stop(): Promise<unknown> }>,
  want: number,
): Promise<{ live: number; reconcile_ms: number; idle: IdleResult }> {
  await clearTables(o.backend);
  const runState = await startRunState();
  const daemon = startDaemon(o.daemonBin ?? o.bin, tree.root);
  try {
    progress(`starting the daemon (reconcile, ${what})`);
    const rec = await reconciled(daemon);
    const live = guestCount(await saveNat(o.backend));
    if (live !== want) throw new Error(`${what}: ${live} guests live, want ${want}`);
    const quiet = await idle(o, daemon, tree);
    progress(
      `idle, ${what}: ${r1(quiet.cpu_s_per_s * 100)} % of a core, ${quiet.fs?.stat_open_per_s ?? "?"} stat+open/s under /etc/pve, RSS ${quiet.memory.rss} MB`,
    );
    return { live, reconcile_ms: r1(rec.at - daemon.startedAt), idle: quiet };
  } finally {
    await daemon.stop();
    await runState.stop();
    await clearTables(o.backend);
  }
}

async function learnedIdle(o: InnerOptions, count: number): Promise<LearnedIdle> {
  label = `${o.backend} ${count} guests, learned addresses`;
  const tree = await writeNode(path.join(o.work, `l${count}`), count, o.backend, {
    learned: true,
    store: o.store !== false,
  });
  const r = await idleOnNode(
    o,
    "addresses from the PVE IPAM",
    tree,
    () => startHolder(o.self, count),
    Math.min(count, 250),
  );
  return { guests: count, guests_live: r.live, reconcile_ms: r.reconcile_ms, idle: r.idle };
}

/** Stand-ins for `count` running qemu guests (no qemu here): per guest one `sh` blocked on a
 *  pipe that never delivers, whose command line carries `-pidfile <its pidfile>` as
 *  qemu-server's does, padded with -device arguments to ≈ 5 KB (real ones are 5-15 KB), and the
 *  pidfile naming it. Killed with stop(). */
async function startQemus(
  root: string,
  count: number,
): Promise<{ cmdlineBytes: number; stop(): Promise<void> }> {
  const pad = Array.from({ length: 60 }, () => [
    "-device",
    "virtio-net-pci,mac=BC:24:11:00:00:01,netdev=net0,bus=pci.0,addr=0x12,id=net0",
  ]).flat();
  const procs: ChildProcess[] = [];
  let cmdlineBytes = 0;
  const stop = async () => {
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            p.once("exit", () => resolve());
            p.kill("SIGKILL");
          }),
      ),
    );
  };
  try {
    for (const vmid of vmids(count)) {
      const pidfile = qemuPidfile(root, vmid);
      const argv = ["-c", "read _", "kvm", "-id", String(vmid), ...pad, "-pidfile", pidfile];
      const p = spawn("sh", argv, { stdio: ["pipe", "ignore", "ignore"] });
      procs.push(p);
      if (p.pid === undefined) throw new Error(`cannot start a stand-in for qemu guest ${vmid}`);
      await writeFile(pidfile, `${p.pid}\n`);
      cmdlineBytes = ["sh", ...argv].reduce((n, a) => n + Buffer.byteLength(a) + 1, 0);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { cmdlineBytes, stop };
}

async function qemuIdle(o: InnerOptions, count: number): Promise<QemuIdle> {
  label = `${o.backend} ${count} qemu guests`;
  const tree = await writeNode(path.join(o.work, `q${count}`), count, o.backend, {
    kind: "qemu",
    store: o.store !== false,
  });
  let cmdlineBytes = 0;
  const r = await idleOnNode(
    o,
    "qemu guests",
    tree,
    async () => {
      const qemus = await startQemus(tree.root, count);
      cmdlineBytes = qemus.cmdlineBytes;
      return qemus;
    },
    count,
  );
  return { guests: count, cmdline_bytes: cmdlineBytes, reconcile_ms: r.reconcile_ms, idle: r.idle };
}

const NO_RUNS: Summary = summarize([]);

async function oneCount(o: InnerOptions, count: number): Promise<CountResult> {
  label = `${o.backend} ${count} guests`;
  const tree = await writeNode(path.join(o.work, `n${count}`), count, o.backend, {
    debugLog: o.debugLog === true,
    store: o.store !== false,
  });
  await clearTables(o.backend);
  const holder = { h: await startHolder(o.self, count) };
  let daemon: Daemon | null = null;
  let events: EventLog | null = null;
  try {
    const starts = Math.max(1, o.runs.reconciles);
    const walls: number[] = [];
    const owns: number[] = [];
    for (let i = 1; i < starts; i++) {
      progress(`reconcile ${i}/${starts}: a daemon started, timed and stopped`);
      const d = startDaemon(o.daemonBin ?? o.bin, tree.root);
      try {
        const r = await reconciled(d);
        walls.push(r1(r.at - d.startedAt));
        owns.push(r.ms);
      } finally {
        await d.stop();
      }
      await clearTables(o.backend);
    }
    progress(`reconcile ${starts}/${starts}: starting the daemon measured from here on`);
    daemon = startDaemon(o.daemonBin ?? o.bin, tree.root);
    const rec = await reconciled(daemon);
    walls.push(r1(rec.at - daemon.startedAt));
    owns.push(rec.ms);
    const first = daemon.cycles.find((c) => c.full);
    const reconcileSplit = first ? splitOf(first) : null;
    const save = await saveNat(o.backend);
    const chains = guestChains(save);
    const chainsOk =
      chains.size === count &&
      [...chains.values()].every((g) => g.dnat.length + g.snat.length === RULES_PER_GUEST);
    progress(
      `reconciled in ${walls.at(-1)} ms (daemon: ${rec.ms} ms), chains ok: ${chainsOk}; median of ${starts}: ${median(walls)} ms (${Math.min(...walls)}-${Math.max(...walls)})`,
    );
    const rssReconciled = await daemon.rssMb();
    progress(
      `RSS after the reconcile: ${r1(rssReconciled.rss)} MB (peak so far ${r1(rssReconciled.hwm)})`,
    );
    progress(
      `idle: ${o.runs.settleSeconds} s settling, ${o.runs.idleSeconds} s quiet window, then ${o.runs.fsSeconds} s under strace`,
    );
    const quiet = await idle(o, daemon, tree);
    progress(
      `idle: ${r1(quiet.cpu_s_per_s * 100)} % of a core (settling: ${r1((quiet.settle?.cpu_s_per_s ?? 0) * 100)} %), ${quiet.fs?.stat_open_per_s ?? "?"} stat+open/s under /etc/pve, RSS ${quiet.memory.rss} MB (heap ${quiet.memory.heap_used}/${quiet.memory.heap_total} MB)`,
    );

    events = collectEvents(tree.eventsSocket);
    // The subscription is live once an event gets through (zeromq's slow joiner).
    const ids = sample(count);
    const bus = busClient(tree.socket);
    const joined = await waitFor(
      async () => {
        const t0 = performance.now();
        await bus.call({ v: 1, type: "hook", vmid: ids[0] as number, phase: "pre-start" }, 5000);
        return (await (events as EventLog).wait((a) => a.at >= t0, 300)) !== null;
      },
      10_000,
      10,
    );
    bus.close();
    if (!joined) throw new Error("no events from the daemon");

    const payloads = new Map<number, string>();
    for (const vmid of ids)
      payloads.set(vmid, floorPayload(vmid, chains.get(vmid) ?? { dnat: [], snat: [] }));
    const cycleStart = daemon.cycles.length;
    const af = o.footprint
      ? {
          hook: NO_RUNS,
          hook_pre: NO_RUNS,
          hook_failures: 0,
          node_e0: NO_RUNS,
          bin_true: NO_RUNS,
          bin_version: NO_RUNS,
          apply: NO_RUNS,
          apply_missing: 0,
          apply_outside: NO_RUNS,
          floor: NO_RUNS,
          by_source: {
            hook: { apply: NO_RUNS, floor: NO_RUNS },
            bus: { apply: NO_RUNS, floor: NO_RUNS },
          },
          apply_budget_hit: false,
        }
      : await applyAndFloor(o, tree, events, payloads, ids, count);
    const one = daemon.cycles.slice(cycleStart).filter((c) => c.owners === 1 && !c.full);
    const cycleSplit = {
      load_ms: r1(median(one.map((c) => c.loadMs))),
      read_ms: r1(median(one.map((c) => c.readMs))),
      render_ms: r1(median(one.map((c) => c.renderMs))),
      restore_ms: r1(median(one.map((c) => c.restoreMs))),
      total_ms: r1(median(one.map((c) => c.ms))),
      n: one.length,
      slowest: [...one]
        .sort((a, b) => b.ms - a.ms)
        .slice(0, 3)
        .map(splitOf),
    };
    if (o.debugLog) {
      progress(
        `cycle split p50: load ${cycleSplit.load_ms} ms, render ${cycleSplit.render_ms} ms, ` +
          `restore ${cycleSplit.restore_ms} ms; slowest (load/read/render/restore/total): ${cycleSplit.slowest
            .map((c) => `${c.load_ms}/${c.read_ms}/${c.render_ms}/${c.restore_ms}/${c.total_ms}`)
            .join(", ")}`,
      );
    }

    let ed: Awaited<ReturnType<typeof edits>> = {
      edit: NO_RUNS,
      edit_failures: 0,
      edit_budget_hit: false,
    };
    if (!o.footprint) {
      progress(`edit→live: ${o.runs.edits} edits`);
      ed = await edits(o, tree, events, ids);
    }

    const rssBeforeBurst = await daemon.rssMb();
    progress(
      `burst: ${count} post-start events (RSS before: ${r1(rssBeforeBurst.rss)} MB, peak so far ${r1(rssBeforeBurst.hwm)})`,
    );
    const b = await burst(o, tree, count, daemon, holder);
    progress(`burst: all live in ${b.total_ms} ms, lost ${b.lost}`);
    const rssAfter = await daemon.rssMb();
    const memoryAfter = await footprint(daemon, tree.socket);
    progress(
      `after the burst: RSS ${memoryAfter.rss} MB (peak ${r1(rssAfter.hwm)}), heap ${memoryAfter.heap_used}/${memoryAfter.heap_total} MB`,
    );

    const finalSave = await saveNat(o.backend);
    events.close();
    events = null;
    await daemon.stop();
    const daemonErrors = daemon.errors.slice(0, 10);
    daemon = null;

    let s: SeedResult;
    if (o.footprint) {
      s = {
        rules: 0,
        extrapolated: false,
        runs_ms: [],
        ms_p50: Number.NaN,
        flush_ms: Number.NaN,
        append_first_ms: Number.NaN,
        append_last_ms: Number.NaN,
      };
    } else {
      progress("seed-equivalent (old approach)");
      s = await seed(o, finalSave, count);
      progress(`seed-equivalent: ${s.ms_p50} ms${s.extrapolated ? " (extrapolated)" : ""}`);
    }

    return {
      guests: count,
      rules: count * RULES_PER_GUEST,
      reconcile: {
        wall_ms: r1(median(walls)),
        daemon_ms: r1(median(owns)),
        samples: { wall_ms: walls, daemon_ms: owns },
        chains_ok: chainsOk,
        split: reconcileSplit,
      },
      ...af,
      cycle_split: cycleSplit,
      ...ed,
      burst: b,
      rss_mb: {
        idle: quiet.memory.rss,
        after_reconcile: r1(rssReconciled.rss),
        peak_at_reconcile: r1(rssReconciled.hwm),
        peak_before_burst: r1(rssBeforeBurst.hwm),
        after_burst: r1(rssAfter.rss),
        peak: r1(rssAfter.hwm),
      },
      idle: quiet,
      memory_after_burst: memoryAfter,
      seed: s,
      daemon_errors: daemonErrors,
    };
  } finally {
    events?.close();
    await daemon?.stop();
    await holder.h.stop();
  }
}

export async function runInner(o: InnerOptions): Promise<void> {
  const results: CountResult[] = [];
  for (const count of o.counts) results.push(await oneCount(o, count));
  const largest = results.reduce<CountResult | null>(
    (a, r) => (a === null || r.guests > a.guests ? r : a),
    null,
  );
  if (largest) largest.learned_idle = await learnedIdle(o, largest.guests);
  if (largest) largest.qemu_idle = await qemuIdle(o, largest.guests);
  await clearTables(o.backend);
  await new Promise<void>((resolve) =>
    process.stdout.write(
      `RESULT ${JSON.stringify({ backend: o.backend, counts: results })}\n`,
      () => resolve(),
    ),
  );
}
