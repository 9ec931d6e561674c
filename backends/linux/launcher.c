/*
 * drvbox-launcher: the mechanism half of the Linux sandbox.
 *
 * Node is multi-threaded and must not clone into namespaces itself, so it
 * spawns this program and hands it ONE request. Every decision (which
 * namespaces, which mounts, uid maps, seccomp program, argv, env) was made in
 * TypeScript (backends/linux/plan.ts); this file only carries it out.
 *
 * File descriptors set up by the caller:
 *   0  stdin of the builder (usually /dev/null)
 *   1  the log channel: builder stdout, and stderr (dup'ed onto it)
 *   3  the request (read to EOF)
 *   4  status: "P <pid>\n" then EOF on the builder's exec (close-on-exec), or
 *      "E <message>\n" once on a fatal setup error, or "B <message>\n" when
 *      the builder itself cannot be executed; probe mode writes
 *      "S <step> <detail>\n" / "F <step> <errno> <message>\n" lines
 *      A held request (HOLD, server mode) reports "H\n" once set up and
 *      execs only on "G" from drvbox (see wait_for_release, wait_release)
 *   5  result: "X <code> <signal> <utime-us> <stime-us> <maxrss-kib>\n"
 *      written by the monitor when the sandbox's init has been reaped
 *
 * Request wire format (see protocol.ts, the one serialiser):
 *   "DRVBOX01" then records: u32 tag, u32 length, payload (little endian).
 *   Strings are raw bytes without a terminator; a NUL byte inside one is an
 *   error. OP payloads: u32 opcode, u32 flags, u32 mode, u32 lenA, A,
 *   u32 lenB, B.
 *
 * Process shape (run mode):
 *   node -> launcher (the monitor: waits, reports, forwards kill)
 *             -> sandbox init (pid 1 in new namespaces): mounts, pivot_root,
 *                drops privileges, execs the builder.
 *   Both carry PR_SET_PDEATHSIG(SIGKILL): if node dies the monitor dies, then
 *   the init, and the kernel kills everything left in the pid namespace.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pivot_root
#define SYS_pivot_root 155
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
struct mount_attr {
  uint64_t attr_set;
  uint64_t attr_clr;
  uint64_t propagation;
  uint64_t userns_fd;
};
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

enum { FD_REQUEST = 3, FD_STATUS = 4, FD_RESULT = 5 };
/* Where the monitor keeps the sandbox's pre-pivot namespaces (add-path mode
 * opens them through /proc/<monitor>/fd/N). */
enum { FD_KEPT_USERNS = 10, FD_KEPT_MNTNS = 11 };

enum {
  T_MODE = 1, T_CLONE_FLAGS = 2, T_PARENT_PID = 3, T_UID_MAP = 4, T_GID_MAP = 5,
  T_SELF_MAP = 6, T_SANDBOX_UID = 7, T_SANDBOX_GID = 8, T_HOSTNAME = 9,
  T_DOMAINNAME = 10, T_CHROOT = 11, T_OP = 12, T_KEEP_NS = 13, T_CWD = 14,
  T_PERSONALITY = 15, T_NO_NEW_PRIVS = 16, T_SECCOMP = 17, T_BUILDER = 18,
  T_ARG = 19, T_ENV = 20, T_DROP_GROUPS = 21, T_CGROUP = 22, T_NEWCGROUP = 23,
  T_TARGET_PID = 24, T_SOURCE = 25, T_TARGET = 26, T_UMASK = 27, T_KILL_UID = 28,
  T_LOOPBACK = 29, T_STORE_DIR = 30, T_SOCKET = 31, T_TOKEN = 32, T_BUILD_ID = 33,
  T_REAPER = 34, T_HOLD = 35, T_NAME = 36, T_MAKE_CHROOT = 37, T_CHROOT_OWNER = 38,
  T_GROUP = 39
};
enum { MODE_RUN = 1, MODE_PROBE = 2, MODE_ADD_PATH = 3, MODE_KILL_USER = 4, MODE_REMOVE_TREE = 5, MODE_REMOVE_PATH = 6 };
enum { OP_MKDIR = 1, OP_WRITE = 2, OP_SYMLINK = 3, OP_BIND = 4, OP_MOUNT = 5,
       OP_COPY_SYMLINK = 6, OP_REMOUNT_RO = 7 };
/* OP flags */
enum {
  F_RO = 1, F_OPTIONAL = 2, F_SHARED = 4, F_NOSUID = 8, F_NODEV = 16,
  F_NOEXEC = 32,
  /* path (a) is relative to the on-disk chroot dir, not the tmpfs root */
  F_DISK = 64,
  /* bind source (b) is relative to the on-disk chroot dir */
  F_SRC_DISK = 128,
  /* bind with the mounts below the source (MS_REC); store paths hold none,
   * and the recursive mount_setattr costs ~0.3 ms per bind */
  F_REC = 256
};

#define MAX_REQUEST (256u << 20)
#define MAX_LIST 1000000u
#define MAX_GROUPS 65536u /* the kernel's NGROUPS_MAX: any list setgroups takes */

struct str { const char *p; uint32_t n; };
struct op { uint32_t code, flags, mode; struct str a, b; };

struct request {
  uint32_t mode;
  uint64_t clone_flags, parent_pid, self_map, sandbox_uid, sandbox_gid;
  uint64_t keep_ns, personality, no_new_privs, drop_groups, newcgroup;
  uint64_t target_pid, umask_, kill_uid, loopback, build_id, reaper, hold;
  /* run: create the chroot dir (0700), then give it to chroot_owner (uid << 32 | gid) if set */
  uint64_t make_chroot, chroot_owner, has_chroot_owner;
  struct str uid_map, gid_map, hostname, domainname, chroot, cwd, seccomp;
  struct str builder, cgroup, source, target, store_dir, socket_name, token;
  struct op *ops; size_t nops;
  char **argv; size_t nargs;
  char **envp; size_t nenv;
  /* add-path / remove-path: store path names, and (add-path) their host sources, in order */
  char **names; size_t nnames;
  char **sources; size_t nsources;
  /* run, with drop_groups: the supplementary groups to keep instead (a build user's) */
  gid_t groups[MAX_GROUPS]; size_t ngroups;
};

static struct request R;

/* Where status lines go: fd 4 (one-shot mode, and inside the sandbox init,
 * where fd 4 is the close-on-exec channel) or the server-mode control
 * connection (the monitor). */
static int status_fd = FD_STATUS;
/* Server mode: the monitor's control connection to drvbox (-1 otherwise). */
static int server_ctl = -1;
/* Prefixed to every status line: "M <frame id> " in a server job, where
 * status lines go to fd 3 shared with the zygote. */
static char status_prefix[40];

static void write_all(int fd, const char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    buf += w;
    n -= (size_t)w;
  }
}

/* A server job's progress lines ("C", "A": one or two per store path) are
 * collected and written together: each write wakes drvbox, and a held build
 * waits for its paths. Whole lines only, at most PIPE_BUF bytes a write, so
 * that lines of jobs running at once never interleave. Flushed before an
 * error line and when the job ends. */
static int batching = 0;
static char batch[PIPE_BUF];
static size_t batch_len = 0;

static void flush_batch(void) {
  if (batch_len) write_all(status_fd, batch, batch_len);
  batch_len = 0;
}

static void status_line(char kind, const char *fmt, va_list ap) {
  char buf[4096];
  int n = snprintf(buf, sizeof buf, "%s%c ", status_prefix, kind);
  int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
  if (m < 0) m = 0;
  size_t len = (size_t)n + ((size_t)m < sizeof buf - (size_t)n - 1 ? (size_t)m : sizeof buf - (size_t)n - 2);
  for (size_t i = (size_t)n; i < len; i++)
    if (buf[i] == '\n') buf[i] = ' ';
  buf[len++] = '\n';
  if (batching && (kind == 'C' || kind == 'A') && len <= sizeof batch) {
    if (batch_len + len > sizeof batch) flush_batch();
    memcpy(batch + batch_len, buf, len);
    batch_len += len;
    return;
  }
  flush_batch();
  write_all(status_fd, buf, len);
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  status_line('E', fmt, ap);
  va_end(ap);
  _exit(127);
}

__attribute__((format(printf, 2, 3))) static void report(char kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  status_line(kind, fmt, ap);
  va_end(ap);
}

/* ---------- request parsing ---------- */

static char *cstr(struct str s) {
  char *p = malloc((size_t)s.n + 1);
  if (!p) die("out of memory");
  memcpy(p, s.p, s.n);
  p[s.n] = 0;
  return p;
}

static const char *tag_name(uint32_t tag) {
  switch (tag) {
  case T_BUILDER: return "builder path";
  case T_ARG: return "argument";
  case T_ENV: return "environment entry";
  case T_CHROOT: return "chroot path";
  case T_CWD: return "working directory";
  case T_SOURCE: return "source path";
  case T_TARGET: return "target path";
  case T_NAME: return "store path name";
  case T_OP: return "mount/file operation path";
  default: return "string field";
  }
}

static void check_nul(uint32_t tag, const char *p, uint32_t n) {
  if (memchr(p, 0, n)) die("request rejected: %s contains a NUL byte", tag_name(tag));
}

static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p, uint32_t n, uint32_t tag) {
  if (n != 8) die("request rejected: integer field %u has length %u", tag, n);
  return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static unsigned char *read_request(size_t *len) {
  size_t cap = 65536, n = 0;
  unsigned char *buf = malloc(cap);
  if (!buf) die("out of memory");
  for (;;) {
    if (n == cap) {
      if (cap >= MAX_REQUEST) die("request rejected: larger than %u bytes", MAX_REQUEST);
      cap *= 2;
      buf = realloc(buf, cap);
      if (!buf) die("out of memory");
    }
    ssize_t r = read(FD_REQUEST, buf + n, cap - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("reading the request: %s", strerror(errno));
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  close(FD_REQUEST);
  *len = n;
  return buf;
}

static void parse_request(unsigned char *buf, size_t len) {
  if (len < 8 || memcmp(buf, "DRVBOX01", 8) != 0) die("request rejected: bad magic (protocol mismatch)");
  size_t nargs = 0, nenv = 0, nops = 0, nnames = 0, nsources = 0;
  /* First pass: count list entries. */
  for (size_t off = 8; off < len;) {
    if (len - off < 8) die("request rejected: truncated record header");
    uint32_t tag = rd32(buf + off), n = rd32(buf + off + 4);
    if (n > len - off - 8) die("request rejected: record %u overruns the request", tag);
    if (tag == T_ARG) nargs++;
    else if (tag == T_ENV) nenv++;
    else if (tag == T_OP) nops++;
    else if (tag == T_NAME) nnames++;
    else if (tag == T_SOURCE) nsources++;
    off += 8 + (size_t)n;
  }
  if (nargs > MAX_LIST || nenv > MAX_LIST || nops > MAX_LIST || nnames > MAX_LIST || nsources > MAX_LIST)
    die("request rejected: too many entries");
  R.argv = calloc(nargs + 1, sizeof(char *));
  R.envp = calloc(nenv + 1, sizeof(char *));
  R.ops = calloc(nops + 1, sizeof(struct op));
  R.names = calloc(nnames + 1, sizeof(char *));
  R.sources = calloc(nsources + 1, sizeof(char *));
  if (!R.argv || !R.envp || !R.ops || !R.names || !R.sources) die("out of memory");
  R.personality = 0xffffffffu;
  R.umask_ = 022;
  for (size_t off = 8; off < len;) {
    uint32_t tag = rd32(buf + off), n = rd32(buf + off + 4);
    const unsigned char *p = buf + off + 8;
    struct str s = { (const char *)p, n };
    off += 8 + (size_t)n;
    switch (tag) {
    case T_MODE: R.mode = (uint32_t)rd64(p, n, tag); break;
    case T_CLONE_FLAGS: R.clone_flags = rd64(p, n, tag); break;
    case T_PARENT_PID: R.parent_pid = rd64(p, n, tag); break;
    case T_SELF_MAP: R.self_map = rd64(p, n, tag); break;
    case T_SANDBOX_UID: R.sandbox_uid = rd64(p, n, tag); break;
    case T_SANDBOX_GID: R.sandbox_gid = rd64(p, n, tag); break;
    case T_KEEP_NS: R.keep_ns = rd64(p, n, tag); break;
    case T_PERSONALITY: R.personality = rd64(p, n, tag); break;
    case T_NO_NEW_PRIVS: R.no_new_privs = rd64(p, n, tag); break;
    case T_DROP_GROUPS: R.drop_groups = rd64(p, n, tag); break;
    case T_GROUP:
      if (R.ngroups == MAX_GROUPS) die("request rejected: more than %u supplementary groups", MAX_GROUPS);
      R.groups[R.ngroups++] = (gid_t)rd64(p, n, tag);
      break;
    case T_NEWCGROUP: R.newcgroup = rd64(p, n, tag); break;
    case T_TARGET_PID: R.target_pid = rd64(p, n, tag); break;
    case T_UMASK: R.umask_ = rd64(p, n, tag); break;
    case T_KILL_UID: R.kill_uid = rd64(p, n, tag); break;
    case T_LOOPBACK: R.loopback = rd64(p, n, tag); break;
    case T_BUILD_ID: R.build_id = rd64(p, n, tag); break;
    case T_REAPER: R.reaper = rd64(p, n, tag); break;
    case T_HOLD: R.hold = rd64(p, n, tag); break;
    case T_MAKE_CHROOT: R.make_chroot = rd64(p, n, tag); break;
    case T_CHROOT_OWNER: R.chroot_owner = rd64(p, n, tag); R.has_chroot_owner = 1; break;
    case T_NAME: check_nul(tag, s.p, n); R.names[R.nnames++] = cstr(s); break;
    case T_SOCKET: check_nul(tag, s.p, n); R.socket_name = s; break;
    case T_TOKEN: check_nul(tag, s.p, n); R.token = s; break;
    case T_SECCOMP:
      if (n % sizeof(struct sock_filter) != 0 || n / sizeof(struct sock_filter) > BPF_MAXINSNS)
        die("request rejected: seccomp program of %u bytes is not a valid BPF program", n);
      R.seccomp = s;
      break;
    case T_UID_MAP: check_nul(tag, s.p, n); R.uid_map = s; break;
    case T_GID_MAP: check_nul(tag, s.p, n); R.gid_map = s; break;
    case T_HOSTNAME: check_nul(tag, s.p, n); R.hostname = s; break;
    case T_DOMAINNAME: check_nul(tag, s.p, n); R.domainname = s; break;
    case T_CHROOT: check_nul(tag, s.p, n); R.chroot = s; break;
    case T_CWD: check_nul(tag, s.p, n); R.cwd = s; break;
    case T_BUILDER: check_nul(tag, s.p, n); R.builder = s; break;
    case T_CGROUP: check_nul(tag, s.p, n); R.cgroup = s; break;
    case T_SOURCE: check_nul(tag, s.p, n); R.source = s; R.sources[R.nsources++] = cstr(s); break;
    case T_TARGET: check_nul(tag, s.p, n); R.target = s; break;
    case T_STORE_DIR: check_nul(tag, s.p, n); R.store_dir = s; break;
    case T_ARG: check_nul(tag, s.p, n); R.argv[R.nargs++] = cstr(s); break;
    case T_ENV:
      check_nul(tag, s.p, n);
      if (!memchr(s.p, '=', n)) die("request rejected: environment entry without '='");
      R.envp[R.nenv++] = cstr(s);
      break;
    case T_OP: {
      if (n < 20) die("request rejected: truncated operation");
      struct op *o = &R.ops[R.nops++];
      o->code = rd32(p); o->flags = rd32(p + 4); o->mode = rd32(p + 8);
      uint32_t la = rd32(p + 12);
      if (la > n - 20) die("request rejected: truncated operation");
      o->a.p = (const char *)p + 16; o->a.n = la;
      uint32_t lb = rd32(p + 16 + la);
      if (lb != n - 20 - la) die("request rejected: truncated operation");
      o->b.p = (const char *)p + 20 + la; o->b.n = lb;
      check_nul(tag, o->a.p, la);
      check_nul(tag, o->b.p, lb);
      break;
    }
    default: die("request rejected: unknown record tag %u", tag);
    }
  }
}

/* ---------- small helpers ---------- */

static int write_file_at(int dirfd, const char *path, const char *data, size_t n) {
  int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t w = write(fd, data, n);
  int e = errno;
  close(fd);
  errno = e;
  return w == (ssize_t)n ? 0 : -1;
}

static int sys_open_tree(int dfd, const char *path, unsigned flags) {
  return (int)syscall(SYS_open_tree, dfd, path, flags);
}
static int sys_move_mount(int fdf, const char *pf, int fdt, const char *pt, unsigned flags) {
  return (int)syscall(SYS_move_mount, fdf, pf, fdt, pt, flags);
}
static int sys_mount_setattr(int dfd, const char *path, unsigned flags, uint64_t set) {
  struct mount_attr a;
  memset(&a, 0, sizeof a);
  a.attr_set = set;
  return (int)syscall(SYS_mount_setattr, dfd, path, flags, &a, sizeof a);
}

/* Chroot being populated; every path of the plan resolves beneath it without
 * following symlinks, so nothing the plan creates can land outside. */
static int root_fd = -1;
static const char *root_path;
/* The on-disk chroot dir (outputs, /tmp), covered by the tmpfs root but
 * still reachable through this fd. */
static int disk_fd = -1;

/* Opens the parent directory of `rel` (absolute inside the chroot) beneath
 * root_fd, creating missing directories (0755) when `create`; returns the fd
 * and points *leaf at the last component. */
static int open_parent_in(int base, const char *rel, char *scratch, const char **leaf, int create);
static int open_parent(const char *rel, char *scratch, const char **leaf, int create) {
  return open_parent_in(root_fd, rel, scratch, leaf, create);
}
static int open_parent_in(int base, const char *rel, char *scratch, const char **leaf, int create) {
  size_t n = strlen(rel);
  if (n == 0 || rel[0] != '/' || n >= PATH_MAX) {
    errno = EINVAL;
    return -1;
  }
  memcpy(scratch, rel, n + 1);
  int dir = dup(base);
  if (dir < 0) return -1;
  char *p = scratch + 1;
  for (;;) {
    char *slash = strchr(p, '/');
    if (!slash) break;
    *slash = 0;
    if (*p == 0 || strcmp(p, ".") == 0 || strcmp(p, "..") == 0) {
      close(dir);
      errno = EINVAL;
      return -1;
    }
    int next = openat(dir, p, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    if (next < 0 && errno == ENOENT && create) {
      if (mkdirat(dir, p, 0755) < 0 && errno != EEXIST) {
        int e = errno;
        close(dir);
        errno = e;
        return -1;
      }
      next = openat(dir, p, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    }
    int e = errno;
    close(dir);
    if (next < 0) {
      errno = (e == ELOOP || e == ENOTDIR) ? ELOOP : e;
      return -1;
    }
    dir = next;
    p = slash + 1;
  }
  if (*p == 0 || strcmp(p, ".") == 0 || strcmp(p, "..") == 0) {
    close(dir);
    errno = EINVAL;
    return -1;
  }
  *leaf = p;
  return dir;
}

/* Where file mount points can be hard links to one empty file: the
 * sandbox's directory on disk, beside its store dir and hidden under
 * the sandbox root. A link allocates no inode, which on some file systems
 * costs far more than the link (ext4 without a journal scans recently
 * deleted inodes on every allocation). -1: create each one. */
static int placeholder_dir = -1;
/* Whether `.mountpoint` was checked in placeholder_dir (reset with it). */
static int placeholder_ready;

static int link_mountpoint(int dir, const char *leaf) {
  if (placeholder_dir < 0) return -1;
  if (!placeholder_ready) {
    int fd = openat(placeholder_dir, ".mountpoint", O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0444);
    if (fd < 0) {
      placeholder_dir = -1;
      return -1;
    }
    struct stat st;
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0;
    close(fd);
    if (!ok) {
      placeholder_dir = -1;
      return -1;
    }
    placeholder_ready = 1;
  }
  return linkat(placeholder_dir, ".mountpoint", dir, leaf, 0);
}

/* Directories on disk that file mount points may be linked into: those
 * bound in from the on-disk chroot dir (its /tmp and store dir), linked
 * through the disk path since a link across the bind fails with EXDEV, and
 * in add-path mode the sandbox's store dir. */
#define MAX_DISK_BINDS 4
static struct {
  int fd;
  dev_t dev;
  ino_t ino;
} disk_binds[MAX_DISK_BINDS];
static size_t ndisk_binds;

static void note_disk_bind(int srcdir, const char *src) {
  struct stat st;
  if (ndisk_binds == MAX_DISK_BINDS) return;
  int fd = openat(srcdir, src, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  if (fstat(fd, &st) < 0) {
    close(fd);
    return;
  }
  disk_binds[ndisk_binds].fd = fd;
  disk_binds[ndisk_binds].dev = st.st_dev;
  disk_binds[ndisk_binds].ino = st.st_ino;
  ndisk_binds++;
}

/* The on-disk directory that `dir` is (or is a bind of), -1 if none. */
static int link_dir_of(int dir) {
  struct stat st;
  if (!ndisk_binds || fstat(dir, &st) < 0) return -1;
  for (size_t i = 0; i < ndisk_binds; i++)
    if (disk_binds[i].dev == st.st_dev && disk_binds[i].ino == st.st_ino) return disk_binds[i].fd;
  return -1;
}

/* Creates (if missing) the mount point for a bind of a `isdir` source. */
static int make_mountpoint(int dir, const char *leaf, int isdir) {
  struct stat st;
  if (fstatat(dir, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode)) {
      errno = ELOOP;
      return -1;
    }
    if (!!S_ISDIR(st.st_mode) != !!isdir) {
      errno = isdir ? ENOTDIR : EISDIR;
      return -1;
    }
    return 0;
  }
  if (errno != ENOENT) return -1;
  if (isdir) return mkdirat(dir, leaf, 0755) < 0 && errno != EEXIST ? -1 : 0;
  int ldir = link_dir_of(dir);
  if (ldir >= 0 && link_mountpoint(ldir, leaf) == 0) return 0;
  int fd = openat(dir, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
  if (fd < 0) return -1;
  close(fd);
  return 0;
}

static uint64_t attr_of_flags(uint32_t f) {
  uint64_t a = 0;
  if (f & F_RO) a |= MOUNT_ATTR_RDONLY;
  if (f & F_NOSUID) a |= MOUNT_ATTR_NOSUID;
  if (f & F_NODEV) a |= MOUNT_ATTR_NODEV;
  if (f & F_NOEXEC) a |= 0x8; /* MOUNT_ATTR_NOEXEC */
  return a;
}

static int have_new_mount_api = 1;

/* Classic fallback for kernels without mount_setattr: remount keeping the
 * flags the kernel locks for mounts inherited from a more privileged
 * namespace. */
static int remount_classic(const char *path, uint32_t f, int bind) {
  struct statvfs sv;
  if (statvfs(path, &sv) < 0) return -1;
  unsigned long fl = MS_REMOUNT | (bind ? MS_BIND : 0);
  if (sv.f_flag & ST_NOSUID) fl |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) fl |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) fl |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) fl |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) fl |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) fl |= MS_RELATIME;
  if (f & F_RO) fl |= MS_RDONLY;
  if (f & F_NOSUID) fl |= MS_NOSUID;
  if (f & F_NODEV) fl |= MS_NODEV;
  if (f & F_NOEXEC) fl |= MS_NOEXEC;
  return mount(NULL, path, NULL, fl, NULL);
}

/* Binds host `source` onto dir/leaf with the requested attributes. */
static int bind_at(int srcdir, const char *source, int dir, const char *leaf, uint32_t flags) {
  uint64_t attrs = attr_of_flags(flags);
  if (have_new_mount_api) {
    unsigned rec = (flags & F_REC) ? AT_RECURSIVE : 0;
    int t = sys_open_tree(srcdir, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
    if (t >= 0) {
      if (attrs && sys_mount_setattr(t, "", AT_EMPTY_PATH | rec, attrs) < 0) {
        int e = errno;
        close(t);
        errno = e;
        return -1;
      }
      int r = sys_move_mount(t, "", dir, leaf, MOVE_MOUNT_F_EMPTY_PATH);
      int e = errno;
      close(t);
      errno = e;
      return r;
    }
    if (errno != ENOSYS) return -1;
    have_new_mount_api = 0;
  }
  char target[64], src[64];
  int sfd = openat(srcdir, source, O_PATH | O_CLOEXEC);
  if (sfd < 0) return -1;
  snprintf(src, sizeof src, "/proc/self/fd/%d", sfd);
  int tfd = openat(dir, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (tfd < 0) {
    close(sfd);
    return -1;
  }
  snprintf(target, sizeof target, "/proc/self/fd/%d", tfd);
  int r = mount(src, target, NULL, MS_BIND | ((flags & F_REC) ? MS_REC : 0), NULL);
  close(tfd);
  close(sfd);
  if (r < 0 || !attrs) return r;
  tfd = openat(dir, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (tfd < 0) return -1;
  snprintf(target, sizeof target, "/proc/self/fd/%d", tfd);
  r = remount_classic(target, flags, 1);
  close(tfd);
  return r;
}

static int set_attrs_at(int fd, uint32_t flags) {
  if (have_new_mount_api) {
    if (sys_mount_setattr(fd, "", AT_EMPTY_PATH, attr_of_flags(flags)) == 0) return 0;
    if (errno != ENOSYS) return -1;
    have_new_mount_api = 0;
  }
  char target[64];
  snprintf(target, sizeof target, "/proc/self/fd/%d", fd);
  return remount_classic(target, flags, 1);
}

/* ---------- the operations of the plan ---------- */

static void run_op(const struct op *o) {
  char scratch[PATH_MAX];
  char *a = cstr(o->a), *b = cstr(o->b);
  const char *leaf;
  int dir;
  switch (o->code) {
  case OP_MKDIR: {
    dir = open_parent_in((o->flags & F_DISK) ? disk_fd : root_fd, a, scratch, &leaf, 1);
    if (dir < 0) die("creating directory '%s' in the sandbox: %s", a, strerror(errno));
    if (mkdirat(dir, leaf, (mode_t)o->mode) < 0) {
      struct stat st;
      if (errno != EEXIST || fstatat(dir, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
        die("creating directory '%s' in the sandbox: %s", a, strerror(errno == EEXIST ? EEXIST : errno));
    }
    if (fchmodat(dir, leaf, (mode_t)o->mode, 0) < 0)
      die("setting mode of '%s' in the sandbox: %s", a, strerror(errno));
    close(dir);
    break;
  }
  case OP_WRITE: {
    dir = open_parent(a, scratch, &leaf, 1);
    if (dir < 0) die("creating '%s' in the sandbox: %s", a, strerror(errno));
    int fd = openat(dir, leaf, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, (mode_t)o->mode);
    if (fd < 0) die("creating '%s' in the sandbox: %s", a, strerror(errno));
    write_all(fd, o->b.p, o->b.n);
    if (fchmod(fd, (mode_t)o->mode) < 0) die("setting mode of '%s': %s", a, strerror(errno));
    close(fd);
    close(dir);
    break;
  }
  case OP_SYMLINK: {
    /* a = link path in the sandbox, b = link text */
    dir = open_parent(a, scratch, &leaf, 1);
    if (dir < 0 || symlinkat(b, dir, leaf) < 0)
      die("creating symlink '%s' -> '%s' in the sandbox: %s", a, b, strerror(errno));
    close(dir);
    break;
  }
  case OP_COPY_SYMLINK: {
    /* a = target in the sandbox, b = host symlink to reproduce */
    char text[PATH_MAX];
    ssize_t n = readlink(b, text, sizeof text - 1);
    if (n < 0) {
      if ((o->flags & F_OPTIONAL) && errno == ENOENT) break;
      die("reading symlink '%s': %s", b, strerror(errno));
    }
    text[n] = 0;
    dir = open_parent(a, scratch, &leaf, 1);
    if (dir < 0 || symlinkat(text, dir, leaf) < 0)
      die("creating symlink '%s' in the sandbox: %s", a, strerror(errno));
    close(dir);
    break;
  }
  case OP_BIND: {
    /* a = target in the sandbox, b = host source */
    struct stat st;
    int srcdir = AT_FDCWD;
    const char *src = b;
    if (o->flags & F_SRC_DISK) {
      srcdir = disk_fd;
      while (*src == '/') src++;
    }
    if (fstatat(srcdir, src, &st, 0) < 0) {
      if ((o->flags & F_OPTIONAL) && errno == ENOENT) break;
      die("getting attributes of path '%s': %s", b, strerror(errno));
    }
    dir = open_parent(a, scratch, &leaf, 1);
    if (dir < 0) die("creating the mount point '%s' in the sandbox: %s", a, strerror(errno));
    if (make_mountpoint(dir, leaf, S_ISDIR(st.st_mode)) < 0)
      die("creating the mount point '%s' in the sandbox: %s", a, strerror(errno));
    if (bind_at(srcdir, src, dir, leaf, o->flags) < 0)
      die("bind mount from '%s' to '%s' failed: %s", b, a, strerror(errno));
    if ((o->flags & F_SRC_DISK) && S_ISDIR(st.st_mode)) note_disk_bind(srcdir, src);
    if (o->flags & F_SHARED) {
      int t = openat(dir, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      char p[64];
      snprintf(p, sizeof p, "/proc/self/fd/%d", t);
      if (t < 0 || mount(NULL, p, NULL, MS_SHARED, NULL) < 0)
        die("unable to make '%s' shared: %s", a, strerror(errno));
      close(t);
    }
    close(dir);
    break;
  }
  case OP_MOUNT: {
    /* a = target in the sandbox, b = "fstype\0data" flattened as "fstype:data" */
    char *colon = strchr(b, ':');
    const char *data = NULL;
    if (colon) {
      *colon = 0;
      data = colon + 1;
    }
    dir = open_parent(a, scratch, &leaf, 1);
    if (dir < 0 || make_mountpoint(dir, leaf, 1) < 0)
      die("creating the mount point '%s' in the sandbox: %s", a, strerror(errno));
    int t = openat(dir, leaf, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", t);
    unsigned long fl = 0;
    if (o->flags & F_NOSUID) fl |= MS_NOSUID;
    if (o->flags & F_NODEV) fl |= MS_NODEV;
    if (o->flags & F_NOEXEC) fl |= MS_NOEXEC;
    if (o->flags & F_RO) fl |= MS_RDONLY;
    if (t < 0 || mount("none", p, b, fl, data && *data ? data : NULL) < 0) {
      if (o->flags & F_OPTIONAL) {
        if (t >= 0) close(t);
        close(dir);
        break;
      }
      die("mounting %s on '%s': %s", b, a, strerror(errno));
    }
    close(t);
    close(dir);
    break;
  }
  case OP_REMOUNT_RO: {
    int t;
    if (strcmp(a, "/") == 0) {
      t = openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    } else {
      dir = open_parent(a, scratch, &leaf, 0);
      t = dir < 0 ? -1 : openat(dir, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (dir >= 0) close(dir);
    }
    if (t < 0 || set_attrs_at(t, o->flags | F_RO) < 0)
      die("making '%s' read-only: %s", a, strerror(errno));
    close(t);
    break;
  }
  default: die("request rejected: unknown operation %u", o->code);
  }
  free(a);
  free(b);
}

/* ---------- the sandbox init ---------- */

static int sync_child = -1, sync_parent = -1;

static void send_fds(int sock, int a, int b) {
  char byte = 'N';
  struct iovec iov = { &byte, 1 };
  union { char buf[CMSG_SPACE(2 * sizeof(int))]; struct cmsghdr align; } u;
  memset(&u, 0, sizeof u);
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(2 * sizeof(int));
  int fds[2] = { a, b };
  memcpy(CMSG_DATA(c), fds, sizeof fds);
  if (sendmsg(sock, &msg, 0) < 0) die("handing the mount namespace to the monitor: %s", strerror(errno));
}

static void write_self_maps(void) {
  if (write_file_at(AT_FDCWD, "/proc/self/setgroups", "deny", 4) < 0 && errno != ENOENT)
    die("writing /proc/self/setgroups: %s", strerror(errno));
  if (write_file_at(AT_FDCWD, "/proc/self/uid_map", R.uid_map.p, R.uid_map.n) < 0)
    die("writing the uid map '%.*s': %s", (int)R.uid_map.n, R.uid_map.p, strerror(errno));
  if (write_file_at(AT_FDCWD, "/proc/self/gid_map", R.gid_map.p, R.gid_map.n) < 0)
    die("writing the gid map '%.*s': %s", (int)R.gid_map.n, R.gid_map.p, strerror(errno));
}

static void loopback_up(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("cannot open IP socket: %s", strerror(errno));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) die("cannot set loopback interface flags: %s", strerror(errno));
  close(fd);
}

/* The builder could not be executed: a build failure (as in Nix), not a
 * sandbox setup error, hence its own status line. */
__attribute__((noreturn)) static void exec_failed(const char *builder) {
  int e = errno;
  const char *fmt = "executing '%s': %s";
  char buf[PATH_MAX + 256];
  snprintf(buf, sizeof buf, fmt, builder, strerror(e));
  report('B', "%s", buf);
  _exit(127);
}

/* Reaper mode (unsandboxed builds in a PID namespace): the init forks the
 * builder instead of becoming it. As pid 1 the builder would ignore its own
 * fatal signals (`kill -9 $$`), unlike a builder run by Nix without a
 * sandbox. The init reaps every process, kills the rest once the builder is
 * gone, and sends the builder's wait status ("W <status>") to the monitor. */
__attribute__((noreturn)) static void run_under_reaper(const char *builder) {
  pid_t b = fork();
  if (b < 0) die("forking the builder: %s", strerror(errno));
  if (b == 0) {
    execve(builder, R.argv, R.envp);
    exec_failed(builder);
  }
  /* Only the builder may hold the status channel (its EOF means exec) and
   * the log (its EOF ends the build's output). */
  close(FD_STATUS);
  close(0);
  close(1);
  close(2);
  int status = 0, done = 0;
  for (;;) {
    int st;
    pid_t w = waitpid(-1, &st, __WALL);
    if (w < 0) {
      if (errno == EINTR) continue;
      break; /* ECHILD: nothing is left in the namespace */
    }
    if (w == b) {
      status = st;
      done = 1;
    }
    /* Repeated after every reap: a process may fork while being killed. */
    if (done) kill(-1, SIGKILL);
  }
  if (done) {
    char msg[32];
    int n = snprintf(msg, sizeof msg, "W %d", status);
    if (send(sync_child, msg, (size_t)n, MSG_NOSIGNAL) < 0) _exit(1);
  }
  _exit(done ? 0 : 1);
}

/* Hold mode: everything is set up; the builder starts when the monitor says
 * so ("G" on sync_child). Anything else (EOF: the monitor is gone, or told to
 * kill) ends the init without exec'ing anything. "H" goes on the status
 * channel, which stays open until the exec, so its EOF still means exec. */
static void wait_for_release(void) {
  write_all(status_fd, "H\n", 2);
  char c = 0;
  ssize_t r;
  do r = read(sync_child, &c, 1); while (r < 0 && errno == EINTR);
  if (r != 1 || c != 'G') _exit(1);
  if (!R.reaper) close(sync_child);
}

__attribute__((noreturn)) static void sandbox_init(void) {
  status_fd = FD_STATUS;
  close(sync_parent);
  close(FD_RESULT);
  if (server_ctl >= 0) close(server_ctl);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
  /* The monitor may have died before PDEATHSIG was armed. */
  struct pollfd pf = { sync_child, POLLIN, 0 };
  if (poll(&pf, 1, 0) > 0 && (pf.revents & POLLHUP)) _exit(1);

  int userns = (R.clone_flags & CLONE_NEWUSER) != 0;
  if (userns && R.self_map) write_self_maps();
  if (!R.self_map || R.cgroup.n) {
    char c;
    ssize_t r;
    do r = read(sync_child, &c, 1); while (r < 0 && errno == EINTR);
    if (r != 1) _exit(1);
  }
  /* Become the sandbox user now: a root monitor mapped the build user, so
   * this process's own (host root) ids are not mapped inside, and nothing
   * could be created on the sandbox's tmpfs. Capabilities in the new user
   * namespace survive: the old ids were not its root. */
  if (userns && !R.self_map) {
    if (setresgid((gid_t)R.sandbox_gid, (gid_t)R.sandbox_gid, (gid_t)R.sandbox_gid) < 0)
      die("setgid to the sandbox group: %s", strerror(errno));
    if (setresuid((uid_t)R.sandbox_uid, (uid_t)R.sandbox_uid, (uid_t)R.sandbox_uid) < 0)
      die("setuid to the sandbox user: %s", strerror(errno));
  }
  if (R.newcgroup && unshare(CLONE_NEWCGROUP) < 0) die("unsharing the cgroup namespace: %s", strerror(errno));
  if (setsid() < 0) die("setsid: %s", strerror(errno));
  if (dup2(1, 2) < 0) die("dup2: %s", strerror(errno));

  if (R.clone_flags & CLONE_NEWUTS) {
    if (R.hostname.n && sethostname(R.hostname.p, R.hostname.n) < 0)
      die("cannot set host name: %s", strerror(errno));
    if (R.domainname.n && setdomainname(R.domainname.p, R.domainname.n) < 0)
      die("cannot set domain name: %s", strerror(errno));
  }
  if ((R.clone_flags & CLONE_NEWNET) && R.loopback) loopback_up();

  umask(0);
  if (R.chroot.n) {
    root_path = cstr(R.chroot);
    if (mount(NULL, "/", NULL, MS_PRIVATE | MS_REC, NULL) < 0) die("unable to make '/' private: %s", strerror(errno));
    disk_fd = open(root_path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (disk_fd < 0) die("opening '%s': %s", root_path, strerror(errno));
    /* The skeleton (/, /etc, /dev, mount points) lives on a small tmpfs:
     * creating it on the store's disk costs far more. Outputs and /tmp stay
     * on disk, bound in from disk_fd. */
    if (mount("tmpfs", root_path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m,nr_inodes=65536") < 0)
      die("mounting the sandbox root on '%s': %s", root_path, strerror(errno));
    root_fd = open(root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) die("opening '%s': %s", root_path, strerror(errno));
    placeholder_dir = disk_fd;
    placeholder_ready = 0;
    for (size_t i = 0; i < R.nops; i++) run_op(&R.ops[i]);
    placeholder_dir = -1;
    for (size_t i = 0; i < ndisk_binds; i++) close(disk_binds[i].fd);
    ndisk_binds = 0;

    if (R.keep_ns) {
      int u = userns ? open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC) : open("/dev/null", O_RDONLY | O_CLOEXEC);
      int m = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
      if (u < 0 || m < 0) die("getting the sandbox mount namespace: %s", strerror(errno));
      send_fds(sync_child, u, m);
      close(u);
      close(m);
      /* The namespace just handed over keeps the host view (before
       * pivot_root), so paths can be bind-mounted in later; its store dir is
       * shared with the copy the builder gets. */
      if (unshare(CLONE_NEWNS) < 0) die("unsharing mount namespace: %s", strerror(errno));
    }
    /* By path: after unshare, root_fd still names the mount in the kept
     * namespace, which pivot_root would refuse. */
    if ((R.keep_ns ? chdir(root_path) : fchdir(root_fd)) < 0)
      die("cannot change directory to '%s': %s", root_path, strerror(errno));
    if (syscall(SYS_pivot_root, ".", ".") < 0)
      die("cannot pivot old root directory onto '%s': %s", root_path, strerror(errno));
    if (umount2(".", MNT_DETACH) < 0) die("cannot unmount real root filesystem: %s", strerror(errno));
    if (chroot(".") < 0) die("cannot change root directory to '%s': %s", root_path, strerror(errno));
    close(root_fd);
    close(disk_fd);
  }
  /* The reaper reports the builder's status to the monitor through it; a
   * held init is released through it. */
  if (!R.reaper && !R.hold) close(sync_child);

  if (setresgid((gid_t)R.sandbox_gid, (gid_t)R.sandbox_gid, (gid_t)R.sandbox_gid) < 0)
    die("setgid failed: %s", strerror(errno));
  if (setresuid((uid_t)R.sandbox_uid, (uid_t)R.sandbox_uid, (uid_t)R.sandbox_uid) < 0)
    die("setuid failed: %s", strerror(errno));

  char *cwd = cstr(R.cwd.n ? R.cwd : (struct str){ "/", 1 });
  if (chdir(cwd) < 0) die("changing into '%s': %s", cwd, strerror(errno));

  if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) < 0) {
    for (int fd = 3; fd < 65536; fd++)
      if (fd != FD_STATUS && fd != sync_child) close(fd);
  }
  if (R.personality != 0xffffffffu && personality((unsigned long)R.personality) < 0)
    die("cannot set personality: %s", strerror(errno));
  struct rlimit rl;
  if (getrlimit(RLIMIT_CORE, &rl) == 0) {
    rl.rlim_cur = 0;
    setrlimit(RLIMIT_CORE, &rl);
  }
  if (R.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    die("cannot set no_new_privs: %s", strerror(errno));
  if (R.seccomp.n) {
    struct sock_fprog prog = { (unsigned short)(R.seccomp.n / sizeof(struct sock_filter)),
                               (struct sock_filter *)(uintptr_t)R.seccomp.p };
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0 &&
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
      die("unable to load seccomp BPF program: %s", strerror(errno));
  }
  umask((mode_t)R.umask_);
  char *builder = cstr(R.builder);
  /* Before the reaper forks: nothing of the builder exists while held. */
  if (R.hold) wait_for_release();
  if (R.reaper) run_under_reaper(builder);
  execve(builder, R.argv, R.envp);
  exec_failed(builder);
}

/* ---------- the monitor ---------- */

static volatile pid_t child_pid = -1;

static void forward_kill(int sig) {
  (void)sig;
  if (child_pid > 0) kill(child_pid, SIGKILL);
}

static void write_maps_for(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
  if (write_file_at(AT_FDCWD, path, "deny", 4) < 0 && errno != ENOENT) {
    /* Multi-id maps written by root keep setgroups allowed. */
  }
  snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
  if (write_file_at(AT_FDCWD, path, R.uid_map.p, R.uid_map.n) < 0)
    die("writing the uid map '%.*s': %s", (int)R.uid_map.n, R.uid_map.p, strerror(errno));
  snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
  if (write_file_at(AT_FDCWD, path, R.gid_map.p, R.gid_map.n) < 0)
    die("writing the gid map '%.*s': %s", (int)R.gid_map.n, R.gid_map.p, strerror(errno));
}

static int recv_fds(int sock, int *a, int *b) {
  char byte;
  struct iovec iov = { &byte, 1 };
  union { char buf[CMSG_SPACE(2 * sizeof(int))]; struct cmsghdr align; } u;
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
  ssize_t r;
  do r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); while (r < 0 && errno == EINTR);
  if (r <= 0) return -1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(2 * sizeof(int))) return -1;
  int fds[2];
  memcpy(fds, CMSG_DATA(c), sizeof fds);
  *a = fds[0];
  *b = fds[1];
  return 0;
}

static pid_t clone_child(uint64_t flags) {
  return (pid_t)syscall(SYS_clone, (unsigned long)(flags | SIGCHLD), NULL, NULL, NULL, NULL);
}

static int chld_pipe[2] = { -1, -1 };
static void on_chld(int sig) {
  (void)sig;
  int e = errno;
  if (write(chld_pipe[1], "c", 1) < 0) { /* full: a wake-up is pending anyway */ }
  errno = e;
}

/* Server mode: wait for the init while listening to drvbox: "K" or a closed
 * connection (drvbox gone) kills the sandbox. */
static pid_t wait_serving(pid_t pid, int *st) {
  if (pipe2(chld_pipe, O_CLOEXEC | O_NONBLOCK) < 0) die("pipe: %s", strerror(errno));
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_chld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  int ctl = server_ctl;
  for (;;) {
    pid_t w = waitpid(pid, st, WNOHANG | __WALL);
    if (w == pid) return w;
    if (w < 0 && errno != EINTR) return w;
    struct pollfd pf[2] = { { chld_pipe[0], POLLIN, 0 }, { ctl, POLLIN, 0 } };
    if (poll(pf, ctl >= 0 ? 2 : 1, -1) < 0) continue;
    if (pf[0].revents) {
      char b[64];
      while (read(chld_pipe[0], b, sizeof b) > 0) {}
    }
    if (ctl >= 0 && pf[1].revents) {
      char b[64];
      ssize_t r = read(ctl, b, sizeof b);
      if (r <= 0 || memchr(b, 'K', (size_t)r)) kill(pid, SIGKILL);
      if (r <= 0) ctl = -1;
    }
  }
}

/* Server mode, held init: waits for drvbox ("G": release the builder; "K" or
 * a closed connection: kill the sandbox) or for the init to end or write.
 * 1: released; 0: killed; 2: the init wrote or ended first. */
static int wait_release(int execfd, pid_t pid) {
  for (;;) {
    struct pollfd pf[2] = { { server_ctl, POLLIN, 0 }, { execfd, POLLIN, 0 } };
    if (poll(pf, 2, -1) < 0) continue;
    if (pf[1].revents) return 2;
    if (!pf[0].revents) continue;
    char b[64];
    ssize_t r = read(server_ctl, b, sizeof b);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      kill(pid, SIGKILL);
      return 0;
    }
    for (ssize_t i = 0; i < r; i++) {
      if (b[i] == 'K') {
        kill(pid, SIGKILL);
        return 0;
      }
      if (b[i] == 'G') {
        if (write(sync_parent, "G", 1) != 1) return 2; /* the init is gone: its EOF says so */
        return 1;
      }
    }
  }
}

static int run_mode(void) {
  if (!R.builder.n) die("request rejected: no builder");
  if (!R.nargs) die("request rejected: empty argv");
  if (R.hold && server_ctl < 0) die("request rejected: a held build needs the launcher server");
  /* root switching to a build user: none of root's groups, only the build
   * user's own supplementary groups (none unless the request names some). */
  if (R.drop_groups && getuid() == 0 && setgroups(R.ngroups, R.groups) < 0)
    die("setgroups failed: %s", strerror(errno));
  if (R.make_chroot) {
    /* The empty dir the init populates, made here rather than by the caller
     * (one file-system step less on drvbox's event loop per build). */
    if (!R.chroot.n) die("request rejected: a chroot dir to create, but no chroot path");
    char *c = cstr(R.chroot);
    if (mkdir(c, 0700) < 0) die("creating the sandbox directory '%s': %s", c, strerror(errno));
    /* The init runs as the build user: it must be able to create the skeleton. */
    if (R.has_chroot_owner && chown(c, (uid_t)(R.chroot_owner >> 32), (gid_t)(R.chroot_owner & 0xffffffffu)) < 0)
      die("giving the sandbox directory '%s' to the build user: %s", c, strerror(errno));
    free(c);
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair: %s", strerror(errno));
  sync_child = sv[0];
  sync_parent = sv[1];

  /* Forwarded kills: the handler only needs child_pid. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward_kill;
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGHUP);
  sigprocmask(SIG_BLOCK, &block, &old);

  /* Server mode: the init reports through a close-on-exec pipe at fd 4
   * that the monitor relays, as the caller is not its parent. */
  int exec_pipe[2] = { -1, -1 };
  if (server_ctl >= 0) {
    if (pipe2(exec_pipe, O_CLOEXEC) < 0 || dup3(exec_pipe[1], FD_STATUS, O_CLOEXEC) < 0)
      die("exec pipe: %s", strerror(errno));
    close(exec_pipe[1]);
  }
  pid_t pid = clone_child(R.clone_flags);
  if (pid < 0) die("cloning the sandbox (flags 0x%llx): %s", (unsigned long long)R.clone_flags, strerror(errno));
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (exec_pipe[0] >= 0) close(exec_pipe[0]);
    sandbox_init();
  }
  child_pid = pid;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigprocmask(SIG_SETMASK, &old, NULL);
  close(sync_child);

  if (!R.self_map || R.cgroup.n) {
    if (!R.self_map && (R.clone_flags & CLONE_NEWUSER)) write_maps_for(pid);
    if (R.cgroup.n) {
      char *cg = cstr(R.cgroup), path[PATH_MAX], num[32];
      snprintf(path, sizeof path, "%s/cgroup.procs", cg);
      int n = snprintf(num, sizeof num, "%d", (int)pid);
      if (write_file_at(AT_FDCWD, path, num, (size_t)n) < 0) {
        kill(pid, SIGKILL);
        die("moving the build into cgroup '%s': %s", cg, strerror(errno));
      }
      free(cg);
    }
    if (write(sync_parent, "G", 1) != 1) { /* child died; reported below */ }
  }
  if (server_ctl >= 0) report('P', "%d %d", (int)getpid(), (int)pid);
  else report('P', "%d", (int)pid);
  if (R.keep_ns) {
    int u, m;
    if (recv_fds(sync_parent, &u, &m) == 0) {
      dup2(u, FD_KEPT_USERNS);
      dup2(m, FD_KEPT_MNTNS);
      close(u);
      close(m);
    }
  }
  /* sync_parent stays open: the init treats its hang-up as the monitor's death. */
  /* From here on only the builder may hold the status channel: its EOF means
   * exec. The log channel must not be held open by the monitor either. */
  close(FD_STATUS);
  if (server_ctl >= 0) {
    /* Relay the init's setup error, or announce the exec. A held init
     * reports "H" first: relayed, then drvbox says go or kill. */
    char buf[4096];
    size_t got = 0;
    int held = 0, released = 0, killed = 0;
    for (;;) {
      if (R.hold && !held && got >= 2 && memcmp(buf, "H\n", 2) == 0) {
        held = 1;
        write_all(server_ctl, "H\n", 2);
        got -= 2;
        memmove(buf, buf + 2, got);
        int h = got ? 2 : wait_release(exec_pipe[0], pid);
        if (h == 0) {
          killed = 1;
          break;
        }
        released = h == 1;
      }
      ssize_t r = read(exec_pipe[0], buf + got, sizeof buf - 1 - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += (size_t)r;
      if (got == sizeof buf - 1) break;
    }
    close(exec_pipe[0]);
    if (killed) {
      /* nothing ran: the result line says how the init ended */
    } else if (got) write_all(server_ctl, buf, got);
    else if (held && !released) write_all(server_ctl, "E the sandbox init exited before the builder was released\n", 58);
    else write_all(server_ctl, "R\n", 2);
  }
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    dup2(devnull, 1);
    dup2(devnull, 2);
    close(devnull);
  }

  int st;
  pid_t w;
  if (server_ctl >= 0) w = wait_serving(pid, &st);
  else
    do w = waitpid(pid, &st, __WALL); while (w < 0 && errno == EINTR);
  if (R.reaper && w == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
    /* The builder's own status, from the reaper. */
    char msg[32];
    ssize_t r = recv(sync_parent, msg, sizeof msg - 1, MSG_DONTWAIT);
    if (r > 2 && msg[0] == 'W') {
      msg[r] = 0;
      st = atoi(msg + 2);
    }
  }
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  getrusage(RUSAGE_CHILDREN, &ru);
  char line[160];
  int code = -1, sig = 0;
  if (w == pid && WIFEXITED(st)) code = WEXITSTATUS(st);
  else if (w == pid && WIFSIGNALED(st)) sig = WTERMSIG(st);
  int n = snprintf(line, sizeof line, "X %d %d %lld %lld %ld\n", code, sig,
                   (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
                   (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec, ru.ru_maxrss);
  write_all(server_ctl >= 0 ? server_ctl : FD_RESULT, line, (size_t)n);
  return 0;
}

/* ---------- probe: the real thing, step by step ---------- */

static int probe_mode(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair: %s", strerror(errno));
  pid_t pid = clone_child(R.clone_flags);
  if (pid < 0) {
    report('F', "clone %d %s", errno, strerror(errno));
    return 0;
  }
  if (pid == 0) {
    close(sv[1]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    report('S', "clone ok");
    if (R.clone_flags & CLONE_NEWUSER) {
      if (write_file_at(AT_FDCWD, "/proc/self/setgroups", "deny", 4) < 0 && errno != ENOENT) {
        report('F', "setgroups %d %s", errno, strerror(errno));
        _exit(1);
      }
      if (write_file_at(AT_FDCWD, "/proc/self/uid_map", R.uid_map.p, R.uid_map.n) < 0) {
        report('F', "uid_map %d %s", errno, strerror(errno));
        _exit(1);
      }
      if (write_file_at(AT_FDCWD, "/proc/self/gid_map", R.gid_map.p, R.gid_map.n) < 0) {
        report('F', "gid_map %d %s", errno, strerror(errno));
        _exit(1);
      }
      report('S', "uid_map ok");
    }
    if (mount(NULL, "/", NULL, MS_PRIVATE | MS_REC, NULL) < 0) {
      report('F', "mount %d %s", errno, strerror(errno));
      _exit(1);
    }
    char *dir = cstr(R.target);
    if (mount("none", dir, "tmpfs", 0, "size=64k") < 0) {
      report('F', "mount %d %s", errno, strerror(errno));
      _exit(1);
    }
    report('S', "mount ok");
    char proc[PATH_MAX];
    snprintf(proc, sizeof proc, "%s/proc", dir);
    if (mkdir(proc, 0755) < 0 || mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
      report('F', "proc %d %s", errno, strerror(errno));
      _exit(1);
    }
    report('S', "proc ok");
    if (R.clone_flags & CLONE_NEWNET) {
      int fd = socket(AF_INET, SOCK_DGRAM, 0);
      struct ifreq ifr;
      memset(&ifr, 0, sizeof ifr);
      strcpy(ifr.ifr_name, "lo");
      ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
      if (fd < 0 || ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) {
        report('F', "loopback %d %s", errno, strerror(errno));
        _exit(1);
      }
      report('S', "loopback ok");
    }
    if (R.seccomp.n) {
      struct sock_fprog prog = { (unsigned short)(R.seccomp.n / sizeof(struct sock_filter)),
                                 (struct sock_filter *)(uintptr_t)R.seccomp.p };
      prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
      if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
        report('F', "seccomp %d %s", errno, strerror(errno));
        _exit(1);
      }
      report('S', "seccomp ok");
    }
    _exit(0);
  }
  close(sv[0]);
  int st;
  while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {}
  report('S', "done %d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  return 0;
}

/* ---------- add-path / remove-path: store paths of a running or held sandbox ---------- */
/*
 * Request: TARGET = the sandbox store dir on disk (host view), STORE_DIR = the
 * same dir in the kept (pre-pivot) mount namespace, NAME per store path (a
 * single file name), and for add-path SOURCE per name (host path) and
 * TARGET_PID = the monitor holding the kept namespaces. Status lines: "C <i>"
 * before working on path i, "A <i>" once it is done (visible, resp. gone),
 * then at most one "E ...": drvbox knows what changed when one fails.
 */

static void check_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > NAME_MAX || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    die("request rejected: '%s' is not a store path name", name);
}

static int open_sandbox_store(const char *dir) {
  int fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) die("opening the sandbox store '%s': %s", dir, strerror(errno));
  return fd;
}

static int add_path_mode(void) {
  if (!R.target_pid || !R.target.n || !R.store_dir.n || !R.nnames || R.nnames != R.nsources)
    die("request rejected: add-path needs a pid, the sandbox store dir in and outside the sandbox, and a source per name");
  char *disk = cstr(R.target), *store = cstr(R.store_dir);
  size_t n = R.nnames;
  for (size_t i = 0; i < n; i++) check_name(R.names[i]);
  char path[64];
  snprintf(path, sizeof path, "/proc/%llu/fd/%d", (unsigned long long)R.target_pid, FD_KEPT_USERNS);
  int u = open(path, O_RDONLY | O_CLOEXEC);
  snprintf(path, sizeof path, "/proc/%llu/fd/%d", (unsigned long long)R.target_pid, FD_KEPT_MNTNS);
  int m = open(path, O_RDONLY | O_CLOEXEC);
  if (u < 0 || m < 0)
    die("the build (monitor pid %llu) kept no mount namespace to add paths to: %s", (unsigned long long)R.target_pid,
        strerror(errno));
  int dir = open_sandbox_store(disk);
  placeholder_dir = openat(dir, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
  placeholder_ready = 0;
  note_disk_bind(dir, ".");
  struct stat *st = calloc(n, sizeof *st);
  if (!st) die("out of memory");
  /* Everything is checked before anything is created. */
  struct stat tst;
  for (size_t i = 0; i < n; i++) {
    report('C', "%zu", i);
    if (lstat(R.sources[i], &st[i]) < 0) die("getting attributes of path '%s': %s", R.sources[i], strerror(errno));
    if (fstatat(dir, R.names[i], &tst, AT_SYMLINK_NOFOLLOW) == 0) die("store path '%s' already exists in the sandbox", R.names[i]);
  }
  /* The entries are created on disk first, as the caller: the builder can
   * only have put something there itself, and nothing is followed. The
   * store dir is shared: a symlink is visible at once. A failure undoes
   * what this request created. */
  size_t binds = 0;
  for (size_t i = 0; i < n; i++) {
    const char *leaf = R.names[i];
    report('C', "%zu", i);
    /* which step failed: 1 reading the link, 2 creating it, 3 the mount point */
    int step = 0, bad = 0;
    if (S_ISLNK(st[i].st_mode)) {
      char text[PATH_MAX];
      ssize_t k = readlink(R.sources[i], text, sizeof text - 1);
      if (k < 0) {
        step = 1;
      } else {
        text[k] = 0;
        if (symlinkat(text, dir, leaf) < 0) step = 2;
      }
    } else {
      binds++;
      if (make_mountpoint(dir, leaf, S_ISDIR(st[i].st_mode)) < 0) step = 3;
    }
    if (step) {
      bad = errno;
      for (size_t j = 0; j < i; j++) unlinkat(dir, R.names[j], S_ISDIR(st[j].st_mode) ? AT_REMOVEDIR : 0);
      if (step == 1) die("reading symlink '%s': %s", R.sources[i], strerror(bad));
      if (step == 2) die("creating symlink '%s' in the sandbox: %s", leaf, strerror(bad));
      die("creating the mount point for '%s': %s", leaf, strerror(bad));
    }
  }
  for (size_t i = 0; i < n; i++)
    if (S_ISLNK(st[i].st_mode)) report('A', "%zu", i);
  if (!binds) return 0;
  close(dir);
  /* Enter the sandbox's user namespace (when it has one) for the mount
   * capability, then its pre-pivot mount namespace where host paths are
   * still visible and the store dir propagates into the builder's copy. */
  if ((R.clone_flags & CLONE_NEWUSER) && setns(u, CLONE_NEWUSER) < 0)
    die("entering sandbox user namespace: %s", strerror(errno));
  if (setns(m, CLONE_NEWNS) < 0) die("entering sandbox mount namespace: %s", strerror(errno));
  dir = open_sandbox_store(store);
  for (size_t i = 0; i < n; i++) {
    if (S_ISLNK(st[i].st_mode)) continue;
    const char *leaf = R.names[i];
    report('C', "%zu", i);
    int bad = 0;
    if (fstatat(dir, leaf, &tst, AT_SYMLINK_NOFOLLOW) < 0 || S_ISLNK(tst.st_mode)) bad = -1;
    else if (bind_at(AT_FDCWD, R.sources[i], dir, leaf, F_RO | F_NOSUID | F_NODEV) < 0) bad = errno;
    if (bad) {
      /* Mount points not bound are removed: nothing half-added is left. */
      for (size_t j = i; j < n; j++)
        if (!S_ISLNK(st[j].st_mode)) unlinkat(dir, R.names[j], S_ISDIR(st[j].st_mode) ? AT_REMOVEDIR : 0);
      if (bad < 0) die("the mount point for '%s' vanished from the sandbox", leaf);
      die("bind mount from '%s' to '%s/%s' failed: %s", R.sources[i], store, leaf, strerror(bad));
    }
    report('A', "%zu", i);
  }
  return 0;
}

/* Hides store paths of a (held) sandbox. The entries are deleted from the
 * store dir on disk, in this (the host's) mount namespace, where they are no
 * mount points: the kernel then detaches the binds on them in every other
 * namespace, the kept one and the builder's copy alike, so nothing is left
 * inside, not even an empty mount point. Absent names are done already. */
static int remove_path_mode(void) {
  if (!R.target.n || !R.nnames) die("request rejected: remove-path needs the sandbox store dir and names");
  char *disk = cstr(R.target);
  for (size_t i = 0; i < R.nnames; i++) check_name(R.names[i]);
  int dir = open_sandbox_store(disk);
  for (size_t i = 0; i < R.nnames; i++) {
    const char *leaf = R.names[i];
    report('C', "%zu", i);
    struct stat st;
    if (fstatat(dir, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno != ENOENT) die("getting attributes of '%s' in the sandbox: %s", leaf, strerror(errno));
    } else if (unlinkat(dir, leaf, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0) {
      die("removing store path '%s' from the sandbox: %s", leaf, strerror(errno));
    }
    report('A', "%zu", i);
  }
  return 0;
}

/* ---------- kill-user: leftovers of a build user ---------- */

static int kill_user_mode(void) {
  uid_t uid = (uid_t)R.kill_uid;
  if (uid == 0 || uid == getuid()) die("refusing to kill all processes of uid %u", (unsigned)uid);
  pid_t pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) {
    if (setresuid(uid, uid, uid) < 0) die("setuid(%u): %s", (unsigned)uid, strerror(errno));
    /* kill(-1) as the build user reaches exactly that user's processes;
     * repeat until nothing is left (fork bombs). */
    for (int i = 0; i < 1000; i++) {
      if (kill(-1, SIGKILL) < 0) {
        if (errno == ESRCH) _exit(0);
        die("cannot kill processes for uid %u: %s", (unsigned)uid, strerror(errno));
      }
    }
    _exit(0);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  return 0;
}

/* ---------- remove-tree: a discarded chroot dir ---------- */
/*
 * drvbox renames a chroot dir aside after its build; removing it (an empty
 * mount point per input path, the build dir, whatever the builder left) is
 * done here, off node's main thread. The builder controlled the contents, so
 * every step is relative to a directory fd opened with O_NOFOLLOW (a planted
 * symlink is unlinked, never followed), no directory on another device than
 * the tree's root is entered (a mount point is left in place and the removal
 * reported as failed), and directories left without owner rwx (read-only,
 * mode 0) are given them before being read. Open fds stay bounded: a
 * directory deeper than RM_MAX_DEPTH is moved up to the root and removed
 * from there on a later pass.
 * Exit status: 0 when the tree is gone (or was never there), 1 otherwise.
 */

#define RM_MAX_DEPTH 64

struct rm_tree {
  int root;
  dev_t dev;
  unsigned long hoisted;
};

/* Opens directory `name` of `dir` for reading, never through a symlink nor
 * onto another device, giving its owner rwx first when it lacks them. */
static int rm_open_dir(int dir, const char *name, dev_t dev) {
  int p = openat(dir, name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
  if (p < 0) return -1;
  struct stat st;
  int fd = -1;
  if (fstat(p, &st) < 0) goto out;
  if (st.st_dev != dev) {
    errno = EXDEV;
    goto out;
  }
  if ((st.st_mode & 0700) != 0700) {
    /* chmod through the O_PATH fd: exactly the directory just checked. */
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", p);
    if (chmod(proc, (st.st_mode & 07777) | 0700) < 0) goto out;
  }
  fd = openat(p, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
out:;
  int e = errno;
  close(p);
  errno = e;
  return fd;
}

static void rm_contents(int fd, int depth, struct rm_tree *t);

/* Moves a too-deep directory to the root (renaming a directory to another
 * parent rewrites its "..": it needs owner rwx too). */
static int rm_hoist(int dir, const char *name, struct rm_tree *t) {
  int fd = rm_open_dir(dir, name, t->dev);
  if (fd < 0) return 0;
  close(fd);
  for (int i = 0; i < 100; i++) {
    char to[64];
    snprintf(to, sizeof to, ".drvbox-deep-%lu", t->hoisted++);
    if (renameat(dir, name, t->root, to) == 0) return 1;
    if (errno != EEXIST && errno != ENOTEMPTY) return 0;
  }
  return 0;
}

/* Removes entry `name` of `dir` (at `depth`); 1 when it is gone or moved. */
static int rm_entry(int dir, const char *name, unsigned char type, int depth, struct rm_tree *t) {
  if (type == DT_DIR) {
    /* Most are empty mount points: rmdir needs no look inside. */
    if (unlinkat(dir, name, AT_REMOVEDIR) == 0) return 1;
    if (errno != ENOTEMPTY && errno != EEXIST && errno != EACCES && errno != EPERM) return errno == ENOENT;
  } else if (type != DT_UNKNOWN) {
    if (unlinkat(dir, name, 0) == 0) return 1;
    if (errno == ENOENT) return 1;
  }
  struct stat st;
  if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return errno == ENOENT;
  if (!S_ISDIR(st.st_mode)) return unlinkat(dir, name, 0) == 0;
  if (st.st_dev != t->dev) return 0; /* a mount point: never entered */
  if (depth + 1 > RM_MAX_DEPTH) return rm_hoist(dir, name, t);
  int sub = rm_open_dir(dir, name, t->dev);
  if (sub < 0) return 0;
  rm_contents(sub, depth + 1, t);
  return unlinkat(dir, name, AT_REMOVEDIR) == 0;
}

/* Empties the directory open at fd (taken over). Passes repeat while they
 * make progress: readdir need not return entries added (hoisted) meanwhile. */
static void rm_contents(int fd, int depth, struct rm_tree *t) {
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return;
  }
  for (;;) {
    int seen = 0, gone = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0))) continue;
      seen++;
      gone += rm_entry(dirfd(d), e->d_name, e->d_type, depth, t);
    }
    if (!seen || !gone) break;
    rewinddir(d);
  }
  closedir(d);
}

static int remove_tree_mode(void) {
  if (!R.target.n) die("request rejected: remove-tree needs a target");
  char *path = cstr(R.target);
  char *slash = strrchr(path, '/');
  if (path[0] != '/' || !slash[1] || strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0 || strstr(path, "/../"))
    die("request rejected: bad remove-tree target '%s'", path);
  const char *leaf = slash + 1;
  *slash = 0;
  int parent = open(*path ? path : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (parent < 0) return errno == ENOENT ? 0 : 1;
  struct stat st;
  if (fstatat(parent, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0) return errno == ENOENT ? 0 : 1;
  if (!S_ISDIR(st.st_mode)) return unlinkat(parent, leaf, 0) == 0 ? 0 : 1;
  struct rm_tree t = { -1, st.st_dev, 0 };
  t.root = rm_open_dir(parent, leaf, st.st_dev);
  if (t.root < 0) return 1;
  int fd = dup(t.root);
  if (fd < 0) return 1;
  rm_contents(fd, 0, &t);
  return unlinkat(parent, leaf, AT_REMOVEDIR) == 0 ? 0 : 1;
}

/* ---------- server mode: one launcher for many builds ---------- */
/*
 * Forking the large, multi-threaded node process per build costs
 * milliseconds; this small process forks instead. drvbox sends framed
 * requests (u32 length, u64 build id, request) on fd 3; the first one names an abstract
 * unix socket and a token. Per build a forked monitor connects twice to that
 * socket ("<token> <id> C" control, "<token> <id> L" log) and runs the build
 * as in one-shot mode, with the status and result lines on the control
 * connection ("P <monitor> <init>", "E ..." or "R", then "X ...").
 * A frame with an empty request makes a spare monitor that connects at once
 * and reads its request (u32 length, request) from the control connection
 * later, which takes the fork and the connects off a build's start.
 */

static int read_full(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

static struct str srv_socket, srv_token;

static int connect_channel(uint64_t id, char kind) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  if (srv_socket.n + 1 > sizeof a.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(a.sun_path + 1, srv_socket.p, srv_socket.n); /* abstract namespace */
  /* libuv binds abstract names either padded to the whole sun_path (node 20)
   * or with their exact length (newer): try both. */
  socklen_t exact = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + srv_socket.n);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && connect(fd, (struct sockaddr *)&a, exact) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  char head[256];
  int n = snprintf(head, sizeof head, "%.*s %llu %c\n", (int)srv_token.n, srv_token.p, (unsigned long long)id, kind);
  write_all(fd, head, (size_t)n);
  return fd;
}

__attribute__((noreturn)) static void serve_one(uint64_t id, unsigned char *buf, size_t len, pid_t zygote) {
  signal(SIGCHLD, SIG_DFL);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != zygote) _exit(1);
  int ctl = connect_channel(id, 'C');
  int log = ctl < 0 ? -1 : connect_channel(id, 'L');
  if (ctl < 0 || log < 0) {
    char line[160];
    int n = snprintf(line, sizeof line, "F %llu connecting to drvbox: %s\n", (unsigned long long)id, strerror(errno));
    write_all(FD_REQUEST, line, (size_t)n);
    _exit(1);
  }
  close(FD_REQUEST);
  if (dup2(log, 1) < 0) _exit(1);
  close(log);
  server_ctl = ctl;
  status_fd = ctl;
  if (len == 0) {
    /* A spare monitor, connected ahead of time: its request comes on the
     * control connection when a build needs it (or never: EOF). */
    unsigned char hdr[4];
    if (read_full(ctl, hdr, 4) < 0) _exit(0);
    len = rd32(hdr);
    if (len == 0 || len > MAX_REQUEST) die("request rejected: bad length %zu", len);
    buf = malloc(len);
    if (!buf || read_full(ctl, buf, len) < 0) _exit(1);
  }
  memset(&R, 0, sizeof R);
  parse_request(buf, len);
  _exit(run_mode());
}

/* Jobs (removers, add-path and remove-path) running, by pid, with their
 * frame's id: reaped and reported as "D <id> <status>" on fd 3. */
struct remover { pid_t pid; uint64_t id; };
static struct remover *removers;
static size_t nremovers, capremovers;

static void reap_children(void) {
  int st;
  pid_t p;
  while ((p = waitpid(-1, &st, WNOHANG | __WALL)) > 0) {
    for (size_t i = 0; i < nremovers; i++) {
      if (removers[i].pid != p) continue;
      char line[64];
      int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      int n = snprintf(line, sizeof line, "D %llu %d\n", (unsigned long long)removers[i].id, code);
      write_all(FD_REQUEST, line, (size_t)n);
      removers[i] = removers[--nremovers];
      break;
    }
  }
}

/* The mode of a request when its first record is MODE (protocol.ts always
 * writes it first), without parsing (and dying on) the rest here. */
static uint32_t peek_mode(const unsigned char *buf, size_t len) {
  if (len < 24 || memcmp(buf, "DRVBOX01", 8) != 0 || rd32(buf + 8) != T_MODE || rd32(buf + 12) != 8) return 0;
  return rd32(buf + 16);
}

static int server_mode(void) {
  pid_t self = getpid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) return 1;
  /* Children are reaped here: SIGCHLD comes through a signalfd polled with
   * the request channel (removers' ends are reported to drvbox). */
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  signal(SIGCHLD, SIG_DFL);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int devnull = open("/dev/null", O_RDWR);
  if (devnull >= 0) dup2(devnull, FD_STATUS);
  /* After fd 4 is taken: the signalfd must not land on it. */
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return 1;
  for (int first = 1;; first = 0) {
    for (;;) {
      struct pollfd pf[2] = { { FD_REQUEST, POLLIN, 0 }, { sfd, POLLIN, 0 } };
      if (poll(pf, 2, -1) < 0) continue;
      if (pf[1].revents) {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) > 0) {}
        reap_children();
      }
      if (pf[0].revents) break;
    }
    unsigned char hdr[12];
    if (read_full(FD_REQUEST, hdr, 12) < 0) return 0; /* drvbox closed: done */
    uint32_t len = rd32(hdr);
    uint64_t id = (uint64_t)rd32(hdr + 4) | (uint64_t)rd32(hdr + 8) << 32;
    if (len > MAX_REQUEST) return 1;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf || (len && read_full(FD_REQUEST, buf, len) < 0)) return 1;
    if (first) {
      parse_request(buf, len);
      if (R.parent_pid && (uint64_t)getppid() != R.parent_pid) return 1;
      srv_socket = R.socket_name;
      srv_token = R.token;
      /* keep buf: srv_socket and srv_token point into it */
      continue;
    }
    uint32_t mode = peek_mode(buf, len);
    int remove = mode == MODE_REMOVE_TREE || mode == MODE_ADD_PATH || mode == MODE_REMOVE_PATH;
    if (remove && nremovers == capremovers) {
      size_t cap = capremovers ? capremovers * 2 : 16;
      struct remover *r = realloc(removers, cap * sizeof *r);
      if (!r) return 1;
      removers = r;
      capremovers = cap;
    }
    pid_t pid = fork();
    if (pid == 0) {
      close(sfd);
      sigprocmask(SIG_UNBLOCK, &chld, NULL);
      if (!remove) serve_one(id, buf, len, self);
      if (mode != MODE_REMOVE_TREE) {
        /* Paths of one build, which waits for them: status lines go to
         * fd 3 as "M <id> <line>" (short lines: one atomic write each),
         * before the zygote's "D <id> <status>". */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != self) _exit(1);
        snprintf(status_prefix, sizeof status_prefix, "M %llu ", (unsigned long long)id);
        status_fd = FD_REQUEST;
        batching = 1;
        memset(&R, 0, sizeof R);
        parse_request(buf, len);
        int rc = mode == MODE_ADD_PATH ? add_path_mode() : remove_path_mode();
        flush_batch();
        _exit(rc);
      }
      /* A remover outlives the zygote (no PDEATHSIG): a removal once begun
       * is finished, it only deletes. Its failures are its exit status. It
       * yields to the builders and to drvbox: garbage can wait. */
      close(FD_REQUEST);
      if (setpriority(PRIO_PROCESS, 0, 19) < 0) { /* removal goes on at the same priority */ }
      memset(&R, 0, sizeof R);
      parse_request(buf, len);
      _exit(remove_tree_mode());
    }
    if (remove) {
      if (pid > 0) removers[nremovers++] = (struct remover){ pid, id };
      else {
        char line[64];
        int n = snprintf(line, sizeof line, "D %llu 126\n", (unsigned long long)id);
        write_all(FD_REQUEST, line, (size_t)n);
      }
    }
    free(buf);
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--server") == 0) return server_mode();
  if (fcntl(FD_STATUS, F_SETFD, FD_CLOEXEC) < 0) return 125;
  size_t len;
  unsigned char *buf = read_request(&len);
  parse_request(buf, len);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
  if (R.parent_pid && (uint64_t)getppid() != R.parent_pid) _exit(1);
  switch (R.mode) {
  case MODE_RUN: return run_mode();
  case MODE_PROBE: return probe_mode();
  case MODE_ADD_PATH: return add_path_mode();
  case MODE_KILL_USER: return kill_user_mode();
  case MODE_REMOVE_TREE: return remove_tree_mode();
  case MODE_REMOVE_PATH: return remove_path_mode();
  default: die("request rejected: unknown mode %u", R.mode);
  }
}
