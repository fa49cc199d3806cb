import type { Proto } from "../model.js";
import type { IpSet } from "../nat/ipv4.js";
import { ipToInt } from "../nat/ipv4.js";
import type { PortRange } from "../pve/ports.js";
import { all, type Match, matchAddress, matchPorts } from "./match.js";

// Does the `filter` table let a forward's first packet through FORWARD? Read from
// `iptables-save -t filter` and walked like the kernel walks it: rules in order, jumps into
// user chains and back, RETURN, the builtin chain's policy at the end. Only the matches a
// forward's traffic can be judged by (addresses, interfaces, protocol, ports, conntrack state)
// are understood; any other match makes the rule "some": an ACCEPT that might match makes the
// outcome unknown, so nothing is claimed. Pure.

/** The original-direction packet of a forward as FORWARD sees it: its routed pass (ext →
 *  guest bridge), or — `bridged` — its pass across a guest's fwbr bridge (bridge netfilter
 *  shows bridged packets to FORWARD too; `in`/`out` are then the bridge, `physIn`/`physOut` its
 *  ports). */
export interface FilterPacket {
  in: string | null;
  out: string | null;
  /** Bridged (not routed): `--physdev-is-bridged` matches only then. Default false. */
  bridged?: boolean;
  physIn?: string | null;
  physOut?: string | null;
  source: IpSet | null;
  dest: IpSet | null;
  proto: Proto | null;
  dport: PortRange[] | null;
  /** Conntrack states of the packet: ["NEW", "DNAT"] for a forward's first inbound packet. */
  ctstate: string[];
}

export interface FilterTable {
  policies: Map<string, string>;
  chains: Map<string, string[][]>;
}

export type FilterVerdict =
  | { verdict: "accept" | "unknown" }
  /** `rule` null: the chain's policy; else the dropping rule as iptables-save prints it. */
  | { verdict: "drop"; rule: string | null; policy: string };

/** iptables-save arguments: words, "quoted strings" (comments) kept whole. */
export function splitArgs(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const m of line.matchAll(re)) out.push(m[1] !== undefined ? m[1] : (m[2] as string));
  return out;
}

export function parseFilterSave(text: string): FilterTable {
  const t: FilterTable = { policies: new Map(), chains: new Map() };
  let inFilter = false;
  for (const raw of text.split("\n")) {
    const line = raw.replace(/^\[\d+:\d+\] /, "").trim();
    if (line.startsWith("*")) inFilter = line === "*filter";
    if (!inFilter) continue;
    const decl = /^:(\S+) (\S+)/.exec(line);
    if (decl) {
      if (decl[2] !== "-") t.policies.set(decl[1] as string, decl[2] as string);
      if (!t.chains.has(decl[1] as string)) t.chains.set(decl[1] as string, []);
      continue;
    }
    if (!line.startsWith("-A ")) continue;
    const args = splitArgs(line);
    const chain = args[1] as string;
    if (!t.chains.has(chain)) t.chains.set(chain, []);
    t.chains.get(chain)?.push(args.slice(2));
  }
  return t;
}

function cidrSet(text: string): IpSet | null {
  const m = /^(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?$/.exec(text);
  if (!m) return null;
  const len = m[2] === undefined ? 32 : Number(m[2]);
  const size = 2 ** (32 - len);
  const lo = Math.floor(ipToInt(m[1] as string) / size) * size;
  return [{ lo, hi: lo + size - 1 }];
}

function negate(m: Match, neg: boolean): Match {
  if (!neg || m === "some") return m;
  return m === "yes" ? "no" : "yes";
}

function ifaceMatch(pkt: string | null, rule: string): Match {
  if (pkt === null) return "some";
  if (rule.endsWith("+")) return pkt.startsWith(rule.slice(0, -1)) ? "yes" : "no";
  return pkt === rule ? "yes" : "no";
}

function portRanges(text: string): PortRange[] | null {
  const out: PortRange[] = [];
  for (const part of text.split(",")) {
    const m = /^(\d+)(?::(\d+))?$/.exec(part);
    if (!m) return null;
    out.push({ from: Number(m[1]), to: Number(m[2] ?? m[1]) });
  }
  return out;
}

const KNOWN_MODULES = new Set([
  "tcp",
  "udp",
  "conntrack",
  "state",
  "comment",
  "multiport",
  "physdev",
]);

/** The rule's match against the packet, and its target ("-j X" / "-g X"). */
export function matchFilterRule(
  args: readonly string[],
  pkt: FilterPacket,
): { match: Match; target: string | null; goto: boolean } {
  const ms: Match[] = [];
  let target: string | null = null;
  let goto = false;
  for (let i = 0; i < args.length; i++) {
    let a = args[i] as string;
    let neg = false;
    if (a === "!") {
      neg = true;
      a = args[++i] ?? "";
    }
    const v = args[i + 1] ?? "";
    const valueNeg = v === "!";
    const value = valueNeg ? (args[i + 2] ?? "") : v;
    const take = () => {
      i += valueNeg ? 2 : 1;
      return neg || valueNeg;
    };
    switch (a) {
      case "-s":
      case "-d": {
        const n = take();
        const set = cidrSet(value);
        const pktSet = a === "-s" ? pkt.source : pkt.dest;
        ms.push(set === null ? "some" : negate(matchAddress(pktSet, set), n));
        break;
      }
      case "-i":
      case "-o": {
        const n = take();
        ms.push(negate(ifaceMatch(a === "-i" ? pkt.in : pkt.out, value), n));
        break;
      }
      case "-p": {
        const n = take();
        const p = value.toLowerCase();
        const m: Match =
          p === "all" || p === "0"
            ? "yes"
            : pkt.proto === null
              ? "some"
              : p === pkt.proto || p === (pkt.proto === "tcp" ? "6" : "17")
                ? "yes"
                : "no";
        ms.push(negate(m, n));
        break;
      }
      case "-m": {
        take();
        if (!KNOWN_MODULES.has(value)) ms.push("some");
        break;
      }
      case "--dport":
      case "--dports":
      case "--destination-port": {
        const n = take();
        const r = portRanges(value);
        ms.push(r === null || pkt.dport === null ? "some" : negate(matchPorts(pkt.dport, r), n));
        break;
      }
      case "--sport":
      case "--sports":
      case "--source-port":
        // The client's source port: any of them.
        take();
        ms.push("some");
        break;
      case "--ctstate":
      case "--state": {
        const n = take();
        const states = value.split(",");
        ms.push(negate(states.some((s) => pkt.ctstate.includes(s)) ? "yes" : "no", n));
        break;
      }
      case "--comment":
        take();
        break;
      case "--physdev-is-bridged":
      case "--physdev-is-in":
      case "--physdev-is-out": {
        // Flags without a value. A routed packet is never "being bridged"; one that entered or
        // leaves through a bridge port may still have a physdev, so only is-bridged is certain.
        const bridged = pkt.bridged === true;
        ms.push(negate(bridged ? "yes" : a === "--physdev-is-bridged" ? "no" : "some", neg));
        break;
      }
      case "--physdev-in":
      case "--physdev-out": {
        const n = take();
        const dev = a === "--physdev-in" ? pkt.physIn : pkt.physOut;
        ms.push(pkt.bridged === true ? negate(ifaceMatch(dev ?? null, value), n) : "some");
        break;
      }
      case "-j":
      case "-g":
        goto = a === "-g";
        target = value;
        i++;
        // Target options (--reject-with …) follow; they do not match anything.
        i = args.length;
        break;
      default:
        ms.push("some");
        if (value !== "" && !value.startsWith("-")) i++;
    }
  }
  return { match: all(...ms), target, goto };
}

type Outcome =
  | { kind: "accept" | "unknown" | "return" }
  | { kind: "drop"; rule: string | null; policy: string };

const MAX_DEPTH = 16;

function walk(t: FilterTable, chain: string, pkt: FilterPacket, depth: number): Outcome {
  if (depth > MAX_DEPTH) return { kind: "unknown" };
  // A DROP that matched only part of the traffic: the rest went on. If what follows also
  // drops, all of it is dropped (by that rule or later).
  for (const args of t.chains.get(chain) ?? []) {
    const { match, target, goto } = matchFilterRule(args, pkt);
    if (match === "no" || target === null) continue;
    const line = `-A ${chain} ${args.map((a) => (/\s/.test(a) ? `"${a}"` : a)).join(" ")}`;
    switch (target) {
      case "ACCEPT":
        return { kind: match === "yes" ? "accept" : "unknown" };
      case "DROP":
      case "REJECT":
        if (match === "yes")
          return { kind: "drop", rule: line, policy: t.policies.get(chain) ?? "" };
        continue;
      case "RETURN":
        return { kind: match === "yes" ? "return" : "unknown" };
      default: {
        if (!t.chains.has(target)) continue; // LOG, MARK, …: not terminating
        const sub = walk(t, target, pkt, depth + 1);
        if (sub.kind === "return") {
          if (goto && match === "yes") return sub;
          continue;
        }
        if (match === "yes") return sub;
        // Maybe jumped: a certain drop there still leaves this chain's rest for the others.
        if (sub.kind === "drop") continue;
        return { kind: "unknown" };
      }
    }
  }
  const policy = t.policies.get(chain);
  if (policy === undefined) return { kind: "return" };
  if (policy === "ACCEPT") return { kind: "accept" };
  return { kind: "drop", rule: null, policy };
}

/** One chain's verdict on the packet, entered as a jump would enter it; the end of a chain
 *  without a policy (a RETURN to whoever jumped) is "unknown". */
export function evaluateChain(t: FilterTable, chain: string, pkt: FilterPacket): FilterVerdict {
  const r = walk(t, chain, pkt, 0);
  if (r.kind === "drop") return { verdict: "drop", rule: r.rule, policy: r.policy };
  return { verdict: r.kind === "accept" ? "accept" : "unknown" };
}

/** FORWARD's verdict on the packet. */
export function evaluateForward(t: FilterTable, pkt: FilterPacket): FilterVerdict {
  return evaluateChain(t, "FORWARD", pkt);
}
