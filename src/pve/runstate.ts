// Whether a guest runs, decided the way Proxmox decides it (SPEC §7), so a simulated node
// (any process with the right arguments, any abstract socket with the right name) behaves
// exactly like a real one.

import { readFile } from "node:fs/promises";
import type { GuestKind } from "../model.js";

/** qemu-server's pidfile_name(), before --root is applied. */
export function qemuPidfile(vmid: number): string {
  return `/var/run/qemu-server/${vmid}.pid`;
}

/** qemu-server's check_running: the pid file names a live process whose command line has
 *  `-pidfile <that same path>` (a recycled pid of some other process does not count). */
export async function qemuRunning(path: (abs: string) => string, vmid: number): Promise<boolean> {
  const pidfile = path(qemuPidfile(vmid));
  const text = await readFile(pidfile, "utf8").catch(() => null);
  const m = text === null ? null : /^(\d+)\n?$/.exec(text);
  if (!m) return false;
  const cmdline = await readFile(`/proc/${m[1]}/cmdline`, "utf8").catch(() => null);
  if (cmdline === null) return false;
  const args = cmdline.split("\0");
  for (let i = 0; i < args.length - 1; i++) {
    if ((args[i] === "-pidfile" || args[i] === "--pidfile") && args[i + 1] === pidfile) return true;
  }
  return false;
}

/** Abstract socket names listed in /proc/net/unix of our network namespace ("@/var/lib/…"). */
export async function abstractSockets(): Promise<Set<string>> {
  const text = await readFile("/proc/net/unix", "utf8").catch(() => "");
  const names = new Set<string>();
  for (const line of text.split("\n").slice(1)) {
    // Num RefCount Protocol Flags Type St Inode Path — the path is the 8th field.
    const path = line.trim().split(/\s+/)[7];
    if (path?.startsWith("@")) names.add(path);
  }
  return names;
}

/** pve-container's check_running: LXC's command socket exists. Not remapped by --root:
 *  abstract sockets live in the network namespace, like /proc. */
export function lxcCommandSocket(vmid: number): string {
  return `@/var/lib/lxc/${vmid}/command`;
}

export async function isRunning(
  path: (abs: string) => string,
  vmid: number,
  kind: GuestKind,
): Promise<boolean> {
  if (kind === "qemu") return qemuRunning(path, vmid);
  return (await abstractSockets()).has(lxcCommandSocket(vmid));
}
