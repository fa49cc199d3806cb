import { describe, expect, it } from "vitest";
import {
  ipToInt,
  networkOf,
  singleAddress,
  subtract,
  toCidrs,
  union,
} from "../../../src/nat/ipv4.js";

const iv = (a: string, b = a) => ({ lo: ipToInt(a), hi: ipToInt(b) });

describe("IPv4 sets", () => {
  it.each([
    [[iv("10.0.0.0", "10.255.255.255")], ["10.0.0.0/8"]],
    [[iv("10.0.0.1", "10.0.0.6")], ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]],
    [[iv("0.0.0.0", "255.255.255.255")], ["0.0.0.0/0"]],
    [[iv("255.255.255.255")], ["255.255.255.255/32"]],
    [[], []],
  ])("cover %#", (set, want) => {
    expect(toCidrs(set)).toEqual(want);
  });

  it("union merges adjacent and overlapping intervals", () => {
    expect(
      toCidrs(
        union([iv("10.0.0.0", "10.0.0.127")], [iv("10.0.0.128", "10.0.0.255"), iv("10.0.0.5")]),
      ),
    ).toEqual(["10.0.0.0/24"]);
  });

  it("subtract cuts holes", () => {
    expect(
      toCidrs(
        subtract([iv("10.0.0.0", "10.0.0.255")], [iv("10.0.0.128", "10.0.0.255"), iv("10.0.0.0")]),
      ),
    ).toEqual([
      "10.0.0.1/32",
      "10.0.0.2/31",
      "10.0.0.4/30",
      "10.0.0.8/29",
      "10.0.0.16/28",
      "10.0.0.32/27",
      "10.0.0.64/26",
    ]);
  });

  it("networkOf / singleAddress", () => {
    expect(networkOf("10.10.10.5", 24)).toBe("10.10.10.0/24");
    expect(networkOf("10.10.10.5", 32)).toBe("10.10.10.5/32");
    expect(networkOf("10.10.10.5", 0)).toBe("0.0.0.0/0");
    expect(singleAddress([iv("10.0.0.1")])).toBe("10.0.0.1");
    expect(singleAddress([iv("10.0.0.1", "10.0.0.2")])).toBeNull();
  });
});
