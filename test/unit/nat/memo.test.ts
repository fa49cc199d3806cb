// compile() with the daemon's long-lived memo must equal compile() with none: random nodes, random edits (guest
// files, run states, new and removed guests, cluster.fw, host.fw, config, public address, host
// ports, rejected lines), and after every edit the whole plan is compared.
import { describe, expect, it } from "vitest";
import { createRenderMemo, plannedChains } from "../../../src/iptables/render.js";
import type { NatPlan } from "../../../src/model.js";
import { compile, createCompileMemo } from "../../../src/nat/compile.js";
import type { Candidate } from "../../../src/nat/types.js";
import { inputBuilder, prng, randomEdit, randomNode } from "../../helpers/nodegen.js";

const SEEDS = Array.from({ length: 40 }, (_, i) => i + 1);
/** Conflicts seen per seed: the generator must make some, or the comparison proves little. */
const conflictsSeen: number[] = [];

/** A node without guests, cluster.fw or host.fw, with a public address: tests add the guests. */
function bareNode(seed: number): ReturnType<typeof randomNode> {
  const node = randomNode(prng(seed), 0);
  node.cluster = null;
  node.host = null;
  node.publicAddress = "203.0.113.10";
  return node;
}

describe("compile with a memo", () => {
  it.each(SEEDS)("equals compile() without one after every random edit (seed %i)", (seed) => {
    const r = prng(seed);
    const node = randomNode(r, 4 + Math.floor(r() * 12));
    const build = inputBuilder();
    const memo = createCompileMemo();
    let conflicts = 0;
    for (let step = 0; step < 40; step++) {
      const input = build(node);
      const got = compile(input, memo);
      expect(got, `seed ${seed} step ${step}`).toStrictEqual(compile(input));
      conflicts += got.forwards.filter((f) => f.state === "conflict").length;
      randomEdit(r, node);
    }
    conflictsSeen.push(conflicts);
  });

  // Rule drafts are shared between the memo and the plans it made: a forward index given to a
  // draft must never change under a plan already handed out (the applier keeps the previous
  // plan, e.g. to find the forwards that went away).
  it.each(SEEDS.slice(0, 10))("never changes a plan it handed out (seed %i)", (seed) => {
    const r = prng(seed);
    const node = randomNode(r, 4 + Math.floor(r() * 12));
    const build = inputBuilder();
    const memo = createCompileMemo();
    const held: Array<{ plan: NatPlan; copy: NatPlan }> = [];
    for (let step = 0; step < 40; step++) {
      const plan = compile(build(node), memo);
      held.push({ plan, copy: structuredClone(plan) });
      for (const [i, h] of held.entries())
        expect(h.plan, `seed ${seed}: plan of step ${i} after step ${step}`).toStrictEqual(h.copy);
      randomEdit(r, node);
    }
  });

  it("the random edits produced conflicts in most seeds", () => {
    expect(conflictsSeen).toHaveLength(SEEDS.length);
    expect(conflictsSeen.filter((n) => n > 0).length).toBeGreaterThan(SEEDS.length / 2);
  });

  it("the generated nodes exercise every forward state", () => {
    const states = new Set<string>();
    for (const seed of SEEDS) {
      const r = prng(seed);
      const node = randomNode(r, 10);
      for (const f of compile(inputBuilder()(node)).forwards) states.add(f.state);
    }
    expect([...states].sort()).toEqual(["active", "conflict", "error", "inactive", "pending"]);
  });

  it("keeps untouched owners' chains and forwards as the same objects", () => {
    const r = prng(7);
    const node = randomNode(r, 12);
    for (const g of node.guests.values()) g.state = "running";
    const build = inputBuilder();
    const memo = createCompileMemo();
    const first: NatPlan = compile(build(node), memo);
    // Same number of forwards, one guest's run state flips: nothing else is rebuilt.
    const [vmid, g] = [...node.guests].find(([, x]) => x.fw !== null) as [
      number,
      { state: string },
    ];
    g.state = "starting";
    const second = compile(build(node), memo);
    expect(second).toStrictEqual(compile(build(node)));
    for (const oc of second.chains) {
      if (oc.owner === vmid || oc.owner === "NODE") continue;
      expect(first.chains).toContain(oc);
    }
    const kept = second.forwards.filter((f) => f.vmid !== vmid && f.vmid !== null);
    for (const f of kept) expect(first.forwards).toContain(f);
  });

  it("a guest that only starts or stops keeps its expansion; a pending forward's guest does not", () => {
    const node = bareNode(3);
    node.guests.set(100, {
      conf: "hostname: a\nnet0: name=eth0,bridge=vmbr1,ip=10.10.0.2/16\n",
      fw: "[RULES]\nIN ACCEPT -p tcp -dport 22 # NAT:2222\n",
      state: "stopped",
    });
    // No address to forward to until one is learned: pending, with a note while it runs.
    node.guests.set(101, {
      conf: "hostname: b\nnet0: name=eth0,bridge=vmbr1,ip=dhcp\n",
      fw: "[RULES]\nIN ACCEPT -p tcp -dport 22 # NAT:2223\n",
      state: "stopped",
    });
    const build = inputBuilder();
    const memo = createCompileMemo();
    compile(build(node), memo);
    const first = (vmid: number) => memo.guests.get(vmid)?.cands[0] as Candidate;
    const [a0, b0] = [first(100), first(101)];
    expect(b0.forward.state).toBe("pending");
    for (const g of node.guests.values()) g.state = "running";
    const input = build(node);
    const plan = compile(input, memo);
    expect(plan).toStrictEqual(compile(input));
    const [a1, b1] = [first(100), first(101)];
    expect(a1.running).toBe(true);
    expect(a1).not.toBe(a0);
    expect(a1.dnat).toBe(a0.dnat); // the rule drafts are shared, not expanded again
    expect(a1.forward).toBe(a0.forward);
    expect(b1.dnat).not.toBe(b0.dnat); // expanded again: its note depends on the run state
    expect(plan.diagnostics.some((d) => d.message.startsWith("NAT forward pending"))).toBe(true);
    expect(plan.forwards.find((f) => f.vmid === 100)?.state).toBe("active");
  });

  it("a guest that stops and starts again gets back the same chains, and its lines are not rendered again", () => {
    const node = bareNode(3);
    node.guests.set(100, {
      conf: "hostname: a\nnet0: name=eth0,bridge=vmbr1,ip=10.10.0.2/16\n",
      fw: "[RULES]\nIN ACCEPT -p tcp -dport 22 # NAT:2222\nIN ACCEPT -p tcp -dport 80 # NAT:8080\n",
      state: "running",
    });
    const build = inputBuilder();
    const memo = createCompileMemo();
    const render = createRenderMemo();
    const up = compile(build(node), memo);
    const chains = up.chains.find((c) => c.owner === 100);
    const lines = plannedChains(up, render).get("PVENAT-100-DNAT");
    expect(lines).toHaveLength(2);
    (node.guests.get(100) as { state: string }).state = "stopped";
    const down = compile(build(node), memo);
    expect(down.chains.some((c) => c.owner === 100)).toBe(false);
    expect(plannedChains(down, render).has("PVENAT-100-DNAT")).toBe(false);
    (node.guests.get(100) as { state: string }).state = "running";
    const input = build(node);
    const again = compile(input, memo);
    expect(again).toStrictEqual(compile(input));
    expect(again.chains.find((c) => c.owner === 100)).toBe(chains);
    expect(plannedChains(again, render).get("PVENAT-100-DNAT")).toBe(lines);
    // Another forward index (a guest before it gained a forward) makes other chains.
    node.guests.set(99, {
      conf: "hostname: z\nnet0: name=eth0,bridge=vmbr1,ip=10.10.0.3/16\n",
      fw: "[RULES]\nIN ACCEPT -p tcp -dport 22 # NAT:2299\n",
      state: "running",
    });
    const moved = compile(build(node), memo);
    expect(moved).toStrictEqual(compile(build(node)));
    expect(moved.chains.find((c) => c.owner === 100)).not.toBe(chains);
  });

  it("handles 1000 guests × 10 forwards and still equals compile()", () => {
    const node = bareNode(1);
    for (let i = 0; i < 1000; i++) {
      const vmid = 1000 + i;
      const rules = Array.from(
        { length: 10 },
        (_, j) => `IN ACCEPT -p tcp -dport ${8000 + j} # NAT:${10_000 + i * 10 + j}`,
      );
      node.guests.set(vmid, {
        conf: `hostname: ct${vmid}\nnet0: name=eth0,bridge=vmbr1,ip=10.10.${Math.floor(i / 250)}.${(i % 250) + 2}/16\n`,
        fw: `[RULES]\n${rules.join("\n")}\n`,
        state: "running",
      });
    }
    const input = inputBuilder()(node);
    const memo = createCompileMemo();
    const plan = compile(input, memo);
    expect(plan.forwards).toHaveLength(10_000);
    expect(plan.forwards.filter((f) => f.state !== "active").slice(0, 2)).toEqual([]);
    expect(plan).toStrictEqual(compile(input));
  });
});
