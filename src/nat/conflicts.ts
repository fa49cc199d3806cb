import type { Diagnostic, NodeInput } from "../model.js";
import { formatPorts, type PortRange } from "../pve/ports.js";
import type { Candidate } from "./expand.js";

// SPEC §2.3. Candidates arrive sorted (host.fw, cluster.fw, guests by vmid, line); the first
// claim on a public address + proto + port wins. Protected host ports are checked first, so a
// forward that may not exist never wins a port. Stopped guests take no part in conflicts; their
// reason says what they would collide with once started.

export const ALWAYS_PROTECTED: Readonly<Record<number, string>> = {
  22: "SSH",
  8006: "web UI",
  3128: "SPICE proxy",
};

function overlaps(a: PortRange[], b: PortRange[]): boolean {
  return a.some((x) => b.some((y) => x.from <= y.to && y.from <= x.to));
}

function clash(a: Candidate, b: Candidate): boolean {
  return (
    a.claim !== null &&
    b.claim !== null &&
    a.claim.address === b.claim.address &&
    a.claim.proto === b.claim.proto &&
    overlaps(a.claim.ports, b.claim.ports)
  );
}

export function describe(c: Candidate): string {
  const who = c.forward.vmid === null ? "node" : `vm ${c.forward.vmid}`;
  return `${c.forward.origin} (${who})`;
}

export function claimText(c: Candidate): string {
  const cl = c.claim;
  return cl ? `${cl.proto} ${cl.address}:${formatPorts(cl.ports)}` : "";
}

export function settleStates(cands: Candidate[], input: NodeInput, diags: Diagnostic[]): void {
  const allowed = new Set(input.config.allowHostPorts);
  const protectedPorts = new Map<number, string>();
  for (const p of [...Object.keys(ALWAYS_PROTECTED).map(Number), ...input.hostPorts]) {
    if (!allowed.has(p)) protectedPorts.set(p, ALWAYS_PROTECTED[p] ?? "listening");
  }
  const at = (c: Candidate) => {
    const [file, line] = splitOrigin(c.forward.origin);
    return { file, line };
  };
  const tail = (c: Candidate) => (c.via ? ` [${c.via}]` : "");

  for (const c of cands) {
    const cl = c.claim;
    if (
      c.forward.state === "error" ||
      !cl ||
      cl.proto !== "tcp" ||
      cl.address !== input.publicAddress
    )
      continue;
    const hit = [...protectedPorts].find(([p]) => cl.ports.some((r) => r.from <= p && p <= r.to));
    if (!hit) continue;
    const [port, what] = hit;
    const message =
      `public tcp port ${port} on ${cl.address} is served by the host itself (${what}); forwarding it ` +
      "could lock the admin out: pick another public port, or list the port in allow_host_ports";
    c.forward.state = "error";
    c.forward.reason = message;
    diags.push({
      ...at(c),
      severity: "error",
      message: `NAT rule not applied: ${message}${tail(c)}`,
    });
  }

  const winners: Candidate[] = [];
  for (const c of cands) {
    if (c.forward.state === "error" || !c.running) continue;
    const winner = winners.find((w) => clash(w, c));
    if (!winner) {
      winners.push(c);
      continue;
    }
    const message = `public ${claimText(c)} is already forwarded by ${describe(winner)}`;
    c.forward.state = "conflict";
    c.forward.reason = message;
    diags.push({
      ...at(c),
      severity: "error",
      message: `NAT conflict, not applied: ${message}${tail(c)}`,
    });
  }

  const stopped: Candidate[] = [];
  for (const c of cands) {
    if (c.forward.state === "error" || c.running) continue;
    c.forward.state = "inactive";
    const other = winners.find((w) => clash(w, c)) ?? stopped.find((s) => clash(s, c));
    stopped.push(c);
    if (!other) {
      c.forward.reason = "guest not running";
      continue;
    }
    const message = `public ${claimText(c)} is also claimed by ${describe(other)}`;
    c.forward.reason = `guest not running; ${message}`;
    diags.push({
      ...at(c),
      severity: "warning",
      message: `NAT conflict once the guest runs: ${message}${tail(c)}`,
    });
  }
}

export function splitOrigin(origin: string): [string, number] {
  const i = origin.lastIndexOf(":");
  return [origin.slice(0, i), Number(origin.slice(i + 1))];
}
