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
    int64_t dead_after;                /* retired: freed once the steps launched until then
                                          (scheduler step numbers) are complete */
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

/* Plan-ahead scheduling: the step on the device, planned and provisionally
 * applied (its sampled tokens placeholders: ci_sequence.pending_pos) while
 * the step before it ran. What its completion needs is kept here: the next
 * step's plan reuses the scheduler's output and the engine's sample arrays. */
typedef struct eng_flight {
    int64_t sched_step, eng_step;
    ci_sched_entry *entries; /* its plan (a failed step fails their requests) */
    int *plp_p0;             /* per entry: its first prompt-logprob position */
    int num_entries, entries_cap;
    ci_sched_result *res; /* the provisional update: one per sampled token */
    int nres, res_cap;
    int plp;                     /* it owes prompt logprobs: its logits are read at completion */
    const ci_sched_output *next; /* the step being launched (its rows hook reads it) */
    double hook_s;               /* completions run inside the rows hook (metrics) */
    /* the sample arrays it was launched with (swapped with the engine's) */
    ci_sample_row *srows;
    ci_sample_result *sres;
    ci_engine_logprob *row_lp;
    int srows_cap;
} eng_flight;

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
    /* scheduler step numbers: of the step in flight (the older one when
     * two are), and of the last step launched; a finished sequence or a
     * retired request named by a step in flight lives until it completes */
    int64_t fl_sched_step, last_launched;
    int ahead; /* plan-ahead scheduling (async_scheduling 2): engine_ahead.c */
    eng_flight fl;
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
/* Frees the requests retired before this step (none that a step in flight
 * may name). */
void ci_eng_free_dead(ci_engine *e);
/* Scheduler step of the oldest step in flight (INT64_MAX: none): a sequence
 * scheduled before it, or a request retired before it, is free to go. */
int64_t ci_eng_busy_since(const ci_engine *e);

/* step.c: what every step does (engine.c's loop and engine_ahead.c's) */
ci_status ci_eng_launch_step(ci_engine *e, const ci_sched_output *o, const ci_batch *b,
                             ci_status (*rows_hook)(void *, ci_runner_step *));
void ci_eng_fail_step(ci_engine *e, const ci_sched_output *o, ci_status s);
eng_request *ci_eng_request_of(const ci_sched_result *res, int i);
void ci_eng_emit_pending(ci_engine *e);
/* The outputs phase that ends a call: the completed step's pending outputs,
 * then a failed launch's requests (ls), the finished sequences; *outs as
 * the caller reads them. Returns ret, else the outputs' first error. */
ci_status ci_eng_end_call(ci_engine *e, const ci_sched_output *o, ci_status ls, ci_status ret,
                          const ci_engine_output **outs, int *num_outs);
/* *outs = e->outs as the caller reads them (pointers into the engine) */
void ci_eng_publish_outs(ci_engine *e, const ci_engine_output **outs, int *num_outs);

/* engine_ahead.c: one ci_engine_step with plan-ahead scheduling; the
 * flight's arrays freed */
ci_status ci_eng_step_ahead(ci_engine *e, const ci_engine_output **outs, int *num_outs);
void ci_eng_flight_free(eng_flight *f);

/* sample_rows.c: one sample row per token to draw this step (with the
 * logits processors' adjustment lists); then the prompt logprobs of the
 * rows that asked, and the sampled tokens into e->sampled. */
ci_status ci_eng_build_rows(ci_engine *e, const ci_sched_output *o, const int32_t *logits_start,
                            int *num_rows);
ci_status ci_eng_collect(ci_engine *e, const ci_sched_output *o, const int32_t *logits_start);
/* ... its parts: the prompt logprobs of entries[n] (the step's logits still
 * on the device; entry i's first prompt position p0[i], taken before the
 * step's update), and one row's logprobs from its sample result */
ci_status ci_eng_collect_plp(ci_engine *e, const ci_sched_entry *entries, int n,
                             const int32_t *logits_start, const int *p0);
void ci_eng_row_logprob(const ci_sample_result *res, ci_engine_logprob *lp);
/* One grammar mask row of a step: which request's sample fills it. */
typedef struct eng_mask_job {
    eng_request *r;
    int idx;
    int64_t left; /* tokens the sample may still output (the grammar's budget) */
} eng_mask_job;
ci_status ci_eng_fill_masks(void *user, ci_runner_step *st);
/* The sample arrays sized for n sample rows (build_rows then moves none). */
ci_status ci_eng_reserve_rows(ci_engine *e, int n);

#endif
