#include "util/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CI_PAUSE() _mm_pause()
#else
#define CI_PAUSE() ((void)0)
#endif

/* Spin iterations before a worker sleeps (~tens of microseconds). */
#define CI_TP_SPIN 4000

typedef struct worker {
    ci_threadpool *tp;
    int tid;
    pthread_t thread;
} worker;

struct ci_threadpool {
    int n; /* threads including the caller */
    worker *workers; /* n - 1 */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;  /* bumped per run */
    atomic_int stop;
    atomic_int active; /* workers inside the current run */
    atomic_int closed; /* 1 once every chunk of the current run is claimed */
    atomic_llong next; /* next chunk start */
    /* current job, written before gen is bumped */
    int64_t job_n, job_grain;
    ci_task_fn job_fn;
    void *job_ctx;
};

static void work(ci_threadpool *tp, int tid) {
    const int64_t n = tp->job_n, grain = tp->job_grain;
    for (;;) {
        int64_t b = atomic_fetch_add(&tp->next, grain);
        if (b >= n) break;
        int64_t e = b + grain < n ? b + grain : n;
        tp->job_fn(tp->job_ctx, b, e, tid);
    }
}

static void *worker_main(void *arg) {
    worker *w = arg;
    ci_threadpool *tp = w->tp;
    unsigned seen = 0; /* gen at creation: a late-starting thread must not skip run 1 */
    for (;;) {
        int i = 0;
        while (atomic_load(&tp->gen) == seen && !atomic_load(&tp->stop) && i < CI_TP_SPIN) {
            CI_PAUSE();
            i++;
        }
        if (atomic_load(&tp->gen) == seen && !atomic_load(&tp->stop)) {
            pthread_mutex_lock(&tp->mu);
            while (atomic_load(&tp->gen) == seen && !atomic_load(&tp->stop))
                pthread_cond_wait(&tp->cv, &tp->mu);
            pthread_mutex_unlock(&tp->mu);
        }
        if (atomic_load(&tp->stop)) break;
        seen = atomic_load(&tp->gen);
        /* Enter the run only while it is open; a late worker (descheduled on
         * a busy machine) bounces off instead of making the caller wait. The
         * caller sets closed and then waits for active == 0, so a worker that
         * saw closed == 0 after active++ is always waited for. */
        atomic_fetch_add(&tp->active, 1);
        if (atomic_load(&tp->gen) == seen && !atomic_load(&tp->closed)) work(tp, w->tid);
        atomic_fetch_sub(&tp->active, 1);
    }
    return NULL;
}

ci_status ci_threadpool_create(int n_threads, ci_threadpool **out) {
    *out = NULL;
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    if (n_threads > 256) n_threads = 256;
    ci_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return ci_errorf(CI_ERR_NOMEM, "threadpool: out of memory");
    tp->n = n_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    atomic_init(&tp->gen, 0);
    atomic_init(&tp->stop, 0);
    atomic_init(&tp->active, 0);
    atomic_init(&tp->closed, 1);
    atomic_init(&tp->next, 0);
    if (n_threads > 1) {
        tp->workers = calloc((size_t)n_threads - 1, sizeof *tp->workers);
        if (!tp->workers) {
            free(tp);
            return ci_errorf(CI_ERR_NOMEM, "threadpool: out of memory");
        }
        for (int i = 0; i < n_threads - 1; i++) {
            tp->workers[i].tp = tp;
            tp->workers[i].tid = i + 1;
            if (pthread_create(&tp->workers[i].thread, NULL, worker_main, &tp->workers[i]) != 0) {
                tp->n = i + 1; /* keep the ones that started */
                break;
            }
        }
    }
    *out = tp;
    return ci_ok();
}

void ci_threadpool_destroy(ci_threadpool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->stop, 1);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 0; i < tp->n - 1; i++) pthread_join(tp->workers[i].thread, NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv);
    free(tp->workers);
    free(tp);
}

int ci_threadpool_size(const ci_threadpool *tp) { return tp ? tp->n : 1; }

void ci_threadpool_run(ci_threadpool *tp, int64_t n, int64_t grain, ci_task_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!tp || tp->n == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    tp->job_n = n;
    tp->job_grain = grain;
    tp->job_fn = fn;
    tp->job_ctx = ctx;
    atomic_store(&tp->next, 0);
    atomic_store(&tp->closed, 0);
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add(&tp->gen, 1);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    work(tp, 0); /* returns once every chunk is claimed */
    atomic_store(&tp->closed, 1);
    int i = 0;
    while (atomic_load(&tp->active) > 0) {
        if (++i < CI_TP_SPIN) {
            CI_PAUSE();
        } else {
            sched_yield();
        }
    }
}
