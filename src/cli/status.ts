// `pve-nat status` (SPEC §6): every forward with its state and live packet/byte counters, and
// the daemon's state. Works without the daemon (then "daemon": {"running": false}).
import type { Command } from "commander";
import { request } from "../bus/client.js";
import { readClusterView } from "../cluster/files.js";
import { type ClusterView, presenceRel } from "../cluster/presence.js";
import { type Context, contextFrom, type GlobalOptions } from "../context.js";
import { readAdmissions } from "../daemon/admission.js";
import type { Admission } from "../diagnose/admission.js";
import { EXIT_FAILURE } from "../errors.js";
import { type Counters, readForwardCounters } from "../iptables/counters.js";
import { createRunner } from "../iptables/runner.js";
import type { Config, NatPlan, NodeInput } from "../model.js";
import { compile } from "../nat/compile.js";
import { planToJson } from "../nat/json.js";
import { loadNode, nodeName, readConfig } from "../pve/node.js";
import { diagnosticLine, FORWARD_HEADERS, forwardRow, sortDiagnostics, table } from "./format.js";

export { type Counters, forwardCounters } from "../iptables/counters.js";

/** What `status` shows of the daemon: its own answer, or why there is none. */
export type DaemonView =
  | ({ running: true } & Record<string, unknown>)
  | { running: false; error?: string };

function daemonLine(d: DaemonView): string {
  if (!d.running) return `daemon: not running${d.error ? ` (${d.error})` : ""}`;
  const parts = [`daemon: running (pid ${String(d.pid ?? "?")}, ${String(d.backend ?? "?")})`];
  if (d.paused) parts.push("PAUSED after flush — run `pve-nat apply --all`");
  parts.push(`last sync ${d.lastSync ? String(d.lastSync) : "never"}`);
  if (d.lastError) parts.push(`last error: ${String(d.lastError)}`);
  return parts.join(", ");
}

/** Notes under the table for forwards live in pve-nat that the guest firewall does not admit
 *  yet (its state stays `active`: pve-nat's part is done). */
function admissionNotes(plan: NatPlan, admissions: ReadonlyMap<number, Admission>): string[] {
  const out: string[] = [];
  for (const [i, a] of [...admissions].sort((x, y) => x[0] - y[0])) {
    const f = plan.forwards[i];
    if (a.state !== "pending" || !f) continue;
    out.push(
      `guest firewall pending: vm${f.vmid} ${f.proto} ${f.public.address ?? "?"}:${f.public.ports ?? "?"} → ${f.private.address ?? "?"}:${f.private.ports ?? "?"} (${f.origin}): ${a.chain} does not admit ${a.port} yet; pve-firewall adds it at its next update (up to 10 s)\n`,
    );
  }
  return out;
}

export function statusText(
  plan: NatPlan,
  counters: Array<Counters | null>,
  daemon: DaemonView,
  admissions: ReadonlyMap<number, Admission> = new Map(),
): string {
  const headers = [...FORWARD_HEADERS, "PKTS", "BYTES"];
  const rows = plan.forwards.map((f, i) => {
    const c = counters[i] ?? null;
    return [...forwardRow(f), c ? String(c.packets) : "-", c ? String(c.bytes) : "-"];
  });
  const out = [`node ${plan.node}\n`, table(headers, rows)];
  const notes = admissionNotes(plan, admissions);
  if (notes.length > 0) out.push("\n", ...notes);
  const ds = sortDiagnostics(plan.diagnostics);
  if (ds.length > 0) out.push("\n", ...ds.map((d) => `${diagnosticLine(d)}\n`));
  out.push("\n", `${daemonLine(daemon)}\n`);
  return out.join("");
}

function asList(v: unknown): Set<number> {
  return new Set(Array.isArray(v) ? v.filter((x): x is number => Number.isInteger(x)) : []);
}

function isPlan(v: unknown): v is NatPlan {
  const p = v as NatPlan | null;
  return (
    typeof p === "object" &&
    p !== null &&
    Array.isArray(p.forwards) &&
    Array.isArray(p.chains) &&
    Array.isArray(p.diagnostics)
  );
}

function isAdmission(v: unknown): v is [number, Admission] {
  if (!Array.isArray(v) || v.length !== 2 || !Number.isInteger(v[0])) return false;
  const a = v[1] as Admission | null;
  return (
    typeof a === "object" &&
    a !== null &&
    (a.state === "pending" || a.state === "accepted") &&
    typeof a.chain === "string" &&
    typeof a.port === "string"
  );
}

/** The daemon's state, the plan it last made live (null: none, or no daemon) and whether the
 *  guest firewall admits its forwards yet. */
export async function daemonView(
  socket: string,
  timeoutMs: number,
): Promise<{ daemon: DaemonView; plan: NatPlan | null; admissions: Map<number, Admission> }> {
  const none = new Map<number, Admission>();
  try {
    const reply = await request(socket, { v: 1, type: "status" }, timeoutMs);
    if (!reply.ok) {
      return { daemon: { running: false, error: reply.error }, plan: null, admissions: none };
    }
    const r = reply.result;
    if (typeof r !== "object" || r === null) {
      return { daemon: { running: true }, plan: null, admissions: none };
    }
    const { plan, admissions, ...rest } = r as Record<string, unknown>;
    return {
      daemon: { ...rest, running: true },
      plan: isPlan(plan) ? plan : null,
      admissions: new Map(Array.isArray(admissions) ? admissions.filter(isAdmission) : []),
    };
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    return {
      daemon: msg === "daemon not running" ? { running: false } : { running: false, error: msg },
      plan: null,
      admissions: none,
    };
  }
}

/** The node's input as the daemon sees it (its lifecycle overrides applied). */
async function inputFor(ctx: Context, config: Config, daemon: DaemonView): Promise<NodeInput> {
  // The daemon's lifecycle overrides, so starting guests show as it sees them.
  const pending = daemon.running ? asList(daemon.pending) : new Set<number>();
  const down = daemon.running ? asList(daemon.down) : new Set<number>();
  const input = await loadNode(
    { path: ctx.path, configPath: ctx.configPath, node: ctx.node },
    { pending, config },
  );
  for (const vmid of down) {
    const g = input.guests[vmid];
    if (g) g.state = "stopped";
  }
  return input;
}

export async function runStatus(opts: GlobalOptions): Promise<number> {
  const ctx = contextFrom(opts);
  const conf = await readConfig(ctx.configPath);
  if (conf.errors.length > 0) {
    for (const d of conf.errors) process.stderr.write(`pve-nat: ${diagnosticLine(d)}\n`);
    return EXIT_FAILURE;
  }
  const view = await daemonView(ctx.path(conf.config.socket), 1000);
  const daemon = view.daemon;
  let plan: NatPlan;
  let input: NodeInput | null = null;
  if (view.plan) {
    plan = { ...view.plan, diagnostics: [...view.plan.diagnostics] };
  } else {
    // Without a daemon (or before its first sync): the plan the files describe.
    input = await inputFor(ctx, conf.config, daemon);
    input.diagnostics.push(...conf.unknownKeys);
    plan = compile(input);
  }
  let counters: Array<Counters | null> = plan.forwards.map(() => null);
  // Whether the guest firewall admits each forward yet (issue 12 item 3): the daemon's answer,
  // else read here. Quiet on failure: it is a note, and the counters' warning already says
  // when iptables cannot be read.
  let admissions = view.admissions;
  try {
    const runner = await createRunner(conf.config.iptables);
    counters = await readForwardCounters(runner, plan);
    if (input)
      admissions = await readAdmissions(plan, input, runner.backend).catch(() => new Map());
  } catch (err) {
    plan.diagnostics.push({
      file: ctx.configPath,
      line: 0,
      severity: "warning",
      message: `cannot read live counters: ${err instanceof Error ? err.message : String(err)}`,
    });
  }
  if (ctx.json) {
    const guestFirewall = plan.forwards.map((_, i) => admissions.get(i)?.state ?? null);
    const obj = planToJson(
      { ...plan, diagnostics: sortDiagnostics(plan.diagnostics) },
      { counters, daemon, guestFirewall },
    );
    process.stdout.write(`${JSON.stringify(obj, null, 2)}\n`);
  } else {
    process.stdout.write(statusText(plan, counters, daemon, admissions));
  }
  return 0;
}

/** `status --cluster` as JSON: one entry per node (members and node directories), with what
 *  its daemon last published in nodes/<node>/pve-nat.json. */
export function clusterJson(view: ClusterView): Record<string, unknown> {
  const names = [...new Set([...view.members, ...view.presence.keys()])].sort();
  return {
    version: 1,
    node: view.self,
    members_from: view.membersFrom,
    nodes: names.map((node) => {
      const p = view.presence.get(node);
      const ok = p !== undefined && !("error" in p);
      return {
        node,
        member: view.members.includes(node),
        pve_nat: ok ? p.pve_nat : null,
        started: ok ? p.started || null : null,
        updated: ok ? p.updated || null : null,
        error: p && "error" in p ? `${presenceRel(node)}: ${p.error}` : null,
        forwards: ok ? p.forwards : [],
        more: ok ? p.more : 0,
      };
    }),
  };
}

export function clusterText(view: ClusterView): string {
  const j = clusterJson(view) as { nodes: Array<Record<string, unknown>> };
  const nodeRows = j.nodes.map((n) => {
    const fw = n.forwards as unknown[];
    const count = fw.length + (n.more as number);
    const note =
      n.error !== null
        ? String(n.error)
        : n.pve_nat === null
          ? `pve-nat not installed (no ${presenceRel(String(n.node))})${
              n.member ? ": attached guests cannot start here" : ""
            }`
          : n.member
            ? ""
            : "not a cluster member";
    return [
      String(n.node),
      (n.pve_nat as string | null) ?? "-",
      (n.updated as string | null) ?? "-",
      n.pve_nat === null ? "-" : String(count),
      note,
    ];
  });
  const out = [
    `cluster (members from ${view.membersFrom})\n`,
    table(["NODE", "PVE-NAT", "UPDATED", "FORWARDS", "NOTE"], nodeRows),
  ];
  const fwRows: string[][] = [];
  for (const n of j.nodes) {
    for (const f of n.forwards as Array<Record<string, unknown>>) {
      fwRows.push([
        String(n.node),
        f.vmid === null ? "-" : String(f.vmid),
        String(f.direction),
        (f.proto as string | null) ?? "all",
        String(f.public),
        String(f.private),
        String(f.state),
      ]);
    }
    if ((n.more as number) > 0)
      fwRows.push([String(n.node), "…", `${n.more} more`, "", "", "", ""]);
  }
  if (fwRows.length > 0) {
    out.push("\n", table(["NODE", "VMID", "DIR", "PROTO", "PUBLIC", "PRIVATE", "STATE"], fwRows));
  }
  return out.join("");
}

export async function runClusterStatus(opts: GlobalOptions): Promise<number> {
  const ctx = contextFrom(opts);
  const conf = await readConfig(ctx.configPath);
  const view = await readClusterView(ctx, nodeName(ctx, conf.config));
  process.stdout.write(
    ctx.json ? `${JSON.stringify(clusterJson(view), null, 2)}\n` : clusterText(view),
  );
  return 0;
}

export function register(program: Command): void {
  program
    .command("status")
    .description("forwards with their state and live counters, and the daemon's state")
    .option("--cluster", "every node's forwards, as its daemon publishes them in /etc/pve")
    .action(async (opts: { cluster?: boolean }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      process.exitCode = opts.cluster ? await runClusterStatus(globals) : await runStatus(globals);
    });
}
