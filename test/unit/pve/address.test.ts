import { describe, expect, it } from "vitest";
import {
  type AddrItem,
  ipv4ItemToCidrs,
  isIPv4,
  netIp,
  parseAddressRef,
  parseIpOrCidr,
} from "../../../src/pve/address.js";

// Verdicts of Perl's Net::IP 1.26 (`Net::IP->new($s)`, intip of first and last address), recorded
// with the Debian 12 libnet-ip-perl that pve-firewall uses; null = Net::IP refuses it.
const NET_IP: Array<[string, { family: 4 | 6; first: bigint; last: bigint } | null]> = [
  ["1.2.3.4", { family: 4, first: 16909060n, last: 16909060n }],
  ["10.0.0.0/8", { family: 4, first: 167772160n, last: 184549375n }],
  ["10.0.0.1/8", null],
  ["10", { family: 4, first: 167772160n, last: 167772160n }],
  ["10.1", { family: 4, first: 167837696n, last: 167837696n }],
  ["10.0.0.0/33", null],
  ["10.0.0.1-10.0.0.9", { family: 4, first: 167772161n, last: 167772169n }],
  ["10.0.0.9-10.0.0.1", null],
  ["01.2.3.4", { family: 4, first: 16909060n, last: 16909060n }],
  ["256.1.1.1", null],
  ["1.2.3.4/0", null],
  ["0.0.0.0/0", { family: 4, first: 0n, last: 4294967295n }],
  ["::1", { family: 6, first: 1n, last: 1n }],
  [
    "fe80::/64",
    {
      family: 6,
      first: 338288524927261089654018896841347694592n,
      last: 338288524927261089672465640915057246207n,
    },
  ],
  ["fe80::1/64", null],
  [
    "2001:db8::1-2001:db8::5",
    {
      family: 6,
      first: 42540766411282592856903984951653826561n,
      last: 42540766411282592856903984951653826565n,
    },
  ],
  ["::ffff:1.2.3.4", { family: 6, first: 281470698652420n, last: 281470698652420n }],
  ["1.2.3", { family: 4, first: 16909056n, last: 16909056n }],
  ["1.2.3.4/", null],
  ["1.2.3.0/24-1.2.3.9", { family: 4, first: 16909056n, last: 16909056n }],
  ["10.0.0.0/8x", { family: 4, first: 167772160n, last: 167772160n }],
  ["1.2.3.4/8/8", { family: 4, first: 16909060n, last: 16909060n }],
  ["1.2.3.4.5", null],
  ["2001:db8::/129", null],
  [
    "2001:DB8::1",
    {
      family: 6,
      first: 42540766411282592856903984951653826561n,
      last: 42540766411282592856903984951653826561n,
    },
  ],
  ["::", { family: 6, first: 0n, last: 0n }],
  [
    "1:2:3:4:5:6:7:8",
    {
      family: 6,
      first: 5192455318486707404433266433261576n,
      last: 5192455318486707404433266433261576n,
    },
  ],
  ["1:2:3:4:5:6:7:8:9", null],
  ["1::2::3", null],
  [":1::2", null],
  ["1::2:", null],
  ["10.0.0.1-11.", { family: 4, first: 167772161n, last: 184549376n }],
  ["::-:::", { family: 6, first: 0n, last: 0n }],
  ["::5.0128", null],
  ["10.0.0.0-10.0.0.255", { family: 4, first: 167772160n, last: 167772415n }],
  ["1.2.3.4-", null],
  ["-1.2.3.4", null],
  ["0x1.2.3.4", null],
  ["abc", null],
  ["300", null],
  ["255", { family: 4, first: 4278190080n, last: 4278190080n }],
  ["::1.2.3.4", { family: 6, first: 16909060n, last: 16909060n }],
  [
    "1:2:3:4:5:6:1.2.3.4",
    {
      family: 6,
      first: 5192455318486707404433266449711876n,
      last: 5192455318486707404433266449711876n,
    },
  ],
];

describe("netIp follows Net::IP", () => {
  it.each(NET_IP)("%s", (text, want) => {
    const got = netIp(text);
    expect(got && { family: got.family, first: got.first, last: got.last }).toEqual(want);
  });
});

describe("parseAddressRef", () => {
  it.each<[string, unknown]>([
    ["10.0.0.1", { kind: "list", items: [{ family: 4, kind: "ip", text: "10.0.0.1" }] }],
    ["10.0.0.0/8", { kind: "list", items: [{ family: 4, kind: "cidr", text: "10.0.0.0/8" }] }],
    [
      "10.0.0.1-10.0.0.9",
      { kind: "list", items: [{ family: 4, kind: "range", text: "10.0.0.1-10.0.0.9" }] },
    ],
    [
      "1.2.3.4,10.0.0.0/8",
      {
        kind: "list",
        items: [
          { family: 4, kind: "ip", text: "1.2.3.4" },
          { family: 4, kind: "cidr", text: "10.0.0.0/8" },
        ],
      },
    ],
    [
      "2001:db8::/32",
      { kind: "list", items: [{ family: 6, kind: "cidr", text: "2001:db8::/32" }] },
    ],
    ["web", { kind: "alias", scope: null, name: "web" }],
    ["dc/Office", { kind: "alias", scope: "dc", name: "office" }],
    ["guest/my_net-1", { kind: "alias", scope: "guest", name: "my_net-1" }],
    ["fe80", { kind: "alias", scope: null, name: "fe80" }],
    ["+mgmt", { kind: "ipset", scope: null, name: "mgmt" }],
    ["+dc/Mgmt", { kind: "ipset", scope: "dc", name: "mgmt" }],
    ["+guest/x1", { kind: "ipset", scope: "guest", name: "x1" }],
    ["+sdn/vnet0-all", { kind: "ipset", scope: "sdn", name: "vnet0-all" }],
  ])("accepts %s", (text, want) => {
    expect(parseAddressRef(text)).toEqual(want);
  });

  it.each<[string, RegExp]>([
    ["10.0.0.1/8", /invalid IP address '10.0.0.1\/8'/],
    ["1.2.3.4,", /extraneous commas/],
    ["1.2.3.4,,5.6.7.8", /invalid IP address ''/], // Perl split keeps inner empty fields
    [",1.2.3.4", /invalid IP address ''/],
    ["1.2.3.4,::1", /mixed IPv4\/IPv6/],
    ["1.2.3.4,10.0.0.1-10.0.0.5", /range cannot be used in a list/],
    ["+a", /invalid ipset name/],
    ["+1abc", /invalid ipset name/],
    ["+foo/bar", /invalid ipset name/],
    ["+", /invalid ipset name/],
    [`+${"a".repeat(65)}`, /ipset name too long/],
    [`dc/${"a".repeat(62)}`, /alias name too long/],
    ["a", /invalid IP address 'a'/],
    ["x/web", /invalid IP address/],
    ["$(reboot)", /invalid IP address/],
    ["1.2.3.4;", /invalid IP address/],
  ])("rejects %s", (text, message) => {
    const got = parseAddressRef(text);
    expect(got).toHaveProperty("error");
    expect((got as { error: string }).error).toMatch(message);
  });

  it("accepts the longest alias and ipset names pve-firewall allows", () => {
    expect(parseAddressRef(`+${"a".repeat(64)}`)).toHaveProperty("kind", "ipset");
    expect(parseAddressRef(`dc/${"a".repeat(61)}`)).toHaveProperty("kind", "alias");
  });
});

describe("isIPv4", () => {
  it.each([
    ["1.2.3.4", true],
    ["255.255.255.255", true],
    ["0.0.0.0", true],
    ["01.2.3.4", false],
    ["1.2.3", false],
    ["256.1.1.1", false],
    ["1.2.3.4/32", false],
    ["::1", false],
    [" 1.2.3.4", false],
  ])("%s → %s", (text, want) => {
    expect(isIPv4(text)).toBe(want);
  });
});

describe("parseIpOrCidr (aliases, ipset entries)", () => {
  it.each<[string, unknown]>([
    ["10.0.0.1", { family: 4 }],
    ["10.0.0.1/24", { family: 4 }],
    ["10.0.0.1/99", { family: 4 }], // pve-firewall checks the prefix digits only
    ["2001:db8::1", { family: 6 }],
    ["fe80::/64", { family: 6 }],
    ["::ffff:1.2.3.4", { family: 6 }],
  ])("accepts %s", (text, want) => {
    expect(parseIpOrCidr(text)).toEqual(want);
  });
  it.each(["10", "10.0.0.1-10.0.0.2", "01.2.3.4", "10.0.0.1/", "abc", "1.2.3.4/x"])(
    "rejects %s",
    (text) => {
      expect(parseIpOrCidr(text)).toHaveProperty("error");
    },
  );
});

describe("ipv4ItemToCidrs", () => {
  const item = (text: string, kind: AddrItem["kind"] = "ip"): AddrItem => ({
    family: 4,
    kind,
    text,
  });
  it.each<[AddrItem, string[]]>([
    [item("1.2.3.4"), ["1.2.3.4/32"]],
    [item("10.0.0.0/8", "cidr"), ["10.0.0.0/8"]],
    [item("10.0.0.0-10.0.0.255", "range"), ["10.0.0.0/24"]],
    [
      item("10.0.0.1-10.0.0.6", "range"),
      ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"],
    ],
    [item("0.0.0.0/0", "cidr"), ["0.0.0.0/0"]],
    [item("255.255.255.254-255.255.255.255", "range"), ["255.255.255.254/31"]],
    [item("10"), ["10.0.0.0/32"]],
    [{ family: 6, kind: "ip", text: "::1" }, []],
  ])("%o", (it_, want) => {
    expect(ipv4ItemToCidrs(it_)).toEqual(want);
  });
});
