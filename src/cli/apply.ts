// `pve-nat apply [vmid|--all]` and `pve-nat flush` (SPEC §4): through the daemon when it
// answers (one writer); without a daemon, directly under a lock with the same applier.
import type { Command } from "commander";
import { DaemonNotRunning, request } from "../bus/client.js";
import type { Request } from "../bus/protocol.js";
import { contextFrom, type GlobalOptions } from "../context.js";
import { directApply, directFlush } from "../daemon/direct.js";
import { EXIT_FAILURE, UsageError } from "../errors.js";
import { readConfig } from "../pve/node.js";
import { diagnosticLine } from "./format.js";
import { parseVmid } from "./plan.js";

/** A full sync of a large node takes a while; the daemon answers once the rules are live. */
const DAEMON_TIMEOUT_MS = 60_000;

type Outcome = { ok: true; message: string } | { ok: false; error: string };

async function viaDaemonOrDirect(
  opts: GlobalOptions,
  req: Request,
  direct: (o: Parameters<typeof directFlush>[0]) => Promise<string>,
): Promise<Outcome> {
  const ctx = contextFrom(opts);
  const conf = await readConfig(ctx.configPath);
  if (conf.errors.length > 0) {
    return { ok: false, error: conf.errors.map(diagnosticLine).join("\n") };
  }
  try {
    const reply = await request(ctx.path(conf.config.socket), req, DAEMON_TIMEOUT_MS);
    return reply.ok
      ? { ok: true, message: `daemon: ${reply.message}` }
      : { ok: false, error: `daemon: ${reply.error}` };
  } catch (err) {
    if (!(err instanceof DaemonNotRunning)) throw err;
  }
  const paths = { path: ctx.path, configPath: ctx.configPath, node: ctx.node };
  return { ok: true, message: `no daemon: ${await direct({ paths, config: conf.config })}` };
}

function finish(o: Outcome): void {
  if (o.ok) {
    process.stdout.write(`${o.message}\n`);
    process.exitCode = 0;
  } else {
    process.stderr.write(`pve-nat: ${o.error}\n`);
    process.exitCode = EXIT_FAILURE;
  }
}

export function register(program: Command): void {
  program
    .command("apply [vmid]")
    .description("apply one guest's forwards, or everything with --all (resumes after flush)")
    .option("--all", "every guest and the entry chains (a full sync)")
    .action(async (vmidArg: string | undefined, o: { all?: boolean }, cmd: Command) => {
      if ((vmidArg === undefined) === (o.all !== true)) {
        throw new UsageError("apply: give a VMID or --all");
      }
      const vmid = vmidArg === undefined ? null : parseVmid(vmidArg);
      finish(
        await viaDaemonOrDirect(
          cmd.optsWithGlobals<GlobalOptions>(),
          { v: 1, type: "apply", vmid },
          (d) => directApply(d, vmid),
        ),
      );
    });
  program
    .command("flush")
    .description("remove every PVENAT- chain and jump (the daemon pauses until `apply --all`)")
    .action(async (_opts: unknown, cmd: Command) => {
      finish(
        await viaDaemonOrDirect(
          cmd.optsWithGlobals<GlobalOptions>(),
          { v: 1, type: "flush" },
          directFlush,
        ),
      );
    });
}
