/* mask.c — the token mask of a matcher state, by walking the vocabulary
 * trie (a rejected prefix skips its whole subtree).
 *
 * Context-independent tokens, in the manner of xgrammar: the mask of a
 * state is the union over its stacks, and for a stack `base + top` (top:
 * its last GR_SEGMENT elements) most tokens are decided by the top alone:
 * those consumed before the top can end (accepted), and those rejected
 * before it could. Per top segment (cached in the grammar, keyed by the
 * segment) a walk from the stack [top] records the accepted tokens and the
 * trie nodes where the top can end with bytes still to come. A state's mask
 * is then the segments' accepted sets plus, from each such node, a walk of
 * its subtree continuing from the expanded base. Inside a JSON string those
 * walks cover only the tokens that close the string, and the string's
 * segment is shared by every nesting depth and position it appears at.
 * (A bounded string, json-char{0,N}, still has one segment per remaining
 * length: each is one cold walk the first time.) */
#include <stdlib.h>
#include <string.h>

#include "grammar/vocab.h"

/* Stack elements per segment: the top three cover a string's character,
 * its repetition and its closing quote, so the segment ends only when the
 * string does. */
#define GR_SEGMENT 3

bool gr_mask_ws_init(gr_mask_ws *ws, const ci_grammar_vocab *v) {
    memset(ws, 0, sizeof *ws);
    ws->n_depth = v->max_len + 1;
    ws->limit = GR_INF;
    ws->ids = calloc(ws->n_depth, sizeof *ws->ids);
    ws->bufs = calloc(ws->n_depth, sizeof *ws->bufs);
    return ws->ids && ws->bufs;
}

void gr_mask_ws_free(gr_mask_ws *ws) {
    gr_work_free(&ws->w);
    gr_memo_free(&ws->memo);
    free(ws->ids);
    if (ws->bufs)
        for (uint32_t i = 0; i < ws->n_depth; i++)
            gr_buf_free(&ws->bufs[i]);
    free(ws->bufs);
    gr_buf_free(&ws->base);
    gr_buf_free(&ws->ent);
    gr_buf_free(&ws->rec);
    gr_buf_free(&ws->seg);
}

/* The state after trie node nd (parent state at depth d - 1): through the
 * memo for an ASCII byte from a whole-character state; directly into the
 * depth's buffer otherwise, interning the result once its character is
 * complete. (Interning the states inside a multi-byte character, one per
 * byte prefix, would flood the memo.) false: rejected. */
static bool step(const ci_grammar *g, gr_mask_ws *ws, uint32_t d, uint8_t byte) {
    uint32_t pid = ws->ids[d - 1];
    if (pid != GR_NONE && byte < 0x80) {
        uint32_t id = gr_memo_step(&ws->memo, g, &ws->w, pid, byte);
        ws->ids[d] = id;
        return id != GR_REJECT;
    }
    const uint32_t *in = pid != GR_NONE ? ws->memo.pool.v + ws->memo.off[pid] : ws->bufs[d - 1].v;
    if (!gr_step_byte(g, &ws->w, in, byte, &ws->bufs[d])) return false;
    ws->ids[d] = ws->bufs[d].v[GS_REM] ? GR_NONE : gr_memo_intern(&ws->memo, ws->bufs[d].v);
    return true;
}

/* The budget side of a node with tokens (state id, or ws->bufs[depth]):
 * without a limit, raises ws->worst to the state's dist + 1 and keeps the
 * tokens; with one, keeps them when the state's exact need fits. */
static bool budget_ok(const ci_grammar *g, gr_mask_ws *ws, uint32_t id, uint32_t depth) {
    const uint32_t *st = id != GR_NONE ? NULL : ws->bufs[depth].v;
    uint32_t d = st ? gr_state_dist(g, st) : gr_memo_dist(&ws->memo, g, id);
    if (ws->limit == GR_INF) {
        uint32_t need = gr_sat_add(d, 1);
        if (need > ws->worst) ws->worst = need;
        return true;
    }
    if (!st) st = ws->memo.pool.v + ws->memo.off[id];
    uint32_t need = gr_state_done(st) ? 0 : gr_sat_add(d, 1);
    if (need < ws->min_need) ws->min_need = need;
    return need <= ws->limit;
}

/* Walks trie nodes [i, end) whose parent state is at ws->ids / ws->bufs;
 * sets the tokens that end at an accepted node. With rec, also lists the
 * nodes (with children) whose state could end the walked stack. */
static void walk(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws, size_t i,
                 size_t end, uint32_t *mask, gr_buf *rec) {
    const gr_trie_node *nodes = v->nodes;
    while (i < end) {
        const gr_trie_node *nd = &nodes[i];
        if (!step(g, ws, nd->depth, nd->byte)) {
            i = nd->end;
            continue;
        }
        uint32_t id = ws->ids[nd->depth];
        if (nd->ntok && !budget_ok(g, ws, id, nd->depth)) {
            i++;
            continue;
        }
        for (uint32_t t = 0; t < nd->ntok; t++) {
            int32_t tok = v->sorted[nd->tok0 + t];
            mask[tok >> 5] |= 1u << (tok & 31);
        }
        if (rec && nd->end > i + 1 &&
            (id != GR_NONE ? ws->memo.can_end[id] : gr_state_can_end(ws->bufs[nd->depth].v)) &&
            gr_buf_reserve(rec, rec->n + 1))
            rec->v[rec->n++] = (uint32_t)i;
        i++;
    }
}

/* Walks nodes [i, end), whose parents are at depth d, from state st. */
static void walk_from(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws,
                      const uint32_t *st, uint32_t d, size_t i, size_t end, uint32_t *mask,
                      gr_buf *rec) {
    ws->ids[d] = st[GS_REM] ? GR_NONE : gr_memo_intern(&ws->memo, st);
    if (ws->ids[d] == GR_NONE && !gr_state_copy(&ws->bufs[d], st)) return;
    walk(g, v, ws, i, end, mask, rec);
}

/* Expansions one mask may take: a cold mask of a JSON Schema grammar over
 * 128k tokens takes about 170k; only a pathologically ambiguous grammar
 * gets near this. */
#define GR_MAX_MASK_WORK 2000000u

/* true unless the mask's work ran past GR_MAX_MASK_WORK: then the mask is
 * emptied (a sound answer: nothing is allowed that accept would refuse). */
static bool given_up(gr_mask_ws *ws, uint32_t *mask, size_t nw) {
    if (!ws->w.gave_up) return true;
    memset(mask, 0, nw * sizeof *mask);
    return false;
}

/* ws->ent = the entry of a stack's top segment seg[0..n) (bottom..top):
 * [accepted mask (nw words)][worst][count][trie nodes where the segment can
 * end]; worst is the walk's, relative to the segment (the frames below it
 * add their cost). */
static bool seg_entry(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws,
                      const uint32_t *seg, uint32_t n, size_t nw) {
    uint32_t key[2 + GR_SEGMENT];
    key[0] = UINT32_MAX; /* a state's first word is its size: never UINT32_MAX */
    key[1] = n;
    memcpy(key + 2, seg, n * sizeof *seg);
    size_t got = gr_cache_get(g->cache, v->serial, key, 2 + n, ws->ent.v, ws->ent.cap, NULL, 0);
    if (got > ws->ent.cap) {
        if (!gr_buf_reserve(&ws->ent, got)) return false;
        got = gr_cache_get(g->cache, v->serial, key, 2 + n, ws->ent.v, ws->ent.cap, NULL, 0);
    }
    if (got && got <= ws->ent.cap) {
        ws->ent.n = got;
        return true;
    }
    if (!gr_buf_reserve(&ws->ent, nw + 2) || !gr_buf_reserve(&ws->seg, GS_HDR + 1 + n))
        return false;
    memset(ws->ent.v, 0, nw * sizeof(uint32_t));
    uint32_t *st = ws->seg.v;
    st[GS_WORDS] = GS_HDR + 1 + n;
    st[GS_CP] = st[GS_REM] = st[GS_ULEN] = 0;
    st[GS_NSTACK] = 1;
    st[GS_HDR] = n;
    memcpy(st + GS_HDR + 1, seg, n * sizeof *seg);
    ws->rec.n = 0;
    bool before = ws->w.exhausted;
    uint32_t worst = ws->worst;
    ws->w.exhausted = false;
    ws->worst = 0;
    walk_from(g, v, ws, st, 0, 0, v->n_nodes, ws->ent.v, &ws->rec);
    bool limited = ws->w.exhausted; /* then the entry is not reusable: not cached */
    ws->w.exhausted |= before;
    uint32_t seg_worst = ws->worst;
    ws->worst = worst;
    if (!gr_buf_reserve(&ws->ent, nw + 2 + ws->rec.n)) return false;
    ws->ent.v[nw] = seg_worst;
    ws->ent.v[nw + 1] = (uint32_t)ws->rec.n;
    if (ws->rec.n) memcpy(ws->ent.v + nw + 2, ws->rec.v, ws->rec.n * sizeof(uint32_t));
    ws->ent.n = nw + 2 + ws->rec.n;
    if (!limited) gr_cache_put(g->cache, v->serial, key, 2 + n, ws->ent.v, ws->ent.n, NULL, 0);
    return true;
}

/* A new mask's walk: a trimmed memo and a fresh work allowance. */
static void begin_mask(gr_mask_ws *ws) {
    gr_memo_trim(&ws->memo);
    ws->w.exhausted = ws->w.gave_up = false;
    ws->w.total = 0;
    ws->w.total_cap = GR_MAX_MASK_WORK;
}

bool gr_mask_compute(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws,
                     const uint32_t *st, uint32_t *mask) {
    size_t nw = ((size_t)v->n_vocab + 31) / 32;
    begin_mask(ws);
    ws->worst = 0;
    if (st[GS_REM]) { /* inside a UTF-8 sequence: rare, walk the whole trie */
        walk_from(g, v, ws, st, 0, 0, v->n_nodes, mask, NULL);
        return given_up(ws, mask, nw);
    }
    const uint32_t *s = st + GS_HDR;
    for (uint32_t k = 0; k < st[GS_NSTACK]; k++, s += 1 + s[0]) {
        uint32_t len = s[0];
        if (!len) continue;
        uint32_t seg = len < GR_SEGMENT ? len : GR_SEGMENT, below = len - seg;
        if (!seg_entry(g, v, ws, s + 1 + below, seg, nw)) {
            /* out of memory for the entry: the plain way */
            walk_from(g, v, ws, st, 0, 0, v->n_nodes, mask, NULL);
            return given_up(ws, mask, nw);
        }
        const uint32_t *acc = ws->ent.v;
        for (size_t w = 0; w < nw; w++)
            mask[w] |= acc[w];
        uint32_t seg_worst = ws->ent.v[nw], n_end = ws->ent.v[nw + 1];
        if (seg_worst) { /* the frames below the segment stay: their cost adds */
            uint32_t c = gr_frames_cost(g, s + 1, below);
            c = gr_sat_add(c, seg_worst);
            if (c > ws->worst) ws->worst = c;
        }
        if (!n_end || !below) continue; /* nothing below: the segment's end is the sentence's */
        if (!gr_state_from_stack(g, &ws->w, s + 1, below, &ws->base)) continue;
        for (uint32_t e = 0; e < n_end; e++) {
            const gr_trie_node *nd = &v->nodes[ws->ent.v[nw + 2 + e]];
            walk_from(g, v, ws, ws->base.v, nd->depth, (size_t)(nd - v->nodes) + 1, nd->end, mask,
                      NULL);
        }
    }
    if (ws->w.exhausted) {
        /* some step hit a work limit (a pathologically ambiguous grammar):
         * split stacks can stay under a limit the whole state exceeds, so
         * walk the whole state, exactly as accept would step it */
        memset(mask, 0, nw * sizeof *mask);
        ws->worst = 0;
        if (!ws->w.gave_up) walk_from(g, v, ws, st, 0, 0, v->n_nodes, mask, NULL);
    }
    return given_up(ws, mask, nw);
}

bool gr_mask_strip_first(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws,
                         const uint32_t *st, uint32_t *mask) {
    if (v->space_node == UINT32_MAX) return true;
    const gr_trie_node *sp = &v->nodes[v->space_node];
    for (size_t i = v->space_node + 1; i < sp->end; i++) /* as walked with the space: void */
        for (uint32_t t = 0; t < v->nodes[i].ntok; t++) {
            int32_t tok = v->sorted[v->nodes[i].tok0 + t];
            mask[tok >> 5] &= ~(1u << (tok & 31));
        }
    for (uint32_t t = 0; t < sp->ntok; t++) { /* a lone space: no output, always allowed */
        int32_t tok = v->sorted[sp->tok0 + t];
        mask[tok >> 5] |= 1u << (tok & 31);
    }
    if (sp->ntok) { /* and the state stays as it is */
        uint32_t need = gr_sat_add(gr_state_dist(g, st), 1);
        if (need > ws->worst) ws->worst = need;
    }
    /* the space's subtree walked from st itself, as if the space were not there */
    walk_from(g, v, ws, st, 1, (size_t)v->space_node + 1, sp->end, mask, NULL);
    return given_up(ws, mask, ((size_t)v->n_vocab + 31) / 32);
}

bool gr_mask_budget(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws,
                    const uint32_t *st, bool strip, uint32_t limit, uint32_t *mask,
                    uint32_t *min_need) {
    size_t nw = ((size_t)v->n_vocab + 31) / 32;
    begin_mask(ws);
    ws->limit = limit;
    ws->min_need = GR_INF;
    if (!strip || v->space_node == UINT32_MAX) {
        walk_from(g, v, ws, st, 0, 0, v->n_nodes, mask, NULL);
    } else { /* as gr_mask_strip_first: the space's subtree walked from st itself */
        const gr_trie_node *sp = &v->nodes[v->space_node];
        walk_from(g, v, ws, st, 0, 0, v->space_node, mask, NULL);
        walk_from(g, v, ws, st, 0, sp->end, v->n_nodes, mask, NULL);
        uint32_t need = gr_state_need(g, st); /* a lone space: no output */
        if (sp->ntok && need < ws->min_need) ws->min_need = need;
        for (uint32_t t = 0; sp->ntok && need <= limit && t < sp->ntok; t++) {
            int32_t tok = v->sorted[sp->tok0 + t];
            mask[tok >> 5] |= 1u << (tok & 31);
        }
        walk_from(g, v, ws, st, 1, (size_t)v->space_node + 1, sp->end, mask, NULL);
    }
    ws->limit = GR_INF;
    *min_need = ws->min_need;
    return given_up(ws, mask, nw);
}
