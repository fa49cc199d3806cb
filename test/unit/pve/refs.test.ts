import { describe, expect, it } from "vitest";
import type { Diagnostic, FwFile, FwKind } from "../../../src/model.js";
import { parseFwFile } from "../../../src/pve/fwfile.js";
import { checkRefs } from "../../../src/pve/refs.js";

const CLUSTER = `[ALIASES]
office 198.51.100.0/24
v6net 2001:db8::/64

[IPSET mgmt]
198.51.100.7
office

[RULES]
IN ACCEPT -source +mgmt
IN ACCEPT -source office
IN ACCEPT -source guest/office
IN ACCEPT -source +guest/mgmt

[group web]
IN ACCEPT -source office -p tcp -dport 80
IN ACCEPT -source guest/office
`;

const NO_GUEST = "a guest file (this rule is not in one)";
const cluster = parseFwFile(CLUSTER, "firewall/cluster.fw", "cluster");

function check(text: string, kind: FwKind = "guest", withCluster: FwFile | null = cluster) {
  const file = kind === "host" ? "nodes/pve1/host.fw" : "firewall/107.fw";
  const fw = parseFwFile(text, file, kind);
  expect(fw.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
  return checkRefs(fw, withCluster).map((d: Diagnostic) => [d.line, d.severity, d.message]);
}

describe("checkRefs", () => {
  it("the cluster file resolves its own names (and warns about guest/ scope in it)", () => {
    expect(parseFwFile(CLUSTER, "firewall/cluster.fw", "cluster").diagnostics).toEqual([]);
    expect(checkRefs(cluster, null).map((d) => [d.line, d.severity, d.message])).toEqual([
      [
        12,
        "warning",
        `-source: no alias 'guest/office' in ${NO_GUEST}; pve-firewall skips this rule`,
      ],
      [13, "warning", `-source: no ipset 'mgmt' in ${NO_GUEST}; pve-firewall skips this rule`],
      [
        17,
        "warning",
        `-source: no alias 'guest/office' in ${NO_GUEST}; pve-firewall skips this rule`,
      ],
    ]);
  });

  it.each<[string, FwKind, Array<[number, string, RegExp]>]>([
    ["IN ACCEPT -source office", "guest", []],
    ["IN ACCEPT -source OFFICE", "guest", []],
    ["IN ACCEPT -source dc/office", "guest", []],
    ["IN ACCEPT -source +mgmt", "guest", []],
    ["IN ACCEPT -source +dc/mgmt", "guest", []],
    ["IN ACCEPT -source +sdn/vnet0-all", "guest", []],
    ["IN ACCEPT -source +vnet0-gateway", "guest", []],
    ["GROUP web", "guest", []],
    ["GROUP web", "host", []],
    ["|GROUP nosuch", "guest", []], // only enabled rules are compiled
    ["IN ACCEPT -source 10.0.0.1 -dest 10.0.0.2", "guest", []],
    ["IN ACCEPT -source nosuch", "guest", [[2, "error", /no such alias 'nosuch'/]]],
    ["|IN ACCEPT -source nosuch", "guest", [[2, "error", /no such alias 'nosuch'/]]],
    ["IN ACCEPT -dest +nosuch", "guest", [[2, "error", /-dest: no such ipset 'nosuch'/]]],
    ["IN ACCEPT -source +MGMT", "guest", [[2, "error", /no such ipset 'MGMT'.*use mgmt/]]],
    ["GROUP nosuch", "guest", [[2, "error", /no such security group 'nosuch'/]]],
    ["GROUP nosuch -i net0", "host", [[2, "error", /no such security group/]]],
    [
      "IN ACCEPT -source guest/office",
      "guest",
      [[2, "warning", /no alias 'guest\/office' in firewall\/107.fw;/]],
    ],
    [
      "IN ACCEPT -source +guest/mgmt",
      "guest",
      [[2, "warning", /no ipset 'mgmt' in firewall\/107.fw;/]],
    ],
    ["IN ACCEPT -source guest/office", "host", [[2, "warning", /no alias 'guest\/office'/]]],
    ["|IN ACCEPT -source guest/office", "guest", []],
    [
      "IN ACCEPT -source v6net -dest 10.0.0.1",
      "guest",
      [[2, "error", /IPv4 and IPv6 mixed.*alias/]],
    ],
    ["IN ACCEPT -p icmp -source v6net", "guest", [[2, "error", /IPv4 and IPv6 mixed/]]],
    ["IN ACCEPT -source v6net -dest 2001:db8::1", "guest", []],
  ])("%s (%s)", (line, kind, want) => {
    const got = check(`[RULES]\n${line}\n`, kind);
    expect(got).toEqual(want.map(([l, s, m]) => [l, s, expect.stringMatching(m)]));
  });

  it("looks in the guest file first, then cluster.fw", () => {
    const text =
      "[ALIASES]\noffice 2001:db8::1\n[RULES]\nIN ACCEPT -source office -dest 2001:db8::2\n";
    expect(check(text)).toEqual([]);
    expect(check(text.replace("-source office", "-source dc/office"))).toEqual([
      [4, "error", expect.stringMatching(/IPv4 and IPv6 mixed/)],
    ]);
  });

  it("counts a definition in the same file only above the reference", () => {
    const text =
      "[RULES]\nIN ACCEPT -source mine\nIN ACCEPT -source +later\n[ALIASES]\nmine 10.0.0.1\n[IPSET later]\n10.0.0.2\n[RULES]\nIN ACCEPT -source mine -dest +later\n";
    expect(check(text)).toEqual([
      [2, "error", "-source: no such alias 'mine'"],
      [3, "error", "-source: no such ipset 'later'"],
    ]);
  });

  it("checks alias entries of ipsets with their scope", () => {
    const text =
      "[ALIASES]\nlocal 10.0.0.9\n[IPSET s1]\nlocal\ndc/office\noffice\nguest/office\ndc/local\nnosuch\n";
    expect(check(text).map(([l, s]) => [l, s])).toEqual([
      [7, "error"],
      [8, "error"],
      [9, "error"],
    ]);
  });

  it("without cluster.fw, names only resolve in the file itself", () => {
    expect(check("[RULES]\nIN ACCEPT -source office\nGROUP web\n", "guest", null)).toEqual([
      [2, "error", "-source: no such alias 'office'"],
      [3, "error", expect.stringMatching(/no such security group 'web'/)],
    ]);
  });
});

describe("pve-firewall quirks found by differential fuzzing", () => {
  it("checks the rules of a [group] section that a later header of the same name replaced", () => {
    const fw = parseFwFile(
      "[group g1]\nIN ACCEPT -source nosuch\n[group g1]\nIN ACCEPT\n",
      "firewall/cluster.fw",
      "cluster",
    );
    expect(fw.groups.g1?.rules.map((r) => r.line)).toEqual([4]);
    expect(checkRefs(fw, null).map((d) => d.line)).toEqual([2]);
  });

  it("checks alias entries of an [IPSET] section that a later header replaced", () => {
    const fw = parseFwFile(
      "[IPSET s1]\nnosuch\n[IPSET s1]\n10.0.0.1\n",
      "firewall/100.fw",
      "guest",
    );
    expect(checkRefs(fw, null).map((d) => d.line)).toEqual([2]);
  });

  it("counts an ipset from its first header, an alias from the definition above", () => {
    const text =
      "[IPSET s1]\n10.0.0.1\n[RULES]\nIN ACCEPT -source +s1 -dest a1\n[ALIASES]\na1 10.0.0.9\n[IPSET s1]\n10.0.0.2\n";
    const fw = parseFwFile(text, "firewall/100.fw", "guest");
    expect(checkRefs(fw, null).map((d) => [d.line, d.message])).toEqual([
      [4, "-dest: no such alias 'a1'"],
    ]);
  });

  it.each([
    // DHCPv6 is IPv6-only: an IPv4 alias makes pve-firewall skip the macro, so no conflict.
    ["IN DHCPv6(ACCEPT) -p tcp -source v4", []],
    ["IN DHCPv6(ACCEPT) -p tcp -source v6", [2]],
    ["IN DHCPv6(ACCEPT) -p tcp", [2]],
    // "0" is false for most checks but still a parameter the macro compares.
    ["IN DHCPv6(ACCEPT) -source v6 -dport 0", [2]],
    ["IN SSH(ACCEPT) -dport 0", [2]],
  ])("macro check after alias families: %s", (line, lines) => {
    const text = `[ALIASES]\nv4 10.0.0.1\nv6 2001:db8::1\n[RULES]\n${line}\n`;
    const fw = parseFwFile(text, "firewall/100.fw", "guest");
    const all = [...fw.diagnostics, ...checkRefs(fw, null)].filter((d) => d.severity === "error");
    expect(all.map((d) => d.line - 3)).toEqual(lines);
  });

  it.each<[string, boolean]>([
    ["[RULES]\nIN ACCEPT -source web\n[ALIASES]\nweb 10.0.0.1\n", true],
    ["[RULES]\nIN ACCEPT -source +nosuch\n[IPSET s1]\n10.0.0.1\n", true],
    ["[RULES]\nIN ACCEPT -source +mgmt\n[IPSET s1]\n10.0.0.1\n", false], // cluster has mgmt
    ["[RULES]\nIN ACCEPT -source dc/office\n[ALIASES]\nweb 10.0.0.1\n", false],
    ["[RULES]\nIN ACCEPT\n[ALIASES]\nweb 10.0.0.1\n", false],
    ["[RULES]\nIN ACCEPT -dest guest/x1\n[ALIASES]\nweb 10.0.0.1\n", true],
  ])("host.fw takes [ALIASES]/[IPSET] after a rule looked one up: %j", (text, accepted) => {
    const fw = parseFwFile(text, "nodes/pve1/host.fw", "host", cluster);
    const bad = fw.diagnostics.filter((d) => d.severity === "error").map((d) => d.line);
    expect(bad.includes(3)).toBe(!accepted);
  });
});
