import type { Diagnostic, ForwardState, NodeInput } from "../model.js";
import type { PortRange } from "../pve/ports.js";
import { ALWAYS_PROTECTED, claimText, describe, splitOrigin } from "./conflicts.js";
import type { Candidate } from "./types.js";

// conflicts.ts's settleStates in O(candidates + claimed ports) instead of O(candidates²), for
// the daemon's incremental compile: the same decisions, reasons and diagnostics, in the same
// order (test/unit/nat/incremental.test.ts compares them), without mutating the candidates.
// Winners never overlap each other, so "the first winner that clashes" is the smallest winner
// index found on any port of the claim; "the first stopped one" likewise, per port.

/** Candidates' states and reasons, parallel to the candidate list (updated in place). */
export interface Settled {
  states: ForwardState[];
  reasons: Array<string | null>;
}

const PORTS = 65536;

type Claim = NonNullable<Candidate["claim"]>;

export function validPorts(ranges: readonly PortRange[]): boolean {
  for (const r of ranges) {
    if (!(Number.isInteger(r.from) && Number.isInteger(r.to))) return false;
    if (r.from < 0 || r.from > r.to || r.to >= PORTS) return false;
  }
  return true;
}

/** Per public address + proto, per port: the index of what holds it, valid for one round
 *  (a generation stamp instead of clearing 64 Ki entries every compile). */
class PortIndex {
  private readonly maps = new Map<string, Map<string, { at: Int32Array; gen: Uint32Array }>>();
  private round = 0;

  next(): void {
    this.round++;
  }

  private slot(cl: Claim, create: boolean): { at: Int32Array; gen: Uint32Array } | undefined {
    let byProto = this.maps.get(cl.address);
    if (!byProto) {
      if (!create) return undefined;
      byProto = new Map();
      this.maps.set(cl.address, byProto);
    }
    let m = byProto.get(cl.proto);
    if (!m && create) {
      m = { at: new Int32Array(PORTS), gen: new Uint32Array(PORTS) };
      byProto.set(cl.proto, m);
    }
    return m;
  }

  /** Smallest index holding any port of the claim this round, or -1. */
  first(cl: Claim): number {
    const m = this.slot(cl, false);
    if (!m) return -1;
    const { at, gen } = m;
    const round = this.round;
    let best = -1;
    for (const r of cl.ports) {
      for (let p = r.from; p <= r.to; p++) {
        if (gen[p] !== round) continue;
        const v = at[p] as number;
        if (best < 0 || v < best) best = v;
      }
    }
    return best;
  }

  /** Records `index` on every port of the claim not held yet this round. */
  mark(cl: Claim, index: number): void {
    const { at, gen } = this.slot(cl, true) as { at: Int32Array; gen: Uint32Array };
    const round = this.round;
    for (const r of cl.ports) {
      for (let p = r.from; p <= r.to; p++) {
        if (gen[p] === round) continue;
        gen[p] = round;
        at[p] = index;
      }
    }
  }
}

/** Reusable per compiler: the port tables are allocated once. */
export interface SettleTables {
  winners: PortIndex;
  stopped: PortIndex;
}

export function settleTables(): SettleTables {
  return { winners: new PortIndex(), stopped: new PortIndex() };
}

/** settleStates on `out` (the candidates' current states and reasons, updated in place).
 *  Claims must be within 0..65535 (validPorts); otherwise use settleStates. */
export function settleFast(
  cands: readonly Candidate[],
  out: Settled,
  input: NodeInput,
  diags: Diagnostic[],
  tables: SettleTables = settleTables(),
): void {
  const { states, reasons } = out;
  const allowed = new Set(input.config.allowHostPorts);
  const protectedPorts = new Map<number, string>();
  for (const p of [...Object.keys(ALWAYS_PROTECTED).map(Number), ...input.hostPorts]) {
    if (!allowed.has(p)) protectedPorts.set(p, ALWAYS_PROTECTED[p] ?? "listening");
  }
  const protectedList = [...protectedPorts];
  const at = (c: Candidate) => {
    const [file, line] = splitOrigin(c.forward.origin);
    return { file, line };
  };
  const tail = (c: Candidate) => (c.via ? ` [${c.via}]` : "");
  const n = cands.length;

  for (let i = 0; i < n; i++) {
    const c = cands[i] as Candidate;
    const cl = c.claim;
    if (states[i] === "error" || !cl || cl.proto !== "tcp" || cl.address !== input.publicAddress)
      continue;
    let hit: [number, string] | undefined;
    const one = cl.ports.length === 1 ? cl.ports[0] : undefined;
    if (one && one.from === one.to) {
      // One port: at most one protected entry can match it.
      const what = protectedPorts.get(one.from);
      if (what !== undefined) hit = [one.from, what];
    } else {
      hit = protectedList.find(([p]) => cl.ports.some((r) => r.from <= p && p <= r.to));
    }
    if (!hit) continue;
    const [port, what] = hit;
    const message =
      `public tcp port ${port} on ${cl.address} is served by the host itself (${what}); forwarding it ` +
      "could lock the admin out: pick another public port, or list the port in allow_host_ports";
    states[i] = "error";
    reasons[i] = message;
    diags.push({
      ...at(c),
      severity: "error",
      message: `NAT rule not applied: ${message}${tail(c)}`,
    });
  }

  const { winners, stopped } = tables;
  winners.next();
  stopped.next();
  for (let i = 0; i < n; i++) {
    const c = cands[i] as Candidate;
    if (states[i] === "error" || !c.running) continue;
    if (c.claim === null) continue; // wins, and can never clash with anyone
    const w = winners.first(c.claim);
    if (w < 0) {
      winners.mark(c.claim, i);
      continue;
    }
    const message = `public ${claimText(c)} is already forwarded by ${describe(cands[w] as Candidate)}`;
    states[i] = "conflict";
    reasons[i] = message;
    diags.push({
      ...at(c),
      severity: "error",
      message: `NAT conflict, not applied: ${message}${tail(c)}`,
    });
  }

  for (let i = 0; i < n; i++) {
    const c = cands[i] as Candidate;
    if (states[i] === "error" || c.running) continue;
    states[i] = "inactive";
    let other = -1;
    if (c.claim !== null) {
      other = winners.first(c.claim);
      if (other < 0) other = stopped.first(c.claim);
      stopped.mark(c.claim, i);
    }
    if (other < 0) {
      reasons[i] = "guest not running";
      continue;
    }
    const message = `public ${claimText(c)} is also claimed by ${describe(cands[other] as Candidate)}`;
    reasons[i] = `guest not running; ${message}`;
    diags.push({
      ...at(c),
      severity: "warning",
      message: `NAT conflict once the guest runs: ${message}${tail(c)}`,
    });
  }
}
