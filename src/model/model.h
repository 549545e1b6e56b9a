/* model.h — a loaded decoder model and its forward pass.
 *
 * ci_model_forward runs one step over a ci_batch: embed, then per layer
 * norm -> qkv GEMM -> (q/k-norm) -> RoPE + cache write -> paged attention ->
 * o GEMM -> norm -> gate|up GEMM -> SwiGLU -> down GEMM, then the final norm
 * and LM head for the rows in logits_indices. Llama, Mistral, Qwen2 and
 * Qwen3 share this code; config flags select bias and q/k-norm. */
#ifndef CINFER_MODEL_MODEL_H
#define CINFER_MODEL_MODEL_H

#include "backend/backend.h"
#include "model/config.h"
#include "model/rope.h"
#include "model/safetensors.h"
#include "model/weights.h"

typedef struct ci_model_options {
    int max_batch_tokens; /* workspace size: most tokens in one forward (default 2048) */
    int max_logits;       /* most logits rows in one forward (default = max_batch_tokens) */
    ci_progress_fn progress;
    void *progress_user;
} ci_model_options;

typedef struct ci_model {
    ci_model_config cfg;
    ci_backend *be;
    ci_checkpoint *ck;
    ci_weights w;
    ci_rope_table rope;
    int max_batch_tokens, max_logits;
    /* preallocated activations (backend memory) */
    ci_tensor x, residual, qkv, attn_out, gate_up, mlp_out, last_hidden, logits;
    ci_batch dev_batch;
} ci_model;

ci_status ci_model_load(const char *model_dir, ci_backend *be, const ci_model_options *opts,
                        ci_model **out);
void ci_model_free(ci_model *m);

/* Runs one step. logits_out (host) receives [batch->num_logits][vocab] F32;
 * with logits_out NULL they stay in backend memory (ci_model_logits) and the
 * step may still be running on the backend when this returns (the next op
 * that returns data to the host waits for it). batch arrays are host memory. */
ci_status ci_model_forward(ci_model *m, const ci_batch *batch, ci_kv_cache *kv, float *logits_out);

/* The last forward's logits: backend memory, F32 [max_logits][vocab]; rows
 * [0, num_logits) are valid. */
const ci_tensor *ci_model_logits(const ci_model *m);

ci_status ci_model_kv_cache_create(ci_model *m, int num_blocks, int block_size, ci_kv_cache **out);

#endif
