/* ranks.c — worker ranks of tensor / pipeline parallelism; see ranks.h. */
#include "engine/ranks.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STAGES CI_COMM_MAX_RANKS

typedef struct rank {
    struct ci_ranks *g;
    int w; /* world rank: stage w / tp, tensor rank w % tp */
    ci_backend *be;
    ci_model *model;
    ci_kv_cache *kv;
    pthread_t th;
    int started;
    ci_microbatches mbs; /* its cut of each step (pipeline stages) */
    ci_status st;        /* this step's */
    ci_status inject;    /* a fault for the next step (ci_ranks_inject) */
    size_t free, total;  /* device memory after the profiling step (mem_info) */
} rank;

struct ci_ranks {
    int tp, pp, n, runner;        /* n = tp x pp ranks; runner: the runner's world rank */
    int micro;                    /* micro-batches per step (pipeline stages; 1: none) */
    ci_comm *tp_comm[MAX_STAGES]; /* per stage (tp > 1) */
    ci_comm *pp_comm;             /* every rank (pp > 1) */
    rank *ranks;                  /* [n]; [runner] unused */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long step; /* steps begun */
    int finished;       /* workers done with the current step */
    int stop;
    /* the step in flight */
    const ci_batch *b;
    const int32_t *src, *dst;
    int ncopies;
    int profile_blocks, profile_bs; /* > 0: the step profiles memory on a scratch cache */
};

static void abort_all(ci_ranks *g) {
    for (int s = 0; s < g->pp; s++)
        ci_comm_abort(g->tp_comm[s]);
    ci_comm_abort(g->pp_comm);
}

static void bind(const ci_ranks *g, ci_backend *be, int w) {
    be->comm = g->tp_comm[w / g->tp];
    be->rank = w % g->tp;
    be->pp_comm = g->pp_comm;
    be->pp_rank = w;
}

static void options(const ci_ranks *g, int w, ci_model_options *mo) {
    mo->tp_rank = w % g->tp;
    mo->tp_size = g->tp;
    mo->pp_stage = w / g->tp;
    mo->pp_size = g->pp;
}

static ci_status rank_step(ci_ranks *g, rank *r) {
    /* the device groups (CUDA: NCCL communicators, made by every rank at
     * once) before anything that may fail, so that a failure later in the
     * step finds them made and aborts them */
    if (r->be->ops->comm_ready) CI_TRY(r->be->ops->comm_ready(r->be));
    if (r->inject.code) {
        const ci_status f = r->inject;
        r->inject = ci_ok();
        return f;
    }
    if (g->profile_blocks > 0) { /* KV sizing: the largest step on a scratch cache */
        ci_kv_cache *kv = NULL;
        CI_TRY(ci_model_kv_cache_create(r->model, g->profile_blocks, g->profile_bs, &kv));
        ci_status s = ci_ranks_forward(g, r->model, kv, g->b, &r->mbs);
        ci_kv_cache_destroy(r->be, kv);
        if (!s.code && r->be->ops->mem_info) s = r->be->ops->mem_info(r->be, &r->free, &r->total);
        return s;
    }
    if (g->ncopies > 0) CI_TRY(r->be->ops->copy_blocks(r->be, r->kv, g->src, g->dst, g->ncopies));
    CI_TRY(ci_model_check_batch(r->model, g->b, r->kv));
    return ci_ranks_forward(g, r->model, r->kv, g->b, &r->mbs);
}

static void *rank_main(void *p) {
    rank *r = p;
    ci_ranks *g = r->g;
    unsigned long seen = 0;
    /* this thread runs the rank's backend (CUDA: its device); a failure
     * shows at the first step */
    const ci_status att = r->be->ops->thread_attach ? r->be->ops->thread_attach(r->be) : ci_ok();
    for (;;) {
        pthread_mutex_lock(&g->mu);
        while (g->step == seen && !g->stop)
            pthread_cond_wait(&g->go, &g->mu);
        if (g->stop) {
            pthread_mutex_unlock(&g->mu);
            return NULL;
        }
        seen = g->step;
        pthread_mutex_unlock(&g->mu);
        ci_status s = att.code ? att : rank_step(g, r);
        if (s.code) abort_all(g); /* nobody waits for this rank */
        pthread_mutex_lock(&g->mu);
        r->st = s;
        g->finished++;
        pthread_cond_signal(&g->done);
        pthread_mutex_unlock(&g->mu);
    }
}

ci_status ci_ranks_create(int tp, int pp, ci_ranks **out) {
    *out = NULL;
    if (tp < 1 || pp < 1 || tp * pp > CI_COMM_MAX_RANKS)
        return ci_errorf(CI_ERR_INVALID, "parallel ranks: %d x %d outside [1, %d] ranks", tp, pp,
                         CI_COMM_MAX_RANKS);
    ci_ranks *g = calloc(1, sizeof *g);
    if (!g) return ci_errorf(CI_ERR_NOMEM, "parallel ranks: out of memory");
    g->tp = tp;
    g->pp = pp;
    g->n = tp * pp;
    g->runner = (pp - 1) * tp;
    /* as many micro-batches as stages (CINFER_PP_MICROBATCHES: another
     * number, 1 = the batch whole, for A/B) */
    const char *mb = getenv("CINFER_PP_MICROBATCHES");
    g->micro = pp > 1 ? (mb && atoi(mb) > 0 ? atoi(mb) : pp) : 1;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->go, NULL);
    pthread_cond_init(&g->done, NULL);
    g->ranks = calloc((size_t)g->n, sizeof *g->ranks);
    ci_status s = g->ranks ? ci_ok() : ci_errorf(CI_ERR_NOMEM, "parallel ranks: out of memory");
    for (int st = 0; st < pp && !s.code && tp > 1; st++)
        s = ci_comm_create(tp, &g->tp_comm[st]);
    if (!s.code && pp > 1) s = ci_comm_create(g->n, &g->pp_comm);
    if (s.code) {
        ci_ranks_free(g);
        return s;
    }
    *out = g;
    return ci_ok();
}

void ci_ranks_bind(ci_ranks *g, ci_backend *be) {
    bind(g, be, g->runner);
}

void ci_ranks_runner_options(const ci_ranks *g, ci_model_options *mo) {
    options(g, g->runner, mo);
}

ci_status ci_ranks_load(ci_ranks *g, const char *model_dir, const char *device,
                        const ci_backend_options *bo, const ci_model_options *mo) {
    ci_status s = ci_ok();
    for (int w = 0; w < g->n && !s.code; w++) {
        if (w == g->runner) continue;
        rank *r = &g->ranks[w];
        r->g = g;
        r->w = w;
        ci_backend_options rbo = *bo;
        rbo.device_id = w; /* one GPU per rank (unused on the CPU) */
        s = ci_backend_create(device, &rbo, &r->be);
        if (s.code) break;
        bind(g, r->be, w);
        ci_model_options o = *mo;
        options(g, w, &o);
        o.progress = NULL; /* the runner's rank shows its own */
        s = ci_model_load(model_dir, r->be, &o, &r->model);
        if (!s.code && pthread_create(&r->th, NULL, rank_main, r) != 0)
            s = ci_errorf(CI_ERR_INTERNAL, "parallel ranks: pthread_create failed");
        if (!s.code) r->started = 1;
        if (s.code)
            s = ci_status_wrap(s, "rank %d (stage %d, tensor rank %d)", w, w / g->tp, w % g->tp);
    }
    return s;
}

ci_status ci_ranks_kv_create(ci_ranks *g, int num_blocks, int block_size) {
    for (int w = 0; w < g->n; w++) {
        rank *r = &g->ranks[w];
        if (w == g->runner || r->kv) continue;
        /* on this thread: the rank's device current while its cache is made */
        if (r->be->ops->thread_attach) CI_TRY(r->be->ops->thread_attach(r->be));
        ci_status s = ci_model_kv_cache_create(r->model, num_blocks, block_size, &r->kv);
        if (s.code) return ci_status_wrap(s, "rank %d", w);
    }
    return ci_ok();
}

ci_status ci_ranks_begin_profile(ci_ranks *g, const ci_batch *b, int num_blocks, int block_size) {
    g->profile_blocks = num_blocks;
    g->profile_bs = block_size;
    return ci_ranks_begin(g, b, NULL, NULL, 0);
}

void ci_ranks_min_memory(const ci_ranks *g, size_t *free_bytes, size_t *total_bytes) {
    for (int w = 0; w < g->n; w++) {
        const rank *r = &g->ranks[w];
        if (w == g->runner || !r->total) continue;
        if (r->free < *free_bytes) *free_bytes = r->free;
        if (r->total < *total_bytes) *total_bytes = r->total;
    }
}

void ci_ranks_free(ci_ranks *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_broadcast(&g->go);
    pthread_mutex_unlock(&g->mu);
    for (int w = 0; g->ranks && w < g->n; w++) {
        rank *r = &g->ranks[w];
        if (r->started) pthread_join(r->th, NULL);
        if (r->kv) ci_kv_cache_destroy(r->be, r->kv);
        ci_model_free(r->model);
        ci_microbatches_free(&r->mbs);
        if (r->be) ci_backend_destroy(r->be);
    }
    for (int s = 0; s < g->pp; s++)
        ci_comm_destroy(g->tp_comm[s]);
    ci_comm_destroy(g->pp_comm);
    pthread_cond_destroy(&g->go);
    pthread_cond_destroy(&g->done);
    pthread_mutex_destroy(&g->mu);
    free(g->ranks);
    free(g);
}

ci_status ci_ranks_forward(const ci_ranks *g, ci_model *m, ci_kv_cache *kv, const ci_batch *b,
                           ci_microbatches *mbs) {
    ci_backend *be = m->be;
    CI_TRY(ci_microbatch_split(b, g->micro, mbs));
    for (int k = 0; k < mbs->n; k++) {
        const ci_microbatch *p = &mbs->part[k];
        CI_TRY(be->ops->prepare_batch(be, &p->b, &m->dev_batch));
        CI_TRY(ci_model_enqueue_rows(m, &m->dev_batch, p->b.num_tokens, p->b.num_logits,
                                     p->logits_row0, kv));
    }
    return be->ops->sync(be);
}

ci_status ci_ranks_begin(ci_ranks *g, const ci_batch *b, const int32_t *copy_src,
                         const int32_t *copy_dst, int num_copies) {
    pthread_mutex_lock(&g->mu);
    g->b = b;
    g->src = copy_src;
    g->dst = copy_dst;
    g->ncopies = num_copies;
    g->finished = 0;
    g->step++;
    pthread_cond_broadcast(&g->go);
    pthread_mutex_unlock(&g->mu);
    return ci_ok();
}

int ci_ranks_count(const ci_ranks *g) {
    return g->n;
}

int ci_ranks_runner_rank(const ci_ranks *g) {
    return g->runner;
}

void ci_ranks_inject(ci_ranks *g, int w, ci_status fault) {
    if (w >= 0 && w < g->n && w != g->runner) g->ranks[w].inject = fault;
}

ci_status ci_ranks_end(ci_ranks *g, ci_status runner) {
    if (runner.code) abort_all(g);
    pthread_mutex_lock(&g->mu);
    while (g->finished < g->n - 1)
        pthread_cond_wait(&g->done, &g->mu);
    g->profile_blocks = 0;
    pthread_mutex_unlock(&g->mu);
    /* the step's error: the first rank's that is not the echo of another
     * rank's abort in a collective */
    ci_status s = ci_ok();
    for (int w = 0; w < g->n; w++) {
        const ci_status e = w == g->runner ? runner : g->ranks[w].st;
        if (!e.code) continue;
        const int echo = e.code == CI_ERR_BACKEND && strstr(e.msg, CI_COMM_ABORTED_MSG);
        if (!s.code || (!echo && strstr(s.msg, CI_COMM_ABORTED_MSG)))
            s = w == g->runner ? e : ci_status_wrap(e, "rank %d", w);
    }
    if (s.code) { /* every rank has left the step */
        for (int st = 0; st < g->pp; st++)
            ci_comm_reset(g->tp_comm[st]);
        ci_comm_reset(g->pp_comm);
    }
    return s;
}
