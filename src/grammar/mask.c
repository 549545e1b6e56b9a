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
    ws->depth = calloc(ws->n_depth, sizeof *ws->depth);
    return ws->depth != NULL;
}

void gr_mask_ws_free(gr_mask_ws *ws) {
    gr_work_free(&ws->w);
    if (ws->depth)
        for (uint32_t i = 0; i < ws->n_depth; i++)
            gr_buf_free(&ws->depth[i]);
    free(ws->depth);
    gr_buf_free(&ws->base);
    gr_buf_free(&ws->ent);
    gr_buf_free(&ws->rec);
}

/* Walks trie nodes [i, end) whose parent state is in ws->depth; sets the
 * tokens that end at an accepted node. With rec, also lists the nodes
 * (with children) whose state could end the walked rule. */
static void walk(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws, size_t i,
                 size_t end, uint32_t *mask, gr_buf *rec) {
    const gr_trie_node *nodes = v->nodes;
    while (i < end) {
        const gr_trie_node *nd = &nodes[i];
        gr_buf *out = &ws->depth[nd->depth];
        if (!gr_step_byte(g, &ws->w, ws->depth[nd->depth - 1].v, nd->byte, out)) {
            i = nd->end;
            continue;
        }
        for (uint32_t t = 0; t < nd->ntok; t++) {
            int32_t id = v->sorted[nd->tok0 + t];
            mask[id >> 5] |= 1u << (id & 31);
        }
        if (rec && nd->end > i + 1 && gr_state_can_end(out->v) && gr_buf_reserve(rec, rec->n + 1))
            rec->v[rec->n++] = (uint32_t)i;
        i++;
    }
}

static void full_walk(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws,
                      const uint32_t *st, uint32_t *mask) {
    if (gr_state_copy(&ws->depth[0], st)) walk(g, v, ws, 0, v->n_nodes, mask, NULL);
}

/* ws->ent = the entry of a stack's top segment seg[0..n) (bottom..top):
 * [accepted mask (nw words)][count][trie nodes where the segment can end]. */
static bool seg_entry(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws,
                      const uint32_t *seg, uint32_t n, size_t nw) {
    uint32_t key[2 + GR_SEGMENT];
    key[0] = UINT32_MAX; /* a state's first word is its size: never UINT32_MAX */
    key[1] = n;
    memcpy(key + 2, seg, n * sizeof *seg);
    size_t got = gr_cache_get(g->cache, v->serial, key, 2 + n, ws->ent.v, ws->ent.cap);
    if (got > ws->ent.cap) {
        if (!gr_buf_reserve(&ws->ent, got)) return false;
        got = gr_cache_get(g->cache, v->serial, key, 2 + n, ws->ent.v, ws->ent.cap);
    }
    if (got && got <= ws->ent.cap) {
        ws->ent.n = got;
        return true;
    }
    if (!gr_buf_reserve(&ws->ent, nw + 1) || !gr_buf_reserve(&ws->depth[0], GS_HDR + 1 + n))
        return false;
    memset(ws->ent.v, 0, nw * sizeof(uint32_t));
    uint32_t *st = ws->depth[0].v;
    st[GS_WORDS] = GS_HDR + 1 + n;
    st[GS_CP] = st[GS_REM] = st[GS_ULEN] = 0;
    st[GS_NSTACK] = 1;
    st[GS_HDR] = n;
    memcpy(st + GS_HDR + 1, seg, n * sizeof *seg);
    ws->depth[0].n = GS_HDR + 1 + n;
    ws->rec.n = 0;
    walk(g, v, ws, 0, v->n_nodes, ws->ent.v, &ws->rec);
    if (!gr_buf_reserve(&ws->ent, nw + 1 + ws->rec.n)) return false;
    ws->ent.v[nw] = (uint32_t)ws->rec.n;
    if (ws->rec.n) memcpy(ws->ent.v + nw + 1, ws->rec.v, ws->rec.n * sizeof(uint32_t));
    ws->ent.n = nw + 1 + ws->rec.n;
    gr_cache_put(g->cache, v->serial, key, 2 + n, ws->ent.v, ws->ent.n);
    return true;
}

void gr_mask_compute(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws,
                     const uint32_t *st, uint32_t *mask) {
    size_t nw = ((size_t)v->n_vocab + 31) / 32;
    if (st[GS_REM]) { /* inside a UTF-8 sequence: rare, walk the whole trie */
        full_walk(g, v, ws, st, mask);
        return;
    }
    const uint32_t *s = st + GS_HDR;
    for (uint32_t k = 0; k < st[GS_NSTACK]; k++, s += 1 + s[0]) {
        uint32_t len = s[0];
        if (!len) continue;
        uint32_t seg = len < GR_SEGMENT ? len : GR_SEGMENT, below = len - seg;
        if (!seg_entry(g, v, ws, s + 1 + below, seg, nw)) {
            full_walk(g, v, ws, st, mask); /* out of memory for the entry: the plain way */
            return;
        }
        const uint32_t *acc = ws->ent.v;
        for (size_t w = 0; w < nw; w++)
            mask[w] |= acc[w];
        uint32_t n_end = ws->ent.v[nw];
        if (!n_end || !below) continue; /* nothing below: the segment's end is the sentence's */
        if (!gr_state_from_stack(g, &ws->w, s + 1, below, &ws->base)) continue;
        for (uint32_t e = 0; e < n_end; e++) {
            const gr_trie_node *nd = &v->nodes[ws->ent.v[nw + 1 + e]];
            if (!gr_state_copy(&ws->depth[nd->depth], ws->base.v)) break;
            walk(g, v, ws, (size_t)(nd - v->nodes) + 1, nd->end, mask, NULL);
        }
    }
}
