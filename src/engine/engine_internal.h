/* engine_internal.h — the engine's state, shared by engine.c (the step
 * loop), request.c (per-request state: validation, stop strings, holdback,
 * outputs) and sample_rows.c (logits processors and sample rows). Not a
 * public header. */
#ifndef CINFER_ENGINE_ENGINE_INTERNAL_H
#define CINFER_ENGINE_ENGINE_INTERNAL_H

#include "engine/batch.h"
#include "engine/engine_types.h"
#include "engine/runner.h"
#include "engine/scheduler.h"
#include "engine/structured.h"
#include "tokenizer/tokenizer.h"

typedef struct eng_sample {
    ci_detok_stream *detok;
    char *text; /* output text so far (stop string cut off) */
    size_t len, cap;
    size_t emitted; /* bytes already returned */
    int done;       /* finish reported */
} eng_sample;

typedef struct eng_request {
    int64_t id;
    ci_engine_sampling sp;
    uint64_t seed;
    int32_t *stop_ids;       /* stop_token_ids (EOS is checked separately) */
    cinfer_logit_bias *bias; /* sp.num_logit_bias entries (copied) */
    char **stop;
    size_t *stop_len;
    size_t max_stop_len;
    int n, samples_done;
    eng_sample *samples;
    ci_engine_logprob *plp; /* prompt logprobs, positions 1..num_prompt-1 */
    int num_plp, plp_reported, num_prompt, retired;
    int forked;                        /* the first token was sampled: samples 1..n-1 exist */
    eng_structured *st;                /* structured output: grammar + a matcher per sample */
    char *error;                       /* set when an engine fault ended the request */
    struct eng_request *next;          /* dead list */
    struct eng_request *lprev, *lnext; /* live list */
} eng_request;

/* A sampled token between ci_eng_token_stop and ci_eng_token_output. */
typedef struct eng_pending {
    ci_sequence *q;
    struct eng_request *r;
    int32_t token;
    int idx, stop_tok, nout;
    ci_finish_reason fr;
    const ci_engine_logprob *lp;
} eng_pending;

struct ci_engine {
    ci_engine_config cfg;
    ci_runner *runner;
    ci_tokenizer *tok;
    ci_scheduler *sched;
    ci_batch_builder bb;
    int V, max_model_len;
    int vocab_limit; /* ids >= this are never sampled (the tokenizer's size); 0 = V */
    int32_t eos_ids[16];
    int num_eos;
    ci_fault_fn fault;
    void *fault_user;
    float *plp_logits; /* [plp_rows][V] host copies of prompt-logprob rows, grown on need */
    int plp_rows;
    float *lsm;      /* [V] log-softmax of a prompt-logprob row */
    uint32_t *stamp; /* [V] token seen in the current adjustment list (== stamp_gen) */
    int32_t *slot;   /* [V] its entry there */
    uint32_t stamp_gen;
    /* the sample op's host arrays, grown only */
    ci_sample_row *srows;
    ci_sample_result *sres;
    ci_engine_logprob *row_lp; /* per sample row: its token's logprobs (outputs point here) */
    int srows_cap;
    int32_t draft[CI_SPEC_MAX]; /* speculative decoding: one sequence's draft */
    ci_draft_seq *dseqs;        /* draft model: the step's sequences to guess for */
    ci_sequence **dseq_of;
    int32_t *dout; /* their guesses, 16 per sequence */
    /* adaptive K: decayed acceptance rate of each draft position, and the
     * scheduler's counters at the last step (to take differences) */
    double acc_rate[CI_SPEC_MAX];
    int64_t seen_verify, seen_at[CI_SPEC_MAX];
    ci_logit_adjust *adj;
    int adj_cap, num_adj;
    /* structured outputs: the grammar vocabulary and cache (made on the
     * first constrained request), the step's bitmask rows (grown only) */
    ci_grammar_vocab *gvocab;
    eng_grammar_cache *gcache;
    uint32_t *masks;
    int masks_cap, num_masks;
    /* per mask row: the request and sample whose matcher fills it, filled
     * while the forward runs (ci_eng_fill_masks) */
    struct eng_mask_job *mask_jobs;
    int32_t *copy_src, *copy_dst;
    int copy_cap;
    int32_t *sampled;
    int sampled_cap;
    ci_engine_output *outs;
    int32_t *out_tokens;
    ci_engine_logprob **out_lp; /* pointer per output */
    eng_sample **out_smp;       /* per output: the sample whose text it shows ... */
    size_t *out_off;            /* ... from this offset */
    int outs_cap, num_outs;
    eng_request *dead, *live;
    int num_live_requests;
    /* async scheduling: the step on the device (its schedule output stays
     * the scheduler's until update), the last completed step's tokens
     * awaiting their output pass, and finished sequences the step on the
     * device may still name */
    int async, inflight;
    const ci_sched_output *fl_o;
    int64_t fl_step, out_step; /* the step in flight; the step whose tokens are output */
    eng_pending *pend;
    int pend_cap, num_pend;
    ci_sequence *grave;
    ci_engine_metrics m;
};

/* request.c */
/* Grows *p (and the parallel arrays in extra[]) to hold need elements. */
ci_status ci_eng_grow(void **p, int *cap, int need, size_t elem, int nptr, void **extra[],
                      size_t extra_elem[]);
int ci_eng_is_eos(const ci_engine *e, int32_t t);
ci_status ci_eng_validate(const ci_engine *e, const int32_t *prompt, int np,
                          const ci_engine_sampling *p);
/* A new request's state (copies of its stop lists, detokenizers). */
ci_status ci_eng_request_new(ci_engine *e, const ci_engine_sampling *sp, int num_prompt,
                             eng_request **out);
void ci_eng_request_free(eng_request *r);
/* Sequence q's sampled token t (already appended by update), in two
 * passes: ci_eng_token_stop before the next step is planned (EOS, stop ids,
 * the grammar, max_tokens: *p gets the rest, p->r NULL when nothing is
 * left), ci_eng_token_output after it is launched (detokenization, stop
 * strings, the output with logprobs p->lp, or NULL). */
ci_status ci_eng_token_stop(ci_engine *e, ci_sequence *q, int32_t t, int finished_length,
                            const ci_engine_logprob *lp, eng_pending *p);
ci_status ci_eng_token_output(ci_engine *e, const eng_pending *p);
/* Ends every sequence of r with reason error and message s (once). */
void ci_eng_fail_request(ci_engine *e, eng_request *r, ci_status s);
/* Outputs for the sequences the scheduler finished; retires done requests.
 * A sequence is destroyed at once, or by ci_eng_bury once the step on the
 * device (which may name it) is complete. */
ci_status ci_eng_pop_finished(ci_engine *e);
void ci_eng_bury(ci_engine *e);
/* Frees the requests retired before this step. */
void ci_eng_free_dead(ci_engine *e);

/* sample_rows.c: one sample row per token to draw this step (with the
 * logits processors' adjustment lists); then the prompt logprobs of the
 * rows that asked, and the sampled tokens into e->sampled. */
ci_status ci_eng_build_rows(ci_engine *e, const ci_sched_output *o, const int32_t *logits_start,
                            int *num_rows);
ci_status ci_eng_collect(ci_engine *e, const ci_sched_output *o, const int32_t *logits_start);
/* One grammar mask row of a step: which request's sample fills it. */
typedef struct eng_mask_job {
    eng_request *r;
    int idx;
    int64_t left; /* tokens the sample may still output (the grammar's budget) */
} eng_mask_job;
ci_status ci_eng_fill_masks(void *user);

#endif
