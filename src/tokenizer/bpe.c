/* bpe.c — the BPE model: symbols of one pre-token merged by rank with a
 * binary heap over a linked list (as HF's Word::merge_all), with byte
 * fallback, unk fusing and ignore_merges.
 *
 * One model serves both families: byte-level BPE (GPT-2/Llama-3/Qwen: the
 * pre-tokenizer maps bytes to the GPT-2 alphabet, so every char is in the
 * vocab) and SentencePiece-style BPE (Llama-2/Mistral: "▁" comes from the
 * normalizer or the Metaspace pre-tokenizer; chars missing from the vocab
 * become <0xNN> byte tokens when byte_fallback is set, else unk). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/bpe.h"
#include "tokenizer/tok_struct.h"
#include "tokenizer/util.h"

typedef struct tk_sym {
    int32_t id;
    int32_t prev, next;
    uint32_t len; /* 0 = merged away */
} tk_sym;

typedef struct tk_merge {
    uint32_t rank;
    uint32_t pos;
    int32_t id;
} tk_merge;

void tk_bpe_ws_free(tk_bpe_ws *ws) {
    free(ws->sym);
    free(ws->heap);
    tk_buf_free(&ws->key);
    memset(ws, 0, sizeof *ws);
}

static inline bool merge_less(const tk_merge *a, const tk_merge *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(tk_merge *h, size_t *n, tk_merge m) {
    size_t i = (*n)++;
    h[i] = m;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&h[i], &h[p])) break;
        tk_merge t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

static tk_merge heap_pop(tk_merge *h, size_t *n) {
    tk_merge top = h[0];
    h[0] = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && merge_less(&h[l], &h[m])) m = l;
        if (r < *n && merge_less(&h[r], &h[m])) m = r;
        if (m == i) break;
        tk_merge t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
    return top;
}

static ci_status add_sym(tk_bpe_ws *ws, size_t *ns, int32_t id, uint32_t len) {
    if (*ns == ws->sym_cap) {
        size_t cap = ws->sym_cap ? ws->sym_cap * 2 : 64;
        tk_sym *v = realloc(ws->sym, cap * sizeof *v);
        if (!v) return ci_errorf(CI_ERR_NOMEM, "out of memory");
        ws->sym = v;
        ws->sym_cap = cap;
    }
    tk_sym *s = &ws->sym[*ns];
    s->id = id;
    s->len = len;
    s->prev = (int32_t)*ns - 1;
    s->next = (int32_t)*ns + 1;
    (*ns)++;
    return ci_ok();
}

ci_status tk_bpe_encode(const ci_tokenizer *t, const char *s, size_t n, tk_ids *out,
                        tk_bpe_ws *ws) {
    if (n == 0) return ci_ok();
    if (n > INT32_MAX / 2) return ci_errorf(CI_ERR_INVALID, "encode: pre-token too long");
    if (t->ignore_merges) {
        int32_t id = tk_strmap_get(&t->vocab, s, n);
        if (id >= 0) return tk_ids_push(out, id);
    }
    size_t ns = 0;
    int32_t unk_id = -1;
    uint32_t unk_len = 0;
    bool have_unk = false;
    for (size_t i = 0; i < n;) {
        size_t cl = tk_utf8_len((unsigned char)s[i]);
        if (cl > n - i) cl = n - i;
        const char *key = s + i;
        size_t klen = cl;
        bool first = i == 0, last = i + cl == n;
        if ((!first && t->cont_prefix_len) || (last && t->eow_suffix_len)) {
            ws->key.len = 0;
            if (!first) CI_TRY(tk_buf_put(&ws->key, t->cont_prefix, t->cont_prefix_len));
            CI_TRY(tk_buf_put(&ws->key, s + i, cl));
            if (last) CI_TRY(tk_buf_put(&ws->key, t->eow_suffix, t->eow_suffix_len));
            key = ws->key.p;
            klen = ws->key.len;
        }
        int32_t id = tk_strmap_get(&t->vocab, key, klen);
        if (id >= 0) {
            if (have_unk) {
                CI_TRY(add_sym(ws, &ns, unk_id, unk_len));
                have_unk = false;
            }
            CI_TRY(add_sym(ws, &ns, id, (uint32_t)cl));
            i += cl;
            continue;
        }
        if (t->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < cl; k++)
                if (t->byte_tok[(unsigned char)s[i + k]] < 0) all = false;
            if (all) {
                if (have_unk) {
                    CI_TRY(add_sym(ws, &ns, unk_id, unk_len));
                    have_unk = false;
                }
                for (size_t k = 0; k < cl; k++)
                    CI_TRY(add_sym(ws, &ns, t->byte_tok[(unsigned char)s[i + k]], 1));
                i += cl;
                continue;
            }
        }
        if (t->unk_id >= 0) {
            if (have_unk && t->fuse_unk) {
                unk_len += (uint32_t)cl;
            } else {
                if (have_unk) CI_TRY(add_sym(ws, &ns, unk_id, unk_len));
                have_unk = true;
                unk_id = t->unk_id;
                unk_len = (uint32_t)cl;
            }
        }
        i += cl;
    }
    if (have_unk) CI_TRY(add_sym(ws, &ns, unk_id, unk_len));
    if (ns == 0) return ci_ok();
    ws->sym[ns - 1].next = -1;

    if (ws->heap_cap < ns * 2 + 2) {
        size_t cap = ns * 2 + 2;
        tk_merge *h = realloc(ws->heap, cap * sizeof *h);
        if (!h) return ci_errorf(CI_ERR_NOMEM, "out of memory");
        ws->heap = h;
        ws->heap_cap = cap;
    }
    size_t hn = 0;
    tk_sym *sym = ws->sym;
    for (size_t i = 0; i + 1 < ns; i++) {
        const tk_pm_entry *m = tk_pairmap_get(&t->merges, sym[i].id, sym[i + 1].id);
        if (m) heap_push(ws->heap, &hn, (tk_merge){m->rank, (uint32_t)i, m->id});
    }
    while (hn > 0) {
        tk_merge top = heap_pop(ws->heap, &hn);
        tk_sym *cur = &sym[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        int32_t np = cur->next;
        tk_sym right = sym[np];
        const tk_pm_entry *m = tk_pairmap_get(&t->merges, cur->id, right.id);
        if (!m || m->id != top.id) continue;
        cur->id = top.id;
        cur->len += right.len;
        cur->next = right.next;
        sym[np].len = 0;
        if (right.next >= 0) sym[right.next].prev = (int32_t)top.pos;
        /* the heap can hold at most one entry per live pair plus stale
         * ones; each merge adds at most two, so grow when needed */
        if (hn + 2 > ws->heap_cap) {
            size_t cap = ws->heap_cap * 2;
            tk_merge *h = realloc(ws->heap, cap * sizeof *h);
            if (!h) return ci_errorf(CI_ERR_NOMEM, "out of memory");
            ws->heap = h;
            ws->heap_cap = cap;
        }
        if (cur->prev >= 0) {
            const tk_pm_entry *pm = tk_pairmap_get(&t->merges, sym[cur->prev].id, cur->id);
            if (pm) heap_push(ws->heap, &hn, (tk_merge){pm->rank, (uint32_t)cur->prev, pm->id});
        }
        if (cur->next >= 0) {
            const tk_pm_entry *nm = tk_pairmap_get(&t->merges, cur->id, sym[cur->next].id);
            if (nm) heap_push(ws->heap, &hn, (tk_merge){nm->rank, top.pos, nm->id});
        }
    }
    for (size_t i = 0; i < ns; i++)
        if (sym[i].len) CI_TRY(tk_ids_push(out, sym[i].id));
    return ci_ok();
}
