// The metrics textfile writer (daemon/metrics.ts): without node_exporter's directory it must
// not pay for the text (an iptables-save -c of the whole table each time); with it, it writes.
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createMetricsWriter } from "../../../src/daemon/metrics.js";
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
