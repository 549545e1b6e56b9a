/* model.h — a loaded decoder model and its forward pass.
 *
 * ci_model_forward runs one step over a ci_batch: embed, then per layer
 * norm -> qkv GEMM -> (q/k-norm) -> RoPE + cache write -> paged attention ->
 * o GEMM -> norm -> gate|up GEMM -> SwiGLU -> down GEMM, then the final norm
 * and LM head for the rows in logits_indices. Every family (src/model/arch/)
 * shares this code; the flags its table entry sets in the config select bias
 * and q/k-norm. */
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
    int online_fp8;  /* --quantization fp8: a dense checkpoint's linears -> FP8 per channel */
    int kv_fp8;      /* --kv-cache-dtype fp8: KV cache in E4M3 with the checkpoint's scales */
    int weight_only; /* W8A8 checkpoints run as W8A16 (activations unquantized): the reference
                        semantics of the format tests; not a CLI flag */
    /* tensor parallelism: this model is rank tp_rank of tp_size (0 or 1:
     * whole). The backend's comm / rank must name the group before the
     * first forward; its all_reduce joins the shares after o and down. */
    int tp_rank, tp_size;
    /* pipeline parallelism: this model is stage pp_stage of pp_size (0 or
     * 1: every layer); the backend's send / recv pass the residual stream
     * between stages over be->pp_comm (the same tensor rank one stage on) */
    int pp_stage, pp_size;
    /* plan-ahead scheduling: the forward calls the backend's mark_ready
     * this many layers before its end (0: never), so that the host can
     * plan the next step while the last layers run */
    int ready_layers;
} ci_model_options;

typedef struct ci_model {
    /* the config as this rank runs it: with tensor parallelism num_heads,
     * num_kv_heads and intermediate_size are the rank's share (cfg.tp);
     * with pipeline parallelism num_layers and layer_window are the
     * stage's layers (cfg.pp: [l0, l1) of the checkpoint) */
    ci_model_config cfg;
    ci_backend *be;
    ci_checkpoint *ck;
    ci_weights w;
    ci_rope_table rope;
    ci_dtype kv_dtype; /* the backend's act_dtype, or CI_F8_E4M3 */
    int max_batch_tokens, max_logits;
    int ready_layer; /* the layer before which mark_ready runs (-1: none) */
    /* preallocated activations (backend memory) */
    ci_tensor x, residual, qkv, attn_out, gate_up, mlp_out, last_hidden, logits;
    ci_tensor logits_part; /* tensor parallelism: this rank's vocabulary columns */
    ci_batch dev_batch;
} ci_model;

ci_status ci_model_load(const char *model_dir, ci_backend *be, const ci_model_options *opts,
                        ci_model **out);
void ci_model_free(ci_model *m);

/* Runs one step eagerly and waits for it. logits_out (host, may be NULL:
 * see ci_model_logits) receives [batch->num_logits][vocab] F32. batch
 * arrays are host memory. (The engine's runner adds CUDA graphs.) */
ci_status ci_model_forward(ci_model *m, const ci_batch *batch, ci_kv_cache *kv, float *logits_out);

/* The checks ci_model_forward makes of a host batch (token ids, positions,
 * query_start, logits rows, KV shape). */
ci_status ci_model_check_batch(const ci_model *m, const ci_batch *b, const ci_kv_cache *kv);

/* Enqueues the whole forward pass over T tokens of a batch already on the
 * device (prepare_batch / prepare_batch_static) and the LM head over its L
 * logits rows; no sync. Graph capture records exactly this. */
ci_status ci_model_enqueue(ci_model *m, const ci_batch *dev_batch, int T, int L, ci_kv_cache *kv);
/* ... with the L logits rows at rows [row0, row0 + L) of the logits (a
 * micro-batch of a step) */
ci_status ci_model_enqueue_rows(ci_model *m, const ci_batch *dev_batch, int T, int L, int row0,
                                ci_kv_cache *kv);

/* Logits of the last forward: [num_logits][vocab] F32 in backend memory. */
const ci_tensor *ci_model_logits(const ci_model *m);

/* A KV cache of kv_dtype with the layers' k/v scales. */
ci_status ci_model_kv_cache_create(ci_model *m, int num_blocks, int block_size, ci_kv_cache **out);
/* Bytes of one KV block over all layers, K and V. */
size_t ci_model_kv_block_bytes(const ci_model *m, int block_size);

#endif
