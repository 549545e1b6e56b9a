/* sample_ref.h — the CPU reference of the sample op: next-token selection
 * from a logits row (every backend's sample op matches it).
 *
 * Greedy is argmax (lowest id on ties). Random sampling applies, in HF's
 * order, temperature -> top-k -> top-p -> min-p, and draws from the
 * renormalised remainder, by inverse CDF in token-id order, with a
 * counter-based RNG (Philox4x32-10) keyed by
 * (seed, stream, step): a request's tokens depend only on its seed and the index of
 * the token, never on what else is in the batch. A sampler owns its scratch
 * (created once per vocab size); sampling allocates nothing. */
#ifndef CINFER_BACKEND_SAMPLE_REF_H
#define CINFER_BACKEND_SAMPLE_REF_H

#include <stdint.h>

#include "backend/backend.h"
#include "util/status.h"

typedef struct ci_sampling_params {
    float temperature; /* <= 0: greedy */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1 (or <= 0): off */
    float min_p;       /* <= 0: off */
    uint64_t seed;
} ci_sampling_params;

/* Greedy defaults: temperature 0, everything off, seed 0. */
ci_sampling_params ci_sampling_greedy(void);

typedef struct ci_sampler ci_sampler;

ci_status ci_sampler_create(int vocab_size, ci_sampler **out);
void ci_sampler_free(ci_sampler *s);

/* argmax, lowest id on ties (NaN never wins). */
int32_t ci_sample_greedy(const float *logits, int n);

/* Picks a token from logits[vocab]; step = index of the generated token
 * within its request (0 for the first). */
int32_t ci_sampler_sample(ci_sampler *s, const float *logits, const ci_sampling_params *p,
                          uint64_t step);

/* The distribution ci_sampler_sample draws from: probs[vocab], zero for
 * masked tokens (one-hot for greedy). For tests and logprob reporting. */
void ci_sampler_probs(ci_sampler *s, const float *logits, const ci_sampling_params *p,
                      float *probs);

/* Philox4x32-10 block: out = philox(counter, key). */
void ci_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);
/* Uniform double in [0, 1) for (seed, step) (53 random bits). */
double ci_philox_uniform(uint64_t seed, uint64_t step);

/* Uniform in [0, 1) for (seed, stream, step): Philox counter words
 * (step lo, step hi, stream lo, stream hi); stream 0 equals
 * ci_philox_uniform(seed, step). */
double ci_philox_uniform3(uint64_t seed, uint64_t stream, uint64_t step);

/* ci_sampler_sample with the draw keyed by (seed, stream, step): stream is
 * the sample index of a request with n > 1 (0 gives ci_sampler_sample).
 * Also reports the number of tokens with nonzero probability (1 for
 * greedy) in *num_kept (may be NULL). */
int32_t ci_sampler_draw(ci_sampler *s, const float *logits, const ci_sampling_params *p,
                        uint64_t stream, uint64_t step, int *num_kept);

/* Applies a logits row's adjustment list in place (see ci_logit_adjust in
 * backend.h; one entry per distinct token). */
void ci_logit_adjust_apply(float *row, const ci_logit_adjust *adj, int n, float repetition_penalty,
                           float presence_penalty, float frequency_penalty);

/* Sets row[id] = -inf for every id whose bit in mask (ci_mask_words(n)
 * words) is clear: a grammar's disallowed tokens. */
void ci_logit_mask_apply(float *row, const uint32_t *mask, int n);

/* The k best of lsm[n] (largest first, lowest id on ties, NaN never):
 * writes ids/vals, returns how many (< k only when fewer are not NaN). */
int ci_top_logprobs(const float *lsm, int n, int k, int32_t *ids, float *vals);

/* Returns logsumexp(logits) (computed in double); out[i] = logits[i] - lse
 * when out is not NULL (may alias logits). */
double ci_log_softmax(const float *logits, int n, float *out);

#endif
