import { describe, expect, it } from "vitest";
import {
  normalMac,
  parseAgentInterfaces,
  parseEthers,
  parseIpamState,
  parseLeases,
  parseMacCache,
  parseNeighbours,
  usableIPv4,
} from "../../../src/pve/learned.js";
import { parseSdn } from "../../../src/pve/sdn.js";

// Shapes as pve-network writes them (Ipams/PVEPlugin.pm, Dhcp/Dnsmasq.pm) and as dnsmasq,
// iproute2 and qemu-ga print them.

const IPAM = JSON.stringify({
  zones: {
    zone1: {
      subnets: {
        "10.10.10.0/24": {
          ips: {
            "10.10.10.1": { gateway: 1 },
            "10.10.10.50": { vmid: "107", mac: "BC:24:11:00:00:6B", hostname: "web" },
            "10.10.10.51": { vmid: 108, mac: "bc:24:11:00:00:6c" },
            "10.10.10.52": { mac: "not-a-mac", vmid: 109 },
          },
        },
        "fd00::/64": { ips: { "fd00::5": { vmid: 107, mac: "BC:24:11:00:00:6B" } } },
      },
    },
  },
});

describe("pve-ipam-state.json", () => {
  it("IPv4 guest entries by lower-case MAC; gateways, IPv6 and bad MACs left out", () => {
    const r = parseIpamState(IPAM, "sdn/pve-ipam-state.json");
    expect(r.diagnostics).toEqual([]);
    expect(r.ipam).toEqual({
      "bc:24:11:00:00:6b": [{ ip: "10.10.10.50", zone: "zone1", vmid: 107 }],
      "bc:24:11:00:00:6c": [{ ip: "10.10.10.51", zone: "zone1", vmid: 108 }],
    });
  });

  it.each([
    ["{not json", "not valid JSON"],
    ["[]", "not a JSON object"],
    ['{"zones": 3}', 'no "zones" object'],
  ])("%s → a warning naming the file, nothing learned", (text, message) => {
    const r = parseIpamState(text, "sdn/pve-ipam-state.json");
    expect(r.ipam).toEqual({});
    expect(r.diagnostics).toHaveLength(1);
    expect(r.diagnostics[0]).toMatchObject({ file: "sdn/pve-ipam-state.json", line: 0 });
    expect(r.diagnostics[0]?.message).toContain(message);
  });
});

describe("mac-cache.json", () => {
  it("ip4 by lower-case MAC", () => {
    const text = JSON.stringify({
      macs: {
        "BC:24:11:00:00:6B": { ip4: "10.10.10.50", ip6: "fd00::5" },
        "bc:24:11:00:00:6c": { ip6: "fd00::6" },
        junk: { ip4: "10.10.10.9" },
      },
    });
    expect(parseMacCache(text, "sdn/mac-cache.json")).toEqual({
      macCache: { "bc:24:11:00:00:6b": "10.10.10.50" },
      diagnostics: [],
    });
  });
});

describe("dnsmasq leases and static hosts", () => {
  it("lease lines <expiry> <mac> <ip> <hostname> <client-id>; IPv6 part skipped", () => {
    const text = [
      "1764900000 bc:24:11:00:00:6b 10.10.10.50 web 01:bc:24:11:00:00:6b",
      "0 bc:24:11:00:00:6c 10.10.10.51 * *",
      "duid 00:01:00:01:2c:aa:bb:cc:dd:ee:ff:00:11:22",
      "1764900000 1234 fd00::5 web 00:01:00:01",
      "garbage",
      "",
    ].join("\n");
    expect(parseLeases(text, "zone1")).toEqual({
      "bc:24:11:00:00:6b": [{ ip: "10.10.10.50", zone: "zone1", expiry: 1764900000 }],
      "bc:24:11:00:00:6c": [{ ip: "10.10.10.51", zone: "zone1", expiry: 0 }],
    });
  });

  it("ethers lines mac,ip4[,ip6] as pve-network writes them", () => {
    const text =
      "BC:24:11:00:00:6B,10.10.10.50\nbc:24:11:00:00:6c,10.10.10.51,[fd00::6]\n# x\nid:1,10.1.1.1\n";
    expect(parseEthers(text, "zone1")).toEqual({
      "bc:24:11:00:00:6b": [{ ip: "10.10.10.50", zone: "zone1" }],
      "bc:24:11:00:00:6c": [{ ip: "10.10.10.51", zone: "zone1" }],
    });
  });
});

describe("neighbour table", () => {
  it("ip -4 neigh show: usable states only, dev from the line or the argument", () => {
    const text = [
      "10.10.10.50 dev vmbr1 lladdr bc:24:11:00:00:6b REACHABLE",
      "10.10.10.51 dev vmbr1 lladdr BC:24:11:00:00:6C STALE",
      "10.10.10.52 dev vmbr1  FAILED",
      "10.10.10.53 dev vmbr1 lladdr bc:24:11:00:00:6d INCOMPLETE",
      "203.0.113.1 dev vmbr0 lladdr 02:00:00:00:00:01 router REACHABLE",
    ].join("\n");
    expect(parseNeighbours(text)).toEqual({
      "bc:24:11:00:00:6b": [{ ip: "10.10.10.50", dev: "vmbr1", state: "REACHABLE" }],
      "bc:24:11:00:00:6c": [{ ip: "10.10.10.51", dev: "vmbr1", state: "STALE" }],
      "02:00:00:00:00:01": [{ ip: "203.0.113.1", dev: "vmbr0", state: "REACHABLE" }],
    });
    expect(parseNeighbours("10.10.10.50 lladdr bc:24:11:00:00:6b DELAY\n", "vmbr2")).toEqual({
      "bc:24:11:00:00:6b": [{ ip: "10.10.10.50", dev: "vmbr2", state: "DELAY" }],
    });
  });
});

describe("guest agent network-get-interfaces", () => {
  const answer = [
    {
      name: "lo",
      "hardware-address": "00:00:00:00:00:00",
      "ip-addresses": [{ "ip-address-type": "ipv4", "ip-address": "127.0.0.1", prefix: 8 }],
    },
    {
      name: "eth0",
      "hardware-address": "BC:24:11:00:00:6B",
      "ip-addresses": [
        { "ip-address-type": "ipv6", "ip-address": "fe80::1", prefix: 64 },
        { "ip-address-type": "ipv4", "ip-address": "169.254.3.4", prefix: 16 },
        { "ip-address-type": "ipv4", "ip-address": "10.10.10.50", prefix: 24 },
      ],
    },
    { name: "eth1", "ip-addresses": [] },
    "junk",
  ];
  it("IPv4 per MAC; loopback, link-local, IPv6 and MAC-less interfaces dropped", () => {
    expect(parseAgentInterfaces(JSON.stringify(answer))).toEqual([
      { mac: "bc:24:11:00:00:6b", ips: ["10.10.10.50"] },
    ]);
    expect(parseAgentInterfaces(JSON.stringify({ return: answer }))).toHaveLength(1);
  });
  it.each(["", "{", '{"error": "guest agent is not running"}', "42", "null"])(
    "%j is no answer",
    (text) => {
      expect(parseAgentInterfaces(text)).toBeNull();
    },
  );
});

describe("small predicates", () => {
  it.each([
    ["BC:24:11:00:00:6B", "bc:24:11:00:00:6b"],
    [" bc:24:11:00:00:6b ", "bc:24:11:00:00:6b"],
    ["bc-24-11-00-00-6b", null],
    [42, null],
  ])("normalMac(%j) = %j", (m, out) => {
    expect(normalMac(m)).toBe(out);
  });
  it.each([
    ["10.10.10.5", true],
    ["127.0.0.1", false],
    ["169.254.1.1", false],
    ["224.0.0.1", false],
    ["0.1.2.3", false],
    ["255.255.255.255", false],
    ["10.10.10.300", false],
  ])("usableIPv4(%s) = %s", (ip, ok) => {
    expect(usableIPv4(ip)).toBe(ok);
  });
});

describe("SDN section config", () => {
  it("zones, vnets and subnets (snat, gateway), as pve-network writes them", () => {
    const r = parseSdn({
      zones: "simple: zone1\n\tipam pve\n\tdhcp dnsmasq\n\nvlan: zone2\n\tbridge vmbr0\n",
      vnets: "vnet: vnet1\n\tzone zone1\n\nvnet: vnet2\n\tzone zone2\n\ttag 20\n",
      subnets: [
        "subnet: zone1-10.10.10.0-24",
        "\tvnet vnet1",
        "\tdhcp-range start-address=10.10.10.100,end-address=10.10.10.200",
        "\tgateway 10.10.10.1",
        "\tsnat 1",
        "",
        "subnet: zone2-10.10.20.0-24",
        "\tvnet vnet2",
        "",
        "subnet: zone1-fd00::-64",
        "\tvnet vnet1",
        "",
        "subnet: broken",
        "\tvnet vnet1",
        "stray line",
        "",
      ].join("\n"),
    });
    expect(r.sdn.zones).toEqual({
      zone1: { type: "simple", dhcp: "dnsmasq" },
      zone2: { type: "vlan", dhcp: null },
    });
    expect(r.sdn.vnets).toEqual({ vnet1: { zone: "zone1" }, vnet2: { zone: "zone2" } });
    expect(r.sdn.subnets).toEqual([
      {
        id: "zone1-10.10.10.0-24",
        zone: "zone1",
        vnet: "vnet1",
        cidr: "10.10.10.0/24",
        gateway: "10.10.10.1",
        snat: true,
        line: 1,
      },
      {
        id: "zone2-10.10.20.0-24",
        zone: "zone2",
        vnet: "vnet2",
        cidr: "10.10.20.0/24",
        gateway: null,
        snat: false,
        line: 7,
      },
    ]);
    expect(r.diagnostics.map((d) => `${d.file}:${d.line} ${d.severity}`)).toEqual([
      "sdn/subnets.cfg:13 warning",
      "sdn/subnets.cfg:15 warning",
    ]);
  });
});
