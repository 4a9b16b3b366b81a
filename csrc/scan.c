/* scan.c — the recovery scanner.  Reads untrusted bytes: every length and
 * offset read from the file is checked against the mapping before use, all
 * reads go through memcpy (no unaligned loads), and the only outputs are the
 * caller's arrays, each bounded by its given capacity. */
#include <stddef.h>
#include <string.h>

#include "crc32c.h"
#include "format.h"
#include "pyraftlog.h"
#include "replay.h"

int prl_scan_header(const uint8_t *base, uint64_t size, uint64_t seq, uint64_t *first_lsn) {
    struct prl_segment_header h;
    *first_lsn = 0;
    if (!base || size < PRL_SEGMENT_HEADER_SIZE) return PRL_R_SHORT_FILE;
    memcpy(&h, base, sizeof h);
    if (memcmp(h.magic, PRL_SEGMENT_MAGIC, 8) != 0) return PRL_R_BAD_MAGIC;
    if (h.crc != prl_crc32c(0, &h, offsetof(struct prl_segment_header, crc)))
        return PRL_R_BAD_HEADER_CHECKSUM;
    if (h.version != PRL_FORMAT_VERSION || h.header_size != PRL_SEGMENT_HEADER_SIZE)
        return PRL_R_BAD_VERSION;
    if (h.seq != seq) return PRL_R_SEQ_MISMATCH;
    if (h.segment_size < PRL_MIN_SEGMENT_SIZE || h.segment_size > PRL_MAX_SEGMENT_SIZE)
        return PRL_R_BAD_SEGMENT_SIZE;
    *first_lsn = h.first_lsn;
    return PRL_R_NONE;
}

static int all_zero(const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

/* 1 if a plausible, checksum-valid batch of `seq` starts at `off`. */
static int batch_valid(const uint8_t *base, uint64_t size, uint64_t seq, uint64_t off,
                       struct prl_batch_header *h) {
    if (off + PRL_BATCH_HEADER_SIZE > size) return 0;
    memcpy(h, base + off, sizeof *h);
    if (h->seq != seq || h->len < PRL_BATCH_HEADER_SIZE || h->len % PRL_ALIGN ||
        h->len > size - off)
        return 0;
    return h->crc == prl_crc32c(prl_batch_seed(seq), base + off + 4, h->len - 4);
}

/* A record's payload as the Python decoders read it (pyraftlog/record.py):
 * 1 if it decodes.  Only a writer bug makes one that does not (its batch
 * checksum is fine); replay reports it, or leaves the batch out. */
static int payload_ok(const struct prl_record_header *r, const uint8_t *payload) {
    switch (r->type) {
    case PRL_REC_HARD_STATE:
        return r->len == 8; /* the vote */
    case PRL_REC_ADOPT:
        return r->len == 16; /* last, stage_pos */
    case PRL_REC_KV_PUT: {
        uint32_t keylen;
        if (r->len < 4) return 0;
        memcpy(&keylen, payload, 4);
        return keylen <= r->len - 4;
    }
    case PRL_REC_SNAPSHOT: {
        /* data_size, file_id (u64), data_crc, 4 list lengths, auto_leave (u32),
         * then 8 bytes per node id of the lists */
        uint32_t w[6];
        if (r->len < 40) return 0;
        memcpy(w, payload + 16, sizeof w);
        uint64_t ids = (uint64_t)w[1] + w[2] + w[3] + w[4];
        return r->len - 40 == 8 * ids && w[5] <= 1;
    }
    default:
        return 1;
    }
}

int prl_scan_batch(const uint8_t *base, uint64_t size, uint64_t seq, uint64_t off, uint64_t lsn,
                   struct prl_batch_header *h, uint32_t *bad_len, uint64_t *bad_payload) {
    *bad_len = 0;
    if (bad_payload) *bad_payload = 0;
    if (off > size || size - off < PRL_BATCH_HEADER_SIZE) return PRL_R_END_SPACE;
    memcpy(h, base + off, sizeof *h);
    if (all_zero(h, sizeof *h)) return PRL_R_END_ZERO;
    if (h->seq != seq) return PRL_R_END_STALE;
    if (h->len < PRL_BATCH_HEADER_SIZE || h->len % PRL_ALIGN || h->len > size - off) {
        *bad_len = h->len;
        return PRL_R_BAD_LENGTH;
    }
    *bad_len = h->len;
    if (h->crc != prl_crc32c(prl_batch_seed(seq), base + off + 4, h->len - 4))
        return PRL_R_BAD_CHECKSUM;
    if (h->lsn != lsn) return PRL_R_BAD_LSN;
    /* Records must tile the batch exactly. */
    uint64_t p = off + PRL_BATCH_HEADER_SIZE, end = off + h->len;
    for (uint32_t k = 0; k < h->count; k++) {
        struct prl_record_header r;
        if (end - p < PRL_RECORD_HEADER_SIZE) return PRL_R_BAD_RECORD;
        memcpy(&r, base + p, sizeof r);
        if (r.type < 1 || r.type > PRL_REC_MAX) return PRL_R_BAD_RECORD_TYPE;
        if (prl_record_size(r.len) > end - p) return PRL_R_BAD_RECORD;
        if (bad_payload && !*bad_payload && !payload_ok(&r, base + p + PRL_RECORD_HEADER_SIZE))
            *bad_payload = p;
        p += prl_record_size(r.len);
    }
    if (p != end) return PRL_R_BAD_RECORD;
    *bad_len = 0;
    return PRL_R_NONE;
}

int prl_scan_batches(const uint8_t *base, uint64_t size, uint64_t seq, uint64_t offset,
                     uint64_t lsn, uint32_t max_batches, uint32_t max_records,
                     uint64_t *batch_lsns, uint32_t *batch_offsets, uint32_t *batch_lens,
                     uint32_t *batch_counts, uint8_t *rec_types, uint8_t *rec_auxs,
                     uint64_t *rec_groups, uint64_t *rec_indexes, uint64_t *rec_terms,
                     uint32_t *rec_offsets, uint32_t *rec_lens, prl_scan_result *out) {
    memset(out, 0, sizeof *out);
    if (!base || size > PRL_MAX_SEGMENT_SIZE || offset % PRL_ALIGN ||
        offset < PRL_SEGMENT_HEADER_SIZE)
        return PRL_E_BAD_ARGUMENT;
    uint64_t off = offset;
    uint32_t nb = 0, nr = 0;
    int reason = PRL_R_NONE;
    while (nb < max_batches) {
        struct prl_batch_header h;
        reason = prl_scan_batch(base, size, seq, off, lsn, &h, &out->bad_len, NULL);
        if (reason != PRL_R_NONE) break;
        if (h.count > max_records - nr) {
            /* does not fit: return what we have; the caller grows its arrays */
            if (nb == 0) out->need_records = h.count;
            break;
        }
        /* the batch is valid: its records tile it */
        uint64_t p = off + PRL_BATCH_HEADER_SIZE;
        for (uint32_t k = 0; k < h.count; k++) {
            struct prl_record_header r;
            memcpy(&r, base + p, sizeof r);
            rec_types[nr] = r.type;
            rec_auxs[nr] = r.aux;
            rec_groups[nr] = r.group;
            rec_indexes[nr] = r.index;
            rec_terms[nr] = r.term;
            rec_offsets[nr] = (uint32_t)p;
            rec_lens[nr] = r.len;
            nr++;
            p += prl_record_size(r.len);
        }
        batch_lsns[nb] = h.lsn;
        batch_offsets[nb] = (uint32_t)off;
        batch_lens[nb] = h.len;
        batch_counts[nb] = h.count;
        nb++;
        lsn++;
        off += h.len;
    }
    out->next_offset = (uint32_t)off;
    out->n_batches = nb;
    out->n_records = nr;
    out->reason = reason;
    out->next_lsn = lsn;
    return 0;
}

int prl_scan_probe(const uint8_t *base, uint64_t size, uint64_t seq, uint64_t offset,
                   uint64_t min_lsn, uint64_t *found, uint64_t *found_lsn, uint32_t *found_len,
                   uint32_t *found_lag) {
    *found = *found_lsn = 0;
    *found_len = *found_lag = 0;
    if (!base || size > PRL_MAX_SEGMENT_SIZE || offset % PRL_ALIGN) return PRL_E_BAD_ARGUMENT;
    if (offset < PRL_SEGMENT_HEADER_SIZE) offset = PRL_SEGMENT_HEADER_SIZE;
    for (uint64_t off = offset; off + PRL_BATCH_HEADER_SIZE <= size; off += PRL_ALIGN) {
        uint64_t s;
        memcpy(&s, base + off + offsetof(struct prl_batch_header, seq), 8);
        if (s != seq) continue; /* cheap filter before the checksum */
        struct prl_batch_header h;
        if (batch_valid(base, size, seq, off, &h) && h.lsn >= min_lsn) {
            *found = off;
            *found_lsn = h.lsn;
            *found_len = h.len;
            *found_lag = h.sync_lag;
            return 0;
        }
    }
    return 0;
}
