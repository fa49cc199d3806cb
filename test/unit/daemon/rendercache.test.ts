// The applier's cached renderer must print exactly what render.ts prints: plans from random
// node edits (incremental compile, so unchanged owners keep their objects), live states that
// follow the payloads (replayed, as the applier does) with random drift, random owner sets.
import { describe, expect, it } from "vitest";
import { replayPayload } from "../../../src/daemon/livecache.js";
import { createRenderCache } from "../../../src/daemon/rendercache.js";
import { diffLive, renderRestore } from "../../../src/iptables/render.js";
import { emptyLive, type LiveState } from "../../../src/iptables/save.js";
import type { NatPlan, Owner } from "../../../src/model.js";
import { createCompiler } from "../../../src/nat/incremental.js";
import { inputBuilder, prng, randomEdit, randomNode } from "../nat/nodegen.js";

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

function someOwners(r: () => number, plan: NatPlan, live: LiveState): Owner[] {
  const all: Owner[] = [...new Set<Owner>([...plan.chains.map((c) => c.owner), 100, 101, "NODE"])];
  for (const name of live.chains.keys()) {
    const m = /^PVENAT-(\d+|NODE)-/.exec(name);
    if (m) all.push(m[1] === "NODE" ? "NODE" : Number(m[1]));
  }
  return all.filter(() => r() < 0.3);
}

describe("cached renderer", () => {
  it.each(Array.from({ length: 30 }, (_, i) => i + 1))(
    "prints what render.ts prints (seed %i)",
    (seed) => {
      const r = prng(seed);
      const node = randomNode(r, 4 + Math.floor(r() * 10));
      const build = inputBuilder();
      const inc = createCompiler();
      const cache = createRenderCache();
      let live = emptyLive();
      let payloads = 0;
      for (let step = 0; step < 40; step++) {
        const plan = inc.compile(build(node));
        if (r() < 0.25) live = drift(r, live);
        expect(cache.diffLive(plan, live), `seed ${seed} step ${step}`).toStrictEqual(
          diffLive(plan, live),
        );
        const d = diffLive(plan, live);
        const owners = [...new Set([...someOwners(r, plan, live), ...d.owners])];
        const req = { plan, owners, entry: d.entry || r() < 0.2, live };
        const want = renderRestore(req);
        expect(cache.renderRestore(req), `seed ${seed} step ${step}`).toBe(want);
        if (want !== "") {
          payloads++;
          live = replayPayload(live, want) ?? live;
        }
        randomEdit(r, node);
      }
      expect(payloads).toBeGreaterThan(0);
    },
  );

  it("after the applier's cycle, untouched owners need no comparison and nothing differs", () => {
    const r = prng(3);
    const node = randomNode(r, 12);
    const build = inputBuilder();
    const inc = createCompiler();
    const cache = createRenderCache();
    const plan = inc.compile(build(node));
    const payload = cache.renderRestore({
      plan,
      owners: plan.chains.map((c) => c.owner),
      entry: true,
      live: emptyLive(),
    });
    const live = replayPayload(emptyLive(), payload) as LiveState;
    expect(cache.diffLive(plan, live)).toEqual({ owners: [], entry: false });
    expect(cache.renderRestore({ plan, owners: [], entry: false, live })).toBe("");
  });
});
