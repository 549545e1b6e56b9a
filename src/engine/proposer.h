/* proposer.h — speculative decoding's drafters: given a sequence's tokens,
 * guess the next k. The engine verifies the guesses in one target forward
 * (ci_sched_add_spec, sample_rows.c), so a wrong guess costs a little
 * compute and never changes the output.
 *
 * n-gram prompt lookup (vLLM's "ngram", llama.cpp's lookup): the longest
 * suffix of n tokens, n from ngram_max down to ngram_min, is looked up in
 * the earlier tokens (prompt and output); the tokens that followed its most
 * recent earlier occurrence are the draft. No model, no state. */
#ifndef CINFER_ENGINE_PROPOSER_H
#define CINFER_ENGINE_PROPOSER_H

#include <stdint.h>

/* Writes up to k drafted tokens to out; returns how many (0: no match). */
int ci_ngram_propose(const int32_t *tokens, int n, int ngram_min, int ngram_max, int k,
                     int32_t *out);

#endif
