// Issue 11: `pve-nat check` on the live node names every reason a forward cannot carry traffic.
// One scenario per cause, each on a simulated node with real traffic (SPEC §7):
//   1. make the cause and show that the forward really fails,
//   2. `check --json`, run inside the node's namespace, names exactly that cause,
//   3. apply the fix the message gives (parsed from the message, not written here),
//   4. traffic passes and the diagnostic is gone.
//
// Node A — guest 107, plain NIC, no Proxmox firewall (a Docker-style host):
//   firewall/107.fw: NAT:822 → :22 on the node's address, NAT:203.0.113.11:823 → :22 on a
//   second public address of vmbr0. Causes: FORWARD policy DROP (bare, and with Docker's
//   chains), a wrong guest gateway, the public address removed; checked without traffic (the
//   forwards keep working): the daemon stopped, the hookscript unset or unusable.
// Node B — guest 108, firewall=1 NIC, datacenter and guest firewall on, with the filter rules
//   pve-firewall compiles from firewall/108.fw (as conntrack-helpers.test.ts simulates them).
//   Causes: the rule accepting the forwarded traffic removed (the NAT rule's compatible form,
//   `-sport`, cannot accept it); FORWARD policy DROP beside pve-firewall's chains (Docker on a
//   Proxmox node): its physdev matches must not hide the routed pass's drop.
// Node C — guest 109, firewall=1 NIC, the Proxmox firewall off (no cluster.fw): FORWARD policy
//   DROP drops both the routed pass and the pass across fwbr109i0 (its own conntrack zone, so
//   not "DNAT" there): check names both, and only both fixes together let traffic through.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADDR } from "./harness.js";
import type { ProbeResult } from "./probe.js";
import { createScenario, type PlanJson, type Scenario, within } from "./scenario.js";

type Diag = PlanJson["diagnostics"][number];

const SECOND_PUBLIC = "203.0.113.11";
const BAD_GW = "10.10.10.254";

/** Everything `check` found that is not an info, minus what the healthy node already had. */
function newFindings(now: Diag[], baseline: Diag[]): Diag[] {
  const key = (d: Diag) => `${d.file}\0${d.line}\0${d.severity}\0${d.message}`;
  const before = new Set(baseline.map(key));
  return now.filter((d) => d.severity !== "info" && !before.has(key(d)));
}

async function check(sc: Scenario): Promise<{ code: number | null; diagnostics: Diag[] }> {
  const r = await sc.cli(["check", "--json"]);
  try {
    return { code: r.code, diagnostics: (JSON.parse(r.stdout) as PlanJson).diagnostics };
  } catch {
    throw new Error(`check --json (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

/** The fix: the text after " — " in a diagnostic's message. */
function fixOf(d: Diag | undefined): string {
  const fix = d?.message.split(" — ")[1];
  if (!fix) throw new Error(`no fix in ${JSON.stringify(d)}`);
  return fix;
}

const shown = (r: ProbeResult) => (r.status === "data" ? r.data.trim() : r.status);

// ---------------------------------------------------------------------------------------------

describe("node A: a plain NIC guest, no Proxmox firewall", () => {
  let sc: Scenario;
  let baseline: Diag[] = [];
  const node = () => sc.sim.ns.node;
  const guestNs = () => sc.sim.guests.get(107)?.ns ?? "";
  const CONF = "nodes/pve1/qemu-server/107.conf";

  /** One connection from clientA; "data …" only when the guest answered. */
  const ssh = async (addr: string, port: number, ms = 1500) =>
    shown(await sc.sim.tcpProbe(sc.sim.ns.clientA, addr, port, { timeoutMs: ms }));
  const OK_822 = `SSH-2.0-vm107 from=${ADDR.clientA}`;
  /** Bounded: the forward answers within 5 s (one probe per attempt, at most 1 s each). */
  const answers = (addr: string, port: number) =>
    within(async () => (await ssh(addr, port, 1000)) === OK_822, 5000, 100);

  beforeAll(async () => {
    sc = await createScenario({ guests: [{ vmid: 107, kind: "qemu", plug: false }] });
    await sc.sim.writePve(
      "firewall/107.fw",
      [
        "[RULES]",
        "IN ACCEPT -p tcp -dport 22 # NAT:822 ssh",
        `IN ACCEPT -p tcp -dport 22 # NAT:${SECOND_PUBLIC}:823 ssh on the second address`,
        "",
      ].join("\n"),
    );
    await sc.sim.execOk(node(), ["ip", "addr", "add", `${SECOND_PUBLIC}/24`, "dev", "vmbr0"]);
    await sc.startDaemon();
    await sc.boot(107);
    await sc.sim.tcpService(guestNs(), 22, "SSH-2.0-vm107");
    baseline = (await check(sc)).diagnostics;
  }, 60_000);
  afterAll(async () => {
    await sc?.destroy();
  });

  it("healthy: both forwards answer, and check has no finding beyond infos (exit 0)", async () => {
    expect(await answers(ADDR.public, 822)).not.toBeNull();
    expect(await answers(SECOND_PUBLIC, 823)).not.toBeNull();
    const r = await check(sc);
    expect(r.diagnostics.filter((d) => d.severity !== "info")).toEqual([]);
    // The infos it does have: no hookscript on the guest.
    expect(r.diagnostics.map((d) => `${d.file} ${d.severity}`)).toEqual([`${CONF} info`]);
    expect(r.code).toBe(0);
  });

  it.each([
    ["bare", [] as string[][]],
    [
      "with Docker's chains",
      [
        ["-N", "DOCKER"],
        ["-N", "DOCKER-USER"],
        ["-A", "DOCKER-USER", "-j", "RETURN"],
        ["-A", "FORWARD", "-j", "DOCKER-USER"],
        ["-A", "FORWARD", "-o", "docker0", "-j", "DOCKER"],
      ],
    ],
  ])("FORWARD policy DROP (%s): named, fixed by the rule it gives", async (_name, setup) => {
    const docker = setup.length > 0;
    try {
      for (const args of setup) await sc.sim.iptables(node(), args);
      await sc.sim.iptables(node(), ["-P", "FORWARD", "DROP"]);
      expect(await ssh(ADDR.public, 822)).toBe("timeout");

      const r = await check(sc);
      expect(r.code).toBe(1);
      const found = newFindings(r.diagnostics, baseline);
      // One per forward, both the FORWARD policy, nothing else.
      expect(found.map((d) => `${d.file}:${d.line} ${d.severity}`)).toEqual([
        "iptables:filter:0 error",
        "iptables:filter:0 error",
      ]);
      const mine = found.find((d) => d.message.startsWith("forward firewall/107.fw:2 "));
      expect(mine?.message).toMatch(
        docker
          ? /the filter FORWARD policy is DROP and no rule accepts it \(a DOCKER chain exists: Docker sets this policy when it starts\) — /
          : /the filter FORWARD policy is DROP and no rule accepts it — /,
      );

      const cmd =
        /^accept forwarded connections in both directions: iptables (.+?) \(and keep/.exec(
          fixOf(mine),
        );
      const args = (cmd?.[1] ?? "").split(" ");
      expect(args.slice(0, 2)).toEqual(["-I", docker ? "DOCKER-USER" : "FORWARD"]);
      await sc.sim.iptables(node(), args);

      expect(await answers(ADDR.public, 822)).not.toBeNull();
      expect(await answers(SECOND_PUBLIC, 823)).not.toBeNull();
      const after = await check(sc);
      expect(newFindings(after.diagnostics, baseline)).toEqual([]);
      expect(after.code).toBe(0);
    } finally {
      await sc.sim.iptables(node(), ["-P", "FORWARD", "ACCEPT"]);
      await sc.sim.iptables(node(), ["-F", "FORWARD"]);
      if (docker) {
        for (const c of ["DOCKER-USER", "DOCKER"]) await sc.sim.iptables(node(), ["-F", c]);
        for (const c of ["DOCKER-USER", "DOCKER"]) await sc.sim.iptables(node(), ["-X", c]);
      }
    }
  });

  it("a wrong guest gateway: named at the guest config, fixed by the gw= it gives", async () => {
    const conf = await readFile(path.join(sc.sim.root, "etc/pve", CONF), "utf8");
    expect(conf).toContain(`gw=${ADDR.gateway}`);
    try {
      // The guest was set up (cloud-init) with a gateway that is not the node: its replies go
      // to an address nobody answers for.
      await sc.sim.writePve(CONF, conf.replace(`gw=${ADDR.gateway}`, `gw=${BAD_GW}`));
      await sc.sim.execOk(guestNs(), ["ip", "route", "replace", "default", "via", BAD_GW]);
      expect(await ssh(ADDR.public, 822)).toBe("timeout");

      const r = await check(sc);
      expect(r.code).toBe(1);
      const found = newFindings(r.diagnostics, baseline);
      expect(found).toEqual([
        {
          file: CONF,
          line: 0,
          severity: "error",
          message: `guest 107 net0: gw=${BAD_GW} is not an address of this node on vmbr1 (${ADDR.gateway}): its replies to forwarded traffic never reach pve-nat's NAT — set gw=${ADDR.gateway} (qm set 107 --ipconfig0 …,gw=${ADDR.gateway}; the guest takes it at its next start)`,
        },
      ]);

      // The fix: qm set (the config) and the guest's next start (its route).
      const gw = /^set gw=(\S+) /.exec(fixOf(found[0]))?.[1] ?? "";
      expect(gw).toBe(ADDR.gateway);
      await sc.sim.writePve(CONF, conf.replace(`gw=${ADDR.gateway}`, `gw=${gw}`));
      await sc.sim.execOk(guestNs(), ["ip", "route", "replace", "default", "via", gw]);

      expect(await answers(ADDR.public, 822)).not.toBeNull();
      const after = await check(sc);
      expect(newFindings(after.diagnostics, baseline)).toEqual([]);
      expect(after.code).toBe(0);
    } finally {
      await sc.sim.writePve(CONF, conf);
      await sc.sim.execOk(guestNs(), ["ip", "route", "replace", "default", "via", ADDR.gateway]);
    }
  });

  it("the public address removed from the external interface: named, fixed by the ip addr add it gives", async () => {
    try {
      await sc.sim.execOk(node(), ["ip", "addr", "del", `${SECOND_PUBLIC}/24`, "dev", "vmbr0"]);
      // The router forgets where the address was (as it would once its ARP entry expires).
      await sc.sim.flushArp(sc.sim.ns.inet);
      // Nobody answers ARP for it: no connection (a timeout, or the router's "unreachable").
      expect(["timeout", "error"]).toContain(await ssh(SECOND_PUBLIC, 823));
      expect(await ssh(ADDR.public, 822)).toBe(OK_822);

      const r = await check(sc);
      expect(r.code).toBe(1);
      const found = newFindings(r.diagnostics, baseline);
      expect(found).toEqual([
        {
          file: "iptables:nat",
          line: 0,
          severity: "error",
          message: `forward firewall/107.fw:3 (tcp ${SECOND_PUBLIC}:823 → 10.10.10.107:22): the public address ${SECOND_PUBLIC} is not on vmbr0 (in vmbr0's subnet, but no interface of this node holds it: nobody answers ARP for it): nothing arrives for it — add it: ip addr add ${SECOND_PUBLIC}/24 dev vmbr0 (and in /etc/network/interfaces), or use an address of vmbr0 in the rule or public_address`,
        },
      ]);

      const cmd = /^add it: ip addr add (\S+) dev (\S+) /.exec(fixOf(found[0]));
      expect(cmd?.slice(1)).toEqual([`${SECOND_PUBLIC}/24`, "vmbr0"]);
      await sc.sim.execOk(node(), ["ip", "addr", "add", cmd?.[1] ?? "", "dev", cmd?.[2] ?? ""]);

      expect(await answers(SECOND_PUBLIC, 823)).not.toBeNull();
      const after = await check(sc);
      expect(newFindings(after.diagnostics, baseline)).toEqual([]);
      expect(after.code).toBe(0);
    } finally {
      await sc.sim.exec(node(), ["ip", "addr", "add", `${SECOND_PUBLIC}/24`, "dev", "vmbr0"]);
    }
  });

  it("the daemon stopped: a warning (its socket under --root), gone once it runs", async () => {
    expect(await sc.stopDaemon()).toBe(0);
    try {
      const r = await check(sc);
      expect(newFindings(r.diagnostics, baseline)).toEqual([
        {
          file: "pve-nat.service",
          line: 0,
          severity: "warning",
          message:
            "the daemon is not running: no guest start, stop or edit changes the forwards until it runs — systemctl restart pve-nat",
        },
      ]);
      // A warning: the forwards it left in place still work.
      expect(r.code).toBe(0);
    } finally {
      await sc.startDaemon();
    }
    expect(newFindings((await check(sc)).diagnostics, baseline)).toEqual([]);
  });

  it("the hookscript: unset (info), then each reason the guest would not start, until none", async () => {
    const conf = await readFile(path.join(sc.sim.root, "etc/pve", CONF), "utf8");
    const hookFindings = async () =>
      (await check(sc)).diagnostics.filter((d) => d.file === CONF).map((d) => d.message);
    try {
      expect(await hookFindings()).toEqual([
        "guest 107 has NAT rules but no hookscript: its forwards go live only at the next poll after it starts — pve-nat attach 107",
      ]);
      // `pve-nat attach` sets it; the built-in `local` storage has no snippets content.
      await sc.sim.writePve(CONF, `${conf}hookscript: local:snippets/pve-nat-hook\n`);
      const [storage] = await hookFindings();
      expect(storage).toBe(
        "hookscript local:snippets/pve-nat-hook: storage local does not allow snippets content: Proxmox refuses to start guest 107 — pvesm set local --content iso,vztmpl,backup,snippets",
      );
      // What that pvesm command writes.
      const content = /--content (\S+)$/.exec(
        fixOf({ file: CONF, line: 0, severity: "error", message: storage ?? "" }),
      )?.[1];
      await sc.sim.writePve(
        "storage.cfg",
        `dir: local\n\tpath /var/lib/vz\n\tcontent ${content}\n`,
      );
      expect(await hookFindings()).toEqual([
        "hookscript local:snippets/pve-nat-hook: /var/lib/vz/snippets/pve-nat-hook does not exist: Proxmox refuses to start guest 107 — reinstall pve-nat (it ships the snippet) or pve-nat attach --force 107",
      ]);
      const snippet = path.join(sc.sim.root, "var/lib/vz/snippets/pve-nat-hook");
      await mkdir(path.dirname(snippet), { recursive: true });
      await writeFile(snippet, '#!/bin/sh\nexec pve-nat hook "$@"\n', { mode: 0o755 });
      expect(await hookFindings()).toEqual([]);
    } finally {
      await sc.sim.writePve(CONF, conf);
      await sc.sim.removePve("storage.cfg");
    }
  });

  it("check 107 in human form: `where: severity: what — the fix` lines", async () => {
    try {
      await sc.sim.iptables(node(), ["-P", "FORWARD", "DROP"]);
      const r = await sc.cli(["check", "107"]);
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(
        /^iptables:filter: error: forward firewall\/107\.fw:2 \(tcp 203\.0\.113\.10:822 → 10\.10\.10\.107:22\): the filter FORWARD policy is DROP and no rule accepts it — accept forwarded connections/m,
      );
      expect(r.stdout).toMatch(/^2 errors, 0 warnings, 2 forwards\n$/m);
    } finally {
      await sc.sim.iptables(node(), ["-P", "FORWARD", "ACCEPT"]);
    }
  });
});

// ---------------------------------------------------------------------------------------------

/** firewall/108.fw: the NAT rule in the compatible form (its filter rule matches source port
 *  823, which no client uses) and the rule that really lets clients in. */
const NAT_RULE = "IN ACCEPT -p tcp -sport 823 -dport 22 # NAT ssh (compatible form)";
const SSH_RULE = "IN SSH(ACCEPT) -source clients";
const fw108 = (rules: string[]) => `[OPTIONS]\nenable: 1\n\n[RULES]\n${rules.join("\n")}\n`;

/** The iptables match pve-firewall compiles for one of the rule shapes used here. */
function compiled(rule: string): string[] {
  if (rule === NAT_RULE) return ["-p", "tcp", "-m", "tcp", "--sport", "823", "--dport", "22"];
  if (rule === SSH_RULE)
    return ["-s", "198.51.100.0/24", "-p", "tcp", "-m", "tcp", "--dport", "22"];
  const m = /^IN ACCEPT(?: -source (\S+))? -p (tcp|udp) -dport (\d+)$/.exec(rule);
  if (!m) throw new Error(`this test's pve-firewall does not compile: ${rule}`);
  return [...(m[1] ? ["-s", m[1]] : []), "-p", m[2] ?? "", "-m", m[2] ?? "", "--dport", m[3] ?? ""];
}

/** What pve-firewall applies for guest 108 (IN rules only, policy_in DROP), rewritten whole as
 *  it does on every compile. */
function pvefw(rules: string[]): string {
  return [
    "*filter",
    ":PVEFW-FORWARD - [0:0]",
    ":PVEFW-FWBR-IN - [0:0]",
    ":tap108i0-IN - [0:0]",
    "-A PVEFW-FORWARD -m conntrack --ctstate INVALID -j DROP",
    "-A PVEFW-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A PVEFW-FORWARD -m physdev --physdev-in fwln+ --physdev-is-bridged -j PVEFW-FWBR-IN",
    "-A PVEFW-FWBR-IN -m physdev --physdev-out tap108i0 --physdev-is-bridged -j tap108i0-IN",
    ...rules.map((r) => `-A tap108i0-IN ${compiled(r).join(" ")} -j ACCEPT`),
    "-A tap108i0-IN -j DROP",
    "COMMIT",
    "",
  ].join("\n");
}

describe("node B: a firewall=1 guest, datacenter and guest firewall on", () => {
  let sc: Scenario;
  let baseline: Diag[] = [];
  const node = () => sc.sim.ns.node;
  const OK = `SSH-2.0-vm108 from=${ADDR.clientA}`;
  const ssh = async (ms = 1500) =>
    shown(await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, 823, { timeoutMs: ms }));
  /** The admin's edit and pve-firewall's compile of it. */
  const setRules = async (rules: string[]) => {
    await sc.sim.writePve("firewall/108.fw", fw108(rules));
    await sc.sim.execOk(node(), ["iptables-restore", "--noflush", "-w", "5"], {
      input: pvefw(rules),
    });
  };

  beforeAll(async () => {
    sc = await createScenario({
      guests: [{ vmid: 108, kind: "qemu", firewall: true, plug: false }],
    });
    await sc.sim.writePve(
      "firewall/cluster.fw",
      "[OPTIONS]\nenable: 1\n\n[ALIASES]\nclients 198.51.100.0/24\n",
    );
    await sc.sim.iptables(node(), ["-N", "PVEFW-FORWARD"]);
    await sc.sim.iptables(node(), ["-A", "FORWARD", "-j", "PVEFW-FORWARD"]);
    await setRules([NAT_RULE, SSH_RULE]);
    await sc.startDaemon();
    await sc.boot(108);
    const g = sc.sim.guests.get(108);
    if (!g) throw new Error("no guest 108");
    await sc.sim.tcpService(g.ns, 22, "SSH-2.0-vm108");
    baseline = (await check(sc)).diagnostics;
  }, 60_000);
  afterAll(async () => {
    await sc?.destroy();
  });

  it("healthy: the forward answers; the compatible form's warning is all check says", async () => {
    expect(await within(async () => (await ssh(1000)) === OK, 5000, 100)).not.toBeNull();
    const r = await check(sc);
    expect(r.diagnostics.filter((d) => d.severity !== "info")).toEqual([
      expect.objectContaining({ file: "firewall/108.fw", line: 5, severity: "warning" }),
    ]);
    expect(r.code).toBe(0);
  });

  it("the accepting rule removed: the guest firewall drops it, named; the rule it gives fixes it", async () => {
    try {
      await setRules([NAT_RULE]);
      expect(await ssh()).toBe("timeout");

      const r = await check(sc);
      expect(r.code).toBe(1);
      const found = newFindings(r.diagnostics, baseline);
      expect(found).toEqual([
        {
          file: "firewall/108.fw",
          line: 0,
          severity: "error",
          message: `forward firewall/108.fw:5 (tcp ${ADDR.public}:823 → 10.10.10.108:22): the guest firewall of 108 (net0 firewall=1, enable: 1) drops the forwarded traffic after DNAT: policy_in is DROP and no IN rule accepts tcp port 22 to 10.10.10.108 — add "IN ACCEPT -p tcp -dport 22" to [RULES] of firewall/108.fw`,
        },
      ]);

      const rule = /^add "([^"]+)" to \[RULES\] of firewall\/108\.fw$/.exec(fixOf(found[0]))?.[1];
      expect(rule).toBe("IN ACCEPT -p tcp -dport 22");
      await setRules([NAT_RULE, rule ?? ""]);

      expect(await within(async () => (await ssh(1000)) === OK, 5000, 100)).not.toBeNull();
      const after = await check(sc);
      expect(newFindings(after.diagnostics, baseline)).toEqual([]);
      expect(after.code).toBe(0);
    } finally {
      await setRules([NAT_RULE, SSH_RULE]);
    }
  });

  it("FORWARD policy DROP under pve-firewall's chains: named (its fwbr pass is the guest firewall's), fixed", async () => {
    try {
      await sc.sim.iptables(node(), ["-P", "FORWARD", "DROP"]);
      expect(await ssh()).toBe("timeout");
      const found = newFindings((await check(sc)).diagnostics, baseline);
      expect(found.map((d) => [d.file, d.severity])).toEqual([["iptables:filter", "error"]]);
      expect(found[0]?.message).toMatch(
        /^forward firewall\/108\.fw:5 .*: the filter FORWARD policy is DROP and no rule accepts it — /,
      );
      const args = /: iptables (.+?) \(and keep/.exec(fixOf(found[0]))?.[1]?.split(" ") ?? [];
      expect(args.slice(0, 2)).toEqual(["-I", "FORWARD"]);
      await sc.sim.iptables(node(), args);
      expect(await within(async () => (await ssh(1000)) === OK, 5000, 100)).not.toBeNull();
      expect(newFindings((await check(sc)).diagnostics, baseline)).toEqual([]);
    } finally {
      await sc.sim.iptables(node(), ["-P", "FORWARD", "ACCEPT"]);
      await sc.sim
        .iptables(node(), ["-D", "FORWARD", "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"])
        .catch(() => "");
    }
  });
});

describe("node C: a firewall=1 guest, the Proxmox firewall off", () => {
  let sc: Scenario;
  let baseline: Diag[] = [];
  const node = () => sc.sim.ns.node;
  const OK = `SSH-2.0-vm109 from=${ADDR.clientA}`;
  const ssh = async (ms = 1500) =>
    shown(await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, 822, { timeoutMs: ms }));

  beforeAll(async () => {
    sc = await createScenario({
      guests: [{ vmid: 109, kind: "lxc", firewall: true, plug: false }],
    });
    await sc.sim.writePve("firewall/109.fw", "[RULES]\nIN ACCEPT -p tcp -dport 22 # NAT:822\n");
    await sc.startDaemon();
    await sc.boot(109);
    const g = sc.sim.guests.get(109);
    if (!g) throw new Error("no guest 109");
    await sc.sim.tcpService(g.ns, 22, "SSH-2.0-vm109");
    baseline = (await check(sc)).diagnostics;
  }, 60_000);
  afterAll(async () => {
    await sc?.destroy();
  });

  it("FORWARD policy DROP: both passes named; the routed fix alone is not enough, both are", async () => {
    expect(await within(async () => (await ssh(1000)) === OK, 5000, 100)).not.toBeNull();
    expect(newFindings((await check(sc)).diagnostics, baseline)).toEqual([]);
    try {
      await sc.sim.iptables(node(), ["-P", "FORWARD", "DROP"]);
      expect(await ssh()).toBe("timeout");

      const found = newFindings((await check(sc)).diagnostics, baseline);
      expect(found.map((d) => [d.file, d.severity])).toEqual([
        ["iptables:filter", "error"],
        ["iptables:filter", "error"],
      ]);
      const routed = found.find((d) => / no rule accepts it — /.test(d.message));
      const bridged = found.find((d) =>
        / no rule accepts its bridged pass through fwbr109i0 \(net0 firewall=1\) — /.test(
          d.message,
        ),
      );
      const command = (d: Diag | undefined) => {
        const m = /: iptables (.+?) \(and keep/.exec(fixOf(d));
        if (!m?.[1]) throw new Error(`no iptables command in ${d?.message}`);
        return m[1].split(" ");
      };

      await sc.sim.iptables(node(), command(routed));
      expect(await ssh()).toBe("timeout");
      const left = newFindings((await check(sc)).diagnostics, baseline);
      expect(left).toEqual([bridged]);

      await sc.sim.iptables(node(), command(bridged));
      expect(await within(async () => (await ssh(1000)) === OK, 5000, 100)).not.toBeNull();
      expect(newFindings((await check(sc)).diagnostics, baseline)).toEqual([]);
    } finally {
      await sc.sim.iptables(node(), ["-P", "FORWARD", "ACCEPT"]);
      await sc.sim.iptables(node(), ["-F", "FORWARD"]);
    }
  });
});
