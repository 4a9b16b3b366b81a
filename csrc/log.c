/* log.c — the log: its lifecycle, the writer and rotation.  The segment table,
 * reads and live-byte accounting are in table.c; the flusher and the waits in
 * flusher.c; prepared and recycled segments in ring.c. */
#define _GNU_SOURCE
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"
#include "failpoint.h"
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

int prl_log_start(prl_log *log, uint64_t seq, uint64_t lsn, uint64_t resume_offset) {
    if (lsn == 0 || resume_offset % PRL_ALIGN) return PRL_E_BAD_ARGUMENT;
    prl_segment *seg = NULL;
    int rc = 0, fp;
    /* After a kill the newest recovered segment may hold batches that are
     * only in the page cache; they are part of the log now, so they must be
     * durable before anything after them is acknowledged. */
    pthread_mutex_lock(&log->mu);
    prl_segment *newest = prl_table_newest_locked(log);
    int nfd = newest ? newest->fd : -1;
    pthread_mutex_unlock(&log->mu);
    if (nfd >= 0 && log->opt.sync && FAIL_OR("log::start_sync", fdatasync(nfd)) < 0)
        return -errno;
    if (!resume_offset) {
        rc = prl_segment_create(log->dirfd, seq, log->opt.segment_size, lsn, log->opt.file_mode, &seg);
        if (rc) return rc;
    }
    pthread_mutex_lock(&log->mu);
    if (log->started || log->closed) {
        rc = -EALREADY;
    } else if (resume_offset) {
        seg = prl_table_lookup_locked(log, seq);
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
            prl_mark_end(seg, resume_offset);
        }
        seg = NULL; /* owned by the table either way */
    } else {
        rc = prl_table_insert_locked(log, seg);
        if (!rc) seg = NULL;
    }
    if (!rc) {
        log->active = prl_table_lookup_locked(log, seq);
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

/* Zeroes the batch header slot at `end`: the log's end is explicit.  The
 * bytes there may be a recycled file's previous life or the records of a torn
 * write that recovery cut, and a record's index or term can equal this
 * segment's seq where a batch header keeps it; a zero header never can. */
void prl_mark_end(prl_segment *seg, uint64_t end) {
    if (end <= seg->size && seg->size - end >= PRL_BATCH_HEADER_SIZE)
        memset(seg->base + end, 0, PRL_BATCH_HEADER_SIZE);
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
            pthread_mutex_lock(&log->mu);
            pthread_cond_signal(&log->prep_cv); /* prepare another */
            pthread_mutex_unlock(&log->mu);
            return rc;
        }
    } else {
        rc = prl_segment_create(log->dirfd, seq, size, lsn, log->opt.file_mode, &seg);
        if (rc) return rc;
    }
    pthread_mutex_lock(&log->mu);
    rc = prl_table_insert_locked(log, seg);
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

/* Resolves the copy sources of a write: src[i] = the record that record i
 * copies, or NULL where the arrays give record i; every source segment is
 * pinned (pinned[0..*npinned)), so the copy needs no mu.  mu held. */
static int copy_sources_locked(prl_log *log, uint32_t n, const uint64_t *copies,
                               const uint8_t **src, uint32_t *src_len, prl_segment **pinned,
                               uint32_t *npinned) {
    for (uint32_t i = 0; i < n; i++) {
        src[i] = NULL;
        if (!copies[i]) continue;
        prl_segment *s;
        int rc = prl_record_at_locked(log, copies[i], &src[i], &src_len[i], &s);
        if (!rc && (src[i][0] < 1 || src[i][0] > PRL_REC_MAX)) rc = PRL_E_BAD_POSITION;
        if (rc) return rc;
        uint32_t k = 0;
        while (k < *npinned && pinned[k] != s) k++;
        if (k == *npinned) {
            prl_pin_locked(log, s);
            pinned[(*npinned)++] = s;
        }
    }
    return 0;
}

int prl_log_reserve(prl_log *log, uint64_t total, uint32_t flags, prl_reservation *r) {
    pthread_mutex_lock(&log->write_mu);
    uint64_t room = flags & PRL_WRITE_ROOMY ? 2 * total : total;
    int rc = 0;
    if (log->active && log->active->used + room > log->active->size) rc = rotate(log, total);
    if (!rc) {
        pthread_mutex_lock(&log->mu);
        rc = log->poison ? PRL_E_POISONED : (log->closed || !log->started) ? PRL_E_CLOSED : 0;
        r->lag = log->next_lsn - log->durable_lsn;
        pthread_mutex_unlock(&log->mu);
    }
    if (rc) {
        pthread_mutex_unlock(&log->write_mu);
        return rc;
    }
    /* Only this thread changes active, used and next_lsn (write_mu), and the
     * bytes from `used` on are read by nobody until published: filling them
     * needs no mu. */
    /* the batch and the zero header slot after it (prl_mark_end) */
    if (log->stage_cap < total + PRL_BATCH_HEADER_SIZE) {
        uint8_t *p = realloc(log->stage, total + PRL_BATCH_HEADER_SIZE);
        if (!p) {
            pthread_mutex_unlock(&log->write_mu);
            return -ENOMEM;
        }
        log->stage = p;
        log->stage_cap = total + PRL_BATCH_HEADER_SIZE;
    }
    r->seg = log->active;
    r->lsn = log->next_lsn;
    r->start = r->seg->used;
    r->total = total;
    r->dst = log->stage;
    return 0;
}

/* Writes n bytes at off of segment seg: 0 or an errno. */
static int write_at(prl_segment *seg, const uint8_t *p, uint64_t n, uint64_t off) {
    int err = prl_failpoint("log::pwrite");
    while (!err && n) {
        ssize_t k = pwrite(seg->fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) err = k < 0 ? errno : EIO;
        else p += k, n -= (uint64_t)k, off += (uint64_t)k;
    }
    return err;
}

int prl_log_publish(prl_log *log, prl_reservation *r, uint32_t nrecords) {
    prl_segment *seg = r->seg;
    uint8_t *dst = r->dst;
    struct prl_batch_header h = {0, (uint32_t)r->total, r->lsn, seg->seq, nrecords,
                                 r->lag > UINT32_MAX ? UINT32_MAX : (uint32_t)r->lag};
    memcpy(dst, &h, sizeof h);
    h.crc = prl_crc32c(prl_batch_seed(seg->seq), dst + 4, r->total - 4);
    memcpy(dst, &h.crc, sizeof h.crc);
    /* the header slot after the batch is zeroed in the same write (see
     * prl_mark_end), where the segment has room for one */
    uint64_t end = r->start + r->total, n = r->total;
    if (end <= seg->size && seg->size - end >= PRL_BATCH_HEADER_SIZE) {
        memset(dst + n, 0, PRL_BATCH_HEADER_SIZE);
        n += PRL_BATCH_HEADER_SIZE;
    }
    int err = write_at(seg, dst, n, r->start);

    pthread_mutex_lock(&log->mu);
    if (err) {
        /* Nothing is published; the file may hold part of the batch, which
         * no reader sees and recovery treats as a torn tail.  Like a failed
         * fdatasync, a failed write poisons the log (EIO: the page cache
         * may be in an unknown state). */
        if (!log->poison) log->poison = err;
        pthread_cond_broadcast(&log->durable_cv);
        pthread_mutex_unlock(&log->mu);
        pthread_mutex_unlock(&log->write_mu);
        return PRL_E_POISONED;
    }
    /* Publish: the flusher may now sync this batch, readers may see it. */
    __atomic_store_n(&seg->used, r->start + r->total, __ATOMIC_RELEASE);
    seg->live += r->total - PRL_BATCH_HEADER_SIZE;
    seg->last_lsn = r->lsn;
    prl_mark_dirty_locked(log, seg);
    log->written_lsn = r->lsn;
    log->next_lsn = r->lsn + 1;
    log->writes++;
    log->records_written += nrecords;
    log->bytes_written += r->total;
    log->write_ns[r->lsn % PRL_LAT_RING] = prl_now_ns();
    pthread_cond_signal(&log->flush_cv);
    pthread_mutex_unlock(&log->mu);
    pthread_mutex_unlock(&log->write_mu);
    return 0;
}

/* Copies a batch given as arrays into a reservation.  Record i is a copy of
 * src[i] (pinned by the caller) where src[i] is set. */
static void fill_records(prl_reservation *r, uint32_t n, const uint8_t *types, const uint8_t *auxs,
                         const uint64_t *groups, const uint64_t *indexes, const uint64_t *terms,
                         const uint32_t *lens, const uint8_t **src, const uint32_t *src_len,
                         const uint8_t *payload, uint64_t *positions) {
    uint8_t *dst = r->dst;
    uint64_t p = PRL_BATCH_HEADER_SIZE;
    const uint8_t *data = payload;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len;
        if (src && src[i]) {
            len = src_len[i];
            memcpy(dst + p, src[i], prl_record_size(len)); /* header, payload and padding */
            if (types[i]) dst[p] = types[i];               /* retyped (a staged entry) */
        } else {
            struct prl_record_header h = {types[i], auxs[i], 0, lens[i], groups[i], indexes[i], terms[i]};
            len = lens[i];
            memcpy(dst + p, &h, sizeof h);
            memcpy(dst + p + sizeof h, data, len);
            memset(dst + p + sizeof h + len, 0, prl_pad8(len) - len);
            data += len;
        }
        positions[i] = r->seg->seq << 32 | (r->start + p); /* seq modulo 2^32 */
        p += prl_record_size(len);
    }
}

int prl_log_write(prl_log *log, uint32_t n, const uint8_t *types, const uint8_t *auxs,
                  const uint64_t *groups, const uint64_t *indexes, const uint64_t *terms,
                  const uint32_t *lens, const uint64_t *copies, const uint8_t *payload,
                  uint64_t payload_len, uint32_t flags, uint64_t *lsn_out,
                  uint64_t *positions) {
    uint64_t total = PRL_BATCH_HEADER_SIZE, sum = 0;
    int rc = 0;
    /* copies: their sources, resolved and pinned once (purge writes only) */
    const uint8_t **src = NULL;
    uint32_t *src_len = NULL, npinned = 0;
    prl_segment **pinned = NULL;
    if (copies) {
        src = calloc(n ? n : 1, sizeof *src);
        src_len = calloc(n ? n : 1, sizeof *src_len);
        pinned = calloc(n ? n : 1, sizeof *pinned);
        if (!src || !src_len || !pinned) rc = -ENOMEM;
        pthread_mutex_lock(&log->mu);
        if (!rc) rc = copy_sources_locked(log, n, copies, src, src_len, pinned, &npinned);
        pthread_mutex_unlock(&log->mu);
    }
    for (uint32_t i = 0; i < n && !rc; i++) {
        if (types[i] > PRL_REC_MAX) rc = PRL_E_BAD_ARGUMENT;
        if (rc || (src && src[i])) {
            total += src && src[i] ? prl_record_size(src_len[i]) : 0;
            continue;
        }
        if (types[i] < 1) rc = PRL_E_BAD_ARGUMENT;
        total += prl_record_size(lens[i]);
        sum += lens[i];
    }
    if (!rc && sum != payload_len) rc = PRL_E_BAD_ARGUMENT;
    if (!rc && (total > UINT32_MAX ||
                total > (flags & PRL_WRITE_OVERSIZE
                             ? PRL_MAX_SEGMENT_SIZE - PRL_SEGMENT_HEADER_SIZE
                             : log->opt.segment_size - PRL_SEGMENT_HEADER_SIZE)))
        rc = PRL_E_TOO_LARGE;
    prl_reservation r;
    if (!rc) rc = prl_log_reserve(log, total, flags, &r);
    if (!rc) {
        fill_records(&r, n, types, auxs, groups, indexes, terms, lens, src, src_len, payload,
                     positions);
        rc = prl_log_publish(log, &r, n);
        if (!rc) *lsn_out = r.lsn;
    }
    if (npinned) {
        pthread_mutex_lock(&log->mu);
        for (uint32_t k = 0; k < npinned; k++) prl_unpin_locked(log, pinned[k]);
        pthread_mutex_unlock(&log->mu);
    }
    free(src);
    free(src_len);
    free(pinned);
    return rc;
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
    /* waiters leave, and reads copying out of a pinned segment finish */
    while (log->nwaiters > 0 || log->npins > 0) pthread_cond_wait(&log->idle_cv, &log->mu);
    for (prl_segment *s; (s = prl_table_oldest_locked(log)) != NULL;) {
        prl_table_remove_locked(log, s);
        prl_segment_close(s);
    }
    free(log->segs);
    prl_ring_close_locked(log);
    log->segs = NULL;
    log->seg_count = log->seg_cap = log->seg_head = 0;
    log->active = NULL;
    log->dirty = NULL;
    int rc = log->poison ? PRL_E_POISONED : 0;
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
    free(log->stage);
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
