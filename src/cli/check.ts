// `pve-nat check [vmid]` (SPEC §6): validate pve-nat.conf, every .fw file, the local guests'
// configs and references, on a real host the prerequisites, and — where the live state is the
// node's (cli/live.ts) — every reason a forward cannot carry traffic (issue 11, diagnose/).
// Exit 0 no error, 1 errors, 2 cannot run (thrown errors reach main's handler).

import { access, readdir, readFile } from "node:fs/promises";
import type { Command } from "commander";
import { attachedGuests, readClusterView } from "../cluster/files.js";
import { clusterDiagnostics } from "../cluster/presence.js";
import { type Context, contextFrom, type GlobalOptions } from "../context.js";
import { arpIgnorePath, fwbrDevices, realProcFs } from "../daemon/prereq.js";
import { EXIT_FINDINGS, EXIT_OK, UsageError } from "../errors.js";
import { ENTRY_CHAINS } from "../iptables/chains.js";
import { rawChain } from "../iptables/render.js";
import { createRunner } from "../iptables/runner.js";
import type { Config, Diagnostic, NatPlan } from "../model.js";
import { compile } from "../nat/compile.js";
import { planToJson } from "../nat/json.js";
import { PVE_DIR } from "../paths.js";
import { parseFwFile } from "../pve/fwfile.js";
import { loadNode, readConfig } from "../pve/node.js";
import { checkRefs } from "../pve/refs.js";
import { liveDiagnostics } from "./diagnose.js";
import { diagnosticLine, sortDiagnostics } from "./format.js";
import { narrow, parseVmid } from "./plan.js";

export interface CheckResult {
  plan: NatPlan;
  /** Every finding (config, files, NAT rules, host), sorted by file and line. */
  diagnostics: Diagnostic[];
  exitCode: number;
}

async function readOrReport(abs: string, file: string, out: Diagnostic[]): Promise<string | null> {
  return readFile(abs, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") {
      out.push({
        file,
        line: 0,
        severity: "error",
        message: `cannot read: ${err.code ?? err.message}`,
      });
    }
    return null;
  });
}

/** .fw files the node loader does not read — guests and host.fw of other nodes — are still
 *  checked for syntax and references: a cluster-wide check must not depend on where it runs. */
async function otherFwDiagnostics(ctx: Context, node: string, local: Set<number>, plan: NatPlan) {
  const pve = ctx.path(PVE_DIR);
  const out: Diagnostic[] = [];
  const clusterText = await readFile(`${pve}/firewall/cluster.fw`, "utf8").catch(() => null);
  const cluster =
    clusterText === null ? null : parseFwFile(clusterText, "firewall/cluster.fw", "cluster");
  const files: Array<{ file: string; kind: "guest" | "host" }> = [];
  for (const name of (await readdir(`${pve}/firewall`).catch(() => [] as string[])).sort()) {
    const m = /^(\d+)\.fw$/.exec(name);
    if (m && !local.has(Number(m[1]))) files.push({ file: `firewall/${name}`, kind: "guest" });
  }
  for (const other of (await readdir(`${pve}/nodes`).catch(() => [] as string[])).sort()) {
    if (other !== node) files.push({ file: `nodes/${other}/host.fw`, kind: "host" });
  }
  for (const { file, kind } of files) {
    const text = await readOrReport(`${pve}/${file}`, file, out);
    if (text === null) continue;
    const fw = parseFwFile(text, file, kind, kind === "host" ? cluster : null);
    out.push(...fw.diagnostics, ...checkRefs(fw, cluster));
  }
  // Keep this list free of what the plan already reports.
  const seen = new Set(plan.diagnostics.map((d) => `${d.file}:${d.line}:${d.message}`));
  return out.filter((d) => !seen.has(`${d.file}:${d.line}:${d.message}`));
}

/** The conntrack zone fix (SPEC §4) where fwbr devices exist: the raw zone rule and
 *  arp_ignore=1 on each fwbr device. Reads only. */
async function zoneFixDiagnostics(config: Config, plan: NatPlan): Promise<Diagnostic[]> {
  if (!plan.entry.zoneFix) return [];
  const devs = await fwbrDevices(realProcFs);
  if (devs.length === 0) return [];
  const out: Diagnostic[] = [];
  for (const dev of devs) {
    const file = arpIgnorePath(dev);
    const value = (await readFile(file, "utf8").catch(() => "")).trim();
    if (value !== "" && value !== "1") {
      out.push({
        file,
        line: 0,
        severity: "error",
        message: `${dev} answers ARP (arp_ignore=${value}): guests behind it may learn the wrong gateway MAC; the daemon sets arp_ignore=1 (is pve-nat.service running?)`,
      });
    }
  }
  let raw: string;
  try {
    raw = await (await createRunner(config.iptables)).save("raw");
  } catch (err) {
    const message = `cannot read the raw table to check the conntrack zone rule: ${err instanceof Error ? err.message : String(err)}`;
    return [...out, { file: "iptables:raw", line: 0, severity: "warning", message }];
  }
  const lines = new Set(raw.split("\n"));
  const want = rawChain(plan);
  if (want.length > 0) want.push(`-A PREROUTING -j ${ENTRY_CHAINS.raw}`);
  const missing = want.filter((l) => !lines.has(l));
  if (missing.length > 0) {
    const what = missing[0];
    out.push({
      file: "iptables:raw",
      line: 0,
      severity: "error",
      message: `guests with firewall=1 NICs and forwards run, but the conntrack zone rules are missing (raw: ${what}${missing.length > 1 ? ` and ${missing.length - 1} more` : ""}): masquerade fails for them (is pve-nat.service running?)`,
    });
  }
  return out;
}

/** Host prerequisites (SPEC §4), only on a real host (not under --root). */
async function hostDiagnostics(config: Config, plan: NatPlan): Promise<Diagnostic[]> {
  const out: Diagnostic[] = await zoneFixDiagnostics(config, plan);
  const file = "/proc/sys/net/ipv4/ip_forward";
  const value = (await readFile(file, "utf8").catch(() => "")).trim();
  if (value === "0" && config.ipForward !== "ignore") {
    out.push({
      file,
      line: 0,
      severity: config.ipForward === "check" ? "error" : "warning",
      message:
        config.ipForward === "check"
          ? "IPv4 forwarding is off: forwards cannot work (set ip_forward = enable to let pve-nat turn it on)"
          : "IPv4 forwarding is off; the daemon turns it on when it starts (ip_forward = enable)",
    });
  }
  return out;
}

function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

/** A guest's own files (its .fw and its config), by path relative to /etc/pve. */
const GUEST_FILE = /^(?:firewall\/(\d+)\.fw|nodes\/[^/]+\/(?:qemu-server|lxc)\/(\d+)\.conf)$/;

/** `check <vmid>`: what another guest's files say is not about this one. Shared files
 *  (pve-nat.conf, cluster.fw, host.fw) and node-wide findings stay: they shape every guest. */
function aboutGuest(d: Diagnostic, vmid: number): boolean {
  const m = GUEST_FILE.exec(d.file);
  return m === null || Number(m[1] ?? m[2]) === vmid;
}

export async function runCheck(ctx: Context, vmid: number | null = null): Promise<CheckResult> {
  const conf = await readConfig(ctx.configPath);
  const configDiags = [
    ...conf.errors,
    ...conf.unknownKeys.map((d) => ({ ...d, severity: "error" as const })),
  ];
  const input = await loadNode(
    { path: ctx.path, configPath: ctx.configPath, node: ctx.node },
    { config: conf.config },
  );
  if (vmid !== null && !input.guests[vmid]) {
    // A guest of another node still has its .fw file here (pmxcfs): its syntax can be checked.
    if (!(await exists(ctx.path(`${PVE_DIR}/firewall/${vmid}.fw`)))) {
      throw new UsageError(
        `guest ${vmid} is not configured on node ${input.node} and has no firewall/${vmid}.fw`,
      );
    }
  }
  const plan = compile(input);
  const local = new Set(Object.keys(input.guests).map(Number));
  const all = [
    ...configDiags,
    ...plan.diagnostics,
    ...(await otherFwDiagnostics(ctx, input.node, local, plan)),
    // Members without pve-nat, where attached guests could not start (issue 12 item 2).
    ...clusterDiagnostics(await readClusterView(ctx, input.node), await attachedGuests(ctx)),
    ...(ctx.root ? [] : await hostDiagnostics(conf.config, plan)),
  ];
  const diagnostics = sortDiagnostics([
    ...(vmid === null ? all : all.filter((d) => aboutGuest(d, vmid))),
    ...(await liveDiagnostics(ctx, plan, input, vmid)),
  ]);
  const exitCode = diagnostics.some((d) => d.severity === "error") ? EXIT_FINDINGS : EXIT_OK;
  return { plan: narrow({ ...plan, diagnostics }, vmid), diagnostics, exitCode };
}

function summary(ds: Diagnostic[], forwards: number): string {
  const n = (sev: string) => ds.filter((d) => d.severity === sev).length;
  const plural = (k: number, word: string) => `${k} ${word}${k === 1 ? "" : "s"}`;
  return `${plural(n("error"), "error")}, ${plural(n("warning"), "warning")}, ${plural(forwards, "forward")}\n`;
}

export function register(program: Command): void {
  program
    .command("check [vmid]")
    .description(
      "validate pve-nat.conf, the firewall files and guest configs, and diagnose the forwards on the live node (exit 1 on errors)",
    )
    .action(async (vmidArg: string | undefined, _opts: unknown, cmd: Command) => {
      const ctx = contextFrom(cmd.optsWithGlobals<GlobalOptions>());
      const r = await runCheck(ctx, vmidArg === undefined ? null : parseVmid(vmidArg));
      if (ctx.json) {
        process.stdout.write(`${JSON.stringify(planToJson(r.plan), null, 2)}\n`);
      } else {
        process.stdout.write(r.diagnostics.map((d) => `${diagnosticLine(d)}\n`).join(""));
        process.stdout.write(summary(r.diagnostics, r.plan.forwards.length));
      }
      process.exitCode = r.exitCode;
    });
}
