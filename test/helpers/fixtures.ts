// Small builders for the daemon tests: plans, a manual clock, a silent logger.
import pino from "pino";
import type { Clock } from "../../src/daemon/clock.js";
import type { Forward, NatPlan, NatRule, OwnerChains } from "../../src/model.js";

export const silent = pino({ level: "silent" });

export interface FakeClock extends Clock {
  advance(ms: number): void;
  pending(): number;
}

export function fakeClock(): FakeClock {
  let t = 0;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => t,
    wall: () => new Date(Date.UTC(2026, 10, 25, 12, 0, 0) + t),
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { at: t + ms, fn });
      return id;
    },
    clearTimeout(h) {
      timers.delete(h as number);
    },
    advance(ms) {
      const end = t + ms;
      for (;;) {
        const due = [...timers].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        timers.delete(due[0]);
        t = due[1].at;
        due[1].fn();
      }
      t = end;
    },
    pending: () => timers.size,
  };
}

/** A guest with one tcp DNAT forward: public 203.0.113.10:<port> → 10.10.10.<vmid%200>:22. */
export interface GuestSpec {
  vmid: number;
  port: number;
  state?: Forward["state"];
  /** Private target port (change it to "edit" the forward). */
  to?: number;
}

export function guestAddress(vmid: number): string {
  return `10.10.10.${vmid % 200}`;
}

/** A plan for these guests; with zoneFix each active guest's fwbr<vmid>i0 is a zone device. */
export function makePlan(
  guests: GuestSpec[],
  opts: { zoneFix?: boolean; helpers?: NatPlan["entry"]["helpers"] } = {},
): NatPlan {
  const forwards: Forward[] = [];
  const chains: OwnerChains[] = [];
  for (const g of guests) {
    const state = g.state ?? "active";
    const index = forwards.length;
    forwards.push({
      vmid: g.vmid,
      name: `guest${g.vmid}`,
      direction: "in",
      proto: "tcp",
      public: { address: "203.0.113.10", ports: String(g.port) },
      private: {
        address: guestAddress(g.vmid),
        ports: String(g.to ?? 22),
        addressSource: "config",
      },
      source: null,
      destination: null,
      origin: `firewall/${g.vmid}.fw:4`,
      state,
      reason: state === "conflict" ? "public port already forwarded" : null,
    });
    if (state !== "active") continue;
    const rule: NatRule = {
      proto: "tcp",
      source: null,
      destination: "203.0.113.10",
      dport: String(g.port),
      sport: null,
      inInterface: null,
      outInterface: null,
      ctstateDnat: false,
      target: { kind: "DNAT", address: guestAddress(g.vmid), ports: String(g.to ?? 22) },
      forward: index,
      comment: `pve-nat vm${g.vmid} firewall/${g.vmid}.fw:4`,
    };
    chains.push({ owner: g.vmid, dnat: [rule], snat: [] });
  }
  return {
    node: "pve1",
    forwards,
    diagnostics: [],
    chains,
    entry: {
      externalInterface: "vmbr0",
      hairpin: false,
      hostAccess: true,
      zoneFix: opts.zoneFix ?? false,
      zoneRule: true,
      zoneDevices: opts.zoneFix ? chains.map((c) => `fwbr${c.owner}i0`) : [],
      helpers: opts.helpers ?? [],
    },
  };
}

/** Resolves after pending setImmediate callbacks and promise chains have run. */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

export function deferred(): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
