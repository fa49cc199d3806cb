// hairpin and host_access (SPEC §4): with hairpin = yes a guest — plain or firewall=1 NIC —
// reaches a forward to a plain or a firewall=1 guest through the public address, with host_access = yes the node itself does; with either
// set to no that path is not DNATed and the node answers for itself (nothing listens there:
// refused). Each setting is applied by a daemon started with it, then once more by a live edit
// of pve-nat.conf (the watcher fingerprints the config as well).
//
// A guest reaching its OWN forward works only without bridge netfilter: with
// bridge-nf-call-iptables=1 the DNAT happens in the bridge pass ("bridged DNAT") and the bridge
// does not send a frame back out of the port it came in on (hairpin_mode off) — a kernel
// limitation, shown here with bridge-nf-call-iptables=0 only.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADDR, baseConfig } from "./harness.js";
import { createScenario, type Scenario, within } from "./scenario.js";

const fw = (rules: string) => `[OPTIONS]\nenable: 1\n\n[RULES]\n${rules}`;
// No -source: every client may use it, guests and the node included.
// 107 has a plain NIC, 110 a firewall=1 NIC; 108 (firewall=1, LXC) and 109 (plain) are clients.
const SSH_107 = "IN ACCEPT -p tcp -dport 22 # NAT:822 ssh\n";
const SSH_110 = "IN ACCEPT -p tcp -dport 22 # NAT:823 ssh\n";
const LIVE_MS = 2000;
const PROBE_MARGIN_MS = 1000;

let sc: Scenario;
type Who = "vm107" | "vm108" | "vm109" | "vm110" | "node" | "clientA";
const ns = (who: Who) => {
  const sim = sc.sim;
  if (who === "node") return sim.ns.node;
  if (who === "clientA") return sim.ns.clientA;
  return sim.guests.get(Number(who.slice(2)))?.ns ?? "";
};
const probe = async (who: Who, port = 822, timeoutMs = 1500) => {
  const r = await sc.sim.tcpProbe(ns(who), ADDR.public, port, { timeoutMs });
  return r.status === "data" ? r.data.trim() : r.status;
};
const restartWith = async (config: string) => {
  await sc.stopDaemon();
  await sc.sim.writeConfig(baseConfig(config));
  await sc.startDaemon();
};

beforeAll(async () => {
  sc = await createScenario({
    guests: [
      { vmid: 107, kind: "qemu", firewall: false, plug: false },
      { vmid: 108, kind: "lxc", firewall: true, plug: false },
      { vmid: 109, kind: "qemu", firewall: false, plug: false },
      { vmid: 110, kind: "qemu", firewall: true, plug: false },
    ],
    config: "hairpin = yes\nhost_access = yes\n",
  });
  await sc.sim.writePve("firewall/107.fw", fw(SSH_107));
  await sc.sim.writePve("firewall/108.fw", fw(""));
  await sc.sim.writePve("firewall/109.fw", fw(""));
  await sc.sim.writePve("firewall/110.fw", fw(SSH_110));
  await sc.startDaemon();
  for (const vmid of [107, 108, 109, 110]) await sc.boot(vmid);
  await sc.sim.tcpService(ns("vm107"), 22, "SSH-2.0-vm107");
  await sc.sim.tcpService(ns("vm110"), 22, "SSH-2.0-vm110");
});
afterAll(async () => {
  await sc?.destroy();
});

describe("hairpin = yes, host_access = yes", () => {
  it.each([
    // Hairpinned connections are masqueraded to the gateway, so the reply comes back the same way.
    ["a firewall=1 guest", "vm108", 822, `SSH-2.0-vm107 from=${ADDR.gateway}`],
    ["a plain guest", "vm109", 822, `SSH-2.0-vm107 from=${ADDR.gateway}`],
    ["the node itself", "node", 822, `SSH-2.0-vm107 from=${ADDR.public}`],
    ["a remote client", "clientA", 822, `SSH-2.0-vm107 from=${ADDR.clientA}`],
    ["a firewall=1 guest", "vm108", 823, `SSH-2.0-vm110 from=${ADDR.gateway}`],
    ["a plain guest", "vm109", 823, `SSH-2.0-vm110 from=${ADDR.gateway}`],
    ["the node itself", "node", 823, `SSH-2.0-vm110 from=${ADDR.public}`],
    ["a remote client", "clientA", 823, `SSH-2.0-vm110 from=${ADDR.clientA}`],
  ] as const)("%s (%s) reaches public :%i", async (_name, who, port, expected) => {
    expect(await probe(who, port)).toBe(expected);
  });

  it("the same guest, on a node without bridge netfilter", async () => {
    await sc.sim.sysctl(sc.sim.ns.node, "net.bridge.bridge-nf-call-iptables", "0");
    try {
      expect(await probe("vm107")).toBe(`SSH-2.0-vm107 from=${ADDR.gateway}`);
      expect(await probe("vm110", 823)).toBe(`SSH-2.0-vm110 from=${ADDR.gateway}`);
    } finally {
      await sc.sim.sysctl(sc.sim.ns.node, "net.bridge.bridge-nf-call-iptables", "1");
    }
  });

  it("the entry chains: PREROUTING jump from anywhere but the fwbr pass, OUTPUT jump, hairpin masquerade", async () => {
    const live = await sc.liveOwned();
    expect(live.chains["nat/PVENAT-PREROUTING"]).toEqual([
      "-A PVENAT-PREROUTING ! -i fwbr+ -j PVENAT-107-DNAT",
      "-A PVENAT-PREROUTING ! -i fwbr+ -j PVENAT-110-DNAT",
    ]);
    expect(live.chains["nat/PVENAT-OUTPUT"]).toEqual([
      "-A PVENAT-OUTPUT -j PVENAT-107-DNAT",
      "-A PVENAT-OUTPUT -j PVENAT-110-DNAT",
    ]);
    expect(live.chains["nat/PVENAT-107-SNAT"]?.join("\n")).toMatch(
      /-s 10\.10\.10\.0\/24 -d 10\.10\.10\.107\/32 -p tcp -m tcp --dport 22 -m conntrack --ctstate DNAT .*-j MASQUERADE/,
    );
  });
});

describe("hairpin = no, host_access = no (daemon started with them)", () => {
  beforeAll(async () => {
    await restartWith("hairpin = no\nhost_access = no\n");
  });

  it.each([
    ["a firewall=1 guest", "vm108", 822, "refused"],
    ["a plain guest", "vm109", 822, "refused"],
    ["the same guest", "vm107", 822, "refused"],
    ["the node itself", "node", 822, "refused"],
    ["a remote client still", "clientA", 822, `SSH-2.0-vm107 from=${ADDR.clientA}`],
    ["a firewall=1 guest", "vm108", 823, "refused"],
    ["a plain guest", "vm109", 823, "refused"],
    ["the node itself", "node", 823, "refused"],
    ["a remote client still", "clientA", 823, `SSH-2.0-vm110 from=${ADDR.clientA}`],
  ] as const)("%s (%s) → public :%i: %s", async (_name, who, port, expected) => {
    expect(await probe(who, port)).toBe(expected);
  });

  it("the entry chains: PREROUTING only from the external interface, no OUTPUT jump, no SNAT chain", async () => {
    const live = await sc.liveOwned();
    expect(live.chains["nat/PVENAT-PREROUTING"]).toEqual([
      "-A PVENAT-PREROUTING -i vmbr0 -j PVENAT-107-DNAT",
      "-A PVENAT-PREROUTING -i vmbr0 -j PVENAT-110-DNAT",
    ]);
    expect(live.chains["nat/PVENAT-OUTPUT"]).toEqual([]);
    expect(Object.keys(live.chains).filter((c) => c.endsWith("-SNAT"))).toEqual([]);
  });
});

describe("hairpin = no, host_access = yes (the defaults)", () => {
  beforeAll(async () => {
    await restartWith("");
  });

  it.each([
    ["another guest", "vm109", "refused"],
    ["the node itself", "node", `SSH-2.0-vm107 from=${ADDR.public}`],
  ] as const)("%s (%s) → public :822: %s", async (_name, who, expected) => {
    expect(await probe(who)).toBe(expected);
  });
});

describe("live edit of pve-nat.conf (no restart)", () => {
  it("hairpin = yes, host_access = no takes effect within 2 s", async () => {
    await sc.sim.writeConfig(baseConfig("hairpin = yes\nhost_access = no\n"));
    const ms = await within(
      async () =>
        (await probe("vm108", 822, 500)).startsWith("SSH-2.0-vm107") &&
        (await probe("vm109", 823, 500)).startsWith("SSH-2.0-vm110") &&
        (await probe("node", 822, 500)) === "refused",
      6000,
      100,
    );
    expect(ms).not.toBeNull();
    expect(ms).toBeLessThanOrEqual(LIVE_MS + PROBE_MARGIN_MS);
    expect(await probe("clientA")).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
  });
});
