import { describe, expect, it } from "vitest";
import { type Change, changedKeys, changeOf, createWatcher } from "../../../src/daemon/watcher.js";
import { fakeClock, settle, silent } from "../../helpers/fixtures.js";

const BASE: Array<[string, string]> = [
  ["config", "c1"],
  ["firewall/cluster.fw", "k1"],
  ["nodes/pve1/host.fw", "h1"],
  ["nodes/pve1/qemu-server/101.conf", "a1"],
  ["firewall/101.fw", "f1"],
  ["run:101", "running"],
  ["nodes/pve1/lxc/102.conf", "b1"],
  ["firewall/102.fw", "\0absent"],
  ["run:102", "stopped"],
];

function edit(changes: Record<string, string | null>): Map<string, string> {
  const m = new Map(BASE);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null) m.delete(k);
    else m.set(k, v);
  }
  return m;
}

describe("watcher", () => {
  it.each([
    ["a guest's .fw edited", { "firewall/101.fw": "f2" }, { all: false, vmids: [101] }],
    ["a guest started without a hook", { "run:102": "running" }, { all: false, vmids: [102] }],
    ["a guest's .conf edited", { "nodes/pve1/lxc/102.conf": "b2" }, { all: false, vmids: [102] }],
    [
      "a guest migrated in",
      { "nodes/pve1/qemu-server/250.conf": "x", "firewall/250.fw": "y", "run:250": "stopped" },
      { all: false, vmids: [250] },
    ],
    [
      "a guest migrated away",
      { "nodes/pve1/qemu-server/101.conf": null, "firewall/101.fw": null, "run:101": null },
      { all: false, vmids: [101] },
    ],
    [
      "two guests crashed",
      { "run:101": "stopped", "run:102": "running" },
      { all: false, vmids: [101, 102] },
    ],
    ["cluster.fw edited", { "firewall/cluster.fw": "k2" }, { all: true, vmids: [] }],
    ["host.fw edited", { "nodes/pve1/host.fw": "h2" }, { all: true, vmids: [] }],
    [
      "pve-nat.conf edited with a guest",
      { config: "c2", "firewall/101.fw": "f2" },
      { all: true, vmids: [101] },
    ],
  ] as const)("%s → %j", (_what, changes, expected) => {
    expect(changeOf(changedKeys(new Map(BASE), edit(changes)))).toEqual(expected);
  });

  it("polls every interval, reports only real changes, and runs the after-pass task each time", async () => {
    const clock = fakeClock();
    const seq = [
      new Map(BASE),
      new Map(BASE),
      edit({ "firewall/101.fw": "f2" }),
      edit({ "firewall/101.fw": "f2" }),
    ];
    let i = 0;
    const changes: Change[] = [];
    const after: Array<Change | null> = [];
    const w = createWatcher({
      fingerprint: async () => seq[Math.min(i++, seq.length - 1)] as Map<string, string>,
      onChange: (c) => changes.push(c),
      afterPass: async (c) => {
        after.push(c);
      },
      clock,
      intervalMs: 1000,
      log: silent,
    });
    await w.prime();
    w.start();
    for (let n = 0; n < 3; n++) {
      clock.advance(999);
      await settle();
      clock.advance(1);
      await settle();
    }
    expect(changes).toEqual([{ all: false, vmids: [101] }]);
    // Each pass tells its task what it reported (the ARP setting looks for new devices then).
    expect(after).toEqual([null, { all: false, vmids: [101] }, null]);
    w.stop();
    expect(clock.pending()).toBe(0);
  });

  it("a failing fingerprint is logged and the next pass compares with the last good one", async () => {
    const clock = fakeClock();
    const results: Array<Map<string, string> | Error> = [
      new Map(BASE),
      new Error("EIO"),
      edit({ "run:101": "stopped" }),
    ];
    let i = 0;
    const changes: Change[] = [];
    const w = createWatcher({
      fingerprint: async () => {
        const r = results[i++];
        if (r instanceof Error) throw r;
        return r as Map<string, string>;
      },
      onChange: (c) => changes.push(c),
      clock,
      intervalMs: 1000,
      log: silent,
    });
    await w.prime();
    expect(await w.pass()).toBeNull();
    expect(await w.pass()).toEqual({ all: false, vmids: [101] });
    expect(changes).toHaveLength(1);
  });
  it("prime(current) takes the given baseline without a fingerprint of its own", async () => {
    const calls: string[] = [];
    const changes: Change[] = [];
    const w = createWatcher({
      fingerprint: async () => {
        calls.push("fingerprint");
        return edit({ "firewall/101.fw": "f2" });
      },
      onChange: (c) => changes.push(c),
      clock: fakeClock(),
      intervalMs: 1000,
      log: silent,
    });
    // What the initial sync read: the first pass compares with it, not with a read of its own.
    await w.prime(new Map(BASE));
    expect(calls).toEqual([]);
    expect(await w.pass()).toEqual({ all: false, vmids: [101] });
    expect(changes).toEqual([{ all: false, vmids: [101] }]);
    expect(await w.pass()).toBeNull();
  });
});
