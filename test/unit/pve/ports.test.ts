import { describe, expect, it } from "vitest";
import {
  checkPortSpec,
  formatPorts,
  type PortRange,
  parsePorts,
  portCount,
} from "../../../src/pve/ports.js";

describe("parsePorts", () => {
  it.each<[string, PortRange[]]>([
    ["22", [{ from: 22, to: 22 }]],
    ["0", [{ from: 0, to: 0 }]],
    ["65535", [{ from: 65535, to: 65535 }]],
    [
      "80,443",
      [
        { from: 80, to: 80 },
        { from: 443, to: 443 },
      ],
    ],
    ["1000:2000", [{ from: 1000, to: 2000 }]],
    ["5:5", [{ from: 5, to: 5 }]],
    ["ssh", [{ from: 22, to: 22 }]],
    [
      "http,https,8000:8010",
      [
        { from: 80, to: 80 },
        { from: 443, to: 443 },
        { from: 8000, to: 8010 },
      ],
    ],
    ["0022", [{ from: 22, to: 22 }]],
    // 15 numbers is the limit; names count 0.
    [
      "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
      Array.from({ length: 15 }, (_, i) => ({ from: i + 1, to: i + 1 })),
    ],
    [
      "1:2,3:4,5:6,7:8,9:10,11:12,13:14,15",
      [1, 3, 5, 7, 9, 11, 13].map((f) => ({ from: f, to: f + 1 })).concat([{ from: 15, to: 15 }]),
    ],
  ])("%s", (text, want) => {
    expect(parsePorts(text)).toEqual(want);
  });

  it.each<[string, RegExp]>([
    ["65536", /invalid port '65536'/],
    ["1:65536", /invalid port '65536'/],
    ["2000:1000", /backwards range '2000:1000'.*did you mean '1000:2000'/],
    ["80,", /extraneous commas/],
    ["80,,443", /invalid port ''/],
    ["-1", /invalid port '-1'/],
    ["1-2", /invalid port '1-2'/],
    ["SSH", /invalid port 'SSH'/], // /etc/services names are case-sensitive
    ["ssh2", /invalid port 'ssh2'/],
    ["echo-request", /invalid port 'echo-request'/],
    ["1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", /too many entries/],
    ["1:2,3:4,5:6,7:8,9:10,11:12,13:14,15:16", /too many entries/],
    ["$(id)", /invalid port/],
  ])("rejects %s", (text, message) => {
    const got = parsePorts(text);
    expect(got).toHaveProperty("error");
    expect((got as { error: string }).error).toMatch(message);
  });
});

describe("checkPortSpec", () => {
  it.each<[string, boolean, string | null]>([
    ["22", false, null],
    ["echo-request", true, null],
    ["neighbor-solicitation", true, null],
    ["echo-request", false, "invalid port"],
    ["echo-request,22", true, "mixed"],
    ["echo-request,ssh", true, null],
  ])("%s (icmp %s)", (text, icmp, error) => {
    const got = checkPortSpec(text, icmp);
    if (error === null) expect(got).toBeNull();
    else expect(got?.error).toContain(error);
  });
});

describe("formatPorts and portCount", () => {
  it.each<[PortRange[], string, number]>([
    [[{ from: 22, to: 22 }], "22", 1],
    [
      [
        { from: 80, to: 80 },
        { from: 443, to: 443 },
      ],
      "80,443",
      2,
    ],
    [[{ from: 8000, to: 8010 }], "8000:8010", 11],
    [[], "", 0],
  ])("%o → %s, %d ports", (ranges, text, count) => {
    expect(formatPorts(ranges)).toBe(text);
    expect(portCount(ranges)).toBe(count);
  });
});
