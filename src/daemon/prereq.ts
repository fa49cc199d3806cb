import { readdir, readFile, writeFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { Config } from "../model.js";
import type { Clock } from "./clock.js";

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

/** How long after a change the watcher saw its passes still look for new fwbr devices: a
 *  guest's devices appear while it starts, up to a few seconds after its run state does. */
export const ARP_SETTLE_MS = 10_000;

export interface ArpKeeper {
  /** After each watcher pass; `changed`: that pass saw a change (a guest started or stopped,
   *  a config was edited). */
  afterPass(changed: boolean): Promise<void>;
}

/** arp_ignore=1 on every fwbr device while the plan keeps the zone fix (SPEC §4), for the
 *  watcher. Setting it on every device each pass read /sys/class/net and one arp_ignore per
 *  device every second: at 1000 guests with firewall=1 NICs 18 % of a core at idle (issue 10).
 *  Devices come with a guest's start or a NIC edit, which the watcher sees: from such a pass on,
 *  for ARP_SETTLE_MS, each pass sets the devices it has not seen yet. Every `verifyMs` each
 *  device's value is read again, for a value someone reset or a device recreated between two
 *  passes. A guest started through its hook gets the setting from the hook (lifecycle). */
export function createArpKeeper(deps: {
  fs: ProcFs;
  log: Logger;
  clock: Clock;
  /** Whether fwbr devices are to answer no ARP now (zone fix planned, not paused). */
  wanted(): boolean;
  verifyMs: number;
  settleMs?: number;
}): ArpKeeper {
  const settleMs = deps.settleMs ?? ARP_SETTLE_MS;
  /** Devices set (or found set) since the last full check; null: none yet. */
  let known: ReadonlySet<string> | null = null;
  let changedAt = Number.NEGATIVE_INFINITY;
  let verifiedAt = Number.NEGATIVE_INFINITY;
  return {
    async afterPass(changed) {
      const now = deps.clock.now();
      if (changed) changedAt = now;
      if (!deps.wanted()) {
        known = null;
        return;
      }
      const verify = known === null || now - verifiedAt >= deps.verifyMs;
      if (!verify && now - changedAt >= settleMs) return;
      const devs = await fwbrDevices(deps.fs);
      const seen = known;
      const todo = verify || seen === null ? devs : devs.filter((d) => !seen.has(d));
      await setArpIgnore(todo, 1, deps.fs, deps.log);
      known = new Set(devs);
      if (verify) verifiedAt = now;
    },
  };
}
