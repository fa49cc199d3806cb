// The real daemon in a network namespace of its own (SPEC §7): hooks, the watcher, drift
// repair, flush/apply and SIGTERM against real iptables. Never touches the root namespace.
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Background } from "../../helpers/exec.js";
import { fwPath, natConf, startGuest, stopGuest, writeNode } from "../../helpers/simnode.js";

const REPO = path.resolve(import.meta.dirname, "../../..");
const NS = `pvenat-daemon-${randomBytes(3).toString("hex")}`;
const GRACE_MS = 1500;
/** The installed/single-executable pve-nat when set (as in the e2e tests), else the bundle. */
const BIN = process.env.PVE_NAT_BIN
  ? [process.env.PVE_NAT_BIN]
  : ["node", path.join(REPO, "dist/pve-nat.cjs")];

let root = "";
let daemon: ChildProcess | null = null;
let daemonLog = "";
/** Guest 107's run state (a simulated qemu). */
let sleeper: Background | null = null;

function sh(argv: string[], input?: string): string {
  return execFileSync(argv[0] as string, argv.slice(1), {
    encoding: "utf8",
    timeout: 15_000,
    input,
  });
}

function inNs(argv: string[], input?: string): string {
  return sh(["ip", "netns", "exec", NS, ...argv], input);
}

function pveNat(args: string[]): { code: number; stdout: string; stderr: string; ms: number } {
  const t0 = performance.now();
  try {
    const stdout = inNs([...BIN, ...args, "--root", root]);
    return { code: 0, stdout, stderr: "", ms: performance.now() - t0 };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { code: e.status, stdout: e.stdout, stderr: e.stderr, ms: performance.now() - t0 };
  }
}

function hookRun(vmid: number, phase: string): { code: number | null; stderr: string; ms: number } {
  const t0 = performance.now();
  const r = spawnSync(
    "ip",
    ["netns", "exec", NS, ...BIN, "hook", String(vmid), phase, "--root", root],
    { encoding: "utf8", timeout: 15_000 },
  );
  return { code: r.status, stderr: r.stderr, ms: performance.now() - t0 };
}

function save(table: "nat" | "raw"): string[] {
  return inNs(["iptables-save", "-t", table])
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("#"));
}

/** Lines not ours, with builtin policy counters zeroed (traffic moves them). */
function foreign(lines: string[]): string[] {
  return lines
    .filter((l) => !l.includes("PVENAT-"))
    .map((l) => l.replace(/^(:\S+ \S+) \[\d+:\d+\]$/, "$1 [0:0]"));
}

async function until<T>(
  what: string,
  fn: () => T | null | false,
  timeoutMs = 3000,
): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  for (;;) {
    const v = fn();
    if (v !== null && v !== false) return { value: v, ms: performance.now() - t0 };
    if (performance.now() - t0 > timeoutMs)
      throw new Error(`timed out waiting for ${what}\n${daemonLog.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const FOREIGN_NAT = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
`;
const FOREIGN_RAW = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i vmbr0 -p udp -m udp --dport 4789 -j NOTRACK
COMMIT
`;

async function writeFw(text: string): Promise<void> {
  await writeFile(fwPath(root, 107), text);
}

const startQemu = () => startGuest({ root, vmid: 107, kind: "qemu", ns: NS });

describe(`daemon in namespace ${NS}`, () => {
  let foreignNat: string[] = [];
  let foreignRaw: string[] = [];

  beforeAll(async () => {
    if (!process.env.PVE_NAT_BIN) {
      execFileSync(process.execPath, ["scripts/bundle.mjs"], { cwd: REPO, timeout: 120_000 });
    }
    root = await mkdtemp(path.join(tmpdir(), "pvenat-daemon-"));
    await writeNode({
      root,
      config: natConf({
        externalInterface: null,
        settings: {
          public_address: "203.0.113.10",
          poll_interval_ms: 200,
          drift_interval_ms: 1000,
          start_grace_ms: GRACE_MS,
          log_level: "debug",
        },
      }),
      guests: [
        {
          vmid: 107,
          kind: "qemu",
          conf: "name: web\nnet0: virtio=AA:BB:CC:DD:EE:01,bridge=vmbr1\nipconfig0: ip=10.10.10.107/24,gw=10.10.10.1\n",
          fw: "[RULES]\nIN ACCEPT -p tcp -dport 22 # NAT:822\n",
        },
      ],
    });
    sh(["ip", "netns", "add", NS]);
    inNs(["ip", "link", "set", "lo", "up"]);
    inNs(["ip", "link", "add", "vmbr0", "type", "bridge"]);
    inNs(["ip", "addr", "add", "203.0.113.10/24", "dev", "vmbr0"]);
    inNs(["ip", "link", "set", "vmbr0", "up"]);
    inNs(["iptables-restore", "--noflush"], FOREIGN_NAT);
    inNs(["iptables-restore", "--noflush"], FOREIGN_RAW);
    foreignNat = foreign(save("nat"));
    foreignRaw = foreign(save("raw"));

    daemon = spawn("ip", ["netns", "exec", NS, ...BIN, "daemon", "--root", root], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    daemon.stdout?.on("data", (d: Buffer) => {
      daemonLog += d.toString();
    });
    daemon.stderr?.on("data", (d: Buffer) => {
      daemonLog += d.toString();
    });
    await until("daemon ready", () => daemonLog.includes('"msg":"ready"'), 10_000);
    // The single executable runs its commands with its addon's posix_spawn (src/native/spawn.c);
    // the dev bundle has no addon and uses child_process.
    expect(daemonLog).toContain(
      `"spawn":"${process.env.PVE_NAT_BIN ? "posix_spawn" : "child_process"}"`,
    );
  }, 180_000);

  afterAll(async () => {
    if (daemon && daemon.exitCode === null) daemon.kill("SIGKILL");
    await sleeper?.kill9();
    try {
      sh(["ip", "netns", "del", NS]);
    } catch {
      // already gone
    }
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("ensures the entry chains and jumps at start, foreign rules untouched", () => {
    expect(save("nat")).toEqual(
      expect.arrayContaining(["-A PREROUTING -j PVENAT-PREROUTING", ":PVENAT-PREROUTING - [0:0]"]),
    );
    expect(save("nat")[save("nat").indexOf("-A PREROUTING -j PVENAT-PREROUTING") + 1]).toBe(
      "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
    );
    expect(foreign(save("nat"))).toEqual(foreignNat);
    expect(foreign(save("raw"))).toEqual(foreignRaw);
  });

  it("pre-start: the ack comes once the guest's chain is live; it goes when the grace ends unused", async () => {
    const r = hookRun(107, "pre-start");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/vm107 pre-start: 1 forward live/);
    expect(save("nat")).toEqual(
      expect.arrayContaining([
        "-A PVENAT-PREROUTING -i vmbr0 -j PVENAT-107-DNAT",
        expect.stringMatching(
          /^-A PVENAT-107-DNAT -d 203\.0\.113\.10\/32 -p tcp -m tcp --dport 822 .*-j DNAT --to-destination 10\.10\.10\.107:22$/,
        ),
      ]),
    );
    console.log(`hook pre-start wall time ${r.ms.toFixed(0)} ms`);
    await until(
      "grace expiry removes the chain",
      () => !save("nat").some((l) => l.includes("PVENAT-107-")),
      GRACE_MS + 3000,
    );
  });

  it("a guest that starts without a hook converges through the watcher", async () => {
    sleeper = await startQemu();
    const { ms } = await until(
      "watcher applies 107",
      () => save("nat").some((l) => l.startsWith("-A PVENAT-107-DNAT")),
      2000,
    );
    expect(save("nat").filter((l) => l.startsWith("-A PVENAT-107-DNAT"))).toEqual([
      expect.stringMatching(/--dport 822 .*-j DNAT --to-destination 10\.10\.10\.107:22$/),
    ]);
    console.log(`pidfile → live: ${ms.toFixed(0)} ms`);
  });

  it("a .fw edit is live within 2 s", async () => {
    await writeFw("[RULES]\nIN ACCEPT -p tcp -dport 22 # NAT:823\n");
    const { ms } = await until(
      "edit live",
      () => save("nat").some((l) => l.includes("--dport 823")),
      2000,
    );
    expect(save("nat").some((l) => l.includes("--dport 822"))).toBe(false);
    console.log(`edit → live: ${ms.toFixed(0)} ms`);
  });

  it("drift: a deleted builtin jump and a flushed guest chain are repaired", async () => {
    inNs(["iptables", "-t", "nat", "-D", "PREROUTING", "-j", "PVENAT-PREROUTING"]);
    inNs(["iptables", "-t", "nat", "-F", "PVENAT-107-DNAT"]);
    await until(
      "drift repaired",
      () =>
        save("nat").includes("-A PREROUTING -j PVENAT-PREROUTING") &&
        save("nat").some((l) => l.startsWith("-A PVENAT-107-DNAT")),
      3000,
    );
    expect(foreign(save("nat"))).toEqual(foreignNat);
  });

  it("post-stop removes the chain before the hook returns, even while the run state lags", async () => {
    // The pidfile still names a live process (Proxmox has not cleaned up yet).
    const r = hookRun(107, "post-stop");
    expect(r.stderr).toMatch(/vm107 post-stop: NAT rules removed/);
    expect(save("nat").some((l) => l.includes("PVENAT-107-"))).toBe(false);
    // Later polls do not bring it back while nothing about the guest changes.
    await new Promise((res) => setTimeout(res, 600));
    expect(save("nat").some((l) => l.includes("PVENAT-107-"))).toBe(false);
    // Proxmox removes the pidfile later; a dead pid in it is not running either.
    await stopGuest({ root, vmid: 107, kind: "qemu", process: sleeper, keepPidfile: true });
  });

  it("flush removes every owned chain and jump and pauses; apply --all resumes", () => {
    const f = pveNat(["flush"]);
    expect(f.code).toBe(0);
    expect(foreign(save("nat"))).toEqual(foreignNat);
    expect(foreign(save("raw"))).toEqual(foreignRaw);
    expect([...save("nat"), ...save("raw")].filter((l) => l.includes("PVENAT-"))).toEqual([]);
    const st = JSON.parse(pveNat(["status", "--json"]).stdout) as {
      daemon: { running: boolean; paused: boolean };
    };
    expect(st.daemon).toMatchObject({ running: true, paused: true });
    const a = pveNat(["apply", "--all"]);
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/^daemon: resumed;/);
    expect(save("nat")).toContain("-A PREROUTING -j PVENAT-PREROUTING");
  });

  it("SIGTERM stops the daemon and leaves the rules in place", async () => {
    sleeper = await startQemu();
    await until("applied", () => save("nat").some((l) => l.startsWith("-A PVENAT-107-DNAT")), 2000);
    const before = save("nat");
    const exited = new Promise<number | null>((r) => daemon?.on("exit", (code) => r(code)));
    daemon?.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(save("nat")).toEqual(before);
    expect(foreign(save("raw"))).toEqual(foreignRaw);
    // Without the daemon, status still works and says so.
    const st = JSON.parse(pveNat(["status", "--json"]).stdout) as { daemon: unknown };
    expect(st.daemon).toEqual({ running: false });
  });

  it("without a daemon, apply and flush act directly under the lock and release it", async () => {
    inNs(["iptables", "-t", "nat", "-F", "PVENAT-107-DNAT"]);
    const a = pveNat(["apply", "107"]);
    expect(a).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^no daemon: vm107: 1 forward live/),
    });
    expect(save("nat").filter((l) => l.startsWith("-A PVENAT-107-DNAT"))).toHaveLength(1);
    const f = pveNat(["flush"]);
    expect(f).toMatchObject({ code: 0, stdout: expect.stringMatching(/^no daemon: /) });
    expect([...save("nat"), ...save("raw")].filter((l) => l.includes("PVENAT-"))).toEqual([]);
    expect(foreign(save("nat"))).toEqual(foreignNat);
    expect(existsSync(path.join(root, "run/pve-nat/lock"))).toBe(false);
  });
});
