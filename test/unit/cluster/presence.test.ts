// Which cluster members run pve-nat (issue 12 item 2): the pure judgement, the daemon's
// rate-limited publisher, the files as read back, and `check`'s / `status --cluster`'s views.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { clusterJson, clusterText } from "../../../src/cli/status.js";
import { attachedGuests, readClusterView, writePresence } from "../../../src/cluster/files.js";
import {
  attachRefusal,
  type ClusterView,
  clusterDiagnostics,
  nodesWithoutPveNat,
  PRESENCE_MAX_FORWARDS,
  type Presence,
  parseMembers,
  parsePresence,
  presenceForwards,
} from "../../../src/cluster/presence.js";
import { contextFrom } from "../../../src/context.js";
import { createPresencePublisher } from "../../../src/daemon/presence.js";
import { fakeClock, makePlan, settle, silent } from "../../helpers/fixtures.js";
import { gcAfterJob } from "../../helpers/gc.js";

// pve-cluster src/pmxcfs/status.c cfs_create_memberlist_msg, as /etc/pve/.members shows it.
const MEMBERS = `{
"nodename": "pve1",
"version": 5,
"cluster": { "name": "c", "version": 2, "nodes": 2, "quorate": 1 },
"nodelist": {
  "pve1": { "id": 1, "online": 1, "ip": "198.51.100.1"},
  "pve2": { "id": 2, "online": 0, "ip": "198.51.100.2"}
  }
}
`;

const presence = (node: string, extra: Partial<Presence> = {}): Presence => ({
  version: 1,
  node,
  pve_nat: "0.1.0",
  started: "2026-12-05T10:00:00.000Z",
  updated: "2026-12-05T10:00:01.000Z",
  forwards: [],
  more: 0,
  ...extra,
});

const view = (members: string[], present: string[], self = "pve1"): ClusterView => ({
  self,
  members,
  membersFrom: ".members",
  presence: new Map(present.map((n) => [n, presence(n)])),
});

describe("members and presence, judged", () => {
  it("reads .members' nodelist; a node without a cluster lists only itself; junk is null", () => {
    expect(parseMembers(MEMBERS)).toEqual(["pve1", "pve2"]);
    expect(parseMembers('{"nodename": "solo", "version": 1}')).toEqual(["solo"]);
    expect(parseMembers("not json")).toBeNull();
    expect(parseMembers("[]")).toBeNull();
  });

  it("a member other than this node without a presence file lacks pve-nat", () => {
    expect(nodesWithoutPveNat(view(["pve1", "pve2", "pve3"], ["pve1", "pve3"]))).toEqual(["pve2"]);
    // This node runs the command, so it has pve-nat whether or not its daemon wrote yet.
    expect(nodesWithoutPveNat(view(["pve1", "pve2"], ["pve2"]))).toEqual([]);
    // Standalone or a single member: nothing to refuse.
    expect(nodesWithoutPveNat(view(["pve1"], []))).toEqual([]);
    expect(nodesWithoutPveNat(view([], []))).toEqual([]);
  });

  it("an unreadable presence file still says installed", () => {
    const v = view(["pve1", "pve2"], []);
    v.presence.set("pve2", parsePresence("{", "pve2"));
    expect(nodesWithoutPveNat(v)).toEqual([]);
  });

  it("attach's refusal names every node without pve-nat", () => {
    expect(attachRefusal(view(["pve1", "pve2"], ["pve1", "pve2"]))).toBeNull();
    expect(attachRefusal(view(["pve1", "pve2", "pve3"], []))).toMatch(
      /^not attached: cluster nodes pve2, pve3 lack pve-nat \(no nodes\/pve2\/pve-nat\.json, nodes\/pve3\/pve-nat\.json\)/,
    );
  });

  it("check: one warning per node without pve-nat, naming the attached guests; info when none", () => {
    const v = view(["pve1", "pve2"], []);
    const ds = clusterDiagnostics(v, [
      { vmid: 107, node: "pve1" },
      { vmid: 300, node: "pve3" },
    ]);
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ file: "nodes/pve2/pve-nat.json", line: 0, severity: "warning" });
    expect(ds[0]?.message).toMatch(
      /^cluster node pve2 has no pve-nat .*attached guests 107, 300 \(on pve3\) cannot start there after a migration or HA recovery/,
    );
    expect(clusterDiagnostics(v, [])).toEqual([
      expect.objectContaining({ severity: "info", file: "nodes/pve2/pve-nat.json" }),
    ]);
    expect(
      clusterDiagnostics(view(["pve1", "pve2"], ["pve2"]), [{ vmid: 107, node: "pve1" }]),
    ).toEqual([]);
  });

  it("the forwards summary is capped; the rest is counted", () => {
    const many = makePlan(
      Array.from({ length: PRESENCE_MAX_FORWARDS + 5 }, (_, i) => ({
        vmid: 100 + i,
        port: 2000 + i,
      })),
    );
    const s = presenceForwards(many);
    expect(s.forwards).toHaveLength(PRESENCE_MAX_FORWARDS);
    expect(s.more).toBe(5);
    // The first PRESENCE_MAX_FORWARDS, in plan order: the last one listed is the 200th.
    expect(s.forwards.at(-1)?.vmid).toBe(100 + PRESENCE_MAX_FORWARDS - 1);
    expect(s.forwards[0]).toEqual({
      vmid: 100,
      direction: "in",
      proto: "tcp",
      public: "203.0.113.10:2000",
      private: "10.10.10.100:22",
      state: "active",
    });
    expect(presenceForwards(null)).toEqual({ forwards: [], more: 0 });
  });
});

describe("the daemon's publisher", () => {
  function setup(minIntervalMs = 10_000) {
    const clock = fakeClock();
    const writes: Presence[] = [];
    let fail = false;
    const pub = createPresencePublisher({
      node: "pve1",
      version: "9.9.9",
      write: async (p) => {
        if (fail) throw new Error("EACCES (no quorum)");
        writes.push(p);
        return true;
      },
      clock,
      log: silent,
      minIntervalMs,
    });
    return { clock, writes, pub, setFail: (v: boolean) => (fail = v) };
  }

  it("writes at start, then only when the summary changes, at most once per interval", async () => {
    const { clock, writes, pub } = setup();
    const a = makePlan([{ vmid: 107, port: 822 }]);
    await pub.start(a);
    expect(writes).toHaveLength(1);
    expect(writes[0]).toMatchObject({ node: "pve1", pve_nat: "9.9.9", more: 0 });
    // Same forwards again (a poll, an unchanged cycle): no write, however long.
    for (let i = 0; i < 5; i++) {
      pub.update(makePlan([{ vmid: 107, port: 822 }]));
      clock.advance(20_000);
      await settle();
    }
    expect(writes).toHaveLength(1);
    // Three changes in quick succession: one write, with the last of them, after the interval.
    pub.update(makePlan([{ vmid: 107, port: 823 }]));
    clock.advance(0);
    await settle();
    expect(writes).toHaveLength(2); // the interval since the last write has passed
    pub.update(makePlan([{ vmid: 107, port: 824 }]));
    clock.advance(1000);
    pub.update(makePlan([{ vmid: 107, port: 825 }]));
    clock.advance(1000);
    await settle();
    expect(writes).toHaveLength(2);
    clock.advance(8000);
    await settle();
    expect(writes).toHaveLength(3);
    expect(writes[2]?.forwards[0]?.public).toBe("203.0.113.10:825");
    expect(writes[2]?.started).toBe(writes[0]?.started);
    pub.stop();
  });

  it("a cycle reported before start (the initial sync) writes nothing of its own", async () => {
    const { clock, writes, pub } = setup();
    pub.update(makePlan([{ vmid: 107, port: 822 }]));
    clock.advance(0);
    await settle();
    expect(writes).toHaveLength(0);
    await pub.start(makePlan([{ vmid: 107, port: 822 }]));
    clock.advance(20_000);
    await settle();
    expect(writes).toHaveLength(1);
    pub.stop();
  });

  it("a failed write (read-only /etc/pve without quorum) is retried at the next change", async () => {
    const { clock, writes, pub, setFail } = setup(1000);
    setFail(true);
    await pub.start(makePlan([{ vmid: 107, port: 822 }]));
    expect(writes).toHaveLength(0);
    setFail(false);
    pub.update(makePlan([{ vmid: 107, port: 822 }]));
    clock.advance(1000);
    await settle();
    expect(writes).toHaveLength(1);
    pub.stop();
  });

  it("keeps no plan alive once a newer one came, while a write waits", async () => {
    // The summary cache held the last summarised plan: while a write waited out the interval
    // the daemon's newer plans lived beside it (at 1000 guests ≈ 1.2 MB, issue 10).
    const { clock, writes, pub } = setup();
    await pub.start(makePlan([{ vmid: 107, port: 822 }]));
    // Made in a function of its own: an async function's locals outlive their block.
    const summarised = ((b) => {
      pub.update(b); // summarised now; the write waits for the interval
      return new WeakRef(b);
    })(makePlan([{ vmid: 107, port: 823 }]));
    clock.advance(1000);
    pub.update(makePlan([{ vmid: 107, port: 824 }]));
    await gcAfterJob();
    expect(summarised.deref()).toBeUndefined();
    clock.advance(9000);
    await settle();
    expect(writes).toHaveLength(2);
    expect(writes[1]?.forwards[0]?.public).toBe("203.0.113.10:824");
    pub.stop();
  });

  it("stop cancels a pending write", async () => {
    const { clock, writes, pub } = setup();
    await pub.start(null);
    pub.update(makePlan([{ vmid: 107, port: 822 }]));
    pub.stop();
    clock.advance(60_000);
    await settle();
    expect(writes).toHaveLength(1);
  });
});

describe("the files", () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), "pvenat-cluster-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });
  const pve = (rel: string) => path.join(root, "etc/pve", rel);
  const ctx = () => contextFrom({ root });

  it("writes the presence file atomically (no temporary left) and reads the cluster back", async () => {
    await mkdir(pve("nodes/pve1"), { recursive: true });
    await mkdir(pve("nodes/pve3"), { recursive: true });
    await writeFile(pve(".members"), MEMBERS);
    const p = presence("pve1", {
      forwards: presenceForwards(makePlan([{ vmid: 107, port: 822 }])).forwards,
    });
    await writePresence(ctx(), p);
    await writePresence(ctx(), presence("pve3"));
    expect(JSON.parse(await readFile(pve("nodes/pve1/pve-nat.json"), "utf8"))).toEqual(p);
    const { readdir } = await import("node:fs/promises");
    expect(await readdir(pve("nodes/pve1"))).toEqual(["pve-nat.json"]);
    const v = await readClusterView(ctx(), "pve1");
    expect(v.members).toEqual(["pve1", "pve2"]);
    expect(v.membersFrom).toBe(".members");
    expect([...v.presence.keys()]).toEqual(["pve1", "pve3"]);
    expect(nodesWithoutPveNat(v)).toEqual(["pve2"]);

    const j = clusterJson(v) as { nodes: Array<Record<string, unknown>> };
    expect(j.nodes.map((n) => [n.node, n.member, n.pve_nat])).toEqual([
      ["pve1", true, "0.1.0"],
      ["pve2", true, null],
      ["pve3", false, "0.1.0"],
    ]);
    const text = clusterText(v);
    expect(text).toMatch(
      /^pve2 +- +- +- +pve-nat not installed \(no nodes\/pve2\/pve-nat\.json\): attached guests cannot start here$/m,
    );
    expect(text).toMatch(/^pve1 +107 +in +tcp +203\.0\.113\.10:822 +10\.10\.10\.107:22 +active$/m);
  });

  it("never creates the node directory: without it (no pmxcfs mounted) nothing is written", async () => {
    expect(await writePresence(ctx(), presence("pve1"))).toBe(false);
    const { readdir } = await import("node:fs/promises");
    expect(await readdir(root)).toEqual([]);
  });

  it("lists attached guests of every node, snapshots ignored", async () => {
    const conf = (rel: string, text: string) =>
      mkdir(path.dirname(pve(rel)), { recursive: true }).then(() => writeFile(pve(rel), text));
    await conf("nodes/pve1/qemu-server/107.conf", "hookscript: local:snippets/pve-nat-hook\n");
    await conf("nodes/pve2/lxc/201.conf", "hookscript: local:snippets/pve-nat-hook\n");
    await conf("nodes/pve2/lxc/202.conf", "hookscript: local:snippets/other\n");
    await conf(
      "nodes/pve2/qemu-server/300.conf",
      "memory: 1\n\n[s]\nhookscript: local:snippets/pve-nat-hook\n",
    );
    expect(await attachedGuests(ctx())).toEqual([
      { vmid: 107, node: "pve1" },
      { vmid: 201, node: "pve2" },
    ]);
  });
});
