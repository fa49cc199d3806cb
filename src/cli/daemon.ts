// `pve-nat daemon` (SPEC §1): run in the foreground until SIGTERM (pve-nat.service).
import type { Command } from "commander";
import { contextFrom, type GlobalOptions } from "../context.js";
import { runDaemon } from "../daemon/main.js";

export function register(program: Command): void {
  program
    .command("daemon")
    .description(
      "run the NAT daemon in the foreground (the only writer of pve-nat's iptables rules)",
    )
    .action(async (_opts: unknown, cmd: Command) => {
      await daemonCommand(cmd.optsWithGlobals<GlobalOptions>());
    });
}

/** `pve-nat daemon` as run: main.ts's fast path calls it without commander, `register` with. */
export async function daemonCommand(opts: GlobalOptions): Promise<void> {
  await runDaemon(contextFrom(opts));
  // Stopped: a handle left open (a timer, a child's pipe) must not keep the process alive.
  process.exit(process.exitCode ?? 0);
}
