/*
 * statBatch(paths) prepares; statMany(batch, out) stats every path of the batch, results as
 * numbers in a Float64Array.
 *
 * The daemon's watcher stats every guest's firewall file once a second (SPEC §2: an edit is
 * live within 2 s, and pmxcfs keeps no change counter for firewall/<vmid>.fw). At 1000 guests
 * fs.statSync cost ≈ 10 ms of CPU per pass on the bench machine, most of it building a Stats
 * object per file and the garbage that leaves. A statMany that took the paths as JS strings on
 * every call still cost ≈ 3.7 ms a pass (a CPU profile of the idle daemon at 1000 guests: half
 * of its own CPU): converting 1000 strings, and a path walk from / for every file. The batch
 * converts them once, and a pass opens each directory once and stats its files relative to it
 * (fstatat), which walks one name per file. The directory is opened again on every pass, so a
 * directory replaced since the last one is seen as stat(2) would see it.
 *
 * out[4i .. 4i+3] = ino, size, mtimeMs, ctimeMs of paths[i], computed as Node computes its
 * Stats fields (sec * 1e3 + nsec / 1e6), so equal stats compare equal; on failure out[4i] is
 * -errno and the rest 0, the errno stat(2) of that path gives. Returns how many paths' numbers
 * differ from what `out` held before the call: passed the same `out` each time, 0 says nothing
 * changed since the last pass, which the caller can take without looking at 4000 numbers in
 * JavaScript (the idle poll at 1000 guests, issue 10). Throws on bad arguments.
 */
#define _GNU_SOURCE
#include "native.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct entry {
  char *dir;  /* NULL: stat(path) as given (no directory part, or nothing after the last /) */
  char *name; /* the last component, or the whole path when dir is NULL */
  int err;    /* set at preparation: ENAMETOOLONG */
};

struct batch {
  uint32_t n;
  struct entry *e;
};

static void free_batch(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct batch *b = data;
  for (uint32_t i = 0; i < b->n; i++) {
    /* Consecutive entries share one dir string. */
    if (b->e[i].dir && (i == 0 || b->e[i - 1].dir != b->e[i].dir)) free(b->e[i].dir);
    free(b->e[i].name);
  }
  free(b->e);
  free(b);
}

napi_value StatBatch(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return type_error(env, "statBatch(paths)");
  uint32_t n;
  if (napi_get_array_length(env, argv[0], &n) != napi_ok) return type_error(env, "paths: an array");
  struct batch *b = calloc(1, sizeof *b);
  if (!b || !(b->e = calloc(n ? n : 1, sizeof *b->e))) {
    free(b);
    napi_throw_error(env, NULL, "statBatch: out of memory");
    return NULL;
  }
  char path[PATH_MAX];
  for (uint32_t i = 0; i < n; i++) {
    /* Entries are zeroed by calloc: free_batch may be handed one not yet filled in. */
    b->n = i + 1;
    napi_value v;
    size_t got;
    struct entry *e = &b->e[i];
    if (napi_get_element(env, argv[0], i, &v) != napi_ok ||
        napi_get_value_string_utf8(env, v, path, sizeof path, &got) != napi_ok) {
      free_batch(env, b, NULL);
      return type_error(env, "paths: strings");
    }
    if (got >= sizeof path - 1) {
      e->err = ENAMETOOLONG;
      e->name = strdup("");
      continue;
    }
    char *slash = strrchr(path, '/');
    if (!slash || slash[1] == '\0') {
      e->name = strdup(path);
    } else {
      size_t dlen = slash == path ? 1 : (size_t)(slash - path);
      struct entry *prev = i > 0 ? &b->e[i - 1] : NULL;
      if (prev && prev->dir && strlen(prev->dir) == dlen && memcmp(prev->dir, path, dlen) == 0)
        e->dir = prev->dir;
      else
        e->dir = strndup(path, dlen);
      e->name = strdup(slash + 1);
    }
    if (!e->name || (slash && slash[1] != '\0' && !e->dir)) {
      free_batch(env, b, NULL);
      napi_throw_error(env, NULL, "statBatch: out of memory");
      return NULL;
    }
  }
  napi_value out;
  if (napi_create_external(env, b, free_batch, NULL, &out) != napi_ok) {
    free_batch(env, b, NULL);
    return type_error(env, "statBatch: cannot wrap");
  }
  return out;
}

napi_value StatMany(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return type_error(env, "statMany(batch, out)");
  void *p;
  if (!external_arg(env, argv[0], &p)) return type_error(env, "batch: from statBatch()");
  struct batch *b = p;
  napi_typedarray_type type;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, argv[1], &type, &len, &data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || len / 4 < b->n)
    return type_error(env, "out: a Float64Array of 4 numbers per path");
  double *out = data;
  uint32_t changed = 0;
  const char *open_dir = NULL;
  int fd = -1, fd_err = 0;
  for (uint32_t i = 0; i < b->n; i++) {
    struct entry *e = &b->e[i];
    double *o = out + (size_t)i * 4;
    struct stat st;
    int r, err = e->err;
    if (!err) {
      if (e->dir) {
        if (e->dir != open_dir) {
          if (fd >= 0) close(fd);
          fd = open(e->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
          fd_err = fd < 0 ? errno : 0;
          open_dir = e->dir;
        }
        r = fd < 0 ? (errno = fd_err, -1) : fstatat(fd, e->name, &st, 0);
      } else {
        r = stat(e->name, &st);
      }
      if (r != 0) err = errno;
    }
    double v[4];
    if (err) {
      v[0] = -err;
      v[1] = v[2] = v[3] = 0;
    } else {
      v[0] = (double)st.st_ino;
      v[1] = (double)st.st_size;
      v[2] = (double)st.st_mtim.tv_sec * 1e3 + (double)st.st_mtim.tv_nsec / 1e6;
      v[3] = (double)st.st_ctim.tv_sec * 1e3 + (double)st.st_ctim.tv_nsec / 1e6;
    }
    if (v[0] != o[0] || v[1] != o[1] || v[2] != o[2] || v[3] != o[3]) {
      changed++;
      memcpy(o, v, sizeof v);
    }
  }
  if (fd >= 0) close(fd);
  napi_value result;
  if (napi_create_uint32(env, changed, &result) != napi_ok) return NULL;
  return result;
}
