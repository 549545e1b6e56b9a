/* matcher.c — one sequence's grammar match: the current state, a ring of
 * earlier states for rollback, and the token mask (a walk over the
 * vocabulary trie (mask.c), or a copy from the grammar's mask cache when
 * this state was seen before). Per-token work allocates nothing once the buffers have
 * grown to the grammar's needs; a cache miss stores one new mask. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/vocab.h"

#define GR_HISTORY 32

struct ci_grammar_matcher {
    ci_grammar *g;
    const ci_grammar_vocab *v;
    gr_buf cur, tmp, tmp2;
    bool ended; /* EOS accepted */
    gr_work w;
    gr_mask_ws mw;
    gr_buf hist[GR_HISTORY];
    bool hist_ended[GR_HISTORY];
    int hist_head, hist_n;
    long n_acc;  /* accepts so far, less those rolled back */
    gr_buf key;  /* the first mask's cache key (see strip_space) */
    gr_buf full; /* the unfiltered mask while a budget mask is made */
};

ci_status ci_grammar_matcher_create(ci_grammar *g, const ci_grammar_vocab *v,
                                    ci_grammar_matcher **out) {
    *out = NULL;
    ci_grammar_matcher *m = calloc(1, sizeof *m);
    if (!m) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    m->g = g;
    m->v = v;
    if (!gr_mask_ws_init(&m->mw, v) || !gr_state_copy(&m->cur, g->init)) {
        ci_grammar_matcher_free(m);
        return ci_errorf(CI_ERR_NOMEM, "out of memory");
    }
    *out = m;
    return ci_ok();
}

void ci_grammar_matcher_free(ci_grammar_matcher *m) {
    if (!m) return;
    gr_buf_free(&m->cur);
    gr_buf_free(&m->tmp);
    gr_buf_free(&m->tmp2);
    gr_buf_free(&m->key);
    gr_buf_free(&m->full);
    gr_work_free(&m->w);
    for (int i = 0; i < GR_HISTORY; i++)
        gr_buf_free(&m->hist[i]);
    gr_mask_ws_free(&m->mw);
    free(m);
}

/* The mask of the current state (from the cache when seen before) and its
 * budget bound: at most how many tokens the state after any allowed token
 * needs to end (mask.c's worst; stored with the mask). */
static uint32_t fill(ci_grammar_matcher *m, uint32_t *mask) {
    uint32_t nw = (uint32_t)((m->v->n_vocab + 31) / 32), worst = 0;
    memset(mask, 0, nw * sizeof *mask);
    if (m->ended) return 0;
    const uint32_t *st = m->cur.v, *key = st;
    bool strip = m->v->strip_space && m->n_acc == 0;
    if (strip) { /* the first token's mask differs: its own key (a state's size never has bit 31) */
        if (!gr_state_copy(&m->key, st)) return 0;
        m->key.v[0] |= 0x80000000u;
        key = m->key.v;
    }
    if (gr_cache_get(m->g->cache, m->v->serial, key, st[GS_WORDS], mask, nw, &worst, 1) == nw + 1) {
        atomic_fetch_add_explicit(&m->g->mask_hits, 1, memory_order_relaxed);
        return worst;
    }
    atomic_fetch_add_explicit(&m->g->mask_misses, 1, memory_order_relaxed);
    bool complete = gr_mask_compute(m->g, m->v, &m->mw, st, mask);
    if (complete && strip) complete = gr_mask_strip_first(m->g, m->v, &m->mw, st, mask);
    if (gr_state_can_end(st))
        for (int i = 0; i < m->v->n_eos; i++)
            mask[m->v->eos[i] >> 5] |= 1u << (m->v->eos[i] & 31);
    if (!complete) return 0; /* too much work: only EOS (if the text can end); not cached */
    worst = m->mw.worst;
    gr_cache_put(m->g->cache, m->v->serial, key, st[GS_WORDS], mask, nw, &worst, 1);
    return worst;
}

void ci_grammar_matcher_fill_mask(ci_grammar_matcher *m, uint32_t *mask) {
    fill(m, mask);
}

void ci_grammar_matcher_fill_mask_budget(ci_grammar_matcher *m, uint32_t *mask,
                                         int64_t tokens_left) {
    uint32_t worst = fill(m, mask);
    if (m->ended || tokens_left < 1 || worst <= tokens_left - 1) return; /* every token fits */
    /* the last steps: walk the state, keeping the tokens that leave enough */
    uint32_t nw = (uint32_t)((m->v->n_vocab + 31) / 32);
    if (!gr_buf_reserve(&m->full, nw)) return; /* no memory: unfiltered */
    memcpy(m->full.v, mask, nw * sizeof *mask);
    const uint32_t *st = m->cur.v;
    bool strip = m->v->strip_space && m->n_acc == 0, can_end = gr_state_can_end(st);
    uint32_t limit = tokens_left - 1 < GR_INF ? (uint32_t)(tokens_left - 1) : GR_INF - 1, least;
    memset(mask, 0, nw * sizeof *mask);
    bool ok = gr_mask_budget(m->g, m->v, &m->mw, st, strip, limit, mask, &least);
    if (ok && !can_end && least > limit && least < GR_INF) {
        /* it cannot end in time (max_tokens below the grammar's shortest
         * text, or a vocabulary without some single bytes): the tokens that
         * come closest, so it ends if longer tokens make that possible */
        memset(mask, 0, nw * sizeof *mask);
        ok = gr_mask_budget(m->g, m->v, &m->mw, st, strip, least, mask, &least);
    }
    bool any = false;
    for (uint32_t i = 0; i < nw && !any; i++)
        any = mask[i] != 0;
    if (!ok || (!any && !can_end)) { /* too much work, or nothing left: as unfiltered */
        memcpy(mask, m->full.v, nw * sizeof *mask);
        return;
    }
    if (can_end) /* EOS ends it now */
        for (int i = 0; i < m->v->n_eos; i++)
            mask[m->v->eos[i] >> 5] |= 1u << (m->v->eos[i] & 31);
}

uint32_t ci_grammar_matcher_min_bytes_to_accept(const ci_grammar_matcher *m) {
    return m->ended ? 0 : gr_state_dist(m->g, m->cur.v);
}

uint32_t ci_grammar_matcher_tokens_to_end(const ci_grammar_matcher *m) {
    return m->ended ? 0 : gr_state_need(m->g, m->cur.v);
}

static bool push_history(ci_grammar_matcher *m) {
    int slot = m->hist_head;
    if (!gr_state_copy(&m->hist[slot], m->cur.v)) return false;
    m->hist_ended[slot] = m->ended;
    m->hist_head = (slot + 1) % GR_HISTORY;
    if (m->hist_n < GR_HISTORY) m->hist_n++;
    return true;
}

/* Advances cur over bytes, ping-ponging between tmp and tmp2; false
 * leaves cur as it was. */
static bool feed(ci_grammar_matcher *m, const uint8_t *b, size_t n) {
    if (!n) return true;
    gr_buf *bufs[2] = {&m->tmp, &m->tmp2};
    const uint32_t *in = m->cur.v;
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!gr_step_byte(m->g, &m->w, in, b[i], bufs[k])) return false;
        in = bufs[k]->v;
        k ^= 1;
    }
    gr_buf t = m->cur;
    m->cur = *bufs[k ^ 1];
    *bufs[k ^ 1] = t;
    return true;
}

int ci_grammar_matcher_accept(ci_grammar_matcher *m, int32_t token) {
    if (m->ended || token < 0 || token >= m->v->n_vocab) return -1;
    if (m->v->is_eos[token]) {
        if (!gr_state_can_end(m->cur.v) || !push_history(m)) return -1;
        m->ended = true;
        m->n_acc++;
        return 0;
    }
    uint32_t len = m->v->tok_len[token];
    const uint8_t *b = m->v->bytes + m->v->tok_off[token];
    if (!len || len > GR_MAX_TOKEN_BYTES) return -1;
    if (m->v->strip_space && m->n_acc == 0 && b[0] == ' ') { /* not output: see strip_space */
        if (len == 1) { /* a lone space first (SentencePiece puts one before digits): no output */
            if (!push_history(m)) return -1;
            m->n_acc++;
            return 0;
        }
        b++;
        len--;
    }
    return ci_grammar_matcher_accept_bytes(m, b, len);
}

int ci_grammar_matcher_accept_bytes(ci_grammar_matcher *m, const uint8_t *bytes, size_t n) {
    if (m->ended) return -1;
    if (!push_history(m)) return -1;
    if (!feed(m, bytes, n)) {
        /* undo the history entry */
        m->hist_head = (m->hist_head + GR_HISTORY - 1) % GR_HISTORY;
        m->hist_n--;
        return -1;
    }
    m->n_acc++;
    return 0;
}

int ci_grammar_matcher_can_end(const ci_grammar_matcher *m) {
    return !m->ended && gr_state_can_end(m->cur.v);
}

int ci_grammar_matcher_is_done(const ci_grammar_matcher *m) {
    return m->ended || gr_state_done(m->cur.v);
}

void ci_grammar_matcher_rollback(ci_grammar_matcher *m, int n_tokens) {
    if (n_tokens <= 0) return;
    if (n_tokens > m->hist_n) n_tokens = m->hist_n;
    if (!n_tokens) return;
    int slot = (m->hist_head + GR_HISTORY - n_tokens) % GR_HISTORY;
    gr_buf t = m->cur;
    m->cur = m->hist[slot];
    m->hist[slot] = t;
    m->ended = m->hist_ended[slot];
    m->hist_head = slot;
    m->hist_n -= n_tokens;
    m->n_acc -= n_tokens;
}

void ci_grammar_mask_stats(ci_grammar *g, uint64_t *hits, uint64_t *misses) {
    if (hits) *hits = atomic_load(&g->mask_hits);
    if (misses) *misses = atomic_load(&g->mask_misses);
}
