import { type IpSet, subtract, union } from "../nat/ipv4.js";
import type { PortRange } from "../pve/ports.js";

// Three-valued matching of one packet class (a forward's traffic) against one filter rule's
// match: the rule matches every such packet, none, or only some. Diagnoses claim a drop only
// from "yes" and "no", never from "some" — a diagnosis must not invent a problem.

export type Match = "yes" | "no" | "some";

export const ANY: IpSet = [{ lo: 0, hi: 2 ** 32 - 1 }];

/** Packets from/to `pkt` (null = any address) against a rule's address set (null = any). */
export function matchAddress(pkt: IpSet | null, rule: IpSet | null): Match {
  if (rule === null) return "yes";
  const p = pkt ?? ANY;
  const left = subtract(p, rule);
  if (left.length === 0) return "yes";
  // Disjoint: taking the rule's set away leaves the packets' set as it was.
  const size = (s: IpSet) => s.reduce((n, iv) => n + iv.hi - iv.lo + 1, 0);
  return size(left) === size(p) ? "no" : "some";
}

/** Ports as a set of intervals (the same arithmetic as addresses). */
function portSet(ranges: readonly PortRange[]): IpSet {
  return union(
    ranges.map((r) => ({ lo: r.from, hi: r.to })),
    [],
  );
}

/** The forward's ports (all of them used) against a rule's ports (null = any port). */
export function matchPorts(pkt: readonly PortRange[], rule: readonly PortRange[] | null): Match {
  if (rule === null) return "yes";
  return matchAddress(portSet(pkt), portSet(rule));
}

/** And of several matches. */
export function all(...ms: Match[]): Match {
  if (ms.includes("no")) return "no";
  return ms.includes("some") ? "some" : "yes";
}
