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

/* The record copied into record slot i, or NULL if record i is given by the
 * arrays; mu held.  Sets *len to its payload length. */
static int copy_source_locked(prl_log *log, const uint64_t *copies, uint32_t i,
                             const uint8_t **rec, uint32_t *len) {
    *rec = NULL;
    if (!copies || !copies[i]) return 0;
    int rc = prl_record_at_locked(log, copies[i], rec, len, NULL);
    if (!rc && ((*rec)[0] < 1 || (*rec)[0] > PRL_REC_MAX)) rc = PRL_E_BAD_POSITION;
    return rc;
}

int prl_log_write(prl_log *log, uint32_t n, const uint8_t *types, const uint8_t *auxs,
                  const uint64_t *groups, const uint64_t *indexes, const uint64_t *terms,
                  const uint32_t *lens, const uint64_t *copies, const uint8_t *payload,
                  uint64_t payload_len, uint32_t flags, uint64_t *lsn_out,
                  uint64_t *positions) {
    uint64_t total = PRL_BATCH_HEADER_SIZE, sum = 0;
    int rc = 0;
    if (copies) pthread_mutex_lock(&log->mu);
    for (uint32_t i = 0; i < n && !rc; i++) {
        const uint8_t *rec;
        uint32_t len;
        rc = copy_source_locked(log, copies, i, &rec, &len);
        if (!rc && types[i] > PRL_REC_MAX) rc = PRL_E_BAD_ARGUMENT;
        if (rc || rec) {
            total += rec ? prl_record_size(len) : 0;
            continue;
        }
        if (types[i] < 1) rc = PRL_E_BAD_ARGUMENT;
        total += prl_record_size(lens[i]);
        sum += lens[i];
    }
    if (copies) pthread_mutex_unlock(&log->mu);
    if (rc) return rc;
    if (sum != payload_len) return PRL_E_BAD_ARGUMENT;
    if (total > UINT32_MAX ||
        total > (flags & PRL_WRITE_OVERSIZE ? PRL_MAX_SEGMENT_SIZE - PRL_SEGMENT_HEADER_SIZE
                                            : log->opt.segment_size - PRL_SEGMENT_HEADER_SIZE))
        return PRL_E_TOO_LARGE;

    pthread_mutex_lock(&log->write_mu);
    uint64_t room = flags & PRL_WRITE_ROOMY ? 2 * total : total;
    if (log->active && log->active->used + room > log->active->size) {
        rc = rotate(log, total);
        if (rc) {
            pthread_mutex_unlock(&log->write_mu);
            return rc;
        }
    }
    pthread_mutex_lock(&log->mu);
    rc = log->poison ? -log->poison : (log->closed || !log->started) ? PRL_E_CLOSED : 0;
    uint64_t lag = log->next_lsn - log->durable_lsn;
    if (!copies || rc) pthread_mutex_unlock(&log->mu);
    if (rc) {
        pthread_mutex_unlock(&log->write_mu);
        return rc;
    }

    /* Only this thread changes active, used and next_lsn (write_mu).  With
     * copies, mu stays held while they are copied (as for reads), so their
     * segments stay mapped. */
    prl_segment *seg = log->active;
    uint64_t lsn = log->next_lsn, start = seg->used;
    uint8_t *dst = seg->base + start;
    uint64_t p = PRL_BATCH_HEADER_SIZE;
    const uint8_t *src = payload;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *rec;
        uint32_t len;
        rc = copy_source_locked(log, copies, i, &rec, &len);
        if (rc || (rec && p + prl_record_size(len) > total)) break; /* changed since sized */
        if (rec) {
            memcpy(dst + p, rec, prl_record_size(len)); /* header, payload and padding */
            if (types[i]) dst[p] = types[i];            /* retyped (a staged entry) */
        } else {
            struct prl_record_header r = {types[i], auxs[i], 0, lens[i], groups[i], indexes[i], terms[i]};
            len = lens[i];
            memcpy(dst + p, &r, sizeof r);
            memcpy(dst + p + sizeof r, src, len);
            memset(dst + p + sizeof r + len, 0, prl_pad8(len) - len);
            src += len;
        }
        positions[i] = seg->seq << 32 | (start + p);
        p += prl_record_size(len);
    }
    if (copies) pthread_mutex_unlock(&log->mu);
    if (rc || p != total) {
        /* nothing published: the header slot at `start` is still the zero end mark */
        pthread_mutex_unlock(&log->write_mu);
        return rc ? rc : PRL_E_BAD_POSITION;
    }
    struct prl_batch_header h = {0, (uint32_t)total, lsn, seg->seq, n,
                                 lag > UINT32_MAX ? UINT32_MAX : (uint32_t)lag};
    memcpy(dst, &h, sizeof h);
    h.crc = prl_crc32c(prl_batch_seed(seg->seq), dst + 4, total - 4);
    memcpy(dst, &h.crc, sizeof h.crc);
    prl_mark_end(seg, start + total);

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
