/* table.c — the segment table of a log and what can be read from it:
 * attaching recovered segments, positions checked and copied out of the
 * mappings, live-byte accounting per segment, statistics.  The writer,
 * rotation and lifecycle are in log.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format.h"
#include "log.h"

/* Slot k (0 = the oldest segment) of the circular array. */
static prl_segment **slot(prl_log *log, uint64_t k) {
    return &log->segs[(log->seg_head + k) & (log->seg_cap - 1)];
}

prl_segment *prl_table_lookup_locked(prl_log *log, uint64_t seq) {
    if (seq < log->seg_base || seq - log->seg_base >= log->seg_count) return NULL;
    return *slot(log, seq - log->seg_base);
}

/* A position carries its segment's seq modulo 2^32: the table never spans
 * 2^32 segments, so exactly one slot can match, at any seq below 2^64. */
prl_segment *prl_table_at_locked(prl_log *log, uint64_t pos) {
    uint64_t k = ((pos >> 32) - (log->seg_base & 0xffffffffu)) & 0xffffffffu;
    return k < log->seg_count ? *slot(log, k) : NULL;
}

prl_segment *prl_table_oldest_locked(prl_log *log) {
    return log->seg_count ? *slot(log, 0) : NULL;
}

prl_segment *prl_table_newest_locked(prl_log *log) {
    return log->seg_count ? *slot(log, log->seg_count - 1) : NULL;
}

/* Room for `cap` slots (a power of two >= seg_count), the oldest at 0. */
static int resize(prl_log *log, uint64_t cap) {
    prl_segment **t = calloc(cap, sizeof *t);
    if (!t) return -ENOMEM;
    for (uint64_t k = 0; k < log->seg_count; k++) t[k] = *slot(log, k);
    free(log->segs);
    log->segs = t;
    log->seg_cap = cap;
    log->seg_head = 0;
    return 0;
}

int prl_table_insert_locked(prl_log *log, prl_segment *seg) {
    uint64_t seq = seg->seq;
    if (seq == UINT64_MAX) return -E2BIG;
    if (prl_table_lookup_locked(log, seq)) return -EEXIST;
    if (!log->seg_count) log->seg_base = seq;
    uint64_t lo = log->seg_base, hi = log->seg_base + log->seg_count;
    if (seq < lo) lo = seq;
    if (seq >= hi) hi = seq + 1;
    /* Recovery attaches what the directory names: a corrupt name must not
     * allocate the world.  The writer only ever adds seg_base + seg_count. */
    if (hi - lo > PRL_TABLE_MAX_SPAN) return -E2BIG;
    uint64_t need = hi - lo, cap = log->seg_cap ? log->seg_cap : 8;
    while (cap < need) cap *= 2; /* doubling: rotation is amortised O(1) */
    if (cap != log->seg_cap) {
        int rc = resize(log, cap);
        if (rc) return rc;
    }
    if (lo < log->seg_base) { /* grow at the front (recovery attaching out of order) */
        uint64_t d = log->seg_base - lo;
        log->seg_head = (log->seg_head - d) & (log->seg_cap - 1);
        for (uint64_t k = 0; k < d; k++) *slot(log, k) = NULL;
        log->seg_base = lo;
        log->seg_count += d;
    }
    while (log->seg_count < need) *slot(log, log->seg_count++) = NULL;
    *slot(log, seq - log->seg_base) = seg;
    return 0;
}

void prl_table_remove_locked(prl_log *log, prl_segment *seg) {
    prl_segment **p = prl_table_lookup_locked(log, seg->seq) == seg
                          ? slot(log, seg->seq - log->seg_base) : NULL;
    if (!p) return;
    *p = NULL;
    /* no empty slot at either end: the front follows the oldest segment */
    while (log->seg_count && !*slot(log, 0)) {
        log->seg_head = (log->seg_head + 1) & (log->seg_cap - 1);
        log->seg_base++;
        log->seg_count--;
    }
    while (log->seg_count && !*slot(log, log->seg_count - 1)) log->seg_count--;
    if (log->seg_cap > 64 && log->seg_count < log->seg_cap / 8) resize(log, log->seg_cap / 2);
}

void prl_pin_locked(prl_log *log, prl_segment *seg) {
    seg->pins++;
    log->npins++;
}

void prl_unpin_locked(prl_log *log, prl_segment *seg) {
    seg->pins--;
    if (--log->npins == 0 && log->closed) pthread_cond_broadcast(&log->idle_cv);
}

void prl_mark_dirty_locked(prl_log *log, prl_segment *seg) {
    if (seg->dirty) return;
    seg->dirty = 1;
    seg->dirty_next = log->dirty;
    log->dirty = seg;
}

int prl_log_attach(prl_log *log, uint64_t seq) {
    prl_segment *seg;
    int rc = prl_segment_open(log->dirfd, seq, &seg);
    if (rc) return rc;
    pthread_mutex_lock(&log->mu);
    rc = log->closed ? PRL_E_CLOSED : prl_table_insert_locked(log, seg);
    pthread_mutex_unlock(&log->mu);
    if (rc) prl_segment_close(seg);
    return rc;
}

int prl_log_detach(prl_log *log, uint64_t seq) {
    pthread_mutex_lock(&log->mu);
    prl_segment *s = prl_table_lookup_locked(log, seq);
    int rc = !s ? -ENOENT : (s == log->active || s->pins) ? -EBUSY : 0;
    if (!rc) prl_table_remove_locked(log, s);
    pthread_mutex_unlock(&log->mu);
    if (!rc) prl_segment_close(s);
    return rc;
}

int prl_log_segment_base(prl_log *log, uint64_t seq, const uint8_t **base, uint64_t *size) {
    pthread_mutex_lock(&log->mu);
    prl_segment *s = prl_table_lookup_locked(log, seq);
    *base = s ? s->base : NULL;
    *size = s ? s->size : 0;
    pthread_mutex_unlock(&log->mu);
    return s ? 0 : -ENOENT;
}

int prl_log_segment_info(prl_log *log, uint64_t seq, prl_segment_info *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&log->mu);
    prl_segment *s = prl_table_lookup_locked(log, seq);
    if (s) {
        out->seq = s->seq;
        out->size = s->size;
        out->used = s->used;
        out->live = s->live;
        out->first_lsn = s->first_lsn;
        out->last_lsn = s->last_lsn;
        out->active = s == log->active;
    }
    pthread_mutex_unlock(&log->mu);
    return s ? 0 : -ENOENT;
}

int prl_record_in(prl_segment *s, uint64_t pos, const uint8_t **rec, uint32_t *len) {
    /* `used` only grows while the segment is pinned (the writer publishes it
     * with a release store after the bytes below it are written). */
    uint64_t used = __atomic_load_n(&s->used, __ATOMIC_ACQUIRE);
    uint64_t off = pos & 0xffffffffu;
    if (off < PRL_SEGMENT_HEADER_SIZE || off % PRL_ALIGN || off > used ||
        used - off < PRL_RECORD_HEADER_SIZE)
        return PRL_E_BAD_POSITION;
    struct prl_record_header r;
    memcpy(&r, s->base + off, sizeof r);
    if (prl_record_size(r.len) > used - off) return PRL_E_BAD_POSITION;
    *rec = s->base + off;
    *len = r.len;
    return 0;
}

int prl_record_at_locked(prl_log *log, uint64_t pos, const uint8_t **rec, uint32_t *len,
                         prl_segment **segp) {
    if (log->closed) return PRL_E_CLOSED;
    prl_segment *s = prl_table_at_locked(log, pos);
    if (!s) return PRL_E_BAD_POSITION;
    if (segp) *segp = s;
    return prl_record_in(s, pos, rec, len);
}

/* The record at `pos`, in a segment pinned for the caller: *cur is the
 * segment pinned so far (NULL at first), exchanged for another only when
 * `pos` names another segment, so a run of positions in one segment takes
 * mu once.  The copy out of the mapping then happens without mu: a page
 * fault there stalls neither the flusher nor the writers. */
static int pinned_record(prl_log *log, prl_segment **cur, uint64_t pos, const uint8_t **rec,
                         uint32_t *len) {
    if (!*cur || ((*cur)->seq & 0xffffffffu) != pos >> 32) {
        pthread_mutex_lock(&log->mu);
        if (*cur) prl_unpin_locked(log, *cur);
        *cur = log->closed ? NULL : prl_table_at_locked(log, pos);
        if (*cur) prl_pin_locked(log, *cur);
        int rc = log->closed ? PRL_E_CLOSED : *cur ? 0 : PRL_E_BAD_POSITION;
        pthread_mutex_unlock(&log->mu);
        if (rc) return rc;
    }
    return prl_record_in(*cur, pos, rec, len);
}

static void unpin(prl_log *log, prl_segment *cur) {
    if (!cur) return;
    pthread_mutex_lock(&log->mu);
    prl_unpin_locked(log, cur);
    pthread_mutex_unlock(&log->mu);
}

int prl_log_read_meta(prl_log *log, uint32_t n, const uint64_t *positions, uint32_t *lens,
                      uint8_t *auxs, uint64_t *total) {
    int rc = 0;
    uint64_t sum = 0;
    prl_segment *cur = NULL;
    for (uint32_t i = 0; i < n && !rc; i++) {
        const uint8_t *rec;
        rc = pinned_record(log, &cur, positions[i], &rec, &lens[i]);
        if (!rc) {
            auxs[i] = rec[offsetof(struct prl_record_header, aux)];
            sum += lens[i];
        }
    }
    unpin(log, cur);
    *total = sum;
    return rc;
}

int prl_log_read_data(prl_log *log, uint32_t n, const uint64_t *positions, uint8_t *out,
                      uint64_t cap) {
    int rc = 0;
    prl_segment *cur = NULL;
    for (uint32_t i = 0; i < n && !rc; i++) {
        const uint8_t *rec;
        uint32_t len;
        rc = pinned_record(log, &cur, positions[i], &rec, &len);
        if (!rc && len > cap) rc = PRL_E_BAD_ARGUMENT;
        if (!rc) {
            memcpy(out, rec + PRL_RECORD_HEADER_SIZE, len);
            out += len;
            cap -= len;
        }
    }
    unpin(log, cur);
    return rc;
}

static int account(prl_log *log, uint32_t n, const uint64_t *positions, int sign) {
    int rc = 0;
    pthread_mutex_lock(&log->mu);
    for (uint32_t i = 0; i < n && !rc; i++) {
        const uint8_t *rec;
        uint32_t len;
        prl_segment *s;
        rc = prl_record_at_locked(log, positions[i], &rec, &len, &s);
        if (rc) break;
        uint64_t size = prl_record_size(len);
        if (sign > 0) {
            s->live += size;
        } else {
            s->live = s->live > size ? s->live - size : 0;
            /* The release follows the write that superseded the record: that
             * batch is at most written_lsn, and must be durable before the
             * record's segment may go (a power cut would otherwise bring back
             * the state before the batch without the segment it needs). */
            s->freed_lsn = log->written_lsn;
            if (!s->live && s != log->active && !log->recycle_hint) {
                log->recycle_hint = 1;
                pthread_cond_signal(&log->prep_cv);
            }
        }
    }
    pthread_mutex_unlock(&log->mu);
    return rc;
}

int prl_log_release(prl_log *log, uint32_t n, const uint64_t *positions) {
    return account(log, n, positions, -1);
}

int prl_log_retain(prl_log *log, uint32_t n, const uint64_t *positions) {
    return account(log, n, positions, +1);
}

uint64_t prl_table_disk_bytes_locked(prl_log *log) {
    uint64_t sum = 0;
    for (uint64_t k = 0; k < log->seg_count; k++)
        if (*slot(log, k)) sum += (*slot(log, k))->size;
    for (uint32_t i = 0; i < log->pool_n; i++) sum += log->pool[i]->size;
    return sum;
}

uint64_t prl_log_disk_bytes(prl_log *log) {
    pthread_mutex_lock(&log->mu);
    uint64_t sum = prl_table_disk_bytes_locked(log);
    pthread_mutex_unlock(&log->mu);
    return sum;
}

int32_t prl_log_poison_errno(prl_log *log) {
    pthread_mutex_lock(&log->mu);
    int32_t e = log->poison;
    pthread_mutex_unlock(&log->mu);
    return e;
}

int prl_log_health(prl_log *log, uint64_t *disk_bytes, uint64_t *recycle_errors,
                   int32_t *recycle_errno) {
    pthread_mutex_lock(&log->mu);
    *disk_bytes = prl_table_disk_bytes_locked(log);
    *recycle_errors = log->recycle_errors;
    *recycle_errno = log->recycle_errno;
    pthread_mutex_unlock(&log->mu);
    return 0;
}

int prl_log_oldest_live(prl_log *log, uint64_t *seq, uint64_t *live) {
    *seq = *live = 0;
    pthread_mutex_lock(&log->mu);
    for (uint64_t k = 0; k < log->seg_count; k++) {
        prl_segment *s = *slot(log, k);
        if (s && s->live) {
            *seq = s->seq;
            *live = s->live;
            break;
        }
    }
    pthread_mutex_unlock(&log->mu);
    return 0;
}

int prl_log_stats(prl_log *log, prl_stats *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&log->mu);
    out->next_lsn = log->next_lsn;
    out->written_lsn = log->written_lsn;
    out->durable_lsn = log->durable_lsn;
    out->writes = log->writes;
    out->syncs = log->syncs;
    out->bytes_written = log->bytes_written;
    out->records_written = log->records_written;
    out->sync_ns = log->sync_ns;
    out->rotations = log->rotations;
    out->poison_errno = log->poison;
    out->closed = log->closed;
    out->active_seq = log->active ? log->active->seq : 0;
    for (uint64_t k = 0; k < log->seg_count; k++) {
        prl_segment *s = *slot(log, k);
        if (!s) continue;
        out->segments++;
        out->live_bytes += s->live;
    }
    out->disk_bytes = prl_table_disk_bytes_locked(log);
    out->free_segments = log->pool_n;
    out->segments_created = log->seg_created;
    out->segments_reused = log->seg_reused;
    out->segments_recycled = log->seg_recycled;
    out->segments_deleted = log->seg_deleted;
    out->prepare_stalls = log->prepare_stalls;
    out->recycle_errors = log->recycle_errors;
    out->recycle_errno = log->recycle_errno;
    out->table_slots = log->seg_cap;
    memcpy(out->batches_per_sync, log->batches_per_sync, sizeof out->batches_per_sync);
    memcpy(out->durable_latency_us, log->durable_latency_us, sizeof out->durable_latency_us);
    pthread_mutex_unlock(&log->mu);
    return 0;
}
