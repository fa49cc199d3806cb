import type { NatPlan, Owner } from "../model.js";
import { plannedChains } from "../nat/lookup.js";
import { compareOwners, ownerChain } from "./chains.js";
import {
  createRenderMemo,
  diffLive,
  liveOwnerChains,
  type RenderMemo,
  type RestoreRequest,
} from "./render.js";
import type { LiveState } from "./save.js";

// The sync decision, pure: given the plan, the live state and what was asked, which owners'
// chains one restore rewrites and whether the entry chains go with them. The daemon's applier
// and `pve-nat plan` both call it, so plan's payload is the one the daemon would apply.

export interface SyncAsk {
  /** Owners an event named (rewritten even if unchanged). */
  owners: readonly Owner[];
  /** Every owner and the entry chains (a full sync, `apply --all`, `plan` without a vmid). */
  all: boolean;
}

export interface SyncDecision {
  request: RestoreRequest;
  /** What differed from the plan beyond what was asked (drift, or a conflict moved). */
  drift: { owners: Owner[]; entry: boolean };
}

/** Owners that have at least one chain in `live`. */
export function liveOwners(live: LiveState): ReadonlySet<Owner> {
  return liveOwnerChains(live).owners;
}

/** Rules an owner has live (what a `removed` event counts). */
export function liveRules(live: LiveState, owner: Owner): number {
  return (
    (live.chains.get(ownerChain(owner, "DNAT"))?.length ?? 0) +
    (live.chains.get(ownerChain(owner, "SNAT"))?.length ?? 0)
  );
}

export function decideSync(
  plan: NatPlan,
  live: LiveState,
  ask: SyncAsk,
  memo: RenderMemo = createRenderMemo(),
): SyncDecision {
  const planned = plannedChains(plan);
  const present = liveOwners(live);
  const owners = new Set<Owner>();
  if (ask.all) {
    for (const o of planned.keys()) owners.add(o);
    for (const o of present) owners.add(o);
  } else {
    for (const o of ask.owners) if (planned.has(o) || present.has(o)) owners.add(o);
  }
  // Compiling is global (a conflict moves with an edit elsewhere) and the live state may have
  // drifted: anything whose live chains differ from the plan is rewritten too.
  const drift = diffLive(plan, live, memo);
  for (const o of drift.owners) owners.add(o);
  let changedSet = planned.size !== present.size;
  for (const o of planned.keys()) if (!present.has(o)) changedSet = true;
  const entry = ask.all || drift.entry || changedSet;
  if (entry) {
    // The entry chains jump to every planned owner: each must exist (or stop existing) in
    // this same payload.
    for (const o of planned.keys()) if (!present.has(o)) owners.add(o);
    for (const o of present) if (!planned.has(o)) owners.add(o);
  }
  return {
    request: { plan, owners: [...owners].sort(compareOwners), entry, live },
    drift,
  };
}
