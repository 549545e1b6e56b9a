/* draft.h — the draft model of speculative decoding, owned by the runner.
 *
 * A smaller model with the target's tokenizer guesses the next k tokens of
 * each decoding sequence, greedily, one draft forward per guessed token.
 * Its KV cache has the target's block count and block size and is indexed
 * by the same block tables and slots, so the scheduler's block manager (and
 * its prefix cache, copy-on-write and preemption) serves both models: every
 * target forward is mirrored by a draft forward over the same batch
 * (ci_draft_mirror_enqueue), which keeps the draft's K/V valid for every computed
 * token, prompt chunks and verified drafts included. */
#ifndef CINFER_ENGINE_DRAFT_H
#define CINFER_ENGINE_DRAFT_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "util/status.h"

typedef struct ci_draft ci_draft;

/* One sequence to draft for: its block table, the position of its last
 * token (whose K/V neither model has yet), that token, and k (<= 16). */
typedef struct ci_draft_seq {
    const int32_t *block_table;
    int num_blocks, pos, k;
    int32_t last_token;
} ci_draft_seq;

/* Loads the draft on the target's backend and checks that it can draft for
 * it: the same vocabulary size and tokenizer.json, a context of at least
 * max_model_len. max_seqs / max_blocks_per_seq size the proposal batch. */
ci_status ci_draft_load(ci_backend *be, const char *dir, const char *target_dir,
                        const ci_model *target, int max_model_len, int max_batch_tokens,
                        int max_seqs, int max_blocks_per_seq, int kv_fp8, ci_draft **out);
void ci_draft_free(ci_draft *d);
/* Bytes of one KV block of the draft (for the runner's KV sizing). */
size_t ci_draft_block_bytes(const ci_draft *d, int block_size);
ci_status ci_draft_kv_create(ci_draft *d, int num_blocks, int block_size);

/* Enqueues the draft forward (K/V only, no logits, no sync) over a batch
 * the target runs, already on the device (the target's own device batch:
 * nothing is uploaded), T tokens. CUDA graphs of decode steps record it
 * after the target's forward. */
ci_status ci_draft_mirror_enqueue(ci_draft *d, const ci_batch *dev, int T);
/* The target's copy-on-write copies, on the draft's cache. */
ci_status ci_draft_copy_blocks(ci_draft *d, const int32_t *src, const int32_t *dst, int n);
/* Greedy guesses: out[i * 16 + j] for j < seqs[i].k. */
ci_status ci_draft_propose(ci_draft *d, const ci_draft_seq *seqs, int n, int32_t *out);

#endif
