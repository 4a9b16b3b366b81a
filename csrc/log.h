/* log.h — the shared state of one open log: segments, writer, flusher. */
#ifndef PRL_LOG_H
#define PRL_LOG_H

#include <pthread.h>
#include <stdint.h>

#include "pyraftlog.h"
#include "segment.h"

#define PRL_LAT_RING 8192 /* write times kept for the durable-latency histogram */
#define PRL_SYNC_RING 256 /* the last syncs' covered lsns, for tests */
/* Segments the table may span: recovery attaches what a directory names, and
 * a corrupt name must not allocate the world. */
#define PRL_TABLE_MAX_SPAN (1u << 24)

struct prl_log {
    /* Set by prl_log_open, read-only afterwards. */
    int dirfd;
    prl_log_options opt;

    /* Serialises writers across reserve + copy + publish, so batches land in
     * the file in lsn order and written_lsn never passes a batch still being
     * copied.  Held across the copy into the staging buffer and its pwrite
     * (the GIL is released). */
    pthread_mutex_t write_mu;
    /* The writer's staging buffer (write_mu): a batch is encoded here and
     * written to its segment with one pwrite.  Writing through the mapping
     * made every fdatasync write-protect the dirty pages and every next
     * write fault them back in: 2x the cost of pwrite + fdatasync per batch
     * (perf/write_method.py).  Reads still go through the mapping (the page
     * cache is the same). */
    uint8_t *stage;
    uint64_t stage_cap;

    /* Guards every field below.  Held for bookkeeping only: no system call
     * and no copy into or out of a mapping happens under it (segments are
     * pinned instead), except that the live-byte accounting of
     * prl_log_release/retain reads record headers (32 bytes each). */
    pthread_mutex_t mu;
    pthread_cond_t flush_cv;   /* flusher sleeps here: written > durable or stopping */
    pthread_cond_t durable_cv; /* waiters sleep here: durable_lsn moved, poison, close */
    pthread_cond_t idle_cv;    /* close waits here for waiters to leave */

    /* Segment table (table.c): the segments of the log, seq seg_base ..
     * seg_base + seg_count - 1, in a circular array of seg_cap slots (a power
     * of two) starting at seg_head.  Its size follows the segments that
     * exist, not the history: the front advances as the oldest segments are
     * recycled, so there is no NULL slot at either end.  Writers: writer
     * (rotate), attach/detach, recycle.  Readers: reads, flusher, stats. */
    prl_segment **segs;
    uint64_t seg_base, seg_count, seg_cap, seg_head;
    prl_segment *active; /* where the next batch goes (writer) */
    prl_segment *dirty;  /* segments written since their last sync (dirty_next) */
    uint64_t npins;      /* pins held on segments (close waits for 0) */

    /* lsn state.  Invariant: durable_lsn <= written_lsn < next_lsn.
     * next_lsn, written_lsn: written by the writer; durable_lsn: by the
     * flusher only; read by waiters and stats. */
    uint64_t next_lsn, written_lsn, durable_lsn;
    /* Sticky errno of the first failed fdatasync: once set, nothing becomes
     * durable any more; every pending and later wait and write fails with it. */
    int poison;
    int stopping, closed, started;
    int nwaiters; /* threads inside a wait call; close waits for 0 */
    uint64_t kicks; /* bumped by prl_log_kick: wakes prl_log_wait_change */
    pthread_t flusher;

    /* The ring (ring.c): prepared free files, oldest first.  Writers:
     * preparer thread (adds), writer (takes at rotation).  A free file is
     * `<id>.free`, allocated in full and mapped read-write. */
    prl_segment **pool;
    uint32_t pool_n, pool_cap;
    uint64_t next_free_id;
    int recycle_hint;      /* live bytes of some segment reached 0: look */
    int recycle_waiting;   /* an empty segment waits for durability: the
                              flusher sets recycle_hint when durable moves */
    int prep_error;        /* errno of the last failed preparation (stats) */
    int recycle_retry;     /* a recycle step failed: try again in a second */
    int dir_dirty;         /* a rename into the log awaits a directory fsync
                              (the flusher does it before publishing) */
    pthread_t preparer;
    int preparer_started;
    pthread_cond_t prep_cv; /* preparer sleeps here */
    uint64_t seg_created, seg_reused, seg_recycled, seg_deleted, prepare_stalls;
    uint64_t recycle_errors; /* failed renames, unlinks and directory syncs */
    int recycle_errno;       /* errno of the last one (0: none) */

    /* statistics (under mu) */
    uint64_t writes, syncs, bytes_written, records_written, sync_ns, rotations;
    uint64_t batches_per_sync[16];
    uint64_t durable_latency_us[24];
    uint64_t write_ns[PRL_LAT_RING]; /* write time of batch lsn % ring */
    uint64_t sync_targets[PRL_SYNC_RING]; /* lsn covered by sync k % ring (test hook) */
};

uint64_t prl_now_ns(void);
/* table.c; mu held.  The segment `seq`, or NULL. */
prl_segment *prl_table_lookup_locked(prl_log *log, uint64_t seq);
/* The segment a position names (its seq modulo 2^32), or NULL. */
prl_segment *prl_table_at_locked(prl_log *log, uint64_t pos);
prl_segment *prl_table_oldest_locked(prl_log *log);
prl_segment *prl_table_newest_locked(prl_log *log);
int prl_table_insert_locked(prl_log *log, prl_segment *seg);
/* Takes `seg` out of the table (the caller closes it). */
void prl_table_remove_locked(prl_log *log, prl_segment *seg);
void prl_pin_locked(prl_log *log, prl_segment *seg);
void prl_unpin_locked(prl_log *log, prl_segment *seg);
/* Puts a segment on the dirty list once it has been written. */
void prl_mark_dirty_locked(prl_log *log, prl_segment *seg);
/* Bytes of all segment files, in the log and in the pool; mu held. */
uint64_t prl_table_disk_bytes_locked(prl_log *log);
/* The record at `pos` ((seq mod 2^32) << 32 | offset), checked against the
 * written bytes of its segment: its header at *rec, payload length *len; mu
 * held. */
int prl_record_at_locked(prl_log *log, uint64_t pos, const uint8_t **rec, uint32_t *len,
                         prl_segment **segp);
/* The same check on a segment pinned by the caller, without mu. */
int prl_record_in(prl_segment *s, uint64_t pos, const uint8_t **rec, uint32_t *len);
/* log.c: a batch is written in two halves, so that every writer (arrays of
 * fields, or records already encoded: batch.c) shares rotation, framing and
 * publication.  prl_log_reserve takes write_mu (held until publish) and
 * returns where the batch's `total` bytes go; the caller fills the records
 * from dst + PRL_BATCH_HEADER_SIZE on; prl_log_publish writes the batch
 * header and checksum, writes the batch to its segment and publishes it.
 * A failed write poisons the log (publish returns PRL_E_POISONED, nothing is
 * published) and releases write_mu either way. */
typedef struct {
    prl_segment *seg;
    uint8_t *dst;          /* the batch's first byte in the staging buffer */
    uint64_t start, total, lsn, lag;
} prl_reservation;
int prl_log_reserve(prl_log *log, uint64_t total, uint32_t flags, prl_reservation *r /* OUT */);
int prl_log_publish(prl_log *log, prl_reservation *r, uint32_t nrecords);
/* ring.c */
void *prl_preparer_main(void *log);
/* A prepared segment for `seq` whose first batch carries `lsn`, or NULL when
 * none is ready (the caller then creates one itself: a stall).  mu held. */
prl_segment *prl_ring_take_locked(prl_log *log);
int prl_ring_activate(prl_log *log, prl_segment *seg, uint64_t seq, uint64_t lsn);
void prl_ring_close_locked(prl_log *log);
void *prl_flusher_main(void *log);
void prl_mark_end(prl_segment *seg, uint64_t end);
/* Blocks until durable_lsn >= lsn; call with mu held.  0, PRL_E_POISONED, or
 * PRL_E_CLOSED / PRL_E_TIMEOUT. */
int prl_wait_locked(prl_log *log, uint64_t lsn, int64_t timeout_ns);

#endif
