import { describe, expect, it } from "vitest";
import { createApplier } from "../../../src/daemon/applier.js";
import { createHandler } from "../../../src/daemon/handler.js";
import { ackMessage, createLifecycle } from "../../../src/daemon/lifecycle.js";
import type { LoadScope } from "../../../src/daemon/plan.js";
import type { NatPlan } from "../../../src/model.js";
import {
  deferred,
  fakeClock,
  type GuestSpec,
  makePlan,
  settle,
  silent,
} from "../../helpers/fixtures.js";
import { simKernel } from "../../helpers/sim-kernel.js";

const GRACE = 120_000;

/** A node with guests 101 (port 8101) and 102 (8102); `running` is Proxmox's run state. */
function node(running: Set<number>) {
  const kernel = simKernel();
  const clock = fakeClock();
  const deletes: string[][] = [];
  const started: number[] = [];
  const scopes: Array<LoadScope | undefined> = [];
  let lifecycle: ReturnType<typeof createLifecycle> | null = null;
  const applier = createApplier({
    load: async (scope) => {
      scopes.push(scope);
      const pending = lifecycle?.pending() ?? new Set<number>();
      const down = lifecycle?.down() ?? new Set<number>();
      const specs: GuestSpec[] = [101, 102].map((vmid) => {
        const up = (running.has(vmid) || pending.has(vmid)) && !down.has(vmid);
        return { vmid, port: 8000 + vmid, state: up ? "active" : "inactive" };
      });
      return makePlan(specs);
    },
    runner: kernel,
    publish: () => {},
    log: silent,
    clock,
    conntrack: async (d) => {
      deletes.push(...d);
    },
  });
  lifecycle = createLifecycle({
    applier,
    clock,
    graceMs: GRACE,
    log: silent,
    onStarted: async (vmid: number, _plan: NatPlan) => {
      started.push(vmid);
    },
  });
  return { kernel, clock, deletes, started, scopes, applier, lifecycle };
}

describe("lifecycle", () => {
  it("pre-start applies at once and acks only once the restore is done", async () => {
    const n = node(new Set());
    await n.applier.apply({ full: true });
    const gate = deferred();
    n.kernel.gate = gate.promise;
    let acked = false;
    const ack = n.lifecycle.preStart(101).then((r) => {
      acked = true;
      return r;
    });
    await settle();
    expect(n.kernel.payloads).toHaveLength(2);
    expect(acked).toBe(false);
    expect(n.kernel.tables.nat.has("PVENAT-101-DNAT")).toBe(false);
    gate.resolve();
    const r = await ack;
    expect(n.kernel.tables.nat.get("PVENAT-101-DNAT")).toHaveLength(1);
    expect(ackMessage(101, r, false)).toMatch(/^1 forward live \(1 rule\), applied in [\d.]+ ms$/);
  });

  it("a starting guest that never runs loses its rules when the grace ends", async () => {
    const n = node(new Set());
    await n.applier.apply({ full: true });
    await n.lifecycle.preStart(101);
    n.clock.advance(GRACE - 1);
    await settle();
    expect(n.kernel.tables.nat.has("PVENAT-101-DNAT")).toBe(true);
    n.clock.advance(1);
    await settle();
    expect(n.kernel.tables.nat.has("PVENAT-101-DNAT")).toBe(false);
    expect(n.lifecycle.pending()).toEqual(new Set());
  });

  it("a starting guest that runs by the end of the grace keeps its rules; post-start rewrites nothing", async () => {
    const running = new Set<number>();
    const n = node(running);
    await n.applier.apply({ full: true });
    await n.lifecycle.preStart(101);
    const restores = n.kernel.payloads.length;
    running.add(101);
    const r = await n.lifecycle.postStart(101);
    // Already live and unchanged: no restore, so the chain's counters are kept. Only this
    // guest was re-read, not every guest's run state (the watcher's job).
    expect(n.kernel.payloads).toHaveLength(restores);
    expect(n.scopes.at(-1)).toEqual({ owners: [], runState: false, runStateOf: [101] });
    expect(ackMessage(101, r, false)).toBe("1 forward live (1 rule)");
    expect(n.started).toEqual([101]);
    n.clock.advance(GRACE);
    await settle();
    expect(n.kernel.tables.nat.get("PVENAT-101-DNAT")).toHaveLength(1);
  });

  it("post-start without a pre-start (hookscript added while the guest ran) writes its rules", async () => {
    const running = new Set<number>();
    const n = node(running);
    await n.applier.apply({ full: true });
    expect(n.kernel.tables.nat.has("PVENAT-101-DNAT")).toBe(false);
    running.add(101);
    const r = await n.lifecycle.postStart(101);
    expect(r).toMatchObject({ restored: true, rendered: [101] });
    expect(n.kernel.tables.nat.get("PVENAT-101-DNAT")).toHaveLength(1);
    expect(ackMessage(101, r, false)).toMatch(/^1 forward live \(1 rule\), applied in/);
  });

  it("post-stop removes the chains even if the run state lags, ends the grace, and cleans conntrack", async () => {
    const running = new Set([101, 102]);
    const n = node(running);
    await n.applier.apply({ full: true });
    await n.lifecycle.preStart(102);
    // Proxmox still shows 102 running (pidfile not yet gone).
    const r = await n.lifecycle.postStop(102);
    expect(ackMessage(102, r, true)).toMatch(/^NAT rules removed/);
    expect([...n.kernel.tables.nat.keys()].filter((c) => c.startsWith("PVENAT-1"))).toEqual([
      "PVENAT-101-DNAT",
    ]);
    expect(n.deletes).toEqual([
      ["-p", "tcp", "--orig-dst", "203.0.113.10", "--orig-port-dst", "8102"],
    ]);
    expect(n.lifecycle.pending()).toEqual(new Set());
    expect(n.clock.pending()).toBe(0);
    // The watcher sees 102 change: its run state decides again.
    n.lifecycle.observed(102);
    await n.applier.apply({ owners: [102] });
    expect(n.kernel.tables.nat.has("PVENAT-102-DNAT")).toBe(true);
  });

  it.each([
    [
      { v: 1, type: "hook", vmid: 101, phase: "pre-stop" },
      { v: 1, ok: true, message: "nothing to do" },
    ],
  ] as const)("handler answers %j", async (req, reply) => {
    const n = node(new Set());
    const handle = createHandler({ applier: n.applier, lifecycle: n.lifecycle, log: silent });
    expect(await handle(req)).toEqual(reply);
  });

  it("ping answers with the daemon object and what its memory is made of", async () => {
    const n = node(new Set());
    const handle = createHandler({ applier: n.applier, lifecycle: n.lifecycle, log: silent });
    const reply = await handle({ v: 1, type: "ping" });
    expect(reply).toMatchObject({ ok: true, message: "pong", result: { running: true } });
    const mem = (reply as { result: { memory: Record<string, number> } }).result.memory;
    expect(Object.keys(mem).sort()).toEqual(
      ["arrayBuffers", "code", "external", "heapTotal", "heapUsed", "rss"].sort(),
    );
    expect(mem.heapUsed).toBeGreaterThan(0);
    expect(mem.heapUsed).toBeLessThanOrEqual(mem.heapTotal as number);
    expect(mem.code).toBeGreaterThan(0);
    expect(mem.rss).toBeGreaterThan(mem.heapUsed as number);
  });

  it("handler: hooks, guest up/down, flush pauses, apply --all resumes, status reports it", async () => {
    const running = new Set<number>();
    const n = node(running);
    const handle = createHandler({ applier: n.applier, lifecycle: n.lifecycle, log: silent });
    await n.applier.apply({ full: true });
    expect(await handle({ v: 1, type: "hook", vmid: 101, phase: "pre-start" })).toMatchObject({
      ok: true,
      message: expect.stringMatching(/^1 forward live/),
    });
    expect(await handle({ v: 1, type: "status" })).toMatchObject({
      ok: true,
      result: {
        running: true,
        paused: false,
        pending: [101],
        down: [],
        backend: "nft",
        lastError: null,
      },
    });
    expect(await handle({ v: 1, type: "guest", vmid: 101, up: false })).toMatchObject({
      ok: true,
      message: expect.stringMatching(/^NAT rules removed/),
    });
    expect(await handle({ v: 1, type: "flush" })).toMatchObject({ ok: true });
    expect(await handle({ v: 1, type: "hook", vmid: 102, phase: "post-start" })).toMatchObject({
      ok: false,
      error: expect.stringMatching(/paused/),
    });
    expect(await handle({ v: 1, type: "status" })).toMatchObject({ result: { paused: true } });
    expect([...n.kernel.tables.nat.keys()].some((c) => c.startsWith("PVENAT-"))).toBe(false);
    running.add(102);
    expect(await handle({ v: 1, type: "apply", vmid: null })).toMatchObject({
      ok: true,
      message: expect.stringMatching(/^resumed; 1 active forward/),
    });
    expect(n.kernel.tables.nat.get("PVENAT-102-DNAT")).toHaveLength(1);
  });
});
