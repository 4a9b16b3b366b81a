/* group_index.c — the per-group index (group_index.h): a group's storage
 * (positions and term runs, inline while small) and the rules by which
 * writes and replay change a group.  The table is in group_table.c, walks
 * over every group in group_walk.c.
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
#include <stdlib.h>
#include <string.h>

#include "group_index.h"

/* ------------------------------------------------------- group storage */

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
    memcpy(p, prl_gi_positions(g), (uint64_t)g->n * 8);
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
        int rc = prl_gi_release_many(ix, prl_gi_positions(g) + keep, g->n - keep);
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

static int set_hint(prl_index *ix, prl_group *g, uint64_t index, uint64_t term, uint64_t pos) {
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

static int guess_base(prl_index *ix, prl_group *g, uint64_t index) {
    int rc = truncate_from(ix, g, g->base_index + 1);
    if (!rc && g->base_pos != PRL_POS_NONE && g->base_pos != PRL_POS_GUESSED)
        /* The real base a guess replaces is the base again if the guess comes
         * back down to it (entries past a recycled gap, then a truncation
         * below them: found by make fuzz). */
        rc = set_hint(ix, g, g->base_index, g->base_term, g->base_pos);
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

int prl_index_info(prl_index *ix, uint64_t id, prl_group_info *out) {
    prl_group *g = prl_gi_lookup(ix, id);
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
    out->first_pos = g->n ? prl_gi_positions(g)[0] : 0;
    out->last_term = term_of(g, g->base_index + g->n);
    return 0;
}

int prl_index_bounds(prl_index *ix, uint64_t id, uint64_t *out) {
    prl_group *g = prl_gi_lookup(ix, id);
    if (!g) return PRL_E_NO_GROUP;
    out[0] = g->base_index;
    out[1] = g->base_term;
    out[2] = g->base_index + g->n;
    return 0;
}

int prl_index_term(prl_index *ix, uint64_t id, uint64_t i, uint64_t *term) {
    prl_group *g = prl_gi_lookup(ix, id);
    if (!g) return PRL_E_NO_GROUP;
    if (i < g->base_index || i > g->base_index + g->n) return PRL_E_BAD_ARGUMENT;
    *term = term_of(g, i);
    return 0;
}

int prl_index_range(prl_index *ix, uint64_t id, uint64_t lo, uint64_t hi, uint64_t *terms,
                    uint64_t *pos) {
    prl_group *g = prl_gi_lookup(ix, id);
    if (!g) return PRL_E_NO_GROUP;
    if (lo > hi || lo <= g->base_index || hi > g->base_index + g->n + 1) return PRL_E_BAD_ARGUMENT;
    if (pos) memcpy(pos, prl_gi_positions(g) + (lo - g->base_index - 1), (hi - lo) * 8);
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
    prl_group *g = prl_gi_create(ix, id);
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
    memcpy(prl_gi_positions(g) + g->n, pos, n * 8);
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
    prl_group *g = prl_gi_lookup(ix, id);
    if (!g) return 0;
    if (index > g->base_index) return truncate_from(ix, g, index);
    if (g->base_pos == PRL_POS_GUESSED) return guess_base(ix, g, index - 1);
    return 0;
}

static int set_base(prl_index *ix, prl_group *g, uint64_t index, uint64_t term, uint64_t pos) {
    if (g->base_pos != g->snap_pos) {
        int rc = prl_gi_release(ix, g->base_pos);
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
    prl_group *g = prl_gi_create(ix, id);
    if (!g) return -ENOMEM;
    if (g->base_pos == PRL_POS_GUESSED && index <= g->base_index) {
        if (index == g->base_index) { /* the record that really set the guessed base */
            g->base_term = term;
            g->base_pos = pos;
            return 0;
        }
        /* Below the guess: superseded since, or the base once the guess
         * comes down to it (entries re-appended just above it). */
        int rc = prl_gi_release(ix, pos);
        return rc ? rc : set_hint(ix, g, index, term, pos);
    }
    clear_hint(g);
    if (index <= g->base_index) return prl_gi_release(ix, pos);
    uint64_t drop = index - g->base_index < g->n ? index - g->base_index : g->n;
    uint64_t *p = prl_gi_positions(g);
    int rc = prl_gi_release_many(ix, p, drop);
    if (rc) return rc;
    memmove(p, p + drop, (g->n - drop) * 8);
    g->n -= (uint32_t)drop;
    ix->entries -= drop;
    return set_base(ix, g, index, term, pos);
}

int prl_index_snapshot(prl_index *ix, uint64_t id, uint64_t index, uint64_t term, uint64_t pos) {
    prl_group *g = prl_gi_create(ix, id);
    if (!g) return -ENOMEM;
    int rc = prl_gi_release_many(ix, prl_gi_positions(g), g->n);
    if (!rc) rc = prl_gi_release(ix, g->snap_pos);
    if (!rc && g->base_pos != g->snap_pos) rc = prl_gi_release(ix, g->base_pos);
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
    prl_group *g = prl_gi_create(ix, id);
    if (!g) return -ENOMEM;
    int rc = prl_gi_release(ix, g->hs_pos);
    if (rc) return rc;
    g->hs_term = term;
    g->hs_vote = vote;
    g->hs_commit = commit;
    g->hs_pos = pos;
    return 0;
}

int prl_index_create(prl_index *ix, uint64_t id) {
    return prl_gi_create(ix, id) ? 0 : -ENOMEM;
}

int prl_index_remove(prl_index *ix, uint64_t id) {
    prl_group *g = prl_gi_lookup(ix, id);
    if (!g) return PRL_E_NO_GROUP;
    int rc = prl_gi_release_many(ix, prl_gi_positions(g), g->n);
    if (!rc) rc = prl_gi_release(ix, g->hs_pos);
    if (!rc) rc = prl_gi_release(ix, g->snap_pos);
    if (!rc && g->base_pos != g->snap_pos) rc = prl_gi_release(ix, g->base_pos);
    if (rc) return rc;
    prl_gi_drop(ix, g);
    return 0;
}
