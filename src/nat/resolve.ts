import type { AddressSource, FwFile, GuestConf, GuestNic } from "../model.js";
import { netIp, parseAddressRef } from "../pve/address.js";
import { type IpSet, ipToInt, singleAddress, subtract, union } from "./ipv4.js";
import { type NicAddress, staticAddress, triedFor } from "./learn.js";

// Address references of a NAT rule → exact IPv4 sets, and the guest's own address from its
// config. Lookups follow pve-firewall: a guest's aliases/ipsets first, then the cluster's;
// `dc/` and `guest/` pick one; rules of security groups see only the cluster's.

export interface AddrScope {
  guest: FwFile | null;
  cluster: FwFile | null;
}

/** IPv6 entries of a mixed ipset, left out of the IPv4 set. */
export interface SkippedV6 {
  ipset: string;
  count: number;
}

export type Resolved =
  | { kind: "v4"; set: IpSet; single: string | null; skipped?: SkippedV6 }
  | { kind: "v6" }
  | { kind: "error"; message: string };

type Block =
  | { kind: "v4"; set: IpSet; size: number }
  | { kind: "v6" }
  | { kind: "error"; message: string };

function block(text: string): Block {
  const ip = netIp(text);
  if (!ip) return { kind: "error", message: `invalid address '${text}'` };
  if (ip.family === 6) return { kind: "v6" };
  const lo = Number(ip.first);
  const hi = Number(ip.last);
  return { kind: "v4", set: [{ lo, hi }], size: hi - lo + 1 };
}

function lookup<T>(
  scope: AddrScope,
  which: "dc" | "guest" | null,
  get: (fw: FwFile) => T | undefined,
): T | undefined {
  const guest = scope.guest && which !== "dc" ? get(scope.guest) : undefined;
  if (guest !== undefined || which === "guest") return guest;
  return scope.cluster ? get(scope.cluster) : undefined;
}

function resolveAlias(name: string, which: "dc" | "guest" | null, scope: AddrScope): Block {
  const alias = lookup(scope, which, (fw) => fw.aliases[name]);
  if (!alias)
    return { kind: "error", message: `undefined alias '${which ? `${which}/` : ""}${name}'` };
  return block(alias.cidr);
}

function resolveIpset(
  name: string,
  which: "dc" | "guest" | "sdn" | null,
  scope: AddrScope,
): Resolved {
  const label = `+${which ? `${which}/` : ""}${name}`;
  if (which === "sdn")
    return { kind: "error", message: `SDN ipset '${label}' is not supported in NAT rules` };
  let owner: "guest" | "cluster" = "guest";
  let ipset = which === "dc" ? undefined : scope.guest?.ipsets[name];
  if (!ipset && which !== "guest") {
    ipset = scope.cluster?.ipsets[name];
    owner = "cluster";
  }
  if (!ipset) return { kind: "error", message: `undefined ipset '${label}'` };
  // Aliases inside a cluster ipset are the cluster's.
  const inner: AddrScope = owner === "cluster" ? { guest: null, cluster: scope.cluster } : scope;
  const entries: Array<{ set: IpSet; size: number; nomatch: boolean }> = [];
  let v6 = 0;
  for (const e of ipset.entries) {
    const ref = parseAddressRef(e.cidr);
    let b: Block;
    if ("error" in ref) b = { kind: "error", message: ref.error };
    else if (ref.kind === "alias") b = resolveAlias(ref.name, ref.scope, inner);
    else if (ref.kind === "list" && ref.items.length === 1) b = block(e.cidr);
    else b = { kind: "error", message: `invalid ipset entry '${e.cidr}'` };
    if (b.kind === "error")
      return { kind: "error", message: `ipset '${label}' line ${e.line}: ${b.message}` };
    if (b.kind === "v6") {
      v6++;
      continue;
    }
    entries.push({ set: b.set, size: b.size, nomatch: e.nomatch });
  }
  // ipset hash:net semantics: the most specific entry decides, so apply widest first.
  entries.sort((a, b) => b.size - a.size);
  let set: IpSet = [];
  for (const e of entries) set = e.nomatch ? subtract(set, e.set) : union(set, e.set);
  if (set.length === 0) {
    if (v6 > 0) return { kind: "v6" };
    return { kind: "error", message: `ipset '${label}' has no IPv4 address (it matches nothing)` };
  }
  if (v6 > 0) return { kind: "v4", set, single: null, skipped: { ipset: label, count: v6 } };
  return { kind: "v4", set, single: null };
}

export function resolveAddress(text: string, scope: AddrScope): Resolved {
  const ref = parseAddressRef(text);
  if ("error" in ref) return { kind: "error", message: ref.error };
  if (ref.kind === "ipset") return resolveIpset(ref.name, ref.scope, scope);
  let blocks: Block[];
  if (ref.kind === "alias") blocks = [resolveAlias(ref.name, ref.scope, scope)];
  else blocks = ref.items.map((i) => block(i.text));
  let set: IpSet = [];
  for (const b of blocks) {
    if (b.kind !== "v4") return b;
    set = union(set, b.set);
  }
  return { kind: "v4", set, single: singleAddress(set) };
}

/** An optional -source/-dest: null when absent, "ipv6" when it names IPv6 (unsupported). */
export function resolveOptional(
  text: string | null,
  scope: AddrScope,
): { set: IpSet; single: string | null; skipped?: SkippedV6 } | null | "ipv6" | { error: string } {
  if (text === null) return null;
  const r = resolveAddress(text, scope);
  if (r.kind === "v6") return "ipv6";
  if (r.kind === "error") return { error: r.message };
  return r.skipped
    ? { set: r.set, single: r.single, skipped: r.skipped }
    : { set: r.set, single: r.single };
}

/** The warning for a mixed ipset whose IPv6 entries a NAT rule leaves out (SPEC §2.2). */
export function skippedMessage(option: "-source" | "-dest", s: SkippedV6): string {
  const entries = s.count === 1 ? "1 IPv6 entry" : `${s.count} IPv6 entries`;
  return `ipset '${s.ipset}' (${option}) has ${entries}: skipped, this NAT rule uses only its IPv4 entries (IPv6 is not NATed)`;
}

// ---------------------------------------------------------------------------------------------
// The guest's configured address

/** The NICs a rule's filter applies to: its -i (or its GROUP line's), else every NIC. */
export function ruleNics(nics: readonly GuestNic[], iface: string | null): GuestNic[] {
  return iface === null ? [...nics] : nics.filter((n) => `net${n.index}` === iface);
}

export interface GuestAddress {
  address: string;
  /** "10.10.10.0/24" when the config gives a prefix. */
  network: string | null;
}

function setting(conf: GuestConf, n: number): string {
  return conf.kind === "lxc" ? `net${n}: …,ip=10.10.10.x/24` : `ipconfig${n}: ip=10.10.10.x/24`;
}

/** Every static IPv4 address in the guest's config, in NIC order. */
export function staticAddresses(conf: GuestConf): string[] {
  return conf.nics.flatMap((n) => {
    const a = staticAddress(n);
    return a ? [a.address] : [];
  });
}

/** What the errors below end with: only an error says it, so it is made then. */
function hintFor(option: "-dest" | "-source"): string {
  return `or name the guest address with ${option}`;
}

function addressOf(a: NicAddress): GuestAddress & { source: AddressSource } {
  return { address: a.address, network: a.network, source: a.source };
}

/** The address on the NIC named by `iface` (-i netN), or on the only NIC with an address
 *  (a static one first, then a learned one). `found` is nat/learn.ts's answer per NIC
 *  (parallel to conf.nics). Nothing known yet (but learnable) → pending, not an error. */
export function guestAddress(
  conf: GuestConf,
  iface: string | null,
  option: "-dest" | "-source",
  found: ReadonlyArray<NicAddress | null>,
): (GuestAddress & { source: AddressSource }) | { error: string } | { pending: string } {
  if (iface !== null) {
    const m = /^net([0-9]+)$/.exec(iface);
    const i = m ? conf.nics.findIndex((n) => n.index === Number(m[1])) : -1;
    const nic = conf.nics[i];
    if (!nic)
      return {
        error: `guest ${conf.vmid} has no NIC ${iface}: name an existing netN ${hintFor(option)}`,
      };
    const addr = found[i];
    if (addr) return addressOf(addr);
    if (nic.ip !== null && nic.ip !== "dhcp" && nic.ip !== "manual") {
      return {
        error: `${iface} of guest ${conf.vmid} has ip=${nic.ip}: set a static one (${setting(conf, nic.index)}) ${hintFor(option)}`,
      };
    }
    return { pending: `no address known yet for ${iface}: ${triedFor(conf, nic)}` };
  }
  // The one NIC with a static address, else the only one with any: the usual guest, and each
  // rule of a guest asks (ten per guest at 1000 guests), so counted without building lists;
  // those are made only for the error that names several.
  let any: NicAddress | null = null;
  let anyCount = 0;
  let fixed: NicAddress | null = null;
  let fixedCount = 0;
  for (let i = 0; i < conf.nics.length; i++) {
    const a = found[i];
    if (!a) continue;
    any = a;
    anyCount++;
    if (a.source === "config") {
      fixed = a;
      fixedCount++;
    }
  }
  if (fixed !== null && fixedCount === 1) return addressOf(fixed);
  if (any !== null && fixedCount === 0 && anyCount === 1) return addressOf(any);
  if (anyCount > 1) {
    const withAddr = conf.nics.flatMap((n, i) => {
      const a = found[i];
      return a ? [{ n, a }] : [];
    });
    const statics = withAddr.filter((x) => x.a.source === "config");
    const pool = statics.length > 0 ? statics : withAddr;
    const names = pool
      .map((f) => `net${f.n.index}${f.a.source === "config" ? "" : ` (${f.a.source})`}`)
      .join(", ");
    return {
      error: `guest ${conf.vmid} has several IPv4 addresses (${names}): pick the NIC with -i netN ${hintFor(option)}`,
    };
  }
  const first = conf.nics[0];
  const learnable = conf.nics.filter((n) => n.ip === null || n.ip === "dhcp" || n.ip === "manual");
  if (!first || learnable.length === 0) {
    const bad = conf.nics.find((n) => n.ip !== null);
    const what = bad ? ` (net${bad.index} has ip=${bad.ip})` : "";
    return {
      error: `guest ${conf.vmid} has no static IPv4 address${what}: set one (${setting(conf, first?.index ?? 0)}) ${hintFor(option)}`,
    };
  }
  const tried = learnable.map((n) => `net${n.index}: ${triedFor(conf, n)}`).join("; ");
  return { pending: `no address known yet (${tried})` };
}

/** The configured network (of any of `nics`) that holds `address`, for hairpin masquerading. */
export function networkFor(address: string, nics: readonly GuestNic[]): string | null {
  const ip = ipToInt(address);
  for (const nic of nics) {
    const a = staticAddress(nic);
    if (!a?.network) continue;
    const [net, len] = a.network.split("/") as [string, string];
    const size = 2 ** (32 - Number(len));
    if (ip >= ipToInt(net) && ip < ipToInt(net) + size) return a.network;
  }
  return null;
}

type OptionalEnd = Exclude<ReturnType<typeof resolveOptional>, "ipv6" | { error: string }>;

/** A rule's -source and -dest resolved for one build, with the skipped-IPv6 warnings said. */
export function resolveEnds(
  eff: { source: string | null; dest: string | null },
  scope: AddrScope,
  note: (severity: "warning", message: string) => void,
): { source: OptionalEnd; dest: OptionalEnd } | "ipv6" | { error: string } {
  const source = resolveOptional(eff.source, scope);
  const dest = resolveOptional(eff.dest, scope);
  if (dest === "ipv6" || source === "ipv6") return "ipv6";
  if (dest !== null && "error" in dest) return dest;
  if (source !== null && "error" in source) return source;
  if (source?.skipped) note("warning", skippedMessage("-source", source.skipped));
  if (dest?.skipped) note("warning", skippedMessage("-dest", dest.skipped));
  return { source, dest };
}
