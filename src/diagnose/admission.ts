import type { Forward, GuestNic, NatPlan, NodeInput, Owner, Proto } from "../model.js";
import { guestFirewallOn } from "../nat/compile.js";
import { ipToInt } from "../nat/ipv4.js";
import { forwardIndicesOf } from "../nat/lookup.js";
import { parsePorts } from "../pve/ports.js";
import { evaluateChain, type FilterPacket, type FilterTable } from "./filter.js";
import { sourcesOf } from "./forwards.js";
import { evaluateGuestIn, nicOf } from "./guestfw.js";

// Has pve-firewall admitted a new forward yet (issue 12 item 3)? pve-nat makes a forward live
// within about a second, but where the guest firewall filters (SPEC §8) pve-firewall compiles the
// guest's rules into the NIC's `tap<vmid>i<n>-IN` / `veth<vmid>i<n>-IN` chain only at its next
// update (every 10 s). Between the two, the forward is live in pve-nat and still dropped by the
// guest firewall: "pending". Judged only where the guest's .fw accepts the forward's traffic
// (otherwise it never will be admitted: check's diagnosis says why) and pve-firewall runs
// (PVEFW-FORWARD exists); never claimed from a rule the walk cannot judge. Pure: the daemon and
// `status` read `iptables-save -t filter` only when targets() is not empty.

export type AdmissionState = "pending" | "accepted";

/** One forward whose admission by the guest firewall can be judged. */
export interface AdmissionTarget {
  /** Index into plan.forwards. */
  index: number;
  vmid: number;
  /** The NIC's IN chain as pve-firewall names it. */
  chain: string;
  proto: Proto;
  ports: string;
  packet: FilterPacket;
}

export interface Admission {
  state: AdmissionState;
  chain: string;
  /** "tcp/22" */
  port: string;
}

/** The NIC the forward's private address is on: its configured address, else the only NIC. */
function nicFor(nics: readonly GuestNic[], address: string): GuestNic | null {
  return nicOf(nics, address) ?? (nics.length === 1 ? (nics[0] ?? null) : null);
}

/** pve-firewall's per-NIC IN chain (Firewall.pm: "${iface}-IN" of tap<vmid>i<n> / veth<vmid>i<n>). */
export function nicInChain(kind: "qemu" | "lxc", vmid: number, nic: number): string {
  return `${kind === "qemu" ? "tap" : "veth"}${vmid}i${nic}-IN`;
}

/** Active inbound forwards of `owners` (all when omitted) whose guest firewall filters on the
 *  target NIC and, by the guest's .fw, accepts the traffic. */
export function admissionTargets(
  plan: NatPlan,
  input: NodeInput,
  owners?: ReadonlySet<Owner>,
): AdmissionTarget[] {
  // With the nftables proxmox-firewall there are no iptables NIC chains to read.
  if (input.host?.options.nftables === "1") return [];
  const out: AdmissionTarget[] = [];
  // A cycle asks about the guests it rewrote (a hook: one of 1000), not about every forward.
  const indices = owners ? forwardIndicesOf(plan, owners) : plan.forwards.keys();
  for (const index of indices) {
    const f = plan.forwards[index] as Forward;
    if (f.state !== "active" || f.direction !== "in" || f.vmid === null) continue;
    if (f.proto === null || f.private.address === null || f.private.ports === null) continue;
    const g = input.guests[f.vmid];
    if (!g?.fw || !guestFirewallOn(input.cluster, g.fw)) continue;
    const nic = nicFor(g.conf.nics, f.private.address);
    if (!nic?.firewall) continue;
    const dport = parsePorts(f.private.ports);
    if (!Array.isArray(dport)) continue;
    const source = sourcesOf(plan, index);
    const verdict = evaluateGuestIn(
      { nic: nic.index, source, dest: f.private.address, proto: f.proto, dport },
      g.fw,
      input.cluster,
    );
    if (verdict.verdict !== "accept") continue;
    const chain = nicInChain(g.conf.kind, f.vmid, nic.index);
    const addr = ipToInt(f.private.address);
    out.push({
      index,
      vmid: f.vmid,
      chain,
      proto: f.proto,
      ports: f.private.ports,
      packet: {
        in: null,
        out: chain.slice(0, -"-IN".length),
        source,
        dest: [{ lo: addr, hi: addr }],
        proto: f.proto,
        dport,
        // The bridged pass is tracked in its own zone (SPEC §4): a new connection there.
        ctstate: ["NEW"],
      },
    });
  }
  return out;
}

/** Each target's admission by the live filter table: "pending" while its NIC chain is missing
 *  or drops the traffic, "accepted" once it accepts; left out when the walk cannot tell or
 *  pve-firewall does not run. */
export function judgeAdmission(
  targets: readonly AdmissionTarget[],
  table: FilterTable,
): Map<number, Admission> {
  const out = new Map<number, Admission>();
  if (!table.chains.has("PVEFW-FORWARD")) return out;
  for (const t of targets) {
    const port = `${t.proto}/${t.ports}`;
    if (!table.chains.has(t.chain)) {
      out.set(t.index, { state: "pending", chain: t.chain, port });
      continue;
    }
    const v = evaluateChain(table, t.chain, t.packet);
    if (v.verdict === "unknown") continue;
    out.set(t.index, {
      state: v.verdict === "accept" ? "accepted" : "pending",
      chain: t.chain,
      port,
    });
  }
  return out;
}

/** The `applied` event's field for one guest: its forwards pve-firewall has not admitted yet. */
export function pendingOf(
  admissions: ReadonlyMap<number, Admission>,
  vmid: number,
  plan: NatPlan,
): { state: "pending"; ports: string[]; chains: string[] } | undefined {
  const ports = new Set<string>();
  const chains = new Set<string>();
  for (const [index, a] of admissions) {
    if (a.state !== "pending" || plan.forwards[index]?.vmid !== vmid) continue;
    ports.add(a.port);
    chains.add(a.chain);
  }
  if (ports.size === 0) return undefined;
  return { state: "pending", ports: [...ports].sort(), chains: [...chains].sort() };
}
