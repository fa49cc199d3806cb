// pve-nat driven the way Proxmox drives it, on a simulated node: the daemon in the node's
// namespace, guests "started" through the hookscript, and views of what is live in iptables.
import type { Background, RunResult } from "../helpers/exec.js";
import { sleep, waitFor } from "../helpers/exec.js";
import { createSimNode, type GuestSpec, type SimNode, type SimNodeOptions } from "./harness.js";

export type Phase = "pre-start" | "post-start" | "pre-stop" | "post-stop";

export interface HookRun extends RunResult {
  ms: number;
}

/** Hook wall times seen in this process, for the closing note (rough, not a benchmark). */
export const hookTimes: number[] = [];

export interface Scenario {
  sim: SimNode;
  daemon: Background | null;
  /** Starts `pve-nat daemon` and waits for its "ready" log line (bounded). */
  startDaemon(): Promise<Background>;
  /** SIGTERM; resolves with the exit code. */
  stopDaemon(): Promise<number | null>;
  hook(vmid: number, phase: Phase, env?: NodeJS.ProcessEnv): Promise<HookRun>;
  /** What `qm start` does: pre-start hook, NIC devices + run state, post-start hook. */
  boot(vmid: number): Promise<void>;
  /** What a stop does: run state gone, NIC devices gone, post-stop hook. */
  shutdown(vmid: number): Promise<void>;
  /** `pve-nat <cmd> --json`, parsed. */
  json(args: string[]): Promise<PlanJson>;
  cli(args: string[]): Promise<RunResult>;
  /** Live PVENAT- chains (nat and raw) with their rules, as iptables-save prints them. */
  liveOwned(): Promise<OwnedView>;
  /** The same view of what `pve-nat plan`'s payload makes of the live state (`live`, when the
   *  node's backend is not the default one). */
  plannedOwned(live?: OwnedView): Promise<OwnedView>;
  destroy(): Promise<void>;
}

export interface PlanJson {
  version: number;
  node: string;
  forwards: Array<{
    vmid: number | null;
    direction: "in" | "out";
    proto: string | null;
    public: { address: string | null; ports: string | null };
    private: { address: string | null; ports: string | null };
    source: string | null;
    destination: string | null;
    origin: string;
    state: string;
    reason: string | null;
    counters?: { packets: number; bytes: number } | null;
  }>;
  diagnostics: Array<{ file: string; line: number; severity: string; message: string }>;
  restore?: string;
  daemon?: Record<string, unknown>;
}

/** chain → rule lines ("-A CHAIN …"), chains sorted; plus the jumps from builtin chains. */
export interface OwnedView {
  chains: Record<string, string[]>;
  jumps: string[];
}

const OWNED = /^(?:-A |:)(PVENAT-[A-Z0-9-]+)\b/;

/** Owned chains and jumps from iptables-save or iptables-restore text (both tables). */
export function ownedView(text: string): OwnedView {
  const chains: Record<string, string[]> = {};
  const jumps: string[] = [];
  let table = "";
  for (const raw of text.split("\n")) {
    const line = raw.replace(/^\[\d+:\d+\] /, "").trimEnd();
    if (line.startsWith("*")) table = line.slice(1);
    const m = OWNED.exec(line);
    if (m?.[1]) {
      chains[`${table}/${m[1]}`] ??= [];
      if (line.startsWith("-A")) chains[`${table}/${m[1]}`]?.push(line);
    } else if (/^-[AI] [A-Z]+ .*-j PVENAT-/.test(line)) {
      jumps.push(`${table}/${line.replace(/^-I (\S+) 1 /, "-A $1 ")}`);
    }
  }
  // A restore payload may declare a stale chain only to delete it.
  for (const raw of text.split("\n")) {
    const m = /^-X (PVENAT-[A-Z0-9-]+)/.exec(raw);
    if (m?.[1]) for (const k of Object.keys(chains)) if (k.endsWith(`/${m[1]}`)) delete chains[k];
  }
  const sorted: Record<string, string[]> = {};
  for (const k of Object.keys(chains).sort()) sorted[k] = chains[k] ?? [];
  return { chains: sorted, jumps: jumps.sort() };
}

/** What `before` becomes once `payload` (an `iptables-restore --noflush` text) is applied:
 *  declared chains are emptied and refilled, -X deletes, -D/-I move builtin jumps. */
export function appliedView(before: OwnedView, payload: string): OwnedView {
  const chains: Record<string, string[]> = { ...before.chains };
  const jumps = [...before.jumps];
  let table = "";
  for (const line of payload.split("\n")) {
    if (line.startsWith("*")) table = line.slice(1);
    const decl = /^:(PVENAT-[A-Z0-9-]+) /.exec(line);
    const del = /^-X (PVENAT-[A-Z0-9-]+)$/.exec(line);
    const jump = /^-([DI]) ([A-Z]+)(?: 1)? -j (PVENAT-[A-Z0-9-]+)$/.exec(line);
    const app = /^-A (PVENAT-[A-Z0-9-]+) /.exec(line);
    if (decl?.[1]) chains[`${table}/${decl[1]}`] = [];
    else if (del?.[1]) delete chains[`${table}/${del[1]}`];
    else if (jump) {
      const text = `${table}/-A ${jump[2]} -j ${jump[3]}`;
      if (jump[1] === "I") jumps.push(text);
      else if (jumps.includes(text)) jumps.splice(jumps.indexOf(text), 1);
    } else if (app?.[1]) chains[`${table}/${app[1]}`]?.push(line);
  }
  const sorted: Record<string, string[]> = {};
  for (const k of Object.keys(chains).sort()) sorted[k] = chains[k] ?? [];
  return { chains: sorted, jumps: jumps.sort() };
}

/** Everything pve-nat does not own, as iptables-save prints it, minus timestamps and counters. */
export function foreignLines(save: string): string[] {
  return save
    .split("\n")
    .filter((l) => !l.startsWith("#") && !l.includes("PVENAT-"))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ""));
}

export async function createScenario(
  opts: SimNodeOptions & { guests?: GuestSpec[] } = {},
): Promise<Scenario> {
  const sim = await createSimNode(opts);
  try {
    for (const g of opts.guests ?? []) await sim.addGuest(g);
  } catch (err) {
    await sim.destroy();
    throw err;
  }
  const sc: Scenario = {
    sim,
    daemon: null,
    async startDaemon() {
      const d = sim.startDaemon();
      sc.daemon = d;
      const ready = await waitFor(
        async () => /"msg":"ready"/.test(d.output()) || !d.alive(),
        15_000,
        50,
      );
      if (!ready || !d.alive()) {
        throw new Error(`daemon did not become ready:\n${d.output().slice(-3000)}`);
      }
      return d;
    },
    async stopDaemon() {
      const d = sc.daemon;
      sc.daemon = null;
      if (!d) return null;
      await d.stop(5000);
      return d.exited;
    },
    async hook(vmid, phase, env) {
      const t0 = performance.now();
      const r = await sim.pveNat(["hook", String(vmid), phase], {
        timeoutMs: 20_000,
        env: { ...process.env, ...env },
      });
      const ms = Math.round(performance.now() - t0);
      hookTimes.push(ms);
      return { ...r, ms };
    },
    async boot(vmid) {
      await must(sc.hook(vmid, "pre-start"));
      if (sim.guests.has(vmid)) await sim.plug(vmid);
      await sim.setRunning(vmid, true);
      await must(sc.hook(vmid, "post-start"));
    },
    async shutdown(vmid) {
      await must(sc.hook(vmid, "pre-stop"));
      await sim.setRunning(vmid, false);
      if (sim.guests.has(vmid)) await sim.unplug(vmid);
      await must(sc.hook(vmid, "post-stop"));
    },
    async json(args) {
      const r = await sim.pveNat([...args, "--json"], { timeoutMs: 20_000 });
      try {
        return JSON.parse(r.stdout) as PlanJson;
      } catch {
        throw new Error(
          `pve-nat ${args.join(" ")} --json (exit ${r.code}): ${r.stdout}\n${r.stderr}`,
        );
      }
    },
    cli: (args) => sim.pveNat(args, { timeoutMs: 20_000 }),
    async liveOwned() {
      const nat = await sim.iptablesSave(sim.ns.node, "nat");
      const raw = await sim.iptablesSave(sim.ns.node, "raw");
      return ownedView(`${nat}\n${raw}`);
    },
    async plannedOwned(live) {
      const before = live ?? (await sc.liveOwned());
      const p = await sc.json(["plan"]);
      if (typeof p.restore !== "string") throw new Error("plan --json has no restore text");
      return appliedView(before, p.restore);
    },
    async destroy() {
      await sc.stopDaemon().catch(() => {});
      await sim.destroy();
    },
  };
  return sc;
}

/** A hook must exit 0 and say something on stderr; anything else is a test failure. */
async function must(p: Promise<HookRun>): Promise<HookRun> {
  const r = await p;
  if (r.code !== 0) throw new Error(`hook exited ${r.code}: ${r.stderr}`);
  return r;
}

/** Polls until check() is truthy; returns elapsed ms, or null after timeoutMs. */
export async function within(
  check: () => Promise<boolean>,
  timeoutMs: number,
  stepMs = 50,
): Promise<number | null> {
  const t0 = performance.now();
  for (;;) {
    if (await check()) return Math.round(performance.now() - t0);
    if (performance.now() - t0 > timeoutMs) return null;
    await sleep(stepMs);
  }
}

/** A `pve-nat events` subscriber in the node's namespace that has joined: a subscriber misses
 *  what is published before it joined (zeromq's slow joiner), so `apply --all` is repeated until
 *  an event arrives (bounded). `lines()` parses what it printed so far. */
export async function subscribeEvents<E extends { type: string }>(
  sc: Scenario,
): Promise<{ proc: Background; lines(): E[] }> {
  const proc = sc.sim.spawn(sc.sim.ns.node, [
    ...sc.sim.pveNatArgv(),
    "events",
    "--count",
    "100000",
    "--root",
    sc.sim.root,
  ]);
  const lines = () =>
    proc
      .output()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as E);
  const joined = await waitFor(
    async () => {
      await sc.cli(["apply", "--all"]);
      return lines().some((e) => e.type === "applied");
    },
    10_000,
    300,
  );
  if (!joined) {
    await proc.stop(2000);
    throw new Error(`events saw nothing:\n${proc.output()}`);
  }
  return { proc, lines };
}
