/*
 * spawn(file, args, input, timeoutMs, maxOutputBytes): runs one command with posix_spawnp and
 * resolves with its exit status and output (issue 10, spawn cost).
 *
 * Why: every iptables-restore, iptables-save, conntrack, ip and qm the daemon runs went through
 * child_process.spawn, and libuv starts a child with fork(), which copies the parent's page
 * tables: spawn→exit of /bin/true cost 1.6 ms at 50 MB RSS, 7.7 ms at 167 MB, 13.9 ms at
 * 402 MB, on the main thread, for every command. glibc's posix_spawn uses
 * clone(CLONE_VM | CLONE_VFORK): the child shares the parent's memory until it execs, so the
 * cost does not grow with the daemon's size.
 *
 * The run (posix_spawnp, writing stdin, reading stdout/stderr, the deadline, waitpid) happens
 * on a thread of its own, started per call; the result comes back to the main thread through
 * a thread-safe function, which builds the result object and resolves the promise. Not the
 * libuv threadpool (napi_create_async_work): a command occupies its thread
 * until it exits, and the daemon runs up to 4 `qm guest cmd` at once (pve/agent.ts: a perl
 * start of ≈ 0.5 s each, up to 4 s for an agent that does not answer) — with async work
 * those would hold all 4 threadpool threads, and the iptables-restore of a pre-start hook, and
 * every fs.promises call, would wait behind them. One thread per command is what
 * child_process costs in processes anyway; its stack is small and it exits with the command.
 * All inputs are copied, and the pipes and spawn attributes made, on the main thread before
 * the thread starts; the thread never touches a napi value and calls no allocator.
 *
 * The child gets: stdin = the input through a pipe (or /dev/null without input), stdout and
 * stderr = pipes, the environment as it is at the call, every signal at its default
 * disposition (Node ignores SIGPIPE, and an ignored signal stays ignored across exec: in
 * `yes | head -1` yes would fail with "Broken pipe" on stderr instead of ending quietly) and
 * an empty signal mask, as libuv gives its children. (glibc leaves its two internal signals,
 * 32 and 33, ignored in a posix_spawn child, where libuv's reset stops at 31 and exec makes
 * them default; nothing pve-nat runs uses them.) The parent
 * ends are non-blocking and one poll() loop writes the input and reads both outputs (a restore
 * payload is several MB at 1000 guests: writing it all before reading would deadlock against
 * a child that writes as it reads), and watches a pidfd for the child's exit, so the deadline
 * holds while the child runs with its outputs closed, too. At the deadline SIGTERM, SIGKILL
 * 2000 ms later if it is still there (src/exec.ts does the same for child_process). More than
 * maxOutputBytes on one stream: SIGKILL and stop reading.
 *
 * Result: { code, signal, stdout, stderr, timedOut, tooMuch, error }; code = exit status or
 * null, signal = the number that killed it or null, error = errno of a failed start (pipe,
 * thread, posix_spawnp: ENOENT, EACCES, ...) else 0 (a failed start resolves, never rejects). Throws TypeError on bad arguments.
 *
 * Part of pve-nat's own addon (src/native/module.c).
 */
#define _GNU_SOURCE
#include "native.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* After the deadline's SIGTERM, SIGKILL if the child is still there (as src/exec.ts). */
#define KILL_AFTER_MS 2000
/* One read or write per ready descriptor: a pipe holds 64 KiB. */
#define CHUNK 65536
/* The thread only runs the loop below; posix_spawn maps its own stack for the child. */
#define THREAD_STACK (256 * 1024)

/* The input copy and the outputs live in their own mappings, not in malloc's arenas: a
 * restore payload or an iptables-save output is MBs, and memory malloc takes for it on a
 * short-lived thread can stay in that thread's arena, resident, after it is freed. A mapping
 * goes back to the kernel the moment it is unmapped, and mremap grows one without copying. */
struct buf {
  char *data;
  size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t cap) {
  cap = (cap + CHUNK - 1) / CHUNK * CHUNK;
  if (cap <= b->cap) return 1;
  void *p = b->cap ? mremap(b->data, b->cap, cap, MREMAP_MAYMOVE)
                   : mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 0;
  b->data = p;
  b->cap = cap;
  return 1;
}

static void buf_free(struct buf *b) {
  if (b->cap) munmap(b->data, b->cap);
  b->data = NULL;
  b->len = b->cap = 0;
}

struct job {
  /* In: prepared on the main thread (the thread calls no allocator). argv[0] is the file;
   * argv and envp are NULL-terminated and each packed into one allocation with its strings. */
  char **argv;
  char **envp;
  int has_input;
  struct buf input; /* has_input 0: stdin is /dev/null */
  int64_t timeout_ms; /* < 0: no deadline */
  size_t max_out;
  /* Pipes, close-on-exec: [0] read end, [1] write end; -1 once closed. */
  int in[2], out[2], err[2];
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  int fa_init, attr_init;
  /* Out: filled by the thread. */
  int error;
  int exited, status, lost;
  int timed_out, too_much;
  struct buf stdout_, stderr_;
  /* Main thread only. */
  napi_deferred deferred;
  napi_threadsafe_function tsfn;
};

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static void job_free(struct job *j) {
  for (int i = 0; i < 2; i++) {
    close_fd(&j->in[i]);
    close_fd(&j->out[i]);
    close_fd(&j->err[i]);
  }
  if (j->fa_init) posix_spawn_file_actions_destroy(&j->fa);
  if (j->attr_init) posix_spawnattr_destroy(&j->attr);
  free(j->argv);
  free(j->envp);
  buf_free(&j->input);
  buf_free(&j->stdout_);
  buf_free(&j->stderr_);
  free(j);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what one pipe has. Returns 0 at EOF or on an error, 1 while it stays open, -1 when
 * the stream went past max (or no memory was left for it). */
static int drain(int fd, struct buf *b, size_t max) {
  if (!buf_reserve(b, b->len + CHUNK)) return -1;
  ssize_t n = read(fd, b->data + b->len, CHUNK);
  if (n > 0) {
    b->len += (size_t)n;
    return b->len > max ? -1 : 1;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 1;
  return 0;
}

static void nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int pidfd_of(pid_t pid) {
#ifdef SYS_pidfd_open
  return (int)syscall(SYS_pidfd_open, pid, 0); /* close-on-exec by itself */
#else
  (void)pid;
  return -1;
#endif
}

/* Reaps the child: without WNOHANG waits for it. 1 when it was reaped. */
static int reap(pid_t pid, struct job *j, int flags) {
  int status = 0;
  pid_t r;
  do r = waitpid(pid, &status, flags);
  while (r < 0 && errno == EINTR);
  if (r != pid) {
    /* ECHILD: someone else reaped it (SIGCHLD ignored): gone, status unknown (code null). */
    if (r < 0) j->exited = j->lost = 1;
    return j->exited;
  }
  j->exited = 1;
  j->status = status;
  return 1;
}

static void run_job(struct job *j) {
  pid_t pid;
  int rc = posix_spawnp(&pid, j->argv[0], &j->fa, &j->attr, j->argv, j->envp);
  /* The child's ends: only the child keeps them. */
  close_fd(&j->in[0]);
  close_fd(&j->out[1]);
  close_fd(&j->err[1]);
  if (rc != 0) {
    j->error = rc;
    return;
  }

  int pidfd = pidfd_of(pid);
  int *in = &j->in[1], *out = &j->out[0], *err = &j->err[0];
  if (*in >= 0) nonblock(*in);
  nonblock(*out);
  nonblock(*err);
  size_t written = 0;
  if (*in >= 0 && j->input.len == 0) close_fd(in);
  int64_t deadline = j->timeout_ms < 0 ? -1 : now_ms() + j->timeout_ms;
  int64_t kill_at = -1; /* set once SIGTERM went out */
  int killed = 0;       /* SIGKILL went out (or the loop gave up) */

  while (!j->exited || *out >= 0 || *err >= 0) {
    int64_t now = now_ms();
    if (!j->timed_out && deadline >= 0 && now >= deadline) {
      j->timed_out = 1;
      if (!j->exited) kill(pid, SIGTERM);
      kill_at = now + KILL_AFTER_MS;
    }
    if (kill_at >= 0 && !killed && now >= kill_at) {
      killed = 1;
      if (!j->exited) kill(pid, SIGKILL);
    }
    /* Gone after a kill: a grandchild that still holds an output open is not waited for. */
    if (j->exited && (killed || j->too_much)) break;

    struct pollfd p[4];
    int n = 0, pi = -1, po = -1, pe = -1, pp = -1;
    if (*in >= 0) p[pi = n++] = (struct pollfd){.fd = *in, .events = POLLOUT};
    if (*out >= 0) p[po = n++] = (struct pollfd){.fd = *out, .events = POLLIN};
    if (*err >= 0) p[pe = n++] = (struct pollfd){.fd = *err, .events = POLLIN};
    if (pidfd >= 0 && !j->exited) p[pp = n++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
    int64_t wait = -1;
    if (!j->timed_out && deadline >= 0) wait = deadline - now;
    else if (kill_at >= 0 && !killed) wait = kill_at - now;
    /* Without a pidfd (kernel < 5.3, a seccomp filter) the exit is seen by polling waitpid. */
    if (pidfd < 0 && !j->exited && (wait < 0 || wait > 10)) wait = 10;
    if (wait > INT32_MAX) wait = INT32_MAX;
    if (poll(p, (nfds_t)n, (int)wait) < 0) {
      if (errno == EINTR) continue;
      /* Cannot wait on the pipes: stop the child rather than spin. */
      if (!j->exited) kill(pid, SIGKILL);
      killed = 1;
      break;
    }
    if (pi >= 0 && p[pi].revents) {
      size_t left = j->input.len - written;
      ssize_t w = write(*in, j->input.data + written, left < CHUNK ? left : CHUNK);
      if (w > 0) {
        written += (size_t)w;
        /* All written: its memory goes back now, not when the child exits (a 1000-guest
         * restore reads its 3.7 MB at once and works on it for ≈ 0.3 s). */
        if (written == j->input.len) {
          close_fd(in);
          buf_free(&j->input);
        }
      } else if (!(w < 0 && (errno == EAGAIN || errno == EINTR))) {
        /* EPIPE: the child exited or closed its stdin without reading it all; not an error. */
        close_fd(in);
        buf_free(&j->input);
      }
    }
    int over = 0;
    if (po >= 0 && p[po].revents) {
      int r = drain(*out, &j->stdout_, j->max_out);
      if (r == 0) close_fd(out);
      over |= r < 0;
    }
    if (pe >= 0 && p[pe].revents) {
      int r = drain(*err, &j->stderr_, j->max_out);
      if (r == 0) close_fd(err);
      over |= r < 0;
    }
    if (over && !j->too_much) {
      j->too_much = 1;
      if (!j->exited) kill(pid, SIGKILL);
      close_fd(in);
      close_fd(out);
      close_fd(err);
    }
    if (!j->exited && (pidfd < 0 || (pp >= 0 && p[pp].revents))) reap(pid, j, WNOHANG);
  }
  /* Only after a kill: the child is on its way out; wait for it. */
  if (!j->exited) reap(pid, j, 0);
  close_fd(&pidfd);
  close_fd(in);
  close_fd(out);
  close_fd(err);
  /* The input is no longer needed: give its memory back before the result is built. */
  buf_free(&j->input);
}

/* ---- main thread ---- */

static napi_value buffer_of(napi_env env, const struct buf *b) {
  static const char empty = 0;
  napi_value v;
  if (napi_create_buffer_copy(env, b->len, b->len ? b->data : &empty, NULL, &v) != napi_ok)
    return NULL;
  return v;
}

static napi_value int_or_null(napi_env env, int set, int value) {
  napi_value v;
  if (set ? napi_create_int32(env, value, &v) : napi_get_null(env, &v)) return NULL;
  return v;
}

static napi_value bool_of(napi_env env, int value) {
  napi_value v;
  return napi_get_boolean(env, value != 0, &v) == napi_ok ? v : NULL;
}

/* Builds the result and settles the promise; frees the job. env is NULL when Node is tearing
 * the function down (the process is exiting): then only the memory is freed. */
static void complete(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)js_cb;
  (void)context;
  struct job *j = data;
  if (env != NULL) {
    int exited = j->error == 0 && j->exited && !j->lost;
    napi_value result, v;
    napi_create_object(env, &result);
    v = int_or_null(env, exited && WIFEXITED(j->status), WEXITSTATUS(j->status));
    napi_set_named_property(env, result, "code", v);
    v = int_or_null(env, exited && WIFSIGNALED(j->status), WTERMSIG(j->status));
    napi_set_named_property(env, result, "signal", v);
    napi_set_named_property(env, result, "stdout", buffer_of(env, &j->stdout_));
    napi_set_named_property(env, result, "stderr", buffer_of(env, &j->stderr_));
    napi_set_named_property(env, result, "timedOut", bool_of(env, j->timed_out));
    napi_set_named_property(env, result, "tooMuch", bool_of(env, j->too_much));
    napi_create_int32(env, j->error, &v);
    napi_set_named_property(env, result, "error", v);
    napi_resolve_deferred(env, j->deferred, result);
  }
  job_free(j);
}

static void *thread_main(void *arg) {
  struct job *j = arg;
  run_job(j);
  napi_threadsafe_function tsfn = j->tsfn;
  /* napi_closing: Node is exiting and will not call complete(); the job is ours to free. */
  if (napi_call_threadsafe_function(tsfn, j, napi_tsfn_blocking) != napi_ok) job_free(j);
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  return NULL;
}

/* A NULL-terminated vector and its strings in one allocation: the strings are at
 * vec[n + 1] onwards. */
static char **vec_alloc(size_t n, size_t bytes) {
  if (n > SIZE_MAX / sizeof(char *) - 1) return NULL;
  char **v = malloc((n + 1) * sizeof(char *) + bytes);
  if (v) v[n] = NULL;
  return v;
}

/* Copies a JS string into *at (NUL-terminated), advancing it; fails on an embedded NUL, which
 * execve cannot pass (Node's spawn refuses it too). */
static int copy_string(napi_env env, napi_value s, size_t len, char **at) {
  size_t got;
  if (napi_get_value_string_utf8(env, s, *at, len + 1, &got) != napi_ok || got != len ||
      strlen(*at) != len)
    return 0;
  *at += len + 1;
  return 1;
}

static char **copy_argv(napi_env env, napi_value file, napi_value args) {
  uint32_t n;
  bool is_array;
  if (napi_is_array(env, args, &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, args, &n) != napi_ok)
    return NULL;
  size_t *lens = malloc(((size_t)n + 1) * sizeof(size_t));
  if (lens == NULL) return NULL;
  char **v = NULL;
  size_t bytes = 0;
  napi_value s;
  for (uint32_t i = 0; i <= n; i++) {
    if (i == 0)
      s = file;
    else if (napi_get_element(env, args, i - 1, &s) != napi_ok)
      goto out;
    if (napi_get_value_string_utf8(env, s, NULL, 0, &lens[i]) != napi_ok) goto out;
    bytes += lens[i] + 1;
  }
  v = vec_alloc((size_t)n + 1, bytes);
  if (v == NULL) goto out;
  char *at = (char *)(v + n + 2);
  for (uint32_t i = 0; i <= n; i++) {
    if (i == 0)
      s = file;
    else
      napi_get_element(env, args, i - 1, &s);
    v[i] = at;
    if (!copy_string(env, s, lens[i], &at)) {
      free(v);
      v = NULL;
      goto out;
    }
  }
out:
  free(lens);
  return v;
}

/* The environment as it is now (process.env writes go to it): the thread must not read
 * environ while the main thread may change it. */
static char **copy_env(void) {
  size_t n = 0, bytes = 0;
  for (char **e = environ; e && *e; e++, n++) bytes += strlen(*e) + 1;
  char **v = vec_alloc(n, bytes);
  if (v == NULL) return NULL;
  char *at = (char *)(v + n + 1);
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(environ[i]) + 1;
    memcpy(at, environ[i], len);
    v[i] = at;
    at += len;
  }
  return v;
}

/* Pipes, file actions and signal settings for the child (stdin from the input or /dev/null,
 * stdout and stderr to pipes; every signal default, none blocked). 0 or an errno. */
static int prepare_child(struct job *j) {
  if ((j->has_input && pipe2(j->in, O_CLOEXEC) != 0) || pipe2(j->out, O_CLOEXEC) != 0 ||
      pipe2(j->err, O_CLOEXEC) != 0)
    return errno;
  int rc = posix_spawn_file_actions_init(&j->fa);
  if (rc != 0) return rc;
  j->fa_init = 1;
  if ((rc = posix_spawnattr_init(&j->attr)) != 0) return rc;
  j->attr_init = 1;
  /* dup2 onto 0/1/2 clears close-on-exec on the copy; the pipe fds themselves close at exec. */
  rc = j->has_input ? posix_spawn_file_actions_adddup2(&j->fa, j->in[0], 0)
                    : posix_spawn_file_actions_addopen(&j->fa, 0, "/dev/null", O_RDONLY, 0);
  if (rc || (rc = posix_spawn_file_actions_adddup2(&j->fa, j->out[1], 1)) ||
      (rc = posix_spawn_file_actions_adddup2(&j->fa, j->err[1], 2)))
    return rc;
  /* Node ignores SIGPIPE, and an ignored disposition survives exec: reset every signal that
   * can be reset, as libuv does for its children. Its threads' masks are not the child's
   * business either. */
  sigset_t def, none;
  sigfillset(&def);
  sigdelset(&def, SIGKILL);
  sigdelset(&def, SIGSTOP);
  sigemptyset(&none);
  if ((rc = posix_spawnattr_setsigdefault(&j->attr, &def)) ||
      (rc = posix_spawnattr_setsigmask(&j->attr, &none)) ||
      (rc = posix_spawnattr_setflags(&j->attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)))
    return rc;
  return 0;
}

/* Settles the promise now, without a thread: a start that failed before posix_spawnp. */
static void fail_start(napi_env env, struct job *j, int error) {
  napi_threadsafe_function tsfn = j->tsfn;
  j->error = error;
  complete(env, NULL, NULL, j);
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
}

/* The strings of `lines`, each followed by "\n", as UTF-8 into b: sizes first, then one
 * mapping written in place. 0 when an element is not a string or memory is short. */
static int copy_lines(napi_env env, napi_value lines, struct buf *b) {
  uint32_t n;
  if (napi_get_array_length(env, lines, &n) != napi_ok) return 0;
  size_t total = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    size_t len;
    if (napi_get_element(env, lines, i, &el) != napi_ok ||
        napi_get_value_string_utf8(env, el, NULL, 0, &len) != napi_ok)
      return 0;
    total += len + 1;
  }
  /* +1: napi writes a NUL after each string, which the next "\n" overwrites. */
  if (!buf_reserve(b, total + 1)) return 0;
  size_t at = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    size_t len;
    if (napi_get_element(env, lines, i, &el) != napi_ok ||
        napi_get_value_string_utf8(env, el, b->data + at, total + 1 - at, &len) != napi_ok)
      return 0;
    at += len;
    b->data[at++] = '\n';
  }
  b->len = at;
  return 1;
}

napi_value Spawn(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv))
    return type_error(env, "spawn(file, args, input, timeoutMs, maxOutputBytes)");
  napi_valuetype t;
  if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_string)
    return type_error(env, "file: a string");
  double timeout, max;
  if (napi_get_value_double(env, argv[3], &timeout) != napi_ok || !(timeout >= 0))
    return type_error(env, "timeoutMs: a number ≥ 0");
  if (napi_get_value_double(env, argv[4], &max) != napi_ok || !(max >= 0))
    return type_error(env, "maxOutputBytes: a number ≥ 0");

  struct job *j = calloc(1, sizeof *j);
  if (j == NULL) return type_error(env, "out of memory");
  j->in[0] = j->in[1] = j->out[0] = j->out[1] = j->err[0] = j->err[1] = -1;
  j->timeout_ms = timeout >= 9007199254740992.0 ? -1 : (int64_t)timeout;
  j->max_out = max >= (double)(SIZE_MAX / 2) ? SIZE_MAX / 2 : (size_t)max;
  j->argv = copy_argv(env, argv[0], argv[1]);
  if (j->argv == NULL) {
    job_free(j);
    return type_error(env, "args: an array of strings without NUL bytes");
  }

  /* input: null/undefined (stdin = /dev/null), a Buffer, a string (sent as UTF-8: spares
   * the caller a Buffer.from copy of a multi-MB restore payload), or an array of strings, sent
   * as lines (each followed by "\n"): a restore payload as rendered, never joined into one
   * string first. At 1000 guests the joined payload is 3.7 MB, and it and this copy of it were
   * both alive at the top of a burst of starts, the daemon's RSS peak (issue 10). */
  bool is_array = false;
  if (napi_typeof(env, argv[2], &t) != napi_ok) t = napi_undefined;
  if (t == napi_object && napi_is_array(env, argv[2], &is_array) != napi_ok) is_array = false;
  if (is_array) {
    j->has_input = 1;
    if (!copy_lines(env, argv[2], &j->input)) {
      job_free(j);
      return type_error(env, "input: an array of strings (or out of memory)");
    }
  } else if (t == napi_string) {
    size_t len;
    j->has_input = 1;
    if (napi_get_value_string_utf8(env, argv[2], NULL, 0, &len) != napi_ok ||
        !buf_reserve(&j->input, len + 1)) {
      job_free(j);
      return type_error(env, "input: out of memory");
    }
    napi_get_value_string_utf8(env, argv[2], j->input.data, len + 1, &j->input.len);
  } else if (t != napi_null && t != napi_undefined) {
    bool is_buffer = false;
    void *data;
    size_t len;
    if (napi_is_buffer(env, argv[2], &is_buffer) != napi_ok || !is_buffer ||
        napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok) {
      job_free(j);
      return type_error(env, "input: a Buffer, a string or null");
    }
    j->has_input = 1;
    if (len && !buf_reserve(&j->input, len)) {
      job_free(j);
      return type_error(env, "input: out of memory");
    }
    if (len) memcpy(j->input.data, data, len);
    j->input.len = len;
  }
  j->envp = copy_env();
  if (j->envp == NULL) {
    job_free(j);
    return type_error(env, "out of memory");
  }

  napi_value promise, name;
  if (napi_create_promise(env, &j->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "pve-nat.spawn", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, complete,
                                      &j->tsfn) != napi_ok) {
    job_free(j);
    return type_error(env, "cannot create the promise");
  }
  int rc = prepare_child(j);
  if (rc != 0) {
    fail_start(env, j, rc);
    return promise;
  }

  /* The thread takes no signal meant for the process (they stay with Node's main thread). */
  pthread_attr_t ta;
  pthread_attr_init(&ta);
  pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&ta, THREAD_STACK);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t th;
  rc = pthread_create(&th, &ta, thread_main, j);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&ta);
  /* No thread (EAGAIN: out of threads): settle now, as a start that failed. */
  if (rc != 0) fail_start(env, j, rc);
  return promise;
}
