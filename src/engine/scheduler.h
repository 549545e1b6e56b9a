/* scheduler.h — continuous batching with chunked prefill (vLLM V1 style).
 *
 * Owns: every live sequence (waiting, running, finished until popped), the
 * block manager, and the per-step schedule output buffers (sized once).
 *
 * Each schedule() call picks work under a token budget
 * (max_num_batched_tokens) and a running-sequence cap (max_num_seqs):
 *   1. running decodes (1 new token), best effective priority first;
 *   2. running prefills continuing a chunked prompt (or a recompute);
 *   3. if nothing was preempted this step: waiting/preempted sequences in
 *      (effective priority, arrival) order, each a prefill chunk of
 *      min(remaining tokens, remaining budget), after a prefix-cache lookup;
 *      admission keeps watermark blocks free (unless nothing is running) and
 *      stops at the first one that does not fit (strict order).
 * prefill_first: a step with work of 2 or 3 skips 1 (the decodes wait a step),
 * never two such steps in a row: the budget less one token per decode, the
 * decodes' next blocks kept free, no preemption for it; no prompt work that
 * can run: the usual step.
 * When a running sequence cannot get blocks, the running sequence not yet
 * scheduled this step with the worst (effective priority, arrival) — possibly
 * itself — is preempted by recompute: its blocks are freed and it returns to
 * the waiting queue with num_computed_tokens = 0.
 * Aging: effective priority = priority - (steps since arrival) / aging_steps
 * (integer division; aging_steps 0 disables), so any request eventually
 * outranks newer ones, for admission and for preemption alike.
 *
 * Engine loop: out = schedule(); apply out->copies (block copies) to the KV
 * cache; build the batch (batch.h); run the model; sample `samples` tokens
 * from each sampling entry's logits row; update(tokens); for each result
 * check stop conditions and call finish(); pop finished sequences.
 * n > 1: a request is one sequence until its prompt is done; the step that
 * samples its first token samples n tokens, and update() forks n-1 siblings
 * that share all blocks (the shared partial block is copied on write). */
#ifndef CINFER_ENGINE_SCHEDULER_H
#define CINFER_ENGINE_SCHEDULER_H

#include <stdint.h>

#include "engine/block_manager.h"
#include "engine/sequence.h"
#include "util/status.h"

typedef struct ci_sched_config {
    int max_num_batched_tokens; /* token budget per step (2048) */
    int max_num_seqs;           /* running sequences (256) */
    int max_model_len;          /* prompt + max_tokens limit; 0 = whole cache */
    int aging_steps;            /* steps per priority level gained (100) */
    int max_logits_rows;        /* logits rows per step: sampled rows, drafts and prompt-logprob
                                   positions; a prompt chunk that wants more is cut
                                   (0 = max_num_batched_tokens: no limit) */
    int prefill_first;          /* a step with prompt work (waiting or running chunks) runs it
                                   without the running decodes, never two steps in a row
                                   (SGLang's default; 0: decodes ride along, vLLM's) */
    ci_bm_config block;         /* num_blocks must be set */
} ci_sched_config;

ci_sched_config ci_sched_default_config(void);

typedef struct ci_request_params {
    const int32_t *prompt;
    int num_prompt;
    int max_tokens;      /* output tokens per sample, >= 1 */
    int n;               /* samples, >= 1 */
    int priority;        /* lower = more urgent */
    int prompt_logprobs; /* want logits rows for prompt positions */
    void *user;          /* copied to each sequence's user field */
} ci_request_params;

/* One scheduled sequence: compute tokens [start, start + num_new_tokens). */
typedef struct ci_sched_entry {
    ci_sequence *seq;
    int start; /* seq->num_computed_tokens when scheduled */
    int num_new_tokens;
    int samples;  /* 0: mid-prompt chunk; else tokens to sample: from the
                     last row (n for a group's first token, else 1), or, with
                     num_spec drafted tokens, one from each of the last
                     1 + num_spec rows */
    int num_spec; /* drafted tokens verified in this step (seq->spec) */
} ci_sched_entry;

typedef struct ci_sched_output {
    int64_t step;
    ci_sched_entry *entries; /* decodes, running prefills, then admissions */
    int num_entries;
    int num_tokens;        /* sum of num_new_tokens */
    int num_samples;       /* sum of samples: tokens update() expects */
    ci_block_copy *copies; /* to apply before the forward pass */
    int num_copies;
    int64_t *preempted; /* sequence ids preempted this step */
    int num_preempted;
    int num_decode_tokens, num_prefill_tokens, num_admitted;
} ci_sched_output;

/* What update() did per sampled token. */
typedef struct ci_sched_result {
    ci_sequence *seq; /* a forked sibling appears with its own result */
    int32_t token;
    int finished; /* 1: finished with reason length by update() */
    int row;      /* the sample (index into update()'s tokens) it came from */
} ci_sched_result;

typedef struct ci_sched_stats {
    int64_t steps, preemptions, admitted, rejected, finished, forks;
    int64_t prefill_tokens, decode_tokens, max_tokens_in_step;
    /* speculative decoding: drafted / accepted tokens, accepted by position */
    int64_t spec_drafted, spec_accepted, spec_verify_steps;
    int64_t spec_accepted_at[CI_SPEC_MAX];
} ci_sched_stats;

typedef struct ci_scheduler ci_scheduler;

ci_status ci_sched_create(const ci_sched_config *cfg, ci_scheduler **out);
/* Destroys every sequence still held (running, waiting, finished). */
void ci_sched_destroy(ci_scheduler *s);

/* Queues a request. CI_ERR_CAPACITY when prompt + max_tokens can never fit
 * the cache (or max_model_len); CI_ERR_INVALID on bad parameters. Returns
 * the group id (also the first sequence's id). */
ci_status ci_sched_add(ci_scheduler *s, const ci_request_params *p, int64_t *group_id);

/* Plans one step. The output (and its buffers) is valid until the next
 * schedule(). Zero entries when there is nothing to do. A step with entries
 * must be passed to update() before the next schedule() (CI_ERR_INVALID). */
ci_status ci_sched_schedule(ci_scheduler *s, const ci_sched_output **out);

/* Speculative decoding: extends planned entry i, a plain decode (one new
 * token, no forks pending), by up to k drafted tokens draft[0..k) — as many
 * as the step's token budget, max_tokens, the context and free KV blocks
 * allow (*granted, 0 when none). The entry then computes 1 + *granted tokens
 * and samples one token from each of their rows; update() keeps the longest
 * prefix of drafts that the samples confirm plus the first sample that does
 * not (or the bonus sample after all of them), and rolls num_computed_tokens
 * back over the rest (their slots are rewritten later; whole blocks past the
 * sequence's end are returned). Call between schedule() and update(). */
ci_status ci_sched_add_spec(ci_scheduler *s, int i, const int32_t *draft, int k, int *granted);

/* After the model ran: tokens[num_tokens] are the sampled tokens of the
 * sampling entries in entry order (`samples` each). Advances
 * num_computed_tokens, caches full blocks, appends tokens, forks n>1
 * groups, finishes sequences that reached max_tokens (reason length).
 * Entries whose sequence finished since schedule() are skipped. */
ci_status ci_sched_update(ci_scheduler *s, const int32_t *tokens, int num_tokens,
                          const ci_sched_result **results, int *num_results);

/* Ends a sequence: frees its blocks (full computed blocks stay in the prefix
 * cache) and moves it to the finished list. On an already finished sequence
 * only the reason is replaced (so stop can win over length). Do not pop
 * finished sequences between schedule() and update(). */
ci_status ci_sched_finish(ci_scheduler *s, ci_sequence *seq, ci_finish_reason reason);
/* Finishes every live sequence of a group with reason abort; *num (may be
 * NULL) gets how many. Unknown group: CI_ERR_INVALID. */
ci_status ci_sched_abort(ci_scheduler *s, int64_t group_id, int *num);
/* ci_sched_abort with another reason (error: an engine fault hit the group). */
ci_status ci_sched_finish_group(ci_scheduler *s, int64_t group_id, ci_finish_reason reason,
                                int *num);

/* The step planned by the last schedule() did not run (its forward or
 * sampling failed): nothing advances, and the next schedule() is allowed.
 * Its sequences keep their blocks; the caller finishes or retries them. */
ci_status ci_sched_abandon(ci_scheduler *s);

/* Next finished sequence (the caller destroys it), or NULL. One whose last
 * token a step on the device still samples (pending_pos >= 0) is held back
 * until the caller has written that token and cleared pending_pos. */
ci_sequence *ci_sched_pop_finished(ci_scheduler *s);

int ci_sched_num_waiting(const ci_scheduler *s);
int ci_sched_num_running(const ci_scheduler *s);
int ci_sched_has_unfinished(const ci_scheduler *s);
ci_sequence *ci_sched_find(const ci_scheduler *s, int64_t seq_id); /* live only */
ci_block_manager *ci_sched_block_manager(ci_scheduler *s);
const ci_sched_config *ci_sched_get_config(const ci_scheduler *s);
ci_sched_stats ci_sched_get_stats(const ci_scheduler *s);
/* Largest block table any accepted sequence can have (for batch.h). */
int ci_sched_max_blocks_per_seq(const ci_scheduler *s);

/* Block-manager invariants over all live sequences plus scheduler ones
 * (state matches queue, waiting sequences hold no blocks, caps). */
ci_status ci_sched_check(ci_scheduler *s);

#endif
