import type { Logger } from "pino";
import type { BusEvent } from "../bus/protocol.js";
import type { Admission } from "../diagnose/admission.js";
import { PausedError } from "../errors.js";
import { createRenderMemo, renderFlush, renderSync } from "../iptables/render.js";
import type { Runner } from "../iptables/runner.js";
import { type LiveState, parseSave, sameSave } from "../iptables/save.js";
import { decideSync, liveRules, type SyncDecision } from "../iptables/sync.js";
import type { Forward, NatPlan, Owner } from "../model.js";
import { forwardIndicesOf, plannedChains } from "../nat/lookup.js";
import type { Clock } from "./clock.js";
import { type ConntrackDelete, forwardsGone } from "./conntrack.js";
import type { LoadScope } from "./plan.js";
import { type ApplyResult, type ApplyTarget, type Batch, createQueue } from "./queue.js";
import { report } from "./report.js";

export { PausedError } from "../errors.js";
export type { ApplyResult, ApplyTarget } from "./queue.js";

// The one writer of pve-nat's iptables state (kube-proxy's sync loop, made small). A cycle
// loads the plan, asks iptables/sync.ts which owners one restore rewrites, renders and applies
// it, and keeps the state it rendered as the live state (no read-back). Any failure makes the
// next cycle a full one (re-read the live state, redeclare every owner and the entry chains),
// scheduled with a capped exponential backoff. The queue is queue.ts; events are report.ts.

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
  retry?: { baseMs: number; maxMs: number };
  /** After a restore: whether the guest firewall admits the rewritten guests' forwards yet
   *  (issue 12 item 3), for their `applied` events. Reads the filter table only when one of
   *  them has a filtering guest firewall; must not throw. */
  admission?(
    plan: NatPlan,
    owners: ReadonlySet<Owner>,
    backend: Runner["backend"],
  ): Promise<ReadonlyMap<number, Admission>>;
  /** Told about every cycle (metrics): its duration in seconds and whether it succeeded. */
  onCycle?(seconds: number, ok: boolean): void;
  /** A token from the kernel that stays the same while the backend's nat and raw tables read
   *  the same (src/native/tables.c); null when it cannot tell. An unchanged token lets a read
   *  of the live state (drift check, full cycle) reuse the last one without running iptables. */
  tablesToken?(backend: Runner["backend"]): string | null;
  /** Whether the first cycle is a full sync (the daemon's start) or reads the live state and
   *  writes only what was asked plus what differs (a one-off `apply <vmid>`). Default true. */
  startFull?: boolean;
  /** The backend to write to now, asked before every full and drift cycle but the first
   *  (reload, apply --all, retry, drift check): pve-firewall's ExecStartPre may switch the
   *  iptables alternative after the daemon started. A runner for another backend than the
   *  current one moves pve-nat's chains there; null keeps the current one. */
  redetect?(
    current: Runner["backend"],
  ): Promise<Pick<Runner, "restore" | "save" | "backend"> | null>;
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
  /** Resolves once the events of every finished cycle are published (a cycle's result can
   *  come before its events when they wait for the guest firewall's answer). */
  settled(): Promise<void>;
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
  if (owners.size === 0) return [];
  // A forward the new plan holds as it was (compile keeps unchanged forwards' identity) is
  // still live: only the others need the node-wide search below. A pre-start of a guest that
  // was already up (its chains rewritten as they were) leaves none.
  const kept = new Set(forwardIndicesOf(after, owners).map((i) => after.forwards[i]));
  const mine = forwardIndicesOf(before, owners)
    .map((i) => before.forwards[i] as Forward)
    .filter((f) => f.state === "active" && !kept.has(f));
  if (mine.length === 0) return [];
  const targets = new Set(mine.map((f) => f.private.address));
  const rough = new Set(mine.map(roughKey));
  const still = after.forwards.filter(
    (f) => f.state === "active" && targets.has(f.private.address) && rough.has(roughKey(f)),
  );
  return forwardsGone({ ...before, forwards: mine }, { ...after, forwards: still }, owners);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

export function createApplier(deps: ApplierDeps): Applier {
  const { clock, log } = deps;
  let runner = deps.runner;
  let detected = false;
  /** The backend pve-nat moved away from, while its chains may still be there. */
  let leaving: Pick<Runner, "restore" | "save" | "backend"> | null = null;
  const retry = deps.retry ?? { baseMs: 500, maxMs: 30_000 };
  const memo = createRenderMemo();

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

  /** The last cycle's events, when they wait for the guest firewall's answer. */
  let reporting: Promise<void> | null = null;
  async function settled(): Promise<void> {
    while (reporting) await reporting;
  }

  const queue = createQueue({
    async cycle(batch) {
      // Events go out in cycle order: the previous cycle's first.
      await settled();
      const t0 = clock.now();
      try {
        const r = await cycle(batch);
        succeeded(r);
        deps.onCycle?.((clock.now() - t0) / 1000, true);
        return r;
      } catch (err) {
        failed(err);
        deps.onCycle?.((clock.now() - t0) / 1000, false);
        throw err;
      }
    },
    flush: async () => {
      await settled();
      await doFlush();
    },
    refuse: () => (paused ? new PausedError() : null),
  });

  /** The texts readLive last parsed, their state, and the tables' token taken before they were
   *  read (never mutated: cycles replace it). Kept across restores: a hook rewrites its guest's
   *  chains even when they are unchanged, and the next drift check then finds the same text and
   *  skips the parse. Dropping it at each restore freed ≈ 3.4 MB through a 1000-guest burst but
   *  made that parse run again (issue 10, eighteenth session). */
  let lastRead: { nat: string; raw: string; state: LiveState; token: string | null } | null = null;
  /** The last decision for a cycle that asked for no owner, and what it was made from. */
  let lastDecided: { plan: NatPlan; live: LiveState; decision: SyncDecision } | null = null;

  function tablesToken(): string | null {
    try {
      return deps.tablesToken?.(runner.backend) ?? null;
    } catch {
      return null;
    }
  }

  async function readLive(): Promise<LiveState> {
    // At 1000 guests the two reads cost ≈ 150–200 ms of CPU in iptables every drift interval,
    // almost always to find the tables as they were; the token says so in microseconds. It is
    // taken before reading: a change during the read makes the next token differ.
    const token = tablesToken();
    if (token !== null && lastRead !== null && lastRead.token === token) return lastRead.state;
    const [nat, raw] = await Promise.all([runner.save("nat"), runner.save("raw")]);
    // The drift check reads the tables every drift_interval_ms and nearly always finds them as
    // before: the same text parses to the same state. At 1000 guests parsing ≈ 1.8 MB of rules
    // (≈ 50 ms, run too rarely for V8 to keep it optimised) and the garbage it left were most
    // of an idle drift check's own CPU; comparing the texts takes a few milliseconds.
    if (lastRead !== null && sameSave(lastRead.nat, nat) && sameSave(lastRead.raw, raw)) {
      lastRead = { ...lastRead, token };
      return lastRead.state;
    }
    const state = parseSave(nat, raw);
    lastRead = { nat, raw, state, token };
    return state;
  }

  /** A backend switch: the chains go to the new backend in a full cycle, then leave the old
   *  one (`leaving`, until that succeeds). Both briefly hold them: NAT happens once per
   *  connection, so nothing doubles. */
  async function switchBackend(batch: Batch): Promise<void> {
    if (!deps.redetect || !(batch.full || batch.drift || nextFull)) return;
    if (!detected) {
      detected = true; // the daemon detected the runner it started with
      return;
    }
    let next: Pick<Runner, "restore" | "save" | "backend"> | null;
    try {
      next = await deps.redetect(runner.backend);
    } catch (err) {
      log.warn({ err: message(err) }, "cannot re-detect the iptables backend; keeping it");
      return;
    }
    if (!next || next.backend === runner.backend) return;
    log.warn(
      { from: runner.backend, to: next.backend },
      "iptables backend changed: moving pve-nat's chains",
    );
    // Back to where the chains still are: the full sync adopts them, nothing to remove.
    leaving = leaving?.backend === next.backend ? null : runner;
    runner = next;
    live = null;
    nextFull = true;
  }

  /** Removes every owned chain and jump from the backend pve-nat left; keeps trying later. */
  async function leaveOld(): Promise<void> {
    const old = leaving;
    if (!old) return;
    try {
      const [nat, raw] = await Promise.all([old.save("nat"), old.save("raw")]);
      const payload = renderFlush(parseSave(nat, raw));
      if (payload !== "") await old.restore(payload);
      leaving = null;
      log.warn(
        { from: old.backend, to: runner.backend },
        "iptables backend changed: pve-nat's chains moved",
      );
    } catch (err) {
      log.error(
        { from: old.backend, to: runner.backend, err: message(err) },
        "iptables backend changed: removing pve-nat's chains from the old backend failed; retrying at the next full or drift cycle",
      );
    }
  }

  async function cycle(batch: Batch): Promise<ApplyResult> {
    const t0 = clock.now();
    await switchBackend(batch);
    const full = batch.full || nextFull;
    // Only what this batch is about is re-read; the watcher re-reads everything each poll.
    // A check (watcher) or drift cycle also re-reads every guest's run state; a verify
    // (post-start) only its guests' run state.
    const verify = [...batch.verify];
    const scope: LoadScope =
      full || batch.all
        ? { all: true }
        : {
            owners: [...batch.owners],
            runState: batch.check || batch.drift,
            ...(verify.length > 0 ? { runStateOf: verify } : {}),
          };
    // The tables are read while the plan loads: iptables runs in its own process, and at 1000
    // guests a reconcile's or drift check's read (12-20 ms) no longer waits for the load.
    const reading = full || batch.drift || live === null ? readLive() : null;
    // A load that throws leaves the read unawaited: its failure is the load's to report.
    reading?.catch(() => {});
    const newPlan = await deps.load(scope);
    const tLoaded = clock.now();
    const current = reading ? await reading : (live ?? (await readLive()));
    const tRead = clock.now();
    live = current;

    const ask = { owners: [...batch.owners], all: full || batch.all };
    // decideSync is pure: the same plan and live state (the same objects: the loader and
    // readLive hand them back while nothing changed), with nothing asked, decide the same. The
    // idle drift check is that case every drift_interval_ms, ≈ 17 ms at 1000 guests of walking
    // 2000 chains in code that runs too rarely to be optimised (issue 10).
    const nothingAsked = ask.owners.length === 0 && !ask.all;
    const { request, drift } =
      nothingAsked && lastDecided?.plan === newPlan && lastDecided.live === current
        ? lastDecided.decision
        : decideSync(newPlan, current, ask, memo);
    lastDecided = nothingAsked
      ? { plan: newPlan, live: current, decision: { request, drift } }
      : null;
    if (batch.drift && (drift.owners.length > 0 || drift.entry)) {
      log.warn(
        { owners: drift.owners, entry: drift.entry },
        "drift: live chains differ from the plan",
      );
    }
    const rendered = request.owners;
    const removedRules = new Map<Owner, number>();
    if (rendered.length > 0) {
      const planned = plannedChains(newPlan);
      for (const o of rendered) if (!planned.has(o)) removedRules.set(o, liveRules(current, o));
    }

    const sync = renderSync(request, memo);
    const tRendered = clock.now();
    let tRestored = tRendered;
    if (sync.lines.length > 0) {
      // The payload is joined only for the trace line: the runner takes its lines.
      if (log.isLevelEnabled("trace")) log.trace({ payload: sync.payload }, "restore payload");
      await runner.restore(sync.lines);
      tRestored = clock.now();
      live = sync.after;
    }

    if (leaving && (full || batch.drift)) await leaveOld();
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
        // Deciding and rendering: what the daemon adds to a one-guest restore (issue 10).
        renderMs: round(tRendered - tRead),
        restoreMs: round(tRestored - tRendered),
        ms,
        owners: rendered.length,
        entry: request.entry,
        full,
      },
      "cycle",
    );
    const tell = (admissions?: ReadonlyMap<number, Admission>) =>
      report(
        { plan: newPlan, previous: old, rendered, removedRules, ms, full, admissions },
        deps.publish,
        log,
        clock.wall().toISOString(),
      );
    const guests = new Set(rendered.filter((o) => o !== "NODE"));
    const admission = deps.admission;
    if (admission && guests.size > 0 && sync.lines.length > 0) {
      // Whether the guest firewall admits the rewritten forwards is for their events, not for
      // the caller: a pre-start hook's ack means the rules are live and need not wait for a
      // read of the filter table (≈ 10–15 ms at 1000 guests, more with pve-firewall's rules).
      // The next cycle waits for these events, so events keep the order of their cycles. The
      // read's preparation (every rewritten forward through its guest's firewall rules: every
      // forward of the node at a reconcile) waits for the next turn of the loop, after the
      // caller has its answer: a 1000-guest reconcile answered ≈ 35 ms sooner here (issue 10).
      const backend = runner.backend;
      const done = new Promise<void>((resolve) => setImmediate(resolve))
        .then(() => admission(newPlan, guests, backend))
        .then(tell, () => tell())
        .catch((err: unknown) => log.error({ err: message(err) }, "publishing events failed"))
        .finally(() => {
          if (reporting === done) reporting = null;
        });
      reporting = done;
    } else tell();
    return {
      plan: newPlan,
      rendered,
      entry: request.entry,
      full,
      restored: sync.lines.length > 0,
      ms,
    };
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
        queue.wantFull();
      }, delay);
    }
  }

  async function doFlush(): Promise<void> {
    await leaveOld();
    const payload = renderFlush(await readLive());
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

  return {
    apply: (target) => queue.enqueue(target),
    flush: () => queue.flush(),
    resume() {
      paused = false;
      return queue.enqueue({ full: true });
    },
    state: () => ({ paused, lastSync, lastError, backend: runner.backend, plan }),
    async stop() {
      stopped = true;
      if (retryTimer !== null) clock.clearTimeout(retryTimer);
      retryTimer = null;
      await queue.stop(new Error("pve-nat daemon is stopping"));
      await settled();
    },
    settled,
  };
}
