/* structured.c — structured outputs in the engine: compiled grammars cached
 * per (kind, text) with a bound (least recently used entry evicted; an
 * entry in use by a request lives on until its last matcher is gone), the
 * tokenizer's grammar vocabulary built once, and the per-sample matchers
 * whose masks the sample op applies. */
#include "engine/structured.h"

#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "engine/engine_internal.h"

struct eng_grammar {
    int kind;
    char *text;
    uint64_t hash;
    ci_grammar *g;
    int refs; /* the cache's (while cached) + one per request using it */
    uint64_t last_used;
};

struct eng_grammar_cache {
    eng_grammar *slot[CI_GRAMMAR_CACHE_SIZE];
    uint64_t clock;
};

static void grammar_unref(eng_grammar *g) {
    if (!g || --g->refs > 0) return;
    ci_grammar_free(g->g);
    free(g->text);
    free(g);
}

ci_status ci_eng_grammar_cache_create(eng_grammar_cache **out) {
    *out = calloc(1, sizeof **out);
    return *out ? ci_ok() : ci_errorf(CI_ERR_NOMEM, "engine: out of memory (grammar cache)");
}

void ci_eng_grammar_cache_free(eng_grammar_cache *c) {
    if (!c) return;
    for (int i = 0; i < CI_GRAMMAR_CACHE_SIZE; i++)
        grammar_unref(c->slot[i]);
    free(c);
}

static uint64_t fnv1a(int kind, const char *s) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)kind;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static ci_status compile(int kind, const char *text, ci_grammar **g) {
    char err[256];
    size_t len = strlen(text);
    switch (kind) {
    case CINFER_STRUCTURED_JSON_SCHEMA:
        return ci_grammar_from_json_schema(text, len, g, err, sizeof err);
    case CINFER_STRUCTURED_JSON_OBJECT: return ci_grammar_json_object(g, err, sizeof err);
    case CINFER_STRUCTURED_REGEX: return ci_grammar_from_regex(text, len, g, err, sizeof err);
    case CINFER_STRUCTURED_GRAMMAR: return ci_grammar_from_gbnf(text, len, g, err, sizeof err);
    default: return ci_errorf(CI_ERR_INVALID, "request: structured output kind %d unknown", kind);
    }
}

/* The cached grammar for (kind, text), compiled on a miss; one reference
 * for the caller. */
static ci_status grammar_get(eng_grammar_cache *c, int kind, const char *text, eng_grammar **out) {
    *out = NULL;
    uint64_t h = fnv1a(kind, text);
    c->clock++;
    int victim = 0;
    for (int i = 0; i < CI_GRAMMAR_CACHE_SIZE; i++) {
        eng_grammar *g = c->slot[i];
        if (g && g->hash == h && g->kind == kind && strcmp(g->text, text) == 0) {
            g->last_used = c->clock;
            g->refs++;
            *out = g;
            return ci_ok();
        }
        if (!c->slot[victim]) continue; /* an empty slot is the best victim */
        if (!g || g->last_used < c->slot[victim]->last_used) victim = i;
    }
    eng_grammar *g = calloc(1, sizeof *g);
    if (!g || !(g->text = strdup(text))) {
        free(g);
        return ci_errorf(CI_ERR_NOMEM, "engine: out of memory (grammar)");
    }
    ci_status s = compile(kind, text, &g->g);
    if (s.code && s.code != CI_ERR_NOMEM) s.code = CI_ERR_INVALID; /* the request's fault: a 400 */
    if (s.code) {
        free(g->text);
        free(g);
        return s;
    }
    g->kind = kind;
    g->hash = h;
    g->last_used = c->clock;
    g->refs = 2; /* the cache's and the caller's */
    grammar_unref(c->slot[victim]);
    c->slot[victim] = g;
    *out = g;
    return ci_ok();
}

ci_status ci_eng_structured_new(ci_engine *e, int kind, const char *text, int n,
                                eng_structured **out) {
    *out = NULL;
    if (kind == CINFER_STRUCTURED_NONE) return ci_ok();
    if (kind < CINFER_STRUCTURED_NONE || kind > CINFER_STRUCTURED_GRAMMAR)
        return ci_errorf(CI_ERR_INVALID, "request: structured output kind %d unknown", kind);
    if (kind != CINFER_STRUCTURED_JSON_OBJECT && (!text || !text[0]))
        return ci_errorf(CI_ERR_INVALID, "request: structured output without its text");
    if (!e->tok)
        return ci_errorf(CI_ERR_INVALID, "request: structured outputs need the model's tokenizer");
    if (!e->gvocab) { /* once per engine: every id's bytes and a trie over them */
        CI_TRY(ci_grammar_vocab_from_tokenizer(e->tok, e->eos_ids, e->num_eos, &e->gvocab));
        if (ci_grammar_vocab_size(e->gvocab) > e->V) {
            ci_grammar_vocab_free(e->gvocab);
            e->gvocab = NULL;
            return ci_errorf(CI_ERR_INVALID, "engine: the tokenizer has more ids than the model");
        }
    }
    if (!e->gcache) CI_TRY(ci_eng_grammar_cache_create(&e->gcache));
    eng_structured *st = calloc(1, sizeof *st);
    if (st) st->m = calloc((size_t)n, sizeof *st->m);
    if (!st || !st->m) {
        if (st) free(st);
        return ci_errorf(CI_ERR_NOMEM, "engine: out of memory (matchers)");
    }
    st->n = n;
    ci_status s = grammar_get(e->gcache, kind, text ? text : "", &st->g);
    for (int i = 0; !s.code && i < n; i++)
        s = ci_grammar_matcher_create(st->g->g, e->gvocab, &st->m[i]);
    if (s.code) {
        ci_eng_structured_free(st);
        return s;
    }
    *out = st;
    return ci_ok();
}

void ci_eng_structured_free(eng_structured *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++)
        ci_grammar_matcher_free(st->m[i]);
    free(st->m);
    grammar_unref(st->g);
    free(st);
}

void ci_eng_structured_mask(const ci_engine *e, eng_structured *st, int idx, int no_eos,
                            int64_t tokens_left, uint32_t *mask) {
    /* the words past the tokenizer's vocabulary (a padded embedding) stay 0 */
    int W = ci_mask_words(e->V), Wv = ci_mask_words(ci_grammar_vocab_size(e->gvocab));
    if (Wv < W) memset(mask + Wv, 0, sizeof(uint32_t) * (size_t)(W - Wv));
    /* the budget reckons with an EOS to end: none without one */
    ci_grammar_matcher_fill_mask_budget(st->m[idx], mask, no_eos ? 0 : tokens_left);
    if (no_eos)
        for (int i = 0; i < e->num_eos; i++)
            mask[e->eos_ids[i] / 32] &= ~(1u << (e->eos_ids[i] % 32));
}
