// Node-level forwards and security groups with real traffic: a NAT rule in cluster.fw and one in
// host.fw (explicit -dest), and a [group web] NAT rule used by two guests — the lower VMID wins
// the public port, the other is a `conflict` in status; when the winner stops, the other takes
// the port over.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADDR } from "./harness.js";
import { createScenario, type Scenario, within } from "./scenario.js";

const CLUSTER_FW = `[OPTIONS]
enable: 1

[RULES]
IN ACCEPT -dest 10.10.10.107 -p tcp -dport 22 # NAT:2207 cluster-wide door to vm107

[group web] # web servers
IN ACCEPT -p tcp -dport 80 # NAT:8080 web
`;
const HOST_FW = `[OPTIONS]
enable: 1

[RULES]
IN ACCEPT -dest 10.10.10.108 -p tcp -dport 22 # NAT:2208 this node's door to vm108
IN ACCEPT -p tcp -dport 23 # NAT:2323 no -dest: an error
`;
const GUEST_FW = "[OPTIONS]\nenable: 1\n\n[RULES]\nGROUP web\n";

let sc: Scenario;
const connect = async (port: number, timeoutMs = 1500) => {
  const r = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, port, { timeoutMs });
  return r.status === "data" ? r.data.trim() : r.status;
};
const view = async () =>
  (await sc.json(["status"])).forwards.map((f) => ({
    vmid: f.vmid,
    pub: f.public.ports,
    to: `${f.private.address}:${f.private.ports}`,
    origin: f.origin,
    state: f.state,
  }));

beforeAll(async () => {
  sc = await createScenario({
    guests: [
      { vmid: 107, kind: "qemu", firewall: true, plug: false },
      { vmid: 108, kind: "lxc", firewall: false, plug: false },
    ],
  });
  const sim = sc.sim;
  await sim.writePve("firewall/cluster.fw", CLUSTER_FW);
  await sim.writePve("nodes/pve1/host.fw", HOST_FW);
  await sim.writePve("firewall/107.fw", GUEST_FW);
  await sim.writePve("firewall/108.fw", GUEST_FW);
  await sc.startDaemon();
  await sc.boot(107);
  await sc.boot(108);
  for (const vmid of [107, 108]) {
    const g = sim.guests.get(vmid);
    await sim.tcpService(g?.ns ?? "", 22, `SSH-2.0-vm${vmid}`);
    await sim.tcpService(g?.ns ?? "", 80, `web-vm${vmid}`);
  }
});
afterAll(async () => {
  await sc?.destroy();
});

describe("node-level forwards and a security group", () => {
  it.each([
    ["cluster.fw → vm107:22", 2207, `SSH-2.0-vm107 from=${ADDR.clientA}`],
    ["host.fw → vm108:22", 2208, `SSH-2.0-vm108 from=${ADDR.clientA}`],
    ["GROUP web: the lower VMID has the port", 8080, `web-vm107 from=${ADDR.clientA}`],
    ["host.fw rule without -dest: not forwarded", 2323, "refused"],
  ] as const)("%s", async (_name, port, expected) => {
    expect(await connect(port)).toBe(expected);
  });

  it("status --json: host.fw, cluster.fw, then guests; the group's second user is a conflict", async () => {
    expect(await view()).toEqual([
      {
        vmid: null,
        pub: "2208",
        to: "10.10.10.108:22",
        origin: "nodes/pve1/host.fw:5",
        state: "active",
      },
      {
        vmid: null,
        pub: "2323",
        to: "null:23",
        origin: "nodes/pve1/host.fw:6",
        state: "error",
      },
      {
        vmid: null,
        pub: "2207",
        to: "10.10.10.107:22",
        origin: "firewall/cluster.fw:5",
        state: "active",
      },
      {
        vmid: 107,
        pub: "8080",
        to: "10.10.10.107:80",
        origin: "firewall/cluster.fw:8",
        state: "active",
      },
      {
        vmid: 108,
        pub: "8080",
        to: "10.10.10.108:80",
        origin: "firewall/cluster.fw:8",
        state: "conflict",
      },
    ]);
  });

  it("the node's forwards live in PVENAT-NODE-DNAT, the group's in the winner's chain", async () => {
    const live = await sc.liveOwned();
    expect(Object.keys(live.chains).filter((c) => /-(NODE|107|108)-/.test(c))).toEqual([
      "nat/PVENAT-107-DNAT",
      "nat/PVENAT-NODE-DNAT",
    ]);
  });

  it("the winner stops → the other user of the group takes the port within 2 s", async () => {
    await sc.shutdown(107);
    const ms = await within(async () => (await connect(8080, 500)).startsWith("web-vm108"), 5000);
    expect(ms).not.toBeNull();
    expect(ms).toBeLessThanOrEqual(2400);
    const states = (await view()).filter((f) => f.pub === "8080").map((f) => [f.vmid, f.state]);
    expect(states).toEqual([
      [107, "inactive"],
      [108, "active"],
    ]);
    // Node-level forwards do not follow a guest's run state.
    expect((await view()).find((f) => f.pub === "2207")?.state).toBe("active");
  });
});
