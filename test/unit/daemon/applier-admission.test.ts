// The applier asks whether the guest firewall admits the forwards it just rewrote (issue 12
// item 3) and puts the answer into their `applied` events: only for rewritten guests, only
// after a restore, and a guest without pending forwards gets no field.
import { describe, expect, it } from "vitest";
import type { BusEvent } from "../../../src/bus/protocol.js";
import { createApplier } from "../../../src/daemon/applier.js";
import type { Admission } from "../../../src/diagnose/admission.js";
import type { Owner } from "../../../src/model.js";
import {
  deferred,
  fakeClock,
  type GuestSpec,
  makePlan,
  settle,
  silent,
} from "../../helpers/fixtures.js";
import { simKernel } from "../../helpers/sim-kernel.js";

function setup(initial: GuestSpec[], gate?: Promise<void>) {
  let guests = initial;
  const events: BusEvent[] = [];
  const asked: Owner[][] = [];
  const applier = createApplier({
    load: async () => makePlan(guests),
    runner: simKernel(),
    publish: (e) => events.push(e),
    log: silent,
    clock: fakeClock(),
    admission: async (plan, owners) => {
      asked.push([...owners]);
      await gate;
      // vm107's forwards are not admitted yet; every other guest's are.
      const m = new Map<number, Admission>();
      plan.forwards.forEach((f, i) => {
        if (f.vmid === null) return;
        m.set(i, {
          state: f.vmid === 107 ? "pending" : "accepted",
          chain: `tap${f.vmid}i0-IN`,
          port: `tcp/${f.private.ports}`,
        });
      });
      return m;
    },
  });
  return { applier, events, asked, setGuests: (g: GuestSpec[]) => (guests = g) };
}

describe("guest firewall admission in applied events", () => {
  it("pending guests get guest_firewall, admitted ones none", async () => {
    const s = setup([
      { vmid: 107, port: 822 },
      { vmid: 108, port: 823 },
    ]);
    await s.applier.apply({ full: true });
    await s.applier.settled();
    expect(s.asked).toEqual([[107, 108]]);
    const applied = s.events.filter((e) => e.type === "applied");
    expect(applied.find((e) => e.vmid === 107)?.guest_firewall).toEqual({
      state: "pending",
      ports: ["tcp/22"],
      chains: ["tap107i0-IN"],
    });
    expect(applied.find((e) => e.vmid === 108)).not.toHaveProperty("guest_firewall");
  });

  it("asks only about the rewritten guests, and not at all when nothing was restored", async () => {
    const s = setup([
      { vmid: 107, port: 822 },
      { vmid: 108, port: 823 },
    ]);
    await s.applier.apply({ full: true });
    s.setGuests([
      { vmid: 107, port: 822 },
      { vmid: 108, port: 824 },
    ]);
    await s.applier.apply({ owners: [108] });
    // The question is asked after the caller's answer, before the cycle's events.
    await s.applier.settled();
    expect(s.asked.at(-1)).toEqual([108]);
    const n = s.asked.length;
    await s.applier.apply({ check: true }); // nothing differs from the live chains: no restore
    await s.applier.settled();
    expect(s.asked.length).toBe(n);
  });

  it("answers the caller once the rules are live; the events follow the firewall's answer, in order", async () => {
    const gate = deferred();
    const s = setup(
      [
        { vmid: 107, port: 822 },
        { vmid: 108, port: 823 },
      ],
      gate.promise,
    );
    // A pre-start's ack does not wait for the filter table to be read.
    const first = await s.applier.apply({ owners: [107, 108] });
    expect(first.restored).toBe(true);
    expect(s.events.filter((e) => e.type === "applied")).toHaveLength(0);
    // The next cycle waits for those events before it publishes its own.
    s.setGuests([
      { vmid: 107, port: 822 },
      { vmid: 108, port: 824 },
    ]);
    const second = s.applier.apply({ owners: [108] });
    await settle();
    expect(s.events).toHaveLength(0);
    gate.resolve();
    await second;
    await s.applier.settled();
    const applied = s.events.filter((e) => e.type === "applied").map((e) => e.vmid);
    expect(applied).toEqual([107, 108, 108]);
    expect(s.events.find((e) => e.vmid === 107)?.guest_firewall?.state).toBe("pending");
  });
});
