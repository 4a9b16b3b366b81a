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

prl_segment *prl_table_lookup_locked(prl_log *log, uint64_t seq) {
    if (seq < log->seg_base || seq - log->seg_base >= log->seg_slots) return NULL;
    return log->segs[seq - log->seg_base];
}

int prl_table_insert_locked(prl_log *log, prl_segment *seg) {
    uint64_t seq = seg->seq;
    if (prl_table_lookup_locked(log, seq)) return -EEXIST;
    if (log->seg_slots == 0) log->seg_base = seq;
    uint64_t lo = seq < log->seg_base ? seq : log->seg_base;
    uint64_t hi = seq >= log->seg_base + log->seg_slots ? seq + 1 : log->seg_base + log->seg_slots;
    if (hi - lo > (1u << 24)) return -E2BIG; /* a corrupt name must not allocate the world */
    if (lo != log->seg_base || hi - lo != log->seg_slots) {
        prl_segment **t = calloc(hi - lo, sizeof *t);
        if (!t) return -ENOMEM;
        if (log->seg_slots)
            memcpy(t + (log->seg_base - lo), log->segs, log->seg_slots * sizeof *t);
        free(log->segs);
        log->segs = t;
        log->seg_base = lo;
        log->seg_slots = hi - lo;
    }
    log->segs[seq - lo] = seg;
    return 0;
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
    int rc = !s ? -ENOENT : (s == log->active || s->syncing) ? -EBUSY : 0;
    if (!rc) log->segs[seq - log->seg_base] = NULL;
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

/* The record at `pos`, checked against the segment's written bytes; mu held. */
int prl_record_at_locked(prl_log *log, uint64_t pos, const uint8_t **rec, uint32_t *len,
                         prl_segment **segp) {
    if (log->closed) return PRL_E_CLOSED;
    prl_segment *s = prl_table_lookup_locked(log, pos >> 32);
    uint64_t off = pos & 0xffffffffu;
    if (!s || off < PRL_SEGMENT_HEADER_SIZE || off % PRL_ALIGN || off > s->used ||
        s->used - off < PRL_RECORD_HEADER_SIZE)
        return PRL_E_BAD_POSITION;
    struct prl_record_header r;
    memcpy(&r, s->base + off, sizeof r);
    if (prl_record_size(r.len) > s->used - off) return PRL_E_BAD_POSITION;
    *rec = s->base + off;
    *len = r.len;
    if (segp) *segp = s;
    return 0;
}

int prl_log_read_meta(prl_log *log, uint32_t n, const uint64_t *positions, uint32_t *lens,
                      uint8_t *auxs, uint64_t *total) {
    int rc = 0;
    uint64_t sum = 0;
    pthread_mutex_lock(&log->mu);
    for (uint32_t i = 0; i < n && !rc; i++) {
        const uint8_t *rec;
        rc = prl_record_at_locked(log, positions[i], &rec, &lens[i], NULL);
        if (!rc) {
            auxs[i] = rec[offsetof(struct prl_record_header, aux)];
            sum += lens[i];
        }
    }
    pthread_mutex_unlock(&log->mu);
    *total = sum;
    return rc;
}

int prl_log_read_data(prl_log *log, uint32_t n, const uint64_t *positions, uint8_t *out,
                      uint64_t cap) {
    int rc = 0;
    pthread_mutex_lock(&log->mu);
    for (uint32_t i = 0; i < n && !rc; i++) {
        const uint8_t *rec;
        uint32_t len;
        rc = prl_record_at_locked(log, positions[i], &rec, &len, NULL);
        if (!rc && len > cap) rc = PRL_E_BAD_ARGUMENT;
        if (!rc) {
            memcpy(out, rec + PRL_RECORD_HEADER_SIZE, len);
            out += len;
            cap -= len;
        }
    }
    pthread_mutex_unlock(&log->mu);
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
    for (uint64_t i = 0; i < log->seg_slots; i++)
        if (log->segs[i]) sum += log->segs[i]->size;
    for (uint32_t i = 0; i < log->pool_n; i++) sum += log->pool[i]->size;
    return sum;
}

uint64_t prl_log_disk_bytes(prl_log *log) {
    pthread_mutex_lock(&log->mu);
    uint64_t sum = prl_table_disk_bytes_locked(log);
    pthread_mutex_unlock(&log->mu);
    return sum;
}

int prl_log_oldest_live(prl_log *log, uint64_t *seq, uint64_t *live) {
    *seq = *live = 0;
    pthread_mutex_lock(&log->mu);
    for (uint64_t i = 0; i < log->seg_slots; i++) {
        prl_segment *s = log->segs[i];
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
    for (uint64_t i = 0; i < log->seg_slots; i++) {
        prl_segment *s = log->segs[i];
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
    memcpy(out->batches_per_sync, log->batches_per_sync, sizeof out->batches_per_sync);
    memcpy(out->durable_latency_us, log->durable_latency_us, sizeof out->durable_latency_us);
    pthread_mutex_unlock(&log->mu);
    return 0;
}
