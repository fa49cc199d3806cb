// Address specs as pve-firewall judges them (Firewall.pm `parse_address_list`, the ipset/alias
// checks of `verify_rule`, `parse_ip_or_cidr`). List elements are validated by Perl's Net::IP,
// whose quirks decide what pve-firewall accepts, so `netIp` below follows Net::IP 1.26 step by
// step (e.g. "10" is 10.0.0.0, "10.0.0.0/8x" is the single address 10.0.0.0, "1.2.3.4/24" is
// rejected because host bits are set). Strings are byte strings (one char per byte, as Perl sees
// pmxcfs content); whitespace classes are ASCII as in Perl.

import { IPV4, IPV4_PATTERN } from "../names.js";

export interface AddrItem {
  family: 4 | 6;
  kind: "ip" | "cidr" | "range";
  /** As written. */
  text: string;
}

export type AddressRef =
  | { kind: "list"; items: AddrItem[] }
  | { kind: "alias"; scope: "dc" | "guest" | null; name: string }
  | { kind: "ipset"; scope: "dc" | "guest" | "sdn" | null; name: string };

const H16 = "(?:[0-9a-fA-F]{1,4})";
const LS32 = `(?:(?:${IPV4_PATTERN}|${H16}:${H16}))`;
/** PVE::Tools $IPV6RE. */
export const IPV6_RE =
  "(?:" +
  `(?:(?:(?:${H16}:){6})${LS32})|` +
  `(?:(?:::(?:${H16}:){5})${LS32})|` +
  `(?:(?:(?:${H16})?::(?:${H16}:){4})${LS32})|` +
  `(?:(?:(?:(?:${H16}:){0,1}${H16})?::(?:${H16}:){3})${LS32})|` +
  `(?:(?:(?:(?:${H16}:){0,2}${H16})?::(?:${H16}:){2})${LS32})|` +
  `(?:(?:(?:(?:${H16}:){0,3}${H16})?::(?:${H16}:){1})${LS32})|` +
  `(?:(?:(?:(?:${H16}:){0,4}${H16})?::)${LS32})|` +
  `(?:(?:(?:(?:${H16}:){0,5}${H16})?::)${H16})|` +
  `(?:(?:(?:(?:${H16}:){0,6}${H16})?::))` +
  ")";

const IPV4_CIDR = new RegExp(`^${IPV4_PATTERN}(?:/([0-9]+))?$`);
const IPV6_CIDR = new RegExp(`^${IPV6_RE}(?:/([0-9]+))?$`);

/** pve-firewall's name patterns (ipsets, aliases, security groups share one shape). */
export const NAME_PATTERN = "[A-Za-z][A-Za-z0-9\\-_]+";
/** `+[scope/]name`: an ipset reference; groups 1 scope (or undefined) and 2 name. */
export const IPSET_REF = new RegExp(`^\\+(guest/|dc/|sdn/)?(${NAME_PATTERN})$`);
/** `[scope/]name`: an alias reference; groups 1 scope (or undefined) and 2 name. */
export const ALIAS_REF = new RegExp(`^(dc/|guest/)?(${NAME_PATTERN})$`);
const MAX_ALIAS_NAME = 64;
const MAX_IPSET_NAME = 64;

/** Plain dotted quad (no CIDR, no leading zeros), as PVE's $IPV4RE. */
export function isIPv4(text: string): boolean {
  return IPV4.test(text);
}

/** Perl's split: trailing empty fields are dropped. */
export function perlSplit(text: string, sep: string): string[] {
  const parts = text.split(sep);
  while (parts.length > 0 && parts[parts.length - 1] === "") parts.pop();
  return parts;
}

/** pve-firewall `parse_ip_or_cidr` (aliases, ipset entries): regex only, any prefix digits. */
export function parseIpOrCidr(text: string): { family: 4 | 6 } | { error: string } {
  if (IPV6_CIDR.test(text)) return { family: 6 };
  if (IPV4_CIDR.test(text)) return { family: 4 };
  return { error: `'${text}' does not look like a valid IP address or CIDR network` };
}

// ---------------------------------------------------------------------------------------------
// Net::IP 1.26, the parts `Net::IP->new($elem)` runs.

function isV4(ip: string): boolean {
  if (!/^[0-9.]+$/.test(ip)) return false;
  if (ip.startsWith(".") || ip.endsWith(".")) return false;
  if (/^[0-9]+$/.test(ip) && Number(ip) < 256) return true;
  const dots = ip.split(".").length - 1;
  if (dots >= 4) return false;
  if (ip.includes("..")) return false;
  return perlSplit(ip, ".").every((q) => Number(q) < 256);
}

function isV6(ip: string): boolean {
  let n = ip.split(":").length - 1;
  if (!(n > 0 && n < 8)) return false;
  const parts = perlSplit(ip, ":");
  let k = 0;
  for (const part of parts) {
    k++;
    if (part === "" || /^[a-fA-F0-9]{1,4}$/.test(part)) continue;
    if (k === n + 1 && isV4(part)) {
      n++;
      continue;
    }
    return false;
  }
  if (/^:[^:]/.test(ip)) return false;
  if (/[^:]:$/.test(ip)) return false;
  if ((ip.match(/:(?=:)/g) ?? []).length > 1) return false;
  if (n !== 7 && !ip.includes("::")) return false;
  return true;
}

function ipVersion(ip: string): 4 | 6 | null {
  if (!ip.includes(":") && isV4(ip)) return 4;
  if (isV6(ip)) return 6;
  return null;
}

function expand(ip: string, version: 4 | 6): string | null {
  if (version === 4) {
    const quads = perlSplit(ip, ".");
    if (quads.length > 4) return null;
    const clean: number[] = [];
    for (const q of quads) {
      if (!/^[0-9]{1,3}$/.test(q)) return null;
      clean.push(Number(q));
    }
    while (clean.length < 4) clean.push(0);
    return clean.join(".");
  }
  const doubles = ip.match(/::/g)?.length ?? 0;
  if (doubles > 1) return null;
  const parts = perlSplit(ip.replace(/::/g, ":!:"), ":");
  let num = parts.length;
  const groups: string[] = [];
  for (const part of parts) {
    if (part.includes(".")) {
      num++;
      const v4 = expand(part, 4);
      if (v4 === null) return null;
      const hex = v4ToBig(v4).toString(16).padStart(8, "0");
      groups.push(`${hex.slice(0, 4)}:${hex.slice(4)}`);
    } else {
      groups.push("0".repeat(Math.max(0, 4 - part.length)) + part);
    }
  }
  const at = groups.indexOf("000!");
  if (at >= 0)
    groups[at] = Array(Math.max(0, 9 - num))
      .fill("0000")
      .join(":");
  return groups.join(":").toLowerCase();
}

function v4ToBig(expanded: string): bigint {
  return expanded.split(".").reduce((acc, q) => (acc << 8n) | BigInt(Number(q) & 255), 0n);
}

function toBig(expanded: string, version: 4 | 6): bigint | null {
  if (version === 4) return v4ToBig(expanded);
  const hex = expanded.replace(/:/g, "");
  if (hex.length !== 32 || !/^[0-9a-f]+$/.test(hex)) return null;
  return BigInt(`0x${hex}`);
}

function bitsOf(version: 4 | 6): number {
  return version === 4 ? 32 : 128;
}

function hostMask(len: number, version: 4 | 6): bigint {
  return (1n << BigInt(bitsOf(version) - len)) - 1n;
}

export interface NetIp {
  family: 4 | 6;
  first: bigint;
  last: bigint;
  kind: "ip" | "cidr" | "range";
}

/** `Net::IP->new(text)`: the address block it denotes, or null where Net::IP fails. */
export function netIp(text: string): NetIp | null {
  let begin: string | null;
  let endBig: bigint | null = null;
  let version: 4 | 6 | null;
  let kind: NetIp["kind"] = "ip";
  let endText: string | null = null;

  const prefix = /^([^ \t\n\r\f\v]+?)(\/[^ \t\n\r\f\v]+)$/.exec(text);
  const range = prefix ? null : /^(.+?)[ \t\n\r\f\v]*-[ \t\n\r\f\v]*(.+)$/.exec(text);
  if (prefix) {
    const ip = prefix[1] as string;
    let len = prefix[2] as string;
    version = ipVersion(ip);
    if (!version) return null;
    begin = expand(ip, version);
    if (begin === null) return null;
    let cur = toBig(begin, version);
    if (cur === null) return null;
    while (len !== "") {
      const m = /^\/([0-9]+)(,|$)/.exec(len);
      if (!m) break;
      len = len.slice(m[0].length);
      const clen = Number(m[1]);
      if (clen > bitsOf(version)) return null;
      if ((cur & hostMask(clen, version)) !== 0n) return null;
      cur |= hostMask(clen, version);
      if (m[2] === ",") cur = (cur + 1n) & hostMask(0, version);
      kind = "cidr";
    }
    endBig = cur;
  } else if (range) {
    version = ipVersion(range[1] as string);
    if (!version) return null;
    begin = expand(range[1] as string, version);
    endText = expand(range[2] as string, version);
    if (begin === null || endText === null) return null;
    kind = "range";
  } else {
    version = ipVersion(text);
    if (!version) return null;
    begin = expand(text, version);
    if (begin === null) return null;
  }

  if (ipVersion(begin) !== version) return null;
  const first = toBig(begin, version);
  if (first === null) return null;
  let last = endBig;
  if (endText !== null) {
    if (ipVersion(endText) !== version) return null;
    last = toBig(endText, version);
    if (last === null) return null;
  }
  if (last === null) last = first;
  if (first > last) return null;
  return { family: version, first, last, kind };
}

// ---------------------------------------------------------------------------------------------

/** `parse_address_list` plus `verify_rule`'s ipset-name check: what -source/-dest accept. */
export function parseAddressRef(text: string): AddressRef | { error: string } {
  if (text.startsWith("+")) {
    if (text.length > MAX_IPSET_NAME + 1) return { error: `ipset name too long: '${text}'` };
    const m = IPSET_REF.exec(text);
    if (!m) {
      return {
        error: `invalid ipset name '${text}' (expected +name, +dc/name, +guest/name or +sdn/name)`,
      };
    }
    const scope = m[1] ? (m[1].slice(0, -1) as "dc" | "guest" | "sdn") : null;
    return { kind: "ipset", scope, name: (m[2] as string).toLowerCase() };
  }
  const alias = ALIAS_REF.exec(text);
  if (alias) {
    if (text.length > MAX_ALIAS_NAME) return { error: `alias name too long: '${text}'` };
    const scope = alias[1] ? (alias[1].slice(0, -1) as "dc" | "guest") : null;
    return { kind: "alias", scope, name: (alias[2] as string).toLowerCase() };
  }
  const elements = perlSplit(text, ",");
  if (elements.join(",") !== text) return { error: `extraneous commas in address list '${text}'` };
  const items: AddrItem[] = [];
  let ranges = false;
  for (const elem of elements) {
    const ip = netIp(elem);
    if (!ip) {
      return {
        error: `invalid IP address '${elem}' (expected an address, CIDR, range a-b, alias or +ipset)`,
      };
    }
    if (elem.includes("-")) ranges = true;
    const prev = items[0];
    if (prev && prev.family !== ip.family) {
      return { error: `mixed IPv4/IPv6 addresses in address list '${text}'` };
    }
    items.push({ family: ip.family, kind: ip.kind, text: elem });
  }
  if (ranges && elements.length > 1) {
    return { error: `a range cannot be used in a list: '${text}'` };
  }
  return { kind: "list", items };
}

/** The IP family a -source/-dest literal list fixes; null for aliases and ipsets (their family
 *  is known only once the definition is looked up) and for invalid values. */
export function listFamily(value: string): 4 | 6 | null {
  const ref = parseAddressRef(value);
  return "kind" in ref && ref.kind === "list" ? (ref.items[0]?.family ?? null) : null;
}

function bigToV4(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join(".");
}

/** IPv4 item → smallest exact list of canonical CIDRs ("10.0.0.0/8", "1.2.3.4/32"). IPv6 → []. */
export function ipv4ItemToCidrs(item: AddrItem): string[] {
  if (item.family !== 4) return [];
  const ip = netIp(item.text);
  if (ip?.family !== 4) return [];
  const out: string[] = [];
  let cur = ip.first;
  while (cur <= ip.last) {
    let size = 0;
    while (size < 32) {
      const block = 1n << BigInt(size + 1);
      if (cur % block !== 0n || cur + block - 1n > ip.last) break;
      size++;
    }
    out.push(`${bigToV4(cur)}/${32 - size}`);
    cur += 1n << BigInt(size);
  }
  return out;
}
