// The daemon's view of the node's sources, kept between polls and applies (issue 5: no cost of
// an event may grow with the number of guests). Each file is stat'ed per pass and re-read only
// when its identity (inode, size, mtime, ctime) changed or its mtime is recent: pmxcfs has
// one-second mtimes, so an edit within the same second may keep them (SPEC §2 — compare
// content, not mtime alone). A value is re-parsed only when the text differs. Run state: one
// read of /proc/net/unix for every LXC guest, a qemu guest's pidfile and cmdline (both small).
// The watcher's fingerprint and the
// plan's NodeInput come from the same entries, so an apply re-reads nothing a poll just read.
//
// The one node reader: loadNode (node.ts) is a fresh source read once; the daemon keeps one
// source for its life and shares it between the watcher's fingerprint and the plan loader.

import { createHash } from "node:crypto";
import {
  closeSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  type Stats,
  statSync,
} from "node:fs";
import { constants as osConstants } from "node:os";
import { getSystemErrorName } from "node:util";
import { DEFAULTS, parseConfig } from "../config/conf.js";
import { ConfigError } from "../errors.js";
import { run } from "../exec.js";
import type {
  AddressFacts,
  Config,
  Diagnostic,
  FwFile,
  FwKind,
  GuestConf,
  GuestKind,
  HostPorts,
  NodeInput,
  Owner,
  RunState,
  SdnConfig,
} from "../model.js";
import { learnedAddress, staticAddress } from "../nat/learn.js";
import { PVE_DIR } from "../paths.js";
import { type AgentCache, createAgentCache } from "./agent.js";
import { parseGuestConf } from "./guestconf.js";
import { listeningPorts, routedIPv4Reader, sameHostPorts } from "./host.js";
import {
  emptyFacts,
  parseEthers,
  parseIpamState,
  parseLeases,
  parseMacCache,
  parseNeighbours,
} from "./learned.js";
import {
  confVmid,
  errCode,
  errText,
  internalError,
  type NodePaths,
  nodeName,
  parseFw,
  refsOf,
  rel,
} from "./nodefiles.js";
import {
  cmdlineHasPidfile,
  lxcCommandSocket,
  parseListenerNames,
  parseUnixSockets,
  pidOf,
  qemuPidfile,
} from "./runstate.js";
import { parseSdn, SDN_FILES } from "./sdn.js";
import { STORE_FILES, type StoreState, storeStill } from "./store.js";
import { parseVmlist, vmlistVersion } from "./vmlist.js";

export { parseUnixSockets } from "./runstate.js";

/** An mtime (or ctime) this close to now may hide a later edit in the same second. */
export const RECENT_MS = 2000;

/** How long a guest config .vmlist marked changed is stat'ed on every pass: the same-second
 *  mtime rule, plus pmxcfs's FUSE attribute cache (libfuse's default attr_timeout, 1 s), which
 *  may still show the old size and mtime right after the write. */
export const VMLIST_HOT_MS = RECENT_MS + 1000;
/** How often a poll re-reads the host's listening sockets (protected ports, SPEC §2.3): a
 *  service that starts listening on the public address is seen within this (the files the
 *  rules come from are still checked every poll). */
export const HOST_PORTS_EVERY_MS = 10_000;

/** Which guest configs a full pass stats: null = every one, and list the guest directories
 *  (no usable .vmlist, or the first pass); otherwise those .vmlist marked, and the
 *  directories only when its version moved. */
type ConfGate = { list: boolean; touch: ReadonlySet<number> } | null;

/** What to re-validate: everything (a poll, a full sync), or what some owners depend on
 *  (their guest files and run state, plus the shared files: config, cluster.fw, host.fw);
 *  `runState` adds every listed guest's run state (one /proc/net/unix read for LXC). */
export type RefreshScope =
  | { all: true }
  | {
      owners: readonly Owner[];
      runState?: boolean;
      /** false: keep the owners' cached run state (it cannot change the plan, e.g. every owner
       *  is starting or held down by the lifecycle). Default true. */
      ownRunState?: boolean;
      /** Guests whose run state alone is re-read, not their files (a post-start's verify: a
       *  burst of 1000 post-starts re-stat'ing 2000 files per cycle was most of its time). */
      runStateOf?: readonly number[];
    };

export interface InputOptions {
  /** Guests whose pre-start hook ran: "starting" while not yet running. */
  pending?: ReadonlySet<number>;
  /** Use this config instead of the file's (check parses it itself to report every error at
   *  once; then no config diagnostics are added here). Never memoised. */
  config?: Config;
}

export interface SourceOptions {
  /** The guest agent's answers (the daemon keeps one cache for its life). Default: a fresh one. */
  agent?: AgentCache;
  /** Wait (bounded) for agent queries a full refresh started: the one-shot CLI only, never
   *  the daemon (a hook must not wait for an agent). */
  agentWaitMs?: number;
  /** Reads the node's IPv4 neighbour table (`ip -4 neigh show`); null = none. */
  neighbours?: () => Promise<string | null>;
  /** Reads the host's listening sockets (default /proc/net/tcp{,6}) and the monotonic clock
   *  that spaces those reads (HOST_PORTS_EVERY_MS); tests inject both. */
  listening?: () => Promise<HostPorts>;
  monotonic?: () => number;
  /** Stats many files in one call (the daemon's addon, src/native/statmany.c): out[4i..4i+3]
   *  = ino, size, mtimeMs, ctimeMs of paths[i], or -errno in out[4i]; returns how many paths'
   *  numbers differ from what `out` held. With it a pass stats the guests' .fw files in one
   *  batch and goes through touch() only for one that differs; at 1000 guests one statSync
   *  each cost ≈ 10 ms of CPU per pass, the batch ≈ 1.7 ms. Every pass gets the same array,
   *  never mutated, and the same `out` until the guest list changes, so an implementation may
   *  prepare it once per array (src/native/addon.ts statPaths). */
  statMany?: (paths: readonly string[], out: Float64Array) => number;
  /** Opens, stats and reads one file in a single call (the daemon's addon, readfile.c): the
   *  text, with ino, size, mtimeMs and ctimeMs of the version read in out[0..3]; null and
   *  out[0] = -errno when it cannot be read. Used for a file not read before (the daemon's
   *  first pass reads 2000 at 1000 guests); without it, fs.statSync then fs.readFileSync. */
  readFile?: (path: string, out: Float64Array) => string | null;
  /** The abstract unix socket names listening in this namespace, one "@name" per line (the
   *  daemon's addon, src/native/unixlisten.c), or null when the kernel will not say: then
   *  /proc/net/unix is read. LXC's command socket listens for the monitor's whole life, so
   *  both give the same run state; the dump cost ≈ 0.25 ms at 1000 guests against 1.2 ms for
   *  the text of every unix socket. */
  abstractListeners?: () => string | null;
  /** True when the kernel announced an IPv4 address change since the last call (the daemon's
   *  addon, src/native/addrwatch.c): `public_address = auto` is asked again only then (and
   *  every PUBLIC_ADDRESS_EVERY_MS). Without it, when /proc/net/fib_trie reads differently. */
  addressEvents?: () => boolean;
  /** Process descriptors (the daemon's addon, src/native/pidfd.c): with them a qemu guest's
   *  command line is read when its pidfile names a new pid, and afterwards one poll(2) over
   *  every running guest's pidfd says which still run. Without them every poll reads every
   *  running qemu guest's command line, as qemu-server's check_running does. */
  pidfds?: {
    open(pid: number): number;
    running(fds: Int32Array, out: Uint8Array): number;
    close(fd: number): void;
  };
  /** An inotify watch of a local directory (the daemon's addon, src/native/dirwatch.c): what
   *  changed in it since the last call, or null when it cannot be watched. Used for the qemu
   *  pidfiles' directory: while it reports "same", no pidfile is stat'ed. */
  dirEvents?: (dir: string) => (() => "same" | "moved" | "gone") | null;
}

const { ENOENT, ENOTDIR } = osConstants.errno;

/** Where the learned-address sources live (SPEC §8), all taken under --root. */
export const ADDRESS_PATHS = {
  ipam: "sdn/pve-ipam-state.json",
  macCache: "sdn/mac-cache.json",
  leasesDir: "/var/lib/misc",
  dnsmasqDir: "/etc/dnsmasq.d",
} as const;

const LEASE_FILE = /^dnsmasq\.([A-Za-z0-9_.-]+)\.leases$/;

/** `ip -4 neigh` text reduced to its usable entries, state-free and sorted. */
export function canonicalNeighbours(text: string): string {
  const lines: string[] = [];
  for (const [mac, list] of Object.entries(parseNeighbours(text)))
    for (const n of list) lines.push(`${n.ip} dev ${n.dev} lladdr ${mac} REACHABLE`);
  return lines.sort().join("\n");
}

async function ipNeighbours(): Promise<string | null> {
  const r = await run("ip", ["-4", "neigh", "show"], { timeoutMs: 2000 });
  return r.code === 0 ? r.stdout : null;
}

export interface NodeSource {
  refresh(scope: RefreshScope): Promise<void>;
  /** loadNode's result for the cached sources. Throws ConfigError on a bad pve-nat.conf value.
   *  The result is shared until a source changes: do not mutate it. */
  input(opts?: InputOptions): NodeInput;
  /** Per source its content hash (or run state), as node.ts's fingerprint() always gave. */
  fingerprint(): Map<string, string>;
}

interface FileEntry {
  /** "file" (read; the four numbers below say which version), "absent", or "error". */
  id: string;
  /** The stat of the version read (id "file"): numbers, compared in place on every poll
   *  rather than a string built per file per poll (a thousand a second at 1000 guests). */
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  text: string | null;
  /** errText of a failed read (not ENOENT). */
  error: string | null;
  /** Bumped (from one counter for all files) whenever text or error changes. */
  version: number;
  /** Generation of the last full refresh that saw this path (stale entries are dropped). */
  seen: number;
  /** Parsed values, valid for `version` (and, for .fw files, for the cluster.fw they name). */
  parsed?: { version: number; value: unknown };
  /** Content hash for the fingerprint, valid for `version`. */
  hash?: { version: number; value: string };
}

function contentHash(e: FileEntry): string {
  if (e.hash?.version !== e.version) {
    const text = e.text ?? (e.error === null ? "\0absent" : `\0error ${e.error}`);
    e.hash = { version: e.version, value: createHash("sha1").update(text).digest("base64") };
  }
  return e.hash.value;
}

type FwResult = { fw: FwFile | null; diag: Diagnostic | null };

let versions = 0;
/** Bumped whenever anything input() reads changes (files, listings, run state, host facts). */
let changes = 0;

/** Whether `e` was read at exactly this stat and the stat is older than RECENT_MS, so the
 *  entry stands without a read. A stat within RECENT_MS can hide a second write in the same
 *  second (pmxcfs's whole-second mtimes): such a file is read again. Numbers, not a Stats
 *  object, so the batch stat (statMany) is judged by the same test as statSync. */
function settledAt(
  e: FileEntry,
  ino: number,
  size: number,
  mtimeMs: number,
  ctimeMs: number,
  now: number,
): boolean {
  return (
    e.id === "file" &&
    e.ino === ino &&
    e.size === size &&
    e.mtimeMs === mtimeMs &&
    e.ctimeMs === ctimeMs &&
    now - Math.max(mtimeMs, ctimeMs) >= RECENT_MS
  );
}

/** Reads `file` into `scratch.buf` (grown as needed), at most `limit` bytes; returns the
 *  length. Throws as readFileSync would. For the files a poll reads every second: the bytes
 *  are compared before anything is decoded, so an unchanged file allocates nothing. */
function readInto(
  file: string,
  scratch: { buf: Buffer },
  limit = Number.POSITIVE_INFINITY,
): number {
  const fd = openSync(file, "r");
  try {
    let len = 0;
    while (len < limit) {
      if (len === scratch.buf.length) {
        const grown = Buffer.allocUnsafe(scratch.buf.length * 2);
        scratch.buf.copy(grown, 0, 0, len);
        scratch.buf = grown;
      }
      const want = Math.min(scratch.buf.length, limit) - len;
      const n = readSync(fd, scratch.buf, len, want, null);
      if (n === 0) break;
      len += n;
    }
    return len;
  } finally {
    closeSync(fd);
  }
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export function createNodeSource(paths: NodePaths, opts: SourceOptions = {}): NodeSource {
  const files = new Map<string, FileEntry>();
  const agent = opts.agent ?? createAgentCache();
  const readNeighbours = opts.neighbours ?? ipNeighbours;
  const listening = opts.listening ?? listeningPorts;
  const monotonic = opts.monotonic ?? (() => performance.now());
  /** dnsmasq zones with a lease file / an ethers file, as last listed. */
  let leaseZones: string[] = [];
  let ethersZones: string[] = [];
  let neighText: string | null = null;
  /** sha1 of neighText, computed when it changes (not on every poll). */
  let neighHash = "-";
  let agentSeen = agent.version();
  let generation = 0;
  let primed = false;
  /** Guest config names per kind directory (vmid set), or the readdir error. */
  const listing: Record<GuestKind, { vmids: Set<number>; error: string | null }> = {
    qemu: { vmids: new Set(), error: null },
    lxc: { vmids: new Set(), error: null },
  };
  let sockets: Set<string> = new Set();
  const qemuRuns = new Map<number, boolean>();
  let autoAddress: { iface: string; address: string | null } | null = null;
  const interfaceIPv4 = routedIPv4Reader(
    opts.addressEvents ? { addressEvents: opts.addressEvents } : {},
  );
  let hostPorts: HostPorts = { any: [], at: {} };
  let hostPortsAt: number | null = null;
  let parsedConfig: {
    version: number;
    result: ReturnType<typeof parseConfig> | null;
  } | null = null;

  // path() joins paths (about a microsecond each); names repeat every pass.
  const absolute = new Map<string, string>();
  const pve = (file: string) => {
    let abs = absolute.get(file);
    if (abs === undefined) {
      if (absolute.size > 100_000) absolute.clear();
      abs = paths.path(`${PVE_DIR}/${file}`);
      absolute.set(file, abs);
    }
    return abs;
  };

  /** Re-validates one file; returns its entry. */
  function touch(abs: string, now: number): FileEntry {
    let e = files.get(abs);
    if (!e) {
      e = {
        id: "",
        ino: 0,
        size: 0,
        mtimeMs: 0,
        ctimeMs: 0,
        text: null,
        error: null,
        version: 0,
        seen: generation,
      };
      files.set(abs, e);
    }
    e.seen = generation;
    if (e.version === 0 && opts.readFile) return firstRead(e, abs, opts.readFile);
    let st: Stats | undefined;
    try {
      st = statSync(abs, { throwIfNoEntry: false });
    } catch (err) {
      set(e, "error", null, errText(err));
      return e;
    }
    if (st === undefined) {
      set(e, "absent", null, null);
      return e;
    }
    if (settledAt(e, st.ino, st.size, st.mtimeMs, st.ctimeMs, now)) return e;
    try {
      set(e, "file", readFileSync(abs, "utf8"), null);
      e.ino = st.ino;
      e.size = st.size;
      e.mtimeMs = st.mtimeMs;
      e.ctimeMs = st.ctimeMs;
    } catch (err) {
      if (errCode(err) === "ENOENT") set(e, "absent", null, null);
      else set(e, "error", null, errText(err));
    }
    return e;
  }

  /** touch() of a file never read: the version read and its numbers come from one open file,
   *  so they cannot belong to two versions; the outcomes are the ones statSync and
   *  readFileSync would give (absent for ENOENT and ENOTDIR, else the error's code). */
  const readOut = new Float64Array(4);
  function firstRead(
    e: FileEntry,
    abs: string,
    read: (path: string, out: Float64Array) => string | null,
  ): FileEntry {
    const text = read(abs, readOut);
    if (text === null) {
      const errno = readOut[0] as number;
      if (errno === -ENOENT || errno === -ENOTDIR) set(e, "absent", null, null);
      else set(e, "error", null, getSystemErrorName(errno));
      return e;
    }
    set(e, "file", text, null);
    e.ino = readOut[0] as number;
    e.size = readOut[1] as number;
    e.mtimeMs = readOut[2] as number;
    e.ctimeMs = readOut[3] as number;
    return e;
  }

  function set(e: FileEntry, id: string, text: string | null, error: string | null): void {
    e.id = id;
    if (e.version !== 0 && e.text === text && e.error === error) return;
    e.text = text;
    e.error = error;
    e.version = ++versions;
    changes++;
  }

  function entry(abs: string): FileEntry | undefined {
    return files.get(abs);
  }

  function memo<T>(e: FileEntry, make: () => T): T {
    if (e.parsed?.version !== e.version) e.parsed = { version: e.version, value: make() };
    return e.parsed.value as T;
  }

  function configResult(): ReturnType<typeof parseConfig> | null {
    const e = entry(paths.configPath);
    if (!e) return null;
    if (parsedConfig?.version !== e.version) {
      parsedConfig = {
        version: e.version,
        result: e.text === null ? null : parseConfig(e.text, paths.configPath),
      };
    }
    return parsedConfig.result;
  }

  /** The config for naming the node and the public address (bad values ignored, as before). */
  function looseConfig(): Config {
    return configResult()?.config ?? DEFAULTS;
  }

  function currentNode(): string {
    return nodeName(paths, looseConfig());
  }

  const unixScratch = { buf: Buffer.allocUnsafe(16 * 1024) };
  let unixBytes: Buffer | null = null;
  let listenersText: string | null = null;
  function readSockets(): void {
    const listed = opts.abstractListeners?.() ?? null;
    if (listed !== null) {
      if (listed === listenersText) return;
      listenersText = listed;
      unixBytes = null;
      setSockets(parseListenerNames(listed));
      return;
    }
    listenersText = null;
    let len = 0;
    try {
      len = readInto("/proc/net/unix", unixScratch);
    } catch {
      // No /proc: no LXC guest runs, as runstate.ts decides.
    }
    // The same bytes name the same sockets (a thousand guests: a thousand names to split out,
    // and ≈ 100 KB of text to decode, every second).
    const bytes = unixScratch.buf.subarray(0, len);
    if (unixBytes?.equals(bytes)) return;
    unixBytes = Buffer.from(bytes);
    setSockets(parseUnixSockets(bytes.toString("utf8")));
  }

  function setSockets(next: Set<string>): void {
    if (next.size !== sockets.size || [...next].some((x) => !sockets.has(x))) changes++;
    sockets = next;
  }

  const cmdlineScratch = { buf: Buffer.allocUnsafe(16 * 1024) };
  /** Per qemu guest the pidfd (opts.pidfds) of the process whose command line last showed it
   *  to be that guest's, and the pid its pidfile named then. While that process has not
   *  exited and the pidfile names the same pid, check_running can only say "running" (a pidfd
   *  is one process, never a recycled pid), so the command line is not read again. At 1000
   *  simulated qemu guests (5 KB command lines, as short as a real qemu's get) reading them
   *  all every second kept the idle daemon at 4 % of a core (issue 10). */
  const qemuWatch = new Map<number, { pid: string; fd: number }>();
  function unwatch(vmid: number): void {
    const w = qemuWatch.get(vmid);
    if (w === undefined) return;
    qemuWatch.delete(vmid);
    opts.pidfds?.close(w.fd);
  }

  const oneFd = new Int32Array(1);
  const oneOut = new Uint8Array(1);
  /** qemu-server's check_running (runstate.ts) for a guest whose pidfile entry is `e`: the
   *  command line is read unless its watch still runs (`alive`: known from a batch poll of
   *  every watch; undefined: ask for this one). A pid that exited may linger as a zombie (its
   *  /proc entry stays, its cmdline is empty), so only the cmdline says a new pid is that qemu. */
  function qemuState(vmid: number, pidfile: string, e: FileEntry, alive?: boolean): boolean {
    const pid = pidOf(e.text);
    const w = qemuWatch.get(vmid);
    let running = false;
    if (pid !== null && w?.pid === pid && (alive ?? watchRuns(w.fd))) {
      running = true;
    } else {
      unwatch(vmid);
      if (pid !== null) {
        // Opened before the read: if the process exits in between, the pidfd says so next time.
        const fd = opts.pidfds ? opts.pidfds.open(Number(pid)) : -1;
        try {
          const len = readInto(`/proc/${pid}/cmdline`, cmdlineScratch);
          running = cmdlineHasPidfile(cmdlineScratch.buf.subarray(0, len), pidfile);
        } catch {
          running = false;
        }
        if (fd >= 0 && running) qemuWatch.set(vmid, { pid, fd });
        else if (fd >= 0) opts.pidfds?.close(fd);
      }
    }
    if (qemuRuns.get(vmid) !== running) changes++;
    qemuRuns.set(vmid, running);
    return running;
  }

  function watchRuns(fd: number): boolean {
    if (!opts.pidfds) return false;
    oneFd[0] = fd;
    return opts.pidfds.running(oneFd, oneOut) === 1;
  }

  function qemuCheck(vmid: number, now: number): boolean {
    const pidfile = paths.path(qemuPidfile(vmid));
    return qemuState(vmid, pidfile, touch(pidfile, now));
  }

  /** The pidfiles of a list of qemu guests and their numbers (statMany's layout), and the
   *  guests' pidfds: one batch stat and one poll for all of them. */
  let qemuBatch: {
    vmids: readonly number[];
    pidfiles: string[];
    out: Float64Array;
    fds: Int32Array;
    alive: Uint8Array;
  } | null = null;

  /** The pidfiles' directory (/var/run/qemu-server, local tmpfs) as opts.dirEvents watches it:
   *  "same" means every pidfile reads as the last pass read it, so none is stat'ed. Made before
   *  the pass that stats them all; a watch that is gone is made again on the next pass. */
  const pidDir = paths.path("/var/run/qemu-server");
  let pidEvents: (() => "same" | "moved" | "gone") | null = null;
  function pidfilesMoved(): boolean {
    if (!opts.dirEvents) return true;
    if (pidEvents === null) {
      pidEvents = opts.dirEvents(pidDir);
      return true;
    }
    const r = pidEvents();
    if (r === "gone") pidEvents = null;
    return r !== "same";
  }

  /** qemuCheck for each of `vmids` (the same array on every pass until the guest list
   *  changes), with the pidfiles stat'ed in one batch (or not at all while their directory's
   *  watch reports nothing) and the watches polled at once. */
  async function qemuChecks(vmids: readonly number[], now: number): Promise<void> {
    if (vmids.length === 0) return;
    if (qemuBatch?.vmids !== vmids) {
      qemuBatch = {
        vmids,
        pidfiles: vmids.map((v) => paths.path(qemuPidfile(v))),
        out: new Float64Array(vmids.length * 4),
        fds: new Int32Array(vmids.length),
        alive: new Uint8Array(vmids.length),
      };
    }
    const b = qemuBatch;
    // Drained before any pidfile is read: a change after this is read now or reported next pass.
    const moved = pidfilesMoved();
    if (moved && opts.statMany) opts.statMany(b.pidfiles, b.out);
    let polled = false;
    if (opts.pidfds && qemuWatch.size > 0) {
      for (let i = 0; i < vmids.length; i++) b.fds[i] = qemuWatch.get(vmids[i] as number)?.fd ?? -1;
      polled = opts.pidfds.running(b.fds, b.alive) >= 0;
    }
    for (let i = 0; i < vmids.length; i++) {
      const vmid = vmids[i] as number;
      const pidfile = b.pidfiles[i] as string;
      let kept: FileEntry | undefined;
      if (!moved) {
        kept = files.get(pidfile);
        if (kept) kept.seen = generation;
      } else if (opts.statMany && unchangedIn(b.out, i, pidfile, now)) {
        kept = files.get(pidfile);
      }
      qemuState(vmid, pidfile, kept ?? touch(pidfile, now), polled ? b.alive[i] === 1 : undefined);
      // Keep the event loop free for hooks while many command lines are read (the first pass).
      if ((i + 1) % 256 === 0) await yieldToLoop();
    }
  }

  function listDir(kind: GuestKind): void {
    const dir = pve(rel.guestDir(currentNode(), kind));
    const vmids = new Set<number>();
    let error: string | null = null;
    try {
      for (const name of readdirSync(dir)) {
        const vmid = confVmid(name);
        if (vmid !== null) vmids.add(vmid);
      }
    } catch (err) {
      if (errCode(err) !== "ENOENT") error = errText(err);
    }
    const old = listing[kind];
    if (
      old.error === error &&
      old.vmids.size === vmids.size &&
      [...vmids].every((v) => old.vmids.has(v))
    )
      return;
    listing[kind] = { vmids, error };
    kindsCache = null;
    changes++;
  }

  /** One guest's directory entries, without listing the whole directory. */
  function probeGuest(vmid: number): void {
    const node = currentNode();
    for (const kind of ["qemu", "lxc"] as const) {
      if (listing[kind].error !== null) continue;
      let present = false;
      try {
        const st = lstatSync(pve(`${rel.guestDir(node, kind)}/${vmid}.conf`), {
          throwIfNoEntry: false,
        });
        present = st !== undefined;
      } catch {
        present = false;
      }
      const had = listing[kind].vmids.has(vmid);
      if (present === had) continue;
      if (present) listing[kind].vmids.add(vmid);
      else listing[kind].vmids.delete(vmid);
      kindsCache = null;
      changes++;
    }
  }

  function kindOf(vmid: number): GuestKind | undefined {
    return listing.qemu.vmids.has(vmid) ? "qemu" : listing.lxc.vmids.has(vmid) ? "lxc" : undefined;
  }

  let kindsCache: Map<number, GuestKind> | null = null;
  /** The same as parallel arrays, for the loops every poll runs: `for (const [k, v] of map)`
   *  allocates an entry array and a result object per guest per poll unless V8 optimises the
   *  loop, about half of what an idle poll allocated at 1000 guests (issue 10). */
  let kindsList: { vmids: number[]; kinds: GuestKind[] } | null = null;

  /** vmid → kind as loadNode's listGuests decides (qemu wins a duplicate), sorted by vmid. */
  function guestKinds(): Map<number, GuestKind> {
    if (kindsCache) return kindsCache;
    const out = new Map<number, GuestKind>();
    for (const v of listing.qemu.vmids) out.set(v, "qemu");
    for (const v of listing.lxc.vmids) if (!out.has(v)) out.set(v, "lxc");
    kindsCache = new Map([...out].sort((a, b) => a[0] - b[0]));
    kindsList = null;
    return kindsCache;
  }

  function guestList(): { vmids: number[]; kinds: GuestKind[] } {
    const map = guestKinds();
    if (kindsList === null) {
      kindsList = { vmids: [...map.keys()], kinds: [...map.values()] };
    }
    return kindsList;
  }

  // pmxcfs's counter for guest configs (vmlist.ts): a pass stats the configs it marks, not all
  // of them (each stat is a round trip into pmxcfs). firewall/*.fw have no counter and are
  // stat'ed every pass the store allows (store.ts). Without .vmlist (--root trees, no pmxcfs)
  // every config is, as before.
  let vmlistSeen: { version: number; node: string; guests: Map<number, number> } | null = null;
  const hot = new Map<number, number>();

  const vmlistHead = { buf: Buffer.allocUnsafe(64) };
  function confGate(node: string, now: number, still: boolean): ConfGate {
    for (const [vmid, until] of hot) if (until <= now) hot.delete(vmid);
    // pmxcfs changes .vmlist only with a commit to its store, so a still store means the list
    // read last is current; and pmxcfs builds the whole text (≈ 60 KB at 1000 guests) for
    // every open of it, whatever is read (cfs-plug-func.c regenerates it on getattr).
    if (still && vmlistSeen?.node === node) return { list: false, touch: hotSet() };
    // The version leads the text: its first 64 bytes say whether anything changed, without
    // having pmxcfs copy the whole list (≈ 60 KB at 1000 guests) every second.
    try {
      const len = readInto(pve(".vmlist"), vmlistHead, 64);
      const head = vmlistVersion(vmlistHead.buf.toString("latin1", 0, len));
      if (head !== null && vmlistSeen?.version === head && vmlistSeen.node === node)
        return { list: false, touch: hotSet() };
    } catch {
      vmlistSeen = null;
      return null;
    }
    let text: string;
    try {
      text = readFileSync(pve(".vmlist"), "utf8");
    } catch {
      vmlistSeen = null;
      return null;
    }
    const version = vmlistVersion(text);
    if (version !== null && vmlistSeen?.version === version && vmlistSeen.node === node)
      return { list: false, touch: hotSet() };
    const parsed = version === null ? null : parseVmlist(text);
    if (parsed === null) {
      vmlistSeen = null;
      return null;
    }
    const before = vmlistSeen?.node === node ? vmlistSeen : null;
    const guests = new Map<number, number>();
    for (const [vmid, g] of parsed.guests) {
      if (g.node !== node) continue;
      guests.set(vmid, g.version);
      if (before && before.guests.get(vmid) !== g.version) hot.set(vmid, now + VMLIST_HOT_MS);
    }
    if (before)
      for (const vmid of before.guests.keys())
        if (!guests.has(vmid)) hot.set(vmid, now + VMLIST_HOT_MS);
    vmlistSeen = { version: parsed.version, node, guests };
    return before ? { list: true, touch: hotSet() } : null;
  }

  // Nearly every pass no guest is hot: one shared empty set, not a new one per second.
  const noneHot: ReadonlySet<number> = new Set();
  function hotSet(): ReadonlySet<number> {
    return hot.size === 0 ? noneHot : new Set(hot.keys());
  }

  // Per guest its two absolute paths: a pass would otherwise build both strings per guest.
  const guestPaths = new Map<number, { node: string; kind: GuestKind; conf: string; fw: string }>();
  function pathsOf(vmid: number, kind: GuestKind, node: string) {
    let p = guestPaths.get(vmid);
    if (p?.node !== node || p.kind !== kind) {
      if (guestPaths.size > 100_000) guestPaths.clear();
      p = {
        node,
        kind,
        conf: pve(`${rel.guestDir(node, kind)}/${vmid}.conf`),
        fw: pve(rel.guestFw(vmid)),
      };
      guestPaths.set(vmid, p);
    }
    return p;
  }

  /** The guests' .fw paths in guestList() order and the numbers statMany gives for them. */
  let fwBatch: {
    list: ReturnType<typeof guestList>;
    node: string;
    paths: string[];
    out: Float64Array;
  } | null = null;

  /** One statMany over every guest's .fw (null without it): touchGuest then reads index i;
   *  `changed` counts the files whose numbers differ from the last pass's. While pmxcfs's store
   *  is `still` and the last walk found every guest of this list quiet, the batch would give
   *  the numbers it gave last time: not taken (store.ts). */
  function statGuestFws(
    list: ReturnType<typeof guestList>,
    node: string,
    still: boolean,
  ): { out: Float64Array; changed: number } | null {
    if (!opts.statMany) return null;
    if (fwBatch?.list !== list || fwBatch.node !== node) {
      const paths = list.vmids.map((v, i) => pathsOf(v, list.kinds[i] as GuestKind, node).fw);
      fwBatch = { list, node, paths, out: new Float64Array(paths.length * 4) };
    } else if (still && quiet?.list === list && quiet.node === node) {
      return { out: fwBatch.out, changed: 0 };
    }
    const changed = opts.statMany(fwBatch.paths, fwBatch.out);
    return { out: fwBatch.out, changed };
  }

  /** pmxcfs's store files, their numbers as statMany last gave them, and storeStill's state. */
  const storePaths = STORE_FILES.map((f) => paths.path(f));
  const storeOut = new Float64Array(4 * STORE_FILES.length);
  let store: StoreState | null = null;
  /** Whether pmxcfs's store has not moved since a stat that the pass after it could trust
   *  (store.ts); false without statMany or without the store (under --root, unless the test
   *  or bench made one). `now`: Date.now() taken before the stat. */
  function storeIsStill(now: number): boolean {
    if (!opts.statMany) return false;
    let moved = opts.statMany(storePaths, storeOut) > 0;
    let newest = 0;
    for (let i = 0; i < storePaths.length; i++) {
      if ((storeOut[4 * i] as number) < 0) moved = true;
      newest = Math.max(newest, storeOut[4 * i + 2] as number, storeOut[4 * i + 3] as number);
    }
    const r = storeStill(store, moved, newest, now, monotonic());
    store = r.next;
    return r.skip;
  }

  /** The guest list (and node) whose last full walk found every guest quiet: its config kept
   *  per .vmlist and its .fw settled at the numbers the batch gave. While the next pass's
   *  batch gives the same numbers and .vmlist marks no guest, that walk would decide the same
   *  for every guest (settled stays settled as time passes), so the pass skips it: at 1000
   *  guests the walk was about a tenth of the idle daemon's CPU (issue 10). Anything else that
   *  reads a guest's files (refreshOwners) clears it. */
  let quiet: { list: ReturnType<typeof guestList>; node: string } | null = null;

  /** The qemu guests of a list, whose run state every pass checks (qemuChecks); LXC's comes
   *  from readSockets. */
  let qemuList: { list: ReturnType<typeof guestList>; vmids: number[] } | null = null;
  function qemuOf(list: ReturnType<typeof guestList>): number[] {
    if (qemuList?.list !== list)
      qemuList = { list, vmids: list.vmids.filter((_, i) => list.kinds[i] === "qemu") };
    return qemuList.vmids;
  }

  /** Whether stat number set `i` of `out` shows `abs` as its entry has it (settledAt, or
   *  still absent): then the entry stands and touch() is not needed. Anything else (a new
   *  file, an error, a difference) goes through touch(), which stats and reads again. */
  function unchangedIn(out: Float64Array, i: number, abs: string, now: number): boolean {
    const e = files.get(abs);
    if (!e) return false;
    const ino = out[4 * i] as number;
    const same =
      ino < 0
        ? (ino === -ENOENT || ino === -ENOTDIR) && e.id === "absent"
        : settledAt(
            e,
            ino,
            out[4 * i + 1] as number,
            out[4 * i + 2] as number,
            out[4 * i + 3] as number,
            now,
          );
    if (same) e.seen = generation;
    return same;
  }

  /** Re-validates one guest's files (its run state: qemuChecks, readSockets); true when
   *  neither file needed a look (see `quiet`). */
  function touchGuest(
    vmid: number,
    kind: GuestKind,
    node: string,
    now: number,
    gate: ConfGate,
    fwStats: { out: Float64Array; i: number } | null,
  ): boolean {
    const p = pathsOf(vmid, kind, node);
    const conf = gate === null || gate.touch.has(vmid) ? undefined : files.get(p.conf);
    // Unchanged per .vmlist: keep the entry (a stat would only confirm it).
    if (conf) conf.seen = generation;
    else touch(p.conf, now);
    const fwSettled = fwStats !== null && unchangedIn(fwStats.out, fwStats.i, p.fw, now);
    if (!fwSettled) touch(p.fw, now);
    return conf !== undefined && fwSettled;
  }

  function runningOf(vmid: number, kind: GuestKind): boolean {
    if (kind === "lxc") return sockets.has(lxcCommandSocket(vmid));
    return qemuRuns.get(vmid) ?? false;
  }

  // Learned-address sources (SPEC §8).

  // Joined once: path() under --root costs a path.join per call, several a pass.
  const leasesDir = paths.path(ADDRESS_PATHS.leasesDir);
  const dnsmasqDir = paths.path(ADDRESS_PATHS.dnsmasqDir);
  const zonePaths = new Map<string, { lease: string; ethers: string }>();
  const zonePath = (zone: string) => {
    let p = zonePaths.get(zone);
    if (p === undefined) {
      if (zonePaths.size > 10_000) zonePaths.clear();
      p = {
        lease: paths.path(`${ADDRESS_PATHS.leasesDir}/dnsmasq.${zone}.leases`),
        ethers: paths.path(`${ADDRESS_PATHS.dnsmasqDir}/${zone}/ethers`),
      };
      zonePaths.set(zone, p);
    }
    return p;
  };
  const leasePath = (zone: string) => zonePath(zone).lease;
  const ethersPath = (zone: string) => zonePath(zone).ethers;

  /** Each zone directory's stat at its last listing. Listing one that does not exist (most
   *  nodes have no /etc/dnsmasq.d) costs an exception every pass, ≈ 0.4 ms in the idle
   *  daemon: a directory is listed again only when its stat moved or is within RECENT_MS
   *  (entries made in the same clock tick leave its mtime as it was). */
  const zoneDirs = new Map<string, string>();
  function dirMoved(dir: string, now: number): boolean {
    let key: string;
    try {
      const st = statSync(dir, { throwIfNoEntry: false });
      key =
        st === undefined
          ? "absent"
          : now - Math.max(st.mtimeMs, st.ctimeMs) < RECENT_MS
            ? "recent"
            : `${st.ino}:${st.mtimeMs}:${st.ctimeMs}`;
    } catch {
      key = "error";
    }
    const moved = key === "recent" || key === "error" || zoneDirs.get(dir) !== key;
    zoneDirs.set(dir, key);
    return moved;
  }

  function listZones(now: number): void {
    // Both calls run: each records its directory's stat.
    const leasesMoved = dirMoved(leasesDir, now);
    if (!dirMoved(dnsmasqDir, now) && !leasesMoved) return;
    const leases: string[] = [];
    try {
      for (const name of readdirSync(leasesDir)) {
        const m = LEASE_FILE.exec(name);
        if (m) leases.push(m[1] as string);
      }
    } catch {
      // No directory: no leases.
    }
    const ethers: string[] = [];
    try {
      for (const d of readdirSync(dnsmasqDir, { withFileTypes: true }))
        if (d.isDirectory() && /^[A-Za-z0-9_.-]+$/.test(d.name)) ethers.push(d.name);
    } catch {
      // No directory: no static hosts.
    }
    leases.sort();
    ethers.sort();
    if (leases.join("\0") !== leaseZones.join("\0") || ethers.join("\0") !== ethersZones.join("\0"))
      changes++;
    leaseZones = leases;
    ethersZones = ethers;
  }

  function touchAddressFiles(now: number): void {
    touch(pve(ADDRESS_PATHS.ipam), now);
    touch(pve(ADDRESS_PATHS.macCache), now);
    for (const f of Object.values(SDN_FILES)) touch(pve(f), now);
    for (const z of leaseZones) touch(leasePath(z), now);
    for (const z of ethersZones) touch(ethersPath(z), now);
  }

  /** A config's NICs with a MAC and no static address, per parsed config (the same object
   *  while the file is unchanged): the poll asks this of every guest every second. */
  const openNicsMemo = new WeakMap<GuestConf, GuestConf["nics"]>();
  function openNics(conf: GuestConf): GuestConf["nics"] {
    let open = openNicsMemo.get(conf);
    if (open === undefined) {
      open = conf.nics.filter((n) => n.mac !== null && staticAddress(n) === null);
      openNicsMemo.set(conf, open);
    }
    return open;
  }

  /** Guests (running, qemu with `agent: 1`) whose NICs nothing but the agent could answer,
   *  and whether a local NIC needs the neighbour table: no config address, and neither the
   *  IPAM nor a DHCP lease answers for it (those come first; `ip neigh` is a spawn per poll). */
  function addressNeeds(node: string, facts: AddressFacts): { agent: number[]; neigh: boolean } {
    const out: number[] = [];
    let neigh = false;
    const noAgent = { ...facts, agent: {} };
    const beforeNeigh = { ...noAgent, neighbours: {} };
    const { vmids, kinds } = guestList();
    for (let i = 0; i < vmids.length; i++) {
      const vmid = vmids[i] as number;
      const kind = kinds[i] as GuestKind;
      const conf = confOf(vmid, kind, node);
      if (!conf) continue;
      const open = openNics(conf);
      if (open.length === 0) continue;
      if (!neigh) neigh = open.some((n) => learnedAddress(conf, n, beforeNeigh) === null);
      if (!conf.agent || kind !== "qemu" || !runningOf(vmid, kind)) continue;
      if (open.some((n) => learnedAddress(conf, n, noAgent) === null)) out.push(vmid);
    }
    return { agent: out, neigh };
  }

  /** addressNeeds reads only what bumps `changes` (listing, configs, run state) and the facts
   *  (a new object when they change): while neither moved, it says what it said last poll
   *  without walking every guest's NICs again (a third of an idle poll's garbage at 1000
   *  guests). */
  let needsMemo: {
    changes: number;
    node: string;
    facts: AddressFacts;
    value: { agent: number[]; neigh: boolean };
  } | null = null;

  /** After listZones() + touchAddressFiles(): the neighbour table and the agent, when needed. */
  async function refreshAddresses(node: string): Promise<void> {
    const facts = addressFacts();
    if (needsMemo?.changes !== changes || needsMemo.node !== node || needsMemo.facts !== facts) {
      needsMemo = { changes, node, facts, value: addressNeeds(node, facts) };
    }
    const needs = needsMemo.value;
    const raw = needs.neigh ? await readNeighbours().catch(() => null) : null;
    // Entries flip between REACHABLE and STALE all the time: only which MAC has which address
    // on which device counts, so a state change alone is no change (no rebuild per flip).
    const text = raw === null ? null : canonicalNeighbours(raw);
    if (text !== neighText) {
      neighText = text;
      neighHash = text === null ? "-" : createHash("sha1").update(text).digest("base64");
      changes++;
    }
    agent.want(needs.agent);
    if (opts.agentWaitMs !== undefined && needs.agent.length > 0)
      await agent.idle(opts.agentWaitMs);
    if (agent.version() !== agentSeen) {
      agentSeen = agent.version();
      changes++;
    }
  }

  let sdnMemo: { key: string; value: { sdn: SdnConfig; diagnostics: Diagnostic[] } } | null = null;
  let factsMemo: { key: string; value: AddressFacts; diagnostics: Diagnostic[] } | null = null;

  const version = (abs: string) => String(entry(abs)?.version ?? 0);

  function sdnConfig(): { sdn: SdnConfig; diagnostics: Diagnostic[] } {
    const key = Object.values(SDN_FILES)
      .map((f) => version(pve(f)))
      .join(",");
    if (sdnMemo?.key !== key) {
      const text = (f: string) => entry(pve(f))?.text ?? null;
      sdnMemo = {
        key,
        value: parseSdn({
          zones: text(SDN_FILES.zones),
          vnets: text(SDN_FILES.vnets),
          subnets: text(SDN_FILES.subnets),
        }),
      };
    }
    return sdnMemo.value;
  }

  /** The facts nat/learn.ts looks addresses up in; the same object while no source changed. */
  function addressFacts(diagnostics?: Diagnostic[]): AddressFacts {
    const sdn = sdnConfig();
    const key = [
      version(pve(ADDRESS_PATHS.ipam)),
      version(pve(ADDRESS_PATHS.macCache)),
      ...leaseZones.map((z) => `${z}=${version(leasePath(z))}`),
      "|",
      ...ethersZones.map((z) => `${z}=${version(ethersPath(z))}`),
      neighHash,
      agent.version(),
      sdnMemo?.key,
    ].join(",");
    if (factsMemo?.key !== key) {
      const diags: Diagnostic[] = [...sdn.diagnostics];
      const facts = emptyFacts();
      facts.sdn = sdn.sdn;
      const ipamText = entry(pve(ADDRESS_PATHS.ipam))?.text;
      if (ipamText) {
        const r = parseIpamState(ipamText, ADDRESS_PATHS.ipam);
        facts.ipam = r.ipam;
        diags.push(...r.diagnostics);
      }
      const cacheText = entry(pve(ADDRESS_PATHS.macCache))?.text;
      if (cacheText) {
        const r = parseMacCache(cacheText, ADDRESS_PATHS.macCache);
        facts.macCache = r.macCache;
        diags.push(...r.diagnostics);
      }
      for (const z of leaseZones) {
        const t = entry(leasePath(z))?.text;
        if (t) parseLeases(t, z, facts.leases);
      }
      for (const z of ethersZones) {
        const t = entry(ethersPath(z))?.text;
        if (t) parseEthers(t, z, facts.ethers);
      }
      if (neighText !== null) parseNeighbours(neighText, null, facts.neighbours);
      facts.agent = agent.answers();
      factsMemo = { key, value: facts, diagnostics: diags };
    }
    diagnostics?.push(...factsMemo.diagnostics);
    return factsMemo.value;
  }

  function confOf(vmid: number, kind: GuestKind, node: string): GuestConf | null {
    const ce = entry(pathsOf(vmid, kind, node).conf);
    const text = ce?.text;
    if (!ce || text === null || text === undefined) return null;
    return memo<GuestConf>(ce, () =>
      parseGuestConf(text, vmid, kind, `${rel.guestDir(node, kind)}/${vmid}.conf`),
    );
  }

  async function refreshAll(): Promise<void> {
    generation++;
    const now = Date.now();
    touch(paths.configPath, now);
    const config = looseConfig();
    const node = currentNode();
    touch(pve(rel.cluster), now);
    touch(pve(rel.host(node)), now);
    // The store first: the .vmlist read and the .fw batch of a pass it does not trust follow it.
    const still = storeIsStill(now);
    const gate = confGate(node, now, still);
    if (gate === null || gate.list) {
      listDir("qemu");
      listDir("lxc");
    }
    readSockets();
    const kinds = guestKinds();
    const list = guestList();
    const fw = statGuestFws(list, node, still);
    const skip =
      fw !== null &&
      fw.changed === 0 &&
      gate !== null &&
      !gate.list &&
      gate.touch.size === 0 &&
      quiet?.list === list &&
      quiet.node === node;
    if (!skip) {
      const fwStats = fw === null ? null : { out: fw.out, i: 0 };
      let allQuiet = true;
      for (let i = 0; i < list.vmids.length; i++) {
        if (fwStats) fwStats.i = i;
        const id = list.vmids[i] as number;
        if (!touchGuest(id, list.kinds[i] as GuestKind, node, now, gate, fwStats)) allQuiet = false;
        // Keep the event loop free for hooks during a long pass.
        if ((i + 1) % 256 === 0) await yieldToLoop();
      }
      quiet = allQuiet ? { list, node } : null;
    }
    await qemuChecks(qemuOf(list), now);
    listZones(now);
    touchAddressFiles(now);
    // A skipped walk marked no guest file seen: the sweep waits for the next full one.
    if (!skip) {
      // forEach, not for-of: no entry array per file (deleting during forEach is defined).
      files.forEach((e, abs) => {
        if (e.seen !== generation) files.delete(abs);
      });
      qemuRuns.forEach((_, vmid) => {
        if (kinds.get(vmid) !== "qemu") qemuRuns.delete(vmid);
      });
      qemuWatch.forEach((_, vmid) => {
        if (kinds.get(vmid) !== "qemu") unwatch(vmid);
      });
    }

    if (config.publicAddress === "auto") {
      const found = await interfaceIPv4(config.externalInterface);
      if (autoAddress?.iface !== config.externalInterface || autoAddress.address !== found)
        changes++;
      autoAddress = { iface: config.externalInterface, address: found };
    }
    // /proc/net/tcp{,6} cost ≈ 1 ms each to read whatever this namespace holds (the kernel
    // walks its whole socket hash), the largest fixed part of an idle poll: read every
    // HOST_PORTS_EVERY_MS, and on the first pass.
    const mono = monotonic();
    if (hostPortsAt === null || mono - hostPortsAt >= HOST_PORTS_EVERY_MS) {
      hostPortsAt = mono;
      const ports = await listening();
      if (!sameHostPorts(ports, hostPorts)) {
        hostPorts = ports;
        changes++;
      }
    }
    await refreshAddresses(node);
    primed = true;
  }

  async function refreshOwners(
    owners: readonly Owner[],
    runState: boolean,
    ownRunState: boolean,
    runStateOf: readonly number[],
  ): Promise<void> {
    const now = Date.now();
    const before = entry(paths.configPath)?.version;
    touch(paths.configPath, now);
    // Another config may name another node or interface: everything is new then.
    if (entry(paths.configPath)?.version !== before) return refreshAll();
    const node = currentNode();
    touch(pve(rel.cluster), now);
    touch(pve(rel.host(node)), now);
    // A lease or IPAM entry written since the last poll (a few stats; no listing, no command).
    touchAddressFiles(now);
    let lxc = false;
    // An entry changed here (read again, or an error) is one the next poll must look at.
    if (owners.some((o) => o !== "NODE")) quiet = null;
    for (const o of owners) {
      if (o === "NODE") continue;
      probeGuest(o);
      const kind = kindOf(o);
      if (kind === undefined) continue;
      touch(pve(`${rel.guestDir(node, kind)}/${o}.conf`), now);
      touch(pve(rel.guestFw(o)), now);
      // With runState every guest's run state is read below, these owners' too.
      if (!ownRunState || runState) continue;
      if (kind === "qemu") qemuCheck(o, now);
      else lxc = true;
    }
    if (runState) {
      await qemuChecks(qemuOf(guestList()), now);
      readSockets();
      return;
    }
    for (const vmid of runStateOf) {
      const kind = kindOf(vmid);
      if (kind === "qemu") qemuCheck(vmid, now);
      else if (kind === "lxc") lxc = true;
    }
    if (lxc) readSockets();
  }

  // Parsed values, memoised on the entries.

  function fwOf(e: FileEntry, file: string, kind: FwKind, cluster: FwFile | null): FwResult | null {
    if (e.text === null) return null;
    const text = e.text;
    // The grammar alone depends only on the text (and, for host.fw, on cluster.fw).
    const slot = memo(e, () => ({
      parse: null as { cluster: FwFile | null; fw: FwFile | null; err: unknown } | null,
      result: null as { cluster: FwFile | null; value: FwResult } | null,
    }));
    const parseCluster = kind === "host" ? cluster : null;
    if (slot.parse === null || slot.parse.cluster !== parseCluster) {
      try {
        slot.parse = { cluster: parseCluster, fw: parseFw(text, file, kind, cluster), err: null };
      } catch (err) {
        slot.parse = { cluster: parseCluster, fw: null, err };
      }
      slot.result = null;
    }
    if (slot.result === null || slot.result.cluster !== cluster) {
      let value: FwResult;
      const parsed = slot.parse;
      if (parsed.fw === null) {
        value = { fw: null, diag: internalError(file, parsed.err) };
      } else {
        try {
          const refs = refsOf(parsed.fw, kind, cluster);
          value = {
            fw: { ...parsed.fw, diagnostics: [...parsed.fw.diagnostics, ...refs] },
            diag: null,
          };
        } catch (err) {
          value = { fw: null, diag: internalError(file, err) };
        }
      }
      slot.result = { cluster, value };
    }
    return slot.result.value;
  }

  function readDiag(file: string, e: FileEntry | undefined, out: Diagnostic[]): string | null {
    if (!e) return null;
    if (e.error !== null) {
      out.push({ file, line: 0, severity: "error", message: `cannot read: ${e.error}` });
      return null;
    }
    return e.text;
  }

  function loadedFw(
    file: string,
    kind: FwKind,
    cluster: FwFile | null,
    diagnostics: Diagnostic[],
  ): FwFile | null {
    const e = entry(pve(file));
    if (readDiag(file, e, diagnostics) === null || !e) return null;
    const r = fwOf(e, file, kind, cluster);
    if (r?.diag) diagnostics.push(r.diag);
    return r?.fw ?? null;
  }

  let lastInput: { changes: number; pending: ReadonlySet<number>; value: NodeInput } | null = null;

  /** The same object while nothing it depends on changed (callers must not mutate it). */
  function input(opts: InputOptions = {}): NodeInput {
    if (!primed) throw new Error("node source: refresh() before input()");
    if (opts.config) return build(opts);
    const pending = new Set(opts.pending ?? []);
    // Files and run states as last built: only guests that joined or left the pending set (a
    // pre-start, a start grace ending) can change state, so only they are re-derived.
    // Rebuilding every guest's entry for that cost each pre-start ≈ 6 ms at 1000 guests.
    const value =
      lastInput?.changes === changes
        ? withPending(lastInput.value, lastInput.pending, pending)
        : build(opts);
    lastInput = { changes, pending, value };
    return value;
  }

  /** `value` as build() would make it with `now` pending instead of `was`: a guest that is not
   *  running is "starting" while pending, else "stopped". The same object when no guest's
   *  state changes (a pre-start of a running guest). */
  function withPending(
    value: NodeInput,
    was: ReadonlySet<number>,
    now: ReadonlySet<number>,
  ): NodeInput {
    let guests: NodeInput["guests"] | null = null;
    for (const vmid of [...was, ...now]) {
      if (was.has(vmid) === now.has(vmid)) continue;
      const g = value.guests[vmid];
      if (!g || g.state === "running") continue;
      const state: RunState = now.has(vmid) ? "starting" : "stopped";
      if (g.state === state) continue;
      guests ??= { ...value.guests };
      guests[vmid] = { ...g, state };
    }
    return guests === null ? value : { ...value, guests };
  }

  function build(opts: InputOptions): NodeInput {
    const diagnostics: Diagnostic[] = [];
    const ce = entry(paths.configPath);
    const parsed = opts.config ? null : configResult();
    if (ce?.error && !opts.config)
      throw new ConfigError(`cannot read: ${ce.error}`, paths.configPath);
    let config: Config;
    if (opts.config) {
      config = opts.config;
    } else if (parsed === null) {
      config = absentConfig;
    } else {
      const first = parsed.errors[0];
      if (first) throw new ConfigError(first.message, first.file, first.line);
      config = parsed.config;
      diagnostics.push(...parsed.unknownKeys);
    }
    const node = nodeName(paths, config);

    const cluster = loadedFw(rel.cluster, "cluster", null, diagnostics);
    const host = loadedFw(rel.host(node), "host", cluster, diagnostics);

    for (const kind of ["qemu", "lxc"] as const) {
      const error = listing[kind].error;
      if (error !== null) {
        diagnostics.push({
          file: rel.guestDir(node, kind),
          line: 0,
          severity: "error",
          message: `cannot read: ${error}`,
        });
      }
    }
    // listGuests reads names in sorted (text) order; a vmid in both directories is reported once.
    const both = [...listing.lxc.vmids]
      .filter((v) => listing.qemu.vmids.has(v))
      .map((v) => `${v}.conf`)
      .sort();
    for (const name of both) {
      diagnostics.push({
        file: `${rel.guestDir(node, "lxc")}/${name}`,
        line: 0,
        severity: "error",
        message: `VMID ${confVmid(name)} is configured both as qemu and lxc guest; the qemu config is used`,
      });
    }

    const guests: NodeInput["guests"] = {};
    for (const [vmid, kind] of guestKinds()) {
      const confFile = `${rel.guestDir(node, kind)}/${vmid}.conf`;
      const ce = entry(pve(confFile));
      const confText = readDiag(confFile, ce, diagnostics);
      const conf = confText === null ? null : confOf(vmid, kind, node);
      if (conf === null) continue;
      const fw = loadedFw(rel.guestFw(vmid), "guest", cluster, diagnostics);
      const running = runningOf(vmid, kind);
      const state: RunState = running
        ? "running"
        : opts.pending?.has(vmid)
          ? "starting"
          : "stopped";
      guests[vmid] = { conf, fw, state };
    }

    let publicAddress: string | null = config.publicAddress;
    if (publicAddress === "auto") {
      publicAddress = autoAddress?.iface === config.externalInterface ? autoAddress.address : null;
      if (publicAddress === null) {
        diagnostics.push({
          file: paths.configPath,
          line: 0,
          severity: "warning",
          message: `public_address = auto, but ${config.externalInterface} has no IPv4 address: forwards need an explicit address (NAT:<address>:<port>)`,
        });
      }
    }
    const addresses = addressFacts(diagnostics);
    return {
      node,
      config,
      publicAddress,
      hostPorts,
      cluster,
      host,
      guests,
      addresses,
      diagnostics,
    };
  }

  /** The learned-address sources' content (not their version counters, which differ between
   *  two sources reading the same files). */
  let factsHashMemo: { key: string; value: string } | null = null;
  function factsKeyHash(): string {
    // Within this source a file's version changes exactly when its content does: hash the
    // contents only when a version, the neighbours or the agent's answers moved.
    const key = [
      version(pve(ADDRESS_PATHS.ipam)),
      version(pve(ADDRESS_PATHS.macCache)),
      ...Object.values(SDN_FILES).map((f) => version(pve(f))),
      ...leaseZones.map((z) => `${z}=${version(leasePath(z))}`),
      "|",
      ...ethersZones.map((z) => `${z}=${version(ethersPath(z))}`),
      neighHash,
      agent.version(),
    ].join(",");
    if (factsHashMemo?.key !== key) factsHashMemo = { key, value: factsContentHash() };
    return factsHashMemo.value;
  }

  function factsContentHash(): string {
    const h = createHash("sha1");
    const add = (abs: string) => {
      const e = entry(abs);
      h.update(`${abs}\0${e ? contentHash(e) : "unread"}\0`);
    };
    add(pve(ADDRESS_PATHS.ipam));
    add(pve(ADDRESS_PATHS.macCache));
    for (const f of Object.values(SDN_FILES)) add(pve(f));
    for (const z of leaseZones) add(leasePath(z));
    for (const z of ethersZones) add(ethersPath(z));
    h.update(`${neighText ?? "\0none"}\0${JSON.stringify(agent.answers())}`);
    return h.digest("base64");
  }

  let lastFingerprint: { changes: number; addresses: string; value: Map<string, string> } | null =
    null;

  /** The same Map while nothing changed (the watcher polls it every second). */
  function fingerprint(): Map<string, string> {
    // Neighbours and agent answers change without a file change: their hash is part of the key.
    const addresses = factsKeyHash();
    if (lastFingerprint?.changes === changes && lastFingerprint.addresses === addresses) {
      return lastFingerprint.value;
    }
    const fp = new Map<string, string>();
    const v = (abs: string) => {
      const e = entry(abs);
      return e ? contentHash(e) : "unread";
    };
    fp.set("config", v(paths.configPath));
    const config = looseConfig();
    const node = currentNode();
    if (config.publicAddress === "auto") {
      // A DHCP-assigned public address may change under us.
      fp.set("public_address", String(autoAddress?.address ?? null));
    }
    fp.set(rel.cluster, v(pve(rel.cluster)));
    fp.set(rel.host(node), v(pve(rel.host(node))));
    for (const [vmid, kind] of guestKinds()) {
      const confFile = `${rel.guestDir(node, kind)}/${vmid}.conf`;
      fp.set(confFile, v(pve(confFile)));
      fp.set(rel.guestFw(vmid), v(pve(rel.guestFw(vmid))));
      fp.set(`run:${vmid}`, runningOf(vmid, kind) ? "running" : "stopped");
    }
    // Leases, IPAM, SDN, neighbours and agent answers as one value: a change re-compiles, and
    // the compile memo re-expands only the guests whose addresses changed.
    fp.set("addresses", addresses);
    lastFingerprint = { changes, addresses, value: fp };
    return fp;
  }

  // One config object per absent file, so an unchanged (absent) config keeps its identity.
  const absentConfig: Config = { ...DEFAULTS, allowHostPorts: [] };

  return {
    async refresh(scope) {
      if (!primed || "all" in scope) return refreshAll();
      return refreshOwners(
        scope.owners,
        scope.runState === true,
        scope.ownRunState !== false,
        scope.runStateOf ?? [],
      );
    },
    input,
    fingerprint,
  };
}
