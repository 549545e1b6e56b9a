/* grammar.h — constrained decoding: grammars compiled to a pushdown matcher
 * whose per-step token mask says which vocabulary ids keep the output inside
 * the grammar.
 *
 * Sources: GBNF (llama.cpp syntax), a regex subset (full match), a JSON
 * Schema subset, and "any JSON object". All compile to the same rule form
 * over Unicode code points; tokens are byte strings, so the matcher carries
 * partial-UTF-8 state between tokens. See docs/structured_outputs.md for the
 * supported subsets, the whitespace policy and the mask cache.
 *
 * Threading: a ci_grammar is immutable after creation except for its internal
 * mask cache, which is guarded by a mutex, so one grammar may be shared by
 * matchers on several threads. A ci_grammar_vocab is immutable. A matcher is
 * owned by one sequence and used by one thread at a time. */
#ifndef CINFER_GRAMMAR_GRAMMAR_H
#define CINFER_GRAMMAR_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

typedef struct ci_grammar
    ci_grammar; /* compiled, immutable after creation except its internal mask cache */
typedef struct ci_grammar_vocab
    ci_grammar_vocab; /* a tokenizer's token byte strings + trie, built once per engine */
typedef struct ci_grammar_matcher ci_grammar_matcher; /* one per sequence */

/* Compilers. On failure *out is NULL, the status carries the message and,
 * when err is not NULL, the same message is copied into err (NUL-terminated,
 * truncated to errlen). Messages name the position or the construct:
 * "gbnf: line 2 col 7: expected '::='", "regex: unsupported construct
 * '\\b' at offset 3", "unsupported JSON Schema keyword 'not'". They are
 * about the request (CI_ERR_INVALID / CI_ERR_UNSUPPORTED; CI_ERR_NOMEM aside). */
ci_status ci_grammar_from_gbnf(const char *text, size_t len, ci_grammar **out, char *err,
                               size_t errlen);
/* Full-match semantics: the whole output must match the pattern. */
ci_status ci_grammar_from_regex(const char *pattern, size_t len, ci_grammar **out, char *err,
                                size_t errlen);
ci_status ci_grammar_from_json_schema(const char *schema_json, size_t len, ci_grammar **out,
                                      char *err, size_t errlen);
/* response_format {"type": "json_object"}: any JSON object. */
ci_status ci_grammar_json_object(ci_grammar **out, char *err, size_t errlen);
void ci_grammar_free(ci_grammar *g);
/* fill_mask calls on g so far, answered from the mask cache (hits) or
 * computed (misses): for benchmarks and metrics. */
void ci_grammar_mask_stats(ci_grammar *g, uint64_t *hits, uint64_t *misses);

/* token_bytes[i]/token_len[i]: the exact bytes token i decodes to (NULL/0 for ids that are
 * never allowed under a grammar, e.g. special/control tokens); eos_ids: ids allowed when the
 * grammar can end. The bytes are copied. */
ci_status ci_grammar_vocab_create(const uint8_t *const *token_bytes, const uint32_t *token_len,
                                  int n_vocab, const int32_t *eos_ids, int n_eos,
                                  ci_grammar_vocab **out);
void ci_grammar_vocab_free(ci_grammar_vocab *v);
int ci_grammar_vocab_size(const ci_grammar_vocab *v);
/* The vocabulary of a loaded tokenizer (vocab_tokenizer.c): each id's exact
 * output bytes; special tokens never allowed. eos_ids as above. */
typedef struct ci_tokenizer ci_tokenizer;
ci_status ci_grammar_vocab_from_tokenizer(const ci_tokenizer *tok, const int32_t *eos_ids,
                                          int n_eos, ci_grammar_vocab **out);
/* The same over a model vocabulary of n_vocab ids (the embedding's rows, which
 * may be padded past the tokenizer's ids: the extra ids are never allowed);
 * n_vocab <= the tokenizer's size means the tokenizer's. */
ci_status ci_grammar_vocab_from_tokenizer_n(const ci_tokenizer *tok, int n_vocab,
                                            const int32_t *eos_ids, int n_eos,
                                            ci_grammar_vocab **out);

/* The matcher keeps a reference to g and v: both must outlive it. */
ci_status ci_grammar_matcher_create(ci_grammar *g, const ci_grammar_vocab *v,
                                    ci_grammar_matcher **out);
void ci_grammar_matcher_free(ci_grammar_matcher *m);
/* mask has (n_vocab + 31) / 32 words; bit (id % 32) of word id / 32 set = allowed.
 * After an accepted EOS the mask is empty. (So is it in a state no token of
 * the vocabulary can continue and that cannot end: only a grammar whose
 * characters the vocabulary cannot spell gets there.) */
void ci_grammar_matcher_fill_mask(ci_grammar_matcher *m, uint32_t *mask);
/* The same mask, less the tokens after which the text could no longer end
 * within tokens_left - 1 more tokens (tokens_left counts the one this mask is
 * for): the grammar's shortest completion of the state after the token, one
 * token per byte, plus an EOS unless that state is done (nothing else can
 * follow: the engine then ends without one). So a request whose budget
 * allowed ending at its first step can always end in time: max_tokens never
 * cuts a constrained output. Exact when every byte is a single-byte token
 * (byte-level BPE, SentencePiece byte fallback); otherwise, and when the
 * budget was too small from the start, each step keeps the tokens that come
 * closest to the end (a best effort). Costs nothing over fill_mask until the
 * budget is close (the bound is cached with the mask); then it walks the
 * state's tokens (a cold mask's work) and is not cached. tokens_left < 1:
 * no limit. */
void ci_grammar_matcher_fill_mask_budget(ci_grammar_matcher *m, uint32_t *mask,
                                         int64_t tokens_left);
/* The fewest bytes that bring the text so far to a complete sentence (0:
 * it is one; UINT32_MAX: it cannot become one). */
uint32_t ci_grammar_matcher_min_bytes_to_accept(const ci_grammar_matcher *m);
/* The tokens fill_mask_budget reckons the match needs to end: 0 when done (or
 * EOS accepted), else min_bytes_to_accept + 1 (the EOS); UINT32_MAX: never. */
uint32_t ci_grammar_matcher_tokens_to_end(const ci_grammar_matcher *m);
/* 0: accepted; -1: the token is not allowed (state unchanged). An EOS id is accepted when the
 * grammar can end, and ends the matcher. */
int ci_grammar_matcher_accept(ci_grammar_matcher *m, int32_t token);
int ci_grammar_matcher_can_end(
    const ci_grammar_matcher *m); /* the text so far is a complete sentence */
int ci_grammar_matcher_is_done(
    const ci_grammar_matcher *m); /* nothing but the end is possible (or EOS accepted) */
/* Undo the last n accepted tokens (accept_bytes calls count as one each); up
 * to 32 are kept, a larger n goes back as far as is kept. */
void ci_grammar_matcher_rollback(ci_grammar_matcher *m, int n_tokens);
/* For tests and for accepting prompt-forced text: feed raw bytes. 0 ok, -1 rejected. */
int ci_grammar_matcher_accept_bytes(ci_grammar_matcher *m, const uint8_t *bytes, size_t n);

#endif
