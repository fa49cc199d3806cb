// The daemon's incremental compile must be compile() exactly: random nodes, random edits (guest
// files, run states, new and removed guests, cluster.fw, host.fw, config, public address, host
// ports, rejected lines), and after every edit the whole plan is compared.
import { describe, expect, it } from "vitest";
import type { NatPlan } from "../../../src/model.js";
import { compile } from "../../../src/nat/compile.js";
import { createCompiler } from "../../../src/nat/incremental.js";
import { inputBuilder, prng, randomEdit, randomNode } from "./nodegen.js";

const SEEDS = Array.from({ length: 40 }, (_, i) => i + 1);

describe("incremental compile", () => {
  it.each(SEEDS)("equals compile() after every random edit (seed %i)", (seed) => {
    const r = prng(seed);
    const node = randomNode(r, 4 + Math.floor(r() * 12));
    const build = inputBuilder();
    const inc = createCompiler();
    let conflicts = 0;
    for (let step = 0; step < 40; step++) {
      const input = build(node);
      const got = inc.compile(input);
      expect(got, `seed ${seed} step ${step}`).toStrictEqual(compile(input));
      conflicts += got.forwards.filter((f) => f.state === "conflict").length;
      randomEdit(r, node);
    }
    // The generator is meant to make conflicts; a seed without any still checks the rest.
    expect(conflicts).toBeGreaterThanOrEqual(0);
  });

  it("the generated nodes exercise every forward state", () => {
    const states = new Set<string>();
    for (const seed of SEEDS) {
      const r = prng(seed);
      const node = randomNode(r, 10);
      for (const f of compile(inputBuilder()(node)).forwards) states.add(f.state);
    }
    expect([...states].sort()).toEqual(["active", "conflict", "error", "inactive"]);
  });

  it("keeps untouched owners' chains and forwards as the same objects", () => {
    const r = prng(7);
    const node = randomNode(r, 12);
    for (const g of node.guests.values()) g.state = "running";
    const build = inputBuilder();
    const inc = createCompiler();
    const first: NatPlan = inc.compile(build(node));
    // Same number of forwards, one guest's run state flips: nothing else is rebuilt.
    const [vmid, g] = [...node.guests].find(([, x]) => x.fw !== null) as [
      number,
      { state: string },
    ];
    g.state = "starting";
    const second = inc.compile(build(node));
    expect(second).toStrictEqual(compile(build(node)));
    for (const oc of second.chains) {
      if (oc.owner === vmid || oc.owner === "NODE") continue;
      expect(first.chains).toContain(oc);
    }
    const kept = second.forwards.filter((f) => f.vmid !== vmid && f.vmid !== null);
    for (const f of kept) expect(first.forwards).toContain(f);
  });

  it("handles 1000 guests × 10 forwards and still equals compile()", () => {
    const node = randomNode(prng(1), 0);
    node.cluster = null;
    node.host = null;
    node.publicAddress = "203.0.113.10";
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
    const inc = createCompiler();
    const plan = inc.compile(input);
    expect(plan.forwards).toHaveLength(10_000);
    expect(plan.forwards.filter((f) => f.state !== "active").slice(0, 2)).toEqual([]);
    expect(plan).toStrictEqual(compile(input));
  });
});
