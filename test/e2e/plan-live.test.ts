// `plan <vmid>` renders against the live tables (SPEC §8): its payload, applied by hand to a
// node whose tables hold other guests' chains, gives exactly what the daemon makes of the same
// change. (Before, plan rendered against an empty table: applied, its entry chains dropped
// every other guest's jumps and it inserted a second copy of each builtin jump.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createScenario, type Scenario } from "./scenario.js";

const fw = (port: number) => `[RULES]\nIN ACCEPT -p tcp -dport 22 # NAT:${port} ssh\n`;

let sc: Scenario;

beforeAll(async () => {
  sc = await createScenario({
    guests: [
      { vmid: 107, kind: "qemu", plug: false },
      { vmid: 108, kind: "qemu", plug: false },
      { vmid: 109, kind: "qemu", plug: false },
    ],
  });
  await sc.sim.writePve("firewall/107.fw", fw(8107));
  await sc.sim.writePve("firewall/108.fw", fw(8108));
  await sc.sim.writePve("firewall/109.fw", fw(8109));
  await sc.startDaemon();
  for (const vmid of [107, 108, 109]) await sc.boot(vmid);
});
afterAll(async () => {
  await sc?.destroy();
});

describe("plan <vmid> against the live tables", () => {
  it("applied by hand, gives what the daemon gives for the same edit", async () => {
    const start = await sc.liveOwned();
    expect(Object.keys(start.chains)).toContain("nat/PVENAT-108-DNAT");
    expect(Object.keys(start.chains)).toContain("nat/PVENAT-109-DNAT");
    // The daemon stops and leaves its rules; an admin edits 107 and 109 goes away.
    expect(await sc.stopDaemon()).toBe(0);
    await sc.sim.writePve("firewall/107.fw", fw(9107));
    await sc.sim.setRunning(109, false);

    const plan = await sc.json(["plan", "107"]);
    expect(plan.diagnostics.filter((d) => /cannot read the live/.test(d.message))).toEqual([]);
    const payload = plan.restore ?? "";
    expect(payload).toContain(":PVENAT-107-DNAT - [0:0]");
    // 108 is untouched: its chain is not redeclared, and no builtin jump is inserted again.
    expect(payload).not.toContain(":PVENAT-108-DNAT");
    expect(payload).not.toMatch(/^-I PREROUTING 1 -j PVENAT-PREROUTING$/m);
    await sc.sim.execOk(sc.sim.ns.node, ["iptables-restore", "--noflush", "-w", "5"], {
      input: payload,
    });
    const byHand = await sc.liveOwned();
    expect(byHand.chains["nat/PVENAT-108-DNAT"]).toEqual(start.chains["nat/PVENAT-108-DNAT"]);
    expect(byHand.jumps.filter((j) => j.startsWith("nat/-A PREROUTING")).length).toBe(1);

    // The daemon's own result for the same node state (its start is a full sync).
    await sc.startDaemon();
    const byDaemon = await sc.liveOwned();
    expect(byHand).toEqual(byDaemon);
    expect(Object.keys(byDaemon.chains)).not.toContain("nat/PVENAT-109-DNAT");
  });

  it("with nothing changed, plan <vmid> rewrites that guest's chain alone (as `apply <vmid>` does)", async () => {
    const plan = await sc.json(["plan", "108"]);
    expect(plan.forwards.map((f) => [f.vmid, f.state])).toEqual([[108, "active"]]);
    const declared = (plan.restore ?? "").split("\n").filter((l) => l.startsWith(":"));
    expect(declared).toEqual([":PVENAT-108-DNAT - [0:0]"]);
    const whole = await sc.json(["plan"]);
    // Without a vmid: a full sync, every owner and the entry chains redeclared.
    expect(whole.restore).toContain(":PVENAT-PREROUTING - [0:0]");
    expect(whole.restore).not.toMatch(/^-I /m);
  });
});
