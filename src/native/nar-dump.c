/*
 * drvbox-nar-dump PATH: writes the NAR serialisation of PATH to stdout, as
 * `nix-store --dump` does (a top-level symlink is dumped, not followed).
 * Node hashes the stream (src/native/nar-dump.ts); this program only reads.
 *
 * drvbox-nar-dump --hash ALGO PATH: hashes that NAR itself with the system's
 * OpenSSL (libcrypto, opened at run time: nothing to build against) and
 * prints "<hex digest> <NAR size>\n": passing a NAR through Node's pipe
 * costs more CPU than hashing it. Exit status 3 when libcrypto or the
 * algorithm is not there (the caller streams instead).
 *
 * Why native and why two threads: hashing a tree of many small files is
 * bound by file-system syscalls (~10 us each on the reference VM, more from
 * Node). One thread, the walker, lists directories in NAR order, stats and
 * opens the entries and produces the framing; the other, the copier, reads
 * the opened files' contents, closes them and writes everything to stdout.
 * Their syscalls overlap on two cores. They share a bounded ring of items
 * (framing bytes, then an optional open file), so memory and open files stay
 * bounded whatever the tree.
 *
 * Errors are reported in NAR order (the walker queues them as items), so the
 * first problem is the one the JS serialiser (src/store/nar-fs.ts) reports.
 * stderr, exit status 1:
 *   E_UNSUPPORTED_FILE_TYPE <message>   the same message as nar-fs.ts
 *   E_FILE_CHANGED <message>            the same message as nar-fs.ts
 *   E_SYSTEM errno=<n> <syscall> <path>: <strerror>
 * Usage errors exit 2. A reader that goes away (EPIPE) ends it quietly.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Items the walker may be ahead of the copier: bounds open files too. */
#define RING 256
/* The copier is woken once this many items wait (a wake-up per file costs more than the file). */
#define WAKE_BATCH 32
/* Output buffer, and so the size of large files' reads and of writes. */
#define OUT_SIZE (256 * 1024)
#define DENTS_SIZE (64 * 1024)

struct buf {
  char *p;
  size_t len, cap;
};

/* Files at most this big may be read ahead by the walker into their item. */
#define PREFETCH_MAX (64 * 1024)

enum job { JOB_NONE, JOB_PENDING, JOB_CLAIMED, JOB_DONE };
/* What the walker found when it read a file ahead. */
enum fetched { FETCHED_ALL, FETCHED_STAT_ONLY, FETCHED_NOT_REGULAR, FETCHED_SHORT, FETCHED_ERRNO };

struct item {
  struct buf frame; /* framing written before the file (or alone) */
  int fd;           /* an opened file whose node follows the frame, or -1 */
  struct buf path;  /* of the file (for messages), or the error message */
  enum { ITEM_DATA, ITEM_ERROR, ITEM_END } kind;
  /* The file's node is dumped by the copier, unless the walker, ahead of it
     with nothing else to do, claimed it first and read it into `data`. */
  _Atomic int job;
  enum fetched fetched;
  mode_t mode;
  uint64_t size, got;
  int err;
  const char *syscall;
  struct buf data;
};

static struct item ring[RING];
static _Atomic size_t head; /* items published by the walker */
static _Atomic size_t tail; /* items consumed by the copier */
static _Atomic int copier_waiting, walker_waiting;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static void die_oom(void) {
  fputs("E_SYSTEM ENOMEM malloc: out of memory\n", stderr);
  exit(1);
}

static void buf_reserve(struct buf *b, size_t more) {
  if (b->len + more <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + more) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) die_oom();
  b->p = p;
  b->cap = cap;
}

static void buf_put(struct buf *b, const void *data, size_t n) {
  buf_reserve(b, n);
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static void put_u64(char *at, uint64_t v) {
  for (int i = 0; i < 8; i++) at[i] = (char)(v >> (8 * i));
}

/* A NAR string: little-endian u64 length, the bytes, zeros to a multiple of 8. */
static void buf_str(struct buf *b, const char *s, size_t n) {
  size_t pad = (8 - n % 8) % 8;
  buf_reserve(b, 8 + n + pad);
  put_u64(b->p + b->len, n);
  memcpy(b->p + b->len + 8, s, n);
  memset(b->p + b->len + 8 + n, 0, pad);
  b->len += 8 + n + pad;
}

#define TOK(b, s) buf_str((b), (s), sizeof(s) - 1)

/* ---- the ring ---- */

static void wake(_Atomic int *waiting) {
  if (atomic_load(waiting)) {
    pthread_mutex_lock(&lock);
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
  }
}

static void fetch_ahead(struct item *it);

/*
 * Reads ahead one file the copier has not started, newest first (the
 * copier works from the oldest): returns 0 if there is none.
 */
static int help_copier(size_t h) {
  for (size_t i = h; i-- > atomic_load(&tail) + 1;) {
    struct item *it = &ring[i % RING];
    int pending = JOB_PENDING;
    if (atomic_load_explicit(&it->job, memory_order_relaxed) == JOB_PENDING &&
        atomic_compare_exchange_strong(&it->job, &pending, JOB_CLAIMED)) {
      fetch_ahead(it);
      atomic_store(&it->job, JOB_DONE);
      return 1;
    }
  }
  return 0;
}

/* The slot the walker fills next; while the ring is full it helps the copier, or waits. */
static struct item *slot(void) {
  size_t h = atomic_load_explicit(&head, memory_order_relaxed);
  while (h - atomic_load(&tail) == RING) {
    if (help_copier(h)) continue;
    pthread_mutex_lock(&lock);
    atomic_store(&walker_waiting, 1);
    while (h - atomic_load(&tail) == RING) pthread_cond_wait(&cond, &lock);
    atomic_store(&walker_waiting, 0);
    pthread_mutex_unlock(&lock);
  }
  return &ring[h % RING];
}

static void publish(int force_wake) {
  size_t h = atomic_load_explicit(&head, memory_order_relaxed) + 1;
  atomic_store(&head, h);
  if (force_wake || h - atomic_load(&tail) >= WAKE_BATCH) wake(&copier_waiting);
}

/* ---- the walker ---- */

static struct item *cur; /* the item whose frame is being filled */
/* DRVBOX_NAR_DUMP_AHEAD=all: the walker reads every file ahead (for tests: that path must not depend on timing) */
static int ahead_always;

static void begin_item(void) {
  cur = slot();
  cur->frame.len = 0;
  cur->path.len = 0;
  cur->fd = -1;
  cur->kind = ITEM_DATA;
  atomic_store_explicit(&cur->job, JOB_NONE, memory_order_relaxed);
}

/* Publishes the current item with `fd`, a file to dump (and close) after its frame, and starts the next one. */
static void hand_over_file(int fd, const struct buf *path) {
  cur->fd = fd;
  buf_put(&cur->path, path->p, path->len);
  atomic_store_explicit(&cur->job, JOB_PENDING, memory_order_relaxed);
  if (ahead_always) {
    atomic_store_explicit(&cur->job, JOB_CLAIMED, memory_order_relaxed);
    fetch_ahead(cur);
    atomic_store_explicit(&cur->job, JOB_DONE, memory_order_relaxed);
  }
  publish(0);
  begin_item();
}

/* The copier's part of a file, done ahead by the walker: small files whole, else the fstat. */
static void fetch_ahead(struct item *it) {
  struct stat st;
  if (fstat(it->fd, &st) < 0) {
    it->fetched = FETCHED_ERRNO;
    it->err = errno;
    it->syscall = "fstat";
    return;
  }
  it->mode = st.st_mode;
  it->size = (uint64_t)st.st_size;
  if (!S_ISREG(st.st_mode)) {
    it->fetched = FETCHED_NOT_REGULAR;
    close(it->fd);
    return;
  }
  if (it->size > PREFETCH_MAX) {
    it->fetched = FETCHED_STAT_ONLY; /* the copier streams it */
    return;
  }
  it->data.len = 0;
  buf_reserve(&it->data, it->size);
  it->fetched = FETCHED_ALL;
  for (it->got = 0; it->got < it->size;) {
    ssize_t n = read(it->fd, it->data.p + it->got, it->size - it->got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      it->fetched = n == 0 ? FETCHED_SHORT : FETCHED_ERRNO;
      it->err = errno;
      it->syscall = "read";
      break;
    }
    it->got += (uint64_t)n;
  }
  close(it->fd);
}

/* Queues an error and stops: nothing after it is dumped. */
static _Noreturn void walk_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void walk_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  int n = vasprintf(&msg, fmt, ap);
  va_end(ap);
  if (n < 0) die_oom();
  cur->kind = ITEM_ERROR;
  buf_put(&cur->path, msg, (size_t)n);
  free(msg);
  publish(1);
  pthread_exit(NULL);
}

static _Noreturn void walk_fail_errno(int err, const char *syscall, const struct buf *path) {
  walk_fail("E_SYSTEM errno=%d %s %.*s: %s\n", err, syscall, (int)path->len, path->p, strerror(err));
}

static _Noreturn void unsupported(const struct buf *path) {
  walk_fail("E_UNSUPPORTED_FILE_TYPE cannot serialise '%.*s': unsupported file type (not a file, directory or symlink)\n",
            (int)path->len, path->p);
}

struct dirent_ref {
  size_t off; /* of the NUL-terminated name in dirents.names */
  unsigned char type;
};

struct dirents {
  char *names; /* back to back */
  size_t len, cap;
  struct dirent_ref *e;
  size_t n, ncap;
};

static const char *sort_base;
static int by_bytes(const void *a, const void *b) {
  /* strcmp compares as unsigned char: NAR's order */
  return strcmp(sort_base + ((const struct dirent_ref *)a)->off, sort_base + ((const struct dirent_ref *)b)->off);
}

/* Lists `fd`'s entries (not . and ..) with their d_type, sorted by bytes. */
static void list_dir(int fd, const struct buf *path, struct dirents *d) {
  static char dents[DENTS_SIZE];
  for (;;) {
    long got = syscall(SYS_getdents64, fd, dents, sizeof dents);
    if (got < 0) walk_fail_errno(errno, "scandir", path);
    if (got == 0) break;
    for (long at = 0; at < got;) {
      struct dirent64 *de = (struct dirent64 *)(dents + at);
      at += de->d_reclen;
      const char *nm = de->d_name;
      if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
      size_t l = strlen(nm) + 1;
      if (d->len + l > d->cap) {
        d->cap = (d->len + l) * 2 + 4096;
        if (!(d->names = realloc(d->names, d->cap))) die_oom();
      }
      if (d->n == d->ncap) {
        d->ncap = d->ncap * 2 + 64;
        if (!(d->e = realloc(d->e, d->ncap * sizeof *d->e))) die_oom();
      }
      memcpy(d->names + d->len, nm, l);
      d->e[d->n].off = d->len;
      d->e[d->n].type = de->d_type;
      d->n++;
      d->len += l;
    }
  }
  sort_base = d->names;
  qsort(d->e, d->n, sizeof *d->e, by_bytes);
}

static void dump_node(int dirfd, const char *name, unsigned char dtype, struct buf *path);

static void dump_dir(int fd, struct buf *path) {
  TOK(&cur->frame, "(");
  TOK(&cur->frame, "type");
  TOK(&cur->frame, "directory");
  struct dirents d = {0};
  list_dir(fd, path, &d);
  size_t base = path->len;
  for (size_t i = 0; i < d.n; i++) {
    const char *nm = d.names + d.e[i].off;
    size_t l = strlen(nm);
    TOK(&cur->frame, "entry");
    TOK(&cur->frame, "(");
    TOK(&cur->frame, "name");
    buf_str(&cur->frame, nm, l);
    TOK(&cur->frame, "node");
    path->len = base;
    buf_put(path, "/", 1);
    buf_put(path, nm, l);
    dump_node(fd, nm, d.e[i].type, path);
    TOK(&cur->frame, ")");
  }
  path->len = base;
  TOK(&cur->frame, ")");
  free(d.names);
  free(d.e);
}

/* Dumps the symlink `name`; -1 with errno if readlink fails. */
static int try_symlink(int dirfd, const char *name) {
  static char target[65536];
  ssize_t n = readlinkat(dirfd, name, target, sizeof target);
  if (n < 0) return -1;
  TOK(&cur->frame, "(");
  TOK(&cur->frame, "type");
  TOK(&cur->frame, "symlink");
  TOK(&cur->frame, "target");
  buf_str(&cur->frame, target, (size_t)n);
  TOK(&cur->frame, ")");
  return 0;
}

static void dump_symlink(int dirfd, const char *name, const struct buf *path) {
  if (try_symlink(dirfd, name) < 0) walk_fail_errno(errno, "readlink", path);
}

/* `fd` is open on the node; dumps it by what fstat says. Takes `fd`. */
static void dump_open(int fd, const struct stat *st, struct buf *path) {
  if (S_ISREG(st->st_mode)) {
    hand_over_file(fd, path);
  } else if (S_ISDIR(st->st_mode)) {
    dump_dir(fd, path);
    close(fd);
  } else {
    close(fd);
    unsupported(path);
  }
}

static void dump_node(int dirfd, const char *name, unsigned char dtype, struct buf *path) {
  struct stat st;
  int fd;
  switch (dtype) {
  case DT_DIR:
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      dump_dir(fd, path);
      close(fd);
      return;
    }
    break; /* replaced since it was listed: look again */
  case DT_REG:
    /* O_NONBLOCK: should it have become a fifo, opening must not wait */
    fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
      hand_over_file(fd, path); /* its fstat is the copier's (half the work per file) */
      return;
    }
    break;
  case DT_LNK:
    if (try_symlink(dirfd, name) == 0) return;
    if (errno != EINVAL) walk_fail_errno(errno, "readlink", path);
    break; /* EINVAL: no longer a symlink */
  default:
    break; /* DT_UNKNOWN, or a type only lstat may confirm */
  }
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) walk_fail_errno(errno, "lstat", path);
  if (S_ISLNK(st.st_mode)) return dump_symlink(dirfd, name, path);
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) unsupported(path);
  fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) walk_fail_errno(errno, "open", path);
  if (fstat(fd, &st) < 0) walk_fail_errno(errno, "fstat", path);
  dump_open(fd, &st, path);
}

static const char *root_arg;

static void *walker(void *unused) {
  (void)unused;
  struct buf path = {0};
  buf_put(&path, root_arg, strlen(root_arg));
  begin_item();
  TOK(&cur->frame, "nix-archive-1");
  struct stat st;
  if (lstat(root_arg, &st) < 0) walk_fail_errno(errno, "lstat", &path);
  if (S_ISLNK(st.st_mode)) {
    dump_symlink(AT_FDCWD, root_arg, &path);
  } else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
    int fd = open(root_arg, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) walk_fail_errno(errno, "open", &path);
    if (fstat(fd, &st) < 0) walk_fail_errno(errno, "fstat", &path);
    dump_open(fd, &st, &path);
  } else {
    unsupported(&path);
  }
  cur->kind = ITEM_END;
  publish(1);
  free(path.p);
  return NULL;
}

/* ---- the copier (main thread) ---- */

static char out[OUT_SIZE];
static size_t out_len;

/* --hash: libcrypto's EVP interface, looked up at run time. */
static struct {
  void *ctx;
  int (*update)(void *ctx, const void *d, size_t n);
  uint64_t size;
} digest;

static void flush_out(void) {
  if (digest.ctx) {
    if (out_len && !digest.update(digest.ctx, out, out_len)) {
      fputs("E_SYSTEM errno=0 EVP_DigestUpdate: failed\n", stderr);
      exit(1);
    }
    digest.size += out_len;
    out_len = 0;
    return;
  }
  size_t done = 0;
  while (done < out_len) {
    ssize_t n = write(STDOUT_FILENO, out + done, out_len - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE) _exit(1); /* the reader went away: nobody to tell */
      fprintf(stderr, "E_SYSTEM errno=%d write <stdout>: %s\n", errno, strerror(errno));
      exit(1);
    }
    done += (size_t)n;
  }
  out_len = 0;
}

static void out_put(const char *p, size_t n) {
  while (n > 0) {
    if (out_len == OUT_SIZE) flush_out();
    size_t k = OUT_SIZE - out_len < n ? OUT_SIZE - out_len : n;
    memcpy(out + out_len, p, k);
    out_len += k;
    p += k;
    n -= k;
  }
}

static _Noreturn void copy_fail_errno(const struct item *it, int err, const char *syscall) {
  fprintf(stderr, "E_SYSTEM errno=%d %s %.*s: %s\n", err, syscall, (int)it->path.len, it->path.p, strerror(err));
  exit(1);
}

static _Noreturn void copy_fail_short(const struct item *it, uint64_t size, uint64_t got) {
  fprintf(stderr, "E_FILE_CHANGED file '%.*s' changed while being read: expected %llu bytes, got %llu\n", (int)it->path.len,
          it->path.p, (unsigned long long)size, (unsigned long long)got);
  exit(1);
}

/* Listed as a regular file, found to be something else: the caller starts over (in JS). */
static _Noreturn void copy_fail_type(const struct item *it) {
  fprintf(stderr, "E_SYSTEM errno=0 fstat %.*s: no longer a regular file\n", (int)it->path.len, it->path.p);
  exit(1);
}

static void out_tok(const char *s, size_t n) {
  char len[8];
  static const char zeros[8];
  put_u64(len, n);
  out_put(len, 8);
  out_put(s, n);
  out_put(zeros, (8 - n % 8) % 8);
}

#define OUT_TOK(s) out_tok((s), sizeof(s) - 1)

static void out_regular_header(mode_t mode, uint64_t size) {
  OUT_TOK("(");
  OUT_TOK("type");
  OUT_TOK("regular");
  if (mode & S_IXUSR) {
    OUT_TOK("executable");
    OUT_TOK("");
  }
  OUT_TOK("contents");
  char len[8];
  put_u64(len, size);
  out_put(len, 8);
}

static void out_regular_end(uint64_t size) {
  static const char zeros[8];
  out_put(zeros, (8 - size % 8) % 8);
  OUT_TOK(")");
}

/* Streams `size` bytes of the item's file into the output, and closes it. */
static void copy_contents(struct item *it, uint64_t size) {
  uint64_t got = 0;
  while (got < size) {
    /* a large file's reads go straight into a mostly empty buffer */
    if (out_len == OUT_SIZE || (OUT_SIZE - out_len < size - got && out_len > OUT_SIZE / 2)) flush_out();
    size_t want = OUT_SIZE - out_len;
    if (want > size - got) want = (size_t)(size - got);
    ssize_t n = read(it->fd, out + out_len, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      copy_fail_errno(it, errno, "read");
    }
    if (n == 0) copy_fail_short(it, size, got);
    out_len += (size_t)n;
    got += (uint64_t)n;
  }
  close(it->fd);
}

static void copy_file(struct item *it) {
  int pending = JOB_PENDING;
  if (atomic_compare_exchange_strong(&it->job, &pending, JOB_CLAIMED)) {
    struct stat st;
    if (fstat(it->fd, &st) < 0) copy_fail_errno(it, errno, "fstat");
    if (!S_ISREG(st.st_mode)) copy_fail_type(it);
    out_regular_header(st.st_mode, (uint64_t)st.st_size);
    copy_contents(it, (uint64_t)st.st_size);
    out_regular_end((uint64_t)st.st_size);
    return;
  }
  /* the walker is reading it ahead: a few microseconds */
  while (atomic_load(&it->job) != JOB_DONE) sched_yield();
  switch (it->fetched) {
  case FETCHED_ERRNO:
    copy_fail_errno(it, it->err, it->syscall);
  case FETCHED_NOT_REGULAR:
    copy_fail_type(it);
  case FETCHED_SHORT:
    copy_fail_short(it, it->size, it->got);
  case FETCHED_STAT_ONLY:
    out_regular_header(it->mode, it->size);
    copy_contents(it, it->size);
    break;
  case FETCHED_ALL:
    out_regular_header(it->mode, it->size);
    out_put(it->data.p, it->size);
    break;
  }
  out_regular_end(it->size);
}

/* Digest context for `algo` (md5, sha1, sha256, sha512), or exits 3: no libcrypto here. */
static void *digest_init(const char *algo, int (**final)(void *, unsigned char *, unsigned int *)) {
  void *lib = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = dlopen("libcrypto.so", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "E_NO_CRYPTO %s\n", dlerror());
    exit(3);
  }
  const void *(*byname)(const char *) = (const void *(*)(const char *))dlsym(lib, "EVP_get_digestbyname");
  void *(*ctx_new)(void) = (void *(*)(void))dlsym(lib, "EVP_MD_CTX_new");
  int (*init)(void *, const void *, void *) = (int (*)(void *, const void *, void *))dlsym(lib, "EVP_DigestInit_ex");
  digest.update = (int (*)(void *, const void *, size_t))dlsym(lib, "EVP_DigestUpdate");
  *final = (int (*)(void *, unsigned char *, unsigned int *))dlsym(lib, "EVP_DigestFinal_ex");
  const void *md = byname ? byname(algo) : NULL;
  void *ctx = ctx_new && md ? ctx_new() : NULL;
  if (!ctx || !init || !digest.update || !*final || !init(ctx, md, NULL)) {
    fprintf(stderr, "E_NO_CRYPTO no usable %s in libcrypto\n", algo);
    exit(3);
  }
  return ctx;
}

int main(int argc, char **argv) {
  const char *algo = NULL;
  if (argc >= 2 && strcmp(argv[1], "--hash") == 0) {
    algo = argc == 4 ? argv[2] : NULL;
    argv += 2;
    argc = algo ? 2 : 0;
  }
  if (argc != 2) {
    fputs("usage: drvbox-nar-dump [--hash md5|sha1|sha256|sha512] PATH\n", stderr);
    return 2;
  }
  int (*final)(void *, unsigned char *, unsigned int *) = NULL;
  if (algo) digest.ctx = digest_init(algo, &final);
  root_arg = argv[1];
  const char *ahead = getenv("DRVBOX_NAR_DUMP_AHEAD");
  ahead_always = ahead && strcmp(ahead, "all") == 0;
  signal(SIGPIPE, SIG_IGN);
  /* fewer, larger hand-overs to the reader (best effort: needs a pipe, may be capped) */
  fcntl(STDOUT_FILENO, F_SETPIPE_SZ, 1 << 20);
  pthread_t t;
  if ((errno = pthread_create(&t, NULL, walker, NULL)) != 0) {
    fprintf(stderr, "E_SYSTEM errno=%d pthread_create: %s\n", errno, strerror(errno));
    return 1;
  }
  for (;;) {
    size_t tl = atomic_load_explicit(&tail, memory_order_relaxed);
    if (atomic_load(&head) == tl) {
      pthread_mutex_lock(&lock);
      atomic_store(&copier_waiting, 1);
      while (atomic_load(&head) == tl) pthread_cond_wait(&cond, &lock);
      atomic_store(&copier_waiting, 0);
      pthread_mutex_unlock(&lock);
    }
    struct item *it = &ring[tl % RING];
    if (it->kind == ITEM_ERROR) {
      fwrite(it->path.p, 1, it->path.len, stderr);
      return 1;
    }
    out_put(it->frame.p, it->frame.len);
    if (it->kind == ITEM_END) break;
    if (it->fd >= 0) copy_file(it);
    atomic_store(&tail, tl + 1);
    if (atomic_load(&walker_waiting) && RING - (atomic_load(&head) - (tl + 1)) >= RING / 2) wake(&walker_waiting);
  }
  flush_out();
  pthread_join(t, NULL);
  if (digest.ctx) {
    unsigned char md[64];
    unsigned int n = 0;
    if (!final(digest.ctx, md, &n)) {
      fputs("E_SYSTEM errno=0 EVP_DigestFinal_ex: failed\n", stderr);
      return 1;
    }
    char line[160];
    size_t k = 0;
    for (unsigned int i = 0; i < n; i++) k += (size_t)snprintf(line + k, sizeof line - k, "%02x", md[i]);
    k += (size_t)snprintf(line + k, sizeof line - k, " %llu\n", (unsigned long long)digest.size);
    if (write(STDOUT_FILENO, line, k) != (ssize_t)k) return 1;
  }
  return 0;
}
