import type { Forward, NatPlan } from "../model.js";

// The SPEC §6 JSON object printed by check/plan/status --json. Keys are written in one fixed
// order so the output is stable byte for byte.

export interface PlanJsonExtras {
  /** plan: the exact restore payload. */
  restore?: string;
  /** status: counters per forward (index into plan.forwards); null when unknown. */
  counters?: Array<{ packets: number; bytes: number } | null>;
  /** status: the daemon object. */
  daemon?: unknown;
  /** status: per forward, whether the guest firewall admits it yet ("pending" | "accepted");
   *  null where it does not filter or cannot be judged. */
  guestFirewall?: Array<string | null>;
}

function forwardJson(f: Forward, extras: PlanJsonExtras, i: number): Record<string, unknown> {
  const counters = extras.counters;
  const out: Record<string, unknown> = {
    vmid: f.vmid,
    direction: f.direction,
    proto: f.proto,
    public: { address: f.public.address, ports: f.public.ports },
    private: {
      address: f.private.address,
      ports: f.private.ports,
      address_source: f.private.addressSource ?? null,
    },
    source: f.source,
    destination: f.destination,
    origin: f.origin,
    state: f.state,
    reason: f.reason,
  };
  if (counters) {
    const c = counters[i];
    out.counters = c ? { packets: c.packets, bytes: c.bytes } : null;
  }
  if (extras.guestFirewall) out.guest_firewall = extras.guestFirewall[i] ?? null;
  return out;
}

export function planToJson(plan: NatPlan, extras: PlanJsonExtras = {}): Record<string, unknown> {
  const out: Record<string, unknown> = {
    version: 1,
    node: plan.node,
    forwards: plan.forwards.map((f, i) => forwardJson(f, extras, i)),
    diagnostics: plan.diagnostics.map((d) => ({
      file: d.file,
      line: d.line,
      severity: d.severity,
      message: d.message,
    })),
  };
  if (extras.restore !== undefined) out.restore = extras.restore;
  if (extras.daemon !== undefined) out.daemon = extras.daemon;
  return out;
}
