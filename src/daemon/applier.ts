import type { Logger } from "pino";
import type { BusEvent } from "../bus/protocol.js";
import { compareOwners, ownerChain } from "../iptables/chains.js";
import { diffLive, renderFlush, renderRestore } from "../iptables/render.js";
import type { Runner } from "../iptables/runner.js";
import { type LiveState, parseSave } from "../iptables/save.js";
import type { Forward, NatPlan, Owner } from "../model.js";
import type { Clock } from "./clock.js";
import { type ConntrackDelete, forwardsGone } from "./conntrack.js";
import { replayPayload } from "./livecache.js";
import type { LoadScope } from "./plan.js";
import { createRenderCache, ownerChainOf } from "./rendercache.js";

// The one writer of pve-nat's iptables state (kube-proxy's sync loop, made small):
// callers mark owners dirty; one cycle at a time loads the plan, renders only what changed into
// one `iptables-restore --noflush` payload, and resolves everyone waiting on those owners.
// Everything marked while a cycle runs shares the next restore. Any failure makes the next
// cycle a full one (re-read the live state, redeclare every owner and the entry chains) and
// schedules it with a capped exponential backoff.

/** The pure iptables functions the applier uses; injectable so the queue logic is testable alone. */
export interface IptablesKit {
  parseSave(nat: string, raw: string): LiveState;
  renderRestore: typeof renderRestore;
  renderFlush(live: LiveState): string;
  diffLive(plan: NatPlan, live: LiveState): { owners: Owner[]; entry: boolean };
}

export const realIptables: IptablesKit = {
  parseSave,
  renderRestore,
  renderFlush,
  diffLive,
};

/** realIptables with rule lines cached per owner (rendercache.ts): the applier's default. */
export function cachedIptables(): IptablesKit {
  const cache = createRenderCache();
  return { parseSave, renderFlush, renderRestore: cache.renderRestore, diffLive: cache.diffLive };
}

export interface ApplierDeps {
  /** Reads the node's files and compiles the plan (starting/stopped overrides already applied).
   *  `scope` says what may have changed since the last cycle (plan.ts re-reads only that). */
  load(scope?: LoadScope): Promise<NatPlan>;
  runner: Pick<Runner, "restore" | "save" | "backend">;
  publish(event: BusEvent): void;
  log: Logger;
  clock: Clock;
  /** Deletes the conntrack entries of forwards that went away; must not throw. */
  conntrack?(deletes: ConntrackDelete[]): Promise<void>;
  iptables?: IptablesKit;
  retry?: { baseMs: number; maxMs: number };
  /** Whether the first cycle is a full sync (the daemon's start) or reads the live state and
   *  writes only what was asked plus what differs (a one-off `apply <vmid>`). Default true. */
  startFull?: boolean;
}

/** What to (re)apply: some owners (rewritten even if unchanged), every owner (entry included),
 *  or a full sync that re-reads the live state first. `check` writes only owners whose plan
 *  differs from what pve-nat last wrote (the watcher: rewriting an unchanged chain would reset
 *  its counters); `drift` re-reads the live state and repairs only what differs. */
export type ApplyTarget =
  | { owners: Owner[] }
  | { all: true }
  | { full: true }
  | { check: true }
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

export interface ApplierState {
  paused: boolean;
  /** ISO time of the last successful cycle. */
  lastSync: string | null;
  lastError: string | null;
  backend: "nft" | "legacy";
  plan: NatPlan | null;
}

export interface Applier {
  apply(target: ApplyTarget): Promise<ApplyResult>;
  /** Removes every owned chain and jump, then ignores work until resume(). */
  flush(): Promise<void>;
  /** Leaves the paused state with a full sync. */
  resume(): Promise<ApplyResult>;
  state(): ApplierState;
  /** Waits for the running cycle (if any) and cancels retries; later calls are refused. */
  stop(): Promise<void>;
}

export class PausedError extends Error {
  override name = "PausedError";
  constructor() {
    super("pve-nat is paused after `pve-nat flush`; run `pve-nat apply --all` to resume");
  }
}

interface Waiter {
  resolve(r: ApplyResult): void;
  reject(e: unknown): void;
}

interface Batch {
  owners: Set<Owner>;
  all: boolean;
  full: boolean;
  drift: boolean;
  check: boolean;
  waiters: Waiter[];
}

function emptyBatch(): Batch {
  return { owners: new Set(), all: false, full: false, drift: false, check: false, waiters: [] };
}

export function ownerOf(f: Forward): Owner {
  return f.vmid ?? "NODE";
}

/** What a forward's conntrack key (conntrack.ts) is made of, cheap to compare first. */
function roughKey(f: Forward): string {
  return `${f.direction}\0${f.proto}\0${f.public.address}\0${f.public.ports}\0${f.private.address}\0${f.private.ports}`;
}

/** forwardsGone(before, after, owners), without keying every forward of the node: only the
 *  rendered owners' active forwards and the forwards that could match one of them are passed. */
export function goneForwards(
  before: NatPlan,
  after: NatPlan,
  owners: ReadonlySet<Owner>,
): ConntrackDelete[] {
  const mine = before.forwards.filter((f) => f.state === "active" && owners.has(ownerOf(f)));
  if (mine.length === 0) return [];
  const targets = new Set(mine.map((f) => f.private.address));
  const rough = new Set(mine.map(roughKey));
  const still = after.forwards.filter(
    (f) => f.state === "active" && targets.has(f.private.address) && rough.has(roughKey(f)),
  );
  return forwardsGone({ ...before, forwards: mine }, { ...after, forwards: still }, owners);
}

/** Owners that have at least one chain in `live`. */
export function liveOwners(live: LiveState): Set<Owner> {
  const out = new Set<Owner>();
  for (const name of live.chains.keys()) {
    const p = ownerChainOf(name);
    if (p) out.add(p.owner);
  }
  return out;
}

function sameSet<T>(a: ReadonlySet<T>, b: ReadonlySet<T>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function createApplier(deps: ApplierDeps): Applier {
  const ipt = deps.iptables ?? cachedIptables();
  const { clock, log, runner } = deps;
  const retry = deps.retry ?? { baseMs: 500, maxMs: 30_000 };

  let next = emptyBatch();
  let flushWaiters: Waiter[] = [];
  let running: Promise<void> | null = null;
  let scheduled = false;
  let stopped = false;
  let paused = false;

  /** The live state as pve-nat last read or wrote it; null = unknown (next cycle reads it). */
  let live: LiveState | null = null;
  let nextFull = deps.startFull ?? true;
  let plan: NatPlan | null = null;
  let lastSync: string | null = null;
  let lastError: string | null = null;
  let retryTimer: unknown = null;
  let retryDelay = retry.baseMs;

  function hasWork(): boolean {
    return (
      flushWaiters.length > 0 ||
      next.owners.size > 0 ||
      next.all ||
      next.full ||
      next.drift ||
      next.waiters.length > 0
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
        // Work that arrived while the loop was winding down.
        if (hasWork()) schedule();
      });
    });
  }

  async function loop(): Promise<void> {
    while (hasWork() && !stopped) {
      if (flushWaiters.length > 0) {
        const ws = flushWaiters;
        flushWaiters = [];
        try {
          await doFlush();
          for (const w of ws) w.resolve(undefined as never);
        } catch (err) {
          for (const w of ws) w.reject(err);
        }
        continue;
      }
      const batch = next;
      next = emptyBatch();
      if (paused) {
        for (const w of batch.waiters) w.reject(new PausedError());
        continue;
      }
      try {
        const result = await cycle(batch);
        succeeded(result);
        for (const w of batch.waiters) w.resolve(result);
      } catch (err) {
        failed(err);
        for (const w of batch.waiters) w.reject(err);
      }
    }
  }

  async function readLive(): Promise<LiveState> {
    const [nat, raw] = await Promise.all([runner.save("nat"), runner.save("raw")]);
    return ipt.parseSave(nat, raw);
  }

  async function cycle(batch: Batch): Promise<ApplyResult> {
    const t0 = clock.now();
    const full = batch.full || nextFull;
    // Only what this batch is about is re-read; the watcher re-reads everything each poll.
    // A check (watcher, post-start) or drift cycle also re-reads every guest's run state.
    const scope: LoadScope =
      full || batch.all
        ? { all: true }
        : { owners: [...batch.owners], runState: batch.check || batch.drift };
    const newPlan = await deps.load(scope);
    const tLoaded = clock.now();
    const fresh = full || batch.drift || live === null;
    let current: LiveState = fresh || live === null ? await readLive() : live;
    const tRead = clock.now();
    live = current;

    const planned = new Set<Owner>(newPlan.chains.map((c) => c.owner));
    const present = liveOwners(current);
    const owners = new Set<Owner>();
    if (full || batch.all) {
      for (const o of planned) owners.add(o);
      for (const o of present) owners.add(o);
    } else {
      for (const o of batch.owners) if (planned.has(o) || present.has(o)) owners.add(o);
    }
    // Compiling is global (a conflict moves with an edit elsewhere), and drift checks read the
    // kernel: anything whose live chains differ from the plan is rewritten too.
    const diff = ipt.diffLive(newPlan, current);
    for (const o of diff.owners) owners.add(o);
    const entry = full || batch.all || diff.entry || !sameSet(planned, present);
    if (entry) {
      // The entry chains jump to every planned owner: each must exist (or stop existing) in
      // this same payload.
      for (const o of planned) if (!present.has(o)) owners.add(o);
      for (const o of present) if (!planned.has(o)) owners.add(o);
    }
    if (batch.drift && (diff.owners.length > 0 || diff.entry)) {
      log.warn(
        { owners: diff.owners, entry: diff.entry },
        "drift: live chains differ from the plan",
      );
    }

    const rendered = [...owners].sort(compareOwners);
    const removedRules = new Map<Owner, number>();
    for (const o of rendered) {
      if (!planned.has(o)) removedRules.set(o, countLiveRules(current, o));
    }
    let restored = false;
    let tRestored = tRead;
    const payload = ipt.renderRestore({ plan: newPlan, owners: rendered, entry, live: current });
    if (payload !== "") {
      log.trace({ payload }, "restore payload");
      await runner.restore(payload);
      tRestored = clock.now();
      restored = true;
      // The kernel now holds what the payload said: replay it rather than read it back.
      const replayed = replayPayload(current, payload);
      current = replayed ?? (await readLive());
      live = current;
    }

    const old = plan;
    plan = newPlan;
    const ms = round(clock.now() - t0);
    if (old && deps.conntrack) {
      const gone = goneForwards(old, newPlan, new Set(rendered));
      if (gone.length > 0) await deps.conntrack(gone);
    }
    log.debug(
      {
        loadMs: round(tLoaded - t0),
        readMs: round(tRead - tLoaded),
        restoreMs: round(tRestored - tRead),
        ms,
        owners: rendered.length,
        entry,
        full,
      },
      "cycle",
    );
    report(newPlan, old, rendered, planned, removedRules, ms, full);
    return { plan: newPlan, rendered, entry, full, restored, ms };
  }

  function countLiveRules(state: LiveState, o: Owner): number {
    return (
      (state.chains.get(ownerChain(o, "DNAT"))?.length ?? 0) +
      (state.chains.get(ownerChain(o, "SNAT"))?.length ?? 0)
    );
  }

  function report(
    p: NatPlan,
    previous: NatPlan | null,
    rendered: Owner[],
    planned: ReadonlySet<Owner>,
    removedRules: ReadonlyMap<Owner, number>,
    ms: number,
    full: boolean,
  ): void {
    const ts = clock.wall().toISOString();
    const byOwner = new Map(p.chains.map((c) => [c.owner, c]));
    const many = rendered.length > 20;
    for (const o of rendered) {
      const vmid = o === "NODE" ? null : o;
      const c = byOwner.get(o);
      if (planned.has(o) && c) {
        const rules = c.dnat.length + c.snat.length;
        deps.publish({ type: "applied", ts, vmid, rules, ms });
        (many ? log.debug : log.info).call(log, { vmid, rules, ms }, "applied");
      } else {
        const rules = removedRules.get(o) ?? 0;
        deps.publish({ type: "removed", ts, vmid, rules, ms });
        (many ? log.debug : log.info).call(log, { vmid, rules, ms }, "removed");
      }
    }
    const touched = new Set(rendered);
    // A guest whose only forwards lose a conflict has no chain to rewrite, so "touched" alone
    // would never report it: a conflict new since the previous plan is reported regardless.
    const conflictKey = (f: Forward) => `${f.vmid}\0${f.origin}\0${f.proto}\0${f.public.ports}`;
    const wasConflict = new Set(
      (previous?.forwards ?? []).filter((f) => f.state === "conflict").map(conflictKey),
    );
    for (const f of p.forwards) {
      if (f.state !== "conflict") continue;
      if (!touched.has(ownerOf(f)) && wasConflict.has(conflictKey(f))) continue;
      const m = `${f.origin}: ${f.reason ?? "conflict"}`;
      deps.publish({ type: "conflict", ts, vmid: f.vmid, rules: 0, ms, message: m });
      log.warn({ vmid: f.vmid, origin: f.origin }, f.reason ?? "conflict");
    }
    if (full || many) log.info({ owners: rendered.length, ms, full }, "sync");
  }

  function round(ms: number): number {
    return Math.round(ms * 10) / 10;
  }

  function succeeded(r: ApplyResult): void {
    nextFull = false;
    lastError = null;
    lastSync = clock.wall().toISOString();
    retryDelay = retry.baseMs;
    if (r.full && retryTimer !== null) {
      clock.clearTimeout(retryTimer);
      retryTimer = null;
    }
  }

  function failed(err: unknown): void {
    nextFull = true;
    live = null;
    lastError = message(err);
    log.error({ err: lastError, retryMs: retryDelay }, "apply failed; previous state kept");
    deps.publish({
      type: "error",
      ts: clock.wall().toISOString(),
      vmid: null,
      rules: 0,
      ms: 0,
      message: lastError,
    });
    if (retryTimer === null && !stopped) {
      const delay = retryDelay;
      retryDelay = Math.min(retryDelay * 2, retry.maxMs);
      retryTimer = clock.setTimeout(() => {
        retryTimer = null;
        if (paused || stopped) return;
        next.full = true;
        schedule();
      }, delay);
    }
  }

  async function doFlush(): Promise<void> {
    const current = await readLive();
    const payload = ipt.renderFlush(current);
    log.trace({ payload }, "flush payload");
    if (payload !== "") await runner.restore(payload);
    paused = true;
    live = null;
    nextFull = true;
    plan = null;
    if (retryTimer !== null) {
      clock.clearTimeout(retryTimer);
      retryTimer = null;
    }
    log.warn("flushed: every PVENAT- chain and jump removed; paused until `pve-nat apply --all`");
  }

  function enqueue(target: ApplyTarget): Promise<ApplyResult> {
    if (stopped) return Promise.reject(new Error("pve-nat daemon is stopping"));
    if (paused) return Promise.reject(new PausedError());
    return new Promise<ApplyResult>((resolve, reject) => {
      if ("owners" in target) for (const o of target.owners) next.owners.add(o);
      if ("all" in target) next.all = true;
      if ("full" in target) next.full = true;
      if ("drift" in target) next.drift = true;
      // A check's waiter alone makes a cycle run (every cycle diffs); the flag widens what is
      // re-read to every guest's run state.
      if ("check" in target) next.check = true;
      next.waiters.push({ resolve, reject });
      schedule();
    });
  }

  return {
    apply: enqueue,
    flush() {
      if (stopped) return Promise.reject(new Error("pve-nat daemon is stopping"));
      return new Promise<void>((resolve, reject) => {
        flushWaiters.push({ resolve: () => resolve(), reject });
        schedule();
      });
    },
    resume() {
      paused = false;
      return enqueue({ full: true });
    },
    state() {
      return { paused, lastSync, lastError, backend: runner.backend, plan };
    },
    async stop() {
      stopped = true;
      if (retryTimer !== null) clock.clearTimeout(retryTimer);
      retryTimer = null;
      if (running) await running;
      const err = new Error("pve-nat daemon is stopping");
      for (const w of next.waiters) w.reject(err);
      for (const w of flushWaiters) w.reject(err);
      next = emptyBatch();
      flushWaiters = [];
    },
  };
}
