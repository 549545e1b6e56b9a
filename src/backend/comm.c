/* comm.c — the in-process collectives of comm.h: an abortable barrier (a
 * mutex, a condition variable and a generation count: a rank that fails
 * mid-step aborts the group instead of leaving the others in a barrier)
 * and a reduce-scatter + all-gather over the ranks' posted host buffers. */
#include "backend/comm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct ci_comm {
    int size;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived;                     /* ranks in the current barrier */
    unsigned long gen;               /* barriers completed */
    int aborted;                     /* set by ci_comm_abort until ci_comm_reset */
    float *buf[CI_COMM_MAX_RANKS];   /* the buffers of the all-reduce in progress */
    int64_t cols[CI_COMM_MAX_RANKS]; /* ... and a gather's part widths */
    struct {                         /* per receiving rank: the send waiting for it */
        const void *p;
        size_t n;
        int src, full;
    } box[CI_COMM_MAX_RANKS];
    /* a device library's group (comm.h): the epoch, its id, abort hooks */
    unsigned epoch;
    int id_made;
    unsigned char id[CI_COMM_ID_BYTES];
    struct {
        void (*fn)(void *);
        void *arg;
    } hook[CI_COMM_MAX_RANKS];
};

ci_status ci_comm_create(int size, ci_comm **out) {
    *out = NULL;
    if (size < 1 || size > CI_COMM_MAX_RANKS)
        return ci_errorf(CI_ERR_INVALID, "comm: %d ranks outside [1, %d]", size, CI_COMM_MAX_RANKS);
    ci_comm *c = calloc(1, sizeof *c);
    if (!c) return ci_errorf(CI_ERR_NOMEM, "comm: out of memory");
    c->size = size;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    *out = c;
    return ci_ok();
}

void ci_comm_destroy(ci_comm *c) {
    if (!c) return;
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int ci_comm_size(const ci_comm *c) {
    return c ? c->size : 1;
}

int ci_comm_barrier(ci_comm *c) {
    if (!c || c->size <= 1) return 0;
    pthread_mutex_lock(&c->mu);
    int ok = !c->aborted;
    if (ok) {
        const unsigned long g = c->gen;
        if (++c->arrived == c->size) {
            c->arrived = 0;
            c->gen++;
            pthread_cond_broadcast(&c->cv);
        } else {
            while (c->gen == g && !c->aborted)
                pthread_cond_wait(&c->cv, &c->mu);
            ok = c->gen != g;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return ok ? 0 : -1;
}

void ci_comm_abort(ci_comm *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    const int first = !c->aborted;
    c->aborted = 1;
    pthread_cond_broadcast(&c->cv);
    int nh = 0;
    struct {
        void (*fn)(void *);
        void *arg;
    } hook[CI_COMM_MAX_RANKS];
    for (int r = 0; first && r < c->size; r++)
        if (c->hook[r].fn) {
            hook[nh].fn = c->hook[r].fn;
            hook[nh++].arg = c->hook[r].arg;
            c->hook[r].fn = NULL;
        }
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < nh; i++) /* outside the lock: a device abort may take a while */
        hook[i].fn(hook[i].arg);
}

void ci_comm_reset(ci_comm *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->aborted = 0;
    c->arrived = 0;
    for (int r = 0; r < c->size; r++)
        c->box[r].full = 0;
    c->epoch++; /* a device group is rebuilt from a new id */
    c->id_made = 0;
    pthread_mutex_unlock(&c->mu);
}

int ci_comm_aborted(ci_comm *c) {
    if (!c) return 0;
    pthread_mutex_lock(&c->mu);
    const int a = c->aborted;
    pthread_mutex_unlock(&c->mu);
    return a;
}

unsigned ci_comm_epoch(ci_comm *c) {
    if (!c) return 0;
    pthread_mutex_lock(&c->mu);
    const unsigned e = c->epoch;
    pthread_mutex_unlock(&c->mu);
    return e;
}

int ci_comm_device_id(ci_comm *c, unsigned epoch, void *out, size_t n,
                      int (*make)(void *id, size_t n)) {
    if (!c || n > CI_COMM_ID_BYTES) return -1;
    pthread_mutex_lock(&c->mu);
    int rc = c->aborted || c->epoch != epoch ? -1 : 0;
    if (!rc && !c->id_made) {
        rc = make(c->id, n);
        c->id_made = rc == 0;
    }
    if (!rc) memcpy(out, c->id, n);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void ci_comm_on_abort(ci_comm *c, int rank, void (*hook)(void *arg), void *arg) {
    if (!c || rank < 0 || rank >= c->size) return;
    pthread_mutex_lock(&c->mu);
    c->hook[rank].fn = hook;
    c->hook[rank].arg = arg;
    pthread_mutex_unlock(&c->mu);
}

int ci_comm_send(ci_comm *c, int src, int dst, const void *p, size_t n) {
    if (!c || dst < 0 || dst >= c->size || src < 0 || src >= c->size) return -1;
    pthread_mutex_lock(&c->mu);
    while (c->box[dst].full && !c->aborted) /* another sender to dst first */
        pthread_cond_wait(&c->cv, &c->mu);
    int ok = !c->aborted;
    if (ok) {
        c->box[dst].p = p;
        c->box[dst].n = n;
        c->box[dst].src = src;
        c->box[dst].full = 1;
        pthread_cond_broadcast(&c->cv);
        while (c->box[dst].full && c->box[dst].p == p && !c->aborted)
            pthread_cond_wait(&c->cv, &c->mu);
        ok = !(c->box[dst].full && c->box[dst].p == p); /* taken */
        if (!ok) c->box[dst].full = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return ok ? 0 : -1;
}

int ci_comm_recv(ci_comm *c, int dst, int src, void *p, size_t n) {
    if (!c || dst < 0 || dst >= c->size || src < 0 || src >= c->size) return -1;
    pthread_mutex_lock(&c->mu);
    while (!(c->box[dst].full && c->box[dst].src == src) && !c->aborted)
        pthread_cond_wait(&c->cv, &c->mu);
    int ok = !c->aborted && c->box[dst].n == n;
    if (ok) {
        memcpy(p, c->box[dst].p, n);
        c->box[dst].full = 0;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return ok ? 0 : -1;
}

int ci_comm_gather_cols_f32(ci_comm *c, int rank, int root, const float *part, int64_t rows,
                            int64_t cols, float *out, int64_t ldo) {
    if (!c || c->size <= 1) {
        for (int64_t r = 0; r < rows; r++)
            memcpy(out + r * ldo, part + r * cols, sizeof(float) * (size_t)cols);
        return 0;
    }
    c->buf[rank] = (float *)part;
    c->cols[rank] = cols;
    if (ci_comm_barrier(c)) return -1; /* every part posted */
    if (rank == root) {
        int64_t col0 = 0;
        for (int k = 0; k < c->size; k++) {
            for (int64_t r = 0; r < rows; r++)
                memcpy(out + r * ldo + col0, c->buf[k] + r * c->cols[k],
                       sizeof(float) * (size_t)c->cols[k]);
            col0 += c->cols[k];
        }
    }
    return ci_comm_barrier(c); /* the parts stay their ranks' until copied */
}

int ci_comm_all_reduce_f32(ci_comm *c, int rank, float *x, int64_t n) {
    if (!c || c->size <= 1) return 0;
    c->buf[rank] = x;
    if (ci_comm_barrier(c)) return -1; /* every buffer posted */
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
    return ci_comm_barrier(c); /* every slice written */
}
