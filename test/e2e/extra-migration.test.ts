// Live migration as this node sees it. Hooks are not reliably run on both nodes, so the watcher
// must converge on its own: the guest's config moves from nodes/pve2/ to nodes/pve1/ (a rename,
// as pmxcfs does it) while the guest already runs here (pidfile) → forwards within 2 s; the
// config moving away again → gone within 2 s. A pre-start hook carrying PVE_MIGRATED_FROM
// behaves like any pre-start: the forward is live when the hook returns.
import { mkdir, rename } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sleep } from "../helpers/exec.js";
import { guestConf } from "../helpers/simnode.js";
import { ADDR } from "./harness.js";
import { createScenario, type Scenario, within } from "./scenario.js";

const fw = (rules: string) => `[OPTIONS]\nenable: 1\n\n[RULES]\n${rules}`;
/** SPEC §2: live within 2 s; the margin covers one probe process start on a loaded machine. */
const LIVE_MS = 2000;
const PROBE_MARGIN_MS = 600;

let sc: Scenario;
const connect = async (port: number, timeoutMs = 1500) => {
  const r = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, port, { timeoutMs });
  return r.status === "data" ? r.data.trim() : r.status;
};
const confPath = (node: string, vmid: number) =>
  path.join(sc.sim.root, `etc/pve/nodes/${node}/qemu-server/${vmid}.conf`);

beforeAll(async () => {
  sc = await createScenario({
    guests: [
      { vmid: 120, kind: "qemu", firewall: true, plug: true, writeConf: false },
      { vmid: 121, kind: "lxc", firewall: false, plug: true },
    ],
  });
  const sim = sc.sim;
  await sim.writePve("firewall/120.fw", fw("IN ACCEPT -p tcp -dport 22 # NAT:2220 ssh\n"));
  await sim.writePve("firewall/121.fw", fw("IN ACCEPT -p tcp -dport 22 # NAT:2221 ssh\n"));
  const g = sim.guests.get(120);
  if (!g) throw new Error("no guest 120");
  await sim.writePve("nodes/pve2/qemu-server/120.conf", guestConf(g));
  await sc.startDaemon();
  for (const vmid of [120, 121]) {
    await sim.tcpService(sim.guests.get(vmid)?.ns ?? "", 22, `SSH-2.0-vm${vmid}`);
  }
});
afterAll(async () => {
  await sc?.destroy();
});

describe("migration without hooks (the watcher)", () => {
  it("a running guest whose config is on another node gets nothing here", async () => {
    // The incoming qemu already runs here with its pidfile; the config is still pve2's.
    await sc.sim.setRunning(120, true);
    await sleep(2500);
    expect(await connect(2220)).toBe("refused");
    const s = await sc.json(["status"]);
    expect(s.forwards.filter((f) => f.vmid === 120)).toEqual([]);
  });

  it("the config moves to this node → the forward is live within 2 s", async () => {
    await mkdir(path.dirname(confPath("pve1", 120)), { recursive: true });
    await rename(confPath("pve2", 120), confPath("pve1", 120));
    const ms = await within(
      async () => (await connect(2220, 500)).startsWith("SSH-2.0-vm120"),
      6000,
    );
    expect(ms).not.toBeNull();
    expect(ms).toBeLessThanOrEqual(LIVE_MS + PROBE_MARGIN_MS);
    console.log(`migration in → live: ${ms} ms`);
    // firewall=1 NIC: the watcher also gives its fwbr the ARP setting (SPEC §4), at the latest
    // after its next pass.
    const arp = await within(
      async () =>
        (await sc.sim.sysctl(sc.sim.ns.node, "net.ipv4.conf.fwbr120i0.arp_ignore")) === "1",
      2500,
    );
    expect(arp).not.toBeNull();
    const s = await sc.json(["status"]);
    expect(s.forwards.filter((f) => f.vmid === 120).map((f) => f.state)).toEqual(["active"]);
  });

  it("the config moves away again (migrated off) → gone within 2 s", async () => {
    await mkdir(path.dirname(confPath("pve3", 120)), { recursive: true });
    await rename(confPath("pve1", 120), confPath("pve3", 120));
    const ms = await within(async () => (await connect(2220, 500)) === "refused", 6000);
    expect(ms).not.toBeNull();
    expect(ms).toBeLessThanOrEqual(LIVE_MS + PROBE_MARGIN_MS);
    const live = await sc.liveOwned();
    expect(Object.keys(live.chains).filter((c) => c.includes("PVENAT-120-"))).toEqual([]);
  });
});

describe("migration with hooks", () => {
  it("pre-start with PVE_MIGRATED_FROM=pve2: live when the hook returns, logged with its origin", async () => {
    expect(await connect(2221)).toBe("refused");
    const r = await sc.hook(121, "pre-start", { PVE_MIGRATED_FROM: "pve2" });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/vm121 pre-start: 1 forward live/);
    expect(await connect(2221)).toBe(`SSH-2.0-vm121 from=${ADDR.clientA}`);
    expect(sc.daemon?.output()).toMatch(/"vmid":121,"phase":"pre-start","migratedFrom":"pve2"/);
    // The migration finishes: running here, post-start (also with the variable set).
    await sc.sim.setRunning(121, true);
    const post = await sc.hook(121, "post-start", { PVE_MIGRATED_FROM: "pve2" });
    expect(post.code).toBe(0);
    expect(await connect(2221)).toBe(`SSH-2.0-vm121 from=${ADDR.clientA}`);
    const s = await sc.json(["status"]);
    expect(s.forwards.filter((f) => f.vmid === 121).map((f) => f.state)).toEqual(["active"]);
  });
});
