import type { NatPlan } from "../model.js";
import { compile } from "../nat/compile.js";
import { loadNode, type NodePaths } from "../pve/node.js";

// The applier's view of the node: files + run state, with the daemon's lifecycle overrides.

export interface Overrides {
  pending(): ReadonlySet<number>;
  down(): ReadonlySet<number>;
}

export const noOverrides: Overrides = { pending: () => new Set(), down: () => new Set() };

export function planLoader(
  paths: NodePaths,
  overrides: Overrides = noOverrides,
): () => Promise<NatPlan> {
  return async () => {
    const input = await loadNode(paths, { pending: overrides.pending() });
    for (const vmid of overrides.down()) {
      const g = input.guests[vmid];
      if (g) g.state = "stopped";
    }
    return compile(input);
  };
}
