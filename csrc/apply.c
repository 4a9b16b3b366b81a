/* apply.c — what records do to the group index, for both sides of the log:
 * the write path applies a batch once it is written (batch.c), recovery
 * applies every batch it replays (replay.c), with this same function, so a
 * replayed log rebuilds what the writes built.
 *
 * Python keeps a part of some records (pyraftlog/group_index.py: a
 * snapshot's metadata and file reference, the key-value space, what a
 * removal forgets, a purge rewrite's staged entries).  C applies its own
 * part of them here; the write path's Python side knows the batch and does
 * the rest, replay reports them (prl_apply_report) and Python applies them
 * after the call, in log order.  That is the log's order as long as no C
 * change made later in the call depends on them; only an ADOPT's does (it
 * appends the staged entries to the C index), so replay stops after one. */
#include <string.h>

#include "replay.h"

static uint64_t u64_at(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static struct prl_record_header header_at(const uint8_t *p) {
    struct prl_record_header h;
    memcpy(&h, p, sizeof h);
    return h;
}

/* Records Python has a part in. */
static int pythons(uint8_t type) {
    return type == PRL_REC_SNAPSHOT || type == PRL_REC_KV_PUT || type == PRL_REC_KV_DELETE ||
           type == PRL_REC_REMOVE_GROUP || type == PRL_REC_STAGE || type == PRL_REC_ADOPT;
}

static prl_replay_item *report(prl_apply_report *rep, const struct prl_record_header *h,
                               uint64_t pos) {
    prl_replay_item *it = &rep->items[rep->n_items++];
    memset(it, 0, sizeof *it);
    it->type = h->type;
    it->group = h->group;
    it->index = h->index;
    it->term = h->term;
    it->pos = pos;
    it->len = h->len;
    return it;
}

/* Entries start.. of group g where the write path puts them: above the
 * base, at most one past the last entry (prl_batch_check refuses a gap and
 * leaves out entries at or below the base).  Anything else is a replay of a
 * log whose oldest segments were recycled: the index then guesses a base
 * or skips entries, and replay.c must count live bytes another way. */
static int as_written(prl_index *ix, uint64_t g, uint64_t start) {
    uint64_t b[3] = {0, 0, 0}; /* no group: base 0, last 0 */
    prl_index_bounds(ix, g, b);
    return start > b[0] && start <= b[2] + 1;
}

int prl_apply(prl_index *ix, const prl_records *r, uint32_t from, uint32_t *done) {
    const uint8_t *buf = r->buf;
    prl_apply_report *rep = r->report;
    uint64_t off = 0;
    uint32_t k = 0;
    for (; k < from; k++) off += prl_record_size(header_at(buf + off).len);
    int rc = 0;
    while (k < r->n && !rc) {
        struct prl_record_header h = header_at(buf + off);
        uint64_t size = prl_record_size(h.len);
        if (r->keep && !r->keep[k]) {
            off += size;
            k++;
            continue;
        }
        uint64_t p = r->positions ? r->positions[k] : r->pos_base + off;
        if (rep && pythons(h.type) &&
            (rep->n_items == rep->cap_items ||
             (h.type == PRL_REC_STAGE && rep->n_stage == rep->cap_stage)))
            break; /* full: Python empties the report and calls again from k */
        if (h.type == PRL_REC_ENTRY || h.type == PRL_REC_STAGE) {
            /* Runs of one group's records with consecutive indexes go in as
             * one append (the same as one by one), or one STAGE report. */
            uint64_t run = 0, o = off;
            uint32_t j = k;
            uint64_t *terms = r->terms, *pos = r->pos, cap = r->cap;
            if (h.type == PRL_REC_STAGE) {
                if (!rep) return PRL_E_BAD_ARGUMENT; /* only purge writes stage, not batches */
                terms = rep->stage_terms + rep->n_stage;
                pos = rep->stage_pos + rep->n_stage;
                cap = rep->cap_stage - rep->n_stage;
            }
            for (; j < r->n && run < cap; j++) {
                struct prl_record_header e = header_at(buf + o);
                if ((r->keep && !r->keep[j]) || e.type != h.type || e.group != h.group ||
                    e.index != h.index + run)
                    break;
                terms[run] = e.term;
                pos[run++] = r->positions ? r->positions[j] : r->pos_base + o;
                o += prl_record_size(e.len);
            }
            if (h.type == PRL_REC_STAGE) {
                prl_replay_item *it = report(rep, &h, p);
                it->first = rep->n_stage;
                it->count = (uint32_t)run;
                rep->n_stage += (uint32_t)run;
            } else {
                if (rep && !rep->irregular && !as_written(ix, h.group, h.index)) rep->irregular = 1;
                rc = prl_index_append(ix, h.group, h.index, run, terms, pos);
            }
            off = o;
            k = j;
            continue;
        }
        switch (h.type) {
        case PRL_REC_HARD_STATE: /* the payload is the vote (8 bytes: checked by the caller) */
            rc = prl_index_hard_state(ix, h.group, h.term,
                                      h.len >= 8 ? u64_at(buf + off + PRL_RECORD_HEADER_SIZE) : 0,
                                      h.index, p);
            break;
        case PRL_REC_SNAPSHOT: /* Python: the metadata and file reference */
            rc = prl_index_snapshot(ix, h.group, h.index, h.term, p);
            break;
        case PRL_REC_COMPACT:
            rc = prl_index_compact(ix, h.group, h.index, h.term, p);
            break;
        case PRL_REC_TRUNCATE:
            rc = prl_index_truncate(ix, h.group, h.index);
            if (!rc) rc = prl_index_release(ix, 1, &p);
            break;
        case PRL_REC_KV_PUT:
            rc = prl_index_create(ix, h.group); /* the key-value space is Python's */
            break;
        case PRL_REC_KV_DELETE:
            rc = prl_index_release(ix, 1, &p);
            break;
        case PRL_REC_REMOVE_GROUP: /* Python: the key-value space, the snapshot metadata */
            rc = prl_index_remove(ix, h.group);
            if (rc == PRL_E_NO_GROUP) rc = 0;
            if (!rc) rc = prl_index_release(ix, 1, &p);
            break;
        case PRL_REC_ADOPT: /* Python's: the staged entries */
            if (!rep) return PRL_E_BAD_ARGUMENT;
            break;
        default:
            return PRL_E_BAD_ARGUMENT; /* the caller checked the types */
        }
        off += size;
        k++;
        if (!rc && rep && pythons(h.type)) {
            report(rep, &h, p);
            if (h.type == PRL_REC_ADOPT) {
                rep->stop = 1;
                break;
            }
        }
    }
    *done = k;
    return rc;
}
