/* block_manager.h — the paged KV cache's block pool and prefix cache.
 *
 * Owns: a fixed pool of num_blocks physical blocks of block_size tokens, their
 * reference counts, the free list, and (with prefix caching) a hash table of
 * full, computed blocks plus an LRU list of cached blocks nobody references.
 * Every block is in exactly one of three sets:
 *   used    (ref > 0, referenced from sequences' block tables),
 *   free    (ref 0, holds nothing reusable),
 *   cached  (ref 0, registered in the prefix cache; evictable, LRU order).
 * Fresh blocks come from the free list first, then by evicting the least
 * recently used cached block.
 *
 * Prefix cache: logical block i of a sequence (tokens [i*bs, (i+1)*bs)) has
 * key hash_i = XXH3_64(tokens of block i, seed = hash_{i-1}), hash_{-1} a
 * constant. The hash only picks the bucket: a lookup matches a block only if
 * its stored token ids equal the query's and its stored parent is the block
 * matched for logical block i-1 (same physical block, same generation; a
 * block's generation changes whenever it leaves the cache). So a match is
 * exact by induction and a hash collision never gives a false hit.
 * Only blocks that lie entirely before the sequence's last token are looked
 * up (the last token is always recomputed to produce logits, as in vLLM).
 * Blocks are registered as soon as they are full and computed; when an equal
 * block is already cached, the sequence switches to it and its own copy is
 * freed, so every computed full block of a sequence is cached and chains to
 * the previous entry of its table.
 *
 * The block manager never frees or owns sequences; it edits their tables. */
#ifndef CINFER_ENGINE_BLOCK_MANAGER_H
#define CINFER_ENGINE_BLOCK_MANAGER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/sequence.h"
#include "util/status.h"

typedef struct ci_bm_config {
    int num_blocks;
    int block_size;
    float watermark;           /* fraction of blocks kept free on admission (0.01) */
    int enable_prefix_caching; /* default on */
} ci_bm_config;

/* Defaults: block_size 16, watermark 0.01, prefix caching on, num_blocks 0
 * (the caller must set it). */
ci_bm_config ci_bm_default_config(void);

/* A whole-block copy (all layers, K and V) the model runner must perform
 * before the step's forward pass: copy-on-write of a shared block. */
typedef struct ci_block_copy {
    int32_t src, dst;
} ci_block_copy;

typedef struct ci_bm_stats {
    int64_t prefix_queried_tokens; /* prompt tokens looked up at admission */
    int64_t prefix_hit_tokens;     /* of those, served from the cache */
    int64_t evictions;             /* cached blocks reused for new data */
    int64_t cow_copies;
    int64_t dedups; /* computed blocks swapped for a cached twin */
} ci_bm_stats;

/* Hash of one full block given its parent's hash (test hook replaces it). */
typedef uint64_t (*ci_block_hash_fn)(uint64_t parent, const int32_t *tokens, int n, void *ctx);

typedef struct ci_block_manager ci_block_manager;

/* Blocks that fit a byte budget: one block holds K and V of block_size tokens
 * for every layer. Returns 0 on bad arguments. */
int64_t ci_kv_blocks_for_budget(size_t bytes, int num_layers, int num_kv_heads, int head_dim,
                                int dtype_size, int block_size);

ci_status ci_bm_create(const ci_bm_config *cfg, ci_block_manager **out);
void ci_bm_destroy(ci_block_manager *bm);

int ci_bm_num_blocks(const ci_block_manager *bm);
int ci_bm_block_size(const ci_block_manager *bm);
int ci_bm_num_free(const ci_block_manager *bm);        /* free set only */
int ci_bm_num_cached_free(const ci_block_manager *bm); /* cached, ref 0 */
int ci_bm_num_available(const ci_block_manager *bm);   /* free + cached */
int ci_bm_num_used(const ci_block_manager *bm);
int ci_bm_watermark_blocks(const ci_block_manager *bm);
int ci_bm_prefix_caching(const ci_block_manager *bm);
int ci_bm_ref_count(const ci_block_manager *bm, int block);
int ci_bm_is_cached(const ci_block_manager *bm, int block); /* registered */
ci_bm_stats ci_bm_get_stats(const ci_block_manager *bm);

/* Blocks needed for num_tokens tokens. */
static inline int ci_blocks_for_tokens(int num_tokens, int block_size) {
    return (num_tokens + block_size - 1) / block_size;
}

/* Admission: for a sequence holding no blocks, takes the longest cached
 * prefix (ref++ each block, appended to its table) and sets
 * num_computed_tokens = num_cached_tokens = hit tokens. Returns the hit
 * token count (0 when prefix caching is off). Does not touch the counters:
 * call ci_bm_count_prefix_query once admission succeeded. */
int ci_bm_match_prefix(ci_block_manager *bm, ci_sequence *seq);
void ci_bm_count_prefix_query(ci_block_manager *bm, int queried_tokens, int hit_tokens);

/* Makes the table cover tokens [0, num_computed + num_new_tokens) so the new
 * tokens' K/V can be written: appends fresh blocks and, when the block the
 * first new token lands in is shared (ref > 1), replaces it by a private
 * copy and appends (src, dst) to copies[*num_copies] (room for one is
 * needed). use_watermark: fail unless watermark blocks stay available
 * afterwards. All or nothing: CI_ERR_CAPACITY leaves everything unchanged. */
ci_status ci_bm_allocate(ci_block_manager *bm, ci_sequence *seq, int num_new_tokens,
                         int use_watermark, ci_block_copy *copies, int *num_copies);

/* Fresh blocks ci_bm_allocate would take for num_new_tokens (including a
 * copy-on-write block); compare with ci_bm_num_available. */
int ci_bm_blocks_needed(const ci_block_manager *bm, const ci_sequence *seq, int num_new_tokens);

/* Slot for one more token (decode): ci_bm_allocate(seq, 1). */
static inline ci_status ci_bm_append_slot(ci_block_manager *bm, ci_sequence *seq,
                                          ci_block_copy *copy, int *num_copies) {
    return ci_bm_allocate(bm, seq, 1, 0, copy, num_copies);
}

/* Registers the sequence's full, computed blocks in the prefix cache. */
void ci_bm_cache_computed(ci_block_manager *bm, ci_sequence *seq);

/* Drops every block of the table (last block first, so a sequence's tail is
 * evicted before its head); cached blocks go to the LRU tail. Resets
 * num_computed_tokens to 0. */
void ci_bm_free(ci_block_manager *bm, ci_sequence *seq);
/* Returns the blocks past the first ci_blocks_for_tokens(num_tokens) of seq
 * (slots reserved for drafted tokens that were rejected). */
void ci_bm_trim(ci_block_manager *bm, ci_sequence *seq, int num_tokens);

/* child shares all of parent's blocks (ref++); child's table must be empty. */
ci_status ci_bm_fork(ci_block_manager *bm, const ci_sequence *parent, ci_sequence *child);

/* Invariants against the given sequences (all that may hold blocks):
 * free + used + cached == total, each ref count equals the number of table
 * entries naming the block, list links, hash table membership, stored
 * tokens match each referencing sequence's tokens. First violation -> error. */
ci_status ci_bm_check(const ci_block_manager *bm, ci_sequence *const *seqs, int num_seqs);

/* Test hook: replaces the block hash (NULL restores XXH3). Call before any
 * sequence is hashed. */
void ci_bm_set_hash_fn(ci_block_manager *bm, ci_block_hash_fn fn, void *ctx);

#endif
