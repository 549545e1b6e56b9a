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

/* Chunk index that marks a finished run in the ticket's low 32 bits. */
#define CI_TP_CLOSED 0xffffffffull

/* Spin iterations before a worker sleeps (~tens of microseconds). */
#define CI_TP_SPIN 4000

typedef struct worker {
    ci_threadpool *tp;
    int tid;
    pthread_t thread;
} worker;

/* A run is published as one 64-bit ticket: (generation << 32) | next chunk.
 * Threads claim chunks by CAS on the ticket, so a thread that wakes late
 * (a loaded machine) can never claim a chunk of a run that has moved on, and
 * the caller never waits for a thread that has not started: it runs every
 * unclaimed chunk itself and then waits only for chunks already claimed. */
struct ci_threadpool {
    int n;           /* threads including the caller */
    worker *workers; /* n - 1 */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_ullong ticket;
    atomic_int stop;
    atomic_llong done_chunks; /* chunks finished in the current run */
    /* current job: written before the ticket is published, stable until
     * every chunk of it is done */
    _Atomic int64_t job_chunks;
    int64_t job_n, job_grain;
    ci_task_fn job_fn;
    void *job_ctx;
};

static void work(ci_threadpool *tp, int tid, uint32_t gen) {
    for (;;) {
        unsigned long long t = atomic_load_explicit(&tp->ticket, memory_order_acquire);
        if ((uint32_t)(t >> 32) != gen) return;
        int64_t c = (int64_t)(uint32_t)t;
        if (c >= atomic_load_explicit(&tp->job_chunks, memory_order_relaxed)) return;
        if (!atomic_compare_exchange_weak(&tp->ticket, &t, t + 1)) continue;
        const int64_t b = c * tp->job_grain;
        const int64_t e = b + tp->job_grain < tp->job_n ? b + tp->job_grain : tp->job_n;
        tp->job_fn(tp->job_ctx, b, e, tid);
        atomic_fetch_add_explicit(&tp->done_chunks, 1, memory_order_release);
    }
}

static uint32_t ticket_gen(ci_threadpool *tp) {
    return (uint32_t)(atomic_load_explicit(&tp->ticket, memory_order_acquire) >> 32);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    ci_threadpool *tp = w->tp;
    uint32_t seen = ticket_gen(tp);
    for (;;) {
        int i = 0;
        while (ticket_gen(tp) == seen && !atomic_load(&tp->stop) && i < CI_TP_SPIN) {
            CI_PAUSE();
            i++;
        }
        if (ticket_gen(tp) == seen && !atomic_load(&tp->stop)) {
            pthread_mutex_lock(&tp->mu);
            while (ticket_gen(tp) == seen && !atomic_load(&tp->stop))
                pthread_cond_wait(&tp->cv, &tp->mu);
            pthread_mutex_unlock(&tp->mu);
        }
        if (atomic_load(&tp->stop)) break;
        seen = ticket_gen(tp);
        work(tp, w->tid, seen);
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
    atomic_init(&tp->ticket, CI_TP_CLOSED);
    atomic_init(&tp->stop, 0);
    atomic_init(&tp->done_chunks, 0);
    atomic_init(&tp->job_chunks, 0);
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
    for (int i = 0; i < tp->n - 1; i++)
        pthread_join(tp->workers[i].thread, NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv);
    free(tp->workers);
    free(tp);
}

int ci_threadpool_size(const ci_threadpool *tp) {
    return tp ? tp->n : 1;
}

void ci_threadpool_run(ci_threadpool *tp, int64_t n, int64_t grain, ci_task_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!tp || tp->n == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    if ((n + grain - 1) / grain >= (int64_t)UINT32_MAX)
        grain = n / (UINT32_MAX - 1) + 1; /* chunk indices fit below CI_TP_CLOSED */
    const int64_t chunks = (n + grain - 1) / grain;
    tp->job_n = n;
    tp->job_grain = grain;
    tp->job_fn = fn;
    tp->job_ctx = ctx;
    atomic_store_explicit(&tp->job_chunks, chunks, memory_order_relaxed);
    atomic_store_explicit(&tp->done_chunks, 0, memory_order_relaxed);
    const uint32_t gen = ticket_gen(tp) + 1;
    atomic_store_explicit(&tp->ticket, (unsigned long long)gen << 32, memory_order_release);
    pthread_mutex_lock(&tp->mu);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    work(tp, 0, gen);
    /* only chunks other threads claimed (and are running) remain */
    int i = 0;
    while (atomic_load_explicit(&tp->done_chunks, memory_order_acquire) < chunks) {
        if (++i < CI_TP_SPIN) {
            CI_PAUSE();
        } else {
            sched_yield();
        }
    }
    /* Close the run before the next one rewrites the job: a thread that read
     * the ticket of this run earlier can no longer claim a chunk with it. */
    atomic_store_explicit(&tp->ticket, ((unsigned long long)gen << 32) | CI_TP_CLOSED,
                          memory_order_release);
}
