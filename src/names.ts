// Names and patterns more than one stage checks: written once here, so that the loader, the bus,
// the CLI and the compiler can never disagree on what counts as a VMID, a node or an interface.
// Pure, and free of imports: the hook's fast path loads it too.

/** Proxmox VMIDs (pve-common `pve_verify_vmid`): 100 … 999999999, in decimal without a leading
 *  zero. Guests 1..99 cannot be created, so a `99.conf` is a stray file, not a guest. */
export const MIN_VMID = 100;
export const MAX_VMID = 999_999_999;
export const VMID_PATTERN = "[1-9][0-9]{2,8}";
const VMID_TEXT = new RegExp(`^${VMID_PATTERN}$`);

export function isVmid(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= MIN_VMID && (value as number) <= MAX_VMID;
}

/** Strict decimal VMID text ("107"), as Proxmox writes it in file names and hook arguments. */
export function parseVmid(text: string): number | null {
  if (!VMID_TEXT.test(text)) return null;
  const n = Number(text);
  return isVmid(n) ? n : null;
}

/** Proxmox node names are DNS labels; they become path components and PVE_MIGRATED_FROM. */
export const NODE_NAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** A Linux interface name as iptables takes it after -i/-o: 1..15 bytes, '+' its wildcard. */
export const IFACE = /^[A-Za-z0-9_.+-]{1,15}$/;
/** One real interface as the config names it: IFACE without the wildcard, starting with a letter
 *  or digit so that it stays an argument (not an option) on `ip … dev`. */
export const IFACE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

const IPV4_OCTET = "(?:25[0-5]|(?:2[0-4]|1[0-9]|[1-9])?[0-9])";
/** PVE::Tools $IPV4RE: dotted quad, no leading zeros. Non-capturing, to embed in larger patterns. */
export const IPV4_PATTERN = `(?:(?:${IPV4_OCTET}\\.){3}${IPV4_OCTET})`;
export const IPV4 = new RegExp(`^${IPV4_PATTERN}$`);

/** Host ports always protected from forwards, listening or not (SPEC §2.3), with what serves them. */
export const PROTECTED_PORTS: Readonly<Record<number, string>> = Object.freeze({
  22: "SSH",
  8006: "web UI",
  3128: "SPICE proxy",
});
