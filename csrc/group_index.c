/* group_index.c — the per-group index (group_index.h): a hash table from
 * group id to a dense array of compact group structs, and the rules by
 * which writes and replay change a group.
 *
 * Replay of a log whose oldest segments were recycled starts in the middle
 * of a group's history: the records its first entries followed may be
 * gone, and dead records (superseded later) come back for a while.  When
 * entries arrive with nothing before them, the base (compaction point) is
 * guessed (base_pos = GUESSED, term 0).  A guessed base gives way: entries,
 * truncations and compactions below it move it down (they were valid when
 * written, so the guess was too high), and the compact or snapshot record
 * that really set the base names it.  The live records always rebuild the
 * final state: the newest base record is live, and so is every entry above
 * it (docs/ARCHITECTURE.md). */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "group_index.h"
#include "pyraftlog.h"

#define CHUNK_BITS 10 /* groups live in chunks of 1024: no reallocation of the
                         whole array as groups are added, at most one chunk
                         unused, and a group's address never changes */
#define CHUNK (1u << CHUNK_BITS)

/* the many-groups budget: a group with one entry and a hard state costs this
 * and ~6 bytes of hash slots (docs/ARCHITECTURE.md) */
_Static_assert(sizeof(prl_group) == 120, "prl_group grew");

struct prl_index {
    prl_group **chunks;  /* dense: group k at chunks[k / CHUNK][k % CHUNK] */
    uint32_t ngroups, nchunks, chunkcap;
    uint32_t *slots;     /* open addressing: 0 empty, else dense index + 1 */
    uint64_t nslots;     /* a power of two, at most half full */
    uint64_t entries;    /* live entries of all groups */
    uint64_t heap_bytes; /* positions and runs arrays, extras */
    uint64_t *rel;       /* the release list */
    uint64_t nrel, relcap;
};

/* ------------------------------------------------------------ hash table */

static prl_group *at(const prl_index *ix, uint32_t k) {
    return &ix->chunks[k >> CHUNK_BITS][k & (CHUNK - 1)];
}

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
    while (ix->slots[i] && at(ix, ix->slots[i] - 1)->id != id) i = (i + 1) & mask;
    return i;
}

static prl_group *lookup(const prl_index *ix, uint64_t id) {
    uint32_t s = ix->slots[find_slot(ix, id)];
    return s ? at(ix, s - 1) : NULL;
}

static int rehash(prl_index *ix, uint64_t nslots) {
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots) return -ENOMEM;
    free(ix->slots);
    ix->slots = slots;
    ix->nslots = nslots;
    for (uint32_t k = 0; k < ix->ngroups; k++) ix->slots[find_slot(ix, at(ix, k)->id)] = k + 1;
    return 0;
}

static prl_group *create(prl_index *ix, uint64_t id) {
    prl_group *g = lookup(ix, id);
    if (g) return g;
    if (ix->ngroups == UINT32_MAX - 1) return NULL;
    /* at most 3/4 full: linear probing stays short, slots cost ~6 B a group */
    if (4 * ((uint64_t)ix->ngroups + 1) > 3 * ix->nslots && rehash(ix, ix->nslots * 2)) return NULL;
    if (ix->ngroups == (uint64_t)ix->nchunks * CHUNK) {
        if (ix->nchunks == ix->chunkcap) {
            uint32_t cap = ix->chunkcap ? 2 * ix->chunkcap : 4;
            prl_group **cs = realloc(ix->chunks, (size_t)cap * sizeof *cs);
            if (!cs) return NULL;
            ix->chunks = cs;
            ix->chunkcap = cap;
        }
        prl_group *c = malloc(CHUNK * sizeof *c);
        if (!c) return NULL;
        ix->chunks[ix->nchunks++] = c;
    }
    g = at(ix, ix->ngroups);
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
static void drop(prl_index *ix, prl_group *g) {
    uint64_t mask = ix->nslots - 1, i = find_slot(ix, g->id);
    uint32_t k = ix->slots[i] - 1;
    ix->slots[i] = 0;
    for (uint64_t j = (i + 1) & mask; ix->slots[j]; j = (j + 1) & mask) {
        uint64_t home = mix(at(ix, ix->slots[j] - 1)->id) & mask;
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
        *at(ix, k) = *at(ix, last);
        ix->slots[find_slot(ix, at(ix, k)->id)] = k + 1;
    }
}

/* ------------------------------------------------------- group storage */

static uint64_t *positions(prl_group *g) { return g->cap ? g->pos.many : &g->pos.one; }
static uint64_t *runs(prl_group *g) { return g->runcap ? g->runs.many : g->runs.one; }

/* Growth by a quarter (and at least 4): appends stay amortised O(1), and
 * the spare room costs ~1 byte per live entry on average (doubling: ~4). */
static uint64_t grown(uint64_t have, uint64_t need) {
    uint64_t cap = have + have / 4 + 4;
    return cap > need ? cap : need;
}

static int reserve_pos(prl_index *ix, prl_group *g, uint64_t need) {
    uint64_t have = g->cap ? g->cap : 1;
    if (need <= have) return 0;
    if (need > UINT32_MAX) return -E2BIG;
    uint64_t cap = grown(have, need);
    if (cap > UINT32_MAX) cap = UINT32_MAX;
    uint64_t *p = malloc(cap * 8);
    if (!p) return -ENOMEM;
    memcpy(p, positions(g), (uint64_t)g->n * 8);
    if (g->cap) free(g->pos.many);
    ix->heap_bytes += (cap - g->cap) * 8;
    g->pos.many = p;
    g->cap = (uint32_t)cap;
    return 0;
}

static int reserve_runs(prl_index *ix, prl_group *g, uint64_t need) {
    uint64_t have = g->runcap ? g->runcap : 1;
    if (need <= have) return 0;
    if (need > UINT32_MAX) return -E2BIG;
    uint64_t cap = grown(have, need);
    if (cap > UINT32_MAX) cap = UINT32_MAX;
    uint64_t *r = malloc(cap * 16);
    if (!r) return -ENOMEM;
    memcpy(r, runs(g), (uint64_t)g->nruns * 16);
    if (g->runcap) free(g->runs.many);
    ix->heap_bytes += (cap - g->runcap) * 16;
    g->runs.many = r;
    g->runcap = (uint32_t)cap;
    return 0;
}

/* Gives back storage a group no longer needs (a compacted or emptied group). */
static void shrink(prl_index *ix, prl_group *g) {
    if (g->cap && g->n <= 1) {
        uint64_t one = g->n ? g->pos.many[0] : 0;
        free(g->pos.many);
        ix->heap_bytes -= (uint64_t)g->cap * 8;
        g->cap = 0;
        g->pos.one = one;
    }
    if (g->runcap && g->nruns <= 1) {
        uint64_t a = g->nruns ? g->runs.many[0] : 0, b = g->nruns ? g->runs.many[1] : 0;
        free(g->runs.many);
        ix->heap_bytes -= (uint64_t)g->runcap * 16;
        g->runcap = 0;
        g->runs.one[0] = a;
        g->runs.one[1] = b;
    }
}

static int release(prl_index *ix, uint64_t pos) {
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

static int release_many(prl_index *ix, const uint64_t *p, uint64_t n) {
    for (uint64_t k = 0; k < n; k++) {
        int rc = release(ix, p[k]);
        if (rc) return rc;
    }
    return 0;
}

/* The first run whose start is > i (runs are sorted by start). */
static uint32_t runs_after(prl_group *g, uint64_t i) {
    uint64_t *r = runs(g);
    uint32_t lo = 0, hi = g->nruns;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r[2 * mid] <= i) lo = mid + 1; else hi = mid;
    }
    return lo;
}

static uint64_t term_of(prl_group *g, uint64_t i) {
    if (i == g->base_index) return g->base_term;
    uint32_t j = runs_after(g, i);
    return j ? runs(g)[2 * (j - 1) + 1] : 0;
}

static int push_run(prl_index *ix, prl_group *g, uint64_t start, uint64_t term) {
    int rc = reserve_runs(ix, g, (uint64_t)g->nruns + 1);
    if (rc) return rc;
    uint64_t *r = runs(g);
    r[2 * g->nruns] = start;
    r[2 * g->nruns + 1] = term;
    g->nruns++;
    return 0;
}

/* Drops entries >= i (i > base_index). */
static int truncate_from(prl_index *ix, prl_group *g, uint64_t i) {
    uint64_t keep = i - g->base_index - 1;
    if (keep < g->n) {
        int rc = release_many(ix, positions(g) + keep, g->n - keep);
        if (rc) return rc;
        ix->entries -= g->n - keep;
        g->n = (uint32_t)keep;
    }
    /* the runs starting at or above i; with no entry left, every run (one
     * starting at or below the base describes no entry either) */
    uint32_t j = 0, lo = 0, hi = g->nruns;
    uint64_t *r = runs(g);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r[2 * mid] < i) lo = mid + 1; else hi = mid;
    }
    j = lo;
    g->nruns = g->n ? j : 0;
    shrink(ix, g);
    return 0;
}

static int guess_base(prl_index *ix, prl_group *g, uint64_t index) {
    int rc = truncate_from(ix, g, g->base_index + 1);
    if (!rc && g->base_pos != g->snap_pos) rc = release(ix, g->base_pos);
    if (rc) return rc;
    g->base_index = index;
    g->base_term = 0;
    g->base_pos = PRL_POS_GUESSED;
    prl_group_extra *x = g->extra;
    if (x && x->hint_pos && x->hint_index == index) {
        /* a compaction seen while the guess was higher: it set this base */
        g->base_term = x->hint_term;
        g->base_pos = x->hint_pos;
        x->hint_pos = x->hint_index = x->hint_term = 0;
    }
    return 0;
}

/* Before entries start.. are applied: how many leading ones to skip (at
 * or below a known base), after moving a guessed base if needed. */
static int replay_prepare(prl_index *ix, prl_group *g, uint64_t start, uint64_t *skip) {
    *skip = 0;
    if (start <= g->base_index) {
        if (g->base_pos != PRL_POS_GUESSED) {
            *skip = g->base_index + 1 - start;
            return 0;
        }
        return guess_base(ix, g, start - 1);
    }
    if (start > g->base_index + g->n + 1) return guess_base(ix, g, start - 1);
    return 0;
}

static void clear_hint(prl_group *g) {
    if (g->extra) g->extra->hint_pos = g->extra->hint_index = g->extra->hint_term = 0;
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
    for (uint32_t k = 0; k < ix->ngroups; k++) free_group(ix, at(ix, k));
    for (uint32_t c = 0; c < ix->nchunks; c++) free(ix->chunks[c]);
    free(ix->chunks);
    free(ix->slots);
    free(ix->rel);
    free(ix);
}

int prl_index_stats(prl_index *ix, prl_index_stats_t *out) {
    out->groups = ix->ngroups;
    out->entries = ix->entries;
    out->nbytes = sizeof *ix + (uint64_t)ix->nchunks * CHUNK * sizeof(prl_group) +
                  (uint64_t)ix->chunkcap * sizeof(prl_group *) + ix->nslots * 4 +
                  ix->heap_bytes + ix->relcap * 8;
    return 0;
}

int prl_index_ids(prl_index *ix, uint64_t *out, uint64_t cap) {
    if (cap < ix->ngroups) return PRL_E_BAD_ARGUMENT;
    for (uint32_t k = 0; k < ix->ngroups; k++) out[k] = at(ix, k)->id;
    return 0;
}

int prl_index_info(prl_index *ix, uint64_t id, prl_group_info *out) {
    prl_group *g = lookup(ix, id);
    if (!g) return PRL_E_NO_GROUP;
    out->base_index = g->base_index;
    out->base_term = g->base_term;
    out->base_pos = g->base_pos;
    out->last_index = g->base_index + g->n;
    out->n = g->n;
    out->hs_term = g->hs_term;
    out->hs_vote = g->hs_vote;
    out->hs_commit = g->hs_commit;
    out->hs_pos = g->hs_pos;
    out->snap_pos = g->snap_pos;
    out->first_pos = g->n ? positions(g)[0] : 0;
    out->last_term = term_of(g, g->base_index + g->n);
    return 0;
}

int prl_index_bounds(prl_index *ix, uint64_t id, uint64_t *out) {
    prl_group *g = lookup(ix, id);
    if (!g) return PRL_E_NO_GROUP;
    out[0] = g->base_index;
    out[1] = g->base_term;
    out[2] = g->base_index + g->n;
    return 0;
}

int prl_index_term(prl_index *ix, uint64_t id, uint64_t i, uint64_t *term) {
    prl_group *g = lookup(ix, id);
    if (!g) return PRL_E_NO_GROUP;
    if (i < g->base_index || i > g->base_index + g->n) return PRL_E_BAD_ARGUMENT;
    *term = term_of(g, i);
    return 0;
}

int prl_index_range(prl_index *ix, uint64_t id, uint64_t lo, uint64_t hi, uint64_t *terms,
                    uint64_t *pos) {
    prl_group *g = lookup(ix, id);
    if (!g) return PRL_E_NO_GROUP;
    if (lo > hi || lo <= g->base_index || hi > g->base_index + g->n + 1) return PRL_E_BAD_ARGUMENT;
    if (pos) memcpy(pos, positions(g) + (lo - g->base_index - 1), (hi - lo) * 8);
    if (terms && lo < hi) {
        uint64_t *r = runs(g);
        uint32_t j = runs_after(g, lo); /* one past the run holding lo */
        if (!j) return PRL_E_BAD_ARGUMENT; /* no run covers lo: cannot happen */
        j--;
        for (uint64_t i = lo; i < hi; i++) {
            while (j + 1 < g->nruns && r[2 * (j + 1)] <= i) j++;
            terms[i - lo] = r[2 * j + 1];
        }
    }
    return 0;
}

int prl_index_append(prl_index *ix, uint64_t id, uint64_t start, uint64_t n,
                     const uint64_t *terms, const uint64_t *pos) {
    prl_group *g = create(ix, id);
    if (!g) return -ENOMEM;
    if (!n) return 0;
    int rc = 0;
    uint64_t skip = 0;
    int kept;
    if (g->n && start == g->base_index + g->n + 1) {
        kept = 1; /* the common case: new entries right after the last one */
    } else {
        rc = replay_prepare(ix, g, start, &skip);
        if (rc) return rc;
        if (skip >= n) return 0;
        terms += skip;
        pos += skip;
        n -= skip;
        start += skip;
        rc = truncate_from(ix, g, start);
        if (rc) return rc;
        kept = g->n > 0;
    }
    rc = reserve_pos(ix, g, (uint64_t)g->n + n);
    if (rc) return rc;
    memcpy(positions(g) + g->n, pos, n * 8);
    g->n += (uint32_t)n;
    ix->entries += n;
    uint64_t last = kept && g->nruns ? runs(g)[2 * g->nruns - 1] : 0;
    int have = kept && g->nruns;
    for (uint64_t k = 0; k < n && !rc; k++) {
        if (!have || terms[k] != last) {
            rc = push_run(ix, g, start + k, terms[k]);
            last = terms[k];
            have = 1;
        }
    }
    return rc;
}

int prl_index_truncate(prl_index *ix, uint64_t id, uint64_t index) {
    prl_group *g = lookup(ix, id);
    if (!g) return 0;
    if (index > g->base_index) return truncate_from(ix, g, index);
    if (g->base_pos == PRL_POS_GUESSED) return guess_base(ix, g, index - 1);
    return 0;
}

static int set_base(prl_index *ix, prl_group *g, uint64_t index, uint64_t term, uint64_t pos) {
    if (g->base_pos != g->snap_pos) {
        int rc = release(ix, g->base_pos);
        if (rc) return rc;
    }
    g->base_index = index;
    g->base_term = term;
    g->base_pos = pos;
    /* runs that end before index + 1 go */
    uint32_t j = runs_after(g, index + 1);
    if (j > 1) {
        uint64_t *r = runs(g);
        memmove(r, r + 2 * (j - 1), (uint64_t)(g->nruns - (j - 1)) * 16);
        g->nruns -= j - 1;
    }
    shrink(ix, g);
    return 0;
}

int prl_index_compact(prl_index *ix, uint64_t id, uint64_t index, uint64_t term, uint64_t pos) {
    prl_group *g = create(ix, id);
    if (!g) return -ENOMEM;
    if (g->base_pos == PRL_POS_GUESSED && index <= g->base_index) {
        if (index == g->base_index) { /* the record that really set the guessed base */
            g->base_term = term;
            g->base_pos = pos;
            return 0;
        }
        /* Below the guess: superseded since, or the base once the guess
         * comes down to it (entries re-appended just above it). */
        int rc = release(ix, pos);
        if (rc) return rc;
        if (!g->extra) {
            g->extra = calloc(1, sizeof *g->extra);
            if (!g->extra) return -ENOMEM;
            ix->heap_bytes += sizeof *g->extra;
        }
        g->extra->hint_index = index;
        g->extra->hint_term = term;
        g->extra->hint_pos = pos;
        return 0;
    }
    clear_hint(g);
    if (index <= g->base_index) return release(ix, pos);
    uint64_t drop = index - g->base_index < g->n ? index - g->base_index : g->n;
    uint64_t *p = positions(g);
    int rc = release_many(ix, p, drop);
    if (rc) return rc;
    memmove(p, p + drop, (g->n - drop) * 8);
    g->n -= (uint32_t)drop;
    ix->entries -= drop;
    return set_base(ix, g, index, term, pos);
}

int prl_index_snapshot(prl_index *ix, uint64_t id, uint64_t index, uint64_t term, uint64_t pos) {
    prl_group *g = create(ix, id);
    if (!g) return -ENOMEM;
    int rc = release_many(ix, positions(g), g->n);
    if (!rc) rc = release(ix, g->snap_pos);
    if (!rc && g->base_pos != g->snap_pos) rc = release(ix, g->base_pos);
    if (rc) return rc;
    ix->entries -= g->n;
    g->n = 0;
    g->nruns = 0;
    shrink(ix, g);
    clear_hint(g);
    g->snap_pos = pos;
    g->base_index = index;
    g->base_term = term;
    g->base_pos = pos;
    return 0;
}

int prl_index_hard_state(prl_index *ix, uint64_t id, uint64_t term, uint64_t vote,
                         uint64_t commit, uint64_t pos) {
    prl_group *g = create(ix, id);
    if (!g) return -ENOMEM;
    int rc = release(ix, g->hs_pos);
    if (rc) return rc;
    g->hs_term = term;
    g->hs_vote = vote;
    g->hs_commit = commit;
    g->hs_pos = pos;
    return 0;
}

int prl_index_create(prl_index *ix, uint64_t id) {
    return create(ix, id) ? 0 : -ENOMEM;
}

int prl_index_remove(prl_index *ix, uint64_t id) {
    prl_group *g = lookup(ix, id);
    if (!g) return PRL_E_NO_GROUP;
    int rc = release_many(ix, positions(g), g->n);
    if (!rc) rc = release(ix, g->hs_pos);
    if (!rc) rc = release(ix, g->snap_pos);
    if (!rc && g->base_pos != g->snap_pos) rc = release(ix, g->base_pos);
    if (rc) return rc;
    drop(ix, g);
    return 0;
}

int prl_index_release(prl_index *ix, uint64_t n, const uint64_t *pos) {
    return release_many(ix, pos, n);
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
        prl_group *g = at(ix, k);
        if ((g->n && pins_at_or_before(positions(g)[0], seq, head)) ||
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
    if (out) memcpy(out, positions(g), n * 8);
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
    for (uint32_t k = 0; k < ix->ngroups; k++) total += group_live(at(ix, k), NULL);
    *n = total;
    return 0;
}

int prl_index_live_positions(prl_index *ix, uint64_t *out, uint64_t cap, uint64_t *n) {
    uint64_t total = 0;
    for (uint32_t k = 0; k < ix->ngroups; k++) {
        prl_group *g = at(ix, k);
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
