import type {
  Config,
  Diagnostic,
  Forward,
  FwRule,
  GuestConf,
  GuestNic,
  NatRule,
  Owner,
  Proto,
  RunState,
  SdnConfig,
} from "../model.js";
import type { PortRange } from "../pve/ports.js";
import type { NicAddress } from "./learn.js";
import type { AddrScope } from "./resolve.js";
import type { NatComment } from "./trigger.js";

// Values passed between the steps of expanding one rule (expand.ts → inbound.ts/outbound.ts).

export type RuleDraft = Omit<NatRule, "forward">;

/** One rule per source × destination × multiport chunk: an iptables rule matches at most one
 *  address per side and 15 ports (chunks()), so a forward is their product. */
export function drafts(
  sources: ReadonlyArray<string | null>,
  destinations: ReadonlyArray<string | null>,
  portChunks: ReadonlyArray<string | null>,
  rest: Pick<RuleDraft, "proto" | "target" | "comment"> & Partial<RuleDraft>,
): RuleDraft[] {
  // Made to its length: a candidate keeps it as it is (compile.ts compact()).
  const out = new Array<RuleDraft>(sources.length * destinations.length * portChunks.length);
  let k = 0;
  for (const source of sources) {
    for (const destination of destinations) {
      for (const dport of portChunks) {
        // The matches most rules leave out (no -i/-o, no --sport, no ctstate) unset. Written
        // out, not spread: every draft gets one shape and no object is made only to be copied
        // (ten thousand drafts at 1000 guests, issue 10).
        out[k++] = {
          sport: rest.sport ?? null,
          inInterface: rest.inInterface ?? null,
          outInterface: rest.outInterface ?? null,
          ctstateDnat: rest.ctstateDnat ?? false,
          proto: rest.proto,
          target: rest.target,
          comment: rest.comment,
          source,
          destination,
          dport,
        };
      }
    }
  }
  return out;
}

export interface Candidate {
  forward: Forward;
  owner: Owner;
  /** Sort key: SPEC §2.3 order (host.fw, cluster.fw, guests by vmid, then line). */
  key: number[];
  dnat: RuleDraft[];
  snat: RuleDraft[];
  /** Public address + proto + ports an IN forward captures (conflicts, protected ports). */
  claim: { address: string; proto: Proto; ports: PortRange[] } | null;
  /** The guest is running or starting (node-level forwards always are). */
  running: boolean;
  /** RuleContext.via, for diagnostics made later (conflicts). */
  via: string | null;
}

export interface RuleContext {
  owner: Owner;
  guest: {
    conf: GuestConf;
    /** The datacenter and the guest firewall are on (guestFirewallOn); whether a NIC filters
     *  also needs its firewall=1. */
    firewall: boolean;
    state: RunState;
    /** nat/learn.ts's address per NIC (parallel to conf.nics). */
    addresses: ReadonlyArray<NicAddress | null>;
  } | null;
  scope: AddrScope;
  /** -i of the GROUP line that brought this rule in, used when the rule has none. */
  groupIface: string | null;
  key: number[];
  config: Config;
  publicAddress: string | null;
  /** Every local guest NIC, to find the network of a node-level forward's target (hairpin). */
  localNics: readonly GuestNic[];
  /** Proxmox SDN (subnets with `snat 1`, VNets' zones). */
  sdn: SdnConfig;
  /** For a security group's rule: which owner it was applied to and where, appended to
   *  diagnostics at the group's line ("vm 108 via GROUP webfarm at firewall/108.fw:7"). */
  via: string | null;
}

export interface Effective {
  proto: string | null;
  dport: string | null;
  sport: string | null;
  source: string | null;
  dest: string | null;
}

/** "ok"; IPv6 (skipped); an error; or pending: the guest address is not known yet. */
export type Built = "ok" | "ipv6" | { error: string } | { pending: string };

export function isPending<T>(v: T | { pending: string }): v is { pending: string } {
  return typeof v === "object" && v !== null && "pending" in v;
}

export type Note = (severity: Diagnostic["severity"], message: string) => void;

/** One macro entry of one NAT rule, ready to become a forward. */
export interface BuildInput {
  /** The forward being built; its fields are filled in as they become known. */
  c: Candidate;
  rule: FwRule;
  eff: Effective;
  proto: Proto | null;
  nat: NatComment;
  ctx: RuleContext;
  note: Note;
  /** The generated iptables comment for every rule of this forward. */
  comment: string;
}

export function isErr<T>(v: T | { error: string }): v is { error: string } {
  return typeof v === "object" && v !== null && "error" in v;
}
