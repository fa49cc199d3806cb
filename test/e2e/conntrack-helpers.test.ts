// Issue 12, item 1: pve-nat must change nothing for traffic it does not NAT, and conntrack
// helpers (host.fw `nf_conntrack_helpers: ftp`) must keep working behind firewall=1 NICs.
//
// Real passive FTP (python3-pyftpdlib in the guest, Python's ftplib as the client) through the
// filter rules pve-firewall writes for this setup (compile_iptables_raw / _filter in
// proxmox/pve-firewall src/PVE/Firewall.pm), in the node's namespace:
//   raw    PREROUTING → PVEFW-PREROUTING: -p tcp --dport 21 -j CT --helper ftp
//   filter FORWARD → PVEFW-FORWARD: INVALID drop, RELATED,ESTABLISHED accept, fwbr pass →
//          PVEFW-FWBR-IN → tap<vmid>i0-IN: dport 21 accepted, everything else dropped.
// So a passive data connection reaches the guest only when the fwbr pass sees it RELATED,
// i.e. when the conntrack entry of that pass carries the ftp helper.
//
//   vm108  firewall=1, no NAT rule        ← FTP from vm110 (a plain NIC on vmbr1)
//   vm107  firewall=1, forward :21 → :21  ← FTP from clientA through 203.0.113.10
//
// Three states, one node: Proxmox alone; the zone rule pve-nat used to insert (`raw -i fwbr+ -j
// CT --zone 1`, written by hand here, exactly as PVENAT-RAW held it); pve-nat's daemon running.
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/exec.js";
import { ADDR } from "./harness.js";
import { createScenario, type Scenario } from "./scenario.js";

// The Debian interpreter: python3-pyftpdlib is installed for it (not for a pyenv python on PATH).
const PYTHON = "/usr/bin/python3";
const FTP_TIMEOUT_S = 3;

/** One passive-mode session: login, RETR hello.txt, quit. Prints one JSON line. */
const FTP_CLIENT = `
import ftplib, json, os
out = {"login": False, "data": None, "error": None}
try:
    f = ftplib.FTP(timeout=float(os.environ["FTP_S"]))
    f.connect(os.environ["FTP_ADDR"], 21)
    f.login()
    out["login"] = True
    f.set_pasv(True)
    buf = []
    f.retrbinary("RETR hello.txt", buf.append)
    out["data"] = b"".join(buf).decode()
    f.quit()
except Exception as e:
    out["error"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
`;

const fw = (rules: string) => `[OPTIONS]\nenable: 1\n\n[RULES]\n${rules}\n`;

/** What pve-firewall applies for these two guests with nf_conntrack_helpers: ftp. */
const PVEFW = `*raw
:PVEFW-PREROUTING - [0:0]
-A PREROUTING -j PVEFW-PREROUTING
-A PVEFW-PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp
COMMIT
*filter
:PVEFW-FORWARD - [0:0]
:PVEFW-FWBR-IN - [0:0]
:tap107i0-IN - [0:0]
:tap108i0-IN - [0:0]
-A FORWARD -j PVEFW-FORWARD
-A PVEFW-FORWARD -m conntrack --ctstate INVALID -j DROP
-A PVEFW-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A PVEFW-FORWARD -m physdev --physdev-in fwln+ --physdev-is-bridged -j PVEFW-FWBR-IN
-A PVEFW-FWBR-IN -m physdev --physdev-out tap107i0 --physdev-is-bridged -j tap107i0-IN
-A PVEFW-FWBR-IN -m physdev --physdev-out tap108i0 --physdev-is-bridged -j tap108i0-IN
-A tap107i0-IN -p tcp -m tcp --dport 21 -j ACCEPT
-A tap107i0-IN -j DROP
-A tap108i0-IN -p tcp -m tcp --dport 21 -j ACCEPT
-A tap108i0-IN -j DROP
COMMIT
`;

/** The zone rule as pve-nat inserted it (at the top of raw PREROUTING) before this change. */
const OLD_ZONE = ["-i", "fwbr+", "-j", "CT", "--zone", "1"];
/** A hand-written forward for the "before" state (what pve-nat's chain holds for vm107). */
const OLD_DNAT = [
  "-i",
  "vmbr0",
  "-d",
  ADDR.public,
  "-p",
  "tcp",
  "--dport",
  "21",
  "-j",
  "DNAT",
  "--to-destination",
  "10.10.10.107:21",
];

let sc: Scenario;
const node = () => sc.sim.ns.node;
const guestNs = (vmid: number) => sc.sim.guests.get(vmid)?.ns ?? "";

interface Session {
  login: boolean;
  data: string | null;
  error: string | null;
}

async function ftp(fromNs: string, addr: string): Promise<Session> {
  const r = await sc.sim.exec(fromNs, [PYTHON, "-c", FTP_CLIENT], {
    env: { ...process.env, FTP_ADDR: addr, FTP_S: String(FTP_TIMEOUT_S) },
    timeoutMs: FTP_TIMEOUT_S * 4000 + 5000,
  });
  const line = r.stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as Session;
  } catch {
    return { login: false, data: null, error: `client: ${r.stderr || r.stdout}` };
  }
}

/** Conntrack entries (every zone) of connections to addr:21: one per connection per zone. */
async function controlEntries(addr: string): Promise<string[]> {
  const r = await sc.sim.exec(node(), [
    "conntrack",
    "-L",
    "-p",
    "tcp",
    "--orig-dst",
    addr,
    "--orig-port-dst",
    "21",
  ]);
  return r.stdout.split("\n").filter((l) => l.startsWith("tcp"));
}

async function fresh(): Promise<void> {
  await sc.sim.flushConntrack(node());
  for (const n of [node(), guestNs(107), guestNs(108), guestNs(110)]) await sc.sim.flushArp(n);
}

async function ftpServer(vmid: number): Promise<void> {
  const g = sc.sim.guests.get(vmid);
  if (!g) throw new Error(`no guest ${vmid}`);
  const dir = path.join(sc.sim.root, `ftp${vmid}`);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "hello.txt"), `hello from ${vmid}\n`);
  const server = sc.sim.spawn(g.ns, [
    PYTHON,
    "-m",
    "pyftpdlib",
    "-i",
    g.ip,
    "-p",
    "21",
    "-d",
    dir,
    "-r",
    "30000-30009",
  ]);
  const up = await waitFor(
    async () => (await sc.sim.exec(g.ns, ["ss", "-Hltn", "sport = :21"])).stdout.trim() !== "",
    5000,
    50,
  );
  if (!up) throw new Error(`pyftpdlib did not listen in vm${vmid}:\n${server.output()}`);
}

const OK_108: Session = { login: true, data: "hello from 108\n", error: null };
const OK_107: Session = { login: true, data: "hello from 107\n", error: null };

beforeAll(async () => {
  sc = await createScenario({
    guests: [
      { vmid: 107, kind: "qemu", firewall: true },
      { vmid: 108, kind: "qemu", firewall: true },
      // The FTP client next to vm108: a plain NIC, no Proxmox config (not a guest pve-nat sees).
      { vmid: 110, kind: "qemu", firewall: false, writeConf: false },
    ],
  });
  await sc.sim.writePve("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n");
  await sc.sim.writePve("nodes/pve1/host.fw", "[OPTIONS]\nnf_conntrack_helpers: ftp\n");
  await sc.sim.writePve("firewall/107.fw", fw("IN ACCEPT -p tcp -dport 21 # NAT:21"));
  await sc.sim.writePve("firewall/108.fw", fw("IN ACCEPT -p tcp -dport 21"));
  const r = await sc.sim.exec(node(), ["iptables-restore", "--noflush"], { input: PVEFW });
  if (r.code !== 0) {
    throw new Error(
      `pve-firewall's rules do not load here (does the kernel have the CT target and the ftp ` +
        `conntrack helper, nf_conntrack_ftp?): ${r.stderr.trim()}`,
    );
  }
  for (const vmid of [107, 108]) {
    await sc.sim.setRunning(vmid, true);
    await ftpServer(vmid);
  }
}, 60_000);

afterAll(async () => {
  await sc?.destroy();
});

describe("conntrack helpers behind firewall=1 NICs (real passive FTP)", () => {
  it("Proxmox alone: FTP to a firewall=1 guest works, one conntrack entry per connection", async () => {
    await fresh();
    expect(await ftp(guestNs(110), "10.10.10.108")).toEqual(OK_108);
    expect(await controlEntries("10.10.10.108")).toHaveLength(1);
  });

  it("the zone rule pve-nat used to insert: data connections dropped, two entries, NAT guest too", async () => {
    await sc.sim.iptables(node(), ["-t", "raw", "-I", "PREROUTING", "1", ...OLD_ZONE]);
    await sc.sim.iptables(node(), ["-t", "nat", "-A", "PREROUTING", ...OLD_DNAT]);
    await sc.sim.sysctl(node(), "net.ipv4.conf.fwbr107i0.arp_ignore", "1");
    try {
      await fresh();
      const s108 = await ftp(guestNs(110), "10.10.10.108");
      expect(s108.login).toBe(true);
      expect(s108.data).toBeNull();
      expect(s108.error).toMatch(/timed out|TimeoutError/);
      const entries = await controlEntries("10.10.10.108");
      expect(entries).toHaveLength(2);
      expect(entries.filter((l) => /\bzone=1\b/.test(l))).toHaveLength(1);

      const s107 = await ftp(sc.sim.ns.clientA, ADDR.public);
      expect(s107.login).toBe(true);
      expect(s107.data).toBeNull();
    } finally {
      await sc.sim.iptables(node(), ["-t", "raw", "-D", "PREROUTING", ...OLD_ZONE]);
      await sc.sim.iptables(node(), ["-t", "nat", "-D", "PREROUTING", ...OLD_DNAT]);
    }
  });

  describe("with pve-nat running", () => {
    beforeAll(async () => {
      await sc.startDaemon();
      const want = [
        "-A PVENAT-RAW -i fwbr107i0 -p tcp -m tcp --dport 21 -j CT --helper ftp --zone 1",
        "-A PVENAT-RAW -i fwbr107i0 -j CT --zone 1",
      ];
      const live = async () =>
        (await sc.sim.iptablesSave(node(), "raw"))
          .split("\n")
          .filter((l) => l.startsWith("-A PVENAT-RAW"));
      const ok = await waitFor(
        async () => (await live()).join("\n") === want.join("\n"),
        10_000,
        100,
      );
      expect(ok ? want : await live()).toEqual(want);
    }, 30_000);

    it("FTP to the firewall=1 guest without NAT rules works as without pve-nat, one entry", async () => {
      await fresh();
      expect(await ftp(guestNs(110), "10.10.10.108")).toEqual(OK_108);
      const entries = await controlEntries("10.10.10.108");
      expect(entries).toHaveLength(1);
      expect(entries[0]).not.toMatch(/\bzone=/);
    });

    it("forwarded FTP to the NAT guest works: the helper rides in its zone", async () => {
      await fresh();
      expect(await ftp(sc.sim.ns.clientA, ADDR.public)).toEqual(OK_107);
      // The routed pass (zone 0, DNATed) and the fwbr pass (zone 1): both with the helper.
      const entries = await controlEntries(ADDR.public);
      expect(entries).toHaveLength(1);
      const zoned = await controlEntries("10.10.10.107");
      expect(zoned.filter((l) => /\bzone=1\b/.test(l))).toHaveLength(1);
    });
  });
});
