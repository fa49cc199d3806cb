import type {
  ConntrackHelper,
  Diagnostic,
  Forward,
  FwFile,
  FwRule,
  GuestNic,
  NatPlan,
  NatRule,
  NodeInput,
  Owner,
  OwnerChains,
} from "../model.js";
import { IFACE, IFACE_NAME } from "../names.js";
import { CONNTRACK_HELPERS } from "../pve/fw/options.js";
import { type Candidate, expandRule, type RuleContext, type RuleDraft } from "./expand.js";
import { addressesKey, guestNicAddresses, type NicAddress } from "./learn.js";
import { recordLayout } from "./lookup.js";
import { type Settled, type SettleTables, settle, settleTables } from "./settle.js";

// Typed config + run state → NatPlan. Pure: everything it needs is in NodeInput.
//
// One implementation, with an optional memo (kube-proxy's partial sync: the same code, skipping
// what did not change). The CLI compiles once with a fresh memo; the daemon keeps one memo for
// its life, so an event that touches one guest re-expands only that guest. Each owner's
// candidates are kept and re-expanded only when what they depend on changed: its conf, .fw and
// run state; cluster.fw, pve-nat.conf and the public address for everyone; the error lines of the
// files its rules come from. A memo hit compares the immutable input values it was built from
// (a miss only costs time); settling stays global but linear (settle.ts). Unchanged forwards and
// owner chains keep their object identity between plans, so the renderer's memo can skip them.
// test/unit/nat/memo.test.ts checks memo-on equals memo-off over random edit sequences.

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
  // Most files have no rejected line: then no "file:line" is made per rule to look up.
  const ok = (r: FwRule) => rejected.size === 0 || !rejected.has(`${r.file}:${r.line}`);
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

/** Whether pve-firewall filters a guest's traffic at all (SPEC §8): the datacenter firewall is
 *  on (pve-firewall removes all its rules otherwise) and the guest's .fw has `enable: 1`. The
 *  NIC must also have firewall=1 (firewallFiltersNic). */
export function guestFirewallOn(cluster: FwFile | null, guest: FwFile | null): boolean {
  return firewallEnabled(cluster) && firewallEnabled(guest);
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
export type RuleBase = Pick<RuleContext, "config" | "publicAddress" | "localNics" | "sdn">;

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
  addresses: ReadonlyArray<NicAddress | null>,
): Candidate[] {
  const g = input.guests[vmid];
  if (!g?.fw) return [];
  const out: Candidate[] = [];
  // The same for every rule of the guest. Security group rules are compiled in the cluster's
  // scope, as pve-firewall does.
  const guest = {
    conf: g.conf,
    firewall: guestFirewallOn(input.cluster, g.fw),
    state: g.state,
    addresses,
  };
  const ownScope = { guest: g.fw, cluster: input.cluster };
  const groupScope = { guest: null, cluster: input.cluster };
  for (const { rule, group, key } of rulesOf(g.fw, input.cluster, rejected)) {
    const ctx: RuleContext = {
      ...base,
      owner: vmid,
      guest,
      scope: group ? groupScope : ownScope,
      groupIface: group?.iface ?? null,
      via: via(`vm ${vmid}`, group),
      key: [GUESTS, vmid, ...key],
    };
    out.push(...expandRule(rule, ctx, diags));
  }
  return out;
}

interface Slot {
  /** The values this slot was expanded from (compared on the next compile). */
  from: readonly unknown[];
  /** Files its rules come from, with the error lines they had (rejected rules). */
  deps: Array<[file: string, sig: string]>;
  cands: Candidate[];
  diags: Diagnostic[];
  /** The Forward last emitted per candidate (reused while its state and reason stay). */
  out: Array<Forward | undefined>;
}

interface ChainSlot {
  cands: Candidate[];
  indices: number[];
  chains: OwnerChains;
}

interface Settling {
  segments: Candidate[][];
  from: readonly unknown[];
  diags: Diagnostic[];
  forwards: Forward[];
  chains: OwnerChains[];
}

/** What compile() keeps between calls. Opaque: create one per daemon, none per CLI run. */
export interface CompileMemo {
  shared: readonly unknown[] | null;
  node: Slot | null;
  guests: Map<number, Slot>;
  chains: Map<Owner, ChainSlot>;
  tables: SettleTables;
  settling: Settling | null;
  last: { input: NodeInput; plan: NatPlan } | null;
}

export function createCompileMemo(): CompileMemo {
  return {
    shared: null,
    node: null,
    guests: new Map(),
    chains: new Map(),
    tables: settleTables(),
    settling: null,
    last: null,
  };
}

function sameValues(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Files of every rule rulesOf() looks at for this .fw (its own and its security groups'). */
function ruleFiles(fw: FwFile, cluster: FwFile | null): string[] {
  const files = new Set<string>();
  for (const rule of fw.rules) {
    files.add(rule.file);
    if (rule.type !== "group" || !rule.enabled) continue;
    for (const r of cluster?.groups[rule.action.toLowerCase()]?.rules ?? []) files.add(r.file);
  }
  return [...files];
}

/** Error lines per file, as a comparable signature: a rule at such a line is not applied. */
function rejections(diags: readonly Diagnostic[]): {
  rejected: Set<string>;
  sig(file: string): string;
} {
  const lines = new Map<string, Set<number>>();
  const rejected = new Set<string>();
  for (const d of diags) {
    if (d.severity !== "error") continue;
    rejected.add(`${d.file}:${d.line}`);
    let s = lines.get(d.file);
    if (!s) {
      s = new Set();
      lines.set(d.file, s);
    }
    s.add(d.line);
  }
  const sigs = new Map<string, string>();
  return {
    rejected,
    sig(file) {
      let s = sigs.get(file);
      if (s === undefined) {
        const l = lines.get(file);
        s = l ? [...l].sort((a, b) => a - b).join(",") : "";
        sigs.set(file, s);
      }
      return s;
    },
  };
}

/** Arrays the memo keeps for the daemon's life, copied to their length: an array grown by
 *  push (or spread) keeps room for 17 elements, ≈ 150 bytes for the one or two it holds. At
 *  1000 guests × 10 rules that was ≈ 4 MB of the ≈ 41 MB live heap (issue 10). The rule
 *  arrays need no copy: drafts() makes them to their length. */
function compact(c: Candidate): void {
  c.key = c.key.slice();
  if (c.claim) c.claim = { ...c.claim, ports: c.claim.ports.slice() };
}

/** The memo's slot when `reuse` (nothing shared changed), it was built from `from` and its
 *  files' error lines are unchanged; otherwise a fresh expansion. */
function slotFor(
  old: Slot | null | undefined,
  reuse: boolean,
  from: readonly unknown[],
  sig: (file: string) => string,
  expand: (diags: Diagnostic[]) => { cands: Candidate[]; files: string[] },
): Slot {
  if (reuse && old && sameValues(old.from, from) && old.deps.every(([f, s]) => sig(f) === s))
    return old;
  const diags: Diagnostic[] = [];
  const { cands, files } = expand(diags);
  cands.sort((a, b) => compareKeys(a.key, b.key));
  for (const c of cands) compact(c);
  return {
    from,
    deps: files.map((f) => [f, sig(f)]),
    cands,
    diags,
    out: new Array(cands.length),
  };
}

/** A guest that only started or stopped (`from` differs from the slot's in the run state
 *  alone): its candidates with `running` flipped, the rest of the expansion shared. Expansion
 *  reads the run state for that flag and for one diagnostic, the note on a pending forward of
 *  a running guest: a slot with a pending candidate is expanded again (null). A node-wide start
 *  or stop (a boot, the bench's burst of 1000 starts) re-expanded every guest, ≈ 90 KB of
 *  garbage each, and that garbage was most of the daemon's peak RSS (issue 10). */
function rerun(old: Slot, from: readonly unknown[], sig: (file: string) => string): Slot | null {
  const [conf, fw, stopped, addresses] = from;
  const [oldConf, oldFw, oldStopped, oldAddresses] = old.from;
  if (conf !== oldConf || fw !== oldFw || addresses !== oldAddresses || stopped === oldStopped)
    return null;
  if (!old.deps.every(([f, s]) => sig(f) === s)) return null;
  if (old.cands.some((c) => c.forward.state === "pending")) return null;
  const running = stopped !== true;
  return {
    from,
    deps: old.deps,
    cands: old.cands.map((c) => ({ ...c, running })),
    diags: old.diags,
    out: new Array(old.cands.length),
  };
}

export function compile(input: NodeInput, memo: CompileMemo = createCompileMemo()): NatPlan {
  // The daemon's node source hands out the same (immutable) value while nothing changed.
  if (memo.last?.input === input) return memo.last.plan;
  const plan = build(input, memo);
  memo.last = { input, plan };
  return plan;
}

function build(input: NodeInput, memo: CompileMemo): NatPlan {
  const { config } = input;
  const shared = [config, input.publicAddress, input.cluster, input.addresses.sdn];
  const sharedSame = memo.shared !== null && sameValues(memo.shared, shared);
  memo.shared = shared;

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
  const { rejected, sig } = rejections(diags);
  const base: RuleBase = {
    config,
    publicAddress: input.publicAddress,
    localNics,
    sdn: input.addresses.sdn,
  };

  // The node's forwards (host.fw, cluster.fw) also depend on every local NIC (hairpin target
  // networks): re-expanded when any guest config changed.
  const nodeFrom = [input.host, ...vmids.map((v) => input.guests[v]?.conf)];
  memo.node = slotFor(memo.node, sharedSame, nodeFrom, sig, (own) => {
    const files = new Set<string>();
    for (const fw of [input.host, input.cluster])
      if (fw) for (const f of ruleFiles(fw, input.cluster)) files.add(f);
    return { cands: expandNode(input, base, rejected, own), files: [...files] };
  });
  const segments: Array<{ owner: Owner; slot: Slot }> = [{ owner: "NODE", slot: memo.node }];

  for (const vmid of memo.guests.keys()) if (!input.guests[vmid]?.fw) memo.guests.delete(vmid);
  for (const vmid of vmids) {
    const g = input.guests[vmid];
    if (!g?.fw) continue;
    const fw = g.fw;
    // Expansion sees the run state only as running or not ("starting" runs), and the learned
    // addresses only as their summary: a new lease re-expands only the guest it belongs to.
    const addresses = guestNicAddresses(g.conf, input.addresses);
    const from = [g.conf, fw, g.state === "stopped", addressesKey(addresses)];
    const old = memo.guests.get(vmid);
    const slot =
      (sharedSame && old && rerun(old, from, sig)) ||
      slotFor(old, sharedSame, from, sig, (own) => ({
        cands: expandGuest(input, vmid, base, rejected, own, addresses),
        files: ruleFiles(fw, input.cluster),
      }));
    memo.guests.set(vmid, slot);
    if (slot.cands.length > 0) segments.push({ owner: vmid, slot });
  }
  diags.push(...memo.node.diags);
  for (const vmid of vmids) diags.push(...(memo.guests.get(vmid)?.diags ?? []));

  const cands = segments.map((s) => s.slot.cands);
  const settleFrom = [config, input.hostPorts, input.publicAddress];
  const prev = memo.settling;
  const settling =
    prev && sameValues(prev.from, settleFrom) && sameValues(prev.segments, cands)
      ? prev
      : settleAll(input, segments, memo);
  memo.settling = settling;
  diags.push(...settling.diags);

  const fix = zoneFix(input);
  return {
    node: input.node,
    forwards: settling.forwards,
    diagnostics: uniqueDiagnostics(diags),
    chains: settling.chains,
    entry: {
      externalInterface: config.externalInterface,
      hairpin: config.hairpin,
      hostAccess: config.hostAccess,
      zoneFix: fix,
      zoneRule: !sdnMasquerades(input),
      zoneDevices: fix ? zoneDevices(input, settling.chains) : [],
      helpers: fix ? conntrackHelpers(input) : [],
    },
  };
}

/** Conflicts, protected ports and the plan's forwards and chains for these candidates. */
function settleAll(
  input: NodeInput,
  segments: Array<{ owner: Owner; slot: Slot }>,
  memo: CompileMemo,
): Settling {
  const { config } = input;
  const diags: Diagnostic[] = [];
  const cands: Candidate[] = [];
  for (const { slot } of segments) for (const c of slot.cands) cands.push(c);
  const n = cands.length;
  const settled: Settled = { states: new Array(n), reasons: new Array(n) };
  const badIface = !IFACE.test(config.externalInterface);
  const ifaceMessage = `external_interface '${config.externalInterface}' is not a valid interface name`;
  for (let i = 0; i < n; i++) {
    const f = (cands[i] as Candidate).forward;
    const bad = badIface && f.state !== "error";
    settled.states[i] = bad ? "error" : f.state;
    settled.reasons[i] = bad ? ifaceMessage : f.reason;
  }
  settle(cands, settled, input, diags, memo.tables);

  const forwards: Forward[] = new Array(n);
  const chains: OwnerChains[] = [];
  // nat/lookup.ts's indices, at the cost of a push per forward. chainOf also says which owners
  // keep a chain (the compile memo drops the others below).
  const byOwner = new Map<Owner, number[]>();
  const conflicts: number[] = [];
  const chainOf = new Map<Owner, OwnerChains>();
  let offset = 0;
  for (const { owner, slot } of segments) {
    const act: Candidate[] = [];
    const idx: number[] = [];
    const at: number[] = [];
    if (slot.cands.length > 0) byOwner.set(owner, at);
    for (let j = 0; j < slot.cands.length; j++) {
      const c = slot.cands[j] as Candidate;
      const i = offset + j;
      at.push(i);
      const state = settled.states[i] as Forward["state"];
      const reason = settled.reasons[i] ?? null;
      // The candidate's own forward where settling left it as expanded (nearly always): a
      // copy per forward was a second set of 10000 objects at 1000 guests, kept for the
      // daemon's life. Expansion is the last writer of a candidate's forward.
      let f = c.forward.state === state && c.forward.reason === reason ? c.forward : slot.out[j];
      if (!f || f.state !== state || f.reason !== reason) {
        f = { ...c.forward, state, reason };
        slot.out[j] = f;
      }
      forwards[i] = f;
      if (state === "conflict") conflicts.push(i);
      if (state !== "active") continue;
      act.push(c);
      idx.push(i);
    }
    offset += slot.cands.length;
    if (act.length === 0) continue;
    const prev = memo.chains.get(owner);
    // An owner's chains are its active candidates' rule drafts at their forward indices: the
    // same drafts (a guest that stopped and started again keeps them, rerun() shares them) at
    // the same indices make the same chains, and the same object lets the renderer reuse its
    // lines. Re-rendering them was ≈ a quarter of what a burst of 1000 starts allocated (issue 10).
    if (
      prev &&
      prev.cands.length === act.length &&
      prev.cands.every((c, k) => {
        const a = act[k] as Candidate;
        return (c === a || (c.dnat === a.dnat && c.snat === a.snat)) && prev.indices[k] === idx[k];
      })
    ) {
      // The candidates themselves, not old copies of them, are what the memo holds on to.
      if (prev.cands.some((c, k) => c !== act[k]))
        memo.chains.set(owner, { cands: act, indices: prev.indices, chains: prev.chains });
      chains.push(prev.chains);
      chainOf.set(owner, prev.chains);
      continue;
    }
    const oc: OwnerChains = { owner, dnat: [], snat: [] };
    act.forEach((c, k) => {
      const forward = idx[k] as number;
      for (const r of c.dnat) oc.dnat.push(withForward(r, forward));
      for (const r of c.snat) oc.snat.push(withForward(r, forward));
    });
    // Kept until the owner changes: to length (see compact()).
    oc.dnat = oc.dnat.slice();
    oc.snat = oc.snat.slice();
    memo.chains.set(owner, { cands: act, indices: idx, chains: oc });
    chains.push(oc);
    chainOf.set(owner, oc);
  }
  // Kept while the owner is on the node, also without a chain now: a guest that stops keeps
  // its chains' objects for its next start. Dropped with the owner.
  const present = new Set(segments.map((s) => s.owner));
  for (const o of memo.chains.keys()) if (!present.has(o)) memo.chains.delete(o);
  recordLayout(forwards, { byOwner, conflicts }, chains, chainOf);

  return {
    segments: segments.map((s) => s.slot.cands),
    from: [config, input.hostPorts, input.publicAddress],
    diags,
    forwards,
    chains,
  };
}

/** The draft as a plan rule of forward `forward`. A draft fresh from expansion is in no plan
 *  yet: it takes the index itself (a copy per rule was a second set of 10000 objects at 1000
 *  guests, made and kept by every reconcile). One that a plan already holds with another index
 *  (a guest before it gained or lost a forward) is copied: plans are never changed. */
function withForward(r: RuleDraft, forward: number): NatRule {
  const held = r as Partial<NatRule>;
  if (held.forward === undefined) held.forward = forward;
  return held.forward === forward ? (held as NatRule) : { ...r, forward };
}

/** A Proxmox SDN subnet with `snat 1` makes Proxmox write `raw PREROUTING -i fwbr+ -j CT
 *  --zone 1` itself (pve-network Zones/Plugin.pm): pve-nat then does not write it a second time. */
export function sdnMasquerades(input: NodeInput): boolean {
  return input.addresses.sdn.subnets.some((s) => s.snat);
}

export function zoneFix(input: NodeInput): boolean {
  const mode = input.config.conntrackZoneFix;
  if (mode !== "auto") return mode === "yes";
  return Object.values(input.guests).some((g) => g.conf.nics.some((n) => n.firewall));
}

/** The bridges whose bridged pass goes to conntrack zone 1 (SPEC §4): only what pve-nat NATs,
 *  so that every other guest's traffic is tracked exactly as without pve-nat (one entry per
 *  connection, pve-firewall's helpers attached). A guest with active forwards: each of its
 *  firewall=1 NICs (with conntrack_zone_fix = yes each NIC, in case the flag is not visible).
 *  Every fwbr device (`fwbr+`) when pve-nat may NAT any guest's traffic: a node-level forward
 *  (host.fw, cluster.fw), or hairpin (any guest may reach a forward through the public address;
 *  without its own zone that guest's routed pass finds the bridged pass's entry and is not
 *  DNATed). A name over 15 bytes cannot exist (Proxmox cannot create it) and is left out. */
export function zoneDevices(input: NodeInput, chains: readonly OwnerChains[]): string[] {
  if (chains.length === 0) return [];
  if (input.config.hairpin || chains.some((c) => c.owner === "NODE")) return ["fwbr+"];
  const out: string[] = [];
  const every = input.config.conntrackZoneFix === "yes";
  for (const { owner } of chains) {
    for (const nic of input.guests[owner as number]?.conf.nics ?? []) {
      const dev = `fwbr${owner}i${nic.index}`;
      if ((nic.firewall || every) && IFACE_NAME.test(dev)) out.push(dev);
    }
  }
  return out;
}

/** host.fw's `nf_conntrack_helpers`, as pve-firewall applies them: only while the datacenter
 *  firewall is on (it removes all its rules otherwise), IPv4 ones, in the order written. */
export function conntrackHelpers(input: NodeInput): ConntrackHelper[] {
  const enable = input.cluster?.options.enable;
  if (enable === undefined || enable === "0") return [];
  const list = input.host?.options.nf_conntrack_helpers ?? "";
  const out: ConntrackHelper[] = [];
  for (const name of list.split(",")) {
    const h = Object.hasOwn(CONNTRACK_HELPERS, name) ? CONNTRACK_HELPERS[name] : undefined;
    if (h?.v4 && !out.some((o) => o.name === name))
      out.push({ name, proto: h.proto, port: h.port });
  }
  return out;
}
