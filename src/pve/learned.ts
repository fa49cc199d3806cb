// What the node already knows about guest addresses (SPEC §8), parsed from the files and
// command output that hold it: the PVE IPAM (pve-ipam-state.json, mac-cache.json), dnsmasq's
// lease files and static hosts, the IPv4 neighbour table, and the guest agent's
// network-get-interfaces answer. Pure: text in, values and diagnostics out; nothing throws.
// Every MAC is lower-cased (Proxmox writes upper case, dnsmasq lower case).

import type { AddressFacts, Diagnostic, LearnedIp } from "../model.js";
import { isIPv4 } from "./address.js";

const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/** A MAC in canonical (lower) case, or null when `text` is not one. */
export function normalMac(text: unknown): string | null {
  if (typeof text !== "string") return null;
  const m = text.trim().toLowerCase();
  return MAC.test(m) ? m : null;
}

/** An IPv4 address a forward may lead to: no loopback, link-local, multicast, 0/8, broadcast. */
export function usableIPv4(text: unknown): text is string {
  if (typeof text !== "string" || !isIPv4(text)) return false;
  const [a = 0, b = 0] = text.split(".").map(Number);
  if (a === 0 || a === 127 || a >= 224) return false;
  return !(a === 169 && b === 254);
}

function push<T>(map: Record<string, T[]>, key: string, value: T): void {
  const list = map[key];
  if (list) list.push(value);
  else map[key] = [value];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function json(text: string, file: string, diags: Diagnostic[]): Record<string, unknown> | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    diags.push({ file, line: 0, severity: "warning", message: `not valid JSON (${why}): ignored` });
    return null;
  }
  if (!isObject(v)) {
    diags.push({ file, line: 0, severity: "warning", message: "not a JSON object: ignored" });
    return null;
  }
  return v;
}

/**
 * pve-ipam-state.json (pve-network Ipams/PVEPlugin.pm):
 * `{"zones": {Z: {"subnets": {CIDR: {"ips": {IP: {"mac", "vmid", "hostname"} | {"gateway": 1}}}}}}}`.
 * Gateway entries and IPv6 addresses are not guest addresses.
 */
export function parseIpamState(
  text: string,
  file: string,
): { ipam: AddressFacts["ipam"]; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const ipam: AddressFacts["ipam"] = {};
  const root = json(text, file, diagnostics);
  const zones = root?.zones;
  if (root && !isObject(zones)) {
    diagnostics.push({ file, line: 0, severity: "warning", message: 'no "zones" object: ignored' });
  }
  for (const [zone, z] of Object.entries(isObject(zones) ? zones : {})) {
    const subnets = isObject(z) ? z.subnets : null;
    for (const s of Object.values(isObject(subnets) ? subnets : {})) {
      const ips = isObject(s) ? s.ips : null;
      for (const [ip, entry] of Object.entries(isObject(ips) ? ips : {})) {
        if (!isObject(entry) || entry.gateway !== undefined || !usableIPv4(ip)) continue;
        const mac = normalMac(entry.mac);
        if (mac === null) continue;
        const vmid = Number(entry.vmid);
        push(ipam, mac, { ip, zone, vmid: Number.isInteger(vmid) && vmid > 0 ? vmid : null });
      }
    }
  }
  return { ipam, diagnostics };
}

/** mac-cache.json: `{"macs": {MAC: {"ip4": IP, "ip6": IP}}}`. */
export function parseMacCache(
  text: string,
  file: string,
): { macCache: AddressFacts["macCache"]; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const macCache: AddressFacts["macCache"] = {};
  const root = json(text, file, diagnostics);
  const macs = root?.macs;
  for (const [key, entry] of Object.entries(isObject(macs) ? macs : {})) {
    const mac = normalMac(key);
    const ip = isObject(entry) ? entry.ip4 : null;
    if (mac !== null && usableIPv4(ip)) macCache[mac] = ip;
  }
  return { macCache, diagnostics };
}

/** dnsmasq's lease file: `<expiry> <mac> <ip> <hostname> <client-id>` per IPv4 lease (IPv6
 *  leases follow a `duid` line and are skipped, as are lines that are not leases). */
export function parseLeases(
  text: string,
  zone: string | null,
  into: AddressFacts["leases"] = {},
): AddressFacts["leases"] {
  for (const line of text.split("\n")) {
    const [expiry, macText, ip] = line.trim().split(/\s+/);
    const mac = normalMac(macText);
    if (mac === null || !/^\d+$/.test(expiry ?? "") || !usableIPv4(ip)) continue;
    push(into, mac, { ip, zone, expiry: Number(expiry) });
  }
  return into;
}

/** /etc/dnsmasq.d/<zone>/ethers as pve-network writes it (dhcp-hostsfile lines
 *  `mac,ip4[,ip6]`); dnsmasq's other host forms (`id:…`, names, `set:` tags) are skipped. */
export function parseEthers(
  text: string,
  zone: string | null,
  into: Record<string, LearnedIp[]> = {},
): Record<string, LearnedIp[]> {
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const parts = line.split(",").map((p) => p.trim());
    const mac = normalMac(parts[0]);
    const ip = parts.slice(1).find((p) => usableIPv4(p));
    if (mac !== null && ip !== undefined) push(into, mac, { ip, zone });
  }
  return into;
}

/** Neighbour states whose MAC is (or recently was) confirmed. */
const NEIGH_STATES = new Set(["REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"]);

/** `ip -4 neigh show` output (`<ip> dev <dev> lladdr <mac> [router] <STATE>`; `dev` is left
 *  out when the command named one: then `dev` is it). */
export function parseNeighbours(
  text: string,
  dev: string | null = null,
  into: AddressFacts["neighbours"] = {},
): AddressFacts["neighbours"] {
  for (const line of text.split("\n")) {
    const w = line.trim().split(/\s+/);
    const ip = w[0];
    const at = (k: string) => {
      const i = w.indexOf(k);
      return i > 0 ? w[i + 1] : undefined;
    };
    const mac = normalMac(at("lladdr"));
    const device = at("dev") ?? dev;
    const state = w[w.length - 1] ?? "";
    if (mac === null || !device || !usableIPv4(ip) || !NEIGH_STATES.has(state)) continue;
    push(into, mac, { ip, dev: device, state });
  }
  return into;
}

/**
 * The guest agent's `network-get-interfaces` answer (qemu-ga: an array of
 * `{"name", "hardware-address", "ip-addresses": [{"ip-address-type", "ip-address", "prefix"}]}`;
 * `qm guest cmd` prints it as JSON). Defensive: anything else is null; loopback, link-local
 * and IPv6 addresses are dropped; an interface without a MAC is skipped.
 */
export function parseAgentInterfaces(text: string): Array<{ mac: string; ips: string[] }> | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  // Some versions wrap the answer: {"return": [...]}.
  if (isObject(v) && Array.isArray(v.return)) v = v.return;
  if (!Array.isArray(v)) return null;
  const out: Array<{ mac: string; ips: string[] }> = [];
  for (const iface of v) {
    if (!isObject(iface)) continue;
    const mac = normalMac(iface["hardware-address"]);
    if (mac === null || mac === "00:00:00:00:00:00") continue;
    const list = Array.isArray(iface["ip-addresses"]) ? iface["ip-addresses"] : [];
    const ips: string[] = [];
    for (const a of list) {
      if (!isObject(a) || a["ip-address-type"] !== "ipv4") continue;
      const ip = a["ip-address"];
      if (usableIPv4(ip) && !ips.includes(ip)) ips.push(ip);
    }
    out.push({ mac, ips });
  }
  return out;
}

export function emptySdn(): AddressFacts["sdn"] {
  return { zones: {}, vnets: {}, subnets: [] };
}

export function emptyFacts(): AddressFacts {
  return {
    ipam: {},
    macCache: {},
    leases: {},
    ethers: {},
    neighbours: {},
    agent: {},
    sdn: emptySdn(),
  };
}
