// Writes the embedded zeromq addon to disk once, so that `process.dlopen` can map it.
//
// Many hook processes may start at the same moment on a fresh host (a node booting its guests),
// each finding no extracted copy. Every process writes its own private temp file and then
// `link`s it to the final name: link fails with EEXIST for all but the first, so the final
// file appears complete or not at all and is never replaced under a process that maps it.
// The file name carries the addon's sha256: an upgraded binary never loads an old copy.
import {
  closeSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  realpathSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import path from "node:path";

/** Where root keeps the extracted addon (removed on purge). */
export const SYSTEM_ADDON_DIR = "/var/lib/pve-nat/addon";

/** Temp files older than this are leftovers of a killed process. */
const STALE_TMP_MS = 60_000;

export interface AddonDirInput {
  euid: number;
  /** PVE_NAT_ADDON_DIR: an absolute path that overrides the default (tests, unusual hosts). */
  override: string | undefined;
  tmpdir: string;
}

/** The directory to extract into. Root uses a root-only state dir; another user (running
 *  `pve-nat --help`, `check`, `plan`) gets a private directory of its own under tmpdir. */
export function addonDir(input: AddonDirInput): string {
  if (input.override && path.isAbsolute(input.override)) return input.override;
  if (input.euid === 0) return SYSTEM_ADDON_DIR;
  return path.join(input.tmpdir, `pve-nat-${input.euid}`, "addon");
}

/** Creates `dir` (0700, parents too) and checks that nobody else can write into it or into
 *  any directory above it: a directory another user controls could hand us a library of
 *  their choosing. Ancestors may be writable by others only with the sticky bit (as /tmp). */
export function ensurePrivateDir(dir: string, euid: number): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  checkPrivateDir(dir, euid);
}

export function checkPrivateDir(dir: string, euid: number): void {
  const real = realpathSync(dir);
  const own = lstatSync(real);
  if (!own.isDirectory()) throw new Error(`${dir}: not a directory`);
  if (own.uid !== euid) throw new Error(`${dir}: owned by uid ${own.uid}, expected ${euid}`);
  if ((own.mode & 0o077) !== 0) throw new Error(`${dir}: mode must be 0700`);
  for (let d = path.dirname(real); ; d = path.dirname(d)) {
    const st = lstatSync(d);
    const sticky = (st.mode & 0o1000) !== 0;
    if (st.uid !== euid && st.uid !== 0) throw new Error(`${d}: owned by uid ${st.uid}`);
    if ((st.mode & 0o022) !== 0 && !sticky) throw new Error(`${d}: writable by others`);
    if (sticky || d === path.dirname(d)) break;
  }
}

export interface ExtractResult {
  file: string;
  /** true when this process wrote the file (first run after install or upgrade). */
  written: boolean;
}

export interface AddonPayload {
  sha256: string;
  size: number;
  /** Read only when the file has to be written: copying the asset costs a few ms. */
  bytes(): Uint8Array;
}

/** Makes `<dir>/<sha256>.node` hold the payload. Safe to call from many processes at once.
 *  `keep`: the hashes of every addon this executable embeds (zeromq's and pve-nat's own), which
 *  share the directory; copies of any other hash are an older version's. */
export function extractAddon(
  addon: AddonPayload,
  dir: string,
  euid: number,
  keep: readonly string[] = [addon.sha256],
): ExtractResult {
  const { sha256, size } = addon;
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`bad addon hash "${sha256}"`);
  const file = path.join(dir, `${sha256}.node`);
  if (isOurs(file, size, euid)) {
    checkPrivateDir(dir, euid);
    return { file, written: false };
  }

  ensurePrivateDir(dir, euid);
  // pid + the monotonic clock in ns names one process at one moment; `wx` (O_EXCL) refuses a
  // clash anyway, and the directory is private, so nothing here needs to be unguessable
  // (node:crypto's randomBytes cost every hook ≈ 7 ms of start-up just to load the module).
  const tmp = path.join(
    dir,
    `.${sha256}.${process.pid}.${process.hrtime.bigint().toString(16)}.tmp`,
  );
  const bytes = addon.bytes();
  if (bytes.byteLength !== size)
    throw new Error(`embedded addon is ${bytes.byteLength} bytes, expected ${size}`);
  const fd = openSync(tmp, "wx", 0o600);
  try {
    let off = 0;
    while (off < bytes.byteLength) off += writeSync(fd, bytes, off, bytes.byteLength - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  let written = false;
  try {
    linkSync(tmp, file);
    written = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    // Someone else linked first; theirs is complete unless a truncated file was left by
    // something outside this protocol (a full disk during a manual copy): replace that one.
    if (!isOurs(file, size, euid)) {
      unlinkSync(file);
      linkSync(tmp, file);
      written = true;
    }
  } finally {
    unlinkSync(tmp);
  }
  if (written) removeStale(dir, keep.includes(sha256) ? keep : [...keep, sha256]);
  return { file, written };
}

/** Drops copies of other addon versions (an upgrade) and temp files of killed processes.
 *  Unlinking a file another process has mapped is harmless on Linux. */
export function removeStale(dir: string, keep: readonly string[], now = Date.now()): string[] {
  const removed: string[] = [];
  const kept = new Set(keep.map((sha) => `${sha}.node`));
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    const isOtherAddon = /^[0-9a-f]{64}\.node$/.test(name) && !kept.has(name);
    const isOldTmp =
      /^\.[0-9a-f]{64}\.\d+\.[0-9a-f]+\.tmp$/.test(name) && ageMs(full, now) > STALE_TMP_MS;
    if (!isOtherAddon && !isOldTmp) continue;
    try {
      unlinkSync(full);
      removed.push(name);
    } catch {
      // A concurrent cleaner got there first.
    }
  }
  return removed;
}

function isOurs(file: string, size: number, euid: number): boolean {
  try {
    const st = lstatSync(file);
    return st.isFile() && st.size === size && st.uid === euid;
  } catch {
    return false;
  }
}

function ageMs(file: string, now: number): number {
  try {
    return now - statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}
