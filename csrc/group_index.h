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

#endif
