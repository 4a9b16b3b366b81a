/* syncspy.c — an LD_PRELOAD interposer that watches the engine's syncs from
 * outside the product (tests/test_sync_oracle.py builds and uses it).
 *
 * The engine's own sync history (failpoint.sync_history) is written by the
 * flusher in the same locked step that publishes durable_lsn, so it cannot
 * show a missing or misplaced fdatasync.  This library sees the real calls:
 * every fsync/fdatasync/msync(MS_SYNC) and every rename, in the order they
 * happened, on one clock that the test program also reads (syncspy_clock)
 * when it writes a batch and when a ticket completes.
 *
 * Log ($SYNCSPY_OUT), one line per event; k is the shared clock:
 *   B <k> <op> <path>        a sync call begins (path from /proc/self/fd)
 *   E <k> <op> <ret> <path>  it returned (ret: 0 or errno)
 *   R <k> <old>\t<new>       a rename succeeded (absolute paths)
 * $SYNCSPY_DELAY_US (optional) holds every sync that long between B and the
 * real call, so that a ticket completed before its sync returned is seen
 * completing between the sync's B and E.
 *
 * Without SYNCSPY_OUT every call passes straight through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_msync)(void *, size_t, int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned int);

static FILE *g_log;
static uint64_t g_clock = 1;
static useconds_t g_delay;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

#define RESOLVE(var, name) \
    do { if (!var) var = dlsym(RTLD_NEXT, name); } while (0)

__attribute__((constructor)) static void spy_init(void) {
    RESOLVE(real_fsync, "fsync");
    RESOLVE(real_fdatasync, "fdatasync");
    RESOLVE(real_msync, "msync");
    RESOLVE(real_rename, "rename");
    RESOLVE(real_renameat, "renameat");
    RESOLVE(real_renameat2, "renameat2");
    const char *out = getenv("SYNCSPY_OUT");
    const char *delay = getenv("SYNCSPY_DELAY_US");
    if (delay) g_delay = (useconds_t)atol(delay);
    if (out && *out) {
        g_log = fopen(out, "w");
        if (g_log) setvbuf(g_log, NULL, _IOLBF, 0);
    }
}

/* The shared clock: every event and every call from the program takes the
 * next value, so "before" and "after" are exact. */
uint64_t syncspy_clock(void) {
    return __atomic_fetch_add(&g_clock, 1, __ATOMIC_SEQ_CST);
}

static void fd_path(int fd, char *out, size_t n) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t r = readlink(link, out, n - 1);
    out[r < 0 ? 0 : r] = 0;
}

static void at_path(int dirfd, const char *name, char *out, size_t n) {
    if (name[0] == '/' || dirfd == AT_FDCWD) {
        if (name[0] == '/' || !getcwd(out, n)) {
            snprintf(out, n, "%s", name);
            return;
        }
    } else {
        fd_path(dirfd, out, n);
    }
    size_t len = strlen(out);
    snprintf(out + len, n - len, "/%s", name);
}

static int spy_sync(const char *op, int fd, int (*call)(int)) {
    if (!g_log) return call(fd);
    char path[PATH_MAX];
    fd_path(fd, path, sizeof path);
    pthread_mutex_lock(&g_mu);
    fprintf(g_log, "B %llu %s %s\n", (unsigned long long)syncspy_clock(), op, path);
    pthread_mutex_unlock(&g_mu);
    if (g_delay) usleep(g_delay);
    int rc = call(fd);
    int err = rc < 0 ? errno : 0;
    pthread_mutex_lock(&g_mu);
    fprintf(g_log, "E %llu %s %d %s\n", (unsigned long long)syncspy_clock(), op, err, path);
    pthread_mutex_unlock(&g_mu);
    errno = err;
    return rc;
}

int fsync(int fd) { RESOLVE(real_fsync, "fsync"); return spy_sync("fsync", fd, real_fsync); }

int fdatasync(int fd) {
    RESOLVE(real_fdatasync, "fdatasync");
    return spy_sync("fdatasync", fd, real_fdatasync);
}

int msync(void *addr, size_t len, int flags) {
    RESOLVE(real_msync, "msync");
    if (g_log && (flags & MS_SYNC)) {
        pthread_mutex_lock(&g_mu);
        fprintf(g_log, "B %llu msync ?\n", (unsigned long long)syncspy_clock());
        pthread_mutex_unlock(&g_mu);
    }
    int rc = real_msync(addr, len, flags);
    if (g_log && (flags & MS_SYNC)) {
        int err = rc < 0 ? errno : 0;
        pthread_mutex_lock(&g_mu);
        fprintf(g_log, "E %llu msync %d ?\n", (unsigned long long)syncspy_clock(), err);
        pthread_mutex_unlock(&g_mu);
        errno = err;
    }
    return rc;
}

static void log_rename(int rc, int olddirfd, const char *old, int newdirfd, const char *new) {
    if (!g_log || rc < 0) return;
    int err = errno;
    char a[PATH_MAX], b[PATH_MAX];
    at_path(olddirfd, old, a, sizeof a);
    at_path(newdirfd, new, b, sizeof b);
    pthread_mutex_lock(&g_mu);
    fprintf(g_log, "R %llu %s\t%s\n", (unsigned long long)syncspy_clock(), a, b);
    pthread_mutex_unlock(&g_mu);
    errno = err;
}

int rename(const char *old, const char *new) {
    RESOLVE(real_rename, "rename");
    int rc = real_rename(old, new);
    log_rename(rc, AT_FDCWD, old, AT_FDCWD, new);
    return rc;
}

int renameat(int olddirfd, const char *old, int newdirfd, const char *new) {
    RESOLVE(real_renameat, "renameat");
    int rc = real_renameat(olddirfd, old, newdirfd, new);
    log_rename(rc, olddirfd, old, newdirfd, new);
    return rc;
}

int renameat2(int olddirfd, const char *old, int newdirfd, const char *new, unsigned flags) {
    RESOLVE(real_renameat2, "renameat2");
    int rc = real_renameat2(olddirfd, old, newdirfd, new, flags);
    log_rename(rc, olddirfd, old, newdirfd, new);
    return rc;
}
