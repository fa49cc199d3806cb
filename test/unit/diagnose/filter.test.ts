// FORWARD of the filter table walked for a forward's first packet (post-DNAT).
import { describe, expect, it } from "vitest";
import {
  evaluateForward,
  type FilterPacket,
  parseFilterSave,
} from "../../../src/diagnose/filter.js";
import { ipToInt } from "../../../src/nat/ipv4.js";
import { filterSave } from "../../helpers/filtersave.js";

const one = (ip: string) => [{ lo: ipToInt(ip), hi: ipToInt(ip) }];
const pkt: FilterPacket = {
  in: "vmbr0",
  out: "vmbr1",
  source: null,
  dest: one("10.10.10.107"),
  proto: "tcp",
  dport: [{ from: 22, to: 22 }],
  ctstate: ["NEW", "DNAT"],
};

const save = filterSave;

const verdict = (text: string) => {
  const v = evaluateForward(parseFilterSave(text), pkt);
  return v.verdict === "drop" ? `drop ${v.rule ?? `policy ${v.policy}`}` : v.verdict;
};

describe("FORWARD verdict", () => {
  it.each([
    ["policy ACCEPT, no rules", save("ACCEPT", []), "accept"],
    ["policy DROP, no rules", save("DROP", []), "drop policy DROP"],
    [
      "ctstate DNAT accepted",
      save("DROP", ["-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT"]),
      "accept",
    ],
    [
      "only established accepted",
      save("DROP", ["-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]),
      "drop policy DROP",
    ],
    [
      "accepting another port",
      save("DROP", ["-A FORWARD -d 10.10.10.107/32 -p tcp -m tcp --dport 80 -j ACCEPT"]),
      "drop policy DROP",
    ],
    [
      "accepting the private port",
      save("DROP", ["-A FORWARD -d 10.10.10.0/24 -p tcp -m tcp --dport 22 -j ACCEPT"]),
      "accept",
    ],
    ["accepting -o vmbr1", save("DROP", ["-A FORWARD -o vmbr1 -j ACCEPT"]), "accept"],
    ["accepting -o docker0", save("DROP", ["-A FORWARD -o docker0 -j ACCEPT"]), "drop policy DROP"],
    ["! -o docker0 accepted", save("DROP", ["-A FORWARD ! -o docker0 -j ACCEPT"]), "accept"],
    ["interface wildcard", save("DROP", ["-A FORWARD -i vmbr+ -j ACCEPT"]), "accept"],
    [
      "an explicit DROP rule",
      save("ACCEPT", ["-A FORWARD -o vmbr1 -j DROP"]),
      "drop -A FORWARD -o vmbr1 -j DROP",
    ],
    [
      "an unknown match on ACCEPT: unknown",
      save("DROP", ["-A FORWARD -m mark --mark 0x1 -j ACCEPT"]),
      "unknown",
    ],
    [
      "physdev: a routed packet is never being bridged",
      save("DROP", ["-A FORWARD -m physdev --physdev-is-bridged -j ACCEPT"]),
      "drop policy DROP",
    ],
    [
      "physdev: ! --physdev-is-bridged takes every routed packet",
      save("DROP", ["-A FORWARD -m physdev ! --physdev-is-bridged -j ACCEPT"]),
      "accept",
    ],
    [
      "physdev: a routed packet may have come in through a bridge port",
      save("DROP", ["-A FORWARD -m physdev --physdev-in eno1 -j ACCEPT"]),
      "unknown",
    ],
    [
      "pve-firewall's chains under policy DROP: the routed pass falls through to the policy",
      save(
        "DROP",
        [
          "-A FORWARD -j PVEFW-FORWARD",
          "-A PVEFW-FORWARD -m conntrack --ctstate INVALID -j DROP",
          "-A PVEFW-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
          "-A PVEFW-FORWARD -m physdev --physdev-in fwln+ --physdev-is-bridged -j PVEFW-FWBR-IN",
          "-A PVEFW-FWBR-IN -m physdev --physdev-out tap107i0 --physdev-is-bridged -j tap107i0-IN",
          "-A tap107i0-IN -s 198.51.100.0/24 -p tcp -m tcp --dport 22 -j ACCEPT",
          "-A tap107i0-IN -j DROP",
        ],
        ["PVEFW-FORWARD", "PVEFW-FWBR-IN", "tap107i0-IN"],
      ),
      "drop policy DROP",
    ],
    [
      "Docker's chains: DOCKER-USER returns, isolation returns, policy drops",
      save(
        "DROP",
        [
          "-A FORWARD -j DOCKER-USER",
          "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
          "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
          "-A FORWARD -o docker0 -j DOCKER",
          "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT",
          "-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2",
          "-A DOCKER-ISOLATION-STAGE-1 -j RETURN",
          "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP",
          "-A DOCKER-ISOLATION-STAGE-2 -j RETURN",
          "-A DOCKER-USER -j RETURN",
        ],
        ["DOCKER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2", "DOCKER-USER"],
      ),
      "drop policy DROP",
    ],
    [
      "the fix in DOCKER-USER",
      save(
        "DROP",
        [
          "-A FORWARD -j DOCKER-USER",
          "-A DOCKER-USER -m conntrack --ctstate DNAT -j ACCEPT",
          "-A DOCKER-USER -j RETURN",
        ],
        ["DOCKER", "DOCKER-USER"],
      ),
      "accept",
    ],
    [
      "comments with spaces are one word",
      save("DROP", [
        '-A FORWARD -m comment --comment "let it in" -m conntrack --ctstate DNAT -j ACCEPT',
      ]),
      "accept",
    ],
  ])("%s", (_name, text, expected) => {
    expect(verdict(text)).toBe(expected);
  });
});

describe("FORWARD verdict for the bridged pass across a firewall bridge", () => {
  const across: FilterPacket = {
    ...pkt,
    in: "fwbr107i0",
    out: "fwbr107i0",
    bridged: true,
    physIn: "fwln107i0",
    physOut: "tap107i0",
    ctstate: ["NEW"],
  };
  const bridged = (text: string) => {
    const v = evaluateForward(parseFilterSave(text), across);
    return v.verdict === "drop" ? `drop ${v.rule ?? `policy ${v.policy}`}` : v.verdict;
  };

  it.each([
    ["policy DROP: dropped", save("DROP", []), "drop policy DROP"],
    [
      "the DNAT state fix does not take it (its own conntrack zone: NEW only)",
      save("DROP", ["-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT"]),
      "drop policy DROP",
    ],
    ["accepted on fwbr+", save("DROP", ["-A FORWARD -i fwbr+ -o fwbr+ -j ACCEPT"]), "accept"],
    [
      "physdev-is-bridged matches it",
      save("DROP", ["-A FORWARD -m physdev --physdev-is-bridged -j ACCEPT"]),
      "accept",
    ],
    [
      "its ports: in from fwln+, out to the guest's tap",
      save("DROP", [
        "-A FORWARD -m physdev --physdev-in fwln+ --physdev-out tap107i0 --physdev-is-bridged -j ACCEPT",
      ]),
      "accept",
    ],
    [
      "another guest's tap: no match",
      save("DROP", ["-A FORWARD -m physdev --physdev-out tap108i0 --physdev-is-bridged -j ACCEPT"]),
      "drop policy DROP",
    ],
    [
      "pve-firewall's guest chain decides it",
      save(
        "DROP",
        [
          "-A FORWARD -j PVEFW-FORWARD",
          "-A PVEFW-FORWARD -m physdev --physdev-in fwln+ --physdev-is-bridged -j PVEFW-FWBR-IN",
          "-A PVEFW-FWBR-IN -m physdev --physdev-out tap107i0 --physdev-is-bridged -j tap107i0-IN",
          "-A tap107i0-IN -p tcp -m tcp --dport 22 -j ACCEPT",
          "-A tap107i0-IN -j DROP",
        ],
        ["PVEFW-FORWARD", "PVEFW-FWBR-IN", "tap107i0-IN"],
      ),
      "accept",
    ],
  ])("%s", (_name, text, expected) => {
    expect(bridged(text)).toBe(expected);
  });
});
