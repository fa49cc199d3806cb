// SPEC §8 end to end, real packets and real components: a guest whose config has no address
// (ip=dhcp) gets it from a real dnsmasq (Debian's dnsmasq-base) on the node's private bridge,
// through a real DHCP client (isc-dhcp-client's dhclient) in the guest's namespace. pve-nat
// learns the address from dnsmasq's lease file under --root and forwards to it; when the lease
// moves (the static host entry changes, dnsmasq re-reads it on SIGHUP, the guest renews), a live
// client reaches the new address within 2 s and nothing reaches the old one. The same with the
// PVE IPAM state file only (no dnsmasq). dnsmasq and dhclient run only inside the test's
// namespaces, with every file (pid, leases, hosts, script) under the test's --root.
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Background } from "../helpers/exec.js";
import { guestFw, guestMac } from "../helpers/simnode.js";
import { ADDR, type Guest } from "./harness.js";
import { createScenario, type Scenario, within } from "./scenario.js";

const ZONE = "zone1";
const VMID = 107;
const MOVED = "10.10.10.60";

let sc: Scenario | undefined;
afterEach(async () => {
  await sc?.destroy();
  sc = undefined;
});

/** dhclient's -sf script: only `ip` on the guest's own eth0 (never /etc/resolv.conf). */
const DHCLIENT_SCRIPT = `#!/bin/sh
case "$reason" in
  PREINIT) ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    if [ "$old_ip_address" != "$new_ip_address" ]; then ip -4 addr flush dev "$interface"; fi
    ip -4 addr replace "$new_ip_address/24" dev "$interface"
    [ -n "$new_routers" ] && ip route replace default via "$new_routers"
    ;;
  EXPIRE|FAIL|RELEASE|STOP) ip -4 addr flush dev "$interface" ;;
esac
exit 0
`;

interface Dhcp {
  dir: string;
  hosts: string;
  leases: string;
  dnsmasq: Background | null;
  client: Background | null;
}

async function setupFiles(s: Scenario): Promise<Dhcp> {
  const root = s.sim.root;
  const dir = path.join(root, "tmp-dhcp");
  await mkdir(dir, { recursive: true });
  await mkdir(path.join(root, `etc/dnsmasq.d/${ZONE}`), { recursive: true });
  await mkdir(path.join(root, "var/lib/misc"), { recursive: true });
  await writeFile(path.join(dir, "script"), DHCLIENT_SCRIPT);
  await chmod(path.join(dir, "script"), 0o755);
  await writeFile(path.join(dir, "dhclient.conf"), "timeout 20;\nretry 1;\n");
  return {
    dir,
    hosts: path.join(root, `etc/dnsmasq.d/${ZONE}/ethers`),
    leases: path.join(root, `var/lib/misc/dnsmasq.${ZONE}.leases`),
    dnsmasq: null,
    client: null,
  };
}

/** dnsmasq as pve-network runs it per zone: DHCP only (port 0), leases and hosts in the
 *  zone's files; here in the node's namespace, on vmbr1. */
function startDnsmasq(s: Scenario, d: Dhcp): Background {
  d.dnsmasq = s.sim.spawn(s.sim.ns.node, [
    "dnsmasq",
    "--no-daemon",
    "--conf-file=/dev/null",
    "--port=0",
    "--user=root",
    "--interface=vmbr1",
    "--bind-interfaces",
    "--dhcp-authoritative",
    "--dhcp-range=10.10.10.100,10.10.10.200,255.255.255.0,10m",
    `--dhcp-hostsfile=${d.hosts}`,
    `--dhcp-leasefile=${d.leases}`,
    `--dhcp-option=option:router,${ADDR.gateway}`,
  ]);
  return d.dnsmasq;
}

/** dhclient in the guest, in the foreground (it keeps the lease); its files in the test dir. */
function startClient(s: Scenario, d: Dhcp, g: Guest): Background {
  d.client = s.sim.spawn(g.ns, [
    "dhclient",
    "-4",
    "-d",
    "-v",
    "-cf",
    path.join(d.dir, "dhclient.conf"),
    "-pf",
    path.join(d.dir, "dhclient.pid"),
    "-lf",
    path.join(d.dir, "dhclient.leases"),
    "-sf",
    path.join(d.dir, "script"),
    "eth0",
  ]);
  return d.client;
}

async function guestAddress(s: Scenario, g: Guest): Promise<string | null> {
  const out = await s.sim.execOk(g.ns, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
  return /inet (\d+\.\d+\.\d+\.\d+)\//.exec(out)?.[1] ?? null;
}

/** The guest's service says which of its addresses a connection reached. */
async function service(s: Scenario, g: Guest): Promise<void> {
  s.sim.spawn(g.ns, [
    "socat",
    "TCP-LISTEN:22,fork,reuseaddr",
    "SYSTEM:echo SSH-2.0-vm107 to=$SOCAT_SOCKADDR",
  ]);
  const ok = await within(
    async () => (await s.sim.exec(g.ns, ["ss", "-Hltn", "sport = :22"])).stdout.trim() !== "",
    3000,
  );
  if (ok === null) throw new Error("guest service did not listen");
}

/** Packets that arrived in the guest for `address`, counted before anything else sees them. */
async function countTo(s: Scenario, g: Guest, address: string): Promise<number> {
  const out = await s.sim.execOk(g.ns, ["iptables", "-w", "-t", "raw", "-L", "PREROUTING", "-nvx"]);
  const line = out.split("\n").find((l) => l.trim().split(/\s+/)[7] === address);
  return Number(line?.trim().split(/\s+/)[0] ?? 0);
}

async function reached(s: Scenario): Promise<string | null> {
  const r = await s.sim.tcpProbe(s.sim.ns.clientA, ADDR.public, 2222, { timeoutMs: 400 });
  return r.status === "data" ? (/to=([\d.]+)/.exec(r.data)?.[1] ?? null) : null;
}

const RULES = ["IN ACCEPT -p tcp -dport 22 # NAT:2222 ssh to a DHCP guest", "OUT ACCEPT # NAT"];
/** Plus a UDP forward: a flow that keeps its source port must not stick to the old address. */
const DHCP_RULES = [...RULES, "IN ACCEPT -p udp -dport 9 # NAT:9009"];

async function dhcpScenario(firewall: boolean): Promise<{ s: Scenario; g: Guest; d: Dhcp }> {
  sc = await createScenario();
  const s = sc;
  const g = await s.sim.addGuest({ vmid: VMID, dhcp: true, firewall, plug: false });
  await s.sim.writePve(`firewall/${VMID}.fw`, guestFw(DHCP_RULES, { enable: false }));
  const d = await setupFiles(s);
  // No host entry yet: the first address comes from the dynamic range, so only the lease
  // file knows it.
  await writeFile(d.hosts, "");
  await writeFile(d.leases, "");
  startDnsmasq(s, d);
  await s.startDaemon();
  return { s, g, d };
}

describe("forwards follow DHCP (dnsmasq leases)", () => {
  it.each([
    ["plain NIC", false],
    ["firewall=1 NIC, cold start", true],
  ])(
    "%s: pending until the lease, live at the leased address, follows a moved lease",
    async (_n, firewall) => {
      const { s, g, d } = await dhcpScenario(firewall);
      // The guest starts: no lease yet, so the forward is pending (not an error), and the hook
      // never waits for an address.
      await s.boot(VMID);
      const before = await s.json(["status"]);
      expect(before.forwards.map((f) => `${f.direction} ${f.state}`)).toEqual([
        "in pending",
        "out pending",
        "in pending",
      ]);
      expect(before.forwards[0]?.reason).toContain(guestMac(VMID));
      await service(s, g);

      // A real DHCP exchange; the forward goes live by itself within 2 s of the lease.
      startClient(s, d, g);
      const bound = await within(async () => (await guestAddress(s, g)) !== null, 20_000, 100);
      expect(bound, d.client?.output()).not.toBeNull();
      const FIRST = (await guestAddress(s, g)) as string;
      expect(FIRST).toMatch(/^10\.10\.10\.(1\d\d|200)$/);
      expect(await readFile(d.leases, "utf8")).toContain(` ${guestMac(VMID)} ${FIRST} `);
      for (const a of [FIRST, MOVED]) {
        await s.sim.execOk(g.ns, ["iptables", "-w", "-t", "raw", "-A", "PREROUTING", "-d", a]);
      }
      const live = await within(async () => (await reached(s)) === FIRST, 2000, 100);
      expect(live, `status: ${JSON.stringify(await s.json(["status"]))}`).not.toBeNull();
      const now = await s.json(["status"]);
      expect(now.forwards.map((f) => `${f.state} ${f.private.address}`)).toEqual([
        `active ${FIRST}`,
        `active ${FIRST}`,
        `active ${FIRST}`,
      ]);
      expect(
        now.forwards.map((f) => (f.private as Record<string, unknown>).address_source),
      ).toEqual(["lease", "lease", "lease"]);
      // A UDP flow from a fixed source port: its conntrack entry points at the first address.
      await s.sim.udpService(g.ns, 9, "vm107");
      const udp = () =>
        s.sim.udpProbe(s.sim.ns.clientA, ADDR.public, 9009, { sport: 40009, timeoutMs: 500 });
      expect((await udp()).data).toContain("vm107");
      // OUT: the guest's own traffic is masqueraded (also from a cold firewall=1 start).
      await s.sim.tcpService(s.sim.ns.remote, 80, "remote");
      const out = await s.sim.tcpProbe(g.ns, ADDR.remote, 80, { timeoutMs: 1500 });
      expect(out.data).toContain(`from=${ADDR.public}`);

      // The lease moves: a new host entry, dnsmasq re-reads it, the guest renews.
      await writeFile(d.hosts, `${guestMac(VMID)},${MOVED}\n`);
      // `ip netns exec` execs dnsmasq: the process we started is dnsmasq itself.
      process.kill(d.dnsmasq?.pid as number, "SIGHUP");
      await d.client?.kill9();
      startClient(s, d, g);
      const moved = await within(async () => (await guestAddress(s, g)) === MOVED, 20_000, 100);
      expect(moved, d.client?.output()).not.toBeNull();
      await s.sim.execOk(g.ns, ["iptables", "-w", "-t", "raw", "-Z", "PREROUTING"]);
      // A live client (one attempt every 100 ms) reaches the new address within 2 s…
      const t0 = performance.now();
      const results: Array<string | null> = [];
      const reconnect = await within(
        async () => {
          const r = await reached(s);
          results.push(r);
          return r === MOVED;
        },
        2000,
        100,
      );
      expect(reconnect, `results ${JSON.stringify(results)}`).not.toBeNull();
      expect(performance.now() - t0).toBeLessThan(2600);
      // …and, once there, every later connection too, with nothing reaching the old address.
      await s.sim.execOk(g.ns, ["iptables", "-w", "-t", "raw", "-Z", "PREROUTING"]);
      for (let i = 0; i < 5; i++) expect(await reached(s)).toBe(MOVED);
      // The same UDP flow (same source port) now reaches the new address: the old address's
      // conntrack entries were deleted with the old forward.
      expect((await udp()).data).toContain("vm107");
      expect(await countTo(s, g, FIRST)).toBe(0);
      expect(await countTo(s, g, MOVED)).toBeGreaterThan(0);
      const after = await s.json(["status"]);
      expect(after.forwards.map((f) => `${f.state} ${f.private.address}`)).toEqual([
        `active ${MOVED}`,
        `active ${MOVED}`,
        `active ${MOVED}`,
      ]);
      // The daemon said old → new in its applied event (logged with the event's fields).
      expect(s.daemon?.output()).toContain(`"address":{"from":"${FIRST}","to":"${MOVED}"}`);
    },
  );
});

describe("forwards from the PVE IPAM state alone (no DHCP server)", () => {
  it("IPAM entry → live forward; an IPAM edit moves it", async () => {
    const FIRST = "10.10.10.50";
    sc = await createScenario();
    const s = sc;
    const g = await s.sim.addGuest({ vmid: VMID, dhcp: true, plug: false });
    await s.sim.writePve(`firewall/${VMID}.fw`, guestFw(RULES, { enable: false }));
    const ipam = (ip: string) =>
      JSON.stringify({
        zones: {
          [ZONE]: {
            subnets: {
              "10.10.10.0/24": {
                ips: {
                  "10.10.10.1": { gateway: 1 },
                  [ip]: {
                    vmid: String(VMID),
                    mac: guestMac(VMID).toUpperCase(),
                    hostname: "vm107",
                  },
                },
              },
            },
          },
        },
      });
    await s.sim.writePve("sdn/pve-ipam-state.json", ipam(FIRST));
    for (const a of [FIRST, MOVED]) {
      await s.sim.execOk(g.ns, ["iptables", "-w", "-t", "raw", "-A", "PREROUTING", "-d", a]);
    }
    await s.startDaemon();
    await s.boot(VMID);
    // The guest configures what the IPAM says (as cloud-init or a DHCP server would).
    await s.sim.execOk(g.ns, ["ip", "addr", "add", `${FIRST}/24`, "dev", "eth0"]);
    await s.sim.execOk(g.ns, ["ip", "route", "add", "default", "via", ADDR.gateway]);
    await service(s, g);
    const st = await s.json(["status"]);
    expect(st.forwards.map((f) => `${f.state} ${f.private.address}`)).toEqual([
      `active ${FIRST}`,
      `active ${FIRST}`,
    ]);
    expect((st.forwards[0]?.private as Record<string, unknown> | undefined)?.address_source).toBe(
      "ipam",
    );
    expect(await reached(s)).toBe(FIRST);

    // The IPAM moves the guest: it renumbers, the forward follows within 2 s.
    await s.sim.writePve("sdn/pve-ipam-state.json", ipam(MOVED));
    await s.sim.execOk(g.ns, ["ip", "addr", "flush", "dev", "eth0"]);
    await s.sim.execOk(g.ns, ["ip", "addr", "add", `${MOVED}/24`, "dev", "eth0"]);
    await s.sim.execOk(g.ns, ["ip", "route", "replace", "default", "via", ADDR.gateway]);
    await s.sim.execOk(g.ns, ["iptables", "-w", "-t", "raw", "-Z", "PREROUTING"]);
    const moved = await within(async () => (await reached(s)) === MOVED, 2000, 100);
    expect(moved).not.toBeNull();
    await s.sim.execOk(g.ns, ["iptables", "-w", "-t", "raw", "-Z", "PREROUTING"]);
    for (let i = 0; i < 3; i++) expect(await reached(s)).toBe(MOVED);
    expect(await countTo(s, g, FIRST)).toBe(0);
  });
});
