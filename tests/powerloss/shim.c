/* shim.c — LD_PRELOAD recorder for the power-loss simulation
 * (tests/powerloss/recording.py builds it and reads its journal;
 * docs/CRASH_SAFETY.md).
 *
 * A process kill keeps the page cache, so it cannot show a missing sync.
 * This shim records, for every file under $PRL_PL_ROOT, what a sync made
 * durable: at each fsync/fdatasync/msync(MS_SYNC) it copies the file's whole
 * contents (writes through a MAP_SHARED mapping are visible to read()), and
 * at each directory fsync the directory's listing.  It also records renames
 * and unlinks (with the unlinked file's last contents), so recording.py can
 * follow a file by inode across names and tell an inode's incarnations apart.
 *
 * The copy is taken *before* the real call: everything in it was written
 * before the sync started, so all of it is durable once the call succeeds
 * (bytes written while the sync runs may or may not be; image.py treats
 * the bytes outside the copy as possibly lost).  The journal line is written
 * after the real call returned success and before the caller sees that
 * success, so anything the program does because a sync succeeded (complete
 * a ticket, write a record that refers to a file) comes after its line.
 *
 * Journal ($PRL_PL_OUT/journal), one line per event, k increasing with the
 * event's place in time (k of a sync: taken before its copy started):
 *   S <k> <op> <ino> <nlink> <size> <path>     file synced; copy in <k>.data
 *   L <k> <op> <ino> <path>                    directory synced; <k>.list holds
 *                                              "<ino> <d_type> <name>" lines
 *   F <k> <op> <errno> <path>                  a sync failed
 *   R <k> <ino> <replaced ino or 0> <old>\t<new>  rename; a replaced file's
 *                                              contents in <k>.data
 *   D <k> <ino> <path>                         unlink; contents in <k>.data
 *   U <k> <op> <detail>                        a call the model does not cover
 * Renames, unlinks and listings hold one mutex from their call to their
 * journal line, so their k order is their order in the file system.
 *
 * Without PRL_PL_ROOT set every call passes straight through.
 *
 * PRL_PL_FORGET=file,dir (a test of the test): syncs of files / directories
 * still happen but are not recorded, as if the program had never called
 * them; the power-loss images must then show the loss. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_msync)(void *, size_t, int);
static int (*real_sync_file_range)(int, off64_t, off64_t, unsigned int);
static int (*real_syncfs)(int);
static void (*real_sync)(void);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned int);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);

static char g_root[PATH_MAX];
static size_t g_root_len;
static char g_out[PATH_MAX];
static int g_journal = -1;
static uint64_t g_k = 1;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_on;
static int g_forget_file, g_forget_dir;

#define RESOLVE(var, name) \
    do { if (!var) var = dlsym(RTLD_NEXT, name); } while (0)

__attribute__((constructor)) static void shim_init(void) {
    RESOLVE(real_fsync, "fsync");
    RESOLVE(real_fdatasync, "fdatasync");
    RESOLVE(real_msync, "msync");
    RESOLVE(real_sync_file_range, "sync_file_range");
    RESOLVE(real_syncfs, "syncfs");
    RESOLVE(real_sync, "sync");
    RESOLVE(real_rename, "rename");
    RESOLVE(real_renameat, "renameat");
    RESOLVE(real_renameat2, "renameat2");
    RESOLVE(real_unlink, "unlink");
    RESOLVE(real_unlinkat, "unlinkat");
    const char *root = getenv("PRL_PL_ROOT"), *out = getenv("PRL_PL_OUT");
    const char *k0 = getenv("PRL_PL_K0");
    if (!root || !out || !*root || !*out) return;
    if (!realpath(root, g_root)) return;
    g_root_len = strlen(g_root);
    snprintf(g_out, sizeof g_out, "%s", out);
    if (k0) g_k = strtoull(k0, NULL, 10);
    const char *forget = getenv("PRL_PL_FORGET");
    if (forget) {
        g_forget_file = strstr(forget, "file") != NULL;
        g_forget_dir = strstr(forget, "dir") != NULL;
    }
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/journal", g_out);
    g_journal = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (g_journal < 0) {
        fprintf(stderr, "powerloss shim: cannot open %s: %s\n", path, strerror(errno));
        abort();
    }
    g_on = 1;
}

static uint64_t next_k(void) { return __atomic_fetch_add(&g_k, 1, __ATOMIC_SEQ_CST); }

static void journal(const char *fmt, ...) {
    char line[3 * PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = sizeof line - 1;
    /* one write to an O_APPEND file: lines never interleave */
    if (write(g_journal, line, (size_t)n) != n) abort();
}

static int under_root(const char *path) {
    return g_on && strncmp(path, g_root, g_root_len) == 0 &&
           (path[g_root_len] == '/' || path[g_root_len] == 0);
}

/* Path of an open fd; a deleted file's " (deleted)" suffix removed. */
static int fd_path(int fd, char *buf, size_t cap) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, cap - 1);
    if (n < 0) return -1;
    buf[n] = 0;
    const char *del = " (deleted)";
    size_t dl = strlen(del);
    if ((size_t)n > dl && strcmp(buf + n - dl, del) == 0) buf[n - dl] = 0;
    return 0;
}

/* Canonical absolute path of `path` relative to dirfd, without following
 * its last component (which may not exist any more). */
static int abs_path(int dirfd, const char *path, char *buf, size_t cap) {
    char tmp[PATH_MAX * 2], dir[PATH_MAX];
    if (path[0] == '/') {
        snprintf(tmp, sizeof tmp, "%s", path);
    } else {
        char base[PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (!getcwd(base, sizeof base)) return -1;
        } else if (fd_path(dirfd, base, sizeof base) < 0) {
            return -1;
        }
        snprintf(tmp, sizeof tmp, "%s/%s", base, path);
    }
    char *slash = strrchr(tmp, '/');
    if (!slash) return -1;
    const char *name = slash + 1;
    if (slash == tmp) {
        snprintf(dir, sizeof dir, "/");
    } else {
        *slash = 0;
        if (!realpath(tmp, dir)) return -1;
    }
    snprintf(buf, cap, "%s/%s", strcmp(dir, "/") ? dir : "", name);
    return 0;
}

/* Copies the file open at `src_fd` (read from offset 0, pread) to
 * <out>/<k>.data; returns bytes copied or -1. */
static long long copy_fd(int src_fd, uint64_t k) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%llu.data", g_out, (unsigned long long)k);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) return -1;
    static __thread char buf[1 << 16];
    long long total = 0;
    for (;;) {
        ssize_t n = pread(src_fd, buf, sizeof buf, total);
        if (n < 0) {
            if (errno == EINTR) continue;
            total = -1;
            break;
        }
        if (n == 0) break;
        ssize_t w = 0;
        while (w < n) {
            ssize_t m = write(out, buf + w, (size_t)(n - w));
            if (m < 0) { close(out); return -1; }
            w += m;
        }
        total += n;
    }
    close(out);
    return total;
}

static long long copy_path(const char *path, uint64_t k) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    long long n = copy_fd(fd, k);
    close(fd);
    return n;
}

static void drop_copy(uint64_t k, const char *ext) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%llu.%s", g_out, (unsigned long long)k, ext);
    unlink(path); /* our own file: not under the root */
}

/* Writes <out>/<k>.list with the directory open at dir_fd; 0 or -1. */
static int list_dir(int dir_fd, uint64_t k) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dir_fd);
    int fd = open(link, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    DIR *d = fdopendir(fd);
    if (!d) { close(fd); return -1; }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%llu.list", g_out, (unsigned long long)k);
    FILE *f = fopen(path, "we");
    if (!f) { closedir(d); return -1; }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        fprintf(f, "%llu %u %s\n", (unsigned long long)e->d_ino, (unsigned)e->d_type, e->d_name);
    }
    closedir(d);
    return fclose(f) == 0 ? 0 : -1;
}

/* The common part of fsync/fdatasync (and msync, given a file). */
static int sync_fd(int fd, const char *op, int (*call)(int), int *handled) {
    char path[PATH_MAX];
    struct stat st;
    *handled = 0;
    if (!g_on || fd_path(fd, path, sizeof path) < 0 || !under_root(path) || fstat(fd, &st) < 0)
        return 0;
    *handled = 1;
    if ((S_ISDIR(st.st_mode) && g_forget_dir) || (S_ISREG(st.st_mode) && g_forget_file))
        return call(fd);
    if (S_ISDIR(st.st_mode)) {
        pthread_mutex_lock(&g_mu);
        uint64_t k = next_k();
        int lr = list_dir(fd, k);
        pthread_mutex_unlock(&g_mu);
        int rc = call(fd);
        int e = errno;
        pthread_mutex_lock(&g_mu);
        if (rc == 0 && lr == 0) {
            journal("L %llu %s %llu %s\n", (unsigned long long)k, op,
                    (unsigned long long)st.st_ino, path);
        } else if (rc == 0) {
            journal("U %llu %s cannot-list %s\n", (unsigned long long)k, op, path);
        } else {
            journal("F %llu %s %d %s\n", (unsigned long long)k, op, e, path);
            drop_copy(k, "list");
        }
        pthread_mutex_unlock(&g_mu);
        errno = e;
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        int rc = call(fd);
        int e = errno;
        journal("U %llu %s not-a-file %s\n", (unsigned long long)next_k(), op, path);
        errno = e;
        return rc;
    }
    uint64_t k = next_k();
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    int rfd = open(link, O_RDONLY | O_CLOEXEC);
    long long n = rfd >= 0 ? copy_fd(rfd, k) : -1;
    struct stat st2;
    if (rfd >= 0 && fstat(rfd, &st2) == 0) st = st2;
    if (rfd >= 0) close(rfd);
    int rc = call(fd);
    int e = errno;
    pthread_mutex_lock(&g_mu);
    if (rc == 0 && n >= 0) {
        journal("S %llu %s %llu %llu %lld %s\n", (unsigned long long)k, op,
                (unsigned long long)st.st_ino, (unsigned long long)st.st_nlink, n, path);
    } else if (rc == 0) {
        journal("U %llu %s cannot-copy %s\n", (unsigned long long)k, op, path);
    } else {
        journal("F %llu %s %d %s\n", (unsigned long long)k, op, e, path);
        drop_copy(k, "data");
    }
    pthread_mutex_unlock(&g_mu);
    errno = e;
    return rc;
}

int fsync(int fd) {
    RESOLVE(real_fsync, "fsync");
    int handled;
    int rc = sync_fd(fd, "fsync", real_fsync, &handled);
    return handled ? rc : real_fsync(fd);
}

int fdatasync(int fd) {
    RESOLVE(real_fdatasync, "fdatasync");
    int handled;
    int rc = sync_fd(fd, "fdatasync", real_fdatasync, &handled);
    return handled ? rc : real_fdatasync(fd);
}

/* msync(MS_SYNC) of a shared file mapping: the file found in
 * /proc/self/maps, copied whole like an fdatasync. */
static __thread void *t_msync_addr;
static __thread size_t t_msync_len;
static __thread int t_msync_flags;
static int call_msync(int fd) {
    (void)fd;
    return real_msync(t_msync_addr, t_msync_len, t_msync_flags);
}

int msync(void *addr, size_t len, int flags) {
    RESOLVE(real_msync, "msync");
    if (!g_on || !(flags & MS_SYNC)) return real_msync(addr, len, flags); /* MS_ASYNC: nothing durable */
    FILE *m = fopen("/proc/self/maps", "re");
    char line[PATH_MAX + 256], file[PATH_MAX];
    file[0] = 0;
    while (m && fgets(line, sizeof line, m)) {
        unsigned long lo, hi;
        int off = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &off) < 2) continue;
        if ((unsigned long)addr >= lo && (unsigned long)addr < hi && off > 0) {
            char *p = line + off;
            p[strcspn(p, "\n")] = 0;
            snprintf(file, sizeof file, "%s", p);
            break;
        }
    }
    if (m) fclose(m);
    if (!file[0] || !under_root(file)) return real_msync(addr, len, flags);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        journal("U %llu msync cannot-open %s\n", (unsigned long long)next_k(), file);
        return real_msync(addr, len, flags);
    }
    t_msync_addr = addr;
    t_msync_len = len;
    t_msync_flags = flags;
    int handled;
    int rc = sync_fd(fd, "msync", call_msync, &handled);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags) {
    RESOLVE(real_sync_file_range, "sync_file_range");
    char path[PATH_MAX];
    if (g_on && fd_path(fd, path, sizeof path) == 0 && under_root(path))
        journal("U %llu sync_file_range %s\n", (unsigned long long)next_k(), path);
    return real_sync_file_range(fd, off, n, flags);
}

int syncfs(int fd) {
    RESOLVE(real_syncfs, "syncfs");
    if (g_on) journal("U %llu syncfs -\n", (unsigned long long)next_k());
    return real_syncfs(fd);
}

void sync(void) {
    RESOLVE(real_sync, "sync");
    if (g_on) journal("U %llu sync -\n", (unsigned long long)next_k());
    real_sync();
}

/* ---- renames and unlinks ---------------------------------------------- */

static int do_rename(int olddirfd, const char *oldp, int newdirfd, const char *newp,
                     unsigned int flags, int which) {
    char from[PATH_MAX], to[PATH_MAX];
    int watched = g_on && abs_path(olddirfd, oldp, from, sizeof from) == 0 &&
                  abs_path(newdirfd, newp, to, sizeof to) == 0 &&
                  (under_root(from) || under_root(to));
    if (!watched) {
        if (which == 0) return real_rename(oldp, newp);
        if (which == 1) return real_renameat(olddirfd, oldp, newdirfd, newp);
        return real_renameat2(olddirfd, oldp, newdirfd, newp, flags);
    }
    pthread_mutex_lock(&g_mu);
    struct stat so, sn;
    int have_old = lstat(from, &so) == 0;
    int have_new = lstat(to, &sn) == 0 && S_ISREG(sn.st_mode);
    uint64_t k = next_k();
    long long copied = -1;
    if (have_new) copied = copy_path(to, k); /* the file the rename replaces */
    int rc;
    if (which == 0) rc = real_rename(oldp, newp);
    else if (which == 1) rc = real_renameat(olddirfd, oldp, newdirfd, newp);
    else rc = real_renameat2(olddirfd, oldp, newdirfd, newp, flags);
    int e = errno;
    if (rc == 0 && have_old) {
        if (flags) journal("U %llu renameat2-flags %s\n", (unsigned long long)k, from);
        int replaced = have_new && sn.st_ino != so.st_ino;
        if (replaced && sn.st_nlink > 1) journal("U %llu hardlink %s\n", (unsigned long long)k, to);
        journal("R %llu %llu %llu %s\t%s\n", (unsigned long long)k,
                (unsigned long long)so.st_ino,
                (unsigned long long)(replaced ? sn.st_ino : 0), from, to);
        if (replaced && copied < 0) journal("U %llu cannot-copy %s\n", (unsigned long long)k, to);
        if (!replaced) drop_copy(k, "data");
    } else {
        drop_copy(k, "data");
        if (rc == 0) journal("U %llu rename-unknown %s\n", (unsigned long long)k, from);
    }
    pthread_mutex_unlock(&g_mu);
    errno = e;
    return rc;
}

int rename(const char *oldp, const char *newp) {
    RESOLVE(real_rename, "rename");
    return do_rename(AT_FDCWD, oldp, AT_FDCWD, newp, 0, 0);
}

int renameat(int od, const char *oldp, int nd, const char *newp) {
    RESOLVE(real_renameat, "renameat");
    return do_rename(od, oldp, nd, newp, 0, 1);
}

int renameat2(int od, const char *oldp, int nd, const char *newp, unsigned int flags) {
    RESOLVE(real_renameat2, "renameat2");
    return do_rename(od, oldp, nd, newp, flags, 2);
}

static int do_unlink(int dirfd, const char *p, int flags, int which) {
    char path[PATH_MAX];
    if (!g_on || abs_path(dirfd, p, path, sizeof path) < 0 || !under_root(path))
        return which == 0 ? real_unlink(p) : real_unlinkat(dirfd, p, flags);
    pthread_mutex_lock(&g_mu);
    struct stat st;
    int have = lstat(path, &st) == 0;
    uint64_t k = next_k();
    long long copied = -1;
    if (have && S_ISREG(st.st_mode)) copied = copy_path(path, k);
    int rc = which == 0 ? real_unlink(p) : real_unlinkat(dirfd, p, flags);
    int e = errno;
    if (rc == 0 && have && S_ISREG(st.st_mode)) {
        if (st.st_nlink > 1) journal("U %llu hardlink %s\n", (unsigned long long)k, path);
        if (copied < 0) journal("U %llu cannot-copy %s\n", (unsigned long long)k, path);
        journal("D %llu %llu %s\n", (unsigned long long)k, (unsigned long long)st.st_ino, path);
    } else {
        drop_copy(k, "data");
        if (rc == 0) journal("U %llu unlink-non-file %s\n", (unsigned long long)k, path);
    }
    pthread_mutex_unlock(&g_mu);
    errno = e;
    return rc;
}

int unlink(const char *p) {
    RESOLVE(real_unlink, "unlink");
    return do_unlink(AT_FDCWD, p, 0, 0);
}

int unlinkat(int dirfd, const char *p, int flags) {
    RESOLVE(real_unlinkat, "unlinkat");
    return do_unlink(dirfd, p, flags, 1);
}
