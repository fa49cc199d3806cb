import path from "node:path";

// `--root DIR` moves every absolute path pve-nat reads or writes under DIR (SPEC §6), except
// /proc and /sys, which always describe the namespace we run in.

export function rooted(root: string | undefined, absolute: string): string {
  if (!root || root === "/") return absolute;
  if (absolute === "/proc" || absolute.startsWith("/proc/")) return absolute;
  if (absolute === "/sys" || absolute.startsWith("/sys/")) return absolute;
  return path.join(root, absolute);
}

export const PVE_DIR = "/etc/pve";
export const DEFAULT_CONFIG = "/etc/pve-nat/pve-nat.conf";
export const STATE_DIR = "/run/pve-nat";
