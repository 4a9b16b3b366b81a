/* batch.c — a WriteBatch as the log will hold it: records already encoded
 * (docs/FORMAT.md) by pyraftlog/batch.py, checked against the group index,
 * written and applied by one call with the GIL released.
 *
 * Checking walks the records in order over per-group drafts (what a group
 * looks like part-way through the batch; the committed group below is read,
 * never changed) and stops at the first invalid operation, before anything
 * is written: an invalid batch changes nothing.  It also settles what the
 * records alone cannot say: entries at or below the compaction point are
 * ignored and a truncation above the last index is a no-op (both records
 * are left out of the write), and a compaction's term is filled in. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "log.h"
#include "replay.h"

/* A group as the batch has left it so far. */
typedef struct {
    uint64_t group;
    int used;
    int exists;       /* the committed group is still there (no REMOVE yet) */
    uint64_t base, base_term, last;
    uint64_t limit;   /* committed entries below this are still there */
    uint64_t new_start;
    uint64_t *new_terms; /* terms of entries new_start.. this batch appended */
    uint32_t nnew, capnew;
} draft;

typedef struct {
    draft *d;
    uint64_t mask;
} drafts;

static uint64_t mix(uint64_t x) {
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15u;
    return x ^ (x >> 29);
}

static draft *draft_of(drafts *ds, prl_index *ix, uint64_t g) {
    uint64_t i = mix(g) & ds->mask;
    while (ds->d[i].used && ds->d[i].group != g) i = (i + 1) & ds->mask;
    draft *d = &ds->d[i];
    if (!d->used) {
        uint64_t b[3];
        d->used = 1;
        d->group = g;
        d->exists = prl_index_bounds(ix, g, b) == 0;
        d->base = d->exists ? b[0] : 0;
        d->base_term = d->exists ? b[1] : 0;
        d->last = d->exists ? b[2] : 0;
        d->limit = d->exists ? d->last + 1 : 0;
    }
    return d;
}

static uint64_t draft_term(draft *d, prl_index *ix, uint64_t i) {
    if (i == d->base) return d->base_term;
    if (d->nnew && i >= d->new_start) return d->new_terms[i - d->new_start];
    uint64_t t = 0;
    if (d->exists && i < d->limit) prl_index_term(ix, d->group, i, &t);
    return t;
}

/* Keeps entries <= j. */
static void draft_truncate(draft *d, uint64_t j) {
    if (d->nnew && j + 1 >= d->new_start) {
        if (j + 1 - d->new_start < d->nnew) d->nnew = (uint32_t)(j + 1 - d->new_start);
    } else {
        d->nnew = 0;
        if (d->limit > j + 1) d->limit = j + 1;
    }
    d->last = j;
}

static int draft_append(draft *d, uint64_t i, uint64_t term) {
    draft_truncate(d, i - 1);
    if (!d->nnew) d->new_start = i;
    if (d->nnew == d->capnew) {
        uint32_t cap = d->capnew ? 2 * d->capnew : 8;
        uint64_t *t = realloc(d->new_terms, (uint64_t)cap * 8);
        if (!t) return -ENOMEM;
        d->new_terms = t;
        d->capnew = cap;
    }
    d->new_terms[d->nnew++] = term;
    d->last = i;
    return 0;
}

static void draft_reset(draft *d, uint64_t base, uint64_t term) {
    d->base = d->last = base;
    d->base_term = term;
    d->nnew = 0;
    d->limit = 0;
}

static void drafts_free(drafts *ds) {
    for (uint64_t i = 0; i <= ds->mask; i++) free(ds->d[i].new_terms);
    free(ds->d);
}

/* The header of record k at buf + off, checked to lie inside the buffer. */
static int record_at(uint8_t *buf, uint64_t len, uint64_t off, struct prl_record_header *h) {
    if (off > len || len - off < PRL_RECORD_HEADER_SIZE) return PRL_E_BAD_ARGUMENT;
    memcpy(h, buf + off, sizeof *h);
    if (h->type < PRL_REC_ENTRY || h->type > PRL_REC_REMOVE_GROUP ||
        prl_record_size(h->len) > len - off)
        return PRL_E_BAD_ARGUMENT;
    return 0;
}

static uint64_t u64_at(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static int fail(prl_batch_result *res, int32_t code, uint32_t k, uint64_t g, uint64_t a,
                uint64_t b) {
    res->code = code;
    res->record = k;
    res->group = g;
    res->a = a;
    res->b = b;
    return PRL_E_INVALID_BATCH;
}

int prl_batch_check(prl_index *ix, uint8_t *buf, uint64_t len, uint32_t n, uint8_t *keep,
                    prl_batch_result *res) {
    memset(res, 0, sizeof *res);
    uint64_t slots = 16;
    while (slots < 2 * (uint64_t)n) slots *= 2;
    drafts ds = {calloc(slots, sizeof(draft)), slots - 1};
    if (!ds.d) return -ENOMEM;
    uint64_t off = 0, total = PRL_BATCH_HEADER_SIZE;
    uint32_t kept = 0;
    int rc = 0;
    for (uint32_t k = 0; k < n && !rc; k++) {
        struct prl_record_header h;
        rc = record_at(buf, len, off, &h);
        if (rc) break;
        draft *d = draft_of(&ds, ix, h.group);
        int in = 1;
        switch (h.type) {
        case PRL_REC_ENTRY:
            if (h.index <= d->base) {
                in = 0; /* at or below the compaction point: ignored */
            } else if (h.index > d->last + 1) {
                rc = fail(res, PRL_BATCH_GAP, k, h.group, h.index, d->last);
            } else {
                rc = draft_append(d, h.index, h.term);
            }
            break;
        case PRL_REC_SNAPSHOT: {
            /* API.md: index 0 carrying only a ConfState (no term, no data)
             * on a group with no entries and no snapshot: a bootstrap */
            uint64_t data_size = h.len >= 8 ? u64_at(buf + off + PRL_RECORD_HEADER_SIZE) : 1;
            int bootstrap = h.index == 0 && h.term == 0 && data_size == 0 && d->base == 0 &&
                            d->last == 0;
            if (h.index <= d->base && !bootstrap)
                rc = fail(res, PRL_BATCH_SNAPSHOT_OLD, k, h.group, h.index, d->base);
            else
                draft_reset(d, h.index, h.term);
            break;
        }
        case PRL_REC_COMPACT:
            if (h.index <= d->base) {
                rc = fail(res, PRL_BATCH_COMPACT_COMPACTED, k, h.group, h.index, d->base);
            } else if (h.index > d->last) {
                rc = fail(res, PRL_BATCH_COMPACT_ABOVE, k, h.group, h.index, d->last);
            } else {
                h.term = draft_term(d, ix, h.index); /* the term the record carries */
                memcpy(buf + off + offsetof(struct prl_record_header, term), &h.term, 8);
                d->base = h.index;
                d->base_term = h.term;
            }
            break;
        case PRL_REC_TRUNCATE:
            if (h.index <= d->base)
                rc = fail(res, PRL_BATCH_TRUNCATE_COMPACTED, k, h.group, h.index, d->base);
            else if (h.index <= d->last)
                draft_truncate(d, h.index - 1);
            else
                in = 0; /* above the last index: nothing to drop */
            break;
        case PRL_REC_REMOVE_GROUP:
            d->exists = 0;
            draft_reset(d, 0, 0);
            break;
        default: /* HARD_STATE, KV_PUT, KV_DELETE: always valid */
            break;
        }
        keep[k] = (uint8_t)in;
        if (in) {
            kept++;
            total += prl_record_size(h.len);
        }
        off += prl_record_size(h.len);
    }
    if (!rc && off != len) rc = PRL_E_BAD_ARGUMENT;
    drafts_free(&ds);
    res->kept = kept;
    res->total = total;
    return rc;
}

int prl_batch_write(prl_log *log, prl_index *ix, uint8_t *buf, uint64_t len, uint32_t n,
                    uint64_t *positions, prl_batch_result *res, uint64_t *lsn_out) {
    uint8_t *keep = malloc(n ? n : 1);
    uint64_t *scratch = malloc((n ? n : 1) * 3 * 8);
    int rc = keep && scratch ? 0 : -ENOMEM;
    if (!rc) rc = prl_batch_check(ix, buf, len, n, keep, res);
    if (!rc && res->total > log->opt.segment_size - PRL_SEGMENT_HEADER_SIZE) rc = PRL_E_TOO_LARGE;
    if (!rc && res->kept) {
        uint64_t *pos = positions ? positions : scratch;
        prl_reservation r;
        rc = prl_log_reserve(log, res->total, 0, &r);
        if (!rc) {
            uint64_t off = 0, p = PRL_BATCH_HEADER_SIZE;
            for (uint32_t k = 0; k < n; k++) {
                uint64_t size = prl_record_size(u64_at(buf + off) >> 32 & 0xffffffffu);
                if (keep[k]) {
                    memcpy(r.dst + p, buf + off, size);
                    pos[k] = r.seg->seq << 32 | (r.start + p); /* seq modulo 2^32 */
                    p += size;
                } else {
                    pos[k] = 0;
                }
                off += size;
            }
            rc = prl_log_publish(log, &r, res->kept);
            if (!rc) {
                *lsn_out = r.lsn;
                /* applied once the batch is in the log: an index change that
                 * fails now (no memory) is the only error left, and sticky */
                prl_records recs = {buf, n, keep, pos, 0, scratch + n, scratch + 2 * n, n, NULL};
                uint32_t done;
                rc = prl_apply(ix, &recs, 0, &done); /* apply.c: replay applies with it too */
            }
            const uint64_t *rel;
            uint64_t nrel;
            prl_index_release_list(ix, &rel, &nrel);
            if (!rc && nrel) rc = prl_log_release(log, (uint32_t)nrel, rel);
            prl_index_release_clear(ix);
        }
    }
    free(keep);
    free(scratch);
    return rc;
}
