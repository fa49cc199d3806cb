// The guest firewall's verdict on a forward's post-DNAT traffic, against pve-firewall's
// semantics (Firewall.pm: IN chain of a guest NIC = the guest's IN rules in order, GROUP rules
// in place in the cluster's scope, first ACCEPT/DROP/REJECT wins, policy_in default DROP).
import { describe, expect, it } from "vitest";
import { evaluateGuestIn, type GuestPacket } from "../../../src/diagnose/guestfw.js";
import { ipToInt } from "../../../src/nat/ipv4.js";
import { fw } from "../../helpers/build.js";

const one = (ip: string) => [{ lo: ipToInt(ip), hi: ipToInt(ip) }];
const ssh: GuestPacket = {
  nic: 0,
  source: null,
  dest: "10.10.10.107",
  proto: "tcp",
  dport: [{ from: 22, to: 22 }],
};
const fromClient: GuestPacket = { ...ssh, source: one("198.51.100.7") };
const https: GuestPacket = { ...ssh, dport: [{ from: 443, to: 443 }] };
const dns: GuestPacket = { ...ssh, proto: "udp", dport: [{ from: 53, to: 53 }] };

const cluster = fw("cluster", "firewall/cluster.fw", {
  options: { enable: "1" },
  aliases: { office: "198.51.100.0/24", client7: "198.51.100.7" },
  ipsets: { admins: ["198.51.100.0/24", "!198.51.100.9"] },
  groups: {
    webfarm: ["IN ACCEPT -p tcp -dport 22", "IN DROP -p tcp -dport 80"],
    // Resolved in the cluster's scope: `client7` is the cluster's even where a guest redefines it.
    byalias: ["IN ACCEPT -source client7 -p tcp -dport 22"],
    quiet: ["|IN ACCEPT -p tcp -dport 22", "IN REJECT -p tcp -dport 22"],
  },
});

function verdict(
  rules: string[],
  pkt: GuestPacket = ssh,
  options: Record<string, string> = { enable: "1" },
  spec: { aliases?: Record<string, string> } = {},
): string {
  const guest = fw("guest", "firewall/107.fw", { options, rules, ...spec });
  const v = evaluateGuestIn(pkt, guest, cluster);
  if (v.verdict === "drop") return `drop ${v.rule ? `line ${v.rule.line}` : `policy ${v.policy}`}`;
  if (v.verdict === "accept") return `accept ${v.rule ? `line ${v.rule.line}` : "policy"}`;
  return `partly line ${v.rule.line}`;
}

describe("guest firewall IN verdict", () => {
  it.each<[string, string[], GuestPacket, string]>([
    ["no rules: policy_in defaults to DROP", [], ssh, "drop policy DROP"],
    [
      "the NAT rule in explicit form accepts the private port",
      ["IN ACCEPT -p tcp -dport 22 # NAT:822"],
      ssh,
      "accept line 4",
    ],
    [
      "compatible form with -sport never matches a client's port",
      ["IN ACCEPT -p tcp -sport 822 -dport 22 # NAT"],
      ssh,
      "drop policy DROP",
    ],
    ["a disabled rule does not exist", ["|IN ACCEPT -p tcp -dport 22"], ssh, "drop policy DROP"],
    ["OUT rules are another chain", ["OUT ACCEPT -p tcp -dport 22"], ssh, "drop policy DROP"],
    [
      "first match wins: DROP before ACCEPT",
      ["IN DROP -p tcp -dport 22", "IN ACCEPT -p tcp -dport 22"],
      ssh,
      "drop line 4",
    ],
    ["REJECT is a drop too", ["IN REJECT -p tcp"], ssh, "drop line 4"],
    ["other port: no match", ["IN ACCEPT -p tcp -dport 80"], ssh, "drop policy DROP"],
    ["udp rule: no match", ["IN ACCEPT -p udp -dport 22"], ssh, "drop policy DROP"],
    ["a port range covering it", ["IN ACCEPT -p tcp -dport 20:30"], ssh, "accept line 4"],
    ["a service name", ["IN ACCEPT -p tcp -dport ssh"], ssh, "accept line 4"],
    ["macro SSH(ACCEPT)", ["IN SSH(ACCEPT)"], ssh, "accept line 4"],
    ["macro HTTP(ACCEPT) is port 80", ["IN HTTP(ACCEPT)"], ssh, "drop policy DROP"],
    ["macro SSH(DROP) first", ["IN SSH(DROP)", "IN ACCEPT"], ssh, "drop line 4"],
    ["-i of another NIC", ["IN ACCEPT -i net1 -p tcp -dport 22"], ssh, "drop policy DROP"],
    ["-i of this NIC", ["IN ACCEPT -i net0 -p tcp -dport 22"], ssh, "accept line 4"],
    [
      "security group rules in place (the group's line in cluster.fw)",
      ["GROUP webfarm"],
      ssh,
      "accept line 10",
    ],
    ["a disabled GROUP line", ["|GROUP webfarm"], ssh, "drop policy DROP"],
    [
      "source alias of the cluster covering the client",
      ["IN ACCEPT -source office -p tcp -dport 22"],
      fromClient,
      "accept line 4",
    ],
    [
      "source alias, anyone may connect: only partly",
      ["IN ACCEPT -source office -p tcp -dport 22"],
      ssh,
      "partly line 4",
    ],
    [
      "ipset with the client",
      ["IN ACCEPT -source +admins -p tcp -dport 22"],
      fromClient,
      "accept line 4",
    ],
    [
      "ipset excluding the client (!entry)",
      ["IN ACCEPT -source +admins -p tcp -dport 22"],
      { ...ssh, source: one("198.51.100.9") },
      "drop policy DROP",
    ],
    [
      "an undefined alias: pve-firewall rejects the rule",
      ["IN ACCEPT -source nosuch -p tcp -dport 22"],
      ssh,
      "drop policy DROP",
    ],
    [
      "-dest another address",
      ["IN ACCEPT -dest 10.10.10.108 -p tcp -dport 22"],
      ssh,
      "drop policy DROP",
    ],
    [
      "a DROP for some sources, then ACCEPT",
      ["IN DROP -source 198.51.100.0/25", "IN ACCEPT -p tcp"],
      ssh,
      "accept line 5",
    ],
  ])("%s", (_name, rules, pkt, expected) => {
    expect(verdict(rules, pkt)).toBe(expected);
  });

  it("policy_in ACCEPT accepts what no rule drops; REJECT drops", () => {
    expect(verdict([], ssh, { enable: "1", policy_in: "ACCEPT" })).toBe("accept policy");
    expect(verdict([], ssh, { enable: "1", policy_in: "REJECT" })).toBe("drop policy REJECT");
  });

  it.each<[string, string[], GuestPacket, string]>([
    ["a multi-entry macro: Web(ACCEPT) is 80 and 443", ["IN Web(ACCEPT)"], https, "accept line 4"],
    ["a multi-entry macro for udp: DNS(ACCEPT)", ["IN DNS(ACCEPT)"], dns, "accept line 4"],
    ["DNS(ACCEPT) is not 443", ["IN DNS(ACCEPT)"], https, "drop policy DROP"],
    [
      "a macro with a source: only that client's traffic",
      ["IN SSH(ACCEPT) -source 198.51.100.7"],
      fromClient,
      "accept line 4",
    ],
    [
      "a macro with a source, anyone connects: partly (not diagnosed)",
      ["IN SSH(ACCEPT) -source 198.51.100.7"],
      ssh,
      "partly line 4",
    ],
    [
      "dc/ picks the cluster's alias",
      ["IN ACCEPT -source dc/office -p tcp -dport 22"],
      fromClient,
      "accept line 4",
    ],
    [
      "+dc/ picks the cluster's ipset",
      ["IN ACCEPT -source +dc/admins -p tcp -dport 22"],
      fromClient,
      "accept line 4",
    ],
    [
      "a group's alias is the cluster's, whatever the guest defines",
      ["GROUP byalias"],
      fromClient,
      "accept line 13",
    ],
    [
      "a disabled rule inside a group does not exist; the group's REJECT decides",
      ["GROUP quiet", "IN ACCEPT -p tcp -dport 22"],
      ssh,
      "drop line 16",
    ],
    [
      "a GROUP line limited to another NIC is skipped",
      ["GROUP quiet -i net1", "IN ACCEPT -p tcp -dport 22"],
      ssh,
      "accept line 5",
    ],
    [
      "a rule for several ports covering the forward's",
      ["IN ACCEPT -p tcp -dport 22,80,443"],
      ssh,
      "accept line 4",
    ],
    [
      "a forward of a port range, the rule covering part of it: partly",
      ["IN ACCEPT -p tcp -dport 9000:9001"],
      { ...ssh, dport: [{ from: 9000, to: 9002 }] },
      "partly line 4",
    ],
  ])("%s", (_name, rules, pkt, expected) => {
    const guest = fw("guest", "firewall/107.fw", {
      options: { enable: "1" },
      rules,
      aliases: { client7: "198.51.100.99" },
      ipsets: { admins: ["198.51.100.9"] },
    });
    const v = evaluateGuestIn(pkt, guest, cluster);
    const got =
      v.verdict === "drop"
        ? `drop ${v.rule ? `line ${v.rule.line}` : `policy ${v.policy}`}`
        : v.verdict === "accept"
          ? `accept ${v.rule ? `line ${v.rule.line}` : "policy"}`
          : `partly line ${v.rule.line}`;
    expect(got).toBe(expected);
  });

  it("an ipset of the guest is looked up before the cluster's", () => {
    const rules = ["IN ACCEPT -source +admins -p tcp -dport 22"];
    const guest = fw("guest", "firewall/107.fw", {
      options: { enable: "1" },
      rules,
      ipsets: { admins: ["192.0.2.0/24"] },
    });
    expect(evaluateGuestIn(fromClient, guest, cluster).verdict).toBe("drop");
  });

  it("policy_in is case-insensitive; an unknown value is DROP", () => {
    expect(verdict([], ssh, { enable: "1", policy_in: "accept" })).toBe("accept policy");
    expect(verdict([], ssh, { enable: "1", policy_in: "bogus" })).toBe("drop policy DROP");
  });

  it("a guest alias is looked up before the cluster's", () => {
    const rules = ["IN ACCEPT -source office -p tcp -dport 22"];
    expect(verdict(rules, fromClient, undefined, { aliases: { office: "192.0.2.0/24" } })).toBe(
      "drop policy DROP",
    );
  });
});
