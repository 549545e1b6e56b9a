/* cpu_sampling.c — the CPU backend's sample op: the readable twin of the
 * CUDA kernels, built from the reference math in src/engine/sampling.c.
 * Per row: copy the logits row, apply its adjustments and bitmask, draw; logprobs come
 * from the raw row. Scratch (two rows and a sampler) is made on the first
 * call for a vocabulary size and kept. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "backend/sample_ref.h"

static ci_status reserve(ci_cpu *c, int V) {
    if (c->smp_vocab == V) return ci_ok();
    ci_sampler_free(c->smp);
    free(c->smp_row);
    free(c->smp_lsm);
    c->smp = NULL;
    c->smp_vocab = 0;
    c->smp_row = malloc(sizeof(float) * (size_t)V);
    c->smp_lsm = malloc(sizeof(float) * (size_t)V);
    if (!c->smp_row || !c->smp_lsm) return ci_errorf(CI_ERR_NOMEM, "cpu sample: out of memory");
    CI_TRY(ci_sampler_create(V, &c->smp));
    c->smp_vocab = V;
    return ci_ok();
}

ci_status ci_cpu_sample(ci_backend *be, const ci_tensor *logits, const ci_sample_row *rows, int n,
                        const ci_logit_adjust *adj, int nadj, const uint32_t *masks, int nmasks,
                        ci_sample_result *out) {
    ci_cpu *c = ci_cpu_of(be);
    CI_TRY(ci_sample_check("cpu sample", logits, rows, n, adj, nadj, masks, nmasks));
    const int V = (int)logits->cols;
    c->last_n = 0;
    if (n <= 0) return ci_ok();
    CI_TRY(reserve(c, V));
    if (n > c->last_cap) {
        int32_t *t = realloc(c->last_tok, sizeof(int32_t) * (size_t)n);
        if (!t) return ci_errorf(CI_ERR_NOMEM, "cpu sample: out of memory");
        c->last_tok = t;
        c->last_cap = n;
    }
    for (int i = 0; i < n; i++) {
        const ci_sample_row *r = &rows[i];
        const float *raw = (const float *)logits->data + (size_t)r->logits_row * (size_t)V;
        memcpy(c->smp_row, raw, sizeof(float) * (size_t)V);
        ci_logit_adjust_apply(c->smp_row, adj + r->adj_start, r->adj_count, r->repetition_penalty,
                              r->presence_penalty, r->frequency_penalty);
        if (r->mask_row >= 0) /* a grammar's allowed ids */
            ci_logit_mask_apply(c->smp_row, masks + (size_t)r->mask_row * (size_t)ci_mask_words(V),
                                V);
        if (r->vocab_limit > 0) /* padded vocabulary: never drawn */
            for (int t = r->vocab_limit; t < V; t++)
                c->smp_row[t] = -INFINITY;
        ci_sampling_params sp = {r->temperature, r->top_k, r->top_p, r->min_p, r->seed};
        ci_sample_result *o = &out[i];
        memset(o, 0, sizeof *o);
        int kept = 0;
        o->token = ci_sampler_draw(c->smp, c->smp_row, &sp, r->stream, r->step, &kept);
        o->num_kept = kept;
        c->last_tok[i] = o->token;
        if (r->top_logprobs >= 0) {
            ci_log_softmax(raw, V, c->smp_lsm);
            o->logprob = c->smp_lsm[o->token];
            o->num_top =
                ci_top_logprobs(c->smp_lsm, V, r->top_logprobs, o->top_ids, o->top_logprobs);
        }
    }
    c->last_n = n;
    return ci_ok();
}

/* The CPU batch is the caller's host batch (prepare_batch aliases it): the
 * ids are written in place, as the CUDA kernel writes its device copy. */
ci_status ci_cpu_take_samples(ci_backend *be, const ci_batch *dev) {
    ci_cpu *c = ci_cpu_of(be);
    if (!dev->sample_src) return ci_ok();
    int32_t *ids = (int32_t *)dev->token_ids;
    for (int t = 0; t < dev->num_tokens; t++) {
        const int r = dev->sample_src[t];
        if (r < 0) continue;
        if (r >= c->last_n)
            return ci_errorf(CI_ERR_INVALID,
                             "cpu take_samples: token %d reads sample row %d of the last %d", t, r,
                             c->last_n);
        ids[t] = c->last_tok[r];
    }
    return ci_ok();
}
