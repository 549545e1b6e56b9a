/* qwen2.c — Qwen2 (Qwen2ForCausalLM): Llama with a bias on the q, k and v
 * projections (always; o_proj has none, whatever `attention_bias` says). */
#include "model/arch/arch.h"

const ci_arch ci_arch_qwen2 = {
    .architectures = {"Qwen2ForCausalLM"},
    .model_types = {"qwen2"},
    .names = &ci_arch_llama_names,
    .max_position_default = 32768,
    .qkv_bias = true,
};
