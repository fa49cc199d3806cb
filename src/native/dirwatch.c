/*
 * dirWatch(path), dirChanged(watch): whether anything in one local directory changed since the
 * last call, from an inotify watch read without blocking.
 *
 * For /var/run/qemu-server (src/pve/cache.ts qemuChecks): qemu-server's check_running starts
 * from the guest's pidfile, so the watcher stat'ed every qemu guest's pidfile every second
 * (1000 system calls a pass at 1000 guests, ≈ a third of the idle daemon's CPU there). The
 * directory is a local tmpfs, written only on this node, where inotify misses nothing (unlike
 * pmxcfs, whose remote edits send none, so /etc/pve is still polled). A pass drains the watch
 * before it reads any pidfile, so a change after the drain is read now or reported next time.
 *
 * dirWatch throws when inotify refuses (a missing directory, no instances left).
 * dirChanged returns 0 (nothing happened), 1 (something did, or the queue overflowed, or a read
 * failed) or 2 (the watch is gone: the directory was removed or moved; make a new one). The
 * descriptor is closed with the last reference.
 */
#define _GNU_SOURCE
#include "native.h"
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <unistd.h>

struct watch {
  int fd;
  int gone;
};

static void close_watch(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct watch *w = data;
  close(w->fd);
  free(w);
}

napi_value DirWatch(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[4096];
  size_t len;
  if (!get_args(env, info, 1, argv) ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok ||
      len == 0 || len >= sizeof path - 1)
    return type_error(env, "dirWatch(path: a directory)");
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    napi_throw_error(env, NULL, "dirWatch: inotify refused");
    return NULL;
  }
  uint32_t mask = IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE |
                  IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
  if (inotify_add_watch(fd, path, mask) < 0) {
    close(fd);
    napi_throw_error(env, NULL, "dirWatch: cannot watch the directory");
    return NULL;
  }
  struct watch *w = calloc(1, sizeof *w);
  napi_value out;
  if (!w || napi_create_external(env, w, close_watch, NULL, &out) != napi_ok) {
    free(w);
    close(fd);
    napi_throw_error(env, NULL, "dirWatch: cannot wrap");
    return NULL;
  }
  w->fd = fd;
  return out;
}

napi_value DirChanged(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *p;
  if (!get_args(env, info, 1, argv) || !external_arg(env, argv[0], &p))
    return type_error(env, "dirChanged(watch from dirWatch())");
  struct watch *w = p;
  int changed = 0;
  char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
  /* Bounded: a directory that changes faster than we read is "changed" anyway. */
  for (int i = 0; i < 1024; i++) {
    ssize_t n = read(w->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {
      changed = 1; /* a failed read: say so, the caller stats as without a watch */
      break;
    }
    changed = 1;
    for (char *at = buf; at < buf + n;) {
      const struct inotify_event *e = (const struct inotify_event *)at;
      if (e->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) w->gone = 1;
      at += sizeof *e + e->len;
    }
  }
  napi_value out;
  napi_create_int32(env, w->gone ? 2 : changed, &out);
  return out;
}
