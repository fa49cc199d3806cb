// Facts about the host that the plan depends on: the public address and the ports the host
// itself serves, on every address or one (SPEC §2.3). Both describe the network namespace we
// run in.

import { readFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { run } from "../exec.js";
import type { HostPorts } from "../model.js";

type ListInterfaces = () => ReturnType<typeof networkInterfaces>;

function inProcess(list: ListInterfaces, iface: string): string | null {
  try {
    return list()[iface]?.find((a) => a.family === "IPv4")?.address ?? null;
  } catch {
    return null;
  }
}

async function askIp(iface: string): Promise<string | null> {
  // An interface name never starts with '-' (config validates it); `dev` keeps it an argument.
  const r = await run("ip", ["-4", "-o", "addr", "show", "dev", iface], { timeoutMs: 5000 });
  if (r.code !== 0) return null;
  return /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(r.stdout)?.[1] ?? null;
}

/** Time between two `ip` runs for an interface getifaddrs leaves out. */
export const ASK_IP_EVERY_MS = 10_000;

/** First IPv4 address of an interface as `ip -4 addr` lists it, or null (no such device, no
 *  address), for a poller. getifaddrs (os.networkInterfaces) in-process on every call, in the
 *  kernel's order (primary first) as `ip` prints it: spawning `ip` from the daemon cost more than
 *  the poll itself (issue 10). libuv leaves out interfaces that are down or without carrier (a
 *  vmbr0 whose uplink is unplugged still holds the public address): only for those `ip` runs,
 *  at most every `everyMs` per interface, the last answer in between. The
 *  bench's vmbr0 (a bridge without ports) had the daemon spawn `ip` on every poll; a node whose
 *  uplink lost its carrier would too. Addresses of such an interface carry no traffic until
 *  the carrier is back, and then getifaddrs answers at once. */
export function interfaceIPv4Reader(
  o: {
    everyMs?: number;
    now?: () => number;
    list?: ListInterfaces;
    ask?: (iface: string) => Promise<string | null>;
  } = {},
): (iface: string) => Promise<string | null> {
  const everyMs = o.everyMs ?? ASK_IP_EVERY_MS;
  const now = o.now ?? (() => performance.now());
  const list = o.list ?? networkInterfaces;
  const ask = o.ask ?? askIp;
  let last: { iface: string; at: number; address: string | null } | null = null;
  return async (iface) => {
    const fast = inProcess(list, iface);
    if (fast !== null) {
      last = null;
      return fast;
    }
    if (last?.iface === iface && now() - last.at < everyMs) return last.address;
    const address = await ask(iface);
    last = { iface, at: now(), address };
    return address;
  };
}

/** How long the public address is trusted while the node's IPv4 routing reads the same. */
export const PUBLIC_ADDRESS_EVERY_MS = 60_000;

function readFibTrie(): string | null {
  try {
    return readFileSync("/proc/net/fib_trie", "latin1");
  } catch {
    return null;
  }
}

/** interfaceIPv4Reader for a poller on a node with many interfaces: getifaddrs lists every
 *  interface with every address (with 1000 bridges up: 19 ms a call, 1.9 % of a core at one
 *  poll a second; a node has a tap, fwbr, fwpr and fwln device per firewalled guest NIC). It
 *  is asked only when the namespace's IPv4 addresses may have changed, and at least every
 *  `everyMs`. With `addressEvents` (the daemon's addon, src/native/addrwatch.c: true when the
 *  kernel announced an address change since the last call) that costs one system call a pass;
 *  without it, when /proc/net/fib_trie reads differently — every IPv4 address and route of the
 *  namespace, a few KB however many interfaces carry none (≈ 0.1–0.4 ms), and an address moved
 *  to another interface can leave it as it was. Without either (not Linux) it is asked every
 *  time. */
export function routedIPv4Reader(
  o: {
    everyMs?: number;
    now?: () => number;
    fib?: () => string | null;
    addressEvents?: () => boolean;
    read?: (iface: string) => Promise<string | null>;
  } = {},
): (iface: string) => Promise<string | null> {
  const everyMs = o.everyMs ?? PUBLIC_ADDRESS_EVERY_MS;
  const now = o.now ?? (() => performance.now());
  // Either way a text that reads the same while nothing changed.
  let events = 0;
  const { addressEvents } = o;
  const fib = addressEvents
    ? () => String(addressEvents() ? ++events : events)
    : (o.fib ?? readFibTrie);
  const read = o.read ?? interfaceIPv4Reader();
  let last: { iface: string; fib: string; at: number; address: string | null } | null = null;
  return async (iface) => {
    const text = fib();
    if (text !== null && last?.iface === iface && last.fib === text && now() - last.at < everyMs)
      return last.address;
    const address = await read(iface);
    last = text === null ? null : { iface, fib: text, at: now(), address };
    return address;
  };
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

/** Pure: the LISTEN sockets of /proc/net/tcp{,6} texts, by bound address (sorted). An IPv6
 *  socket bound to one IPv6 address is no IPv4 address's business and is left out. */
export function parseListening(texts: readonly string[]): HostPorts {
  const any = new Set<number>();
  const at = new Map<string, Set<number>>();
  for (const text of texts) {
    for (const line of text.split("\n")) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st …; st 0A = LISTEN
      if (f[3] !== "0A" || !f[1]?.includes(":")) continue;
      const [hex = "", portHex = ""] = f[1].split(":");
      const port = Number.parseInt(portHex, 16);
      const local = decodeProcAddress(hex);
      if (local.any) any.add(port);
      else if (local.v4 !== null) {
        let ports = at.get(local.v4);
        if (!ports) {
          ports = new Set();
          at.set(local.v4, ports);
        }
        ports.add(port);
      }
    }
  }
  const sorted = (xs: Iterable<number>) => [...xs].sort((a, b) => a - b);
  const out: HostPorts = { any: sorted(any), at: {} };
  for (const address of [...at.keys()].sort()) out.at[address] = sorted(at.get(address) ?? []);
  return out;
}

export function sameHostPorts(a: HostPorts, b: HostPorts): boolean {
  const same = (x: readonly number[], y: readonly number[]) =>
    x.length === y.length && x.every((v, i) => v === y[i]);
  const ka = Object.keys(a.at);
  const kb = Object.keys(b.at);
  return (
    same(a.any, b.any) &&
    ka.length === kb.length &&
    ka.every((k, i) => k === kb[i] && same(a.at[k] ?? [], b.at[k] ?? []))
  );
}

/** The host's TCP listening sockets in the network namespace we run in. */
export async function listeningPorts(): Promise<HostPorts> {
  // Read synchronously: procfs answers from memory, and the promise route (open, fstat, read,
  // close, each through the thread pool) cost the daemon's poll more than the parse.
  const read = (f: string) => {
    try {
      return readFileSync(f, "utf8");
    } catch {
      return "";
    }
  };
  return parseListening([read("/proc/net/tcp"), read("/proc/net/tcp6")]);
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
