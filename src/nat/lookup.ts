import type { Forward, NatPlan, Owner, OwnerChains } from "../model.js";

// Lookups into a plan that do not walk it. A hook is about one guest, and at 1000 guests each
// walk of plan.forwards (10000 forwards) or plan.chains on a hook's path cost ≈ 0.3–1 ms of its
// reply: ≈ 3.5 ms of a pre-start's 22 ms, after the restore (issue 10). Plans are never changed,
// so an index belongs to the plan's arrays: compile.ts records the one it lays out as it builds
// the plan; any other plan (tests, a filtered copy) gets one built on first use.

interface ForwardIndex {
  /** Each owner's forwards as indices into plan.forwards, ascending. */
  byOwner: ReadonlyMap<Owner, readonly number[]>;
  /** The forwards in state "conflict", ascending. */
  conflicts: readonly number[];
}

const forwardIndex = new WeakMap<readonly Forward[], ForwardIndex>();
const chainIndex = new WeakMap<readonly OwnerChains[], ReadonlyMap<Owner, OwnerChains>>();

export function ownerOf(f: Forward): Owner {
  return f.vmid ?? "NODE";
}

/** For compile.ts: what it laid out while building `forwards` and `chains`. */
export function recordLayout(
  forwards: readonly Forward[],
  index: ForwardIndex,
  chains: readonly OwnerChains[],
  chainsByOwner: ReadonlyMap<Owner, OwnerChains>,
): void {
  forwardIndex.set(forwards, index);
  chainIndex.set(chains, chainsByOwner);
}

function indexOf(plan: NatPlan): ForwardIndex {
  let index = forwardIndex.get(plan.forwards);
  if (index === undefined) {
    const byOwner = new Map<Owner, number[]>();
    const conflicts: number[] = [];
    plan.forwards.forEach((f, i) => {
      const o = ownerOf(f);
      const at = byOwner.get(o);
      if (at) at.push(i);
      else byOwner.set(o, [i]);
      if (f.state === "conflict") conflicts.push(i);
    });
    index = { byOwner, conflicts };
    forwardIndex.set(plan.forwards, index);
  }
  return index;
}

/** The planned owner chains by owner, in plan order (NODE first, then by vmid). */
export function plannedChains(plan: NatPlan): ReadonlyMap<Owner, OwnerChains> {
  let index = chainIndex.get(plan.chains);
  if (index === undefined) {
    index = new Map(plan.chains.map((c) => [c.owner, c]));
    chainIndex.set(plan.chains, index);
  }
  return index;
}

/** The owner's forwards, in plan order. */
export function forwardsOf(plan: NatPlan, owner: Owner): Forward[] {
  return (indexOf(plan).byOwner.get(owner) ?? []).map((i) => plan.forwards[i] as Forward);
}

/** Where in plan.forwards these owners' forwards are, ascending. */
export function forwardIndicesOf(plan: NatPlan, owners: Iterable<Owner>): number[] {
  const { byOwner } = indexOf(plan);
  const out: number[] = [];
  for (const o of new Set(owners)) for (const i of byOwner.get(o) ?? []) out.push(i);
  return out.sort((a, b) => a - b);
}

/** The forwards in state "conflict", in plan order. */
export function conflictsOf(plan: NatPlan): Forward[] {
  return indexOf(plan).conflicts.map((i) => plan.forwards[i] as Forward);
}
