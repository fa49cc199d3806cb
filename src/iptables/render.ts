import { inputText } from "../input.js";
import type { NatPlan, NatRule, Owner, OwnerChains } from "../model.js";
import {
  compareOwners,
  ENTRY_CHAINS,
  isOwnedChain,
  ownerChain,
  parseOwnerChain,
} from "./chains.js";
import { BUILTIN_JUMPS, type LiveState } from "./save.js";

// NatPlan → `iptables-restore --noflush` text. Lines are written in exactly the form
// `iptables-save` prints them (checked against iptables 1.8.9, nft and legacy), so drift
// detection is text equality. Every token is checked against a strict pattern here: a value
// that fails is a bug in the compiler (which only produces typed values), so we throw.

export interface RestoreRequest {
  plan: NatPlan;
  /** Owners whose chains are (re)declared and filled from the plan. Owners not in plan.chains are removed. */
  owners: Owner[];
  /** Rewrite the entry chains (and PVENAT-RAW) in full, and fix missing/duplicate builtin jumps per `live`.
   *  The entry chains are also rewritten without it whenever the payload would otherwise leave
   *  them out of step with the owner chains (a chain deleted or added). */
  entry: boolean;
  /** Live state, to find stale owned chains (deleted in the same payload) and builtin jumps to (re)insert. */
  live: LiveState;
}

// ---------------------------------------------------------------------------------------------
// Token whitelist

const OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const IPV4 = `${OCTET}(?:\\.${OCTET}){3}`;
const PORT =
  "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)";
const PREFIX = "(?:3[0-2]|[12]?[0-9])";

export const TOKEN = {
  ipv4: new RegExp(`^${IPV4}$`),
  cidr: new RegExp(`^${IPV4}/${PREFIX}$`),
  /** iptables port match: "22", "8000:8010", "80,443,8000:8010". */
  ports: new RegExp(`^${PORT}(?::${PORT})?(?:,${PORT}(?::${PORT})?)*$`),
  /** DNAT port translation: "22" or a shifted range "9000-9010/8000". */
  toPorts: new RegExp(`^${PORT}(?:-${PORT}/${PORT})?$`),
  iface: /^[A-Za-z0-9_.+-]{1,15}$/,
  chain: /^PVENAT-[A-Z0-9-]{1,21}$/,
  helper: /^(?:amanda|ftp|irc|netbios-ns|pptp|sane|sip|snmp|tftp)$/,
  comment: /^pve-nat (?:vm[1-9][0-9]{0,8}|node) [A-Za-z0-9._/-]{1,120}:[1-9][0-9]{0,6}$/,
} as const;

/** Every line renderRestore/renderFlush can produce matches one of these (tests check it). */
export const LINE_PATTERNS: readonly RegExp[] = [
  /^\*(nat|raw)$/,
  /^COMMIT$/,
  /^:PVENAT-[A-Z0-9-]{1,21} - \[0:0\]$/,
  /^-X PVENAT-[A-Z0-9-]{1,21}$/,
  /^-[ID] (PREROUTING|OUTPUT|POSTROUTING)( 1)? -j PVENAT-(PREROUTING|OUTPUT|POSTROUTING|RAW)$/,
  /^-A PVENAT-RAW -i fwbr(\+|[1-9][0-9]{0,8}i[0-9]{1,2})( -p (tcp|udp) -m (tcp|udp) --dport [0-9]+ -j CT --helper (amanda|ftp|irc|netbios-ns|pptp|sane|sip|snmp|tftp)| -j CT) --zone 1$/,
  /^-A PVENAT-(PREROUTING|OUTPUT|POSTROUTING)( -i [A-Za-z0-9_.+-]{1,15}| ! -i fwbr\+)? -j PVENAT-(NODE|[1-9][0-9]{0,8})-(DNAT|SNAT)$/,
  new RegExp(
    "^-A PVENAT-(NODE|[1-9][0-9]{0,8})-(DNAT|SNAT)" +
      `( -s ${IPV4}/${PREFIX})?( -d ${IPV4}/${PREFIX})?` +
      "( -i [A-Za-z0-9_.+-]{1,15})?( -o [A-Za-z0-9_.+-]{1,15})?" +
      "( -p (tcp|udp))?" +
      "(( -m (tcp|udp) --sport [0-9:]+)?( -m (tcp|udp) --dport [0-9:]+)?" +
      "|( -m (tcp|udp) --sport [0-9:]+ --dport [0-9:]+)" +
      "|( -m multiport --sports [0-9:,]+)?( -m multiport --dports [0-9:,]+)?" +
      "|( -m (tcp|udp) --sport [0-9:]+)( -m multiport --dports [0-9:,]+)" +
      "|( -m multiport --sports [0-9:,]+)( -m (tcp|udp) --dport [0-9:]+))" +
      "( -m conntrack --ctstate DNAT)?" +
      ' -m comment --comment "pve-nat (vm[0-9]+|node) [A-Za-z0-9._/-]+:[0-9]+"' +
      ` -j (DNAT --to-destination ${IPV4}(:[0-9]+(-[0-9]+/[0-9]+)?)?|SNAT --to-source ${IPV4}|MASQUERADE|RETURN)$`,
  ),
];

function check(kind: keyof typeof TOKEN, value: string): string {
  if (!TOKEN[kind].test(value)) throw new Error(`render: invalid ${kind} ${JSON.stringify(value)}`);
  return value;
}

/** -s/-d as iptables-save prints them: always with a prefix, host bits zero. */
function addressMatch(value: string): string {
  // A single address (most -s/-d): no host bits to look for.
  if (!value.includes("/")) return `${check("ipv4", value)}/32`;
  const cidr = check("cidr", value);
  const [addr, len] = cidr.split("/") as [string, string];
  const n = addr.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
  const bits = Number(len);
  const host = bits === 32 ? 0 : n % 2 ** (32 - bits);
  if (host !== 0) throw new Error(`render: ${cidr} has host bits set`);
  return cidr;
}

interface PortSpecInfo {
  text: string;
  multi: boolean;
}

/** One port: no list or range to walk (once checked, plain digits are a valid port). */
const ONE_PORT_MATCH = /^[0-9]+$/;

/** Validates a port match and says whether it needs `-m multiport` (a list). */
function portMatch(value: string): PortSpecInfo {
  check("ports", value);
  if (ONE_PORT_MATCH.test(value)) return { text: value, multi: false };
  let slots = 0;
  for (const part of value.split(",")) {
    const [a, b] = part.split(":");
    if (b !== undefined && Number(a) >= Number(b))
      throw new Error(`render: bad port range ${part}`);
    slots += b === undefined ? 1 : 2;
  }
  const multi = value.includes(",");
  if (multi && slots > 15) throw new Error(`render: more than 15 ports in ${value}`);
  return { text: value, multi };
}

function toPorts(value: string): string {
  check("toPorts", value);
  const m = /^(\d+)-(\d+)\/(\d+)$/.exec(value);
  if (m && Number(m[1]) >= Number(m[2])) throw new Error(`render: bad port range ${value}`);
  return value;
}

export function chainName(value: string): string {
  if (!check("chain", value) || !isOwnedChain(value))
    throw new Error(`render: not an owned chain ${value}`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Rules

/** Rendered rule line (as iptables-save prints it) for one NatRule. */
export function ruleLine(chain: string, rule: NatRule): string {
  const parts = [`-A ${chainName(chain)}`];
  if (rule.source !== null) parts.push(`-s ${addressMatch(rule.source)}`);
  if (rule.destination !== null) parts.push(`-d ${addressMatch(rule.destination)}`);
  if (rule.inInterface !== null) parts.push(`-i ${check("iface", rule.inInterface)}`);
  if (rule.outInterface !== null) parts.push(`-o ${check("iface", rule.outInterface)}`);
  if (rule.proto !== null) {
    if (rule.proto !== "tcp" && rule.proto !== "udp")
      throw new Error(`render: bad proto ${String(rule.proto)}`);
    parts.push(`-p ${rule.proto}`);
  } else if (rule.dport !== null || rule.sport !== null) {
    throw new Error("render: ports without a protocol");
  }
  const sport = rule.sport === null ? null : portMatch(rule.sport);
  const dport = rule.dport === null ? null : portMatch(rule.dport);
  if (sport && dport && !sport.multi && !dport.multi) {
    parts.push(`-m ${rule.proto} --sport ${sport.text} --dport ${dport.text}`);
  } else {
    if (sport)
      parts.push(
        sport.multi
          ? `-m multiport --sports ${sport.text}`
          : `-m ${rule.proto} --sport ${sport.text}`,
      );
    if (dport)
      parts.push(
        dport.multi
          ? `-m multiport --dports ${dport.text}`
          : `-m ${rule.proto} --dport ${dport.text}`,
      );
  }
  if (rule.ctstateDnat) parts.push("-m conntrack --ctstate DNAT");
  parts.push(`-m comment --comment "${check("comment", rule.comment)}"`);
  const t = rule.target;
  switch (t.kind) {
    case "DNAT":
      parts.push(
        `-j DNAT --to-destination ${check("ipv4", t.address)}${t.ports === null ? "" : `:${toPorts(t.ports)}`}`,
      );
      break;
    case "SNAT":
      parts.push(`-j SNAT --to-source ${check("ipv4", t.address)}`);
      break;
    case "MASQUERADE":
      parts.push("-j MASQUERADE");
      break;
    case "RETURN":
      parts.push("-j RETURN");
      break;
    default:
      throw new Error(`render: bad target ${JSON.stringify(t)}`);
  }
  return parts.join(" ");
}

/** The interface match of the PVENAT-PREROUTING jumps (" -i vmbr0", " ! -i fwbr+" or "").
 *  Without hairpin only traffic from the external interface is DNATed. With hairpin the DNAT
 *  must happen where a guest's packet is tracked in the default zone — in the vmbr pass, never
 *  in the fwbr bridged pass (conntrack zone 1 with the zone fix) — or the reply (zone 0) finds
 *  no entry and the node answers it with a reset. */
export function preroutingMatch(e: NatPlan["entry"]): string {
  if (!e.hairpin) return ` -i ${check("iface", e.externalInterface)}`;
  return e.zoneFix ? " ! -i fwbr+" : "";
}

/** The entry chains' lines, jumping only to owner chains in `exists` (plan order kept).
 */
export function entryChains(
  plan: NatPlan,
  chains: Iterable<string>,
  exists: (c: string) => boolean,
): Map<string, string[]> {
  const e = plan.entry;
  const pre: string[] = [];
  const out: string[] = [];
  const post: string[] = [];
  const inIface = preroutingMatch(e);
  for (const name of chains) {
    if (!exists(name)) continue;
    const kind = parseOwnerChain(name)?.kind;
    if (kind === "DNAT") {
      pre.push(`-A ${ENTRY_CHAINS.prerouting}${inIface} -j ${name}`);
      if (e.hostAccess) out.push(`-A ${ENTRY_CHAINS.output} -j ${name}`);
    } else if (kind === "SNAT") {
      post.push(`-A ${ENTRY_CHAINS.postrouting} -j ${name}`);
    }
  }
  // Guest SNAT rules before the node's: a node-wide masquerade of a whole network must not
  // shadow a guest's own SNAT address. (DNAT order does not matter: claims never overlap.)
  const nodeFirst = post.findIndex((l) => l.endsWith("-j PVENAT-NODE-SNAT"));
  if (nodeFirst >= 0) post.push(...post.splice(nodeFirst, 1));
  return new Map([
    [ENTRY_CHAINS.prerouting, pre],
    [ENTRY_CHAINS.output, out],
    [ENTRY_CHAINS.postrouting, post],
  ]);
}

/** PVENAT-RAW: per zone device, the host's conntrack helpers for their ports, then the zone.
 *  CT sets a packet's conntrack template once (a later CT does nothing), and this chain runs
 *  before pve-firewall's PVEFW-PREROUTING: the helpers it would attach are attached here. */
export function rawChain(plan: NatPlan): string[] {
  const e = plan.entry;
  // An SDN subnet with `snat 1` has Proxmox write its own fwbr+ zone rule (zoneRule false): not twice.
  if (!e.zoneFix || !e.zoneRule) return [];
  const out: string[] = [];
  for (const dev of e.zoneDevices) {
    const i = `-A ${ENTRY_CHAINS.raw} -i ${check("iface", dev)}`;
    for (const h of e.helpers) {
      if (h.proto !== "tcp" && h.proto !== "udp") throw new Error(`render: bad proto ${h.proto}`);
      const port = portMatch(String(h.port));
      out.push(
        `${i} -p ${h.proto} -m ${h.proto} --dport ${port.text} -j CT --helper ${check("helper", h.name)} --zone 1`,
      );
    }
    out.push(`${i} -j CT --zone 1`);
  }
  return out;
}

export function sameLines(
  a: readonly string[] | undefined,
  b: readonly string[] | undefined,
): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  return a.length === b.length && a.every((l, i) => l === b[i]);
}

/** Lines that make the builtin jumps for `table` exactly one each, at the top when inserted. */
export function jumpFixes(table: "nat" | "raw", live: LiveState): string[] {
  const lines: string[] = [];
  for (const j of BUILTIN_JUMPS) {
    if (j.table !== table) continue;
    const count =
      live.jumps.find((l) => l.table === table && l.chain === j.chain && l.target === j.target)
        ?.count ?? 0;
    if (count === 1) continue;
    for (let i = 0; i < count; i++) lines.push(`-D ${j.chain} -j ${j.target}`);
    lines.push(`-I ${j.chain} 1 -j ${j.target}`);
  }
  return lines;
}

function jumpsOk(table: "nat" | "raw", live: LiveState): boolean {
  return jumpFixes(table, live).length === 0;
}

export function declare(name: string): string {
  return `:${chainName(name)} - [0:0]`;
}

// ---------------------------------------------------------------------------------------------
// Payloads
//
// One implementation, with an optional memo (as compile() has): the CLI renders once, the
// daemon keeps a memo so an event for one guest renders that guest's lines only. Rule lines are
// kept per owner while the compiler hands out the same OwnerChains value (plans are immutable),
// and a planned chain found equal to a live chain is not compared again while both arrays stay
// (live states are immutable too: renderSync builds the next one instead of editing this one).

interface Planned {
  /** Chain name → lines, in plan order (NODE first, then by vmid; DNAT before SNAT). */
  chains: Map<string, string[]>;
  /** Owner → its chain names in that order. */
  owners: Map<Owner, string[]>;
  /** The chain names joined (fullEntries' key), made on first use. */
  names?: string;
  /** liveOwnerChains of a live state holding exactly these chains, made on first use. */
  index?: LiveIndex;
}

interface LiveIndex {
  names: string[];
  owners: Set<Owner>;
}

/** A live state's owner chains and their owners. Live states are never changed once made
 *  (renderSync builds the next one), and one event's cycle asks this of the same state three
 *  times (the owners present, the drift, the stale chains): at 1000 guests each was a pass of
 *  2000 name lookups, ≈ a third of deciding and rendering a one-guest event (issue 10). */
const liveIndex = new WeakMap<LiveState, LiveIndex>();

export function liveOwnerChains(live: LiveState): {
  names: readonly string[];
  owners: ReadonlySet<Owner>;
} {
  let index = liveIndex.get(live);
  if (index === undefined) {
    index = { names: [], owners: new Set() };
    for (const name of live.chains.keys()) {
      const parsed = parseOwnerChain(name);
      if (parsed === null) continue;
      index.names.push(name);
      index.owners.add(parsed.owner);
    }
    liveIndex.set(live, index);
  }
  return index;
}

/** What renderSync/diffLive keep between calls. Opaque: one per daemon. */
export interface RenderMemo {
  /** An owner's rendered lines, for as long as its chains object lives: the compile memo keeps
   *  a stopped guest's, so its next start renders nothing anew. */
  lines: WeakMap<OwnerChains, { dnat: string[] | null; snat: string[] | null }>;
  planned: { chains: readonly OwnerChains[]; value: Planned } | null;
  /** live array → planned array known to hold the same lines. The planned side is held
   *  weakly: a live state outlives the plan it was checked against (the applier keeps its last
   *  read), and a strong value kept every line of that older plan alive beside the new ones
   *  (at 1000 guests ≈ 3 MB after a burst of starts, issue 10). */
  verified: WeakMap<readonly string[], WeakRef<readonly string[]>>;
  entries: { key: string; head: string; planned: Planned; chains: Map<string, string[]> } | null;
  /** A live state known to hold exactly the planned owner chains: every one with its planned
   *  lines, none other. diffLive found it so, or renderSync made it from such a state. While
   *  the plan keeps its chains (an event for a guest whose rules did not change, the usual
   *  start), a cycle neither walks nor copies the index of 2000 chains to learn that again:
   *  at 1000 guests that walk was most of deciding and rendering a one-guest event, ≈ 2 ms
   *  of an apply's 18 (issue 10). */
  matched: { planned: Planned; live: LiveState } | null;
  /** rawChain's lines and the entry they were made from: one line per zone device, a
   *  thousand at 1000 guests, checked and built twice a cycle otherwise. */
  raw: { entry: NatPlan["entry"]; lines: string[] } | null;
}

export function createRenderMemo(): RenderMemo {
  return {
    lines: new WeakMap(),
    planned: null,
    verified: new WeakMap(),
    entries: null,
    matched: null,
    raw: null,
  };
}

/** rawChain(plan), the same array while the zone devices and helpers are. */
function rawOf(plan: NatPlan, memo: RenderMemo): string[] {
  const e = plan.entry;
  const hit = memo.raw;
  if (
    hit !== null &&
    (hit.entry === e ||
      (hit.entry.zoneFix === e.zoneFix &&
        hit.entry.zoneRule === e.zoneRule &&
        sameLines(hit.entry.zoneDevices, e.zoneDevices) &&
        hit.entry.helpers.length === e.helpers.length &&
        hit.entry.helpers.every(
          (h, i) =>
            h.name === e.helpers[i]?.name &&
            h.proto === e.helpers[i]?.proto &&
            h.port === e.helpers[i]?.port,
        )))
  ) {
    memo.raw = { entry: e, lines: hit.lines };
    return hit.lines;
  }
  memo.raw = { entry: e, lines: rawChain(plan) };
  return memo.raw.lines;
}

function isMatched(memo: RenderMemo, planned: Planned, live: LiveState): boolean {
  return memo.matched?.planned === planned && memo.matched.live === live;
}

/** The owner chains a live state matched to `planned` holds: the planned ones. */
function plannedIndex(planned: Planned): LiveIndex {
  if (planned.index === undefined) {
    const owners = new Set<Owner>();
    for (const [o, names] of planned.owners) if (names.length > 0) owners.add(o);
    planned.index = { names: [...planned.chains.keys()], owners };
  }
  return planned.index;
}

function linesOf(
  oc: OwnerChains,
  memo: RenderMemo,
): { dnat: string[] | null; snat: string[] | null } {
  const hit = memo.lines.get(oc);
  if (hit !== undefined) return hit;
  const render = (kind: "DNAT" | "SNAT", rules: readonly NatRule[]) => {
    if (rules.length === 0) return null;
    const name = ownerChain(oc.owner, kind);
    return rules.map((r) => ruleLine(name, r));
  };
  const value = { dnat: render("DNAT", oc.dnat), snat: render("SNAT", oc.snat) };
  memo.lines.set(oc, value);
  return value;
}

function plannedOf(plan: NatPlan, memo: RenderMemo): Planned {
  if (memo.planned?.chains === plan.chains) return memo.planned.value;
  const value: Planned = { chains: new Map(), owners: new Map() };
  for (const oc of [...plan.chains].sort((a, b) => compareOwners(a.owner, b.owner))) {
    const l = linesOf(oc, memo);
    const names: string[] = [];
    for (const [kind, lines] of [
      ["DNAT", l.dnat],
      ["SNAT", l.snat],
    ] as const) {
      if (!lines) continue;
      const name = ownerChain(oc.owner, kind);
      value.chains.set(name, lines);
      names.push(name);
    }
    value.owners.set(oc.owner, [...(value.owners.get(oc.owner) ?? []), ...names]);
  }
  memo.planned = { chains: plan.chains, value };
  // A match with an older plan's chains can never hold again (isMatched compares this value),
  // and kept that plan's lines and a live state alive until the next match.
  memo.matched = null;
  return value;
}

/** Every owner chain the plan wants, with its lines, in plan order (NODE first, DNAT before SNAT). */
export function plannedChains(
  plan: NatPlan,
  memo: RenderMemo = createRenderMemo(),
): Map<string, string[]> {
  return plannedOf(plan, memo).chains;
}

function same(
  memo: RenderMemo,
  planned: string[] | undefined,
  live: string[] | undefined,
): boolean {
  if (planned === undefined || live === undefined) return planned === live;
  if (memo.verified.get(live)?.deref() === planned) return true;
  const eq = sameLines(planned, live);
  if (eq && live !== planned) memo.verified.set(live, new WeakRef(planned));
  return eq;
}

/** Entry chains when every planned chain exists; the same arrays while nothing they depend on
 *  changed, so comparing them with live is an identity check. */
function fullEntries(plan: NatPlan, planned: Planned, memo: RenderMemo): Map<string, string[]> {
  const e = plan.entry;
  const head = `${preroutingMatch(e)}\0${e.hostAccess}`;
  const hit = memo.entries;
  if (hit?.planned === planned && hit.head === head) return hit.chains;
  // Another plan with the same chain names (an edit of a guest's rules) keeps the same arrays.
  planned.names ??= [...planned.chains.keys()].join(",");
  const key = `${head}\0${planned.names}`;
  const chains =
    hit?.key === key ? hit.chains : entryChains(plan, planned.chains.keys(), () => true);
  memo.entries = { key, head, planned, chains };
  return chains;
}

function entriesDiffer(memo: RenderMemo, entries: Map<string, string[]>, live: LiveState): boolean {
  for (const [name, lines] of entries) if (!same(memo, lines, live.chains.get(name))) return true;
  return false;
}

export interface Sync {
  /** One atomic `iptables-restore --noflush` payload, as lines (each to be followed by "\n");
   *  none when nothing needs to change. The daemon hands these to the runner as they are. */
  lines: readonly string[];
  /** The same payload as one text ("" when nothing needs to change), joined when read. */
  readonly payload: string;
  /** The owned state the kernel holds once the payload is applied (built from what was
   *  rendered, not parsed back from the text). */
  after: LiveState;
}

/** One atomic payload for `req`, and the live state it leads to. */
export function renderSync(req: RestoreRequest, memo: RenderMemo = createRenderMemo()): Sync {
  const { plan, live } = req;
  const planned = plannedOf(plan, memo);
  const matched = isMatched(memo, planned, live);
  const declared: string[] = [];
  for (const o of [...new Set<Owner>(req.owners)].sort(compareOwners))
    declared.push(...(planned.owners.get(o) ?? []));
  // Stale: any live owner chain the plan no longer has, whoever asked (kube-proxy style).
  const stale = matched
    ? []
    : liveOwnerChains(live)
        .names.filter((c) => !planned.chains.has(c))
        .sort(compareChains);
  const declaredSet = new Set(declared);
  const exists = (c: string) => declaredSet.has(c) || live.chains.has(c);
  let allExist = true;
  if (!matched) {
    for (const name of planned.chains.keys()) {
      if (exists(name)) continue;
      allExist = false;
      break;
    }
  }
  const entries = allExist
    ? fullEntries(plan, planned, memo)
    : entryChains(plan, planned.chains.keys(), exists);

  const natFixes = jumpFixes("nat", live);
  const natEntry =
    req.entry || stale.length > 0 || entriesDiffer(memo, entries, live) || natFixes.length > 0;
  const raw = rawOf(plan, memo);
  const rawFixes = jumpFixes("raw", live);
  const rawEntry =
    req.entry || !sameLines(raw, live.chains.get(ENTRY_CHAINS.raw)) || rawFixes.length > 0;

  // Nothing to write: the state stays the one given (a cycle that rewrites nothing keeps it,
  // and with it what the memo knows of it).
  if (!natEntry && declared.length === 0 && !rawEntry) return syncOf([], live);

  const out: string[] = [];
  const chains = new Map(live.chains);
  if (natEntry || declared.length > 0) {
    out.push("*nat");
    if (natEntry) for (const name of entries.keys()) out.push(declare(name));
    for (const name of [...declared, ...stale].sort(compareChains)) out.push(declare(name));
    for (const name of declared) {
      const lines = planned.chains.get(name) ?? [];
      out.push(...lines);
      chains.set(name, lines);
    }
    if (natEntry) {
      for (const [name, lines] of entries) {
        out.push(...lines);
        chains.set(name, lines);
      }
      out.push(...natFixes);
    }
    for (const name of stale) {
      out.push(`-X ${chainName(name)}`);
      chains.delete(name);
    }
    out.push("COMMIT");
  }
  if (rawEntry) {
    out.push("*raw", declare(ENTRY_CHAINS.raw), ...raw, ...rawFixes, "COMMIT");
    chains.set(ENTRY_CHAINS.raw, raw);
  }
  const fixed = (table: "nat" | "raw") => (table === "nat" ? natEntry : rawEntry);
  const jumps: LiveState["jumps"] = [];
  for (const j of BUILTIN_JUMPS) {
    const had = live.jumps.find(
      (l) => l.table === j.table && l.chain === j.chain && l.target === j.target,
    );
    // jumpFixes leaves exactly one jump, inserted at the top, wherever the count was not 1.
    if (fixed(j.table) && (had?.count ?? 0) !== 1) jumps.push({ ...j, count: 1, atTop: true });
    else if (had) jumps.push(had);
  }
  // Declaring a chain resets its counters; this state is for structure, not for counting.
  const after: LiveState = { chains, jumps, counters: new Map() };
  if (matched) {
    // Declared chains now hold their planned lines and nothing was stale: still exactly the plan.
    memo.matched = { planned, live: after };
    liveIndex.set(after, plannedIndex(planned));
  }
  return syncOf(out, after);
}

function syncOf(lines: readonly string[], after: LiveState): Sync {
  return {
    lines,
    get payload() {
      return inputText(lines);
    },
    after,
  };
}

/** renderSync's payload alone. */
export function renderRestore(req: RestoreRequest, memo?: RenderMemo): string {
  return renderSync(req, memo).payload;
}

/** Removes every owned chain and builtin jump, nothing else; "" when nothing is live. */
export function renderFlush(live: LiveState): string {
  const out: string[] = [];
  for (const table of ["nat", "raw"] as const) {
    const chains = [...live.chains.keys()]
      .filter((c) => (c === ENTRY_CHAINS.raw) === (table === "raw") && isOwnedChain(c))
      .sort(compareChains);
    const jumps: string[] = [];
    for (const j of live.jumps) {
      if (j.table !== table) continue;
      for (let i = 0; i < j.count; i++) jumps.push(`-D ${j.chain} -j ${chainName(j.target)}`);
    }
    if (chains.length === 0 && jumps.length === 0) continue;
    out.push(
      `*${table}`,
      ...jumps,
      ...chains.map(declare),
      ...chains.map((c) => `-X ${chainName(c)}`),
      "COMMIT",
    );
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`;
}

/** Owners whose live chains differ from the plan, owners live but not planned, and whether entry chains/jumps drifted. */
export function diffLive(
  plan: NatPlan,
  live: LiveState,
  memo: RenderMemo = createRenderMemo(),
): { owners: Owner[]; entry: boolean } {
  const planned = plannedOf(plan, memo);
  const owners = new Set<Owner>();
  if (!isMatched(memo, planned, live)) {
    for (const [name, lines] of planned.chains) {
      if (!same(memo, lines, live.chains.get(name)))
        owners.add(parseOwnerChain(name)?.owner as Owner);
    }
    for (const name of liveOwnerChains(live).names) {
      if (!planned.chains.has(name)) owners.add(parseOwnerChain(name)?.owner as Owner);
    }
    if (owners.size === 0) memo.matched = { planned, live };
  }
  const entry =
    entriesDiffer(memo, fullEntries(plan, planned, memo), live) ||
    !sameLines(rawOf(plan, memo), live.chains.get(ENTRY_CHAINS.raw)) ||
    !jumpsOk("nat", live) ||
    !jumpsOk("raw", live);
  return { owners: [...owners].sort(compareOwners), entry };
}

/** Entry chains first, then owner chains NODE first then by vmid, DNAT before SNAT. */
function compareChains(a: string, b: string): number {
  const pa = parseOwnerChain(a);
  const pb = parseOwnerChain(b);
  if (!pa || !pb) return pa ? 1 : pb ? -1 : a < b ? -1 : a > b ? 1 : 0;
  return compareOwners(pa.owner, pb.owner) || (pa.kind < pb.kind ? -1 : pa.kind > pb.kind ? 1 : 0);
}
