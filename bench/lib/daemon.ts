// The daemon under test, its JSON log (cycle timings at debug level) and its event stream.
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import * as zmq from "zeromq";
import { type BusEvent, parseEvent } from "../../src/bus/protocol.js";
import { type Background, background } from "./proc.js";

export interface CycleLog {
  at: number;
  loadMs: number;
  readMs: number;
  /** Deciding and rendering the payload (before the restore). */
  renderMs: number;
  restoreMs: number;
  ms: number;
  owners: number;
  entry: boolean;
  full: boolean;
}

export interface Daemon {
  proc: Background;
  startedAt: number;
  /** Arrival time (performance.now) and `ms` of the "reconciled" log line. */
  reconciled: Promise<{ at: number; ms: number }>;
  cycles: CycleLog[];
  errors: string[];
  rssMb(): Promise<{ rss: number; hwm: number }>;
  /** CPU seconds used so far: the daemon's own, and its waited-for children's (iptables-save
   *  of the drift check, restores). */
  cpuSeconds(): Promise<{ self: number; children: number }>;
  /** /proc/<pid>/smaps_rollup: anonymous (heap, stacks, allocator) and file-backed (the
   *  executable's pages, shared with every other process running it) resident MB. */
  smapsMb(): Promise<{ anon: number; file: number } | null>;
  stop(): Promise<void>;
}

/** `Environment=K=V` lines of a systemd unit (one assignment per line, as ours has). */
export function unitEnvironment(unitText: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of unitText.matchAll(/^Environment=([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*$/gm)) {
    env[m[1] as string] = m[2] as string;
  }
  return env;
}

/** The daemon runs with the environment its systemd unit gives it on a real node. */
function serviceEnvironment(): Record<string, string> {
  const repo = process.env.PVE_NAT_REPO ?? process.cwd();
  return unitEnvironment(readFileSync(path.join(repo, "packaging/pve-nat.service"), "utf8"));
}

export function startDaemon(bin: readonly string[], root: string): Daemon {
  const cycles: CycleLog[] = [];
  const errors: string[] = [];
  let onReconciled: (v: { at: number; ms: number }) => void = () => {};
  const reconciled = new Promise<{ at: number; ms: number }>((resolve) => {
    onReconciled = resolve;
  });
  const startedAt = performance.now();
  const proc = background(
    [...bin, "daemon", "--root", root],
    (line, at) => {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      const msg = rec.msg;
      if (msg === "cycle") {
        cycles.push({
          at,
          loadMs: Number(rec.loadMs),
          readMs: Number(rec.readMs),
          renderMs: Number(rec.renderMs),
          restoreMs: Number(rec.restoreMs),
          ms: Number(rec.ms),
          owners: Number(rec.owners),
          entry: rec.entry === true,
          full: rec.full === true,
        });
      } else if (msg === "reconciled") {
        onReconciled({ at, ms: Number(rec.ms) });
      }
      if (typeof rec.level === "number" && rec.level >= 50) errors.push(String(msg));
    },
    (line) => errors.push(line),
    serviceEnvironment(),
  );
  return {
    proc,
    startedAt,
    reconciled,
    cycles,
    errors,
    async rssMb() {
      const status = await readFile(`/proc/${proc.pid}/status`, "utf8");
      const kb = (key: string) =>
        Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
      return { rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024 };
    },
    async cpuSeconds() {
      // Fields after the command name: utime, stime, cutime, cstime are fields 14–17 (USER_HZ).
      const stat = await readFile(`/proc/${proc.pid}/stat`, "utf8");
      const f = stat
        .slice(stat.lastIndexOf(")") + 2)
        .split(" ")
        .map(Number);
      const hz = 100;
      return {
        self: ((f[11] ?? 0) + (f[12] ?? 0)) / hz,
        children: ((f[13] ?? 0) + (f[14] ?? 0)) / hz,
      };
    },
    async smapsMb() {
      const text = await readFile(`/proc/${proc.pid}/smaps_rollup`, "utf8").catch(() => null);
      if (text === null) return null;
      const kb = (key: string) =>
        Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? Number.NaN);
      return { anon: kb("Anonymous") / 1024, file: (kb("Rss") - kb("Anonymous")) / 1024 };
    },
    stop: () => proc.stop("SIGTERM", 10_000),
  };
}

export interface Arrived {
  e: BusEvent;
  at: number;
}

/** Collects published events with their arrival time; wait() finds the first matching one
 *  that arrived after a given time. */
export interface EventLog {
  all: Arrived[];
  wait(match: (a: Arrived) => boolean, timeoutMs: number): Promise<Arrived | null>;
  close(): void;
}

export function collectEvents(eventsSocket: string): EventLog {
  const all: Arrived[] = [];
  const waiters = new Set<{
    match: (a: Arrived) => boolean;
    resolve: (a: Arrived | null) => void;
  }>();
  // Our own subscriber (not src/bus/client's generator) so close() ends it at once.
  const sub = new zmq.Subscriber({ linger: 0 });
  sub.connect(`ipc://${eventsSocket}`);
  sub.subscribe();
  void (async () => {
    try {
      for await (const frames of sub) {
        const at = performance.now();
        if (frames.length !== 1) continue;
        const e = parseEvent(frames[0] as Buffer);
        if ("error" in e) continue;
        const a = { e, at };
        all.push(a);
        for (const w of waiters) {
          if (w.match(a)) {
            waiters.delete(w);
            w.resolve(a);
          }
        }
      }
    } catch {
      // closed
    }
  })();
  return {
    all,
    wait(match, timeoutMs) {
      const found = all.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => {
        const w = {
          match,
          resolve: (a: Arrived | null) => {
            clearTimeout(t);
            resolve(a);
          },
        };
        const t = setTimeout(() => {
          waiters.delete(w);
          resolve(null);
        }, timeoutMs);
        waiters.add(w);
      });
    },
    close() {
      sub.close();
    },
  };
}
