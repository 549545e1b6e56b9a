/* generate.h — single-sequence generation and perplexity on a ci_model.
 *
 * A small driver used by the CLI (and the golden tests) until the batching
 * engine exists: one KV cache with a trivial sequential block table, prefill
 * in chunks of at most max_batch_tokens, then one token per decode step. */
#ifndef CINFER_ENGINE_GENERATE_H
#define CINFER_ENGINE_GENERATE_H

#include <stdint.h>

#include "backend/sample_ref.h"
#include "model/model.h"
#include "util/progress.h" /* ci_now */

/* Called for each generated token (index = 0, 1, ...); return nonzero to stop. */
typedef int (*ci_token_fn)(int32_t token, int index, void *user);

typedef struct ci_generate_params {
    int max_new_tokens;
    int block_size; /* KV block size; 0 = 16 */
    ci_sampling_params sampling;
    const int32_t *stop_ids; /* generation ends after emitting one of these */
    int num_stop_ids;
    ci_token_fn on_token; /* may be NULL */
    void *user;
    float *prompt_logits; /* optional [vocab]: logits at the last prompt position */
} ci_generate_params;

typedef struct ci_generate_stats {
    int prompt_tokens;
    int generated_tokens;
    int stopped;      /* 1: a stop id, 2: the callback, 0: max_new_tokens */
    double prefill_s; /* prompt forward passes (incl. first-token logits) */
    double decode_s;  /* the decode steps after the first token */
} ci_generate_stats;

/* out_tokens (may be NULL) receives up to max_new_tokens ids; stats may be NULL. */
ci_status ci_generate(ci_model *m, const int32_t *prompt, int n_prompt, const ci_generate_params *p,
                      int32_t *out_tokens, ci_generate_stats *stats);

/* Mean next-token NLL of ids over non-overlapping windows of ctx tokens
 * (the last may be shorter), each run from an empty cache; a window's first
 * token is context only. *count = number of predicted tokens. */
ci_status ci_perplexity(ci_model *m, const int32_t *ids, int n, int ctx, double *mean_nll,
                        long *count);

#endif
