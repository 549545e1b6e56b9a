#include "cli/engine_flags.h"

#include <stdio.h>
#include <string.h>

#include "util/progress.h"

/* The engine's own defaults (engine_config.c), as flag values. */
ci_engine_flags ci_engine_flags_default(void) {
    ci_engine_config c = ci_engine_default_config();
    ci_engine_flags f = {.device = c.device,
                         .dtype = c.dtype,
                         .gpu_memory_utilization = c.gpu_memory_utilization,
                         .block_size = c.block_size,
                         .max_num_batched_tokens = CI_FLAG_DEVICE_DEFAULT,
                         .max_num_seqs = CI_FLAG_DEVICE_DEFAULT,
                         .tensor_parallel_size = 1,
                         .pipeline_parallel_size = 1};
    return f;
}

/* A long flag into an int field: out of int range is an error here, the
 * rest of the range check is ci_engine_config_check's. */
static ci_status to_int(long v, const char *flag, int *out) {
    if (v < -2147483647L || v > 2147483647L)
        return ci_errorf(CI_ERR_INVALID, "%s %ld is out of range", flag, v);
    *out = (int)v;
    return ci_ok();
}

ci_status ci_engine_flags_config(const ci_engine_flags *f, const char *model_dir,
                                 ci_engine_config *c) {
    *c = ci_engine_default_config();
    c->model_dir = model_dir;
    c->device = f->device;
    c->dtype = f->dtype;
    c->quantization = f->quantization;
    if (f->kv_cache_dtype) c->kv_cache_dtype = f->kv_cache_dtype;
    c->gpu_memory_utilization = f->gpu_memory_utilization;
    c->enforce_eager = f->enforce_eager;
    if (f->async_scheduling && f->no_async_scheduling)
        return ci_errorf(CI_ERR_INVALID,
                         "--async-scheduling and --no-async-scheduling exclude each other");
    if (f->plan_ahead && f->no_async_scheduling)
        return ci_errorf(CI_ERR_INVALID,
                         "--plan-ahead and --no-async-scheduling exclude each other");
    c->prefill_first = f->prefill_first;
    c->async_scheduling = f->plan_ahead            ? 2
                          : f->async_scheduling    ? 1
                          : f->no_async_scheduling ? -1
                                                   : 0;
    c->kv_cache_tokens = f->kv_cache_tokens;
    c->kv_cache_memory = f->kv_cache_memory;
    c->enable_prefix_caching = !f->no_prefix_caching;
    CI_TRY(to_int(f->threads, "--threads", &c->num_threads));
    CI_TRY(to_int(f->block_size, "--block-size", &c->block_size));
    if (f->max_num_batched_tokens != CI_FLAG_DEVICE_DEFAULT)
        CI_TRY(to_int(f->max_num_batched_tokens, "--max-num-batched-tokens",
                      &c->max_num_batched_tokens));
    if (f->max_num_seqs != CI_FLAG_DEVICE_DEFAULT)
        CI_TRY(to_int(f->max_num_seqs, "--max-num-seqs", &c->max_num_seqs));
    CI_TRY(to_int(f->max_model_len, "--max-model-len", &c->max_model_len));
    CI_TRY(to_int(f->max_graph_batch_size, "--max-graph-batch-size", &c->max_graph_batch_size));
    CI_TRY(to_int(f->max_graph_context, "--max-graph-context", &c->max_graph_context));
    c->speculative_method = f->speculative_method;
    c->speculative_model = f->speculative_model;
    CI_TRY(
        to_int(f->num_speculative_tokens, "--num-speculative-tokens", &c->num_speculative_tokens));
    CI_TRY(to_int(f->ngram_min, "--ngram-min", &c->ngram_min));
    CI_TRY(to_int(f->ngram_max, "--ngram-max", &c->ngram_max));
    CI_TRY(to_int(f->speculative_disable_by_batch_size, "--speculative-disable-by-batch-size",
                  &c->speculative_disable_by_batch_size));
    CI_TRY(to_int(f->tensor_parallel_size, "--tensor-parallel-size", &c->tensor_parallel_size));
    CI_TRY(
        to_int(f->pipeline_parallel_size, "--pipeline-parallel-size", &c->pipeline_parallel_size));
    /* 0 means "default" in the config; on the command line it is a mistake
     * (the step sizes' flags start at CI_FLAG_DEVICE_DEFAULT: the config's 0) */
    const long budget = f->max_num_batched_tokens, seqs = f->max_num_seqs;
    if (f->block_size < 1 || (budget < 1 && budget != CI_FLAG_DEVICE_DEFAULT) ||
        (seqs < 1 && seqs != CI_FLAG_DEVICE_DEFAULT))
        return ci_errorf(CI_ERR_INVALID,
                         "--block-size, --max-num-batched-tokens and --max-num-seqs must be >= 1");
    if (!(f->gpu_memory_utilization > 0 && f->gpu_memory_utilization <= 1))
        return ci_errorf(CI_ERR_INVALID, "--gpu-memory-utilization must be in (0, 1] (got %g)",
                         f->gpu_memory_utilization);
    ci_status s = ci_engine_config_check(c);
    return s.code ? ci_status_wrap(s, "engine options") : s;
}

static void on_load_progress(size_t done, size_t total, void *user) {
    ci_progress_update(user, done, total);
}

ci_status ci_cli_engine_create(const ci_engine_config *c, ci_engine **out) {
    ci_engine_config cfg = *c;
    ci_progress bar;
    ci_progress_init(&bar, "loading");
    cfg.progress = on_load_progress;
    cfg.progress_user = &bar;
    ci_status s = ci_engine_create(&cfg, out);
    ci_progress_done(&bar);
    if (!s.code && cfg.device && strcmp(cfg.device, "cpu") != 0) {
        /* startup report (stderr): what vLLM prints at load */
        ci_engine_metrics m = ci_engine_get_metrics(*out);
        fprintf(stderr,
                "cinfer: %s: weights loaded in %.2f s; KV cache %d blocks x %d = %lld tokens "
                "(%.2f GiB %s, profiled in %.2f s); %d CUDA graphs captured in %.2f s\n",
                cfg.device, m.load_s, m.num_kv_blocks, m.block_size,
                (long long)m.num_kv_blocks * m.block_size, (double)m.kv_cache_bytes / (1 << 30),
                ci_kv_dtype_is_fp8(cfg.kv_cache_dtype) ? "fp8" : "auto", m.profile_s, m.num_graphs,
                m.capture_s);
    }
    return s;
}
