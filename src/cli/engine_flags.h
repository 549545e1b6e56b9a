/* engine_flags.h — the engine options every subcommand that runs the
 * engine accepts (generate, serve, bench, perplexity): parsed once into
 * ci_engine_flags, turned into the one engine config (include/cinfer.h) and
 * checked before anything loads, so a bad value fails at startup in every
 * command. */
#ifndef CINFER_CLI_ENGINE_FLAGS_H
#define CINFER_CLI_ENGINE_FLAGS_H

#include <limits.h>
#include <stdbool.h>

#include "cli/args.h"
#include "engine/engine.h"

typedef struct ci_engine_flags {
    const char *device, *dtype, *quantization, *kv_cache_dtype;
    double gpu_memory_utilization;
    bool enforce_eager, async_scheduling, no_async_scheduling, plan_ahead, prefill_first;
    long threads, block_size, max_num_batched_tokens, max_num_seqs, kv_cache_tokens,
        kv_cache_memory, max_model_len, max_graph_batch_size, max_graph_context;
    const char *speculative_method, *speculative_model;
    long num_speculative_tokens, ngram_min, ngram_max, speculative_disable_by_batch_size;
    long tensor_parallel_size, pipeline_parallel_size;
    bool no_prefix_caching;
} ci_engine_flags;

/* The value of a step-size flag not given: the device's default (cuda 8192
 * tokens and 1024 sequences, cpu 2048 and 256; ci_engine_config_check). */
#define CI_FLAG_DEVICE_DEFAULT LONG_MIN

/* Defaults: cpu, all threads, block 16, the device's step sizes, default KV. */
ci_engine_flags ci_engine_flags_default(void);

#define CI_ENGINE_FLAG_ARGS(f)                                                                      \
    {"--device", NULL, CI_ARG_STR, &(f).device, "NAME", "backend: cpu (default) or cuda"},          \
        {"--threads", "-t", CI_ARG_INT, &(f).threads, "N", "CPU threads (default: all cores)"},     \
        {"--dtype",  NULL, CI_ARG_STR,                                                              \
         &(f).dtype, "T",  "auto (cpu float32, cuda bfloat16), bfloat16 or float32"},               \
        {"--quantization",                                                                          \
         NULL,                                                                                      \
         CI_ARG_STR,                                                                                \
         &(f).quantization,                                                                         \
         "Q",                                                                                       \
         "fp8: quantize a dense checkpoint's linear weights to FP8 at load"},                       \
        {"--gpu-memory-utilization",                                                                \
         NULL,                                                                                      \
         CI_ARG_FLOAT,                                                                              \
         &(f).gpu_memory_utilization,                                                               \
         "F",                                                                                       \
         "cuda: fraction of device memory for weights, activations and KV (default 0.90)"},         \
        {"--enforce-eager",  NULL, CI_ARG_FLAG,                                                     \
         &(f).enforce_eager, "",   "cuda: no CUDA graphs for decode steps"},                        \
        {"--async-scheduling",  NULL, CI_ARG_FLAG,                                                  \
         &(f).async_scheduling, "",   "launch the next step before outputs (default on cuda)"},     \
        {"--no-async-scheduling",  NULL, CI_ARG_FLAG,                                               \
         &(f).no_async_scheduling, "",   "finish each step's outputs before the next launch"},      \
        {"--plan-ahead",  NULL, CI_ARG_FLAG,                                                        \
         &(f).plan_ahead, "",   "plan and launch the next step while one runs (async scheduling)"}, \
        {"--prefill-first",  NULL, CI_ARG_FLAG,                                                     \
         &(f).prefill_first, "",   "new prompts run in steps of their own, decodes wait a step"},   \
        {"--max-model-len",  NULL, CI_ARG_INT,                                                      \
         &(f).max_model_len, "N",  "context limit: prompt + output tokens (default: the model's)"}, \
        {"--max-graph-batch-size",  NULL, CI_ARG_INT,                                               \
         &(f).max_graph_batch_size, "N",  "cuda: largest decode batch run by a CUDA graph"},        \
        {"--max-graph-context",  NULL, CI_ARG_INT,                                                  \
         &(f).max_graph_context, "N",  "cuda: context bound of the first graph set (8192)"},        \
        {"--speculative-method",  NULL, CI_ARG_STR,                                                 \
         &(f).speculative_method, "M",  "speculative decoding: ngram (prompt lookup) or draft"},    \
        {"--speculative-model",  NULL,  CI_ARG_STR,                                                 \
         &(f).speculative_model, "DIR", "draft model (same tokenizer) for method draft"},           \
        {"--num-speculative-tokens",  NULL, CI_ARG_INT,                                             \
         &(f).num_speculative_tokens, "K",  "tokens drafted per step, 1..16 (0: off)"},             \
        {"--tensor-parallel-size",  "-tp", CI_ARG_INT,                                              \
         &(f).tensor_parallel_size, "N",   "split the model over N ranks (cpu: threads; 1)"},       \
        {"--pipeline-parallel-size",  "-pp", CI_ARG_INT,                                            \
         &(f).pipeline_parallel_size, "N",   "split the layers over N stages (cpu: threads; 1)"},   \
        {"--ngram-min",  NULL, CI_ARG_INT,                                                          \
         &(f).ngram_min, "N",  "ngram: shortest suffix looked up (1)"},                             \
        {"--ngram-max",  NULL, CI_ARG_INT,                                                          \
         &(f).ngram_max, "N",  "ngram: longest suffix looked up (4)"},                              \
        {"--speculative-disable-by-batch-size",  NULL, CI_ARG_INT,                                  \
         &(f).speculative_disable_by_batch_size, "N",  "no drafts in steps with more decodes"},     \
        {"--block-size",  NULL, CI_ARG_INT,                                                         \
         &(f).block_size, "N",  "KV cache block size (default 16)"},                                \
        {"--max-num-batched-tokens",  NULL, CI_ARG_INT,                                             \
         &(f).max_num_batched_tokens, "N",  "token budget per engine step (cuda 8192, cpu 2048)"},  \
        {"--max-num-seqs",  NULL, CI_ARG_INT,                                                       \
         &(f).max_num_seqs, "N",  "most running sequences (cuda 1024, cpu 256)"},                   \
        {"--kv-cache-tokens",  NULL, CI_ARG_INT,                                                    \
         &(f).kv_cache_tokens, "N",  "KV cache capacity in tokens"},                                \
        {"--kv-cache-memory",  NULL,    CI_ARG_INT,                                                 \
         &(f).kv_cache_memory, "BYTES", "KV cache budget in bytes (default 256 MiB)"},              \
        {"--kv-cache-dtype",  NULL, CI_ARG_STR,                                                     \
         &(f).kv_cache_dtype, "T",  "auto (the model dtype) or fp8 (E4M3: half the KV bytes)"},     \
    {                                                                                               \
        "--no-prefix-caching", NULL, CI_ARG_FLAG, &(f).no_prefix_caching, "",                       \
            "disable prefix caching"                                                                \
    }

/* Fills the engine config from the flags and checks every option. */
ci_status ci_engine_flags_config(const ci_engine_flags *f, const char *model_dir,
                                 ci_engine_config *c);

/* ci_engine_create with a loading progress bar on stderr (shown when stderr is
 * a terminal and loading takes over a second). */
ci_status ci_cli_engine_create(const ci_engine_config *c, ci_engine **out);

#endif
