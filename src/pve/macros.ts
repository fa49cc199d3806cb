// pve-firewall's macro table ($pve_fw_macros, $pve_ipv6fw_macros in Firewall.pm, imported there
// from shorewall). Every entry's action is the rule's own (PARAM), so it is left out here.
// Names are looked up case-insensitively and reported in the table's spelling, as
// $pve_fw_preferred_macro_names does.

export interface MacroEntry {
  action?: string;
  proto?: string;
  dport?: string;
  sport?: string;
  source?: string;
  dest?: string;
}

const V4: Record<string, MacroEntry[]> = {
  Amanda: [
    { proto: "udp", dport: "10080" },
    { proto: "tcp", dport: "10080" },
  ],
  Auth: [{ proto: "tcp", dport: "113" }],
  BGP: [{ proto: "tcp", dport: "179" }],
  BitTorrent: [
    { proto: "tcp", dport: "6881:6889" },
    { proto: "udp", dport: "6881" },
  ],
  BitTorrent32: [
    { proto: "tcp", dport: "6881:6999" },
    { proto: "udp", dport: "6881" },
  ],
  Ceph: [
    { proto: "tcp", dport: "6789" },
    { proto: "tcp", dport: "3300" },
    { proto: "tcp", dport: "6800:7300" },
  ],
  CVS: [{ proto: "tcp", dport: "2401" }],
  Citrix: [
    { proto: "tcp", dport: "1494" },
    { proto: "udp", dport: "1604" },
    { proto: "tcp", dport: "2598" },
  ],
  DAAP: [
    { proto: "tcp", dport: "3689" },
    { proto: "udp", dport: "3689" },
  ],
  DCC: [{ proto: "tcp", dport: "6277" }],
  DHCPfwd: [{ proto: "udp", dport: "67:68", sport: "67:68" }],
  DNS: [
    { proto: "udp", dport: "53" },
    { proto: "tcp", dport: "53" },
  ],
  Distcc: [{ proto: "tcp", dport: "3632" }],
  FTP: [{ proto: "tcp", dport: "21" }],
  Finger: [{ proto: "tcp", dport: "79" }],
  GNUnet: [
    { proto: "tcp", dport: "2086" },
    { proto: "udp", dport: "2086" },
    { proto: "tcp", dport: "1080" },
    { proto: "udp", dport: "1080" },
  ],
  GRE: [{ proto: "47" }],
  Git: [{ proto: "tcp", dport: "9418" }],
  HKP: [{ proto: "tcp", dport: "11371" }],
  HTTP: [{ proto: "tcp", dport: "80" }],
  HTTPS: [{ proto: "tcp", dport: "443" }],
  ICPV2: [{ proto: "udp", dport: "3130" }],
  ICQ: [{ proto: "tcp", dport: "5190" }],
  IMAP: [{ proto: "tcp", dport: "143" }],
  IMAPS: [{ proto: "tcp", dport: "993" }],
  IPIP: [{ proto: "94" }],
  IPsec: [{ proto: "udp", dport: "500", sport: "500" }, { proto: "50" }],
  IPsecah: [{ proto: "udp", dport: "500", sport: "500" }, { proto: "51" }],
  IPsecnat: [{ proto: "udp", dport: "500" }, { proto: "udp", dport: "4500" }, { proto: "50" }],
  IRC: [{ proto: "tcp", dport: "6667" }],
  Jetdirect: [{ proto: "tcp", dport: "9100" }],
  L2TP: [{ proto: "udp", dport: "1701" }],
  LDAP: [{ proto: "tcp", dport: "389" }],
  LDAPS: [{ proto: "tcp", dport: "636" }],
  MSNP: [{ proto: "tcp", dport: "1863" }],
  MSSQL: [{ proto: "tcp", dport: "1433" }],
  Mail: [
    { proto: "tcp", dport: "25" },
    { proto: "tcp", dport: "465" },
    { proto: "tcp", dport: "587" },
  ],
  MDNS: [{ proto: "udp", dport: "5353" }],
  Munin: [{ proto: "tcp", dport: "4949" }],
  MySQL: [{ proto: "tcp", dport: "3306" }],
  NNTP: [{ proto: "tcp", dport: "119" }],
  NNTPS: [{ proto: "tcp", dport: "563" }],
  NTP: [{ proto: "udp", dport: "123" }],
  OSPF: [{ proto: "89" }],
  OpenVPN: [{ proto: "udp", dport: "1194" }],
  PCA: [
    { proto: "udp", dport: "5632" },
    { proto: "tcp", dport: "5631" },
  ],
  PMG: [{ proto: "tcp", dport: "8006" }],
  POP3: [{ proto: "tcp", dport: "110" }],
  POP3S: [{ proto: "tcp", dport: "995" }],
  PPtP: [{ proto: "47" }, { proto: "tcp", dport: "1723" }],
  Ping: [{ proto: "icmp", dport: "echo-request" }],
  PostgreSQL: [{ proto: "tcp", dport: "5432" }],
  Printer: [{ proto: "tcp", dport: "515" }],
  RDP: [{ proto: "tcp", dport: "3389" }],
  RIP: [{ proto: "udp", dport: "520" }],
  RNDC: [{ proto: "tcp", dport: "953" }],
  Razor: [{ proto: "tcp", dport: "2703" }],
  Rdate: [{ proto: "tcp", dport: "37" }],
  Rsync: [{ proto: "tcp", dport: "873" }],
  SANE: [{ proto: "tcp", dport: "6566" }],
  SMB: [
    { proto: "udp", dport: "135,445" },
    { proto: "udp", dport: "137:139" },
    { proto: "udp", dport: "1024:65535", sport: "137" },
    { proto: "tcp", dport: "135,139,445" },
  ],
  SMBswat: [{ proto: "tcp", dport: "901" }],
  SMTP: [{ proto: "tcp", dport: "25" }],
  SMTPS: [{ proto: "tcp", dport: "465" }],
  SNMP: [
    { proto: "udp", dport: "161:162" },
    { proto: "tcp", dport: "161" },
  ],
  SPAMD: [{ proto: "tcp", dport: "783" }],
  SSH: [{ proto: "tcp", dport: "22" }],
  SVN: [{ proto: "tcp", dport: "3690" }],
  SixXS: [
    { proto: "tcp", dport: "3874" },
    { proto: "udp", dport: "3740" },
    { proto: "41" },
    { proto: "udp", dport: "5072,8374" },
  ],
  SPICEproxy: [{ proto: "tcp", dport: "3128" }],
  Squid: [{ proto: "tcp", dport: "3128" }],
  Submission: [{ proto: "tcp", dport: "587" }],
  Syslog: [
    { proto: "udp", dport: "514" },
    { proto: "tcp", dport: "514" },
  ],
  TFTP: [{ proto: "udp", dport: "69" }],
  Telnet: [{ proto: "tcp", dport: "23" }],
  Telnets: [{ proto: "tcp", dport: "992" }],
  Time: [{ proto: "tcp", dport: "37" }],
  Trcrt: [
    { proto: "udp", dport: "33434:33524" },
    { proto: "icmp", dport: "echo-request" },
  ],
  VNC: [{ proto: "tcp", dport: "5900:5999" }],
  VNCL: [{ proto: "tcp", dport: "5500" }],
  Web: [
    { proto: "tcp", dport: "80" },
    { proto: "tcp", dport: "443" },
  ],
  Webcache: [{ proto: "tcp", dport: "8080" }],
  Webmin: [{ proto: "tcp", dport: "10000" }],
  Whois: [{ proto: "tcp", dport: "43" }],
};

/** IPv6 variants: used instead of the entry above for IPv6 rules; DHCPv6 and
 *  NeighborDiscovery exist only here and so apply to IPv6 rules only. */
const V6: Record<string, MacroEntry[]> = {
  Ping: [{ proto: "icmpv6", dport: "echo-request" }],
  NeighborDiscovery: [
    { proto: "icmpv6", dport: "router-solicitation" },
    { proto: "icmpv6", dport: "router-advertisement" },
    { proto: "icmpv6", dport: "neighbor-solicitation" },
    { proto: "icmpv6", dport: "neighbor-advertisement" },
  ],
  DHCPv6: [{ proto: "udp", dport: "546:547", sport: "546:547" }],
  Trcrt: [
    { proto: "udp", dport: "33434:33524" },
    { proto: "icmpv6", dport: "echo-request" },
  ],
};

const PREFERRED = new Map<string, string>();
for (const name of [...Object.keys(V4), ...Object.keys(V6)]) PREFERRED.set(asciiLower(name), name);

/** Perl's lc on a byte string: ASCII letters only. */
export function asciiLower(text: string): string {
  return text.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/** Macros that only apply to one IP family (pve-firewall skips them for the other). */
export function macroFamily(name: string): 6 | null {
  return Object.hasOwn(V4, name) ? null : Object.hasOwn(V6, name) ? 6 : null;
}

/**
 * The macro named `name` (any case), with its entries for `family` (IPv6 rules use the IPv6
 * variant where there is one; an IPv6-only macro has no entries for IPv4 rules).
 */
export function findMacro(
  name: string,
  family: 4 | 6 | null = null,
): { name: string; entries: MacroEntry[] } | null {
  const preferred = PREFERRED.get(asciiLower(name));
  if (preferred === undefined) return null;
  const only = macroFamily(preferred);
  if (family !== null && only !== null && family !== only) return { name: preferred, entries: [] };
  const table =
    family === 6 && Object.hasOwn(V6, preferred) ? V6 : Object.hasOwn(V4, preferred) ? V4 : V6;
  const entries = (table[preferred] ?? []).map((e) => ({ ...e }));
  return { name: preferred, entries };
}

/** Every macro name in the table's spelling. */
export function macroNames(): string[] {
  return [...PREFERRED.values()].sort();
}
