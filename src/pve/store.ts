// pmxcfs's backing store as the node's change signal (issue 10). pmxcfs keeps /etc/pve in
// memory and writes every change of it — a local write, an edit replicated from another node,
// a node's resync — to /var/lib/pve-cluster/config.db, an SQLite database in WAL mode: the
// commit appends to config.db-wal inside the same locked section that makes the change visible
// (proxmox/pve-cluster src/pmxcfs/memdb.c: memdb_pwrite, memdb_rename, memdb_delete, memdb_mtime
// all call bdb_backend_write under memdb->mutex, which memdb_getattr and memdb_read also take).
// So while neither file's numbers move, no file under /etc/pve changed, and a poll need not stat
// every guest's .fw to learn that. Pure: the caller stats the two files.

/** The two files, under --root like every other path. */
export const STORE_FILES = [
  "/var/lib/pve-cluster/config.db",
  "/var/lib/pve-cluster/config.db-wal",
] as const;

/** How long the store must have been still before a poll trusts it. A write's mtime is the
 *  file system's clock, which may be coarse (ext4: one tick; some: one second), so a write right
 *  after our stat can keep the number we saw unless that number is older than the clock's step;
 *  and a .fw stat may come from the kernel's FUSE attribute cache (libfuse's default
 *  attr_timeout, 1 s) for up to a second after the write. The pass that follows a stat this
 *  long after the last write sees every file as it is. */
export const STORE_QUIET_MS = 2000;

/** A full pass at least this often whatever the store says: pve-firewall's own update cycle
 *  (it re-reads every rule file every 10 s). A store that stops moving (another database
 *  layout, a clock stepped back onto an old mtime) then costs an edit 10 s, not forever. */
export const STORE_FULL_EVERY_MS = 10_000;

export interface StoreState {
  /** When the last stat that a full pass followed (or that found the store still) was taken:
   *  wall clock, as the store's mtimes are. */
  at: number;
  /** When the last full pass ran: monotonic. */
  fullAt: number;
}

/**
 * Whether this poll may skip the guests' .fw stats, and the state for the next poll.
 * `moved`: the store's numbers (inode, size, mtime, ctime of both files) differ from the last
 * stat's, or a file is missing (then there is no signal); `newestMs`: the later of their
 * mtimes and ctimes; `wall`: Date.now() taken before the stat; `mono`: the monotonic clock.
 * A skip needs the last stat's numbers unchanged, and the newest of them older than that
 * stat by STORE_QUIET_MS: then no write came after it (its mtime would be newer), and the pass
 * that followed it saw every file.
 */
export function storeStill(
  prev: StoreState | null,
  moved: boolean,
  newestMs: number,
  wall: number,
  mono: number,
): { skip: boolean; next: StoreState } {
  const skip =
    prev !== null &&
    !moved &&
    newestMs <= prev.at - STORE_QUIET_MS &&
    mono - prev.fullAt < STORE_FULL_EVERY_MS;
  return { skip, next: { at: wall, fullAt: skip && prev ? prev.fullAt : mono } };
}
