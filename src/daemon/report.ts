import type { Logger } from "pino";
import type { BusEvent } from "../bus/protocol.js";
import type { Forward, NatPlan, Owner } from "../model.js";

// What one cycle tells the world: an `applied` or `removed` event per rewritten owner, a
// `conflict` event per conflict that is new or whose owner was rewritten, and log lines with
// counts and durations (payloads only at trace level, in applier.ts).

export interface CycleReport {
  plan: NatPlan;
  previous: NatPlan | null;
  rendered: readonly Owner[];
  /** Rules each removed owner had live. */
  removedRules: ReadonlyMap<Owner, number>;
  ms: number;
  full: boolean;
}

export function ownerOf(f: Forward): Owner {
  return f.vmid ?? "NODE";
}

export function report(
  r: CycleReport,
  publish: (e: BusEvent) => void,
  log: Logger,
  ts: string,
): void {
  const { plan, previous, rendered, ms, full } = r;
  const byOwner = new Map(plan.chains.map((c) => [c.owner, c]));
  const many = rendered.length > 20;
  const say = many ? log.debug.bind(log) : log.info.bind(log);
  for (const o of rendered) {
    const vmid = o === "NODE" ? null : o;
    const c = byOwner.get(o);
    if (c) {
      const rules = c.dnat.length + c.snat.length;
      publish({ type: "applied", ts, vmid, rules, ms });
      say({ vmid, rules, ms }, "applied");
    } else {
      const rules = r.removedRules.get(o) ?? 0;
      publish({ type: "removed", ts, vmid, rules, ms });
      say({ vmid, rules, ms }, "removed");
    }
  }
  const touched = new Set(rendered);
  // A guest whose only forwards lose a conflict has no chain to rewrite, so "touched" alone
  // would never report it: a conflict new since the previous plan is reported regardless.
  const conflictKey = (f: Forward) => `${f.vmid}\0${f.origin}\0${f.proto}\0${f.public.ports}`;
  const wasConflict = new Set(
    (previous?.forwards ?? []).filter((f) => f.state === "conflict").map(conflictKey),
  );
  for (const f of plan.forwards) {
    if (f.state !== "conflict") continue;
    if (!touched.has(ownerOf(f)) && wasConflict.has(conflictKey(f))) continue;
    const message = `${f.origin}: ${f.reason ?? "conflict"}`;
    publish({ type: "conflict", ts, vmid: f.vmid, rules: 0, ms, message });
    log.warn({ vmid: f.vmid, origin: f.origin }, f.reason ?? "conflict");
  }
  if (full || many) log.info({ owners: rendered.length, ms, full }, "sync");
}
