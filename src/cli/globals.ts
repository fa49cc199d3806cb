// The global flags (SPEC §6), defined once: main.ts gives them to commander, and the hookscript's
// fast path (which starts without commander) reads them with the same table.
import type { GlobalOptions } from "../context.js";

export interface GlobalFlag {
  name: keyof GlobalOptions;
  /** commander's flag syntax: "--root <dir>" takes a value, "--json" does not. */
  flags: string;
  description: string;
}

export const GLOBAL_FLAGS: readonly GlobalFlag[] = [
  {
    name: "config",
    flags: "--config <file>",
    description: "pve-nat config file (default /etc/pve-nat/pve-nat.conf)",
  },
  {
    name: "root",
    flags: "--root <dir>",
    description: "read and write every absolute path under DIR (simulated node)",
  },
  {
    name: "node",
    flags: "--node <name>",
    description: "node name (default: config `node`, then the short hostname)",
  },
  { name: "json", flags: "--json", description: "machine-readable output" },
];

/** Subcommands that may start without commander: run by Proxmox and pve-firewall on every
 *  guest start and firewall reload, they only need their own module and the bus client; and
 *  the daemon, whose start is part of the reconcile at boot (issue 10: commander and the other
 *  commands' modules were ≈ 10–15 ms of it). */
export const FAST_COMMANDS = ["hook", "notify", "daemon"] as const;
export type FastCommand = (typeof FAST_COMMANDS)[number];

export interface FastInvocation {
  command: FastCommand;
  /** Everything after the subcommand that is not a global flag, in order. */
  args: string[];
  opts: GlobalOptions;
}

/**
 * Reads argv (without node and script) as commander would for `hook` and `notify`: global
 * flags before or after the subcommand, `--flag value` or `--flag=value`, anything else kept
 * in order for the subcommand (its unknown options included: both commands accept them and
 * report bad arguments themselves). `daemon` takes nothing but the global flags: with anything
 * else it is left to commander, which reports it. Returns null for everything else, and for
 * whatever commander answers differently (help, version, `--`, a flag without its value), so
 * that commander stays the one authority on those.
 */
export function fastInvocation(argv: readonly string[]): FastInvocation | null {
  const opts: GlobalOptions = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--" || arg === "-h" || arg === "--help" || arg === "--version") return null;
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const flag = GLOBAL_FLAGS.find((f) => f.flags.split(" ")[0] === name);
    if (!flag) {
      rest.push(arg);
      continue;
    }
    if (!flag.flags.includes("<")) {
      if (eq > 0) return null; // `--json=x`: commander's error, not ours
      opts[flag.name as "json"] = true;
      continue;
    }
    let value: string | undefined;
    if (eq > 0) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      i++;
    }
    if (value === undefined) return null;
    opts[flag.name as "config" | "root" | "node"] = value;
  }
  const [command, ...args] = rest;
  if (!FAST_COMMANDS.includes(command as FastCommand)) return null;
  if (command === "daemon" && args.length > 0) return null;
  return { command: command as FastCommand, args, opts };
}
