import type { Logger } from "pino";
import type { BusEvent } from "../bus/protocol.js";
import { type Admission, pendingOf } from "../diagnose/admission.js";
import type { Forward, NatPlan, Owner } from "../model.js";
import { conflictsOf, forwardsOf, ownerOf, plannedChains } from "../nat/lookup.js";

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
  /** Forward index → whether the guest firewall admits it yet (diagnose/admission.ts), for the
   *  rendered guests whose firewall filters; absent when not read. */
  admissions?: ReadonlyMap<number, Admission>;
}

/** The learned guest address of vmid's live forwards (null: none live). */
function liveAddress(plan: NatPlan | null, vmid: number): string | null {
  const addrs = new Set<string>();
  for (const f of plan ? forwardsOf(plan, vmid) : []) {
    if (f.state !== "active" || f.private.address === null) continue;
    const src = f.private.addressSource;
    if (src === null || src === "rule") continue;
    addrs.add(f.private.address);
  }
  return addrs.size === 1 ? ([...addrs][0] as string) : null;
}

/** old → new when the guest's (learned or configured) address moved since the last plan. */
export function addressChange(
  previous: NatPlan | null,
  plan: NatPlan,
  vmid: number,
): { from: string | null; to: string | null } | undefined {
  if (previous === null) return undefined;
  const from = liveAddress(previous, vmid);
  const to = liveAddress(plan, vmid);
  return from !== to ? { from, to } : undefined;
}

export function report(
  r: CycleReport,
  publish: (e: BusEvent) => void,
  log: Logger,
  ts: string,
): void {
  const { plan, previous, rendered, ms, full } = r;
  // Nothing rewritten and the same plan (an idle drift check): no event, no conflict that is
  // new, no log line; skips walking every forward twice.
  if (rendered.length === 0 && plan === previous && !full) return;
  const byOwner = plannedChains(plan);
  const many = rendered.length > 20;
  const say = many ? log.debug.bind(log) : log.info.bind(log);
  for (const o of rendered) {
    const vmid = o === "NODE" ? null : o;
    const c = byOwner.get(o);
    if (c) {
      const rules = c.dnat.length + c.snat.length;
      const address = vmid === null ? undefined : addressChange(previous, plan, vmid);
      const gf = vmid === null || !r.admissions ? undefined : pendingOf(r.admissions, vmid, plan);
      const extra = { ...(address ? { address } : {}), ...(gf ? { guest_firewall: gf } : {}) };
      publish({ type: "applied", ts, vmid, rules, ms, ...extra });
      say({ vmid, rules, ms, ...extra }, "applied");
      if (gf) {
        log.info(
          { vmid, ports: gf.ports, chains: gf.chains },
          "live in pve-nat; the guest firewall admits it at pve-firewall's next update (up to 10 s)",
        );
      }
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
  const wasConflict = new Set(previous ? conflictsOf(previous).map(conflictKey) : []);
  for (const f of conflictsOf(plan)) {
    if (!touched.has(ownerOf(f)) && wasConflict.has(conflictKey(f))) continue;
    const message = `${f.origin}: ${f.reason ?? "conflict"}`;
    publish({ type: "conflict", ts, vmid: f.vmid, rules: 0, ms, message });
    log.warn({ vmid: f.vmid, origin: f.origin }, f.reason ?? "conflict");
  }
  if (full || many) log.info({ owners: rendered.length, ms, full }, "sync");
}
