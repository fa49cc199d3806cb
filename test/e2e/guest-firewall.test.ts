// Issue 12, item 3: pve-firewall's own latency made visible. A new forward to a guest whose
// firewall filters is live in pve-nat within about a second, but the guest's NIC chain
// (tap<vmid>i<n>-IN) admits the private port only at pve-firewall's next update (up to 10 s).
// The `applied` event and `status` say so, and stop saying so once the chain accepts it.
//
// The filter rules pve-firewall writes for this guest (Firewall.pm, as in
// conntrack-helpers.test.ts) are loaded into the node's namespace by the test, which then plays
// pve-firewall's "next update" by adding the port to tap130i0-IN. Real traffic shows the drop
// and the admission.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Background, waitFor } from "../helpers/exec.js";
import { guestFw } from "../helpers/simnode.js";
import { ADDR } from "./harness.js";
import { createScenario, type Scenario, subscribeEvents } from "./scenario.js";

/** pve-firewall's filter table for vm130 (net0 firewall=1, .fw accepting tcp/80 only). */
const PVEFW = `*filter
:PVEFW-Drop - [0:0]
:PVEFW-FORWARD - [0:0]
:PVEFW-FWBR-IN - [0:0]
:tap130i0-IN - [0:0]
-A FORWARD -j PVEFW-FORWARD
-A PVEFW-Drop -p tcp -m multiport --dports 135,139,445 -j DROP
-A PVEFW-FORWARD -m conntrack --ctstate INVALID -j DROP
-A PVEFW-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A PVEFW-FORWARD -m physdev --physdev-in fwln+ --physdev-is-bridged -j PVEFW-FWBR-IN
-A PVEFW-FWBR-IN -m physdev --physdev-out tap130i0 --physdev-is-bridged -j tap130i0-IN
-A tap130i0-IN -p udp -m udp --sport 67 --dport 68 -j ACCEPT
-A tap130i0-IN -m conntrack --ctstate INVALID -j DROP
-A tap130i0-IN -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A tap130i0-IN -p tcp -m tcp --dport 80 -j ACCEPT
-A tap130i0-IN -j PVEFW-Drop
-A tap130i0-IN -j DROP
COMMIT
`;
/** What pve-firewall's next update adds for `IN ACCEPT -p tcp -dport 22`. */
const ADMIT_22 = [
  "-I",
  "tap130i0-IN",
  "4",
  "-p",
  "tcp",
  "-m",
  "tcp",
  "--dport",
  "22",
  "-j",
  "ACCEPT",
];

const WEB = "IN ACCEPT -p tcp -dport 80 # NAT:8030 web";
const SSH = "IN ACCEPT -p tcp -dport 22 # NAT:2230 ssh";

interface Event {
  type: string;
  vmid: number | null;
  guest_firewall?: { state: string; ports: string[]; chains: string[] };
}

let sc: Scenario;
let events: Background;
let lines: () => Event[];
const connect = async (port: number, timeoutMs = 1500) => {
  const r = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, port, { timeoutMs });
  return r.status === "data" ? r.data.trim() : r.status;
};
const guestFirewall = async () =>
  Object.fromEntries(
    (await sc.json(["status"])).forwards.map((f) => [
      f.public.ports,
      [f.state, (f as { guest_firewall?: string | null }).guest_firewall],
    ]),
  );

beforeAll(async () => {
  sc = await createScenario({ guests: [{ vmid: 130, kind: "qemu", firewall: true, plug: false }] });
  const sim = sc.sim;
  await sim.writePve("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n");
  await sim.writePve("firewall/130.fw", guestFw([WEB], { enable: true }));
  await sim.execOk(sim.ns.node, ["iptables-restore", "--noflush"], { input: PVEFW });
  await sc.startDaemon();
  await sc.boot(130);
  const g = sim.guests.get(130)?.ns ?? "";
  await sim.tcpService(g, 22, "SSH-2.0-vm130");
  await sim.tcpService(g, 80, "web-vm130");
  const sub = await subscribeEvents<Event>(sc);
  events = sub.proc;
  lines = sub.lines;
});

afterAll(async () => {
  await events?.stop(2000).catch(() => {});
  await sc?.destroy();
});

describe("a forward the guest firewall already admits", () => {
  it("carries traffic; status says accepted, no note; its applied event has no guest_firewall", async () => {
    expect(await connect(8030)).toBe(`web-vm130 from=${ADDR.clientA}`);
    expect(await guestFirewall()).toEqual({ "8030": ["active", "accepted"] });
    const text = (await sc.cli(["status"])).stdout;
    expect(text).not.toContain("guest firewall pending");
    const applied = lines().filter((e) => e.type === "applied" && e.vmid === 130);
    expect(applied.length).toBeGreaterThan(0);
    expect(applied.every((e) => e.guest_firewall === undefined)).toBe(true);
  });
});

describe("a new forward before pve-firewall's next update", () => {
  it("is live in pve-nat within about a second; the applied event says the guest firewall has not admitted tcp/22", async () => {
    const seen = lines().length;
    const t0 = performance.now();
    await sc.sim.writePve("firewall/130.fw", guestFw([WEB, SSH], { enable: true }));
    const ev = await waitFor(
      async () =>
        lines()
          .slice(seen)
          .find((e) => e.type === "applied" && e.vmid === 130),
      4000,
      50,
    );
    const ms = Math.round(performance.now() - t0);
    expect(ev).toBeTruthy();
    console.log(`edit → applied (pve-nat's part): ${ms} ms`);
    expect(ev?.guest_firewall).toEqual({
      state: "pending",
      ports: ["tcp/22"],
      chains: ["tap130i0-IN"],
    });
    const nat = await sc.sim.iptablesSave(sc.sim.ns.node, "nat");
    expect(nat).toMatch(/--dport 2230 .*-j DNAT --to-destination 10\.10\.10\.130:22/);
  });

  it("status: state stays active, a note names the chain, --json says pending; traffic is still dropped", async () => {
    expect(await guestFirewall()).toEqual({
      "8030": ["active", "accepted"],
      "2230": ["active", "pending"],
    });
    const text = (await sc.cli(["status"])).stdout;
    expect(text).toMatch(
      /^guest firewall pending: vm130 tcp 203\.0\.113\.10:2230 → 10\.10\.10\.130:22 \(firewall\/130\.fw:\d+\): tap130i0-IN does not admit tcp\/22 yet; pve-firewall adds it at its next update \(up to 10 s\)$/m,
    );
    expect(await connect(2230)).toBe("timeout");
  });
});

describe("pve-firewall's next update", () => {
  it("admits the port: status says accepted, no note, and the forward carries traffic", async () => {
    await sc.sim.iptables(sc.sim.ns.node, ADMIT_22);
    expect(await guestFirewall()).toEqual({
      "8030": ["active", "accepted"],
      "2230": ["active", "accepted"],
    });
    expect((await sc.cli(["status"])).stdout).not.toContain("guest firewall pending");
    expect(await connect(2230)).toBe(`SSH-2.0-vm130 from=${ADDR.clientA}`);
  });

  it("without a daemon, status reads the filter table itself", async () => {
    await sc.stopDaemon();
    await sc.sim.iptables(sc.sim.ns.node, ["-D", ...ADMIT_22.slice(1, 2), "4"]);
    const s = await sc.json(["status"]);
    expect(s.daemon).toMatchObject({ running: false });
    expect(await guestFirewall()).toEqual({
      "8030": ["active", "accepted"],
      "2230": ["active", "pending"],
    });
  });
});
