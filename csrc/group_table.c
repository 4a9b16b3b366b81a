/* group_table.c — the table of the per-group index (group_index.h): a hash
 * table (open addressing, backward-shift deletion) from group id to a dense
 * array of group structs kept in chunks; the index's lifetime, statistics
 * and its release list. */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "group_index.h"

/* ------------------------------------------------------------ hash table */

static uint64_t mix(uint64_t x) { /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* The slot holding group `id`, or the empty slot where it would go. */
static uint64_t find_slot(const prl_index *ix, uint64_t id) {
    uint64_t mask = ix->nslots - 1, i = mix(id) & mask;
    while (ix->slots[i] && prl_gi_at(ix, ix->slots[i] - 1)->id != id) i = (i + 1) & mask;
    return i;
}

prl_group *prl_gi_lookup(const prl_index *ix, uint64_t id) {
    uint32_t s = ix->slots[find_slot(ix, id)];
    return s ? prl_gi_at(ix, s - 1) : NULL;
}

static int rehash(prl_index *ix, uint64_t nslots) {
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots) return -ENOMEM;
    free(ix->slots);
    ix->slots = slots;
    ix->nslots = nslots;
    for (uint32_t k = 0; k < ix->ngroups; k++) ix->slots[find_slot(ix, prl_gi_at(ix, k)->id)] = k + 1;
    return 0;
}

prl_group *prl_gi_create(prl_index *ix, uint64_t id) {
    prl_group *g = prl_gi_lookup(ix, id);
    if (g) return g;
    if (ix->ngroups == UINT32_MAX - 1) return NULL;
    /* at most 3/4 full: linear probing stays short, slots cost ~6 B a group */
    if (4 * ((uint64_t)ix->ngroups + 1) > 3 * ix->nslots && rehash(ix, ix->nslots * 2)) return NULL;
    if (ix->ngroups == (uint64_t)ix->nchunks * PRL_GI_CHUNK) {
        if (ix->nchunks == ix->chunkcap) {
            uint32_t cap = ix->chunkcap ? 2 * ix->chunkcap : 4;
            prl_group **cs = realloc(ix->chunks, (size_t)cap * sizeof *cs);
            if (!cs) return NULL;
            ix->chunks = cs;
            ix->chunkcap = cap;
        }
        prl_group *c = malloc(PRL_GI_CHUNK * sizeof *c);
        if (!c) return NULL;
        ix->chunks[ix->nchunks++] = c;
    }
    g = prl_gi_at(ix, ix->ngroups);
    memset(g, 0, sizeof *g);
    g->id = id;
    ix->slots[find_slot(ix, id)] = ++ix->ngroups;
    return g;
}

static void free_group(prl_index *ix, prl_group *g) {
    if (g->cap) {
        free(g->pos.many);
        ix->heap_bytes -= (uint64_t)g->cap * 8;
    }
    if (g->runcap) {
        free(g->runs.many);
        ix->heap_bytes -= (uint64_t)g->runcap * 16;
    }
    if (g->extra) {
        free(g->extra);
        ix->heap_bytes -= sizeof *g->extra;
    }
    ix->entries -= g->n;
}

/* Deletes group `g` from the table (backward-shift deletion: no tombstones)
 * and the dense array (the last group moves into its place). */
void prl_gi_drop(prl_index *ix, prl_group *g) {
    uint64_t mask = ix->nslots - 1, i = find_slot(ix, g->id);
    uint32_t k = ix->slots[i] - 1;
    ix->slots[i] = 0;
    for (uint64_t j = (i + 1) & mask; ix->slots[j]; j = (j + 1) & mask) {
        uint64_t home = mix(prl_gi_at(ix, ix->slots[j] - 1)->id) & mask;
        /* move j back to i unless its home lies cyclically in (i, j] */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            ix->slots[i] = ix->slots[j];
            ix->slots[j] = 0;
            i = j;
        }
    }
    free_group(ix, g);
    uint32_t last = --ix->ngroups;
    if (k != last) {
        *prl_gi_at(ix, k) = *prl_gi_at(ix, last);
        ix->slots[find_slot(ix, prl_gi_at(ix, k)->id)] = k + 1;
    }
}

/* ---------------------------------------------------------- release list */

int prl_gi_release(prl_index *ix, uint64_t pos) {
    if (pos == PRL_POS_NONE || pos == PRL_POS_GUESSED) return 0;
    if (ix->nrel == ix->relcap) {
        uint64_t cap = ix->relcap ? ix->relcap * 2 : 256;
        uint64_t *r = realloc(ix->rel, cap * 8);
        if (!r) return -ENOMEM;
        ix->rel = r;
        ix->relcap = cap;
    }
    ix->rel[ix->nrel++] = pos;
    return 0;
}

int prl_gi_release_many(prl_index *ix, const uint64_t *p, uint64_t n) {
    for (uint64_t k = 0; k < n; k++) {
        int rc = prl_gi_release(ix, p[k]);
        if (rc) return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- API */

int prl_index_new(prl_index **out) {
    prl_index *ix = calloc(1, sizeof *ix);
    if (!ix) return -ENOMEM;
    ix->nslots = 16;
    ix->slots = calloc(ix->nslots, sizeof *ix->slots);
    if (!ix->slots) {
        free(ix);
        return -ENOMEM;
    }
    *out = ix;
    return 0;
}

void prl_index_free(prl_index *ix) {
    if (!ix) return;
    for (uint32_t k = 0; k < ix->ngroups; k++) free_group(ix, prl_gi_at(ix, k));
    for (uint32_t c = 0; c < ix->nchunks; c++) free(ix->chunks[c]);
    free(ix->chunks);
    free(ix->slots);
    free(ix->rel);
    free(ix);
}

int prl_index_stats(prl_index *ix, prl_index_stats_t *out) {
    out->groups = ix->ngroups;
    out->entries = ix->entries;
    out->nbytes = sizeof *ix + (uint64_t)ix->nchunks * PRL_GI_CHUNK * sizeof(prl_group) +
                  (uint64_t)ix->chunkcap * sizeof(prl_group *) + ix->nslots * 4 +
                  ix->heap_bytes + ix->relcap * 8;
    return 0;
}

int prl_index_ids(prl_index *ix, uint64_t *out, uint64_t cap) {
    if (cap < ix->ngroups) return PRL_E_BAD_ARGUMENT;
    for (uint32_t k = 0; k < ix->ngroups; k++) out[k] = prl_gi_at(ix, k)->id;
    return 0;
}

int prl_index_release(prl_index *ix, uint64_t n, const uint64_t *pos) {
    return prl_gi_release_many(ix, pos, n);
}

int prl_index_release_list(prl_index *ix, const uint64_t **list, uint64_t *n) {
    *list = ix->rel;
    *n = ix->nrel;
    return 0;
}

void prl_index_trim(void) { malloc_trim(0); }

void prl_index_release_clear(prl_index *ix) {
    ix->nrel = 0;
    if (ix->relcap > 65536) { /* a purge or a replay released a lot: give it back */
        free(ix->rel);
        ix->rel = NULL;
        ix->relcap = 0;
    }
}
