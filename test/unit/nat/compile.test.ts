import { describe, expect, it } from "vitest";
import { ownerChain } from "../../../src/iptables/chains.js";
import { ruleLine } from "../../../src/iptables/render.js";
import type { HostPorts, NatPlan } from "../../../src/model.js";
import { compile } from "../../../src/nat/compile.js";
import { conf, fw, guest107, input, nic } from "../../helpers/build.js";

/** One line per forward: "in tcp 203.0.113.10:822 -> 10.10.10.107:22 active". */
function forwards(plan: NatPlan): string[] {
  return plan.forwards.map(
    (f) =>
      `${f.direction} ${f.proto ?? "any"} ${f.public.address ?? "-"}:${f.public.ports ?? "*"} -> ` +
      `${f.private.address ?? "-"}:${f.private.ports ?? "*"} ${f.state}`,
  );
}

/** Every rendered rule line of the plan, owner by owner. */
function lines(plan: NatPlan): string[] {
  return plan.chains.flatMap((oc) => [
    ...oc.dnat.map((r) => ruleLine(ownerChain(oc.owner, "DNAT"), r)),
    ...oc.snat.map((r) => ruleLine(ownerChain(oc.owner, "SNAT"), r)),
  ]);
}

/** "firewall/107.fw:4 error" per diagnostic. */
function diags(plan: NatPlan): string[] {
  return plan.diagnostics.map((d) => `${d.file}:${d.line} ${d.severity}`);
}

const C4 = '-m comment --comment "pve-nat vm107 firewall/107.fw:4"';
const PUB = "-d 203.0.113.10/32";

describe("compile: one guest rule", () => {
  it.each([
    {
      name: "compatible form, IN public port = -sport (SPEC example)",
      rule: "IN ACCEPT -source 198.51.100.7 -dest 10.10.10.107 -p tcp -sport 822 -dport 22 # NAT ssh in",
      forwards: ["in tcp 203.0.113.10:822 -> 10.10.10.107:22 active"],
      lines: [
        `-A PVENAT-107-DNAT -s 198.51.100.7/32 ${PUB} -p tcp -m tcp --dport 822 ${C4} -j DNAT --to-destination 10.10.10.107:22`,
      ],
    },
    {
      name: "compatible form without -sport forwards the same port list",
      rule: "IN ACCEPT -p tcp -dport 80,443 # NAT web",
      forwards: ["in tcp 203.0.113.10:80,443 -> 10.10.10.107:80,443 active"],
      lines: [
        `-A PVENAT-107-DNAT ${PUB} -p tcp -m multiport --dports 80,443 ${C4} -j DNAT --to-destination 10.10.10.107`,
      ],
    },
    {
      name: "compatible form 'NAT: text'",
      rule: "IN ACCEPT -p udp -dport 51820 # NAT: wireguard",
      forwards: ["in udp 203.0.113.10:51820 -> 10.10.10.107:51820 active"],
      lines: [
        `-A PVENAT-107-DNAT ${PUB} -p udp -m udp --dport 51820 ${C4} -j DNAT --to-destination 10.10.10.107:51820`,
      ],
    },
    {
      name: "bare NAT comment",
      rule: "IN ACCEPT -p tcp -dport 8080 # NAT",
      forwards: ["in tcp 203.0.113.10:8080 -> 10.10.10.107:8080 active"],
      lines: [
        `-A PVENAT-107-DNAT ${PUB} -p tcp -m tcp --dport 8080 ${C4} -j DNAT --to-destination 10.10.10.107:8080`,
      ],
    },
    {
      name: "explicit form NAT:822",
      rule: "IN ACCEPT -p tcp -dport 22 # NAT:822 ssh",
      forwards: ["in tcp 203.0.113.10:822 -> 10.10.10.107:22 active"],
      lines: [
        `-A PVENAT-107-DNAT ${PUB} -p tcp -m tcp --dport 822 ${C4} -j DNAT --to-destination 10.10.10.107:22`,
      ],
    },
    {
      name: "explicit range onto an equal-length range shifts ports",
      rule: "IN ACCEPT -p udp -dport 9000:9010 # NAT:8000:8010",
      forwards: ["in udp 203.0.113.10:8000:8010 -> 10.10.10.107:9000:9010 active"],
      lines: [
        `-A PVENAT-107-DNAT ${PUB} -p udp -m udp --dport 8000:8010 ${C4} -j DNAT --to-destination 10.10.10.107:9000-9010/8000`,
      ],
    },
    {
      name: "explicit range onto the same range keeps ports",
      rule: "IN ACCEPT -p udp -dport 8000:8010 # NAT:8000:8010",
      forwards: ["in udp 203.0.113.10:8000:8010 -> 10.10.10.107:8000:8010 active"],
      lines: [
        `-A PVENAT-107-DNAT ${PUB} -p udp -m udp --dport 8000:8010 ${C4} -j DNAT --to-destination 10.10.10.107`,
      ],
    },
    {
      name: "explicit range onto a range of another length is an error",
      rule: "IN ACCEPT -p udp -dport 9000:9005 # NAT:8000:8010",
      forwards: ["in udp 203.0.113.10:8000:8010 -> 10.10.10.107:9000:9005 error"],
      lines: [],
      diags: ["firewall/107.fw:4 error"],
    },
    {
      name: "a public port list onto one private port",
      rule: "IN ACCEPT -p tcp -dport 80 # NAT:80,8080",
      forwards: ["in tcp 203.0.113.10:80,8080 -> 10.10.10.107:80 active"],
      lines: [
        `-A PVENAT-107-DNAT ${PUB} -p tcp -m multiport --dports 80,8080 ${C4} -j DNAT --to-destination 10.10.10.107:80`,
      ],
    },
    {
      name: "explicit public address and port",
      rule: "IN ACCEPT -p tcp -dport 22 # NAT:203.0.113.5:822",
      forwards: ["in tcp 203.0.113.5:822 -> 10.10.10.107:22 active"],
      lines: [
        `-A PVENAT-107-DNAT -d 203.0.113.5/32 -p tcp -m tcp --dport 822 ${C4} -j DNAT --to-destination 10.10.10.107:22`,
      ],
    },
    {
      name: "explicit public address only keeps the port (and 22 is not the host's there)",
      rule: "IN ACCEPT -p tcp -dport 22 # NAT:203.0.113.5",
      forwards: ["in tcp 203.0.113.5:22 -> 10.10.10.107:22 active"],
      lines: [
        `-A PVENAT-107-DNAT -d 203.0.113.5/32 -p tcp -m tcp --dport 22 ${C4} -j DNAT --to-destination 10.10.10.107:22`,
      ],
    },
    {
      name: "explicit form with -sport matches the client's source port",
      rule: "IN ACCEPT -p tcp -sport 1024:65535 -dport 22 # NAT:822",
      forwards: ["in tcp 203.0.113.10:822 -> 10.10.10.107:22 active"],
      lines: [
        `-A PVENAT-107-DNAT ${PUB} -p tcp -m tcp --sport 1024:65535 --dport 822 ${C4} -j DNAT --to-destination 10.10.10.107:22`,
      ],
    },
    {
      name: "invalid explicit public side",
      rule: "IN ACCEPT -p tcp -dport 22 # NAT:99999",
      forwards: ["in any -:* -> -:* error"],
      lines: [],
      diags: ["firewall/107.fw:4 error"],
    },
    {
      name: "different port lists cannot be mapped",
      rule: "IN ACCEPT -p tcp -sport 80,443 -dport 8080,8443 # NAT",
      forwards: ["in tcp 203.0.113.10:80,443 -> 10.10.10.107:8080,8443 error"],
      lines: [],
      diags: ["firewall/107.fw:4 error"],
    },
    {
      name: "OUT → MASQUERADE of the guest's address",
      rule: "OUT ACCEPT # NAT",
      forwards: ["out any -:* -> 10.10.10.107:* active"],
      lines: [`-A PVENAT-107-SNAT -s 10.10.10.107/32 -o vmbr0 ${C4} -j MASQUERADE`],
    },
    {
      name: "OUT NAT:address → SNAT",
      rule: "OUT ACCEPT -dest 198.51.100.0/24 -p tcp -dport 25 # NAT:203.0.113.5 mail",
      forwards: ["out tcp 203.0.113.5:* -> 10.10.10.107:25 active"],
      lines: [
        `-A PVENAT-107-SNAT -s 10.10.10.107/32 -d 198.51.100.0/24 -o vmbr0 -p tcp -m tcp --dport 25 ${C4} -j SNAT --to-source 203.0.113.5`,
      ],
    },
    {
      name: "OUT with a -source network",
      rule: "OUT ACCEPT -source 10.10.10.0/24 # NAT",
      forwards: ["out any -:* -> 10.10.10.0/24:* active"],
      lines: [`-A PVENAT-107-SNAT -s 10.10.10.0/24 -o vmbr0 ${C4} -j MASQUERADE`],
    },
    {
      name: "OUT with ports names only an address",
      rule: "OUT ACCEPT # NAT:203.0.113.5:25",
      forwards: ["out any -:* -> -:* error"],
      lines: [],
      diags: ["firewall/107.fw:4 error"],
    },
    {
      name: "IN without -p is an error",
      rule: "IN ACCEPT -dest 10.10.10.107 # NAT",
      forwards: ["in any -:* -> -:* error"],
      lines: [],
      diags: ["firewall/107.fw:4 error"],
    },
    {
      name: "IN without a port is an error",
      rule: "IN ACCEPT -p tcp # NAT",
      forwards: ["in tcp -:* -> -:* error"],
      lines: [],
      diags: ["firewall/107.fw:4 error"],
    },
    {
      name: "icmp cannot be NATed",
      rule: "IN ACCEPT -p icmp # NAT",
      forwards: ["in any -:* -> -:* error"],
      lines: [],
      diags: ["firewall/107.fw:4 error"],
    },
    {
      name: "NATIVE is not NAT",
      rule: "IN ACCEPT -p tcp -dport 80 # NATIVE app",
      forwards: [],
      lines: [],
    },
    {
      name: "lower-case nat is not NAT",
      rule: "IN ACCEPT -p tcp -dport 80 # nat",
      forwards: [],
      lines: [],
    },
    {
      name: "NAT in the middle of a comment is not NAT",
      rule: "IN ACCEPT -p tcp -dport 80 # no NAT",
      forwards: [],
      lines: [],
    },
    {
      name: "DROP with a NAT comment is not NAT (info)",
      rule: "IN DROP -p tcp -dport 80 # NAT",
      forwards: [],
      lines: [],
      diags: ["firewall/107.fw:4 info"],
    },
    {
      name: "REJECT macro with a NAT comment is not NAT (info)",
      rule: "IN HTTP(REJECT) # NAT",
      forwards: [],
      lines: [],
      diags: ["firewall/107.fw:4 info"],
    },
    {
      name: "a disabled rule is not NAT",
      rule: "|IN ACCEPT -p tcp -dport 80 # NAT",
      forwards: [],
      lines: [],
    },
    {
      name: "FORWARD rules are not NAT (info)",
      rule: "FORWARD ACCEPT -p tcp -dport 80 # NAT",
      forwards: [],
      lines: [],
      diags: ["firewall/107.fw:4 info"],
    },
    {
      name: "IPv6 -source: unsupported, skipped",
      rule: "IN ACCEPT -source 2001:db8::1 -p tcp -dport 80 # NAT",
      forwards: [],
      lines: [],
      diags: ["firewall/107.fw:4 warning"],
    },
    {
      name: "IPv6 -dest: unsupported, skipped",
      rule: "OUT ACCEPT -dest 2001:db8::/32 # NAT",
      forwards: [],
      lines: [],
      diags: ["firewall/107.fw:4 warning"],
    },
    {
      name: "source range → exact CIDR cover",
      rule: "IN ACCEPT -source 198.51.100.1-198.51.100.6 -p tcp -dport 2222 # NAT",
      forwards: ["in tcp 203.0.113.10:2222 -> 10.10.10.107:2222 active"],
      lines: ["198.51.100.1/32", "198.51.100.2/31", "198.51.100.4/31", "198.51.100.6/32"].map(
        (s) =>
          `-A PVENAT-107-DNAT -s ${s} ${PUB} -p tcp -m tcp --dport 2222 ${C4} -j DNAT --to-destination 10.10.10.107:2222`,
      ),
    },
    {
      name: "source list",
      rule: "IN ACCEPT -source 198.51.100.7,192.0.2.0/24 -p tcp -dport 2222 # NAT",
      forwards: ["in tcp 203.0.113.10:2222 -> 10.10.10.107:2222 active"],
      lines: ["192.0.2.0/24", "198.51.100.7/32"].map(
        (s) =>
          `-A PVENAT-107-DNAT -s ${s} ${PUB} -p tcp -m tcp --dport 2222 ${C4} -j DNAT --to-destination 10.10.10.107:2222`,
      ),
    },
    {
      name: "-dest naming a network uses the guest's configured address",
      rule: "IN ACCEPT -dest 10.10.10.0/24 -p tcp -dport 2222 # NAT",
      forwards: ["in tcp 203.0.113.10:2222 -> 10.10.10.107:2222 active"],
      lines: [
        `-A PVENAT-107-DNAT ${PUB} -p tcp -m tcp --dport 2222 ${C4} -j DNAT --to-destination 10.10.10.107:2222`,
      ],
    },
  ])("$name", (c) => {
    const plan = compile(guest107([c.rule]));
    expect(forwards(plan)).toEqual(c.forwards);
    expect(lines(plan)).toEqual(c.lines);
    expect(diags(plan)).toEqual(c.diags ?? []);
  });
});

describe("compile: macros", () => {
  it.each([
    {
      name: "SSH(ACCEPT) with the explicit form",
      rule: "IN SSH(ACCEPT) # NAT:2222",
      forwards: ["in tcp 203.0.113.10:2222 -> 10.10.10.107:22 active"],
    },
    {
      name: "SSH(ACCEPT) compatible with -sport",
      rule: "IN SSH(ACCEPT) -p tcp -sport 2222 # NAT",
      forwards: ["in tcp 203.0.113.10:2222 -> 10.10.10.107:22 active"],
    },
    {
      name: "multi-entry macro → one forward per entry",
      rule: "IN DNS(ACCEPT) # NAT:5353",
      forwards: [
        "in udp 203.0.113.10:5353 -> 10.10.10.107:53 active",
        "in tcp 203.0.113.10:5353 -> 10.10.10.107:53 active",
      ],
    },
    {
      name: "HTTPS macro without a port change",
      rule: "IN HTTPS(ACCEPT) # NAT",
      forwards: ["in tcp 203.0.113.10:443 -> 10.10.10.107:443 active"],
    },
    {
      name: "a -dport contradicting the macro is an error",
      rule: "IN SSH(ACCEPT) -p tcp -dport 2222 # NAT",
      forwards: ["in any -:* -> -:* error"],
    },
    {
      name: "multi-entry macro: the icmp entry is left out",
      rule: "IN Trcrt(ACCEPT) # NAT",
      forwards: ["in udp 203.0.113.10:33434:33524 -> 10.10.10.107:33434:33524 active"],
    },
    {
      name: "an icmp-only macro is an error",
      rule: "IN Ping(ACCEPT) # NAT",
      forwards: ["in any -:* -> -:* error"],
    },
    {
      name: "an IPv6-only macro is skipped",
      rule: "IN DHCPv6(ACCEPT) # NAT",
      forwards: [],
    },
    {
      name: "unknown macro",
      rule: "IN NoSuchMacro(ACCEPT) # NAT",
      forwards: ["in any -:* -> -:* error"],
    },
  ])("$name", (c) => {
    expect(forwards(compile(guest107([c.rule])))).toEqual(c.forwards);
  });
});

describe("compile: aliases and ipsets", () => {
  const aliases = { web: "10.10.10.50", office: "198.51.100.0/28", v6: "2001:db8::1" };
  const cluster = {
    aliases: { web: "10.10.10.60", partner: "192.0.2.9" },
    ipsets: {
      clients: ["198.51.100.0/24", "!198.51.100.128/25", "198.51.100.200", "partner"],
      v6only: ["2001:db8::/64"],
      empty: [],
    },
  };
  it.each([
    { name: "guest alias first", dest: "web", to: "10.10.10.50" },
    { name: "alias names are case-insensitive", dest: "WEB", to: "10.10.10.50" },
    { name: "dc/ picks the cluster alias", dest: "dc/web", to: "10.10.10.60" },
    { name: "guest/ picks the guest alias", dest: "guest/web", to: "10.10.10.50" },
    { name: "cluster alias when the guest has none", dest: "partner", to: "192.0.2.9" },
  ])("-dest $name", (c) => {
    const plan = compile(
      input({
        cluster,
        guests: {
          107: { fw: { aliases, rules: [`IN ACCEPT -dest ${c.dest} -p tcp -dport 2222 # NAT`] } },
        },
      }),
    );
    expect(forwards(plan)).toEqual([`in tcp 203.0.113.10:2222 -> ${c.to}:2222 active`]);
  });

  it("ipset source: '!' entries excluded, the most specific entry decides, aliases resolved", () => {
    const plan = compile(
      input({
        cluster,
        guests: { 107: { fw: { rules: ["IN ACCEPT -source +clients -p tcp -dport 2222 # NAT"] } } },
      }),
    );
    expect(forwards(plan)).toEqual(["in tcp 203.0.113.10:2222 -> 10.10.10.107:2222 active"]);
    expect(lines(plan).map((l) => /-s (\S+)/.exec(l)?.[1])).toEqual([
      "192.0.2.9/32",
      "198.51.100.0/25",
      "198.51.100.200/32",
    ]);
  });

  it.each([
    { name: "alias of an IPv6 address", source: "v6", diag: "warning" },
    { name: "ipset with only IPv6 entries", source: "+v6only", diag: "warning" },
    { name: "empty ipset", source: "+empty", diag: "error" },
    { name: "undefined alias", source: "nosuch", diag: "error" },
    { name: "undefined ipset", source: "+nosuch", diag: "error" },
    { name: "guest/ ipset that only the cluster has", source: "+guest/clients", diag: "error" },
    { name: "sdn ipset", source: "+sdn/vnet1-all", diag: "error" },
  ])("-source $name", (c) => {
    const plan = compile(
      input({
        cluster,
        guests: {
          107: {
            fw: { aliases, rules: [`IN ACCEPT -source ${c.source} -p tcp -dport 2222 # NAT`] },
          },
        },
      }),
    );
    expect(lines(plan)).toEqual([]);
    expect(plan.diagnostics.map((d) => `${d.line} ${d.severity}`)).toEqual([`4 ${c.diag}`]);
  });
});

describe("compile: the guest's address", () => {
  const rule = (extra = "") => `IN ACCEPT ${extra} -p tcp -dport 2222 # NAT`.replace(/\s+/g, " ");
  it.each([
    {
      name: "LXC ip= on the only NIC",
      kind: "lxc" as const,
      nics: [nic(0, "10.10.10.5/24")],
      rule: rule(),
      to: "10.10.10.5",
    },
    {
      name: "qemu cloud-init ipconfig0",
      kind: "qemu" as const,
      nics: [nic(0, "10.10.10.7/24")],
      rule: rule(),
      to: "10.10.10.7",
    },
    {
      name: "the only NIC with an address among several",
      kind: "lxc" as const,
      nics: [nic(0, "dhcp"), nic(1, "10.10.10.8/24"), nic(2, null)],
      rule: rule(),
      to: "10.10.10.8",
    },
    {
      name: "-i netN picks the NIC",
      kind: "lxc" as const,
      nics: [nic(0, "10.10.10.5/24"), nic(1, "10.10.20.5/24")],
      rule: rule("-i net1"),
      to: "10.10.20.5",
    },
    {
      name: "address without prefix",
      kind: "lxc" as const,
      nics: [nic(0, "10.10.10.9")],
      rule: rule(),
      to: "10.10.10.9",
    },
  ])("$name", (c) => {
    const plan = compile(
      input({ guests: { 107: { kind: c.kind, nics: c.nics, fw: { rules: [c.rule] } } } }),
    );
    expect(forwards(plan)).toEqual([`in tcp 203.0.113.10:2222 -> ${c.to}:2222 active`]);
  });

  it.each([
    {
      name: "two NICs with addresses",
      nics: [nic(0, "10.10.10.5/24"), nic(1, "10.10.20.5/24")],
      rule: rule(),
      hint: "-i netN",
    },
    {
      name: "-i names a missing NIC",
      nics: [nic(0, "10.10.10.5/24")],
      rule: rule("-i net3"),
      hint: "no NIC net3",
    },
    {
      name: "-i names a NIC with a typo in ip=",
      nics: [nic(0, "10.10.10.5/24"), nic(1, "10.10.10.300/24")],
      rule: rule("-i net1"),
      hint: "net1 of guest 107 has ip=10.10.10.300/24",
    },
  ])("error: $name", (c) => {
    const plan = compile(input({ guests: { 107: { nics: c.nics, fw: { rules: [c.rule] } } } }));
    expect(forwards(plan)).toEqual(["in tcp 203.0.113.10:2222 -> -:2222 error"]);
    expect(plan.forwards[0]?.reason).toContain(c.hint);
    expect(plan.forwards[0]?.reason).toContain("-dest");
    expect(diags(plan)).toEqual(["firewall/107.fw:4 error"]);
  });

  // Nothing static and nothing learned yet: pending (SPEC §8), with what was tried; not an error.
  it.each([
    { name: "ip=dhcp", nics: [nic(0, "dhcp")], rule: rule(), hint: "net0: ip=dhcp" },
    { name: "no address at all", nics: [nic(0, null)], rule: rule(), hint: "no ip= in the config" },
    {
      name: "-i names a dhcp NIC",
      nics: [nic(0, "10.10.10.5/24"), nic(1, "dhcp")],
      rule: rule("-i net1"),
      hint: "no address known yet for net1: ip=dhcp",
    },
  ])("pending: $name", (c) => {
    const plan = compile(input({ guests: { 107: { nics: c.nics, fw: { rules: [c.rule] } } } }));
    expect(forwards(plan)).toEqual(["in tcp 203.0.113.10:2222 -> -:2222 pending"]);
    expect(plan.forwards[0]?.reason).toContain(c.hint);
    expect(plan.diagnostics.map((d) => `${d.line} ${d.severity}`)).toEqual(["4 info"]);
    expect(plan.chains).toEqual([]);
  });

  it("OUT: several addresses, the fix names -source", () => {
    const nics = [nic(0, "10.10.10.5/24"), nic(1, "10.10.20.5/24")];
    const plan = compile(input({ guests: { 107: { nics, fw: { rules: ["OUT ACCEPT # NAT"] } } } }));
    expect(plan.forwards[0]?.state).toBe("error");
    expect(plan.forwards[0]?.reason).toContain("-source");
  });

  it("OUT without a known address is pending", () => {
    const plan = compile(
      input({ guests: { 107: { nics: [nic(0, "dhcp")], fw: { rules: ["OUT ACCEPT # NAT"] } } } }),
    );
    expect(plan.forwards[0]?.state).toBe("pending");
  });
});

describe("compile: run state, conflicts, protected ports", () => {
  const two = (state107: "running" | "stopped" | "starting", r107: string, r108: string) =>
    input({
      guests: {
        108: { nics: [nic(0, "10.10.10.108/24")], fw: { rules: [r108] } },
        107: { nics: [nic(0, "10.10.10.107/24")], state: state107, fw: { rules: [r107] } },
      },
    });

  it("a stopped guest's forwards are inactive and get no chains", () => {
    const plan = compile(guest107(["IN ACCEPT -p tcp -dport 22 # NAT:822"], { state: "stopped" }));
    expect(forwards(plan)).toEqual(["in tcp 203.0.113.10:822 -> 10.10.10.107:22 inactive"]);
    expect(plan.forwards[0]?.reason).toBe("guest not running");
    expect(plan.chains).toEqual([]);
  });

  it("a starting guest's forwards are active", () => {
    const plan = compile(guest107(["IN ACCEPT -p tcp -dport 22 # NAT:822"], { state: "starting" }));
    expect(forwards(plan)).toEqual(["in tcp 203.0.113.10:822 -> 10.10.10.107:22 active"]);
  });

  it("same public port: the lower VMID wins, both reported", () => {
    const plan = compile(
      two(
        "running",
        "IN ACCEPT -p tcp -dport 22 # NAT:822",
        "IN ACCEPT -p tcp -dport 22 # NAT:822",
      ),
    );
    expect(forwards(plan)).toEqual([
      "in tcp 203.0.113.10:822 -> 10.10.10.107:22 active",
      "in tcp 203.0.113.10:822 -> 10.10.10.108:22 conflict",
    ]);
    expect(plan.forwards[1]?.reason).toBe(
      "public tcp 203.0.113.10:822 is already forwarded by firewall/107.fw:4 (vm 107)",
    );
    expect(diags(plan)).toEqual(["firewall/108.fw:4 error"]);
    expect(plan.chains.map((c) => c.owner)).toEqual([107]);
  });

  it("overlapping ranges conflict, other protocols do not", () => {
    const plan = compile(
      two(
        "running",
        "IN ACCEPT -p tcp -dport 7000:7010 # NAT",
        "IN ACCEPT -p tcp -dport 7005,9000 # NAT",
      ),
    );
    expect(plan.forwards.map((f) => f.state)).toEqual(["active", "conflict"]);
    const udp = compile(
      two("running", "IN ACCEPT -p tcp -dport 8000 # NAT", "IN ACCEPT -p udp -dport 8000 # NAT"),
    );
    expect(udp.forwards.map((f) => f.state)).toEqual(["active", "active"]);
    const other = compile(
      two(
        "running",
        "IN ACCEPT -p tcp -dport 8000 # NAT",
        "IN ACCEPT -p tcp -dport 80 # NAT:203.0.113.5:8000",
      ),
    );
    expect(other.forwards.map((f) => f.state)).toEqual(["active", "active"]);
  });

  it("a stopped guest does not take part; its reason names the claim", () => {
    const plan = compile(
      two(
        "stopped",
        "IN ACCEPT -p tcp -dport 22 # NAT:822",
        "IN ACCEPT -p tcp -dport 22 # NAT:822",
      ),
    );
    expect(forwards(plan)).toEqual([
      "in tcp 203.0.113.10:822 -> 10.10.10.107:22 inactive",
      "in tcp 203.0.113.10:822 -> 10.10.10.108:22 active",
    ]);
    expect(plan.forwards[0]?.reason).toBe(
      "guest not running; public tcp 203.0.113.10:822 is also claimed by firewall/108.fw:4 (vm 108)",
    );
    expect(diags(plan)).toEqual(["firewall/107.fw:4 warning"]);
  });

  it("two forwards of one guest conflict by line order", () => {
    const plan = compile(
      guest107(["IN ACCEPT -p tcp -dport 80 # NAT:8080", "IN ACCEPT -p tcp -dport 81 # NAT:8080"]),
    );
    expect(plan.forwards.map((f) => f.state)).toEqual(["active", "conflict"]);
  });

  it.each([
    { name: "SSH", rule: "IN ACCEPT -p tcp -dport 22 # NAT", allow: [], state: "error" },
    { name: "web UI", rule: "IN ACCEPT -p tcp -dport 80 # NAT:8006", allow: [], state: "error" },
    {
      name: "SPICE proxy in a range",
      rule: "IN ACCEPT -p tcp -dport 3000:3200 # NAT",
      allow: [],
      state: "error",
    },
    {
      name: "a port the host listens on",
      rule: "IN ACCEPT -p tcp -dport 25 # NAT",
      allow: [],
      state: "error",
    },
    {
      name: "allowed by allow_host_ports",
      rule: "IN ACCEPT -p tcp -dport 22 # NAT",
      allow: [22],
      state: "active",
    },
    {
      name: "udp is not protected",
      rule: "IN ACCEPT -p udp -dport 22 # NAT",
      allow: [],
      state: "active",
    },
    {
      name: "another public address, nothing listening on it",
      rule: "IN ACCEPT -p tcp -dport 22 # NAT:203.0.113.5",
      allow: [],
      state: "active",
      ports: { any: [25], at: { "203.0.113.10": [22] } },
    },
    {
      name: "another public address, host listens on every address",
      rule: "IN ACCEPT -p tcp -dport 22 # NAT:203.0.113.5",
      allow: [],
      state: "error",
      ports: { any: [22], at: {} },
    },
    {
      name: "another public address, host listens on that address",
      rule: "IN ACCEPT -p tcp -dport 80 # NAT:203.0.113.5:2222",
      allow: [],
      state: "error",
      ports: { any: [], at: { "203.0.113.5": [2222] } },
    },
    {
      name: "another public address, listening there but allowed",
      rule: "IN ACCEPT -p tcp -dport 80 # NAT:203.0.113.5:2222",
      allow: [2222],
      state: "active",
      ports: { any: [], at: { "203.0.113.5": [2222] } },
    },
    {
      name: "another public address, a port in range listening on every address",
      rule: "IN ACCEPT -p tcp -dport 3000:3200 # NAT:203.0.113.5:9000:9200",
      allow: [],
      state: "error",
      ports: { any: [9100], at: {} },
    },
    {
      name: "the 22/8006/3128 rule without a listener stays on public_address only",
      rule: "IN ACCEPT -p tcp -dport 80 # NAT:203.0.113.5:8006",
      allow: [],
      state: "active",
      ports: { any: [], at: {} },
    },
    {
      name: "public_address, listening on another address only",
      rule: "IN ACCEPT -p tcp -dport 80 # NAT:2222",
      allow: [],
      state: "active",
      ports: { any: [], at: { "203.0.113.5": [2222] } },
    },
  ])("protected host port: $name", (c) => {
    const base = guest107([c.rule]);
    const plan = compile({
      ...base,
      hostPorts: "ports" in c && c.ports ? (c.ports as HostPorts) : { any: [25], at: {} },
      config: { ...base.config, allowHostPorts: c.allow },
    });
    expect(plan.forwards.map((f) => f.state)).toEqual([c.state]);
    if (c.state === "error") expect(plan.forwards[0]?.reason).toContain("allow_host_ports");
  });

  it("a protected-port error never wins a conflict", () => {
    const plan = compile(
      two("running", "IN ACCEPT -p tcp -dport 22 # NAT", "IN ACCEPT -p tcp -dport 2222 # NAT:22"),
    );
    expect(plan.forwards.map((f) => f.state)).toEqual(["error", "error"]);
  });

  it("no public address → error naming the fix; an explicit address still works", () => {
    const base = guest107([
      "IN ACCEPT -p tcp -dport 22 # NAT:822",
      "IN ACCEPT -p tcp -dport 22 # NAT:203.0.113.5:822",
    ]);
    const plan = compile({ ...base, publicAddress: null });
    expect(forwards(plan)).toEqual([
      "in tcp -:822 -> 10.10.10.107:22 error",
      "in tcp 203.0.113.5:822 -> 10.10.10.107:22 active",
    ]);
    expect(plan.forwards[0]?.reason).toContain("public_address");
  });
});

describe("compile: groups, cluster.fw and host.fw", () => {
  it("a security group's NAT rule applies to each guest using it, with that guest's address", () => {
    const plan = compile(
      input({
        cluster: {
          groups: {
            webfarm: ["IN ACCEPT -p tcp -dport 80 # NAT:8080", "IN ACCEPT -p tcp -dport 443"],
          },
          firstLine: 10,
        },
        guests: {
          107: { nics: [nic(0, "10.10.10.107/24")], fw: { rules: ["GROUP webfarm"] } },
          108: { nics: [nic(0, "10.10.10.108/24")], fw: { rules: ["GROUP webfarm"] } },
        },
      }),
    );
    expect(forwards(plan)).toEqual([
      "in tcp 203.0.113.10:8080 -> 10.10.10.107:80 active",
      "in tcp 203.0.113.10:8080 -> 10.10.10.108:80 conflict",
    ]);
    expect(plan.forwards.map((f) => [f.vmid, f.origin])).toEqual([
      [107, "firewall/cluster.fw:11"],
      [108, "firewall/cluster.fw:11"],
    ]);
    expect(lines(plan)).toEqual([
      `-A PVENAT-107-DNAT ${PUB} -p tcp -m tcp --dport 8080 -m comment --comment "pve-nat vm107 firewall/cluster.fw:11" -j DNAT --to-destination 10.10.10.107:80`,
    ]);
  });

  it("a group rule's problem for one guest is reported at the group's line, naming the guest", () => {
    const plan = compile(
      input({
        cluster: { groups: { ssh: ["IN ACCEPT -p tcp -dport 22 # NAT:822"] }, firstLine: 20 },
        guests: {
          109: {
            nics: [nic(0, "10.10.10.5/24"), nic(1, "10.10.20.5/24")],
            fw: { rules: ["GROUP ssh"], firstLine: 6 },
          },
        },
      }),
    );
    expect(plan.forwards.map((f) => `${f.vmid} ${f.origin} ${f.state}`)).toEqual([
      "109 firewall/cluster.fw:21 error",
    ]);
    expect(plan.diagnostics).toHaveLength(1);
    expect(plan.diagnostics[0]).toMatchObject({
      file: "firewall/cluster.fw",
      line: 21,
      severity: "error",
    });
    expect(plan.diagnostics[0]?.message).toMatch(
      /\[vm 109 via GROUP ssh at firewall\/109\.fw:6\]$/,
    );
  });

  it("GROUP -i netN picks the NIC; a disabled GROUP does nothing", () => {
    const cluster = { groups: { ssh: ["IN ACCEPT -p tcp -dport 22 # NAT:822"] } };
    const nics = [nic(0, "10.10.10.5/24"), nic(1, "10.10.20.5/24")];
    const on = compile(
      input({ cluster, guests: { 107: { nics, fw: { rules: ["GROUP ssh -i net1"] } } } }),
    );
    expect(forwards(on)).toEqual(["in tcp 203.0.113.10:822 -> 10.10.20.5:22 active"]);
    const off = compile(
      input({ cluster, guests: { 107: { nics, fw: { rules: ["|GROUP ssh -i net1"] } } } }),
    );
    expect(forwards(off)).toEqual([]);
  });

  it("node-level rules: owner NODE, host.fw before cluster.fw before guests", () => {
    const plan = compile(
      input({
        cluster: {
          rules: [
            "IN ACCEPT -dest 10.10.10.200 -p tcp -dport 80 # NAT:8081",
            "OUT ACCEPT -source 10.10.10.0/24 # NAT",
          ],
        },
        host: { rules: ["IN ACCEPT -dest 10.10.10.201 -p tcp -dport 80 # NAT:8082"] },
        guests: {
          107: {
            nics: [nic(0, "10.10.10.107/24")],
            fw: { rules: ["IN ACCEPT -p tcp -dport 80 # NAT:8083"] },
          },
        },
      }),
    );
    expect(plan.forwards.map((f) => `${f.vmid} ${f.origin} ${f.state}`)).toEqual([
      "null nodes/pve1/host.fw:4 active",
      "null firewall/cluster.fw:4 active",
      "null firewall/cluster.fw:5 active",
      "107 firewall/107.fw:4 active",
    ]);
    expect(lines(plan)).toEqual([
      `-A PVENAT-NODE-DNAT ${PUB} -p tcp -m tcp --dport 8082 -m comment --comment "pve-nat node nodes/pve1/host.fw:4" -j DNAT --to-destination 10.10.10.201:80`,
      `-A PVENAT-NODE-DNAT ${PUB} -p tcp -m tcp --dport 8081 -m comment --comment "pve-nat node firewall/cluster.fw:4" -j DNAT --to-destination 10.10.10.200:80`,
      '-A PVENAT-NODE-SNAT -s 10.10.10.0/24 -o vmbr0 -m comment --comment "pve-nat node firewall/cluster.fw:5" -j MASQUERADE',
      `-A PVENAT-107-DNAT ${PUB} -p tcp -m tcp --dport 8083 ${C4} -j DNAT --to-destination 10.10.10.107:80`,
    ]);
    expect(plan.chains.map((c) => c.owner)).toEqual(["NODE", 107]);
  });

  it.each([
    { name: "IN without -dest", rule: "IN ACCEPT -p tcp -dport 80 # NAT:8081", hint: "-dest" },
    {
      name: "IN with a network -dest",
      rule: "IN ACCEPT -dest 10.10.10.0/24 -p tcp -dport 80 # NAT:8081",
      hint: "-dest",
    },
    { name: "OUT without -source", rule: "OUT ACCEPT # NAT", hint: "-source" },
  ])("node-level $name is an error", (c) => {
    const plan = compile(input({ cluster: { rules: [c.rule] } }));
    expect(plan.forwards.map((f) => f.state)).toEqual(["error"]);
    expect(plan.forwards[0]?.reason).toContain(c.hint);
    expect(diags(plan)).toEqual(["firewall/cluster.fw:4 error"]);
  });

  it("a host.fw claim wins over a guest's", () => {
    const plan = compile(
      input({
        host: { rules: ["IN ACCEPT -dest 10.10.10.201 -p tcp -dport 80 # NAT:8080"] },
        guests: {
          100: {
            nics: [nic(0, "10.10.10.100/24")],
            fw: { rules: ["IN ACCEPT -p tcp -dport 80 # NAT:8080"] },
          },
        },
      }),
    );
    expect(plan.forwards.map((f) => f.state)).toEqual(["active", "conflict"]);
    expect(plan.forwards[1]?.reason).toContain("nodes/pve1/host.fw:4 (node)");
  });
});

describe("compile: settings and diagnostics", () => {
  /** Guest 107 behind a firewall=1 NIC (or not), with the datacenter firewall on (or not). */
  const filtered = (
    rule: string,
    o: { guest?: string; cluster?: string; nicFw?: boolean } = {},
  ) => {
    const base = guest107([rule], {
      nics: [nic(0, "10.10.10.107/24", o.nicFw ?? true)],
      fw: { options: { enable: o.guest ?? "1" } },
    });
    return {
      ...base,
      cluster: fw("cluster", "firewall/cluster.fw", { options: { enable: o.cluster ?? "1" } }),
    };
  };

  it("guest firewall really filtering + compatible form with -sport → warning with the explicit form", () => {
    const plan = compile(
      filtered("IN ACCEPT -source 198.51.100.7 -p tcp -sport 822 -dport 22 # NAT ssh in"),
    );
    expect(plan.forwards[0]?.state).toBe("active");
    expect(plan.diagnostics).toEqual([
      {
        file: "firewall/107.fw",
        line: 4,
        severity: "warning",
        message:
          "the guest firewall is enabled and this rule's filter matches source port 822, which forwarded " +
          'traffic never has: write it in the explicit form "IN ACCEPT -source 198.51.100.7 -p tcp -dport 22 # NAT:822 ssh in"',
      },
    ]);
  });

  it.each([
    {
      name: "firewall disabled",
      options: { enable: "0" },
      rule: "IN ACCEPT -p tcp -sport 822 -dport 22 # NAT",
    },
    {
      name: "explicit form",
      options: { enable: "1" },
      rule: "IN ACCEPT -p tcp -dport 22 # NAT:822",
    },
    { name: "no -sport", options: { enable: "1" }, rule: "IN ACCEPT -p tcp -dport 2222 # NAT" },
  ])("no firewall warning: $name", (c) => {
    expect(compile(filtered(c.rule, { guest: c.options.enable })).diagnostics).toEqual([]);
  });

  it.each([
    ["the datacenter firewall is off (pve-firewall removes every rule)", { cluster: "0" }],
    ["the NIC has firewall=0 (no fwbr, no filter)", { nicFw: false }],
  ])("no -sport warning when %s", (_why, o) => {
    const rule = "IN ACCEPT -p tcp -sport 822 -dport 22 # NAT";
    expect(compile(filtered(rule, o)).diagnostics).toEqual([]);
    expect(compile(filtered(rule)).diagnostics).toHaveLength(1);
  });

  it("hairpin: DNAT from inside too, masquerade of hairpinned connections from the guest's network", () => {
    const base = guest107(["IN ACCEPT -p tcp -dport 22 # NAT:822"]);
    const plan = compile({ ...base, config: { ...base.config, hairpin: true } });
    expect(lines(plan)).toEqual([
      `-A PVENAT-107-DNAT ${PUB} -p tcp -m tcp --dport 822 ${C4} -j DNAT --to-destination 10.10.10.107:22`,
      `-A PVENAT-107-SNAT -s 10.10.10.0/24 -d 10.10.10.107/32 -p tcp -m tcp --dport 22 -m conntrack --ctstate DNAT ${C4} -j MASQUERADE`,
    ]);
    expect(plan.entry.hairpin).toBe(true);
  });

  it("hairpin for a node-level forward: the network of a local guest NIC, else /24 with an info", () => {
    const plan = compile(
      input({
        config: { hairpin: true },
        host: {
          rules: [
            "IN ACCEPT -dest 10.10.20.7 -p tcp -dport 80 # NAT:8081",
            "IN ACCEPT -dest 10.10.30.7 -p tcp -dport 80 # NAT:8082",
          ],
        },
        guests: { 107: { nics: [nic(0, "10.10.20.5/23")], fw: null, state: "stopped" } },
      }),
    );
    expect(
      lines(plan)
        .filter((l) => l.includes("MASQUERADE"))
        .map((l) => /-s (\S+)/.exec(l)?.[1]),
    ).toEqual(["10.10.20.0/23", "10.10.30.0/24"]);
    expect(diags(plan)).toEqual(["nodes/pve1/host.fw:5 info"]);
  });

  it("OUT uses SNAT to a configured public_address, MASQUERADE with auto", () => {
    const base = guest107(["OUT ACCEPT # NAT"]);
    const fixed = compile({ ...base, config: { ...base.config, publicAddress: "203.0.113.10" } });
    expect(lines(fixed)).toEqual([
      `-A PVENAT-107-SNAT -s 10.10.10.107/32 -o vmbr0 ${C4} -j SNAT --to-source 203.0.113.10`,
    ]);
  });

  it.each([
    { mode: "auto" as const, firewall: true, want: true },
    { mode: "auto" as const, firewall: false, want: false },
    { mode: "yes" as const, firewall: false, want: true },
    { mode: "no" as const, firewall: true, want: false },
  ])("conntrack_zone_fix $mode with firewall=$firewall → $want", (c) => {
    const base = guest107([], { nics: [nic(0, "10.10.10.107/24", c.firewall)], state: "stopped" });
    expect(
      compile({ ...base, config: { ...base.config, conntrackZoneFix: c.mode } }).entry.zoneFix,
    ).toBe(c.want);
  });

  describe("conntrack zone scope and helpers (issue 12)", () => {
    const FWD = "IN ACCEPT -p tcp -dport 21 # NAT:2121";
    const zoneInput = (
      over: {
        hairpin?: boolean;
        mode?: "auto" | "yes" | "no";
        helpers?: string;
        clusterEnable?: string | null;
        node?: boolean;
        stopped107?: boolean;
      } = {},
    ) =>
      input({
        config: { hairpin: over.hairpin ?? false, conntrackZoneFix: over.mode ?? "auto" },
        cluster:
          over.clusterEnable === null
            ? null
            : {
                options: { enable: over.clusterEnable ?? "1" },
                rules: over.node ? ["OUT ACCEPT -source 10.10.10.0/24 # NAT"] : [],
              },
        host: { options: over.helpers ? { nf_conntrack_helpers: over.helpers } : {} },
        guests: {
          // NAT guest, two firewall=1 NICs and a plain one.
          107: {
            nics: [nic(0, "10.10.10.107/24", true), nic(1, null, true), nic(2, null, false)],
            state: over.stopped107 ? "stopped" : "running",
            fw: { rules: [FWD] },
          },
          // firewall=1 guest without NAT rules: never in the zone of its own.
          108: { nics: [nic(0, "10.10.10.108/24", true)], fw: { rules: [] } },
          109: { nics: [nic(0, "10.10.10.109/24", true)], fw: null },
        },
      });
    const entry = (over: Parameters<typeof zoneInput>[0] = {}) => {
      const e = compile(zoneInput(over)).entry;
      return {
        zoneFix: e.zoneFix,
        zoneDevices: e.zoneDevices,
        helpers: e.helpers.map((h) => h.name),
      };
    };

    it.each([
      {
        name: "only the firewall=1 NICs of guests with active forwards",
        over: {},
        want: { zoneFix: true, zoneDevices: ["fwbr107i0", "fwbr107i1"], helpers: [] },
      },
      {
        name: "no active forward → no zone device at all",
        over: { stopped107: true },
        want: { zoneFix: true, zoneDevices: [], helpers: [] },
      },
      {
        name: "conntrack_zone_fix = yes: every NIC of those guests",
        over: { mode: "yes" as const },
        want: { zoneFix: true, zoneDevices: ["fwbr107i0", "fwbr107i1", "fwbr107i2"], helpers: [] },
      },
      {
        name: "conntrack_zone_fix = no: none",
        over: { mode: "no" as const, helpers: "ftp" },
        want: { zoneFix: false, zoneDevices: [], helpers: [] },
      },
      {
        name: "a node-level forward may NAT any guest: fwbr+",
        over: { node: true },
        want: { zoneFix: true, zoneDevices: ["fwbr+"], helpers: [] },
      },
      {
        name: "hairpin: any guest may reach a forward: fwbr+",
        over: { hairpin: true },
        want: { zoneFix: true, zoneDevices: ["fwbr+"], helpers: [] },
      },
      {
        name: "host.fw helpers, in the order written, duplicates once",
        over: { helpers: "tftp,ftp,tftp" },
        want: { zoneFix: true, zoneDevices: ["fwbr107i0", "fwbr107i1"], helpers: ["tftp", "ftp"] },
      },
      {
        name: "helpers only while the datacenter firewall is on",
        over: { helpers: "ftp", clusterEnable: "0" },
        want: { zoneFix: true, zoneDevices: ["fwbr107i0", "fwbr107i1"], helpers: [] },
      },
      {
        name: "no cluster.fw: the datacenter firewall is off",
        over: { helpers: "ftp", clusterEnable: null },
        want: { zoneFix: true, zoneDevices: ["fwbr107i0", "fwbr107i1"], helpers: [] },
      },
    ])("$name", ({ over, want }) => {
      expect(entry(over)).toEqual(want);
    });

    it("helpers carry pve-firewall's ports", () => {
      expect(compile(zoneInput({ helpers: "ftp,tftp,irc,sip,amanda,pptp" })).entry.helpers).toEqual(
        [
          { name: "ftp", proto: "tcp", port: 21 },
          { name: "tftp", proto: "udp", port: 69 },
          { name: "irc", proto: "tcp", port: 6667 },
          { name: "sip", proto: "udp", port: 5060 },
          { name: "amanda", proto: "udp", port: 10080 },
          { name: "pptp", proto: "tcp", port: 1723 },
        ],
      );
    });

    it("a fwbr name over 15 bytes (net10 of a 9-digit vmid) cannot exist and is left out", () => {
      const vmid = 999_999_999;
      const base = input({
        guests: {
          [vmid]: {
            nics: [nic(0, "10.10.10.9/24", true), nic(10, null, true)],
            fw: { rules: [FWD] },
          },
        },
      });
      expect(compile(base).entry.zoneDevices).toEqual(["fwbr999999999i0"]);
    });
  });

  it("collects file diagnostics, de-duplicated and sorted by file then line", () => {
    const base = input({ guests: { 107: { fw: { rules: [] } } } });
    const g = base.guests[107];
    if (!g?.fw) throw new Error("fixture");
    const d = (file: string, line: number) => ({
      file,
      line,
      severity: "error" as const,
      message: "x",
    });
    g.fw.diagnostics.push(d("firewall/107.fw", 9), d("firewall/107.fw", 2));
    g.conf.diagnostics.push(d("nodes/pve1/lxc/107.conf", 3));
    base.diagnostics.push(d("firewall/107.fw", 2), d("/etc/pve-nat/pve-nat.conf", 1));
    expect(diags(compile(base))).toEqual([
      "/etc/pve-nat/pve-nat.conf:1 error",
      "firewall/107.fw:2 error",
      "firewall/107.fw:9 error",
      "nodes/pve1/lxc/107.conf:3 error",
    ]);
  });

  it("forward indices in rules point at their forward", () => {
    const plan = compile(
      guest107([
        "OUT ACCEPT # NAT",
        "IN ACCEPT -p tcp -dport 22 # NAT",
        "IN ACCEPT -p tcp -dport 80 # NAT:8080",
      ]),
    );
    const rules = plan.chains.flatMap((c) => [...c.dnat, ...c.snat]);
    expect(rules.map((r) => [r.forward, plan.forwards[r.forward]?.origin, r.comment])).toEqual([
      [2, "firewall/107.fw:6", "pve-nat vm107 firewall/107.fw:6"],
      [0, "firewall/107.fw:4", "pve-nat vm107 firewall/107.fw:4"],
    ]);
  });

  it("guest name is carried; node-level forwards have none", () => {
    const base = guest107(["IN ACCEPT -p tcp -dport 80 # NAT:8080"]);
    const g = base.guests[107];
    if (g) g.conf = conf(107, "lxc", [nic(0, "10.10.10.107/24")], "web1");
    expect(compile(base).forwards[0]?.name).toBe("web1");
  });
});

describe("compile: hostile input never reaches a rule", () => {
  const hostile = [
    'IN ACCEPT -p tcp -dport 80 # NAT $(reboot) "; iptables -F',
    "IN ACCEPT -p tcp -dport 80 # NAT `id` ' \\\" -j ACCEPT",
    `IN ACCEPT -p tcp -dport 80 # NAT ${"x".repeat(5000)}`,
    "IN ACCEPT -p tcp -dport 80 # NAT:8080 \u0000\u001b[31m\u2028",
  ];
  it.each(hostile.map((r) => ({ r })))("comment text is not in any rule: $r", ({ r }) => {
    const plan = compile(guest107([r]));
    expect(plan.forwards.map((f) => f.state)).toEqual(["active"]);
    for (const l of lines(plan)) {
      expect(l).toMatch(
        /--comment "pve-nat vm107 firewall\/107\.fw:4" -j DNAT --to-destination 10\.10\.10\.107:80$/,
      );
    }
  });

  it("a hostile file path is sanitised in the generated comment", () => {
    const base = input({});
    base.guests[107] = {
      conf: conf(107, "lxc", [nic(0, "10.10.10.107/24")]),
      fw: fw("guest", 'firewall/107.fw"; $(id)\n', {
        rules: ["IN ACCEPT -p tcp -dport 80 # NAT:8080"],
      }),
      state: "running",
    };
    expect(lines(compile(base))[0]).toContain(
      '--comment "pve-nat vm107 firewall/107.fw_____id__:4"',
    );
  });
});
