/* engine.c — the engine loop: schedule, copy, batch, forward, sample,
 * update, detokenize, stop. See engine.h and docs/engine.md. */
#include "engine/engine.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/batch.h"
#include "engine/sampling.h"
#include "util/progress.h"

_Static_assert(CI_MAX_LOGPROBS <= CI_SAMPLE_MAX_TOP, "the sample op returns CI_SAMPLE_MAX_TOP");

/* ---- per-request state ---- */

typedef struct eng_sample {
    ci_detok_stream *detok;
    char *text; /* output text so far (stop string cut off) */
    size_t len, cap;
    size_t emitted;           /* bytes already returned */
    int done;                 /* finish reported */
    ci_engine_logprob cur_lp; /* logprob of this step's token */
} eng_sample;

typedef struct eng_request {
    int64_t id;
    ci_engine_sampling sp;
    uint64_t seed;
    int32_t *stop_ids; /* stop_token_ids (EOS is checked separately) */
    char **stop;
    size_t *stop_len;
    size_t max_stop_len;
    int n, samples_done;
    eng_sample *samples;
    ci_engine_logprob *plp; /* prompt logprobs, positions 1..num_prompt-1 */
    int num_plp, plp_reported, num_prompt, retired;
    int forked;                        /* the first token was sampled: samples 1..n-1 exist */
    struct eng_request *next;          /* dead list */
    struct eng_request *lprev, *lnext; /* live list */
} eng_request;

struct ci_engine {
    ci_engine_config cfg;
    ci_backend *be;
    ci_model *model;
    ci_tokenizer *tok;
    ci_kv_cache *kv;
    ci_scheduler *sched;
    ci_batch_builder bb;
    int V, max_model_len;
    int32_t eos_ids[16];
    int num_eos;
    float *plp_logits; /* [plp_rows][V] host copies of prompt-logprob rows, grown on need */
    int plp_rows;
    float *lsm;      /* [V] log-softmax of a prompt-logprob row */
    uint32_t *stamp; /* [V] token seen in the current adjustment list (== stamp_gen) */
    int32_t *slot;   /* [V] its entry there */
    uint32_t stamp_gen;
    /* the sample op's host arrays, grown only */
    ci_sample_row *srows;
    ci_sample_result *sres;
    int srows_cap;
    ci_logit_adjust *adj;
    int adj_cap, num_adj;
    int32_t *copy_src, *copy_dst;
    int copy_cap;
    int32_t *sampled;
    int sampled_cap;
    ci_engine_output *outs;
    int32_t *out_tokens;
    ci_engine_logprob **out_lp; /* pointer per output */
    int outs_cap, num_outs;
    eng_request *dead, *live;
    int num_live_requests;
    ci_engine_metrics m;
};

ci_engine_config ci_engine_default_config(void) {
    ci_engine_config c;
    memset(&c, 0, sizeof c);
    c.device = "cpu";
    c.block_size = 16;
    c.max_num_batched_tokens = 2048;
    c.max_num_seqs = 256;
    c.enable_prefix_caching = 1;
    c.aging_steps = 100;
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

static void add_eos(ci_engine *e, int64_t id) {
    if (id < 0 || id >= e->V || e->num_eos >= (int)(sizeof e->eos_ids / sizeof e->eos_ids[0]))
        return;
    for (int i = 0; i < e->num_eos; i++)
        if (e->eos_ids[i] == id) return;
    e->eos_ids[e->num_eos++] = (int32_t)id;
}

static void load_generation_config_eos(ci_engine *e, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    json_t *g = json_load_file(path, 0, NULL);
    json_t *v = json_object_get(g, "eos_token_id");
    if (json_is_integer(v)) add_eos(e, json_integer_value(v));
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (json_is_integer(x)) add_eos(e, json_integer_value(x));
    }
    json_decref(g);
}

static void free_request(eng_request *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) {
        ci_detok_stream_free(r->samples[i].detok);
        free(r->samples[i].text);
    }
    free(r->samples);
    for (int i = 0; i < r->sp.num_stop; i++)
        free(r->stop[i]);
    free(r->stop);
    free(r->stop_len);
    free(r->stop_ids);
    free(r->plp);
    free(r);
}

static void free_dead(ci_engine *e) {
    while (e->dead) {
        eng_request *r = e->dead;
        e->dead = r->next;
        free_request(r);
    }
}

void ci_engine_destroy(ci_engine *e) {
    if (!e) return;
    free_dead(e);
    while (e->live) {
        eng_request *r = e->live;
        e->live = r->lnext;
        free_request(r);
    }
    if (e->sched) ci_sched_destroy(e->sched);
    ci_batch_builder_free(&e->bb);
    if (e->kv) ci_kv_cache_destroy(e->be, e->kv);
    ci_model_free(e->model);
    ci_tokenizer_free(e->tok);
    if (e->be) ci_backend_destroy(e->be);
    free(e->plp_logits);
    free(e->lsm);
    free(e->stamp);
    free(e->slot);
    free(e->srows);
    free(e->sres);
    free(e->adj);
    free(e->copy_src);
    free(e->copy_dst);
    free(e->sampled);
    free(e->outs);
    free(e->out_tokens);
    free(e->out_lp);
    free(e);
}

/* Device KV budget, as vLLM sizes it: run one forward at the largest step
 * (max_num_batched_tokens prompt tokens) on a scratch cache so every
 * workspace and GEMM plan exists, then give the KV cache what is left of
 * total x gpu_memory_utilization, less a reserve for CUDA graphs. */
static ci_status kv_blocks_from_memory(ci_engine *e, size_t block_bytes, int64_t *blocks) {
    const ci_engine_config *c = &e->cfg;
    double t0 = ci_now();
    int T = c->max_num_batched_tokens;
    if (T > e->max_model_len) T = e->max_model_len;
    int bs = c->block_size, nb = (T + bs - 1) / bs;
    ci_kv_cache *kv = NULL;
    CI_TRY(ci_model_kv_cache_create(e->model, nb, bs, &kv));
    int32_t *a = malloc(sizeof(int32_t) * ((size_t)T * 3 + (size_t)nb + 4));
    ci_status s = a ? ci_ok() : ci_errorf(CI_ERR_NOMEM, "engine: out of memory (profiling)");
    if (!s.code) {
        int32_t *ids = a, *pos = a + T, *slot = a + 2 * (size_t)T, *bt = a + 3 * (size_t)T;
        int32_t *qs = bt + nb, *ctx = qs + 2, *li = ctx + 1;
        for (int i = 0; i < T; i++) {
            ids[i] = i % e->V;
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
        s = ci_model_forward(e->model, &b, kv, NULL);
    }
    free(a);
    ci_kv_cache_destroy(e->be, kv);
    if (s.code) return ci_status_wrap(s, "engine: profiling forward (%d tokens)", T);
    size_t fr = 0, tot = 0;
    CI_TRY(e->be->ops->mem_info(e->be, &fr, &tot));
    double util = c->gpu_memory_utilization > 0 ? c->gpu_memory_utilization : 0.90;
    double reserve = c->enforce_eager ? 64.0 * (1 << 20) : 512.0 * (1 << 20);
    double avail = (double)tot * util - (double)(tot - fr) - reserve;
    e->m.profile_s = ci_now() - t0;
    if (avail < (double)block_bytes)
        return ci_errorf(CI_ERR_NOMEM,
                         "engine: no memory left for the KV cache: %.2f GiB used of %.2f GiB, "
                         "gpu_memory_utilization %.2f (raise it, or lower max_num_batched_tokens)",
                         (double)(tot - fr) / (1 << 30), (double)tot / (1 << 30), util);
    *blocks = (int64_t)(avail / (double)block_bytes);
    /* more than every sequence at full length is never used */
    int64_t most = ((int64_t)c->max_num_seqs * e->max_model_len + bs - 1) / bs;
    if (*blocks > most) *blocks = most;
    return ci_ok();
}

/* CUDA graphs of decode steps at batch sizes 1, 2, 4, 8, 16, 24, ... up to
 * max_num_seqs (at most 512; larger batches run eagerly). */
static ci_status capture_graphs(ci_engine *e) {
    int sizes[CI_MODEL_MAX_GRAPHS], n = 0;
    int top = e->cfg.max_num_seqs;
    if (top > e->cfg.max_num_batched_tokens) top = e->cfg.max_num_batched_tokens;
    if (top > 512) top = 512;
    for (int b = 1; b <= 8 && b <= top; b *= 2)
        sizes[n++] = b;
    for (int b = 16; b <= top && n < CI_MODEL_MAX_GRAPHS; b += 8)
        sizes[n++] = b;
    if (sizes[n - 1] < top && n < CI_MODEL_MAX_GRAPHS) sizes[n++] = top;
    int ctx = e->cfg.max_graph_context > 0 ? e->cfg.max_graph_context : 8192;
    if (ctx > e->max_model_len) ctx = e->max_model_len;
    double t0 = ci_now();
    CI_TRY(ci_model_capture_graphs(e->model, e->kv, sizes, n, ctx));
    e->m.capture_s = ci_now() - t0;
    e->m.num_graphs = n;
    return ci_ok();
}

ci_status ci_engine_create(const ci_engine_config *cfg_in, ci_engine **out) {
    *out = NULL;
    ci_engine_config cfg = cfg_in ? *cfg_in : ci_engine_default_config();
    if (!cfg.model_dir) return ci_errorf(CI_ERR_INVALID, "engine: no model directory");
    if (!cfg.device) cfg.device = "cpu";
    if (cfg.block_size < 1 || cfg.block_size > 1024)
        return ci_errorf(CI_ERR_INVALID, "engine: block size %d outside [1, 1024]", cfg.block_size);
    if (cfg.max_num_batched_tokens < 1)
        return ci_errorf(CI_ERR_INVALID, "engine: max_num_batched_tokens %d < 1",
                         cfg.max_num_batched_tokens);
    if (cfg.max_num_seqs < 1)
        return ci_errorf(CI_ERR_INVALID, "engine: max_num_seqs %d < 1", cfg.max_num_seqs);
    if (cfg.kv_cache_tokens < 0 || cfg.kv_cache_memory < 0)
        return ci_errorf(CI_ERR_INVALID, "engine: negative KV cache size");
    ci_engine *e = calloc(1, sizeof *e);
    if (!e) return ci_errorf(CI_ERR_NOMEM, "engine: out of memory");
    e->cfg = cfg;
    ci_status s;
    ci_backend_options bo = {.num_threads = cfg.num_threads};
    if (!cfg.dtype || !strcmp(cfg.dtype, "auto")) {
        bo.act_dtype = CI_ACT_DEFAULT;
    } else if (!strcmp(cfg.dtype, "bfloat16") || !strcmp(cfg.dtype, "bf16")) {
        bo.act_dtype = CI_ACT_BF16;
    } else if (!strcmp(cfg.dtype, "float32") || !strcmp(cfg.dtype, "f32")) {
        bo.act_dtype = CI_ACT_F32;
    } else {
        s = ci_errorf(CI_ERR_UNSUPPORTED, "engine: dtype '%s' (use auto, bfloat16 or float32)",
                      cfg.dtype);
        goto fail;
    }
    if (cfg.gpu_memory_utilization < 0 || cfg.gpu_memory_utilization > 1) {
        s = ci_errorf(CI_ERR_INVALID, "engine: gpu_memory_utilization %g outside (0, 1]",
                      cfg.gpu_memory_utilization);
        goto fail;
    }
    double t_load = ci_now();
    s = ci_backend_create(cfg.device, &bo, &e->be);
    if (s.code) goto fail;
    {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/tokenizer.json", cfg.model_dir);
        if (stat(path, &st) == 0) {
            s = ci_tokenizer_load(cfg.model_dir, &e->tok);
            if (s.code) goto fail;
        }
    }
    ci_model_options mo = {.max_batch_tokens = cfg.max_num_batched_tokens,
                           .max_logits = cfg.max_num_batched_tokens,
                           .progress = cfg.progress,
                           .progress_user = cfg.progress_user};
    s = ci_model_load(cfg.model_dir, e->be, &mo, &e->model);
    if (s.code) goto fail;
    e->m.load_s = ci_now() - t_load;
    e->V = e->model->cfg.vocab_size;
    e->max_model_len = e->model->cfg.max_position_embeddings;
    if (e->model->rope.max_positions < e->max_model_len)
        e->max_model_len = e->model->rope.max_positions;
    for (int i = 0; i < e->model->cfg.num_eos_token_ids; i++)
        add_eos(e, e->model->cfg.eos_token_ids[i]);
    load_generation_config_eos(e, cfg.model_dir);
    if (e->tok) add_eos(e, ci_tokenizer_eos_id(e->tok));

    /* KV cache size */
    const ci_model_config *mc = &e->model->cfg;
    int bs = cfg.block_size;
    int64_t blocks = 0;
    size_t dsz = ci_dtype_size(e->be->act_dtype);
    size_t block_bytes = (size_t)2 * (size_t)mc->num_layers * (size_t)mc->num_kv_heads *
                         (size_t)bs * (size_t)mc->head_dim * dsz;
    if (cfg.kv_cache_tokens > 0) {
        blocks = (cfg.kv_cache_tokens + bs - 1) / bs;
    } else if (cfg.kv_cache_memory <= 0 && e->be->ops->mem_info) {
        s = kv_blocks_from_memory(e, block_bytes, &blocks);
        if (s.code) goto fail;
    } else {
        size_t budget = cfg.kv_cache_memory > 0 ? (size_t)cfg.kv_cache_memory : (size_t)256 << 20;
        blocks = ci_kv_blocks_for_budget(budget, mc->num_layers, mc->num_kv_heads, mc->head_dim,
                                         (int)dsz, bs);
        if (cfg.kv_cache_memory <= 0) {
            /* default: max_num_seqs x 4k tokens, capped by the 256 MiB budget */
            int64_t want = ((int64_t)cfg.max_num_seqs * 4096 + bs - 1) / bs;
            if (want < blocks) blocks = want;
        }
    }
    if (blocks < 1) {
        s = ci_errorf(CI_ERR_INVALID, "engine: the KV cache budget holds no block");
        goto fail;
    }
    if (blocks > (1 << 30)) blocks = 1 << 30;
    s = ci_model_kv_cache_create(e->model, (int)blocks, bs, &e->kv);
    if (s.code) goto fail;
    e->m.kv_cache_bytes = (int64_t)blocks * (int64_t)block_bytes;
    if (!cfg.enforce_eager && e->be->ops->graph_capture_begin) {
        s = capture_graphs(e);
        if (s.code) goto fail;
    }

    ci_sched_config sc = ci_sched_default_config();
    sc.max_num_batched_tokens = cfg.max_num_batched_tokens;
    sc.max_num_seqs = cfg.max_num_seqs;
    sc.max_model_len = e->max_model_len;
    sc.aging_steps = cfg.aging_steps;
    sc.block.num_blocks = (int)blocks;
    sc.block.block_size = bs;
    sc.block.enable_prefix_caching = cfg.enable_prefix_caching;
    s = ci_sched_create(&sc, &e->sched);
    if (s.code) goto fail;
    s = ci_batch_builder_init_for(&e->bb, e->sched);
    if (s.code) goto fail;
    size_t V = (size_t)e->V;
    e->lsm = malloc(sizeof(float) * V);
    e->stamp = calloc(V, sizeof(uint32_t));
    e->slot = calloc(V, sizeof(int32_t));
    if (!e->lsm || !e->stamp || !e->slot) {
        s = ci_errorf(CI_ERR_NOMEM, "engine: out of memory (vocabulary scratch)");
        goto fail;
    }
    if (!e->be->ops->sample) {
        s = ci_errorf(CI_ERR_UNSUPPORTED, "engine: backend %s has no sample op", e->be->name);
        goto fail;
    }
    e->m.num_kv_blocks = (int)blocks;
    e->m.block_size = bs;
    *out = e;
    return ci_ok();
fail:
    ci_engine_destroy(e);
    return s;
}

ci_model *ci_engine_model(ci_engine *e) {
    return e->model;
}
ci_tokenizer *ci_engine_tokenizer(ci_engine *e) {
    return e->tok;
}
ci_scheduler *ci_engine_scheduler(ci_engine *e) {
    return e->sched;
}
int ci_engine_vocab_size(const ci_engine *e) {
    return e->V;
}
int ci_engine_max_model_len(const ci_engine *e) {
    return e->max_model_len;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* ---- add / abort ---- */

static ci_status validate(const ci_engine *e, const int32_t *prompt, int np,
                          const ci_engine_sampling *p) {
    if (np < 1 || !prompt) return ci_errorf(CI_ERR_INVALID, "request: empty prompt");
    for (int i = 0; i < np; i++)
        if (prompt[i] < 0 || prompt[i] >= e->V)
            return ci_errorf(CI_ERR_INVALID,
                             "request: prompt token %d = %d outside the vocabulary [0, %d)", i,
                             prompt[i], e->V);
    if (p->max_tokens < 1)
        return ci_errorf(CI_ERR_INVALID, "request: max_tokens must be >= 1 (got %d)",
                         p->max_tokens);
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return ci_errorf(CI_ERR_INVALID, "request: temperature must be >= 0 (got %g)",
                         (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ci_errorf(CI_ERR_INVALID, "request: top_p must be in (0, 1] (got %g)",
                         (double)p->top_p);
    if (p->top_k < -1)
        return ci_errorf(CI_ERR_INVALID, "request: top_k must be >= -1 (got %d)", p->top_k);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return ci_errorf(CI_ERR_INVALID, "request: min_p must be in [0, 1] (got %g)",
                         (double)p->min_p);
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        return ci_errorf(CI_ERR_INVALID, "request: repetition_penalty must be > 0 (got %g)",
                         (double)p->repetition_penalty);
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
        return ci_errorf(CI_ERR_INVALID, "request: presence_penalty must be in [-2, 2] (got %g)",
                         (double)p->presence_penalty);
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
        return ci_errorf(CI_ERR_INVALID, "request: frequency_penalty must be in [-2, 2] (got %g)",
                         (double)p->frequency_penalty);
    if (p->min_tokens < 0 || p->min_tokens > p->max_tokens)
        return ci_errorf(CI_ERR_INVALID, "request: min_tokens must be in [0, max_tokens] (got %d)",
                         p->min_tokens);
    if (p->n < 1 || p->n > e->cfg.max_num_seqs)
        return ci_errorf(CI_ERR_INVALID, "request: n must be in [1, max_num_seqs %d] (got %d)",
                         e->cfg.max_num_seqs, p->n);
    if (p->logprobs > CI_MAX_LOGPROBS || p->prompt_logprobs > CI_MAX_LOGPROBS)
        return ci_errorf(CI_ERR_INVALID, "request: at most %d logprobs", CI_MAX_LOGPROBS);
    if (p->num_stop < 0 || p->num_stop_token_ids < 0 || (p->num_stop && !p->stop) ||
        (p->num_stop_token_ids && !p->stop_token_ids))
        return ci_errorf(CI_ERR_INVALID, "request: bad stop lists");
    for (int i = 0; i < p->num_stop; i++)
        if (!p->stop[i] || !p->stop[i][0])
            return ci_errorf(CI_ERR_INVALID, "request: empty stop string");
    for (int i = 0; i < p->num_stop_token_ids; i++)
        if (p->stop_token_ids[i] < 0 || p->stop_token_ids[i] >= e->V)
            return ci_errorf(CI_ERR_INVALID, "request: stop token id %d outside [0, %d)",
                             p->stop_token_ids[i], e->V);
    if (np >= e->max_model_len)
        return ci_errorf(CI_ERR_CAPACITY,
                         "request: prompt has %d tokens; the model's context is %d", np,
                         e->max_model_len);
    if ((int64_t)np + p->max_tokens > e->max_model_len)
        return ci_errorf(CI_ERR_CAPACITY,
                         "request: prompt (%d) + max_tokens (%d) exceeds the model's context %d",
                         np, p->max_tokens, e->max_model_len);
    return ci_ok();
}

ci_status ci_engine_add_request(ci_engine *e, const int32_t *prompt, int num_prompt,
                                const ci_engine_sampling *sp_in, int priority,
                                int64_t *request_id) {
    if (request_id) *request_id = -1;
    ci_engine_sampling sp = sp_in ? *sp_in : ci_engine_default_sampling();
    CI_TRY(validate(e, prompt, num_prompt, &sp));
    if (sp.top_k < 0) sp.top_k = 0;
    eng_request *r = calloc(1, sizeof *r);
    if (!r) return ci_errorf(CI_ERR_NOMEM, "request: out of memory");
    r->n = sp.n;
    r->num_prompt = num_prompt;
    ci_status s = ci_ok();
    r->samples = calloc((size_t)sp.n, sizeof *r->samples);
    if (!r->samples) {
        free(r);
        return ci_errorf(CI_ERR_NOMEM, "request: out of memory");
    }
    if (sp.num_stop > 0) {
        r->stop = calloc((size_t)sp.num_stop, sizeof *r->stop);
        r->stop_len = calloc((size_t)sp.num_stop, sizeof *r->stop_len);
        if (!r->stop || !r->stop_len) s = ci_errorf(CI_ERR_NOMEM, "request: out of memory");
        for (int i = 0; !s.code && i < sp.num_stop; i++) {
            r->stop[i] = strdup(sp.stop[i]);
            if (!r->stop[i]) {
                s = ci_errorf(CI_ERR_NOMEM, "request: out of memory");
                break;
            }
            r->stop_len[i] = strlen(r->stop[i]);
            if (r->stop_len[i] > r->max_stop_len) r->max_stop_len = r->stop_len[i];
        }
    }
    int nstop = sp.num_stop;
    sp.num_stop = 0; /* until copied: free_request frees num_stop strings */
    if (!s.code)
        sp.num_stop = nstop;
    else {
        /* free the partial copy */
        for (int i = 0; r->stop && i < nstop; i++)
            free(r->stop[i]);
        free(r->stop);
        r->stop = NULL;
    }
    if (!s.code && sp.num_stop_token_ids > 0) {
        r->stop_ids = malloc(sizeof(int32_t) * (size_t)sp.num_stop_token_ids);
        if (!r->stop_ids)
            s = ci_errorf(CI_ERR_NOMEM, "request: out of memory");
        else
            memcpy(r->stop_ids, sp.stop_token_ids, sizeof(int32_t) * (size_t)sp.num_stop_token_ids);
    }
    sp.stop = NULL;
    sp.stop_token_ids = NULL;
    r->sp = sp;
    if (!s.code && sp.prompt_logprobs >= 0 && num_prompt > 1) {
        r->plp = calloc((size_t)(num_prompt - 1), sizeof *r->plp);
        if (!r->plp) s = ci_errorf(CI_ERR_NOMEM, "request: out of memory");
    }
    for (int i = 0; !s.code && i < sp.n; i++)
        if (e->tok)
            s = ci_detok_stream_create(e->tok, sp.skip_special_tokens != 0, &r->samples[i].detok);
    if (s.code) {
        free_request(r);
        return s;
    }
    ci_request_params rp = {0};
    rp.prompt = prompt;
    rp.num_prompt = num_prompt;
    rp.max_tokens = sp.max_tokens;
    rp.n = sp.n;
    rp.priority = priority;
    rp.prompt_logprobs = sp.prompt_logprobs >= 0;
    rp.user = r;
    int64_t gid;
    s = ci_sched_add(e->sched, &rp, &gid);
    if (s.code) {
        free_request(r);
        return s;
    }
    r->id = gid;
    r->lnext = e->live;
    if (e->live) e->live->lprev = r;
    e->live = r;
    r->seed = sp.seed >= 0 ? (uint64_t)sp.seed : splitmix64((uint64_t)gid ^ 0x636966657221ull);
    e->num_live_requests++;
    e->m.num_requests++;
    e->m.prompt_tokens += num_prompt;
    if (request_id) *request_id = gid;
    return ci_ok();
}

ci_status ci_engine_add_request_text(ci_engine *e, const char *text, const ci_engine_sampling *sp,
                                     int priority, int64_t *request_id) {
    if (request_id) *request_id = -1;
    if (!e->tok)
        return ci_errorf(CI_ERR_INVALID, "request: the model has no tokenizer; give token ids");
    if (!text) return ci_errorf(CI_ERR_INVALID, "request: no prompt");
    int32_t *ids = NULL;
    size_t n = 0;
    CI_TRY(ci_tokenizer_encode(e->tok, text, strlen(text), true, &ids, &n));
    ci_status s = n == 0 ? ci_errorf(CI_ERR_INVALID, "request: prompt encodes to no tokens")
                         : ci_engine_add_request(e, ids, (int)n, sp, priority, request_id);
    free(ids);
    return s;
}

ci_status ci_engine_abort(ci_engine *e, int64_t request_id) {
    int num = 0;
    ci_status s = ci_sched_abort(e->sched, request_id, &num);
    if (s.code)
        return ci_errorf(CI_ERR_INVALID, "abort: unknown or finished request %lld",
                         (long long)request_id);
    return ci_ok();
}

int ci_engine_has_unfinished(const ci_engine *e) {
    return e->num_live_requests > 0;
}

ci_engine_metrics ci_engine_get_metrics(const ci_engine *e) {
    ci_engine_metrics m = e->m;
    ci_scheduler *s = e->sched;
    ci_block_manager *bm = ci_sched_block_manager(s);
    m.num_running = ci_sched_num_running(s);
    m.num_waiting = ci_sched_num_waiting(s);
    ci_sched_stats st = ci_sched_get_stats(s);
    m.num_preemptions = st.preemptions;
    m.kv_blocks_used = ci_bm_num_used(bm);
    m.kv_usage = m.num_kv_blocks ? (double)m.kv_blocks_used / m.num_kv_blocks : 0.0;
    ci_bm_stats bs = ci_bm_get_stats(bm);
    m.prefix_cache_queried_tokens = bs.prefix_queried_tokens;
    m.prefix_cache_hit_tokens = bs.prefix_hit_tokens;
    return m;
}

/* ---- step helpers ---- */

static ci_status grow(void **p, int *cap, int need, size_t elem, int nptr, void **extra[],
                      size_t extra_elem[]) {
    if (need <= *cap) return ci_ok();
    int nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, elem * (size_t)nc);
    if (!np) return ci_errorf(CI_ERR_NOMEM, "engine: out of memory");
    *p = np;
    for (int i = 0; i < nptr; i++) {
        void *q = realloc(*extra[i], extra_elem[i] * (size_t)nc);
        if (!q) return ci_errorf(CI_ERR_NOMEM, "engine: out of memory");
        *extra[i] = q;
    }
    *cap = nc;
    return ci_ok();
}

static int is_eos(const ci_engine *e, int32_t t) {
    for (int i = 0; i < e->num_eos; i++)
        if (e->eos_ids[i] == t) return 1;
    return 0;
}

static int is_stop_id(const eng_request *r, int32_t t) {
    for (int i = 0; i < r->sp.num_stop_token_ids; i++)
        if (r->stop_ids[i] == t) return 1;
    return 0;
}

/* The adjustment entry of token t in the list being built (one per
 * distinct token: e->stamp marks tokens seen in this list). */
static ci_logit_adjust *touch(ci_engine *e, int32_t t) {
    if (e->stamp[t] != e->stamp_gen) {
        e->stamp[t] = e->stamp_gen;
        e->slot[t] = e->num_adj;
        ci_logit_adjust *a = &e->adj[e->num_adj++];
        a->token = t;
        a->flags = 0;
        a->count = 0;
    }
    return &e->adj[e->slot[t]];
}

/* Appends sequence q's logits processors to e->adj as one list of distinct
 * tokens (applied by the sample op in this order: min_tokens masking of EOS
 * and stop ids, repetition penalty over prompt + output, presence and
 * frequency penalties over the output). Returns its start and length. */
static ci_status build_adjust(ci_engine *e, const eng_request *r, const ci_sequence *q, int *start,
                              int *count) {
    const ci_engine_sampling *p = &r->sp;
    int mask = ci_seq_num_output(q) < p->min_tokens;
    int rep = p->repetition_penalty != 1.0f;
    int pf = p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
    *start = e->num_adj;
    *count = 0;
    if (!mask && !rep && !pf) return ci_ok();
    int need = e->num_adj + e->num_eos + p->num_stop_token_ids + q->num_tokens;
    CI_TRY(grow((void **)&e->adj, &e->adj_cap, need, sizeof(ci_logit_adjust), 0, NULL, NULL));
    if (++e->stamp_gen == 0) { /* wrapped: reset */
        memset(e->stamp, 0, sizeof(uint32_t) * (size_t)e->V);
        e->stamp_gen = 1;
    }
    if (mask) {
        if (!p->ignore_eos)
            for (int i = 0; i < e->num_eos; i++)
                touch(e, e->eos_ids[i])->flags |= CI_ADJ_MASK;
        for (int i = 0; i < p->num_stop_token_ids; i++)
            touch(e, r->stop_ids[i])->flags |= CI_ADJ_MASK;
    }
    if (rep)
        for (int i = 0; i < q->num_tokens; i++)
            touch(e, q->tokens[i])->flags |= CI_ADJ_REPEAT;
    if (pf)
        for (int i = q->num_prompt_tokens; i < q->num_tokens; i++)
            touch(e, q->tokens[i])->count++;
    *count = e->num_adj - *start;
    return ci_ok();
}

/* Top-k of lsm plus the given token's value. */
static void fill_logprob(const ci_engine *e, const float *lsm, int k, int32_t token,
                         ci_engine_logprob *lp) {
    lp->token = token;
    lp->logprob = lsm[token];
    lp->num_top = ci_top_logprobs(lsm, e->V, k, lp->top_ids, lp->top_logprobs);
}

static ci_status text_append(eng_sample *smp, const char *t, size_t n) {
    if (n == 0) return ci_ok();
    if (smp->len + n + 1 > smp->cap) {
        size_t nc = smp->cap ? smp->cap : 64;
        while (nc < smp->len + n + 1)
            nc *= 2;
        char *p = realloc(smp->text, nc);
        if (!p) return ci_errorf(CI_ERR_NOMEM, "engine: out of memory (text)");
        smp->text = p;
        smp->cap = nc;
    }
    memcpy(smp->text + smp->len, t, n);
    smp->len += n;
    smp->text[smp->len] = '\0';
    return ci_ok();
}

/* Searches stop strings in smp->text starting near `from`; cuts the text at
 * the earliest match. Returns 1 on a match. */
static int find_stop(const eng_request *r, eng_sample *smp, size_t from) {
    if (r->sp.num_stop == 0) return 0;
    size_t start = from + 1 > r->max_stop_len ? from + 1 - r->max_stop_len : 0;
    size_t best = (size_t)-1;
    for (int i = 0; i < r->sp.num_stop; i++) {
        size_t L = r->stop_len[i];
        if (smp->len < L) continue;
        for (size_t p = start; p + L <= smp->len; p++) {
            if (p >= best) break;
            if (memcmp(smp->text + p, r->stop[i], L) == 0) {
                best = p;
                break;
            }
        }
    }
    if (best == (size_t)-1) return 0;
    smp->len = best;
    if (smp->text) smp->text[best] = '\0';
    return 1;
}

/* Bytes at the end of the text that could begin a stop string. */
static size_t holdback(const eng_request *r, const eng_sample *smp) {
    size_t hold = 0;
    for (int i = 0; i < r->sp.num_stop; i++) {
        size_t L = r->stop_len[i];
        for (size_t k = L - 1; k > hold; k--) {
            if (k > smp->len) continue;
            if (memcmp(smp->text + smp->len - k, r->stop[i], k) == 0) {
                hold = k;
                break;
            }
        }
    }
    return hold;
}

static ci_status push_output(ci_engine *e, eng_request *r, int idx, int has_token, int32_t token,
                             ci_finish_reason fr, const ci_engine_logprob *lp) {
    eng_sample *smp = &r->samples[idx];
    void **extra[2] = {(void **)&e->out_tokens, (void **)&e->out_lp};
    size_t esz[2] = {sizeof(int32_t), sizeof(ci_engine_logprob *)};
    CI_TRY(grow((void **)&e->outs, &e->outs_cap, e->num_outs + 1, sizeof(ci_engine_output), 2,
                extra, esz));
    ci_engine_output *o = &e->outs[e->num_outs];
    memset(o, 0, sizeof *o);
    o->request_id = r->id;
    o->sample_index = idx;
    e->out_tokens[e->num_outs] = token;
    o->num_token_ids = has_token;
    e->out_lp[e->num_outs] = (ci_engine_logprob *)lp;
    size_t lim = smp->len;
    if (fr == CI_FINISH_NONE) {
        size_t h = holdback(r, smp);
        lim = smp->len - h;
    }
    if (lim < smp->emitted) lim = smp->emitted;
    o->text = smp->text ? smp->text + smp->emitted : "";
    o->text_len = lim - smp->emitted;
    smp->emitted = lim;
    o->finish_reason = fr;
    if (r->plp && !r->plp_reported && idx == 0 && (has_token || fr != CI_FINISH_NONE)) {
        o->prompt_logprobs = r->plp;
        o->num_prompt_logprobs = r->num_plp;
        r->plp_reported = 1;
    }
    e->num_outs++;
    if (fr != CI_FINISH_NONE && !smp->done) {
        smp->done = 1;
        r->samples_done++;
    }
    return ci_ok();
}

/* A sampled token for sequence q (already appended by update). */
static ci_status on_token(ci_engine *e, ci_sequence *q, int32_t t, int finished_length) {
    eng_request *r = q->user;
    int idx = q->sample_index;
    eng_sample *smp = &r->samples[idx];
    r->forked = 1;
    if (smp->done) return ci_ok();
    ci_finish_reason fr = finished_length ? CI_FINISH_LENGTH : CI_FINISH_NONE;
    int nout = ci_seq_num_output(q);
    int stop_tok = (!r->sp.ignore_eos && is_eos(e, t)) || is_stop_id(r, t);
    int by_string = 0;
    if (stop_tok) fr = CI_FINISH_STOP;
    if (!stop_tok && smp->detok) {
        const char *txt;
        size_t n;
        size_t before = smp->len;
        CI_TRY(ci_detok_stream_put(smp->detok, t, &txt, &n));
        CI_TRY(text_append(smp, txt, n));
        if (nout >= r->sp.min_tokens && find_stop(r, smp, before)) {
            fr = CI_FINISH_STOP;
            by_string = 1;
        }
    }
    if (fr != CI_FINISH_NONE && !by_string && smp->detok) {
        const char *txt;
        size_t n;
        size_t before = smp->len;
        CI_TRY(ci_detok_stream_finish(smp->detok, &txt, &n));
        CI_TRY(text_append(smp, txt, n));
        if (find_stop(r, smp, before)) fr = CI_FINISH_STOP;
    }
    if (fr == CI_FINISH_STOP) CI_TRY(ci_sched_finish(e->sched, q, CI_FINISH_STOP));
    e->m.generation_tokens++;
    return push_output(e, r, idx, 1, t, fr, r->sp.logprobs >= 0 ? &smp->cur_lp : NULL);
}

/* Prompt logprobs of entry i's rows [r0, r0 + nplp): copied to the host
 * (the only logits that cross), log-softmax and top-k there. */
static ci_status prompt_logprobs(ci_engine *e, const ci_sched_entry *en, int r0, int nplp) {
    ci_sequence *q = en->seq;
    eng_request *r = q->user;
    const size_t V = (size_t)e->V;
    if (nplp > e->plp_rows) { /* grown only for requests that ask */
        float *p = realloc(e->plp_logits, sizeof(float) * V * (size_t)nplp);
        if (!p) return ci_errorf(CI_ERR_NOMEM, "engine: out of memory (prompt logprobs)");
        e->plp_logits = p;
        e->plp_rows = nplp;
    }
    const ci_tensor *lg = ci_model_logits(e->model);
    CI_TRY(e->be->ops->to_host(e->be, e->plp_logits, (const float *)lg->data + (size_t)r0 * V,
                               sizeof(float) * V * (size_t)nplp));
    int p0 = en->start > q->prompt_logprobs_done ? en->start : q->prompt_logprobs_done;
    for (int j = 0; j < nplp; j++) {
        int pos = p0 + j; /* predicts prompt token pos + 1 */
        if (pos + 1 >= r->num_prompt || pos < 0) continue;
        ci_log_softmax(e->plp_logits + (size_t)j * V, e->V, e->lsm);
        fill_logprob(e, e->lsm, r->sp.prompt_logprobs, q->tokens[pos + 1], &r->plp[pos]);
        if (pos + 1 > r->num_plp) r->num_plp = pos + 1;
    }
    return ci_ok();
}

/* One sample op call for the step: a row per sample (n > 1 forks share
 * their sequence's logits row and adjustment list). */
static ci_status run_sampling(ci_engine *e, const ci_sched_output *o, const int32_t *logits_start) {
    e->num_adj = 0;
    void **extra[1] = {(void **)&e->sres};
    size_t esz[1] = {sizeof(ci_sample_result)};
    CI_TRY(grow((void **)&e->srows, &e->srows_cap, o->num_samples + 1, sizeof(ci_sample_row), 1,
                extra, esz));
    int k = 0;
    for (int i = 0; i < o->num_entries; i++) {
        const ci_sched_entry *en = &o->entries[i];
        ci_sequence *q = en->seq;
        eng_request *r = q->user;
        int r0 = logits_start[i], r1 = logits_start[i + 1];
        int nplp = r1 - r0 - (en->samples > 0 ? 1 : 0);
        if (nplp > 0 && r->plp) CI_TRY(prompt_logprobs(e, en, r0, nplp));
        if (en->samples == 0) continue;
        int a0, na;
        CI_TRY(build_adjust(e, r, q, &a0, &na));
        uint64_t step = (uint64_t)ci_seq_num_output(q);
        for (int j = 0; j < en->samples; j++) {
            int idx = en->samples > 1 ? j : q->sample_index;
            ci_sample_row *row = &e->srows[k++];
            row->logits_row = r1 - 1;
            row->top_logprobs = r->sp.logprobs >= 0 && idx < r->n ? r->sp.logprobs : -1;
            row->adj_start = a0;
            row->adj_count = na;
            row->temperature = r->sp.temperature;
            row->top_k = r->sp.top_k;
            row->top_p = r->sp.top_p;
            row->min_p = r->sp.min_p;
            row->repetition_penalty = r->sp.repetition_penalty;
            row->presence_penalty = r->sp.presence_penalty;
            row->frequency_penalty = r->sp.frequency_penalty;
            row->seed = r->seed;
            row->stream = (uint64_t)idx;
            row->step = step;
        }
    }
    if (k == 0) return ci_ok();
    CI_TRY(e->be->ops->sample(e->be, ci_model_logits(e->model), e->srows, k, e->adj, e->num_adj,
                              e->sres));
    k = 0;
    for (int i = 0; i < o->num_entries; i++) {
        const ci_sched_entry *en = &o->entries[i];
        ci_sequence *q = en->seq;
        eng_request *r = q->user;
        for (int j = 0; j < en->samples; j++, k++) {
            int idx = en->samples > 1 ? j : q->sample_index;
            const ci_sample_result *res = &e->sres[k];
            e->sampled[k] = res->token;
            if (e->srows[k].top_logprobs < 0) continue;
            ci_engine_logprob *lp = &r->samples[idx].cur_lp;
            lp->token = res->token;
            lp->logprob = res->logprob;
            lp->num_top = res->num_top;
            memcpy(lp->top_ids, res->top_ids, sizeof(int32_t) * (size_t)res->num_top);
            memcpy(lp->top_logprobs, res->top_logprobs, sizeof(float) * (size_t)res->num_top);
        }
    }
    return ci_ok();
}

static void retire_request(ci_engine *e, eng_request *r) {
    if (r->retired) return;
    r->retired = 1;
    if (r->lprev)
        r->lprev->lnext = r->lnext;
    else
        e->live = r->lnext;
    if (r->lnext) r->lnext->lprev = r->lprev;
    r->next = e->dead;
    e->dead = r;
    e->num_live_requests--;
    e->m.num_finished++;
}

static ci_status pop_finished(ci_engine *e) {
    ci_sequence *q;
    while ((q = ci_sched_pop_finished(e->sched)) != NULL) {
        eng_request *r = q->user;
        ci_status s = ci_ok();
        if (r) {
            int idx = q->sample_index;
            ci_finish_reason fr =
                q->finish_reason != CI_FINISH_NONE ? q->finish_reason : CI_FINISH_ABORT;
            if (!r->samples[idx].done) s = push_output(e, r, idx, 0, 0, fr, NULL);
            /* a request that ended before its fork: its other samples too */
            if (q->parent_id < 0 && !r->forked)
                for (int j = 1; j < r->n && !s.code; j++)
                    if (!r->samples[j].done) s = push_output(e, r, j, 0, 0, fr, NULL);
            if (r->samples_done >= r->n) retire_request(e, r);
        }
        ci_seq_destroy(q);
        if (s.code) return s;
    }
    return ci_ok();
}

ci_status ci_engine_step(ci_engine *e, const ci_engine_output **outs, int *num_outs) {
    *outs = NULL;
    *num_outs = 0;
    free_dead(e);
    e->num_outs = 0;
    const ci_sched_output *o;
    double t0 = ci_now();
    CI_TRY(ci_sched_schedule(e->sched, &o));
    if (o->num_entries > 0) {
        e->m.num_steps++;
        int used = ci_bm_num_used(ci_sched_block_manager(e->sched));
        if (used > e->m.peak_kv_blocks_used) e->m.peak_kv_blocks_used = used;
        if (o->num_copies > 0) {
            void **extra[1] = {(void **)&e->copy_dst};
            size_t esz[1] = {sizeof(int32_t)};
            CI_TRY(grow((void **)&e->copy_src, &e->copy_cap, o->num_copies, sizeof(int32_t), 1,
                        extra, esz));
            for (int i = 0; i < o->num_copies; i++) {
                e->copy_src[i] = o->copies[i].src;
                e->copy_dst[i] = o->copies[i].dst;
            }
            if (!e->be->ops->copy_blocks)
                return ci_errorf(CI_ERR_UNSUPPORTED, "engine: backend %s has no copy_blocks",
                                 e->be->name);
            CI_TRY(e->be->ops->copy_blocks(e->be, e->kv, e->copy_src, e->copy_dst, o->num_copies));
        }
        const ci_batch *b;
        CI_TRY(ci_batch_build(&e->bb, o, &b));
        double t1 = ci_now();
        CI_TRY(ci_model_forward(e->model, b, e->kv, NULL));
        double t2 = ci_now();
        CI_TRY(grow((void **)&e->sampled, &e->sampled_cap, o->num_samples + 1, sizeof(int32_t), 0,
                    NULL, NULL));
        CI_TRY(run_sampling(e, o, e->bb.logits_start));
        double t3 = ci_now();
        e->m.time_schedule_s += t1 - t0;
        e->m.time_forward_s += t2 - t1;
        e->m.time_sample_s += t3 - t2;
        t0 = t3;
        const ci_sched_result *res;
        int nres;
        CI_TRY(ci_sched_update(e->sched, e->sampled, o->num_samples, &res, &nres));
        for (int i = 0; i < nres; i++) {
            ci_sequence *q = res[i].seq;
            /* forked siblings (ci_seq_clone clears user): the parent's
             * result comes first in the same step */
            for (int j = i - 1; !q->user && j >= 0; j--)
                if (res[j].seq->id == q->parent_id) q->user = res[j].seq->user;
            if (!q->user)
                return ci_errorf(CI_ERR_INTERNAL, "engine: sequence %lld has no request",
                                 (long long)q->id);
            CI_TRY(on_token(e, q, res[i].token, res[i].finished));
        }
    }
    CI_TRY(pop_finished(e));
    e->m.time_output_s += ci_now() - t0;
    for (int i = 0; i < e->num_outs; i++) {
        e->outs[i].token_ids = e->outs[i].num_token_ids ? &e->out_tokens[i] : NULL;
        e->outs[i].logprobs = e->outs[i].num_token_ids ? e->out_lp[i] : NULL;
    }
    *outs = e->outs;
    *num_outs = e->num_outs;
    return ci_ok();
}
