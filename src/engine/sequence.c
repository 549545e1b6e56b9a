#include "engine/sequence.h"

#include <stdlib.h>
#include <string.h>

static ci_status seq_alloc(int64_t id, int token_capacity, int block_size, ci_sequence **out) {
    *out = NULL;
    if (block_size < 1)
        return ci_errorf(CI_ERR_INVALID, "sequence %lld: block size %d < 1", (long long)id,
                         block_size);
    ci_sequence *s = calloc(1, sizeof *s);
    if (!s) return ci_errorf(CI_ERR_NOMEM, "sequence %lld: out of memory", (long long)id);
    s->id = id;
    s->group_id = id;
    s->parent_id = -1;
    s->scheduled_step = -1;
    s->pending_pos = s->pending_row = -1;
    s->token_capacity = token_capacity;
    s->block_capacity = (token_capacity + block_size - 1) / block_size;
    s->tokens = malloc((size_t)token_capacity * sizeof *s->tokens);
    s->block_table = malloc((size_t)s->block_capacity * sizeof *s->block_table);
    s->block_hashes = malloc((size_t)s->block_capacity * sizeof *s->block_hashes);
    if (!s->tokens || !s->block_table || !s->block_hashes) {
        ci_seq_destroy(s);
        return ci_errorf(CI_ERR_NOMEM, "sequence %lld: out of memory for %d tokens", (long long)id,
                         token_capacity);
    }
    *out = s;
    return ci_ok();
}

ci_status ci_seq_create(int64_t id, const int32_t *prompt, int num_prompt, int max_tokens,
                        int block_size, ci_sequence **out) {
    *out = NULL;
    if (num_prompt < 1 || !prompt)
        return ci_errorf(CI_ERR_INVALID, "sequence %lld: empty prompt", (long long)id);
    if (max_tokens < 1)
        return ci_errorf(CI_ERR_INVALID, "sequence %lld: max_tokens %d < 1", (long long)id,
                         max_tokens);
    if (num_prompt > INT32_MAX / 2 || max_tokens > INT32_MAX / 2 - num_prompt)
        return ci_errorf(CI_ERR_INVALID, "sequence %lld: prompt %d + max_tokens %d too large",
                         (long long)id, num_prompt, max_tokens);
    ci_sequence *s;
    CI_TRY(seq_alloc(id, num_prompt + max_tokens, block_size, &s));
    memcpy(s->tokens, prompt, (size_t)num_prompt * sizeof *prompt);
    s->num_tokens = s->num_prompt_tokens = num_prompt;
    s->max_tokens = max_tokens;
    *out = s;
    return ci_ok();
}

ci_status ci_seq_clone(const ci_sequence *src, int64_t new_id, ci_sequence **out) {
    /* Same capacities as the source. */
    ci_sequence *s = calloc(1, sizeof *s);
    if (!s) return ci_errorf(CI_ERR_NOMEM, "sequence %lld: out of memory", (long long)new_id);
    *s = *src;
    s->tokens = malloc((size_t)src->token_capacity * sizeof *s->tokens);
    s->block_table = malloc((size_t)src->block_capacity * sizeof *s->block_table);
    s->block_hashes = malloc((size_t)src->block_capacity * sizeof *s->block_hashes);
    if (!s->tokens || !s->block_table || !s->block_hashes) {
        ci_seq_destroy(s);
        return ci_errorf(CI_ERR_NOMEM, "sequence %lld: out of memory", (long long)new_id);
    }
    memcpy(s->tokens, src->tokens, (size_t)src->num_tokens * sizeof *s->tokens);
    memcpy(s->block_hashes, src->block_hashes, (size_t)src->num_hashes * sizeof *s->block_hashes);
    s->id = new_id;
    s->parent_id = src->id;
    s->num_blocks = 0;
    s->num_spec = 0;
    s->pending_pos = s->pending_row = -1;
    s->next_finished = NULL;
    s->user = NULL;
    *out = s;
    return ci_ok();
}

void ci_seq_destroy(ci_sequence *seq) {
    if (!seq) return;
    free(seq->tokens);
    free(seq->block_table);
    free(seq->block_hashes);
    free(seq);
}

ci_status ci_seq_append(ci_sequence *seq, int32_t token) {
    if (seq->num_tokens >= seq->token_capacity)
        return ci_errorf(
            CI_ERR_CAPACITY, "sequence %lld: already holds %d tokens (prompt %d + max_tokens %d)",
            (long long)seq->id, seq->num_tokens, seq->num_prompt_tokens, seq->max_tokens);
    seq->tokens[seq->num_tokens++] = token;
    return ci_ok();
}

ci_status ci_seq_transition(ci_sequence *seq, ci_seq_state to) {
    ci_seq_state from = seq->state;
    int ok = 0;
    switch (from) {
    case CI_SEQ_WAITING: ok = to == CI_SEQ_RUNNING || to == CI_SEQ_FINISHED; break;
    case CI_SEQ_RUNNING: ok = to == CI_SEQ_PREEMPTED || to == CI_SEQ_FINISHED; break;
    case CI_SEQ_PREEMPTED: ok = to == CI_SEQ_RUNNING || to == CI_SEQ_FINISHED; break;
    case CI_SEQ_FINISHED: ok = 0; break;
    }
    if (!ok)
        return ci_errorf(CI_ERR_INVALID, "sequence %lld: illegal transition %s -> %s",
                         (long long)seq->id, ci_seq_state_name(from), ci_seq_state_name(to));
    seq->state = to;
    return ci_ok();
}

const char *ci_seq_state_name(ci_seq_state s) {
    switch (s) {
    case CI_SEQ_WAITING: return "waiting";
    case CI_SEQ_RUNNING: return "running";
    case CI_SEQ_PREEMPTED: return "preempted";
    case CI_SEQ_FINISHED: return "finished";
    }
    return "?";
}

const char *ci_finish_reason_name(ci_finish_reason r) {
    switch (r) {
    case CI_FINISH_NONE: return "none";
    case CI_FINISH_STOP: return "stop";
    case CI_FINISH_LENGTH: return "length";
    case CI_FINISH_ABORT: return "abort";
    case CI_FINISH_ERROR: return "error";
    }
    return "?";
}
