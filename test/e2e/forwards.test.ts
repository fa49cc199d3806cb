// Real packets through forwards made by the real daemon from a guest's .fw file: the seed's IN
// and OUT examples and the other rule forms, for a plain NIC and for firewall=1 NICs (qemu and
// LXC) starting cold. The last group runs the firewall=1 guest with conntrack_zone_fix = no and
// shows the same rules failing: pve-nat's fwbr handling is what makes them work.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sleep } from "../helpers/exec.js";
import type { GuestKind } from "../helpers/simnode.js";
import { ADDR } from "./harness.js";
import { createScenario, hookTimes, type Scenario } from "./scenario.js";

const FW_107 = `[OPTIONS]
enable: 1

[RULES]
IN ACCEPT -source 198.51.100.7 -dest 10.10.10.107 -p tcp -sport 822 -dport 22 # NAT ssh in
IN ACCEPT -p tcp -dport 8080 # NAT web, public port = private port
IN ACCEPT -p tcp -dport 80 # NAT:8081 web on another public port
IN ACCEPT -p udp -dport 53 # NAT:1053 dns
IN ACCEPT -p tcp -dport 9000:9002 # NAT:7000:7002 a range
OUT ACCEPT -dest 198.51.100.20 -p tcp -dport 443 # NAT https out
`;

interface Variant {
  name: string;
  kind: GuestKind;
  firewall: boolean;
  config?: string;
}

async function bootGuest107(v: Variant): Promise<Scenario> {
  const sc = await createScenario({
    guests: [{ vmid: 107, kind: v.kind, firewall: v.firewall, plug: false }],
    ...(v.config ? { config: v.config } : {}),
  });
  try {
    const sim = sc.sim;
    await sim.writePve("firewall/107.fw", FW_107);
    await sim.tcpService(sim.ns.remote, 443, "https");
    await sim.tcpService(sim.ns.remote, 80, "http");
    await sc.startDaemon();
    // Cold: the NIC devices appear during the start, nothing has been sent yet.
    await sc.boot(107);
    const g = sim.guests.get(107);
    if (!g) throw new Error("no guest 107");
    await sim.tcpService(g.ns, 22, "SSH-2.0-vm107");
    await sim.tcpService(g.ns, 8080, "web8080-vm107");
    await sim.tcpService(g.ns, 80, "web80-vm107");
    await sim.udpService(g.ns, 53, "dns-vm107");
    for (const p of [9000, 9001, 9002]) await sim.tcpService(g.ns, p, `p${p}-vm107`);
    return sc;
  } catch (err) {
    await sc.destroy();
    throw err;
  }
}

const WORKING: Variant[] = [
  { name: "plain NIC (qemu)", kind: "qemu", firewall: false },
  { name: "firewall=1 NIC (qemu), cold", kind: "qemu", firewall: true },
  { name: "firewall=1 NIC (LXC), cold", kind: "lxc", firewall: true },
];

afterAll(() => {
  const t = [...hookTimes].sort((a, b) => a - b);
  if (t.length > 0)
    console.log(`hook wall time ms: n=${t.length} p50=${t[t.length >> 1]} max=${t.at(-1)}`);
});

describe.each(WORKING)("forwards through pve-nat: $name", (v) => {
  let sc: Scenario;
  beforeAll(async () => {
    sc = await bootGuest107(v);
  });
  afterAll(async () => {
    await sc?.destroy();
  });
  const guestNs = () => sc.sim.guests.get(107)?.ns ?? "";

  // First, while the guest is cold: its very first packet is outbound.
  it("OUT: the remote server sees the node's public address for the listed destination/port", async () => {
    const r = await sc.sim.tcpProbe(guestNs(), ADDR.remote, 443, { timeoutMs: 3000 });
    expect({ status: r.status, data: r.data.trim() }).toEqual({
      status: "data",
      data: `https from=${ADDR.public}`,
    });
    expect((await sc.sim.remoteSeen()).fromGuestNet).toBe(0);
  });

  it("OUT: other destination ports are not masqueraded (the guest's own address leaks, no answer)", async () => {
    const r = await sc.sim.tcpProbe(guestNs(), ADDR.remote, 80, { timeoutMs: 1000 });
    expect(r.data).toBe("");
    expect((await sc.sim.remoteSeen()).fromGuestNet).toBeGreaterThan(0);
  });

  it.each([
    ["seed IN, allowed client", "clientA", "tcp", 822, `SSH-2.0-vm107 from=${ADDR.clientA}`],
    ["seed IN, another client is refused", "clientB", "tcp", 822, "refused"],
    [
      "without -sport: public port = private port",
      "clientB",
      "tcp",
      8080,
      `web8080-vm107 from=${ADDR.clientB}`,
    ],
    ["explicit NAT:8081", "clientA", "tcp", 8081, `web80-vm107 from=${ADDR.clientA}`],
    ["the private port itself is not public", "clientA", "tcp", 80, "refused"],
    ["UDP NAT:1053 → 53", "clientA", "udp", 1053, `dns-vm107 from=${ADDR.clientA}`],
    ["range 7000 → 9000", "clientA", "tcp", 7000, `p9000-vm107 from=${ADDR.clientA}`],
    ["range 7001 → 9001", "clientB", "tcp", 7001, `p9001-vm107 from=${ADDR.clientB}`],
    ["range 7002 → 9002", "clientA", "tcp", 7002, `p9002-vm107 from=${ADDR.clientA}`],
  ] as const)("IN %s", async (_name, client, proto, port, expected) => {
    const from = client === "clientA" ? sc.sim.ns.clientA : sc.sim.ns.clientB;
    const probe = proto === "tcp" ? sc.sim.tcpProbe : sc.sim.udpProbe;
    const r = await probe(from, ADDR.public, port, { timeoutMs: 2000 });
    expect(r.status === "data" ? r.data.trim() : r.status).toBe(expected);
  });

  it("status --json lists every forward active, with live counters for the ones used", async () => {
    // Used once more just before: this test is about status, not about counters surviving.
    await sc.sim.tcpProbe(guestNs(), ADDR.remote, 443, { timeoutMs: 2000 });
    const s = await sc.json(["status"]);
    const view = s.forwards.map((f) => ({
      dir: f.direction,
      proto: f.proto,
      pub: f.public.ports,
      priv: f.private.ports,
      state: f.state,
      used: (f.counters?.packets ?? 0) > 0,
    }));
    expect(view).toEqual([
      { dir: "in", proto: "tcp", pub: "822", priv: "22", state: "active", used: true },
      { dir: "in", proto: "tcp", pub: "8080", priv: "8080", state: "active", used: true },
      { dir: "in", proto: "tcp", pub: "8081", priv: "80", state: "active", used: true },
      { dir: "in", proto: "udp", pub: "1053", priv: "53", state: "active", used: true },
      { dir: "in", proto: "tcp", pub: "7000:7002", priv: "9000:9002", state: "active", used: true },
      { dir: "out", proto: "tcp", pub: null, priv: "443", state: "active", used: true },
    ]);
    expect(s.daemon?.running).toBe(true);
  });

  it("an idempotent post-start (and the watcher's next pass) keeps the live counters", async () => {
    const outCounter = async () =>
      (await sc.json(["status"])).forwards.find((f) => f.direction === "out")?.counters?.packets ??
      0;
    await sc.sim.tcpProbe(guestNs(), ADDR.remote, 443, { timeoutMs: 2000 });
    const before = await outCounter();
    expect(before).toBeGreaterThan(0);
    expect((await sc.hook(107, "post-start")).code).toBe(0);
    await sleep(2500); // two poll intervals
    expect(await outCounter()).toBe(before);
  });

  it("conntrack_zone_fix = auto: zone rule (this guest's fwbr only) and arp_ignore=1 exactly when a NIC has firewall=1", async () => {
    const raw = await sc.sim.iptablesSave(sc.sim.ns.node, "raw");
    const zoneRules = raw.split("\n").filter((l) => l.startsWith("-A PVENAT-RAW "));
    expect(zoneRules).toEqual(v.firewall ? ["-A PVENAT-RAW -i fwbr107i0 -j CT --zone 1"] : []);
    if (v.firewall) {
      expect(await sc.sim.sysctl(sc.sim.ns.node, "net.ipv4.conf.fwbr107i0.arp_ignore")).toBe("1");
    }
  });
});

describe("firewall=1 NIC with conntrack_zone_fix = no: the same rules fail (pve-nat's fix is what works)", () => {
  let sc: Scenario;
  beforeAll(async () => {
    sc = await bootGuest107({
      name: "no zone fix",
      kind: "qemu",
      firewall: true,
      config: "conntrack_zone_fix = no\n",
    });
  });
  afterAll(async () => {
    await sc?.destroy();
  });

  it("OUT from cold: no answer through masquerade", async () => {
    const g = sc.sim.guests.get(107);
    const r = await sc.sim.tcpProbe(g?.ns ?? "", ADDR.remote, 443, { timeoutMs: 1500 });
    expect(r.data).toBe("");
  });

  it("IN after the guest spoke first: the seed forward does not answer", async () => {
    const r = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, 822, { timeoutMs: 1500 });
    expect(r.data).toBe("");
  });

  it("no zone rule and no arp_ignore were set", async () => {
    expect(await sc.sim.iptablesSave(sc.sim.ns.node, "raw")).not.toMatch(/--zone/);
    expect(await sc.sim.sysctl(sc.sim.ns.node, "net.ipv4.conf.fwbr107i0.arp_ignore")).toBe("0");
  });
});
