/* sequence.h — one generated sequence (a request, or one of its n samples).
 *
 * Owns: the token ids (prompt + output, capacity fixed at creation to
 * prompt + max_tokens so appends never allocate), progress counters
 * (num_computed_tokens: tokens whose K/V are in the cache; num_cached_tokens:
 * how many of those came from the prefix cache at the last admission), the
 * state machine, and the storage for its block table (the block manager
 * fills it) and its per-block prefix hashes.
 *
 * State machine:
 *   WAITING --admit--> RUNNING --preempt--> PREEMPTED --admit--> RUNNING
 *   any non-finished --finish(stop|length|abort|error)--> FINISHED
 * Sequences of one request share group_id; a sample forked from another has
 * parent_id set to it. The scheduler owns sequences until they are popped
 * from its finished list (then the caller destroys them). */
#ifndef CINFER_ENGINE_SEQUENCE_H
#define CINFER_ENGINE_SEQUENCE_H

#include <stdint.h>

#include "cinfer.h"
#include "util/status.h"

typedef enum ci_seq_state {
    CI_SEQ_WAITING = 0,
    CI_SEQ_RUNNING,
    CI_SEQ_PREEMPTED,
    CI_SEQ_FINISHED,
} ci_seq_state;

/* The public enum (include/cinfer.h) under the engine's names. */
typedef cinfer_finish_reason ci_finish_reason;
#define CI_FINISH_NONE CINFER_FINISH_NONE
#define CI_FINISH_STOP CINFER_FINISH_STOP
#define CI_FINISH_LENGTH CINFER_FINISH_LENGTH
#define CI_FINISH_ABORT CINFER_FINISH_ABORT
#define CI_FINISH_ERROR CINFER_FINISH_ERROR

/* Most tokens a step may draft for one sequence (speculative decoding). */
#define CI_SPEC_MAX 16

typedef struct ci_sequence {
    int64_t id;            /* unique per sequence */
    int64_t group_id;      /* the request: all n samples share it */
    int64_t parent_id;     /* sequence this one was forked from, -1 if none */
    int sample_index;      /* 0..n-1 within the group */
    int num_forks_pending; /* n-1 until the first token is sampled */
    ci_seq_state state;
    ci_finish_reason finish_reason;

    int priority;           /* lower value = more urgent */
    uint64_t arrival;       /* arrival order (samples inherit the parent's) */
    int64_t arrival_step;   /* scheduler step at add time (for aging) */
    int effective_priority; /* priority after aging, refreshed each step */

    int32_t *tokens;
    int num_tokens, num_prompt_tokens, max_tokens, token_capacity;
    int num_computed_tokens; /* tokens with K/V in the cache */
    int num_cached_tokens;   /* prefix-cache hits at the last admission */
    int num_preemptions;

    /* prompt_logprobs: rows wanted for prompt positions < num_prompt-1;
     * positions below prompt_logprobs_done were already returned. */
    int want_prompt_logprobs;
    int prompt_logprobs_done;

    /* Block table: physical block ids of logical blocks 0..num_blocks-1. */
    int32_t *block_table;
    int num_blocks, block_capacity;
    /* Chained prefix hashes of the first num_hashes full token blocks. */
    uint64_t *block_hashes;
    int num_hashes;
    int cache_cursor; /* blocks below this were offered to the prefix cache */

    /* Speculative decoding: tokens drafted for the step being planned
     * (ci_sched_add_spec); they are verified in the step and then cleared. */
    int32_t spec[CI_SPEC_MAX];
    int num_spec;
    /* Plan-ahead scheduling: tokens[pending_pos] is a placeholder for the
     * token that sample row pending_row of a step still on the device draws
     * (-1: none). The next step, planned before that one completes, reads
     * it on the device (ci_batch.sample_src); completion writes it here. */
    int pending_pos, pending_row;

    /* scheduler bookkeeping */
    int64_t scheduled_step;
    struct ci_sequence *next_finished;
    void *user; /* free for the engine */
} ci_sequence;

/* Creates a WAITING sequence. block_size sizes the block table so that
 * prompt + max_tokens tokens always fit. */
ci_status ci_seq_create(int64_t id, const int32_t *prompt, int num_prompt, int max_tokens,
                        int block_size, ci_sequence **out);
/* Copies tokens and request metadata (not the block table: that is the
 * block manager's fork). */
ci_status ci_seq_clone(const ci_sequence *src, int64_t new_id, ci_sequence **out);
void ci_seq_destroy(ci_sequence *seq);

/* CI_ERR_CAPACITY once prompt + max_tokens tokens are held. */
ci_status ci_seq_append(ci_sequence *seq, int32_t token);
/* Checks the transition against the state machine above. */
ci_status ci_seq_transition(ci_sequence *seq, ci_seq_state to);

static inline int ci_seq_num_output(const ci_sequence *seq) {
    return seq->num_tokens - seq->num_prompt_tokens;
}
static inline int ci_seq_is_finished(const ci_sequence *seq) {
    return seq->state == CI_SEQ_FINISHED;
}
/* The prompt-logprob rows a step computing positions [start, end) owes:
 * positions [*lo, *lo + count) (count returned; 0 when none). The one rule
 * the scheduler's row budget, the batch's logits rows and the engine's
 * reading of them share. */
static inline int ci_seq_plp_rows(const ci_sequence *seq, int start, int end, int *lo) {
    const int l = start > seq->prompt_logprobs_done ? start : seq->prompt_logprobs_done;
    const int h = end < seq->num_prompt_tokens - 1 ? end : seq->num_prompt_tokens - 1;
    *lo = l;
    return seq->want_prompt_logprobs && h > l ? h - l : 0;
}
const char *ci_seq_state_name(ci_seq_state s);
const char *ci_finish_reason_name(ci_finish_reason r);

#endif
