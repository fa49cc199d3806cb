// Port specs as pve-firewall judges them (Firewall.pm `parse_port_name_number_or_range`):
// comma list of numbers, "a:b" ranges and /etc/services names; at most 15 "numbers" where a
// range counts 2 and a name counts 0. For -dport with an ICMP protocol, ICMP type names are
// accepted too (old configs stored the ICMP type there).

import { perlSplit } from "./address.js";
import { SERVICES } from "./services.js";

export interface PortRange {
  from: number;
  to: number;
}

/** iptables' icmp type names, as pve-firewall lists them. */
export const ICMP_TYPES: ReadonlySet<string> = new Set([
  "any",
  "echo-reply",
  "destination-unreachable",
  "network-unreachable",
  "host-unreachable",
  "protocol-unreachable",
  "port-unreachable",
  "fragmentation-needed",
  "source-route-failed",
  "network-unknown",
  "host-unknown",
  "network-prohibited",
  "host-prohibited",
  "TOS-network-unreachable",
  "TOS-host-unreachable",
  "communication-prohibited",
  "host-precedence-violation",
  "precedence-cutoff",
  "source-quench",
  "redirect",
  "network-redirect",
  "host-redirect",
  "TOS-network-redirect",
  "TOS-host-redirect",
  "echo-request",
  "router-advertisement",
  "router-solicitation",
  "time-exceeded",
  "ttl-zero-during-transit",
  "ttl-zero-during-reassembly",
  "parameter-problem",
  "ip-header-bad",
  "required-option-missing",
  "timestamp-request",
  "timestamp-reply",
  "address-mask-request",
  "address-mask-reply",
]);

/** ip6tables' icmpv6 type names, as pve-firewall lists them. */
export const ICMPV6_TYPES: ReadonlySet<string> = new Set([
  "destination-unreachable",
  "no-route",
  "communication-prohibited",
  "beyond-scope",
  "address-unreachable",
  "port-unreachable",
  "failed-policy",
  "reject-route",
  "packet-too-big",
  "time-exceeded",
  "ttl-zero-during-transit",
  "ttl-zero-during-reassembly",
  "parameter-problem",
  "bad-header",
  "unknown-header-type",
  "unknown-option",
  "echo-request",
  "echo-reply",
  "router-solicitation",
  "router-advertisement",
  "neighbor-solicitation",
  "neighbour-solicitation",
  "neighbor-advertisement",
  "neighbour-advertisement",
  "redirect",
]);

/** The protocols whose -dport may hold an ICMP type name and whose -icmp-type applies. */
export function isIcmpProto(proto: string | null | undefined): boolean {
  return proto === "icmp" || proto === "icmpv6" || proto === "ipv6-icmp";
}

const MAX_PORT_NUMBERS = 15;

type Item =
  | { kind: "range"; from: number; to: number }
  | { kind: "name"; name: string; port: number }
  | { kind: "icmp"; name: string };

function hasOwn(o: object, k: string): boolean {
  return Object.hasOwn(o, k);
}

/** One port written as plain digits: what almost every -dport and NAT:<port> holds. */
const ONE_PORT = /^[0-9]+$/;

function parseItems(text: string, icmp: boolean): Item[] | { error: string } {
  // The general walk below gives the same for it, through a split, a join and two matches
  // per value: at 1000 guests that garbage was a few MB of every compile (issue 10).
  if (ONE_PORT.test(text)) {
    const port = Number(text);
    if (port > 65535) return { error: `invalid port '${text}' (expected 0-65535)` };
    return [{ kind: "range", from: port, to: port }];
  }
  const elements = perlSplit(text, ",");
  if (elements.join(",") !== text) return { error: `extraneous commas in port list '${text}'` };
  let count = 0;
  let icmpNames = false;
  const items: Item[] = [];
  for (const item of elements) {
    const range = /^([0-9]+):([0-9]+)$/.exec(item);
    const single = /^([0-9]+)$/.exec(item);
    if (range) {
      count += 2;
      const from = Number(range[1]);
      const to = Number(range[2]);
      if (from > 65535) return { error: `invalid port '${range[1]}' (expected 0-65535)` };
      if (to > 65535) return { error: `invalid port '${range[2]}' (expected 0-65535)` };
      if (from > to) {
        return {
          error: `backwards range '${item}' not allowed, did you mean '${range[2]}:${range[1]}'?`,
        };
      }
      items.push({ kind: "range", from, to });
    } else if (single) {
      count += 1;
      const port = Number(single[1]);
      if (port > 65535) return { error: `invalid port '${item}' (expected 0-65535)` };
      items.push({ kind: "range", from: port, to: port });
    } else if (icmp && (ICMP_TYPES.has(item) || ICMPV6_TYPES.has(item))) {
      icmpNames = true;
      items.push({ kind: "icmp", name: item });
    } else if (hasOwn(SERVICES, item)) {
      items.push({ kind: "name", name: item, port: SERVICES[item] as number });
    } else {
      return {
        error: `invalid port '${item}' (expected a number, a range a:b or a service name from /etc/services)`,
      };
    }
  }
  if (icmpNames && count > 0)
    return { error: `ICMP type names and port numbers mixed in '${text}'` };
  if (count > MAX_PORT_NUMBERS) {
    return { error: `too many entries in port list '${text}' (> 15 numbers; a range counts 2)` };
  }
  return items;
}

/** pve-firewall's verdict on a -dport (icmp: the rule's protocol is an ICMP one) or -sport value. */
export function checkPortSpec(text: string, icmp = false): { error: string } | null {
  const r = parseItems(text, icmp);
  return Array.isArray(r) ? null : r;
}

/** Ports for NAT: numbers, "a:b" ranges and service names (resolved). ICMP names are errors. */
export function parsePorts(text: string): PortRange[] | { error: string } {
  const items = parseItems(text, false);
  if (!Array.isArray(items)) return items;
  const out: PortRange[] = [];
  for (const i of items) {
    if (i.kind === "range") out.push({ from: i.from, to: i.to });
    else if (i.kind === "name") out.push({ from: i.port, to: i.port });
  }
  return out;
}

/** pve / iptables notation: "80,443", "8000:8010". */
export function formatPorts(ranges: PortRange[]): string {
  const [only] = ranges;
  if (ranges.length === 1 && only)
    return only.from === only.to ? String(only.from) : `${only.from}:${only.to}`;
  return ranges.map((r) => (r.from === r.to ? String(r.from) : `${r.from}:${r.to}`)).join(",");
}

/** Number of individual ports covered (a range a:b counts b - a + 1). */
export function portCount(ranges: PortRange[]): number {
  return ranges.reduce((n, r) => n + r.to - r.from + 1, 0);
}
