// Entry point of the single executable: parse the command line, run one subcommand.
import { Command } from "commander";
import { commands } from "./cli/commands.js";

export const VERSION = process.env.PVE_NAT_VERSION ?? "0.0.0-dev";

function program(): Command {
  const p = new Command("pve-nat")
    .description("Port forwarding and outbound NAT for Proxmox VE guests, from firewall rules")
    .version(VERSION, "--version")
    .option("--config <file>", "pve-nat config file (default /etc/pve-nat/pve-nat.conf)")
    .option("--root <dir>", "read and write every absolute path under DIR (simulated node)")
    .option("--node <name>", "node name (default: config `node`, then the short hostname)")
    .option("--json", "machine-readable output")
    .showHelpAfterError();
  for (const register of commands) register(p);
  return p;
}

program()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    process.stderr.write(`pve-nat: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  });
