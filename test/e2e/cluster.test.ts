// Two cluster nodes sharing one /etc/pve, as pmxcfs shares it (issue 12 item 2): pve1 (the
// simulated node, with traffic) and pve2 (a peer namespace whose --root links to pve1's
// /etc/pve). Each daemon publishes nodes/<node>/pve-nat.json; `attach` refuses while pve2 has
// none (a guest attached then could not start there after a migration or HA recovery), `check`
// names the attached guests that could land there, and `status --cluster` shows both nodes'
// forwards. `qm` is a stand-in (a script on PATH that records its call and writes the
// hookscript line as qm would); nothing here talks to a real Proxmox.
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Background, sleep, waitFor } from "../helpers/exec.js";
import { guestConf, guestFw, pvePath, startGuest } from "../helpers/simnode.js";
import { ADDR, type PeerNode } from "./harness.js";
import { createScenario, type Scenario } from "./scenario.js";

const PEER_ADDRESS = "203.0.113.11";
const MEMBERS = JSON.stringify({
  nodename: "pve1",
  version: 5,
  cluster: { name: "c", version: 2, nodes: 2, quorate: 1 },
  nodelist: {
    pve1: { id: 1, online: 1, ip: ADDR.public },
    pve2: { id: 2, online: 1, ip: PEER_ADDRESS },
  },
});

let sc: Scenario;
let peer: PeerNode;
let peerDaemon: Background | null = null;
let guest150: Background | null = null;
let bin = "";

const presencePath = (node: string) => pvePath(sc.sim.root, `nodes/${node}/pve-nat.json`);
const presence = async (node: string) =>
  JSON.parse(await readFile(presencePath(node), "utf8")) as {
    node: string;
    pve_nat: string;
    updated: string;
    forwards: Array<{ vmid: number; public: string; private: string; state: string }>;
  };
const exists = async (file: string) =>
  readFile(file).then(
    () => true,
    () => false,
  );
const qmCalls = async () =>
  (await readFile(path.join(bin, "calls.log"), "utf8").catch(() => "")).split("\n").filter(Boolean);
/** pve-nat on pve1 with the stand-in qm first on PATH. */
const pve1 = (args: string[]) =>
  sc.sim.pveNat(args, {
    timeoutMs: 20_000,
    env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` },
  });

beforeAll(async () => {
  sc = await createScenario({
    guests: [
      { vmid: 140, kind: "qemu" },
      { vmid: 141, kind: "qemu" },
    ],
  });
  const sim = sc.sim;
  bin = await mkdtemp(path.join(tmpdir(), "pvenat-qm-"));
  // Stand-in qm: records its call; `qm set <vmid> --hookscript <volid>` writes that line into
  // the guest's config, as qm does.
  const confDir = pvePath(sim.root, "nodes/pve1/qemu-server");
  await writeFile(
    path.join(bin, "qm"),
    `#!/bin/sh
echo "qm $*" >> "${bin}/calls.log"
if [ "$1" = set ] && [ "$3" = --hookscript ]; then
  conf="${confDir}/$2.conf"
  grep -v '^hookscript:' "$conf" > "$conf.tmp"
  echo "hookscript: $4" >> "$conf.tmp"
  mv "$conf.tmp" "$conf"
fi
`,
  );
  await chmod(path.join(bin, "qm"), 0o755);
  await sim.writePve(".members", MEMBERS);
  await sim.writePve("firewall/140.fw", guestFw(["IN ACCEPT -p tcp -dport 22 # NAT:2240 ssh"]));
  await sim.writePve("firewall/141.fw", guestFw(["IN ACCEPT -p tcp -dport 22 # NAT:2241 ssh"]));
  await sim.writePve("firewall/150.fw", guestFw(["IN ACCEPT -p tcp -dport 22 # NAT:2250 ssh"]));
  peer = await sim.addPeerNode("pve2", PEER_ADDRESS);
  await sim.writePve(
    "nodes/pve2/qemu-server/150.conf",
    guestConf({ vmid: 150, kind: "qemu", ip: "10.10.10.150" }),
  );
  await sim.setRunning(140, true);
  await sc.startDaemon();
  await sim.tcpService(sim.guests.get(140)?.ns ?? "", 22, "SSH-2.0-vm140");
});

afterAll(async () => {
  await peerDaemon?.stop(5000).catch(() => {});
  await guest150?.kill9().catch(() => {});
  await sc?.destroy();
  if (bin) await rm(bin, { recursive: true, force: true });
});

describe("a cluster where pve2 does not run pve-nat yet", () => {
  it("pve1's daemon publishes its presence and forwards at start", async () => {
    const ok = await waitFor(() => exists(presencePath("pve1")), 5000, 50);
    expect(ok).toBe(true);
    const p = await presence("pve1");
    expect(p.node).toBe("pve1");
    expect(p.pve_nat).toMatch(/\d+\.\d+\.\d+/);
    expect(p.forwards).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ vmid: 140, public: `${ADDR.public}:2240`, state: "active" }),
        expect.objectContaining({ vmid: 141, public: `${ADDR.public}:2241`, state: "inactive" }),
      ]),
    );
    expect(await exists(presencePath("pve2"))).toBe(false);
  });

  it("attach refuses, naming pve2, and never calls qm", async () => {
    const r = await pve1(["attach", "140"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^vm140: not attached: cluster node pve2 lacks pve-nat/m);
    expect(r.stderr).toContain("install pve-nat on pve2 first");
    expect(await qmCalls()).toEqual([]);
    expect(
      await readFile(pvePath(sc.sim.root, "nodes/pve1/qemu-server/140.conf"), "utf8"),
    ).not.toContain("hookscript");
  });

  it("attach --force attaches; check then warns that the guest cannot start on pve2", async () => {
    const r = await pve1(["attach", "--force", "141"]);
    expect(r.code).toBe(0);
    expect(await qmCalls()).toEqual(["qm set 141 --hookscript local:snippets/pve-nat-hook"]);
    const check = await pve1(["check"]);
    expect(check.stdout).toMatch(
      /^nodes\/pve2\/pve-nat\.json(:0)?: warning: cluster node pve2 has no pve-nat .*attached guest 141 cannot start there after a migration or HA recovery/m,
    );
  });

  it("status --cluster shows pve2 without pve-nat and pve1's forwards", async () => {
    const r = await pve1(["status", "--cluster"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^pve2 +- +- +- +pve-nat not installed/m);
    expect(r.stdout).toMatch(new RegExp(`^pve1 +140 +in +tcp +${ADDR.public}:2240 .*active$`, "m"));
  });
});

describe("pve2 gets pve-nat", () => {
  it("pve2's daemon publishes in the shared tree and NATs only its own guests, in its namespace", async () => {
    guest150 = await startGuest({ root: peer.root, vmid: 150, kind: "qemu", ns: peer.ns });
    peerDaemon = peer.startDaemon();
    const d = peerDaemon;
    const ready = await waitFor(
      async () => /"msg":"ready"/.test(d.output()) || !d.alive(),
      15_000,
      50,
    );
    expect(ready && d.alive(), d.output().slice(-2000)).toBe(true);
    const p = await presence("pve2");
    expect(p.forwards).toEqual([
      expect.objectContaining({ vmid: 150, public: `${PEER_ADDRESS}:2250`, state: "active" }),
    ]);
    const peerNat = await sc.sim.iptablesSave(peer.ns, "nat");
    expect(peerNat).toContain(":PVENAT-150-DNAT");
    expect(peerNat).not.toContain("PVENAT-140-");
    const nat = await sc.sim.iptablesSave(sc.sim.ns.node, "nat");
    expect(nat).toContain(":PVENAT-140-DNAT");
    expect(nat).not.toContain("PVENAT-150-");
  });

  it("attach now succeeds and check has no cluster finding", async () => {
    const r = await pve1(["attach", "140"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("vm140: attached\n");
    const check = await pve1(["check"]);
    expect(check.stdout).not.toContain("has no pve-nat");
  });

  it("status --cluster --json lists both nodes' forwards from their presence files", async () => {
    const r = await pve1(["status", "--cluster", "--json"]);
    const j = JSON.parse(r.stdout) as {
      node: string;
      members_from: string;
      nodes: Array<{
        node: string;
        member: boolean;
        pve_nat: string | null;
        forwards: Array<{ vmid: number; public: string; state: string }>;
      }>;
    };
    expect(j.node).toBe("pve1");
    expect(j.members_from).toBe(".members");
    expect(j.nodes.map((n) => [n.node, n.member, n.pve_nat !== null])).toEqual([
      ["pve1", true, true],
      ["pve2", true, true],
    ]);
    expect(j.nodes[1]?.forwards.map((f) => [f.vmid, f.public, f.state])).toEqual([
      [150, `${PEER_ADDRESS}:2250`, "active"],
    ]);
    // pve1's forward still carries traffic: nothing of this touched it.
    const probe = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, 2240, { timeoutMs: 2000 });
    expect(probe.data.trim()).toBe(`SSH-2.0-vm140 from=${ADDR.clientA}`);
  });

  it("an idle daemon does not rewrite its presence file on every poll", async () => {
    const before = await readFile(presencePath("pve1"), "utf8");
    await sleep(3500); // three and a half polls
    expect(await readFile(presencePath("pve1"), "utf8")).toBe(before);
  });

  it("a changed forward reaches pve2's presence file (rate-limited to one write per 10 s)", async () => {
    await sc.sim.writePve(
      "firewall/150.fw",
      guestFw(["IN ACCEPT -p tcp -dport 22 # NAT:2251 ssh"]),
    );
    const ok = await waitFor(
      async () => (await presence("pve2")).forwards[0]?.public === `${PEER_ADDRESS}:2251`,
      15_000,
      200,
    );
    expect(ok).toBe(true);
  });

  it("a stopped daemon leaves its presence file (package and snippet are still there)", async () => {
    await peerDaemon?.stop(5000);
    peerDaemon = null;
    expect(await exists(presencePath("pve2"))).toBe(true);
    const r = await pve1(["attach", "141"]);
    expect(r.stdout).toBe("vm141: already attached\n");
  });
});
