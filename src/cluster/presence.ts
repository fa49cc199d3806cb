import type { Diagnostic, NatPlan } from "../model.js";
import { NODE_NAME } from "../names.js";

// Which cluster nodes run pve-nat (issue 12 item 2). The hookscript snippet lives on `local`,
// which every node has to itself: a guest attached to pve-nat cannot start on a node without the
// package (Proxmox aborts pre-start: "script 'local:snippets/pve-nat-hook' does not exist").
// Each daemon publishes `nodes/<node>/pve-nat.json` in pmxcfs; attach, check and
// `status --cluster` judge the cluster from those files and pmxcfs's member list. Pure: the
// reading and writing is cluster/files.ts and daemon/presence.ts.

/** The presence file of a node, relative to /etc/pve. */
export function presenceRel(node: string): string {
  return `nodes/${node}/pve-nat.json`;
}

/** Most forwards one presence file lists: pmxcfs replicates every write to every node and
 *  refuses files over 1 MiB, so the summary stays a few tens of KiB at most. */
export const PRESENCE_MAX_FORWARDS = 200;

export interface PresenceForward {
  vmid: number | null;
  direction: "in" | "out";
  proto: string | null;
  /** "203.0.113.10:822" ("masquerade" for an OUT forward without an address). */
  public: string;
  /** "10.10.10.107:22". */
  private: string;
  state: string;
}

/** What a daemon publishes (JSON, fixed key order). */
export interface Presence {
  version: 1;
  node: string;
  /** pve-nat's version on that node. */
  pve_nat: string;
  /** ISO times: daemon start, last write. */
  started: string;
  updated: string;
  forwards: PresenceForward[];
  /** Forwards left out of `forwards` (PRESENCE_MAX_FORWARDS). */
  more: number;
}

function hostPort(address: string | null, ports: string | null, none: string): string {
  const a = address ?? none;
  return ports ? `${a}:${ports}` : a;
}

/** The plan's forwards as the presence file lists them. Only the listed ones are summarised:
 *  the daemon makes this summary after every cycle that changed the plan, before its callers
 *  get their reply, and at 1000 guests summarising all 10 000 forwards to keep 200 was ≈ 10 000
 *  objects and strings each time, and 4.2–5.0 MB of RSS growth right after the reconcile,
 *  where the daemon's RSS peaks (issue 10). */
export function presenceForwards(plan: NatPlan | null): {
  forwards: PresenceForward[];
  more: number;
} {
  const all = plan?.forwards ?? [];
  const forwards = all.slice(0, PRESENCE_MAX_FORWARDS).map(
    (f): PresenceForward => ({
      vmid: f.vmid,
      direction: f.direction,
      proto: f.proto,
      public:
        f.direction === "in"
          ? hostPort(f.public.address, f.public.ports, "?")
          : (f.public.address ?? "masquerade"),
      private: hostPort(f.private.address, f.private.ports, "?"),
      state: f.state,
    }),
  );
  return { forwards, more: Math.max(0, all.length - PRESENCE_MAX_FORWARDS) };
}

export function presenceText(p: Presence): string {
  return `${JSON.stringify(p)}\n`;
}

const str = (v: unknown): v is string => typeof v === "string";

/** A presence file as read back; a file that is there but unreadable still says "installed". */
export function parsePresence(text: string, node: string): Presence | { error: string } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { error: "not JSON" };
  }
  const o = v as Record<string, unknown> | null;
  if (typeof o !== "object" || o === null || o.version !== 1 || !str(o.pve_nat)) {
    return { error: "not a pve-nat presence file (version 1)" };
  }
  const forwards = Array.isArray(o.forwards)
    ? o.forwards.filter(
        (f): f is PresenceForward =>
          typeof f === "object" &&
          f !== null &&
          str((f as PresenceForward).public) &&
          str((f as PresenceForward).private) &&
          str((f as PresenceForward).state),
      )
    : [];
  return {
    version: 1,
    node,
    pve_nat: o.pve_nat,
    started: str(o.started) ? o.started : "",
    updated: str(o.updated) ? o.updated : "",
    forwards,
    more: Number.isInteger(o.more) ? (o.more as number) : 0,
  };
}

/** Cluster members from pmxcfs's `/etc/pve/.members` (pve-cluster status.c
 *  cfs_create_memberlist_msg): the keys of `nodelist`, else `nodename` alone (a node without a
 *  cluster). null: not that file's shape. */
export function parseMembers(text: string): string[] | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  const o = v as { nodename?: unknown; nodelist?: unknown } | null;
  if (typeof o !== "object" || o === null) return null;
  if (typeof o.nodelist === "object" && o.nodelist !== null) {
    const names = Object.keys(o.nodelist).filter((n) => NODE_NAME.test(n));
    return names.sort();
  }
  if (typeof o.nodename === "string" && NODE_NAME.test(o.nodename)) return [o.nodename];
  return null;
}

/** What the cluster looks like to pve-nat, read by cluster/files.ts. */
export interface ClusterView {
  /** This node. */
  self: string;
  /** Member nodes, sorted. */
  members: string[];
  /** Where `members` came from: pmxcfs's member list, or the nodes/ directories. */
  membersFrom: ".members" | "nodes/";
  /** Nodes with a presence file: its content, or why it could not be read. */
  presence: Map<string, Presence | { error: string }>;
}

/** Members other than this node without a presence file: a guest attached to pve-nat cannot
 *  start there. A single-node cluster (or no cluster) has none. */
export function nodesWithoutPveNat(view: ClusterView): string[] {
  if (view.members.length <= 1) return [];
  return view.members.filter((n) => n !== view.self && !view.presence.has(n));
}

export function installHint(nodes: readonly string[]): string {
  return `install pve-nat on ${nodes.join(", ")} first (apt install ./pve-nat_<version>_amd64.deb on each node)`;
}

/** Why attach refuses while some member lacks pve-nat (null: it does not). */
export function attachRefusal(view: ClusterView): string | null {
  const lacking = nodesWithoutPveNat(view);
  if (lacking.length === 0) return null;
  const which =
    lacking.length === 1 ? `node ${lacking[0]} lacks` : `nodes ${lacking.join(", ")} lack`;
  return (
    `not attached: cluster ${which} pve-nat (no ${lacking.map(presenceRel).join(", ")}), so the guest could not start ` +
    `there after a migration or HA recovery ("script 'local:snippets/pve-nat-hook' does not exist") — ` +
    `${installHint(lacking)}, or use --force`
  );
}

/** check's cluster finding: per member without pve-nat, the attached guests (of any node) that
 *  could land there. */
export function clusterDiagnostics(
  view: ClusterView,
  attached: ReadonlyArray<{ vmid: number; node: string }>,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const node of nodesWithoutPveNat(view)) {
    const guests = attached.map((g) =>
      g.node === view.self ? `${g.vmid}` : `${g.vmid} (on ${g.node})`,
    );
    const file = presenceRel(node);
    if (guests.length === 0) {
      out.push({
        file,
        line: 0,
        severity: "info",
        message: `cluster node ${node} has no pve-nat (no ${file}): ${installHint([node])} before attaching guests`,
      });
      continue;
    }
    out.push({
      file,
      line: 0,
      severity: "warning",
      message:
        `cluster node ${node} has no pve-nat (no ${file}): attached guest${guests.length === 1 ? "" : "s"} ` +
        `${guests.join(", ")} cannot start there after a migration or HA recovery ` +
        `("script 'local:snippets/pve-nat-hook' does not exist") — ${installHint([node])}`,
    });
  }
  return out;
}
