/* engine_config.c — the engine options (include/cinfer.h's
 * cinfer_engine_config): defaults, the checks every command runs at
 * startup, and the one-line description servers print. */
#include <stdio.h>
#include <string.h>

#include "engine/engine.h"

ci_engine_config ci_engine_default_config(void) {
    ci_engine_config c;
    memset(&c, 0, sizeof c);
    c.device = "cpu";
    c.dtype = "auto";
    c.block_size = 16;
    c.max_num_batched_tokens = 0; /* by device: ci_engine_config_check */
    c.max_num_seqs = 0;
    c.gpu_memory_utilization = 0.90;
    c.enable_prefix_caching = 1;
    c.aging_steps = 100;
    c.kv_cache_dtype = "auto";
    return c;
}

ci_engine_sampling ci_engine_default_sampling(void) {
    ci_engine_sampling s;
    memset(&s, 0, sizeof s);
    s.temperature = 1.0f;
    s.top_p = 1.0f;
    s.repetition_penalty = 1.0f;
    s.seed = -1;
    s.max_tokens = 16;
    s.n = 1;
    s.logprobs = -1;
    s.prompt_logprobs = -1;
    s.skip_special_tokens = 1;
    return s;
}

static int is(const char *v, const char *a) {
    return v && !strcmp(v, a);
}

ci_status ci_engine_config_check(ci_engine_config *c) {
    ci_engine_config d = ci_engine_default_config();
    if (!c->device) c->device = d.device;
    if (!c->dtype) c->dtype = d.dtype;
    if (c->block_size == 0) c->block_size = d.block_size;
    /* a GPU step has room for larger batches: more rows per weight byte and
     * fuller GEMM tiles (H200, Llama-3-8B shape, offline 1000 x 256/256:
     * 14.0k output tok/s at 256 / 2048, 15.4k at 1024 / 8192; vLLM's H100
     * defaults are the same); the CPU keeps small steps */
    const int gpu = is(c->device, "cuda");
    if (c->max_num_batched_tokens == 0) c->max_num_batched_tokens = gpu ? 8192 : 2048;
    if (c->max_num_seqs == 0) c->max_num_seqs = gpu ? 1024 : 256;
    /* the CPU backend computes inside the launch: nothing to overlap */
    if (c->async_scheduling == 0) c->async_scheduling = gpu ? 1 : -1;
    if (c->async_scheduling != 1 && c->async_scheduling != -1 && c->async_scheduling != 2)
        return ci_errorf(CI_ERR_INVALID,
                         "async_scheduling %d (use 1 on, 2 plan ahead, -1 off, 0 by device)",
                         c->async_scheduling);
    if (c->gpu_memory_utilization == 0) c->gpu_memory_utilization = d.gpu_memory_utilization;
    if (!c->model_dir) return ci_errorf(CI_ERR_INVALID, "no model directory");
    if (strcmp(c->device, "cpu") != 0 && strcmp(c->device, "cuda") != 0)
        return ci_errorf(CI_ERR_INVALID, "device: unknown backend '%s' (use cpu or cuda)",
                         c->device);
    if (!is(c->dtype, "auto") && !is(c->dtype, "bfloat16") && !is(c->dtype, "bf16") &&
        !is(c->dtype, "float32") && !is(c->dtype, "f32"))
        return ci_errorf(CI_ERR_INVALID, "dtype '%s' (use auto, bfloat16 or float32)", c->dtype);
    if (c->block_size < 1 || c->block_size > 1024)
        return ci_errorf(CI_ERR_INVALID, "block size %d outside [1, 1024]", c->block_size);
    if (c->max_num_batched_tokens < 1 || c->max_num_batched_tokens > (1 << 20))
        return ci_errorf(CI_ERR_INVALID, "max_num_batched_tokens %d outside [1, 1048576]",
                         c->max_num_batched_tokens);
    if (c->max_num_seqs < 1 || c->max_num_seqs > 65536)
        return ci_errorf(CI_ERR_INVALID, "max_num_seqs %d outside [1, 65536]", c->max_num_seqs);
    if (c->max_model_len < 0)
        return ci_errorf(CI_ERR_INVALID, "max_model_len %d must be >= 0 (0: the model's)",
                         c->max_model_len);
    if (c->kv_cache_tokens < 0 || c->kv_cache_memory < 0)
        return ci_errorf(CI_ERR_INVALID, "negative KV cache size");
    if (!(c->gpu_memory_utilization > 0 && c->gpu_memory_utilization <= 1))
        return ci_errorf(CI_ERR_INVALID, "gpu_memory_utilization %g outside (0, 1]",
                         c->gpu_memory_utilization);
    if (c->num_threads < 0) return ci_errorf(CI_ERR_INVALID, "num_threads must be >= 0");
    if (c->max_graph_batch_size < 0 || c->max_graph_batch_size > 512)
        return ci_errorf(CI_ERR_INVALID, "max_graph_batch_size %d outside [0, 512]",
                         c->max_graph_batch_size);
    if (c->max_graph_context < 0)
        return ci_errorf(CI_ERR_INVALID, "max_graph_context %d must be >= 0", c->max_graph_context);
    if (c->aging_steps < 0) return ci_errorf(CI_ERR_INVALID, "aging_steps must be >= 0");
    if (!c->kv_cache_dtype) c->kv_cache_dtype = d.kv_cache_dtype;
    if (is(c->kv_cache_dtype, "fp8_e5m2"))
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "kv_cache_dtype fp8_e5m2 is not implemented (use fp8 / fp8_e4m3)");
    if (!is(c->kv_cache_dtype, "auto") && !ci_kv_dtype_is_fp8(c->kv_cache_dtype))
        return ci_errorf(CI_ERR_INVALID, "kv_cache_dtype '%s' (use auto, fp8 or fp8_e4m3)",
                         c->kv_cache_dtype);
    if (c->quantization && !is(c->quantization, "none") && !is(c->quantization, "fp8"))
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "quantization '%s' is not supported (none, fp8; quantized checkpoints "
                         "load as published without it)",
                         c->quantization);
    if (c->num_speculative_tokens < 0 || c->num_speculative_tokens > 16)
        return ci_errorf(CI_ERR_INVALID, "num_speculative_tokens %d outside [1, 16] (0: off)",
                         c->num_speculative_tokens);
    if (c->num_speculative_tokens == 0 && (c->speculative_method || c->speculative_model))
        return ci_errorf(CI_ERR_INVALID,
                         "speculative decoding needs num_speculative_tokens in [1, 16]");
    if (c->num_speculative_tokens > 0) {
        if (!c->speculative_method)
            c->speculative_method = c->speculative_model ? "draft" : "ngram";
        if (is(c->speculative_method, "ngram")) {
            if (c->ngram_min == 0) c->ngram_min = 1;
            if (c->ngram_max == 0) c->ngram_max = c->ngram_min > 4 ? c->ngram_min : 4;
            if (c->ngram_min < 1 || c->ngram_max < c->ngram_min || c->ngram_max > 64)
                return ci_errorf(CI_ERR_INVALID,
                                 "ngram sizes: need 1 <= ngram_min (%d) <= ngram_max (%d) <= 64",
                                 c->ngram_min, c->ngram_max);
            if (c->speculative_model)
                return ci_errorf(CI_ERR_INVALID,
                                 "speculative_model is for method draft, not ngram");
        } else if (is(c->speculative_method, "draft")) {
            if (!c->speculative_model)
                return ci_errorf(CI_ERR_INVALID, "speculative method draft needs a "
                                                 "speculative_model directory");
        } else {
            return ci_errorf(CI_ERR_INVALID, "speculative method '%s' (use ngram or draft)",
                             c->speculative_method);
        }
    }
    if (c->speculative_disable_by_batch_size < 0)
        return ci_errorf(CI_ERR_INVALID, "speculative_disable_by_batch_size must be >= 0");
    if (c->tensor_parallel_size == 0) c->tensor_parallel_size = 1;
    if (c->pipeline_parallel_size == 0) c->pipeline_parallel_size = 1;
    if (c->tensor_parallel_size < 1 || c->tensor_parallel_size > 64)
        return ci_errorf(CI_ERR_INVALID, "tensor_parallel_size %d outside [1, 64]",
                         c->tensor_parallel_size);
    if (c->pipeline_parallel_size < 1 || c->pipeline_parallel_size * c->tensor_parallel_size > 64)
        return ci_errorf(
            CI_ERR_INVALID,
            "pipeline_parallel_size %d x tensor_parallel_size %d outside [1, 64] ranks",
            c->pipeline_parallel_size, c->tensor_parallel_size);
    const int ranks = c->tensor_parallel_size * c->pipeline_parallel_size;
    const int devices = ranks > 1 ? ci_backend_device_count(c->device) : -1;
    if (devices >= 0 && devices < ranks)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "tensor_parallel_size %d x pipeline_parallel_size %d needs %d %s devices, "
                         "found %d",
                         c->tensor_parallel_size, c->pipeline_parallel_size, ranks, c->device,
                         devices);
    return ci_ok();
}

const char *cinfer_engine_config_describe(const cinfer_engine_config *c, char *buf, size_t size) {
    char ctx[32] = "model's";
    if (c->max_model_len > 0) snprintf(ctx, sizeof ctx, "%d", c->max_model_len);
    int n = snprintf(buf, size,
                     "device=%s dtype=%s max_model_len=%s block_size=%d "
                     "max_num_batched_tokens=%d max_num_seqs=%d prefix_caching=%s "
                     "kv_cache_dtype=%s",
                     c->device ? c->device : "cpu", c->dtype ? c->dtype : "auto", ctx,
                     c->block_size, c->max_num_batched_tokens, c->max_num_seqs,
                     c->enable_prefix_caching ? "on" : "off",
                     c->kv_cache_dtype ? c->kv_cache_dtype : "auto");
    if (c->tensor_parallel_size > 1 && n > 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, " tensor_parallel_size=%d",
                      c->tensor_parallel_size);
    if (c->pipeline_parallel_size > 1 && n > 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, " pipeline_parallel_size=%d",
                      c->pipeline_parallel_size);
    if (c->device && strcmp(c->device, "cpu") != 0 && n > 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, " gpu_memory_utilization=%.2f cuda_graphs=%s",
                      c->gpu_memory_utilization, c->enforce_eager ? "off (enforce_eager)" : "on");
    if (c->prefill_first && n > 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, " prefill_first=on");
    if (c->async_scheduling && n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, " async_scheduling=%s",
                 c->async_scheduling == 2  ? "plan-ahead"
                 : c->async_scheduling > 0 ? "on"
                                           : "off");
    return buf;
}
