// The simulated node the bench measures (SPEC §7), written by the shared builder
// (test/helpers/simnode.ts): a --root tree with N LXC guests, each with 10 NAT rules (9 port
// forwards + 1 masquerade), and LXC-style run state: one small process in the node's namespace
// listening on N abstract sockets @/var/lib/lxc/<vmid>/command (holdLxcSockets).
import { rm } from "node:fs/promises";
import path from "node:path";
import {
  fwPath,
  guestConf,
  guestFw,
  guestMac,
  makeStore,
  natConf,
  pvePath,
  replaceFile,
  storeCommit,
  writeNode as writeTree,
} from "../../test/helpers/simnode.js";

export { holderNode, holdLxcSockets, qemuPidfile } from "../../test/helpers/simnode.js";

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
  const rules: string[] = [];
  for (let j = 0; j < FORWARDS; j++) {
    const pub = j === 0 && variant === 1 ? editedPort(vmid) : publicPort(vmid, j);
    rules.push(`IN ACCEPT -p tcp -dport ${8000 + j} # NAT:${pub} service ${j}`);
  }
  rules.push("OUT ACCEPT # NAT outbound");
  return guestFw(rules, { enable: true });
}

export interface NodeTree {
  root: string;
  configPath: string;
  socket: string;
  eventsSocket: string;
  pollIntervalMs: number;
}

/** Zones of the learned-address node: the guest range holds 250 addresses, so the IPAM (one
 *  entry per address and subnet) needs a zone per 250 guests. */
const IPAM_ZONE_GUESTS = 250;

/** /etc/pve/sdn/pve-ipam-state.json (SPEC §8 shape) giving every guest guestIp() by its MAC, as
 *  PVE's IPAM does for guests in an SDN zone with DHCP. Guests that share an address (beyond
 *  250) are address conflicts (SPEC §8): the lower VMID keeps it. */
export function ipamState(count: number): string {
  const zones: Record<string, { subnets: Record<string, { ips: Record<string, unknown> }> }> = {};
  for (const vmid of vmids(count)) {
    const zone = `bench${Math.floor((vmid - FIRST_VMID) / IPAM_ZONE_GUESTS)}`;
    zones[zone] ??= { subnets: { "10.10.10.0/24": { ips: { "10.10.10.1": { gateway: 1 } } } } };
    const ips = zones[zone].subnets["10.10.10.0/24"]?.ips as Record<string, unknown>;
    ips[guestIp(vmid)] = {
      vmid: String(vmid),
      mac: guestMac(vmid).toUpperCase(),
      hostname: `ct${vmid}`,
    };
  }
  return `${JSON.stringify({ zones })}\n`;
}

/** Writes a fresh root for `count` guests. Config: defaults but node and backend; with
 *  `debugLog` the daemon logs each cycle's load/read/restore split (at 1000 guests those debug
 *  lines cost the reconcile ≈ 0.2 s, so measured runs keep the default level). With `learned`,
 *  the guest configs say `ip=dhcp` and the addresses come from the PVE IPAM (ipamState); with
 *  `kind` "qemu" the guests are qemu guests (run state: startQemus); without `store` the node
 *  has no pmxcfs store and the daemon stats every guest's .fw each poll (its fallback). */
export async function writeNode(
  root: string,
  count: number,
  backend: "nft" | "legacy",
  {
    debugLog = false,
    learned = false,
    kind = "lxc",
    store = true,
  }: { debugLog?: boolean; learned?: boolean; kind?: "lxc" | "qemu"; store?: boolean } = {},
): Promise<NodeTree> {
  await rm(root, { recursive: true, force: true });
  const pollIntervalMs = 1000;
  const tree = await writeTree({
    root,
    config: natConf({
      comment: "pve-nat bench: simulated node",
      settings: {
        iptables: backend,
        poll_interval_ms: pollIntervalMs,
        log_level: debugLog ? "debug" : "info",
      },
    }),
    // pmxcfs's guest list, as on a real node: the daemon stats only the configs it marks.
    vmlist: true,
    guests: vmids(count).map((vmid) => ({
      vmid,
      kind,
      conf: guestConf({ vmid, kind, ip: learned ? "dhcp" : guestIp(vmid) }),
      fw: fwText(vmid),
    })),
  });
  if (learned) await replaceFile(pvePath(root, "sdn/pve-ipam-state.json"), ipamState(count));
  // pmxcfs's store, as every Proxmox node has it (the bench's writes commit to it like pmxcfs).
  if (store) await makeStore(root);
  return {
    root,
    configPath: tree.configPath,
    socket: path.join(root, "run/pve-nat/bus.sock"),
    eventsSocket: path.join(root, "run/pve-nat/events.sock"),
    pollIntervalMs,
  };
}

/** Write-then-rename, as pmxcfs presents a whole new file to readers. */
export async function editFw(root: string, vmid: number, variant: 0 | 1): Promise<void> {
  await storeCommit(root);
  await replaceFile(fwPath(root, vmid), fwText(vmid, variant));
}
