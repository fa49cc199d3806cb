import type { FwFile, FwRule, GuestNic, Proto } from "../model.js";
import { type IpSet, ipToInt } from "../nat/ipv4.js";
import { resolveAddress } from "../nat/resolve.js";
import { findMacro, type MacroEntry } from "../pve/macros.js";
import { type PortRange, parsePorts } from "../pve/ports.js";
import { all, type Match, matchAddress, matchPorts } from "./match.js";

// Would the guest's own firewall let a forward's traffic in, after DNAT? Evaluated the way
// pve-firewall builds a guest NIC's IN chain (Firewall.pm ruleset_generate_vm_chain /
// ruleset_add_group_rule): new connections only (established ones are accepted first), the
// guest's [RULES] of direction IN in order, a GROUP line's rules in its place (security groups
// resolve addresses in the cluster's scope), `-i netN` limits a rule to that NIC, disabled
// rules and rules pve-firewall rejects (an undefined alias or ipset) do not exist, the first
// ACCEPT/DROP/REJECT that matches decides, and `policy_in` (default DROP) ends the chain.
// Pure: the caller decides whether the firewall filters at all (guestFirewallOn + firewall=1).

/** A forward's post-DNAT traffic as the guest's NIC sees it. */
export interface GuestPacket {
  nic: number;
  /** Allowed sources (null: anyone). */
  source: IpSet | null;
  /** The guest's (private) address. */
  dest: string;
  proto: Proto;
  /** Private ports. */
  dport: PortRange[];
}

export type GuestVerdict =
  /** rule null: accepted by policy_in ACCEPT. */
  | { verdict: "accept"; rule: FwRule | null }
  | { verdict: "drop"; action: "DROP" | "REJECT"; rule: FwRule | null; policy: string }
  /** A rule that matches only part of the traffic decides for that part: not diagnosed. */
  | { verdict: "partly"; rule: FwRule };

const PROTO_NUMBERS: Record<Proto, string> = { tcp: "6", udp: "17" };

function protoMatch(rule: string | null, pkt: Proto): Match {
  if (rule === null) return "yes";
  return rule === pkt || rule === PROTO_NUMBERS[pkt] ? "yes" : "no";
}

function ports(text: string | null): PortRange[] | null | "bad" {
  if (text === null) return null;
  const r = parsePorts(text);
  return Array.isArray(r) ? r : "bad";
}

/** One address option of a rule, resolved in `scope`; "v6" or "bad" never match IPv4. */
function address(text: string | null, scope: { guest: FwFile | null; cluster: FwFile | null }) {
  if (text === null) return null;
  const r = resolveAddress(text, scope);
  return r.kind === "v4" ? r.set : "none";
}

/** The rule's (or one macro entry's) effective match against the packet. */
function matchOne(
  rule: FwRule,
  e: MacroEntry,
  pkt: GuestPacket,
  scope: { guest: FwFile | null; cluster: FwFile | null },
): Match {
  const proto = e.proto?.toLowerCase() ?? rule.proto;
  const dport = ports(e.dport && e.dport !== "PARAM" ? e.dport : rule.dport);
  const sport = e.sport && e.sport !== "PARAM" ? e.sport : rule.sport;
  if (dport === "bad") return "no";
  // A forwarded connection comes from the client's random source port: a source-port match
  // never covers it (the compatible form's problem, SPEC §2.2).
  if (sport !== null) return "no";
  if (rule.icmpType !== null) return "no";
  const src = address(e.source === "DEST" ? rule.dest : rule.source, scope);
  const dst = address(e.dest === "SOURCE" ? rule.source : rule.dest, scope);
  if (src === "none" || dst === "none") return "no";
  const d = ipToInt(pkt.dest);
  return all(
    protoMatch(proto, pkt.proto),
    // A rule with ports but no protocol is rejected by pve-firewall (and reported by check).
    dport !== null && proto === null ? "no" : matchPorts(pkt.dport, dport),
    matchAddress(pkt.source, src),
    dst === null ? "yes" : dst.some((iv) => iv.lo <= d && d <= iv.hi) ? "yes" : "no",
  );
}

function matchRule(
  rule: FwRule,
  pkt: GuestPacket,
  scope: { guest: FwFile | null; cluster: FwFile | null },
): Match {
  if (!rule.enabled || rule.type !== "in") return "no";
  if (rule.iface !== null && rule.iface !== `net${pkt.nic}`) return "no";
  if (rule.macro === null) return matchOne(rule, {}, pkt, scope);
  const macro = findMacro(rule.macro, 4);
  if (!macro) return "no";
  // A multi-entry macro is one iptables rule per entry, in order, all with the rule's action.
  const ms = macro.entries.map((e) => matchOne(rule, e, pkt, scope));
  return ms.includes("yes") ? "yes" : ms.includes("some") ? "some" : "no";
}

/** The rules of the guest's IN chain in order, each with its address scope. */
function chain(guest: FwFile, cluster: FwFile | null, nic: number) {
  const out: Array<{ rule: FwRule; scope: { guest: FwFile | null; cluster: FwFile | null } }> = [];
  for (const rule of guest.rules) {
    if (rule.type !== "group") {
      out.push({ rule, scope: { guest, cluster } });
      continue;
    }
    if (!rule.enabled) continue;
    if (rule.iface !== null && rule.iface !== `net${nic}`) continue;
    const group = cluster?.groups[rule.action.toLowerCase()];
    for (const r of group?.rules ?? []) {
      if (r.type === "group") continue;
      out.push({ rule: r, scope: { guest: null, cluster } });
    }
  }
  return out;
}

export function guestPolicyIn(guest: FwFile): string {
  const p = (guest.options.policy_in ?? "DROP").toUpperCase();
  return ["ACCEPT", "DROP", "REJECT"].includes(p) ? p : "DROP";
}

/** What the guest's firewall does with the forward's new connections. */
export function evaluateGuestIn(
  pkt: GuestPacket,
  guest: FwFile,
  cluster: FwFile | null,
): GuestVerdict {
  const policy = guestPolicyIn(guest);
  // A DROP that matches only some of the traffic: the rest goes on. If the chain ends in a
  // drop anyway, every packet is dropped (by that rule or later) — still a certain drop.
  let partialDrop: FwRule | null = null;
  for (const { rule, scope } of chain(guest, cluster, pkt.nic)) {
    const m = matchRule(rule, pkt, scope);
    if (m === "no") continue;
    const accept = rule.action === "ACCEPT";
    if (m === "some") {
      if (accept) return { verdict: "partly", rule };
      partialDrop ??= rule;
      continue;
    }
    if (accept) return { verdict: "accept", rule };
    return { verdict: "drop", action: rule.action === "REJECT" ? "REJECT" : "DROP", rule, policy };
  }
  if (policy === "ACCEPT") {
    return partialDrop
      ? { verdict: "partly", rule: partialDrop }
      : { verdict: "accept", rule: null };
  }
  return { verdict: "drop", action: policy as "DROP" | "REJECT", rule: null, policy };
}

/** The NIC of the guest holding `address` (its configured ip=), if any. */
export function nicOf(nics: readonly GuestNic[], address: string): GuestNic | null {
  return nics.find((n) => n.ip?.split("/")[0] === address) ?? null;
}
