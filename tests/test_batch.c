/* Batch builder: a hand-computed mixed step (two decodes + one chunked
 * prefill with a prefix hit, block size 4), then the prompt's last chunk,
 * then prompt_logprobs rows. Physical block ids are deterministic: the free
 * list hands out 0, 1, 2, ... and takes freed blocks back on top. */
#include "engine/batch.h"
#include "test.h"

static int eq(const int32_t *a, const int32_t *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) {
            fprintf(stderr, "  [%d]: %d != expected %d\n", i, a[i], b[i]);
            return 0;
        }
    return 1;
}
#define EQ(arr, ...)                                                                               \
    do {                                                                                           \
        const int32_t want_[] = {__VA_ARGS__};                                                     \
        CHECKF(eq(arr, want_, (int)(sizeof want_ / sizeof want_[0])), #arr);                       \
    } while (0)

static void add(ci_scheduler *s, const int32_t *p, int n, int max_tokens, int logprobs) {
    ci_request_params rp = {p, n, max_tokens, 1, 0, logprobs, NULL};
    int64_t id;
    CHECK_OK(ci_sched_add(s, &rp, &id));
}

static void update(ci_scheduler *s, const int32_t *toks, int n) {
    const ci_sched_result *r;
    int nr;
    CHECK_OK(ci_sched_update(s, toks, n, &r, &nr));
    CHECK_OK(ci_sched_check(s));
}

int main(void) {
    ci_sched_config c = ci_sched_default_config();
    c.block.num_blocks = 16;
    c.block.block_size = 4;
    c.block.watermark = 0.0f;
    c.max_num_batched_tokens = 8;
    c.max_num_seqs = 8;
    ci_scheduler *s = NULL;
    CHECK_OK(ci_sched_create(&c, &s));
    ci_batch_builder b;
    CHECK_OK(ci_batch_builder_init(&b, 8, 8, 4, 4));
    const ci_sched_output *o;
    const ci_batch *bt;

    /* step 1: P = 1..9 takes the whole budget (8 tokens, blocks 0 and 1) */
    add(s, (int32_t[]){1, 2, 3, 4, 5, 6, 7, 8, 9}, 9, 1, 0);
    add(s, (int32_t[]){20, 21, 22}, 3, 10, 0);     /* A */
    add(s, (int32_t[]){30, 31, 32, 33}, 4, 10, 0); /* B */
    CHECK_OK(ci_sched_schedule(s, &o));
    CHECK_OK(ci_batch_build(&b, o, &bt));
    CHECK(bt->num_tokens == 8 && bt->num_seqs == 1 && bt->num_logits == 0);
    CHECK(bt->num_decode_seqs == 0);
    /* the tables' stride is this step's most blocks (8 tokens: 2), not the
     * builder's 4 */
    CHECK(bt->max_blocks_per_seq == 2);
    EQ(bt->block_tables, 0, 1);
    EQ(bt->slot_mapping, 0, 1, 2, 3, 4, 5, 6, 7);
    update(s, NULL, 0);
    /* step 2: P's last token (block 2), A (block 3), B (block 4); P ends */
    CHECK_OK(ci_sched_schedule(s, &o));
    CHECK_OK(ci_batch_build(&b, o, &bt));
    CHECK(bt->num_tokens == 8 && bt->num_seqs == 3 && bt->num_logits == 3);
    EQ(bt->slot_mapping, 8, 12, 13, 14, 16, 17, 18, 19);
    EQ(bt->logits_indices, 0, 3, 7);
    CHECK(bt->num_decode_seqs == 1); /* P's last prompt token is a single query row too */
    update(s, (int32_t[]){100, 101, 102}, 3);
    ci_sequence *fin = ci_sched_pop_finished(s);
    CHECK(fin && fin->finish_reason == CI_FINISH_LENGTH);
    ci_seq_destroy(fin);
    /* P's blocks 0, 1 are cached and unreferenced; block 2 is free again */
    ci_block_manager *bm = ci_sched_block_manager(s);
    CHECK(ci_bm_num_cached_free(bm) == 2 && ci_bm_is_cached(bm, 0) && ci_bm_is_cached(bm, 1));

    /* step 3: Q shares P's first 8 tokens */
    add(s, (int32_t[]){1, 2, 3, 4, 5, 6, 7, 8, 40, 41, 42, 43, 44, 45, 46, 47}, 16, 5, 0);
    CHECK_OK(ci_sched_schedule(s, &o));
    CHECK(o->num_entries == 3 && o->num_copies == 0);
    CHECK(o->entries[2].seq->num_cached_tokens == 8);
    CHECK_OK(ci_batch_build(&b, o, &bt));
    CHECK(bt->num_tokens == 8 && bt->num_seqs == 3 && bt->num_logits == 2);
    CHECK(bt->max_blocks_per_seq == 4 && bt->max_query_len == 6 && bt->max_context_len == 14);
    CHECK(bt->num_decode_seqs == 2);
    EQ(bt->token_ids, 101, 102, 40, 41, 42, 43, 44, 45);
    EQ(bt->positions, 3, 4, 8, 9, 10, 11, 12, 13);
    EQ(bt->query_start, 0, 1, 2, 8);
    EQ(bt->context_lens, 4, 5, 14);
    EQ(bt->block_tables, 3, 0, 0, 0, /* A */
       4, 2, 0, 0,                   /* B: block 2 came back to the free list */
       0, 1, 5, 6);                  /* Q: prefix hit on P's blocks */
    EQ(bt->slot_mapping, 15, 8, 20, 21, 22, 23, 24, 25);
    EQ(bt->logits_indices, 0, 1);
    EQ(b.logits_start, 0, 1, 2, 2);
    ci_bm_stats st = ci_bm_get_stats(bm);
    CHECK(st.prefix_hit_tokens == 8 && st.prefix_queried_tokens == 9 + 3 + 4 + 16);
    update(s, (int32_t[]){201, 202}, 2);

    /* step 4: two decodes (A needs block 7) and Q's final chunk */
    CHECK_OK(ci_sched_schedule(s, &o));
    CHECK_OK(ci_batch_build(&b, o, &bt));
    CHECK(bt->num_tokens == 4 && bt->num_seqs == 3 && bt->num_logits == 3);
    EQ(bt->token_ids, 201, 202, 46, 47);
    EQ(bt->positions, 4, 5, 14, 15);
    EQ(bt->query_start, 0, 1, 2, 4);
    EQ(bt->context_lens, 5, 6, 16);
    EQ(bt->block_tables, 3, 7, 0, 0, 4, 2, 0, 0, 0, 1, 5, 6);
    EQ(bt->slot_mapping, 28, 9, 26, 27);
    EQ(bt->logits_indices, 0, 1, 3);
    CHECK(bt->max_query_len == 2 && bt->max_context_len == 16 && bt->num_decode_seqs == 2);
    update(s, (int32_t[]){301, 302, 303}, 3);
    for (int i = 0; i < 3; i++)
        CHECK_OK(ci_sched_abort(s, i + 1, NULL));
    CHECK_OK(ci_sched_abort(s, 3, NULL));
    while ((fin = ci_sched_pop_finished(s)))
        ci_seq_destroy(fin);
    CHECK(ci_bm_num_used(bm) == 0);

    /* prompt_logprobs: rows of prompt positions 0..p-2 and the sample row;
     * a chunk boundary does not repeat or skip rows */
    add(s, (int32_t[]){60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70}, 11, 2, 1);
    CHECK_OK(ci_sched_schedule(s, &o));
    CHECK_OK(ci_batch_build(&b, o, &bt));
    CHECK(bt->num_tokens == 8 && bt->num_logits == 8);
    EQ(bt->logits_indices, 0, 1, 2, 3, 4, 5, 6, 7);
    update(s, NULL, 0);
    CHECK_OK(ci_sched_schedule(s, &o));
    CHECK_OK(ci_batch_build(&b, o, &bt));
    CHECK(bt->num_tokens == 3 && bt->num_logits == 3);
    EQ(bt->positions, 8, 9, 10);
    EQ(bt->logits_indices, 0, 1, 2); /* positions 8, 9 (prompt) + 10 (sample) */
    update(s, (int32_t[]){5}, 1);
    CHECK_OK(ci_sched_schedule(s, &o));
    CHECK_OK(ci_batch_build(&b, o, &bt));
    CHECK(bt->num_tokens == 1 && bt->num_logits == 1);
    update(s, (int32_t[]){6}, 1);

    /* too small a builder is an error, not an overflow */
    ci_batch_builder small;
    CHECK_OK(ci_batch_builder_init(&small, 2, 8, 4, 4));
    add(s, (int32_t[]){1, 2, 3}, 3, 1, 0);
    CHECK_OK(ci_sched_schedule(s, &o));
    CHECK(ci_batch_build(&small, o, &bt).code == CI_ERR_INVALID);
    ci_batch_builder_free(&small);
    CHECK(ci_batch_builder_init(&small, 0, 1, 1, 1).code == CI_ERR_INVALID);
    ci_batch_builder full;
    CHECK_OK(ci_batch_builder_init_for(&full, s));
    CHECK(full.max_tokens == 8 && full.max_seqs == 8 && full.max_blocks_per_seq == 16);
    ci_batch_builder_free(&full);

    ci_batch_builder_free(&b);
    ci_sched_destroy(s);
    return test_finish("test_batch");
}
