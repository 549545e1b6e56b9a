/* config.h — config.json -> ci_model_config.
 *
 * One struct describes all supported decoder architectures; the family
 * (src/model/arch/) supplies the defaults, tensor names and the flags
 * (qkv_bias, qk_norm) that tell them apart, not code paths. */
#ifndef CINFER_MODEL_CONFIG_H
#define CINFER_MODEL_CONFIG_H

#include <stdbool.h>

#include "model/arch/arch.h"
#include "model/quant.h"
#include "util/dtype.h"
#include "util/status.h"

/* Most decoder layers a config may have (the per-layer window table). */
#define CI_MAX_LAYERS 1024

typedef enum ci_rope_type {
    CI_ROPE_DEFAULT = 0,
    CI_ROPE_LINEAR, /* positions divided by factor */
    CI_ROPE_LLAMA3, /* frequency-dependent wavelength scaling */
    CI_ROPE_YARN,
} ci_rope_type;

typedef struct ci_rope_config {
    ci_rope_type type;
    double theta;                  /* rope_theta (base) */
    double factor;                 /* linear / llama3 / yarn scaling factor */
    double low_freq_factor;        /* llama3 */
    double high_freq_factor;       /* llama3 */
    int original_max_position;     /* llama3 / yarn */
    double beta_fast, beta_slow;   /* yarn */
    double attention_factor;       /* yarn mscale; 0 = derive from factor */
    double mscale, mscale_all_dim; /* yarn (DeepSeek style); 0 = absent */
    bool truncate;                 /* yarn: floor/ceil the correction range (true) */
    int max_position;              /* max_position_embeddings (yarn default original) */
    double partial_rotary_factor;  /* fraction of head_dim rotated (1.0) */
    bool neox;                     /* rotate-half layout (HF Llama) vs GPT-J */
} ci_rope_config;

typedef struct ci_model_config {
    const ci_arch *arch; /* the family; compare with CI_ARCH_LLAMA etc. */
    char arch_name[64];  /* its canonical `architectures` name */
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int num_layers;
    int num_heads;
    int num_kv_heads;
    int head_dim;
    int max_position_embeddings;
    int sliding_window; /* window of the sliding layers (HF sliding_window); 0 = no layer slides */
    double rms_norm_eps;
    bool tie_word_embeddings;
    bool qkv_bias; /* from the family (Qwen2) */
    bool qk_norm;  /* from the family (Qwen3) */
    ci_rope_config rope;
    ci_dtype dtype;   /* torch_dtype / dtype of the checkpoint (informational) */
    int bos_token_id; /* -1 when absent */
    int eos_token_ids[8];
    int num_eos_token_ids;
    /* Sliding-window attention per layer: 0 = full causal attention, else
     * w: the query at position p sees keys p - w + 1 .. p (transformers'
     * kv_idx > q_idx - sliding_window). Windows >= max_position_embeddings
     * mask nothing and are stored as 0. */
    int layer_window[CI_MAX_LAYERS];
    /* quantization_config (CI_QUANT_NONE without one); ci_model_load sets
     * CI_QUANT_ONLINE_FP8 for --quantization fp8 */
    ci_quant_config quant;
    /* tensor parallelism (not in config.json: ci_config_tp_split): this
     * rank's share of the q heads [q0, q0 + nh), kv heads [kv0, kv0 + nkv)
     * (one, replicated, when KV < size), intermediate columns [i0, i0 + ni)
     * and vocabulary rows [v0, v0 + nv) (an even split, any vocabulary
     * size); size 0 or 1: the whole model (the other fields unset) */
    struct {
        int rank, size;
        int q0, nh, kv0, nkv, i0, ni;
        int v0, nv; /* the vocabulary rows of the embedding and LM head */
    } tp;
    /* pipeline parallelism (ci_config_pp_split): this stage's layers [l0,
     * l1) of the checkpoint; stage 0 embeds, the last one holds the final
     * norm and LM head; size 0 or 1: every layer */
    struct {
        int stage, size, l0, l1;
    } pp;
} ci_model_config;

/* Parses DIR/config.json. Errors name the file and the field. */
ci_status ci_config_load(const char *model_dir, ci_model_config *out);

/* Same, from a JSON text already in memory (used by tests). */
ci_status ci_config_parse(const char *json_text, ci_model_config *out);

/* Splits the model for rank `rank` of `size` (Megatron tensor parallelism):
 * size must divide the heads and the intermediate size, and the kv heads
 * divide size or size them; dense weights only (quant.method set is
 * refused); one-line errors name the field. */
ci_status ci_config_tp_split(ci_model_config *c, int rank, int size);

/* Splits the layers for pipeline stage `stage` of `size` (as evenly as they
 * go: stage s gets [s L / size, (s + 1) L / size)); size <= num_layers. */
ci_status ci_config_pp_split(ci_model_config *c, int stage, int size);

/* Whether this config's stage embeds the tokens / holds the final norm
 * and LM head (both without pipeline parallelism). */
static inline bool ci_config_first_stage(const ci_model_config *c) {
    return c->pp.size <= 1 || c->pp.stage == 0;
}
static inline bool ci_config_last_stage(const ci_model_config *c) {
    return c->pp.size <= 1 || c->pp.stage == c->pp.size - 1;
}

/* Number of rotated dims per head: int(head_dim * partial_rotary_factor). */
int ci_config_rot_dim(const ci_model_config *cfg);

#endif
