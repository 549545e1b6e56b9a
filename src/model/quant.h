/* quant.h — quantized checkpoints: config.json's quantization_config, and the
 * per-linear tensors of each published layout -> one canonical ci_qweight
 * (util/qweight.h) handed to the backend's qweight_create op.
 *
 * quant_config.c parses the config (one clear line per unsupported field);
 * quant_load.c finds, checks and repacks the tensors; quant_shard.c cuts a
 * tensor-parallel share of the repacked weight. */
#ifndef CINFER_MODEL_QUANT_H
#define CINFER_MODEL_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/safetensors.h"
#include "util/qweight.h"
#include "util/status.h"

typedef enum ci_quant_method {
    CI_QUANT_NONE = 0,
    CI_QUANT_CT_FP8,     /* compressed-tensors float-quantized (llm-compressor FP8) */
    CI_QUANT_FP8_BLOCK,  /* transformers FineGrainedFP8: quant_method "fp8" + weight_block_size */
    CI_QUANT_GPTQ,       /* AutoGPTQ / GPTQModel, 4 bits */
    CI_QUANT_AWQ,        /* AutoAWQ GEMM, 4 bits with zero points */
    CI_QUANT_ONLINE_FP8, /* --quantization fp8: per-channel E4M3 of a dense checkpoint */
    CI_QUANT_CT_INT4,    /* compressed-tensors pack-quantized (llm-compressor W4A16) */
    CI_QUANT_CT_INT8,    /* compressed-tensors int-quantized (llm-compressor W8A8 INT8) */
    CI_QUANT_GPTQ_INT8,  /* AutoGPTQ / GPTQModel, 8 bits, symmetric: INT8 W8A16, group scales */
    CI_QUANT_FP8_TENSOR, /* "fp8" without weight_block_size (AutoFP8, vLLM's serialized fp8):
                            per-tensor weight scales */
} ci_quant_method;

typedef enum ci_ct_strategy { CI_CT_TENSOR = 0, CI_CT_CHANNEL, CI_CT_BLOCK } ci_ct_strategy;

typedef struct ci_quant_config {
    int method;           /* ci_quant_method */
    int ct_strategy;      /* CT_FP8 / CT_INT8: ci_ct_strategy of the weight scales */
    int block_n, block_k; /* FP8 blocks: rows x columns sharing one scale */
    int group_size;       /* GPTQ / AWQ / CT_INT4: input columns per group; -1: one group per row */
    bool sym;             /* GPTQ: symmetric (zero 8; 8 bits: 128) */
    bool desc_act;        /* GPTQ / CT_INT4: act order, g_idx maps columns to groups */
    bool gptq_v2;         /* GPTQ: checkpoint_format gptq_v2 (zeros stored as is; v1: zero-1) */
    int act_group;        /* W8A8, dynamic E4M3 / INT8 activations: -1 per token, > 0 per
                             token and group of columns; 0: none (W8A16). ci_qweight.act_group */
    bool act_static;      /* W8A8 FP8 with static per-tensor activation scales (P.input_scale,
                             act_group -1): ci_qweight.act_scale */
    bool lm_head;         /* GPTQ's `lm_head: true` (GPTQModel): the LM head is quantized as the
                             linears (lm_head.qweight, ...). Other methods need no flag: a
                             quantized lm_head's tensors say so (weights.c) */
} ci_quant_config;

/* Parses quantization_config (a jansson object; NULL/absent: CI_QUANT_NONE). */
struct json_t;
ci_status ci_quant_config_parse(const struct json_t *qc, ci_quant_config *out);

/* "compressed-tensors (fp8, channel)" etc., for messages and startup logs. */
const char *ci_quant_method_name(int method);

/* The checkpoint tensors of one linear module (prefix = "model.layers.0.self_attn.q_proj"). */
typedef struct ci_qlinear_src {
    const ci_st_tensor *weight; /* dense F32/F16/BF16, or F8_E4M3 / I8 */
    const ci_st_tensor *scale;  /* FP8 / INT8: weight_scale / weight_scale_inv */
    const ci_st_tensor *qweight, *qzeros, *scales, *g_idx; /* GPTQ / AWQ / CT_INT4 (weight_packed,
                                                              -, weight_scale, weight_g_idx) */
    const ci_st_tensor *input_scale; /* act_static: the static activation scale, one value */
    int64_t out, in;
    bool dense; /* a dense weight (a module the checkpoint left unquantized) */
} ci_qlinear_src;

/* Looks up and checks (presence, dtype, shape) the tensors of one linear of
 * [out][in] under q's layout. A module the quantizer skipped (its `weight` is
 * F32/F16/BF16: an `ignore` / `modules_to_not_convert` entry) is dense. */
ci_status ci_qlinear_find(const ci_checkpoint *ck, const ci_quant_config *q, const char *prefix,
                          int64_t out, int64_t in, ci_qlinear_src *src);
size_t ci_qlinear_bytes(const ci_qlinear_src *s);

/* Repacks n parts (concatenated along the output dim: q|k|v, gate|up) into
 * one ci_qweight and hands it to be->ops->qweight_create. Dense parts are
 * quantized only under CI_QUANT_ONLINE_FP8; a fused weight must be all dense
 * or all quantized. */
ci_status ci_qlinear_upload(ci_backend *be, const ci_quant_config *q,
                            const ci_qlinear_src *const *parts, int n, ci_tensor *out);

/* A tensor-parallel share of a linear (quant_shard.c): rows [r0[p], r0[p] +
 * nr[p]) of each part p (column parallel; nr[0] == 0: every row) and input
 * columns [c0, c0 + nc) (row parallel; nc == 0: every column). */
typedef struct ci_qshard {
    int64_t r0[CI_QW_MAX_PARTS], nr[CI_QW_MAX_PARTS];
    int64_t c0, nc;
} ci_qshard;

/* ci_qlinear_upload of a share (sh NULL: the whole linear) */
ci_status ci_qlinear_upload_shard(ci_backend *be, const ci_quant_config *q,
                                  const ci_qlinear_src *const *parts, int n, const ci_qshard *sh,
                                  ci_tensor *out);

/* The share sh of a host weight w as a new host weight (its arrays
 * malloc'd; act_group 0, row-major): the same dequantized values as the
 * full weight's rows and columns, bit for bit. */
ci_status ci_qweight_shard(const ci_qweight *w, const ci_qshard *sh, ci_qweight *out);
void ci_qweight_host_free(ci_qweight *w);

#endif
