import { describe, expect, it } from "vitest";
import type { NatPlan, NodeInput } from "../../../src/model.js";
import { compile } from "../../../src/nat/compile.js";
import { guest107, input, nic } from "../../helpers/build.js";

// Issue 12, "the NAT-comment traps": comments, -dest values and ipsets that used to be read
// some way without a word. Each case pins the exact diagnostics and the forwards' states.

/** "in tcp 203.0.113.10:822 -> 10.10.10.107:22 active" per forward. */
function forwards(plan: NatPlan): string[] {
  return plan.forwards.map(
    (f) =>
      `${f.direction} ${f.proto ?? "any"} ${f.public.address ?? "-"}:${f.public.ports ?? "*"} -> ` +
      `${f.private.address ?? "-"}:${f.private.ports ?? "*"} ${f.state}`,
  );
}

type Diag = [file: string, line: number, severity: string, message: string];

/** Every diagnostic, in full: the message must contain the given text. */
function expectDiags(plan: NatPlan, want: Diag[]): void {
  expect(plan.diagnostics).toEqual(
    want.map(([file, line, severity, message]) => ({
      file,
      line,
      severity,
      message: expect.stringContaining(message),
    })),
  );
}

const F = "firewall/107.fw";
const FORMS =
  "expected NAT:<port>, NAT:<from>:<to>, NAT:<IPv4>:<port> or (OUT rules) NAT:<IPv4>, " +
  "optionally followed by a space and text";

interface Case {
  name: string;
  plan: NodeInput;
  diags: Diag[];
  forwards: string[];
}

describe("item 5: after NAT: comes an explicit form, or an error", () => {
  const one = (
    name: string,
    rule: string,
    diags: Diag[],
    fwd: string[],
    aliases: Record<string, string> = {},
  ): Case => ({ name, plan: guest107([rule], { fw: { aliases } }), diags, forwards: fwd });
  it.each<Case>([
    one(
      "bracketed IPv6 public side is unsupported, not a forward on the rule's port",
      "IN ACCEPT -p tcp -dport 80 # NAT:[2001:db8::1]:8080",
      [
        [
          F,
          4,
          "error",
          'NAT rule not applied: IPv6 is not supported in NAT rules: the public side "NAT:[2001:db8::1]:8080" is an IPv6 address (IPv6 traffic is not NATed)',
        ],
      ],
      ["in any -:* -> -:* error"],
    ),
    one(
      "bare IPv6 public side",
      "IN ACCEPT -p tcp -dport 80 # NAT:2001:db8::1 web",
      [[F, 4, "error", 'IPv6 is not supported in NAT rules: the public side "NAT:2001:db8::1"']],
      ["in any -:* -> -:* error"],
    ),
    one(
      "IPv6 after 'NAT: '",
      "IN ACCEPT -p tcp -dport 80 # NAT: [2001:db8::1]:8080",
      [
        [
          F,
          4,
          "error",
          'IPv6 is not supported in NAT rules: the public side "NAT: [2001:db8::1]:8080"',
        ],
      ],
      ["in any -:* -> -:* error"],
    ),
    one(
      "'NAT: 8081' is an error suggesting NAT:8081",
      "IN ACCEPT -p tcp -dport 80 # NAT: 8081",
      [
        [
          F,
          4,
          "error",
          'NAT rule not applied: ambiguous "NAT: 8081": write "NAT:8081" for the explicit form (no space after the colon), or begin the free text with a word',
        ],
      ],
      ["in any -:* -> -:* error"],
    ),
    one(
      "'NAT: address:port text' keeps the text in the suggestion",
      "IN ACCEPT -p tcp -dport 22 # NAT: 203.0.113.5:822 ssh in",
      [[F, 4, "error", 'ambiguous "NAT: 203.0.113.5:822": write "NAT:203.0.113.5:822 ssh in"']],
      ["in any -:* -> -:* error"],
    ),
    one(
      "'NAT: address' on an OUT rule",
      "OUT ACCEPT -p tcp -dport 25 # NAT: 203.0.113.5",
      [
        [
          F,
          4,
          "error",
          'ambiguous "NAT: 203.0.113.5": write "NAT:203.0.113.5" for the explicit form',
        ],
      ],
      ["out any -:* -> -:* error"],
    ),
    one(
      "'NAT: 99999' (not a valid port) names the forms",
      "IN ACCEPT -p tcp -dport 80 # NAT: 99999",
      [[F, 4, "error", `invalid public side "NAT: 99999": ${FORMS}`]],
      ["in any -:* -> -:* error"],
    ),
    one(
      "an alias as the public address",
      "IN ACCEPT -p tcp -dport 80 # NAT:pubalias:8082",
      [
        [
          F,
          4,
          "error",
          `NAT rule not applied: invalid public side "NAT:pubalias:8082": ${FORMS}; an alias cannot name the public address: write the IPv4 address`,
        ],
      ],
      ["in any -:* -> -:* error"],
      { pubalias: "203.0.113.5" },
    ),
    one(
      "a word right after NAT: points at the compatible form",
      "IN ACCEPT -p tcp -dport 80 # NAT:web server",
      [
        [
          F,
          4,
          "error",
          `invalid public side "NAT:web": ${FORMS}; for the compatible form write "NAT web server"`,
        ],
      ],
      ["in any -:* -> -:* error"],
    ),
    one(
      "NAT: with nothing after it",
      "IN ACCEPT -p tcp -dport 80 # NAT:",
      [
        [
          F,
          4,
          "error",
          `"NAT:" names no public side: ${FORMS}; for the compatible form write "NAT"`,
        ],
      ],
      ["in any -:* -> -:* error"],
    ),
    one(
      "'NAT: free text' stays the compatible form",
      "IN ACCEPT -p tcp -dport 80 # NAT: ssh in",
      [],
      ["in tcp 203.0.113.10:80 -> 10.10.10.107:80 active"],
    ),
    one(
      "'NAT: 2nd web' (text starting with a digit, not a form) stays compatible",
      "IN ACCEPT -p tcp -dport 80 # NAT: 2nd web",
      [],
      ["in tcp 203.0.113.10:80 -> 10.10.10.107:80 active"],
    ),
    one(
      "explicit NAT:822 with text",
      "IN ACCEPT -p tcp -dport 22 # NAT:822 ssh in",
      [],
      ["in tcp 203.0.113.10:822 -> 10.10.10.107:22 active"],
    ),
    one(
      "explicit range",
      "IN ACCEPT -p udp -dport 9000:9010 # NAT:8000:8010",
      [],
      ["in udp 203.0.113.10:8000:8010 -> 10.10.10.107:9000:9010 active"],
    ),
    one(
      "explicit address:port",
      "IN ACCEPT -p tcp -dport 22 # NAT:203.0.113.5:822",
      [],
      ["in tcp 203.0.113.5:822 -> 10.10.10.107:22 active"],
    ),
    one(
      "explicit SNAT address on an OUT rule, with text",
      "OUT ACCEPT -p tcp -dport 25 # NAT:203.0.113.5 mail relay",
      [],
      ["out tcp 203.0.113.5:* -> 10.10.10.107:25 active"],
    ),
  ])("$name", (c) => {
    const plan = compile(c.plan);
    expectDiags(plan, c.diags);
    expect(forwards(plan)).toEqual(c.forwards);
  });
});

describe("item 7: an IN -dest that is not the guest is said", () => {
  const PUBLIC =
    "-dest 203.0.113.10 is the host's public address, not guest 107's (10.10.10.107): the forward leads back to the host; name the guest's address or drop -dest";
  it.each<Case>([
    {
      name: "-dest is the host's public address",
      plan: guest107(["IN ACCEPT -dest 203.0.113.10 -p tcp -dport 80 # NAT:8080"]),
      diags: [[F, 4, "warning", PUBLIC]],
      forwards: ["in tcp 203.0.113.10:8080 -> 203.0.113.10:80 active"],
    },
    {
      name: "-dest is the public address the comment names",
      plan: guest107(["IN ACCEPT -dest 203.0.113.5 -p tcp -dport 80 # NAT:203.0.113.5:8080"]),
      diags: [[F, 4, "warning", "-dest 203.0.113.5 is the host's public address, not guest 107's"]],
      forwards: ["in tcp 203.0.113.5:8080 -> 203.0.113.5:80 active"],
    },
    {
      name: "-dest is the public address and the guest has no static address",
      plan: guest107(["IN ACCEPT -dest 203.0.113.10 -p tcp -dport 80 # NAT:8080"], {
        nics: [nic(0, "dhcp")],
      }),
      diags: [
        [
          F,
          4,
          "warning",
          "-dest 203.0.113.10 is the host's public address, not guest 107's (no static IPv4 address in its config)",
        ],
      ],
      forwards: ["in tcp 203.0.113.10:8080 -> 203.0.113.10:80 active"],
    },
    {
      name: "-dest is not in the guest's config",
      plan: guest107(["IN ACCEPT -dest 10.10.10.99 -p tcp -dport 80 # NAT:8080"]),
      diags: [
        [
          F,
          4,
          "warning",
          "-dest 10.10.10.99 is not an address of guest 107 (its config has 10.10.10.107): traffic is forwarded to 10.10.10.99",
        ],
      ],
      forwards: ["in tcp 203.0.113.10:8080 -> 10.10.10.99:80 active"],
    },
    {
      name: "-dest through an alias, guest with two static addresses",
      plan: guest107(["IN ACCEPT -dest other -p tcp -dport 80 # NAT:8080"], {
        nics: [nic(0, "10.10.10.107/24"), nic(1, "10.10.20.107/24")],
        fw: { aliases: { other: "10.10.10.99" } },
      }),
      diags: [
        [
          F,
          4,
          "warning",
          "-dest 10.10.10.99 is not an address of guest 107 (its config has 10.10.10.107, 10.10.20.107)",
        ],
      ],
      forwards: ["in tcp 203.0.113.10:8080 -> 10.10.10.99:80 active"],
    },
    {
      name: "-dest is the guest's second address: fine",
      plan: guest107(["IN ACCEPT -dest 10.10.20.107 -p tcp -dport 80 # NAT:8080"], {
        nics: [nic(0, "10.10.10.107/24"), nic(1, "10.10.20.107/24")],
      }),
      diags: [],
      forwards: ["in tcp 203.0.113.10:8080 -> 10.10.20.107:80 active"],
    },
    {
      name: "-dest is the guest's address: fine",
      plan: guest107(["IN ACCEPT -dest 10.10.10.107 -p tcp -dport 80 # NAT:8080"]),
      diags: [],
      forwards: ["in tcp 203.0.113.10:8080 -> 10.10.10.107:80 active"],
    },
    {
      name: "guest on DHCP: any -dest is taken as its address",
      plan: guest107(["IN ACCEPT -dest 10.10.10.99 -p tcp -dport 80 # NAT:8080"], {
        nics: [nic(0, "dhcp")],
      }),
      diags: [],
      forwards: ["in tcp 203.0.113.10:8080 -> 10.10.10.99:80 active"],
    },
    {
      name: "host.fw rules have no guest to compare with",
      plan: input({ host: { rules: ["IN ACCEPT -dest 10.10.10.99 -p tcp -dport 80 # NAT:8080"] } }),
      diags: [],
      forwards: ["in tcp 203.0.113.10:8080 -> 10.10.10.99:80 active"],
    },
    {
      name: "a security group's -dest, per guest using it",
      plan: input({
        cluster: { groups: { web: ["IN ACCEPT -dest 10.10.10.50 -p tcp -dport 80 # NAT:8080"] } },
        guests: { 107: { nics: [nic(0, "10.10.10.107/24")], fw: { rules: ["GROUP web"] } } },
      }),
      diags: [
        [
          "firewall/cluster.fw",
          5,
          "warning",
          "-dest 10.10.10.50 is not an address of guest 107 (its config has 10.10.10.107): traffic is forwarded to 10.10.10.50 [vm 107 via GROUP web at firewall/107.fw:4]",
        ],
      ],
      forwards: ["in tcp 203.0.113.10:8080 -> 10.10.10.50:80 active"],
    },
    {
      name: "an error rule stays an error, with no extra warning",
      plan: guest107(["IN ACCEPT -dest 203.0.113.10 -dport 80 # NAT:8080"]),
      diags: [[F, 4, "error", "a NAT IN rule needs -p tcp or -p udp"]],
      forwards: ["in any -:* -> -:* error"],
    },
  ])("$name", (c) => {
    const plan = compile(c.plan);
    expectDiags(plan, c.diags);
    expect(forwards(plan)).toEqual(c.forwards);
  });
});

describe("item 8: IPv6 members of a mixed ipset are skipped with a warning", () => {
  const withSets = (rule: string, where: "guest" | "cluster" = "guest"): NodeInput => {
    const ipsets = {
      mixed: ["198.51.100.0/24", "2001:db8::/32", "2001:db8:1::1", "v6alias"],
      onev6: ["198.51.100.7", "2001:db8::7"],
      v4only: ["198.51.100.7"],
      v6only: ["2001:db8::/64"],
    };
    const aliases = { v6alias: "2001:db8:2::1" };
    return where === "guest"
      ? guest107([rule], { fw: { ipsets, aliases } })
      : input({
          cluster: { ipsets, aliases },
          guests: { 107: { nics: [nic(0, "10.10.10.107/24")], fw: { rules: [rule] } } },
        });
  };
  it.each<Case>([
    {
      name: "-source +mixed: IPv6 entries (also via an alias) counted",
      plan: withSets("IN ACCEPT -source +mixed -p tcp -dport 22 # NAT:822"),
      diags: [
        [
          F,
          4,
          "warning",
          "ipset '+mixed' (-source) has 3 IPv6 entries: skipped, this NAT rule uses only its IPv4 entries (IPv6 is not NATed)",
        ],
      ],
      forwards: ["in tcp 203.0.113.10:822 -> 10.10.10.107:22 active"],
    },
    {
      name: "one IPv6 entry",
      plan: withSets("IN ACCEPT -source +onev6 -p tcp -dport 22 # NAT:822"),
      diags: [[F, 4, "warning", "ipset '+onev6' (-source) has 1 IPv6 entry: skipped"]],
      forwards: ["in tcp 203.0.113.10:822 -> 10.10.10.107:22 active"],
    },
    {
      name: "a cluster ipset named with dc/",
      plan: withSets("IN ACCEPT -source +dc/mixed -p tcp -dport 22 # NAT:822", "cluster"),
      diags: [[F, 4, "warning", "ipset '+dc/mixed' (-source) has 3 IPv6 entries: skipped"]],
      forwards: ["in tcp 203.0.113.10:822 -> 10.10.10.107:22 active"],
    },
    {
      name: "a multi-entry macro warns once per rule",
      plan: withSets("IN DNS(ACCEPT) -source +mixed # NAT"),
      diags: [[F, 4, "warning", "ipset '+mixed' (-source) has 3 IPv6 entries: skipped"]],
      forwards: [
        "in udp 203.0.113.10:53 -> 10.10.10.107:53 active",
        "in tcp 203.0.113.10:53 -> 10.10.10.107:53 active",
      ],
    },
    {
      name: "OUT rule, -dest +mixed",
      plan: withSets("OUT ACCEPT -dest +mixed -p tcp -dport 443 # NAT"),
      diags: [[F, 4, "warning", "ipset '+mixed' (-dest) has 3 IPv6 entries: skipped"]],
      forwards: ["out tcp -:* -> 10.10.10.107:443 active"],
    },
    {
      name: "an IPv4-only ipset: no warning",
      plan: withSets("IN ACCEPT -source +v4only -p tcp -dport 22 # NAT:822"),
      diags: [],
      forwards: ["in tcp 203.0.113.10:822 -> 10.10.10.107:22 active"],
    },
    {
      name: "an IPv6-only ipset: the rule is skipped, as before",
      plan: withSets("IN ACCEPT -source +v6only -p tcp -dport 22 # NAT:822"),
      diags: [
        [
          F,
          4,
          "warning",
          "IPv6 is not supported in NAT rules: rule skipped (IPv6 traffic is not NATed)",
        ],
      ],
      forwards: [],
    },
  ])("$name", (c) => {
    const plan = compile(c.plan);
    expectDiags(plan, c.diags);
    expect(forwards(plan)).toEqual(c.forwards);
  });

  it("only the IPv4 entries reach the DNAT rules", () => {
    const plan = compile(withSets("IN ACCEPT -source +mixed -p tcp -dport 22 # NAT:822"));
    const sources = plan.chains.flatMap((oc) => oc.dnat.map((r) => r.source));
    expect(sources).toEqual(["198.51.100.0/24"]);
  });
});
