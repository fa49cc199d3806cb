// Reads everything the compiler needs from one node (SPEC §2): pve-nat.conf, the Proxmox
// firewall files, the local guests' configs and their run state, and a few host facts.
// A broken Proxmox file is a diagnostic, never an exception: one bad guest must not stop the
// others' forwards. Only a bad pve-nat.conf value throws (the daemon refuses to start on it).

import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { DEFAULTS, parseConfig } from "../config/conf.js";
import { ConfigError } from "../errors.js";
import type {
  Config,
  Diagnostic,
  FwFile,
  FwKind,
  GuestKind,
  NodeInput,
  RunState,
} from "../model.js";
import { PVE_DIR } from "../paths.js";
import { parseFwFile } from "./fwfile.js";
import { parseGuestConf } from "./guestconf.js";
import { ALWAYS_PROTECTED, interfaceIPv4, listeningPorts } from "./host.js";
import { checkRefs } from "./refs.js";
import { abstractSockets, lxcCommandSocket, qemuRunning } from "./runstate.js";

export interface NodePaths {
  path(absolute: string): string;
  configPath: string;
  node?: string | undefined;
}

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

/** --node, then config `node`, then the short hostname. */
export function nodeName(paths: NodePaths, config: Config): string {
  return paths.node ?? config.node ?? (hostname().split(".")[0] || "localhost");
}

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

function errText(err: unknown): string {
  return errCode(err) ?? (err instanceof Error ? err.message : String(err));
}

/** Relative-to-/etc/pve path names used in diagnostics and rule origins. */
const rel = {
  cluster: "firewall/cluster.fw",
  host: (node: string) => `nodes/${node}/host.fw`,
  guestDir: (node: string, kind: GuestKind) =>
    `nodes/${node}/${kind === "qemu" ? "qemu-server" : "lxc"}`,
  guestFw: (vmid: number) => `firewall/${vmid}.fw`,
};

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
      const m = /^([1-9]\d{0,8})\.conf$/.exec(name);
      if (!m) continue;
      const vmid = Number(m[1]);
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

/** Parses a .fw file and checks its references. The grammar promises not to throw; should a
 *  bug make it, that one file is reported and skipped rather than stopping every forward. */
function loadFw(
  text: string | null,
  file: string,
  kind: FwKind,
  cluster: FwFile | null,
  diagnostics: Diagnostic[],
): FwFile | null {
  if (text === null) return null;
  try {
    // host.fw: pve-firewall's section rules there depend on what cluster.fw defines.
    const fw = parseFwFile(text, file, kind, kind === "host" ? cluster : null);
    // Reference errors belong to the file they occur in, next to its parse errors.
    fw.diagnostics.push(...checkRefs(fw, kind === "cluster" ? fw : cluster));
    return fw;
  } catch (err) {
    diagnostics.push({
      file,
      line: 0,
      severity: "error",
      message: `internal error: ${errText(err)}`,
    });
    return null;
  }
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

function hash(text: string): string {
  return createHash("sha1").update(text).digest("base64");
}

/** Cheap fingerprint of every source the plan depends on, keyed by what it is. Content hashes,
 *  not mtimes: pmxcfs has one-second mtimes and no inotify for edits from other nodes. */
export async function fingerprint(paths: NodePaths): Promise<Map<string, string>> {
  const fp = new Map<string, string>();
  const ignored: Diagnostic[] = [];
  const configText = await readFile(paths.configPath, "utf8").catch(() => null);
  fp.set("config", hash(configText ?? "\0absent"));
  const { config } = parseConfig(configText ?? "", paths.configPath);
  const node = nodeName(paths, config);
  const read = async (file: string) => hash((await readPve(paths, file, ignored)) ?? "\0absent");

  if (config.publicAddress === "auto") {
    // A DHCP-assigned public address may change under us.
    fp.set("public_address", String(await interfaceIPv4(config.externalInterface)));
  }
  fp.set(rel.cluster, await read(rel.cluster));
  fp.set(rel.host(node), await read(rel.host(node)));
  const sockets = await abstractSockets();
  const guests = await listGuests(paths, node, ignored);
  for (const [vmid, kind] of guests) {
    const confFile = `${rel.guestDir(node, kind)}/${vmid}.conf`;
    fp.set(confFile, await read(confFile));
    fp.set(rel.guestFw(vmid), await read(rel.guestFw(vmid)));
    const running =
      kind === "qemu" ? await qemuRunning(paths.path, vmid) : sockets.has(lxcCommandSocket(vmid));
    fp.set(`run:${vmid}`, running ? "running" : "stopped");
  }
  return fp;
}
