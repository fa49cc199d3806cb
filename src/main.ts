// Entry point of the single executable: parse the command line, run one subcommand.
//
// Start-up time matters: Proxmox runs `pve-nat hook` on every guest start and waits for it. The
// bundle is CommonJS, where every statically imported module is evaluated at start; modules
// reached only through `await import()` are evaluated when that runs. So this file imports
// nothing heavy: `--version`, `hook` and `notify` never load commander or the other commands
// (which pull in pino, child_process and the daemon), `daemon` loads only its own, and
// everything else loads them on demand.

import { type FastInvocation, fastInvocation, GLOBAL_FLAGS } from "./cli/globals.js";
import { exitFor } from "./errors.js";
import { VERSION } from "./version.js";

async function runFast(fast: FastInvocation): Promise<void> {
  if (fast.command === "hook") {
    const { hookCommand } = await import("./cli/hook.js");
    await hookCommand(fast.args, fast.opts);
  } else if (fast.command === "daemon") {
    const { daemonCommand } = await import("./cli/daemon.js");
    await daemonCommand(fast.opts);
  } else {
    const { notifyCommand } = await import("./cli/notify.js");
    await notifyCommand(fast.args, fast.opts);
  }
}

async function runCommander(argv: string[]): Promise<void> {
  const [{ Command }, { commands }] = await Promise.all([
    import("commander"),
    import("./cli/commands.js"),
  ]);
  const program = new Command("pve-nat")
    .description("Port forwarding and outbound NAT for Proxmox VE guests, from firewall rules")
    .version(VERSION, "--version")
    .showHelpAfterError();
  for (const flag of GLOBAL_FLAGS) program.option(flag.flags, flag.description);
  for (const register of commands) register(program);
  await program.parseAsync(argv);
}

async function main(argv: string[]): Promise<void> {
  const args = argv.slice(2);
  // What commander prints for it, without loading commander.
  if (args.length === 1 && args[0] === "--version") {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  const fast = fastInvocation(args);
  if (fast) await runFast(fast);
  else await runCommander(argv);
}

main(process.argv).catch((err: unknown) => {
  const { code, message } = exitFor(err);
  process.stderr.write(`pve-nat: ${message}\n`);
  process.exitCode = code;
});
