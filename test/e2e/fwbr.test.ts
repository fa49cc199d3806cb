// SPEC §4's claim, shown with hand-written iptables rules (no pve-nat): a firewall=1 guest
// (tap → fwbr ← fwln/fwpr → vmbr1, bridge-nf-call-iptables=1) starting cold does not get working
// NAT from plain MASQUERADE/DNAT rules; it does with `raw PREROUTING -i fwbr+ -j CT --zone 1`
// plus arp_ignore=1 on the fwbr device. The guest learns its gateway's MAC the way the kernel
// decides (nothing faked): with arp_ignore=0 the node answers the ARP request on fwbr too.
import { afterEach, describe, expect, it } from "vitest";
import { ADDR, createSimNode, type Guest, type SimNode } from "./harness.js";

type Fix = "none" | "zone" | "arp" | "zone+arp";

interface Outcome {
  /** Which of the node's MACs the guest learned for 10.10.10.1. */
  gateway: "vmbr1" | "fwbr" | "other" | "none";
  /** OUT: the address the remote server saw (from its answer), or null when nothing came back. */
  remoteSaw?: string | null;
  /** OUT: the remote received packets with the guest's private source (masquerade skipped). */
  leaked?: boolean;
  /** IN: what the allowed client received from public tcp/822. */
  banner?: string | null;
}

let sim: SimNode | undefined;
afterEach(async () => {
  await sim?.destroy();
  sim = undefined;
});

async function setup(firewall: boolean, fix: Fix): Promise<{ sim: SimNode; g: Guest }> {
  sim = await createSimNode();
  const g = await sim.addGuest({ vmid: 107, firewall });
  const n = sim.ns.node;
  const ipt = (args: string) => sim?.iptables(n, args.split(" "));
  await ipt("-t nat -A POSTROUTING -s 10.10.10.0/24 -o vmbr0 -j MASQUERADE");
  await ipt(
    `-t nat -A PREROUTING -i vmbr0 -d ${ADDR.public} -p tcp --dport 822 -j DNAT --to-destination ${g.ip}:22`,
  );
  if (fix.includes("zone")) await ipt("-t raw -A PREROUTING -i fwbr+ -j CT --zone 1");
  if (fix.includes("arp") && g.fwbr) await sim.sysctl(n, `net.ipv4.conf.${g.fwbr}.arp_ignore`, "1");
  await sim.tcpService(sim.ns.remote, 80, "remote");
  await sim.udpService(sim.ns.remote, 9, "discard");
  await sim.tcpService(g.ns, 22, "SSH-2.0-vm107");
  // Cold: nothing has been exchanged yet.
  await sim.flushArp(g.ns);
  await sim.flushArp(n);
  await sim.flushConntrack(n);
  return { sim, g };
}

async function learnedGateway(s: SimNode, g: Guest): Promise<Outcome["gateway"]> {
  const line = (await s.neighbours(g.ns)).split("\n").find((l) => l.startsWith(`${ADDR.gateway} `));
  const mac = line?.match(/lladdr (\S+)/)?.[1];
  if (!mac) return "none";
  if (mac === (await s.macOf(s.ns.node, "vmbr1"))) return "vmbr1";
  if (g.fwbr && mac === (await s.macOf(s.ns.node, g.fwbr))) return "fwbr";
  return "other";
}

async function outScenario(firewall: boolean, fix: Fix): Promise<Outcome> {
  const { sim: s, g } = await setup(firewall, fix);
  // The guest's first packet: a TCP connection to the remote server.
  const r = await s.tcpProbe(g.ns, ADDR.remote, 80, { timeoutMs: 1500 });
  const remoteSaw = r.data.match(/from=([\d.]+)/)?.[1] ?? null;
  const seen = await s.remoteSeen();
  return { gateway: await learnedGateway(s, g), remoteSaw, leaked: seen.fromGuestNet > 0 };
}

async function inScenario(firewall: boolean, fix: Fix): Promise<Outcome> {
  const { sim: s, g } = await setup(firewall, fix);
  // The guest's first packet is outbound (one datagram to the remote), as after a boot.
  await s.udpProbe(g.ns, ADDR.remote, 9, { timeoutMs: 300 });
  const r = await s.tcpProbe(s.ns.clientA, ADDR.public, 822, { timeoutMs: 1500 });
  return {
    gateway: await learnedGateway(s, g),
    banner: r.status === "data" ? r.data.trim() : null,
  };
}

const WORKS_OUT = { remoteSaw: ADDR.public, leaked: false };
const BANNER = `SSH-2.0-vm107 from=${ADDR.clientA}`;

describe("firewall=1 plumbing breaks NAT unless the fwbr pass has its own zone and fwbr ignores ARP", () => {
  it.each<[string, boolean, Fix, Outcome]>([
    ["plain NIC (control)", false, "none", { gateway: "vmbr1", ...WORKS_OUT }],
    ["firewall=1, rules only", true, "none", { gateway: "fwbr", remoteSaw: null, leaked: true }],
    ["firewall=1, zone only", true, "zone", { gateway: "fwbr", remoteSaw: null, leaked: false }],
    [
      "firewall=1, arp_ignore only",
      true,
      "arp",
      { gateway: "vmbr1", remoteSaw: null, leaked: true },
    ],
    ["firewall=1, zone + arp_ignore", true, "zone+arp", { gateway: "vmbr1", ...WORKS_OUT }],
  ])("OUT masquerade, cold guest: %s", async (_name, firewall, fix, expected) => {
    expect(await outScenario(firewall, fix)).toEqual(expected);
  });

  it.each<[string, boolean, Fix, Outcome]>([
    ["plain NIC (control)", false, "none", { gateway: "vmbr1", banner: BANNER }],
    ["firewall=1, rules only", true, "none", { gateway: "fwbr", banner: null }],
    ["firewall=1, zone only", true, "zone", { gateway: "fwbr", banner: null }],
    // Inbound alone survives without the zone: the bridged pass's clashing entry gets a remapped
    // source port and is un-NATed again on the way back. OUT above is what needs the zone.
    ["firewall=1, arp_ignore only", true, "arp", { gateway: "vmbr1", banner: BANNER }],
    ["firewall=1, zone + arp_ignore", true, "zone+arp", { gateway: "vmbr1", banner: BANNER }],
  ])(
    "IN DNAT 203.0.113.10:822 → guest:22, guest spoke first: %s",
    async (_name, firewall, fix, expected) => {
      expect(await inScenario(firewall, fix)).toEqual(expected);
    },
  );
});
