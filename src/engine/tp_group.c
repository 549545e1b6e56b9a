/* tp_group.c — worker ranks of tensor parallelism; see tp_group.h. */
#include "engine/tp_group.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct tp_rank {
    struct ci_tp_group *g;
    int rank;
    ci_backend *be;
    ci_model *model;
    ci_kv_cache *kv;
    pthread_t th;
    int started;
    ci_status st; /* this step's */
} tp_rank;

struct ci_tp_group {
    int size;
    ci_comm *comm;
    tp_rank *ranks; /* [size]; [0] unused (the runner's) */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long step; /* steps begun */
    int finished;       /* workers done with the current step */
    int stop;
    /* the step in flight */
    const ci_batch *b;
    const int32_t *src, *dst;
    int ncopies;
};

static ci_status rank_step(ci_tp_group *g, tp_rank *w) {
    if (g->ncopies > 0) CI_TRY(w->be->ops->copy_blocks(w->be, w->kv, g->src, g->dst, g->ncopies));
    return ci_model_forward(w->model, g->b, w->kv, NULL);
}

static void *rank_main(void *p) {
    tp_rank *w = p;
    ci_tp_group *g = w->g;
    unsigned long seen = 0;
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
        ci_status s = rank_step(g, w);
        if (s.code) ci_comm_abort(g->comm); /* nobody waits for this rank */
        pthread_mutex_lock(&g->mu);
        w->st = s;
        g->finished++;
        pthread_cond_signal(&g->done);
        pthread_mutex_unlock(&g->mu);
    }
}

void ci_tp_group_free(ci_tp_group *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_broadcast(&g->go);
    pthread_mutex_unlock(&g->mu);
    for (int r = 1; r < g->size; r++) {
        tp_rank *w = &g->ranks[r];
        if (w->started) pthread_join(w->th, NULL);
        if (w->kv) ci_kv_cache_destroy(w->be, w->kv);
        ci_model_free(w->model);
        if (w->be) ci_backend_destroy(w->be);
    }
    pthread_cond_destroy(&g->go);
    pthread_cond_destroy(&g->done);
    pthread_mutex_destroy(&g->mu);
    free(g->ranks);
    free(g);
}

ci_status ci_tp_group_create(const char *model_dir, int size, ci_comm *comm,
                             const ci_backend_options *bo, const ci_model_options *mo,
                             int num_blocks, int block_size, ci_tp_group **out) {
    *out = NULL;
    ci_tp_group *g = calloc(1, sizeof *g);
    if (!g) return ci_errorf(CI_ERR_NOMEM, "tensor parallel group: out of memory");
    g->size = size;
    g->comm = comm;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->go, NULL);
    pthread_cond_init(&g->done, NULL);
    g->ranks = calloc((size_t)size, sizeof *g->ranks);
    ci_status s =
        g->ranks ? ci_ok() : ci_errorf(CI_ERR_NOMEM, "tensor parallel group: out of memory");
    for (int r = 1; r < size && !s.code; r++) {
        tp_rank *w = &g->ranks[r];
        w->g = g;
        w->rank = r;
        s = ci_backend_create("cpu", bo, &w->be);
        if (s.code) break;
        w->be->comm = comm;
        w->be->rank = r;
        ci_model_options o = *mo;
        o.tp_rank = r;
        o.tp_size = size;
        o.progress = NULL; /* rank 0 shows its own */
        s = ci_model_load(model_dir, w->be, &o, &w->model);
        if (!s.code) s = ci_model_kv_cache_create(w->model, num_blocks, block_size, &w->kv);
        if (!s.code && pthread_create(&w->th, NULL, rank_main, w) != 0)
            s = ci_errorf(CI_ERR_INTERNAL, "tensor parallel group: pthread_create failed");
        if (!s.code) w->started = 1;
        if (s.code) s = ci_status_wrap(s, "tensor parallel rank %d", r);
    }
    if (s.code) {
        ci_tp_group_free(g);
        return s;
    }
    *out = g;
    return ci_ok();
}

ci_status ci_tp_group_begin(ci_tp_group *g, const ci_batch *b, const int32_t *copy_src,
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

ci_status ci_tp_group_end(ci_tp_group *g, ci_status rank0) {
    if (rank0.code) ci_comm_abort(g->comm);
    pthread_mutex_lock(&g->mu);
    while (g->finished < g->size - 1)
        pthread_cond_wait(&g->done, &g->mu);
    pthread_mutex_unlock(&g->mu);
    /* the step's error: the first rank's that is not the echo of another
     * rank's abort in an all-reduce */
    ci_status s = ci_ok();
    for (int r = 0; r < g->size; r++) {
        const ci_status e = r ? g->ranks[r].st : rank0;
        if (!e.code) continue;
        const int echo = e.code == CI_ERR_BACKEND && strstr(e.msg, CI_COMM_ABORTED_MSG);
        if (!s.code || (!echo && strstr(s.msg, CI_COMM_ABORTED_MSG)))
            s = r ? ci_status_wrap(e, "tensor parallel rank %d", r) : e;
    }
    if (s.code) ci_comm_reset(g->comm); /* every rank has left the step */
    return s;
}
