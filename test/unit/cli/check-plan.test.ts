// `pve-nat check` and `pve-nat plan` through the bundle, on simulated nodes (temp --root trees).
// Every run happens inside a network namespace made for this file, so the host's own listening
// ports, interfaces and sockets never leak into the results.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Background } from "../../helpers/exec.js";
import { startGuest } from "../../helpers/simnode.js";

const ns = `pvenat-cli-${randomBytes(3).toString("hex")}`;
// Like the e2e tests: an installed/SEA binary from PVE_NAT_BIN, else the fresh bundle.
const BIN = process.env.PVE_NAT_BIN;
const BUNDLE = join(process.cwd(), "dist/pve-nat.cjs");
let root: string;
const background: Background[] = [];

function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const cmd = BIN ? [BIN] : [process.execPath, BUNDLE];
  const r = spawnSync("ip", ["netns", "exec", ns, ...cmd, ...args], {
    encoding: "utf8",
    timeout: 30_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function tree(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(root, "node-"));
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), text);
  }
  return dir;
}

const CONF = "etc/pve-nat/pve-nat.conf";
const BASE: Record<string, string> = {
  [CONF]: "node = pve1\npublic_address = 203.0.113.10\n",
  "etc/pve/firewall/cluster.fw": "[OPTIONS]\nenable: 1\n\n[ALIASES]\nremote_https 198.51.100.20\n",
  "etc/pve/nodes/pve1/qemu-server/107.conf":
    "name: web\nipconfig0: ip=10.10.10.107/24,gw=10.10.10.1\nnet0: virtio=BC:24:11:00:01:07,bridge=vmbr1,firewall=1\n",
  "etc/pve/nodes/pve1/lxc/105.conf":
    "hostname: dns\nnet0: name=eth0,bridge=vmbr1,ip=10.10.10.5/24,gw=10.10.10.1,type=veth\n",
  "etc/pve/firewall/107.fw": [
    "[OPTIONS]",
    "enable: 1",
    "",
    "[RULES]",
    "IN ACCEPT -p tcp -dport 22 # NAT:822",
    "OUT ACCEPT -dest 198.51.100.20 -p tcp -dport 443 # NAT",
    "IN ACCEPT -p tcp -dport 443 # an ordinary rule",
    "",
  ].join("\n"),
  "etc/pve/firewall/105.fw": "[RULES]\nIN ACCEPT -p udp -dport 53 # NAT:5353\n",
};

beforeAll(async () => {
  if (!BIN) execFileSync(process.execPath, ["scripts/bundle.mjs"], { stdio: "inherit" });
  root = await mkdtemp(join(tmpdir(), "pvenat-cli-"));
  execFileSync("ip", ["netns", "add", ns]);
  execFileSync("ip", ["-n", ns, "link", "set", "lo", "up"]);
}, 120_000);

afterAll(async () => {
  for (const b of background.splice(0)) await b.kill9();
  spawnSync("ip", ["netns", "del", ns]);
  await rm(root, { recursive: true, force: true });
});

describe("pve-nat check", () => {
  it("a clean node: exit 0, a summary line", async () => {
    const dir = await tree(BASE);
    const r = run(["check", "--root", dir]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("0 errors, 0 warnings, 3 forwards\n");
    expect(r.code).toBe(0);
  });

  it("global flags work before and after the subcommand", async () => {
    const dir = await tree(BASE);
    expect(run(["--root", dir, "check"]).code).toBe(0);
    expect(run(["--root", dir, "--node", "pve1", "check", "--json"]).code).toBe(0);
  });

  it("--json prints the SPEC §6 object, without restore", async () => {
    const dir = await tree(BASE);
    const r = run(["check", "--json", "--root", dir]);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json).toMatchObject({ version: 1, node: "pve1", diagnostics: [] });
    expect(json).not.toHaveProperty("restore");
    expect(json.forwards.map((f: { origin: string }) => f.origin)).toEqual([
      "firewall/105.fw:2",
      "firewall/107.fw:5",
      "firewall/107.fw:6",
    ]);
    expect(json.forwards[1]).toMatchObject({
      vmid: 107,
      direction: "in",
      proto: "tcp",
      public: { address: "203.0.113.10", ports: "822" },
      private: { address: "10.10.10.107", ports: "22" },
      state: "inactive",
    });
  });

  it.each<[string, Record<string, string>, RegExp]>([
    [
      "a bad config value",
      { [CONF]: "node = pve1\nhairpin = maybe\n" },
      /pve-nat\.conf:2: error: bad value for hairpin/,
    ],
    [
      "an unknown config key",
      { [CONF]: "node = pve1\nexternal_iface = vmbr1\n" },
      /pve-nat\.conf:2: error: unknown key external_iface/,
    ],
    [
      "a config section",
      { [CONF]: "[main]\nnode = pve1\n" },
      /pve-nat\.conf:1: error: sections are not supported/,
    ],
    [
      "an unparsable rule",
      { "etc/pve/firewall/107.fw": "[RULES]\nIN ACCEPT -p tcp -dport 22 -bogus 1\n" },
      /^firewall\/107\.fw:2: error: /m,
    ],
    [
      "an undefined alias",
      { "etc/pve/firewall/107.fw": "[RULES]\nIN ACCEPT -source nosuchalias -p tcp -dport 22\n" },
      /^firewall\/107\.fw:2: error: .*nosuchalias/im,
    ],
    [
      "a broken .fw of a guest on another node",
      { "etc/pve/firewall/300.fw": "[RULES]\nIN ACCEPT -dport 22\n" },
      /^firewall\/300\.fw:2: error: /m,
    ],
    [
      "a broken host.fw of another node",
      { "etc/pve/nodes/pve2/host.fw": "[RULES]\nIN ACCEPT -dport 22\n" },
      /^nodes\/pve2\/host\.fw:2: error: /m,
    ],
  ])("%s: exit 1 and a path:line: error: line", async (_title, change, line) => {
    const dir = await tree({ ...BASE, ...change });
    const r = run(["check", "--root", dir]);
    expect(r.stdout).toMatch(line);
    expect(r.code).toBe(1);
  });

  it("cannot run (config path is a directory): exit 2 and a message on stderr", async () => {
    const dir = await tree(BASE);
    const r = run(["check", "--root", dir, "--config", dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^pve-nat: .*cannot read: EISDIR/);
  });

  it("on a real host (no --root) it checks ip_forward", async () => {
    const dir = await tree({ "pve-nat.conf": "node = pve1\nip_forward = check\n" });
    execFileSync("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    const r = run(["check", "--config", join(dir, "pve-nat.conf")]);
    expect(r.stdout).toMatch(/^\/proc\/sys\/net\/ipv4\/ip_forward: error: IPv4 forwarding is off/m);
    expect(r.code).toBe(1);
  });
});

describe("pve-nat check, host prerequisites (in the test namespace)", () => {
  it("reports fwbr devices answering ARP until fixed (no forwards: no zone rule wanted)", async () => {
    const dir = await tree({
      "pve-nat.conf":
        "node = pve1\npublic_address = 203.0.113.10\nip_forward = ignore\nconntrack_zone_fix = yes\n",
    });
    const args = ["check", "--config", join(dir, "pve-nat.conf")];
    expect(run(args)).toMatchObject({ code: 0, stdout: "0 errors, 0 warnings, 0 forwards\n" });

    execFileSync("ip", ["-n", ns, "link", "add", "fwbr107i0", "type", "bridge"]);
    try {
      const broken = run(args);
      expect(broken.code).toBe(1);
      expect(broken.stdout).toMatch(
        /^\/proc\/sys\/net\/ipv4\/conf\/fwbr107i0\/arp_ignore: error: fwbr107i0 answers ARP \(arp_ignore=0\)/m,
      );
      // No active forward here: no zone rule is needed (issue 12: the zone is only for what
      // pve-nat NATs), so only the ARP setting is reported.
      expect(broken.stdout).not.toMatch(/^iptables:raw:/m);

      execFileSync("ip", [
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        "net.ipv4.conf.fwbr107i0.arp_ignore=1",
      ]);
      execFileSync("ip", ["netns", "exec", ns, "iptables-restore", "--noflush"], {
        input:
          "*raw\n:PVENAT-RAW - [0:0]\n-A PVENAT-RAW -i fwbr+ -j CT --zone 1\n-I PREROUTING 1 -j PVENAT-RAW\nCOMMIT\n",
      });
      expect(run(args)).toMatchObject({ code: 0, stdout: "0 errors, 0 warnings, 0 forwards\n" });
    } finally {
      spawnSync("ip", ["-n", ns, "link", "del", "fwbr107i0"]);
    }
  });
});

describe("pve-nat plan", () => {
  it("prints the forwards table, then the restore payload", async () => {
    const dir = await tree(BASE);
    const r = run(["plan", "--root", dir]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const [head, row105, row107] = r.stdout.split("\n");
    expect(head?.split(/\s+/)).toEqual([
      "VMID",
      "NAME",
      "DIR",
      "PROTO",
      "PUBLIC",
      "PRIVATE",
      "ADDR-FROM",
      "SOURCE",
      "STATE",
      "ORIGIN",
    ]);
    expect(row105?.split(/\s+/)).toEqual([
      "105",
      "dns",
      "in",
      "udp",
      "203.0.113.10:5353",
      "10.10.10.5:53",
      "config",
      "any",
      "inactive",
      "firewall/105.fw:2",
    ]);
    expect(row107?.split(/\s+/)).toEqual([
      "107",
      "web",
      "in",
      "tcp",
      "203.0.113.10:822",
      "10.10.10.107:22",
      "config",
      "any",
      "inactive",
      "firewall/107.fw:5",
    ]);
    expect(r.stdout).toMatch(/\n\*nat\n[\s\S]*COMMIT\n/);
  });

  it("--json includes restore; a running guest is active and gets chains", async () => {
    const dir = await tree(BASE);
    // LXC run state: the command socket in the namespace pve-nat runs in.
    const lxc = await startGuest({
      root: dir,
      vmid: 105,
      kind: "lxc",
      ns,
      track: (b) => background.push(b),
    });
    try {
      const json = JSON.parse(run(["plan", "--json", "--root", dir]).stdout) as {
        forwards: Array<{ vmid: number; state: string }>;
        restore: string;
      };
      expect(json.forwards.find((f) => f.vmid === 105)?.state).toBe("active");
      expect(json.forwards.find((f) => f.vmid === 107)?.state).toBe("inactive");
      expect(json.restore).toContain(":PVENAT-105-DNAT - [0:0]");
      expect(json.restore).not.toContain("PVENAT-107-DNAT");
    } finally {
      await lxc.kill9();
    }
  });

  it("plan <vmid> shows that guest's forwards only", async () => {
    const dir = await tree(BASE);
    const json = JSON.parse(run(["plan", "105", "--json", "--root", dir]).stdout);
    expect(json.forwards.map((f: { vmid: number }) => f.vmid)).toEqual([105]);
    expect(typeof json.restore).toBe("string");
  });

  it("public_address = auto takes the external interface's first IPv4", async () => {
    const dev = `pvn${randomBytes(2).toString("hex")}`;
    execFileSync("ip", ["-n", ns, "link", "add", dev, "type", "bridge"]);
    execFileSync("ip", ["-n", ns, "addr", "add", "203.0.113.77/24", "dev", dev]);
    execFileSync("ip", ["-n", ns, "addr", "add", "203.0.113.78/24", "dev", dev]);
    const dir = await tree({ ...BASE, [CONF]: `node = pve1\nexternal_interface = ${dev}\n` });
    const json = JSON.parse(run(["plan", "--json", "--root", dir]).stdout);
    expect(json.forwards[0].public.address).toBe("203.0.113.77");
    const none = await tree({
      ...BASE,
      [CONF]: "node = pve1\nexternal_interface = pvenat-none0\n",
    });
    const r = run(["check", "--root", none]);
    expect(r.stdout).toMatch(
      /pve-nat\.conf: warning: public_address = auto, but pvenat-none0 has no IPv4 address/,
    );
  });

  it.each([["abc"], ["0"], ["-5"]])("a bad vmid %j: exit 2", async (vmid) => {
    const dir = await tree(BASE);
    const r = run(["plan", "--root", dir, "--", vmid]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("pve-nat:");
  });
});
