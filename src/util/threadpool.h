/* threadpool.h — a fixed pool of pthreads for data-parallel loops.
 *
 * Created once; ci_threadpool_run() hands out [0, n) in chunks of `grain`
 * through an atomic counter, so threads that are late (a shared machine)
 * simply take fewer chunks. The caller is thread 0 and works too. Nothing is
 * allocated per run. Workers spin briefly between runs (the ops of a forward
 * pass come back to back), then sleep on a condition variable. */
#ifndef CINFER_UTIL_THREADPOOL_H
#define CINFER_UTIL_THREADPOOL_H

#include <stdint.h>

#include "util/status.h"

typedef struct ci_threadpool ci_threadpool;

/* fn processes items [begin, end); tid in [0, ci_threadpool_size()). */
typedef void (*ci_task_fn)(void *ctx, int64_t begin, int64_t end, int tid);

/* n_threads <= 0: all online CPUs. */
ci_status ci_threadpool_create(int n_threads, ci_threadpool **out);
void ci_threadpool_destroy(ci_threadpool *tp);
int ci_threadpool_size(const ci_threadpool *tp);

/* Runs fn over [0, n) in chunks of grain (>= 1) and returns when all are
 * done. Not reentrant: call from one thread at a time. */
void ci_threadpool_run(ci_threadpool *tp, int64_t n, int64_t grain, ci_task_fn fn, void *ctx);

#endif
