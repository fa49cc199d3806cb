import { compareOwners, ENTRY_CHAINS, ownerChain, parseOwnerChain } from "../iptables/chains.js";
import {
  chainName,
  declare,
  entryChains,
  jumpFixes,
  preroutingMatch,
  type RestoreRequest,
  rawChain,
  ruleLine,
  sameLines,
} from "../iptables/render.js";
import type { LiveState } from "../iptables/save.js";
import type { NatPlan, Owner, OwnerChains } from "../model.js";

// render.ts's renderRestore and diffLive for the daemon, where one event touches one owner:
// rule lines are rendered once per OwnerChains object (the incremental compiler keeps an
// unchanged owner's object from plan to plan), and a planned chain already found equal to a
// live chain array is not compared again (live arrays are never mutated: livecache.ts copies
// on write). The output is byte-for-byte render.ts's (test/unit/daemon/rendercache.test.ts);
// the line builders themselves are render.ts's own.

type Parsed = ReturnType<typeof parseOwnerChain>;

const parsedNames = new Map<string, Parsed>();

/** parseOwnerChain, memoised (chain names repeat every cycle). */
export function ownerChainOf(name: string): Parsed {
  let p = parsedNames.get(name);
  if (p === undefined && !parsedNames.has(name)) {
    if (parsedNames.size > 200_000) parsedNames.clear();
    p = parseOwnerChain(name);
    parsedNames.set(name, p);
  }
  return p ?? null;
}

function compareChains(a: string, b: string): number {
  const pa = ownerChainOf(a);
  const pb = ownerChainOf(b);
  if (!pa || !pb) return pa ? 1 : pb ? -1 : a < b ? -1 : a > b ? 1 : 0;
  return compareOwners(pa.owner, pb.owner) || (pa.kind < pb.kind ? -1 : pa.kind > pb.kind ? 1 : 0);
}

interface OwnerLines {
  dnat: string[] | null;
  snat: string[] | null;
}

interface Planned {
  /** Chain name → lines, in plan order (NODE first, then by vmid; DNAT before SNAT). */
  chains: Map<string, string[]>;
  /** Owner → its chain names in that order. */
  owners: Map<Owner, string[]>;
}

export interface RenderCache {
  renderRestore(req: RestoreRequest): string;
  diffLive(plan: NatPlan, live: LiveState): { owners: Owner[]; entry: boolean };
}

export function createRenderCache(): RenderCache {
  const ownerLines = new WeakMap<OwnerChains, OwnerLines>();
  // Keyed by the chains array: the incremental compiler passes the same one on while no
  // owner's chains changed.
  const plans = new WeakMap<readonly OwnerChains[], Planned>();
  /** live array → planned array known to hold the same lines. */
  const verified = new WeakMap<readonly string[], readonly string[]>();
  let lastEntries: {
    planned: Planned;
    settings: string;
    key: string;
    chains: Map<string, string[]>;
  } | null = null;

  function same(planned: string[] | undefined, live: string[] | undefined): boolean {
    if (planned === undefined || live === undefined) return planned === live;
    if (verified.get(live) === planned) return true;
    const eq = sameLines(planned, live);
    if (eq) verified.set(live, planned);
    return eq;
  }

  function linesOf(oc: OwnerChains): OwnerLines {
    let l = ownerLines.get(oc);
    if (!l) {
      const render = (kind: "DNAT" | "SNAT", rules: OwnerChains["dnat"]) => {
        if (rules.length === 0) return null;
        const name = ownerChain(oc.owner, kind);
        return rules.map((r) => ruleLine(name, r));
      };
      l = { dnat: render("DNAT", oc.dnat), snat: render("SNAT", oc.snat) };
      ownerLines.set(oc, l);
    }
    return l;
  }

  function plannedOf(plan: NatPlan): Planned {
    let p = plans.get(plan.chains);
    if (p) return p;
    p = { chains: new Map(), owners: new Map() };
    const ordered = [...plan.chains].sort((a, b) => compareOwners(a.owner, b.owner));
    for (const oc of ordered) {
      const l = linesOf(oc);
      const names: string[] = [];
      if (l.dnat) {
        const name = ownerChain(oc.owner, "DNAT");
        p.chains.set(name, l.dnat);
        names.push(name);
      }
      if (l.snat) {
        const name = ownerChain(oc.owner, "SNAT");
        p.chains.set(name, l.snat);
        names.push(name);
      }
      // Several OwnerChains of one owner would interleave differently; render.ts's order wins.
      p.owners.set(oc.owner, [...(p.owners.get(oc.owner) ?? []), ...names]);
    }
    plans.set(plan.chains, p);
    return p;
  }

  /** Entry chains when every planned chain exists; the same arrays while nothing they
   *  depend on changes, so comparing them with live is an identity check. */
  function fullEntries(plan: NatPlan, planned: Planned): Map<string, string[]> {
    const e = plan.entry;
    const settings = `${preroutingMatch(e)}\0${e.hostAccess}`;
    if (lastEntries?.planned === planned && lastEntries.settings === settings)
      return lastEntries.chains;
    const key = `${settings}\0${[...planned.chains.keys()].join(",")}`;
    if (lastEntries?.key !== key) {
      const chains = entryChains(plan, planned.chains.keys(), () => true, ownerChainOf);
      lastEntries = { planned, settings, key, chains };
    }
    lastEntries.planned = planned;
    return lastEntries.chains;
  }

  function entriesDiffer(entries: Map<string, string[]>, live: LiveState): boolean {
    for (const [name, lines] of entries) if (!same(lines, live.chains.get(name))) return true;
    return false;
  }

  function renderRestore(req: RestoreRequest): string {
    const { plan, live } = req;
    const planned = plannedOf(plan);
    const touched = [...new Set<Owner>(req.owners)].sort(compareOwners);
    const declared: string[] = [];
    for (const o of touched) declared.push(...(planned.owners.get(o) ?? []));
    const stale = [...live.chains.keys()].filter(
      (c) => ownerChainOf(c) !== null && !planned.chains.has(c),
    );
    const declaredSet = new Set(declared);
    const exists = (c: string) => declaredSet.has(c) || live.chains.has(c);
    let allExist = true;
    for (const name of planned.chains.keys()) {
      if (!exists(name)) {
        allExist = false;
        break;
      }
    }
    const entries = allExist
      ? fullEntries(plan, planned)
      : entryChains(plan, planned.chains.keys(), exists, ownerChainOf);

    const natEntry =
      req.entry ||
      stale.length > 0 ||
      entriesDiffer(entries, live) ||
      jumpFixes("nat", live).length > 0;
    const raw = rawChain(plan);
    const rawEntry =
      req.entry ||
      !sameLines(raw, live.chains.get(ENTRY_CHAINS.raw)) ||
      jumpFixes("raw", live).length > 0;

    const out: string[] = [];
    if (natEntry || declared.length > 0) {
      const ordered = [...declared, ...stale].sort(compareChains);
      out.push("*nat");
      if (natEntry) for (const name of entries.keys()) out.push(declare(name));
      for (const name of ordered) out.push(declare(name));
      for (const name of declared) out.push(...(planned.chains.get(name) ?? []));
      if (natEntry) {
        for (const lines of entries.values()) out.push(...lines);
        out.push(...jumpFixes("nat", live));
      }
      for (const name of stale.sort(compareChains)) out.push(`-X ${chainName(name)}`);
      out.push("COMMIT");
    }
    if (rawEntry) {
      out.push("*raw", declare(ENTRY_CHAINS.raw), ...raw, ...jumpFixes("raw", live), "COMMIT");
    }
    return out.length === 0 ? "" : `${out.join("\n")}\n`;
  }

  function diffLive(plan: NatPlan, live: LiveState): { owners: Owner[]; entry: boolean } {
    const planned = plannedOf(plan);
    const owners = new Set<Owner>();
    for (const [name, lines] of planned.chains) {
      if (!same(lines, live.chains.get(name))) owners.add(ownerChainOf(name)?.owner as Owner);
    }
    for (const name of live.chains.keys()) {
      const parsed = ownerChainOf(name);
      if (parsed && !planned.chains.has(name)) owners.add(parsed.owner);
    }
    const entry =
      entriesDiffer(fullEntries(plan, planned), live) ||
      !sameLines(rawChain(plan), live.chains.get(ENTRY_CHAINS.raw)) ||
      jumpFixes("nat", live).length > 0 ||
      jumpFixes("raw", live).length > 0;
    return { owners: [...owners].sort(compareOwners), entry };
  }

  return { renderRestore, diffLive };
}
