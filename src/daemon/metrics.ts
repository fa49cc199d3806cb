import type { Logger } from "pino";
import { type Counters, readForwardCounters } from "../iptables/counters.js";
import type { Runner } from "../iptables/runner.js";
import { metricFamilies } from "../metrics/collect.js";
import { renderExposition } from "../metrics/exposition.js";
import type { DaemonMetrics } from "../metrics/registry.js";
import { textfileDirExists, writeTextfile } from "../metrics/textfile.js";
import type { Applier } from "./applier.js";
import { type Clock, every } from "./clock.js";

// The daemon's metrics textfile (SPEC §8 metrics_textfile): rewritten on a timer and soon after
// each apply. One `iptables-save -c` per write; writes never overlap, a request during one
// makes one more afterwards.

/** node_exporter is scraped every 15–60 s: fresher files would only cost iptables-save runs. */
export const MAX_WRITE_INTERVAL_MS = 15_000;
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
  let kickTimer: unknown = null;
  let stopped = false;
  let warned = false;
  let missingDir = false;

  function noteMissing(written: boolean): boolean {
    if (!written && !missingDir)
      log.info({ file: deps.file }, "metrics: directory missing, not written");
    missingDir = !written;
    return written;
  }

  async function once(): Promise<boolean> {
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
    });
    return running;
  }

  const loop = every(clock, Math.min(deps.intervalMs, MAX_WRITE_INTERVAL_MS), () => write());
  return {
    start() {
      stopped = false;
      loop.start();
    },
    stop() {
      stopped = true;
      loop.stop();
      if (kickTimer !== null) clock.clearTimeout(kickTimer);
      kickTimer = null;
    },
    kick() {
      if (stopped || kickTimer !== null) return;
      kickTimer = clock.setTimeout(() => {
        kickTimer = null;
        void write();
      }, AFTER_APPLY_MS);
    },
    write,
  };
}
