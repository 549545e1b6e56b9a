/* fuzz_quant_load.c — libFuzzer harness for loading quantized checkpoints:
 * the per-format tensor checks and repacks (model/quant_load.c, after
 * quant_config.c has accepted the config) and the CPU's quantized matmuls
 * on whatever values get through.
 *
 * Input: one byte k choosing a quantization_config of k_configs (one per
 * published layout, as tools/quantize_checkpoint.py writes it), then a
 * model.safetensors image. The harness writes both, with a tiny dense
 * Llama's config (1 layer, hidden 32, intermediate 64, 2 heads / 1 KV head
 * of 16, vocabulary 32), into a temporary directory and loads it on the CPU
 * backend: a load must succeed or fail with a message; a loaded model
 * generates 2 greedy tokens from 3 prompt tokens (NaN / huge scales give
 * junk, never a crash). Seed corpus: tests/fuzz/corpus/quant_load, written
 * by tests/fuzz/make_quant_load_seeds.py (its printed configs are the table
 * below). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "engine/generate.h"
#include "model/model.h"

static const char *const k_configs[] = {
    "{\"bits\":4,\"group_size\":32,\"desc_act\":true,\"sym\":true,\"quant_method\":\"gptq\","
    "\"checkpoint_format\":\"gptq\"}",
    "{\"bits\":8,\"group_size\":32,\"desc_act\":false,\"sym\":true,\"quant_method\":\"gptq\","
    "\"checkpoint_format\":\"gptq\"}",
    "{\"bits\":4,\"group_size\":32,\"quant_method\":\"awq\",\"version\":\"gemm\","
    "\"zero_point\":true}",
    "{\"config_groups\":{\"group_0\":{\"input_activations\":null,\"targets\":[\"Linear\"],"
    "\"weights\":{\"dynamic\":false,\"group_size\":32,\"num_bits\":4,\"strategy\":\"group\","
    "\"symmetric\":false,\"type\":\"int\"}}},\"format\":\"pack-quantized\","
    "\"quant_method\":\"compressed-tensors\"}",
    "{\"config_groups\":{\"group_0\":{\"input_activations\":{\"dynamic\":true,\"num_bits\":8,"
    "\"strategy\":\"token\",\"symmetric\":true,\"type\":\"float\"},\"targets\":[\"Linear\"],"
    "\"weights\":{\"dynamic\":false,\"num_bits\":8,\"strategy\":\"channel\",\"symmetric\":true,"
    "\"type\":\"float\"}}},\"format\":\"float-quantized\",\"quant_method\":\"compressed-tensors\"}",
    "{\"config_groups\":{\"group_0\":{\"input_activations\":{\"dynamic\":true,\"group_size\":128,"
    "\"num_bits\":8,\"strategy\":\"group\",\"symmetric\":true,\"type\":\"float\"},\"targets\":["
    "\"Linear\"],\"weights\":{\"block_structure\":[128,128],\"dynamic\":false,\"num_bits\":8,"
    "\"strategy\":\"block\",\"symmetric\":true,\"type\":\"float\"}}},\"format\":"
    "\"float-quantized\",\"quant_method\":\"compressed-tensors\"}",
    "{\"activation_scheme\":\"static\",\"quant_method\":\"fp8\"}",
    "{\"activation_scheme\":\"dynamic\",\"fmt\":\"e4m3\",\"quant_method\":\"fp8\","
    "\"weight_block_size\":[128,128]}",
    "{\"config_groups\":{\"group_0\":{\"input_activations\":{\"dynamic\":true,\"num_bits\":8,"
    "\"strategy\":\"token\",\"symmetric\":true,\"type\":\"int\"},\"targets\":[\"Linear\"],"
    "\"weights\":{\"dynamic\":false,\"num_bits\":8,\"strategy\":\"channel\",\"symmetric\":true,"
    "\"type\":\"int\"}}},\"format\":\"int-quantized\",\"quant_method\":\"compressed-tensors\"}",
    /* the LM head quantized too (GPTQModel's lm_head: true), on the tied model */
    "{\"bits\":4,\"group_size\":32,\"desc_act\":false,\"sym\":true,\"quant_method\":\"gptq\","
    "\"checkpoint_format\":\"gptq\",\"lm_head\":true}",
};
#define NCONFIGS (sizeof k_configs / sizeof k_configs[0])

static ci_backend *be;
static char dir[64];

static int write_file(const char *name, const void *data, size_t len) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    const int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!be) {
        ci_backend_options o = {.num_threads = 1};
        snprintf(dir, sizeof dir, "/tmp/fuzz_quant_load.XXXXXX");
        if (ci_backend_create("cpu", &o, &be).code != CI_OK || !mkdtemp(dir)) abort();
    }
    char cfg[2048];
    const int n = snprintf(cfg, sizeof cfg,
                           "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
                           "\"hidden_size\":32,\"intermediate_size\":64,\"num_hidden_layers\":1,"
                           "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":16,"
                           "\"vocab_size\":32,\"max_position_embeddings\":64,"
                           "\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,"
                           "\"tie_word_embeddings\":true,\"quantization_config\":%s}",
                           k_configs[data[0] % NCONFIGS]);
    if (n <= 0 || (size_t)n >= sizeof cfg || !write_file("config.json", cfg, (size_t)n) ||
        !write_file("model.safetensors", data + 1, size - 1))
        abort();
    ci_model_options mo = {.max_batch_tokens = 16};
    ci_model *m = NULL;
    ci_status s = ci_model_load(dir, be, &mo, &m);
    if (getenv("FUZZ_QUANT_LOAD_VERBOSE")) /* the seeds must load: check them so */
        fprintf(stderr, "config %d: %s\n", data[0] % (int)NCONFIGS, s.code ? s.msg : "loaded");
    if (s.code != CI_OK) {
        if (m || s.msg[0] == '\0') abort(); /* errors carry a message, no model */
        return 0;
    }
    const int32_t prompt[3] = {1, 5, 7};
    int32_t out[2];
    ci_generate_params gp = {.max_new_tokens = 2, .sampling = ci_sampling_greedy()};
    ci_status g = ci_generate(m, prompt, 3, &gp, out, NULL);
    if (g.code != CI_OK && g.msg[0] == '\0') abort();
    ci_model_free(m);
    return 0;
}
