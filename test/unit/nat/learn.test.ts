import { describe, expect, it } from "vitest";
import { goneForwards } from "../../../src/daemon/applier.js";
import { addressChange } from "../../../src/daemon/report.js";
import { renderRestore } from "../../../src/iptables/render.js";
import { emptyLive } from "../../../src/iptables/save.js";
import { decideSync } from "../../../src/iptables/sync.js";
import type { AddressFacts, GuestConf, NatPlan } from "../../../src/model.js";
import { compile, createCompileMemo } from "../../../src/nat/compile.js";
import { planToJson } from "../../../src/nat/json.js";
import { learnedAddress, nicAddress } from "../../../src/nat/learn.js";
import { emptyFacts } from "../../../src/pve/learned.js";
import { conf, input, nic } from "../../helpers/build.js";

// SPEC §8: a NIC's address from rule, config, IPAM, lease, neighbour, agent — the first that
// answers — and what the plan makes of it.

const MAC = "bc:24:11:00:00:6b";
const OTHER = "bc:24:11:00:00:6c";

function facts(over: Partial<AddressFacts> = {}): AddressFacts {
  return { ...emptyFacts(), ...over };
}

const dhcpConf = (agent = false, bridge = "vmbr1"): GuestConf => ({
  ...conf(107, "qemu", [nic(0, "dhcp", false, bridge, MAC)]),
  agent,
});

const ALL: Partial<AddressFacts> = {
  ipam: { [MAC]: [{ ip: "10.10.10.51", zone: "zone1", vmid: 107 }] },
  macCache: { [MAC]: "10.10.10.52" },
  leases: { [MAC]: [{ ip: "10.10.10.53", zone: "zone1", expiry: 0 }] },
  ethers: { [MAC]: [{ ip: "10.10.10.54", zone: "zone1" }] },
  neighbours: { [MAC]: [{ ip: "10.10.10.55", dev: "vmbr1", state: "REACHABLE" }] },
  agent: { 107: [{ mac: MAC, ips: ["10.10.10.56"] }] },
};

describe("the resolution chain: first source that answers", () => {
  // Each row removes the source above it.
  it.each<[string, Partial<AddressFacts>, string | null, string | null]>([
    ["IPAM state", ALL, "ipam", "10.10.10.51"],
    ["IPAM MAC cache", { ...ALL, ipam: {} }, "ipam", "10.10.10.52"],
    ["dnsmasq lease", { ...ALL, ipam: {}, macCache: {} }, "lease", "10.10.10.53"],
    ["dnsmasq static host", { ...ALL, ipam: {}, macCache: {}, leases: {} }, "lease", "10.10.10.54"],
    [
      "neighbour table",
      { ...ALL, ipam: {}, macCache: {}, leases: {}, ethers: {} },
      "neighbour",
      "10.10.10.55",
    ],
    [
      "guest agent",
      { ...ALL, ipam: {}, macCache: {}, leases: {}, ethers: {}, neighbours: {} },
      "agent",
      "10.10.10.56",
    ],
    ["nothing", {}, null, null],
  ])("%s", (_name, over, source, address) => {
    const c = dhcpConf(true);
    const a = learnedAddress(c, c.nics[0] as never, facts(over));
    expect(a === null ? null : a.source).toBe(source);
    expect(a === null ? null : a.address).toBe(address);
  });

  it("the static config beats everything learned", () => {
    const c = { ...conf(107, "qemu", [nic(0, "10.10.10.7/24", false, "vmbr1", MAC)]), agent: true };
    expect(nicAddress(c, c.nics[0] as never, facts(ALL))).toEqual({
      address: "10.10.10.7",
      source: "config",
      network: "10.10.10.0/24",
    });
  });

  it("the agent is asked only with agent: 1", () => {
    const c = dhcpConf(false);
    expect(learnedAddress(c, c.nics[0] as never, facts({ agent: ALL.agent }))).toBeNull();
  });

  it("MACs match case-insensitively: configs and files are normalised to lower case", () => {
    const c = dhcpConf();
    // The parsers lower-case MAC keys; the config parser lower-cases the NIC's MAC.
    expect(c.nics[0]?.mac).toBe(MAC);
    expect(learnedAddress(c, c.nics[0] as never, facts({ ethers: ALL.ethers }))?.address).toBe(
      "10.10.10.54",
    );
  });

  it("IPAM entries of another vmid are not this guest's", () => {
    const c = dhcpConf();
    const ipam = { [MAC]: [{ ip: "10.10.10.51", zone: "zone1", vmid: 999 }] };
    expect(learnedAddress(c, c.nics[0] as never, facts({ ipam }))).toBeNull();
  });

  it("the longest lease wins (0 = infinite), deterministic on ties", () => {
    const c = dhcpConf();
    const leases = {
      [MAC]: [
        { ip: "10.10.10.60", zone: "z", expiry: 1000 },
        { ip: "10.10.10.61", zone: "z", expiry: 2000 },
      ],
    };
    expect(learnedAddress(c, c.nics[0] as never, facts({ leases }))?.address).toBe("10.10.10.61");
    leases[MAC].push({ ip: "10.10.10.59", zone: "z", expiry: 0 });
    expect(learnedAddress(c, c.nics[0] as never, facts({ leases }))?.address).toBe("10.10.10.59");
  });

  it("a neighbour entry on another bridge, or FAILED-like state, is not the NIC's", () => {
    const c = dhcpConf();
    const neighbours = { [MAC]: [{ ip: "10.10.10.70", dev: "vmbr9", state: "REACHABLE" }] };
    expect(learnedAddress(c, c.nics[0] as never, facts({ neighbours }))).toBeNull();
  });

  it("on an SDN VNet: only addresses inside its subnets, never the gateway", () => {
    const c = dhcpConf(true, "vnet1");
    const sdn = {
      zones: { zone1: { type: "simple", dhcp: "dnsmasq" } },
      vnets: { vnet1: { zone: "zone1" } },
      subnets: [
        {
          id: "zone1-10.10.10.0-24",
          zone: "zone1",
          vnet: "vnet1",
          cidr: "10.10.10.0/24",
          gateway: "10.10.10.1",
          snat: true,
          line: 1,
        },
      ],
    };
    const lying = { 107: [{ mac: MAC, ips: ["198.51.100.99", "10.10.10.1", "10.10.10.80"] }] };
    expect(learnedAddress(c, c.nics[0] as never, facts({ sdn, agent: lying }))).toEqual({
      address: "10.10.10.80",
      source: "agent",
      network: "10.10.10.0/24",
    });
    const outside = { 107: [{ mac: MAC, ips: ["198.51.100.99"] }] };
    expect(learnedAddress(c, c.nics[0] as never, facts({ sdn, agent: outside }))).toBeNull();
  });
});

const RULES = ["IN ACCEPT -p tcp -dport 22 # NAT:2222", "OUT ACCEPT # NAT"];

function planWith(addresses: Partial<AddressFacts>, state: "running" | "stopped" = "running") {
  return input({
    guests: {
      107: {
        kind: "qemu",
        nics: [nic(0, "dhcp", false, "vmbr1", MAC)],
        state,
        fw: { rules: RULES },
      },
    },
    addresses,
  });
}

function summary(plan: NatPlan): string[] {
  return plan.forwards.map(
    (f) =>
      `${f.vmid} ${f.direction} ${f.private.address ?? "-"} ${f.private.addressSource ?? "-"} ${f.state}`,
  );
}

describe("compile with learned addresses", () => {
  it("pending while nothing is known, with what was tried; active once a lease exists", () => {
    const before = compile(planWith({}));
    expect(summary(before)).toEqual(["107 in - - pending", "107 out - - pending"]);
    expect(before.forwards[0]?.reason).toContain(`for ${MAC}`);
    expect(before.forwards[0]?.reason).toContain("guest agent (not enabled");
    expect(before.chains).toEqual([]);
    expect(before.diagnostics.every((d) => d.severity === "info")).toBe(true);

    const leases = { [MAC]: [{ ip: "10.10.10.50", zone: "zone1", expiry: 0 }] };
    const after = compile(planWith({ leases }));
    expect(summary(after)).toEqual([
      "107 in 10.10.10.50 lease active",
      "107 out 10.10.10.50 lease active",
    ]);
    const json = planToJson(after).forwards as Array<{ private: Record<string, unknown> }>;
    expect(json[0]?.private).toEqual({
      address: "10.10.10.50",
      ports: "22",
      address_source: "lease",
    });
    expect(
      renderRestore(decideSync(after, emptyLive(), { owners: [], all: true }).request),
    ).toContain("-j DNAT --to-destination 10.10.10.50:22");
  });

  it("a stopped guest without an address is inactive, not pending", () => {
    expect(summary(compile(planWith({}, "stopped")))).toEqual([
      "107 in - - inactive",
      "107 out - - inactive",
    ]);
  });

  it("with a memo, only the guest whose lease changed is re-expanded", () => {
    const memo = createCompileMemo();
    const two = (ip: string) =>
      input({
        guests: {
          107: {
            kind: "qemu",
            nics: [nic(0, "dhcp", false, "vmbr1", MAC)],
            fw: { rules: [RULES[0] as string] },
          },
          108: {
            kind: "qemu",
            nics: [nic(0, "dhcp", false, "vmbr1", OTHER)],
            fw: { rules: ["IN ACCEPT -p tcp -dport 22 # NAT:2223"] },
          },
        },
        addresses: {
          leases: {
            [MAC]: [{ ip, zone: "z", expiry: 0 }],
            [OTHER]: [{ ip: "10.10.10.60", zone: "z", expiry: 0 }],
          },
        },
      });
    // The same guest values, only the facts differ (as the node source hands them out).
    const first = two("10.10.10.50");
    const moved = { ...two("10.10.10.51").addresses, sdn: first.addresses.sdn };
    const second = { ...first, addresses: moved };
    const a = compile(first, memo);
    const b = compile(second, memo);
    expect(b.chains.find((c) => c.owner === 108)).toBe(a.chains.find((c) => c.owner === 108));
    expect(b.chains.find((c) => c.owner === 107)).not.toBe(a.chains.find((c) => c.owner === 107));
    expect(b.forwards[0]?.private.address).toBe("10.10.10.51");
    // memo on = memo off
    expect(b).toEqual(compile(second));
  });

  it("two guests resolving to one address: a conflict naming both, the better source wins", () => {
    const plan = compile(
      input({
        guests: {
          // 106 has it in its config; 107's stale lease says the same address.
          106: {
            kind: "qemu",
            nics: [nic(0, "10.10.10.50/24", false, "vmbr1", OTHER)],
            fw: { rules: ["IN ACCEPT -p tcp -dport 80 # NAT:8080"] },
          },
          107: {
            kind: "qemu",
            nics: [nic(0, "dhcp", false, "vmbr1", MAC)],
            fw: { rules: [RULES[0] as string] },
          },
          108: {
            kind: "qemu",
            nics: [nic(0, "dhcp", false, "vmbr1", "bc:24:11:00:00:6d")],
            fw: { rules: ["IN ACCEPT -p tcp -dport 22 # NAT:2224"] },
          },
        },
        addresses: {
          leases: { [MAC]: [{ ip: "10.10.10.50", zone: "z", expiry: 0 }] },
          neighbours: {
            "bc:24:11:00:00:6d": [{ ip: "10.10.10.50", dev: "vmbr1", state: "STALE" }],
          },
        },
      }),
    );
    expect(summary(plan)).toEqual([
      "106 in 10.10.10.50 config active",
      "107 in 10.10.10.50 lease conflict",
      "108 in 10.10.10.50 neighbour conflict",
    ]);
    expect(plan.forwards[1]?.reason).toBe(
      "guest address 10.10.10.50 of vm 107 (from lease) is also vm 106's (from config, firewall/106.fw:4): vm 106 keeps it",
    );
    expect(
      plan.diagnostics.filter((d) => d.severity === "error").map((d) => `${d.file}:${d.line}`),
    ).toEqual(["firewall/107.fw:4", "firewall/108.fw:4"]);
    expect(plan.chains.map((c) => c.owner)).toEqual([106]);
  });

  it("same learned source on both: the lower VMID wins", () => {
    const lease = (ip: string) => [{ ip, zone: "z", expiry: 0 }];
    const plan = compile(
      input({
        guests: {
          109: {
            kind: "qemu",
            nics: [nic(0, "dhcp", false, "vmbr1", OTHER)],
            fw: { rules: ["IN ACCEPT -p tcp -dport 22 # NAT:2229"] },
          },
          107: {
            kind: "qemu",
            nics: [nic(0, "dhcp", false, "vmbr1", MAC)],
            fw: { rules: [RULES[0] as string] },
          },
        },
        addresses: { leases: { [MAC]: lease("10.10.10.50"), [OTHER]: lease("10.10.10.50") } },
      }),
    );
    expect(summary(plan)).toEqual([
      "107 in 10.10.10.50 lease active",
      "109 in 10.10.10.50 lease conflict",
    ]);
  });

  it("two static configs with one address stay as they were (no learned source involved)", () => {
    const plan = compile(
      input({
        guests: {
          106: {
            nics: [nic(0, "10.10.10.50/24")],
            fw: { rules: ["IN ACCEPT -p tcp -dport 80 # NAT:8080"] },
          },
          107: { nics: [nic(0, "10.10.10.50/24")], fw: { rules: [RULES[0] as string] } },
        },
      }),
    );
    expect(plan.forwards.map((f) => f.state)).toEqual(["active", "active"]);
  });
});

describe("SDN subnets with snat 1", () => {
  const sdn = {
    zones: { zone1: { type: "simple", dhcp: "dnsmasq" } },
    vnets: { vnet1: { zone: "zone1" } },
    subnets: [
      {
        id: "zone1-10.10.10.0-24",
        zone: "zone1",
        vnet: "vnet1",
        cidr: "10.10.10.0/24",
        gateway: "10.10.10.1",
        snat: true,
        line: 3,
      },
    ],
  };
  const sdnInput = () =>
    input({
      config: { conntrackZoneFix: "auto" },
      guests: {
        107: {
          kind: "qemu",
          nics: [nic(0, "dhcp", true, "vnet1", MAC)],
          fw: { rules: ["OUT ACCEPT # NAT", "IN ACCEPT -p tcp -dport 22 # NAT:2222"] },
        },
      },
      addresses: { sdn, ipam: { [MAC]: [{ ip: "10.10.10.50", zone: "zone1", vmid: 107 }] } },
    });

  it("an OUT NAT rule there is reported as redundant (and still applied)", () => {
    const plan = compile(sdnInput());
    expect(summary(plan)).toEqual([
      "107 out 10.10.10.50 ipam active",
      "107 in 10.10.10.50 ipam active",
    ]);
    const w = plan.diagnostics.filter((d) => d.severity === "warning");
    expect(w.map((d) => `${d.file}:${d.line}`)).toEqual(["firewall/107.fw:4"]);
    expect(w[0]?.message).toContain(
      "redundant: SDN subnet 10.10.10.0/24 (sdn/subnets.cfg:3) has snat 1",
    );
  });

  it("pve-nat does not double Proxmox's fwbr zone rule, but keeps the fix's other half", () => {
    const plan = compile(sdnInput());
    expect(plan.entry.zoneFix).toBe(true);
    expect(plan.entry.zoneRule).toBe(false);
    const payload = renderRestore(decideSync(plan, emptyLive(), { owners: [], all: true }).request);
    expect(payload).not.toContain("CT --zone 1");
    const without = compile({
      ...sdnInput(),
      addresses: { ...emptyFacts(), ipam: sdnInput().addresses.ipam },
    });
    expect(
      renderRestore(decideSync(without, emptyLive(), { owners: [], all: true }).request),
    ).toMatch(/^-A PVENAT-RAW -i fwbr\S+ -j CT --zone 1$/m);
  });
});

describe("applied event: old → new address", () => {
  it("says where a guest's forwards moved, and nothing when they did not", () => {
    const at = (ip: string) =>
      compile(planWith({ leases: { [MAC]: [{ ip, zone: "z", expiry: 0 }] } }));
    expect(addressChange(at("10.10.10.50"), at("10.10.10.51"), 107)).toEqual({
      from: "10.10.10.50",
      to: "10.10.10.51",
    });
    expect(addressChange(compile(planWith({})), at("10.10.10.51"), 107)).toEqual({
      from: null,
      to: "10.10.10.51",
    });
    expect(addressChange(at("10.10.10.50"), at("10.10.10.50"), 107)).toBeUndefined();
    expect(addressChange(null, at("10.10.10.50"), 107)).toBeUndefined();
  });
});

describe("conntrack on an address change", () => {
  it("the old address's forwards are gone: their entries are deleted", () => {
    const at = (ip: string) =>
      compile(planWith({ leases: { [MAC]: [{ ip, zone: "z", expiry: 0 }] } }));
    const dels = goneForwards(at("10.10.10.50"), at("10.10.10.51"), new Set([107]));
    expect(dels).toEqual([
      ["-p", "tcp", "--orig-dst", "203.0.113.10", "--orig-port-dst", "2222"],
      ["--orig-src", "10.10.10.50"],
    ]);
    expect(goneForwards(at("10.10.10.50"), at("10.10.10.50"), new Set([107]))).toEqual([]);
  });
});
