// The legacy backend (`iptables = legacy`, for nodes whose pve-firewall still uses
// iptables-legacy): the seed's IN and OUT examples work for a firewall=1 guest started cold, every
// PVENAT- chain is in iptables-legacy-save and none in the nf_tables side, and flush empties it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADDR } from "./harness.js";
import { createScenario, ownedView, type Scenario } from "./scenario.js";

const FW_107 = `[OPTIONS]
enable: 1

[RULES]
IN ACCEPT -source 198.51.100.7 -dest 10.10.10.107 -p tcp -sport 822 -dport 22 # NAT ssh in
OUT ACCEPT -dest 198.51.100.20 -p tcp -dport 443 # NAT https out
`;

let sc: Scenario;
const save = async (backend: "legacy" | "nft") => {
  const out: string[] = [];
  for (const table of ["nat", "raw"]) {
    out.push(
      await sc.sim.execOk(sc.sim.ns.node, [`iptables-${backend}-save`, "-t", table], {
        timeoutMs: 10_000,
      }),
    );
  }
  return ownedView(out.join("\n"));
};

beforeAll(async () => {
  sc = await createScenario({
    guests: [{ vmid: 107, kind: "qemu", firewall: true, plug: false }],
    config: "iptables = legacy\n",
  });
  await sc.sim.writePve("firewall/107.fw", FW_107);
  await sc.sim.tcpService(sc.sim.ns.remote, 443, "https");
  await sc.startDaemon();
  await sc.boot(107);
  await sc.sim.tcpService(sc.sim.guests.get(107)?.ns ?? "", 22, "SSH-2.0-vm107");
});
afterAll(async () => {
  await sc?.destroy();
});

describe("iptables = legacy", () => {
  it("OUT from cold: the remote server sees the public address", async () => {
    const g = sc.sim.guests.get(107);
    const r = await sc.sim.tcpProbe(g?.ns ?? "", ADDR.remote, 443, { timeoutMs: 3000 });
    expect(r.status === "data" ? r.data.trim() : r.status).toBe(`https from=${ADDR.public}`);
    expect((await sc.sim.remoteSeen()).fromGuestNet).toBe(0);
  });

  it.each([
    ["allowed client", "clientA", `SSH-2.0-vm107 from=${ADDR.clientA}`],
    ["another client is refused", "clientB", "refused"],
  ] as const)("seed IN, %s", async (_name, client, expected) => {
    const from = client === "clientA" ? sc.sim.ns.clientA : sc.sim.ns.clientB;
    const r = await sc.sim.tcpProbe(from, ADDR.public, 822, { timeoutMs: 2000 });
    expect(r.status === "data" ? r.data.trim() : r.status).toBe(expected);
  });

  it("the chains are in iptables-legacy, exactly as planned; the nf_tables side has none", async () => {
    const legacy = await save("legacy");
    expect(Object.keys(legacy.chains)).toEqual([
      "nat/PVENAT-107-DNAT",
      "nat/PVENAT-107-SNAT",
      "nat/PVENAT-OUTPUT",
      "nat/PVENAT-POSTROUTING",
      "nat/PVENAT-PREROUTING",
      "raw/PVENAT-RAW",
    ]);
    expect(legacy).toEqual(await sc.plannedOwned(legacy));
    expect(await save("nft")).toEqual({ chains: {}, jumps: [] });
    const s = await sc.json(["status"]);
    expect(s.daemon?.backend).toBe("legacy");
    expect(s.forwards.map((f) => f.state)).toEqual(["active", "active"]);
  });

  it("flush removes them from iptables-legacy", async () => {
    const r = await sc.cli(["flush"]);
    expect(r.code).toBe(0);
    expect(await save("legacy")).toEqual({ chains: {}, jumps: [] });
    const probe = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, 822, { timeoutMs: 1500 });
    expect(probe.status).toBe("refused");
  });
});
