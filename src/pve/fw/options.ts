// The [OPTIONS] section: the parse_vmfw_option / parse_hostfw_option / parse_clusterfw_option
// key and value patterns, one set per file kind. A line none of them matches is one
// pve-firewall warns about and ignores; keys come out lower-cased, values as pve-firewall
// stores them (policies upper-cased, log levels lower-cased, numbers as Perl prints them).

import type { FwKind } from "../../model.js";
import { perlSplit } from "../address.js";
import { asciiLower } from "../macros.js";
import { ETHERTYPE_IDS, ETHERTYPE_NAMES } from "../services.js";
import { NS, re, S, show } from "./bytes.js";
import { LOG_LEVELS } from "./rule.js";

export type OptionResult = { key: string; value: string } | { error: string };

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

/** pve-firewall's `$pve_fw_helpers`: the helpers `nf_conntrack_helpers` may name, with the
 *  port it attaches each one for in raw PVEFW-PREROUTING (`v4`: also for IPv4). */
export const CONNTRACK_HELPERS: Readonly<
  Record<string, { proto: "tcp" | "udp"; port: number; v4: boolean }>
> = Object.freeze({
  amanda: { proto: "udp", port: 10080, v4: true },
  ftp: { proto: "tcp", port: 21, v4: true },
  irc: { proto: "tcp", port: 6667, v4: true },
  "netbios-ns": { proto: "udp", port: 137, v4: true },
  pptp: { proto: "tcp", port: 1723, v4: true },
  sane: { proto: "tcp", port: 6566, v4: true },
  sip: { proto: "udp", port: 5060, v4: true },
  snmp: { proto: "udp", port: 161, v4: true },
  tftp: { proto: "udp", port: 69, v4: true },
});

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
      if (!Object.hasOwn(CONNTRACK_HELPERS, h)) {
        return {
          error: `unknown conntrack helper ${show(h)} (expected ${Object.keys(CONNTRACK_HELPERS).join(", ")})`,
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

/** One [OPTIONS] line of a `kind` file: its key and value, or why pve-firewall ignores it. */
export function parseOption(line: string, kind: FwKind): OptionResult {
  const parsed =
    kind === "guest" ? guestOption(line) : kind === "host" ? hostOption(line) : clusterOption(line);
  if (parsed) return parsed;
  const hint = line.includes("#") ? " (comments are not allowed on option lines)" : "";
  return {
    error: `cannot parse option ${show(line)}${hint}: expected 'key: value' with a known key and a valid value (${kind} options: ${OPTION_NAMES[kind]})`,
  };
}
