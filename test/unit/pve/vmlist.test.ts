// pmxcfs's .vmlist as the node source's change counter for guest configs (issue 10): the parser,
// and a source that trusts it — a config whose .vmlist version did not move is not re-stat'ed,
// one whose version moved is, firewall/*.fw always are, and without .vmlist nothing changes.
import { rm, writeFile } from "node:fs/promises";
import { afterAll, describe, expect, it } from "vitest";
import { createNodeSource } from "../../../src/pve/cache.js";
import { loadNode } from "../../../src/pve/node.js";
import { parseVmlist, vmlistVersion } from "../../../src/pve/vmlist.js";
import { tempRoot, vmlistText, writeNode } from "../../helpers/simnode.js";

const roots: string[] = [];
afterAll(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
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
