// nat/lookup.ts answers what a walk of the plan would, whether compile recorded the index (the
// daemon's plans) or it is built on first use (any other plan: here a structured clone).
import { describe, expect, it } from "vitest";
import type { NatPlan, Owner } from "../../../src/model.js";
import { compile, createCompileMemo } from "../../../src/nat/compile.js";
import {
  conflictsOf,
  forwardIndicesOf,
  forwardsOf,
  ownerOf,
  plannedChains,
} from "../../../src/nat/lookup.js";
import { inputBuilder, prng, randomEdit, randomNode } from "../../helpers/nodegen.js";

const SEEDS = Array.from({ length: 12 }, (_, i) => i + 1);

function owners(plan: NatPlan): Owner[] {
  // Every owner with a forward, and one with none (vmid 99 never exists in nodegen's nodes).
  return [...new Set<Owner>(["NODE", 99, ...plan.forwards.map(ownerOf)])];
}

function expectWalkAnswers(plan: NatPlan, label: string): void {
  for (const o of owners(plan)) {
    expect(forwardsOf(plan, o), `${label}: forwards of ${o}`).toStrictEqual(
      plan.forwards.filter((f) => ownerOf(f) === o),
    );
  }
  const some = owners(plan).filter((_, i) => i % 2 === 0);
  expect(forwardIndicesOf(plan, [...some, ...some]), `${label}: indices`).toStrictEqual(
    plan.forwards.flatMap((f, i) => (some.includes(ownerOf(f)) ? [i] : [])),
  );
  expect([...plannedChains(plan)], `${label}: chains`).toStrictEqual(
    plan.chains.map((c) => [c.owner, c]),
  );
  expect(conflictsOf(plan), `${label}: conflicts`).toStrictEqual(
    plan.forwards.filter((f) => f.state === "conflict"),
  );
}

describe("plan lookups", () => {
  it.each(SEEDS)("answer as a walk of the plan does, after every random edit (seed %i)", (seed) => {
    const r = prng(seed);
    const node = randomNode(r, 4 + Math.floor(r() * 12));
    const build = inputBuilder();
    const memo = createCompileMemo();
    let conflicts = 0;
    for (let step = 0; step < 30; step++) {
      const plan = compile(build(node), memo);
      expectWalkAnswers(plan, `seed ${seed} step ${step}`);
      expectWalkAnswers(structuredClone(plan), `seed ${seed} step ${step} (clone)`);
      conflicts += conflictsOf(plan).length;
      randomEdit(r, node);
    }
    // Not a vacuous comparison: the generator makes conflicts in most seeds.
    if (seed === 1) expect(conflicts).toBeGreaterThan(0);
  });

  it("hands back the plan's own forward and chain objects", () => {
    const r = prng(7);
    const plan = compile(inputBuilder()(randomNode(r, 10)));
    const owner = ownerOf(plan.forwards.at(-1) ?? expect.fail("no forwards"));
    const mine = forwardsOf(plan, owner);
    expect(mine.length).toBeGreaterThan(0);
    for (const f of mine) expect(plan.forwards).toContain(f);
    for (const c of plan.chains) expect(plannedChains(plan).get(c.owner)).toBe(c);
  });
});
