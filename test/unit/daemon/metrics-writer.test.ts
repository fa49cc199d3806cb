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

/** A writer whose counter read takes `costMs` of the (fake) clock: the clock's now() moves by
 *  it inside the read, without firing timers. `saves` lists the tables read. */
function writer(file: string, costMs = 0) {
  const fake = fakeClock();
  let skew = 0;
  const clock = { ...fake, now: () => fake.now() + skew };
  const saves: string[] = [];
  const plan = { forwards: [], chains: [], diagnostics: [] } as unknown as NatPlan;
  const w = createMetricsWriter({
    file,
    applier: { state: () => ({ plan }) } as never,
    runner: {
      async save(table: string) {
        saves.push(table);
        if (table === "nat") skew += costMs;
        return "";
      },
    } as never,
    metrics: createDaemonMetrics(() => 0),
    clock,
    intervalMs: 30_000,
    log: silent,
  });
  return { w, fake, saves, writes: () => saves.filter((t) => t === "nat").length };
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

/** Real time for the writer's file I/O after a fake timer fired. */
async function until(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  return cond();
}
const quiet = () => new Promise((r) => setTimeout(r, 60));

/** The next write comes `ms` of the fake clock from now, and not a millisecond before. */
async function nextWriteIn(t: ReturnType<typeof writer>, ms: number): Promise<void> {
  const before = t.writes();
  t.fake.advance(ms - 1);
  await quiet();
  expect(t.writes()).toBe(before);
  t.fake.advance(1);
  expect(await until(() => t.writes() === before + 1)).toBe(true);
}

describe("metrics textfile writer: spacing", () => {
  it("a cheap write keeps the 15 s period", async () => {
    const t = writer(path.join(dir, "pve-nat.prom"));
    t.w.start();
    for (let n = 0; n < 3; n++) await nextWriteIn(t, 15_000);
    t.w.stop();
  });

  it("an expensive write spaces the next timed one by its cost", async () => {
    const t = writer(path.join(dir, "pve-nat.prom"), 1000);
    t.w.start();
    await nextWriteIn(t, 15_000);
    // 100 s, more than the 15 s period, which alone would write again every 15 s.
    await nextWriteIn(t, WRITE_COST_FACTOR * 1000);
    t.w.stop();
  });

  it("an apply's kick waits for the same spacing after an expensive write", async () => {
    const t = writer(path.join(dir, "pve-nat.prom"), 1000);
    expect(await t.w.write()).toBe(true);
    t.w.kick();
    await nextWriteIn(t, WRITE_COST_FACTOR * 1000);
    // A cheap node: the kick writes 250 ms after the apply, as before.
    const cheap = writer(path.join(dir, "cheap.prom"));
    expect(await cheap.w.write()).toBe(true);
    cheap.w.kick();
    await nextWriteIn(cheap, 250);
  });

  it("a timer set before an expensive write does not follow it at once", async () => {
    // The daemon's start: the periodic timer is set (15 s), then a write is asked for directly.
    const t = writer(path.join(dir, "pve-nat.prom"), 1000);
    t.w.start();
    t.fake.advance(10_000);
    expect(await t.w.write()).toBe(true);
    t.w.kick(); // an apply right after
    // Nothing for the spacing after its end (the 15 s timer included), then one write, not
    // two. (The fake clock's timers do not see the write's own second.)
    await nextWriteIn(t, WRITE_COST_FACTOR * 1000);
    await quiet();
    expect(t.writes()).toBe(2);
    t.w.stop();
  });

  it("never further apart than MAX_WRITE_SPACING_MS", async () => {
    const t = writer(path.join(dir, "pve-nat.prom"), 60_000);
    t.w.start();
    await nextWriteIn(t, 15_000);
    await nextWriteIn(t, MAX_WRITE_SPACING_MS);
    t.w.stop();
  });
});
