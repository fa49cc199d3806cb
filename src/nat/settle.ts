import type { Diagnostic, ForwardState, HostPorts, NodeInput } from "../model.js";
import { PROTECTED_PORTS } from "../names.js";
import { formatPorts, type PortRange } from "../pve/ports.js";
import type { Candidate } from "./types.js";

// SPEC §2.3, the one place conflicts and protected ports are decided. Candidates arrive
// sorted (host.fw, cluster.fw, guests by vmid, line); the first claim on a public address +
// proto + port wins. Protected host ports are checked first, so a forward that may not exist
// never wins a port. Stopped guests take no part in conflicts; their reason says what they
// would collide with once started.
//
// Linear in candidates + claimed ports: winners never overlap each other, so "the first winner
// that clashes" is the smallest winner index found on any port of the claim; "the first
// stopped one" likewise, per port. Candidates are not mutated: the result is parallel to them.

/** Candidates' states and reasons, parallel to the candidate list. */
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

/** The port tables, allocated once per compile memo. */
export interface SettleTables {
  winners: PortIndex;
  stopped: PortIndex;
}

export function settleTables(): SettleTables {
  return { winners: new PortIndex(), stopped: new PortIndex() };
}

export function describe(c: Candidate): string {
  const who = c.forward.vmid === null ? "node" : `vm ${c.forward.vmid}`;
  return `${c.forward.origin} (${who})`;
}

function claimText(c: Candidate): string {
  const cl = c.claim;
  return cl ? `${cl.proto} ${cl.address}:${formatPorts(cl.ports)}` : "";
}

/** Ports listening on `address`: bound to it, or to every address. */
export function listeningOn(ports: HostPorts, address: string): number[] {
  const own = ports.at[address];
  return own ? [...new Set([...ports.any, ...own])].sort((a, b) => a - b) : ports.any;
}

export function splitOrigin(origin: string): [string, number] {
  const i = origin.lastIndexOf(":");
  return [origin.slice(0, i), Number(origin.slice(i + 1))];
}

/** Static config first, then the learned sources in the order they are asked (nat/learn.ts). */
const SOURCE_RANK: Record<string, number> = {
  config: 0,
  ipam: 1,
  lease: 2,
  neighbour: 3,
  agent: 4,
};

/**
 * Two running guests whose forwards resolve to one guest address (SPEC §8) — a stale lease, a
 * neighbour entry left by a former owner, a lying agent — cannot both be right: the address goes
 * to the most trusted source (config, ipam, lease, neighbour, agent), then the lower VMID; the
 * others' forwards are conflicts naming both. A rule's own -dest/-source is the admin's choice
 * and two static configs that agree are left as they were.
 */
function addressConflicts(cands: readonly Candidate[], out: Settled, refuse: Refuse): void {
  const { states } = out;
  const eligible = (i: number): string | null => {
    const c = cands[i] as Candidate;
    const f = c.forward;
    const src = f.private.addressSource;
    if (states[i] === "error" || !c.running || f.vmid === null) return null;
    if (src === null || src === "rule" || f.private.address === null) return null;
    return f.private.address;
  };
  const holder = new Map<string, number>();
  const n = cands.length;
  let learned = false;
  for (let i = 0; i < n; i++) {
    const addr = eligible(i);
    if (addr === null) continue;
    const f = (cands[i] as Candidate).forward;
    if (f.private.addressSource !== "config") learned = true;
    const h = holder.get(addr);
    if (h === undefined) {
      holder.set(addr, i);
      continue;
    }
    const hf = (cands[h] as Candidate).forward;
    const r = SOURCE_RANK[f.private.addressSource as string] ?? 9;
    const hr = SOURCE_RANK[hf.private.addressSource as string] ?? 9;
    if (r < hr || (r === hr && (f.vmid as number) < (hf.vmid as number))) holder.set(addr, i);
  }
  if (!learned) return;
  for (let i = 0; i < n; i++) {
    const addr = eligible(i);
    if (addr === null) continue;
    const c = cands[i] as Candidate;
    const w = cands[holder.get(addr) as number] as Candidate;
    const f = c.forward;
    const wf = w.forward;
    if (wf.vmid === f.vmid) continue;
    if (f.private.addressSource === "config" && wf.private.addressSource === "config") continue;
    const message =
      `guest address ${addr} of vm ${f.vmid} (from ${f.private.addressSource}) is also vm ${wf.vmid}'s ` +
      `(from ${wf.private.addressSource}, ${wf.origin}): vm ${wf.vmid} keeps it`;
    refuse(i, "conflict", message);
  }
}

/** Marks candidate i as not applied: its state, its reason, and the error at its line. */
type Refuse = (i: number, state: "error" | "conflict", message: string) => void;

/** Settles `cands`, starting from the states and reasons in `out` (updated in place). */
export function settle(
  cands: readonly Candidate[],
  out: Settled,
  input: Pick<NodeInput, "config" | "hostPorts" | "publicAddress">,
  diags: Diagnostic[],
  tables: SettleTables = settleTables(),
): void {
  const { states, reasons } = out;
  const allowed = new Set(input.config.allowHostPorts);
  // Per public address: the ports the host serves there. On `public_address` the well-known
  // ones count whether listening or not; on every address, whatever listens on it or on all.
  const byAddress = new Map<string, { one: Map<number, string>; list: Array<[number, string]> }>();
  const protectedAt = (address: string) => {
    let p = byAddress.get(address);
    if (p) return p;
    const one = new Map<number, string>();
    const always = address === input.publicAddress ? Object.keys(PROTECTED_PORTS).map(Number) : [];
    for (const port of [...always, ...listeningOn(input.hostPorts, address)]) {
      if (!allowed.has(port)) one.set(port, PROTECTED_PORTS[port] ?? "listening");
    }
    p = { one, list: [...one] };
    byAddress.set(address, p);
    return p;
  };
  const at = (c: Candidate) => {
    const [file, line] = splitOrigin(c.forward.origin);
    return { file, line };
  };
  const tail = (c: Candidate) => (c.via ? ` [${c.via}]` : "");
  const refuse: Refuse = (i, state, message) => {
    const c = cands[i] as Candidate;
    states[i] = state;
    reasons[i] = message;
    const what = state === "conflict" ? "NAT conflict, not applied" : "NAT rule not applied";
    diags.push({ ...at(c), severity: "error", message: `${what}: ${message}${tail(c)}` });
  };
  const n = cands.length;

  for (let i = 0; i < n; i++) {
    const c = cands[i] as Candidate;
    const cl = c.claim;
    if (states[i] === "error" || !cl) continue;
    // The grammar only yields ports 0..65535; a claim outside would corrupt the port tables.
    if (!validPorts(cl.ports)) {
      states[i] = "error";
      reasons[i] = `public port out of range: ${formatPorts(cl.ports)}`;
      continue;
    }
    if (cl.proto !== "tcp") continue;
    const { one: protectedPorts, list: protectedList } = protectedAt(cl.address);
    if (protectedList.length === 0) continue;
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
    refuse(i, "error", message);
  }

  addressConflicts(cands, out, refuse);

  const { winners, stopped } = tables;
  winners.next();
  stopped.next();
  for (let i = 0; i < n; i++) {
    const c = cands[i] as Candidate;
    if (states[i] === "error" || states[i] === "conflict" || !c.running) continue;
    if (c.claim === null) continue; // wins, and can never clash with anyone
    const w = winners.first(c.claim);
    if (w < 0) {
      winners.mark(c.claim, i);
      continue;
    }
    refuse(
      i,
      "conflict",
      `public ${claimText(c)} is already forwarded by ${describe(cands[w] as Candidate)}`,
    );
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
