// What the daemon counts for metrics (applies, drift repairs, bus requests, hook waits) and the
// plain-data snapshot it hands out (the `metrics` bus reply, the textfile writer). No I/O.

/** Upper bounds in seconds for apply durations and hook waits: one restore takes 3–50 ms,
 *  a hook's wait is bounded by hook_timeout_ms (1.5 s by default). */
export const DURATION_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

export interface HistogramData {
  /** Observations ≤ DURATION_BUCKETS[i] (cumulative). */
  cumulative: number[];
  sum: number;
  count: number;
}

export interface DaemonCounters {
  /** Unix time (seconds) the daemon started. */
  startTime: number;
  /** Unix time (seconds) of the last successful apply cycle, or null. */
  lastSync: number | null;
  applies: number;
  applyFailures: number;
  /** Seconds per apply cycle (successful or not). */
  applyDuration: HistogramData;
  /** Drift checks that found live chains differing from the plan and rewrote them. */
  driftRepairs: number;
  /** Bus requests by type (hook, notify, status, …). */
  busRequests: Record<string, number>;
  /** Seconds from a hook's request to its reply (the time a guest start waits), by phase. */
  hookWait: Record<string, HistogramData>;
}

export interface DaemonMetrics {
  applied(seconds: number, ok: boolean): void;
  driftRepaired(): void;
  busRequest(type: string): void;
  hookWaited(phase: string, seconds: number): void;
  snapshot(): DaemonCounters;
}

function emptyHistogram(): HistogramData {
  return { cumulative: DURATION_BUCKETS.map(() => 0), sum: 0, count: 0 };
}

function observe(h: HistogramData, seconds: number): void {
  DURATION_BUCKETS.forEach((le, i) => {
    if (seconds <= le) h.cumulative[i] = (h.cumulative[i] ?? 0) + 1;
  });
  h.sum += seconds;
  h.count += 1;
}

function copy(h: HistogramData): HistogramData {
  return { cumulative: [...h.cumulative], sum: h.sum, count: h.count };
}

export function createDaemonMetrics(wallSeconds: () => number): DaemonMetrics {
  const c: DaemonCounters = {
    startTime: wallSeconds(),
    lastSync: null,
    applies: 0,
    applyFailures: 0,
    applyDuration: emptyHistogram(),
    driftRepairs: 0,
    busRequests: {},
    hookWait: {},
  };
  return {
    applied(seconds, ok) {
      c.applies++;
      if (ok) c.lastSync = wallSeconds();
      else c.applyFailures++;
      observe(c.applyDuration, seconds);
    },
    driftRepaired() {
      c.driftRepairs++;
    },
    busRequest(type) {
      c.busRequests[type] = (c.busRequests[type] ?? 0) + 1;
    },
    hookWaited(phase, seconds) {
      c.hookWait[phase] ??= emptyHistogram();
      observe(c.hookWait[phase], seconds);
    },
    snapshot: () => ({
      ...c,
      applyDuration: copy(c.applyDuration),
      busRequests: { ...c.busRequests },
      hookWait: Object.fromEntries(Object.entries(c.hookWait).map(([k, h]) => [k, copy(h)])),
    }),
  };
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0;

function isHistogram(v: unknown): v is HistogramData {
  const h = v as HistogramData | null;
  return (
    typeof h === "object" &&
    h !== null &&
    Array.isArray(h.cumulative) &&
    h.cumulative.length === DURATION_BUCKETS.length &&
    h.cumulative.every(isCount) &&
    isCount(h.sum) &&
    isCount(h.count)
  );
}

function isRecordOf<T>(v: unknown, item: (x: unknown) => x is T): v is Record<string, T> {
  return (
    typeof v === "object" &&
    v !== null &&
    !Array.isArray(v) &&
    Object.entries(v).every(([k, x]) => /^[a-z-]{1,32}$/.test(k) && item(x))
  );
}

/** The daemon's `metrics` reply, checked before it is rendered (a daemon of another version
 *  may send another shape: then the CLI renders without daemon metrics). */
export function parseDaemonCounters(v: unknown): DaemonCounters | null {
  const c = v as DaemonCounters | null;
  if (typeof c !== "object" || c === null) return null;
  const ok =
    isCount(c.startTime) &&
    (c.lastSync === null || isCount(c.lastSync)) &&
    isCount(c.applies) &&
    isCount(c.applyFailures) &&
    isHistogram(c.applyDuration) &&
    isCount(c.driftRepairs) &&
    isRecordOf(c.busRequests, isCount) &&
    isRecordOf(c.hookWait, isHistogram);
  return ok ? c : null;
}
