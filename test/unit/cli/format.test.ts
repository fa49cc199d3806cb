import { describe, expect, it } from "vitest";
import {
  diagnosticLine,
  forwardRow,
  forwardsTable,
  sortDiagnostics,
  table,
} from "../../../src/cli/format.js";
import type { Diagnostic, Forward } from "../../../src/model.js";

describe("table", () => {
  it("pads every column to its widest cell, two spaces apart, no trailing blanks", () => {
    expect(
      table(
        ["A", "LONGER", "C"],
        [
          ["x", "1", "last"],
          ["wide cell", "", "z"],
        ],
      ),
    ).toBe(
      ["A          LONGER  C", "x          1       last", "wide cell          z", ""].join("\n"),
    );
  });
  it("headers only when there are no rows", () => {
    expect(table(["VMID", "NAME"], [])).toBe("VMID  NAME\n");
  });
});

describe("diagnosticLine", () => {
  it.each<[Diagnostic, string]>([
    [
      { file: "firewall/107.fw", line: 7, severity: "error", message: "bad" },
      "firewall/107.fw:7: error: bad",
    ],
    [
      { file: "/etc/pve-nat/pve-nat.conf", line: 0, severity: "warning", message: "w" },
      "/etc/pve-nat/pve-nat.conf: warning: w",
    ],
  ])("%j", (d, line) => {
    expect(diagnosticLine(d)).toBe(line);
  });
});

it("sortDiagnostics orders by file, then line", () => {
  const d = (file: string, line: number): Diagnostic => ({
    file,
    line,
    severity: "error",
    message: "",
  });
  expect(
    sortDiagnostics([
      d("firewall/2.fw", 3),
      d("firewall/107.fw", 9),
      d("firewall/107.fw", 2),
      d("/etc/x", 1),
    ]),
  ).toEqual([
    d("/etc/x", 1),
    d("firewall/107.fw", 2),
    d("firewall/107.fw", 9),
    d("firewall/2.fw", 3),
  ]);
});

const IN: Forward = {
  vmid: 107,
  name: "web",
  direction: "in",
  proto: "tcp",
  public: { address: "203.0.113.10", ports: "822" },
  private: { address: "10.10.10.107", ports: "22", addressSource: "config" },
  source: "198.51.100.7",
  destination: null,
  origin: "firewall/107.fw:4",
  state: "active",
  reason: null,
};
const OUT: Forward = {
  vmid: null,
  name: null,
  direction: "out",
  proto: null,
  public: { address: null, ports: null },
  private: { address: "10.10.10.0/24", ports: null, addressSource: "config" },
  source: "10.10.10.0/24",
  destination: null,
  origin: "nodes/pve1/host.fw:3",
  state: "inactive",
  reason: null,
};

describe("forward rows", () => {
  it.each<[Forward, string[]]>([
    [
      IN,
      [
        "107",
        "web",
        "in",
        "tcp",
        "203.0.113.10:822",
        "10.10.10.107:22",
        "config",
        "198.51.100.7",
        "active",
        "firewall/107.fw:4",
      ],
    ],
    [
      { ...IN, source: null, public: { address: null, ports: "80" } },
      [
        "107",
        "web",
        "in",
        "tcp",
        "?:80",
        "10.10.10.107:22",
        "config",
        "any",
        "active",
        "firewall/107.fw:4",
      ],
    ],
    [
      OUT,
      [
        "-",
        "-",
        "out",
        "all",
        "masquerade",
        "10.10.10.0/24",
        "config",
        "10.10.10.0/24 to any",
        "inactive",
        "nodes/pve1/host.fw:3",
      ],
    ],
    [
      {
        ...OUT,
        vmid: 107,
        name: "web",
        proto: "tcp",
        source: null,
        public: { address: "203.0.113.5", ports: null },
        private: { address: "10.10.10.107", ports: "443", addressSource: "config" },
        destination: "198.51.100.20",
      },
      [
        "107",
        "web",
        "out",
        "tcp",
        "203.0.113.5",
        "10.10.10.107",
        "config",
        "to 198.51.100.20:443",
        "inactive",
        "nodes/pve1/host.fw:3",
      ],
    ],
  ])("%#", (f, row) => {
    expect(forwardRow(f)).toEqual(row);
  });

  it("forwardsTable has the SPEC columns", () => {
    expect(forwardsTable([IN]).split("\n")[0]?.split(/\s+/)).toEqual([
      "VMID",
      "NAME",
      "DIR",
      "PROTO",
      "PUBLIC",
      "PRIVATE",
      "ADDR-FROM",
      "SOURCE",
      "STATE",
      "ORIGIN",
    ]);
  });
});
