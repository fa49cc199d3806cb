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
  // Inside a namespace `check` reads the live state as the node's (cli/live.ts): give it the
  // node's two bridges, so the public address and the guests' gateway are where BASE says.
  for (const [dev, addr] of [
    ["vmbr0", "203.0.113.10/24"],
    ["vmbr1", "10.10.10.1/24"],
  ]) {
    execFileSync("ip", ["-n", ns, "link", "add", dev as string, "type", "bridge"]);
    execFileSync("ip", ["-n", ns, "addr", "add", addr as string, "dev", dev as string]);
  }
}, 120_000);

afterAll(async () => {
  for (const b of background.splice(0)) await b.kill9();
  spawnSync("ip", ["netns", "del", ns]);
  await rm(root, { recursive: true, force: true });
});

describe("pve-nat check", () => {
  // What a node without the daemon and without hookscripts says about itself (live diagnosis,
  // issue 11): a warning for the daemon, an info per guest.
  const NO_DAEMON =
    "pve-nat.service: warning: the daemon is not running: no guest start, stop or edit changes the forwards until it runs — systemctl restart pve-nat\n";
  const noHook = (file: string, vmid: number) =>
    `${file}: info: guest ${vmid} has NAT rules but no hookscript: its forwards go live only at the next poll after it starts — pve-nat attach ${vmid}\n`;

  it("a clean node: exit 0, the live findings and a summary line", async () => {
    const dir = await tree(BASE);
    const r = run(["check", "--root", dir]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(
      noHook("nodes/pve1/lxc/105.conf", 105) +
        noHook("nodes/pve1/qemu-server/107.conf", 107) +
        NO_DAEMON +
        "0 errors, 1 warning, 3 forwards\n",
    );
    expect(r.code).toBe(0);
  });

  it("outside a network namespace --root is not the live node: one info, nothing live judged", async () => {
    const dir = await tree(BASE);
    const cmd = BIN ? [BIN] : [process.execPath, BUNDLE];
    const r = spawnSync(cmd[0] as string, [...cmd.slice(1), "check", "--root", dir], {
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(r.stdout).toBe(
      "iptables: info: cannot read the node's live state (--root outside a network namespace): forwards not checked against the filter table, the node's addresses, the daemon and the hookscripts\n" +
        "0 errors, 0 warnings, 3 forwards\n",
    );
    expect(r.status).toBe(0);
  });

  it("check <vmid>: that guest's forwards and files; another guest's broken file is not its business", async () => {
    const dir = await tree({
      ...BASE,
      "etc/pve/firewall/105.fw":
        "[RULES]\nIN ACCEPT -p udp -dport 53 # NAT:5353\nIN ACCEPT -dport 1\n",
      "etc/pve/nodes/pve1/qemu-server/107.conf": BASE[
        "etc/pve/nodes/pve1/qemu-server/107.conf"
      ]?.replace("gw=10.10.10.1", "gw=10.10.10.254") as string,
    });
    const all = run(["check", "--root", dir]);
    expect(all.stdout).toMatch(/^firewall\/105\.fw:3: error: /m);
    expect(all.stdout).toMatch(
      /^nodes\/pve1\/qemu-server\/107\.conf: error: guest 107 net0: gw=10\.10\.10\.254/m,
    );
    expect(all.code).toBe(1);

    const only105 = run(["check", "105", "--root", dir]);
    expect(only105.stdout).toMatch(/^firewall\/105\.fw:3: error: /m);
    expect(only105.stdout).not.toMatch(/107/);
    expect(only105.stdout).toMatch(/, 1 forward\n$/);
    expect(only105.code).toBe(1);

    const only107 = JSON.parse(run(["check", "107", "--json", "--root", dir]).stdout);
    expect(only107.forwards.map((f: { origin: string }) => f.origin)).toEqual([
      "firewall/107.fw:5",
      "firewall/107.fw:6",
    ]);
    expect(
      only107.diagnostics.map((d: { file: string; severity: string }) => `${d.file} ${d.severity}`),
    ).toEqual([
      "nodes/pve1/qemu-server/107.conf error",
      "nodes/pve1/qemu-server/107.conf info",
      "pve-nat.service warning",
    ]);
    expect(run(["check", "107", "--root", dir]).code).toBe(1);
  });

  it("check <vmid> of a guest unknown here: exit 2 and why", async () => {
    const dir = await tree(BASE);
    const r = run(["check", "999", "--root", dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "pve-nat: guest 999 is not configured on node pve1 and has no firewall/999.fw\n",
    );
    expect(run(["check", "abc", "--root", dir]).code).toBe(2);
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
    expect(json).toMatchObject({ version: 1, node: "pve1" });
    expect(json.diagnostics).toEqual([
      expect.objectContaining({ file: "nodes/pve1/lxc/105.conf", line: 0, severity: "info" }),
      expect.objectContaining({ file: "nodes/pve1/qemu-server/107.conf", severity: "info" }),
      {
        file: "pve-nat.service",
        line: 0,
        severity: "warning",
        message: NO_DAEMON.replace(/^pve-nat\.service: warning: /, "").trimEnd(),
      },
    ]);
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
