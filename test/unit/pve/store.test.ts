// pmxcfs's store as the poll's change signal (src/pve/store.ts): when a poll may leave the
// guests' .fw unstat'ed, and a node source that does so while the store is still and stats
// again once it moves, after STORE_QUIET_MS, or every STORE_FULL_EVERY_MS.
import { rm, utimes, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Native, statPaths } from "../../../src/native/addon.js";
import { createNodeSource, RECENT_MS } from "../../../src/pve/cache.js";
import {
  STORE_FULL_EVERY_MS,
  STORE_QUIET_MS,
  type StoreState,
  storeStill,
} from "../../../src/pve/store.js";
import { loadTestNative } from "../../helpers/native.js";
import { makeStore, storeCommit, tempRoot, vmlistText, writeNode } from "../../helpers/simnode.js";

const roots: string[] = [];
let native: Native;
let disposeNative = () => {};
beforeAll(() => {
  ({ native, dispose: disposeNative } = loadTestNative());
});
afterAll(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
  disposeNative();
});

describe("storeStill", () => {
  /** Polls once a second from wall 100 000 (mono = wall here); the store last written at
   *  `written`; returns which polls skipped. */
  function polls(n: number, written: number, movedAt: ReadonlySet<number> = new Set()) {
    let state: StoreState | null = null;
    const skips: boolean[] = [];
    for (let i = 0; i < n; i++) {
      const t = 100_000 + i * 1000;
      const r = storeStill(state, movedAt.has(i), written, t, t);
      skips.push(r.skip);
      state = r.next;
    }
    return skips;
  }

  it("never skips the first poll, and skips while the store was written long before", () => {
    expect(polls(4, 0)).toEqual([false, true, true, true]);
  });

  it("does not trust a store written within STORE_QUIET_MS of the last stat", () => {
    // Written 500 ms before the first poll: a later write in the same clock step (or a .fw
    // stat from the FUSE attribute cache) could hide behind the numbers that poll saw.
    const written = 100_000 - 500;
    const skips = polls(6, written);
    const firstSkip = skips.indexOf(true);
    expect(skips.slice(0, firstSkip).every((s) => !s)).toBe(true);
    // The first skip follows a stat taken STORE_QUIET_MS or more after the write.
    const trusted = 100_000 + (firstSkip - 1) * 1000;
    expect(trusted - written).toBeGreaterThanOrEqual(STORE_QUIET_MS);
    expect(trusted - 1000 - written).toBeLessThan(STORE_QUIET_MS);
    expect(skips.slice(firstSkip).every((s) => s)).toBe(true);
  });

  it("stats after the store moved, and again until the move is old enough", () => {
    // Moved at poll 3 (a write between polls 2 and 3, at 102 500).
    let state: StoreState | null = null;
    const skips: boolean[] = [];
    for (let i = 0; i < 8; i++) {
      const t = 100_000 + i * 1000;
      const written = i >= 3 ? 102_500 : 0;
      const r = storeStill(state, i === 3, written, t, t);
      skips.push(r.skip);
      state = r.next;
    }
    expect(skips).toEqual([false, true, true, false, false, false, true, true]);
  });

  it("runs a full pass at least every STORE_FULL_EVERY_MS", () => {
    const n = 2 * (STORE_FULL_EVERY_MS / 1000) + 1;
    const skips = polls(n, 0);
    const full = skips.flatMap((s, i) => (s ? [] : [i]));
    expect(full).toEqual([0, STORE_FULL_EVERY_MS / 1000, (2 * STORE_FULL_EVERY_MS) / 1000]);
  });
});

describe("node source with pmxcfs's store", () => {
  async function node(store: boolean) {
    const { root, path, paths } = await tempRoot("pvenat-store-", roots);
    await writeNode({
      root,
      config: "node = pve1\npublic_address = 203.0.113.10\n",
      // pmxcfs's guest list: with it a quiet pass keeps the guest configs unstat'ed.
      vmlist: true,
      guests: [{ vmid: 105, kind: "lxc", conf: "hostname: a\n", fw: rule(822) }],
    });
    if (store) await makeStore(root);
    const fw = path("/etc/pve/firewall/105.fw");
    const old = (Date.now() - 10 * RECENT_MS) / 1000;
    await utimes(fw, old, old);
    // Every number the source looks at (the .fw's ctime, the store's) older than both bounds.
    await new Promise((r) => setTimeout(r, Math.max(RECENT_MS, STORE_QUIET_MS) + 100));
    let fwStats = 0;
    let mono = 0;
    const batch = statPaths(native);
    const source = createNodeSource(paths, {
      statMany: (p, out) => {
        if (p.includes(fw)) fwStats++;
        return batch(p, out);
      },
      monotonic: () => mono,
    });
    const comment = () => source.input().guests[105]?.fw?.rules[0]?.comment;
    // The first pass reads everything; the second (with .vmlist's version now known) finds
    // every guest quiet, and only then may a pass leave the .fw alone.
    await source.refresh({ all: true });
    mono += 1000;
    await source.refresh({ all: true });
    return {
      root,
      path,
      fw,
      source,
      comment,
      stats: () => fwStats,
      /** One poll, `ms` after the last. */
      poll: async (ms = 1000) => {
        mono += ms;
        await source.refresh({ all: true });
      },
    };
  }
  const rule = (port: number) => `[RULES]\n\nIN ACCEPT -p tcp -dport 22 # NAT:${port}\n`;

  it("leaves the .fw unstat'ed while the store is still, and reads an edit it commits", async () => {
    const n = await node(true);
    expect(n.comment()).toBe("NAT:822");
    const first = n.stats();
    for (let i = 0; i < 3; i++) {
      await n.poll();
    }
    expect(n.stats()).toBe(first);

    // The same edit as pmxcfs makes it: the commit, then the new file.
    await storeCommit(n.root);
    await writeFile(n.fw, rule(823));
    await n.poll();
    expect(n.stats()).toBe(first + 1);
    expect(n.comment()).toBe("NAT:823");
  });

  it("keeps stat'ing for STORE_QUIET_MS after a commit", async () => {
    const n = await node(true);
    await storeCommit(n.root);
    await n.poll();
    const afterCommit = n.stats();
    // A file written right after the poll that saw the commit: the store's numbers do not
    // move again (as with a write in the same clock step), yet the next poll sees it.
    await writeFile(n.fw, rule(824));
    await n.poll();
    expect(n.stats()).toBe(afterCommit + 1);
    expect(n.comment()).toBe("NAT:824");
  });

  it("stats every .fw once per STORE_FULL_EVERY_MS even while the store is still", async () => {
    const n = await node(true);
    const first = n.stats();
    // A write that bypassed pmxcfs (no commit): only the periodic pass finds it.
    await writeFile(n.fw, rule(825));
    await n.poll();
    expect(n.comment()).toBe("NAT:822");
    await n.poll(STORE_FULL_EVERY_MS);
    expect(n.stats()).toBe(first + 1);
    expect(n.comment()).toBe("NAT:825");
  });

  it("leaves .vmlist unread while the store is still", async () => {
    const n = await node(true);
    const name = () => n.source.input().guests[105]?.conf?.name;
    expect(name()).toBe("a");
    // A config edit as pmxcfs shows it: the config, and .vmlist with the guest's version bumped.
    // Without the commit that always comes with it the store stays still: the list is not read
    // again, so the config is not stat'ed.
    await writeFile(n.path("/etc/pve/nodes/pve1/lxc/105.conf"), "hostname: b\n");
    await writeFile(n.path("/etc/pve/.vmlist"), vmlistText(2, { 105: ["pve1", "lxc", 2] }));
    await n.poll();
    expect(name()).toBe("a");
    await storeCommit(n.root);
    await n.poll();
    expect(name()).toBe("b");
  });

  it("without the store stats every .fw on every poll", async () => {
    const n = await node(false);
    const first = n.stats();
    for (let i = 0; i < 3; i++) {
      await n.poll();
    }
    expect(n.stats()).toBe(first + 3);
    await writeFile(n.fw, rule(826));
    await n.poll();
    expect(n.comment()).toBe("NAT:826");
  });
});
