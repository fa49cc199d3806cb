// Issue 12, item 4: the backend is re-detected on reload (full cycles) and drift checks; a
// change moves pve-nat's chains (written to the new backend, removed from the old one).
import { describe, expect, it } from "vitest";
import { createApplier } from "../../../src/daemon/applier.js";
import type { Backend } from "../../../src/iptables/runner.js";
import { fakeClock, type GuestSpec, makePlan, silent } from "../../helpers/fixtures.js";
import { type SimKernel, simKernel } from "../../helpers/sim-kernel.js";

const GUESTS: GuestSpec[] = [
  { vmid: 101, port: 8101 },
  { vmid: 102, port: 8102 },
];

/** Owned chains and jumps a kernel holds, per table. */
function owned(k: SimKernel): string[] {
  const out: string[] = [];
  for (const table of ["nat", "raw"] as const) {
    for (const [chain, rules] of k.tables[table]) {
      if (chain.startsWith("PVENAT-")) out.push(`${table}/${chain}`);
      for (const r of rules)
        if (/-j PVENAT-/.test(r) && !chain.startsWith("PVENAT-")) out.push(`${table}/${r}`);
    }
  }
  return out.sort();
}

function setup() {
  const nft = simKernel();
  const legacy = simKernel();
  legacy.backend = "legacy";
  const kernels: Record<Backend, SimKernel> = { nft, legacy };
  let wanted: Backend = "nft";
  const asked: Backend[] = [];
  const applier = createApplier({
    load: async () => makePlan(GUESTS, { zoneFix: true }),
    runner: nft,
    publish: () => {},
    log: silent,
    clock: fakeClock(),
    redetect: async (current) => {
      asked.push(current);
      return wanted === current ? null : kernels[wanted];
    },
  });
  return {
    nft,
    legacy,
    applier,
    asked,
    want(b: Backend) {
      wanted = b;
    },
  };
}

describe("applier: backend re-detection", () => {
  it("not asked at the first cycle (the daemon just detected it) nor for owner cycles", async () => {
    const t = setup();
    await t.applier.apply({ full: true });
    await t.applier.apply({ owners: [101] });
    await t.applier.apply({ check: true });
    expect(t.asked).toEqual([]);
    await t.applier.apply({ full: true });
    await t.applier.apply({ drift: true });
    expect(t.asked).toEqual(["nft", "nft"]);
  });

  it.each([
    ["a reload (full cycle)", { full: true } as const],
    ["a drift check", { drift: true } as const],
  ])("%s finds another backend: chains move there and leave the old one", async (_n, target) => {
    const t = setup();
    await t.applier.apply({ full: true });
    const before = owned(t.nft);
    expect(before).toContain("nat/PVENAT-101-DNAT");
    expect(before).toContain("raw/-A PREROUTING -j PVENAT-RAW");
    expect(owned(t.legacy)).toEqual([]);

    t.want("legacy");
    const r = await t.applier.apply(target);
    expect(r.full).toBe(true);
    expect(owned(t.legacy)).toEqual(before);
    expect(owned(t.nft)).toEqual([]);
    expect(t.applier.state().backend).toBe("legacy");
    // The new backend got one full payload; the old one a flush.
    expect(t.legacy.payloads).toHaveLength(1);
    expect(t.nft.payloads.at(-1)).toMatch(/^\*nat\n-D PREROUTING -j PVENAT-PREROUTING/);

    // And back again on the next reload.
    t.want("nft");
    await t.applier.apply({ full: true });
    expect(owned(t.nft)).toEqual(before);
    expect(owned(t.legacy)).toEqual([]);
  });

  it("a failed restore in the new backend keeps the old chains until a later cycle succeeds", async () => {
    const t = setup();
    await t.applier.apply({ full: true });
    const before = owned(t.nft);
    t.want("legacy");
    t.legacy.failNext = true;
    await expect(t.applier.apply({ full: true })).rejects.toThrow(/simulated/);
    // Nothing moved yet: forwards keep working from the old backend.
    expect(owned(t.nft)).toEqual(before);
    expect(owned(t.legacy)).toEqual([]);
    await t.applier.apply({ full: true });
    expect(owned(t.legacy)).toEqual(before);
    expect(owned(t.nft)).toEqual([]);
  });

  it("flush also clears a backend left behind", async () => {
    const t = setup();
    await t.applier.apply({ full: true });
    t.want("legacy");
    t.nft.failNext = true; // removing from the old backend fails once
    await t.applier.apply({ full: true });
    expect(owned(t.nft)).not.toEqual([]);
    await t.applier.flush();
    expect(owned(t.nft)).toEqual([]);
    expect(owned(t.legacy)).toEqual([]);
  });
});
