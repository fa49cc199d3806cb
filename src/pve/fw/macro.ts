// A macro rule (`IN SSH(ACCEPT) …`) against its macro (Firewall.pm apply_macro): parameters the
// rule sets that the macro also sets must agree. Some macros have IPv4 and IPv6 variants, and a
// rule's family may come from an alias that only refs.ts can look up, so the check either runs
// while the line is parsed or waits for refs.ts (isDeferred).

import { listFamily, parseAddressRef } from "../address.js";
import { findMacro, type MacroEntry } from "../macros.js";
import { isIcmpProto } from "../ports.js";
import { show, truthy } from "./bytes.js";

const KEYS = ["proto", "dport", "sport", "source", "dest"] as const;

/** The rule parameters a macro entry may also set; null / absent: the rule leaves it open. */
export type MacroParams = Partial<Record<(typeof KEYS)[number], string | null>>;

/** The parts of a rule line (byte strings) that decide whether the macro check can run now. */
interface MacroRule {
  macro?: string;
  proto?: string;
  source?: string;
  dest?: string;
}

/** Macros whose entries differ for IPv4 and IPv6 rules (Ping, Trcrt, DHCPv6, NeighborDiscovery). */
export function macroDependsOnFamily(name: string | null): boolean {
  if (name === null) return false;
  return JSON.stringify(findMacro(name, 4)) !== JSON.stringify(findMacro(name, 6));
}

function hasAlias(rule: MacroRule): boolean {
  return [rule.source, rule.dest].some((v) => {
    if (!truthy(v)) return false;
    const ref = parseAddressRef(v);
    return "kind" in ref && ref.kind === "alias";
  });
}

/** The macro check waits for refs.ts: an alias may pick the macro's IPv4/IPv6 variant, unless a
 *  literal address or an ICMP protocol fixes the family already. */
export function isDeferred(rule: MacroRule): boolean {
  if (!truthy(rule.macro)) return false;
  const macro = findMacro(rule.macro)?.name ?? null;
  if (!macroDependsOnFamily(macro) || !hasAlias(rule)) return false;
  const literal = [rule.source, rule.dest].some((v) => truthy(v) && listFamily(v) !== null);
  return !literal && !isIcmpProto(rule.proto);
}

/** apply_macro's check: rule parameters the macro also sets must be equal to the macro's
 *  (any defined value counts, even "0"). */
export function macroConflicts(name: string, rule: MacroParams, family: 4 | 6 | null): string[] {
  const macro = findMacro(name, family);
  const out: string[] = [];
  for (const entry of macro?.entries ?? []) {
    for (const key of KEYS) {
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
