/* failpoint.c — named failpoints (raft-engine style: named after the place
 * they break).  Checked only on slow paths (file creation, fdatasync); when no
 * failpoint is armed the check is one relaxed atomic load. */
#include "failpoint.h"

#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "pyraftlog.h"

/* Every failpoint the C code checks, one name per line (keep it sorted; a
 * new prl_failpoint("...") call adds its line here).  prl_failpoint_set
 * rejects any other name, so a test cannot arm a place that does not exist;
 * tests/fault/test_faults.py checks this table against the calls in csrc/. */
static const char *const known[] = {
    "dir::fsync",
    "flusher::fdatasync",
    "log::pwrite",          /* a batch written to its segment */
    "log::start_sync",
    "ring::dir_fsync",
    "ring::rename",
    "ring::unlink",
    "segment::create",
    "segment::fallocate",
    "segment::header_sync",
    "segment::mmap",        /* every mapping of a segment, new or existing */
    "segment::open",        /* an existing segment or free file: recovery, reuse, resume */
    "segment::rename",
    "segment::zero_fill",   /* a free file written with zeros by the preparer */
};
#define N_KNOWN ((int)(sizeof known / sizeof known[0]))

static struct {
    int err;   /* 0: not armed */
    int count; /* hits left; < 0: unlimited */
} points[N_KNOWN];
static int armed; /* number of armed points; read without the lock as a hint */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static int lookup(const char *name) {
    for (int i = 0; i < N_KNOWN; i++)
        if (strcmp(known[i], name) == 0) return i;
    return -1;
}

const char *prl_failpoint_name(uint32_t i) {
    return i < (uint32_t)N_KNOWN ? known[i] : NULL;
}

int prl_failpoint_set(const char *name, int32_t err, int32_t count) {
    int i = name ? lookup(name) : -1;
    if (i < 0) return PRL_E_BAD_ARGUMENT;
    pthread_mutex_lock(&mu);
    if (!points[i].err && err) __atomic_add_fetch(&armed, 1, __ATOMIC_RELAXED);
    if (points[i].err && !err) __atomic_sub_fetch(&armed, 1, __ATOMIC_RELAXED);
    points[i].err = err;
    points[i].count = count;
    pthread_mutex_unlock(&mu);
    return 0;
}

int prl_failpoint(const char *name) {
    if (!__atomic_load_n(&armed, __ATOMIC_RELAXED)) return 0;
    int i = lookup(name), err = 0;
    if (i < 0) return 0;
    pthread_mutex_lock(&mu);
    if (points[i].err) {
        err = points[i].err;
        if (points[i].count > 0 && --points[i].count == 0) {
            points[i].err = 0;
            __atomic_sub_fetch(&armed, 1, __ATOMIC_RELAXED);
        }
    }
    pthread_mutex_unlock(&mu);
    return err;
}
