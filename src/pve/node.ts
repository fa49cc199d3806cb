// Reads everything the compiler needs from one node (SPEC §2): pve-nat.conf, the Proxmox
// firewall files, the local guests' configs and their run state, and a few host facts.
// A broken Proxmox file is a diagnostic, never an exception: one bad guest must not stop the
// others' forwards. Only a bad pve-nat.conf value throws (the daemon refuses to start on it).

import { readFile } from "node:fs/promises";
import { DEFAULTS, parseConfig } from "../config/conf.js";
import { ConfigError } from "../errors.js";
import type { Config, Diagnostic, NodeInput } from "../model.js";
import { createNodeSource } from "./cache.js";
import { errCode, errText, type NodePaths } from "./nodefiles.js";

export { type NodePaths, nodeName } from "./nodefiles.js";

export interface LoadOptions {
  /** Guests whose pre-start hook ran: "starting" while not yet running. */
  pending?: ReadonlySet<number>;
  /** Use this config instead of reading configPath (check parses it itself to report every
   *  error at once; then no config diagnostics are added here). */
  config?: Config;
}

export interface ConfigResult {
  config: Config;
  errors: Diagnostic[];
  unknownKeys: Diagnostic[];
  /** false when the file does not exist (defaults apply). */
  exists: boolean;
}

/** Reads pve-nat.conf; a missing file means defaults. Unreadable → ConfigError. */
export async function readConfig(configPath: string): Promise<ConfigResult> {
  let text: string;
  try {
    text = await readFile(configPath, "utf8");
  } catch (err) {
    if (errCode(err) === "ENOENT") {
      return {
        config: { ...DEFAULTS, allowHostPorts: [] },
        errors: [],
        unknownKeys: [],
        exists: false,
      };
    }
    throw new ConfigError(`cannot read: ${errText(err)}`, configPath);
  }
  return { ...parseConfig(text, configPath), exists: true };
}

/** The node's sources read once: the same reader the daemon keeps (cache.ts), fresh, so the
 *  CLI and the daemon turn the same files into the same NodeInput. The value is the caller's. */
export async function loadNode(paths: NodePaths, opts: LoadOptions = {}): Promise<NodeInput> {
  // A one-shot run may wait (bounded) for the guest agent; the daemon never does.
  const source = createNodeSource(paths, { agentWaitMs: 2500 });
  await source.refresh({ all: true });
  return source.input(opts);
}
