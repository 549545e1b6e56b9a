/* comm.c — the in-process collectives of comm.h: a barrier and a
 * reduce-scatter + all-gather over the ranks' posted host buffers. */
#include "backend/comm.h"

#include <pthread.h>
#include <stdlib.h>

struct ci_comm {
    int size;
    pthread_barrier_t bar;
    float *buf[CI_COMM_MAX_RANKS]; /* the buffers of the all-reduce in progress */
};

ci_status ci_comm_create(int size, ci_comm **out) {
    *out = NULL;
    if (size < 1 || size > CI_COMM_MAX_RANKS)
        return ci_errorf(CI_ERR_INVALID, "comm: %d ranks outside [1, %d]", size, CI_COMM_MAX_RANKS);
    ci_comm *c = calloc(1, sizeof *c);
    if (!c) return ci_errorf(CI_ERR_NOMEM, "comm: out of memory");
    c->size = size;
    if (pthread_barrier_init(&c->bar, NULL, (unsigned)size) != 0) {
        free(c);
        return ci_errorf(CI_ERR_INTERNAL, "comm: pthread_barrier_init failed");
    }
    *out = c;
    return ci_ok();
}

void ci_comm_destroy(ci_comm *c) {
    if (!c) return;
    pthread_barrier_destroy(&c->bar);
    free(c);
}

int ci_comm_size(const ci_comm *c) {
    return c ? c->size : 1;
}

void ci_comm_barrier(ci_comm *c) {
    if (c && c->size > 1) pthread_barrier_wait(&c->bar);
}

void ci_comm_all_reduce_f32(ci_comm *c, int rank, float *x, int64_t n) {
    if (!c || c->size <= 1) return;
    c->buf[rank] = x;
    pthread_barrier_wait(&c->bar); /* every buffer posted */
    /* this rank's slice: summed in rank order, written back to every buffer
     * (the slices are disjoint, so no rank reads what another writes) */
    const int64_t lo = n * rank / c->size, hi = n * (rank + 1) / c->size;
    for (int64_t i = lo; i < hi; i++) {
        float s = c->buf[0][i];
        for (int r = 1; r < c->size; r++)
            s += c->buf[r][i];
        for (int r = 0; r < c->size; r++)
            c->buf[r][i] = s;
    }
    pthread_barrier_wait(&c->bar); /* every slice written */
}
