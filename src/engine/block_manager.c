#include "engine/block_manager.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define HASH_ROOT 0x9e3779b97f4a7c15ull

enum { IN_USED = 0, IN_FREE = 1, IN_LRU = 2 };

typedef struct block {
    int32_t ref;
    int8_t where;       /* IN_USED / IN_FREE / IN_LRU */
    int8_t cached;      /* registered in the hash table */
    int32_t prev, next; /* LRU links */
    int32_t bucket_next;
    int32_t parent;      /* cached: block holding the previous logical block, -1 = first */
    uint32_t parent_gen; /* parent's gen when registered */
    uint32_t gen;        /* bumped whenever the block leaves the cache */
    uint64_t hash, parent_hash;
} block;

struct ci_block_manager {
    ci_bm_config cfg;
    int watermark_blocks;
    block *blocks;
    int32_t *free_stack;
    int num_free;
    int32_t lru_head, lru_tail;
    int num_lru;
    int num_used;
    int32_t *buckets;
    uint64_t bucket_mask;
    int num_registered;
    int32_t *tokens;  /* [num_blocks][block_size] of registered blocks */
    int32_t *scratch; /* [num_blocks] for ci_bm_check */
    ci_block_hash_fn hash_fn;
    void *hash_ctx;
    ci_bm_stats stats;
};

static uint64_t xxh_block(uint64_t parent, const int32_t *tokens, int n, void *ctx) {
    (void)ctx;
    return XXH3_64bits_withSeed(tokens, (size_t)n * sizeof *tokens, parent);
}

ci_bm_config ci_bm_default_config(void) {
    ci_bm_config c = {0};
    c.block_size = 16;
    c.watermark = 0.01f;
    c.enable_prefix_caching = 1;
    return c;
}

int64_t ci_kv_blocks_for_budget(size_t bytes, int num_layers, int num_kv_heads, int head_dim,
                                int dtype_size, int block_size) {
    if (num_layers < 1 || num_kv_heads < 1 || head_dim < 1 || dtype_size < 1 || block_size < 1)
        return 0;
    /* K and V, each [layers][kv_heads][block_size][head_dim]. */
    double per = 2.0 * num_layers * num_kv_heads * (double)head_dim * block_size * dtype_size;
    if (per > (double)SIZE_MAX) return 0;
    uint64_t n = (uint64_t)bytes / (uint64_t)per;
    return n > INT32_MAX ? INT32_MAX : (int64_t)n;
}

ci_status ci_bm_create(const ci_bm_config *cfg, ci_block_manager **out) {
    *out = NULL;
    if (cfg->num_blocks < 1 || cfg->block_size < 1)
        return ci_errorf(CI_ERR_INVALID,
                         "block manager: num_blocks %d and block_size %d must be >= 1",
                         cfg->num_blocks, cfg->block_size);
    if ((int64_t)cfg->num_blocks * cfg->block_size > INT32_MAX)
        return ci_errorf(CI_ERR_INVALID,
                         "block manager: %d blocks x %d tokens overflows a slot index",
                         cfg->num_blocks, cfg->block_size);
    if (!(cfg->watermark >= 0.0f && cfg->watermark < 1.0f))
        return ci_errorf(CI_ERR_INVALID, "block manager: watermark %g not in [0, 1)",
                         (double)cfg->watermark);
    ci_block_manager *bm = calloc(1, sizeof *bm);
    if (!bm) return ci_errorf(CI_ERR_NOMEM, "block manager: out of memory");
    bm->cfg = *cfg;
    int n = cfg->num_blocks;
    bm->watermark_blocks = (int)(cfg->watermark * (float)n);
    uint64_t nb = 16;
    while (nb < 2 * (uint64_t)n)
        nb <<= 1;
    bm->bucket_mask = nb - 1;
    bm->blocks = calloc((size_t)n, sizeof *bm->blocks);
    bm->free_stack = malloc((size_t)n * sizeof *bm->free_stack);
    bm->buckets = malloc(nb * sizeof *bm->buckets);
    bm->scratch = malloc((size_t)n * sizeof *bm->scratch);
    if (cfg->enable_prefix_caching)
        bm->tokens = malloc((size_t)n * (size_t)cfg->block_size * sizeof *bm->tokens);
    if (!bm->blocks || !bm->free_stack || !bm->buckets || !bm->scratch ||
        (cfg->enable_prefix_caching && !bm->tokens)) {
        ci_bm_destroy(bm);
        return ci_errorf(CI_ERR_NOMEM, "block manager: out of memory for %d blocks", n);
    }
    for (uint64_t i = 0; i < nb; i++)
        bm->buckets[i] = -1;
    /* Stack popped from the end: block 0 comes out first. */
    for (int i = 0; i < n; i++) {
        bm->free_stack[i] = n - 1 - i;
        block *b = &bm->blocks[i];
        b->where = IN_FREE;
        b->prev = b->next = b->bucket_next = -1;
    }
    bm->num_free = n;
    bm->lru_head = bm->lru_tail = -1;
    bm->hash_fn = xxh_block;
    *out = bm;
    return ci_ok();
}

void ci_bm_destroy(ci_block_manager *bm) {
    if (!bm) return;
    free(bm->blocks);
    free(bm->free_stack);
    free(bm->buckets);
    free(bm->scratch);
    free(bm->tokens);
    free(bm);
}

int ci_bm_num_blocks(const ci_block_manager *bm) {
    return bm->cfg.num_blocks;
}
int ci_bm_block_size(const ci_block_manager *bm) {
    return bm->cfg.block_size;
}
int ci_bm_num_free(const ci_block_manager *bm) {
    return bm->num_free;
}
int ci_bm_num_cached_free(const ci_block_manager *bm) {
    return bm->num_lru;
}
int ci_bm_num_available(const ci_block_manager *bm) {
    return bm->num_free + bm->num_lru;
}
int ci_bm_num_used(const ci_block_manager *bm) {
    return bm->num_used;
}
int ci_bm_watermark_blocks(const ci_block_manager *bm) {
    return bm->watermark_blocks;
}
int ci_bm_prefix_caching(const ci_block_manager *bm) {
    return bm->cfg.enable_prefix_caching;
}
ci_bm_stats ci_bm_get_stats(const ci_block_manager *bm) {
    return bm->stats;
}

int ci_bm_ref_count(const ci_block_manager *bm, int b) {
    return b >= 0 && b < bm->cfg.num_blocks ? bm->blocks[b].ref : -1;
}
int ci_bm_is_cached(const ci_block_manager *bm, int b) {
    return b >= 0 && b < bm->cfg.num_blocks ? bm->blocks[b].cached : 0;
}

void ci_bm_set_hash_fn(ci_block_manager *bm, ci_block_hash_fn fn, void *ctx) {
    bm->hash_fn = fn ? fn : xxh_block;
    bm->hash_ctx = fn ? ctx : NULL;
}

/* ---- LRU list of cached, unreferenced blocks ---- */

static void lru_remove(ci_block_manager *bm, int32_t id) {
    block *b = &bm->blocks[id];
    if (b->prev >= 0)
        bm->blocks[b->prev].next = b->next;
    else
        bm->lru_head = b->next;
    if (b->next >= 0)
        bm->blocks[b->next].prev = b->prev;
    else
        bm->lru_tail = b->prev;
    b->prev = b->next = -1;
    bm->num_lru--;
}

static void lru_push_tail(ci_block_manager *bm, int32_t id) {
    block *b = &bm->blocks[id];
    b->prev = bm->lru_tail;
    b->next = -1;
    if (bm->lru_tail >= 0)
        bm->blocks[bm->lru_tail].next = id;
    else
        bm->lru_head = id;
    bm->lru_tail = id;
    bm->num_lru++;
}

/* ---- hash table ---- */

static const int32_t *block_tokens(const ci_block_manager *bm, int32_t id) {
    return bm->tokens + (size_t)id * (size_t)bm->cfg.block_size;
}

static uint32_t gen_of(const ci_block_manager *bm, int32_t id) {
    return id >= 0 ? bm->blocks[id].gen : 0;
}

/* Exact match: hash, parent block (and its generation) and token ids. */
static int32_t table_find(const ci_block_manager *bm, uint64_t hash, int32_t parent,
                          const int32_t *tokens) {
    size_t bytes = (size_t)bm->cfg.block_size * sizeof *tokens;
    uint32_t pgen = gen_of(bm, parent);
    for (int32_t id = bm->buckets[hash & bm->bucket_mask]; id >= 0;
         id = bm->blocks[id].bucket_next) {
        const block *b = &bm->blocks[id];
        if (b->hash == hash && b->parent == parent && b->parent_gen == pgen &&
            !memcmp(block_tokens(bm, id), tokens, bytes))
            return id;
    }
    return -1;
}

static void table_insert(ci_block_manager *bm, int32_t id, uint64_t hash, uint64_t parent_hash,
                         int32_t parent, const int32_t *tokens) {
    block *b = &bm->blocks[id];
    b->hash = hash;
    b->parent_hash = parent_hash;
    b->parent = parent;
    b->parent_gen = gen_of(bm, parent);
    b->cached = 1;
    memcpy(bm->tokens + (size_t)id * (size_t)bm->cfg.block_size, tokens,
           (size_t)bm->cfg.block_size * sizeof *tokens);
    uint64_t k = hash & bm->bucket_mask;
    b->bucket_next = bm->buckets[k];
    bm->buckets[k] = id;
    bm->num_registered++;
}

static void table_remove(ci_block_manager *bm, int32_t id) {
    block *b = &bm->blocks[id];
    int32_t *p = &bm->buckets[b->hash & bm->bucket_mask];
    while (*p >= 0 && *p != id)
        p = &bm->blocks[*p].bucket_next;
    if (*p == id) *p = b->bucket_next;
    b->bucket_next = -1;
    b->cached = 0;
    b->gen++; /* children registered under this block no longer match */
    bm->num_registered--;
}

/* Hashes of the first nblocks full blocks (all tokens must be known). */
static void seq_hash_upto(const ci_block_manager *bm, ci_sequence *seq, int nblocks) {
    int bs = bm->cfg.block_size;
    while (seq->num_hashes < nblocks) {
        int i = seq->num_hashes;
        uint64_t parent = i ? seq->block_hashes[i - 1] : HASH_ROOT;
        seq->block_hashes[i] = bm->hash_fn(parent, seq->tokens + (size_t)i * bs, bs, bm->hash_ctx);
        seq->num_hashes++;
    }
}

static uint64_t seq_parent_hash(const ci_sequence *seq, int i) {
    return i ? seq->block_hashes[i - 1] : HASH_ROOT;
}

/* ---- allocation ---- */

static int cmp_block_id(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Caller checked availability. */
static int32_t take_block(ci_block_manager *bm) {
    int32_t id;
    if (bm->num_free > 0) {
        id = bm->free_stack[--bm->num_free];
    } else {
        id = bm->lru_head;
        lru_remove(bm, id);
        table_remove(bm, id);
        bm->stats.evictions++;
    }
    block *b = &bm->blocks[id];
    b->ref = 1;
    b->where = IN_USED;
    bm->num_used++;
    return id;
}

static void acquire_block(ci_block_manager *bm, int32_t id) {
    block *b = &bm->blocks[id];
    if (b->ref == 0) {
        lru_remove(bm, id);
        b->where = IN_USED;
        bm->num_used++;
    }
    b->ref++;
}

static void release_block(ci_block_manager *bm, int32_t id) {
    block *b = &bm->blocks[id];
    if (--b->ref > 0) return;
    bm->num_used--;
    if (b->cached) {
        b->where = IN_LRU;
        lru_push_tail(bm, id);
    } else {
        b->where = IN_FREE;
        bm->free_stack[bm->num_free++] = id;
    }
}

int ci_bm_match_prefix(ci_block_manager *bm, ci_sequence *seq) {
    if (!bm->cfg.enable_prefix_caching || seq->num_blocks != 0 || seq->num_tokens < 1) return 0;
    int bs = bm->cfg.block_size;
    int max_blocks = (seq->num_tokens - 1) / bs; /* never the block holding the last token */
    /* prompt_logprobs: prompt positions not yet returned must be computed */
    if (seq->want_prompt_logprobs && seq->prompt_logprobs_done < seq->num_prompt_tokens - 1 &&
        seq->prompt_logprobs_done / bs < max_blocks)
        max_blocks = seq->prompt_logprobs_done / bs;
    if (max_blocks > seq->block_capacity) max_blocks = seq->block_capacity;
    seq_hash_upto(bm, seq, max_blocks);
    int i = 0;
    int32_t parent = -1;
    for (; i < max_blocks; i++) {
        int32_t id = table_find(bm, seq->block_hashes[i], parent, seq->tokens + (size_t)i * bs);
        if (id < 0) break;
        acquire_block(bm, id);
        seq->block_table[seq->num_blocks++] = id;
        parent = id;
    }
    seq->num_computed_tokens = seq->num_cached_tokens = i * bs;
    seq->cache_cursor = i;
    return i * bs;
}

void ci_bm_count_prefix_query(ci_block_manager *bm, int queried_tokens, int hit_tokens) {
    if (!bm->cfg.enable_prefix_caching) return;
    bm->stats.prefix_queried_tokens += queried_tokens;
    bm->stats.prefix_hit_tokens += hit_tokens;
}

ci_status ci_bm_allocate(ci_block_manager *bm, ci_sequence *seq, int num_new_tokens,
                         int use_watermark, ci_block_copy *copies, int *num_copies) {
    int bs = bm->cfg.block_size;
    if (num_new_tokens < 1)
        return ci_errorf(CI_ERR_INVALID, "sequence %lld: allocate %d tokens", (long long)seq->id,
                         num_new_tokens);
    int64_t end = (int64_t)seq->num_computed_tokens + num_new_tokens;
    if (end > seq->num_tokens + seq->num_spec) /* drafted tokens get slots too */
        return ci_errorf(CI_ERR_INVALID,
                         "sequence %lld: allocate up to token %lld but only %d are known",
                         (long long)seq->id, (long long)end, seq->num_tokens);
    int need = ci_blocks_for_tokens((int)end, bs);
    if (need > seq->block_capacity)
        return ci_errorf(CI_ERR_INTERNAL, "sequence %lld: needs %d blocks, table holds %d",
                         (long long)seq->id, need, seq->block_capacity);
    if (seq->num_blocks < ci_blocks_for_tokens(seq->num_computed_tokens, bs))
        return ci_errorf(CI_ERR_INTERNAL,
                         "sequence %lld: %d blocks do not cover %d computed tokens",
                         (long long)seq->id, seq->num_blocks, seq->num_computed_tokens);
    int fresh = need > seq->num_blocks ? need - seq->num_blocks : 0;
    int first = seq->num_computed_tokens / bs; /* block the first new token lands in */
    int cow = 0;
    if (first < seq->num_blocks) {
        const block *b = &bm->blocks[seq->block_table[first]];
        if (b->ref > 1)
            cow = 1;
        else if (b->cached)
            return ci_errorf(CI_ERR_INTERNAL, "sequence %lld: would write into cached block %d",
                             (long long)seq->id, seq->block_table[first]);
    }
    int reserve = use_watermark ? bm->watermark_blocks : 0;
    if (ci_bm_num_available(bm) < fresh + cow + reserve)
        return ci_errorf(CI_ERR_CAPACITY,
                         "sequence %lld: needs %d KV blocks, %d available (%d reserved)",
                         (long long)seq->id, fresh + cow, ci_bm_num_available(bm), reserve);
    if (cow) {
        int32_t src = seq->block_table[first];
        int32_t dst = take_block(bm);
        release_block(bm, src); /* ref was > 1: stays used */
        seq->block_table[first] = dst;
        copies[(*num_copies)++] = (ci_block_copy){src, dst};
        bm->stats.cow_copies++;
    }
    int32_t *added = seq->block_table + seq->num_blocks;
    for (int i = 0; i < fresh; i++)
        seq->block_table[seq->num_blocks++] = take_block(bm);
    /* Fresh blocks in ascending order: blocks that come back from the prefix
     * cache's LRU (a freed sequence's, last block first) then lie in order
     * again, and the CUDA prefill kernel loads a tile of consecutive blocks
     * in one TMA box (docs/kernels/prefill_attention.md, round 6). Which
     * empty block holds which position does not matter otherwise. */
    if (fresh > 1) qsort(added, (size_t)fresh, sizeof *added, cmp_block_id);
    return ci_ok();
}

int ci_bm_blocks_needed(const ci_block_manager *bm, const ci_sequence *seq, int num_new_tokens) {
    int bs = bm->cfg.block_size;
    int need = ci_blocks_for_tokens(seq->num_computed_tokens + num_new_tokens, bs);
    int fresh = need > seq->num_blocks ? need - seq->num_blocks : 0;
    int first = seq->num_computed_tokens / bs;
    if (num_new_tokens > 0 && first < seq->num_blocks &&
        bm->blocks[seq->block_table[first]].ref > 1)
        fresh++;
    return fresh;
}

void ci_bm_cache_computed(ci_block_manager *bm, ci_sequence *seq) {
    if (!bm->cfg.enable_prefix_caching) return;
    int bs = bm->cfg.block_size;
    int full = seq->num_computed_tokens / bs;
    if (full > seq->num_blocks) full = seq->num_blocks;
    if (seq->cache_cursor >= full) return;
    seq_hash_upto(bm, seq, full);
    int i = seq->cache_cursor;
    for (; i < full; i++) {
        int32_t id = seq->block_table[i];
        if (bm->blocks[id].cached) continue;
        int32_t parent = i ? seq->block_table[i - 1] : -1;
        if (parent >= 0 && !bm->blocks[parent].cached) break; /* chain broken: stop caching */
        const int32_t *tok = seq->tokens + (size_t)i * bs;
        int32_t dup = table_find(bm, seq->block_hashes[i], parent, tok);
        if (dup >= 0) {
            /* Same content already cached: use that block instead (same K/V). */
            acquire_block(bm, dup);
            release_block(bm, id);
            seq->block_table[i] = dup;
            bm->stats.dedups++;
        } else {
            table_insert(bm, id, seq->block_hashes[i], seq_parent_hash(seq, i), parent, tok);
        }
    }
    seq->cache_cursor = i;
}

void ci_bm_trim(ci_block_manager *bm, ci_sequence *seq, int num_tokens) {
    int keep = ci_blocks_for_tokens(num_tokens, bm->cfg.block_size);
    while (seq->num_blocks > keep)
        release_block(bm, seq->block_table[--seq->num_blocks]);
}

void ci_bm_free(ci_block_manager *bm, ci_sequence *seq) {
    for (int i = seq->num_blocks - 1; i >= 0; i--)
        release_block(bm, seq->block_table[i]);
    seq->num_blocks = 0;
    seq->cache_cursor = 0;
    seq->num_computed_tokens = 0;
}

ci_status ci_bm_fork(ci_block_manager *bm, const ci_sequence *parent, ci_sequence *child) {
    if (child->num_blocks != 0)
        return ci_errorf(CI_ERR_INVALID, "fork: sequence %lld already holds %d blocks",
                         (long long)child->id, child->num_blocks);
    if (parent->num_blocks > child->block_capacity)
        return ci_errorf(CI_ERR_INVALID, "fork: sequence %lld table too small (%d < %d)",
                         (long long)child->id, child->block_capacity, parent->num_blocks);
    for (int i = 0; i < parent->num_blocks; i++) {
        acquire_block(bm, parent->block_table[i]);
        child->block_table[i] = parent->block_table[i];
    }
    child->num_blocks = parent->num_blocks;
    child->cache_cursor = parent->cache_cursor;
    return ci_ok();
}

/* ---- invariants ---- */

ci_status ci_bm_check(const ci_block_manager *bm, ci_sequence *const *seqs, int num_seqs) {
    int n = bm->cfg.num_blocks, bs = bm->cfg.block_size;
    if (bm->num_free + bm->num_used + bm->num_lru != n)
        return ci_errorf(CI_ERR_INTERNAL, "free %d + used %d + cached %d != total %d", bm->num_free,
                         bm->num_used, bm->num_lru, n);
    int32_t *refs = bm->scratch;
    memset(refs, 0, (size_t)n * sizeof *refs);
    for (int s = 0; s < num_seqs; s++) {
        const ci_sequence *q = seqs[s];
        if (q->num_blocks < 0 || q->num_blocks > q->block_capacity)
            return ci_errorf(CI_ERR_INTERNAL, "sequence %lld: %d blocks (capacity %d)",
                             (long long)q->id, q->num_blocks, q->block_capacity);
        if (q->num_blocks * bs < q->num_computed_tokens)
            return ci_errorf(CI_ERR_INTERNAL,
                             "sequence %lld: %d blocks do not cover %d computed tokens",
                             (long long)q->id, q->num_blocks, q->num_computed_tokens);
        for (int i = 0; i < q->num_blocks; i++) {
            int32_t id = q->block_table[i];
            if (id < 0 || id >= n)
                return ci_errorf(CI_ERR_INTERNAL,
                                 "sequence %lld: block table[%d] = %d out of range",
                                 (long long)q->id, i, id);
            refs[id]++;
            /* A registered block it has computed must hold its tokens and
             * chain to the previous entry of its table. */
            const block *b = &bm->blocks[id];
            if (b->cached && (i + 1) * bs <= q->num_computed_tokens) {
                if (memcmp(block_tokens(bm, id), q->tokens + (size_t)i * bs,
                           (size_t)bs * sizeof(int32_t)))
                    return ci_errorf(
                        CI_ERR_INTERNAL,
                        "sequence %lld: cached block %d at table[%d] holds other tokens",
                        (long long)q->id, id, i);
                int32_t want = i ? q->block_table[i - 1] : -1;
                if (b->parent != want || b->parent_gen != gen_of(bm, want))
                    return ci_errorf(
                        CI_ERR_INTERNAL,
                        "sequence %lld: cached block %d at table[%d] chains to %d, table has %d",
                        (long long)q->id, id, i, b->parent, want);
            }
        }
    }
    int used = 0, nfree = 0, nlru = 0, nreg = 0;
    for (int id = 0; id < n; id++) {
        const block *b = &bm->blocks[id];
        if (b->ref != refs[id])
            return ci_errorf(CI_ERR_INTERNAL, "block %d: ref count %d but %d table entries", id,
                             b->ref, refs[id]);
        int want = b->ref > 0 ? IN_USED : b->cached ? IN_LRU : IN_FREE;
        if (b->where != want)
            return ci_errorf(CI_ERR_INTERNAL, "block %d: ref %d cached %d in set %d, expected %d",
                             id, b->ref, b->cached, b->where, want);
        used += b->where == IN_USED;
        nfree += b->where == IN_FREE;
        nlru += b->where == IN_LRU;
        if (b->cached) {
            nreg++;
            if (!bm->cfg.enable_prefix_caching)
                return ci_errorf(CI_ERR_INTERNAL, "block %d: cached with prefix caching off", id);
            int found = 0;
            for (int32_t j = bm->buckets[b->hash & bm->bucket_mask]; j >= 0;
                 j = bm->blocks[j].bucket_next) {
                if (j == id)
                    found = 1;
                else if (bm->blocks[j].cached && bm->blocks[j].hash == b->hash &&
                         bm->blocks[j].parent == b->parent &&
                         bm->blocks[j].parent_gen == b->parent_gen &&
                         !memcmp(block_tokens(bm, j), block_tokens(bm, id),
                                 (size_t)bs * sizeof(int32_t)))
                    return ci_errorf(CI_ERR_INTERNAL, "blocks %d and %d: same cached key", id, j);
            }
            if (!found)
                return ci_errorf(CI_ERR_INTERNAL, "block %d: cached but not in its hash bucket",
                                 id);
            if (bm->hash_fn(b->parent_hash, block_tokens(bm, id), bs, bm->hash_ctx) != b->hash)
                return ci_errorf(CI_ERR_INTERNAL, "block %d: stored hash does not match its tokens",
                                 id);
        }
    }
    if (used != bm->num_used || nfree != bm->num_free || nlru != bm->num_lru)
        return ci_errorf(CI_ERR_INTERNAL, "set sizes: used %d/%d free %d/%d cached %d/%d", used,
                         bm->num_used, nfree, bm->num_free, nlru, bm->num_lru);
    if (nreg != bm->num_registered)
        return ci_errorf(CI_ERR_INTERNAL, "%d blocks cached but table counts %d", nreg,
                         bm->num_registered);
    int chained = 0;
    for (uint64_t k = 0; k <= bm->bucket_mask; k++)
        for (int32_t j = bm->buckets[k]; j >= 0; j = bm->blocks[j].bucket_next) {
            if (++chained > n) return ci_errorf(CI_ERR_INTERNAL, "hash bucket chains loop");
            if (!bm->blocks[j].cached || (bm->blocks[j].hash & bm->bucket_mask) != k)
                return ci_errorf(CI_ERR_INTERNAL, "block %d: in hash bucket %llu wrongly", j,
                                 (unsigned long long)k);
        }
    if (chained != nreg)
        return ci_errorf(CI_ERR_INTERNAL, "hash table holds %d, %d cached", chained, nreg);
    for (int i = 0; i < bm->num_free; i++) {
        int32_t id = bm->free_stack[i];
        if (id < 0 || id >= n || bm->blocks[id].where != IN_FREE || refs[id] != 0)
            return ci_errorf(CI_ERR_INTERNAL,
                             "free list entry %d = block %d not free or listed twice", i, id);
        refs[id] = -1; /* refs[] of free blocks were 0: mark as listed */
    }
    int walked = 0;
    for (int32_t j = bm->lru_head, prev = -1; j >= 0; prev = j, j = bm->blocks[j].next) {
        if (++walked > n) return ci_errorf(CI_ERR_INTERNAL, "LRU list loops");
        if (bm->blocks[j].prev != prev || bm->blocks[j].where != IN_LRU)
            return ci_errorf(CI_ERR_INTERNAL, "LRU list broken at block %d", j);
        if (bm->blocks[j].next < 0 && bm->lru_tail != j)
            return ci_errorf(CI_ERR_INTERNAL, "LRU tail %d, list ends at %d", bm->lru_tail, j);
    }
    if (walked != bm->num_lru)
        return ci_errorf(CI_ERR_INTERNAL, "LRU list %d long, count %d", walked, bm->num_lru);
    return ci_ok();
}
