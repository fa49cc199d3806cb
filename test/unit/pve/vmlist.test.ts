// pmxcfs's .vmlist as the node source's change counter for guest configs (issue 10): the parser,
// and a source that trusts it — a config whose .vmlist version did not move is not re-stat'ed,
// one whose version moved is, firewall/*.fw always are, and without .vmlist nothing changes.
// With the addon's batch stat as well, a pass whose batch and .vmlist show no change skips the
// walk over the guests: what that walk would have seen must still be seen.
import { mkdir, rename, rm, utimes, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Native, statPaths } from "../../../src/native/addon.js";
import { createNodeSource, RECENT_MS, VMLIST_HOT_MS } from "../../../src/pve/cache.js";
import { loadNode } from "../../../src/pve/node.js";
import { parseVmlist, vmlistVersion } from "../../../src/pve/vmlist.js";
import type { Background } from "../../helpers/exec.js";
import { loadTestNative } from "../../helpers/native.js";
import { startGuest, stopGuest, tempRoot, vmlistText, writeNode } from "../../helpers/simnode.js";

const roots: string[] = [];
const children: Background[] = [];
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

describe("parseVmlist", () => {
  it("reads pmxcfs's text: version, and per guest node, type and version", () => {
    const text = vmlistText(7, { 107: ["pve1", "qemu", 3], 108: ["pve2", "lxc", 5] });
    expect(vmlistVersion(text)).toBe(7);
    expect(parseVmlist(text)).toEqual({
      version: 7,
      guests: new Map([
        [107, { node: "pve1", kind: "qemu", version: 3 }],
        [108, { node: "pve2", kind: "lxc", version: 5 }],
      ]),
    });
  });

  it("an empty cluster has no ids", () => {
    expect(vmlistVersion(vmlistText(0, {}))).toBe(0);
    expect(parseVmlist(vmlistText(0, {}))).toEqual({ version: 0, guests: new Map() });
  });

  it("skips openvz guests and VMID 0; anything else unexpected means no counter", () => {
    const text = vmlistText(2, { 0: ["pve1", "qemu", 1], 101: ["pve1", "openvz", 1] });
    expect(parseVmlist(text)?.guests.size).toBe(0);
    for (const bad of ["", "{", "[]", '{"version": "1"}', '{"version": 1, "ids": {"5": 1}}']) {
      expect(parseVmlist(bad)).toBeNull();
    }
    expect(vmlistVersion('{"ids": {}, "version": 3}')).toBeNull();
  });
});

describe("node source with .vmlist", () => {
  const conf = (ip: number) => `hostname: ct\nnet0: name=eth0,bridge=vmbr1,ip=10.10.10.${ip}/24\n`;
  const fw = (port: number) =>
    `[OPTIONS]\n\nenable: 1\n\n[RULES]\n\nIN ACCEPT -p tcp -dport 22 # NAT:${port}\n`;

  async function node() {
    const { root, path, paths } = await tempRoot("pvenat-vmlist-", roots);
    await writeNode({
      root,
      config: "node = pve1\npublic_address = 203.0.113.10\n",
      guests: [
        { vmid: 101, kind: "lxc", conf: conf(11), fw: fw(801) },
        { vmid: 102, kind: "lxc", conf: conf(12), fw: fw(802) },
        { vmid: 201, kind: "lxc", node: "pve2", conf: conf(21) },
      ],
    });
    const files = {
      vmlist: path("/etc/pve/.vmlist"),
      conf: (vmid: number) => path(`/etc/pve/nodes/pve1/lxc/${vmid}.conf`),
      fw: (vmid: number) => path(`/etc/pve/firewall/${vmid}.fw`),
    };
    return { paths, files };
  }
  const address = (
    i: { guests: Record<number, { conf: { nics: unknown[] } } | undefined> },
    vmid: number,
  ) => JSON.stringify(i.guests[vmid]?.conf.nics);

  it("re-stats only the guest configs whose version moved; .fw files every pass", async () => {
    const { paths, files } = await node();
    await writeFile(
      files.vmlist,
      vmlistText(3, { 101: ["pve1", "lxc", 1], 102: ["pve1", "lxc", 2], 201: ["pve2", "lxc", 3] }),
    );
    const source = createNodeSource(paths);
    await source.refresh({ all: true });
    const first = source.input();
    expect(first).toEqual(await loadNode(paths));

    // A config written behind pmxcfs's back (the version did not move) is not looked at again:
    // the proof that the poll skipped its stat.
    await writeFile(files.conf(101), conf(99));
    await source.refresh({ all: true });
    expect(address(source.input(), 101)).toBe(address(first, 101));
    // A .fw edit has no counter: seen at once.
    await writeFile(files.fw(102), fw(902));
    await source.refresh({ all: true });
    expect(source.input().guests[102]?.fw?.rules[0]?.comment).toBe("NAT:902");
    expect(address(source.input(), 101)).toBe(address(first, 101));

    // pmxcfs bumps the version of a guest it wrote: that config is read.
    await writeFile(
      files.vmlist,
      vmlistText(4, { 101: ["pve1", "lxc", 4], 102: ["pve1", "lxc", 2], 201: ["pve2", "lxc", 3] }),
    );
    await source.refresh({ all: true });
    expect(source.input()).toEqual(await loadNode(paths));
    expect(address(source.input(), 101)).toContain("10.10.10.99");

    // A new guest and a removed one, as pmxcfs lists them.
    await writeFile(files.conf(103), conf(13));
    await rm(files.conf(102));
    await writeFile(
      files.vmlist,
      vmlistText(6, { 101: ["pve1", "lxc", 4], 103: ["pve1", "lxc", 6], 201: ["pve2", "lxc", 3] }),
    );
    await source.refresh({ all: true });
    expect(Object.keys(source.input().guests)).toEqual(["101", "103"]);
    expect(source.input()).toEqual(await loadNode(paths));
  });

  it("without .vmlist (or with junk in it) every config is stat'ed, as before", async () => {
    const { paths, files } = await node();
    await writeFile(files.vmlist, vmlistText(3, { 101: ["pve1", "lxc", 1] }));
    const source = createNodeSource(paths);
    await source.refresh({ all: true });
    await rm(files.vmlist);
    await writeFile(files.conf(101), conf(98));
    await source.refresh({ all: true });
    expect(address(source.input(), 101)).toContain("10.10.10.98");
    await writeFile(files.vmlist, "not json");
    await writeFile(files.conf(101), conf(97));
    await source.refresh({ all: true });
    expect(address(source.input(), 101)).toContain("10.10.10.97");
    expect(source.input()).toEqual(await loadNode(paths));
  });
});

describe("node source with .vmlist and the batch stat", () => {
  const conf = (kind: "qemu" | "lxc", ip: number) =>
    kind === "lxc"
      ? `hostname: ct\nnet0: name=eth0,bridge=vmbr1,ip=10.10.10.${ip}/24\n`
      : `name: vm\nnet0: virtio=AA:BB:CC:DD:EE:01,bridge=vmbr1\nipconfig0: ip=10.10.10.${ip}/24\n`;
  const fw = (port: number) =>
    `[OPTIONS]\n\nenable: 1\n\n[RULES]\n\nIN ACCEPT -p tcp -dport 22 # NAT:${port}\n`;
  const ids = (v: Record<number, number>) =>
    Object.fromEntries(
      Object.entries(v).map(([vmid, n]) => [
        vmid,
        ["pve1", Number(vmid) >= 200 ? "qemu" : "lxc", n] as [string, "qemu" | "lxc", number],
      ]),
    );

  /** Two LXC guests and a qemu one, every file older than RECENT_MS (settled from the first
   *  pass on), and a batch stat that can be made to report what it reported before. */
  async function settledNode() {
    const { root, path, paths } = await tempRoot("pvenat-quiet-", roots);
    await writeNode({
      root,
      config: "node = pve1\npublic_address = 203.0.113.10\n",
      guests: [
        { vmid: 101, kind: "lxc", conf: conf("lxc", 11), fw: fw(801) },
        { vmid: 102, kind: "lxc", conf: conf("lxc", 12), fw: fw(802) },
        { vmid: 201, kind: "qemu", conf: conf("qemu", 21), fw: fw(821) },
      ],
    });
    const files = {
      vmlist: path("/etc/pve/.vmlist"),
      conf: (vmid: number) =>
        path(`/etc/pve/nodes/pve1/${vmid >= 200 ? "qemu-server" : "lxc"}/${vmid}.conf`),
      fw: (vmid: number) => path(`/etc/pve/firewall/${vmid}.fw`),
    };
    await writeFile(files.vmlist, vmlistText(3, ids({ 101: 1, 102: 2, 201: 3 })));
    const old = Math.floor((Date.now() - 10 * RECENT_MS) / 1000);
    for (const f of [files.fw(101), files.fw(102), files.fw(201)]) await utimes(f, old, old);
    // ctimes (set by the writes, not by utimes) must be older than RECENT_MS as well.
    await new Promise((r) => setTimeout(r, RECENT_MS + 100));
    const batch = statPaths(native);
    const stats = { frozen: null as Float64Array | null, calls: 0, changed: [] as number[] };
    const statMany = (p: readonly string[], out: Float64Array) => {
      // The qemu guests' pidfiles go through their own batch: only the .fw one is watched here.
      if (!p[0]?.endsWith(".fw")) return batch(p, out);
      const before = out.slice();
      stats.calls++;
      batch(p, out);
      if (stats.frozen) out.set(stats.frozen);
      let changed = 0;
      for (let i = 0; i < p.length; i++)
        if ([0, 1, 2, 3].some((k) => out[4 * i + k] !== before[4 * i + k])) changed++;
      stats.changed.push(changed);
      return changed;
    };
    const source = createNodeSource(paths, { statMany });
    return { root, paths, files, source, stats };
  }
  const comment = (i: ReturnType<ReturnType<typeof createNodeSource>["input"]>, vmid: number) =>
    i.guests[vmid]?.fw?.rules[0]?.comment;

  it("sees a .fw edit, a config .vmlist marks and a new guest after passes that changed nothing", async () => {
    const { paths, files, source, stats } = await settledNode();
    for (let k = 0; k < 3; k++) await source.refresh({ all: true });
    // The addon reports no change once the first pass has the numbers.
    expect(stats.changed.slice(1)).toEqual([0, 0]);
    expect(source.input()).toEqual(await loadNode(paths));

    // Only the config changes, and .vmlist says so: the batch of .fw files shows nothing.
    await writeFile(files.conf(101), conf("lxc", 99));
    await writeFile(files.vmlist, vmlistText(4, ids({ 101: 4, 102: 2, 201: 3 })));
    await source.refresh({ all: true });
    expect(stats.changed.at(-1)).toBe(0);
    expect(JSON.stringify(source.input().guests[101]?.conf.nics)).toContain("10.10.10.99");

    // Settled again (a config .vmlist marked stays marked for VMLIST_HOT_MS, and the walk runs
    // while it is), then a .fw edit, which only the batch shows.
    await new Promise((r) => setTimeout(r, VMLIST_HOT_MS + 100));
    await source.refresh({ all: true });
    await source.refresh({ all: true });
    expect(stats.changed.at(-1)).toBe(0);
    await writeFile(files.fw(102), fw(902));
    await source.refresh({ all: true });
    expect(comment(source.input(), 102)).toBe("NAT:902");

    await writeFile(files.conf(103), conf("lxc", 13));
    await writeFile(files.vmlist, vmlistText(5, ids({ 101: 4, 102: 2, 103: 5, 201: 3 })));
    await source.refresh({ all: true });
    expect(Object.keys(source.input().guests)).toEqual(["101", "102", "103", "201"]);
    expect(source.input()).toEqual(await loadNode(paths));
  });

  it("follows a qemu guest's run state on passes that skip the walk", async () => {
    const { root, paths, source, stats } = await settledNode();
    for (let k = 0; k < 3; k++) await source.refresh({ all: true });
    expect(source.input().guests[201]?.state).toBe("stopped");
    const vm = await startGuest({
      root,
      vmid: 201,
      kind: "qemu",
      ns: null,
      track: (b) => children.push(b),
    });
    await source.refresh({ all: true });
    expect(stats.changed.at(-1)).toBe(0);
    expect(source.input().guests[201]?.state).toBe("running");
    // Killed, its pidfile left behind (a crash): only the command line says it is gone.
    await stopGuest({ root, vmid: 201, kind: "qemu", process: vm, keepPidfile: true });
    await source.refresh({ all: true });
    expect(source.input().guests[201]?.state).toBe("stopped");
    expect(source.input()).toEqual(await loadNode(paths));
  });

  it("looks again at a .fw an apply's read left in error, though the batch shows no change", async () => {
    const { files, source, stats } = await settledNode();
    for (let k = 0; k < 2; k++) await source.refresh({ all: true });
    stats.frozen = new Float64Array(12);
    native.statMany(native.statBatch([files.fw(101), files.fw(102), files.fw(201)]), stats.frozen);
    // A read between polls fails (here: a directory where the file was) ...
    await rename(files.fw(102), `${files.fw(102)}.away`);
    await mkdir(files.fw(102));
    await source.refresh({ owners: [102] });
    expect(comment(source.input(), 102)).toBeUndefined();
    // ... and the file is back before the next poll, whose batch reports the old numbers.
    await rm(files.fw(102), { recursive: true });
    await rename(`${files.fw(102)}.away`, files.fw(102));
    await source.refresh({ all: true });
    expect(stats.changed.at(-1)).toBe(0);
    expect(comment(source.input(), 102)).toBe("NAT:802");
  });
});
