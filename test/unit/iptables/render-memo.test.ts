// renderSync/diffLive with the daemon's long-lived memo must print exactly what they print
// without one: plans from random node edits or none (compiled with a memo, so unchanged owners
// keep their objects), live states that follow the payloads (renderSync's `after`, as the
// applier keeps it) with random drift, random owner sets.
import { describe, expect, it } from "vitest";
import {
  createRenderMemo,
  diffLive,
  liveOwnerChains,
  plannedChains,
  renderSync,
} from "../../../src/iptables/render.js";
import { emptyLive, type LiveState } from "../../../src/iptables/save.js";
import type { NatPlan, Owner } from "../../../src/model.js";
import { compile, createCompileMemo } from "../../../src/nat/compile.js";
import { makePlan } from "../../helpers/fixtures.js";
import { gcAfterJob } from "../../helpers/gc.js";
import { inputBuilder, prng, randomEdit, randomNode } from "../../helpers/nodegen.js";

/** Some drift someone else caused: a flushed or deleted chain, a stray line, a lost jump. */
function drift(r: () => number, live: LiveState): LiveState {
  const chains = new Map(live.chains);
  const jumps = live.jumps.map((j) => ({ ...j }));
  const names = [...chains.keys()];
  const name = names[Math.floor(r() * names.length)];
  const x = r();
  if (name && x < 0.3) chains.set(name, []);
  else if (name && x < 0.5) chains.delete(name);
  else if (name && x < 0.65)
    chains.set(name, [...(chains.get(name) ?? []), `-A ${name} -j RETURN`]);
  else if (x < 0.8 && jumps.length > 0) jumps.splice(Math.floor(r() * jumps.length), 1);
  else if (jumps[0]) (jumps[0] as { count: number }).count = 2;
  return { chains, jumps, counters: new Map() };
}

/** The owner chains among these chain names, in their order. */
function owned(names: Iterable<string>): string[] {
  return [...names].filter((n) => /^PVENAT-(\d+|NODE)-/.test(n));
}

function someOwners(r: () => number, plan: NatPlan, live: LiveState): Owner[] {
  const all: Owner[] = [...new Set<Owner>([...plan.chains.map((c) => c.owner), 100, 101, "NODE"])];
  for (const name of live.chains.keys()) {
    const m = /^PVENAT-(\d+|NODE)-/.exec(name);
    if (m) all.push(m[1] === "NODE" ? "NODE" : Number(m[1]));
  }
  return all.filter(() => r() < 0.3);
}

describe("render with a memo", () => {
  it.each(Array.from({ length: 30 }, (_, i) => i + 1))(
    "prints what it prints without one (seed %i)",
    (seed) => {
      const r = prng(seed);
      const node = randomNode(r, 4 + Math.floor(r() * 10));
      const build = inputBuilder();
      const compileMemo = createCompileMemo();
      const memo = createRenderMemo();
      let live = emptyLive();
      let payloads = 0;
      for (let step = 0; step < 40; step++) {
        const plan = compile(build(node), compileMemo);
        if (r() < 0.25) live = drift(r, live);
        expect(diffLive(plan, live, memo), `seed ${seed} step ${step}`).toStrictEqual(
          diffLive(plan, live),
        );
        const d = diffLive(plan, live);
        // Mostly what decideSync asks (the drift included); sometimes less, leaving drift for
        // the next step to find.
        const some = someOwners(r, plan, live);
        const owners = r() < 0.3 ? some : [...new Set([...some, ...d.owners])];
        const req = { plan, owners, entry: d.entry || r() < 0.2, live };
        const want = renderSync(req);
        const got = renderSync(req, memo);
        expect(got.payload, `seed ${seed} step ${step}`).toBe(want.payload);
        expect(got.after, `seed ${seed} step ${step}`).toStrictEqual(want.after);
        // The owner chains the memo says a state holds are the ones it holds.
        expect(new Set(liveOwnerChains(got.after).names), `seed ${seed} step ${step}`).toEqual(
          new Set(owned(got.after.chains.keys())),
        );
        if (want.payload !== "") payloads++;
        live = got.after;
        // Often the next event changes nothing (a start of a guest whose rules stand): the
        // plan keeps its chains and the memo may know the live state holds exactly them.
        if (r() < 0.6) randomEdit(r, node);
      }
      expect(payloads).toBeGreaterThan(0);
    },
  );

  it("after a full sync nothing differs and nothing is rendered", () => {
    const r = prng(3);
    const node = randomNode(r, 12);
    const build = inputBuilder();
    const memo = createRenderMemo();
    const plan = compile(build(node), createCompileMemo());
    const { payload, after: live } = renderSync(
      { plan, owners: plan.chains.map((c) => c.owner), entry: true, live: emptyLive() },
      memo,
    );
    expect(payload).not.toBe("");
    expect(diffLive(plan, live, memo)).toEqual({ owners: [], entry: false });
    const none = renderSync({ plan, owners: [], entry: false, live }, memo);
    expect(none.payload).toBe("");
    // The same state, not a copy: the next cycle still finds it as the memo knew it.
    expect(none.after).toBe(live);
  });

  // liveOwnerChains is read once per state (states are never changed): each state renderSync
  // builds must be read on its own, or a chain it removed would still count as live.
  it("reads each live state's owner chains from that state", () => {
    const r = prng(5);
    const node = randomNode(r, 12);
    const build = inputBuilder();
    const plan = compile(build(node), createCompileMemo());
    const first = renderSync(
      { plan, owners: plan.chains.map((c) => c.owner), entry: true, live: emptyLive() },
      createRenderMemo(),
    ).after;
    const stray = { ...first, chains: new Map(first.chains).set("PVENAT-4242-DNAT", []) };
    expect(liveOwnerChains(first).names).toEqual(owned(first.chains.keys()));
    expect(liveOwnerChains(stray).owners.has(4242)).toBe(true);
    const d = diffLive(plan, stray);
    expect(d.owners).toContain(4242);
    const { payload, after } = renderSync({ plan, owners: d.owners, entry: d.entry, live: stray });
    expect(payload).toContain("-X PVENAT-4242-DNAT");
    expect(liveOwnerChains(after).owners.has(4242)).toBe(false);
    expect(liveOwnerChains(after).names).toEqual(liveOwnerChains(first).names);
  });

  it("keeps no line of an older plan alive through the live state it was checked against", async () => {
    // The applier keeps its last read of the tables while plans come and go: what the memo
    // learned about that read (these live lines equal those planned ones) must not keep the
    // planned lines of a plan the node no longer has (issue 10: ≈ 3 MB at 1000 guests).
    const memo = createRenderMemo();
    const name = "PVENAT-107-DNAT";
    // The live state as iptables-save reads back: the same lines, in arrays of its own.
    const live: LiveState = {
      ...emptyLive(),
      chains: new Map(
        [...plannedChains(makePlan([{ vmid: 107, port: 822 }])).entries()].map(([n, l]) => [
          n,
          [...l],
        ]),
      ),
    };
    // Made in functions of their own: an async function's locals outlive their block.
    const older = ((plan: NatPlan) => {
      expect(diffLive(plan, live, memo).owners).toEqual([]);
      return new WeakRef(plannedChains(plan, memo).get(name) as string[]);
    })(makePlan([{ vmid: 107, port: 822 }]));
    ((plan: NatPlan) => {
      expect(diffLive(plan, live, memo).owners).toEqual([107]);
    })(makePlan([{ vmid: 107, port: 823 }]));
    await gcAfterJob();
    expect(older.deref()).toBeUndefined();
    expect(live.chains.get(name)?.length).toBeGreaterThan(0);
    // And what it knows still answers: the read still matches a plan like the first.
    expect(diffLive(makePlan([{ vmid: 107, port: 822 }]), live, memo).owners).toEqual([]);
  });
});
