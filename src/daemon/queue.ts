import type { NatPlan, Owner } from "../model.js";

// The applier's queue and waiters: callers mark work; one cycle runs at a time; everything
// marked while a cycle runs shares the next one, and every waiter of a batch gets that cycle's
// result. No iptables knowledge lives here (applier.ts runs the cycle).

/** What to (re)apply: some owners (rewritten even if unchanged), every owner (entry included),
 *  or a full sync that re-reads the live state first. `check` writes only owners whose plan
 *  differs from what pve-nat last wrote (the watcher: rewriting an unchanged chain would reset
 *  its counters); `verify` does the same after re-reading only the given guests' run state
 *  (post-start: one guest, not every guest's); `drift` re-reads the live state and repairs only
 *  what differs. */
export type ApplyTarget =
  | { owners: Owner[] }
  | { all: true }
  | { full: true }
  | { check: true }
  | { verify: number[] }
  | { drift: true };

export interface ApplyResult {
  plan: NatPlan;
  /** Owners whose chains this cycle rewrote or removed. */
  rendered: Owner[];
  entry: boolean;
  full: boolean;
  /** False when nothing differed and no restore ran. */
  restored: boolean;
  ms: number;
}

export interface Batch {
  owners: Set<Owner>;
  /** Guests whose run state is re-read; written only if their plan differs (`verify`). */
  verify: Set<number>;
  all: boolean;
  full: boolean;
  drift: boolean;
  check: boolean;
}

interface Waiter<T> {
  resolve(r: T): void;
  reject(e: unknown): void;
}

export interface QueueHandlers {
  /** One cycle for a batch; throws to fail every waiter of the batch. */
  cycle(batch: Batch): Promise<ApplyResult>;
  flush(): Promise<void>;
  /** Refusal for work arriving now (paused, stopping), or null to accept it. */
  refuse(): Error | null;
}

export interface Queue {
  enqueue(target: ApplyTarget): Promise<ApplyResult>;
  /** A full sync on the next cycle, without a waiter (a retry after a failure). */
  wantFull(): void;
  flush(): Promise<void>;
  /** Waits for the running cycle, then fails every waiter left with `err`. */
  stop(err: Error): Promise<void>;
}

function emptyBatch(): Batch {
  return {
    owners: new Set(),
    verify: new Set(),
    all: false,
    full: false,
    drift: false,
    check: false,
  };
}

export function createQueue(h: QueueHandlers): Queue {
  let next = emptyBatch();
  let waiters: Array<Waiter<ApplyResult>> = [];
  let flushWaiters: Array<Waiter<void>> = [];
  let running: Promise<void> | null = null;
  let scheduled = false;
  let stopped = false;

  function hasWork(): boolean {
    return (
      flushWaiters.length > 0 ||
      waiters.length > 0 ||
      next.owners.size > 0 ||
      next.all ||
      next.full ||
      next.drift
    );
  }

  function schedule(): void {
    if (running || scheduled || stopped) return;
    scheduled = true;
    // setImmediate, not a microtask: requests arriving in the same turn of the event loop
    // (a burst of bus messages) join the same restore.
    setImmediate(() => {
      scheduled = false;
      if (running || stopped) return;
      running = loop().finally(() => {
        running = null;
        if (hasWork()) schedule();
      });
    });
  }

  async function loop(): Promise<void> {
    while (hasWork() && !stopped) {
      if (flushWaiters.length > 0) {
        const ws = flushWaiters;
        flushWaiters = [];
        await settle(ws, h.flush());
        continue;
      }
      const batch = next;
      const ws = waiters;
      next = emptyBatch();
      waiters = [];
      const refused = h.refuse();
      if (refused) {
        for (const w of ws) w.reject(refused);
        continue;
      }
      await settle(ws, h.cycle(batch));
    }
  }

  async function settle<T>(ws: Array<Waiter<T>>, work: Promise<T>): Promise<void> {
    try {
      const r = await work;
      for (const w of ws) w.resolve(r);
    } catch (err) {
      for (const w of ws) w.reject(err);
    }
  }

  return {
    enqueue(target) {
      const refused = stopped ? new Error("pve-nat daemon is stopping") : h.refuse();
      if (refused) return Promise.reject(refused);
      return new Promise<ApplyResult>((resolve, reject) => {
        if ("owners" in target) for (const o of target.owners) next.owners.add(o);
        if ("verify" in target) for (const o of target.verify) next.verify.add(o);
        if ("all" in target) next.all = true;
        if ("full" in target) next.full = true;
        if ("drift" in target) next.drift = true;
        // A check's waiter alone makes a cycle run (every cycle diffs); the flag widens what
        // is re-read to every guest's run state.
        if ("check" in target) next.check = true;
        waiters.push({ resolve, reject });
        schedule();
      });
    },
    wantFull() {
      next.full = true;
      schedule();
    },
    flush() {
      if (stopped) return Promise.reject(new Error("pve-nat daemon is stopping"));
      return new Promise<void>((resolve, reject) => {
        flushWaiters.push({ resolve, reject });
        schedule();
      });
    },
    async stop(err) {
      stopped = true;
      if (running) await running;
      for (const w of waiters) w.reject(err);
      for (const w of flushWaiters) w.reject(err);
      waiters = [];
      flushWaiters = [];
      next = emptyBatch();
    },
  };
}
