import type { Logger } from "pino";
import { type Counters, readForwardCounters } from "../iptables/counters.js";
import type { Runner } from "../iptables/runner.js";
import { metricFamilies } from "../metrics/collect.js";
import { renderExposition } from "../metrics/exposition.js";
import type { DaemonMetrics } from "../metrics/registry.js";
import { textfileDirExists, writeTextfile } from "../metrics/textfile.js";
import type { Applier } from "./applier.js";
import type { Clock } from "./clock.js";

// The daemon's metrics textfile (SPEC §8 metrics_textfile): rewritten on a timer and soon after
// each apply. One `iptables-save -c` per write; writes never overlap, a request during one
// makes one more afterwards.

/** node_exporter is scraped every 15–60 s: fresher files would only cost iptables-save runs. */
export const MAX_WRITE_INTERVAL_MS = 15_000;
/** Two writes start at least this many times the last write's duration apart, so the writer
 *  stays near 1 % of the time. At 1000 guests a write is the `iptables-save -c` of the whole
 *  nat table (≈ 0.3 s of CPU in that child alone) and 3.9 MB of text; written every 15 s and
 *  after every cycle, the idle daemon and its children used 10.7 % of a core (issue 10). A
 *  write under 150 ms keeps the 15 s period (small nodes). */
export const WRITE_COST_FACTOR = 100;
/** …but never further apart than this: node_exporter's file lags at most two minutes. */
export const MAX_WRITE_SPACING_MS = 120_000;
/** Applies in a burst share one write. */
const AFTER_APPLY_MS = 250;

export interface MetricsWriter {
  start(): void;
  stop(): void;
  /** A write soon (after an apply). */
  kick(): void;
  /** One write now; false when the directory does not exist. */
  write(): Promise<boolean>;
}

export function createMetricsWriter(deps: {
  /** The textfile's path (already under --root). */
  file: string;
  applier: Pick<Applier, "state">;
  runner: Pick<Runner, "save">;
  metrics: DaemonMetrics;
  clock: Clock;
  intervalMs: number;
  log: Logger;
}): MetricsWriter {
  const { clock, log } = deps;
  let running: Promise<boolean> | null = null;
  let again = false;
  let stopped = false;
  let looping = false;
  let timer: unknown = null;
  let timerAt = Number.POSITIVE_INFINITY;
  let warned = false;
  let missingDir = false;
  /** The last write's duration (0 when nothing was written) and when it ended. */
  let lastMs = 0;
  let lastEnd = Number.NEGATIVE_INFINITY;

  const baseMs = Math.min(deps.intervalMs, MAX_WRITE_INTERVAL_MS);
  const spacing = () => Math.min(MAX_WRITE_SPACING_MS, WRITE_COST_FACTOR * lastMs);

  function noteMissing(written: boolean): boolean {
    if (!written && !missingDir)
      log.info({ file: deps.file }, "metrics: directory missing, not written");
    missingDir = !written;
    return written;
  }

  async function once(): Promise<boolean> {
    const t0 = clock.now();
    try {
      const written = await writeOnce();
      lastMs = written ? clock.now() - t0 : 0;
      return written;
    } finally {
      lastEnd = clock.now();
    }
  }

  async function writeOnce(): Promise<boolean> {
    // Without node_exporter's directory nothing is written: skip the counters (one
    // `iptables-save -c` of the whole table, ≈ 4 % of a core at 1000 guests every 15 s) and
    // the text. One stat of a directory outside /etc/pve per write.
    if (!(await textfileDirExists(deps.file))) return noteMissing(false);
    const plan = deps.applier.state().plan;
    let counters: Array<Counters | null> = [];
    if (plan) {
      counters = await readForwardCounters(deps.runner, plan).catch((err: unknown) => {
        log.debug({ err: String(err) }, "metrics: cannot read live counters");
        return plan.forwards.map(() => null);
      });
    }
    const text = renderExposition(
      metricFamilies({ plan, counters, daemon: deps.metrics.snapshot() }),
    );
    return noteMissing(await writeTextfile(deps.file, text));
  }

  async function write(): Promise<boolean> {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      let ok = false;
      do {
        again = false;
        try {
          ok = await once();
          warned = false;
        } catch (err) {
          // Once per failure streak at warn level: a full disk must not flood the journal.
          (warned ? log.debug : log.warn).call(
            log,
            { err: String(err), file: deps.file },
            "metrics: write failed",
          );
          warned = true;
          ok = false;
        }
      } while (again && !stopped);
      return ok;
    })().finally(() => {
      running = null;
      if (looping) schedule(baseMs);
    });
    return running;
  }

  // One timer for every write not asked for directly: the periodic one and the kicks after
  // applies. It is set for the earliest time asked, but never before the last write's end plus
  // its spacing; a write that ends re-arms the periodic one. (Two timers let a periodic write
  // follow a kick's at once: at 1000 guests, back-to-back 3.9 MB writes.)
  function schedule(delayMs: number): void {
    if (stopped) return;
    const now = clock.now();
    const at = Math.max(now + delayMs, lastEnd + spacing());
    if (timer !== null && timerAt <= at) return;
    if (timer !== null) clock.clearTimeout(timer);
    timerAt = at;
    timer = clock.setTimeout(() => {
      timer = null;
      timerAt = Number.POSITIVE_INFINITY;
      // A write under way (one asked for directly), or one that ended after this timer was
      // set: the next one is spaced from its end.
      if (running) void running.finally(() => schedule(0));
      else if (clock.now() < lastEnd + spacing()) schedule(0);
      else void write();
    }, at - now);
  }

  return {
    start() {
      if (looping) return;
      looping = true;
      stopped = false;
      schedule(baseMs);
    },
    stop() {
      stopped = true;
      looping = false;
      if (timer !== null) clock.clearTimeout(timer);
      timer = null;
      timerAt = Number.POSITIVE_INFINITY;
    },
    kick() {
      schedule(AFTER_APPLY_MS);
    },
    write,
  };
}
