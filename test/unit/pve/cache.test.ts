// A long-lived node source (the daemon's) must give what a fresh one (loadNode) reads: a simulated node under --root,
// random file edits (also same-size rewrites that keep the mtime, unreadable files, a VMID in
// both directories, another node name, a qemu guest that starts and stops), and after each edit
// a refresh — of the touched guest only when only its files changed — compared with loadNode.
import { mkdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NodeInput } from "../../../src/model.js";
import { dirEventsOf, type Native, pidfdsOf, statPaths } from "../../../src/native/addon.js";
import {
  createNodeSource,
  HOST_PORTS_EVERY_MS,
  RECENT_MS,
  type RefreshScope,
  type SourceOptions,
} from "../../../src/pve/cache.js";
import { loadNode } from "../../../src/pve/node.js";
import type { Background } from "../../helpers/exec.js";
import { loadTestNative } from "../../helpers/native.js";
import { prng } from "../../helpers/nodegen.js";
import { qemuPidfile, startGuest, tempRoot, writeNode } from "../../helpers/simnode.js";

const children: Background[] = [];
const roots: string[] = [];

// The daemon's batch stat (src/native/statmany.c), compiled here as the package build does.
let native: Native;
let disposeNative = () => {};
beforeAll(() => {
  ({ native, dispose: disposeNative } = loadTestNative());
});

afterAll(async () => {
  for (const c of children) await c.kill9();
  for (const r of roots) await rm(r, { recursive: true, force: true });
  disposeNative();
});

/** How the daemon reads the node: one statSync per .fw and /proc/net/unix (without the addon),
 *  or the addon's statMany, first reads, listening-socket dump and pidfds (the single
 *  executable). */
const STATS: [string, () => SourceOptions][] = [
  ["statSync", () => ({})],
  [
    "statMany",
    () => ({
      statMany: statPaths(native),
      readFile: native.readFile,
      abstractListeners: () => native.abstractListeners(),
      pidfds: pidfdsOf(native),
      dirEvents: dirEventsOf(native),
    }),
  ],
];

/** hostPorts describe the machine's listening sockets at read time; compared separately. */
function comparable(i: NodeInput): NodeInput {
  return { ...i, hostPorts: { any: [], at: {} } };
}

function fwText(r: () => number, vmid: number): string {
  const rules = Array.from(
    { length: Math.floor(r() * 4) },
    (_, j) => `IN ACCEPT -p tcp -dport ${20 + j} # NAT:${800 + Math.floor(r() * 50)}`,
  );
  if (r() < 0.2) rules.push("IN ACCEPT -source nosuchalias -p tcp -dport 22 # NAT:900");
  if (r() < 0.2) rules.push("GROUP web");
  return `[OPTIONS]\n\nenable: ${vmid % 2}\n\n[RULES]\n\n${rules.join("\n")}\n`;
}

/** A simulated node with one LXC guest (105) and no .fw, in a temporary root. */
async function oneGuestNode() {
  const { root, path, paths } = await tempRoot("pvenat-cache-", roots);
  await writeNode({
    root,
    config: "node = pve1\npublic_address = 203.0.113.10\n",
    guests: [{ vmid: 105, kind: "lxc", conf: "hostname: a\n" }],
  });
  return { root, path, paths };
}

describe("cached node source", () => {
  it.each(
    STATS.flatMap(([how, opts]) => [1, 2, 3, 4, 5, 6].map((seed) => [how, seed, opts] as const)),
  )("reads what loadNode reads after every edit (%s, seed %i)", async (_how, seed, opts) => {
    const r = prng(seed);
    const { root, path, paths } = await tempRoot("pvenat-cache-", roots);
    const put = async (abs: string, text: string) => {
      await mkdir(dirname(path(abs)), { recursive: true });
      await rm(path(abs), { recursive: true, force: true });
      await writeFile(path(abs), text);
    };
    const del = (abs: string) => rm(path(abs), { recursive: true, force: true });
    const conf = (node: string, kind: "qemu" | "lxc", vmid: number) =>
      `/etc/pve/nodes/${node}/${kind === "qemu" ? "qemu-server" : "lxc"}/${vmid}.conf`;
    const confText = (kind: "qemu" | "lxc", vmid: number) =>
      kind === "qemu"
        ? `name: vm${vmid}\nnet0: virtio=AA:BB:CC:DD:EE:01,bridge=vmbr1\nipconfig0: ip=10.10.10.${vmid % 200}/24\n`
        : `hostname: ct${vmid}\nnet0: name=eth0,bridge=vmbr1,ip=10.10.10.${vmid % 200}/24\n`;
    const config = (node: string, auto = false) =>
      `node = ${node}\n${auto ? "" : "public_address = 203.0.113.10\n"}`;

    const vmids = [101, 102, 103, 104, 105];
    const kindOf = (vmid: number): "qemu" | "lxc" => (vmid % 2 ? "lxc" : "qemu");
    await writeNode({
      root,
      config: config("pve1"),
      cluster:
        "[ALIASES]\n\nadmin 198.51.100.7\n\n[group web]\n\nIN ACCEPT -p tcp -dport 80 # NAT:8080\n",
      host: "[RULES]\n\nIN ACCEPT -p tcp -dport 22\n",
      guests: [
        ...vmids.map((vmid) => ({
          vmid,
          kind: kindOf(vmid),
          conf: confText(kindOf(vmid), vmid),
          fw: fwText(r, vmid),
        })),
        { vmid: 201, kind: "lxc", node: "pve2", conf: confText("lxc", 201) },
      ],
    });

    const source = createNodeSource(paths, opts());
    const pending = new Set([103]);
    const check = async (scope: RefreshScope | null, what: string) => {
      if (scope) await source.refresh(scope);
      // Before loadNode: its own source bumps the change count all sources share.
      const got = comparable(source.input({ pending }));
      const want = await loadNode(paths, { pending });
      expect(got, what).toStrictEqual(comparable(want));
      expect(source.input({ pending })).toMatchObject({
        hostPorts: { any: expect.any(Array), at: expect.any(Object) },
      });
    };
    await check({ all: true }, "initial");

    let qemu: Background | null = null;
    for (let step = 0; step < 30; step++) {
      const vmid = vmids[Math.floor(r() * vmids.length)] as number;
      const kind = kindOf(vmid);
      const fw = `/etc/pve/firewall/${vmid}.fw`;
      const x = r();
      let scope: RefreshScope = { owners: [vmid] };
      let what: string;
      if (x < 0.3) {
        what = "rewrite a .fw";
        await put(fw, fwText(r, vmid));
      } else if (x < 0.4) {
        what = "same-size edit keeping the mtime";
        const st = await stat(path(fw)).catch(() => null);
        const text = fwText(r, vmid);
        if (st?.isFile()) {
          await writeFile(path(fw), text);
          await utimes(path(fw), st.atime, st.mtime);
        } else {
          await put(fw, text);
        }
      } else if (x < 0.45) {
        what = "delete a .fw";
        await del(fw);
      } else if (x < 0.5) {
        what = "a .fw that cannot be read";
        await del(fw);
        await mkdir(path(fw), { recursive: true });
      } else if (x < 0.55) {
        what = "remove a guest";
        await del(conf("pve1", kind, vmid));
      } else if (x < 0.62) {
        what = "add (back) a guest";
        await put(conf("pve1", kind, vmid), confText(kind, vmid));
      } else if (x < 0.66) {
        what = "the same VMID in both directories";
        await put(conf("pve1", kind === "qemu" ? "lxc" : "qemu", vmid), confText(kind, vmid));
      } else if (x < 0.72) {
        what = "a qemu guest starts or stops";
        scope = { owners: [102] };
        if (qemu) {
          // Killed, its pidfile left behind.
          await qemu.kill9();
          qemu = null;
        } else {
          qemu = await startGuest({
            root,
            vmid: 102,
            kind: "qemu",
            ns: null,
            track: (b) => children.push(b),
          });
        }
      } else if (x < 0.8) {
        what = "cluster.fw";
        scope = r() < 0.5 ? { owners: [] } : { all: true };
        await put(
          "/etc/pve/firewall/cluster.fw",
          `[ALIASES]\n\n${r() < 0.5 ? "nosuchalias 198.51.100.9\n" : ""}\n[group web]\n\nIN ACCEPT -p tcp -dport 80 # NAT:${8000 + step}\n`,
        );
      } else if (x < 0.85) {
        what = "host.fw";
        scope = { owners: [] };
        if (r() < 0.3) await del("/etc/pve/nodes/pve1/host.fw");
        else
          await put("/etc/pve/nodes/pve1/host.fw", `[RULES]\n\nIN ACCEPT -p tcp -dport ${step}\n`);
      } else if (x < 0.9) {
        what = "pve-nat.conf (node name, public address)";
        scope = { owners: [vmid] };
        await put("/etc/pve-nat/pve-nat.conf", config(r() < 0.7 ? "pve1" : "pve2", r() < 0.2));
      } else {
        what = "poll";
        scope = { all: true };
      }
      await check(scope, `seed ${seed} step ${step}: ${what}`);
      if (r() < 0.5) {
        // A pre-start or the end of a start grace: only the pending set moves.
        const v = vmids[Math.floor(r() * vmids.length)] as number;
        if (pending.has(v)) pending.delete(v);
        else pending.add(v);
        // No refresh: nothing on disk changed, so input() derives it from the last build.
        await check(null, `seed ${seed} step ${step}: vm${v} pending or not`);
      }
    }
  });

  it("with pidfds, reads a running qemu guest's command line only when its pidfile names a new pid", async () => {
    const { root, paths } = await tempRoot("pvenat-cache-", roots);
    await writeNode({
      root,
      config: "node = pve1\npublic_address = 203.0.113.10\n",
      guests: [
        {
          vmid: 102,
          kind: "qemu",
          conf: "name: vm102\nnet0: virtio=AA:BB:CC:DD:EE:01,bridge=vmbr1\nipconfig0: ip=10.10.10.102/24\n",
        },
      ],
    });
    const pidfds = pidfdsOf(native);
    let opened = 0;
    const batch = statPaths(native);
    let pidfileStats = 0;
    const source = createNodeSource(paths, {
      statMany: (p, out) => {
        if (p.some((f) => f.endsWith(".pid"))) pidfileStats++;
        return batch(p, out);
      },
      dirEvents: dirEventsOf(native),
      pidfds: {
        ...pidfds,
        open: (pid) => {
          opened++;
          return pidfds.open(pid);
        },
      },
    });
    const state = async () => {
      await source.refresh({ all: true });
      expect(comparable(source.input())).toStrictEqual(comparable(await loadNode(paths)));
      return source.input().guests[102]?.state;
    };
    expect(await state()).toBe("stopped");
    expect(opened).toBe(0);
    const vm = await startGuest({ root, vmid: 102, kind: "qemu", ns: null });
    children.push(vm);
    for (let i = 0; i < 3; i++) expect(await state()).toBe("running");
    // One read of the command line (with its pidfd) for the pid, none for the passes after it,
    // and no pidfile stat'ed while their directory's watch reports nothing.
    expect(opened).toBe(1);
    const stats = pidfileStats;
    for (let i = 0; i < 2; i++) expect(await state()).toBe("running");
    expect(pidfileStats).toBe(stats);
    // A hook's refresh of the guest's run state polls the same pidfd.
    await source.refresh({ owners: [], runStateOf: [102] });
    expect(source.input().guests[102]?.state).toBe("running");
    expect(opened).toBe(1);
    // Killed, its pidfile left behind: the pidfd says it exited; the pid is read again (gone).
    await vm.kill9();
    expect(await state()).toBe("stopped");
    expect(opened).toBe(2);
    // Started again: a new pid (the pidfile rewritten: the watch reports it), read once more.
    children.push(await startGuest({ root, vmid: 102, kind: "qemu", ns: null }));
    expect(await state()).toBe("running");
    expect(pidfileStats).toBeGreaterThan(stats);
    expect(await state()).toBe("running");
    expect(opened).toBe(3);
    // The pidfile removed while the process runs: check_running says stopped, and so do we.
    await rm(qemuPidfile(root, 102));
    expect(await state()).toBe("stopped");
  });

  it.each(STATS)("follows an LXC guest's run state as loadNode does (%s)", async (_how, opts) => {
    const { root, paths } = await oneGuestNode();
    const source = createNodeSource(paths, opts());
    const state = async () => {
      await source.refresh({ all: true });
      const got = source.input().guests[105]?.state;
      expect(comparable(source.input())).toStrictEqual(comparable(await loadNode(paths)));
      return got;
    };
    expect(await state()).toBe("stopped");
    const ct = await startGuest({
      root,
      vmid: 105,
      kind: "lxc",
      ns: null,
      track: (b) => children.push(b),
    });
    expect(await state()).toBe("running");
    await ct.kill9();
    expect(await state()).toBe("stopped");
  });

  it("runStateOf re-reads those guests' run state and none of their files", async () => {
    const { root, path, paths } = await tempRoot("pvenat-cache-", roots);
    const conf =
      "name: vm102\nnet0: virtio=AA:BB:CC:DD:EE:01,bridge=vmbr1\nipconfig0: ip=10.10.10.2/24\n";
    await writeNode({
      root,
      config: "node = pve1\npublic_address = 203.0.113.10\n",
      guests: [
        { vmid: 102, kind: "qemu", conf, fw: "[RULES]\n\nIN ACCEPT -p tcp -dport 22 # NAT:822\n" },
      ],
    });
    const source = createNodeSource(paths);
    await source.refresh({ all: true });
    expect(source.input().guests[102]?.state).toBe("stopped");
    await startGuest({ root, vmid: 102, kind: "qemu", ns: null, track: (b) => children.push(b) });
    await writeFile(
      path("/etc/pve/firewall/102.fw"),
      "[RULES]\n\nIN ACCEPT -p tcp -dport 23 # NAT:823\n",
    );
    await source.refresh({ owners: [], runStateOf: [102] });
    const g = source.input().guests[102];
    expect(g?.state).toBe("running");
    // The .fw edit is the watcher's (or a guest event's) to see, not a post-start's.
    expect(g?.fw?.rules.map((r) => r.line)).toEqual([3]);
    expect(JSON.stringify(g?.fw?.rules)).toContain('"22"');
    await source.refresh({ owners: [102] });
    expect(JSON.stringify(source.input().guests[102]?.fw?.rules)).toContain('"23"');
  });

  it("a pending change rebuilds only that guest's entry", async () => {
    const { root, paths } = await tempRoot("pvenat-cache-", roots);
    await writeNode({
      root,
      config: "node = pve1\npublic_address = 203.0.113.10\n",
      guests: [105, 106, 107].map((vmid) => ({
        vmid,
        kind: "lxc" as const,
        conf: "hostname: b\n",
      })),
    });
    const source = createNodeSource(paths);
    await source.refresh({ all: true });
    const before = source.input({ pending: new Set() });
    expect(before.guests[105]?.state).toBe("stopped");
    const after = source.input({ pending: new Set([105]) });
    expect(after.guests[105]?.state).toBe("starting");
    expect(after.guests[106]).toBe(before.guests[106]);
    expect(after.guests[105]?.conf).toBe(before.guests[105]?.conf);
    expect(comparable(after)).toStrictEqual(
      comparable(await loadNode(paths, { pending: new Set([105]) })),
    );
    // Back to no guest pending: stopped again.
    expect(source.input({ pending: new Set() }).guests[105]?.state).toBe("stopped");
  });

  it.each(
    STATS.flatMap(([how, opts]) =>
      [
        ["a poll", { all: true }],
        ["an apply for the guest", { owners: [105] }],
      ].map(([on, scope]) => [on, how, scope as RefreshScope, opts] as const),
    ),
  )("sees a same-size edit that keeps inode and mtime on %s (%s)", async (_, _how, scope, opts) => {
    const { path, paths } = await oneGuestNode();
    const fw = path("/etc/pve/firewall/105.fw");
    await writeFile(fw, "[RULES]\n\nIN ACCEPT -p tcp -dport 22 # NAT:822\n");
    // pmxcfs: whole-second mtimes.
    const second = Math.floor(Date.now() / 1000);
    await utimes(fw, second, second);
    const source = createNodeSource(paths, opts());
    await source.refresh({ all: true });
    await writeFile(fw, "[RULES]\n\nIN ACCEPT -p tcp -dport 22 # NAT:823\n");
    await utimes(fw, second, second);
    await source.refresh(scope);
    expect(source.input().guests[105]?.fw?.rules[0]?.comment).toBe("NAT:823");
  });

  it("with statMany, trusts the batch for a settled .fw and stats a recent one again", async () => {
    const { path, paths } = await oneGuestNode();
    const fw = path("/etc/pve/firewall/105.fw");
    const rule = (port: number) => `[RULES]\n\nIN ACCEPT -p tcp -dport 22 # NAT:${port}\n`;
    await writeFile(fw, rule(822));
    const settled = Math.floor((Date.now() - 10 * RECENT_MS) / 1000);
    await utimes(fw, settled, settled);
    // Its ctime (set by the write, not by utimes) must be older than RECENT_MS as well.
    await new Promise((r) => setTimeout(r, RECENT_MS + 100));
    // A batch stat that can be told to report an older stat of the file.
    let frozen: Float64Array | null = null;
    const batch = statPaths(native);
    const statMany = (p: readonly string[], out: Float64Array) => {
      const before = out.slice();
      batch(p, out);
      if (frozen) out.set(frozen);
      return out.some((v, i) => v !== before[i]) ? 1 : 0;
    };
    // The first read through the addon's readFile, as the daemon's: the numbers it keeps are
    // the ones the batch is compared with.
    const source = createNodeSource(paths, { statMany, readFile: native.readFile });
    const comment = () => source.input().guests[105]?.fw?.rules[0]?.comment;
    await source.refresh({ all: true });
    expect(comment()).toBe("NAT:822");
    const old = new Float64Array(4);
    native.statMany(native.statBatch([fw]), old);

    await writeFile(fw, rule(823));
    await utimes(fw, settled, settled);
    frozen = old;
    await source.refresh({ all: true });
    // The batch said "as before": the file was not stat'ed or read again.
    expect(comment()).toBe("NAT:822");
    frozen = null;
    await source.refresh({ all: true });
    expect(comment()).toBe("NAT:823");

    // Written within RECENT_MS: another write in the same second could keep every number, so
    // such a file goes through statSync and is read again even when the batch shows no change.
    const now = Date.now() / 1000;
    await writeFile(fw, rule(824));
    await utimes(fw, now, now);
    await source.refresh({ all: true });
    expect(comment()).toBe("NAT:824");
    frozen = new Float64Array(4);
    native.statMany(native.statBatch([fw]), frozen);
    await writeFile(fw, rule(825));
    await utimes(fw, now, now);
    await source.refresh({ all: true });
    expect(comment()).toBe("NAT:825");
  });

  it("gives the fingerprint node.ts always gave: content hashes, run state", async () => {
    const { path, paths } = await oneGuestNode();
    await writeFile(path("/etc/pve/firewall/105.fw"), "[RULES]\n");
    const a = createNodeSource(paths);
    await a.refresh({ all: true });
    const b = createNodeSource(paths);
    await b.refresh({ all: true });
    expect(a.fingerprint()).toEqual(b.fingerprint());
    expect([...a.fingerprint().keys()].sort()).toEqual([
      "addresses",
      "config",
      "firewall/105.fw",
      "firewall/cluster.fw",
      "nodes/pve1/host.fw",
      "nodes/pve1/lxc/105.conf",
      "run:105",
    ]);
    const before = a.fingerprint();
    await writeFile(path("/etc/pve/firewall/105.fw"), "[RULEZ]\n");
    await a.refresh({ all: true });
    expect(a.fingerprint().get("firewall/105.fw")).not.toBe(before.get("firewall/105.fw"));
    await writeFile(path("/etc/pve/firewall/105.fw"), "[RULES]\n");
    await a.refresh({ all: true });
    expect(a.fingerprint()).toEqual(before);
  });
});

describe("parseUnixSockets", () => {
  const header = "Num       RefCount Protocol Flags    Type St Inode Path\n";
  it.each([
    [
      "abstract names only",
      "0000: 00000002 00000000 00010000 0001 01 20 @/var/lib/lxc/107/command\n0000: 00000002 00000000 00010000 0001 01 21 /run/x.sock\n",
      ["@/var/lib/lxc/107/command"],
    ],
    [
      "no final newline, tabs, leading spaces",
      "  0000: 2 0 10000 1 1 20\t@/a b\n0000: 2 0 10000 1 1 22 @c",
      ["@/a", "@c"],
    ],
    ["an '@' outside the path field", "0000@: 2 0 10000 1 1 20 /x\n0000: 2 0 10000 1 1\n", []],
    ["only a header", "", []],
  ])("%s, as runstate.ts parses it", async (_, body, want) => {
    const { parseUnixSockets } = await import("../../../src/pve/cache.js");
    const text = header + body;
    const reference = new Set<string>();
    for (const line of text.split("\n").slice(1)) {
      const p = line.trim().split(/\s+/)[7];
      if (p?.startsWith("@")) reference.add(p);
    }
    expect([...parseUnixSockets(text)]).toEqual([...reference]);
    expect([...parseUnixSockets(text)]).toEqual(want);
  });

  it("re-reads the host's listening sockets only every HOST_PORTS_EVERY_MS, and sees a change then", async () => {
    const { paths } = await oneGuestNode();
    let t = 0;
    let reads = 0;
    let any = [22];
    const source = createNodeSource(paths, {
      monotonic: () => t,
      listening: async () => {
        reads++;
        return { any: [...any], at: {} };
      },
    });
    await source.refresh({ all: true });
    expect(source.input().hostPorts.any).toEqual([22]);
    any = [22, 9999];
    t = HOST_PORTS_EVERY_MS - 1;
    await source.refresh({ all: true });
    expect(reads).toBe(1);
    expect(source.input().hostPorts.any).toEqual([22]);
    t = HOST_PORTS_EVERY_MS;
    await source.refresh({ all: true });
    expect(reads).toBe(2);
    expect(source.input().hostPorts.any).toEqual([22, 9999]);
  });
});
