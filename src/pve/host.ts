// Facts about the host that the plan depends on: the public address and the ports the host
// itself serves there (SPEC §2.3). Both describe the network namespace we run in.

import { readFile } from "node:fs/promises";
import { run } from "../exec.js";
import { PROTECTED_PORTS } from "../names.js";

/** Ports the host always protects, listening or not: SSH, the web UI, the SPICE proxy. */
export const ALWAYS_PROTECTED: readonly number[] = Object.keys(PROTECTED_PORTS).map(Number);

/** First IPv4 address of `iface` as `ip -4 addr` lists it, or null (no such device, no address). */
export async function interfaceIPv4(iface: string): Promise<string | null> {
  // An interface name never starts with '-' (config validates it); `dev` keeps it an argument.
  const r = await run("ip", ["-4", "-o", "addr", "show", "dev", iface], { timeoutMs: 5000 });
  if (r.code !== 0) return null;
  const m = /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(r.stdout);
  return m?.[1] ?? null;
}

/** /proc/net/tcp prints each 32-bit word of an address in host (little-endian) order. */
function hexWordToBytes(word: string): number[] {
  const bytes: number[] = [];
  for (let i = 6; i >= 0; i -= 2) bytes.push(Number.parseInt(word.slice(i, i + 2), 16));
  return bytes;
}

/** A /proc/net/tcp{,6} address: its IPv4 (plain or v4-mapped), and whether it is the wildcard. */
export function decodeProcAddress(hex: string): { v4: string | null; any: boolean } {
  if (hex.length === 8) {
    const v4 = hexWordToBytes(hex).join(".");
    return { v4, any: v4 === "0.0.0.0" };
  }
  const bytes: number[] = [];
  for (let i = 0; i < 32; i += 8) bytes.push(...hexWordToBytes(hex.slice(i, i + 8)));
  const any = bytes.every((b) => b === 0);
  const mapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 255 && bytes[11] === 255;
  return { v4: mapped ? bytes.slice(12).join(".") : null, any };
}

/** Pure: TCP ports in LISTEN state on `address`, 0.0.0.0 or :: in /proc/net/tcp{,6} text. */
export function parseListening(text: string, address: string): number[] {
  const ports: number[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    // sl local_address rem_address st …; st 0A = LISTEN
    if (f[3] !== "0A" || !f[1]?.includes(":")) continue;
    const [hex = "", portHex = ""] = f[1].split(":");
    const local = decodeProcAddress(hex);
    if (local.any || local.v4 === address) ports.push(Number.parseInt(portHex, 16));
  }
  return ports;
}

export async function listeningPorts(address: string): Promise<number[]> {
  const texts = await Promise.all(
    ["/proc/net/tcp", "/proc/net/tcp6"].map((f) => readFile(f, "utf8").catch(() => "")),
  );
  const ports = new Set(texts.flatMap((t) => parseListening(t, address)));
  return [...ports].sort((a, b) => a - b);
}

/** Pure: `ip -4 -o addr show` → interface → its addresses ("203.0.113.10/24"), in order. */
export function parseIpAddr(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const m = /^\d+:\s+([^\s@:]+)\S*\s+inet\s+(\d+\.\d+\.\d+\.\d+\/\d+)/.exec(line);
    if (!m) continue;
    const list = out.get(m[1] as string) ?? [];
    list.push(m[2] as string);
    out.set(m[1] as string, list);
  }
  return out;
}

/** Every interface's IPv4 addresses in this network namespace (empty when `ip` fails). */
export async function interfaceAddresses(): Promise<Map<string, string[]>> {
  const r = await run("ip", ["-4", "-o", "addr", "show"], { timeoutMs: 5000 });
  return r.code === 0 ? parseIpAddr(r.stdout) : new Map();
}
