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

export function parseOwnerChain(name: string): { owner: Owner; kind: "DNAT" | "SNAT" } | null {
  const m = OWNER_CHAIN.exec(name);
  if (!m) return null;
  const owner: Owner = m[1] === "NODE" ? "NODE" : Number(m[1]);
  return { owner, kind: m[2] as "DNAT" | "SNAT" };
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
