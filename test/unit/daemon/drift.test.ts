import { describe, expect, it } from "vitest";
import type { ApplyResult, ApplyTarget } from "../../../src/daemon/applier.js";
import { createDriftCheck } from "../../../src/daemon/drift.js";
import { fakeClock, makePlan, settle, silent } from "../../helpers/fixtures.js";

describe("drift check timer", () => {
  it("asks the applier for a drift cycle every interval, never while paused, and stops cleanly", async () => {
    const clock = fakeClock();
    const calls: ApplyTarget[] = [];
    let paused = false;
    const result: ApplyResult = {
      plan: makePlan([]),
      rendered: [],
      entry: false,
      full: false,
      restored: false,
      ms: 1,
    };
    const drift = createDriftCheck({
      applier: {
        apply: async (t) => {
          calls.push(t);
          return result;
        },
        state: () => ({ paused, lastSync: null, lastError: null, backend: "nft", plan: null }),
      },
      clock,
      intervalMs: 30_000,
      log: silent,
    });
    drift.start();
    clock.advance(29_999);
    await settle();
    expect(calls).toEqual([]);
    clock.advance(1);
    await settle();
    expect(calls).toEqual([{ drift: true }]);
    paused = true;
    clock.advance(30_000);
    await settle();
    expect(calls).toHaveLength(1);
    paused = false;
    clock.advance(30_000);
    await settle();
    expect(calls).toHaveLength(2);
    drift.stop();
    expect(clock.pending()).toBe(0);
  });
});
