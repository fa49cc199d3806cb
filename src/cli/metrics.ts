// `pve-nat metrics` (SPEC §8): the Prometheus text exposition of this node — what the daemon
// writes to metrics_textfile. With a daemon: its live plan and counters; without one, what
// the files and the live tables tell alone (pve_nat_daemon_up 0, no daemon counters).
import type { Command } from "commander";
import { request } from "../bus/client.js";
import { type Context, contextFrom, type GlobalOptions } from "../context.js";
import { EXIT_FAILURE } from "../errors.js";
import { type Counters, readForwardCounters } from "../iptables/counters.js";
import { createRunner } from "../iptables/runner.js";
import { metricFamilies } from "../metrics/collect.js";
import { renderExposition } from "../metrics/exposition.js";
import { type DaemonCounters, parseDaemonCounters } from "../metrics/registry.js";
import { compile } from "../nat/compile.js";
import { loadNode, readConfig } from "../pve/node.js";
import { diagnosticLine } from "./format.js";
import { daemonView } from "./status.js";

async function daemonCounters(socket: string, timeoutMs: number): Promise<DaemonCounters | null> {
  try {
    const reply = await request(socket, { v: 1, type: "metrics" }, timeoutMs);
    return reply.ok ? parseDaemonCounters(reply.result) : null;
  } catch {
    return null;
  }
}

export async function metricsText(ctx: Context): Promise<{ text: string; warnings: string[] }> {
  const conf = await readConfig(ctx.configPath);
  if (conf.errors.length > 0) {
    throw new Error(conf.errors.map((d) => diagnosticLine(d)).join("\n"));
  }
  const socket = ctx.path(conf.config.socket);
  const view = await daemonView(socket, 1000);
  const daemon = view.daemon.running ? await daemonCounters(socket, 1000) : null;
  const plan =
    view.plan ??
    compile(
      await loadNode(
        { path: ctx.path, configPath: ctx.configPath, node: ctx.node },
        { config: conf.config },
      ),
    );
  const warnings: string[] = [];
  let counters: Array<Counters | null> = plan.forwards.map(() => null);
  try {
    counters = await readForwardCounters(await createRunner(conf.config.iptables), plan);
  } catch (err) {
    warnings.push(`cannot read live counters: ${err instanceof Error ? err.message : String(err)}`);
  }
  return { text: renderExposition(metricFamilies({ plan, counters, daemon })), warnings };
}

export function register(program: Command): void {
  program
    .command("metrics")
    .description("print this node's metrics in the Prometheus text format")
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = contextFrom(cmd.optsWithGlobals<GlobalOptions>());
      try {
        const r = await metricsText(ctx);
        for (const w of r.warnings) process.stderr.write(`pve-nat: warning: ${w}\n`);
        process.stdout.write(r.text);
      } catch (err) {
        process.stderr.write(`pve-nat: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = EXIT_FAILURE;
      }
    });
}
