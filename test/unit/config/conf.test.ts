import { describe, expect, it } from "vitest";
import { CONFIG_KEYS, DEFAULTS, parseConfig } from "../../../src/config/conf.js";
import type { Config } from "../../../src/model.js";

const FILE = "/etc/pve-nat/pve-nat.conf";

function ok(text: string): Config {
  const r = parseConfig(text, FILE);
  expect(r.errors).toEqual([]);
  expect(r.unknownKeys).toEqual([]);
  return r.config;
}

describe("parseConfig", () => {
  it("empty file, comments and blank lines give the defaults", () => {
    expect(ok("")).toEqual(DEFAULTS);
    expect(ok("# comment\n; other comment\n\n   \n  # indented comment\n")).toEqual(DEFAULTS);
  });

  it("defaults are those of SPEC §5", () => {
    expect(DEFAULTS).toEqual({
      externalInterface: "vmbr0",
      publicAddress: "auto",
      allowHostPorts: [],
      hairpin: false,
      hostAccess: true,
      ipForward: "enable",
      conntrackZoneFix: "auto",
      iptables: "auto",
      node: null,
      pollIntervalMs: 1000,
      driftIntervalMs: 30000,
      startGraceMs: 120000,
      hookTimeoutMs: 1500,
      socket: "/run/pve-nat/bus.sock",
      eventsSocket: "/run/pve-nat/events.sock",
      logLevel: "info",
      metricsTextfile: "/var/lib/prometheus/node-exporter/pve-nat.prom",
    });
  });

  it("lists every key of SPEC §5", () => {
    expect([...CONFIG_KEYS].sort()).toEqual(
      [
        "external_interface",
        "public_address",
        "allow_host_ports",
        "hairpin",
        "host_access",
        "ip_forward",
        "conntrack_zone_fix",
        "iptables",
        "node",
        "poll_interval_ms",
        "drift_interval_ms",
        "start_grace_ms",
        "hook_timeout_ms",
        "socket",
        "events_socket",
        "log_level",
        "metrics_textfile",
      ].sort(),
    );
  });

  it.each<[string, Partial<Config>]>([
    ["external_interface = vmbr1", { externalInterface: "vmbr1" }],
    ["external_interface=enp3s0f0.100", { externalInterface: "enp3s0f0.100" }],
    ["public_address = 203.0.113.10", { publicAddress: "203.0.113.10" }],
    ["public_address = auto", { publicAddress: "auto" }],
    ["allow_host_ports =", { allowHostPorts: [] }],
    ["allow_host_ports = 22", { allowHostPorts: [22] }],
    ["allow_host_ports = 22, 8006 ,3128,22", { allowHostPorts: [22, 8006, 3128] }],
    ["hairpin = yes", { hairpin: true }],
    ["hairpin = true", { hairpin: true }],
    ["hairpin = 1", { hairpin: true }],
    ["hairpin = YES", { hairpin: true }],
    ["hairpin = no", { hairpin: false }],
    ["host_access = no", { hostAccess: false }],
    ["host_access = false", { hostAccess: false }],
    ["host_access = 0", { hostAccess: false }],
    ["ip_forward = check", { ipForward: "check" }],
    ["ip_forward = ignore", { ipForward: "ignore" }],
    ["ip_forward = enable", { ipForward: "enable" }],
    ["conntrack_zone_fix = yes", { conntrackZoneFix: "yes" }],
    ["conntrack_zone_fix = no", { conntrackZoneFix: "no" }],
    ["iptables = nft", { iptables: "nft" }],
    ["iptables = legacy", { iptables: "legacy" }],
    ["node = pve1", { node: "pve1" }],
    ["node = pve-node-02", { node: "pve-node-02" }],
    ["node =", { node: null }],
    ["poll_interval_ms = 250", { pollIntervalMs: 250 }],
    ["drift_interval_ms = 60000", { driftIntervalMs: 60000 }],
    ["start_grace_ms = 0", { startGraceMs: 0 }],
    ["hook_timeout_ms = 3000", { hookTimeoutMs: 3000 }],
    ["socket = /tmp/x/bus.sock", { socket: "/tmp/x/bus.sock" }],
    ["events_socket = /tmp/x/ev.sock", { eventsSocket: "/tmp/x/ev.sock" }],
    ["log_level = debug", { logLevel: "debug" }],
    ["log_level = trace", { logLevel: "trace" }],
    ["  \tlog_level\t=\twarn  ", { logLevel: "warn" }],
    ["log_level = error\r", { logLevel: "error" }],
    ["metrics_textfile = none", { metricsTextfile: null }],
    ["metrics_textfile = /srv/prom/nat.prom", { metricsTextfile: "/srv/prom/nat.prom" }],
  ])("%j", (line, expected) => {
    expect(ok(`${line}\n`)).toEqual({ ...DEFAULTS, ...expected });
  });

  it("reads a whole file with CRLF, a BOM and no final newline", () => {
    const text =
      "\uFEFF# pve-nat\r\nexternal_interface = vmbr1\r\npublic_address = 203.0.113.10\r\nhairpin = yes";
    expect(ok(text)).toEqual({
      ...DEFAULTS,
      externalInterface: "vmbr1",
      publicAddress: "203.0.113.10",
      hairpin: true,
    });
  });

  it.each<[string, number, string]>([
    ["[main]", 1, 'sections are not supported (found "[main]")'],
    ["external_interface vmbr0", 1, 'expected "key = value"'],
    ["= vmbr0", 1, 'expected "key = value"'],
    ["hairpin = yes\nhairpin = no", 2, "duplicate key hairpin (first set on line 1)"],
    [
      "hairpin = maybe",
      1,
      'bad value for hairpin: expected yes or no (also true/false, 1/0), found "maybe"',
    ],
    ["hairpin =", 1, "bad value for hairpin"],
    [
      "metrics_textfile = pve-nat.prom",
      1,
      "bad value for metrics_textfile: expected none or an absolute",
    ],
    ["host_access = on", 1, "bad value for host_access"],
    [
      "external_interface = vmbr0 # the uplink",
      1,
      "(comments are allowed only at the start of a line)",
    ],
    ["external_interface = a/b", 1, "bad value for external_interface: expected an interface name"],
    ["external_interface = averyveryverylongname", 1, "bad value for external_interface"],
    ["external_interface =", 1, "bad value for external_interface"],
    [
      "public_address = 203.0.113.256",
      1,
      "bad value for public_address: expected auto or an IPv4 address",
    ],
    ["public_address = 2001:db8::1", 1, "bad value for public_address"],
    ["public_address = 203.0.113.0/24", 1, "bad value for public_address"],
    [
      "allow_host_ports = 0",
      1,
      'bad value for allow_host_ports: expected a comma list of ports 1-65535, found "0"',
    ],
    ["allow_host_ports = 65536", 1, "bad value for allow_host_ports"],
    ["allow_host_ports = 22,,80", 1, "bad value for allow_host_ports"],
    ["allow_host_ports = ssh", 1, "bad value for allow_host_ports"],
    ["ip_forward = yes", 1, "bad value for ip_forward: expected one of enable, check, ignore"],
    [
      "conntrack_zone_fix = on",
      1,
      "bad value for conntrack_zone_fix: expected one of auto, yes, no",
    ],
    ["iptables = nftables", 1, "bad value for iptables: expected one of auto, nft, legacy"],
    ["node = ../etc", 1, "bad value for node: expected a node name"],
    ["node = pve1.example.com", 1, "bad value for node"],
    [
      "poll_interval_ms = 1s",
      1,
      "bad value for poll_interval_ms: expected a whole number of milliseconds",
    ],
    [
      "poll_interval_ms = 10",
      1,
      "bad value for poll_interval_ms: expected 100 to 2147483647 milliseconds",
    ],
    ["drift_interval_ms = -1", 1, "bad value for drift_interval_ms"],
    ["start_grace_ms = 1.5", 1, "bad value for start_grace_ms"],
    ["hook_timeout_ms = 99999999999", 1, "bad value for hook_timeout_ms"],
    ["socket = run/bus.sock", 1, "bad value for socket: expected an absolute file path"],
    ["events_socket = /run/pve nat/ev.sock", 1, "bad value for events_socket"],
    [
      "log_level = verbose",
      1,
      "bad value for log_level: expected one of fatal, error, warn, info, debug, trace",
    ],
    ["# ok\n\nhairpin = x", 3, "bad value for hairpin"],
  ])("%j is an error at line %i", (text, line, message) => {
    const r = parseConfig(text, FILE);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ file: FILE, line, severity: "error" });
    expect(r.errors[0]?.message).toContain(message);
    expect(r.unknownKeys).toEqual([]);
  });

  it("a bad value keeps that key's default and the other keys", () => {
    const r = parseConfig("hairpin = maybe\nexternal_interface = vmbr9\n", FILE);
    expect(r.config).toEqual({ ...DEFAULTS, externalInterface: "vmbr9" });
    expect(r.errors.map((e) => e.line)).toEqual([1]);
  });

  it("reports every error, not only the first", () => {
    const r = parseConfig("[x]\nhairpin = 2\nlog_level = loud\n", FILE);
    expect(r.errors.map((e) => e.line)).toEqual([1, 2, 3]);
  });

  it("unknown keys are reported separately, as warnings, with their line", () => {
    const r = parseConfig("hairpin = yes\nexternal_iface = vmbr1\nHairpin = no\n", FILE);
    expect(r.errors).toEqual([]);
    expect(r.config).toEqual({ ...DEFAULTS, hairpin: true });
    expect(r.unknownKeys).toEqual([
      { file: FILE, line: 2, severity: "warning", message: "unknown key external_iface" },
      { file: FILE, line: 3, severity: "warning", message: "unknown key Hairpin" },
    ]);
  });

  it("does not share the defaults' arrays with a parsed config", () => {
    const r = parseConfig("", FILE);
    r.config.allowHostPorts.push(1);
    expect(DEFAULTS.allowHostPorts).toEqual([]);
  });
});
