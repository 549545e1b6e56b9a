/* batch.h — turns a schedule output into the host ci_batch arrays.
 *
 * Owns: preallocated host buffers sized once from the scheduler's limits
 * (tokens per step, sequences per step, blocks per sequence); building a
 * step allocates nothing. Entry i of the schedule is sequence i of the
 * batch; its tokens are rows [query_start[i], query_start[i+1]).
 *
 * logits_indices: for each sequence, first the rows of prompt positions
 * < num_prompt-1 not returned before (only when it asked for
 * prompt_logprobs), then its last row if it samples. logits_start[i] ..
 * logits_start[i+1] are sequence i's entries in logits_indices.
 * block_tables' row stride (max_blocks_per_seq) is the most blocks a
 * context of the step covers; a row's entries past its own are 0. A token still being sampled by
 * the step on the device (plan-ahead scheduling: ci_sequence.pending_pos) is 0 in token_ids and its
 * sample row in sample_src (NULL when the step has no such token): the backend's take_samples fills
 * it in. */
#ifndef CINFER_ENGINE_BATCH_H
#define CINFER_ENGINE_BATCH_H

#include <stdint.h>

#include "backend/backend.h"
#include "engine/scheduler.h"
#include "util/status.h"

typedef struct ci_batch_builder {
    int max_tokens, max_seqs, max_blocks_per_seq, block_size;
    int32_t *token_ids, *positions, *query_start, *context_lens, *block_tables, *slot_mapping,
        *logits_indices, *logits_start, *sample_src;
    ci_batch batch; /* points into the buffers above */
} ci_batch_builder;

ci_status ci_batch_builder_init(ci_batch_builder *b, int max_tokens, int max_seqs,
                                int max_blocks_per_seq, int block_size);
/* Sized from a scheduler's config. */
ci_status ci_batch_builder_init_for(ci_batch_builder *b, const ci_scheduler *s);
void ci_batch_builder_free(ci_batch_builder *b);

/* Fills the buffers; *batch points at b->batch (valid until the next build).
 * CI_ERR_INVALID if the output exceeds the sizes given at init. */
ci_status ci_batch_build(ci_batch_builder *b, const ci_sched_output *out, const ci_batch **batch);

#endif
