import type { Logger } from "pino";
import { type Clock, every } from "./clock.js";

// Every path that bypasses the hooks converges here (SPEC §1, §2): edits in the web UI on any
// node, guests started without a hookscript, migrations, crashes. pmxcfs gives no inotify for
// remote edits and 1 s mtimes, so sources are polled and compared by content hash.

/** What a fingerprint change means for the plan: some guests, or everyone (shared files). */
export interface Change {
  all: boolean;
  vmids: number[];
}

/** Keys whose value differs, appeared or disappeared. */
export function changedKeys(
  before: ReadonlyMap<string, string>,
  after: ReadonlyMap<string, string>,
): string[] {
  // The node source hands back the same Map while nothing changed (every idle poll): at 1000
  // guests that is 3000 entries not walked twice a second.
  if (before === after) return [];
  const out: string[] = [];
  for (const [k, v] of after) if (before.get(k) !== v) out.push(k);
  for (const k of before.keys()) if (!after.has(k)) out.push(k);
  return out.sort();
}

/** fingerprint() keys: "run:<vmid>", "firewall/<vmid>.fw", "nodes/<n>/qemu-server/<vmid>.conf"
 *  belong to one guest; anything else (pve-nat.conf, cluster.fw, host.fw) affects all. */
export function changeOf(keys: readonly string[]): Change {
  const vmids = new Set<number>();
  let all = false;
  for (const k of keys) {
    const m = /^run:(\d+)$/.exec(k) ?? /(?:^|\/)(\d+)\.(?:conf|fw)$/.exec(k);
    if (m) vmids.add(Number(m[1]));
    else all = true;
  }
  return { all, vmids: [...vmids].sort((a, b) => a - b) };
}

export interface WatcherDeps {
  fingerprint(): Promise<Map<string, string>>;
  onChange(change: Change): void;
  /** Runs after every pass with what it reported (e.g. ARP setting on new fwbr devices);
   *  errors are logged. */
  afterPass?(change: Change | null): Promise<void>;
  clock: Clock;
  intervalMs: number;
  log: Logger;
}

export interface Watcher {
  /** Takes the baseline without reporting it: `current` when given (the fingerprint of what
   *  the initial full sync read), else a fresh fingerprint. */
  prime(current?: Map<string, string>): Promise<void>;
  /** One poll: compares with the previous fingerprint and reports what changed. */
  pass(): Promise<Change | null>;
  start(): void;
  stop(): void;
}

export function createWatcher(deps: WatcherDeps): Watcher {
  let last: Map<string, string> | null = null;

  async function pass(): Promise<Change | null> {
    let change: Change | null = null;
    try {
      const fp = await deps.fingerprint();
      if (last !== null) {
        const keys = changedKeys(last, fp);
        if (keys.length > 0) {
          change = changeOf(keys);
          deps.log.debug({ keys }, "sources changed");
          deps.onChange(change);
        }
      }
      last = fp;
    } catch (err) {
      deps.log.warn(
        { err: err instanceof Error ? err.message : String(err) },
        "watcher: fingerprint failed",
      );
    }
    if (deps.afterPass) {
      await deps.afterPass(change).catch((err: unknown) => {
        deps.log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          "watcher: after-pass task failed",
        );
      });
    }
    return change;
  }

  const loop = every(deps.clock, deps.intervalMs, pass);

  return {
    async prime(current) {
      if (current) {
        last = current;
        return;
      }
      try {
        last = await deps.fingerprint();
      } catch (err) {
        deps.log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          "watcher: fingerprint failed",
        );
      }
    },
    pass,
    start: loop.start,
    stop: loop.stop,
  };
}
