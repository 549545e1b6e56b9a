/* structured.h — structured outputs in the engine: the grammar compiled for
 * a request (cached per (kind, text), bounded), the tokenizer's grammar
 * vocabulary (built once per engine, on the first constrained request), and
 * one matcher per sample. Used by engine.c (add), request.c (tokens) and
 * sample_rows.c (masks). */
#ifndef CINFER_ENGINE_STRUCTURED_H
#define CINFER_ENGINE_STRUCTURED_H

#include <stdint.h>

#include "grammar/grammar.h"
#include "util/status.h"

typedef struct ci_engine ci_engine;
typedef struct eng_grammar eng_grammar; /* a cached compiled grammar (reference counted) */
typedef struct eng_grammar_cache eng_grammar_cache;

#define CI_GRAMMAR_CACHE_SIZE 64 /* compiled grammars kept for reuse */

/* A request's constraint: its grammar (one reference) and a matcher per sample. */
typedef struct eng_structured {
    eng_grammar *g;
    ci_grammar_matcher **m; /* [n] */
    int n;
} eng_structured;

ci_status ci_eng_grammar_cache_create(eng_grammar_cache **out);
/* Frees the cache's entries; grammars still referenced live until released. */
void ci_eng_grammar_cache_free(eng_grammar_cache *c);

/* Compiles (or finds cached) the request's constraint and makes n matchers.
 * kind is cinfer_structured_kind; *out is NULL for NONE. Errors name the
 * construct the compiler refused. */
ci_status ci_eng_structured_new(ci_engine *e, int kind, const char *text, int n,
                                eng_structured **out);
void ci_eng_structured_free(eng_structured *st);

/* Fills mask (ci_mask_words(V) words) with sample idx's allowed ids;
 * allocation-free. tokens_left: the tokens the sample may still draw,
 * counting this one: the mask keeps only tokens after which the grammar can
 * still end in time (ci_grammar_matcher_fill_mask_budget). no_eos: clear
 * the EOS ids (ignore_eos), and no budget (it reckons with an EOS). */
void ci_eng_structured_mask(const ci_engine *e, eng_structured *st, int idx, int no_eos,
                            int64_t tokens_left, uint32_t *mask);

#endif
