/* log.h — the shared state of one open log: segments, writer, flusher. */
#ifndef PRL_LOG_H
#define PRL_LOG_H

#include <pthread.h>
#include <stdint.h>

#include "pyraftlog.h"
#include "segment.h"

#define PRL_LAT_RING 8192 /* write times kept for the durable-latency histogram */
#define PRL_SYNC_RING 256 /* the last syncs' covered lsns, for tests */

struct prl_log {
    /* Set by prl_log_open, read-only afterwards. */
    int dirfd;
    prl_log_options opt;

    /* Serialises writers across reserve + copy + publish, so batches land in
     * the file in lsn order and written_lsn never passes a batch still being
     * copied.  Held across the copy into the mapping (the GIL is released). */
    pthread_mutex_t write_mu;

    /* Guards every field below; held only briefly (never across I/O). */
    pthread_mutex_t mu;
    pthread_cond_t flush_cv;   /* flusher sleeps here: written > durable or stopping */
    pthread_cond_t durable_cv; /* waiters sleep here: durable_lsn moved, poison, close */
    pthread_cond_t idle_cv;    /* close waits here for waiters to leave */

    /* Segment table: segs[seq - seg_base] or NULL.  Writers: writer (rotate),
     * attach.  Readers: reads, flusher, stats. */
    prl_segment **segs;
    uint64_t seg_base, seg_slots;
    prl_segment *active; /* where the next batch goes (writer) */

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
    int dir_dirty;         /* a rename into the log awaits a directory fsync
                              (the flusher does it before publishing) */
    pthread_t preparer;
    int preparer_started;
    pthread_cond_t prep_cv; /* preparer sleeps here */
    uint64_t seg_created, seg_reused, seg_recycled, seg_deleted, prepare_stalls;

    /* statistics (under mu) */
    uint64_t writes, syncs, bytes_written, records_written, sync_ns, rotations;
    uint64_t batches_per_sync[16];
    uint64_t durable_latency_us[24];
    uint64_t write_ns[PRL_LAT_RING]; /* write time of batch lsn % ring */
    uint64_t sync_targets[PRL_SYNC_RING]; /* lsn covered by sync k % ring (test hook) */
};

uint64_t prl_now_ns(void);
/* table.c: segs[seq - seg_base]; mu held */
prl_segment *prl_table_lookup_locked(prl_log *log, uint64_t seq);
int prl_table_insert_locked(prl_log *log, prl_segment *seg);
/* Bytes of all segment files, in the log and in the pool; mu held. */
uint64_t prl_table_disk_bytes_locked(prl_log *log);
/* The record at `pos` (seq << 32 | offset), checked against the written bytes
 * of its segment: its header at *rec, payload length *len; mu held. */
int prl_record_at_locked(prl_log *log, uint64_t pos, const uint8_t **rec, uint32_t *len,
                         prl_segment **segp);
/* ring.c */
void *prl_preparer_main(void *log);
/* A prepared segment for `seq` whose first batch carries `lsn`, or NULL when
 * none is ready (the caller then creates one itself: a stall).  mu held. */
prl_segment *prl_ring_take_locked(prl_log *log);
int prl_ring_activate(prl_log *log, prl_segment *seg, uint64_t seq, uint64_t lsn);
void prl_ring_close_locked(prl_log *log);
void *prl_flusher_main(void *log);
void prl_mark_end(prl_segment *seg, uint64_t end);
/* Blocks until durable_lsn >= lsn; call with mu held.  0, -poison, or
 * PRL_E_CLOSED / PRL_E_TIMEOUT. */
int prl_wait_locked(prl_log *log, uint64_t lsn, int64_t timeout_ns);

#endif
