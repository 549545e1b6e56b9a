/* arch.h — one table entry per model family.
 *
 * A family (src/model/arch/<family>.c) says which HF checkpoints it reads
 * (config.json's `architectures`, or `model_type` when that is absent), the
 * names of its tensors, and the choices the shared forward pass makes for it
 * (q/k/v bias, q/k-norm). config.c, weights.c and model.c read this table and
 * never branch on a family by name; registry.c lists the families. Adding one
 * is a new file here and one line in registry.c (docs/architecture.md). */
#ifndef CINFER_MODEL_ARCH_ARCH_H
#define CINFER_MODEL_ARCH_ARCH_H

#include <stdbool.h>
#include <stddef.h>

#include "util/status.h"

struct ci_model_config;
struct json_t;

#define CI_ARCH_MAX_NAMES 4

/* Checkpoint tensor names. Layer i's tensors are <layers><i>.<suffix>. */
typedef struct ci_arch_names {
    const char *embed;      /* [vocab][hidden] */
    const char *final_norm; /* [hidden] */
    const char *lm_head;    /* [vocab][hidden]; unread when the embeddings are tied */
    const char *layers;     /* layer prefix, e.g. "model.layers." */
    /* per-layer suffixes */
    const char *attn_norm, *mlp_norm;     /* [hidden] */
    const char *q, *k, *v, *o;            /* projection weights */
    const char *q_bias, *k_bias, *v_bias; /* read when the family has qkv_bias */
    const char *o_bias;                   /* refused when present: no o_proj bias */
    const char *q_norm, *k_norm;          /* [head_dim], read when the family has qk_norm */
    const char *gate, *up, *down;         /* SwiGLU MLP */
} ci_arch_names;

typedef struct ci_arch {
    /* config.json's `architectures[0]` values it accepts; [0] is the canonical
     * name (ci_model_config.arch_name). NULL-terminated. */
    const char *architectures[CI_ARCH_MAX_NAMES];
    /* `model_type` values it accepts when `architectures` is absent. */
    const char *model_types[CI_ARCH_MAX_NAMES];
    const ci_arch_names *names;
    /* config defaults (transformers' config class) */
    int max_position_default;    /* max_position_embeddings when absent */
    bool tie_embeddings_default; /* tie_word_embeddings when absent; tied: lm_head = embed */
    /* forward choices, copied into ci_model_config */
    bool qkv_bias; /* q/k/v projections always have a bias, o_proj none (Qwen2) */
    bool qk_norm;  /* per-head RMSNorm of q and k before RoPE (Qwen3) */
    /* config.json's `attention_bias` (transformers: a bias on q/k/v AND o_proj)
     * is read and refused when true; false: the field is ignored. */
    bool attention_bias_field;
    /* Family-specific parsing/validation of config.json (jansson's root
     * object), after the common fields and RoPE and before the consistency
     * checks; NULL: none (so far every family). Errors name config.json and
     * the field. */
    ci_status (*parse_config)(const struct json_t *root, struct ci_model_config *cfg);
} ci_arch;

/* The families (llama.c, qwen2.c, qwen3.c), listed in registry.c. Code that
 * must tell two apart compares ci_model_config.arch with these. */
extern const ci_arch ci_arch_llama, ci_arch_mistral, ci_arch_qwen2, ci_arch_qwen3;
#define CI_ARCH_LLAMA (&ci_arch_llama)
#define CI_ARCH_MISTRAL (&ci_arch_mistral)
#define CI_ARCH_QWEN2 (&ci_arch_qwen2)
#define CI_ARCH_QWEN3 (&ci_arch_qwen3)

/* HF Llama's tensor names, shared by every family here. */
extern const ci_arch_names ci_arch_llama_names;

/* registry.c: the family accepting this `architectures` / `model_type`
 * value, or NULL. */
const ci_arch *ci_arch_by_architecture(const char *name);
const ci_arch *ci_arch_by_model_type(const char *model_type);
/* Writes every accepted architecture (model_types: every model_type) as
 * "A, B, C" into buf for error messages. */
void ci_arch_list(char *buf, size_t n, bool model_types);

#endif
