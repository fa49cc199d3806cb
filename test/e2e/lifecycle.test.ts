// NAT follows the guest: stop → gone at once, restart → back, a changed UDP target takes the
// established flow along (conntrack cleanup), .fw edits and removals live within 2 s without any
// hook, and a guest that starts without a hookscript converges through the watcher. The node
// has pmxcfs's .vmlist and store (the harness commits each write to it, as pmxcfs does).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADDR } from "./harness.js";
import { createScenario, type Scenario, within } from "./scenario.js";

/** SPEC §2: an edit must be live within 2 s; the margin covers one probe process start. */
const LIVE_MS = 2000;
const PROBE_MARGIN_MS = 400;
/** A short start_grace_ms, so a start that never happens is seen to expire. */
const GRACE_MS = 1500;

const fw = (rules: string) => `[OPTIONS]\nenable: 1\n\n[RULES]\n${rules}`;
const SSH_107 =
  "IN ACCEPT -source 198.51.100.7 -dest 10.10.10.107 -p tcp -sport 822 -dport 22 # NAT ssh in\n";
const DNS = "IN ACCEPT -p udp -dport 53 # NAT:1053 dns\n";

let sc: Scenario;
beforeAll(async () => {
  sc = await createScenario({
    guests: [
      { vmid: 107, kind: "qemu", firewall: true, plug: false },
      { vmid: 108, kind: "lxc", firewall: false, plug: false },
      { vmid: 109, kind: "qemu", firewall: false, plug: true },
      { vmid: 110, kind: "qemu", firewall: false, plug: true },
    ],
    config: `start_grace_ms = ${GRACE_MS}\n`,
    // .vmlist and pmxcfs's store, as a real node has them: the single executable (package
    // test) then polls the store, not every .fw, and the edits below must still be live in 2 s.
    pmxcfs: true,
  });
  const sim = sc.sim;
  await sim.writePve("firewall/107.fw", fw(SSH_107 + DNS));
  await sim.writePve("firewall/108.fw", fw(""));
  await sim.writePve("firewall/109.fw", fw("IN ACCEPT -p tcp -dport 22 # NAT:2209 ssh\n"));
  await sim.writePve("firewall/110.fw", fw("IN ACCEPT -p tcp -dport 22 # NAT:2210 ssh\n"));
  await sc.startDaemon();
  await sc.boot(107);
  await sc.boot(108);
  for (const vmid of [107, 108, 109, 110]) {
    const g = sim.guests.get(vmid);
    if (!g) throw new Error(`no guest ${vmid}`);
    await sim.tcpService(g.ns, 22, `SSH-2.0-vm${vmid}`);
    await sim.udpService(g.ns, 53, `dns-vm${vmid}`);
  }
});
afterAll(async () => {
  await sc?.destroy();
});

const ssh = async (port: number, timeoutMs = 1500) => {
  const r = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, port, { timeoutMs });
  return r.status === "data" ? r.data.trim() : r.status;
};

describe("guest stop and start", () => {
  it("the forward works while the guest runs", async () => {
    expect(await ssh(822)).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
  });

  it("post-stop → the forward is gone as soon as the hook returns", async () => {
    await sc.shutdown(107);
    // Refused = the node itself answered: the DNAT rule is gone (with the rule still there and
    // the guest's NIC removed, the SYN would go unanswered instead).
    expect(await ssh(822)).toBe("refused");
    const live = await sc.liveOwned();
    expect(Object.keys(live.chains).filter((c) => c.includes("PVENAT-107-"))).toEqual([]);
  });

  it("restart → the forward works again", async () => {
    await sc.boot(107);
    const g = sc.sim.guests.get(107);
    // The NIC was re-created: its services come back with the guest.
    await sc.sim.tcpService(g?.ns ?? "", 22, "SSH-2.0-vm107");
    await sc.sim.udpService(g?.ns ?? "", 53, "dns-vm107");
    expect(await ssh(822)).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
  });
});

describe("pre-start grace", () => {
  it("pre-start makes the forward live before the guest runs; a start that never comes expires", async () => {
    expect(await ssh(2210)).toBe("refused");
    const t0 = performance.now();
    await sc.hook(110, "pre-start");
    expect(await ssh(2210)).toBe(`SSH-2.0-vm110 from=${ADDR.clientA}`);
    // Never running (no pidfile): removed once start_grace_ms has passed (+ one poll).
    const gone = await within(async () => (await ssh(2210, 500)) === "refused", 6000, 100);
    expect(gone).not.toBeNull();
    const total = performance.now() - t0;
    expect(total).toBeGreaterThanOrEqual(GRACE_MS);
    expect(total).toBeLessThanOrEqual(GRACE_MS + LIVE_MS + PROBE_MARGIN_MS);
  });
});

describe("conntrack cleanup", () => {
  it("an established UDP flow follows the forward to its new target", async () => {
    const sport = 40053;
    const send = async () => {
      const r = await sc.sim.udpProbe(sc.sim.ns.clientA, ADDR.public, 1053, {
        sport,
        timeoutMs: 1500,
      });
      return r.status === "data" ? r.data.trim() : r.status;
    };
    expect(await send()).toBe(`dns-vm107 from=${ADDR.clientA}`);
    // Move the forward from 107 to 108 (108 first: a moment of conflict, 107 still wins).
    await sc.sim.writePve("firewall/108.fw", fw(DNS));
    await sc.sim.writePve("firewall/107.fw", fw(SSH_107));
    const moved = await within(
      async () => {
        const s = await sc.json(["status"]);
        const dns = s.forwards.filter((f) => f.public.ports === "1053");
        return dns.length === 1 && dns[0]?.vmid === 108 && dns[0]?.state === "active";
      },
      5000,
      100,
    );
    expect(moved).not.toBeNull();
    // Same client socket (same 5-tuple): without cleanup its conntrack entry still says vm107.
    expect(await send()).toBe(`dns-vm108 from=${ADDR.clientA}`);
  });
});

describe("edits without any hook", () => {
  it(".fw edit → live within 2 s", async () => {
    await sc.sim.writePve(
      "firewall/107.fw",
      fw(`${SSH_107}IN ACCEPT -p tcp -dport 22 # NAT:2222 second door\n`),
    );
    const ms = await within(
      async () => (await ssh(2222, 500)).startsWith("SSH-2.0-vm107"),
      5000,
      50,
    );
    expect(ms).not.toBeNull();
    expect(ms).toBeLessThanOrEqual(LIVE_MS + PROBE_MARGIN_MS);
    console.log(`edit → live: ${ms} ms`);
  });

  it("rule deleted → gone within 2 s", async () => {
    await sc.sim.writePve("firewall/107.fw", fw(SSH_107));
    const ms = await within(async () => (await ssh(2222, 500)) === "refused", 5000, 50);
    expect(ms).not.toBeNull();
    expect(ms).toBeLessThanOrEqual(LIVE_MS + PROBE_MARGIN_MS);
    console.log(`delete → gone: ${ms} ms`);
    expect(await ssh(822)).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
  });

  it("a guest whose pidfile appears without a hook converges (and its crash too)", async () => {
    expect(await ssh(2209)).toBe("refused");
    await sc.sim.setRunning(109, true);
    const up = await within(
      async () => (await ssh(2209, 500)).startsWith("SSH-2.0-vm109"),
      5000,
      50,
    );
    expect(up).not.toBeNull();
    expect(up).toBeLessThanOrEqual(LIVE_MS + PROBE_MARGIN_MS);
    // The process dies, its pidfile stays behind (a crash): not running any more.
    await sc.sim.setRunning(109, false, { keepPidfile: true });
    const down = await within(async () => (await ssh(2209, 500)) === "refused", 5000, 50);
    expect(down).not.toBeNull();
    expect(down).toBeLessThanOrEqual(LIVE_MS + PROBE_MARGIN_MS);
  });
});
