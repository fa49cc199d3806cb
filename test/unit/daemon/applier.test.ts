import { describe, expect, it } from "vitest";
import type { BusEvent } from "../../../src/bus/protocol.js";
import { createApplier, PausedError } from "../../../src/daemon/applier.js";
import { diffLive } from "../../../src/iptables/render.js";
import { parseSave } from "../../../src/iptables/save.js";
import type { NatPlan } from "../../../src/model.js";
import {
  deferred,
  fakeClock,
  type GuestSpec,
  makePlan,
  settle,
  silent,
} from "../../helpers/fixtures.js";
import { type SimKernel, simKernel } from "../../helpers/sim-kernel.js";

const FOREIGN_NAT = [
  "*nat",
  ":PREROUTING ACCEPT [0:0]",
  ":INPUT ACCEPT [0:0]",
  ":OUTPUT ACCEPT [0:0]",
  ":POSTROUTING ACCEPT [0:0]",
  ":DOCKER - [0:0]",
  "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
  "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
  "-A DOCKER -i docker0 -j RETURN",
  "COMMIT",
  "",
].join("\n");

function setup(initial: GuestSpec[], kernel: SimKernel = simKernel()) {
  let guests = initial;
  let loads = 0;
  const clock = fakeClock();
  const events: BusEvent[] = [];
  const deletes: string[][] = [];
  const applier = createApplier({
    load: async () => {
      loads++;
      return makePlan(guests);
    },
    runner: kernel,
    publish: (e) => events.push(e),
    log: silent,
    clock,
    conntrack: async (d) => {
      deletes.push(...d);
    },
    retry: { baseMs: 500, maxMs: 4000 },
  });
  return {
    kernel,
    clock,
    events,
    deletes,
    applier,
    loads: () => loads,
    setGuests(g: GuestSpec[]) {
      guests = g;
    },
    plan: () => makePlan(guests),
  };
}

async function liveDiff(kernel: SimKernel, plan: NatPlan) {
  return diffLive(plan, parseSave(await kernel.save("nat"), await kernel.save("raw")));
}

/** Owner chains a payload declares, in order. */
function declared(payload: string | undefined): string[] {
  return (payload ?? "")
    .split("\n")
    .filter((l) => /^:PVENAT-(NODE|\d+)-/.test(l))
    .map((l) => l.slice(1).split(" ")[0] as string);
}

describe("applier", () => {
  it("full sync at start writes every owner, the entry chains and jumps, and leaves foreign rules alone", async () => {
    const t = setup(
      [
        { vmid: 101, port: 8101 },
        { vmid: 102, port: 8102 },
      ],
      simKernel({ nat: FOREIGN_NAT }),
    );
    const foreignBefore = ["DOCKER", "INPUT"].map((c) => t.kernel.tables.nat.get(c));
    const r = await t.applier.apply({ full: true });
    expect(r).toMatchObject({ rendered: [101, 102], entry: true, full: true, restored: true });
    expect(await liveDiff(t.kernel, t.plan())).toEqual({ owners: [], entry: false });
    expect(t.kernel.tables.nat.get("PREROUTING")).toEqual([
      "-A PREROUTING -j PVENAT-PREROUTING",
      "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
    ]);
    expect(["DOCKER", "INPUT"].map((c) => t.kernel.tables.nat.get(c))).toEqual(foreignBefore);
    expect(t.events.map((e) => [e.type, e.vmid, e.rules])).toEqual([
      ["applied", 101, 1],
      ["applied", 102, 1],
    ]);
  });

  it("coalesces 10 events for one guest into one restore of only that guest's chains", async () => {
    const t = setup([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102 },
    ]);
    await t.applier.apply({ full: true });
    t.kernel.payloads.length = 0;
    t.setGuests([
      { vmid: 101, port: 8101, to: 2222 },
      { vmid: 102, port: 8102 },
    ]);
    const acks = Array.from({ length: 10 }, () => t.applier.apply({ owners: [101] }));
    const results = await Promise.all(acks);
    expect(t.kernel.payloads).toHaveLength(1);
    expect(declared(t.kernel.payloads[0])).toEqual(["PVENAT-101-DNAT"]);
    expect(new Set(results).size).toBe(1);
    expect(await liveDiff(t.kernel, t.plan())).toEqual({ owners: [], entry: false });
  });

  it("a burst for many guests shares one restore, entry chains included once", async () => {
    const t = setup([]);
    await t.applier.apply({ full: true });
    t.kernel.payloads.length = 0;
    const specs = Array.from({ length: 10 }, (_, i) => ({ vmid: 101 + i, port: 8101 + i }));
    t.setGuests(specs);
    await Promise.all(specs.map((g) => t.applier.apply({ owners: [g.vmid] })));
    expect(t.kernel.payloads).toHaveLength(1);
    expect(declared(t.kernel.payloads[0])).toEqual(specs.map((g) => `PVENAT-${g.vmid}-DNAT`));
    expect(t.kernel.payloads[0]).toContain(":PVENAT-PREROUTING - [0:0]");
    expect(await liveDiff(t.kernel, t.plan())).toEqual({ owners: [], entry: false });
  });

  it("serializes applies: events during a restore wait and then share the next one", async () => {
    const t = setup([{ vmid: 101, port: 8101 }]);
    await t.applier.apply({ full: true });
    t.kernel.payloads.length = 0;
    const gate = deferred();
    t.kernel.gate = gate.promise;
    t.setGuests([{ vmid: 101, port: 8101, to: 2201 }]);
    const first = t.applier.apply({ owners: [101] });
    await settle();
    expect(t.kernel.payloads).toHaveLength(1);
    t.setGuests([
      { vmid: 101, port: 8101, to: 2201 },
      { vmid: 102, port: 8102 },
      { vmid: 103, port: 8103 },
    ]);
    const later = [t.applier.apply({ owners: [102] }), t.applier.apply({ owners: [103] })];
    await settle();
    expect(t.kernel.payloads).toHaveLength(1);
    gate.resolve();
    await first;
    await Promise.all(later);
    expect(t.kernel.maxInFlight).toBe(1);
    expect(t.kernel.payloads.map(declared)).toEqual([
      ["PVENAT-101-DNAT"],
      ["PVENAT-102-DNAT", "PVENAT-103-DNAT"],
    ]);
  });

  it("a failed restore keeps the previous state, reports the error, and retries with a full sync", async () => {
    const t = setup([{ vmid: 101, port: 8101 }]);
    await t.applier.apply({ full: true });
    const before = structuredClone(t.kernel.tables);
    t.setGuests([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102 },
    ]);
    t.kernel.failNext = true;
    await expect(t.applier.apply({ owners: [102] })).rejects.toThrow(/simulated/);
    expect(t.kernel.tables).toEqual(before);
    expect(t.applier.state()).toMatchObject({ lastError: expect.stringMatching(/simulated/) });
    expect(t.events.at(-1)).toMatchObject({ type: "error", vmid: null });
    expect(t.clock.pending()).toBe(1);

    const saves = t.kernel.saves;
    t.kernel.payloads.length = 0;
    t.clock.advance(500);
    await settle();
    // The retry is a full sync: live state re-read, every owner and the entry redeclared.
    expect(t.kernel.saves).toBeGreaterThan(saves);
    expect(declared(t.kernel.payloads[0])).toEqual(["PVENAT-101-DNAT", "PVENAT-102-DNAT"]);
    expect(t.kernel.payloads[0]).toContain(":PVENAT-PREROUTING - [0:0]");
    expect(await liveDiff(t.kernel, t.plan())).toEqual({ owners: [], entry: false });
    expect(t.applier.state().lastError).toBeNull();
    expect(t.clock.pending()).toBe(0);
  });

  it("backs off: consecutive failures double the retry delay up to the cap", async () => {
    const t = setup([{ vmid: 101, port: 8101 }]);
    t.kernel.failNext = true;
    await t.applier.apply({ full: true }).catch(() => {});
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      t.kernel.failNext = true;
      const restores = t.kernel.payloads.length;
      let waited = 0;
      while (t.kernel.payloads.length === restores && waited < 10_000) {
        t.clock.advance(100);
        waited += 100;
        await settle(3);
      }
      await settle();
      delays.push(waited);
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 4000]);
    expect(t.applier.state().lastError).toMatch(/simulated/);
  });

  it("removes a stopped guest's chains and asks conntrack to drop its forwards", async () => {
    const t = setup([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102 },
    ]);
    await t.applier.apply({ full: true });
    t.setGuests([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102, state: "inactive" },
    ]);
    const r = await t.applier.apply({ owners: [102] });
    expect(r.rendered).toEqual([102]);
    expect(t.kernel.tables.nat.has("PVENAT-102-DNAT")).toBe(false);
    expect(t.kernel.tables.nat.get("PVENAT-PREROUTING")).toEqual([
      "-A PVENAT-PREROUTING -i vmbr0 -j PVENAT-101-DNAT",
    ]);
    expect(t.events.at(-1)).toMatchObject({ type: "removed", vmid: 102, rules: 1 });
    expect(t.deletes).toEqual([
      ["-p", "tcp", "--orig-dst", "203.0.113.10", "--orig-port-dst", "8102"],
    ]);
  });

  it("a changed forward also drops its conntrack entries; an unchanged one does not", async () => {
    const t = setup([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102 },
    ]);
    await t.applier.apply({ full: true });
    t.setGuests([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102, to: 2202 },
    ]);
    await t.applier.apply({ owners: [101, 102] });
    expect(t.deletes).toEqual([
      ["-p", "tcp", "--orig-dst", "203.0.113.10", "--orig-port-dst", "8102"],
    ]);
  });

  it("rewrites an owner whose plan changed through another guest's edit (conflicts are global)", async () => {
    const t = setup([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102 },
    ]);
    await t.applier.apply({ full: true });
    t.kernel.payloads.length = 0;
    // 101 now claims 8102 first: 102 loses it. Only 101 was marked dirty.
    t.setGuests([
      { vmid: 101, port: 8102 },
      { vmid: 102, port: 8102, state: "conflict" },
    ]);
    await t.applier.apply({ owners: [101] });
    expect(await liveDiff(t.kernel, t.plan())).toEqual({ owners: [], entry: false });
    expect(t.kernel.payloads).toHaveLength(1);
    expect(t.events.filter((e) => e.type === "conflict").map((e) => e.vmid)).toEqual([102]);
  });

  it("a watcher check rewrites only owners whose plan changed (unchanged chains keep their counters)", async () => {
    const t = setup([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102 },
    ]);
    await t.applier.apply({ full: true });
    t.kernel.payloads.length = 0;
    expect(await t.applier.apply({ check: true })).toMatchObject({ restored: false, rendered: [] });
    t.setGuests([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102, to: 2202 },
      { vmid: 103, port: 8103 },
    ]);
    const r = await t.applier.apply({ check: true });
    expect(r).toMatchObject({ restored: true, rendered: [102, 103], entry: true });
    expect(t.kernel.payloads.map(declared)).toEqual([["PVENAT-102-DNAT", "PVENAT-103-DNAT"]]);
    expect(await liveDiff(t.kernel, t.plan())).toEqual({ owners: [], entry: false });
    // The applier's picture of the kernel (replayed, not re-read) is exact: nothing left to do.
    const saves = t.kernel.saves;
    expect(await t.applier.apply({ check: true })).toMatchObject({ restored: false });
    expect(t.kernel.saves).toBe(saves);
  });

  it("a post-start verify writes its guest only when its plan differs from what is live", async () => {
    const t = setup([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102 },
    ]);
    await t.applier.apply({ full: true });
    t.kernel.payloads.length = 0;
    // Live since pre-start: nothing written, so the chain keeps its counters.
    expect(await t.applier.apply({ verify: [101] })).toMatchObject({
      restored: false,
      rendered: [],
    });
    expect(t.kernel.payloads).toHaveLength(0);
    t.setGuests([
      { vmid: 101, port: 8111 },
      { vmid: 102, port: 8102 },
    ]);
    expect(await t.applier.apply({ verify: [101] })).toMatchObject({
      restored: true,
      rendered: [101],
    });
    expect(t.kernel.payloads.map(declared)).toEqual([["PVENAT-101-DNAT"]]);
    expect(await liveDiff(t.kernel, t.plan())).toEqual({ owners: [], entry: false });
  });

  it("drift check rewrites only drifted owners", async () => {
    const specs = [101, 102, 103].map((vmid, i) => ({ vmid, port: 8101 + i }));
    const t = setup(specs);
    await t.applier.apply({ full: true });
    t.kernel.payloads.length = 0;
    // Nothing drifted: no restore at all.
    expect(await t.applier.apply({ drift: true })).toMatchObject({ restored: false, rendered: [] });
    expect(t.kernel.payloads).toHaveLength(0);
    // Someone flushed one chain by hand.
    t.kernel.edit("nat", (c) => c.set("PVENAT-102-DNAT", []));
    const r = await t.applier.apply({ drift: true });
    expect(r).toMatchObject({ restored: true, rendered: [102], entry: false });
    expect(declared(t.kernel.payloads[0])).toEqual(["PVENAT-102-DNAT"]);
    expect(t.kernel.payloads[0]).not.toContain("PVENAT-PREROUTING");
    expect(await liveDiff(t.kernel, t.plan())).toEqual({ owners: [], entry: false });
  });

  it("drift check restores a deleted builtin jump without touching owner chains", async () => {
    const t = setup([{ vmid: 101, port: 8101 }], simKernel({ nat: FOREIGN_NAT }));
    await t.applier.apply({ full: true });
    t.kernel.payloads.length = 0;
    t.kernel.edit("nat", (c) => c.set("PREROUTING", (c.get("PREROUTING") ?? []).slice(1)));
    const r = await t.applier.apply({ drift: true });
    expect(r.entry).toBe(true);
    expect(t.kernel.tables.nat.get("PREROUTING")?.[0]).toBe("-A PREROUTING -j PVENAT-PREROUTING");
    expect(await liveDiff(t.kernel, t.plan())).toEqual({ owners: [], entry: false });
  });

  it("flush removes everything owned and pauses until resume", async () => {
    const t = setup([{ vmid: 101, port: 8101 }], simKernel({ nat: FOREIGN_NAT }));
    const foreign = simKernel({ nat: FOREIGN_NAT }).tables;
    await t.applier.apply({ full: true });
    await t.applier.flush();
    expect(t.kernel.tables).toEqual(foreign);
    expect(t.applier.state().paused).toBe(true);
    await expect(t.applier.apply({ owners: [101] })).rejects.toBeInstanceOf(PausedError);
    const r = await t.applier.resume();
    expect(r.full).toBe(true);
    expect(t.applier.state().paused).toBe(false);
    expect(await liveDiff(t.kernel, t.plan())).toEqual({ owners: [], entry: false });
  });

  it("a partial apply with nothing changed skips the restore only when the owner is not asked for", async () => {
    const t = setup([{ vmid: 101, port: 8101 }]);
    await t.applier.apply({ full: true });
    t.kernel.payloads.length = 0;
    // Asked for explicitly: rewritten (idempotent post-start).
    await t.applier.apply({ owners: [101] });
    // A guest with no forwards and no chains: nothing to do.
    const r = await t.applier.apply({ owners: [999] });
    expect(r.restored).toBe(false);
    expect(t.kernel.payloads.map(declared)).toEqual([["PVENAT-101-DNAT"]]);
  });
});

describe("applier without a full start (`apply <vmid>` with no daemon)", () => {
  it("reads the live state and writes only the asked owner (plus what differs)", async () => {
    const kernel = simKernel();
    const two = makePlan([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102 },
    ]);
    const first = createApplier({
      load: async () => two,
      runner: kernel,
      publish: () => {},
      log: silent,
      clock: fakeClock(),
    });
    await first.apply({ full: true });
    kernel.payloads.length = 0;
    // Someone emptied 102's chain; 101 is fine.
    kernel.edit("nat", (c) => c.set("PVENAT-102-DNAT", []));
    const direct = createApplier({
      load: async () => two,
      runner: kernel,
      publish: () => {},
      log: silent,
      clock: fakeClock(),
      startFull: false,
    });
    const r = await direct.apply({ owners: [102] });
    expect(r).toMatchObject({ full: false, rendered: [102], entry: false });
    expect(kernel.payloads.map(declared)).toEqual([["PVENAT-102-DNAT"]]);
    await direct.stop();
  });
});
