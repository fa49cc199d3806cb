// A Proxmox firewall file (cluster.fw, host.fw, <vmid>.fw) judged line by line the way
// pve-firewall does (Firewall.pm: generic_fw_config_parser, parse_fw_rule, verify_rule, the
// parse_*fw_option functions, parse_alias, the ipset entry checks). Whatever pve-firewall warns
// about or drops becomes an error at that line; whatever it accepts yields no diagnostic.
// Checks that need another file (alias / ipset / group existence) are in refs.ts.
//
// pmxcfs hands pve-firewall raw bytes and Perl matches them as Latin-1 code points; we parse a
// "byte string" (one char per byte) so every pattern sees what Perl's does, with Perl's ASCII
// whitespace classes spelled out (JS \s would also match U+00A0 etc.). Only user-visible text
// (comments, messages) is decoded from UTF-8.

import type {
  Diagnostic,
  FwAlias,
  FwFile,
  FwGroup,
  FwIpset,
  FwIpsetEntry,
  FwKind,
  FwRule,
  RuleType,
} from "../model.js";
import { NAME_PATTERN, parseAddressRef, parseIpOrCidr, perlSplit } from "./address.js";
import { asciiLower, findMacro, type MacroEntry } from "./macros.js";
import { checkPortSpec, ICMP_TYPES, ICMPV6_TYPES } from "./ports.js";
import { ETHERTYPE_IDS, ETHERTYPE_NAMES, PROTOCOL_IDS, PROTOCOL_NAMES } from "./services.js";

// ---------------------------------------------------------------------------------------------
// Bytes

const CHUNK = 8192;

export function toByteString(input: string | Uint8Array): string {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  let out = "";
  for (let i = 0; i < bytes.length; i += CHUNK) {
    out += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return out;
}

export function fromByteString(bin: string): string {
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i) & 255;
  return new TextDecoder("utf-8").decode(bytes);
}

const MAX_SHOWN = 80;

/** Quoted, decoded, control characters escaped and long text cut: safe to print in a message. */
export function show(bin: string): string {
  let text = fromByteString(bin);
  let cut = false;
  if (text.length > MAX_SHOWN) {
    text = text.slice(0, MAX_SHOWN);
    cut = true;
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escaping them is the point
  const escaped = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    if (c === "\t") return "\\t";
    if (c === "\r") return "\\r";
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`;
  });
  return `'${escaped}${cut ? "…" : ""}'`;
}

/** Sets an own key even when it is "__proto__" (names come from the file). */
function setKey<T>(record: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(record, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** Perl truthiness of an optional string value: "" and "0" are false. */
function truthy(v: string | undefined): v is string {
  return v !== undefined && v !== "" && v !== "0";
}

// Perl's \s and \S on byte strings.
const S = "[ \\t\\n\\r\\f\\v]";
const NS = "[^ \\t\\n\\r\\f\\v]";
const re = (source: string, flags = "") => new RegExp(source, flags);

// ---------------------------------------------------------------------------------------------
// Rule lines

/** One rule as parse_fw_rule extracts it (byte strings, before verify_rule). */
interface RawRule {
  enable: boolean;
  type: string;
  action: string;
  macro?: string;
  iface?: string;
  proto?: string;
  dport?: string;
  sport?: string;
  source?: string;
  dest?: string;
  log?: string;
  icmpType?: string;
  comment?: string;
}

/** verify_rule's rule_env. */
export type RuleEnv = "vm" | "host" | "cluster" | "group";

const COMMENT = re(`#${S}*([^\\n]*?)${S}*$`);
const TYPE_ACTION = re(`^(${NS}+)${S}+(${NS}+)${S}*`);
const MACRO_ACTION = re(`^(${NS}+)\\((ACCEPT|DROP|REJECT)\\)$`);
const LOG_LEVELS = "emerg|alert|crit|err|warning|notice|info|debug|nolog";
const OPTIONS: Array<[RegExp, keyof RawRule]> = [
  [re(`^(?:-p|--?proto) (${NS}+)${S}*`), "proto"],
  [re(`^--?dport (${NS}+)${S}*`), "dport"],
  [re(`^--?sport (${NS}+)${S}*`), "sport"],
  [re(`^--?source (${NS}+)${S}*`), "source"],
  [re(`^--?dest (${NS}+)${S}*`), "dest"],
  [re(`^--?log (${LOG_LEVELS})${S}*`), "log"],
  [re(`^--?icmp-type (${NS}+)${S}*`), "icmpType"],
];
const IFACE_OPT = re(`^-i (${NS}+)${S}*`);

/** parse_fw_rule up to verify_rule: the line's parts, or why pve-firewall drops the line. */
export function splitRule(line: string): RawRule | { error: string } {
  let rest = line;
  let comment: string | undefined;
  const c = COMMENT.exec(rest);
  if (c) {
    comment = c[1] as string;
    rest = rest.slice(0, c.index);
  }
  const enable = !rest.startsWith("|");
  if (!enable) rest = rest.slice(1);
  const ta = TYPE_ACTION.exec(rest);
  if (!ta) {
    return {
      error: `cannot parse rule ${show(rest)}: expected [|]IN|OUT|FORWARD ACTION|MACRO(ACTION) [options] or GROUP name`,
    };
  }
  rest = rest.slice(ta[0].length);
  const rule: RawRule = { enable, type: asciiLower(ta[1] as string), action: ta[2] as string };
  if (comment !== undefined) rule.comment = comment;
  if (rule.type === "in" || rule.type === "out" || rule.type === "forward") {
    const m = MACRO_ACTION.exec(rule.action);
    if (m) {
      rule.macro = m[1] as string;
      rule.action = m[2] as string;
    }
  }
  outer: while (rest.length > 0) {
    const i = IFACE_OPT.exec(rest);
    if (i) {
      rule.iface = i[1] as string;
      rest = rest.slice(i[0].length);
      continue;
    }
    if (rule.type === "group") break;
    for (const [pattern, key] of OPTIONS) {
      const m = pattern.exec(rest);
      if (m) {
        (rule as unknown as Record<string, string>)[key] = m[1] as string;
        rest = rest.slice(m[0].length);
        continue outer;
      }
    }
    break;
  }
  if (rest.length > 0) {
    const expected =
      rule.type === "group"
        ? "only -i may follow GROUP name"
        : `expected -i, -source, -dest, -p, -dport, -sport, -icmp-type or -log (${LOG_LEVELS.replaceAll("|", ", ")}), each followed by one space and a value`;
    return { error: `cannot parse rule options at ${show(rest)}: ${expected}` };
  }
  return rule;
}

const PROTOCOLS_WITH_PORTS = new Set([
  "udp",
  "17",
  "udplite",
  "136",
  "tcp",
  "6",
  "dccp",
  "33",
  "sctp",
  "132",
]);
const VALID_TYPES: Record<RuleEnv, readonly string[]> = {
  vm: ["in", "out", "group"],
  group: ["in", "out", "forward"],
  cluster: ["in", "out", "forward", "group"],
  host: ["in", "out", "forward", "group"],
};
const GROUP_NAME = re(`^${NAME_PATTERN}$`);
const IFACE_NAME = /^[a-zA-Z][a-zA-Z0-9_]{1,20}(?:[:.][0-9]+)?$/;

function isProtocol(proto: string): boolean {
  return Object.hasOwn(PROTOCOL_NAMES, proto) || PROTOCOL_IDS.has(proto) || proto === "icmpv6";
}

function isIcmp(proto: string | undefined): boolean {
  return proto === "icmp" || proto === "icmpv6" || proto === "ipv6-icmp";
}

/** IP family a -source/-dest literal list fixes (aliases and ipsets: unknown here). */
function listFamily(value: string): 4 | 6 | null {
  const ref = parseAddressRef(value);
  return "kind" in ref && ref.kind === "list" ? (ref.items[0]?.family ?? null) : null;
}

/** verify_rule without the alias / ipset existence checks (refs.ts): every error message. */
export function verifyRule(rule: RawRule, env: RuleEnv): string[] {
  const errors: string[] = [];
  const { type, action } = rule;
  if (!truthy(action)) errors.push("missing action");
  if (!VALID_TYPES[env].includes(type)) {
    const where =
      env === "vm" ? "a guest file" : env === "group" ? "a security group" : `${env}.fw`;
    errors.push(
      `rule type ${show(type.toUpperCase())} is not allowed in ${where} (expected ${VALID_TYPES[env]
        .map((t) => t.toUpperCase())
        .join(", ")})`,
    );
  }
  if (type === "in" || type === "out" || type === "forward") {
    if (type === "forward" && action === "REJECT")
      errors.push("REJECT is not allowed in FORWARD rules");
    if (truthy(action) && !/^(?:ACCEPT|DROP|REJECT)$/.test(action)) {
      errors.push(
        `unknown action ${show(action)} (expected ACCEPT, DROP, REJECT or MACRO(ACTION))`,
      );
    }
  } else if (type === "group") {
    if (env === "group") errors.push("a security group cannot use another group");
    if (truthy(action) && !GROUP_NAME.test(action)) {
      errors.push(`invalid security group name ${show(action)}`);
    }
  }
  if (truthy(rule.iface)) {
    if (env === "group") errors.push("-i is not allowed in security group rules");
    if (!IFACE_NAME.test(rule.iface)) errors.push(`invalid interface name ${show(rule.iface)}`);
    if (env === "vm" && !/^net[0-9]+$/.test(rule.iface)) {
      errors.push(`invalid interface ${show(rule.iface)} (expected netN in a guest file)`);
    }
  }
  let macro: string | null = null;
  if (truthy(rule.macro)) {
    macro = findMacro(rule.macro)?.name ?? null;
    if (!macro) errors.push(`unknown macro ${show(rule.macro)}`);
  }
  let family: 4 | 6 | null = null;
  let mixed = false;
  const setFamily = (f: 4 | 6 | null) => {
    if (f === null) return;
    if (family !== null && family !== f) mixed = true;
    family = f;
  };
  const proto = rule.proto;
  if (truthy(proto)) {
    if (!isProtocol(proto))
      errors.push(
        `unknown protocol ${show(proto)} (expected a name or number from /etc/protocols)`,
      );
    if (proto === "icmp") setFamily(4);
    if (proto === "icmpv6" || proto === "ipv6-icmp") setFamily(6);
  }
  const icmp = isIcmp(proto);
  if (truthy(rule.dport)) {
    const e = checkPortSpec(rule.dport, icmp);
    if (e) errors.push(`-dport: ${e.error}`);
    if (!truthy(proto)) errors.push("-dport needs -p (tcp, udp, …)");
    else if (!PROTOCOLS_WITH_PORTS.has(proto) && !icmp)
      errors.push(`protocol ${show(proto)} has no ports (-dport)`);
  }
  if (truthy(rule.icmpType)) {
    const t = rule.icmpType;
    if (!icmp) errors.push("-icmp-type needs -p icmp, icmpv6 or ipv6-icmp");
    if (truthy(rule.dport)) errors.push("-icmp-type cannot be used together with -dport");
    if (proto === "icmp" && !ICMP_TYPES.has(t))
      errors.push(`invalid icmp type ${show(t)} for -p icmp`);
    else if ((proto === "icmpv6" || proto === "ipv6-icmp") && !ICMPV6_TYPES.has(t)) {
      errors.push(`invalid icmp type ${show(t)} for -p ${proto}`);
    }
  }
  if (truthy(rule.sport)) {
    const e = checkPortSpec(rule.sport, false);
    if (e) errors.push(`-sport: ${e.error}`);
    if (!truthy(proto)) errors.push("-sport needs -p (tcp, udp, …)");
    else if (!PROTOCOLS_WITH_PORTS.has(proto))
      errors.push(`protocol ${show(proto)} has no ports (-sport)`);
  }
  for (const key of ["source", "dest"] as const) {
    const value = rule[key];
    if (!truthy(value)) continue;
    const ref = parseAddressRef(value);
    if ("error" in ref) errors.push(`-${key}: ${ref.error}`);
    else setFamily(listFamily(value));
  }
  if (mixed) errors.push("IPv4 and IPv6 mixed in one rule");
  // An alias's family can pick the macro's IPv6 variant; with aliases and no family yet,
  // refs.ts checks the macro once it knows the alias.
  if (macro && errors.length === 0 && !isDeferred(rule)) {
    errors.push(...macroConflicts(macro, rule, family));
  }
  return errors;
}

/** The macro check waits for refs.ts: an alias may pick the macro's IPv4/IPv6 variant. */
function isDeferred(rule: RawRule): boolean {
  if (!truthy(rule.macro)) return false;
  const macro = findMacro(rule.macro)?.name ?? null;
  if (!macroDependsOnFamily(macro) || !hasAlias(rule)) return false;
  const literal = [rule.source, rule.dest].some((v) => truthy(v) && listFamily(v) !== null);
  return !literal && !isIcmp(rule.proto);
}

/** Macros whose entries differ for IPv4 and IPv6 rules (Ping, Trcrt, DHCPv6, NeighborDiscovery). */
export function macroDependsOnFamily(name: string | null): boolean {
  if (name === null) return false;
  return JSON.stringify(findMacro(name, 4)) !== JSON.stringify(findMacro(name, 6));
}

function hasAlias(rule: {
  source?: string | null | undefined;
  dest?: string | null | undefined;
}): boolean {
  return [rule.source, rule.dest].some((v) => {
    if (!truthy(v ?? undefined)) return false;
    const ref = parseAddressRef(v as string);
    return "kind" in ref && ref.kind === "alias";
  });
}

type MacroParams = Partial<Record<"proto" | "dport" | "sport" | "source" | "dest", string | null>>;

/** apply_macro's check: rule parameters the macro also sets must be equal to the macro's
 *  (any defined value counts, even "0"). */
export function macroConflicts(name: string, rule: MacroParams, family: 4 | 6 | null): string[] {
  const macro = findMacro(name, family);
  const out: string[] = [];
  for (const entry of macro?.entries ?? []) {
    for (const key of ["proto", "dport", "sport", "source", "dest"] as const) {
      const mine = rule[key];
      const theirs = (entry as MacroEntry)[key];
      if (mine !== undefined && mine !== null && theirs !== undefined && mine !== theirs) {
        const flag = key === "proto" ? "-p" : `-${key}`;
        const msg = `${flag} ${show(mine)} conflicts with macro ${name}, which sets ${flag} ${theirs}`;
        if (!out.includes(msg)) out.push(msg);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// [OPTIONS]

type OptionResult = { key: string; value: string } | { error: string };

const LEVELS_RE = `(?:${LOG_LEVELS})`;

function perlInt(digits: string): string {
  return String(Number(digits));
}

function guestOption(line: string): OptionResult | null {
  let m = re(`^(enable|dhcp|ndp|radv|macfilter|ipfilter|ips):${S}*(0|1)${S}*$`, "i").exec(line);
  if (m) return { key: asciiLower(m[1] as string), value: m[2] as string };
  m = re(`^(log_level_in|log_level_out):${S}*((${LEVELS_RE})${S}*)?$`, "i").exec(line);
  if (m) return { key: asciiLower(m[1] as string), value: m[2] ? asciiLower(m[3] as string) : "" };
  m = re(`^(policy_(in|out)):${S}*(ACCEPT|DROP|REJECT)${S}*$`, "i").exec(line);
  if (m) return { key: asciiLower(m[1] as string), value: (m[3] as string).toUpperCase() };
  m = re(`^(ips_queues):${S}*(([0-9]+)(:([0-9]+))?)${S}*$`, "i").exec(line);
  if (m) return { key: asciiLower(m[1] as string), value: m[2] as string };
  m = re(`^(layer2_protocols):${S}*(((${NS}+)[,]?)+)${S}*$`, "i").exec(line);
  if (m) {
    const value = m[2] as string;
    for (const t of perlSplit(value, ",").map((x) => x.trim())) {
      if (!Object.hasOwn(ETHERTYPE_NAMES, t) && !ETHERTYPE_IDS.has(t)) {
        return {
          error: `unknown ethernet protocol type ${show(t)} (expected a name or number from /etc/ethertypes)`,
        };
      }
    }
    return { key: "layer2_protocols", value };
  }
  return null;
}

const CONNTRACK_HELPERS = new Set([
  "amanda",
  "ftp",
  "irc",
  "netbios-ns",
  "pptp",
  "sane",
  "sip",
  "snmp",
  "tftp",
]);

function hostOption(line: string): OptionResult | null {
  let m = re(
    `^(enable|nosmurfs|tcpflags|ndp|log_nf_conntrack|nf_conntrack_allow_invalid|protection_synflood|nftables):${S}*(0|1)${S}*$`,
    "i",
  ).exec(line);
  if (m) return { key: asciiLower(m[1] as string), value: m[2] as string };
  m = re(
    `^(log_level_(?:in|out|forward)|tcp_flags_log_level|smurf_log_level):${S}*((${LEVELS_RE})${S}*)?$`,
    "i",
  ).exec(line);
  if (m) return { key: asciiLower(m[1] as string), value: m[2] ? asciiLower(m[3] as string) : "" };
  m = re(`^(nf_conntrack_helpers):${S}*(((${NS}+)[,]?)+)${S}*$`, "i").exec(line);
  if (m) {
    const value = asciiLower(m[2] as string);
    const helpers = perlSplit(value, ",");
    if (helpers.join(",") !== value) return { error: `extraneous commas in ${show(value)}` };
    for (const h of helpers) {
      if (!CONNTRACK_HELPERS.has(h)) {
        return {
          error: `unknown conntrack helper ${show(h)} (expected ${[...CONNTRACK_HELPERS].join(", ")})`,
        };
      }
    }
    return { key: "nf_conntrack_helpers", value };
  }
  m = re(
    `^(nf_conntrack_max|nf_conntrack_tcp_timeout_established|nf_conntrack_tcp_timeout_syn_recv|protection_synflood_rate|protection_synflood_burst|protection_limit):${S}*([0-9]+)${S}*$`,
    "i",
  ).exec(line);
  if (m) return { key: asciiLower(m[1] as string), value: perlInt(m[2] as string) };
  return null;
}

function clusterOption(line: string): OptionResult | null {
  let m = re(`^(enable):${S}*([0-9]+)${S}*$`, "i").exec(line);
  if (m) return { key: "enable", value: perlInt(m[2] as string) };
  m = re(`^(ebtables):${S}*(0|1)${S}*$`, "i").exec(line);
  if (m) return { key: "ebtables", value: m[2] as string };
  m = re(`^(policy_(in|out|forward)):${S}*(ACCEPT|DROP|REJECT)${S}*$`, "i").exec(line);
  if (m) return { key: asciiLower(m[1] as string), value: (m[3] as string).toUpperCase() };
  m = re(`^(log_ratelimit):${S}*(${NS}+)${S}*$`).exec(line);
  if (m) {
    const err = checkLogRatelimit(m[2] as string);
    if (err) return { error: `log_ratelimit: ${err} (pve-firewall then fails to load cluster.fw)` };
    return { key: "log_ratelimit", value: m[2] as string };
  }
  return null;
}

const BOOLEAN = /^(?:1|true|yes|on|0|false|no|off)$/i;

/** The property string pve-firewall parses when it loads cluster.fw (enable, rate, burst). */
function checkLogRatelimit(value: string): string | null {
  const seen = new Set<string>();
  for (const part of value.split(",")) {
    if (/^[ \t\n\r\f\v]*$/.test(part)) continue;
    const kv = /^([^=]+)=(.+)$/.exec(part);
    let key: string;
    let v: string;
    if (kv) {
      key = kv[1] as string;
      v = kv[2] as string;
    } else if (!part.includes("=")) {
      key = "enable";
      v = part;
    } else {
      return `cannot parse ${show(part)}`;
    }
    if (seen.has(key)) return `duplicate key ${show(key)}`;
    seen.add(key);
    if (key === "enable") {
      if (!BOOLEAN.test(v)) return `enable must be a boolean, found ${show(v)}`;
    } else if (key === "rate") {
      if (!/^[1-9][0-9]*\/(?:second|minute|hour|day)$/.test(v)) {
        return `rate must look like 1/second (per second, minute, hour or day), found ${show(v)}`;
      }
    } else if (key === "burst") {
      if (!/^[+-]?[0-9]+$/.test(v) || Number(v) < 0)
        return `burst must be an integer >= 0, found ${show(v)}`;
    } else {
      return `unknown key ${show(key)} (expected enable, rate, burst)`;
    }
  }
  return null;
}

const OPTION_NAMES: Record<FwKind, string> = {
  guest:
    "enable, dhcp, ndp, radv, macfilter, ipfilter, ips (0|1), log_level_in/out, policy_in/out, ips_queues, layer2_protocols",
  host: "enable, nosmurfs, tcpflags, ndp, log_nf_conntrack, nf_conntrack_allow_invalid, protection_synflood, nftables (0|1), log_level_in/out/forward, tcp_flags_log_level, smurf_log_level, nf_conntrack_helpers, nf_conntrack_max, nf_conntrack_tcp_timeout_*, protection_synflood_rate/burst, protection_limit",
  cluster: "enable, ebtables, policy_in/out/forward, log_ratelimit",
};

function parseOption(line: string, kind: FwKind): OptionResult {
  const parsed =
    kind === "guest" ? guestOption(line) : kind === "host" ? hostOption(line) : clusterOption(line);
  if (parsed) return parsed;
  const hint = line.includes("#") ? " (comments are not allowed on option lines)" : "";
  return {
    error: `cannot parse option ${show(line)}${hint}: expected 'key: value' with a known key and a valid value (${kind} options: ${OPTION_NAMES[kind]})`,
  };
}

// ---------------------------------------------------------------------------------------------
// Lines and sections

type Section =
  | { kind: "options" }
  | { kind: "aliases" }
  | { kind: "rules" }
  | { kind: "group"; group: FwGroup; env: RuleEnv }
  | { kind: "ipset"; ipset: FwIpset; keys: Set<string> };

const ALLOWED: Record<FwKind, ReadonlySet<string>> = {
  cluster: new Set(["options", "aliases", "rules", "group", "ipset"]),
  host: new Set(["options", "rules"]),
  guest: new Set(["options", "aliases", "rules", "ipset"]),
};

const MAX_GROUP_NAME = 18;
const MAX_IPSET_NAME = 64;
const GROUP_HEADER = re(`^\\[group${S}+(${NS}+)\\]${S}*(?:#${S}*([^\\n]*?)${S}*)?$`, "i");
const IPSET_HEADER = re(`^\\[ipset${S}+(${NS}+)\\]${S}*(?:#${S}*([^\\n]*?)${S}*)?$`, "i");
const ALIAS_LINE = re(`^(${NS}+)${S}(${NS}+)$`);
const ALIAS_COMMENT = re(`${S}*#${S}*([^\\n]*?)${S}*$`);
const IPSET_ENTRY = re(`^(!)?${S}*(${NS}+)${S}*$`);
const ALIAS_REF = re(`^(dc/|guest/)?(${NAME_PATTERN})$`);
const IPSET_REF_RE = re(`^\\+(guest/|dc/|sdn/)?(${NAME_PATTERN})$`);
const NAME_RE = re(`^${NAME_PATTERN}$`);

const ENV: Record<FwKind, RuleEnv> = { guest: "vm", host: "host", cluster: "cluster" };

function toRule(raw: RawRule, file: string, line: number, macro: string | null): FwRule {
  const opt = (v: string | undefined) => (truthy(v) ? fromByteString(v) : null);
  return {
    file,
    line,
    enabled: raw.enable,
    type: raw.type as RuleType,
    action: raw.type === "group" ? asciiLower(raw.action) : raw.action,
    macro,
    iface: opt(raw.iface),
    source: opt(raw.source),
    dest: opt(raw.dest),
    proto: truthy(raw.proto) ? asciiLower(raw.proto) : null,
    dport: opt(raw.dport),
    sport: opt(raw.sport),
    icmpType: opt(raw.icmpType),
    log: opt(raw.log),
    comment: raw.comment === undefined ? null : fromByteString(raw.comment),
  };
}

/** Perl's `\h` on bytes: tab, space, no-break space. */
const TRIM = /^[\t \xa0]*([^\n]*?)[\t \xa0]*$/;

/**
 * What refs.ts needs beyond the FwFile model. pve-firewall checks each reference against what it
 * has read so far, so it needs every definition's line (a repeated alias or [IPSET x] header
 * replaces the earlier one in FwFile), and every alias entry of every ipset section.
 */
export interface ParseTrace {
  /** Lower-cased alias name → its definitions in file order. */
  aliasDefs: Map<string, Array<{ line: number; family: 4 | 6 }>>;
  /** Ipset name → the lines of its headers. */
  ipsetDefs: Map<string, number[]>;
  ipsetAliasEntries: Array<{ set: string; line: number; cidr: string }>;
  /** Rules of every [group] section, also of those a repeated header replaced. */
  groupRules: FwRule[];
  /** Macro rules whose check waits for an alias's family (refs.ts): parameters as written. */
  deferredMacros: Map<number, MacroParams>;
}

const TRACES = new WeakMap<FwFile, ParseTrace>();

export function parseTrace(fw: FwFile): ParseTrace | undefined {
  return TRACES.get(fw);
}

/**
 * Parses one firewall file. Never throws: every problem is a diagnostic at its line.
 * `cluster` (optional, for host.fw) settles one quirk: pve-firewall starts accepting [ALIASES]
 * and [IPSET] sections in host.fw after a rule there looked up an alias or ipset that cluster.fw
 * does not have (Perl autovivification); without it such lookups are assumed to miss.
 */
export function parseFwFile(
  text: string | Uint8Array,
  file: string,
  kind: FwKind,
  cluster: FwFile | null = null,
): FwFile {
  const fw: FwFile = {
    file,
    kind,
    options: {},
    rules: [],
    aliases: {},
    ipsets: {},
    groups: {},
    diagnostics: [],
  };
  const trace: ParseTrace = {
    aliasDefs: new Map(),
    ipsetDefs: new Map(),
    ipsetAliasEntries: [],
    groupRules: [],
    deferredMacros: new Map(),
  };
  TRACES.set(fw, trace);
  try {
    parseInto(fw, toByteString(text), trace, cluster);
  } catch (err) {
    // A bug here must not take the daemon down; report it against the file as a whole.
    fw.diagnostics.push({
      file,
      line: 0,
      severity: "error",
      message: `internal parser error: ${String(err)}`,
    });
  }
  return fw;
}

function parseInto(fw: FwFile, raw: string, trace: ParseTrace, cluster: FwFile | null): void {
  const { file, kind } = fw;
  // `return {} if !$raw`: an empty file, or one holding just "0", is no file at all.
  if (raw === "" || raw === "0") return;
  const error: Report = (line, message, severity = "error") => {
    fw.diagnostics.push({ file, line, severity, message });
  };
  const allowed = new Set(ALLOWED[kind]);
  let section: Section | null = null;
  const lines = raw.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = (TRIM.exec(lines[i] as string) as RegExpExecArray)[1] as string;
    if (line.startsWith("#")) continue;
    if (/^[ \t\n\r\f\v]*$/.test(line)) continue;

    if (allowed.has("options") && /^\[options\]$/i.test(line)) {
      section = { kind: "options" };
      continue;
    }
    if (allowed.has("aliases") && /^\[aliases\]$/i.test(line)) {
      section = { kind: "aliases" };
      continue;
    }
    const gh = allowed.has("group") ? GROUP_HEADER.exec(line) : null;
    if (gh) {
      const name = asciiLower(gh[1] as string);
      let err: string | null = null;
      if (name.length > MAX_GROUP_NAME)
        err = `security group name ${show(name)} is too long (max ${MAX_GROUP_NAME})`;
      else if (!NAME_RE.test(name)) {
        err = `invalid security group name ${show(name)} (expected a letter, then letters, digits, - or _)`;
      }
      if (err) {
        error(lineNo, `${err}; the lines up to the next section header are ignored`);
        section = null;
        continue;
      }
      const group: FwGroup = { name, line: lineNo, rules: [] };
      setKey(fw.groups, name, group);
      section = { kind: "group", group, env: "group" };
      continue;
    }
    if (allowed.has("rules") && /^\[rules\]$/i.test(line)) {
      section = { kind: "rules" };
      continue;
    }
    const ih = allowed.has("ipset") ? IPSET_HEADER.exec(line) : null;
    if (ih) {
      const name = asciiLower(ih[1] as string);
      let err: string | null = null;
      if (name.length > MAX_IPSET_NAME)
        err = `ipset name ${show(name)} is too long (max ${MAX_IPSET_NAME})`;
      else if (!NAME_RE.test(name)) {
        err = `invalid ipset name ${show(name)} (expected a letter, then letters, digits, - or _)`;
      }
      if (err) {
        error(lineNo, `${err}; the lines up to the next section header are ignored`);
        section = null;
        continue;
      }
      const ipset: FwIpset = { name, line: lineNo, entries: [] };
      setKey(fw.ipsets, name, ipset);
      trace.ipsetDefs.set(name, [...(trace.ipsetDefs.get(name) ?? []), lineNo]);
      section = { kind: "ipset", ipset, keys: new Set() };
      continue;
    }

    if (!section) {
      error(lineNo, `line outside any section: ${show(line)}${outsideHint(line, kind)}`);
      continue;
    }
    switch (section.kind) {
      case "options": {
        const r = parseOption(line, kind);
        if ("error" in r) error(lineNo, r.error);
        else setKey(fw.options, r.key, r.value);
        break;
      }
      case "aliases":
        parseAliasLine(fw, line, lineNo, error, trace);
        break;
      case "rules":
      case "group": {
        const env = section.kind === "group" ? section.env : ENV[kind];
        const raw = splitRule(line);
        if ("error" in raw) {
          error(lineNo, `${raw.error}${section.kind === "rules" ? headerHint(line, kind) : ""}`);
          break;
        }
        if (kind === "host" && section.kind === "rules") hostAutovivify(raw, cluster, allowed);
        const errors = verifyRule(raw, env);
        if (errors.length === 0 && isDeferred(raw)) {
          const { proto, dport, sport } = raw;
          const dec = (v: string | undefined) => (v === undefined ? null : fromByteString(v));
          trace.deferredMacros.set(lineNo, {
            proto: dec(proto),
            dport: dec(dport),
            sport: dec(sport),
          });
        }
        if (raw.type === "group" && raw.enable && errors.length === 0 && /[A-Z]/.test(raw.action)) {
          // Group names are stored lower-cased and looked up as written.
          errors.push(`security group ${show(raw.action)} is never found: write it in lower case`);
        }
        if (errors.length > 0) {
          error(lineNo, errors.join("; "));
          break;
        }
        const macro = truthy(raw.macro) ? (findMacro(raw.macro)?.name ?? null) : null;
        const rule = toRule(raw, file, lineNo, macro);
        if (section.kind === "group") {
          section.group.rules.push(rule);
          trace.groupRules.push(rule);
        } else {
          fw.rules.push(rule);
        }
        break;
      }
      case "ipset":
        parseIpsetLine(section.ipset, section.keys, line, lineNo, error, trace);
        if (kind === "host") hostIpsetAutovivify(line, allowed);
        break;
    }
  }
}

/**
 * verify_rule looks names up in the host file's own (absent) alias and ipset tables, which makes
 * Perl create them; from then on the parser recognises [ALIASES] and [IPSET] headers in host.fw.
 */
function hostAutovivify(rule: RawRule, cluster: FwFile | null, allowed: Set<string>): void {
  for (const value of [rule.source, rule.dest]) {
    if (!truthy(value)) continue;
    if (value.startsWith("+")) {
      const m = IPSET_REF_RE.exec(value);
      if (m && !(cluster && Object.hasOwn(cluster.ipsets, m[2] as string))) allowed.add("ipset");
      continue;
    }
    const m = ALIAS_REF.exec(value);
    if (!m) continue;
    const inCluster =
      cluster !== null && Object.hasOwn(cluster.aliases, asciiLower(m[2] as string));
    if (!inCluster || m[1] !== "dc/") allowed.add("aliases");
  }
}

/** resolve_alias on an ipset entry that names an alias (not dc/) creates host.fw's alias table. */
function hostIpsetAutovivify(line: string, allowed: Set<string>): void {
  const c = COMMENT.exec(line);
  const m = IPSET_ENTRY.exec(c ? line.slice(0, c.index) : line);
  const alias = m ? ALIAS_REF.exec(m[2] as string) : null;
  if (alias && alias[1] !== "dc/") allowed.add("aliases");
}

function outsideHint(line: string, kind: FwKind): string {
  if (line.startsWith("\xef\xbb\xbf")) {
    return " (the file starts with a UTF-8 byte order mark, which pve-firewall does not skip)";
  }
  if (line.endsWith("\r")) {
    return " (Windows line ends: pve-firewall does not take a header ending in CR as a header)";
  }
  return /^\[/.test(line) ? headerHint(line, kind) : "";
}

function headerHint(line: string, kind: FwKind): string {
  const m = /^\[([A-Za-z]+)/.exec(line);
  if (!m) return "";
  const name = asciiLower(m[1] as string);
  if (
    ["options", "aliases", "rules", "group", "ipset"].includes(name) &&
    !ALLOWED[kind].has(name)
  ) {
    return ` ([${name.toUpperCase()}] sections are not allowed in ${kind === "guest" ? "a guest file" : `${kind}.fw`})`;
  }
  if (["options", "aliases", "rules"].includes(name) && !/^\[[A-Za-z]+\]$/.test(line)) {
    return ` (a [${name.toUpperCase()}] header cannot carry anything else on its line)`;
  }
  return "";
}

type Report = (line: number, message: string, severity?: Diagnostic["severity"]) => void;

function parseAliasLine(
  fw: FwFile,
  line: string,
  lineNo: number,
  error: Report,
  trace: ParseTrace,
): void {
  let rest = line;
  const c = ALIAS_COMMENT.exec(rest);
  if (c) rest = rest.slice(0, c.index);
  const m = ALIAS_LINE.exec(rest);
  if (!m) {
    // pve-firewall drops such a line without a word (parse_alias returns nothing), so it is not
    // an error; references to the name fail where they are made.
    error(
      lineNo,
      `alias line ${show(rest)} is ignored by pve-firewall: expected 'name address' separated by exactly one space or tab`,
      "warning",
    );
    return;
  }
  const name = m[1] as string;
  const cidr = m[2] as string;
  const ip = parseIpOrCidr(cidr);
  if ("error" in ip) {
    error(lineNo, `alias ${show(name)}: ${show(cidr)} is not an IPv4/IPv6 address or CIDR`);
    return;
  }
  const alias: FwAlias = { name: fromByteString(name), cidr: fromByteString(cidr), line: lineNo };
  const key = asciiLower(fromByteString(name));
  setKey(fw.aliases, key, alias);
  trace.aliasDefs.set(key, [
    ...(trace.aliasDefs.get(key) ?? []),
    { line: lineNo, family: ip.family },
  ]);
}

/** parse_ip_or_cidr's normalisation: /32 and /128 dropped (duplicates are found on that). */
function normalizeCidr(cidr: string): string {
  const ip = parseIpOrCidr(cidr);
  if ("error" in ip) return cidr;
  return cidr.replace(ip.family === 6 ? /\/128$/ : /\/32$/, "");
}

function parseIpsetLine(
  ipset: FwIpset,
  keys: Set<string>,
  line: string,
  lineNo: number,
  error: (line: number, message: string) => void,
  trace: ParseTrace,
): void {
  let rest = line;
  const c = COMMENT.exec(rest);
  if (c) rest = rest.slice(0, c.index);
  const m = IPSET_ENTRY.exec(rest);
  if (!m) {
    error(
      lineNo,
      `cannot parse ipset entry ${show(rest)}: expected one [!]address, CIDR or alias name`,
    );
    return;
  }
  const nomatch = m[1] === "!";
  let cidr = m[2] as string;
  let err: string | null = null;
  if (ALIAS_REF.test(cidr)) {
    trace.ipsetAliasEntries.push({ set: ipset.name, line: lineNo, cidr: fromByteString(cidr) });
  } else {
    const ip = parseIpOrCidr(cidr);
    if ("error" in ip)
      err = `ipset entry ${show(cidr)} is not an IPv4/IPv6 address, CIDR or alias name`;
    else cidr = normalizeCidr(cidr);
  }
  if (!err && keys.has(cidr)) err = `duplicate entry ${show(cidr)} in ipset ${ipset.name}`;
  keys.add(cidr);
  if (/\/0+$/.test(cidr))
    err = `ipset entry ${show(cidr)}: a zero prefix is not allowed in ipset entries`;
  if (err) {
    error(lineNo, err);
    return;
  }
  const entry: FwIpsetEntry = { cidr: fromByteString(m[2] as string), nomatch, line: lineNo };
  ipset.entries.push(entry);
}
