// Plain data passed between the pipeline stages (SPEC §2–§6). No behaviour lives here:
// every stage takes these values as arguments and returns new ones, so the core stays pure.

export type Severity = "error" | "warning" | "info";

/** One problem at one line. `file` is relative to /etc/pve ("firewall/107.fw"); line is 1-based
 *  (0 = the file as a whole). pve-nat's own config file uses its absolute path. */
export interface Diagnostic {
  file: string;
  line: number;
  severity: Severity;
  message: string;
}

// ---------------------------------------------------------------------------------------------
// pve/fwfile.ts — one Proxmox firewall file, parsed the way pve-firewall parses it.

export type FwKind = "cluster" | "host" | "guest";
export type RuleType = "in" | "out" | "forward" | "group";

export interface FwRule {
  /** Path relative to /etc/pve, e.g. "firewall/107.fw". */
  file: string;
  line: number;
  enabled: boolean;
  type: RuleType;
  /** ACCEPT | DROP | REJECT (upper case) for rules; for type "group" the group name (lower case). */
  action: string;
  /** Macro name as spelled in pve-firewall's macro table ("SSH"), or null. */
  macro: string | null;
  /** -i, e.g. "net0". */
  iface: string | null;
  /** -source / -dest exactly as written (trimmed): "10.0.0.1", "+dc/office", "web", "a-b,c". */
  source: string | null;
  dest: string | null;
  /** -p as written, lower-cased ("tcp", "udp", "icmp", "6"). */
  proto: string | null;
  /** -dport / -sport as written ("22", "80,443", "1000:2000", "ssh"). */
  dport: string | null;
  sport: string | null;
  icmpType: string | null;
  log: string | null;
  /** Text after '#', trimmed; null when the line has no comment. Never reaches iptables. */
  comment: string | null;
}

export interface FwAlias {
  /** As written; lookups use the lower-cased key of FwFile.aliases. */
  name: string;
  /** The address as written (IPv4/IPv6, optionally CIDR). */
  cidr: string;
  line: number;
}

export interface FwIpsetEntry {
  /** Address, CIDR, range, or alias name as written (without the leading '!'). */
  cidr: string;
  /** A '!' entry: excluded from the set. */
  nomatch: boolean;
  line: number;
}

export interface FwIpset {
  name: string;
  line: number;
  entries: FwIpsetEntry[];
}

export interface FwGroup {
  name: string;
  line: number;
  rules: FwRule[];
}

export interface FwFile {
  file: string;
  kind: FwKind;
  /** [OPTIONS] with lower-cased keys, values as written. */
  options: Record<string, string>;
  rules: FwRule[];
  /** Keyed by lower-cased name. */
  aliases: Record<string, FwAlias>;
  /** Keyed by lower-cased name. */
  ipsets: Record<string, FwIpset>;
  /** Security groups ([group name], cluster.fw only); keyed by lower-cased name. */
  groups: Record<string, FwGroup>;
  diagnostics: Diagnostic[];
  /** Set by parseFwFile. A file built by hand (tests) may leave it out; reference checks then
   *  see only the final tables above. */
  trace?: FwTrace;
}

/**
 * What the reference checks (pve/refs.ts) need beyond the final tables. pve-firewall checks each
 * reference against what it has read so far, so they need every definition's line (a repeated
 * alias or [IPSET x] header replaces the earlier one in the tables), every alias entry of every
 * ipset section, and the macro checks that wait for an alias's IP family.
 */
export interface FwTrace {
  /** Lower-cased alias name → its definitions in file order. */
  aliasDefs: Map<string, Array<{ line: number; family: 4 | 6 }>>;
  /** Ipset name → the lines of its headers. */
  ipsetDefs: Map<string, number[]>;
  ipsetAliasEntries: Array<{ set: string; line: number; cidr: string }>;
  /** Rules of every [group] section, also of those a repeated header replaced. */
  groupRules: FwRule[];
  /** Line → a macro rule's -p / -dport / -sport as written, for the macro check that waits for
   *  an alias's family (its IPv4 and IPv6 variants differ). */
  deferredMacros: Map<number, Record<"proto" | "dport" | "sport", string | null>>;
}

// ---------------------------------------------------------------------------------------------
// pve/guestconf.ts — one guest's Proxmox config (current section only, not snapshots).

export type GuestKind = "qemu" | "lxc";

export interface GuestNic {
  /** N of netN. */
  index: number;
  bridge: string | null;
  /** firewall=1 on the NIC. */
  firewall: boolean;
  /** The NIC's configured IPv4 as written: "10.10.10.5/24", "dhcp", "manual", or null (none).
   *  LXC: `ip=` of netN; qemu: `ip=` of cloud-init ipconfigN. */
  ip: string | null;
  /** The NIC's MAC, lower case (`virtio=MAC` / `e1000=MAC` on qemu, `hwaddr=` on LXC), or null. */
  mac: string | null;
  /** The NIC's configured IPv4 default gateway (`gw=` of netN / ipconfigN), or null. Optional
   *  for hand-built NICs; the parser always sets it. */
  gw?: string | null;
}

export interface GuestConf {
  vmid: number;
  kind: GuestKind;
  /** Path relative to /etc/pve, e.g. "nodes/pve1/qemu-server/107.conf". */
  file: string;
  /** qemu `name`, lxc `hostname`. */
  name: string | null;
  nics: GuestNic[];
  /** `hookscript:` value, e.g. "local:snippets/pve-nat-hook". */
  hookscript: string | null;
  /** qemu `agent: 1` / `agent: enabled=1,…`: the guest agent may be asked for addresses. */
  agent: boolean;
  diagnostics: Diagnostic[];
}

// ---------------------------------------------------------------------------------------------
// config/conf.ts — /etc/pve-nat/pve-nat.conf (SPEC §5).

export interface Config {
  externalInterface: string;
  /** "auto" or an IPv4 address. */
  publicAddress: string;
  allowHostPorts: number[];
  hairpin: boolean;
  hostAccess: boolean;
  ipForward: "enable" | "check" | "ignore";
  conntrackZoneFix: "auto" | "yes" | "no";
  iptables: "auto" | "nft" | "legacy";
  /** null = short hostname, resolved by the shell. */
  node: string | null;
  pollIntervalMs: number;
  driftIntervalMs: number;
  startGraceMs: number;
  hookTimeoutMs: number;
  socket: string;
  eventsSocket: string;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace";
  /** node_exporter textfile the daemon writes its metrics to; null = `none` (disabled). */
  metricsTextfile: string | null;
}

// ---------------------------------------------------------------------------------------------
// pve/node.ts (I/O shell) → nat/compile.ts: everything the compiler needs, already read.

export type RunState = "running" | "starting" | "stopped";

/** The host's LISTEN sockets (tcp and tcp6) by bound address: `any` = 0.0.0.0 or :: (every
 *  address), `at` = one IPv4 address (plain or v4-mapped). Ports sorted, addresses sorted. */
export interface HostPorts {
  any: number[];
  at: Record<string, number[]>;
}

export interface NodeInput {
  node: string;
  config: Config;
  /** The resolved public address (config, or the external interface's first IPv4), or null. */
  publicAddress: string | null;
  /** TCP ports the host itself listens on (22, 8006, 3128 are protected on the public address
   *  whether listening or not: nat/settle.ts adds them). */
  hostPorts: HostPorts;
  cluster: FwFile | null;
  host: FwFile | null;
  /** Local guests only, keyed by vmid. `fw` is null when the guest has no .fw file. */
  guests: Record<number, { conf: GuestConf; fw: FwFile | null; state: RunState }>;
  /** What the node knows about guest addresses beyond their configs (SPEC §8). */
  addresses: AddressFacts;
  /** Diagnostics from reading (unreadable files, bad pve-nat.conf keys, ...). */
  diagnostics: Diagnostic[];
}

// ---------------------------------------------------------------------------------------------
// pve/learned.ts, pve/sdn.ts, pve/agent.ts → nat/learn.ts: addresses of guests without a
// static config (SPEC §8). Every MAC key is lower case.

/** Where a forward's guest address came from, in the order they are asked. */
export type AddressSource = "rule" | "config" | "ipam" | "lease" | "neighbour" | "agent";

export interface SdnSubnet {
  /** "zone1-10.10.10.0-24" as subnets.cfg names it. */
  id: string;
  zone: string | null;
  vnet: string | null;
  cidr: string;
  gateway: string | null;
  /** `snat 1`: Proxmox masquerades the subnet itself. */
  snat: boolean;
  /** subnets.cfg line of the section header. */
  line: number;
}

export interface SdnConfig {
  /** Zone id → its type ("simple", "vlan", …) and DHCP plugin ("dnsmasq") if any. */
  zones: Record<string, { type: string; dhcp: string | null }>;
  /** VNet id (the bridge name guests use) → its zone. */
  vnets: Record<string, { zone: string | null }>;
  subnets: SdnSubnet[];
}

export interface LearnedIp {
  ip: string;
  /** The IPAM/DHCP zone (lease file or ethers directory name), or null. */
  zone: string | null;
}

export interface AddressFacts {
  /** pve-ipam-state.json: MAC → its IPv4 entries (vmid as recorded, or null). */
  ipam: Record<string, Array<LearnedIp & { vmid: number | null }>>;
  /** mac-cache.json: MAC → ip4. */
  macCache: Record<string, string>;
  /** dnsmasq lease files: MAC → leases (expiry in s since the epoch, 0 = infinite). */
  leases: Record<string, Array<LearnedIp & { expiry: number }>>;
  /** dnsmasq static hosts (/etc/dnsmasq.d/<zone>/ethers): MAC → addresses. */
  ethers: Record<string, LearnedIp[]>;
  /** The node's IPv4 neighbour table: MAC → entries (usable states only). */
  neighbours: Record<string, Array<{ ip: string; dev: string; state: string }>>;
  /** Guest agent answers: vmid → its interfaces (IPv4 only, loopback/link-local dropped). */
  agent: Record<number, Array<{ mac: string; ips: string[] }>>;
  sdn: SdnConfig;
}

// ---------------------------------------------------------------------------------------------
// nat/compile.ts — forwards (what the admin sees) and the typed rules that realise them.

export type Proto = "tcp" | "udp";
export type ForwardState = "active" | "inactive" | "pending" | "conflict" | "error";

/** One NAT forward. Serialised to JSON exactly as SPEC §6 shows (see nat/json.ts). */
export interface Forward {
  vmid: number | null;
  /** Guest name (qemu name / lxc hostname); null for node-level forwards. */
  name: string | null;
  direction: "in" | "out";
  proto: Proto | null;
  public: { address: string | null; ports: string | null };
  /** addressSource: where the guest address came from (null: not known, or not a guest's). */
  private: { address: string | null; ports: string | null; addressSource: AddressSource | null };
  source: string | null;
  destination: string | null;
  /** "firewall/107.fw:4" */
  origin: string;
  state: ForwardState;
  reason: string | null;
}

/** An owner of a chain pair: a guest (vmid) or the node ("NODE": cluster.fw / host.fw). */
export type Owner = number | "NODE";

/** Port match or translation in iptables notation, already validated: "22", "80,443", "8000:8010". */
export type PortSpec = string;

/** One typed iptables rule in a PVENAT- chain. Rendering turns it into one line; every field
 *  is checked against a strict pattern there, so nothing untyped can reach iptables. */
export interface NatRule {
  proto: Proto | null;
  /** -s / -d: single IPv4 address or CIDR. */
  source: string | null;
  destination: string | null;
  /** --dport (single, "a:b" range, or list for multiport); --sport likewise. */
  dport: PortSpec | null;
  sport: PortSpec | null;
  /** -i / -o interface names. */
  inInterface: string | null;
  outInterface: string | null;
  /** Match only connections that were DNATed (hairpin masquerade). */
  ctstateDnat: boolean;
  target:
    | { kind: "DNAT"; address: string; ports: PortSpec | null }
    | { kind: "SNAT"; address: string }
    | { kind: "MASQUERADE" }
    | { kind: "RETURN" };
  /** Index into NatPlan.forwards of the forward this rule realises (counters). */
  forward: number;
  /** Generated text for `-m comment`: "pve-nat vm107 firewall/107.fw:4". */
  comment: string;
}

export interface OwnerChains {
  owner: Owner;
  dnat: NatRule[];
  snat: NatRule[];
}

/** A conntrack helper pve-firewall attaches for one port (`-p tcp --dport 21 -j CT --helper ftp`). */
export interface ConntrackHelper {
  name: string;
  proto: Proto;
  port: number;
}

export interface NatPlan {
  node: string;
  /** In SPEC §2.3 order: host.fw, cluster.fw, guests by VMID, then line. */
  forwards: Forward[];
  /** Sorted by file, then line. */
  diagnostics: Diagnostic[];
  /** Owners with at least one active forward, NODE first then by vmid. */
  chains: OwnerChains[];
  /** Settings the renderer needs for the entry chains. */
  entry: {
    externalInterface: string;
    hairpin: boolean;
    hostAccess: boolean;
    /** conntrack_zone_fix resolved: the zone rules below, and arp_ignore=1 on fwbr devices. */
    zoneFix: boolean;
    /** Bridges whose bridged pass conntrack tracks in zone 1 (`raw PVENAT-RAW -i <dev> -j CT
     *  --zone 1`): the fwbr devices of guests with active forwards, or `fwbr+` while node-level
     *  forwards (host.fw, cluster.fw) may NAT any guest. Empty without the zone fix. */
    zoneDevices: string[];
    /** host.fw `nf_conntrack_helpers` (IPv4 ones, pve-firewall's port table) while the datacenter
     *  firewall is on: attached in the zone as pve-firewall attaches them outside it. */
    helpers: ConntrackHelper[];
    /** pve-nat writes `raw PREROUTING -i fwbr+ -j CT --zone 1` itself: false when a Proxmox
     *  SDN subnet with `snat 1` already makes Proxmox write that rule (no double). */
    zoneRule: boolean;
  };
}
