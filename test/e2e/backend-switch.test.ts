// Issue 12, item 4: `iptables = auto` re-detects the backend. pve-firewall's ExecStartPre
// switches the iptables alternative (to legacy) after a daemon may have started on nft; on the
// next `notify reload` the daemon moves its chains (written to the new backend, removed from the
// old one). And when pve-firewall's PVEFW- chains show up only in the other backend, the drift
// check moves them there too. Real packets through the forward after each move.
//
// Stand-in: Debian's alternatives are machine-wide (/etc/alternatives/iptables), so the daemon
// here gets a PATH whose `iptables` runs iptables-<file content> — the file is this test's
// "alternative". Everything else is the real iptables-nft / iptables-legacy in the namespace.
import { chmod, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Background, waitFor } from "../helpers/exec.js";
import { ADDR, baseConfig } from "./harness.js";
import { createScenario, ownedView, type Scenario } from "./scenario.js";

const FW_107 = "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -p tcp -dport 22 # NAT:822\n";

let sc: Scenario;
let daemon: Background;
let alternative: string;
let altPath: string;

/** `pve-nat daemon` with the stand-in alternative on PATH. */
async function startDaemon(driftMs: number): Promise<void> {
  await sc.sim.writeConfig(baseConfig(`drift_interval_ms = ${driftMs}\n`));
  daemon = sc.sim.spawn(node(), [...sc.sim.pveNatArgv(), "daemon", "--root", sc.sim.root], {
    env: { ...process.env, PATH: altPath },
  });
  const ready = await waitFor(async () => /"msg":"ready"/.test(daemon.output()), 15_000, 50);
  if (!ready) throw new Error(`daemon not ready:\n${daemon.output().slice(-3000)}`);
}

const node = () => sc.sim.ns.node;
const owned = async (backend: "nft" | "legacy") => {
  const out: string[] = [];
  for (const table of ["nat", "raw"]) {
    out.push(await sc.sim.execOk(node(), [`iptables-${backend}-save`, "-t", table]));
  }
  return Object.keys(ownedView(out.join("\n")).chains);
};
const CHAINS = [
  "nat/PVENAT-107-DNAT",
  "nat/PVENAT-OUTPUT",
  "nat/PVENAT-POSTROUTING",
  "nat/PVENAT-PREROUTING",
  "raw/PVENAT-RAW",
];
const probe = async () => {
  const r = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, 822, { timeoutMs: 2000 });
  return r.status === "data" ? r.data.trim() : r.status;
};
/** pve-firewall's chains (what its compile writes first) in one backend, or removed from it. */
const pveFirewall = async (backend: "nft" | "legacy", present: boolean) => {
  const ipt = (args: string[]) => sc.sim.execOk(node(), [`iptables-${backend}`, "-w", ...args]);
  if (present) {
    await ipt(["-N", "PVEFW-INPUT"]);
    await ipt(["-A", "INPUT", "-j", "PVEFW-INPUT"]);
  } else {
    await ipt(["-D", "INPUT", "-j", "PVEFW-INPUT"]);
    await ipt(["-X", "PVEFW-INPUT"]);
  }
};
const movedTo = async (backend: "nft" | "legacy") => {
  const other = backend === "nft" ? "legacy" : "nft";
  return (await owned(backend)).join() === CHAINS.join() && (await owned(other)).length === 0;
};

beforeAll(async () => {
  sc = await createScenario({
    guests: [{ vmid: 107, kind: "qemu", firewall: false, plug: false }],
  });
  await sc.sim.writePve("firewall/107.fw", FW_107);
  const bin = path.join(sc.sim.root, "alt-bin");
  alternative = path.join(sc.sim.root, "alternative");
  await mkdir(bin, { recursive: true });
  await writeFile(alternative, "nft\n");
  await writeFile(
    path.join(bin, "iptables"),
    `#!/bin/sh\nexec /usr/sbin/iptables-$(cat '${alternative}') "$@"\n`,
  );
  await chmod(path.join(bin, "iptables"), 0o755);
  altPath = `${bin}:${process.env.PATH ?? "/usr/sbin:/usr/bin"}`;
  // No drift check during the reload step: the move there must be notify's doing.
  await startDaemon(3_600_000);
  await sc.boot(107);
  await sc.sim.tcpService(sc.sim.guests.get(107)?.ns ?? "", 22, "SSH-2.0-vm107");
}, 60_000);

afterAll(async () => {
  await daemon?.stop(5000);
  await sc?.destroy();
});

describe("iptables = auto follows the backend pve-firewall uses", () => {
  it("starts on the alternative's backend (nft)", async () => {
    expect(await owned("nft")).toEqual(CHAINS);
    expect(await owned("legacy")).toEqual([]);
    expect(await probe()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
    expect((await sc.json(["status"])).daemon?.backend).toBe("nft");
  });

  it("pve-firewall switches the alternative to legacy; notify reload moves the chains", async () => {
    await writeFile(alternative, "legacy\n");
    await pveFirewall("legacy", true);
    // Nothing moves by itself (no drift check in this daemon) ...
    await new Promise((r) => setTimeout(r, 1500));
    expect(await movedTo("nft")).toBe(true);
    // ... until pve-firewall's drop-in runs `notify reload`.
    const r = await sc.cli(["notify", "reload"]);
    expect(r.code).toBe(0);
    expect(await waitFor(() => movedTo("legacy"), 3000, 50)).toBe(true);
    expect(await probe()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
    expect((await sc.json(["status"])).daemon?.backend).toBe("legacy");
    expect(daemon.output()).toMatch(
      /"from":"nft","to":"legacy".*"msg":"iptables backend changed: pve-nat's chains moved"/,
    );
  });

  it("pve-firewall's chains appear only in nft: the drift check moves the chains there", async () => {
    // A daemon with a 1 s drift check, started on legacy (the alternative, holding PVEFW-).
    await daemon.stop(5000);
    await startDaemon(1000);
    expect(await movedTo("legacy")).toBe(true);
    await pveFirewall("legacy", false);
    await pveFirewall("nft", true);
    const ok = await waitFor(() => movedTo("nft"), 5000, 100);
    expect(ok).toBe(true);
    expect(await probe()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
    expect((await sc.json(["status"])).daemon?.backend).toBe("nft");
    expect(daemon.output()).toMatch(/PVEFW- chains are in nft: using iptables-nft/);
  });
});
