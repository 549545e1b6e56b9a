/* llama.c — Llama (LlamaForCausalLM) and Mistral (MistralForCausalLM).
 *
 * The reference decoder: RMSNorm, RoPE, GQA attention without biases, SwiGLU
 * MLP. Their tensor names (HF's LlamaModel layout) are shared by every family
 * in this folder. Mistral differs only in its defaults, in ignoring
 * `attention_bias`, and in its sliding window (config.c). */
#include "model/arch/arch.h"

const ci_arch_names ci_arch_llama_names = {
    .embed = "model.embed_tokens.weight",
    .final_norm = "model.norm.weight",
    .lm_head = "lm_head.weight",
    .layers = "model.layers.",
    .attn_norm = "input_layernorm.weight",
    .mlp_norm = "post_attention_layernorm.weight",
    .q = "self_attn.q_proj.weight",
    .k = "self_attn.k_proj.weight",
    .v = "self_attn.v_proj.weight",
    .o = "self_attn.o_proj.weight",
    .q_bias = "self_attn.q_proj.bias",
    .k_bias = "self_attn.k_proj.bias",
    .v_bias = "self_attn.v_proj.bias",
    .o_bias = "self_attn.o_proj.bias",
    .q_norm = "self_attn.q_norm.weight",
    .k_norm = "self_attn.k_norm.weight",
    .gate = "mlp.gate_proj.weight",
    .up = "mlp.up_proj.weight",
    .down = "mlp.down_proj.weight",
};

const ci_arch ci_arch_llama = {
    .architectures = {"LlamaForCausalLM"},
    .model_types = {"llama"},
    .names = &ci_arch_llama_names,
    .max_position_default = 2048,
    .attention_bias_field = true,
};

/* MistralAttention has no biases: `attention_bias` is not read. */
const ci_arch ci_arch_mistral = {
    .architectures = {"MistralForCausalLM"},
    .model_types = {"mistral"},
    .names = &ci_arch_llama_names,
    .max_position_default = 131072,
};
