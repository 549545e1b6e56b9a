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
    long n_acc; /* accepts so far, less those rolled back */
    gr_buf key; /* the first mask's cache key (see strip_space) */
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
    gr_work_free(&m->w);
    for (int i = 0; i < GR_HISTORY; i++)
        gr_buf_free(&m->hist[i]);
    gr_mask_ws_free(&m->mw);
    free(m);
}

void ci_grammar_matcher_fill_mask(ci_grammar_matcher *m, uint32_t *mask) {
    uint32_t nw = (uint32_t)((m->v->n_vocab + 31) / 32);
    memset(mask, 0, nw * sizeof *mask);
    if (m->ended) return;
    const uint32_t *st = m->cur.v, *key = st;
    bool strip = m->v->strip_space && m->n_acc == 0;
    if (strip) { /* the first token's mask differs: its own key (a state's size never has bit 31) */
        if (!gr_state_copy(&m->key, st)) return;
        m->key.v[0] |= 0x80000000u;
        key = m->key.v;
    }
    if (gr_cache_get(m->g->cache, m->v->serial, key, st[GS_WORDS], mask, nw) == nw) {
        atomic_fetch_add_explicit(&m->g->mask_hits, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&m->g->mask_misses, 1, memory_order_relaxed);
    bool complete = gr_mask_compute(m->g, m->v, &m->mw, st, mask);
    if (complete && strip) complete = gr_mask_strip_first(m->g, m->v, &m->mw, st, mask);
    if (gr_state_can_end(st))
        for (int i = 0; i < m->v->n_eos; i++)
            mask[m->v->eos[i] >> 5] |= 1u << (m->v->eos[i] & 31);
    if (!complete) return; /* too much work: only EOS (if the text can end); not cached */
    gr_cache_put(m->g->cache, m->v->serial, key, st[GS_WORDS], mask, nw);
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
