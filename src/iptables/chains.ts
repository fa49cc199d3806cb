import type { Owner } from "../model.js";

// The one place chain names are made. Every name pve-nat creates starts with OWNED_PREFIX, and
// every delete is guarded by parseOwnerChain/isOwnedChain, so foreign chains are never touched.

export const OWNED_PREFIX = "PVENAT-";

export const ENTRY_CHAINS = {
  prerouting: "PVENAT-PREROUTING",
  output: "PVENAT-OUTPUT",
  postrouting: "PVENAT-POSTROUTING",
  raw: "PVENAT-RAW",
} as const;

/** iptables' limit on chain names (XT_EXTENSION_MAXNAMELEN - 1). */
export const MAX_CHAIN_NAME = 28;

const OWNER_CHAIN = /^PVENAT-(NODE|[1-9][0-9]{0,8})-(DNAT|SNAT)$/;

export function ownerChain(owner: Owner, kind: "DNAT" | "SNAT"): string {
  if (owner !== "NODE" && !(Number.isInteger(owner) && owner >= 1 && owner <= 999_999_999)) {
    throw new Error(`invalid chain owner ${String(owner)}`);
  }
  const name = `${OWNED_PREFIX}${owner}-${kind}`;
  if (name.length > MAX_CHAIN_NAME) throw new Error(`chain name too long: ${name}`);
  return name;
}

export type OwnerChainName = { owner: Owner; kind: "DNAT" | "SNAT" };

// Names repeat every sync (thousands with many guests): parsed once each, bounded. Each key is
// a copy: a name read from iptables-save is a slice of the whole save text (≈ 1.8 MB at 1000
// guests), and a key kept for the daemon's life pinned the first such text (issue 10).
const parsed = new Map<string, OwnerChainName | null>();

export function parseOwnerChain(name: string): OwnerChainName | null {
  const hit = parsed.get(name);
  if (hit !== undefined) return hit;
  const m = OWNER_CHAIN.exec(name);
  const value: OwnerChainName | null = m
    ? { owner: m[1] === "NODE" ? "NODE" : Number(m[1]), kind: m[2] as "DNAT" | "SNAT" }
    : null;
  if (parsed.size > 200_000) parsed.clear();
  parsed.set(Buffer.from(name).toString(), value);
  return value;
}

const ENTRY_NAMES: ReadonlySet<string> = new Set(Object.values(ENTRY_CHAINS));

export function isEntryChain(name: string): boolean {
  return ENTRY_NAMES.has(name);
}

/** A chain pve-nat may declare, empty or delete. */
export function isOwnedChain(name: string): boolean {
  return isEntryChain(name) || parseOwnerChain(name) !== null;
}

/** Owners in plan order: NODE first, then by vmid. */
export function compareOwners(a: Owner, b: Owner): number {
  if (a === b) return 0;
  if (a === "NODE") return -1;
  if (b === "NODE") return 1;
  return a - b;
}
