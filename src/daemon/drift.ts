import type { Logger } from "pino";
import type { Applier } from "./applier.js";
import { type Clock, every } from "./clock.js";

// Someone may flush the nat table, or a tool may delete our jumps: every drift_interval_ms the
// live PVENAT- chains are read back and compared with the plan; only what differs is rewritten
// (the applier's drift cycle), in the same queue as every other apply.

export interface DriftCheck {
  start(): void;
  stop(): void;
}

export function createDriftCheck(deps: {
  applier: Pick<Applier, "apply" | "state">;
  clock: Clock;
  intervalMs: number;
  log: Logger;
  /** Told about each repair (metrics). */
  onRepair?(): void;
}): DriftCheck {
  async function check(): Promise<void> {
    if (deps.applier.state().paused) return;
    try {
      const r = await deps.applier.apply({ drift: true });
      if (r.restored) {
        deps.onRepair?.();
        deps.log.info({ owners: r.rendered.length, entry: r.entry, ms: r.ms }, "drift repaired");
      }
    } catch (err) {
      deps.log.warn(
        { err: err instanceof Error ? err.message : String(err) },
        "drift check failed",
      );
    }
  }

  return every(deps.clock, deps.intervalMs, check);
}
