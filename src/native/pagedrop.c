/*
 * pagedrop: gives back the daemon's resident pages of its own executable (issue 10).
 *
 * Starting Node, loading the bundle and the first reconcile touch ~60 MB of the executable's
 * code and read-only data (V8's compilers, the snapshot, the bundle, Node's built-in modules);
 * an idle daemon uses a fraction of that. Those pages stay mapped, so they count in the
 * daemon's RSS for its whole life. madvise(MADV_DONTNEED) on a clean file-backed mapping only
 * removes it from this process's page tables: the pages stay in the page cache (reclaimable,
 * shared with the hook processes running the same file), and the next touch maps them again
 * from there. Node exposes no madvise, hence these few lines of C.
 *
 * Only mappings that are readable, not writable, file-backed and hold no private (copied)
 * page are dropped. The last condition is the one that matters for correctness: a read-only
 * mapping can still carry pages the process wrote before making it read-only (the dynamic
 * linker's relocations under RELRO); dropping those would bring back the file's unrelocated
 * bytes. smaps's "Anonymous:" counts exactly those pages, so a mapping with any is left alone.
 *
 * evictExe() deals with the other half: how much of the file one touch maps. The kernel here
 * (6.18) maps the whole page-cache folio around a faulting address, and a file written or read
 * sequentially (dpkg installing it, cp, cat, a backup) sits in the cache in folios of up to 2 MB,
 * so every code page the daemon runs brings its 2 MB neighbourhood into its RSS. Pages read back
 * by the daemon's own faults come in readahead-sized folios (64 KB here). Measured with `npm run
 * bench -- --footprint --counts 1000 --backend nft`, one run each, the cache filled by `cat`
 * first: RSS peak 104.8 MB without the eviction, 89.6 MB with it (97.8 MB without, for a cache
 * left in small folios by earlier runs).
 *
 * Part of pve-nat's own addon (src/native/module.c).
 */
#define _GNU_SOURCE
#include "native.h"
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define MAX_RANGES 4096

struct range {
  unsigned long start, end, rss_kb;
};

static struct range ranges[MAX_RANGES];

/* Clean read-only file mappings of this process, from /proc/self/smaps. Returns the count,
 * or -1 when smaps cannot be read. */
static int collect(void) {
  FILE *f = fopen("/proc/self/smaps", "re");
  if (f == NULL) return -1;
  char line[4096];
  int n = 0;
  int candidate = 0;
  struct range cur = {0, 0, 0};
  unsigned long anon_kb = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long start, end, inode;
    unsigned long long offset;
    char perms[8], dev[32];
    int path_at = 0;
    if (sscanf(line, "%lx-%lx %7s %llx %31s %lu %n", &start, &end, perms, &offset, dev, &inode,
               &path_at) == 6) {
      const char *path = line + path_at;
      candidate = perms[0] == 'r' && perms[1] == '-' && inode != 0 && path[0] == '/';
      cur.start = start;
      cur.end = end;
      cur.rss_kb = 0;
      anon_kb = 1; /* unknown until its "Anonymous:" line is read */
      continue;
    }
    unsigned long kb;
    if (sscanf(line, "Rss: %lu kB", &kb) == 1) {
      cur.rss_kb = kb;
    } else if (sscanf(line, "Anonymous: %lu kB", &kb) == 1) {
      anon_kb = kb;
    } else if (strncmp(line, "VmFlags:", 8) == 0) {
      /* The last line of a mapping's block. */
      if (candidate && anon_kb == 0 && cur.rss_kb > 0 && n < MAX_RANGES) ranges[n++] = cur;
      candidate = 0;
    }
  }
  fclose(f);
  return n;
}

/* Unmaps the clean read-only file mappings; the bytes released, or -1 (smaps unreadable). */
static double drop_mapped(void) {
  int n = collect();
  if (n < 0) return -1;
  double released = 0;
  for (int i = 0; i < n; i++) {
    if (madvise((void *)ranges[i].start, ranges[i].end - ranges[i].start, MADV_DONTNEED) == 0)
      released += (double)ranges[i].rss_kb * 1024;
  }
  return released;
}

/* drop() → resident bytes released from this process's page tables, or -1 (smaps unreadable). */
napi_value Drop(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  if (napi_create_double(env, drop_mapped(), &result) != napi_ok) return NULL;
  return result;
}

/* exeLargeFolios() → 1 when a page of this process's own executable that it maps sits in a
 * page-cache folio of LARGE_FOLIO pages or more, 0 when none does, -errno when it cannot tell
 * (PFNs are shown only to CAP_SYS_ADMIN; /proc/kpageflags only to root). Called before drop(),
 * while the start-up's pages are still mapped: it is what decides whether evictExe() pays.
 *
 * Measured here (6.18, ext4), a node started from the file: `cat` of the file left it in folios
 * of up to 512 pages and the process mapped 13 764 pages; a `cp` left 16-page folios and the
 * process mapped 7 857; read back by a process's own faults, 1- and 4-page folios and 7 799.
 * Only the first is worth an eviction, whose price is every page the reconcile then reads back
 * from disk (≈ 45 ms of a 1000-guest reconcile here). */
#define LARGE_FOLIO 32
#define KPF_COMPOUND_HEAD 15
#define KPF_COMPOUND_TAIL 16
#define PM_CHUNK 4096

/* Whether the physically contiguous pages [first, first + n) hold LARGE_FOLIO pages of one
 * folio: a head or a tail followed by tails only. 1, 0, or -1 when kpageflags cannot be read. */
static int one_folio_in(int kflags, unsigned long long first, size_t n) {
  static unsigned long long flags[PM_CHUNK];
  if (n > PM_CHUNK) n = PM_CHUNK;
  ssize_t got = pread(kflags, flags, n * sizeof flags[0], (off_t)(first * sizeof flags[0]));
  if (got < (ssize_t)(n * sizeof flags[0])) return -1;
  const unsigned long long head = 1ULL << KPF_COMPOUND_HEAD, tail = 1ULL << KPF_COMPOUND_TAIL;
  size_t same = 0;
  for (size_t i = 0; i < n; i++) {
    if ((flags[i] & tail) && !(flags[i] & head) && same > 0) same++;
    else same = (flags[i] & (head | tail)) ? 1 : 0;
    if (same >= LARGE_FOLIO) return 1;
  }
  return 0;
}

/* A folio maps whole (within the mapping), so a large one shows in /proc/self/pagemap as a run
 * of present pages whose PFNs are consecutive; only runs of LARGE_FOLIO pages or more are looked
 * up in /proc/kpageflags, since neighbouring small folios can be physically contiguous too. */
static int large_in(int pagemap, int kflags, unsigned long start, unsigned long end,
                    int *saw_pfn) {
  static unsigned long long pm[PM_CHUNK];
  const unsigned long page = (unsigned long)sysconf(_SC_PAGESIZE);
  unsigned long long run_first = 0, prev = 0;
  size_t run = 0;
  for (unsigned long at = start; at < end;) {
    unsigned long pages = (end - at) / page;
    if (pages > PM_CHUNK) pages = PM_CHUNK;
    ssize_t got = pread(pagemap, pm, pages * sizeof pm[0], (off_t)(at / page * sizeof pm[0]));
    if (got < (ssize_t)sizeof pm[0]) return -1;
    const size_t n = (size_t)got / sizeof pm[0];
    for (size_t i = 0; i < n; i++) {
      const unsigned long long pfn = pm[i] & ((1ULL << 55) - 1);
      const int present = (pm[i] >> 63 & 1) && pfn != 0;
      if (present && run > 0 && pfn == prev + 1) {
        run++;
        prev = pfn;
        continue;
      }
      if (run >= LARGE_FOLIO) {
        int r = one_folio_in(kflags, run_first, run);
        if (r != 0) return r;
      }
      run = 0;
      if (present) {
        *saw_pfn = 1;
        run = 1;
        run_first = prev = pfn;
      }
    }
    at += n * page;
  }
  return run >= LARGE_FOLIO ? one_folio_in(kflags, run_first, run) : 0;
}

napi_value ExeLargeFolios(napi_env env, napi_callback_info info) {
  (void)info;
  int rc = 0;
  struct stat exe;
  FILE *maps = NULL;
  int pagemap = -1, kflags = -1;
  if (stat("/proc/self/exe", &exe) != 0) {
    rc = -errno;
    goto out;
  }
  maps = fopen("/proc/self/maps", "re");
  pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  kflags = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
  if (maps == NULL || pagemap < 0 || kflags < 0) {
    rc = -errno;
    goto out;
  }
  char line[4096];
  int saw_pfn = 0;
  while (rc == 0 && fgets(line, sizeof line, maps) != NULL) {
    unsigned long start, end, inode;
    unsigned int major, minor;
    if (sscanf(line, "%lx-%lx %*s %*s %x:%x %lu", &start, &end, &major, &minor, &inode) != 5)
      continue;
    if (inode != exe.st_ino || major != major(exe.st_dev) || minor != minor(exe.st_dev))
      continue;
    int r = large_in(pagemap, kflags, start, end, &saw_pfn);
    if (r < 0) rc = -EIO;
    else if (r > 0) rc = 1;
  }
  /* Mapped pages without a PFN: not allowed to see them, so no answer. */
  if (rc == 0 && !saw_pfn) rc = -EPERM;
out:
  if (maps != NULL) fclose(maps);
  if (pagemap >= 0) close(pagemap);
  if (kflags >= 0) close(kflags);
  napi_value result;
  if (napi_create_int32(env, rc, &result) != napi_ok) return NULL;
  return result;
}

/* evictExe() → 0, or -errno. Does drop()'s work, then asks the kernel to drop the page cache
 * of this process's own executable; POSIX_FADV_DONTNEED leaves every page some process maps
 * (hooks running now) and any dirty page alone, so nothing running loses a page: what is
 * evicted is read back on its next use, from disk or the host's cache (110 MB in 0.12 s here),
 * in small folios. Both in one call: with JavaScript between them, the code that ran there
 * (Node's and V8's, in the executable) was mapped again from the cache's large folios, which
 * the eviction then left alone, and every later start found them, asked exeLargeFolios() and
 * evicted again. Called once, before the reconcile, when exeLargeFolios() did not answer 0. */
napi_value EvictExe(napi_env env, napi_callback_info info) {
  (void)info;
  int rc = 0;
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = -errno;
  } else {
    drop_mapped();
    int e = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (e != 0) rc = -e;
    close(fd);
  }
  napi_value result;
  if (napi_create_int32(env, rc, &result) != napi_ok) return NULL;
  return result;
}
