import { describe, expect, it } from "vitest";
import { asciiLower, findMacro, macroNames } from "../../../src/pve/macros.js";
import {
  ETHERTYPE_NAMES,
  PROTOCOL_IDS,
  PROTOCOL_NAMES,
  SERVICES,
} from "../../../src/pve/services.js";

describe("findMacro", () => {
  it.each([
    ["SSH", { name: "SSH", entries: [{ proto: "tcp", dport: "22" }] }],
    ["ssh", { name: "SSH", entries: [{ proto: "tcp", dport: "22" }] }],
    ["mYsQl", { name: "MySQL", entries: [{ proto: "tcp", dport: "3306" }] }],
    [
      "Web",
      {
        name: "Web",
        entries: [
          { proto: "tcp", dport: "80" },
          { proto: "tcp", dport: "443" },
        ],
      },
    ],
    [
      "dns",
      {
        name: "DNS",
        entries: [
          { proto: "udp", dport: "53" },
          { proto: "tcp", dport: "53" },
        ],
      },
    ],
    [
      "IPsec",
      { name: "IPsec", entries: [{ proto: "udp", dport: "500", sport: "500" }, { proto: "50" }] },
    ],
    ["gre", { name: "GRE", entries: [{ proto: "47" }] }],
    ["Ping", { name: "Ping", entries: [{ proto: "icmp", dport: "echo-request" }] }],
    ["DHCPv6", { name: "DHCPv6", entries: [{ proto: "udp", dport: "546:547", sport: "546:547" }] }],
  ])("%s", (name, want) => {
    expect(findMacro(name)).toEqual(want);
  });

  it("has IPv6 variants and IPv6-only macros", () => {
    expect(findMacro("Ping", 6)?.entries).toEqual([{ proto: "icmpv6", dport: "echo-request" }]);
    expect(findMacro("Ping", 4)?.entries).toEqual([{ proto: "icmp", dport: "echo-request" }]);
    expect(findMacro("NeighborDiscovery", 4)).toEqual({ name: "NeighborDiscovery", entries: [] });
    expect(findMacro("neighbordiscovery", 6)?.entries).toHaveLength(4);
  });

  it.each(["", "SSH2", "S SH", "HTTP(ACCEPT)", "ſsh"])("does not know %j", (name) => {
    expect(findMacro(name)).toBeNull();
  });

  it("knows all 86 of pve-firewall's macros", () => {
    // 84 in $pve_fw_macros plus the IPv6-only DHCPv6 and NeighborDiscovery.
    expect(macroNames()).toHaveLength(86);
    for (const name of macroNames()) expect(findMacro(asciiLower(name))?.name).toBe(name);
  });

  it("asciiLower lowers ASCII only, as Perl's lc on bytes", () => {
    expect(asciiLower("ABC\u00c9")).toBe("abc\u00c9");
  });
});

describe("netbase tables", () => {
  it.each([
    ["ssh", 22],
    ["http", 80],
    ["https", 443],
    ["domain", 53],
    ["ntp", 123],
  ])("service %s is %d", (name, port) => {
    expect(SERVICES[name]).toBe(port);
  });
  it("holds only first-column names, as pve-firewall reads them", () => {
    expect(Object.hasOwn(SERVICES, "www")).toBe(false); // an alias of http
  });
  it("knows protocols by name and number as written", () => {
    expect(PROTOCOL_NAMES.tcp).toBe("6");
    expect(PROTOCOL_IDS.has("6")).toBe(true);
    expect(PROTOCOL_IDS.has("06")).toBe(false);
  });
  it("knows ethertypes with decimal-looking numbers only", () => {
    expect(ETHERTYPE_NAMES.IPv4).toBe("0800");
    expect(Object.hasOwn(ETHERTYPE_NAMES, "IPv6")).toBe(false); // 86DD is not \d+
  });
});
