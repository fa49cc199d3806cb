/*
 * abstractListeners() lists the abstract unix socket names listening in this network
 * namespace, as /proc/net/unix prints them ('@' for each NUL byte), one per line.
 *
 * An LXC guest runs while its monitor listens on @/var/lib/lxc/<vmid>/command; pve-container's
 * check_running finds that name in /proc/net/unix, and so did every poll here. That file lists
 * every unix socket of the namespace, connected ones included, formatted as text a page per
 * read: at 1000 guests about 25 reads and 0.7 ms a pass, the largest fixed cost of the idle
 * daemon after the .fw stats (issue 10). The kernel's sock_diag answers the same question for
 * listening sockets only (the command socket listens from the monitor's start to its exit), in
 * binary, in a few reads. Returns null when the kernel refuses the dump (no unix_diag): the
 * caller then reads /proc/net/unix as before.
 */
#define _GNU_SOURCE
#include "native.h"
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define TCP_LISTEN 10

struct text {
  char *p;
  size_t len, cap;
};

static int append(struct text *t, const char *s, size_t n) {
  if (t->len + n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 65536;
    while (cap < t->len + n + 1) cap *= 2;
    char *p = realloc(t->p, cap);
    if (!p) return 0;
    t->p = p;
    t->cap = cap;
  }
  memcpy(t->p + t->len, s, n);
  t->len += n;
  return 1;
}

/* 0: done; -1: failed (errno set). Appends "@name\n" per abstract listener. */
static int dump(int fd, struct text *out) {
  struct {
    struct nlmsghdr nlh;
    struct unix_diag_req req;
  } msg = {
      .nlh = {.nlmsg_len = sizeof msg,
              .nlmsg_type = SOCK_DIAG_BY_FAMILY,
              .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
              .nlmsg_seq = 1},
      .req = {.sdiag_family = AF_UNIX, .udiag_states = 1 << TCP_LISTEN, .udiag_show = UDIAG_SHOW_NAME},
  };
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(fd, &msg, sizeof msg, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return -1;
  static char buf[32768] __attribute__((aligned(8)));
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) {
      errno = EIO;
      return -1;
    }
    int left = (int)n; /* signed: NLMSG_NEXT may take it below zero, which ends the loop */
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) return 0;
      if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(h);
        errno = e->error ? -e->error : EIO;
        return -1;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      struct unix_diag_msg *m = NLMSG_DATA(h);
      int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
      for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type != UNIX_DIAG_NAME) continue;
        const char *name = RTA_DATA(a);
        size_t nlen = RTA_PAYLOAD(a);
        /* Abstract names start with a NUL; /proc/net/unix shows every NUL as '@'. */
        if (nlen == 0 || name[0] != '\0') continue;
        char line[sizeof(((struct sockaddr_un *)0)->sun_path) + 2];
        if (nlen > sizeof line - 1) nlen = sizeof line - 1;
        for (size_t i = 0; i < nlen; i++) line[i] = name[i] ? name[i] : '@';
        line[nlen] = '\n';
        if (!append(out, line, nlen + 1)) {
          errno = ENOMEM;
          return -1;
        }
      }
    }
  }
}

napi_value AbstractListeners(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  /* The kernel answers a dump at once; should it not, the poll must not hang on it. */
  struct timeval limit = {.tv_sec = 1};
  if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) != 0) {
    close(fd);
    fd = -1;
  }
  if (fd < 0) {
    napi_get_null(env, &result);
    return result;
  }
  struct text t = {0};
  int r = dump(fd, &t);
  close(fd);
  if (r != 0) {
    free(t.p);
    napi_get_null(env, &result);
    return result;
  }
  napi_status s = napi_create_string_latin1(env, t.p ? t.p : "", t.len, &result);
  free(t.p);
  if (s != napi_ok) napi_get_null(env, &result);
  return result;
}
