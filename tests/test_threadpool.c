/* test_threadpool.c — every item of every run is processed exactly once,
 * across many back-to-back runs of varied sizes and grains (catches lost
 * wake-ups and late workers touching a finished run). */
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "test.h"
#include "util/threadpool.h"

typedef struct ctx {
    atomic_int *hits;
    int64_t n;
    atomic_int bad_tid;
    int nthreads;
} ctx;

static void task(void *vc, int64_t b, int64_t e, int tid) {
    ctx *c = vc;
    if (tid < 0 || tid >= c->nthreads || b < 0 || e > c->n || b >= e) atomic_store(&c->bad_tid, 1);
    for (int64_t i = b; i < e; i++)
        atomic_fetch_add(&c->hits[i], 1);
}

int main(void) {
    int sizes[4] = {1, 2, 3, 5};
    for (int si = 0; si < 4; si++) {
        ci_threadpool *tp;
        CHECK_OK(ci_threadpool_create(sizes[si], &tp));
        CHECK(ci_threadpool_size(tp) == sizes[si]);
        enum { N = 1000 };
        static atomic_int hits[N];
        ctx c = {hits, 0, 0, sizes[si]};
        int wrong = 0;
        for (int run = 0; run < 3000; run++) {
            int64_t n = 1 + (run * 7919) % N, grain = 1 + (run * 31) % 64;
            c.n = n;
            for (int64_t i = 0; i < n; i++)
                atomic_store(&hits[i], 0);
            ci_threadpool_run(tp, n, grain, task, &c);
            for (int64_t i = 0; i < n; i++)
                if (atomic_load(&hits[i]) != 1) wrong++;
            if (run % 500 == 0) { /* let the workers fall asleep sometimes */
                struct timespec ts = {0, 2000000};
                nanosleep(&ts, NULL);
            }
        }
        CHECKF(wrong == 0, "threads %d: %d items not processed exactly once", sizes[si], wrong);
        CHECK(atomic_load(&c.bad_tid) == 0);
        ci_threadpool_destroy(tp);
    }
    return test_finish("test_threadpool");
}
