// What each cycle asks the plan loader to re-read (plan.ts / pve/cache.ts), and the conntrack
// shortcut: goneForwards must give forwardsGone's answer without keying every forward.
import { describe, expect, it } from "vitest";
import { createApplier, goneForwards } from "../../../src/daemon/applier.js";
import { forwardsGone } from "../../../src/daemon/conntrack.js";
import type { LoadScope } from "../../../src/daemon/plan.js";
import type { Owner } from "../../../src/model.js";
import { compile, createCompileMemo } from "../../../src/nat/compile.js";
import { ownerOf } from "../../../src/nat/lookup.js";
import { fakeClock, type GuestSpec, makePlan, silent } from "../../helpers/fixtures.js";
import { inputBuilder, prng, randomEdit, randomNode } from "../../helpers/nodegen.js";
import { simKernel } from "../../helpers/sim-kernel.js";

describe("applier load scope", () => {
  it("full and --all re-read everything; guest events and verifies their guests; checks and drift add run state", async () => {
    const scopes: Array<LoadScope | undefined> = [];
    const applier = createApplier({
      load: async (scope) => {
        scopes.push(scope);
        return makePlan([{ vmid: 101, port: 8101 }]);
      },
      runner: simKernel(),
      publish: () => {},
      log: silent,
      clock: fakeClock(),
    });
    await applier.apply({ full: true });
    await applier.apply({ owners: [101, "NODE"] });
    await applier.apply({ check: true });
    await applier.apply({ verify: [101] });
    await applier.apply({ drift: true });
    await applier.apply({ all: true });
    expect(scopes).toEqual([
      { all: true },
      { owners: [101, "NODE"], runState: false },
      { owners: [], runState: true },
      { owners: [], runState: false, runStateOf: [101] },
      { owners: [], runState: true },
      { all: true },
    ]);
    await applier.stop();
  });
});

describe("goneForwards", () => {
  const specs: Array<[string, GuestSpec[], GuestSpec[], Owner[]]> = [
    ["nothing changed", [{ vmid: 101, port: 1 }], [{ vmid: 101, port: 1 }], [101]],
    ["a port moved", [{ vmid: 101, port: 1 }], [{ vmid: 101, port: 2 }], [101]],
    ["a target changed", [{ vmid: 101, port: 1 }], [{ vmid: 101, port: 1, to: 80 }], [101]],
    [
      "a guest stopped",
      [
        { vmid: 101, port: 1 },
        { vmid: 102, port: 2 },
      ],
      [{ vmid: 102, port: 2 }],
      [101],
    ],
    [
      "lost a conflict",
      [{ vmid: 101, port: 1 }],
      [{ vmid: 101, port: 1, state: "conflict" }],
      [101],
    ],
    ["not a rendered owner", [{ vmid: 101, port: 1 }], [{ vmid: 101, port: 2 }], [102]],
    [
      "several owners",
      [
        { vmid: 101, port: 1 },
        { vmid: 102, port: 2 },
      ],
      [
        { vmid: 101, port: 3 },
        { vmid: 102, port: 2, to: 9 },
      ],
      [101, 102],
    ],
  ];
  it.each(specs)("%s: same deletions as forwardsGone", (_, before, after, owners) => {
    const a = makePlan(before);
    const b = makePlan(after);
    expect(goneForwards(a, b, new Set(owners))).toEqual(forwardsGone(a, b, new Set(owners)));
  });
  it("deletes something in the cases that need it", () => {
    const a = makePlan([{ vmid: 101, port: 1 }]);
    expect(goneForwards(a, makePlan([{ vmid: 101, port: 2 }]), new Set([101]))).not.toEqual([]);
  });
  // The daemon's plans come from one long-lived compile memo, which keeps unchanged forwards'
  // identity: goneForwards skips those. Consecutive plans of random edits, every owner asked.
  it.each([1, 2, 3, 4, 5, 6])(
    "same deletions over random edits with the memo (seed %i)",
    (seed) => {
      const r = prng(seed);
      const node = randomNode(r, 4 + Math.floor(r() * 12));
      const build = inputBuilder();
      const memo = createCompileMemo();
      let before = compile(build(node), memo);
      let deleting = 0;
      for (let step = 0; step < 30; step++) {
        randomEdit(r, node);
        const after = compile(build(node), memo);
        const owners = new Set<Owner>([
          "NODE",
          ...node.guests.keys(),
          ...before.forwards.map(ownerOf),
        ]);
        const got = goneForwards(before, after, owners);
        expect(got, `seed ${seed} step ${step}`).toEqual(forwardsGone(before, after, owners));
        if (got.length > 0) deleting++;
        before = after;
      }
      expect(deleting, "edits that delete conntrack entries").toBeGreaterThan(0);
    },
  );
});
