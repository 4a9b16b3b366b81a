/* flusher.c — the background thread that makes written batches durable (group
 * commit) and the waits that learn about it.
 *
 * One fdatasync covers every batch published before it started, so under load
 * each sync covers many batches (Pebble's LogWriter, etcd's WAL do the same).
 * Waiters sleep on a condition variable: no polling anywhere. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "failpoint.h"
#include "log.h"

uint64_t prl_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int log2_bucket(uint64_t v, int nbuckets) {
    int b = 0;
    while (v > 1 && b < nbuckets - 1) { v >>= 1; b++; }
    return b;
}

/* Takes the dirty list: O(dirty segments), no allocation.  The flusher
 * syncs them without holding mu; a pin keeps each mapped and open
 * meanwhile, and sync_next links them (a writer may put a segment on the
 * dirty list again while it is being synced). */
static prl_segment *take_dirty_locked(prl_log *log) {
    prl_segment *list = NULL;
    for (prl_segment *s = log->dirty; s; s = s->dirty_next) {
        s->dirty = 0;
        prl_pin_locked(log, s);
        s->sync_next = list;
        list = s;
    }
    log->dirty = NULL;
    return list;
}

static void record_sync_locked(prl_log *log, uint64_t target, uint64_t t0, uint64_t t1) {
    uint64_t covered = target - log->durable_lsn;
    log->sync_targets[log->syncs % PRL_SYNC_RING] = target;
    log->syncs++;
    log->sync_ns += t1 - t0;
    log->batches_per_sync[log2_bucket(covered, 16)]++;
    uint64_t lo = covered > PRL_LAT_RING ? target - PRL_LAT_RING + 1 : log->durable_lsn + 1;
    for (uint64_t l = lo; l <= target; l++) {
        uint64_t w = log->write_ns[l % PRL_LAT_RING];
        uint64_t us = t1 > w ? (t1 - w) / 1000 : 0;
        log->durable_latency_us[log2_bucket(us, 24)]++;
    }
}

void *prl_flusher_main(void *arg) {
    prl_log *log = arg;
    pthread_mutex_lock(&log->mu);
    for (;;) {
        while (!log->stopping && (log->written_lsn == log->durable_lsn || log->poison))
            pthread_cond_wait(&log->flush_cv, &log->mu);
        /* On close, everything already written is made durable before exit. */
        if (log->written_lsn == log->durable_lsn || log->poison) break;

        uint64_t target = log->written_lsn;
        prl_segment *list = take_dirty_locked(log);
        int err = 0;
        int dir = log->dir_dirty; /* a segment was renamed into the log */
        log->dir_dirty = 0;
        pthread_mutex_unlock(&log->mu);

        uint64_t t0 = prl_now_ns();
        for (prl_segment *s = list; s && !err && log->opt.sync; s = s->sync_next) {
            err = prl_failpoint("flusher::fdatasync");
            if (!err && fdatasync(s->fd) < 0) err = errno;
        }
        if (dir && !err && log->opt.sync) {
            err = prl_failpoint("dir::fsync");
            if (!err && fsync(log->dirfd) < 0) err = errno;
        }
        uint64_t t1 = prl_now_ns();

        pthread_mutex_lock(&log->mu);
        for (prl_segment *s = list; s; s = s->sync_next) prl_unpin_locked(log, s);
        if (err) {
            /* A failed fdatasync poisons the log: the kernel may have dropped
             * the dirty pages (fsyncgate), so a retry proving "durable" would
             * be a lie.  Every pending and later ticket fails with err. */
            log->poison = err;
        } else {
            record_sync_locked(log, target, t0, t1);
            log->durable_lsn = target;
            if (log->recycle_waiting) {
                log->recycle_waiting = 0;
                log->recycle_hint = 1;
                pthread_cond_signal(&log->prep_cv);
            }
        }
        pthread_cond_broadcast(&log->durable_cv);
        if (!err && log->opt.min_sync_interval_ns && !log->stopping) {
            pthread_mutex_unlock(&log->mu);
            struct timespec ts = {(time_t)(log->opt.min_sync_interval_ns / 1000000000u),
                                  (long)(log->opt.min_sync_interval_ns % 1000000000u)};
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&log->mu);
        }
    }
    pthread_mutex_unlock(&log->mu);
    return NULL;
}

/* The CLOCK_MONOTONIC time timeout_ns from now (durable_cv uses that clock). */
static struct timespec deadline_in(int64_t timeout_ns) {
    struct timespec ts = {0, 0};
    if (timeout_ns >= 0) {
        uint64_t d = prl_now_ns() + (uint64_t)timeout_ns;
        ts.tv_sec = (time_t)(d / 1000000000u);
        ts.tv_nsec = (long)(d % 1000000000u);
    }
    return ts;
}

int prl_wait_locked(prl_log *log, uint64_t lsn, int64_t timeout_ns) {
    struct timespec deadline = deadline_in(timeout_ns);
    int rc = 0;
    log->nwaiters++;
    while (log->durable_lsn < lsn) {
        if (log->poison) { rc = PRL_E_POISONED; break; }
        if (log->closed) { rc = PRL_E_CLOSED; break; }
        if (timeout_ns < 0) {
            pthread_cond_wait(&log->durable_cv, &log->mu);
        } else if (pthread_cond_timedwait(&log->durable_cv, &log->mu, &deadline) == ETIMEDOUT &&
                   log->durable_lsn < lsn) {
            rc = log->poison ? PRL_E_POISONED : PRL_E_TIMEOUT;
            break;
        }
    }
    if (--log->nwaiters == 0) pthread_cond_broadcast(&log->idle_cv);
    return rc;
}

int prl_log_wait(prl_log *log, uint64_t lsn, int64_t timeout_ns) {
    pthread_mutex_lock(&log->mu);
    int rc = prl_wait_locked(log, lsn, timeout_ns);
    pthread_mutex_unlock(&log->mu);
    return rc;
}

int prl_log_wait_change(prl_log *log, uint64_t known, uint64_t known_kicks, int64_t timeout_ns,
                        uint64_t *durable, uint64_t *kicks) {
    struct timespec deadline = deadline_in(timeout_ns);
    int rc = 0;
    pthread_mutex_lock(&log->mu);
    log->nwaiters++;
    while (log->durable_lsn <= known && log->kicks == known_kicks) {
        if (log->poison) { rc = PRL_E_POISONED; break; }
        if (log->closed) { rc = PRL_E_CLOSED; break; }
        if (timeout_ns < 0) {
            pthread_cond_wait(&log->durable_cv, &log->mu);
        } else if (pthread_cond_timedwait(&log->durable_cv, &log->mu, &deadline) == ETIMEDOUT) {
            rc = PRL_E_TIMEOUT;
            break;
        }
    }
    *durable = log->durable_lsn;
    *kicks = log->kicks;
    if (--log->nwaiters == 0) pthread_cond_broadcast(&log->idle_cv);
    pthread_mutex_unlock(&log->mu);
    return rc;
}

void prl_log_kick(prl_log *log) {
    pthread_mutex_lock(&log->mu);
    log->kicks++;
    pthread_cond_broadcast(&log->durable_cv);
    pthread_mutex_unlock(&log->mu);
}

int prl_log_sync_history(prl_log *log, uint64_t *out, uint32_t n, uint64_t *count) {
    pthread_mutex_lock(&log->mu);
    uint64_t syncs = log->syncs;
    uint32_t have = syncs < PRL_SYNC_RING ? (uint32_t)syncs : PRL_SYNC_RING;
    if (n > have) n = have;
    for (uint32_t i = 0; i < n; i++) out[i] = log->sync_targets[(syncs - n + i) % PRL_SYNC_RING];
    *count = n;
    pthread_mutex_unlock(&log->mu);
    return 0;
}
