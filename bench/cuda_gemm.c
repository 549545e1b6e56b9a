/* cuda_gemm.c — cuBLASLt's dense BF16 GEMMs as cinfer's CUDA backend runs
 * them, at the Llama-3-8B shape's four layer GEMMs and the token counts of
 * decode batches and of serving's mixed steps (a prompt of 128-384 tokens
 * beside up to ~64 decodes), eagerly, as an eager step runs them: which
 * algorithm a count gets decides up to 2x at some counts (docs/benchmarks).
 *
 * The algorithm choice is the process's (environment, read once):
 *   CINFER_GEMM_TUNE=0        cuBLASLt's heuristic first (eager steps' default)
 *   CINFER_GEMM_BUCKETS=1     each 32-row bucket's top count timed first (the
 *                             runner's startup tuning), then every count takes
 *                             its bucket's algorithm
 *   CINFER_GEMM_TUNE=2        every new count's fastest of 8, timed when made
 * usage: bench_cuda_gemm [counts...]   (default 48 128 192 256 302 320 384 448 512) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "util/progress.h"

#ifndef CINFER_HAVE_CUDA
int main(void) {
    fprintf(stderr, "bench_cuda_gemm: built without CUDA\n");
    return 1;
}
#else
#include "backend/cuda/cuda.h"

static const int shapes[4][2] = {{6144, 4096}, {4096, 4096}, {14336 * 2, 4096}, {4096, 14336}};
static const char *names[4] = {"q|k|v", "o", "gate|up", "down"};

typedef struct {
    ci_tensor w, x, y;
} gemm_bufs;

static int fail(ci_status s) {
    fprintf(stderr, "bench_cuda_gemm: %s\n", s.msg);
    return 1;
}

/* µs a call, 20 calls after one untimed (its plan made, timed or not) */
static double time_gemm(ci_backend *be, gemm_bufs *g, int n, int out, int in, ci_status *st) {
    ci_tensor x = g->x, y = g->y, w = g->w;
    x.rows = n;
    x.cols = in;
    y.rows = n;
    y.cols = out;
    w.rows = out;
    w.cols = in;
    *st = be->ops->matmul(be, &x, &w, NULL, &y);
    if (!st->code) *st = be->ops->sync(be);
    const double t0 = ci_now();
    for (int i = 0; i < 20 && !st->code; i++)
        *st = be->ops->matmul(be, &x, &w, NULL, &y);
    if (!st->code) *st = be->ops->sync(be);
    return (ci_now() - t0) / 20 * 1e6;
}

int main(int argc, char **argv) {
    if (ci_cuda_device_count() <= 0) {
        fprintf(stderr, "bench_cuda_gemm: no CUDA device\n");
        return 1;
    }
    int counts[64], nc = 0;
    for (int i = 1; i < argc && nc < 64; i++)
        if (atoi(argv[i]) > 0 && atoi(argv[i]) <= 4096) counts[nc++] = atoi(argv[i]);
    if (!nc) {
        const int def[] = {48, 128, 192, 256, 302, 320, 384, 448, 512};
        for (nc = 0; nc < 9; nc++)
            counts[nc] = def[nc];
    }
    int most = 0;
    for (int i = 0; i < nc; i++)
        most = counts[i] > most ? counts[i] : most;
    ci_backend_options o = {0, 0, CI_ACT_BF16};
    ci_backend *be = NULL;
    ci_status s = ci_backend_create("cuda", &o, &be);
    if (s.code) return fail(s);
    /* one buffer each, sized for the largest shape (zeros: the choice of
     * algorithm is what differs, not the values) */
    gemm_bufs g;
    s = be->ops->weight_alloc(be, CI_F32, 14336 * 2, 4096, &g.w);
    if (!s.code)
        s = be->ops->memset0(be, g.w.data, (size_t)14336 * 2 * 4096 * ci_dtype_size(g.w.dtype));
    if (!s.code) s = ci_tensor_alloc(be, CI_BF16, most, 14336, &g.x);
    if (!s.code) s = ci_tensor_alloc(be, CI_BF16, most, 14336 * 2, &g.y);
    if (!s.code) s = be->ops->memset0(be, g.x.data, (size_t)most * 14336 * 2);
    if (s.code) return fail(s);
    const char *t = getenv("CINFER_GEMM_TUNE");
    const char *mode = t && *t == '0'              ? "heuristic first"
                       : t && *t == '2'            ? "every count timed"
                       : ci_cuda_gemm_buckets_on() ? "bucket tops timed"
                                                   : "heuristic first (eager default)";
    if (ci_cuda_gemm_buckets_on() && !(t && (*t == '0' || *t == '2'))) {
        be->ops->tune_gemms(be, 1); /* the runner's startup tuning, at the tops */
        for (int i = 0; i < nc && !s.code; i++)
            for (int k = 0; k < 4 && !s.code; k++)
                (void)time_gemm(be, &g, (counts[i] + 31) / 32 * 32, shapes[k][0], shapes[k][1], &s);
        be->ops->tune_gemms(be, 0);
        if (s.code) return fail(s);
    }
    printf("cuBLASLt BF16, %s: µs a call (TFLOP/s)\n\n| rows |", mode);
    for (int k = 0; k < 4; k++)
        printf(" %s %d × %d |", names[k], shapes[k][0], shapes[k][1]);
    printf(" layer µs |\n|---|---|---|---|---|---|\n");
    for (int i = 0; i < nc; i++) {
        double sum = 0;
        printf("| %d |", counts[i]);
        for (int k = 0; k < 4; k++) {
            const double us = time_gemm(be, &g, counts[i], shapes[k][0], shapes[k][1], &s);
            if (s.code) return fail(s);
            sum += us;
            printf(" %.1f (%.0f) |", us, 2.0 * counts[i] * shapes[k][0] * shapes[k][1] / us / 1e6);
        }
        printf(" %.1f |\n", sum);
    }
    printf("(bucket plans taken: %lld)\n", ci_cuda_bucket_plans(be));
    ci_tensor_free(be, &g.w);
    ci_tensor_free(be, &g.x);
    ci_tensor_free(be, &g.y);
    ci_backend_destroy(be);
    return 0;
}
#endif
