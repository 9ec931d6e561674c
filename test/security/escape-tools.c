/* Escape attempts that need a raw system call, compiled statically by the
 * security battery and bind-mounted into the sandbox as /bin/tools.
 * Each command prints "<name>: ok" or "<name>: <errno name>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <unistd.h>

static const char *ename(int e) {
  switch (e) {
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case ESRCH: return "ESRCH";
  case EACCES: return "EACCES";
  case EINVAL: return "EINVAL";
  case EROFS: return "EROFS";
  case ENOTSUP: return "ENOTSUP";
  case ENOSYS: return "ENOSYS";
  case ENXIO: return "ENXIO";
  case ENOTTY: return "ENOTTY";
  case EBUSY: return "EBUSY";
  case ENOTDIR: return "ENOTDIR";
  default: return "EOTHER";
  }
}

static int report(const char *name, long r) {
  if (r < 0) printf("%s: %s\n", name, ename(errno));
  else printf("%s: ok\n", name);
  fflush(stdout);
  return r < 0;
}

static void list(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    printf("list %s: %s\n", dir, ename(errno));
    return;
  }
  struct dirent *e;
  printf("list %s:", dir);
  while ((e = readdir(d))) if (e->d_name[0] != '.') printf(" %s", e->d_name);
  printf("\n");
  closedir(d);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *c = argv[1];
  if (!strcmp(c, "setxattr")) return report("setxattr", setxattr(argv[2], "user.drvbox", "x", 1, 0));
  if (!strcmp(c, "lsetxattr")) return report("lsetxattr", lsetxattr(argv[2], "user.drvbox", "x", 1, 0));
  if (!strcmp(c, "fsetxattr")) {
    int fd = open(argv[2], O_RDONLY);
    return report("fsetxattr", fsetxattr(fd, "user.drvbox", "x", 1, 0));
  }
  if (!strcmp(c, "chmod")) return report("chmod", chmod(argv[2], (mode_t)strtol(argv[3], 0, 8)));
  if (!strcmp(c, "fchmod")) {
    int fd = open(argv[2], O_RDONLY);
    return report("fchmod", fchmod(fd, (mode_t)strtol(argv[3], 0, 8)));
  }
  if (!strcmp(c, "fchmodat")) return report("fchmodat", syscall(SYS_fchmodat, AT_FDCWD, argv[2], strtol(argv[3], 0, 8)));
  if (!strcmp(c, "fchmodat2")) return report("fchmodat2", syscall(452, AT_FDCWD, argv[2], strtol(argv[3], 0, 8), 0));
  if (!strcmp(c, "io_uring")) return report("io_uring", syscall(425, 8, calloc(1, 256)));
  if (!strcmp(c, "ptrace")) return report("ptrace", ptrace(PTRACE_ATTACH, atoi(argv[2]), 0, 0));
  if (!strcmp(c, "kill")) return report("kill", kill(atoi(argv[2]), atoi(argv[3])));
  if (!strcmp(c, "opentty")) return report("opentty", open("/dev/tty", O_RDWR));
  if (!strcmp(c, "tiocsti")) {
    char ch = 'x';
    return report("tiocsti", ioctl(atoi(argv[2]), TIOCSTI, &ch));
  }
  if (!strcmp(c, "tiocsti-high")) {
    char ch = 'x';
    return report("tiocsti-high", syscall(SYS_ioctl, atoi(argv[2]), 0x100000000UL | TIOCSTI, &ch));
  }
  if (!strcmp(c, "mount")) return report("mount", mount(argv[2], argv[3], argc > 4 ? argv[4] : NULL, argc > 4 ? 0 : MS_BIND, NULL));
  if (!strcmp(c, "remount-rw")) return report("remount-rw", mount(NULL, argv[2], NULL, MS_REMOUNT | MS_BIND, NULL));
  if (!strcmp(c, "umount")) return report("umount", umount2(argv[2], MNT_DETACH));
  if (!strcmp(c, "pivot_root")) return report("pivot_root", syscall(SYS_pivot_root, argv[2], argv[3]));
  if (!strcmp(c, "chroot")) return report("chroot", chroot(argv[2]));
  if (!strcmp(c, "list")) {
    list(argv[2]);
    return 0;
  }
  if (!strcmp(c, "read")) {
    int fd = open(argv[2], O_RDONLY);
    return report("read", fd);
  }
  if (!strcmp(c, "segv")) {
    volatile int *p = (int *)(long)(argc - 2);
    return *p;
  }
  if (!strcmp(c, "nested-escape")) {
    /* Full capabilities in a nested user namespace, then every classic way
     * out: chroot + `..` walk, remounting the root writable, umounting the
     * store binds, mounting over /etc. */
    if (report("unshare", unshare(CLONE_NEWUSER | CLONE_NEWNS))) return 1;
    report("remount-root-rw", mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL));
    report("remount-etc-rw", mount(NULL, "/etc", NULL, MS_REMOUNT, NULL));
    report("mount-tmpfs-etc", mount("none", "/etc", "tmpfs", 0, NULL));
    report("chroot-sub", chroot("/tmp"));
    for (int i = 0; i < 64; i++) chdir("..");
    report("chroot-dot", chroot("."));
    list("/");
    report("read-shadow", open("/etc/shadow", O_RDONLY));
    return 0;
  }
  return 2;
}
