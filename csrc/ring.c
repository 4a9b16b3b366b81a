/* ring.c — the ring of segment files: a pool of prepared free files kept
 * ahead of the writer by a background thread, and the recycling of emptied
 * segments back into that pool.
 *
 * A free file `<id>.free` is allocated in full and mapped.  Rotation takes
 * the oldest one, renames it `<seq>.seg` and writes its header through the
 * mapping; the flusher then makes header, data and rename durable (fdatasync
 * of the file, fsync of the directory: dir_dirty) before any batch in it is
 * acknowledged, so rotation never waits on fallocate or a sync of its own.
 * Stale bytes of a recycled file never replay: every batch header names its
 * segment's seq, which the new life's header changes (csrc/format.h).
 *
 * A segment is recycled when no record in it is needed (live == 0), it is
 * the oldest in the log, not the active one, and durable — both its own
 * batches and the batch that released its last live record (freed_lsn): a
 * power cut before that batch is durable must find the segment still there.  Only the oldest
 * goes, so the log always stays a suffix of its history: a dead record's
 * effect concerns older records only, which are gone first. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "failpoint.h"
#include "log.h"

static int pool_push_locked(prl_log *log, prl_segment *seg) {
    if (log->pool_n == log->pool_cap) {
        uint32_t cap = log->pool_cap ? log->pool_cap * 2 : 8;
        prl_segment **p = realloc(log->pool, cap * sizeof *p);
        if (!p) return -ENOMEM;
        log->pool = p;
        log->pool_cap = cap;
    }
    log->pool[log->pool_n++] = seg;
    return 0;
}

prl_segment *prl_ring_take_locked(prl_log *log) {
    if (!log->pool_n) return NULL;
    prl_segment *seg = log->pool[0];
    memmove(log->pool, log->pool + 1, --log->pool_n * sizeof *log->pool);
    /* The preparer is woken once the file is in the table (rotate): until
     * then disk use does not count it, and the preparer would misjudge it. */
    return seg;
}

int prl_ring_activate(prl_log *log, prl_segment *seg, uint64_t seq, uint64_t lsn) {
    char from[24], to[24];
    int fp;
    prl_free_name(seg->seq, from);
    prl_segment_name(seq, to);
    if (FAIL_OR("segment::rename", renameat(log->dirfd, from, log->dirfd, to)) < 0)
        return -errno;
    prl_segment_write_header(seg, seq, lsn);
    pthread_mutex_lock(&log->mu);
    log->dir_dirty = 1; /* the flusher fsyncs the directory before publishing */
    if (seg->recycled) log->seg_reused++;
    pthread_mutex_unlock(&log->mu);
    return 0;
}

/* Adds an existing free file (found by recovery) to the pool, or deletes it
 * if the pool is full or its size is not the segment size. */
int prl_log_adopt_free(prl_log *log, uint64_t id) {
    char name[24];
    prl_free_name(id, name);
    prl_segment *seg = NULL;
    int rc = prl_segment_open_rw(log->dirfd, name, id, &seg);
    pthread_mutex_lock(&log->mu);
    if (id >= log->next_free_id) log->next_free_id = id + 1;
    if (!rc && seg->size == log->opt.segment_size && log->pool_n < log->opt.pool_max) {
        seg->recycled = 1;
        rc = pool_push_locked(log, seg);
        if (!rc) seg = NULL;
    }
    pthread_mutex_unlock(&log->mu);
    if (seg) prl_segment_close(seg);
    if (seg || rc) unlinkat(log->dirfd, name, 0);
    return 0;
}

/* A failed recycle step: counted (stats: recycle_errors, logged by the
 * engine) and retried by the preparer a second later.  mu held. */
static void recycle_failed_locked(prl_log *log, int err) {
    log->recycle_errors++;
    log->recycle_errno = err;
    log->recycle_retry = 1;
}

/* Renames (keep) or unlinks the file of emptied segment `s`, now out of the
 * table, and makes that durable.  0, or -errno with *gone = whether the
 * name changed anyway (then only the directory sync failed). */
static int retire_file(prl_log *log, prl_segment *s, uint64_t id, int keep, int *gone) {
    char from[24], to[24];
    int fp;
    prl_segment_name(s->seq, from);
    prl_free_name(id, to);
    *gone = 0;
    if (keep ? FAIL_OR("ring::rename", renameat(log->dirfd, from, log->dirfd, to))
             : FAIL_OR("ring::unlink", unlinkat(log->dirfd, from, 0)))
        return -errno;
    *gone = 1;
    /* Each retirement durable before the next, so a crash leaves at most a
     * dead oldest segment, never a gap. */
    if (log->opt.sync && FAIL_OR("ring::dir_fsync", fsync(log->dirfd)) < 0) return -errno;
    if (keep && !s->writable) return prl_segment_make_writable(log->dirfd, s, to);
    return 0;
}

/* Moves the oldest emptied segments to the pool (or deletes them).  Only
 * the front of the table is looked at: O(1) per recycled segment. */
static void recycle(prl_log *log) {
    pthread_mutex_lock(&log->mu);
    for (;;) {
        prl_segment *s = prl_table_oldest_locked(log);
        if (!s || s == log->active || s->live || s->dirty || s->pins) break;
        if (s->last_lsn > log->durable_lsn || s->freed_lsn > log->durable_lsn) {
            log->recycle_waiting = 1; /* the flusher wakes us when durable moves */
            break;
        }
        prl_table_remove_locked(log, s);
        uint64_t id = log->next_free_id++;
        int keep = log->pool_n < log->opt.pool_max && s->size == log->opt.segment_size;
        pthread_mutex_unlock(&log->mu);

        int gone;
        int rc = retire_file(log, s, id, keep, &gone);
        pthread_mutex_lock(&log->mu);
        if (rc) {
            recycle_failed_locked(log, -rc);
            /* still `<seq>.seg`: back at the front, tried again later */
            if (!gone && prl_table_insert_locked(log, s) == 0) break;
            /* renamed or unlinked, but not known durable: the flusher syncs
             * the directory before it acknowledges anything more */
            if (gone) log->dir_dirty = 1;
            if (!gone || !keep || !s->writable) {
                pthread_mutex_unlock(&log->mu);
                prl_segment_close(s); /* a `.free` file left is adopted at reopen */
                pthread_mutex_lock(&log->mu);
                if (gone && !keep) log->seg_deleted++;
                break;
            }
        }
        if (keep) {
            s->seq = id;
            s->recycled = 1;
            s->used = s->live = 0;
            if (pool_push_locked(log, s) == 0) {
                log->seg_recycled++;
                continue;
            }
        }
        pthread_mutex_unlock(&log->mu);
        prl_segment_close(s);
        pthread_mutex_lock(&log->mu);
        if (!keep) log->seg_deleted++;
    }
    pthread_mutex_unlock(&log->mu);
}

void *prl_preparer_main(void *arg) {
    prl_log *log = arg;
    pthread_mutex_lock(&log->mu);
    while (!log->stopping) {
        if (log->recycle_hint) {
            log->recycle_hint = 0;
            pthread_mutex_unlock(&log->mu);
            recycle(log);
            pthread_mutex_lock(&log->mu);
            continue;
        }
        if (log->pool_n < log->opt.prepare_ahead && !log->poison && !log->prep_error &&
            !(log->pool_n >= 1 && log->opt.prepare_disk_limit &&
              prl_table_disk_bytes_locked(log) + log->opt.segment_size > log->opt.prepare_disk_limit)) {
            uint64_t id = log->next_free_id++;
            pthread_mutex_unlock(&log->mu);
            prl_segment *seg;
            int rc = prl_segment_prepare(log->dirfd, id, log->opt.segment_size, log->opt.file_mode, &seg);
            pthread_mutex_lock(&log->mu);
            if (!rc && pool_push_locked(log, seg) == 0) {
                log->seg_created++;
            } else {
                if (!rc) {
                    pthread_mutex_unlock(&log->mu);
                    prl_segment_close(seg);
                    pthread_mutex_lock(&log->mu);
                }
                log->prep_error = rc ? -rc : ENOMEM;
            }
            continue;
        }
        if (log->prep_error || log->recycle_retry) {
            /* e.g. ENOSPC or EIO: try again in a second, or when woken */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&log->prep_cv, &log->mu, &ts);
            if (log->recycle_retry) log->recycle_hint = 1;
            log->prep_error = log->recycle_retry = 0;
            continue;
        }
        pthread_cond_wait(&log->prep_cv, &log->mu);
    }
    pthread_mutex_unlock(&log->mu);
    return NULL;
}

void prl_ring_close_locked(prl_log *log) {
    for (uint32_t i = 0; i < log->pool_n; i++) prl_segment_close(log->pool[i]);
    free(log->pool);
    log->pool = NULL;
    log->pool_n = log->pool_cap = 0;
}
