#include "cli/engine_flags.h"

#include <stdio.h>
#include <string.h>

#include "util/progress.h"

ci_engine_flags ci_engine_flags_default(void) {
    ci_engine_flags f = {0};
    f.device = "cpu";
    f.dtype = "auto";
    f.gpu_memory_utilization = 0.90;
    f.block_size = 16;
    f.max_num_batched_tokens = 2048;
    f.max_num_seqs = 256;
    return f;
}

ci_status ci_engine_flags_config(const ci_engine_flags *f, const char *model_dir,
                                 ci_engine_config *c) {
    *c = ci_engine_default_config();
    if (f->block_size < 1 || f->block_size > 1024)
        return ci_errorf(CI_ERR_INVALID, "--block-size must be in [1, 1024] (got %ld)",
                         f->block_size);
    if (f->max_num_batched_tokens < 1 || f->max_num_batched_tokens > (1 << 20))
        return ci_errorf(CI_ERR_INVALID,
                         "--max-num-batched-tokens must be in [1, 1048576] (got %ld)",
                         f->max_num_batched_tokens);
    if (f->max_num_seqs < 1 || f->max_num_seqs > 65536)
        return ci_errorf(CI_ERR_INVALID, "--max-num-seqs must be in [1, 65536] (got %ld)",
                         f->max_num_seqs);
    if (f->kv_cache_tokens < 0) return ci_errorf(CI_ERR_INVALID, "--kv-cache-tokens must be >= 0");
    if (f->kv_cache_memory < 0) return ci_errorf(CI_ERR_INVALID, "--kv-cache-memory must be >= 0");
    if (!(f->gpu_memory_utilization > 0 && f->gpu_memory_utilization <= 1))
        return ci_errorf(CI_ERR_INVALID, "--gpu-memory-utilization must be in (0, 1] (got %g)",
                         f->gpu_memory_utilization);
    if (f->threads < 0) return ci_errorf(CI_ERR_INVALID, "--threads must be >= 0");
    c->model_dir = model_dir;
    c->device = f->device;
    c->dtype = f->dtype;
    c->gpu_memory_utilization = f->gpu_memory_utilization;
    c->enforce_eager = f->enforce_eager;
    c->num_threads = (int)f->threads;
    c->block_size = (int)f->block_size;
    c->max_num_batched_tokens = (int)f->max_num_batched_tokens;
    c->max_num_seqs = (int)f->max_num_seqs;
    c->kv_cache_tokens = f->kv_cache_tokens;
    c->kv_cache_memory = f->kv_cache_memory;
    c->enable_prefix_caching = !f->no_prefix_caching;
    return ci_ok();
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
                "(%.2f GiB, profiled in %.2f s); %d CUDA graphs captured in %.2f s\n",
                cfg.device, m.load_s, m.num_kv_blocks, m.block_size,
                (long long)m.num_kv_blocks * m.block_size, (double)m.kv_cache_bytes / (1 << 30),
                m.profile_s, m.num_graphs, m.capture_s);
    }
    return s;
}
