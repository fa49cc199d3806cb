import type {
  Diagnostic,
  FwFile,
  FwRule,
  GuestNic,
  NatPlan,
  NodeInput,
  Owner,
  OwnerChains,
} from "../model.js";
import { settleStates } from "./conflicts.js";
import { type Candidate, expandRule, type RuleContext } from "./expand.js";

// Typed config + run state → NatPlan. Pure: everything it needs is in NodeInput. The steps are
// exported for nat/incremental.ts, the daemon's per-owner cached version of compile().

export const IFACE = /^[A-Za-z0-9_.+-]{1,15}$/;

/** Sort-key groups, SPEC §2.3. */
export const HOST = 0;
export const CLUSTER = 1;
export const GUESTS = 2;

export function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? -1) - (b[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}

export interface SourcedRule {
  rule: FwRule;
  /** The GROUP line that brought the rule in, or null for the file's own rules. */
  group: FwRule | null;
  key: number[];
}

/** A file's rules, with GROUP references replaced by the group's rules (from cluster.fw).
 *  A line pve-firewall rejects (e.g. an undefined alias found by checkRefs) is not applied by
 *  pve-firewall either, so it yields no forward; its error is already reported. */
export function rulesOf(
  fw: FwFile,
  cluster: FwFile | null,
  rejected: ReadonlySet<string>,
): SourcedRule[] {
  const out: SourcedRule[] = [];
  const ok = (r: FwRule) => !rejected.has(`${r.file}:${r.line}`);
  for (const rule of fw.rules) {
    if (!ok(rule)) continue;
    if (rule.type !== "group") {
      out.push({ rule, group: null, key: [rule.line, 0] });
      continue;
    }
    if (!rule.enabled) continue;
    // An undefined group is reported by checkRefs; nothing of it can be NAT.
    const group = cluster?.groups[rule.action.toLowerCase()];
    for (const r of group?.rules ?? []) {
      if (r.type === "group" || !ok(r)) continue;
      out.push({ rule: r, group: rule, key: [rule.line, r.line] });
    }
  }
  return out;
}

export function via(owner: string, group: FwRule | null): string | null {
  return group ? `${owner} via GROUP ${group.action} at ${group.file}:${group.line}` : null;
}

export function firewallEnabled(fw: FwFile | null): boolean {
  return fw?.options.enable === "1";
}

export function uniqueDiagnostics(list: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  const out: Diagnostic[] = [];
  for (const d of list) {
    const k = `${d.file}\0${d.line}\0${d.severity}\0${d.message}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(d);
  }
  return out.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line));
}

/** What every rule's context shares within one compile. */
export type RuleBase = Pick<RuleContext, "config" | "publicAddress" | "localNics">;

/** The node's own candidates: host.fw's, then cluster.fw's (owner NODE). */
export function expandNode(
  input: NodeInput,
  base: RuleBase,
  rejected: ReadonlySet<string>,
  diags: Diagnostic[],
): Candidate[] {
  const out: Candidate[] = [];
  for (const [fw, group] of [
    [input.host, HOST],
    [input.cluster, CLUSTER],
  ] as const) {
    if (!fw) continue;
    for (const { rule, group: g, key } of rulesOf(fw, input.cluster, rejected)) {
      const ctx: RuleContext = {
        ...base,
        owner: "NODE",
        guest: null,
        scope: { guest: null, cluster: input.cluster },
        groupIface: g?.iface ?? null,
        via: via("node", g),
        key: [group, 0, ...key],
      };
      out.push(...expandRule(rule, ctx, diags));
    }
  }
  return out;
}

/** One guest's candidates, from its .fw and the security groups it uses. */
export function expandGuest(
  input: NodeInput,
  vmid: number,
  base: RuleBase,
  rejected: ReadonlySet<string>,
  diags: Diagnostic[],
): Candidate[] {
  const g = input.guests[vmid];
  if (!g?.fw) return [];
  const out: Candidate[] = [];
  for (const { rule, group, key } of rulesOf(g.fw, input.cluster, rejected)) {
    const ctx: RuleContext = {
      ...base,
      owner: vmid,
      guest: { conf: g.conf, firewall: firewallEnabled(g.fw), state: g.state },
      // Security group rules are compiled in the cluster's scope, as pve-firewall does.
      scope: { guest: group ? null : g.fw, cluster: input.cluster },
      groupIface: group?.iface ?? null,
      via: via(`vm ${vmid}`, group),
      key: [GUESTS, vmid, ...key],
    };
    out.push(...expandRule(rule, ctx, diags));
  }
  return out;
}

export function compile(input: NodeInput): NatPlan {
  const { config } = input;
  const diags: Diagnostic[] = [...input.diagnostics];
  for (const fw of [input.cluster, input.host]) if (fw) diags.push(...fw.diagnostics);
  const vmids = Object.keys(input.guests)
    .map(Number)
    .sort((a, b) => a - b);
  const localNics: GuestNic[] = [];
  for (const vmid of vmids) {
    const g = input.guests[vmid];
    if (!g) continue;
    diags.push(...g.conf.diagnostics, ...(g.fw?.diagnostics ?? []));
    localNics.push(...g.conf.nics);
  }

  const rejected = new Set(
    diags.filter((d) => d.severity === "error").map((d) => `${d.file}:${d.line}`),
  );
  const cands: Candidate[] = [];
  const base = {
    config,
    publicAddress: input.publicAddress,
    localNics,
  };
  cands.push(...expandNode(input, base, rejected, diags));
  for (const vmid of vmids) cands.push(...expandGuest(input, vmid, base, rejected, diags));
  cands.sort((a, b) => compareKeys(a.key, b.key));

  if (!IFACE.test(config.externalInterface)) {
    const message = `external_interface '${config.externalInterface}' is not a valid interface name`;
    for (const c of cands) {
      if (c.forward.state === "error") continue;
      c.forward.state = "error";
      c.forward.reason = message;
    }
  }
  settleStates(cands, input, diags);

  const chains = new Map<Owner, OwnerChains>();
  cands.forEach((c, index) => {
    if (c.forward.state !== "active") return;
    let oc = chains.get(c.owner);
    if (!oc) {
      oc = { owner: c.owner, dnat: [], snat: [] };
      chains.set(c.owner, oc);
    }
    oc.dnat.push(...c.dnat.map((r) => ({ ...r, forward: index })));
    oc.snat.push(...c.snat.map((r) => ({ ...r, forward: index })));
  });
  const ordered = [...chains.values()].sort((a, b) =>
    a.owner === b.owner ? 0 : a.owner === "NODE" ? -1 : b.owner === "NODE" ? 1 : a.owner - b.owner,
  );

  return {
    node: input.node,
    forwards: cands.map((c) => c.forward),
    diagnostics: uniqueDiagnostics(diags),
    chains: ordered,
    entry: {
      externalInterface: config.externalInterface,
      hairpin: config.hairpin,
      hostAccess: config.hostAccess,
      zoneFix: zoneFix(input),
    },
  };
}

export function zoneFix(input: NodeInput): boolean {
  const mode = input.config.conntrackZoneFix;
  if (mode !== "auto") return mode === "yes";
  return Object.values(input.guests).some((g) => g.conf.nics.some((n) => n.firewall));
}
