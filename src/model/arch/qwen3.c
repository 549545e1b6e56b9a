/* qwen3.c — Qwen3 (Qwen3ForCausalLM): Llama with a per-head RMSNorm of q and
 * k (self_attn.q_norm / k_norm, [head_dim]) between the projection and RoPE. */
#include "model/arch/arch.h"

const ci_arch ci_arch_qwen3 = {
    .architectures = {"Qwen3ForCausalLM"},
    .model_types = {"qwen3"},
    .names = &ci_arch_llama_names,
    .max_position_default = 32768,
    .qk_norm = true,
    .attention_bias_field = true,
};
