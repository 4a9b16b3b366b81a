/* group_walk.c — walks over every group of the index, so that nothing
 * that touches all groups needs a Python object per group: purge's pinner
 * search, recovery's live-byte accounting, and replay of spans of entry and
 * hard-state records. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "group_index.h"

/* The full seq of a position, given the head segment (positions carry the
 * seq modulo 2^32; nothing the index holds is 2^32 segments behind). */
static uint64_t position_seq(uint64_t pos, uint64_t head) {
    return head - ((head - (pos >> 32)) & 0xffffffffu);
}

static int pins_at_or_before(uint64_t pos, uint64_t seq, uint64_t head) {
    return pos != PRL_POS_NONE && pos != PRL_POS_GUESSED && position_seq(pos, head) <= seq;
}

int prl_index_pinners(prl_index *ix, uint64_t seq, uint64_t head, uint32_t start, uint32_t count,
                      uint64_t *out, uint32_t *n, uint32_t *next) {
    uint32_t found = 0, k = start;
    for (; k < ix->ngroups && k - start < count; k++) {
        prl_group *g = prl_gi_at(ix, k);
        if ((g->n && pins_at_or_before(prl_gi_positions(g)[0], seq, head)) ||
            pins_at_or_before(g->hs_pos, seq, head) || pins_at_or_before(g->snap_pos, seq, head) ||
            pins_at_or_before(g->base_pos, seq, head))
            out[found++] = g->id;
    }
    *n = found;
    *next = k < ix->ngroups ? k : 0;
    return 0;
}

/* ------------------------------------- walks and replay without Python */

/* The records group g still needs besides its key-value space: entries,
 * hard state, snapshot and base (each position once: a snapshot's record is
 * also its base).  Writes them at out (when not NULL); returns how many. */
static uint64_t group_live(prl_group *g, uint64_t *out) {
    uint64_t n = g->n;
    if (out) memcpy(out, prl_gi_positions(g), n * 8);
    uint64_t pins[3] = {g->hs_pos, g->snap_pos, g->base_pos};
    for (int k = 0; k < 3; k++) {
        uint64_t p = pins[k];
        if (p == PRL_POS_NONE || p == PRL_POS_GUESSED) continue;
        if ((k >= 1 && p == pins[0]) || (k == 2 && p == pins[1])) continue;
        if (out) out[n] = p;
        n++;
    }
    return n;
}

int prl_index_live_count(prl_index *ix, uint64_t *n) {
    uint64_t total = 0;
    for (uint32_t k = 0; k < ix->ngroups; k++) total += group_live(prl_gi_at(ix, k), NULL);
    *n = total;
    return 0;
}

int prl_index_live_positions(prl_index *ix, uint64_t *out, uint64_t cap, uint64_t *n) {
    uint64_t total = 0;
    for (uint32_t k = 0; k < ix->ngroups; k++) {
        prl_group *g = prl_gi_at(ix, k);
        if (total + group_live(g, NULL) > cap) return PRL_E_BAD_ARGUMENT;
        total += group_live(g, out + total);
    }
    *n = total;
    return 0;
}

int prl_index_replay(prl_index *ix, uint64_t n, const uint8_t *types, const uint64_t *groups,
                     const uint64_t *indexes, const uint64_t *terms, const uint64_t *pos,
                     const uint64_t *votes) {
    uint64_t k = 0;
    while (k < n) {
        int rc;
        if (types[k] == PRL_REC_HARD_STATE) {
            rc = prl_index_hard_state(ix, groups[k], terms[k], votes[k], indexes[k], pos[k]);
            k++;
        } else if (types[k] == PRL_REC_ENTRY) {
            /* a run of one group's entries with consecutive indexes is one
             * append: the same as appending them one by one */
            uint64_t e = k + 1;
            while (e < n && types[e] == PRL_REC_ENTRY && groups[e] == groups[k] &&
                   indexes[e] == indexes[e - 1] + 1)
                e++;
            rc = prl_index_append(ix, groups[k], indexes[k], e - k, terms + k, pos + k);
            k = e;
        } else {
            return PRL_E_BAD_ARGUMENT;
        }
        if (rc) return rc;
    }
    return 0;
}
