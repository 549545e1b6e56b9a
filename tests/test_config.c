/* test_config.c — config.json for every architecture and rope type, the demo
 * model's config, and error messages. */
#include "model/config.h"
#include "st_writer.h"
#include "test.h"

#define LLAMA_BASE                                                                                 \
    "\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":128256,\"hidden_size\":4096,"         \
    "\"intermediate_size\":14336,\"num_hidden_layers\":32,\"num_attention_heads\":32,"             \
    "\"num_key_value_heads\":8,\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-05,"         \
    "\"hidden_act\":\"silu\""

static void expect_err(const char *what, const char *json, ci_code code, const char *sub1,
                       const char *sub2) {
    ci_model_config c;
    ci_status s = ci_config_parse(json, &c);
    CHECKF(s.code == code, "%s: code %s want %s (%s)", what, ci_code_name(s.code),
           ci_code_name(code), s.msg);
    CHECKF(strstr(s.msg, "config.json") != NULL, "%s: no file name: %s", what, s.msg);
    if (sub1) CHECKF(strstr(s.msg, sub1) != NULL, "%s: lacks '%s': %s", what, sub1, s.msg);
    if (sub2) CHECKF(strstr(s.msg, sub2) != NULL, "%s: lacks '%s': %s", what, sub2, s.msg);
}

static void test_llama3(void) {
    ci_model_config c;
    CHECK_OK(ci_config_parse("{" LLAMA_BASE ",\"rope_theta\":500000.0,\"bos_token_id\":128000,"
                             "\"eos_token_id\":[128001,128008,128009],\"torch_dtype\":\"bfloat16\","
                             "\"tie_word_embeddings\":false,\"attention_bias\":false,"
                             "\"rope_scaling\":{\"factor\":8.0,\"low_freq_factor\":1.0,"
                             "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192,"
                             "\"rope_type\":\"llama3\"}}",
                             &c));
    CHECK(c.arch == CI_ARCH_LLAMA && strcmp(c.arch_name, "LlamaForCausalLM") == 0);
    CHECK(c.vocab_size == 128256 && c.hidden_size == 4096 && c.intermediate_size == 14336);
    CHECK(c.num_layers == 32 && c.num_heads == 32 && c.num_kv_heads == 8 && c.head_dim == 128);
    CHECK(c.max_position_embeddings == 131072 && c.rms_norm_eps == 1e-5);
    CHECK(!c.tie_word_embeddings && !c.qkv_bias && !c.qk_norm && c.sliding_window == 0);
    CHECK(c.dtype == CI_BF16 && c.bos_token_id == 128000);
    CHECK(c.num_eos_token_ids == 3 && c.eos_token_ids[0] == 128001 && c.eos_token_ids[2] == 128009);
    CHECK(c.rope.type == CI_ROPE_LLAMA3 && c.rope.theta == 500000.0 && c.rope.factor == 8.0);
    CHECK(c.rope.low_freq_factor == 1.0 && c.rope.high_freq_factor == 4.0);
    CHECK(c.rope.original_max_position == 8192 && c.rope.neox);
    CHECK(c.rope.partial_rotary_factor == 1.0 && ci_config_rot_dim(&c) == 128);

    /* transformers 5 layout: everything under rope_parameters */
    CHECK_OK(ci_config_parse("{" LLAMA_BASE ",\"rope_parameters\":{\"rope_theta\":500000.0,"
                             "\"factor\":32.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                             "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"}}",
                             &c));
    CHECK(c.rope.type == CI_ROPE_LLAMA3 && c.rope.theta == 500000.0 && c.rope.factor == 32.0);
    CHECK(c.num_eos_token_ids == 0 && c.bos_token_id == -1 && c.dtype == CI_F32);
}

static void test_linear_and_defaults(void) {
    ci_model_config c;
    CHECK_OK(
        ci_config_parse("{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":32000,"
                        "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                        "\"num_attention_heads\":4,\"head_dim\":null,"
                        "\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0},\"eos_token_id\":2}",
                        &c));
    CHECK(c.rope.type == CI_ROPE_LINEAR && c.rope.factor == 2.0 && c.rope.theta == 10000.0);
    CHECK(c.num_kv_heads == 4 && c.head_dim == 16); /* defaults: kv = heads, hidden/heads */
    CHECK(c.max_position_embeddings == 2048 && c.rms_norm_eps == 1e-6);
    CHECK(c.num_eos_token_ids == 1 && c.eos_token_ids[0] == 2);
    CHECK(!c.tie_word_embeddings);
    /* rope_scaling null, only model_type */
    CHECK_OK(ci_config_parse("{\"model_type\":\"mistral\",\"vocab_size\":32000,\"hidden_size\":64,"
                             "\"intermediate_size\":128,\"num_hidden_layers\":2,"
                             "\"num_attention_heads\":4,\"num_key_value_heads\":2,"
                             "\"rope_scaling\":null,\"rope_theta\":1000000.0,"
                             "\"max_position_embeddings\":32768,\"sliding_window\":4096}",
                             &c));
    CHECK(c.arch == CI_ARCH_MISTRAL && c.rope.type == CI_ROPE_DEFAULT && c.rope.theta == 1e6);
    CHECK(c.sliding_window == 4096);
    CHECK_OK(ci_config_parse("{\"architectures\":[\"MistralForCausalLM\"],\"vocab_size\":32000,"
                             "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                             "\"num_attention_heads\":4,\"max_position_embeddings\":4096,"
                             "\"sliding_window\":4096}",
                             &c));
    CHECK(c.sliding_window == 0); /* window >= context: none */
    CHECK_OK(ci_config_parse("{\"architectures\":[\"MistralForCausalLM\"],\"vocab_size\":32000,"
                             "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                             "\"num_attention_heads\":4,\"sliding_window\":null}",
                             &c));
    CHECK(c.sliding_window == 0);
}

static void test_yarn(void) {
    ci_model_config c;
    /* Qwen3 with YaRN as its model card suggests */
    CHECK_OK(ci_config_parse(
        "{\"architectures\":[\"Qwen3ForCausalLM\"],\"vocab_size\":151936,\"hidden_size\":1024,"
        "\"intermediate_size\":3072,\"num_hidden_layers\":28,\"num_attention_heads\":16,"
        "\"num_key_value_heads\":8,\"head_dim\":128,\"max_position_embeddings\":40960,"
        "\"rope_theta\":1000000,\"tie_word_embeddings\":true,\"attention_bias\":false,"
        "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0,"
        "\"original_max_position_embeddings\":32768},\"sliding_window\":null,"
        "\"use_sliding_window\":false,\"eos_token_id\":151645,\"bos_token_id\":151643}",
        &c));
    CHECK(c.arch == CI_ARCH_QWEN3 && c.qk_norm && !c.qkv_bias && c.tie_word_embeddings);
    CHECK(c.head_dim == 128); /* explicit, not 1024/16 */
    CHECK(c.rope.type == CI_ROPE_YARN && c.rope.factor == 4.0 && c.rope.theta == 1e6);
    CHECK(c.rope.original_max_position == 32768 && c.rope.attention_factor == 0);
    CHECK(c.rope.beta_fast == 32 && c.rope.beta_slow == 1 && c.rope.truncate);
    CHECK(c.rope.max_position == 40960);
    /* all the optional yarn fields, transformers-5 style */
    CHECK_OK(ci_config_parse(
        "{\"architectures\":[\"Qwen2ForCausalLM\"],\"vocab_size\":100,\"hidden_size\":64,"
        "\"intermediate_size\":128,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
        "\"num_key_value_heads\":1,\"max_position_embeddings\":8192,"
        "\"rope_parameters\":{\"rope_type\":\"yarn\",\"rope_theta\":50000.0,\"factor\":2.5,"
        "\"beta_fast\":16,\"beta_slow\":2,\"attention_factor\":1.25,\"mscale\":0.5,"
        "\"mscale_all_dim\":1.0,\"truncate\":false,\"partial_rotary_factor\":0.5}}",
        &c));
    CHECK(c.arch == CI_ARCH_QWEN2 && c.qkv_bias && !c.qk_norm && !c.tie_word_embeddings);
    CHECK(c.rope.type == CI_ROPE_YARN && c.rope.theta == 50000.0 && c.rope.factor == 2.5);
    CHECK(c.rope.beta_fast == 16 && c.rope.beta_slow == 2 && c.rope.attention_factor == 1.25);
    CHECK(c.rope.mscale == 0.5 && c.rope.mscale_all_dim == 1.0 && !c.rope.truncate);
    CHECK(c.rope.original_max_position == 8192); /* default: max_position_embeddings */
    CHECK(c.rope.partial_rotary_factor == 0.5 && ci_config_rot_dim(&c) == 8);
}

/* Sliding windows per layer, as transformers 5 configures them. */
static void test_sliding_window(void) {
    ci_model_config c;
#define SW_BASE(arch, layers)                                                                      \
    "{\"architectures\":[\"" arch "\"],\"vocab_size\":64,\"hidden_size\":64,"                      \
    "\"intermediate_size\":128,\"num_hidden_layers\":" layers ",\"num_attention_heads\":4"
    /* Mistral: the window applies to every layer; absent = 4096 (MistralConfig's default) */
    CHECK_OK(ci_config_parse(SW_BASE("MistralForCausalLM", "3") "}", &c));
    CHECK(c.sliding_window == 4096 && c.layer_window[0] == 4096 && c.layer_window[2] == 4096);
    /* ... layer_types is ignored (MistralModel never reads it) */
    CHECK_OK(
        ci_config_parse(SW_BASE("MistralForCausalLM", "2") ",\"sliding_window\":8,"
                                                           "\"layer_types\":[\"full_attention\","
                                                           "\"full_attention\"]}",
                        &c));
    CHECK(c.sliding_window == 8 && c.layer_window[0] == 8 && c.layer_window[1] == 8);
    CHECK_OK(ci_config_parse(SW_BASE("MistralForCausalLM", "2") ",\"sliding_window\":null}", &c));
    CHECK(c.sliding_window == 0 && c.layer_window[0] == 0 && c.layer_window[1] == 0);
    /* Llama has no sliding window */
    CHECK_OK(ci_config_parse(SW_BASE("LlamaForCausalLM", "2") ",\"sliding_window\":8}", &c));
    CHECK(c.sliding_window == 0 && c.layer_window[0] == 0 && c.layer_window[1] == 0);
    /* Qwen2: only with use_sliding_window (default false) */
    CHECK_OK(ci_config_parse(SW_BASE("Qwen2ForCausalLM", "2") ",\"sliding_window\":8,"
                                                              "\"max_window_layers\":0}",
                             &c));
    CHECK(c.sliding_window == 0 && c.layer_window[0] == 0 && c.layer_window[1] == 0);
    /* ... then layers i >= max_window_layers slide */
    CHECK_OK(ci_config_parse(SW_BASE("Qwen2ForCausalLM", "3") ",\"sliding_window\":8,"
                                                              "\"use_sliding_window\":true,"
                                                              "\"max_window_layers\":1}",
                             &c));
    CHECK(c.sliding_window == 8 && c.layer_window[0] == 0 && c.layer_window[1] == 8 &&
          c.layer_window[2] == 8);
    /* ... max_window_layers defaults to 28, sliding_window to 4096 */
    CHECK_OK(
        ci_config_parse(SW_BASE("Qwen2ForCausalLM", "30") ",\"use_sliding_window\":true}", &c));
    CHECK(c.sliding_window == 4096 && c.layer_window[27] == 0 && c.layer_window[28] == 4096 &&
          c.layer_window[29] == 4096);
    /* layer_types wins over max_window_layers (Qwen3 too) */
    CHECK_OK(
        ci_config_parse(SW_BASE("Qwen3ForCausalLM", "3") ",\"sliding_window\":8,"
                                                         "\"use_sliding_window\":true,"
                                                         "\"max_window_layers\":0,"
                                                         "\"layer_types\":[\"sliding_attention\","
                                                         "\"full_attention\","
                                                         "\"sliding_attention\"]}",
                        &c));
    CHECK(c.sliding_window == 8 && c.layer_window[0] == 8 && c.layer_window[1] == 0 &&
          c.layer_window[2] == 8);
    /* all full with use_sliding_window false and sliding_window null (HF 5 writes this) */
    CHECK_OK(ci_config_parse(SW_BASE("Qwen2ForCausalLM", "2") ",\"sliding_window\":null,"
                                                              "\"use_sliding_window\":false,"
                                                              "\"max_window_layers\":28,"
                                                              "\"layer_types\":[\"full_attention\","
                                                              "\"full_attention\"]}",
                             &c));
    CHECK(c.sliding_window == 0 && c.layer_window[0] == 0 && c.layer_window[1] == 0);
    /* a window 0 that is never used is no error */
    CHECK_OK(ci_config_parse(SW_BASE("Qwen2ForCausalLM", "1") ",\"sliding_window\":0}", &c));
    CHECK(c.sliding_window == 0 && c.layer_window[0] == 0);
    /* a window reaching past max_position_embeddings masks nothing: stored as 0 */
    CHECK_OK(ci_config_parse(SW_BASE("Qwen2ForCausalLM", "1") ",\"sliding_window\":64,"
                                                              "\"use_sliding_window\":true,"
                                                              "\"max_window_layers\":0,"
                                                              "\"max_position_embeddings\":64}",
                             &c));
    CHECK(c.sliding_window == 0 && c.layer_window[0] == 0);
#undef SW_BASE
}

static void test_demo_config(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/models/tinyqwen2-code", test_source_dir());
    ci_model_config c;
    ci_status s = ci_config_load(dir, &c);
    if (s.code == CI_ERR_IO) test_skip("demo model missing");
    CHECK_OK(s);
    CHECK(c.arch == CI_ARCH_QWEN2 && strcmp(c.arch_name, "Qwen2ForCausalLM") == 0);
    CHECK(c.vocab_size == 8192 && c.hidden_size == 256 && c.intermediate_size == 768);
    CHECK(c.num_layers == 6 && c.num_heads == 4 && c.num_kv_heads == 2 && c.head_dim == 64);
    CHECK(c.max_position_embeddings == 2048 && c.rms_norm_eps == 1e-6);
    CHECK(c.tie_word_embeddings && c.qkv_bias && !c.qk_norm && c.sliding_window == 0);
    CHECK(c.rope.type == CI_ROPE_DEFAULT && c.rope.theta == 10000.0 && c.rope.neox);
    CHECK(c.dtype == CI_BF16 && c.bos_token_id == -1);
    CHECK(c.num_eos_token_ids == 1 && c.eos_token_ids[0] == 8189);
}

static void test_errors(void) {
    char dir[512];
    CHECK(stw_mkdtemp(dir, sizeof dir));
    ci_model_config c;
    ci_status s = ci_config_load(dir, &c);
    CHECKF(s.code == CI_ERR_IO && strstr(s.msg, "/config.json: No such file or directory"), "%s",
           s.msg);
    char p[700];
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK(
        stw_write_text(p, "{\"architectures\": [\"LlamaForCausalLM\"],\n  \"vocab_size\": 12,,}"));
    s = ci_config_load(dir, &c);
    CHECKF(s.code == CI_ERR_FORMAT && strstr(s.msg, "config.json: invalid JSON at line 2"), "%s",
           s.msg);
    remove(p);
    stw_rmdir(dir);

    expect_err("bad JSON", "{\"a\":", CI_ERR_FORMAT, "invalid JSON", NULL);
    expect_err("not object", "[1]", CI_ERR_FORMAT, "object", NULL);
    expect_err("unknown arch", "{\"architectures\":[\"GPT2LMHeadModel\"],\"vocab_size\":5}",
               CI_ERR_UNSUPPORTED, "'GPT2LMHeadModel'", "architectures");
    expect_err("unknown arch lists the families", "{\"architectures\":[\"GPT2LMHeadModel\"]}",
               CI_ERR_UNSUPPORTED,
               "(supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
               "Qwen3ForCausalLM)",
               NULL);
    expect_err("unknown model_type", "{\"model_type\":\"gpt2\"}", CI_ERR_UNSUPPORTED,
               "unsupported model_type 'gpt2' (supported: llama, mistral, qwen2, qwen3)", NULL);
    expect_err("no arch", "{\"vocab_size\":5}", CI_ERR_FORMAT, "'architectures'", NULL);
    expect_err("arch not array", "{\"architectures\":\"LlamaForCausalLM\"}", CI_ERR_FORMAT,
               "'architectures'", NULL);
    expect_err("missing field",
               "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":5,\"hidden_size\":8,"
               "\"intermediate_size\":8,\"num_attention_heads\":2}",
               CI_ERR_FORMAT, "field 'num_hidden_layers' is missing", NULL);
    expect_err("negative field",
               "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":5,\"hidden_size\":8,"
               "\"intermediate_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":-2}",
               CI_ERR_FORMAT, "config.json: field 'num_attention_heads' must be a positive integer",
               NULL);
    expect_err("string field",
               "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":5,\"hidden_size\":\"8\"}",
               CI_ERR_FORMAT, "field 'hidden_size' must be a positive integer", NULL);
    expect_err("fractional field",
               "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":5.5,\"hidden_size\":8}",
               CI_ERR_FORMAT, "field 'vocab_size'", NULL);
    expect_err(
        "huge field",
        "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":99999999999,\"hidden_size\":8}",
        CI_ERR_FORMAT, "field 'vocab_size'", NULL);
#define SMALL "\"vocab_size\":5,\"hidden_size\":48,\"intermediate_size\":8,\"num_hidden_layers\":1"
    expect_err("heads not divisible",
               "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL
               ",\"num_attention_heads\":6,\"num_key_value_heads\":4}",
               CI_ERR_FORMAT,
               "'num_attention_heads' (6) must be a multiple of 'num_key_value_heads' (4)", NULL);
    expect_err("odd head_dim",
               "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL ",\"num_attention_heads\":16}",
               CI_ERR_FORMAT, "field 'head_dim' (3) must be even", NULL);
    expect_err("hidden_act",
               "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"hidden_act\":\"gelu\"}",
               CI_ERR_UNSUPPORTED, "field 'hidden_act'", "gelu");
    expect_err("llama attention_bias",
               "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"attention_bias\":true}",
               CI_ERR_UNSUPPORTED, "field 'attention_bias'", "o_proj");
    expect_err("qwen3 attention_bias",
               "{\"architectures\":[\"Qwen3ForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"attention_bias\":true}",
               CI_ERR_UNSUPPORTED, "field 'attention_bias'", NULL);
    expect_err("rope dynamic",
               "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2}}",
               CI_ERR_UNSUPPORTED, "field 'rope_scaling.type'", "dynamic");
    expect_err("llama3 missing",
               "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,"
               "\"high_freq_factor\":4,\"original_max_position_embeddings\":8192}}",
               CI_ERR_FORMAT, "field 'rope_scaling.low_freq_factor' is missing", NULL);
    expect_err(
        "linear factor bad",
        "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL
        ",\"num_attention_heads\":4,\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":-1}}",
        CI_ERR_FORMAT, "field 'rope_scaling.factor' must be a positive number", NULL);
    expect_err("yarn no factor",
               "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"rope_parameters\":{\"rope_type\":\"yarn\"}}",
               CI_ERR_FORMAT, "field 'rope_parameters.factor'", NULL);
    expect_err("theta bad",
               "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"rope_theta\":0}",
               CI_ERR_FORMAT, "field 'rope_theta'", NULL);
    expect_err("eos string",
               "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"eos_token_id\":\"</s>\"}",
               CI_ERR_FORMAT, "field 'eos_token_id'", NULL);
    expect_err("tie not bool",
               "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"tie_word_embeddings\":1}",
               CI_ERR_FORMAT, "field 'tie_word_embeddings'", NULL);
    expect_err("partial rotary",
               "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"partial_rotary_factor\":1.5}",
               CI_ERR_FORMAT, "field 'partial_rotary_factor'", NULL);
    expect_err("sliding layer without a window",
               "{\"architectures\":[\"Qwen2ForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"sliding_window\":16,"
               "\"layer_types\":[\"sliding_attention\"]}",
               CI_ERR_FORMAT, "field 'layer_types[0]' is 'sliding_attention'", "no sliding window");
    expect_err("layer_types length",
               "{\"architectures\":[\"Qwen3ForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"layer_types\":[\"full_attention\","
               "\"full_attention\"]}",
               CI_ERR_FORMAT, "field 'layer_types' must be an array of 1 strings", NULL);
    expect_err("layer_types chunked",
               "{\"architectures\":[\"Qwen2ForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"layer_types\":[\"chunked_attention\"]}",
               CI_ERR_UNSUPPORTED, "field 'layer_types[0]' is 'chunked_attention'", NULL);
    expect_err("layer_types not strings",
               "{\"architectures\":[\"Qwen2ForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"layer_types\":[1]}",
               CI_ERR_FORMAT, "field 'layer_types[0]' must be a string", NULL);
    expect_err("window zero",
               "{\"architectures\":[\"MistralForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"sliding_window\":0}",
               CI_ERR_FORMAT, "field 'sliding_window' must be a positive integer", NULL);
    expect_err("window negative",
               "{\"architectures\":[\"MistralForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"sliding_window\":-3}",
               CI_ERR_FORMAT, "field 'sliding_window'", NULL);
    expect_err("too many layers",
               "{\"architectures\":[\"MistralForCausalLM\"],\"vocab_size\":5,\"hidden_size\":48,"
               "\"intermediate_size\":8,\"num_hidden_layers\":5000,\"num_attention_heads\":4}",
               CI_ERR_UNSUPPORTED, "field 'num_hidden_layers' is 5000", NULL);
    expect_err("kv zero",
               "{\"architectures\":[\"LlamaForCausalLM\"]," SMALL
               ",\"num_attention_heads\":4,\"num_key_value_heads\":0}",
               CI_ERR_FORMAT, "field 'num_key_value_heads' must be a positive integer", NULL);
    CHECK(ci_config_parse(NULL, &c).code == CI_ERR_INVALID);
}

/* Every family is found by each of its names and reads HF Llama's tensor names. */
static void test_families(void) {
    const ci_arch *all[] = {CI_ARCH_LLAMA, CI_ARCH_MISTRAL, CI_ARCH_QWEN2, CI_ARCH_QWEN3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const ci_arch *a = all[i];
        for (int j = 0; j < CI_ARCH_MAX_NAMES && a->architectures[j]; j++)
            CHECK(ci_arch_by_architecture(a->architectures[j]) == a);
        for (int j = 0; j < CI_ARCH_MAX_NAMES && a->model_types[j]; j++)
            CHECK(ci_arch_by_model_type(a->model_types[j]) == a);
        CHECK(a->names && strcmp(a->names->q, "self_attn.q_proj.weight") == 0);
        CHECK(a->max_position_default > 0 && !a->tie_embeddings_default);
    }
    CHECK(ci_arch_by_architecture("qwen2") == NULL && ci_arch_by_model_type("Qwen2") == NULL);
    CHECK(CI_ARCH_QWEN2->qkv_bias && !CI_ARCH_QWEN2->qk_norm);
    CHECK(CI_ARCH_QWEN3->qk_norm && !CI_ARCH_QWEN3->qkv_bias);
    char list[16];
    ci_arch_list(list, sizeof list, true); /* truncated, still terminated */
    CHECK(strcmp(list, "llama, mistral,") == 0);
}

int main(void) {
    test_families();
    test_llama3();
    test_linear_and_defaults();
    test_yarn();
    test_errors();
    test_sliding_window();
    test_demo_config();
    return test_finish("test_config");
}
