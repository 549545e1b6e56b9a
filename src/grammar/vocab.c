/* vocab.c — a tokenizer's token byte strings organized as a byte trie for
 * the mask walk. Nodes are stored in preorder with the index just past each
 * subtree, so the walk is a loop over an array that jumps over a whole
 * subtree when its prefix is rejected. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/vocab.h"

static const ci_grammar_vocab *sort_vocab; /* guarded by sort_mu: qsort has no context */
static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER;

static int cmp_tok(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    const ci_grammar_vocab *v = sort_vocab;
    uint32_t lx = v->tok_len[x], ly = v->tok_len[y];
    int c = memcmp(v->bytes + v->tok_off[x], v->bytes + v->tok_off[y], lx < ly ? lx : ly);
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

ci_status ci_grammar_vocab_create(const uint8_t *const *token_bytes, const uint32_t *token_len,
                                  int n_vocab, const int32_t *eos_ids, int n_eos,
                                  ci_grammar_vocab **out) {
    static atomic_uint_fast64_t serial;
    *out = NULL;
    if (n_vocab <= 0 || n_eos < 0) return ci_errorf(CI_ERR_INVALID, "grammar vocab: bad sizes");
    ci_grammar_vocab *v = calloc(1, sizeof *v);
    if (!v) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    v->n_vocab = n_vocab;
    v->serial = atomic_fetch_add(&serial, 1) + 1;
    size_t total = 0;
    for (int i = 0; i < n_vocab; i++)
        if (token_bytes[i]) total += token_len[i];
    v->tok_off = malloc((size_t)n_vocab * sizeof *v->tok_off);
    v->tok_len = calloc((size_t)n_vocab, sizeof *v->tok_len);
    v->bytes = malloc(total + 1);
    v->is_eos = calloc((size_t)n_vocab, 1);
    v->eos = malloc(((size_t)n_eos + 1) * sizeof *v->eos);
    v->sorted = malloc((size_t)n_vocab * sizeof *v->sorted);
    if (!v->tok_off || !v->tok_len || !v->bytes || !v->is_eos || !v->eos || !v->sorted) {
        ci_grammar_vocab_free(v);
        return ci_errorf(CI_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n_eos; i++) {
        if (eos_ids[i] < 0 || eos_ids[i] >= n_vocab) {
            ci_grammar_vocab_free(v);
            return ci_errorf(CI_ERR_INVALID, "grammar vocab: eos id %d out of range",
                             (int)eos_ids[i]);
        }
        v->is_eos[eos_ids[i]] = 1;
        v->eos[v->n_eos++] = eos_ids[i];
    }
    size_t off = 0;
    int nt = 0;
    for (int i = 0; i < n_vocab; i++) {
        v->tok_off[i] = off;
        if (!token_bytes[i] || !token_len[i] || v->is_eos[i]) continue;
        memcpy(v->bytes + off, token_bytes[i], token_len[i]);
        v->tok_len[i] = token_len[i];
        off += token_len[i];
        v->sorted[nt++] = i;
    }
    pthread_mutex_lock(&sort_mu);
    sort_vocab = v;
    qsort(v->sorted, (size_t)nt, sizeof *v->sorted, cmp_tok);
    pthread_mutex_unlock(&sort_mu);
    v->n_sorted = nt;
    /* Trie in preorder: each token adds nodes for the bytes past its common
     * prefix with the previous token; `path` holds the open nodes. */
    size_t cap = 1024;
    v->nodes = malloc(cap * sizeof *v->nodes);
    uint32_t path[GR_MAX_TOKEN_BYTES + 1];
    uint32_t depth = 0, maxlen = 0;
    if (!v->nodes) {
        ci_grammar_vocab_free(v);
        return ci_errorf(CI_ERR_NOMEM, "out of memory");
    }
    const uint8_t *prev = NULL;
    uint32_t prev_len = 0;
    for (int k = 0; k < nt; k++) {
        int32_t id = v->sorted[k];
        const uint8_t *s = v->bytes + v->tok_off[id];
        uint32_t len = v->tok_len[id];
        if (len > GR_MAX_TOKEN_BYTES) continue; /* never allowed */
        if (len > maxlen) maxlen = len;
        uint32_t lcp = 0;
        while (prev && lcp < len && lcp < prev_len && s[lcp] == prev[lcp])
            lcp++;
        while (depth > lcp)
            v->nodes[path[--depth]].end = (uint32_t)v->n_nodes;
        for (; depth < len; depth++) {
            if (v->n_nodes == cap) {
                cap *= 2;
                gr_trie_node *nn = realloc(v->nodes, cap * sizeof *nn);
                if (!nn) {
                    ci_grammar_vocab_free(v);
                    return ci_errorf(CI_ERR_NOMEM, "out of memory");
                }
                v->nodes = nn;
            }
            gr_trie_node *nd = &v->nodes[v->n_nodes];
            nd->byte = s[depth];
            nd->depth = depth + 1;
            nd->tok0 = (uint32_t)k;
            nd->ntok = 0;
            path[depth] = (uint32_t)v->n_nodes++;
        }
        gr_trie_node *nd = &v->nodes[path[len - 1]];
        if (!nd->ntok) nd->tok0 = (uint32_t)k;
        nd->ntok++;
        prev = s;
        prev_len = len;
    }
    while (depth > 0)
        v->nodes[path[--depth]].end = (uint32_t)v->n_nodes;
    v->max_len = maxlen;
    v->space_node = UINT32_MAX;
    for (size_t i = 0; i < v->n_nodes; i = v->nodes[i].end)
        if (v->nodes[i].byte == ' ') v->space_node = (uint32_t)i;
    *out = v;
    return ci_ok();
}

void ci_grammar_vocab_free(ci_grammar_vocab *v) {
    if (!v) return;
    free(v->tok_off);
    free(v->tok_len);
    free(v->bytes);
    free(v->is_eos);
    free(v->eos);
    free(v->sorted);
    free(v->nodes);
    free(v);
}

int ci_grammar_vocab_size(const ci_grammar_vocab *v) {
    return v ? v->n_vocab : 0;
}
