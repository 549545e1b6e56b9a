/* weights.h — checkpoint tensors -> backend weights for the decoder.
 *
 * Every tensor is checked for presence, dtype and shape against the config
 * before use. q|k|v (and their biases) and gate|up are concatenated at load
 * so the forward pass runs one GEMM for each. */
#ifndef CINFER_MODEL_WEIGHTS_H
#define CINFER_MODEL_WEIGHTS_H

#include "backend/backend.h"
#include "model/config.h"
#include "model/safetensors.h"

typedef struct ci_layer_weights {
    ci_tensor attn_norm;    /* [1][hidden] */
    ci_tensor wqkv;         /* [(H + 2*KV) * head_dim][hidden] */
    ci_tensor bqkv;         /* [1][(H + 2*KV) * head_dim], data NULL without bias */
    ci_tensor q_norm;       /* [1][head_dim], Qwen3 only */
    ci_tensor k_norm;       /* [1][head_dim], Qwen3 only */
    ci_tensor wo;           /* [hidden][H * head_dim] */
    ci_tensor mlp_norm;     /* [1][hidden] */
    ci_tensor w_gate_up;    /* [2 * intermediate][hidden] */
    ci_tensor w_down;       /* [hidden][intermediate] */
    float k_scale, v_scale; /* FP8 KV cache scales from the checkpoint (1.0 when absent) */
} ci_layer_weights;

typedef struct ci_weights {
    ci_tensor embed;      /* [vocab][hidden] */
    ci_tensor final_norm; /* [1][hidden] */
    ci_tensor lm_head;    /* [vocab][hidden]; same memory as embed when tied */
    int lm_head_tied;
    ci_layer_weights *layers; /* [num_layers] */
    int num_layers;
} ci_weights;

/* progress(done_bytes, total_bytes, user) may be NULL. */
typedef void (*ci_progress_fn)(size_t done, size_t total, void *user);

ci_status ci_weights_load(ci_backend *be, const ci_checkpoint *ck, const ci_model_config *cfg,
                          ci_progress_fn progress, void *progress_user, ci_weights *out);
void ci_weights_free(ci_backend *be, ci_weights *w);

#endif
