import type { Logger } from "pino";
import type { NatPlan } from "../model.js";
import { forwardsOf, plannedChains } from "../nat/lookup.js";
import type { Applier, ApplyResult } from "./applier.js";
import type { Clock } from "./clock.js";

// Guest lifecycle (SPEC §1). Two overrides of the run state Proxmox shows:
// - pending: a pre-start guest counts as running for start_grace_ms, so its forwards work from
//   its first packet; when the grace ends the run state decides again.
// - down: a post-stop guest counts as stopped even if its pidfile or socket lingers, until it
//   starts again (hook) or the watcher sees its run state change.

export interface LifecycleDeps {
  applier: Pick<Applier, "apply">;
  clock: Clock;
  graceMs: number;
  log: Logger;
  /** After post-start: per-NIC ARP setting on the guest's fwbr devices (zone fix on). */
  onStarted?(vmid: number, plan: NatPlan): Promise<void>;
}

export interface Lifecycle {
  pending(): ReadonlySet<number>;
  down(): ReadonlySet<number>;
  preStart(vmid: number): Promise<ApplyResult>;
  postStart(vmid: number): Promise<ApplyResult>;
  postStop(vmid: number): Promise<ApplyResult>;
  /** The watcher saw this guest's files or run state change: its run state decides again. */
  observed(vmid: number): void;
  stop(): void;
}

export function createLifecycle(deps: LifecycleDeps): Lifecycle {
  const { applier, clock, log } = deps;
  const timers = new Map<number, unknown>();
  const down = new Set<number>();

  function endGrace(vmid: number): void {
    const t = timers.get(vmid);
    if (t !== undefined) clock.clearTimeout(t);
    timers.delete(vmid);
  }

  return {
    pending: () => new Set(timers.keys()),
    down: () => down,
    preStart(vmid) {
      down.delete(vmid);
      endGrace(vmid);
      timers.set(
        vmid,
        clock.setTimeout(() => {
          timers.delete(vmid);
          log.debug({ vmid }, "start grace over");
          // Not running by now → the plan drops it and this removes its chains.
          applier.apply({ owners: [vmid] }).catch((err: unknown) => {
            log.warn({ vmid, err: String(err) }, "apply after start grace failed");
          });
        }, deps.graceMs),
      );
      return applier.apply({ owners: [vmid] });
    },
    async postStart(vmid) {
      down.delete(vmid);
      // Usually live since pre-start: rewrite only if the plan differs, so the first
      // connections' counters survive. Only this guest's run state is re-read: every guest's (a
      // /proc/net/unix scan and a pidfile stat per guest at 1000 guests) is the watcher's job,
      // each poll, and a post-start cycle now takes 3–6 ms there.
      const r = await applier.apply({ verify: [vmid] });
      if (deps.onStarted) await deps.onStarted(vmid, r.plan);
      return r;
    },
    postStop(vmid) {
      endGrace(vmid);
      down.add(vmid);
      return applier.apply({ owners: [vmid] });
    },
    observed(vmid) {
      down.delete(vmid);
    },
    stop() {
      for (const t of timers.values()) clock.clearTimeout(t);
      timers.clear();
    },
  };
}

/** The hook's answer for the task log (the hook prefixes "vm<id> <phase>: "). */
export function ackMessage(vmid: number, r: ApplyResult, stopping: boolean): string {
  const chain = plannedChains(r.plan).get(vmid);
  const rules = chain ? chain.dnat.length + chain.snat.length : 0;
  const mine = forwardsOf(r.plan, vmid);
  const active = mine.filter((f) => f.state === "active").length;
  const bad = mine.filter((f) => f.state === "conflict" || f.state === "error");
  let msg: string;
  if (stopping) {
    msg = r.rendered.includes(vmid) ? "NAT rules removed" : "no NAT rules to remove";
  } else if (rules > 0) {
    msg = `${active} forward${active === 1 ? "" : "s"} live (${rules} rule${rules === 1 ? "" : "s"})`;
  } else {
    msg = "no active NAT forwards";
  }
  if (r.restored) msg += `, applied in ${r.ms} ms`;
  const pending = mine.filter((f) => f.state === "pending").length;
  if (!stopping && pending > 0) {
    msg += `; ${pending} pending (guest address not known yet; live once it is learned)`;
  }
  if (!stopping && bad.length > 0) {
    const why = bad.map((f) => `${f.origin} ${f.state}${f.reason ? `: ${f.reason}` : ""}`);
    msg += `; not applied: ${why.join("; ")}`;
  }
  return msg;
}
