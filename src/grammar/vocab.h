/* vocab.h — struct ci_grammar_vocab, for the grammar files that walk it. */
#ifndef CINFER_GRAMMAR_VOCAB_H
#define CINFER_GRAMMAR_VOCAB_H

#include "grammar/internal.h"

/* Longer tokens are never allowed under a grammar (none exist in practice). */
#define GR_MAX_TOKEN_BYTES 1024

typedef struct gr_trie_node {
    uint8_t byte;
    uint32_t depth;      /* bytes from the root, >= 1 */
    uint32_t end;        /* index just past this node's subtree */
    uint32_t tok0, ntok; /* tokens ending here: sorted[tok0 .. tok0+ntok) */
} gr_trie_node;

struct ci_grammar_vocab {
    int n_vocab;
    uint64_t serial; /* mask cache key part: masks depend on the vocabulary */
    size_t *tok_off;
    uint32_t *tok_len; /* 0: never allowed */
    uint8_t *bytes;
    uint8_t *is_eos;
    int32_t *eos;
    int n_eos;
    int32_t *sorted; /* allowed-able ids by their bytes */
    int n_sorted;
    gr_trie_node *nodes;
    size_t n_nodes;
    uint32_t max_len;
    uint32_t space_node; /* the root's child for byte ' ', or UINT32_MAX */
    /* The decoder drops one leading space of the text (SentencePiece's
     * "▁x" at the start decodes as "x"): the first token's leading space is
     * not output, so the grammar must not see it. */
    bool strip_space;
};

/* memo.c: states interned to ids and a cache of byte transitions. */
#define GR_NONE UINT32_MAX          /* out of memory */
#define GR_REJECT (UINT32_MAX - 1u) /* the byte is rejected */
typedef struct gr_memo {
    gr_buf pool, tmp; /* interned states, one after another; a step's output */
    uint32_t *off;    /* id -> offset in pool */
    uint8_t *can_end; /* id -> gr_state_can_end */
    uint32_t *dist;   /* id -> gr_state_dist, GR_UNKNOWN until asked */
    uint32_t n, cap;
    uint32_t *tab; /* content hash -> id + 1 */
    uint32_t tab_cap;
    uint64_t *tr_key; /* (id << 8 | byte), all ones = empty */
    uint32_t *tr_val; /* next id or GR_REJECT */
} gr_memo;
void gr_memo_free(gr_memo *m);
/* Between masks: forgets everything once the memo outgrows its bounds. */
void gr_memo_trim(gr_memo *m);
uint32_t gr_memo_intern(gr_memo *m, const uint32_t *st); /* GR_NONE: out of memory */
#define GR_UNKNOWN (UINT32_MAX - 1u)
/* gr_state_dist of state id, computed once. */
static inline uint32_t gr_memo_dist(gr_memo *m, const ci_grammar *g, uint32_t id) {
    if (m->dist[id] == GR_UNKNOWN) m->dist[id] = gr_state_dist(g, m->pool.v + m->off[id]);
    return m->dist[id];
}
/* The id after one byte from state id, or GR_REJECT. */
uint32_t gr_memo_step(gr_memo *m, const ci_grammar *g, gr_work *w, uint32_t id, uint8_t byte);

/* Buffers of one matcher's mask computation (mask.c): no allocation per
 * token once grown. */
typedef struct gr_mask_ws {
    gr_work w;
    gr_memo memo;
    uint32_t *ids; /* the state id after each prefix length of the trie walk, */
    gr_buf *bufs;  /* or (id GR_NONE) the state itself, inside a character */
    uint32_t n_depth;
    gr_buf base, ent, rec, seg;
    /* Budget: without a limit, the walk raises worst to dist + 1 of every
     * accepted token's state (0: none accepted), an upper bound on the
     * tokens it needs to end. With one (gr_mask_budget), a token whose state
     * needs more than limit is left out and min_need is the least seen. */
    uint32_t worst, limit, min_need;
} gr_mask_ws;

bool gr_mask_ws_init(gr_mask_ws *ws, const ci_grammar_vocab *v);
void gr_mask_ws_free(gr_mask_ws *ws);
/* For the first token under strip_space: the tokens that begin with a space
 * are allowed when the rest of their bytes is; a lone space (no output) is
 * always allowed. false as gr_mask_compute's. */
bool gr_mask_strip_first(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws,
                         const uint32_t *st, uint32_t *mask);
/* mask (zeroed, (n_vocab + 31) / 32 words) |= the tokens allowed after st,
 * EOS not included; ws->worst = the budget bound of the allowed tokens.
 * false: the work limit was reached and the mask is empty (not to be
 * cached). */
bool gr_mask_compute(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws,
                     const uint32_t *st, uint32_t *mask);

/* mask (zeroed) |= the tokens allowed after st whose state needs at most
 * limit tokens to end (gr_state_need), EOS not included; walks the whole
 * state (the last steps of a request). strip: the first token under
 * strip_space. *min_need: the least need among the allowed tokens (GR_INF:
 * none). false as gr_mask_compute's. */
bool gr_mask_budget(const ci_grammar *g, const ci_grammar_vocab *v, gr_mask_ws *ws,
                    const uint32_t *st, bool strip, uint32_t limit, uint32_t *mask,
                    uint32_t *min_need);

#endif
