/* failpoint.c — named failpoints (raft-engine style: named after the place
 * they break).  Checked only on slow paths (file creation, fdatasync); when no
 * failpoint is armed the check is one relaxed atomic load. */
#include "failpoint.h"

#include <pthread.h>
#include <string.h>

#define MAX_FAILPOINTS 16

static struct {
    char name[48];
    int err;
    int count; /* hits left; < 0: unlimited */
} points[MAX_FAILPOINTS];
static int armed; /* number of armed points; read without the lock as a hint */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

void prl_failpoint_set(const char *name, int32_t err, int32_t count) {
    pthread_mutex_lock(&mu);
    int slot = -1;
    for (int i = 0; i < MAX_FAILPOINTS; i++) {
        if (points[i].err && strcmp(points[i].name, name) == 0) slot = i;
    }
    if (slot < 0 && err) {
        for (int i = 0; i < MAX_FAILPOINTS && slot < 0; i++)
            if (!points[i].err) slot = i;
    }
    if (slot >= 0) {
        if (!points[slot].err && err) __atomic_add_fetch(&armed, 1, __ATOMIC_RELAXED);
        if (points[slot].err && !err) __atomic_sub_fetch(&armed, 1, __ATOMIC_RELAXED);
        strncpy(points[slot].name, name, sizeof points[slot].name - 1);
        points[slot].err = err;
        points[slot].count = count;
    }
    pthread_mutex_unlock(&mu);
}

int prl_failpoint(const char *name) {
    if (!__atomic_load_n(&armed, __ATOMIC_RELAXED)) return 0;
    int err = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAX_FAILPOINTS; i++) {
        if (points[i].err && strcmp(points[i].name, name) == 0) {
            err = points[i].err;
            if (points[i].count > 0 && --points[i].count == 0) {
                points[i].err = 0;
                __atomic_sub_fetch(&armed, 1, __ATOMIC_RELAXED);
            }
        }
    }
    pthread_mutex_unlock(&mu);
    return err;
}
