/* replay.c — recovery replays a segment's batches into the group index
 * with the write path's code: each batch is checked (scan.c: header,
 * checksum, lsn, records, payloads) and at once applied (apply.c) while its
 * bytes are still in the cache, a whole run of batches per call with the
 * GIL released.  The records Python has a part in come back as items
 * (pyraftlog/replay.py applies them in log order).
 *
 * Live-byte accounting.  The write path counts a batch's records as live
 * when it publishes them and releases each record the index (or Python)
 * stops needing; replay does the same, so the counts come out as the writes
 * left them, with no walk over the index at the end.  That holds while
 * every append is one the write path could have made (apply.c: as_written).
 * Replay of a log whose oldest segments were recycled may make others: the
 * index then guesses a base, and a guessed base may skip records without
 * releasing them, or take back a compaction record it released (which
 * would count it twice as gone: a segment recycled under a live record).
 * The result says so (irregular) and the caller counts again from the
 * index (prl_replay_reset_live, then prl_log_retain of every live record). */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "log.h"
#include "replay.h"

#define RUN 512 /* entries appended per prl_index_append call at most */
/* Below this many bytes left in a segment, no page-fault helper is worth
 * its thread (tests use 4 KiB segments; the default is 64 MiB). */
#define PREFAULT_MIN (4u << 20)
#define PREFAULT_STEP (256u << 10) /* bytes the helper touches between looks at `stop` */

/* Page faults.  Mapping the page cache into the process costs the kernel
 * about as much as checksumming the bytes (~75 ms per GiB here); neither
 * MAP_POPULATE nor madvise(MADV_POPULATE_READ) makes it cheaper, and the
 * madvise, run on another thread, held this one's faults up (measured).
 * So while the call checks and applies, a helper thread touches the pages
 * ahead of it (a plain read fault each) and the call finds them mapped.
 * The helper is joined before the call returns: it never outlives the
 * mapping. */
typedef struct {
    const volatile uint8_t *p, *end;
    int stop; /* set by the caller, read by the helper (atomics) */
} prefault;

static void *prefault_main(void *arg) {
    prefault *pf = arg;
    const volatile uint8_t *p = pf->p;
    uint8_t sink = 0;
    while (p < pf->end && !__atomic_load_n(&pf->stop, __ATOMIC_RELAXED)) {
        const volatile uint8_t *e = pf->end - p > PREFAULT_STEP ? p + PREFAULT_STEP : pf->end;
        for (; p < e; p += 4096) sink ^= *p;
    }
    return (void *)(uintptr_t)sink;
}

/* The accounting of one call: `retained` bytes of segment seq become live,
 * then the records the index released go.  Any failure: not exact. */
static void account(prl_log *log, prl_index *ix, uint64_t seq, uint64_t retained,
                    prl_apply_report *rep) {
    const uint64_t *rel;
    uint64_t nrel;
    prl_index_release_list(ix, &rel, &nrel);
    if (log && !rep->irregular) {
        pthread_mutex_lock(&log->mu);
        prl_segment *s = prl_table_lookup_locked(log, seq);
        if (s) s->live += retained;
        pthread_mutex_unlock(&log->mu);
        if (!s) rep->irregular = 1;
        for (uint64_t k = 0; k < nrel && !rep->irregular;) {
            uint32_t n = nrel - k > UINT32_MAX ? UINT32_MAX : (uint32_t)(nrel - k);
            if (prl_log_release(log, n, rel + k)) rep->irregular = 1;
            k += n;
        }
    }
    prl_index_release_clear(ix);
}

int prl_replay(prl_log *log, prl_index *ix, const uint8_t *base, uint64_t size, uint64_t seq,
               uint64_t offset, uint64_t lsn, uint32_t from, uint32_t max_batches,
               uint32_t flags, prl_replay_item *items, uint32_t cap_items,
               uint64_t *stage_terms, uint64_t *stage_pos, uint32_t cap_stage,
               prl_replay_result *out) {
    memset(out, 0, sizeof *out);
    if (!base || size > PRL_MAX_SEGMENT_SIZE || offset % PRL_ALIGN ||
        offset < PRL_SEGMENT_HEADER_SIZE || !cap_items || !cap_stage)
        return PRL_E_BAD_ARGUMENT;
    uint64_t terms[RUN], pos[RUN];
    /* pages from the first one wholly past `offset`: the caller faults its own */
    uint64_t from_page = (offset + 4095) & ~(uint64_t)4095;
    prefault pf = {base + from_page, base + size, 0};
    pthread_t helper;
    int helping = size > from_page && size - from_page >= PREFAULT_MIN &&
                  pthread_create(&helper, NULL, prefault_main, &pf) == 0;
    prl_apply_report rep = {items, cap_items, 0, stage_terms, stage_pos, cap_stage, 0, 0, 0};
    uint64_t off = offset, retained = 0;
    uint32_t consumed = 0;
    int32_t reason = PRL_R_NONE;
    int rc = 0;
    while (consumed < max_batches) {
        struct prl_batch_header h;
        uint64_t bad;
        reason = prl_scan_batch(base, size, seq, off, lsn, &h, &out->bad_len, &bad);
        if (reason != PRL_R_NONE) break;
        int pause = 0;
        if (bad) {
            if (!(flags & PRL_REPLAY_SKIP_BAD)) {
                reason = PRL_R_BAD_PAYLOAD;
                out->bad_record = bad;
                break;
            }
            /* left out whole.  A batch resumed after a stop (from > 0) had
             * decoded: it gets here only if the file changed under us, and
             * then no count is exact. */
            if (from) rep.irregular = 1;
            from = 0;
            if (!out->skipped) out->first_skipped = off;
            out->skipped++;
        } else {
            prl_records r = {base + off + PRL_BATCH_HEADER_SIZE, h.count, NULL, NULL,
                             (seq << 32) + off + PRL_BATCH_HEADER_SIZE, terms, pos, RUN, &rep};
            uint32_t done;
            rc = prl_apply(ix, &r, from, &done);
            /* live from the batch's first applied record on (the releases
             * of its records follow, in account()) */
            if (!from && (done || rc)) retained += h.len - PRL_BATCH_HEADER_SIZE;
            if (rc) break;
            if (done < h.count) {
                from = done; /* Python's turn, inside the batch */
                break;
            }
            from = 0;
            out->batches++;
            pause = rep.stop; /* an ADOPT ended the batch: Python's turn */
        }
        out->bytes += h.len;
        off += h.len;
        lsn++;
        consumed++;
        if (pause) break;
    }
    if (helping) {
        __atomic_store_n(&pf.stop, 1, __ATOMIC_RELAXED);
        pthread_join(helper, NULL);
    }
    account(log, ix, seq, retained, &rep);
    out->next_offset = off;
    out->next_lsn = lsn;
    out->next_record = from;
    out->reason = reason;
    out->n_items = rep.n_items;
    out->irregular = rep.irregular;
    return rc;
}

int prl_replay_reset_live(prl_log *log) {
    pthread_mutex_lock(&log->mu);
    for (uint64_t k = 0; k < log->seg_count; k++) {
        prl_segment *s = prl_table_lookup_locked(log, log->seg_base + k);
        if (s) s->live = 0;
    }
    pthread_mutex_unlock(&log->mu);
    return 0;
}
