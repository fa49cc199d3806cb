// The qemu guest agent as the last address source (SPEC §8): `qm guest cmd <vmid>
// network-get-interfaces`, asked in the background and never awaited on a hook's path. Each
// query is bounded (timeoutMs); answers are cached and re-asked every refreshMs; a failing or
// silent agent is retried with a capped exponential backoff; at most `parallel` queries run at
// once. What the agent says is parsed defensively (pve/learned.ts) and matched by MAC later
// (nat/learn.ts), so a lying agent can at worst name an address the NIC's network allows.

import type { Logger } from "pino";
import { run as exec, type RunResult } from "../exec.js";
import type { AddressFacts } from "../model.js";
import { parseAgentInterfaces } from "./learned.js";

export type AgentRun = (vmid: number) => Promise<RunResult>;

export interface AgentOptions {
  run?: AgentRun;
  now?: () => number;
  timeoutMs?: number;
  refreshMs?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  parallel?: number;
  log?: Pick<Logger, "debug" | "warn">;
}

export interface AgentCache {
  /** These guests want an answer: the due ones are asked in the background (never awaited);
   *  answers of guests not listed are dropped (a restarted guest is asked again). */
  want(vmids: readonly number[]): void;
  /** The current answers (same object while nothing changed). */
  answers(): AddressFacts["agent"];
  /** Bumped whenever answers() changes. */
  version(): number;
  /** Resolves when no query is running, or after maxMs. */
  idle(maxMs: number): Promise<void>;
}

interface Entry {
  answer: AddressFacts["agent"][number] | null;
  /** When the next query may start (ms). */
  due: number;
  failures: number;
  running: boolean;
}

export function qmAgentRun(timeoutMs: number): AgentRun {
  return (vmid) =>
    exec("qm", ["guest", "cmd", String(vmid), "network-get-interfaces"], { timeoutMs });
}

export function createAgentCache(opts: AgentOptions = {}): AgentCache {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const run = opts.run ?? qmAgentRun(timeoutMs);
  const now = opts.now ?? (() => Date.now());
  const refreshMs = opts.refreshMs ?? 10_000;
  const retryBase = opts.retryBaseMs ?? 1000;
  const retryMax = opts.retryMaxMs ?? 60_000;
  const parallel = opts.parallel ?? 4;
  const entries = new Map<number, Entry>();
  let running = 0;
  let version = 0;
  let current: AddressFacts["agent"] = {};
  let dirty = false;
  const waiters: Array<() => void> = [];

  function changed(): void {
    version++;
    dirty = true;
  }

  function settle(): void {
    if (running > 0) return;
    for (const w of waiters.splice(0)) w();
  }

  async function ask(vmid: number, e: Entry): Promise<void> {
    e.running = true;
    running++;
    let answer: Entry["answer"] = null;
    let why = "";
    try {
      // The command's own timeout bounds it; this one also bounds a runner that never returns.
      const r = await Promise.race([
        run(vmid),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), timeoutMs + 500).unref()),
      ]);
      if (r === null || r.timedOut) why = `no answer within ${timeoutMs} ms`;
      else if (r.code !== 0) why = (r.stderr.trim() || r.failure || `exit ${r.code}`).slice(0, 200);
      else {
        answer = parseAgentInterfaces(r.stdout);
        if (answer === null) why = "answer is not the network-get-interfaces JSON";
      }
    } catch (err) {
      why = err instanceof Error ? err.message : String(err);
    }
    running--;
    e.running = false;
    // The guest may have stopped meanwhile (want() dropped it).
    if (entries.get(vmid) === e) {
      if (answer === null) {
        e.failures++;
        e.due = now() + Math.min(retryBase * 2 ** (e.failures - 1), retryMax);
        opts.log?.debug({ vmid, err: why, retryMs: e.due - now() }, "guest agent: no addresses");
      } else {
        e.failures = 0;
        e.due = now() + refreshMs;
      }
      // A failed query keeps the last good answer until the guest stops.
      const next = answer ?? e.answer;
      if (JSON.stringify(next) !== JSON.stringify(e.answer)) {
        e.answer = next;
        changed();
      }
    }
    pump();
    settle();
  }

  const queue: number[] = [];

  function pump(): void {
    while (running < parallel && queue.length > 0) {
      const vmid = queue.shift() as number;
      const e = entries.get(vmid);
      if (e && !e.running) void ask(vmid, e);
    }
  }

  return {
    want(vmids) {
      const keep = new Set(vmids);
      for (const [vmid, e] of entries) {
        if (keep.has(vmid)) continue;
        entries.delete(vmid);
        if (e.answer !== null) changed();
      }
      const t = now();
      for (const vmid of vmids) {
        let e = entries.get(vmid);
        if (!e) {
          e = { answer: null, due: t, failures: 0, running: false };
          entries.set(vmid, e);
        }
        if (!e.running && e.due <= t && !queue.includes(vmid)) queue.push(vmid);
      }
      pump();
    },
    answers() {
      if (dirty) {
        dirty = false;
        const out: AddressFacts["agent"] = {};
        for (const [vmid, e] of [...entries].sort((a, b) => a[0] - b[0]))
          if (e.answer) out[vmid] = e.answer;
        current = out;
      }
      return current;
    },
    version: () => version,
    idle(maxMs) {
      if (running === 0 && queue.length === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const t = setTimeout(resolve, maxMs);
        waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    },
  };
}
