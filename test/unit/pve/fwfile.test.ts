import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { FwFile, FwKind, FwRule } from "../../../src/model.js";
import { parseFwFile, show } from "../../../src/pve/fwfile.js";

const FILE = "firewall/107.fw";

function parse(text: string | Uint8Array, kind: FwKind = "guest", file = FILE): FwFile {
  return parseFwFile(text, file, kind);
}

const errors = (fw: FwFile) => fw.diagnostics.filter((d) => d.severity === "error");

function rule(over: Partial<FwRule>): FwRule {
  return {
    file: FILE,
    line: 2,
    enabled: true,
    type: "in",
    action: "ACCEPT",
    macro: null,
    iface: null,
    source: null,
    dest: null,
    proto: null,
    dport: null,
    sport: null,
    icmpType: null,
    log: null,
    comment: null,
    ...over,
  };
}

describe("rule lines pve-firewall accepts", () => {
  it.each<[string, Partial<FwRule>]>([
    ["IN ACCEPT", {}],
    ["OUT DROP", { type: "out", action: "DROP" }],
    ["in REJECT", { action: "REJECT" }],
    ["|IN ACCEPT", { enabled: false }],
    [
      "IN ACCEPT -source 198.51.100.7 -dest 10.10.10.107 -p tcp -sport 822 -dport 22 # NAT ssh in",
      {
        source: "198.51.100.7",
        dest: "10.10.10.107",
        proto: "tcp",
        sport: "822",
        dport: "22",
        comment: "NAT ssh in",
      },
    ],
    ["IN ACCEPT --proto udp --dport 53", { proto: "udp", dport: "53" }],
    ["IN ACCEPT -proto udp -dport 53", { proto: "udp", dport: "53" }],
    ["IN ACCEPT -dport 80,443 -p tcp", { proto: "tcp", dport: "80,443" }],
    ["IN ACCEPT -p tcp -dport 8000:8010", { proto: "tcp", dport: "8000:8010" }],
    ["IN ACCEPT -p tcp -dport ssh,http", { proto: "tcp", dport: "ssh,http" }],
    ["IN ACCEPT -p 6 -dport 22", { proto: "6", dport: "22" }],
    ["IN ACCEPT -i net0 -p tcp", { iface: "net0", proto: "tcp" }],
    ["IN ACCEPT -i net31", { iface: "net31" }],
    ["IN SSH(ACCEPT)", { macro: "SSH" }],
    ["IN ssh(ACCEPT)", { macro: "SSH" }],
    ["IN SSH(ACCEPT) -p tcp -dport 22", { macro: "SSH", proto: "tcp", dport: "22" }],
    [
      "IN HTTP(ACCEPT) -p tcp -sport 1024:65535",
      { macro: "HTTP", proto: "tcp", sport: "1024:65535" },
    ],
    ["IN Ping(DROP) -log info", { macro: "Ping", action: "DROP", log: "info" }],
    [
      "OUT ACCEPT -p icmp -icmp-type echo-request",
      { type: "out", proto: "icmp", icmpType: "echo-request" },
    ],
    ["IN ACCEPT -p icmp -dport echo-request", { proto: "icmp", dport: "echo-request" }],
    [
      "IN ACCEPT -p ipv6-icmp -icmp-type neighbour-solicitation",
      { proto: "ipv6-icmp", icmpType: "neighbour-solicitation" },
    ],
    ["IN ACCEPT -source 10.0.0.1-10.0.0.9", { source: "10.0.0.1-10.0.0.9" }],
    ["IN ACCEPT -source 10.0.0.0/8,192.168.0.0/16", { source: "10.0.0.0/8,192.168.0.0/16" }],
    ["IN ACCEPT -source 2001:db8::/32 -dest fe80::1", { source: "2001:db8::/32", dest: "fe80::1" }],
    ["IN ACCEPT -source +dc/mgmt -dest guest/web", { source: "+dc/mgmt", dest: "guest/web" }],
    ["IN ACCEPT -source +sdn/vnet0-all", { source: "+sdn/vnet0-all" }],
    ["IN ACCEPT -log nolog", { log: "nolog" }],
    ["IN ACCEPT -p tcp -dport 0", { proto: "tcp", dport: null }], // Perl: "0" is false, unchecked
    ["IN ACCEPT -i 0", { iface: null }],
    ["IN ACCEPT # NAT: 822 ü", { comment: "NAT: 822 ü" }],
    ["IN ACCEPT #", { comment: "" }],
    ["IN ACCEPT ### ##", { comment: "## ##" }],
    ["IN\tACCEPT\t-p tcp\t\t-dport 22", { proto: "tcp", dport: "22" }],
    ["IN   ACCEPT   -p tcp   -dport 22   # x", { proto: "tcp", dport: "22", comment: "x" }],
    ["GROUP webservers", { type: "group", action: "webservers" }],
    ["GROUP web-1 -i net1 # g", { type: "group", action: "web-1", iface: "net1", comment: "g" }],
    ["|GROUP Web", { type: "group", action: "web", enabled: false }],
    [
      "IN DHCPv6(ACCEPT) -p tcp -source 10.0.0.1",
      { macro: "DHCPv6", proto: "tcp", source: "10.0.0.1" },
    ],
  ])("%s", (line, over) => {
    const fw = parse(`[RULES]\n${line}\n`);
    expect(fw.diagnostics).toEqual([]);
    expect(fw.rules).toEqual([rule(over)]);
  });

  it.each<[FwKind, string, Partial<FwRule>]>([
    ["host", "FORWARD ACCEPT -p tcp -dport 22", { type: "forward", proto: "tcp", dport: "22" }],
    ["cluster", "FORWARD DROP", { type: "forward", action: "DROP" }],
    ["host", "IN ACCEPT -i vmbr0.100", { iface: "vmbr0.100" }],
    ["host", "IN ACCEPT -i eth0:1", { iface: "eth0:1" }],
    ["cluster", "IN ACCEPT -i enp5s0f1", { iface: "enp5s0f1" }],
  ])("%s: %s", (kind, line, over) => {
    const fw = parse(`[RULES]\n${line}\n`, kind, "f.fw");
    expect(fw.diagnostics).toEqual([]);
    expect(fw.rules).toEqual([rule({ file: "f.fw", ...over })]);
  });
});

describe("rule lines pve-firewall rejects", () => {
  it.each<[FwKind, string, RegExp]>([
    ["guest", "IN", /cannot parse rule 'IN'/],
    ["guest", "ACCEPT", /cannot parse rule/],
    ["guest", "| IN ACCEPT", /cannot parse rule|rule type/],
    ["guest", "IN ACCEPT -p", /cannot parse rule options at '-p'/],
    ["guest", "IN ACCEPT -p  tcp", /cannot parse rule options/], // two spaces
    ["guest", "IN ACCEPT -p\ttcp", /cannot parse rule options/],
    ["guest", "IN ACCEPT --i net0", /cannot parse rule options/],
    ["guest", "IN ACCEPT -x 1", /cannot parse rule options at '-x 1'/],
    ["guest", "IN ACCEPT -log verbose", /cannot parse rule options/],
    ["guest", "IN ACCEPT -log infox", /cannot parse rule options at 'x'/],
    ["guest", "IN ACCEPT ; reboot", /cannot parse rule options at '; reboot'/],
    ["guest", "GROUP web -p tcp", /only -i may follow GROUP name/],
    ["guest", "IN accept", /unknown action 'accept'/],
    ["guest", "IN 0", /missing action/],
    ["guest", "IN ACCEPT(SSH)", /unknown action/],
    ["guest", "IN FOO(ACCEPT)", /unknown macro 'FOO'/],
    ["guest", "FORWARD ACCEPT", /'FORWARD' is not allowed in a guest file/],
    ["guest", "SIDEWAYS ACCEPT", /'SIDEWAYS' is not allowed/],
    ["host", "FORWARD REJECT", /REJECT is not allowed in FORWARD/],
    ["guest", "IN ACCEPT -i eth0", /expected netN in a guest file/],
    ["guest", "IN ACCEPT -i net", /expected netN/],
    ["host", "IN ACCEPT -i 1eth", /invalid interface name '1eth'/],
    ["host", "IN ACCEPT -i a", /invalid interface name/],
    ["guest", "IN ACCEPT -dport 22", /-dport needs -p/],
    ["guest", "IN ACCEPT -sport 22", /-sport needs -p/],
    ["guest", "IN SSH(ACCEPT) -dport 22", /-dport needs -p/],
    ["guest", "IN ACCEPT -p tcp -dport 70000", /invalid port '70000'/],
    ["guest", "IN ACCEPT -p tcp -dport 22,", /extraneous commas/],
    ["guest", "IN ACCEPT -p tcp -dport 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", /too many entries/],
    ["guest", "IN ACCEPT -p tcp -dport 2000:1000", /backwards range/],
    ["guest", "IN ACCEPT -p tcp -dport nosuchservice", /invalid port 'nosuchservice'/],
    ["guest", "IN ACCEPT -p icmp -sport 1", /protocol 'icmp' has no ports/],
    ["guest", "IN ACCEPT -p gre -dport 1", /protocol 'gre' has no ports/],
    ["guest", "IN ACCEPT -p TCP", /unknown protocol 'TCP'/],
    ["guest", "IN ACCEPT -p 06", /unknown protocol '06'/],
    ["guest", "IN ACCEPT -icmp-type echo-request", /-icmp-type needs -p icmp/],
    ["guest", "IN ACCEPT -p icmp -icmp-type 8", /invalid icmp type '8'/],
    ["guest", "IN ACCEPT -p icmp -icmp-type neighbor-solicitation", /invalid icmp type/],
    [
      "guest",
      "IN ACCEPT -p icmp -icmp-type echo-request -dport echo-reply",
      /together with -dport/,
    ],
    ["guest", "IN ACCEPT -source 10.0.0.1/8", /-source: invalid IP address '10.0.0.1\/8'/],
    ["guest", "IN ACCEPT -dest 1.2.3.4,::1", /-dest: mixed IPv4\/IPv6/],
    ["guest", "IN ACCEPT -source 1.2.3.4 -dest ::1", /IPv4 and IPv6 mixed in one rule/],
    ["guest", "IN ACCEPT -p icmp -source ::1", /IPv4 and IPv6 mixed in one rule/],
    ["guest", "IN ACCEPT -source +1set", /invalid ipset name/],
    ["guest", "IN ACCEPT -source 10.0.0.1-10.0.0.5,10.0.0.9", /range cannot be used in a list/],
    ["guest", "IN DNS(ACCEPT) -p tcp", /-p 'tcp' conflicts with macro DNS, which sets -p udp/],
    ["guest", "IN SSH(ACCEPT) -p tcp -dport 2222", /-dport '2222' conflicts with macro SSH/],
    ["guest", "GROUP Web", /write it in lower case/],
    ["guest", "GROUP 1web", /invalid security group name '1web'/],
    ["guest", "GROUP w", /invalid security group name 'w'/],
  ])("%s: %s", (kind, line, message) => {
    const fw = parse(`[RULES]\n${line}\n`, kind);
    expect(fw.rules).toEqual([]);
    expect(fw.diagnostics).toHaveLength(1);
    expect(fw.diagnostics[0]).toMatchObject({ file: FILE, line: 2, severity: "error" });
    expect(fw.diagnostics[0]?.message).toMatch(message);
  });

  it("reports a disabled rule's errors too", () => {
    expect(errors(parse("[RULES]\n|IN ACCEPT -dport 22\n")).map((d) => d.line)).toEqual([2]);
  });

  it("in a security group: no GROUP, no -i", () => {
    const fw = parse("[group web]\nGROUP other\nIN ACCEPT -i net0\nFORWARD ACCEPT\n", "cluster");
    expect(errors(fw).map((d) => [d.line, d.message])).toEqual([
      [
        2,
        expect.stringMatching(
          /'GROUP' is not allowed in a security group.*cannot use another group/,
        ),
      ],
      [3, expect.stringMatching(/-i is not allowed in security group rules/)],
    ]);
    expect(fw.groups.web?.rules.map((r) => r.type)).toEqual(["forward"]);
  });
});

describe("sections", () => {
  it.each<[FwKind, string, boolean]>([
    ["guest", "[OPTIONS]", true],
    ["guest", "[rules]", true],
    ["guest", "[Aliases]", true],
    ["guest", "[IPSET web]", true],
    ["guest", "[ipset web] # comment", true],
    ["guest", "[group web]", false],
    ["host", "[OPTIONS]", true],
    ["host", "[RULES]", true],
    ["host", "[ALIASES]", false],
    ["host", "[IPSET web]", false],
    ["cluster", "[group web] # a comment", true],
    ["cluster", "[GROUP  web]", true],
    ["cluster", "[ALIASES]", true],
    ["cluster", "[IPSET x1]", true],
    ["guest", "[RULES] # no", false],
    ["guest", "[ RULES ]", false],
  ])("%s: %s is a section header: %s", (kind, header, ok) => {
    const fw = parse(`${header}\n`, kind);
    expect(errors(fw).length === 0).toBe(ok);
  });

  it("reports lines outside any section, and after a bad group header", () => {
    const fw = parse("IN ACCEPT\n[group 1bad]\nIN ACCEPT\n[RULES]\nIN ACCEPT\n", "cluster");
    expect(errors(fw).map((d) => d.line)).toEqual([1, 2, 3]);
    expect(errors(fw)[0]?.message).toMatch(/line outside any section: 'IN ACCEPT'/);
    expect(errors(fw)[1]?.message).toMatch(/invalid security group name '1bad'/);
    expect(fw.rules).toHaveLength(1);
  });

  it.each([
    ["[group abcdefghijklmnopqrs]", /too long \(max 18\)/],
    [`[ipset a${"b".repeat(64)}]`, /too long \(max 64\)/],
    ["[ipset 9x]", /invalid ipset name/],
  ])("rejects header %s", (header, message) => {
    const fw = parse(`${header}\n`, "cluster");
    expect(fw.diagnostics.map((d) => d.line)).toEqual([1]);
    expect(fw.diagnostics[0]?.message).toMatch(message);
  });

  it("names sections that the file kind does not have", () => {
    const fw = parse("[RULES]\n[ALIASES]\n", "host");
    expect(fw.diagnostics[0]?.message).toMatch(/\[ALIASES\] sections are not allowed in host.fw/);
  });

  it("keeps group and ipset names lower-cased with their lines", () => {
    const fw = parse("[IPSET Mgmt] # m\n10.0.0.1\n[group Web]\nIN ACCEPT\n", "cluster");
    expect(fw.ipsets).toEqual({
      mgmt: { name: "mgmt", line: 1, entries: [{ cidr: "10.0.0.1", nomatch: false, line: 2 }] },
    });
    expect(fw.groups.web).toEqual({
      name: "web",
      line: 3,
      rules: [rule({ line: 4 })],
    });
  });
});

describe("lines", () => {
  it("numbers every line, skipping blanks and comments", () => {
    const fw = parse("# c\n\n   \n[RULES]\n\t# indented comment\nIN ACCEPT\n\nOUT ACCEPT");
    expect(fw.diagnostics).toEqual([]);
    expect(fw.rules.map((r) => [r.type, r.line])).toEqual([
      ["in", 6],
      ["out", 8],
    ]);
  });

  it.each(["", "0", "\n\n", "# only a comment\n", "[RULES]\n", "[OPTIONS]\n[RULES]\n[ALIASES]\n"])(
    "accepts %j",
    (text) => {
      expect(parse(text).diagnostics).toEqual([]);
    },
  );

  it("trims tabs, spaces and U+00A0 bytes around a line, as Perl's \\h", () => {
    const fw = parse(
      new Uint8Array([...bytes("[RULES]\n \t"), 0xa0, ...bytes("IN ACCEPT"), 0xa0, 0x0a]),
    );
    expect(fw.diagnostics).toEqual([]);
    expect(fw.rules).toHaveLength(1);
  });

  it("takes a header ending in CR as no header (CRLF files)", () => {
    const fw = parse("[RULES]\r\nIN ACCEPT\r\n");
    expect(errors(fw).map((d) => d.line)).toEqual([1, 2]);
    expect(errors(fw)[0]?.message).toMatch(/Windows line ends/);
  });

  it("takes a BOM as part of the first line", () => {
    const fw = parse("\ufeff[RULES]\nIN ACCEPT\n");
    expect(errors(fw).map((d) => d.line)).toEqual([1, 2]);
    expect(errors(fw)[0]?.message).toMatch(/byte order mark/);
  });

  it("decodes comments from UTF-8 and survives broken bytes", () => {
    const fw = parse(new Uint8Array([...bytes("[RULES]\nIN ACCEPT # caf"), 0xe9, 0xff, 0x0a]));
    expect(fw.diagnostics).toEqual([]);
    expect(fw.rules[0]?.comment).toBe("caf\ufffd\ufffd");
  });
});

describe("options", () => {
  it.each<[FwKind, string, Record<string, string>]>([
    ["guest", "enable: 1", { enable: "1" }],
    ["guest", "ENABLE:1", { enable: "1" }],
    ["guest", "policy_in: drop", { policy_in: "DROP" }],
    ["guest", "log_level_in: INFO", { log_level_in: "info" }],
    ["guest", "log_level_out:", { log_level_out: "" }],
    ["guest", "macfilter: 0", { macfilter: "0" }],
    ["guest", "ips_queues: 0:3", { ips_queues: "0:3" }],
    ["guest", "layer2_protocols: IPv4,ARP", { layer2_protocols: "IPv4,ARP" }],
    ["host", "nf_conntrack_helpers: ftp,SIP", { nf_conntrack_helpers: "ftp,sip" }],
    ["host", "nf_conntrack_max: 0262144", { nf_conntrack_max: "262144" }],
    ["host", "log_level_forward: nolog", { log_level_forward: "nolog" }],
    ["host", "nftables: 1", { nftables: "1" }],
    ["cluster", "enable: 1", { enable: "1" }],
    ["cluster", "policy_forward: ACCEPT", { policy_forward: "ACCEPT" }],
    [
      "cluster",
      "log_ratelimit: enable=1,rate=10/minute,burst=20",
      { log_ratelimit: "enable=1,rate=10/minute,burst=20" },
    ],
    ["cluster", "log_ratelimit: 0", { log_ratelimit: "0" }],
  ])("%s: %s", (kind, line, options) => {
    const fw = parse(`[OPTIONS]\n${line}\n`, kind);
    expect(fw.diagnostics).toEqual([]);
    expect(fw.options).toEqual(options);
  });

  it.each<[FwKind, string, RegExp]>([
    ["guest", "enable: 1 # on", /comments are not allowed on option lines/],
    ["guest", "enable: 2", /cannot parse option 'enable: 2'/],
    ["guest", "enable 1", /cannot parse option/],
    ["guest", "nosmurfs: 1", /guest options/],
    ["guest", "policy_forward: DROP", /cannot parse option/],
    ["guest", "layer2_protocols: IPv6", /unknown ethernet protocol type 'IPv6'/],
    ["host", "dhcp: 1", /host options/],
    ["host", "nf_conntrack_helpers: ftp,,sip", /unknown conntrack helper ''/], // Perl split keeps inner empty fields
    ["host", "nf_conntrack_helpers: http", /unknown conntrack helper 'http'/],
    ["cluster", "policy_in: REJECTED", /cannot parse option/],
    ["cluster", "LOG_RATELIMIT: 1", /cannot parse option/],
    ["cluster", "log_ratelimit: rate=fast", /rate must look like 1\/second/],
    ["cluster", "log_ratelimit: burst=-1", /burst must be an integer/],
    ["cluster", "log_ratelimit: enable=maybe", /enable must be a boolean/],
    ["cluster", "log_ratelimit: speed=1", /unknown key 'speed'/],
    ["cluster", "log_ratelimit: burst=1,burst=2", /duplicate key/],
  ])("%s rejects %s", (kind, line, message) => {
    const fw = parse(`[OPTIONS]\n${line}\n`, kind);
    expect(fw.diagnostics.map((d) => d.line)).toEqual([2]);
    expect(fw.diagnostics[0]?.message).toMatch(message);
  });
});

describe("aliases", () => {
  it("parses names case-insensitively, with comments", () => {
    const fw = parse("[ALIASES]\nWeb 10.0.0.5 # web\ndb\t2001:db8::1\nnet 10.0.0.0/24\n");
    expect(fw.diagnostics).toEqual([]);
    expect(fw.aliases).toEqual({
      web: { name: "Web", cidr: "10.0.0.5", line: 2 },
      db: { name: "db", cidr: "2001:db8::1", line: 3 },
      net: { name: "net", cidr: "10.0.0.0/24", line: 4 },
    });
  });

  it.each([
    ["web 10.0.0.1-10.0.0.5", "error", /not an IPv4\/IPv6 address or CIDR/],
    ["web 01.0.0.1", "error", /not an IPv4\/IPv6 address/],
    ["web  10.0.0.5", "warning", /ignored by pve-firewall: expected 'name address'/],
    ["web", "warning", /ignored by pve-firewall/],
    ["web 10.0.0.5 extra", "warning", /ignored by pve-firewall/],
  ])("%s → %s", (line, severity, message) => {
    const fw = parse(`[ALIASES]\n${line}\n`);
    expect(fw.diagnostics).toEqual([
      { file: FILE, line: 2, severity, message: expect.stringMatching(message) },
    ]);
    expect(fw.aliases).toEqual({});
  });
});

describe("ipsets", () => {
  it("parses entries, nomatch and alias names", () => {
    const fw = parse(
      "[IPSET mgmt]\n10.0.0.1 # a\n! 10.0.0.2\n!web\ndc/office\n2001:db8::/64\n10.1.0.0/16\n",
    );
    expect(fw.diagnostics).toEqual([]);
    expect(fw.ipsets.mgmt?.entries).toEqual([
      { cidr: "10.0.0.1", nomatch: false, line: 2 },
      { cidr: "10.0.0.2", nomatch: true, line: 3 },
      { cidr: "web", nomatch: true, line: 4 },
      { cidr: "dc/office", nomatch: false, line: 5 },
      { cidr: "2001:db8::/64", nomatch: false, line: 6 },
      { cidr: "10.1.0.0/16", nomatch: false, line: 7 },
    ]);
  });

  it.each([
    ["10.0.0.1\n10.0.0.1/32", 3, /duplicate entry '10.0.0.1'/],
    ["10.0.0.1\n!10.0.0.1", 3, /duplicate entry/],
    ["0.0.0.0/0", 2, /zero prefix/],
    ["10.0.0.1-10.0.0.9", 2, /not an IPv4\/IPv6 address, CIDR or alias/],
    ["10.0.0.1 10.0.0.2", 2, /cannot parse ipset entry/],
    ["+other", 2, /not an IPv4\/IPv6 address, CIDR or alias/],
  ])("rejects %j", (lines, line, message) => {
    const fw = parse(`[IPSET s1]\n${lines}\n`);
    expect(errors(fw).map((d) => d.line)).toEqual([line]);
    expect(errors(fw)[0]?.message).toMatch(message);
  });

  it("starts duplicate detection afresh in each ipset", () => {
    expect(parse("[IPSET a1]\n10.0.0.1\n[IPSET b1]\n10.0.0.1\n").diagnostics).toEqual([]);
  });
});

function bytes(text: string): number[] {
  return [...new TextEncoder().encode(text)];
}

function wellFormed(fw: FwFile, file: string, kind: FwKind): void {
  expect(fw.file).toBe(file);
  expect(fw.kind).toBe(kind);
  for (const d of fw.diagnostics) {
    expect(d.file).toBe(file);
    expect(Number.isInteger(d.line) && d.line >= 0).toBe(true);
    expect(["error", "warning", "info"]).toContain(d.severity);
    expect(typeof d.message).toBe("string");
    expect(d.message.length).toBeGreaterThan(0);
    expect(d.message).not.toMatch(/internal parser error/);
  }
  const rules = [...fw.rules, ...Object.values(fw.groups).flatMap((g) => g.rules)];
  for (const r of rules) {
    expect(["in", "out", "forward", "group"]).toContain(r.type);
    expect(Number.isInteger(r.line) && r.line >= 1).toBe(true);
    if (r.type !== "group") expect(["ACCEPT", "DROP", "REJECT"]).toContain(r.action);
    for (const v of [r.source, r.dest, r.proto, r.dport, r.sport, r.iface]) {
      if (v !== null) expect(v).toMatch(/^[^\s#]+$/);
    }
  }
}

describe("hostile input", () => {
  const hostile: Array<[string, string | Uint8Array]> = [
    ["quotes", `[RULES]\nIN ACCEPT -source "10.0.0.1" -dest '10.0.0.2'\n`],
    ["shell", "[RULES]\nIN ACCEPT -source $(reboot) -dport `id`;rm -rf /\n"],
    ["semicolon", "[RULES]\nIN ACCEPT; DROP\n[OPTIONS]\nenable: 1;\n"],
    ["NUL", "[RULES]\nIN\u0000ACCEPT -p tcp\u0000\n\u0000\n"],
    ["control", "[RULES]\nIN ACCEPT \u001b[31m -p tcp\u0007\n"],
    ["long line", `[RULES]\nIN ACCEPT -source ${"1.".repeat(200_000)}\n# ${"x".repeat(500_000)}\n`],
    ["many lines", `[RULES]\n${"IN ACCEPT -p tcp -dport 22\n".repeat(2000)}`],
    [
      "latin-1",
      new Uint8Array([...bytes("[RULES]\nIN ACCEPT # "), 0xe4, 0xf6, 0xfc, 0x0a, 0xc0, 0x80, 0x0a]),
    ],
    ["lone surrogate", "[RULES]\nIN ACCEPT # \ud800\n"],
    ["regex food", "[RULES]\nIN ACCEPT -source (((((((((((a*)*)*)*)*)*)*)*)*)*)*)!\n"],
    ["header soup", "[[[[RULES]]]]\n[group]\n[ipset]\n[IPSET \u0000]\n"],
    [
      "proto pollution",
      "[ALIASES]\n__proto__ 10.0.0.1\nconstructor 10.0.0.2\n[IPSET __proto__]\n1.2.3.4\n",
    ],
  ];
  it.each(hostile)("%s never throws and stays well-formed", (_name, text) => {
    for (const kind of ["guest", "host", "cluster"] as const) {
      const fw = parseFwFile(text, FILE, kind);
      wellFormed(fw, FILE, kind);
    }
  });

  it("keeps __proto__ as a plain alias key", () => {
    const fw = parse("[ALIASES]\n__proto__ 10.0.0.1\n");
    expect(Object.keys(fw.aliases)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(fw.aliases)).toBe(Object.prototype);
  });

  it("shows found text quoted, escaped and cut", () => {
    expect(show("a\u0000b\tc")).toBe("'a\\x00b\\tc'");
    expect(show("x".repeat(100))).toBe(`'${"x".repeat(80)}…'`);
  });

  it("parses large files fast", () => {
    const text = `[RULES]\n${"IN ACCEPT -source 10.0.0.0/8 -p tcp -dport 80,443 # NAT:8080\n".repeat(20_000)}`;
    const t0 = performance.now();
    const fw = parse(text);
    expect(fw.rules).toHaveLength(20_000);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});

describe("property: random and mutated rule lines", () => {
  const token = fc.constantFrom(
    "IN",
    "OUT",
    "FORWARD",
    "GROUP",
    "|IN",
    "ACCEPT",
    "DROP",
    "REJECT",
    "SSH(ACCEPT)",
    "web",
    "-i",
    "net0",
    "-source",
    "-dest",
    "-p",
    "--proto",
    "tcp",
    "udp",
    "icmp",
    "-dport",
    "-sport",
    "22",
    "80,443",
    "1000:2000",
    "ssh",
    "-icmp-type",
    "echo-request",
    "-log",
    "info",
    "10.0.0.1",
    "10.0.0.0/8",
    "10.0.0.1-10.0.0.9",
    "::1",
    "+dc/set",
    "dc/alias",
    "#",
    "# NAT:822",
    "[RULES]",
    "[group x1]",
    "[IPSET s1]",
    "[ALIASES]",
    "[OPTIONS]",
    "enable: 1",
    "!",
    ",",
    ":",
  );
  const sep = fc.constantFrom(" ", "  ", "\t", "", "\r", "\u00a0", "\n");
  const line = fc
    .array(fc.tuple(token, sep), { maxLength: 12 })
    .map((parts) => parts.map(([t, s]) => t + s).join(""));
  const mutated = fc
    .tuple(line, fc.integer({ min: 0, max: 200 }), fc.string({ maxLength: 6 }))
    .map(([l, at, junk]) => l.slice(0, at) + junk + l.slice(at));
  const file = fc.array(fc.oneof(line, mutated, fc.string({ maxLength: 40 })), { maxLength: 15 });
  const kind = fc.constantFrom<FwKind>("guest", "host", "cluster");

  it("never throws and always yields a well-formed FwFile", () => {
    fc.assert(
      fc.property(file, kind, fc.boolean(), (lines, k, withHeader) => {
        const text = (withHeader ? "[RULES]\n" : "") + lines.join("\n");
        wellFormed(parseFwFile(text, FILE, k), FILE, k);
      }),
      { numRuns: 400 },
    );
  });

  it("never throws on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), kind, (data, k) => {
        wellFormed(parseFwFile(data, FILE, k), FILE, k);
      }),
      { numRuns: 300 },
    );
  });
});
