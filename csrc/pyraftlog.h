/* pyraftlog.h — the C library's API, read verbatim by cffi (pyraftlog/_build.py
 * strips the preprocessor lines).  Every function returns 0 or a negative
 * status: -errno for system errors, or a PRL_E_* code.  Outputs are written
 * through pointers marked OUT.  pyraftlog/_native.py turns codes into the
 * exceptions of API.md. */
#ifndef PRL_PYRAFTLOG_H
#define PRL_PYRAFTLOG_H

#include <stdint.h>

enum prl_status {
    PRL_OK = 0,
    PRL_E_TOO_LARGE = -1001, /* batch larger than a segment can hold */
    PRL_E_CLOSED = -1002,    /* the log was closed */
    PRL_E_BAD_POSITION = -1003, /* a position names no record of a mapped segment */
    PRL_E_BAD_ARGUMENT = -1004,
    PRL_E_TIMEOUT = -1005,
    PRL_E_NOT_REGULAR = -1006, /* a name in the log directory is a symbolic link,
                                  directory, FIFO, socket or device, not a file */
    PRL_E_NO_GROUP = -1007,    /* the group index has no such group */
    PRL_E_INVALID_BATCH = -1008, /* a batch breaks a rule: prl_batch_result says which */
    PRL_E_POISONED = -1009      /* a sync or write failed before: nothing becomes durable
                                   any more (prl_log_poison_errno says why) */
};

/* Why a scan stopped or a header was refused.  The END_* reasons are a clean
 * end of a segment's log; the others are invalid bytes. */
enum prl_reason {
    PRL_R_NONE = 0,          /* output arrays full: call again from next_offset */
    PRL_R_END_ZERO = 1,      /* batch header all zero: never written */
    PRL_R_END_STALE = 2,     /* batch header of another segment seq: leftovers */
    PRL_R_END_SPACE = 3,     /* no room for another batch header */
    PRL_R_BAD_LENGTH = 10,   /* batch length out of bounds or unaligned */
    PRL_R_BAD_CHECKSUM = 11, /* batch checksum mismatch */
    PRL_R_BAD_RECORD = 12,   /* record lengths do not add up to the batch */
    PRL_R_BAD_RECORD_TYPE = 13,
    PRL_R_BAD_LSN = 14,      /* batch lsn is not the successor of the previous */
    PRL_R_BAD_PAYLOAD = 15,  /* replay: a record of a valid batch does not decode
                                (prl_replay_result.bad_record says which) */
    PRL_R_SHORT_FILE = 20,   /* smaller than a segment header */
    PRL_R_BAD_MAGIC = 21,
    PRL_R_BAD_VERSION = 22,
    PRL_R_BAD_HEADER_CHECKSUM = 23,
    PRL_R_SEQ_MISMATCH = 24, /* header seq differs from the file name */
    PRL_R_BAD_SEGMENT_SIZE = 25
};

/* ---- scanner: validates untrusted bytes; never reads outside [base, base+size) */

typedef struct {
    uint32_t next_offset; /* OUT: where the scan stopped */
    uint32_t n_batches;   /* OUT: valid batches returned */
    uint32_t n_records;   /* OUT: their records */
    int32_t reason;       /* OUT: prl_reason */
    uint64_t next_lsn;    /* OUT: lsn the next batch must carry */
    uint32_t bad_len;     /* OUT: claimed length of the invalid batch, or 0 */
    uint32_t need_records; /* OUT: with PRL_R_NONE and no batch: records the
                              next batch holds (grow the arrays to this) */
} prl_scan_result;

/* Checks a segment header; returns a prl_reason (0 if valid). */
int prl_scan_header(const uint8_t *base, uint64_t size, uint64_t seq,
                    uint64_t *first_lsn /* OUT */);

/* Scans valid batches from `offset` (8-aligned) on, expecting lsn `lsn` first.
 * Batch i occupies [batch_offsets[i], +batch_lens[i]) and owns
 * batch_counts[i] consecutive records of the record arrays.  A batch is
 * returned whole or not at all.  Returns 0 or PRL_E_BAD_ARGUMENT. */
int prl_scan_batches(const uint8_t *base, uint64_t size, uint64_t seq, uint64_t offset,
                     uint64_t lsn, uint32_t max_batches, uint32_t max_records,
                     uint64_t *batch_lsns /* OUT */, uint32_t *batch_offsets /* OUT */,
                     uint32_t *batch_lens /* OUT */, uint32_t *batch_counts /* OUT */,
                     uint8_t *rec_types /* OUT */, uint8_t *rec_auxs /* OUT */,
                     uint64_t *rec_groups /* OUT */, uint64_t *rec_indexes /* OUT */,
                     uint64_t *rec_terms /* OUT */, uint32_t *rec_offsets /* OUT */,
                     uint32_t *rec_lens /* OUT */, prl_scan_result *out /* OUT */);

/* Looks for a valid batch of segment `seq` with lsn >= min_lsn at any 8-aligned
 * offset >= `offset`: what follows a break tells a torn tail from corruption.
 * *found = its offset (0: none), with its lsn, length and sync_lag. */
int prl_scan_probe(const uint8_t *base, uint64_t size, uint64_t seq, uint64_t offset,
                   uint64_t min_lsn, uint64_t *found /* OUT */, uint64_t *found_lsn /* OUT */,
                   uint32_t *found_len /* OUT */, uint32_t *found_lag /* OUT */);

/* ---- the log: segments, writer, flusher */

typedef struct prl_log prl_log;

typedef struct {
    uint64_t segment_size;         /* bytes, multiple of the page size */
    uint64_t min_sync_interval_ns; /* flusher pause after each fdatasync */
    int32_t sync;                  /* 0: tickets complete without fdatasync */
    uint32_t prepare_ahead;        /* free segment files kept ready (>= 1) */
    uint32_t pool_max;             /* free files kept at most; more are deleted */
    uint32_t pad;
    uint64_t prepare_disk_limit;   /* above this many bytes of segment files the
                                      preparer keeps only one file ready (0: no
                                      limit); the purge is about to free some */
    uint32_t file_mode;            /* permission bits of new segment files (the
                                      umask applies); 0: 0600 */
    uint32_t pad2;
} prl_log_options;

typedef struct {
    uint64_t next_lsn, written_lsn, durable_lsn;
    uint64_t writes, syncs, bytes_written, records_written;
    uint64_t sync_ns;              /* time spent in fdatasync */
    uint64_t segments, disk_bytes, live_bytes, active_seq, rotations;
    uint64_t free_segments;        /* prepared or recycled files in the pool */
    uint64_t segments_created;     /* free files allocated by the preparer */
    uint64_t segments_reused;      /* rotations into a recycled file */
    uint64_t segments_recycled;    /* emptied segments returned to the pool */
    uint64_t segments_deleted;     /* emptied segments deleted (pool full) */
    uint64_t prepare_stalls;       /* rotations that found no prepared file */
    uint64_t recycle_errors;       /* failed renames, unlinks, directory syncs of
                                      recycling (each retried) */
    uint64_t table_slots;          /* slots of the segment table */
    int32_t recycle_errno;         /* errno of the last of them (0: none) */
    int32_t poison_errno;          /* 0 until a sync or write failed */
    int32_t closed;
    int32_t pad;
    uint64_t batches_per_sync[16]; /* bucket k: 2^k <= batches < 2^(k+1) */
    uint64_t durable_latency_us[24]; /* bucket k: 2^k <= us < 2^(k+1) (k=0: < 2) */
} prl_stats;

typedef struct {
    uint64_t seq, size, used, live, first_lsn, last_lsn;
    int32_t active;
    int32_t pad;
} prl_segment_info;

/* Opens the directory; no segment yet. */
int prl_log_open(const char *dir, const prl_log_options *opt, prl_log **out /* OUT */);
/* Maps an existing segment file read-only (recovered segments). */
int prl_log_attach(prl_log *log, uint64_t seq);
/* Unmaps an attached segment and forgets it (recovery drops an unfinished one). */
int prl_log_detach(prl_log *log, uint64_t seq);
/* Adds free file `<id>.free` found in the directory to the pool of prepared
 * segments (or deletes it when it does not fit). */
int prl_log_adopt_free(prl_log *log, uint64_t id);
/* The mapping of an attached segment, for the scanner. */
int prl_log_segment_base(prl_log *log, uint64_t seq, const uint8_t **base /* OUT */,
                         uint64_t *size /* OUT */);
int prl_log_segment_info(prl_log *log, uint64_t seq, prl_segment_info *out /* OUT */);
/* Starts writing: the next batch carries `lsn`.  With resume_offset 0 it
 * goes into a new segment `seq`; otherwise into the attached segment `seq`
 * at resume_offset (recovery found a clean end there).  Starts the flusher. */
int prl_log_start(prl_log *log, uint64_t seq, uint64_t lsn, uint64_t resume_offset);

enum {
    PRL_WRITE_OVERSIZE = 1, /* a batch larger than a segment gets a segment of its own */
    PRL_WRITE_ROOMY = 2     /* rotate first unless the batch leaves as much room again
                               (purge writes: a foreground write that must rotate then
                               rarely waits for a purge batch to become durable) */
};

/* Appends one batch of n records atomically.  Record i has type types[i] and
 * payload lens[i] bytes taken in order from `payload` (payload_len in all),
 * unless copies is not NULL and copies[i] != 0: then record i is a verbatim
 * copy (header and payload) of the record at position copies[i], retyped to
 * types[i] unless that is 0; its other array values are ignored and its
 * payload is not in `payload` (purge rewrites copy a group's entries this
 * way, without Python touching them).
 * positions[i] = (segment seq mod 2^32) << 32 | offset of record i's header
 * (docs/FORMAT.md: the table resolves the wrapped seq).  A batch
 * larger than a segment is PRL_E_TOO_LARGE unless flags has
 * PRL_WRITE_OVERSIZE (purge rewrites of large groups). */
int prl_log_write(prl_log *log, uint32_t n, const uint8_t *types, const uint8_t *auxs,
                  const uint64_t *groups, const uint64_t *indexes, const uint64_t *terms,
                  const uint32_t *lens, const uint64_t *copies, const uint8_t *payload,
                  uint64_t payload_len, uint32_t flags, uint64_t *lsn /* OUT */,
                  uint64_t *positions /* OUT */);

/* Reads the headers of records at `positions`: payload lengths and aux bytes. */
int prl_log_read_meta(prl_log *log, uint32_t n, const uint64_t *positions,
                      uint32_t *lens /* OUT */, uint8_t *auxs /* OUT */,
                      uint64_t *total /* OUT */);
/* Copies the payloads of records at `positions` back to back into out. */
int prl_log_read_data(prl_log *log, uint32_t n, const uint64_t *positions, uint8_t *out,
                      uint64_t cap);
/* Live-byte accounting: the records at `positions` are no longer needed. */
int prl_log_release(prl_log *log, uint32_t n, const uint64_t *positions);
/* Bytes of all segment files, in the log and in the pool. */
uint64_t prl_log_disk_bytes(prl_log *log);
/* What a writer checks after each write: disk bytes (as above), and the
 * count and last errno of failed recycle steps (each is retried). */
int prl_log_health(prl_log *log, uint64_t *disk_bytes /* OUT */,
                   uint64_t *recycle_errors /* OUT */, int32_t *recycle_errno /* OUT */);
/* The oldest segment that still holds live records (*seq = 0: none). */
int prl_log_oldest_live(prl_log *log, uint64_t *seq /* OUT */, uint64_t *live /* OUT */);
/* Adds records back to the live count (recovery marks what it kept). */
int prl_log_retain(prl_log *log, uint32_t n, const uint64_t *positions);

/* Blocks (no polling) until batch `lsn` is durable: 0, PRL_E_TIMEOUT after
 * timeout_ns (< 0: no timeout), PRL_E_POISONED if the log is poisoned before, or
 * PRL_E_CLOSED if it was closed first. */
int prl_log_wait(prl_log *log, uint64_t lsn, int64_t timeout_ns);
/* Blocks until durable_lsn > known, or the kick count differs from
 * known_kicks (prl_log_kick was called since the caller last looked), or
 * the log is poisoned (PRL_E_POISONED) or closed (PRL_E_CLOSED), or the timeout
 * passes.  *durable and *kicks are the values on return.  Passing the kick
 * count the previous call returned closes the lost-wake-up window between
 * two calls.  The notifier thread of pyraftlog/ticket.py lives here. */
int prl_log_wait_change(prl_log *log, uint64_t known, uint64_t known_kicks, int64_t timeout_ns,
                        uint64_t *durable /* OUT */, uint64_t *kicks /* OUT */);
void prl_log_kick(prl_log *log);
int prl_log_stats(prl_log *log, prl_stats *out /* OUT */);
/* errno of the failure that poisoned the log (0: not poisoned). */
int32_t prl_log_poison_errno(prl_log *log);
/* Makes everything written durable, stops the flusher, unmaps the segments.
 * Waiters are woken.  The struct stays valid until prl_log_free. */
int prl_log_close(prl_log *log);
void prl_log_free(prl_log *log);

/* ---- the per-group index (csrc/group_index.c): every group's state in C.
 * Not thread-safe (the engine's lock).  Positions as in prl_log_write;
 * 0 is no record, UINT64_MAX a base replay guessed.  Every change appends
 * the positions of records that stopped being needed to the index's
 * release list (prl_index_release_list; emptied by prl_index_release_clear). */

typedef struct prl_index prl_index;

typedef struct {
    uint64_t base_index, base_term, base_pos, last_index, last_term, n;
    uint64_t hs_term, hs_vote, hs_commit, hs_pos;
    uint64_t snap_pos;
    uint64_t first_pos;            /* position of entry base_index + 1, or 0 */
} prl_group_info;

typedef struct {
    uint64_t groups, entries;
    uint64_t nbytes;               /* memory the index holds */
} prl_index_stats_t;

int prl_index_new(prl_index **out /* OUT */);
void prl_index_free(prl_index *ix);
int prl_index_stats(prl_index *ix, prl_index_stats_t *out /* OUT */);
/* The ids of all groups, in no order (cap >= the number of groups). */
int prl_index_ids(prl_index *ix, uint64_t *out /* OUT */, uint64_t cap);
/* 0, or PRL_E_NO_GROUP. */
int prl_index_info(prl_index *ix, uint64_t group, prl_group_info *out /* OUT */);
/* out[0..3) = base_index, base_term, last_index (PRL_E_NO_GROUP: none). */
int prl_index_bounds(prl_index *ix, uint64_t group, uint64_t *out /* OUT: 3 values */);
/* Term of entry i, base_index <= i <= last_index (else PRL_E_BAD_ARGUMENT). */
int prl_index_term(prl_index *ix, uint64_t group, uint64_t i, uint64_t *term /* OUT */);
/* Terms and/or positions (either may be NULL) of entries [lo, hi). */
int prl_index_range(prl_index *ix, uint64_t group, uint64_t lo, uint64_t hi,
                    uint64_t *terms /* OUT */, uint64_t *pos /* OUT */);
/* Entries start .. start+n-1 (replacing any from start on; at or below a known
 * base they are skipped; replay may move a guessed base).  Creates the group. */
int prl_index_append(prl_index *ix, uint64_t group, uint64_t start, uint64_t n,
                     const uint64_t *terms, const uint64_t *pos);
/* A TRUNCATE record: drops entries >= index.  No group: nothing. */
int prl_index_truncate(prl_index *ix, uint64_t group, uint64_t index);
/* A COMPACT record at pos: drops entries <= index.  Creates the group. */
int prl_index_compact(prl_index *ix, uint64_t group, uint64_t index, uint64_t term, uint64_t pos);
/* A SNAPSHOT record at pos: drops every entry; base = (index, term).  Creates. */
int prl_index_snapshot(prl_index *ix, uint64_t group, uint64_t index, uint64_t term, uint64_t pos);
/* A HARD_STATE record at pos.  Creates the group. */
int prl_index_hard_state(prl_index *ix, uint64_t group, uint64_t term, uint64_t vote,
                         uint64_t commit, uint64_t pos);
int prl_index_create(prl_index *ix, uint64_t group);
/* Forgets the group, releasing every record it held (PRL_E_NO_GROUP: none). */
int prl_index_remove(prl_index *ix, uint64_t group);
/* Groups of the index's slots [start, start + count) that need a record in
 * segment `seq` or older (head: the active segment): their entries, hard
 * state, snapshot or compaction record; not the key-value space, which
 * Python keeps.  out holds count ids; *next = where to go on (0: done).  The
 * slots change between calls (a removal moves the last group into a hole):
 * a sliced walk may miss a group that moved, which a later walk finds. */
int prl_index_pinners(prl_index *ix, uint64_t seq, uint64_t head, uint32_t start,
                      uint32_t count, uint64_t *out /* OUT */, uint32_t *n /* OUT */,
                      uint32_t *next /* OUT */);
/* Adds positions to the release list (records the caller stopped needing). */
int prl_index_release(prl_index *ix, uint64_t n, const uint64_t *pos);
int prl_index_release_list(prl_index *ix, const uint64_t **list /* OUT */, uint64_t *n /* OUT */);
void prl_index_release_clear(prl_index *ix);
/* Gives the C heap's free memory back to the system (after a recovery,
 * whose transient allocations would otherwise stay in the process). */
void prl_index_trim(void);
/* How many positions prl_index_live_positions writes. */
int prl_index_live_count(prl_index *ix, uint64_t *n /* OUT */);
/* Every record position the groups still need (entries, hard state,
 * snapshot, base; each once; never 0 or a guessed base), in no order; the
 * key-value records are Python's (GroupIndex._kv).  PRL_E_BAD_ARGUMENT if
 * more than cap. */
int prl_index_live_positions(prl_index *ix, uint64_t *out /* OUT */, uint64_t cap,
                             uint64_t *n /* OUT */);
/* Replay of n ENTRY and HARD_STATE records (types: PRL_REC_ENTRY or
 * PRL_REC_HARD_STATE; else PRL_E_BAD_ARGUMENT, applied up to there), in log
 * order: exactly prl_index_append of each entry record and
 * prl_index_hard_state(group, term, votes[k], commit = indexes[k], pos) of
 * each hard state, one record at a time (a run of one group's consecutive
 * entries is appended in one call, which is the same).  votes[k] is read
 * for hard states only. */
int prl_index_replay(prl_index *ix, uint64_t n, const uint8_t *types, const uint64_t *groups,
                     const uint64_t *indexes, const uint64_t *terms, const uint64_t *pos,
                     const uint64_t *votes);

/* ---- a WriteBatch's records (csrc/batch.c) */

/* Which rule an invalid batch broke (prl_batch_result.code); the numbers
 * a, b are what the error message names. */
enum prl_batch_error {
    PRL_BATCH_GAP = 1,               /* entries start at a, the last index is b */
    PRL_BATCH_COMPACT_COMPACTED = 2, /* compact a: already compacted to b */
    PRL_BATCH_COMPACT_ABOVE = 3,     /* compact a is above the last index b */
    PRL_BATCH_TRUNCATE_COMPACTED = 4, /* truncate a: entries up to b are compacted */
    PRL_BATCH_SNAPSHOT_OLD = 5       /* snapshot at a is not newer than b */
};

typedef struct {
    int32_t code;                  /* prl_batch_error, 0: valid */
    uint32_t record;               /* the record that broke it */
    uint64_t group, a, b;
    uint64_t total;                /* bytes the batch takes in the log */
    uint32_t kept;                 /* records written (0: nothing to write) */
    uint32_t pad;
} prl_batch_result;

/* Checks n records encoded back to back in buf (docs/FORMAT.md) against the
 * index, in order, without changing it: PRL_E_INVALID_BATCH with res->code
 * for the first invalid one.  keep[k] = whether record k is written
 * (entries at or below the compaction point and truncations above the last
 * index are not); the term of each COMPACT record is filled into buf. */
int prl_batch_check(prl_index *ix, uint8_t *buf, uint64_t len, uint32_t n,
                    uint8_t *keep /* OUT: n */, prl_batch_result *res /* OUT */);
/* Checks, writes (one batch, one lsn) and applies to the index the records
 * in buf; all or nothing up to the write.  positions (n, or NULL): where
 * each record went (0: left out).  res->kept == 0: nothing was written. */
int prl_batch_write(prl_log *log, prl_index *ix, uint8_t *buf, uint64_t len, uint32_t n,
                    uint64_t *positions /* OUT */, prl_batch_result *res /* OUT */,
                    uint64_t *lsn /* OUT */);

/* ---- replay (csrc/replay.c): recovery checks each batch and applies it to
 * the group index with the write path's code (csrc/apply.c) */

/* A record whose other half Python keeps (pyraftlog/replay.py applies it):
 * SNAPSHOT (metadata, file reference), KV_PUT, KV_DELETE, REMOVE_GROUP
 * (the key-value space and snapshot metadata it forgets), a run of STAGE
 * records (one group's, consecutive indexes, one batch), ADOPT.  Its
 * payload is at offset (pos & 0xffffffff) + 32 of the segment. */
typedef struct {
    uint64_t group, index, term;
    uint64_t pos;      /* the record's position (a STAGE run: its first record's) */
    uint32_t len;      /* payload bytes */
    uint32_t first;    /* STAGE: the run's terms and positions are */
    uint32_t count;    /*   stage_terms/stage_pos[first .. first + count) */
    uint8_t type;
    uint8_t pad[3];
} prl_replay_item;

typedef struct {
    uint64_t next_offset;  /* OUT: the batch to go on from */
    uint64_t next_lsn;     /* OUT: the lsn it must carry */
    uint32_t next_record;  /* OUT: its records already applied (0: none) */
    int32_t reason;        /* OUT: why the scan stopped: a prl_reason, or PRL_R_NONE:
                              for Python (items or stage arrays full, an ADOPT, or
                              max_batches reached): apply the items, call again */
    uint32_t bad_len;      /* OUT: claimed length of the invalid batch, or 0 */
    uint32_t batches;      /* OUT: batches applied whole */
    uint64_t bytes;        /* OUT: bytes of those and of the skipped ones */
    uint32_t skipped;      /* OUT: batches left out for a payload that does not decode
                              (PRL_REPLAY_SKIP_BAD) */
    uint32_t n_items;      /* OUT: items reported, in log order */
    uint64_t first_skipped; /* OUT: offset of the first batch left out */
    uint64_t bad_record;   /* OUT: PRL_R_BAD_PAYLOAD: offset of the record */
    int32_t irregular;     /* OUT: an append the write path would not have made (a
                              recycled log's replay): live bytes are not exact */
    uint32_t pad;
} prl_replay_result;

enum { PRL_REPLAY_SKIP_BAD = 1 }; /* leave out a batch whose payloads do not decode */

/* Checks and applies the batches of segment `seq` (mapped at base, size
 * bytes) from `offset` on, the first with lsn `lsn`, its first `from`
 * records already applied by an earlier call; at most max_batches of them.
 * Stops at the first invalid batch (out->reason, as prl_scan_batches), at
 * a payload that does not decode (PRL_R_BAD_PAYLOAD, unless skip_bad), or
 * for Python (PRL_R_NONE).  With a log, the records applied count as live
 * bytes of their segment and those the index drops are released as they
 * go (the write path's accounting: exact unless out->irregular). */
int prl_replay(prl_log *log /* or NULL */, prl_index *ix, const uint8_t *base, uint64_t size,
               uint64_t seq, uint64_t offset, uint64_t lsn, uint32_t from,
               uint32_t max_batches, uint32_t flags, prl_replay_item *items /* OUT */,
               uint32_t cap_items, uint64_t *stage_terms /* OUT */,
               uint64_t *stage_pos /* OUT */, uint32_t cap_stage,
               prl_replay_result *out /* OUT */);
/* Live bytes of every segment back to 0 (before a recount). */
int prl_replay_reset_live(prl_log *log);

/* ---- test hooks */

/* The lsn each of the last (up to n, at most 256) syncs made durable, oldest
 * first; *count = how many were written to out.  With sync=0 no fdatasync is
 * issued but the flusher still records what it published. */
int prl_log_sync_history(prl_log *log, uint64_t *out /* OUT */, uint32_t n,
                         uint64_t *count /* OUT */);

/* Failpoints, named after the place they break. */

/* The next `count` hits of failpoint `name` fail with errno `err` (count < 0:
 * all of them; err 0 clears).  0, or PRL_E_BAD_ARGUMENT for a name that is not
 * in the table of csrc/failpoint.c. */
int prl_failpoint_set(const char *name, int32_t err, int32_t count);

/* The i-th name of that table, or NULL past its end. */
const char *prl_failpoint_name(uint32_t i);

/* out[0..5] = segment header size, batch header size, record header size,
 * alignment, format version, highest record type: tests/test_format.py
 * checks pyraftlog/record.py against them. */
void prl_format_constants(uint32_t *out /* OUT: 6 values */);

/* ---- checksums */
uint32_t prl_crc32c(uint32_t crc, const void *buf, uint64_t len);
uint32_t prl_crc32c_sw(uint32_t crc, const void *buf, uint64_t len);
int prl_crc32c_hw(void);
uint32_t prl_crc32c_at(int level, uint32_t crc, const void *buf, uint64_t len);
uint32_t prl_batch_seed_of(uint64_t seq);

#endif
