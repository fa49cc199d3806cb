// /etc/pve-nat/pve-nat.conf (SPEC §5): a flat file of `key = value` lines.
//
// Not the `ini` package: it accepts `[sections]`, strips inline `;`/`#` comments, lets a
// duplicate key silently win and reports no line numbers — each of which §5 forbids or
// needs. The grammar is one line shape, so a strict line parser is smaller than the
// checks that would have to be bolted onto `ini`'s output.

import type { Config, Diagnostic } from "../model.js";
import { IFACE_NAME, IPV4, NODE_NAME } from "../names.js";

/** Debian's prometheus-node-exporter reads *.prom files of this directory (its default
 *  --collector.textfile.directory). The daemon writes only when the directory exists. */
export const DEFAULT_METRICS_TEXTFILE = "/var/lib/prometheus/node-exporter/pve-nat.prom";

export const DEFAULTS: Config = Object.freeze({
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
  metricsTextfile: DEFAULT_METRICS_TEXTFILE,
}) as Config;

type Parsed = { value: unknown } | { error: string };

/** setTimeout's ceiling. */
const MAX_MS = 2_147_483_647;

function oneOf(...allowed: string[]): (v: string) => Parsed {
  return (v) =>
    allowed.includes(v) ? { value: v } : { error: `expected one of ${allowed.join(", ")}` };
}

function bool(v: string): Parsed {
  const lower = v.toLowerCase();
  if (["yes", "true", "1"].includes(lower)) return { value: true };
  if (["no", "false", "0"].includes(lower)) return { value: false };
  return { error: "expected yes or no (also true/false, 1/0)" };
}

function millis(min: number): (v: string) => Parsed {
  return (v) => {
    if (!/^\d+$/.test(v)) return { error: "expected a whole number of milliseconds" };
    const n = Number(v);
    if (n < min || n > MAX_MS) return { error: `expected ${min} to ${MAX_MS} milliseconds` };
    return { value: n };
  };
}

function absolutePath(v: string): Parsed {
  if (!v.startsWith("/") || /[\s\0]/.test(v) || v.endsWith("/")) {
    return { error: "expected an absolute file path without spaces" };
  }
  return { value: v };
}

function portList(v: string): Parsed {
  if (v === "") return { value: [] };
  const ports: number[] = [];
  for (const part of v.split(",")) {
    const p = part.trim();
    if (!/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535) {
      return { error: `expected a comma list of ports 1-65535, found "${p}"` };
    }
    if (!ports.includes(Number(p))) ports.push(Number(p));
  }
  return { value: ports };
}

const KEYS: Record<string, { field: keyof Config; parse: (v: string) => Parsed }> = {
  external_interface: {
    field: "externalInterface",
    parse: (v) => (IFACE_NAME.test(v) ? { value: v } : { error: "expected an interface name" }),
  },
  public_address: {
    field: "publicAddress",
    parse: (v) =>
      v === "auto" || IPV4.test(v) ? { value: v } : { error: "expected auto or an IPv4 address" },
  },
  allow_host_ports: { field: "allowHostPorts", parse: portList },
  hairpin: { field: "hairpin", parse: bool },
  host_access: { field: "hostAccess", parse: bool },
  ip_forward: { field: "ipForward", parse: oneOf("enable", "check", "ignore") },
  conntrack_zone_fix: { field: "conntrackZoneFix", parse: oneOf("auto", "yes", "no") },
  iptables: { field: "iptables", parse: oneOf("auto", "nft", "legacy") },
  node: {
    field: "node",
    parse: (v) =>
      v === ""
        ? { value: null }
        : NODE_NAME.test(v)
          ? { value: v }
          : { error: "expected a node name" },
  },
  poll_interval_ms: { field: "pollIntervalMs", parse: millis(100) },
  drift_interval_ms: { field: "driftIntervalMs", parse: millis(1000) },
  start_grace_ms: { field: "startGraceMs", parse: millis(0) },
  hook_timeout_ms: { field: "hookTimeoutMs", parse: millis(100) },
  socket: { field: "socket", parse: absolutePath },
  events_socket: { field: "eventsSocket", parse: absolutePath },
  log_level: {
    field: "logLevel",
    parse: oneOf("fatal", "error", "warn", "info", "debug", "trace"),
  },
  metrics_textfile: {
    field: "metricsTextfile",
    parse: (v) =>
      v === "none"
        ? { value: null }
        : "error" in absolutePath(v)
          ? { error: "expected none or an absolute file path without spaces" }
          : { value: v },
  },
};

/** The keys §5 defines, in the order the README lists them. */
export const CONFIG_KEYS: readonly string[] = Object.keys(KEYS);

/** Pure. Unknown keys are reported separately (severity "warning"): `check` makes them
 *  errors, the daemon logs them and keeps running. A bad value leaves that key's default. */
export function parseConfig(
  text: string,
  file: string,
): { config: Config; errors: Diagnostic[]; unknownKeys: Diagnostic[] } {
  const config: Config = { ...DEFAULTS, allowHostPorts: [] };
  const errors: Diagnostic[] = [];
  const unknownKeys: Diagnostic[] = [];
  const seen = new Map<string, number>();
  const err = (line: number, message: string) =>
    errors.push({ file, line, severity: "error", message });

  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trim();
    if (trimmed === "" || trimmed.startsWith("#") || trimmed.startsWith(";")) return;
    if (trimmed.startsWith("[")) {
      err(line, `sections are not supported (found "${trimmed}"): use plain key = value lines`);
      return;
    }
    const eq = trimmed.indexOf("=");
    if (eq < 0) {
      err(line, `expected "key = value", found "${trimmed}"`);
      return;
    }
    const key = trimmed.slice(0, eq).trim();
    const value = trimmed.slice(eq + 1).trim();
    if (key === "") {
      err(line, `expected "key = value", found "${trimmed}"`);
      return;
    }
    const first = seen.get(key);
    if (first !== undefined) {
      err(line, `duplicate key ${key} (first set on line ${first})`);
      return;
    }
    seen.set(key, line);
    const spec = KEYS[key];
    if (!spec) {
      unknownKeys.push({ file, line, severity: "warning", message: `unknown key ${key}` });
      return;
    }
    const parsed = spec.parse(value);
    if ("error" in parsed) {
      const hint = /\s[#;]/.test(value)
        ? " (comments are allowed only at the start of a line)"
        : "";
      err(line, `bad value for ${key}: ${parsed.error}, found "${value}"${hint}`);
      return;
    }
    (config as unknown as Record<string, unknown>)[spec.field] = parsed.value;
  });
  return { config, errors, unknownKeys };
}
