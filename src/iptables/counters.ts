import type { NatPlan, NatRule } from "../model.js";
import { ownerChain } from "./chains.js";
import { ruleLine } from "./render.js";
import type { Runner } from "./runner.js";
import { type LiveState, parseSave } from "./save.js";

// Live packet/byte counters per forward (status, metrics): the sum over the forward's rules,
// matched by exactly the rendered rule line.

export type Counters = { packets: number; bytes: number };

/** A rule's key in LiveState.counters, kept per rule object: a plan's rules are never changed
 *  once handed out (nat/compile.ts), and the daemon's textfile writer looks up all of them on
 *  each write (13 000 rendered lines at 1000 guests, issue 10). */
const keys = new WeakMap<NatRule, { chain: string; key: string }>();

function counterKey(chain: string, rule: NatRule): string {
  const k = keys.get(rule);
  if (k?.chain === chain) return k.key;
  const key = `${chain} ${ruleLine(chain, rule)}`;
  keys.set(rule, { chain, key });
  return key;
}

/** Per forward: the sum of its live rules' counters; null when none of its rules is live. */
export function forwardCounters(plan: NatPlan, live: LiveState): Array<Counters | null> {
  const out: Array<Counters | null> = plan.forwards.map(() => null);
  for (const oc of plan.chains) {
    for (const [kind, rules] of [
      ["DNAT", oc.dnat],
      ["SNAT", oc.snat],
    ] as const) {
      const chain = ownerChain(oc.owner, kind);
      for (const rule of rules) {
        const c = live.counters.get(counterKey(chain, rule));
        if (!c) continue;
        const prev = out[rule.forward] ?? { packets: 0, bytes: 0 };
        out[rule.forward] = { packets: prev.packets + c.packets, bytes: prev.bytes + c.bytes };
      }
    }
  }
  return out;
}

/** Reads the live counters (`iptables-save -c`) of the plan's forwards. Throws when iptables
 *  cannot be read. */
export async function readForwardCounters(
  runner: Pick<Runner, "save">,
  plan: NatPlan,
): Promise<Array<Counters | null>> {
  const [nat, raw] = await Promise.all([runner.save("nat", true), runner.save("raw", true)]);
  return forwardCounters(plan, parseSave(nat, raw));
}
