import type { Logger } from "pino";
import type { Reply, Request } from "../bus/protocol.js";
import type { Admission } from "../diagnose/admission.js";
import type { DaemonMetrics } from "../metrics/registry.js";
import type { NatPlan } from "../model.js";
import type { Applier, ApplyResult } from "./applier.js";
import { ackMessage, type Lifecycle } from "./lifecycle.js";
import { type MemoryReport, memoryReport } from "./memory.js";

// Bus requests → applier/lifecycle calls → one reply. Every reply is sent only once the
// requested state is live (or has failed), so a hook's ack means what SPEC §1 says.

/** What `status` returns as its "daemon" object. */
export interface DaemonStatus {
  running: true;
  pid: number;
  paused: boolean;
  lastSync: string | null;
  lastError: string | null;
  backend: "nft" | "legacy";
  /** Guests inside their start grace, and guests held down after post-stop. */
  pending: number[];
  down: number[];
  /** What the daemon's memory is made of (bytes). */
  memory: MemoryReport;
}

export interface HandlerDeps {
  applier: Applier;
  lifecycle: Lifecycle;
  log: Logger;
  /** After a flush: undo the per-device ARP setting. */
  afterFlush?(): Promise<void>;
  /** After a full sync on request (reload, apply --all): redo the per-device ARP setting. */
  afterSync?(r: ApplyResult): Promise<void>;
  /** Counts requests and hook waits; answers `metrics`. */
  metrics?: DaemonMetrics;
  /** For `status`: whether the guest firewall admits each live forward yet (forward index →
   *  admission; daemon/admission.ts). Must not throw. */
  admissions?(plan: NatPlan): Promise<ReadonlyMap<number, Admission>>;
}

function ok(message: string, result?: unknown): Reply {
  return result === undefined ? { v: 1, ok: true, message } : { v: 1, ok: true, message, result };
}

function fail(err: unknown): Reply {
  return { v: 1, ok: false, error: err instanceof Error ? err.message : String(err) };
}

function summary(r: ApplyResult): string {
  const active = r.plan.forwards.filter((f) => f.state === "active").length;
  const what = r.restored
    ? `${r.rendered.length} owner(s) rewritten in ${r.ms} ms`
    : "already live";
  return `${active} active forward(s); ${what}`;
}

export function daemonStatus(applier: Applier, lifecycle: Lifecycle): DaemonStatus {
  const s = applier.state();
  return {
    running: true,
    pid: process.pid,
    paused: s.paused,
    lastSync: s.lastSync,
    lastError: s.lastError,
    backend: s.backend,
    pending: [...lifecycle.pending()].sort((a, b) => a - b),
    down: [...lifecycle.down()].sort((a, b) => a - b),
    memory: memoryReport(),
  };
}

export function createHandler(deps: HandlerDeps): (req: Request) => Promise<Reply> {
  const { applier, lifecycle, log } = deps;

  async function synced(p: Promise<ApplyResult>): Promise<ApplyResult> {
    const r = await p;
    if (deps.afterSync) await deps.afterSync(r);
    return r;
  }

  async function guest(vmid: number, up: boolean): Promise<Reply> {
    const r = up ? await lifecycle.postStart(vmid) : await lifecycle.postStop(vmid);
    return ok(ackMessage(vmid, r, !up));
  }

  async function handle(req: Request): Promise<Reply> {
    try {
      switch (req.type) {
        case "ping":
          // The daemon object without the plan: cheap enough to poll (the bench does).
          return ok("pong", daemonStatus(applier, lifecycle));
        case "metrics":
          return deps.metrics
            ? ok("metrics", deps.metrics.snapshot())
            : fail("this daemon keeps no metrics");
        case "status": {
          // The plan last made live: `status` shows what is applied, not what the files say
          // the next poll will apply.
          const plan = applier.state().plan;
          const admissions = plan && deps.admissions ? [...(await deps.admissions(plan))] : [];
          return ok("status", { ...daemonStatus(applier, lifecycle), plan, admissions });
        }
        case "hook": {
          log.info({ vmid: req.vmid, phase: req.phase, migratedFrom: req.migratedFrom }, "hook");
          switch (req.phase) {
            case "pre-start":
              return ok(ackMessage(req.vmid, await lifecycle.preStart(req.vmid), false));
            case "post-start":
              return await guest(req.vmid, true);
            case "pre-stop":
              return ok("nothing to do");
            case "post-stop":
              return await guest(req.vmid, false);
          }
          return fail(`unknown phase`);
        }
        case "guest":
          log.info({ vmid: req.vmid, up: req.up }, "guest");
          return await guest(req.vmid, req.up);
        case "notify":
          log.info({ what: req.what }, "notify");
          return ok(summary(await synced(applier.apply({ full: true }))));
        case "apply": {
          if (req.vmid === null) {
            const wasPaused = applier.state().paused;
            const r = await synced(applier.resume());
            return ok(`${wasPaused ? "resumed; " : ""}${summary(r)}`);
          }
          return ok(ackMessage(req.vmid, await applier.apply({ owners: [req.vmid] }), false));
        }
        case "flush":
          await applier.flush();
          if (deps.afterFlush) await deps.afterFlush();
          return ok("every PVENAT- chain and jump removed; paused until `pve-nat apply --all`");
      }
    } catch (err) {
      log.warn(
        { req: req.type, err: err instanceof Error ? err.message : String(err) },
        "request failed",
      );
      return fail(err);
    }
  }

  return async (req) => {
    const m = deps.metrics;
    if (!m) return handle(req);
    m.busRequest(req.type);
    if (req.type !== "hook") return handle(req);
    const t0 = performance.now();
    const reply = await handle(req);
    m.hookWaited(req.phase, (performance.now() - t0) / 1000);
    return reply;
  };
}
