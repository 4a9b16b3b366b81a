/* replay.h — what the write path (batch.c) and recovery replay (replay.c)
 * share: checking one batch of a segment (scan.c) and applying records to
 * the group index (apply.c).  Internal: not part of the cffi API. */
#ifndef PRL_REPLAY_H
#define PRL_REPLAY_H

#include <stdint.h>

#include "format.h"
#include "pyraftlog.h"

/* Checks the batch at `off` of segment `seq` (mapped at base, size bytes):
 * header, checksum, lsn, and that its records tile it.  Returns PRL_R_NONE
 * for a valid batch (its header in *h), else why not; *bad_len = the length
 * an invalid batch claims (0 for the clean ends).  With bad_payload, also
 * the offset of the first record whose payload does not decode as
 * pyraftlog/record.py reads it (0: none). */
int prl_scan_batch(const uint8_t *base, uint64_t size, uint64_t seq, uint64_t off, uint64_t lsn,
                   struct prl_batch_header *h /* OUT */, uint32_t *bad_len /* OUT */,
                   uint64_t *bad_payload /* OUT, or NULL */);

/* Where replay hears of the records whose other half Python keeps (see
 * prl_replay_item); NULL in the write path, whose Python side knows them. */
typedef struct {
    prl_replay_item *items;
    uint32_t cap_items, n_items;
    uint64_t *stage_terms, *stage_pos; /* the terms and positions of STAGE runs */
    uint32_t cap_stage, n_stage;
    int irregular; /* an append the write path would have refused or cut (apply.c) */
    int stop;      /* an ADOPT was reported: Python applies it before anything more */
} prl_apply_report;

/* n records encoded back to back in buf; the caller checked that they tile
 * it (prl_batch_check, prl_scan_batch). */
typedef struct {
    const uint8_t *buf;
    uint32_t n;
    const uint8_t *keep;       /* record k is applied if keep[k] (NULL: all are) */
    const uint64_t *positions; /* record k's position; NULL: pos_base + its offset in buf */
    uint64_t pos_base;
    uint64_t *terms, *pos;     /* scratch for a run of entries: cap each (>= 1) */
    uint32_t cap;
    prl_apply_report *report;  /* replay only */
} prl_records;

/* Applies records from.. of `r` to the index, in order: the index changes a
 * written batch makes, and replay makes the same.  With a report, the
 * records Python has a part in are reported (their C part applied first),
 * and the application stops early: before such a record when the report is
 * full, after an ADOPT (Python applies it before anything that follows).
 * *done = the records applied (r->n unless it stopped).  0, or an index
 * error (no memory). */
int prl_apply(prl_index *ix, const prl_records *r, uint32_t from, uint32_t *done /* OUT */);

#endif
