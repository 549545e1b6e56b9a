/* sample_rows.c — a step's sample rows: one per token to draw, with the
 * logits processors of its request as an adjustment list (min_tokens
 * masking of EOS and stop ids, logit_bias, repetition / presence /
 * frequency penalties), the vocabulary limit of a padded embedding, the
 * grammar bitmask of a constrained sample (structured.c), and after the
 * runner sampled: the tokens, their logprobs and the prompt logprobs. */
#include <stdlib.h>
#include <string.h>

#include "backend/sample_ref.h"
#include "engine/engine_internal.h"

_Static_assert(CI_MAX_LOGPROBS <= CI_SAMPLE_MAX_TOP, "the sample op returns CI_SAMPLE_MAX_TOP");

/* The adjustment entry of token t in the list being built (one per
 * distinct token: e->stamp marks tokens seen in this list). */
static ci_logit_adjust *touch(ci_engine *e, int32_t t) {
    if (e->stamp[t] != e->stamp_gen) {
        e->stamp[t] = e->stamp_gen;
        e->slot[t] = e->num_adj;
        ci_logit_adjust *a = &e->adj[e->num_adj++];
        a->token = t;
        a->flags = 0;
        a->count = 0;
        a->bias = 0.0f;
    }
    return &e->adj[e->slot[t]];
}

/* Appends sequence q's logits processors (with its first nspec drafted
 * tokens as output) to e->adj as one list of distinct tokens (applied by the sample op in this
 * order: min_tokens masking of EOS and stop ids, logit_bias, repetition penalty over prompt +
 * output, presence and frequency penalties over the output). Returns its start and length. */
static ci_status build_adjust(ci_engine *e, const eng_request *r, const ci_sequence *q, int nspec,
                              int *start, int *count) {
    const ci_engine_sampling *p = &r->sp;
    int mask = ci_seq_num_output(q) + nspec < p->min_tokens;
    int rep = p->repetition_penalty != 1.0f;
    int pf = p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
    *start = e->num_adj;
    *count = 0;
    /* a sequence that has ended (plan-ahead: since this step's plan) is
     * sampled only to be dropped */
    if (ci_seq_is_finished(q)) return ci_ok();
    if (!mask && !rep && !pf && p->num_logit_bias == 0) return ci_ok();
    int need =
        e->num_adj + e->num_eos + p->num_stop_token_ids + p->num_logit_bias + q->num_tokens + nspec;
    CI_TRY(
        ci_eng_grow((void **)&e->adj, &e->adj_cap, need, sizeof(ci_logit_adjust), 0, NULL, NULL));
    if (++e->stamp_gen == 0) { /* wrapped: reset */
        memset(e->stamp, 0, sizeof(uint32_t) * (size_t)e->V);
        e->stamp_gen = 1;
    }
    if (mask) {
        if (!p->ignore_eos)
            for (int i = 0; i < e->num_eos; i++)
                touch(e, e->eos_ids[i])->flags |= CI_ADJ_MASK;
        for (int i = 0; i < p->num_stop_token_ids; i++)
            touch(e, r->stop_ids[i])->flags |= CI_ADJ_MASK;
    }
    for (int i = 0; i < p->num_logit_bias; i++) { /* a token listed twice: the last wins */
        ci_logit_adjust *a = touch(e, r->bias[i].token);
        a->flags |= CI_ADJ_BIAS;
        a->bias = r->bias[i].bias;
    }
    /* the first nspec drafted tokens count as output: row j of a verified
     * decode sees the drafts before it, as if they had been sampled */
    if (rep) {
        for (int i = 0; i < q->num_tokens; i++)
            touch(e, q->tokens[i])->flags |= CI_ADJ_REPEAT;
        for (int i = 0; i < nspec; i++)
            touch(e, q->spec[i])->flags |= CI_ADJ_REPEAT;
    }
    if (pf) {
        for (int i = q->num_prompt_tokens; i < q->num_tokens; i++)
            touch(e, q->tokens[i])->count++;
        for (int i = 0; i < nspec; i++)
            touch(e, q->spec[i])->count++;
    }
    *count = e->num_adj - *start;
    return ci_ok();
}

/* Top-k of lsm plus the given token's value. */
static void fill_logprob(const ci_engine *e, const float *lsm, int k, int32_t token,
                         ci_engine_logprob *lp) {
    lp->token = token;
    lp->logprob = lsm[token];
    lp->num_top = ci_top_logprobs(lsm, e->V, k, lp->top_ids, lp->top_logprobs);
}

/* Prompt logprobs of entry i's rows [r0, r0 + nplp), for prompt positions
 * from p0: copied to the host (the only logits that cross), log-softmax
 * and top-k there. */
static ci_status prompt_logprobs(ci_engine *e, const ci_sched_entry *en, int r0, int nplp, int p0) {
    ci_sequence *q = en->seq;
    eng_request *r = q->user;
    const size_t V = (size_t)e->V;
    if (nplp > e->plp_rows) { /* grown only for requests that ask */
        float *p = realloc(e->plp_logits, sizeof(float) * V * (size_t)nplp);
        if (!p) return ci_errorf(CI_ERR_NOMEM, "engine: out of memory (prompt logprobs)");
        e->plp_logits = p;
        e->plp_rows = nplp;
    }
    CI_TRY(ci_runner_logits_to_host(e->runner, r0, nplp, e->plp_logits));
    for (int j = 0; j < nplp; j++) {
        int pos = p0 + j; /* predicts prompt token pos + 1 */
        if (pos + 1 >= r->num_prompt || pos < 0) continue;
        ci_log_softmax(e->plp_logits + (size_t)j * V, e->V, e->lsm);
        fill_logprob(e, e->lsm, r->sp.prompt_logprobs, q->tokens[pos + 1], &r->plp[pos]);
        if (pos + 1 > r->num_plp) r->num_plp = pos + 1;
    }
    return ci_ok();
}

ci_status ci_eng_reserve_rows(ci_engine *e, int n) {
    void **extra[2] = {(void **)&e->sres, (void **)&e->row_lp};
    size_t esz[2] = {sizeof(ci_sample_result), sizeof(ci_engine_logprob)};
    CI_TRY(ci_eng_grow((void **)&e->srows, &e->srows_cap, n + 1, sizeof(ci_sample_row), 2, extra,
                       esz));
    return ci_eng_grow((void **)&e->sampled, &e->sampled_cap, n + 1, sizeof(int32_t), 0, NULL,
                       NULL);
}

/* a constrained sample's row gets a mask; not one its sequence no longer
 * needs (plan-ahead: ended by the step completed after this one's plan) */
static int wants_mask(const ci_sequence *q) {
    return ((const eng_request *)q->user)->st && !ci_seq_is_finished(q);
}

/* One row per sample to draw (n > 1 forks share their sequence's logits
 * row and adjustment list). */
ci_status ci_eng_build_rows(ci_engine *e, const ci_sched_output *o, const int32_t *logits_start,
                            int *num_rows) {
    e->num_adj = 0;
    e->num_masks = 0;
    *num_rows = 0;
    CI_TRY(ci_eng_reserve_rows(e, o->num_samples));
    int k = 0, nmask = 0;
    for (int i = 0; i < o->num_entries; i++)
        if (o->entries[i].samples > 0 && wants_mask(o->entries[i].seq))
            nmask += o->entries[i].samples;
    const int W = ci_mask_words(e->V);
    if (nmask > 0) {
        void **extra[1] = {(void **)&e->mask_jobs};
        size_t esz[1] = {sizeof(eng_mask_job)};
        CI_TRY(ci_eng_grow((void **)&e->masks, &e->masks_cap, nmask, sizeof(uint32_t) * (size_t)W,
                           1, extra, esz));
    }
    for (int i = 0; i < o->num_entries; i++) {
        const ci_sched_entry *en = &o->entries[i];
        if (en->samples == 0) continue;
        ci_sequence *q = en->seq;
        eng_request *r = q->user;
        int a0 = 0, na = 0, spec = en->num_spec > 0;
        uint64_t step = (uint64_t)ci_seq_num_output(q);
        for (int j = 0; j < en->samples; j++) {
            /* a verified decode: row j samples output step + j after drafts
             * 0..j-1, from its own logits row; forks share the last row */
            if (j == 0 || spec) CI_TRY(build_adjust(e, r, q, spec ? j : 0, &a0, &na));
            int idx = en->samples > 1 && !spec ? j : q->sample_index;
            ci_sample_row *row = &e->srows[k++];
            memset(row, 0, sizeof *row);
            row->mask_row = -1;
            row->logits_row = spec ? logits_start[i] + j : logits_start[i + 1] - 1;
            row->top_logprobs = r->sp.logprobs >= 0 && idx < r->n ? r->sp.logprobs : -1;
            row->adj_start = a0;
            row->adj_count = na;
            row->vocab_limit = e->vocab_limit;
            row->temperature = r->sp.temperature;
            row->top_k = r->sp.top_k;
            row->top_p = r->sp.top_p;
            row->min_p = r->sp.min_p;
            row->repetition_penalty = r->sp.repetition_penalty;
            row->presence_penalty = r->sp.presence_penalty;
            row->frequency_penalty = r->sp.frequency_penalty;
            row->seed = r->seed;
            row->stream = (uint64_t)idx;
            row->step = spec ? step + (uint64_t)j : step;
            if (wants_mask(q)) { /* the sample's grammar mask (constrained rows are never drafts),
                                  * filled by ci_eng_fill_masks while the forward runs; max_tokens
                                  * is the tighter bound: prompt + max_tokens fit max_model_len */
                row->mask_row = e->num_masks++;
                e->mask_jobs[row->mask_row] = (eng_mask_job){
                    .r = r, .idx = idx, .left = (int64_t)q->max_tokens - (int64_t)row->step};
            }
        }
    }
    *num_rows = k;
    return ci_ok();
}

/* Fills the step's grammar masks (runner hook: the host does this while the
 * device runs the forward, so mask work hides behind it). */
ci_status ci_eng_fill_masks(void *user, ci_runner_step *st) {
    ci_engine *e = user;
    (void)st;
    const size_t W = (size_t)ci_mask_words(e->V);
    for (int m = 0; m < e->num_masks; m++) {
        const eng_mask_job *j = &e->mask_jobs[m];
        ci_eng_structured_mask(e, j->r->st, j->idx, j->r->sp.ignore_eos, j->left,
                               e->masks + (size_t)m * W);
    }
    return ci_ok();
}

/* Entry en's prompt-logprob rows, if it owes any, from prompt position p0
 * (-1: as the sequence stands before the step's update) */
static ci_status entry_plp(ci_engine *e, const ci_sched_entry *en, int r0, int r1, int p0) {
    const eng_request *r = en->seq->user;
    int nplp = r1 - r0 - (en->num_spec > 0 ? 1 + en->num_spec : en->samples > 0 ? 1 : 0);
    if (nplp <= 0 || !r->plp) return ci_ok();
    if (p0 < 0) ci_seq_plp_rows(en->seq, en->start, en->start + en->num_new_tokens, &p0);
    return prompt_logprobs(e, en, r0, nplp, p0);
}

void ci_eng_row_logprob(const ci_sample_result *res, ci_engine_logprob *lp) {
    lp->token = res->token;
    lp->logprob = res->logprob;
    lp->num_top = res->num_top;
    memcpy(lp->top_ids, res->top_ids, sizeof(int32_t) * (size_t)res->num_top);
    memcpy(lp->top_logprobs, res->top_logprobs, sizeof(float) * (size_t)res->num_top);
}

ci_status ci_eng_collect_plp(ci_engine *e, const ci_sched_entry *entries, int n,
                             const int32_t *logits_start, const int *p0) {
    for (int i = 0; i < n; i++)
        CI_TRY(entry_plp(e, &entries[i], logits_start[i], logits_start[i + 1], p0[i]));
    return ci_ok();
}

ci_status ci_eng_collect(ci_engine *e, const ci_sched_output *o, const int32_t *logits_start) {
    int k = 0;
    for (int i = 0; i < o->num_entries; i++) {
        const ci_sched_entry *en = &o->entries[i];
        CI_TRY(entry_plp(e, en, logits_start[i], logits_start[i + 1], -1));
        for (int j = 0; j < en->samples; j++, k++) {
            e->sampled[k] = e->sres[k].token;
            /* the output of row k points at row_lp[k] */
            if (e->srows[k].top_logprobs >= 0) ci_eng_row_logprob(&e->sres[k], &e->row_lp[k]);
        }
    }
    return ci_ok();
}
