/* log.c — the log: segment table, the writer, reads and live-byte accounting.
 * The flusher and the waits live in flusher.c. */
#define _GNU_SOURCE
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"

static int cond_init_monotonic(pthread_cond_t *cv) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return -rc;
}

int prl_log_open(const char *dir, const prl_log_options *opt, prl_log **out) {
    long page = sysconf(_SC_PAGESIZE);
    if (opt->segment_size < PRL_MIN_SEGMENT_SIZE || opt->segment_size > PRL_MAX_SEGMENT_SIZE ||
        opt->segment_size % (uint64_t)page || opt->prepare_ahead < 1 ||
        opt->pool_max < opt->prepare_ahead)
        return PRL_E_BAD_ARGUMENT;
    prl_log *log = calloc(1, sizeof *log);
    if (!log) return -ENOMEM;
    log->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (log->dirfd < 0) {
        int e = errno;
        free(log);
        return -e;
    }
    log->opt = *opt;
    pthread_mutex_init(&log->write_mu, NULL);
    pthread_mutex_init(&log->mu, NULL);
    pthread_cond_init(&log->flush_cv, NULL);
    cond_init_monotonic(&log->durable_cv);
    pthread_cond_init(&log->idle_cv, NULL);
    cond_init_monotonic(&log->prep_cv);
    log->next_lsn = 1;
    *out = log;
    return 0;
}

static prl_segment *lookup_locked(prl_log *log, uint64_t seq) {
    if (seq < log->seg_base || seq - log->seg_base >= log->seg_slots) return NULL;
    return log->segs[seq - log->seg_base];
}

static int insert_locked(prl_log *log, prl_segment *seg) {
    uint64_t seq = seg->seq;
    if (lookup_locked(log, seq)) return -EEXIST;
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
    rc = log->closed ? PRL_E_CLOSED : insert_locked(log, seg);
    pthread_mutex_unlock(&log->mu);
    if (rc) prl_segment_close(seg);
    return rc;
}

int prl_log_detach(prl_log *log, uint64_t seq) {
    pthread_mutex_lock(&log->mu);
    prl_segment *s = lookup_locked(log, seq);
    int rc = !s ? -ENOENT : (s == log->active || s->syncing) ? -EBUSY : 0;
    if (!rc) log->segs[seq - log->seg_base] = NULL;
    pthread_mutex_unlock(&log->mu);
    if (!rc) prl_segment_close(s);
    return rc;
}

int prl_log_segment_base(prl_log *log, uint64_t seq, const uint8_t **base, uint64_t *size) {
    pthread_mutex_lock(&log->mu);
    prl_segment *s = lookup_locked(log, seq);
    *base = s ? s->base : NULL;
    *size = s ? s->size : 0;
    pthread_mutex_unlock(&log->mu);
    return s ? 0 : -ENOENT;
}

int prl_log_segment_info(prl_log *log, uint64_t seq, prl_segment_info *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&log->mu);
    prl_segment *s = lookup_locked(log, seq);
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

int prl_log_start(prl_log *log, uint64_t seq, uint64_t lsn, uint64_t resume_offset) {
    if (lsn == 0 || resume_offset % PRL_ALIGN) return PRL_E_BAD_ARGUMENT;
    prl_segment *seg = NULL;
    int rc = 0;
    /* After a kill the newest recovered segment may hold batches that are
     * only in the page cache; they are part of the log now, so they must be
     * durable before anything after them is acknowledged. */
    pthread_mutex_lock(&log->mu);
    prl_segment *newest = NULL;
    for (uint64_t i = log->seg_slots; i-- > 0 && !newest;) newest = log->segs[i];
    int nfd = newest ? newest->fd : -1;
    pthread_mutex_unlock(&log->mu);
    if (nfd >= 0 && log->opt.sync && fdatasync(nfd) < 0) return -errno;
    if (!resume_offset) {
        rc = prl_segment_create(log->dirfd, seq, log->opt.segment_size, lsn, &seg);
        if (rc) return rc;
    }
    pthread_mutex_lock(&log->mu);
    if (log->started || log->closed) {
        rc = -EALREADY;
    } else if (resume_offset) {
        seg = lookup_locked(log, seq);
        if (!seg || resume_offset < PRL_SEGMENT_HEADER_SIZE || resume_offset > seg->size)
            rc = PRL_E_BAD_ARGUMENT;
        else
        {
            char name[24];
            prl_segment_name(seq, name);
            rc = prl_segment_make_writable(log->dirfd, seg, name);
        }
        if (!rc) {
            seg->used = resume_offset;
            seg->last_lsn = lsn - 1;
        }
        seg = NULL; /* owned by the table either way */
    } else {
        rc = insert_locked(log, seg);
        if (!rc) seg = NULL;
    }
    if (!rc) {
        log->active = lookup_locked(log, seq);
        log->next_lsn = lsn;
        log->written_lsn = log->durable_lsn = lsn - 1;
        log->recycle_hint = 1; /* recovery may have left a dead prefix */
        rc = -pthread_create(&log->flusher, NULL, prl_flusher_main, log);
        if (!rc) log->started = 1;
        if (!rc) rc = -pthread_create(&log->preparer, NULL, prl_preparer_main, log);
        if (!rc) log->preparer_started = 1;
    }
    pthread_mutex_unlock(&log->mu);
    if (seg) prl_segment_close(seg);
    return rc;
}

/* Opens the next segment.  write_mu held.  The new segment is written only
 * once every batch of the old one is durable: a batch can then be missing
 * from a segment that has a successor only through media corruption, never
 * through a crash, and recovery can tell the two apart. */
static int rotate(prl_log *log, uint64_t need) {
    pthread_mutex_lock(&log->mu);
    int rc = prl_wait_locked(log, log->active->last_lsn, -1);
    uint64_t seq = log->active->seq + 1, lsn = log->next_lsn, size = log->opt.segment_size;
    prl_segment *seg = NULL;
    if (need > size - PRL_SEGMENT_HEADER_SIZE) {
        /* an oversize batch: a segment of its own, never recycled into the pool */
        long page = sysconf(_SC_PAGESIZE);
        size = (need + PRL_SEGMENT_HEADER_SIZE + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
    } else if (!rc) {
        seg = prl_ring_take_locked(log);
        if (!seg) log->prepare_stalls++;
    }
    pthread_mutex_unlock(&log->mu);
    if (rc) return rc;
    if (seg) {
        rc = prl_ring_activate(log, seg, seq, lsn);
        if (rc) {
            /* the free file stays behind; recovery adopts or deletes it */
            prl_segment_close(seg);
            return rc;
        }
    } else {
        rc = prl_segment_create(log->dirfd, seq, size, lsn, &seg);
        if (rc) return rc;
    }
    pthread_mutex_lock(&log->mu);
    rc = insert_locked(log, seg);
    if (!rc) {
        log->active = seg;
        log->rotations++;
        log->recycle_hint = 1;
        pthread_cond_signal(&log->prep_cv);
    }
    pthread_mutex_unlock(&log->mu);
    if (rc) prl_segment_close(seg);
    return rc;
}

int prl_log_write(prl_log *log, uint32_t n, const uint8_t *types, const uint8_t *auxs,
                  const uint64_t *groups, const uint64_t *indexes, const uint64_t *terms,
                  const uint32_t *lens, const uint8_t *payload, uint64_t payload_len,
                  uint32_t flags, uint64_t *lsn_out, uint64_t *positions) {
    uint64_t total = PRL_BATCH_HEADER_SIZE, sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (types[i] < 1 || types[i] > PRL_REC_MAX) return PRL_E_BAD_ARGUMENT;
        total += prl_record_size(lens[i]);
        sum += lens[i];
    }
    if (sum != payload_len) return PRL_E_BAD_ARGUMENT;
    if (total > UINT32_MAX ||
        total > (flags & PRL_WRITE_OVERSIZE ? PRL_MAX_SEGMENT_SIZE - PRL_SEGMENT_HEADER_SIZE
                                            : log->opt.segment_size - PRL_SEGMENT_HEADER_SIZE))
        return PRL_E_TOO_LARGE;

    pthread_mutex_lock(&log->write_mu);
    if (log->active && log->active->used + total > log->active->size) {
        int rc = rotate(log, total);
        if (rc) {
            pthread_mutex_unlock(&log->write_mu);
            return rc;
        }
    }
    pthread_mutex_lock(&log->mu);
    int rc = log->poison ? -log->poison : (log->closed || !log->started) ? PRL_E_CLOSED : 0;
    uint64_t lag = log->next_lsn - log->durable_lsn;
    pthread_mutex_unlock(&log->mu);
    if (rc) {
        pthread_mutex_unlock(&log->write_mu);
        return rc;
    }

    /* Only this thread changes active, used and next_lsn (write_mu). */
    prl_segment *seg = log->active;
    uint64_t lsn = log->next_lsn, start = seg->used;
    uint8_t *dst = seg->base + start;
    uint64_t p = PRL_BATCH_HEADER_SIZE;
    const uint8_t *src = payload;
    for (uint32_t i = 0; i < n; i++) {
        struct prl_record_header r = {types[i], auxs[i], 0, lens[i], groups[i], indexes[i], terms[i]};
        memcpy(dst + p, &r, sizeof r);
        memcpy(dst + p + sizeof r, src, lens[i]);
        memset(dst + p + sizeof r + lens[i], 0, prl_pad8(lens[i]) - lens[i]);
        positions[i] = seg->seq << 32 | (start + p);
        src += lens[i];
        p += prl_record_size(lens[i]);
    }
    struct prl_batch_header h = {0, (uint32_t)total, lsn, seg->seq, n,
                                 lag > UINT32_MAX ? UINT32_MAX : (uint32_t)lag};
    memcpy(dst, &h, sizeof h);
    h.crc = prl_crc32c(prl_batch_seed(seg->seq), dst + 4, total - 4);
    memcpy(dst, &h.crc, sizeof h.crc);

    /* Publish: the flusher may now sync this batch. */
    pthread_mutex_lock(&log->mu);
    seg->used = start + total;
    seg->live += total - PRL_BATCH_HEADER_SIZE;
    seg->last_lsn = lsn;
    seg->dirty = 1;
    log->written_lsn = lsn;
    log->next_lsn = lsn + 1;
    log->writes++;
    log->records_written += n;
    log->bytes_written += total;
    log->write_ns[lsn % PRL_LAT_RING] = prl_now_ns();
    pthread_cond_signal(&log->flush_cv);
    pthread_mutex_unlock(&log->mu);
    pthread_mutex_unlock(&log->write_mu);
    *lsn_out = lsn;
    return 0;
}

/* The record at `pos`, checked against the segment's written bytes; mu held. */
static int record_locked(prl_log *log, uint64_t pos, const uint8_t **rec, uint32_t *len,
                         prl_segment **segp) {
    if (log->closed) return PRL_E_CLOSED;
    prl_segment *s = lookup_locked(log, pos >> 32);
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
        rc = record_locked(log, positions[i], &rec, &lens[i], NULL);
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
        rc = record_locked(log, positions[i], &rec, &len, NULL);
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
        rc = record_locked(log, positions[i], &rec, &len, &s);
        if (rc) break;
        uint64_t size = prl_record_size(len);
        if (sign > 0) {
            s->live += size;
        } else {
            s->live = s->live > size ? s->live - size : 0;
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

uint64_t prl_log_disk_bytes(prl_log *log) {
    uint64_t sum = 0;
    pthread_mutex_lock(&log->mu);
    for (uint64_t i = 0; i < log->seg_slots; i++)
        if (log->segs[i]) sum += log->segs[i]->size;
    for (uint32_t i = 0; i < log->pool_n; i++) sum += log->pool[i]->size;
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
        out->disk_bytes += s->size;
        out->live_bytes += s->live;
    }
    for (uint32_t i = 0; i < log->pool_n; i++) out->disk_bytes += log->pool[i]->size;
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

int prl_log_close(prl_log *log) {
    pthread_mutex_lock(&log->write_mu); /* no batch is half-copied */
    pthread_mutex_lock(&log->mu);
    if (log->closed) {
        pthread_mutex_unlock(&log->mu);
        pthread_mutex_unlock(&log->write_mu);
        return 0;
    }
    log->stopping = 1;
    pthread_cond_signal(&log->flush_cv);
    pthread_cond_signal(&log->prep_cv);
    pthread_mutex_unlock(&log->mu);
    if (log->started) pthread_join(log->flusher, NULL); /* it syncs what was written first */
    if (log->preparer_started) pthread_join(log->preparer, NULL);

    pthread_mutex_lock(&log->mu);
    log->closed = 1;
    pthread_cond_broadcast(&log->durable_cv);
    while (log->nwaiters > 0) pthread_cond_wait(&log->idle_cv, &log->mu);
    for (uint64_t i = 0; i < log->seg_slots; i++) prl_segment_close(log->segs[i]);
    free(log->segs);
    prl_ring_close_locked(log);
    log->segs = NULL;
    log->seg_slots = 0;
    log->active = NULL;
    int rc = log->poison ? -log->poison : 0;
    pthread_mutex_unlock(&log->mu);
    pthread_mutex_unlock(&log->write_mu);
    return rc;
}

void prl_log_free(prl_log *log) {
    if (!log) return;
    prl_log_close(log);
    close(log->dirfd);
    pthread_mutex_destroy(&log->write_mu);
    pthread_mutex_destroy(&log->mu);
    pthread_cond_destroy(&log->flush_cv);
    pthread_cond_destroy(&log->durable_cv);
    pthread_cond_destroy(&log->idle_cv);
    pthread_cond_destroy(&log->prep_cv);
    free(log);
}

uint32_t prl_batch_seed_of(uint64_t seq) { return prl_batch_seed(seq); }

void prl_format_constants(uint32_t *out) {
    out[0] = PRL_SEGMENT_HEADER_SIZE;
    out[1] = PRL_BATCH_HEADER_SIZE;
    out[2] = PRL_RECORD_HEADER_SIZE;
    out[3] = PRL_ALIGN;
    out[4] = PRL_FORMAT_VERSION;
    out[5] = PRL_REC_MAX;
}
