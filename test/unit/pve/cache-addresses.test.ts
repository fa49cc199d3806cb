// The node source reads the learned-address sources under --root (SPEC §6, §8): the PVE IPAM
// files, SDN config, dnsmasq lease files and static hosts, the neighbour table (a stub here: the
// real one is `ip -4 neigh show`, exercised end to end in test/e2e/dhcp.test.ts) — and a change
// to any of them changes the fingerprint and the input, while an unrelated poll keeps both.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { compile } from "../../../src/nat/compile.js";
import { rooted } from "../../../src/paths.js";
import { canonicalNeighbours, createNodeSource, RECENT_MS } from "../../../src/pve/cache.js";
import { writeNode } from "../../helpers/simnode.js";

const roots: string[] = [];
afterAll(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

const MAC = "BC:24:11:00:00:6B";

async function node(): Promise<{ root: string; put(abs: string, text: string): Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), "pvenat-addr-"));
  roots.push(root);
  await writeNode({
    root,
    config: "node = pve1\npublic_address = 203.0.113.10\n",
    guests: [
      {
        vmid: 107,
        kind: "lxc",
        conf: `hostname: web\nnet0: name=eth0,bridge=vmbr1,hwaddr=${MAC},ip=dhcp,type=veth\n`,
        fw: "[RULES]\n\nIN ACCEPT -p tcp -dport 22 # NAT:2222\n",
      },
    ],
  });
  const put = async (abs: string, text: string) => {
    const p = rooted(root, abs);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, text);
  };
  return { root, put };
}

function sourceFor(root: string, neigh: { text: string | null; calls: number }) {
  const path = (abs: string) => rooted(root, abs);
  return createNodeSource(
    { path, configPath: path("/etc/pve-nat/pve-nat.conf") },
    {
      neighbours: async () => {
        neigh.calls++;
        return neigh.text;
      },
    },
  );
}

const forward = (s: ReturnType<typeof sourceFor>) => {
  const f = compile(s.input()).forwards[0];
  return `${f?.private.address ?? "-"} ${f?.private.addressSource ?? "-"}`;
};

describe("learned-address sources under --root", () => {
  it("lease, then ethers, IPAM and neighbours, each read under the root, in chain order", async () => {
    const { root, put } = await node();
    const neigh = { text: null as string | null, calls: 0 };
    const s = sourceFor(root, neigh);
    await s.refresh({ all: true });
    expect(forward(s)).toBe("- -");
    // The guest has no static address: the neighbour table was asked.
    expect(neigh.calls).toBe(1);

    neigh.text = `10.10.10.70 dev vmbr1 lladdr ${MAC.toLowerCase()} REACHABLE\n`;
    await s.refresh({ all: true });
    expect(forward(s)).toBe("10.10.10.70 neighbour");

    await put("/etc/dnsmasq.d/zone1/ethers", `${MAC},10.10.10.60\n`);
    await s.refresh({ all: true });
    expect(forward(s)).toBe("10.10.10.60 lease");

    await put(
      "/var/lib/misc/dnsmasq.zone1.leases",
      `0 ${MAC.toLowerCase()} 10.10.10.50 web 01:${MAC.toLowerCase()}\n`,
    );
    await s.refresh({ all: true });
    expect(forward(s)).toBe("10.10.10.50 lease");

    await put(
      "/etc/pve/sdn/pve-ipam-state.json",
      JSON.stringify({
        zones: {
          zone1: {
            subnets: { "10.10.10.0/24": { ips: { "10.10.10.40": { vmid: 107, mac: MAC } } } },
          },
        },
      }),
    );
    await s.refresh({ all: true });
    expect(forward(s)).toBe("10.10.10.40 ipam");
  });

  it("asks the neighbour table only while the IPAM and the leases leave a NIC unanswered", async () => {
    const { root, put } = await node();
    const neigh = { text: null as string | null, calls: 0 };
    const s = sourceFor(root, neigh);
    await s.refresh({ all: true });
    expect(neigh.calls).toBe(1);
    const lease = "/var/lib/misc/dnsmasq.zone1.leases";
    await put(lease, `0 ${MAC.toLowerCase()} 10.10.10.50 web *\n`);
    await s.refresh({ all: true });
    await s.refresh({ all: true });
    expect(forward(s)).toBe("10.10.10.50 lease");
    // The lease answers: the polls after it spawn no `ip neigh` (at most the one that found it).
    expect(neigh.calls).toBeLessThanOrEqual(2);
    const before = neigh.calls;
    await s.refresh({ all: true });
    expect(neigh.calls).toBe(before);
    // The lease is gone: the table is asked again, and its answer is used.
    neigh.text = `10.10.10.70 dev vmbr1 lladdr ${MAC.toLowerCase()} REACHABLE\n`;
    await put(lease, "");
    await s.refresh({ all: true });
    expect(neigh.calls).toBe(before + 1);
    expect(forward(s)).toBe("10.10.10.70 neighbour");
  });

  it("a config that drops its static address has the next poll ask the neighbour table", async () => {
    const { root, put } = await node();
    const conf = "/etc/pve/nodes/pve1/lxc/107.conf";
    const net0 = `net0: name=eth0,bridge=vmbr1,hwaddr=${MAC},type=veth`;
    await put(conf, `hostname: web\n${net0},ip=10.10.10.9/24\n`);
    const neigh = { text: null as string | null, calls: 0 };
    const s = sourceFor(root, neigh);
    await s.refresh({ all: true });
    await s.refresh({ all: true });
    expect(neigh.calls).toBe(0);
    await put(conf, `hostname: web\n${net0},ip=dhcp\n`);
    await s.refresh({ all: true });
    expect(neigh.calls).toBe(1);
    await put(conf, `hostname: web\n${net0},ip=10.10.10.9/24\n`);
    await s.refresh({ all: true });
    await s.refresh({ all: true });
    expect(neigh.calls).toBe(1);
  });

  it("the fingerprint changes with a lease and stays while nothing changes", async () => {
    const { root, put } = await node();
    const neigh = { text: null as string | null, calls: 0 };
    const s = sourceFor(root, neigh);
    await s.refresh({ all: true });
    const a = s.fingerprint().get("addresses");
    const inputA = s.input();
    await s.refresh({ all: true });
    expect(s.fingerprint().get("addresses")).toBe(a);
    expect(s.input()).toBe(inputA);
    await put("/var/lib/misc/dnsmasq.zone1.leases", `0 ${MAC} 10.10.10.50 web *\n`);
    await s.refresh({ all: true });
    expect(s.fingerprint().get("addresses")).not.toBe(a);
    // A hook's refresh of one guest also sees a lease rewritten since the last poll.
    await put("/var/lib/misc/dnsmasq.zone1.leases", `0 ${MAC} 10.10.10.51 web *\n`);
    await s.refresh({ owners: [107] });
    expect(forward(s)).toBe("10.10.10.51 lease");
  });

  it("lists the zone directories again when they change, after passes that did not list them", async () => {
    const { root, put } = await node();
    await mkdir(rooted(root, "/var/lib/misc"), { recursive: true });
    const s = sourceFor(root, { text: null, calls: 0 });
    await s.refresh({ all: true });
    // Past RECENT_MS the directories' stats stand for their listings (/etc/dnsmasq.d absent).
    await new Promise((r) => setTimeout(r, RECENT_MS + 100));
    await s.refresh({ all: true });
    await s.refresh({ all: true });
    expect(forward(s)).toBe("- -");
    await put("/var/lib/misc/dnsmasq.zone1.leases", `0 ${MAC} 10.10.10.50 web *\n`);
    await s.refresh({ all: true });
    expect(forward(s)).toBe("10.10.10.50 lease");
    await new Promise((r) => setTimeout(r, RECENT_MS + 100));
    await s.refresh({ all: true });
    await put("/etc/dnsmasq.d/zone1/ethers", `${MAC},10.10.10.60\n`);
    await rm(rooted(root, "/var/lib/misc/dnsmasq.zone1.leases"));
    await s.refresh({ all: true });
    // The static host from the new directory (the dnsmasq source names both "lease").
    expect(forward(s)).toBe("10.10.10.60 lease");
  });

  it("a broken IPAM file is a warning naming it; the rest still works", async () => {
    const { root, put } = await node();
    await put("/etc/pve/sdn/pve-ipam-state.json", "{oops");
    await put("/etc/dnsmasq.d/zone1/ethers", `${MAC},10.10.10.60\n`);
    const s = sourceFor(root, { text: null, calls: 0 });
    await s.refresh({ all: true });
    const plan = compile(s.input());
    expect(plan.forwards[0]?.private.address).toBe("10.10.10.60");
    expect(plan.diagnostics.map((d) => `${d.file}:${d.line} ${d.severity}`)).toContain(
      "sdn/pve-ipam-state.json:0 warning",
    );
  });

  it("SDN config: a snat subnet drops pve-nat's own zone rule", async () => {
    const { root, put } = await node();
    await put("/etc/pve/sdn/zones.cfg", "simple: zone1\n\tdhcp dnsmasq\n");
    await put("/etc/pve/sdn/vnets.cfg", "vnet: vnet1\n\tzone zone1\n");
    await put("/etc/pve/sdn/subnets.cfg", "subnet: zone1-10.10.10.0-24\n\tvnet vnet1\n\tsnat 1\n");
    const s = sourceFor(root, { text: null, calls: 0 });
    await s.refresh({ all: true });
    const input = s.input();
    expect(input.addresses.sdn.subnets.map((x) => `${x.cidr} ${x.snat}`)).toEqual([
      "10.10.10.0/24 true",
    ]);
    expect(compile(input).entry.zoneRule).toBe(false);
  });

  it("no guest without a static address: the neighbour table is not read", async () => {
    const root = await mkdtemp(join(tmpdir(), "pvenat-addr-"));
    roots.push(root);
    await writeNode({
      root,
      config: "node = pve1\n",
      guests: [{ vmid: 105, kind: "lxc", conf: "net0: name=eth0,bridge=vmbr1,ip=10.10.10.5/24\n" }],
    });
    const neigh = { text: null, calls: 0 };
    const s = sourceFor(root, neigh);
    await s.refresh({ all: true });
    expect(neigh.calls).toBe(0);
  });
});

describe("canonicalNeighbours", () => {
  it("a state flip is no change; a new address is", () => {
    const a = canonicalNeighbours(`10.10.10.70 dev vmbr1 lladdr ${MAC} REACHABLE\n`);
    expect(canonicalNeighbours(`10.10.10.70 dev vmbr1 lladdr ${MAC.toLowerCase()} STALE\n`)).toBe(
      a,
    );
    expect(canonicalNeighbours(`10.10.10.71 dev vmbr1 lladdr ${MAC} STALE\n`)).not.toBe(a);
    expect(canonicalNeighbours("10.10.10.72 dev vmbr1 FAILED\n")).toBe("");
  });
});
