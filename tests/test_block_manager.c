/* Block manager: ref counts, fork + copy-on-write, prefix cache (hits,
 * verification under forced collisions, LRU eviction), watermark,
 * invariant checker. */
#include "engine/block_manager.h"
#include "test.h"

static ci_block_manager *mk_bm(int num_blocks, int bs, float wm, int prefix) {
    ci_bm_config c = ci_bm_default_config();
    c.num_blocks = num_blocks;
    c.block_size = bs;
    c.watermark = wm;
    c.enable_prefix_caching = prefix;
    ci_block_manager *bm = NULL;
    CHECK_OK(ci_bm_create(&c, &bm));
    return bm;
}

static ci_sequence *mk_seq(int64_t id, const int32_t *toks, int n, int max_tokens, int bs) {
    ci_sequence *q = NULL;
    CHECK_OK(ci_seq_create(id, toks, n, max_tokens, bs, &q));
    return q;
}

/* Allocates and "computes" all known tokens. */
static ci_status compute_all(ci_block_manager *bm, ci_sequence *q, ci_block_copy *cp, int *ncp) {
    CI_TRY(ci_bm_allocate(bm, q, q->num_tokens - q->num_computed_tokens, 0, cp, ncp));
    q->num_computed_tokens = q->num_tokens;
    ci_bm_cache_computed(bm, q);
    return ci_ok();
}

static void test_budget(void) {
    /* 2 layers, 2 kv heads, head_dim 8, bf16, block 16: 2*2*2*8*16*2 = 2048 B */
    CHECK(ci_kv_blocks_for_budget(2048 * 10 + 100, 2, 2, 8, 2, 16) == 10);
    CHECK(ci_kv_blocks_for_budget(100, 2, 2, 8, 2, 16) == 0);
    CHECK(ci_kv_blocks_for_budget(1 << 20, 0, 2, 8, 2, 16) == 0);
}

static void test_alloc_free(void) {
    ci_block_manager *bm = mk_bm(8, 4, 0.0f, 0);
    ci_block_copy cp[2];
    int ncp = 0;
    int32_t t[32];
    for (int i = 0; i < 32; i++)
        t[i] = i + 1;
    ci_sequence *a = mk_seq(1, t, 10, 5, 4);
    CHECK_OK(ci_bm_allocate(bm, a, 6, 0, cp, &ncp));
    CHECK(a->num_blocks == 2 && ci_bm_num_used(bm) == 2 && ci_bm_num_free(bm) == 6);
    a->num_computed_tokens = 6;
    CHECK_OK(ci_bm_allocate(bm, a, 4, 0, cp, &ncp));
    CHECK(a->num_blocks == 3 && ci_bm_num_used(bm) == 3 && ncp == 0);
    a->num_computed_tokens = 10;
    for (int i = 0; i < 3; i++)
        CHECK(ci_bm_ref_count(bm, a->block_table[i]) == 1);
    /* allocating past the known tokens is a caller error, not a crash */
    CHECK(ci_bm_allocate(bm, a, 1, 0, cp, &ncp).code == CI_ERR_INVALID);
    ci_sequence *b = mk_seq(2, t, 30, 2, 4); /* needs 8 blocks, 5 left */
    ci_status st = ci_bm_allocate(bm, b, 30, 0, cp, &ncp);
    CHECK(st.code == CI_ERR_CAPACITY);
    CHECK(b->num_blocks == 0 && ci_bm_num_used(bm) == 3);
    ci_sequence *seqs[2] = {a, b};
    CHECK_OK(ci_bm_check(bm, seqs, 2));
    /* the checker catches a table entry without a reference */
    b->block_table[0] = a->block_table[0];
    b->num_blocks = 1;
    st = ci_bm_check(bm, seqs, 2);
    CHECK(st.code == CI_ERR_INTERNAL && strstr(st.msg, "ref count"));
    b->num_blocks = 0;
    ci_bm_free(bm, a);
    CHECK(a->num_blocks == 0 && ci_bm_num_free(bm) == 8 && ci_bm_num_used(bm) == 0);
    CHECK_OK(ci_bm_check(bm, seqs, 2));
    ci_seq_destroy(a);
    ci_seq_destroy(b);
    ci_bm_destroy(bm);
}

static void test_fork_cow(void) {
    ci_block_manager *bm = mk_bm(8, 4, 0.0f, 1);
    ci_block_copy cp[4];
    int ncp = 0;
    int32_t t[6] = {1, 2, 3, 4, 5, 6};
    ci_sequence *a = mk_seq(1, t, 6, 4, 4);
    CHECK_OK(compute_all(bm, a, cp, &ncp));
    ci_sequence *b = NULL;
    CHECK_OK(ci_seq_clone(a, 2, &b));
    CHECK_OK(ci_bm_fork(bm, a, b));
    CHECK(b->num_blocks == 2 && b->parent_id == 1);
    for (int i = 0; i < 2; i++)
        CHECK(ci_bm_ref_count(bm, a->block_table[i]) == 2);
    CHECK(ci_bm_is_cached(bm, a->block_table[0]) && !ci_bm_is_cached(bm, a->block_table[1]));
    ci_sequence *seqs[2] = {a, b};
    CHECK_OK(ci_bm_check(bm, seqs, 2));
    /* both samples append; the first writer copies the shared partial block */
    CHECK_OK(ci_seq_append(a, 100));
    CHECK_OK(ci_seq_append(b, 200));
    int32_t shared = a->block_table[1];
    CHECK(ci_bm_blocks_needed(bm, a, 1) == 1); /* the copy-on-write block */
    CHECK_OK(ci_bm_append_slot(bm, a, cp, &ncp));
    CHECK(ncp == 1 && cp[0].src == shared && cp[0].dst == a->block_table[1] && cp[0].dst != shared);
    CHECK(ci_bm_ref_count(bm, shared) == 1 && b->block_table[1] == shared);
    CHECK(a->block_table[0] == b->block_table[0] && ci_bm_ref_count(bm, a->block_table[0]) == 2);
    /* the last holder writes in place */
    CHECK_OK(ci_bm_allocate(bm, b, 1, 0, cp, &ncp));
    CHECK(ncp == 1 && b->block_table[1] == shared);
    CHECK(ci_bm_get_stats(bm).cow_copies == 1);
    a->num_computed_tokens = b->num_computed_tokens = 7;
    CHECK_OK(ci_bm_check(bm, seqs, 2));
    /* fork at a block boundary: no copy, a fresh block each */
    ci_sequence *c = mk_seq(3, (int32_t[]){1, 2, 3, 4, 9, 9, 9, 9}, 8, 4, 4);
    CHECK_OK(compute_all(bm, c, cp, &ncp));
    ci_sequence *d = NULL;
    CHECK_OK(ci_seq_clone(c, 4, &d));
    CHECK_OK(ci_bm_fork(bm, c, d));
    CHECK_OK(ci_seq_append(c, 1));
    CHECK_OK(ci_seq_append(d, 2));
    ncp = 0;
    CHECK_OK(ci_bm_allocate(bm, c, 1, 0, cp, &ncp));
    CHECK_OK(ci_bm_allocate(bm, d, 1, 0, cp, &ncp));
    CHECK(ncp == 0 && c->block_table[2] != d->block_table[2]);
    /* c's block 0 (1,2,3,4) duplicated a's cached block: c switched to it */
    CHECK(c->block_table[0] == a->block_table[0] && ci_bm_get_stats(bm).dedups == 1);
    CHECK(ci_bm_is_cached(bm, c->block_table[1]) && d->block_table[1] == c->block_table[1]);
    ci_sequence *all[4] = {a, b, c, d};
    CHECK_OK(ci_bm_check(bm, all, 4));
    for (int i = 0; i < 4; i++)
        ci_bm_free(bm, all[i]);
    CHECK(ci_bm_num_used(bm) == 0 && ci_bm_num_available(bm) == 8);
    CHECK_OK(ci_bm_check(bm, all, 4));
    for (int i = 0; i < 4; i++)
        ci_seq_destroy(all[i]);
    ci_bm_destroy(bm);
}

static void test_prefix_hit(void) {
    ci_block_manager *bm = mk_bm(16, 4, 0.0f, 1);
    ci_block_copy cp[2];
    int ncp = 0;
    int32_t t[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    ci_sequence *a = mk_seq(1, t, 10, 2, 4);
    CHECK(ci_bm_match_prefix(bm, a) == 0);
    CHECK_OK(compute_all(bm, a, cp, &ncp));
    int32_t a0 = a->block_table[0], a1 = a->block_table[1];
    CHECK(ci_bm_is_cached(bm, a0) && ci_bm_is_cached(bm, a1) &&
          !ci_bm_is_cached(bm, a->block_table[2]));
    ci_bm_free(bm, a);
    CHECK(ci_bm_num_cached_free(bm) == 2 && ci_bm_num_free(bm) == 14);
    /* same 8-token prefix, different tail: two blocks hit */
    int32_t u[12] = {1, 2, 3, 4, 5, 6, 7, 8, 50, 51, 52, 53};
    ci_sequence *b = mk_seq(2, u, 12, 2, 4);
    CHECK(ci_bm_match_prefix(bm, b) == 8);
    CHECK(b->num_computed_tokens == 8 && b->num_cached_tokens == 8);
    CHECK(b->block_table[0] == a0 && b->block_table[1] == a1 && ci_bm_ref_count(bm, a0) == 1);
    CHECK(ci_bm_num_cached_free(bm) == 0);
    ci_bm_count_prefix_query(bm, b->num_tokens, 8);
    /* a prompt of exactly 8 tokens: the block holding its last token is
     * never taken from the cache */
    ci_sequence *c = mk_seq(3, t, 8, 2, 4);
    CHECK(ci_bm_match_prefix(bm, c) == 4);
    CHECK(c->block_table[0] == a0 && ci_bm_ref_count(bm, a0) == 2);
    ci_bm_count_prefix_query(bm, c->num_tokens, 4);
    ci_bm_stats st = ci_bm_get_stats(bm);
    CHECK(st.prefix_queried_tokens == 20 && st.prefix_hit_tokens == 12);
    /* a different first block: no hit even though block 1 matches */
    int32_t v[9] = {0, 2, 3, 4, 5, 6, 7, 8, 9};
    ci_sequence *d = mk_seq(4, v, 9, 2, 4);
    CHECK(ci_bm_match_prefix(bm, d) == 0);
    ci_sequence *all[4] = {a, b, c, d};
    CHECK_OK(ci_bm_check(bm, all, 4));
    CHECK_OK(ci_bm_allocate(bm, b, 4, 0, cp, &ncp));
    CHECK(ncp == 0);
    for (int i = 0; i < 4; i++)
        ci_bm_free(bm, all[i]);
    CHECK_OK(ci_bm_check(bm, all, 4));
    for (int i = 0; i < 4; i++)
        ci_seq_destroy(all[i]);
    ci_bm_destroy(bm);
    /* prefix caching off: nothing is ever cached */
    bm = mk_bm(8, 4, 0.0f, 0);
    a = mk_seq(1, t, 10, 2, 4);
    CHECK_OK(compute_all(bm, a, cp, &ncp));
    CHECK(!ci_bm_is_cached(bm, a->block_table[0]));
    ci_bm_free(bm, a);
    ci_seq_destroy(a);
    a = mk_seq(2, t, 10, 2, 4);
    CHECK(ci_bm_match_prefix(bm, a) == 0 && ci_bm_num_free(bm) == 8);
    ci_seq_destroy(a);
    ci_bm_destroy(bm);
}

static uint64_t const_hash(uint64_t parent, const int32_t *tokens, int n, void *ctx) {
    (void)parent;
    (void)tokens;
    (void)n;
    (*(int *)ctx)++;
    return 42;
}

static void test_collision(void) {
    ci_block_manager *bm = mk_bm(16, 4, 0.0f, 1);
    int calls = 0;
    ci_bm_set_hash_fn(bm, const_hash, &calls);
    ci_block_copy cp[2];
    int ncp = 0;
    int32_t t[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    ci_sequence *a = mk_seq(1, t, 9, 2, 4);
    CHECK_OK(compute_all(bm, a, cp, &ncp));
    CHECK(calls >= 2);
    /* both blocks registered although their hashes collide */
    CHECK(ci_bm_is_cached(bm, a->block_table[0]) && ci_bm_is_cached(bm, a->block_table[1]));
    ci_bm_free(bm, a);
    /* every key collides: different tokens must not hit */
    int32_t u[9] = {11, 12, 13, 14, 15, 16, 17, 18, 19};
    ci_sequence *b = mk_seq(2, u, 9, 2, 4);
    CHECK(ci_bm_match_prefix(bm, b) == 0);
    CHECK_OK(compute_all(bm, b, cp, &ncp));
    ci_bm_free(bm, b);
    /* same tokens in block 1 but after a different block 0: the hash cannot
     * tell them apart, the stored parent block can */
    int32_t w[9] = {11, 12, 13, 14, 5, 6, 7, 8, 0};
    ci_sequence *c = mk_seq(3, w, 9, 2, 4);
    CHECK(ci_bm_match_prefix(bm, c) == 4);
    CHECK(c->block_table[0] == b->block_table[0]);
    /* true matches still hit */
    ci_sequence *d = mk_seq(4, t, 9, 2, 4);
    CHECK(ci_bm_match_prefix(bm, d) == 8);
    ci_sequence *all[4] = {a, b, c, d};
    CHECK_OK(ci_bm_check(bm, all, 4));
    for (int i = 0; i < 4; i++) {
        ci_bm_free(bm, all[i]);
        ci_seq_destroy(all[i]);
    }
    ci_bm_destroy(bm);
}

static void test_lru(void) {
    /* block size 2, 4 blocks: cache three one-block prefixes */
    ci_block_manager *bm = mk_bm(4, 2, 0.0f, 1);
    ci_block_copy cp[2];
    int ncp = 0;
    int32_t pa[3] = {1, 2, 99}, pb[3] = {3, 4, 99}, pc[3] = {5, 6, 99};
    int32_t *ps[3] = {pa, pb, pc};
    int32_t cached[3];
    for (int i = 0; i < 3; i++) {
        ci_sequence *q = mk_seq(i + 1, ps[i], 3, 1, 2);
        CHECK_OK(compute_all(bm, q, cp, &ncp));
        cached[i] = q->block_table[0];
        ci_bm_free(bm, q);
        ci_seq_destroy(q);
    }
    CHECK(ci_bm_num_cached_free(bm) == 3 && ci_bm_num_free(bm) == 1);
    /* touch A: it becomes most recently used; LRU order is now B, C, A */
    ci_sequence *a2 = mk_seq(10, (int32_t[]){1, 2, 7}, 3, 1, 2);
    CHECK(ci_bm_match_prefix(bm, a2) == 2);
    ci_bm_free(bm, a2);
    ci_seq_destroy(a2);
    /* two fresh blocks: the free one, then B is evicted */
    ci_sequence *d = mk_seq(20, (int32_t[]){8, 9, 10, 11}, 4, 1, 2);
    CHECK_OK(ci_bm_allocate(bm, d, 4, 0, cp, &ncp));
    CHECK(ci_bm_get_stats(bm).evictions == 1);
    CHECK(!ci_bm_is_cached(bm, cached[1]) && ci_bm_is_cached(bm, cached[2]) &&
          ci_bm_is_cached(bm, cached[0]));
    ci_sequence *b2 = mk_seq(11, (int32_t[]){3, 4, 7}, 3, 1, 2);
    ci_sequence *c2 = mk_seq(12, (int32_t[]){5, 6, 7}, 3, 1, 2);
    CHECK(ci_bm_match_prefix(bm, b2) == 0);
    CHECK(ci_bm_match_prefix(bm, c2) == 2);
    /* one more block evicts A (C is referenced now) */
    CHECK_OK(ci_bm_allocate(bm, c2, 1, 0, cp, &ncp));
    CHECK(ci_bm_get_stats(bm).evictions == 2 && !ci_bm_is_cached(bm, cached[0]));
    CHECK(ci_bm_num_available(bm) == 0);
    CHECK(ci_bm_allocate(bm, b2, 3, 0, cp, &ncp).code == CI_ERR_CAPACITY);
    c2->num_computed_tokens = 3;
    ci_sequence *all[3] = {d, b2, c2};
    CHECK_OK(ci_bm_check(bm, all, 3));
    for (int i = 0; i < 3; i++) {
        ci_bm_free(bm, all[i]);
        ci_seq_destroy(all[i]);
    }
    CHECK(ci_bm_num_available(bm) == 4);
    ci_bm_destroy(bm);
}

static void test_watermark(void) {
    ci_block_manager *bm = mk_bm(100, 1, 0.1f, 0);
    CHECK(ci_bm_watermark_blocks(bm) == 10);
    ci_block_copy cp[2];
    int ncp = 0;
    int32_t t[95] = {0};
    ci_sequence *a = mk_seq(1, t, 95, 1, 1);
    CHECK(ci_bm_allocate(bm, a, 91, 1, cp, &ncp).code == CI_ERR_CAPACITY);
    CHECK(a->num_blocks == 0);
    CHECK_OK(ci_bm_allocate(bm, a, 90, 1, cp, &ncp));
    a->num_computed_tokens = 90;
    CHECK(ci_bm_allocate(bm, a, 1, 1, cp, &ncp).code == CI_ERR_CAPACITY);
    CHECK_OK(ci_bm_allocate(bm, a, 5, 0, cp, &ncp)); /* running growth ignores it */
    CHECK(ci_bm_num_free(bm) == 5);
    ci_bm_free(bm, a);
    ci_seq_destroy(a);
    ci_bm_config c = ci_bm_default_config();
    c.num_blocks = 4;
    c.watermark = 1.5f;
    ci_block_manager *bad = NULL;
    CHECK(ci_bm_create(&c, &bad).code == CI_ERR_INVALID && !bad);
    c.watermark = 0.0f;
    c.num_blocks = 0;
    CHECK(ci_bm_create(&c, &bad).code == CI_ERR_INVALID);
    ci_bm_destroy(bm);
}

/* A prefill's fresh blocks come in ascending order, from the free stack and
 * from the prefix cache's LRU alike (a freed sequence's cached blocks go
 * there last block first), so a tile of them can be one TMA box. */
static void test_fresh_in_order(void) {
    ci_block_manager *bm = mk_bm(12, 4, 0.0f, 1);
    ci_block_copy cp[2];
    int ncp = 0;
    int32_t t[48];
    for (int i = 0; i < 48; i++)
        t[i] = 100 + i;
    ci_sequence *a = mk_seq(1, t, 32, 4, 4); /* 8 full blocks: all cached */
    CHECK_OK(compute_all(bm, a, cp, &ncp));
    for (int i = 0; i < 8; i++)
        CHECK(a->block_table[i] == i);
    ci_bm_free(bm, a);
    CHECK(ci_bm_num_cached_free(bm) == 8 && ci_bm_num_free(bm) == 4);
    /* 11 blocks of other tokens: 4 from the free stack, 7 evicted from the LRU */
    int32_t u[44];
    for (int i = 0; i < 44; i++)
        u[i] = 900 + i;
    ci_sequence *b = mk_seq(2, u, 44, 1, 4);
    CHECK_OK(ci_bm_allocate(bm, b, 44, 0, cp, &ncp));
    CHECK(b->num_blocks == 11 && ci_bm_get_stats(bm).evictions == 7);
    for (int i = 1; i < b->num_blocks; i++)
        CHECK(b->block_table[i] > b->block_table[i - 1]);
    /* the LRU gave 7, 6, ..., 1 (a's last block first): block 0 stays cached */
    CHECK(b->block_table[0] == 1 && b->block_table[10] == 11 && ci_bm_is_cached(bm, 0));
    ci_sequence *all[2] = {a, b};
    CHECK_OK(ci_bm_check(bm, all, 2));
    ci_bm_free(bm, b);
    ci_seq_destroy(a);
    ci_seq_destroy(b);
    ci_bm_destroy(bm);
}

int main(void) {
    test_budget();
    test_alloc_free();
    test_fork_cow();
    test_prefix_hit();
    test_collision();
    test_lru();
    test_watermark();
    test_fresh_in_order();
    return test_finish("test_block_manager");
}
