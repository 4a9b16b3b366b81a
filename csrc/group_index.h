/* group_index.h — every group's state, in C: one hash table from group id
 * to a compact struct, nothing per group in Python.
 *
 * A group's entries are contiguous: entry base_index + 1 + k lives at
 * position pos[k] (docs/FORMAT.md: (seq mod 2^32) << 32 | offset).  Terms are
 * kept once per run of equal terms (run start, term).  A group with one
 * entry and one run keeps both inline: with a hard state it costs the
 * struct (120 bytes) and its hash slots, and no allocation.
 *
 * The same functions serve live writes and recovery replay (they are
 * pyraftlog/group_index.py's GroupState rules, moved here): each appends
 * the positions of records that stopped being needed to the index's release
 * list (live-byte accounting for segment recycling), which the caller takes
 * with prl_index_release_list and empties with prl_index_release_clear.
 *
 * Not thread-safe: the engine calls it with its lock held. */
#ifndef PRL_GROUP_INDEX_H
#define PRL_GROUP_INDEX_H

#include <stdint.h>

#include "pyraftlog.h"

#define PRL_POS_NONE 0u                 /* no record (a position is never 0) */
#define PRL_POS_GUESSED UINT64_MAX      /* a base replay inferred (never 8-aligned) */

typedef struct prl_group_extra {
    /* replay only: the newest compaction seen below a guessed base, adopted
     * if the base comes down to it (0 index and pos: none) */
    uint64_t hint_index, hint_term, hint_pos;
} prl_group_extra;

typedef struct prl_group {
    uint64_t id;
    uint64_t base_index, base_term; /* first_index - 1: snapshot or compaction point */
    uint64_t base_pos;              /* record that set the base; NONE or GUESSED */
    uint64_t hs_term, hs_vote, hs_commit, hs_pos;
    uint64_t snap_pos;              /* latest snapshot record (NONE: none) */
    union { uint64_t one; uint64_t *many; } pos;      /* inline while cap == 0 */
    union { uint64_t one[2]; uint64_t *many; } runs;  /* (start, term) pairs */
    uint32_t n, cap;                /* entries; allocated positions (0: inline) */
    uint32_t nruns, runcap;
    prl_group_extra *extra;
} prl_group;

/* the many-groups budget: a group with one entry and a hard state costs this
 * and ~6 bytes of hash slots (docs/ARCHITECTURE.md) */
_Static_assert(sizeof(prl_group) == 120, "prl_group grew");

/* ---- shared by group_table.c (the table), group_index.c (a group's rules)
 * and group_walk.c (walks over every group) */

#define PRL_GI_CHUNK_BITS 10 /* groups live in chunks of 1024: no reallocation of
                                the whole array as groups are added, at most one
                                chunk unused, and a group's address never changes */
#define PRL_GI_CHUNK (1u << PRL_GI_CHUNK_BITS)

struct prl_index {
    prl_group **chunks;  /* dense: group k at chunks[k / CHUNK][k % CHUNK] */
    uint32_t ngroups, nchunks, chunkcap;
    uint32_t *slots;     /* open addressing: 0 empty, else dense index + 1 */
    uint64_t nslots;     /* a power of two, at most 3/4 full */
    uint64_t entries;    /* live entries of all groups */
    uint64_t heap_bytes; /* positions and runs arrays, extras */
    uint64_t *rel;       /* the release list */
    uint64_t nrel, relcap;
};

static inline prl_group *prl_gi_at(const prl_index *ix, uint32_t k) {
    return &ix->chunks[k >> PRL_GI_CHUNK_BITS][k & (PRL_GI_CHUNK - 1)];
}

static inline uint64_t *prl_gi_positions(prl_group *g) {
    return g->cap ? g->pos.many : &g->pos.one;
}

prl_group *prl_gi_lookup(const prl_index *ix, uint64_t id); /* NULL: no such group */
prl_group *prl_gi_create(prl_index *ix, uint64_t id);       /* NULL: out of memory */
void prl_gi_drop(prl_index *ix, prl_group *g);              /* frees its storage too */
/* Appends to the release list (NONE and GUESSED are no records: skipped). */
int prl_gi_release(prl_index *ix, uint64_t pos);
int prl_gi_release_many(prl_index *ix, const uint64_t *p, uint64_t n);

#endif
