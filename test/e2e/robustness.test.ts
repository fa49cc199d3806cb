// The hook never blocks a guest start (daemon absent or hung), state converges when the daemon
// comes (back), a kill -9 in the middle of a burst leaves nothing the next start cannot repair,
// and bad input — a malformed bus message, a malformed .fw line — is reported while everything
// else keeps working.
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sleep } from "../helpers/exec.js";
import { guestConf, writeGuest } from "../helpers/simnode.js";
import { ADDR, baseConfig } from "./harness.js";
import { createScenario, type Scenario, within } from "./scenario.js";

const HOOK_TIMEOUT_MS = 1500; // SPEC §5 default
/** A process start of the CLI plus slack for a loaded CI machine. */
const HOOK_MARGIN_MS = 1500;
const REPO = path.resolve(import.meta.dirname, "../..");

const fw = (rules: string) => `[OPTIONS]\nenable: 1\n\n[RULES]\n${rules}`;
const SSH =
  "IN ACCEPT -source 198.51.100.7 -dest 10.10.10.107 -p tcp -sport 822 -dport 22 # NAT ssh in\n";

let sc: Scenario;
const ssh = async (port = 822, timeoutMs = 1500) => {
  const r = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, port, { timeoutMs });
  return r.status === "data" ? r.data.trim() : r.status;
};

beforeAll(async () => {
  sc = await createScenario({ guests: [{ vmid: 107, kind: "qemu", firewall: true, plug: false }] });
  await sc.sim.writePve("firewall/107.fw", fw(SSH));
});
afterAll(async () => {
  await sc?.destroy();
});

describe("daemon down or hung", () => {
  it("no daemon: every hook phase exits 0 within hook_timeout_ms + margin and says so", async () => {
    for (const phase of ["pre-start", "post-start", "pre-stop", "post-stop"] as const) {
      const r = await sc.hook(107, phase);
      expect({ phase, code: r.code }).toEqual({ phase, code: 0 });
      expect(r.ms).toBeLessThanOrEqual(HOOK_TIMEOUT_MS + HOOK_MARGIN_MS);
      expect(r.stderr).toMatch(/^pve-nat: /);
    }
  });

  it("bad arguments and a broken config: still exit 0", async () => {
    for (const args of [["hook"], ["hook", "abc", "pre-start"], ["hook", "107", "explode"]]) {
      const r = await sc.cli(args);
      expect({ args, code: r.code }).toEqual({ args, code: 0 });
    }
    await sc.sim.writeConfig("node = pve1\nhook_timeout_ms = banana\n[section]\n");
    try {
      const r = await sc.hook(107, "pre-start");
      expect(r.code).toBe(0);
      expect(r.ms).toBeLessThanOrEqual(HOOK_TIMEOUT_MS + HOOK_MARGIN_MS);
    } finally {
      await sc.sim.writeConfig(baseConfig());
    }
  });

  it("guest started while the daemon was down → the daemon's start converges", async () => {
    await sc.boot(107);
    await sc.sim.tcpService(sc.sim.guests.get(107)?.ns ?? "", 22, "SSH-2.0-vm107");
    expect(await ssh()).toBe("refused");
    await sc.startDaemon();
    const ms = await within(async () => (await ssh(822, 500)).startsWith("SSH"), 5000, 100);
    expect(ms).not.toBeNull();
  });

  it("hung daemon (SIGSTOP): the hook still exits 0 within hook_timeout_ms + margin", async () => {
    const d = sc.daemon;
    if (!d) throw new Error("no daemon");
    process.kill(d.pid, "SIGSTOP");
    try {
      const r = await sc.hook(107, "post-start");
      expect(r.code).toBe(0);
      expect(r.ms).toBeLessThanOrEqual(HOOK_TIMEOUT_MS + HOOK_MARGIN_MS);
      expect(r.stderr).toMatch(/no answer|timeout|within/i);
    } finally {
      process.kill(d.pid, "SIGCONT");
    }
    expect(await ssh()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
  });
});

describe("kill -9 during a burst", () => {
  const OLD = Array.from({ length: 8 }, (_, i) => 201 + i);
  const NEW = Array.from({ length: 8 }, (_, i) => 221 + i);

  it("after restart the live chains equal `plan` and every jump exists once", async () => {
    if (!sc.daemon) await sc.startDaemon();
    // Guests without namespaces: configs, rules and run state are all the plan needs.
    for (const vmid of [...OLD, ...NEW]) {
      const ip = `10.10.10.${vmid - 50}`;
      await writeGuest(sc.sim.root, {
        vmid,
        kind: "qemu",
        conf: guestConf({ vmid, kind: "qemu", ip }),
      });
      await sc.sim.writePve(
        `firewall/${vmid}.fw`,
        fw(
          `IN ACCEPT -p tcp -dport 22 # NAT:${20000 + vmid}\nOUT ACCEPT -p tcp -dport 443 # NAT\n`,
        ),
      );
    }
    for (const vmid of OLD) {
      await sc.sim.setRunning(vmid, true);
      expect((await sc.hook(vmid, "post-start")).code).toBe(0);
    }
    // The burst: half stop, half start, all at once; the daemon dies in the middle of it.
    for (const vmid of OLD) await sc.sim.setRunning(vmid, false);
    for (const vmid of NEW) await sc.sim.setRunning(vmid, true);
    const d = sc.daemon;
    if (!d) throw new Error("no daemon");
    const hooks = [
      ...OLD.map((v) => sc.hook(v, "post-stop")),
      ...NEW.flatMap((v) => [sc.hook(v, "pre-start"), sc.hook(v, "post-start")]),
    ];
    await sleep(150);
    await d.kill9();
    sc.daemon = null;
    const results = await Promise.all(hooks);
    expect(results.map((r) => r.code)).toEqual(results.map(() => 0));

    await sc.startDaemon();
    const live = await sc.liveOwned();
    const planned = await sc.plannedOwned();
    expect(live.chains).toEqual(planned.chains);
    expect(Object.keys(live.chains).filter((c) => OLD.some((v) => c.includes(`-${v}-`)))).toEqual(
      [],
    );
    for (const v of NEW) expect(live.chains[`nat/PVENAT-${v}-DNAT`]?.length).toBe(1);
    expect(live.jumps).toEqual([
      "nat/-A OUTPUT -j PVENAT-OUTPUT",
      "nat/-A POSTROUTING -j PVENAT-POSTROUTING",
      "nat/-A PREROUTING -j PVENAT-PREROUTING",
      "raw/-A PREROUTING -j PVENAT-RAW",
    ]);
    expect(await ssh()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
  });
});

/** Sends raw frames to the bus (as a REQ socket would frame them) and prints each reply. */
const RAW_BUS = `
const zmq = require(process.env.ZMQ_PATH);
(async () => {
  const out = [];
  for (const body of JSON.parse(process.env.BODIES)) {
    const d = new zmq.Dealer({ linger: 0, receiveTimeout: 2000, sendTimeout: 2000 });
    d.connect("ipc://" + process.env.BUS);
    try {
      await d.send([Buffer.alloc(0), Buffer.from(body)]);
      const frames = await d.receive();
      out.push(frames[frames.length - 1].toString());
    } catch (e) { out.push("NO REPLY: " + (e.code || e.message)); }
    d.close();
  }
  console.log(JSON.stringify(out));
})();
`;

describe("bad input is reported and changes nothing else", () => {
  beforeAll(async () => {
    // Also when run on its own (-t): a running daemon and a running guest 107.
    if (!sc.daemon) await sc.startDaemon();
    if (!(await sc.json(["status"])).forwards.some((f) => f.vmid === 107 && f.state === "active")) {
      await sc.boot(107);
      await sc.sim.tcpService(sc.sim.guests.get(107)?.ns ?? "", 22, "SSH-2.0-vm107");
    }
  });

  it("malformed bus messages get error replies; the daemon keeps serving", async () => {
    const bodies = [
      "{not json",
      JSON.stringify({ v: 99, type: "ping" }),
      JSON.stringify({ v: 1, type: "hook", vmid: -1, phase: "explode" }),
      JSON.stringify({ v: 1, type: "apply", vmid: "107; iptables -F" }),
      "x".repeat(70_000),
    ];
    const before = await sc.liveOwned();
    const r = await sc.sim.exec(sc.sim.ns.node, [process.execPath, "-e", RAW_BUS], {
      env: {
        ...process.env,
        ZMQ_PATH: path.join(REPO, "node_modules/zeromq"),
        BUS: path.join(sc.sim.root, "run/pve-nat/bus.sock"),
        BODIES: JSON.stringify(bodies),
      },
      timeoutMs: 20_000,
    });
    const replies = (JSON.parse(r.stdout) as string[]).map((s) => {
      try {
        const o = JSON.parse(s) as { ok?: unknown; error?: unknown };
        return { ok: o.ok, hasError: typeof o.error === "string" && o.error.length > 0 };
      } catch {
        return { raw: s };
      }
    });
    expect(replies).toEqual(bodies.map(() => ({ ok: false, hasError: true })));
    expect(sc.daemon?.alive()).toBe(true);
    expect(await sc.liveOwned()).toEqual(before);
    expect(await ssh()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
    const ping = await sc.cli(["status", "--json"]);
    expect((JSON.parse(ping.stdout) as { daemon: { running: boolean } }).daemon.running).toBe(true);
  });

  it("a malformed .fw line is reported at its line; the file's other rules still work", async () => {
    await sc.sim.writePve(
      "firewall/107.fw",
      fw(
        `${SSH}IN ACCEPT -p tcp -dport 22 -bogus 1 # NAT:2201 broken option\nIN ACCEPT -p tcp -dport 22 # NAT:2202 fine\n`,
      ),
    );
    const live = await within(async () => (await ssh(2202, 500)).startsWith("SSH"), 5000, 100);
    expect(live).not.toBeNull();
    expect(await ssh(822)).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
    expect(await ssh(2201)).toBe("refused");
    const check = await sc.cli(["check", "--json"]);
    expect(check.code).toBe(1);
    const diags = (
      JSON.parse(check.stdout) as {
        diagnostics: Array<{ file: string; line: number; severity: string }>;
      }
    ).diagnostics
      .filter((d) => d.severity === "error")
      .map((d) => ({ file: d.file, line: d.line }));
    expect(diags).toEqual([{ file: "firewall/107.fw", line: 6 }]);
    const status = await sc.json(["status"]);
    expect(status.diagnostics.some((d) => d.file === "firewall/107.fw" && d.line === 6)).toBe(true);
  });
});
