import { readdirSync, statSync } from "node:fs";
import type { Context } from "../context.js";
import { createRunner } from "../iptables/runner.js";
import { emptyLive, type LiveState, parseSave } from "../iptables/save.js";
import type { Config } from "../model.js";

// The node's live nat/raw state for commands that render against it (`plan`), or why it
// cannot be read. A simulated node (--root) is only read inside a network namespace: there the
// namespace is the node; outside one, the tables belong to the real host, not to that node.

export type LiveRead = { live: LiveState; unread: null } | { live: LiveState; unread: string };

/** Whether this process runs in a named network namespace (`ip netns exec`): its namespace is
 *  one of those bound under /run/netns (what `ip netns identify` checks). /proc/1/ns is not
 *  readable in every sandbox, so init's namespace is not compared directly. */
export function inNetns(): boolean {
  try {
    const self = statSync("/proc/self/ns/net");
    for (const name of readdirSync("/run/netns")) {
      const st = statSync(`/run/netns/${name}`, { throwIfNoEntry: false });
      if (st && st.ino === self.ino && st.dev === self.dev) return true;
    }
  } catch {
    // No /run/netns: no named namespace exists, so this is not one.
  }
  return false;
}

/** Whether this process may read the node's live state: root, and not a simulated node
 *  (--root) unless inside a network namespace (which then is that node). */
export function liveReadable(ctx: Context): string | null {
  if (process.getuid?.() !== 0) return "not running as root";
  if (ctx.root !== undefined && !inNetns()) return "--root outside a network namespace";
  return null;
}

export async function readLive(ctx: Context, config: Config): Promise<LiveRead> {
  const why = liveReadable(ctx);
  if (why !== null) return { live: emptyLive(), unread: why };
  try {
    const runner = await createRunner(config.iptables);
    const [nat, raw] = await Promise.all([runner.save("nat"), runner.save("raw")]);
    return { live: parseSave(nat, raw), unread: null };
  } catch (err) {
    return { live: emptyLive(), unread: err instanceof Error ? err.message : String(err) };
  }
}
