// What pve-firewall's drop-in runs (`pve-nat notify reload`) restores a jump someone deleted at
// once — the drift check is set far away, so only the notify can have done it — and the event
// stream reports a conflict when a second guest claims the port of an active forward.
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Background } from "../helpers/exec.js";
import { sleep, waitFor } from "../helpers/exec.js";
import { ADDR } from "./harness.js";
import { createScenario, type Scenario, subscribeEvents } from "./scenario.js";

const fw = (rules: string) => `[OPTIONS]\nenable: 1\n\n[RULES]\n${rules}`;
const SSH_107 = "IN ACCEPT -p tcp -dport 22 # NAT:822 ssh\n";
const DRIFT_MS = 600_000;
const DROP_IN = path.resolve(import.meta.dirname, "../../hooks/pve-firewall-pve-nat.conf");

/** The pve-nat arguments of the drop-in's ExecStartPost and ExecReload lines. */
function dropInArgs(): { start: string[]; reload: string[] } {
  const text = readFileSync(DROP_IN, "utf8");
  const args = (key: string) => {
    const m = new RegExp(`^${key}=-/usr/bin/pve-nat (.+)$`, "m").exec(text);
    if (!m?.[1]) throw new Error(`${DROP_IN}: no ${key}=-/usr/bin/pve-nat …`);
    return m[1].trim().split(/\s+/);
  };
  return { start: args("ExecStartPost"), reload: args("ExecReload") };
}
const POLL_MS = 500;

let sc: Scenario;
const ssh = async (port = 822, timeoutMs = 1500) => {
  const r = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, port, { timeoutMs });
  return r.status === "data" ? r.data.trim() : r.status;
};
const natRules = async () =>
  (await sc.sim.iptablesSave(sc.sim.ns.node, "nat")).split("\n").filter((l) => l.startsWith("-A"));

beforeAll(async () => {
  sc = await createScenario({
    guests: [
      { vmid: 107, kind: "qemu", firewall: true, plug: false },
      { vmid: 108, kind: "lxc", firewall: false, plug: false },
      { vmid: 109, kind: "qemu", firewall: false, plug: false },
    ],
    config: `drift_interval_ms = ${DRIFT_MS}\npoll_interval_ms = ${POLL_MS}\n`,
  });
  await sc.sim.writePve("firewall/107.fw", fw(SSH_107));
  await sc.sim.writePve("firewall/108.fw", fw("IN ACCEPT -p tcp -dport 22 # NAT:2208 ssh\n"));
  await sc.sim.writePve("firewall/109.fw", fw(SSH_107));
  await sc.startDaemon();
  await sc.boot(107);
  await sc.boot(108);
  for (const vmid of [107, 108, 109]) {
    await sc.sim.tcpService(sc.sim.guests.get(vmid)?.ns ?? "", 22, `SSH-2.0-vm${vmid}`);
  }
});
afterAll(async () => {
  await sc?.destroy();
});

describe("notify reload (pve-firewall's drop-in)", () => {
  it("the drop-in runs `pve-nat notify reload` after start and on reload, failures ignored (-)", () => {
    expect(dropInArgs()).toEqual({ start: ["notify", "reload"], reload: ["notify", "reload"] });
  });

  it.each([
    {
      what: "the PREROUTING jump deleted by hand",
      break: ["-t", "nat", "-D", "PREROUTING", "-j", "PVENAT-PREROUTING"],
    },
    { what: "a guest's DNAT chain flushed by hand", break: ["-t", "nat", "-F", "PVENAT-107-DNAT"] },
  ])("$what: restored as soon as notify returns", async (c) => {
    expect(await ssh()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
    const before = await natRules();
    await sc.sim.iptables(sc.sim.ns.node, c.break);
    // Several poll passes: the watcher does not re-read iptables, the drift check is 10 min away.
    await sleep(3 * POLL_MS);
    expect(await ssh()).toBe("refused");
    expect(await natRules()).not.toEqual(before);

    const t0 = performance.now();
    const r = await sc.cli(dropInArgs().reload);
    const ms = performance.now() - t0;
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/notify reload: .*active forward/);
    expect(ms).toBeLessThan(5000);
    expect(await natRules()).toEqual(before);
    expect(await ssh()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
  });
});

describe("conflict events", () => {
  type Event = { type: string; vmid: number | null; message?: string };
  let events: Background;
  let lines: () => Event[];

  beforeAll(async () => {
    const sub = await subscribeEvents<Event>(sc);
    events = sub.proc;
    lines = sub.lines;
  });
  afterAll(async () => {
    await events?.stop(2000);
  });

  it("a guest booted with a forward on an active public port: `conflict` event for it, the first keeps the port", async () => {
    const seen = lines().length;
    await sc.boot(109);
    const ev = await waitFor(
      async () =>
        lines()
          .slice(seen)
          .find((e) => e.type === "conflict" && e.vmid === 109),
      4000,
      100,
    );
    expect(ev?.message).toMatch(/firewall\/109\.fw:5: .*822.*vm 107/);
    const s = await sc.json(["status"]);
    expect(
      s.forwards.filter((f) => f.public.ports === "822").map((f) => [f.vmid, f.state]),
    ).toEqual([
      [107, "active"],
      [109, "conflict"],
    ]);
    expect(await ssh()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
  });

  // 108's own forward (2208) goes away in the same edit, so its chain is rewritten too.
  it("a running guest's .fw edited to claim an active port (no hook): `conflict` event", async () => {
    const seen = lines().length;
    await sc.sim.writePve("firewall/108.fw", fw(SSH_107));
    const ev = await waitFor(
      async () =>
        lines()
          .slice(seen)
          .find((e) => e.type === "conflict" && e.vmid === 108),
      4000,
      100,
    );
    expect(ev?.message).toMatch(/firewall\/108\.fw:5: .*822.*vm 107/);
    const s = await sc.json(["status"]);
    expect(
      s.forwards.filter((f) => f.public.ports === "822").map((f) => [f.vmid, f.state]),
    ).toEqual([
      [107, "active"],
      [108, "conflict"],
      [109, "conflict"],
    ]);
    expect(await ssh()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
  });
});
