#include "engine/batch.h"

#include <stdlib.h>
#include <string.h>

ci_status ci_batch_builder_init(ci_batch_builder *b, int max_tokens, int max_seqs,
                                int max_blocks_per_seq, int block_size) {
    memset(b, 0, sizeof *b);
    if (max_tokens < 1 || max_seqs < 1 || max_blocks_per_seq < 1 || block_size < 1)
        return ci_errorf(
            CI_ERR_INVALID,
            "batch builder: sizes %d tokens, %d seqs, %d blocks, block %d must be >= 1", max_tokens,
            max_seqs, max_blocks_per_seq, block_size);
    b->max_tokens = max_tokens;
    b->max_seqs = max_seqs;
    b->max_blocks_per_seq = max_blocks_per_seq;
    b->block_size = block_size;
    size_t t = (size_t)max_tokens, sq = (size_t)max_seqs;
    b->token_ids = malloc(t * sizeof(int32_t));
    b->positions = malloc(t * sizeof(int32_t));
    b->slot_mapping = malloc(t * sizeof(int32_t));
    b->logits_indices = malloc(t * sizeof(int32_t));
    b->sample_src = malloc(t * sizeof(int32_t));
    b->query_start = malloc((sq + 1) * sizeof(int32_t));
    b->logits_start = malloc((sq + 1) * sizeof(int32_t));
    b->context_lens = malloc(sq * sizeof(int32_t));
    b->block_tables = calloc(sq * (size_t)max_blocks_per_seq, sizeof(int32_t));
    if (!b->token_ids || !b->positions || !b->slot_mapping || !b->logits_indices ||
        !b->sample_src || !b->query_start || !b->logits_start || !b->context_lens ||
        !b->block_tables) {
        ci_batch_builder_free(b);
        return ci_errorf(CI_ERR_NOMEM, "batch builder: out of memory (%d seqs x %d blocks)",
                         max_seqs, max_blocks_per_seq);
    }
    return ci_ok();
}

ci_status ci_batch_builder_init_for(ci_batch_builder *b, const ci_scheduler *s) {
    const ci_sched_config *c = ci_sched_get_config(s);
    return ci_batch_builder_init(b, c->max_num_batched_tokens, c->max_num_seqs,
                                 ci_sched_max_blocks_per_seq(s), c->block.block_size);
}

void ci_batch_builder_free(ci_batch_builder *b) {
    free(b->token_ids);
    free(b->positions);
    free(b->slot_mapping);
    free(b->logits_indices);
    free(b->sample_src);
    free(b->query_start);
    free(b->logits_start);
    free(b->context_lens);
    free(b->block_tables);
    memset(b, 0, sizeof *b);
}

ci_status ci_batch_build(ci_batch_builder *b, const ci_sched_output *out, const ci_batch **batch) {
    *batch = NULL;
    if (out->num_entries > b->max_seqs || out->num_tokens > b->max_tokens)
        return ci_errorf(CI_ERR_INVALID,
                         "batch: %d sequences / %d tokens exceed builder sizes %d / %d",
                         out->num_entries, out->num_tokens, b->max_seqs, b->max_tokens);
    int bs = b->block_size, mb = b->max_blocks_per_seq;
    int T = 0, L = 0, max_q = 0, max_ctx = 0, nd = 0, from_samples = 0;
    /* the block tables' row stride: the most blocks a context of this step
     * covers, not the longest context the model allows (a 128k-token
     * model's rows would be 8k entries a sequence, copied and uploaded
     * each step) */
    int stride = 1;
    for (int i = 0; i < out->num_entries; i++) {
        const ci_sched_entry *e = &out->entries[i];
        const int nbk = (e->start + e->num_new_tokens + bs - 1) / bs;
        if (nbk > stride) stride = nbk;
    }
    if (stride > mb) stride = mb; /* an entry past it fails below */
    b->query_start[0] = 0;
    b->logits_start[0] = 0;
    for (int i = 0; i < out->num_entries; i++) {
        const ci_sched_entry *e = &out->entries[i];
        const ci_sequence *q = e->seq;
        int ctx = e->start + e->num_new_tokens;
        if (e->num_new_tokens < 1 || ctx > q->num_tokens + e->num_spec || q->num_blocks > mb ||
            q->num_blocks * bs < ctx || ctx > stride * bs || T + e->num_new_tokens > b->max_tokens)
            return ci_errorf(
                CI_ERR_INVALID,
                "batch: sequence %lld: tokens [%d, %d) of %d, %d blocks (builder max %d)",
                (long long)q->id, e->start, ctx, q->num_tokens, q->num_blocks, mb);
        const int nbk = (ctx + bs - 1) / bs; /* the blocks its context covers */
        int32_t *row = b->block_tables + (size_t)i * (size_t)stride;
        memcpy(row, q->block_table, (size_t)nbk * sizeof *row);
        memset(row + nbk, 0, (size_t)(stride - nbk) * sizeof *row);
        int lp_lo; /* prompt positions [lp_lo, lp_end) whose logprob rows are owed */
        const int lp_n = ci_seq_plp_rows(q, e->start, ctx, &lp_lo), lp_end = lp_lo + lp_n;
        for (int p = e->start; p < ctx; p++, T++) {
            b->token_ids[T] = p < q->num_tokens ? q->tokens[p] : q->spec[p - q->num_tokens];
            b->sample_src[T] = -1;
            if (p == q->pending_pos) { /* drawn by the step on the device */
                b->token_ids[T] = 0;
                b->sample_src[T] = q->pending_row;
                from_samples++;
            }
            b->positions[T] = p;
            b->slot_mapping[T] = row[p / bs] * bs + p % bs;
            if (p >= lp_lo && p < lp_end) b->logits_indices[L++] = T;
        }
        if (e->num_spec > 0) /* verification: every row of the last token and the drafts */
            for (int j = e->num_spec; j >= 0; j--)
                b->logits_indices[L++] = T - 1 - j;
        else if (e->samples > 0)
            b->logits_indices[L++] = T - 1;
        b->query_start[i + 1] = T;
        b->logits_start[i + 1] = L;
        b->context_lens[i] = ctx;
        if (e->num_new_tokens == 1 && nd == i) nd++;
        if (e->num_new_tokens > max_q) max_q = e->num_new_tokens;
        if (ctx > max_ctx) max_ctx = ctx;
    }
    ci_batch *bt = &b->batch;
    bt->num_tokens = T;
    bt->num_seqs = out->num_entries;
    bt->num_logits = L;
    bt->max_blocks_per_seq = stride;
    bt->max_query_len = max_q;
    bt->max_context_len = max_ctx;
    bt->num_decode_seqs = nd;
    bt->token_ids = b->token_ids;
    bt->positions = b->positions;
    bt->query_start = b->query_start;
    bt->context_lens = b->context_lens;
    bt->block_tables = b->block_tables;
    bt->slot_mapping = b->slot_mapping;
    bt->logits_indices = b->logits_indices;
    bt->sample_src = from_samples ? b->sample_src : NULL;
    *batch = bt;
    return ci_ok();
}
