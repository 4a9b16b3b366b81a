/* format.h — the on-disk format of pyraftlog segment files, every byte.
 *
 * docs/FORMAT.md draws the same boxes; tests/test_format.py checks that the
 * Python view of these constants equals the C one.  All integers are
 * little-endian.  Every structure starts on an 8-byte boundary, so no 4- or
 * 8-byte word ever straddles a 512-byte sector: a length word is written whole
 * or not at all (etcd's WAL relies on the same property).
 *
 * A segment file `<seq as 16 hex digits>.seg` is preallocated to its full size
 * and holds:
 *
 *   +--------------------+  offset 0
 *   | segment header 64B |
 *   +--------------------+  offset 64
 *   | batch              |  each batch: header + records, length multiple of 8
 *   | batch              |
 *   | ...                |
 *   +--------------------+  first batch header that is all zero, or whose seq
 *   | zeros or leftovers |  is not this segment's (a recycled file's previous
 *   +--------------------+  life): the end of the segment's log.  The writer
 *                           zeroes the header slot after every batch it writes,
 *                           so after a clean stop the end is always a zero
 *                           header, whatever bytes lie further on.
 *
 * Segment header (64 bytes):
 *   0  u8[8] magic        "PRLSEG01"
 *   8  u32   version      PRL_FORMAT_VERSION
 *   12 u32   header_size  64
 *   16 u64   seq          segment sequence number, equal to the file name's
 *   24 u64   first_lsn    lsn of the first batch this segment will hold
 *   32 u64   segment_size size of the file in bytes
 *   40 u8[20] reserved    zero
 *   60 u32   crc          CRC-32C of bytes [0, 60)
 *
 * Batch header (32 bytes) — one checksum covers the whole batch, so a batch is
 * valid whole or not at all:
 *   0  u32 crc      CRC-32C of bytes [4, len), seeded with the segment seq
 *                   (prl_batch_seed) so that a batch left over from a recycled
 *                   file's previous life never validates (raft-engine v2,
 *                   SQLite WAL salts)
 *   4  u32 len      bytes of the whole batch, header and padding included;
 *                   a multiple of 8, >= 32
 *   8  u64 lsn      batch sequence number: +1 per batch across all segments
 *   16 u64 seq      the segment's seq again: tells leftovers from a torn write
 *   24 u32 count    number of records that follow
 *   28 u32 sync_lag lsn minus the durable lsn when the batch was written
 *                   (saturating).  lsn - sync_lag is a durability watermark:
 *                   every batch up to it had been acknowledged as durable.
 *                   Recovery uses it to tell a torn tail (nothing after the
 *                   break was ever acknowledged) from a corrupt batch that
 *                   had been acknowledged (a later batch's watermark covers it).
 *
 * Record header (32 bytes), then `len` payload bytes, then zero padding to 8:
 *   0  u8  type     PRL_REC_*
 *   1  u8  aux      entry type for PRL_REC_ENTRY, else 0
 *   2  u16 reserved zero
 *   4  u32 len      payload bytes
 *   8  u64 group
 *   16 u64 index
 *   24 u64 term
 *
 * Record payloads (all little-endian):
 *   ENTRY       the entry's data                        index, term: the entry's
 *   HARD_STATE  u64 vote                                index = commit, term
 *   SNAPSHOT    u64 data_size, u64 file_id, u32 data_crc, u32 n_voters,
 *               u32 n_learners, u32 n_voters_outgoing, u32 n_learners_next,
 *               u32 auto_leave, then the u64 node ids of the four lists in order
 *                                                       index, term: the snapshot's
 *   COMPACT     empty                                   index, term: compacted to
 *   TRUNCATE    empty                                   index: first dropped
 *   KV_PUT      u32 key_len, key, value
 *   KV_DELETE   key
 *   REMOVE_GROUP empty
 *   STAGE       the entry's data (a copy of an ENTRY    index, term: the entry's
 *               record, staged by a purge rewrite; it
 *               counts only once an ADOPT names it)
 *   ADOPT       u64 last, u64 stage_pos: the group's   index: first adopted
 *               entries index..last are the STAGE records of this group at
 *               positions >= stage_pos (a purge rewrite's final batch)
 */
#ifndef PRL_FORMAT_H
#define PRL_FORMAT_H

#include <stdint.h>

#define PRL_SEGMENT_MAGIC "PRLSEG01"   /* 8 bytes, no terminator on disk */
#define PRL_FORMAT_VERSION 1u
#define PRL_SEGMENT_HEADER_SIZE 64u
#define PRL_BATCH_HEADER_SIZE 32u
#define PRL_RECORD_HEADER_SIZE 32u
#define PRL_ALIGN 8u                   /* every structure starts 8-aligned */

/* Offsets are u32 in positions ((seq mod 2^32) << 32 | offset), so a segment is < 4 GiB;
 * 1 GiB is plenty and keeps a corrupt length from reaching far. */
#define PRL_MIN_SEGMENT_SIZE 4096u
#define PRL_MAX_SEGMENT_SIZE (1u << 30)

enum prl_record_type {
    PRL_REC_ENTRY = 1,
    PRL_REC_HARD_STATE = 2,
    PRL_REC_SNAPSHOT = 3,
    PRL_REC_COMPACT = 4,
    PRL_REC_TRUNCATE = 5,
    PRL_REC_KV_PUT = 6,
    PRL_REC_KV_DELETE = 7,
    PRL_REC_REMOVE_GROUP = 8,
    PRL_REC_STAGE = 9,
    PRL_REC_ADOPT = 10,
    PRL_REC_MAX = 10
};

struct prl_segment_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    uint64_t seq;
    uint64_t first_lsn;
    uint64_t segment_size;
    uint8_t reserved[20];
    uint32_t crc;
};

struct prl_batch_header {
    uint32_t crc;
    uint32_t len;
    uint64_t lsn;
    uint64_t seq;
    uint32_t count;
    uint32_t sync_lag;
};

struct prl_record_header {
    uint8_t type;
    uint8_t aux;
    uint16_t reserved;
    uint32_t len;
    uint64_t group;
    uint64_t index;
    uint64_t term;
};

_Static_assert(sizeof(struct prl_segment_header) == PRL_SEGMENT_HEADER_SIZE, "segment header");
_Static_assert(sizeof(struct prl_batch_header) == PRL_BATCH_HEADER_SIZE, "batch header");
_Static_assert(sizeof(struct prl_record_header) == PRL_RECORD_HEADER_SIZE, "record header");
_Static_assert(PRL_SEGMENT_HEADER_SIZE % PRL_ALIGN == 0, "aligned");

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pyraftlog writes its structures in host order and supports little-endian hosts only"
#endif

static inline uint64_t prl_pad8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

/* bytes a record with `len` payload bytes occupies on disk */
static inline uint64_t prl_record_size(uint32_t len) {
    return PRL_RECORD_HEADER_SIZE + prl_pad8(len);
}

/* The batch CRC seed: the segment seq folded to 32 bits, never 0. */
static inline uint32_t prl_batch_seed(uint64_t seq) {
    return (uint32_t)(seq ^ (seq >> 32)) ^ 0x9e3779b9u;
}

#endif
