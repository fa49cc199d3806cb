// Rules pve-nat did not create are never modified, reordered or deleted (SPEC §4): a set of
// hand-made nat and raw rules — in builtin chains and in user chains — stays byte-identical in
// iptables-save through start, applies, edits, drift repair, flush and daemon stop. And flush
// leaves no PVENAT- chain or jump behind.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADDR } from "./harness.js";
import { createScenario, foreignLines, type Scenario, within } from "./scenario.js";

const FOREIGN_NAT = [
  "-t nat -N FOREIGN-NAT",
  "-t nat -A FOREIGN-NAT -p udp --dport 5000 -j REDIRECT --to-ports 5001",
  "-t nat -A FOREIGN-NAT -j RETURN",
  "-t nat -A PREROUTING -i vmbr0 -p tcp --dport 2222 -j DNAT --to-destination 10.10.10.50:22",
  "-t nat -A PREROUTING -j FOREIGN-NAT",
  "-t nat -A OUTPUT -d 192.0.2.1/32 -j FOREIGN-NAT",
  "-t nat -A POSTROUTING -s 10.10.20.0/24 -o vmbr0 -j MASQUERADE",
  "-t nat -A POSTROUTING -s 10.10.30.0/24 -o vmbr0 -m comment --comment hand-made -j SNAT --to-source 203.0.113.99",
];
const FOREIGN_RAW = [
  "-t raw -N FOREIGN-RAW",
  "-t raw -A FOREIGN-RAW -p udp --dport 4789 -j CT --notrack",
  "-t raw -A PREROUTING -i vmbr1 -j FOREIGN-RAW",
  "-t raw -A PREROUTING -i fwbr+ -p tcp --dport 9999 -j CT --zone 7",
  "-t raw -A OUTPUT -p udp --dport 4789 -j CT --notrack",
];

const fw = (rules: string) => `[OPTIONS]\nenable: 1\n\n[RULES]\n${rules}`;
const SSH =
  "IN ACCEPT -source 198.51.100.7 -dest 10.10.10.107 -p tcp -sport 822 -dport 22 # NAT ssh in\n";
const HTTPS_OUT = "OUT ACCEPT -dest 198.51.100.20 -p tcp -dport 443 # NAT https out\n";

let sc: Scenario;
let before: { nat: string[]; raw: string[] };

const foreign = async () => ({
  nat: foreignLines(await sc.sim.iptablesSave(sc.sim.ns.node, "nat")),
  raw: foreignLines(await sc.sim.iptablesSave(sc.sim.ns.node, "raw")),
});
const ssh = async () => {
  const r = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, 822, { timeoutMs: 1500 });
  return r.status === "data" ? r.data.trim() : r.status;
};
const livesAsPlanned = async () => {
  const [live, planned] = await Promise.all([sc.liveOwned(), sc.plannedOwned()]);
  return JSON.stringify(live.chains) === JSON.stringify(planned.chains) ? live : null;
};
const EXPECTED_JUMPS = [
  "nat/-A OUTPUT -j PVENAT-OUTPUT",
  "nat/-A POSTROUTING -j PVENAT-POSTROUTING",
  "nat/-A PREROUTING -j PVENAT-PREROUTING",
  "raw/-A PREROUTING -j PVENAT-RAW",
];

beforeAll(async () => {
  sc = await createScenario({
    guests: [
      { vmid: 107, kind: "qemu", firewall: true, plug: false },
      { vmid: 108, kind: "lxc", firewall: false, plug: false },
    ],
    // Long enough that the "broken" probe right after sabotage almost never races the repair
    // (the check's phase is unknown), short enough for the repair test's bounded wait.
    config: "drift_interval_ms = 5000\n",
  });
  for (const r of [...FOREIGN_NAT, ...FOREIGN_RAW])
    await sc.sim.iptables(sc.sim.ns.node, r.split(" "));
  before = await foreign();
  await sc.sim.writePve("firewall/107.fw", fw(SSH + HTTPS_OUT));
  await sc.sim.writePve("firewall/108.fw", fw("IN ACCEPT -p tcp -dport 22 # NAT:2208\n"));
});
afterAll(async () => {
  await sc?.destroy();
});

describe("foreign nat and raw rules stay byte-identical", () => {
  it("the hand-made set is in place (sanity)", () => {
    expect(before.nat.filter((l) => l.startsWith("-A")).length).toBe(7);
    expect(before.raw.filter((l) => l.startsWith("-A")).length).toBe(4);
  });

  it("after daemon start and guest starts", async () => {
    await sc.startDaemon();
    await sc.boot(107);
    await sc.boot(108);
    await sc.sim.tcpService(sc.sim.guests.get(107)?.ns ?? "", 22, "SSH-2.0-vm107");
    expect(await ssh()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
    expect(await foreign()).toEqual(before);
    expect((await sc.liveOwned()).jumps).toEqual(EXPECTED_JUMPS);
  });

  it("after apply <vmid> and apply --all", async () => {
    expect((await sc.cli(["apply", "107"])).code).toBe(0);
    expect((await sc.cli(["apply", "--all"])).code).toBe(0);
    expect(await foreign()).toEqual(before);
    expect(await livesAsPlanned()).not.toBeNull();
  });

  it("after an edit", async () => {
    await sc.sim.writePve("firewall/107.fw", fw(`${SSH}IN ACCEPT -p udp -dport 53 # NAT:1053\n`));
    const ms = await within(
      async () => {
        const live = await sc.liveOwned();
        return (live.chains["nat/PVENAT-107-DNAT"] ?? []).some((l) => l.includes("--dport 1053"));
      },
      5000,
      100,
    );
    expect(ms).not.toBeNull();
    expect(await foreign()).toEqual(before);
  });

  it("after drift repair (someone flushed a guest chain and deleted a jump)", async () => {
    const ipt = (r: string) => sc.sim.iptables(sc.sim.ns.node, r.split(" "));
    await ipt("-t nat -F PVENAT-107-DNAT");
    await ipt("-t nat -D PREROUTING -j PVENAT-PREROUTING");
    expect(await ssh()).not.toMatch(/^SSH/);
    const ms = await within(
      async () => (await livesAsPlanned()) !== null && (await ssh()).startsWith("SSH"),
      15_000,
      200,
    );
    expect(ms).not.toBeNull();
    expect((await sc.liveOwned()).jumps).toEqual(EXPECTED_JUMPS);
    expect(await foreign()).toEqual(before);
  });

  it("flush leaves no PVENAT- chain or jump, undoes arp_ignore, and nothing else changed", async () => {
    const r = await sc.cli(["flush"]);
    expect(r.code).toBe(0);
    const nat = await sc.sim.iptablesSave(sc.sim.ns.node, "nat");
    const raw = await sc.sim.iptablesSave(sc.sim.ns.node, "raw");
    expect(`${nat}\n${raw}`).not.toContain("PVENAT");
    expect(await foreign()).toEqual(before);
    expect(await sc.sim.sysctl(sc.sim.ns.node, "net.ipv4.conf.fwbr107i0.arp_ignore")).toBe("0");
    expect(await ssh()).toBe("refused");
    // The daemon is paused: the watcher must not put anything back.
    await new Promise((res) => setTimeout(res, 2500));
    expect(await sc.sim.iptablesSave(sc.sim.ns.node, "nat")).not.toContain("PVENAT");
    const st = await sc.json(["status"]);
    expect(st.daemon?.paused).toBe(true);
  });

  it("apply --all resumes", async () => {
    expect((await sc.cli(["apply", "--all"])).code).toBe(0);
    expect(await ssh()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
    expect(await foreign()).toEqual(before);
    // The ARP setting comes back with the rules, at the latest with the watcher's next pass.
    const arp = () => sc.sim.sysctl(sc.sim.ns.node, "net.ipv4.conf.fwbr107i0.arp_ignore");
    expect(await within(async () => (await arp()) === "1", 2000, 100)).not.toBeNull();
  });

  it("after daemon stop (SIGTERM): forwards stay in place, foreign rules unchanged", async () => {
    const code = await sc.stopDaemon();
    expect(code).toBe(0);
    expect(await ssh()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
    expect(await foreign()).toEqual(before);
  });

  it("flush without a daemon acts directly and leaves foreign rules alone", async () => {
    expect((await sc.cli(["flush"])).code).toBe(0);
    const nat = await sc.sim.iptablesSave(sc.sim.ns.node, "nat");
    const raw = await sc.sim.iptablesSave(sc.sim.ns.node, "raw");
    expect(`${nat}\n${raw}`).not.toContain("PVENAT");
    expect(await foreign()).toEqual(before);
  });
});
