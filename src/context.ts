import { DEFAULT_CONFIG, rooted } from "./paths.js";

/** Global flags (SPEC §6), accepted before or after the subcommand. */
export interface GlobalOptions {
  config?: string;
  root?: string;
  node?: string;
  json?: boolean;
}

/** What every subcommand needs to find its files. */
export interface Context {
  root: string | undefined;
  /** Absolute path of pve-nat.conf, already under --root. */
  configPath: string;
  /** --node override, or undefined. */
  node: string | undefined;
  json: boolean;
  /** Maps an absolute path under --root. */
  path(absolute: string): string;
}

export function contextFrom(opts: GlobalOptions): Context {
  const root = opts.root;
  return {
    root,
    configPath: opts.config ?? rooted(root, DEFAULT_CONFIG),
    node: opts.node,
    json: opts.json === true,
    path: (absolute) => rooted(root, absolute),
  };
}
