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

const cluster = fw("cluster", "firewall/cluster.fw", {
  options: { enable: "1" },
  aliases: { office: "198.51.100.0/24" },
  ipsets: { admins: ["198.51.100.0/24", "!198.51.100.9"] },
  groups: { webfarm: ["IN ACCEPT -p tcp -dport 22", "IN DROP -p tcp -dport 80"] },
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
      "accept line 9",
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

  it("a guest alias is looked up before the cluster's", () => {
    const rules = ["IN ACCEPT -source office -p tcp -dport 22"];
    expect(verdict(rules, fromClient, undefined, { aliases: { office: "192.0.2.0/24" } })).toBe(
      "drop policy DROP",
    );
  });
});
