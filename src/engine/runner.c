/* runner.c — backend + model + KV cache + graphs + the sample op; see
 * runner.h. */
#include "engine/runner.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/block_manager.h"
#include "engine/draft.h"
#include "engine/engine_types.h"
#include "engine/graphs.h"
#include "engine/ranks.h"
#include "util/progress.h"
#include "util/trace.h"

struct ci_runner {
    cinfer_engine_config cfg;
    ci_backend *be;
    ci_model *model;
    ci_kv_cache *kv;
    ci_graphs *graphs;
    ci_draft *draft;     /* speculative decoding's draft model, or NULL */
    ci_ranks *ranks;     /* tensor / pipeline parallelism: the other ranks (NULL without) */
    ci_microbatches mbs; /* ... and this rank's cut of each step */
    int max_model_len;
    ci_fault_fn fault;
    void *fault_user;
    int64_t step;
    int pending;   /* launched steps whose sample op waits for ci_runner_wait (<= 2) */
    int launching; /* inside a launch (its hook may wait for the step before) */
    /* whether the forward just enqueued ran eagerly; the same of the steps
     * in flight, oldest first (their waits' time goes to their kind) */
    int cur_eager, eager_q[2];
    ci_runner_stats st;
};

void ci_runner_destroy(ci_runner *r) {
    if (!r) return;
    while (r->pending)
        (void)ci_runner_wait(r);
    ci_graphs_free(r->graphs); /* before the KV cache and model they use */
    ci_draft_free(r->draft);
    ci_ranks_free(r->ranks); /* its workers first; then the comms our backend used */
    ci_microbatches_free(&r->mbs);
    if (r->kv) ci_kv_cache_destroy(r->be, r->kv);
    ci_model_free(r->model);
    if (r->be) ci_backend_destroy(r->be);
    free(r);
}

/* With several ranks (GPUs), the runner's device current on this thread:
 * the other ranks' backends are made and run from it too. */
static ci_status attach(ci_runner *r) {
    return r->ranks && r->be->ops->thread_attach ? r->be->ops->thread_attach(r->be) : ci_ok();
}

/* forward time dt (launch, wait), the eager steps' share kept apart */
static void add_forward_time(ci_runner *r, int eager, double dt) {
    r->st.time_forward_s += dt;
    if (eager) r->st.time_forward_eager_s += dt;
}

/* The eager steps' GEMM algorithms (backend tune_gemms): one forward of a
 * prompt of each token count 32, 64, .. 512 on the profiling forward's
 * scratch cache, every row's logits, its GEMM plans timed, so that a
 * mixed step of any count up to 512 takes an algorithm timed for its
 * bucket (cuda_gemm.c). b: the profiling batch (one sequence, enough
 * tokens); its counts are restored. */
static ci_status tune_eager_gemms(ci_runner *r, ci_batch *b, ci_kv_cache *kv) {
    if (!r->be->ops->tune_gemms || !r->be->ops->tune_gemms(r->be, 1)) return ci_ok();
    const ci_batch keep = *b;
    const int most = b->num_tokens < 512 ? b->num_tokens : 512;
    const int rows = (int)ci_model_logits(r->model)->rows;
    int32_t *li = malloc(sizeof(int32_t) * (size_t)most), qs[2] = {0, 0}, ctx = 0;
    ci_status s = li ? ci_ok() : ci_errorf(CI_ERR_NOMEM, "runner: out of memory (GEMM tuning)");
    for (int t = 32; t <= most && !s.code; t += 32) {
        const int nl = t < rows ? t : rows;
        for (int i = 0; i < nl; i++)
            li[i] = t - nl + i;
        qs[1] = ctx = t;
        b->num_tokens = b->max_query_len = b->max_context_len = t;
        b->num_logits = nl;
        b->query_start = qs;
        b->context_lens = &ctx;
        b->logits_indices = li;
        s = ci_model_forward(r->model, b, kv, NULL);
    }
    r->be->ops->tune_gemms(r->be, 0);
    *b = keep;
    free(li);
    return s.code && li ? ci_status_wrap(s, "runner: GEMM tuning forwards") : s;
}

/* Device KV budget, as vLLM sizes it: run one forward at the largest step
 * (max_num_batched_tokens prompt tokens) on a scratch cache so every
 * workspace and GEMM plan exists, then give the KV cache what is left of
 * total x gpu_memory_utilization, less a reserve for CUDA graphs. */
static ci_status kv_blocks_from_memory(ci_runner *r, size_t block_bytes, int64_t *blocks) {
    const cinfer_engine_config *c = &r->cfg;
    double t0 = ci_now();
    int T = c->max_num_batched_tokens;
    if (T > r->max_model_len) T = r->max_model_len;
    int V = r->model->cfg.vocab_size;
    int bs = c->block_size, nb = (T + bs - 1) / bs;
    ci_kv_cache *kv = NULL;
    CI_TRY(ci_model_kv_cache_create(r->model, nb, bs, &kv));
    int32_t *a = malloc(sizeof(int32_t) * ((size_t)T * 3 + (size_t)nb + 4));
    ci_status s = a ? ci_ok() : ci_errorf(CI_ERR_NOMEM, "runner: out of memory (profiling)");
    if (!s.code) {
        int32_t *ids = a, *pos = a + T, *slot = a + 2 * (size_t)T, *bt = a + 3 * (size_t)T;
        int32_t *qs = bt + nb, *ctx = qs + 2, *li = ctx + 1;
        for (int i = 0; i < T; i++) {
            ids[i] = i % V;
            pos[i] = i;
            slot[i] = i;
        }
        for (int i = 0; i < nb; i++)
            bt[i] = i;
        qs[0] = 0;
        qs[1] = T;
        ctx[0] = T;
        li[0] = T - 1;
        ci_batch b = {.num_tokens = T,
                      .num_seqs = 1,
                      .num_logits = 1,
                      .max_blocks_per_seq = nb,
                      .max_query_len = T,
                      .max_context_len = T,
                      .token_ids = ids,
                      .positions = pos,
                      .query_start = qs,
                      .context_lens = ctx,
                      .block_tables = bt,
                      .slot_mapping = slot,
                      .logits_indices = li};
        if (r->ranks) { /* every rank at once (collectives), each on a scratch cache */
            s = ci_ranks_begin_profile(r->ranks, &b, nb, bs);
            if (!s.code && r->be->ops->comm_ready) s = r->be->ops->comm_ready(r->be);
            if (!s.code) s = ci_ranks_forward(r->ranks, r->model, kv, &b, &r->mbs);
            s = ci_ranks_end(r->ranks, s);
        } else {
            s = ci_model_forward(r->model, &b, kv, NULL);
            if (!s.code) s = tune_eager_gemms(r, &b, kv);
        }
    }
    free(a);
    ci_kv_cache_destroy(r->be, kv);
    if (s.code) return ci_status_wrap(s, "runner: profiling forward (%d tokens)", T);
    size_t fr = 0, tot = 0;
    CI_TRY(r->be->ops->mem_info(r->be, &fr, &tot));
    if (r->ranks) ci_ranks_min_memory(r->ranks, &fr, &tot); /* the least over the ranks */
    double util = c->gpu_memory_utilization;
    double reserve = c->enforce_eager ? 64.0 * (1 << 20) : 512.0 * (1 << 20);
    double avail = (double)tot * util - (double)(tot - fr) - reserve;
    r->st.profile_s = ci_now() - t0;
    if (avail < (double)block_bytes)
        return ci_errorf(CI_ERR_NOMEM,
                         "runner: no memory left for the KV cache: %.2f GiB used of %.2f GiB, "
                         "gpu_memory_utilization %.2f (raise it, or lower max_num_batched_tokens)",
                         (double)(tot - fr) / (1 << 30), (double)tot / (1 << 30), util);
    *blocks = (int64_t)(avail / (double)block_bytes);
    /* more than every sequence at full length is never used */
    int64_t most = ((int64_t)c->max_num_seqs * r->max_model_len + bs - 1) / bs;
    if (*blocks > most) *blocks = most;
    return ci_ok();
}

static ci_status size_kv(ci_runner *r, int64_t *blocks_out, size_t *block_bytes_out) {
    const cinfer_engine_config *c = &r->cfg;
    const ci_model_config *mc = &r->model->cfg;
    int bs = c->block_size;
    int64_t blocks = 0;
    size_t dsz = ci_dtype_size(r->model->kv_dtype); /* FP8: half the bytes, twice the blocks */
    size_t block_bytes = ci_model_kv_block_bytes(r->model, bs);
    if (r->draft) block_bytes += ci_draft_block_bytes(r->draft, bs); /* its blocks mirror ours */
    if (c->kv_cache_tokens > 0) {
        blocks = (c->kv_cache_tokens + bs - 1) / bs;
    } else if (c->kv_cache_memory <= 0 && r->be->ops->mem_info) {
        CI_TRY(kv_blocks_from_memory(r, block_bytes, &blocks));
    } else {
        size_t budget = c->kv_cache_memory > 0 ? (size_t)c->kv_cache_memory : (size_t)256 << 20;
        blocks = ci_kv_blocks_for_budget(budget, mc->num_layers, mc->num_kv_heads, mc->head_dim,
                                         (int)dsz, bs);
        if (c->kv_cache_memory <= 0) {
            /* default: max_num_seqs x 4k tokens, capped by the 256 MiB budget */
            int64_t want = ((int64_t)c->max_num_seqs * 4096 + bs - 1) / bs;
            if (want < blocks) blocks = want;
        }
    }
    if (blocks < 1) return ci_errorf(CI_ERR_INVALID, "runner: the KV cache budget holds no block");
    if (blocks > (1 << 30)) blocks = 1 << 30;
    *blocks_out = blocks;
    *block_bytes_out = block_bytes;
    return ci_ok();
}

/* CUDA graphs of decode steps at batch sizes 1, 2, 4, 8, 16, 24, ... up to
 * max_graph_batch_size (default max_num_seqs, at most 512; larger batches
 * run eagerly). */
/* The draft's K/V follows every computed token: its forward is enqueued
 * right after the target's on the same device batch (recorded into the
 * decode graphs too), so it costs no upload, no sync and, in a graph, no
 * launches. */
static ci_status mirror(void *user, const ci_batch *dev, int T) {
    ci_runner *r = user;
    return ci_draft_mirror_enqueue(r->draft, dev, T);
}

static ci_status capture_graphs(ci_runner *r) {
    const cinfer_engine_config *c = &r->cfg;
    int sizes[CI_GRAPH_MAX_SIZES], n = 0;
    int top = c->max_graph_batch_size > 0 ? c->max_graph_batch_size : c->max_num_seqs;
    if (top > c->max_num_seqs) top = c->max_num_seqs;
    if (top > c->max_num_batched_tokens) top = c->max_num_batched_tokens;
    if (top > 512) top = 512;
    for (int b = 1; b <= 8 && b <= top; b *= 2)
        sizes[n++] = b;
    for (int b = 16; b <= top && n < CI_GRAPH_MAX_SIZES; b += 8)
        sizes[n++] = b;
    if (sizes[n - 1] < top && n < CI_GRAPH_MAX_SIZES) sizes[n++] = top;
    int first = c->max_graph_context > 0 ? c->max_graph_context : 8192;
    int64_t cap = (int64_t)r->st.num_kv_blocks * c->block_size;
    int most = cap < r->max_model_len ? (int)cap : r->max_model_len;
    double t0 = ci_now();
    CI_TRY(ci_graphs_create(r->model, r->kv, sizes, n, first, most, r->draft ? mirror : NULL, r,
                            &r->graphs));
    r->st.capture_s = ci_now() - t0;
    return ci_ok();
}

static ci_status act_dtype_of(const char *dtype, int *out) {
    if (!dtype || !strcmp(dtype, "auto"))
        *out = CI_ACT_DEFAULT;
    else if (!strcmp(dtype, "bfloat16") || !strcmp(dtype, "bf16"))
        *out = CI_ACT_BF16;
    else if (!strcmp(dtype, "float32") || !strcmp(dtype, "f32"))
        *out = CI_ACT_F32;
    else
        return ci_errorf(CI_ERR_UNSUPPORTED, "dtype '%s' (use auto, bfloat16 or float32)", dtype);
    return ci_ok();
}

int ci_runner_max_logits_rows(const cinfer_engine_config *cfg) {
    const int64_t budget = cfg->max_num_batched_tokens;
    const int k = cfg->num_speculative_tokens > 0 ? cfg->num_speculative_tokens : 0;
    const int64_t rows = (int64_t)cfg->max_num_seqs * (1 + k) + budget / 4;
    return (int)(rows < budget ? rows : budget);
}

ci_status ci_runner_create(const cinfer_engine_config *cfg, ci_runner **out) {
    *out = NULL;
    ci_runner *r = calloc(1, sizeof *r);
    if (!r) return ci_errorf(CI_ERR_NOMEM, "runner: out of memory");
    r->cfg = *cfg;
    /* tensor / pipeline parallelism: this runner is the last stage's
     * tensor rank 0 of tp x pp ranks, the CPU threads shared out among them */
    const int tp = cfg->tensor_parallel_size > 1 ? cfg->tensor_parallel_size : 1;
    const int pp = cfg->pipeline_parallel_size > 1 ? cfg->pipeline_parallel_size : 1;
    ci_backend_options bo = {.num_threads = cfg->num_threads};
    if (tp * pp > 1) {
        long cores = cfg->num_threads > 0 ? cfg->num_threads : sysconf(_SC_NPROCESSORS_ONLN);
        bo.num_threads = cores / (tp * pp) > 0 ? (int)(cores / (tp * pp)) : 1;
    }
    ci_status s = act_dtype_of(cfg->dtype, &bo.act_dtype);
    double t_load = ci_now();
    if (!s.code && tp * pp > 1) s = ci_ranks_create(tp, pp, &r->ranks);
    /* on GPUs, world rank w runs on device w: the runner on its own */
    if (r->ranks) bo.device_id = ci_ranks_runner_rank(r->ranks);
    if (!s.code) s = ci_backend_create(cfg->device, &bo, &r->be);
    if (!s.code && r->ranks) ci_ranks_bind(r->ranks, r->be);
    ci_model_options mo = {.max_batch_tokens = cfg->max_num_batched_tokens,
                           .max_logits = ci_runner_max_logits_rows(cfg),
                           .progress = cfg->progress,
                           .progress_user = cfg->progress_user,
                           .online_fp8 = cfg->quantization && !strcmp(cfg->quantization, "fp8"),
                           .kv_fp8 = ci_kv_dtype_is_fp8(cfg->kv_cache_dtype)};
    /* plan-ahead scheduling: a mark this many layers before each forward's
     * end, which a server's loop waits for before it takes new requests
     * (CINFER_AHEAD_READY=k; off until measured on a GPU) */
    const char *rd = getenv("CINFER_AHEAD_READY");
    if (cfg->async_scheduling == 2 && rd && atoi(rd) > 0) mo.ready_layers = atoi(rd);
    if (r->ranks) ci_ranks_runner_options(r->ranks, &mo);
    if (!s.code) s = ci_model_load(cfg->model_dir, r->be, &mo, &r->model);
    if (s.code) goto fail;
    r->st.load_s = ci_now() - t_load;
    int ctx = r->model->cfg.max_position_embeddings;
    if (r->model->rope.max_positions < ctx) ctx = r->model->rope.max_positions;
    if (cfg->max_model_len > ctx) {
        s = ci_errorf(CI_ERR_INVALID,
                      "max_model_len %d exceeds the model's context of %d tokens "
                      "(max_position_embeddings %d)",
                      cfg->max_model_len, ctx, r->model->cfg.max_position_embeddings);
        goto fail;
    }
    r->max_model_len = cfg->max_model_len > 0 ? cfg->max_model_len : ctx;
    if (cfg->num_speculative_tokens > 0 && cfg->speculative_model) {
        int mb = (r->max_model_len + cfg->block_size - 1) / cfg->block_size;
        s = ci_draft_load(r->be, cfg->speculative_model, cfg->model_dir, r->model, r->max_model_len,
                          cfg->max_num_batched_tokens, cfg->max_num_seqs, mb, mo.kv_fp8, &r->draft);
        if (s.code) goto fail;
    }
    /* the other ranks load before the cache is sized: on devices every
     * rank runs the profiling step, and the least memory left decides */
    if (r->ranks) {
        s = ci_ranks_load(r->ranks, cfg->model_dir, cfg->device, &bo, &mo);
        if (!s.code) s = attach(r);
        if (s.code) goto fail;
    }
    int64_t blocks = 0;
    size_t block_bytes = 0;
    s = size_kv(r, &blocks, &block_bytes);
    if (!s.code) s = ci_model_kv_cache_create(r->model, (int)blocks, cfg->block_size, &r->kv);
    if (!s.code && r->draft) s = ci_draft_kv_create(r->draft, (int)blocks, cfg->block_size);
    /* the other ranks: the same KV blocks (the scheduler's tables serve all) */
    if (!s.code && r->ranks) s = ci_ranks_kv_create(r->ranks, (int)blocks, cfg->block_size);
    if (!s.code) s = attach(r);
    if (s.code) goto fail;
    r->st.num_kv_blocks = (int)blocks;
    r->st.kv_cache_bytes = (int64_t)blocks * (int64_t)block_bytes;
    if (!r->be->ops->sample) {
        s = ci_errorf(CI_ERR_UNSUPPORTED, "runner: backend %s has no sample op", r->be->name);
        goto fail;
    }
    /* graphs hold one rank's kernels; with several ranks (GPUs: NCCL
     * collectives between them) every rank runs eagerly for now */
    if (!cfg->enforce_eager && r->be->ops->graph_capture_begin && !r->ranks) {
        s = capture_graphs(r);
        if (s.code) goto fail;
    }
    *out = r;
    return ci_ok();
fail:
    ci_runner_destroy(r);
    return s;
}

void ci_runner_set_fault_hook(ci_runner *r, ci_fault_fn fn, void *user) {
    r->fault = fn;
    r->fault_user = user;
}

void ci_runner_set_step(ci_runner *r, int64_t step) {
    r->step = step;
}

/* Enqueues the forward; the host work of st->before_sample overlaps it.
 * With `async` the device is left running (the sample op follows on the
 * same stream), else the stream is synced here. */
static ci_status forward(ci_runner *r, const ci_batch *b, ci_runner_step *st, int async) {
    ci_backend *be = r->be;
    CI_TRY(ci_model_check_batch(r->model, b, r->kv));
    if (b->sample_src && (!be->ops->take_samples || r->ranks))
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "runner: ids from the last sample op need one rank of a backend with "
                         "take_samples");
    int ran = 0;
    CI_TRY(ci_graphs_run(r->graphs, b, &ran));
    r->cur_eager = !ran;
    if (ran) {
        r->st.graph_steps++; /* the graph holds the draft's mirror too */
    } else if (r->ranks) {   /* its share of the step, in micro-batches with pipeline stages */
        CI_TRY(ci_ranks_forward(r->ranks, r->model, r->kv, b, &r->mbs));
        /* the draft (whole, on this rank only) follows the step's tokens:
         * the batch whole again (the ranks' forward left the last
         * micro-batch in dev_batch) */
        if (r->draft) {
            CI_TRY(be->ops->prepare_batch(be, b, &r->model->dev_batch));
            CI_TRY(mirror(r, &r->model->dev_batch, b->num_tokens));
        }
        r->st.eager_steps++;
    } else {
        CI_TRY(be->ops->prepare_batch(be, b, &r->model->dev_batch));
        /* plan-ahead scheduling: ids the step before this one draws */
        if (b->sample_src) CI_TRY(be->ops->take_samples(be, &r->model->dev_batch));
        CI_TRY(
            ci_model_enqueue(r->model, &r->model->dev_batch, b->num_tokens, b->num_logits, r->kv));
        if (r->draft) CI_TRY(mirror(r, &r->model->dev_batch, b->num_tokens));
        r->st.eager_steps++;
    }
    if (st->before_sample) { /* host work overlapping the device's forward */
        double t0 = ci_now();
        ci_status hs = st->before_sample(st->before_sample_user, st);
        if (!hs.code && st->num_masks > 0 && be->ops->stage_masks)
            hs = be->ops->stage_masks(be, st->masks, st->num_masks,
                                      ci_mask_words(ci_model_logits(r->model)->cols));
        r->st.time_host_overlap_s += ci_now() - t0;
        if (hs.code) {
            (void)be->ops->sync(be); /* leave nothing in flight */
            return hs;
        }
    }
    return async ? ci_ok() : be->ops->sync(be);
}

/* Rank 0's part of a step: block copies, the fault hook's forward site
 * (before anything runs when other ranks run too), then the forward. */
static ci_status copies_and_forward(ci_runner *r, ci_runner_step *st, int async) {
    ci_backend *be = r->be;
    if (st->num_copies > 0) {
        if (!be->ops->copy_blocks)
            return ci_errorf(CI_ERR_UNSUPPORTED, "runner: backend %s has no copy_blocks", be->name);
        CI_TRY(be->ops->copy_blocks(be, r->kv, st->copy_src, st->copy_dst, st->num_copies));
        if (r->draft)
            CI_TRY(ci_draft_copy_blocks(r->draft, st->copy_src, st->copy_dst, st->num_copies));
    }
    if (r->fault && !r->ranks) CI_TRY(r->fault(r->fault_user, CI_FAULT_FORWARD, r->step, -1, -1));
    CI_TRACE_PUSH("forward");
    ci_status fs = forward(r, st->batch, st, async);
    CI_TRACE_POP();
    return fs;
}

static ci_status launch(ci_runner *r, ci_runner_step *st, ci_sample_result *results) {
    ci_backend *be = r->be;
    double t0 = ci_now();
    /* several ranks (GPUs): the runner's device may not be the calling
     * thread's (a server's engine thread) */
    CI_TRY(attach(r));
    /* the device runs on past this call when the backend samples
     * asynchronously and no other rank takes part (their collectives sync) */
    const int async = be->ops->sample_async && be->ops->sample_wait && !r->ranks;
    /* tensor / pipeline parallelism: every rank runs the step's copies and
     * forward at once; the step fails as a whole when any rank does */
    if (r->ranks) {
        if (r->fault) {
            CI_TRY(r->fault(r->fault_user, CI_FAULT_FORWARD, r->step, -1, -1));
            for (int w = 0; w < ci_ranks_count(r->ranks); w++)
                if (w != ci_ranks_runner_rank(r->ranks))
                    ci_ranks_inject(r->ranks, w,
                                    r->fault(r->fault_user, CI_FAULT_RANK, r->step, w, -1));
        }
        CI_TRY(ci_ranks_begin(r->ranks, st->batch, st->copy_src, st->copy_dst, st->num_copies));
    }
    /* the ranks' device groups first (made by every rank at once) */
    ci_status fs = r->ranks && be->ops->comm_ready ? be->ops->comm_ready(be) : ci_ok();
    if (!fs.code) fs = copies_and_forward(r, st, async);
    if (r->ranks) fs = ci_ranks_end(r->ranks, fs);
    CI_TRY(fs);
    double t1 = ci_now();
    add_forward_time(r, r->cur_eager, t1 - t0);
    if (st->num_rows > 0) {
        if (r->fault) CI_TRY(r->fault(r->fault_user, CI_FAULT_SAMPLE, r->step, -1, -1));
        CI_TRACE_PUSH("sample");
        ci_status ss =
            async ? be->ops->sample_async(be, ci_model_logits(r->model), st->rows, st->num_rows,
                                          st->adj, st->num_adj, st->masks, st->num_masks, results)
                  : be->ops->sample(be, ci_model_logits(r->model), st->rows, st->num_rows, st->adj,
                                    st->num_adj, st->masks, st->num_masks, results);
        CI_TRACE_POP();
        CI_TRY(ss);
    }
    r->st.time_sample_s += ci_now() - t1;
    if (async) r->eager_q[r->pending++] = r->cur_eager;
    return ci_ok();
}

ci_status ci_runner_launch(ci_runner *r, ci_runner_step *st, ci_sample_result *results) {
    /* plan-ahead scheduling keeps two steps in flight, where the backend
     * can read one's sampled ids into the next (take_samples) */
    const int most = r->be->ops->take_samples ? 2 : 1;
    if (r->pending >= most)
        return ci_errorf(CI_ERR_INTERNAL, "runner: %d steps are still in flight", r->pending);
    r->launching = 1;
    ci_status s = launch(r, st, results);
    r->launching = 0;
    if (s.code && r->be->ops->sample_async && !r->ranks)
        (void)r->be->ops->sync(r->be); /* nothing of it left running; an
                                          earlier step still waits for its wait */
    return s;
}

ci_status ci_runner_wait_ready(ci_runner *r) {
    if (r->pending != 1 || !r->be->ops->wait_ready || r->model->ready_layer < 0) return ci_ok();
    double t0 = ci_now();
    CI_TRACE_PUSH("wait ready");
    ci_status s = r->be->ops->wait_ready(r->be);
    CI_TRACE_POP();
    add_forward_time(r, r->eager_q[0], ci_now() - t0);
    return s;
}

int ci_runner_can_plan_ahead(const ci_runner *r) {
    return r->be->ops->take_samples && !r->ranks && !r->draft;
}

ci_status ci_runner_wait(ci_runner *r) {
    if (!r->pending) return ci_ok();
    const int eager = r->eager_q[0];
    r->eager_q[0] = r->eager_q[1];
    r->pending--;
    double t0 = ci_now();
    CI_TRACE_PUSH("wait");
    ci_status s = r->be->ops->sample_wait(r->be);
    CI_TRACE_POP();
    if (!r->launching) add_forward_time(r, eager, ci_now() - t0); /* else the launch's has it */
    return s;
}

ci_status ci_runner_logits_to_host(ci_runner *r, int row0, int n, float *dst) {
    const ci_tensor *lg = ci_model_logits(r->model);
    size_t V = (size_t)r->model->cfg.vocab_size;
    if (row0 < 0 || n < 0 || row0 + n > lg->rows)
        return ci_errorf(CI_ERR_INVALID, "runner: logits rows [%d, %d) outside [0, %lld)", row0,
                         row0 + n, (long long)lg->rows);
    return r->be->ops->to_host(r->be, dst, (const float *)lg->data + (size_t)row0 * V,
                               sizeof(float) * V * (size_t)n);
}

int ci_runner_has_draft(const ci_runner *r) {
    return r->draft != NULL;
}

ci_status ci_runner_propose(ci_runner *r, const ci_draft_seq *seqs, int n, int32_t *out) {
    if (!r->draft) return ci_errorf(CI_ERR_INVALID, "runner: no draft model");
    double t0 = ci_now();
    CI_TRACE_PUSH("draft propose");
    ci_status s = ci_draft_propose(r->draft, seqs, n, out);
    CI_TRACE_POP();
    r->st.time_draft_s += ci_now() - t0;
    return s;
}

ci_model *ci_runner_model(ci_runner *r) {
    return r->model;
}
int ci_runner_max_model_len(const ci_runner *r) {
    return r->max_model_len;
}
int ci_runner_num_graphs(const ci_runner *r) {
    return ci_graphs_count(r->graphs);
}
ci_runner_stats ci_runner_get_stats(const ci_runner *r) {
    return r->st;
}
