// One rule line, `[|]IN|OUT|FORWARD ACTION|MACRO(ACTION) [options] [# comment]` or
// `[|]GROUP name [-i iface]`, judged in pve-firewall's two steps: parse_fw_rule splits the line
// (splitRule: a line it cannot split is dropped), then verify_rule checks the parts (verifyRule:
// every problem it dies on). Alias / ipset / group existence needs other files: refs.ts.

import type { FwRule, RuleType } from "../../model.js";
import { listFamily, NAME_PATTERN, parseAddressRef } from "../address.js";
import { asciiLower, findMacro } from "../macros.js";
import { checkPortSpec, ICMP_TYPES, ICMPV6_TYPES, isIcmpProto } from "../ports.js";
import { PROTOCOL_IDS, PROTOCOL_NAMES } from "../services.js";
import { cutComment, fromByteString, NS, re, S, show, truthy } from "./bytes.js";
import { isDeferred, macroConflicts } from "./macro.js";

/** One rule as parse_fw_rule extracts it (byte strings, before verify_rule). */
export interface RawRule {
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

/** A trailing comment; also how ipset entry lines lose theirs. */
export const COMMENT = re(`#${S}*([^\\n]*?)${S}*$`);
const TYPE_ACTION = re(`^(${NS}+)${S}+(${NS}+)${S}*`);
const MACRO_ACTION = re(`^(${NS}+)\\((ACCEPT|DROP|REJECT)\\)$`);
/** syslog levels, as -log and the log_level_* options take them. */
export const LOG_LEVELS = "emerg|alert|crit|err|warning|notice|info|debug|nolog";
// parse_fw_rule takes options one at a time from the front, each exactly "-flag value".
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
  let [rest, comment] = cutComment(line, COMMENT);
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
  const icmp = isIcmpProto(proto);
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

/** A verified rule as the model keeps it: decoded text, null for what Perl takes as unset. */
export function toRule(raw: RawRule, file: string, line: number, macro: string | null): FwRule {
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
