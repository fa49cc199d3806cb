// Reads everything the compiler needs from one node (SPEC §2): pve-nat.conf, the Proxmox
// firewall files, the local guests' configs and their run state, and a few host facts.
// A broken Proxmox file is a diagnostic, never an exception: one bad guest must not stop the
// others' forwards. Only a bad pve-nat.conf value throws (the daemon refuses to start on it).

import { readdir, readFile } from "node:fs/promises";
import { DEFAULTS, parseConfig } from "../config/conf.js";
import { ConfigError } from "../errors.js";
import type { Config, Diagnostic, GuestKind, NodeInput, RunState } from "../model.js";
import { PVE_DIR } from "../paths.js";
import { nodeSource } from "./cache.js";
import { parseGuestConf } from "./guestconf.js";
import { ALWAYS_PROTECTED, interfaceIPv4, listeningPorts } from "./host.js";
import { confVmid, errCode, errText, loadFw, type NodePaths, nodeName, rel } from "./nodefiles.js";
import { abstractSockets, lxcCommandSocket, qemuRunning } from "./runstate.js";

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

/** A file under /etc/pve: its text, null when absent, or a diagnostic when unreadable. */
async function readPve(
  paths: NodePaths,
  file: string,
  diagnostics: Diagnostic[],
): Promise<string | null> {
  try {
    return await readFile(paths.path(`${PVE_DIR}/${file}`), "utf8");
  } catch (err) {
    if (errCode(err) !== "ENOENT") {
      diagnostics.push({
        file,
        line: 0,
        severity: "error",
        message: `cannot read: ${errText(err)}`,
      });
    }
    return null;
  }
}

/** Local guest configs: vmid → kind, from nodes/<node>/{qemu-server,lxc}/<vmid>.conf, by vmid. */
async function listGuests(
  paths: NodePaths,
  node: string,
  diagnostics: Diagnostic[],
): Promise<Map<number, GuestKind>> {
  const guests = new Map<number, GuestKind>();
  for (const kind of ["qemu", "lxc"] as const) {
    const dir = rel.guestDir(node, kind);
    let names: string[];
    try {
      names = await readdir(paths.path(`${PVE_DIR}/${dir}`));
    } catch (err) {
      if (errCode(err) !== "ENOENT") {
        diagnostics.push({
          file: dir,
          line: 0,
          severity: "error",
          message: `cannot read: ${errText(err)}`,
        });
      }
      continue;
    }
    for (const name of names.sort()) {
      const vmid = confVmid(name);
      if (vmid === null) continue;
      const other = guests.get(vmid);
      if (other) {
        diagnostics.push({
          file: `${dir}/${name}`,
          line: 0,
          severity: "error",
          message: `VMID ${vmid} is configured both as qemu and lxc guest; the ${other} config is used`,
        });
        continue;
      }
      guests.set(vmid, kind);
    }
  }
  return new Map([...guests].sort((a, b) => a[0] - b[0]));
}

export async function loadNode(paths: NodePaths, opts: LoadOptions = {}): Promise<NodeInput> {
  const diagnostics: Diagnostic[] = [];
  let config: Config;
  if (opts.config) {
    config = opts.config;
  } else {
    const r = await readConfig(paths.configPath);
    const first = r.errors[0];
    if (first) throw new ConfigError(first.message, first.file, first.line);
    config = r.config;
    diagnostics.push(...r.unknownKeys);
  }
  const node = nodeName(paths, config);

  const clusterText = await readPve(paths, rel.cluster, diagnostics);
  const cluster = loadFw(clusterText, rel.cluster, "cluster", null, diagnostics);
  const hostText = await readPve(paths, rel.host(node), diagnostics);
  const host = loadFw(hostText, rel.host(node), "host", cluster, diagnostics);

  const sockets = await abstractSockets();
  const guests: NodeInput["guests"] = {};
  for (const [vmid, kind] of await listGuests(paths, node, diagnostics)) {
    const confFile = `${rel.guestDir(node, kind)}/${vmid}.conf`;
    const confText = await readPve(paths, confFile, diagnostics);
    if (confText === null) continue;
    const conf = parseGuestConf(confText, vmid, kind, confFile);
    const fwText = await readPve(paths, rel.guestFw(vmid), diagnostics);
    const fw = loadFw(fwText, rel.guestFw(vmid), "guest", cluster, diagnostics);
    const running =
      kind === "qemu" ? await qemuRunning(paths.path, vmid) : sockets.has(lxcCommandSocket(vmid));
    const state: RunState = running ? "running" : opts.pending?.has(vmid) ? "starting" : "stopped";
    guests[vmid] = { conf, fw, state };
  }

  let publicAddress: string | null = config.publicAddress;
  if (publicAddress === "auto") {
    publicAddress = await interfaceIPv4(config.externalInterface);
    if (publicAddress === null) {
      diagnostics.push({
        file: paths.configPath,
        line: 0,
        severity: "warning",
        message: `public_address = auto, but ${config.externalInterface} has no IPv4 address: forwards need an explicit address (NAT:<address>:<port>)`,
      });
    }
  }
  const listening = await listeningPorts(publicAddress ?? "0.0.0.0");
  const hostPorts = [...new Set([...ALWAYS_PROTECTED, ...listening])].sort((a, b) => a - b);

  return { node, config, publicAddress, hostPorts, cluster, host, guests, diagnostics };
}

/** Cheap fingerprint of every source the plan depends on, keyed by what it is: "config",
 *  "public_address" (when auto), "firewall/cluster.fw", "nodes/<n>/host.fw", and per local guest
 *  its .conf, its .fw and "run:<vmid>". Values change whenever the content (or run state) does:
 *  pmxcfs has one-second mtimes and no inotify for edits from other nodes, so the cache behind
 *  it re-reads by content (cache.ts). Calls with the same `paths` object share that cache with
 *  the daemon's plan loader, so an apply never re-reads what a poll just read. */
export async function fingerprint(paths: NodePaths): Promise<Map<string, string>> {
  const source = nodeSource(paths);
  await source.refresh({ all: true });
  return source.fingerprint();
}
