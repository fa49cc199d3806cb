/*
 * tablesToken(backend): a cheap fingerprint of the kernel's iptables state, for the drift check.
 *
 * Every drift_interval_ms the daemon reads its nat and raw tables back (iptables -S / -save)
 * to see whether anyone changed them. At 1000 guests that read cost ≈ 150–200 ms of CPU in
 * the iptables children, every 30 s, almost always to find the tables as they were: most of
 * an idle daemon's CPU. The kernel can say "nothing changed" for far less:
 *
 * - nf_tables keeps a generation id per network namespace, incremented by every committed
 *   transaction (any table, any tool): NFT_MSG_GETGEN over nfnetlink, what `nft monitor`
 *   and libnftnl's batch code read. Token "nft:<genid>".
 * - legacy iptables has no counter, but every change replaces the table's blob, which
 *   IPT_SO_GET_INFO/IPT_SO_GET_ENTRIES give back as iptables-legacy-save reads it. Token
 *   "legacy:<hash of nat>:<hash of raw>": FNV-1a (a word at a time) over the table's geometry
 *   and its entries, leaving out each rule's packet and byte counters (they move with traffic).
 *
 * Equal tokens mean the tables read the same as when the token was taken; a different token
 * means "read them" (the change may be someone else's, in another table). null: the kernel
 * did not answer (no module, no permission); the caller then reads the tables as before.
 */
#define _GNU_SOURCE
#include "native.h"
/* glibc's netinet/in.h first: it tells the kernel's linux/in.h not to define the same types. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netlink.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The nf_tables generation id of this network namespace; -errno on failure. */
static int64_t nft_genid(void) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return -errno;
  struct {
    struct nlmsghdr nh;
    struct nfgenmsg g;
  } req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = sizeof req;
  req.nh.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
  req.nh.nlmsg_flags = NLM_F_REQUEST;
  req.nh.nlmsg_seq = 1;
  req.g.nfgen_family = AF_UNSPEC;
  req.g.version = NFNETLINK_V0;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  int64_t result = -EPROTO;
  if (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
    result = -errno;
    goto out;
  }
  /* One answer: NFT_MSG_NEWGEN with NFTA_GEN_ID, or an NLMSG_ERROR. */
  union {
    struct nlmsghdr nh;
    char buf[8192];
  } ans;
  ssize_t len = recv(fd, &ans, sizeof ans, 0);
  if (len < 0) {
    result = -errno;
    goto out;
  }
  int left = (int)len; /* signed: NLMSG_NEXT may take it below zero, which ends the loop */
  for (struct nlmsghdr *nh = &ans.nh; NLMSG_OK(nh, left); nh = NLMSG_NEXT(nh, left)) {
    if (nh->nlmsg_type == NLMSG_ERROR) {
      const struct nlmsgerr *e = NLMSG_DATA(nh);
      result = e->error < 0 ? e->error : -EPROTO;
      goto out;
    }
    if (nh->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) continue;
    size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
    while (off + sizeof(struct nlattr) <= nh->nlmsg_len) {
      const struct nlattr *a = (const struct nlattr *)((const char *)nh + off);
      if (a->nla_len < sizeof *a || off + a->nla_len > nh->nlmsg_len) break;
      if ((a->nla_type & NLA_TYPE_MASK) == NFTA_GEN_ID && a->nla_len >= NLA_HDRLEN + 4) {
        uint32_t id;
        memcpy(&id, (const char *)a + NLA_HDRLEN, 4);
        result = ntohl(id);
        goto out;
      }
      off += NLA_ALIGN(a->nla_len);
    }
  }
out:
  close(fd);
  return result;
}

/* FNV-1a's step over 8-byte words, then the tail byte by byte. Byte by byte over the whole
 * table (6.3 MB at 1000 guests: every rule carries a 256-byte comment match) was 7-8 ms of a
 * token; a word costs one multiply as a byte did. Each step is a bijection of h for a given
 * word (xor, then a multiply by an odd number), so a table that differs in one word always
 * hashes differently; unaligned words are read with memcpy. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    h = (h ^ w) * 1099511628211ULL;
  }
  for (; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
  return h;
}

/* FNV-1a of a legacy table without its counters, in *out; 0 or -errno. */
static int ipt_digest(int fd, const char *table, uint64_t *out) {
  struct ipt_getinfo info;
  memset(&info, 0, sizeof info);
  strncpy(info.name, table, sizeof info.name - 1);
  socklen_t ilen = sizeof info;
  if (getsockopt(fd, IPPROTO_IP, IPT_SO_GET_INFO, &info, &ilen) != 0) return -errno;
  /* The table may be replaced between the two calls (EAGAIN: its size changed): ask again. */
  for (int attempt = 0; attempt < 5; attempt++) {
    socklen_t elen = sizeof(struct ipt_get_entries) + info.size;
    /* Mapped for this call and given back after: the buffer is megabytes at 1000 guests
     * (6.3 MB), more than an idle daemon should keep. Its pages are fresh on every call, and
     * taken 4 KB at a time they cost more than the copy itself (calloc's mmap: ≈ 35 ms a token
     * on the bench machine, every drift interval); as huge pages ≈ 15. MADV_HUGEPAGE is a hint:
     * without huge pages to give (THP off, memory fragmented) the kernel uses small ones. */
    const size_t maplen = elen; /* elen is getsockopt's to change */
    struct ipt_get_entries *e =
        mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (e == MAP_FAILED) return -ENOMEM;
    (void)madvise(e, maplen, MADV_HUGEPAGE);
    strncpy(e->name, table, sizeof e->name - 1);
    e->size = info.size;
    if (getsockopt(fd, IPPROTO_IP, IPT_SO_GET_ENTRIES, e, &elen) != 0) {
      int err = errno;
      munmap(e, maplen);
      if (err != EAGAIN) return -err;
      ilen = sizeof info;
      if (getsockopt(fd, IPPROTO_IP, IPT_SO_GET_INFO, &info, &ilen) != 0) return -errno;
      continue;
    }
    uint64_t h = 1469598103934665603ULL;
    h = fnv(h, &info.valid_hooks, sizeof info.valid_hooks);
    h = fnv(h, info.hook_entry, sizeof info.hook_entry);
    h = fnv(h, info.underflow, sizeof info.underflow);
    h = fnv(h, &info.num_entries, sizeof info.num_entries);
    h = fnv(h, &info.size, sizeof info.size);
    const size_t c0 = offsetof(struct ipt_entry, counters);
    const size_t c1 = c0 + sizeof(struct xt_counters);
    for (size_t off = 0; off + sizeof(struct ipt_entry) <= info.size;) {
      const struct ipt_entry *r = (const struct ipt_entry *)((const char *)e->entrytable + off);
      size_t next = r->next_offset;
      if (next < sizeof *r || off + next > info.size) break;
      h = fnv(h, r, c0);
      h = fnv(h, (const char *)r + c1, next - c1);
      off += next;
    }
    munmap(e, maplen);
    *out = h;
    return 0;
  }
  return -EAGAIN;
}

static napi_value str(napi_env env, const char *s) {
  napi_value v;
  if (napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v) != napi_ok) return NULL;
  return v;
}

/* tablesToken("legacy", tables): one hash over the named legacy tables, for the daemon's
 * re-detection of the backend (src/iptables/runner.ts), which asks whether pve-firewall's
 * chains are in a backend: iptables-legacy-save lists every table named in
 * /proc/net/ip_tables_names, so the caller passes those names and reads the tables again only
 * when this token moved. "legacy-tables:<hash>"; NULL when the kernel does not answer. */
static napi_value legacy_tables_token(napi_env env, napi_value list) {
  uint32_t n;
  if (napi_get_array_length(env, list, &n) != napi_ok || n > 64)
    return type_error(env, "tablesToken: tables is an array of at most 64 names");
  int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) return NULL;
  uint64_t all = 1469598103934665603ULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    char name[XT_TABLE_MAXNAMELEN] = "";
    size_t got;
    if (napi_get_element(env, list, i, &v) != napi_ok ||
        napi_get_value_string_utf8(env, v, name, sizeof name, &got) != napi_ok ||
        got == 0 || got >= sizeof name - 1) {
      close(fd);
      return type_error(env, "tablesToken: a table name is a short string");
    }
    uint64_t h;
    if (ipt_digest(fd, name, &h) != 0) {
      close(fd);
      return NULL;
    }
    all = fnv(all, name, got);
    all = fnv(all, &h, sizeof h);
  }
  close(fd);
  char token[64];
  snprintf(token, sizeof token, "legacy-tables:%u:%016llx", n, (unsigned long long)all);
  return str(env, token);
}

napi_value TablesToken(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  char backend[16] = "";
  size_t got;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], backend, sizeof backend, &got) != napi_ok)
    return type_error(env, "tablesToken(backend, tables?)");
  if (argc >= 2 && strcmp(backend, "legacy") == 0) {
    napi_valuetype t;
    if (napi_typeof(env, argv[1], &t) != napi_ok) return NULL;
    if (t != napi_undefined) return legacy_tables_token(env, argv[1]);
  }
  char token[96];
  if (strcmp(backend, "nft") == 0) {
    int64_t id = nft_genid();
    if (id < 0) return NULL;
    snprintf(token, sizeof token, "nft:%lld", (long long)id);
  } else if (strcmp(backend, "legacy") == 0) {
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) return NULL;
    uint64_t nat, raw;
    int r = ipt_digest(fd, "nat", &nat);
    if (r == 0) r = ipt_digest(fd, "raw", &raw);
    close(fd);
    if (r != 0) return NULL;
    snprintf(token, sizeof token, "legacy:%016llx:%016llx", (unsigned long long)nat,
             (unsigned long long)raw);
  } else {
    return type_error(env, "tablesToken: backend is nft or legacy");
  }
  return str(env, token);
}
