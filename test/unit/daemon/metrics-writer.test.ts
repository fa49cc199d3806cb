// The metrics textfile writer (daemon/metrics.ts): without node_exporter's directory it must
// not pay for the text (an iptables-save -c of the whole table each time); with it, it writes,
// and two writes start at least WRITE_COST_FACTOR times the last one's duration apart.
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  createMetricsWriter,
  MAX_WRITE_SPACING_MS,
  WRITE_COST_FACTOR,
} from "../../../src/daemon/metrics.js";
import { createDaemonMetrics } from "../../../src/metrics/registry.js";
import type { NatPlan } from "../../../src/model.js";
import { fakeClock, silent } from "../../helpers/fixtures.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "pve-nat-metrics-writer-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function writer(file: string) {
  const saves: string[] = [];
  const plan = { forwards: [], chains: [], diagnostics: [] } as unknown as NatPlan;
  const w = createMetricsWriter({
    file,
    applier: { state: () => ({ plan }) } as never,
    runner: {
      async save(table: string) {
        saves.push(table);
        return "";
      },
    } as never,
    metrics: createDaemonMetrics(() => 0),
    clock: fakeClock(),
    intervalMs: 30_000,
    log: silent,
  });
  return { w, saves };
}

describe("metrics textfile writer", () => {
  it("reads no counters and writes nothing while node_exporter's directory is missing", async () => {
    const file = path.join(dir, "node-exporter/pve-nat.prom");
    const { w, saves } = writer(file);
    expect(await w.write()).toBe(false);
    expect(await w.write()).toBe(false);
    expect(saves).toEqual([]);
  });

  it("reads the counters and writes the file once the directory exists", async () => {
    const file = path.join(dir, "node-exporter/pve-nat.prom");
    const { w, saves } = writer(file);
    expect(await w.write()).toBe(false);
    await mkdir(path.dirname(file));
    expect(await w.write()).toBe(true);
    expect(saves.length).toBeGreaterThan(0);
    expect(await readFile(file, "utf8")).toMatch(/^# HELP pve_nat_/m);
  });
});

/** A writer whose counter read takes `costMs` of the (fake) clock: the clock's now() moves by
 *  it inside the read, without firing timers. */
function timedWriter(file: string, costMs: number) {
  const fake = fakeClock();
  let skew = 0;
  const clock = { ...fake, now: () => fake.now() + skew };
  let writes = 0;
  const plan = { forwards: [], chains: [], diagnostics: [] } as unknown as NatPlan;
  const w = createMetricsWriter({
    file,
    applier: { state: () => ({ plan }) } as never,
    runner: {
      async save(table: string) {
        if (table === "nat") {
          writes++;
          skew += costMs;
        }
        return "";
      },
    } as never,
    metrics: createDaemonMetrics(() => 0),
    clock,
    intervalMs: 30_000,
    log: silent,
  });
  return { w, fake, writes: () => writes };
}

/** Real time for the writer's file I/O after a fake timer fired. */
async function until(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  return cond();
}
const quiet = () => new Promise((r) => setTimeout(r, 60));

describe("metrics textfile writer: spacing", () => {
  it("a cheap write keeps the 15 s period", async () => {
    const file = path.join(dir, "pve-nat.prom");
    const { w, fake, writes } = timedWriter(file, 0);
    w.start();
    for (let n = 1; n <= 3; n++) {
      fake.advance(15_000);
      expect(await until(() => writes() === n)).toBe(true);
    }
    w.stop();
  });

  it("an expensive write spaces the next timed one by its cost", async () => {
    const file = path.join(dir, "pve-nat.prom");
    const { w, fake, writes } = timedWriter(file, 1000);
    w.start();
    fake.advance(15_000);
    expect(await until(() => writes() === 1)).toBe(true);
    // 50 s, more than the 15 s period, which alone would write again at 30, 45 and 60 s.
    const spacing = WRITE_COST_FACTOR * 1000;
    fake.advance(spacing - 1);
    await quiet();
    expect(writes()).toBe(1);
    fake.advance(1);
    expect(await until(() => writes() === 2)).toBe(true);
    w.stop();
  });

  it("an apply's kick waits for the same spacing after an expensive write", async () => {
    const file = path.join(dir, "pve-nat.prom");
    const { w, fake, writes } = timedWriter(file, 1000);
    expect(await w.write()).toBe(true);
    w.kick();
    fake.advance(WRITE_COST_FACTOR * 1000 - 1);
    await quiet();
    expect(writes()).toBe(1);
    fake.advance(1);
    expect(await until(() => writes() === 2)).toBe(true);
    // A cheap node: the kick writes 250 ms after the apply, as before.
    const cheap = timedWriter(path.join(dir, "cheap.prom"), 0);
    expect(await cheap.w.write()).toBe(true);
    cheap.w.kick();
    cheap.fake.advance(250);
    expect(await until(() => cheap.writes() === 2)).toBe(true);
  });

  it("a timer set before an expensive write does not follow it at once", async () => {
    // The daemon's start: the periodic timer is set (15 s), then a write is asked for directly.
    const file = path.join(dir, "pve-nat.prom");
    const { w, fake, writes } = timedWriter(file, 1000);
    w.start();
    fake.advance(10_000);
    expect(await w.write()).toBe(true);
    w.kick(); // an apply right after
    // Nothing for 50 s after its end (the 15 s timer included), then one write, not two. (The
    // fake clock's timers do not see the write's own second.)
    fake.advance(WRITE_COST_FACTOR * 1000 - 1);
    await quiet();
    expect(writes()).toBe(1);
    fake.advance(1);
    expect(await until(() => writes() === 2)).toBe(true);
    await quiet();
    expect(writes()).toBe(2);
    w.stop();
  });

  it("never further apart than MAX_WRITE_SPACING_MS", async () => {
    const file = path.join(dir, "pve-nat.prom");
    const { w, fake, writes } = timedWriter(file, 60_000);
    w.start();
    fake.advance(15_000);
    expect(await until(() => writes() === 1)).toBe(true);
    fake.advance(MAX_WRITE_SPACING_MS - 1);
    await quiet();
    expect(writes()).toBe(1);
    fake.advance(1);
    expect(await until(() => writes() === 2)).toBe(true);
    w.stop();
  });
});
