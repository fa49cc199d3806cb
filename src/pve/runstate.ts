// Whether a guest runs, decided the way Proxmox decides it (SPEC §7), so a simulated node
// (any process with the right arguments, any abstract socket with the right name) behaves
// exactly like a real one.

import { readFile } from "node:fs/promises";
import type { GuestKind } from "../model.js";

/** qemu-server's pidfile_name(), before --root is applied. */
export function qemuPidfile(vmid: number): string {
  return `/var/run/qemu-server/${vmid}.pid`;
}

/** The pid a qemu pidfile names, or null. */
export function pidOf(text: string | null): string | null {
  const m = text === null ? null : /^(\d+)\n?$/.exec(text);
  return m ? (m[1] as string) : null;
}

/** qemu-server's check_running: the process's command line (the raw bytes of
 *  /proc/<pid>/cmdline) has an argument `-pidfile` or `--pidfile` directly followed by one that
 *  is exactly `pidfile` (a recycled pid of some other process does not count; a zombie's
 *  cmdline is empty; the last argument may lack its NUL). Searched as bytes, not decoded and
 *  split: a qemu command line is 5–15 KB and the poll checks every running qemu guest each
 *  second (1000 guests: 27–44 ms a pass decoded and split, 15–25 ms searched). */
export function cmdlineHasPidfile(cmdline: Uint8Array, pidfile: string): boolean {
  const buf = Buffer.from(cmdline.buffer, cmdline.byteOffset, cmdline.byteLength);
  for (const flag of ["-pidfile", "--pidfile"]) {
    const needle = Buffer.from(`${flag}\0${pidfile}`);
    for (let at = buf.indexOf(needle); at >= 0; at = buf.indexOf(needle, at + 1)) {
      const end = at + needle.length;
      if ((at === 0 || buf[at - 1] === 0) && (end === buf.length || buf[end] === 0)) return true;
    }
  }
  return false;
}

export async function qemuRunning(path: (abs: string) => string, vmid: number): Promise<boolean> {
  const pidfile = path(qemuPidfile(vmid));
  const pid = pidOf(await readFile(pidfile, "utf8").catch(() => null));
  if (pid === null) return false;
  const cmdline = await readFile(`/proc/${pid}/cmdline`).catch(() => null);
  return cmdline !== null && cmdlineHasPidfile(cmdline, pidfile);
}

/** pve-container's check: the abstract socket names in /proc/net/unix, as pve-container reads
 *  them (the 8th whitespace-separated field of each line after the header, when it starts
 *  with '@'), scanned without splitting every line: a node with many guests lists thousands. */
export function parseUnixSockets(text: string): Set<string> {
  const names = new Set<string>();
  const n = text.length;
  let i = text.indexOf("\n");
  if (i < 0) return names;
  i++;
  const ws = (c: number) => c === 32 || c === 9 || c === 13 || c === 11 || c === 12;
  while (i < n) {
    let end = text.indexOf("\n", i);
    if (end < 0) end = n;
    // Only lines naming an abstract socket can count.
    const at = text.indexOf("@", i);
    if (at >= 0 && at < end) {
      let p = i;
      let field = 0;
      let start = -1;
      let stop = -1;
      while (p < end) {
        while (p < end && ws(text.charCodeAt(p))) p++;
        if (p >= end) break;
        const s0 = p;
        while (p < end && !ws(text.charCodeAt(p))) p++;
        if (field === 7) {
          start = s0;
          stop = p;
          break;
        }
        field++;
      }
      if (start >= 0 && text.charCodeAt(start) === 64) names.add(text.slice(start, stop));
    }
    i = end + 1;
  }
  return names;
}

/** The names src/native/unixlisten.c lists ("@name" per line, NULs as '@'), cut at the first
 *  whitespace as parseUnixSockets cuts its field: the same names for the same sockets. */
export function parseListenerNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    const name = /^@[^ \t\r\v\f]*/.exec(line)?.[0];
    if (name !== undefined) names.add(name);
  }
  return names;
}

/** Abstract socket names listed in /proc/net/unix of our network namespace ("@/var/lib/…"). */
export async function abstractSockets(): Promise<Set<string>> {
  return parseUnixSockets(await readFile("/proc/net/unix", "utf8").catch(() => ""));
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
