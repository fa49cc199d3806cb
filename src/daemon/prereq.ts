import { readdir, readFile, writeFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { Config } from "../model.js";

// Host prerequisites handled by config instead of hand edits (SPEC §4). /proc and /sys are the
// namespace's own and never moved under --root.

export interface ProcFs {
  readFile(path: string): Promise<string>;
  writeFile(path: string, text: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
}

export const realProcFs: ProcFs = {
  readFile: (p) => readFile(p, "utf8"),
  writeFile: (p, t) => writeFile(p, t),
  readdir: (p) => readdir(p),
};

export const IP_FORWARD = "/proc/sys/net/ipv4/ip_forward";
const FWBR = /^fwbr([1-9]\d{0,8})i(\d{1,2})$/;

export function arpIgnorePath(dev: string): string {
  return `/proc/sys/net/ipv4/conf/${dev}/arp_ignore`;
}

/** ip_forward = enable: turn it on; check: warn when off; ignore: nothing. Never throws. */
export async function ensureIpForward(
  mode: Config["ipForward"],
  fs: ProcFs,
  log: Logger,
): Promise<void> {
  if (mode === "ignore") return;
  try {
    const on = (await fs.readFile(IP_FORWARD)).trim() === "1";
    if (on) return;
    if (mode === "check") {
      log.warn("net.ipv4.ip_forward is 0: forwarded traffic is dropped (set ip_forward = enable)");
      return;
    }
    await fs.writeFile(IP_FORWARD, "1\n");
    log.info("net.ipv4.ip_forward set to 1 (ip_forward = enable)");
  } catch (err) {
    log.error(
      { err: err instanceof Error ? err.message : String(err) },
      "cannot check or set net.ipv4.ip_forward",
    );
  }
}

/** fwbr devices present, optionally only one guest's. */
export async function fwbrDevices(fs: ProcFs, vmid?: number): Promise<string[]> {
  const names = await fs.readdir("/sys/class/net").catch(() => [] as string[]);
  return names
    .filter((n) => {
      const m = FWBR.exec(n);
      return m !== null && (vmid === undefined || Number(m[1]) === vmid);
    })
    .sort();
}

/** Sets arp_ignore on each device where it differs; returns the devices changed. A device that
 *  vanished meanwhile (guest stopped) is skipped quietly. */
export async function setArpIgnore(
  devs: readonly string[],
  value: 0 | 1,
  fs: ProcFs,
  log: Logger,
): Promise<string[]> {
  const changed: string[] = [];
  for (const dev of devs) {
    const file = arpIgnorePath(dev);
    try {
      if ((await fs.readFile(file)).trim() === String(value)) continue;
      await fs.writeFile(file, `${value}\n`);
      changed.push(dev);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      log.warn(
        { dev, err: err instanceof Error ? err.message : String(err) },
        "cannot set arp_ignore",
      );
    }
  }
  if (changed.length > 0) log.info({ devices: changed, value }, "arp_ignore set on fwbr devices");
  return changed;
}
