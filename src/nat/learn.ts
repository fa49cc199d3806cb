import type {
  AddressFacts,
  AddressSource,
  GuestConf,
  GuestNic,
  LearnedIp,
  SdnConfig,
  SdnSubnet,
} from "../model.js";
import { isIPv4 } from "../pve/address.js";
import { usableIPv4 } from "../pve/learned.js";
import { ipToInt, networkOf } from "./ipv4.js";
import type { GuestAddress } from "./resolve.js";

// A guest NIC's address when the rule does not name it (SPEC §8): the first source that
// answers, in this order — the static config, the PVE IPAM (state, then MAC cache), the DHCP
// server (dnsmasq leases, then its static hosts), the node's neighbour table of the NIC's
// bridge, then the guest agent (only with `agent: 1`). Each source is a pure lookup by the
// NIC's MAC in AddressFacts. A learned address must be plausible: a unicast IPv4 and, on an
// SDN VNet with subnets, inside one of them and not its gateway (a lying agent or a stale
// lease for another network never becomes a forward).

const STATIC = /^([0-9.]+)(?:\/([0-9]{1,2}))?$/;

/** The NIC's static IPv4 from the config (`ip=` / `ipconfigN`), or null. */
export function staticAddress(nic: GuestNic): GuestAddress | null {
  const m = nic.ip === null ? null : STATIC.exec(nic.ip);
  if (!m || !isIPv4(m[1] as string)) return null;
  const prefix = m[2] === undefined ? null : Number(m[2]);
  if (prefix !== null && prefix > 32) return null;
  return {
    address: m[1] as string,
    network: prefix === null ? null : networkOf(m[1] as string, prefix),
  };
}

export interface NicAddress {
  address: string;
  source: AddressSource;
  /** The network holding it when known ("10.10.10.0/24"), for hairpin masquerading. */
  network: string | null;
}

export function inCidr(ip: string, cidr: string): boolean {
  const [net, len] = cidr.split("/") as [string, string];
  const size = 2 ** (32 - Number(len));
  const n = ipToInt(ip);
  const base = ipToInt(net);
  return n >= base && n < base + size;
}

/** SDN subnets of the VNet the NIC is bridged to (none: not a VNet, or no IPv4 subnet). */
export function subnetsOf(nic: GuestNic, sdn: SdnConfig): SdnSubnet[] {
  if (nic.bridge === null || !sdn.vnets[nic.bridge]) return [];
  return sdn.subnets.filter((s) => s.vnet === nic.bridge);
}

function zoneOf(nic: GuestNic, sdn: SdnConfig): string | null {
  return nic.bridge === null ? null : (sdn.vnets[nic.bridge]?.zone ?? null);
}

function plausible(ip: string, subnets: readonly SdnSubnet[]): SdnSubnet | true | null {
  if (!usableIPv4(ip)) return null;
  if (subnets.length === 0) return true;
  const s = subnets.find((x) => inCidr(ip, x.cidr));
  return s && s.gateway !== ip ? s : null;
}

/** The best of `list` by `rank` (smaller first), then by address: deterministic. */
function best<T extends { ip: string }>(list: readonly T[], rank: (x: T) => number): T | null {
  let out: T | null = null;
  let outRank = 0;
  for (const x of list) {
    const r = rank(x);
    if (out === null || r < outRank || (r === outRank && ipToInt(x.ip) < ipToInt(out.ip))) {
      out = x;
      outRank = r;
    }
  }
  return out;
}

const NEIGH_RANK: Record<string, number> = { PERMANENT: 0, NOARP: 0, REACHABLE: 0, DELAY: 1 };

/** The address the node has learned for this NIC (everything after the static config). */
export function learnedAddress(
  conf: GuestConf,
  nic: GuestNic,
  facts: AddressFacts,
): NicAddress | null {
  const mac = nic.mac;
  if (mac === null) return null;
  const subnets = subnetsOf(nic, facts.sdn);
  const zone = zoneOf(nic, facts.sdn);
  const ok = <T extends { ip: string }>(list: readonly T[] | undefined) =>
    (list ?? []).filter((x) => plausible(x.ip, subnets) !== null);
  const found = (ip: string, source: AddressSource): NicAddress => {
    const s = plausible(ip, subnets);
    return { address: ip, source, network: s !== null && s !== true ? s.cidr : null };
  };
  const otherZone = (x: LearnedIp) => (zone !== null && x.zone !== zone ? 1 : 0);

  const ipam = best(
    ok(facts.ipam[mac]).filter((e) => e.vmid === null || e.vmid === conf.vmid),
    (e) => otherZone(e) * 2 + (e.vmid === null ? 1 : 0),
  );
  if (ipam) return found(ipam.ip, "ipam");
  const cached = facts.macCache[mac];
  if (cached !== undefined && plausible(cached, subnets) !== null) return found(cached, "ipam");

  // The lease that lasts longest (0 = infinite) in the NIC's zone is the current one.
  const lease = best(ok(facts.leases[mac]), (l) => otherZone(l) * 2 ** 40 - (l.expiry || 2 ** 39));
  if (lease) return found(lease.ip, "lease");
  const host = best(ok(facts.ethers[mac]), otherZone);
  if (host) return found(host.ip, "lease");

  const neigh = best(
    ok(facts.neighbours[mac]).filter((n) => nic.bridge === null || n.dev === nic.bridge),
    (n) => NEIGH_RANK[n.state] ?? 2,
  );
  if (neigh) return found(neigh.ip, "neighbour");

  if (conf.agent) {
    const iface = (facts.agent[conf.vmid] ?? []).find((i) => i.mac === mac);
    const ip = iface?.ips.find((x) => plausible(x, subnets) !== null);
    if (ip !== undefined) return found(ip, "agent");
  }
  return null;
}

/** The NIC's address: its static config first, then what the node learned. */
export function nicAddress(conf: GuestConf, nic: GuestNic, facts: AddressFacts): NicAddress | null {
  const s = staticAddress(nic);
  if (s) return { address: s.address, source: "config", network: s.network };
  // An `ip=` that is neither an address nor dhcp/manual is a typo: nothing to learn for it.
  if (nic.ip !== null && nic.ip !== "dhcp" && nic.ip !== "manual") return null;
  return learnedAddress(conf, nic, facts);
}

/** Per NIC (parallel to conf.nics) its address, or null. */
export function guestNicAddresses(conf: GuestConf, facts: AddressFacts): Array<NicAddress | null> {
  return conf.nics.map((n) => nicAddress(conf, n, facts));
}

/** A comparable summary of guestNicAddresses (the compile memo compares it). */
export function addressesKey(list: ReadonlyArray<NicAddress | null>): string {
  return list.map((a) => (a ? `${a.source}:${a.address}:${a.network ?? ""}` : "-")).join(",");
}

/** What was asked for a NIC without an address, for the forward's `pending` reason. */
export function triedFor(conf: GuestConf, nic: GuestNic): string {
  const cfg = nic.ip === null ? "no ip= in the config" : `ip=${nic.ip}`;
  if (nic.mac === null) return `${cfg}, and net${nic.index} has no MAC to look it up by`;
  const agent = conf.agent ? "the guest agent" : "the guest agent (not enabled: agent: 1)";
  const where = nic.bridge ? ` of ${nic.bridge}` : "";
  return `${cfg}; no IPAM entry, DHCP lease or neighbour entry${where} for ${nic.mac}; ${agent} gave none`;
}
