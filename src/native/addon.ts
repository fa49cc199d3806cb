// Loads the native addons: zeromq's, and pve-nat's own (src/native/*.c). In the single
// executable (Node SEA) each is an embedded asset: it is written once to a private directory
// (extract.ts) and mapped with process.dlopen. Anywhere else (tests, `node dist/pve-nat.cjs`)
// zeromq's own loader finds its addon in node_modules. See packaging/README.md for why.
import { readFileSync, unlinkSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { getAsset, isSea } from "node:sea";
import { addonDir, type ExtractResult, extractAddon } from "./extract.js";

/** Names of the assets in packaging/sea-config (written by packaging/build.mjs). */
export const ADDON_ASSET = "zeromq.node";
export const NATIVE_ASSET = "pve-nat.node";

/** Filled in by the SEA bundle (esbuild `define`); undefined in any other build. */
const EMBEDDED = {
  [ADDON_ASSET]: { sha256: process.env.PVE_NAT_ADDON_SHA256, size: process.env.PVE_NAT_ADDON_SIZE },
  [NATIVE_ASSET]: {
    sha256: process.env.PVE_NAT_NATIVE_SHA256,
    size: process.env.PVE_NAT_NATIVE_SIZE,
  },
};

export interface AddonOrigin {
  kind: "embedded" | "node_modules";
  file: string | null;
  written: boolean;
}

let origin: AddonOrigin | null = null;

/** Where the addon of this process came from, once loaded (for `pve-nat self-test`). */
export function addonOrigin(): AddonOrigin | null {
  return origin;
}

export function loadZmqAddon(): unknown {
  if (isSea()) {
    const { exports, ...from } = loadEmbedded(ADDON_ASSET);
    origin = from;
    return exports;
  }
  const req = createRequire(path.resolve(process.argv[1] ?? "pve-nat"));
  origin = { kind: "node_modules", file: null, written: false };
  return (req("zeromq/lib/load-addon.js") as { default: unknown }).default;
}

/** pve-nat's own addon (src/native/module.c). Only the single executable carries it
 *  (packaging/build.mjs compiles it); anywhere else loadNative() gives null and the daemon does
 *  without: it keeps its pages, stats with fs.statSync and spawns with child_process. */
export interface Native {
  /** pagedrop.c: gives back the resident pages of the executable's clean read-only mappings;
   *  the bytes released (-1: smaps unreadable). */
  drop(): number;
  /** pagedrop.c: drop()'s work, then, in the same call, drops the page cache of the executable
   *  that no process maps, so what the daemon maps back comes in small folios; 0, or -errno. */
  evictExe(): number;
  /** pagedrop.c: whether a page of the executable this process maps sits in a large page-cache
   *  folio (a file read whole, e.g. by `cat` or a backup), which evictExe() is for: 1 yes, 0 no,
   *  -errno when it cannot tell. Asked before drop(). */
  exeLargeFolios(): number;
  /** statmany.c: prepares the paths for statMany (converted once, grouped by directory). */
  statBatch(paths: readonly string[]): StatBatch;
  /** statmany.c: out[4i..4i+3] = ino, size, mtimeMs, ctimeMs of the batch's paths[i] (as
   *  fs.Stats has them); out[4i] = -errno when the stat failed. Returns how many paths'
   *  numbers differ from what `out` held before. */
  statMany(batch: StatBatch, out: Float64Array): number;
  /** readfile.c: the file's text (as fs.readFileSync(path, "utf8") gives it) and, in
   *  out[0..3], the ino, size, mtimeMs and ctimeMs of the version read; null and out[0] =
   *  -errno when it cannot be read (EISDIR for a directory). */
  readFile(path: string, out: Float64Array): string | null;
  /** addrwatch.c: a netlink socket told of every IPv4 address change in this namespace;
   *  closed with the last reference. Throws when netlink is refused. */
  addrWatch(): AddrWatch;
  /** addrwatch.c: whether any address change (or a lost message) arrived since the last call. */
  addrChanged(watch: AddrWatch): boolean;
  /** unixlisten.c: the abstract unix socket names listening in this namespace, "@name" per
   *  line (NULs as '@', as /proc/net/unix shows them); null when sock_diag refuses. */
  abstractListeners(): string | null;
  /** pidfd.c: a pidfd for `pid` (close-on-exec), or -errno (ESRCH: no such process). */
  pidfdOpen(pid: number): number;
  /** pidfd.c: out[i] = 1 when fds[i] is a pidfd whose process has not exited, else 0
   *  (negative fds read 0); returns how many are 1, or -errno when poll(2) fails. One system
   *  call for every qemu guest's run state (src/pve/cache.ts). */
  pidfdsRunning(fds: Int32Array, out: Uint8Array): number;
  /** pidfd.c: closes a descriptor pidfdOpen gave. */
  closeFd(fd: number): void;
  /** dirwatch.c: an inotify watch of one local directory; closed with the last reference.
   *  Throws when inotify refuses (a missing directory). */
  dirWatch(dir: string): DirWatch;
  /** dirwatch.c: 0 nothing changed in the directory since the last call, 1 something did (or
   *  the queue overflowed), 2 the watch is gone (the directory was removed or moved). */
  dirChanged(watch: DirWatch): number;
  /** tables.c: a token that stays the same while the backend's nat and raw tables read the
   *  same ("nft:<generation id>", "legacy:<hash>:<hash>"); with `tables` (legacy only), while
   *  those legacy tables read the same. null when the kernel does not say. */
  tablesToken(backend: "nft" | "legacy", tables?: readonly string[]): string | null;
  /** spawn.c: runs `file` (looked up in PATH) with `args`, `input` on its stdin (null: stdin is
   *  /dev/null; a string goes as UTF-8, an array of strings as lines), on a thread of its own;
   *  resolves when it has exited and both outputs are read. Why: libuv starts children with
   *  fork(), whose cost grows with the parent's page tables (spawn→exit of /bin/true 1.6 ms at
   *  50 MB RSS, 13.9 ms at 402 MB, on the main thread); glibc's posix_spawn (clone with
   *  CLONE_VM|CLONE_VFORK) costs the same at any size. At the deadline SIGTERM, SIGKILL 2 s later
   *  (`timedOut`); more than `maxOutputBytes` on one stream: SIGKILL (`tooMuch`). `code` is the
   *  exit status, `signal` the number of the signal that ended it (else null); `error` is the
   *  errno of a start that failed (ENOENT, EACCES, ...), else 0. src/exec.ts `run` maps this to
   *  its RunResult. */
  spawn(
    file: string,
    args: readonly string[],
    input: Buffer | string | readonly string[] | null,
    timeoutMs: number,
    maxOutputBytes: number,
  ): Promise<NativeSpawnResult>;
}

/** A statBatch() result: opaque, freed with the last reference. */
export type StatBatch = { readonly __statBatch: unique symbol };

/** A dirWatch() descriptor: opaque, closed with the last reference. */
export type DirWatch = { readonly __dirWatch: unique symbol };

/** The node source's view of dirWatch (src/pve/cache.ts SourceOptions.dirEvents): a function
 *  that says whether anything in `dir` changed since its last call (true also when the watch
 *  is gone: the caller then asks for a new one), or null when inotify refuses. */
export function dirEventsOf(
  native: Native,
): (dir: string) => (() => "same" | "moved" | "gone") | null {
  return (dir) => {
    let watch: DirWatch;
    try {
      watch = native.dirWatch(dir);
    } catch {
      return null;
    }
    return () => {
      const r = native.dirChanged(watch);
      return r === 0 ? "same" : r === 2 ? "gone" : "moved";
    };
  };
}

/** The backend detector's token (src/iptables/runner.ts backendDetector): one that stays the
 *  same while every table of the backend reads the same. nf_tables' generation id counts every
 *  change to any of its tables; for legacy, the tables iptables-legacy-save would list (the
 *  names in /proc/net/ip_tables_names, which reading does not load a module for) are hashed. */
export function backendTokenOf(
  native: Native,
  tableNames: () => string | null = () => {
    try {
      return readFileSync("/proc/net/ip_tables_names", "latin1");
    } catch {
      return null;
    }
  },
): (backend: "nft" | "legacy") => string | null {
  return (backend) => {
    if (backend === "nft") return native.tablesToken("nft") ?? null;
    const text = tableNames();
    // No ip_tables in this namespace: no legacy table for pve-firewall's chains to be in.
    if (text === null) return "legacy-tables:none";
    const names = text
      .split("\n")
      .filter((n) => n !== "")
      .sort();
    return native.tablesToken("legacy", names) ?? null;
  };
}

/** An addrWatch() socket: opaque, closed with the last reference. */
export type AddrWatch = { readonly __addrWatch: unique symbol };

/** addrChanged over one watch made now, or null when netlink is refused (then the caller
 *  reads /proc/net/fib_trie as it would without the addon). */
export function addressEvents(native: Native): (() => boolean) | null {
  let watch: AddrWatch;
  try {
    watch = native.addrWatch();
  } catch {
    return null;
  }
  return () => native.addrChanged(watch);
}

/** The node source's view of the pidfd calls (src/pve/cache.ts SourceOptions.pidfds). */
export function pidfdsOf(native: Native): {
  open(pid: number): number;
  running(fds: Int32Array, out: Uint8Array): number;
  close(fd: number): void;
} {
  return {
    open: (pid) => native.pidfdOpen(pid),
    running: (fds, out) => native.pidfdsRunning(fds, out),
    close: (fd) => native.closeFd(fd),
  };
}

/** statMany over a list of paths, each array prepared once (the node source passes the same
 *  array on every poll until its guest list changes). */
export function statPaths(native: Native): (paths: readonly string[], out: Float64Array) => number {
  const batches = new WeakMap<readonly string[], StatBatch>();
  return (paths, out) => {
    let batch = batches.get(paths);
    if (batch === undefined) {
      batch = native.statBatch(paths);
      batches.set(paths, batch);
    }
    return native.statMany(batch, out);
  };
}

export interface NativeSpawnResult {
  code: number | null;
  signal: number | null;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
  tooMuch: boolean;
  /** errno of a failed start, else 0. */
  error: number;
}

export function loadNative(): Native | null {
  if (!isSea()) return null;
  const { exports } = loadEmbedded(NATIVE_ASSET);
  return exports as Native;
}

function loadEmbedded(asset: keyof typeof EMBEDDED): AddonOrigin & { exports: unknown } {
  const { sha256, size } = EMBEDDED[asset];
  if (!sha256 || !size) throw new Error(`single executable built without ${asset}'s hash`);
  const keep = Object.values(EMBEDDED).flatMap((e) => (e.sha256 ? [e.sha256] : []));
  const euid = process.geteuid?.() ?? 0;
  const dir = addonDir({ euid, override: process.env.PVE_NAT_ADDON_DIR, tmpdir: os.tmpdir() });
  const payload = { sha256, size: Number(size), bytes: () => new Uint8Array(getAsset(asset)) };
  let extracted: ExtractResult = extractAddon(payload, dir, euid, keep);
  let exports: unknown;
  try {
    exports = dlopen(extracted.file);
  } catch (err) {
    // Deleted or damaged behind our back (by hand): write a fresh copy once.
    if (extracted.written) throw err;
    rmQuiet(extracted.file);
    extracted = extractAddon(payload, dir, euid, keep);
    exports = dlopen(extracted.file);
  }
  return { kind: "embedded", file: extracted.file, written: extracted.written, exports };
}

function dlopen(file: string): unknown {
  const mod = { exports: {} as unknown };
  process.dlopen(mod, file, os.constants.dlopen.RTLD_NOW);
  return mod.exports;
}

function rmQuiet(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}
