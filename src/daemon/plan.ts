import type { NatPlan, NodeInput, Owner } from "../model.js";
import { compile, createCompileMemo } from "../nat/compile.js";
import type { NodeSource, RefreshScope } from "../pve/cache.js";

// The applier's view of the node: files + run state, with the daemon's lifecycle overrides.
// Sources are cached between cycles (pve/cache.ts, the same source the watcher's fingerprint reads) and compiled with one long-lived memo (nat/compile.ts): a cycle for one
// guest re-validates that guest's files and the shared ones, and re-expands only what changed.

export interface Overrides {
  pending(): ReadonlySet<number>;
  down(): ReadonlySet<number>;
}

export const noOverrides: Overrides = { pending: () => new Set(), down: () => new Set() };

/** What a cycle re-reads before compiling: everything, or some owners plus the shared files
 *  (and, with `runState`, every guest's run state). */
export type LoadScope = RefreshScope;

export function planLoader(
  source: NodeSource,
  overrides: Overrides = noOverrides,
  /** Sees the input each plan was compiled from (the daemon's guest firewall check). */
  onInput?: (input: NodeInput) => void,
): (scope?: LoadScope) => Promise<NatPlan> {
  const memo = createCompileMemo();
  return async (scope = { all: true }) => {
    const pending = overrides.pending();
    const down = overrides.down();
    if ("owners" in scope && scope.ownRunState === undefined) {
      // A starting guest counts as running and a held-down one as stopped, whatever its
      // run state says: re-reading it (one /proc/net/unix scan per LXC event) changes nothing.
      const decided = (o: Owner) => o === "NODE" || pending.has(o) || down.has(o);
      scope = { ...scope, ownRunState: !scope.owners.every(decided) };
    }
    await source.refresh(scope);
    let input = source.input({ pending });
    // The source's value is shared between cycles: held-down guests go into a copy.
    const held = [...down].filter((vmid) => input.guests[vmid] !== undefined);
    if (held.length > 0) {
      const guests = { ...input.guests };
      for (const vmid of held)
        guests[vmid] = { ...(guests[vmid] as (typeof guests)[number]), state: "stopped" };
      input = { ...input, guests };
    }
    onInput?.(input);
    return compile(input, memo);
  };
}
