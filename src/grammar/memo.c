/* memo.c — a matcher's memo of the mask walk: states interned to ids, and
 * a direct-mapped cache of byte transitions between them. A trie walk
 * takes one transition per node, but a walk over a permissive state (any
 * string character) meets few distinct (state, byte) pairs among hundreds
 * of thousands of nodes; consecutive masks (a bounded string's next
 * position) reuse each other's transitions. The memo is reset between
 * masks once it outgrows its bounds, so it stays a few hundred KiB. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "grammar/vocab.h"

#define GR_MEMO_TR (1u << 15)        /* transition slots */
#define GR_MEMO_MAX_WORDS (1u << 18) /* interned words kept between masks */

void gr_memo_free(gr_memo *m) {
    gr_buf_free(&m->pool);
    gr_buf_free(&m->tmp);
    free(m->off);
    free(m->can_end);
    free(m->dist);
    free(m->tab);
    free(m->tr_key);
    free(m->tr_val);
    memset(m, 0, sizeof *m);
}

void gr_memo_trim(gr_memo *m) {
    if (m->pool.n <= GR_MEMO_MAX_WORDS) return;
    m->pool.n = 0;
    m->n = 0;
    if (m->tab) memset(m->tab, 0, m->tab_cap * sizeof *m->tab);
    if (m->tr_key) memset(m->tr_key, 0xFF, GR_MEMO_TR * sizeof *m->tr_key);
}

static uint64_t st_hash(const uint32_t *st) {
    return XXH3_64bits(st, st[GS_WORDS] * sizeof *st);
}

static bool tab_grow(gr_memo *m) {
    uint32_t cap = m->tab_cap ? m->tab_cap * 2 : 1024;
    uint32_t *t = calloc(cap, sizeof *t);
    if (!t) return false;
    for (uint32_t id = 0; id < m->n; id++) {
        uint32_t h = (uint32_t)st_hash(m->pool.v + m->off[id]) & (cap - 1);
        while (t[h])
            h = (h + 1) & (cap - 1);
        t[h] = id + 1;
    }
    free(m->tab);
    m->tab = t;
    m->tab_cap = cap;
    return true;
}

uint32_t gr_memo_intern(gr_memo *m, const uint32_t *st) {
    uint32_t words = st[GS_WORDS];
    if ((m->n + 1) * 2 > m->tab_cap && !tab_grow(m)) return GR_NONE;
    uint32_t h = (uint32_t)st_hash(st) & (m->tab_cap - 1);
    for (; m->tab[h]; h = (h + 1) & (m->tab_cap - 1)) {
        const uint32_t *o = m->pool.v + m->off[m->tab[h] - 1];
        if (o[GS_WORDS] == words && !memcmp(o, st, words * sizeof *st)) return m->tab[h] - 1;
    }
    if (m->n == m->cap) {
        uint32_t cap = m->cap ? m->cap * 2 : 256;
        uint32_t *off = realloc(m->off, cap * sizeof *off);
        if (!off) return GR_NONE;
        m->off = off;
        uint8_t *ce = realloc(m->can_end, cap);
        if (!ce) return GR_NONE;
        m->can_end = ce;
        uint32_t *di = realloc(m->dist, cap * sizeof *di);
        if (!di) return GR_NONE;
        m->dist = di;
        m->cap = cap;
    }
    if (!gr_buf_reserve(&m->pool, m->pool.n + words)) return GR_NONE;
    memcpy(m->pool.v + m->pool.n, st, words * sizeof *st);
    m->off[m->n] = (uint32_t)m->pool.n;
    m->can_end[m->n] = gr_state_can_end(st);
    m->dist[m->n] = GR_UNKNOWN;
    m->pool.n += words;
    m->tab[h] = m->n + 1;
    return m->n++;
}

uint32_t gr_memo_step(gr_memo *m, const ci_grammar *g, gr_work *w, uint32_t id, uint8_t byte) {
    if (!m->tr_key) {
        m->tr_key = malloc(GR_MEMO_TR * sizeof *m->tr_key);
        m->tr_val = malloc(GR_MEMO_TR * sizeof *m->tr_val);
        if (!m->tr_key || !m->tr_val) {
            free(m->tr_key);
            free(m->tr_val);
            m->tr_key = NULL;
            m->tr_val = NULL;
            return GR_NONE;
        }
        memset(m->tr_key, 0xFF, GR_MEMO_TR * sizeof *m->tr_key);
    }
    uint64_t key = ((uint64_t)id << 8) | byte;
    uint32_t slot = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 49) & (GR_MEMO_TR - 1);
    if (m->tr_key[slot] == key) return m->tr_val[slot];
    uint32_t next = GR_REJECT;
    bool before = w->exhausted;
    w->exhausted = false;
    if (gr_step_byte(g, w, m->pool.v + m->off[id], byte, &m->tmp))
        next = gr_memo_intern(m, m->tmp.v);
    bool limited = w->exhausted;
    w->exhausted |= before;
    if (next == GR_NONE) return GR_REJECT; /* out of memory: a rejection, not cached */
    if (limited) return next; /* a work limit, which the caller must see again: not cached */
    m->tr_key[slot] = key;
    m->tr_val[slot] = next;
    return next;
}
