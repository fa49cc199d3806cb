import type { Logger } from "pino";
import { type Presence, presenceForwards } from "../cluster/presence.js";
import type { NatPlan } from "../model.js";
import type { Clock } from "./clock.js";

// The daemon's presence file in pmxcfs (issue 12 item 2): written at start, and again only when
// what it publishes changed (the forwards summary), at most once per MIN_INTERVAL_MS. A write to
// /etc/pve is replicated to every node of the cluster: never per poll, never per unchanged cycle.
// The file stays when the daemon stops (the package and its snippet are still installed, so
// attached guests still start here); package removal deletes it (packaging/debian/postrm).

export const PRESENCE_MIN_INTERVAL_MS = 10_000;

export interface PresencePublisher {
  /** The first write (daemon start), awaited. */
  start(plan: NatPlan | null): Promise<void>;
  /** After a cycle: write when the summary changed, rate-limited. */
  update(plan: NatPlan | null): void;
  stop(): void;
}

export function createPresencePublisher(deps: {
  node: string;
  version: string;
  /** false: nothing written (no node directory in /etc/pve). */
  write(p: Presence): Promise<boolean>;
  clock: Clock;
  log: Logger;
  minIntervalMs?: number;
}): PresencePublisher {
  const { clock, log } = deps;
  const minInterval = deps.minIntervalMs ?? PRESENCE_MIN_INTERVAL_MS;
  const started = clock.wall().toISOString();
  let written: string | null = null;
  let lastWrite = Number.NEGATIVE_INFINITY;
  let latest: NatPlan | null = null;
  let timer: unknown = null;
  let stopped = false;
  let writing: Promise<void> | null = null;
  let warned = false;
  /** start() ran: from then on a changed summary is written. */
  let begun = false;

  // Asked after every cycle, the drift check's too: a plan is immutable and an unchanged node
  // keeps the same one, whose summary is not built again, neither for the key nor for the file.
  // Keyed weakly: while a write waits out MIN_INTERVAL_MS the daemon moves on to newer plans,
  // and a strong reference kept the summarised one alive beside them (at 1000 guests ≈ 1.2 MB
  // of forwards no other plan shared, issue 10).
  const summaries = new WeakMap<
    NatPlan,
    { summary: ReturnType<typeof presenceForwards>; key: string }
  >();
  const summarise = (plan: NatPlan | null) => {
    const hit = plan === null ? undefined : summaries.get(plan);
    if (hit !== undefined) return hit;
    const summary = presenceForwards(plan);
    const made = { summary, key: JSON.stringify(summary) };
    if (plan !== null) summaries.set(plan, made);
    return made;
  };

  async function write(plan: NatPlan | null): Promise<void> {
    const { summary, key } = summarise(plan);
    const p: Presence = {
      version: 1,
      node: deps.node,
      pve_nat: deps.version,
      started,
      updated: clock.wall().toISOString(),
      ...summary,
    };
    lastWrite = clock.now();
    try {
      if (await deps.write(p)) {
        written = key;
        warned = false;
        log.debug({ forwards: p.forwards.length + p.more }, "presence file written");
      } else if (!warned) {
        log.info(
          { node: deps.node },
          "presence file not written: no /etc/pve/nodes/<node> directory (not a Proxmox node, or /etc/pve not mounted)",
        );
        warned = true;
      }
    } catch (err) {
      // /etc/pve is read-only without quorum: the next change tries again.
      (warned ? log.debug : log.warn).call(
        log,
        { err: err instanceof Error ? err.message : String(err) },
        "cannot write the presence file (nodes/<node>/pve-nat.json)",
      );
      warned = true;
    }
  }

  function schedule(): void {
    if (stopped || timer !== null || writing) return;
    if (summarise(latest).key === written) return;
    const wait = Math.max(0, lastWrite + minInterval - clock.now());
    timer = clock.setTimeout(() => {
      timer = null;
      if (stopped) return;
      writing = write(latest).finally(() => {
        writing = null;
        schedule();
      });
    }, wait);
  }

  return {
    async start(plan) {
      begun = true;
      latest = plan;
      await write(plan);
    },
    update(plan) {
      latest = plan;
      // The daemon's initial sync reports its cycle before start(): a write scheduled then ran
      // alongside start's, both through the same temporary file, and one rename failed
      // ("cannot write the presence file", ENOENT) at every daemon start.
      if (begun) schedule();
    },
    stop() {
      stopped = true;
      if (timer !== null) clock.clearTimeout(timer);
      timer = null;
    },
  };
}
