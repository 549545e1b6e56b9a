/* test_cuda_quant.c — the CUDA quantized matmul (cuda_qmatmul.cu: INT4 / FP8
 * GEMVs; the INT4 warpgroup-MMA GEMM, cuda_qgemm_int4.cu; dequantize +
 * cuBLASLt GEMM above) against
 * its CPU twin (cpu_qmatmul.c) on random quantized weights: INT4 with group
 * sizes 128 / 32 / one per row, zero points 0..16, act-order g_idx differing
 * per fused part or shared (stored sorted by group, x gathered); FP8 with 128-column blocks (a
 * partial last block) and per channel; n from 1 to 300 (each path: GEMV, tensor-core GEMV per 8
 * rows, dequantize + cuBLASLt); with and without bias; BF16 (norm-wise relative error <= 1e-2, and
 * accumulate into y exact without a bias) and F32
 * (<= 1e-5) activations. GPU outputs are poisoned
 * with NaN first, so an element the kernel does not write fails. W8A8 cases
 * (per token x channel, 1x128 x 128x128 blocks) run the FP8 GEMM from n = 5.
 * Prints, on Llama-3-8B's gate/up, o_proj and down_proj shapes, the GEMV's
 * weight bandwidth (each kernel), the bf16 vs FP8 W8A8 GEMM rates and the
 * INT4 GEMM's against bf16 and the paths before it, n = 16 .. 512
 * (CINFER_TEST_ONLY_GEMM=1: the BF16 checks and that table alone;
 * CINFER_TEST_GEMV_ONLY=S: no checks, the GEMV benches whose label has S).
 * The GEMV bench cycles copies of the weight past the L2, as a model's
 * layers do.
 * Skips (exit 77) without CUDA or without a GPU. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "test.h"

#ifndef CINFER_HAVE_CUDA
int main(void) {
    test_skip("built without CUDA");
    return 77;
}
#else
#include "act_io.h"
#include "engine/generate.h" /* ci_now */
#include "qweight_test.h"
#include "util/half.h"

static ci_backend *cpu, *gpu;
static int bf;
static int yf32; /* BF16 x, F32 y (a matmul's F32 output: the logits) */

static void check_case(const ci_qweight *h, int n, int with_bias, const char *what) {
    ci_tensor wc, wg, xc, xg, yc, yg, bc = {0}, bg = {0};
    CHECK_OK(cpu->ops->qweight_create(cpu, h, &wc));
    CHECK_OK(gpu->ops->qweight_create(gpu, h, &wg));
    CHECK_OK(ci_tensor_alloc(cpu, CI_F32, n, h->cols, &xc));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, n, h->cols, &xg));
    CHECK_OK(ci_tensor_alloc(cpu, CI_F32, n, h->rows, &yc));
    CHECK_OK(ci_tensor_alloc(gpu, yf32 ? CI_F32 : gpu->act_dtype, n, h->rows, &yg));
    const int ybf = yg.dtype == CI_BF16;
    float *x = xc.data;
    for (int64_t i = 0; i < n * h->cols; i++) {
        float f = frand();
        x[i] = bf ? ci_bf16_to_f32(ci_f32_to_bf16(f)) : f;
    }
    act_upload(gpu, &xg, x, n * h->cols);
    size_t ybytes = (size_t)(n * h->rows) * ci_dtype_size(yg.dtype);
    void *nan = malloc(ybytes);
    memset(nan, 0xff, ybytes);
    CHECK_OK(gpu->ops->to_device(gpu, yg.data, nan, ybytes));
    free(nan);
    if (with_bias) {
        CHECK_OK(ci_tensor_alloc(cpu, CI_F32, 1, h->rows, &bc));
        CHECK_OK(ci_tensor_alloc(gpu, CI_F32, 1, h->rows, &bg));
        for (int64_t i = 0; i < h->rows; i++)
            ((float *)bc.data)[i] = frand();
        CHECK_OK(gpu->ops->to_device(gpu, bg.data, bc.data, sizeof(float) * (size_t)h->rows));
    }
    CHECK_OK(cpu->ops->matmul(cpu, &xc, &wc, with_bias ? &bc : NULL, &yc));
    CHECK_OK(gpu->ops->matmul(gpu, &xg, &wg, with_bias ? &bg : NULL, &yg));
    CHECK_OK(gpu->ops->sync(gpu));
    int64_t ne = n * h->rows;
    void *buf = malloc(ybytes);
    CHECK_OK(gpu->ops->to_host(gpu, buf, yg.data, ybytes));
    double num = 0, den = 0;
    for (int64_t i = 0; i < ne; i++) {
        double g = ybf ? ci_bf16_to_f32(((uint16_t *)buf)[i]) : ((float *)buf)[i];
        double c = ((float *)yc.data)[i];
        num += (g - c) * (g - c);
        den += c * c;
    }
    double err = isnan(num) ? INFINITY : sqrt(num / den);
    /* W8A8 in f32: the FP8 tensor cores' products are exact, their sums
     * are not f32's (measured 2.3e-4 on the H200) */
    double tol = bf ? 1e-2 : h->act_group && n >= CI_QW_ACT_MIN_ROWS ? 1e-3 : 1e-5;
    CHECKF(err <= tol, "[%s%s] %s n=%d bias=%d: rel err %.3g > %.0e", bf ? "bf16" : "f32",
           ybf || !bf ? "" : ", f32 out", what, n, with_bias, err, tol);
    /* accumulate (the decode layer's o / down into the residual): the same
     * product rounded, then added to y = that product, doubles y exactly.
     * Without a bias only: the cuBLASLt path adds a bias after the
     * accumulate, in its own rounding (no model accumulates with a bias).
     * A BF16 y only: matmul_fused takes y in the activation dtype (the
     * residual), never the F32 logits. */
    if (bf && ybf && !with_bias && !(h->act_group && n >= CI_QW_ACT_MIN_ROWS)) {
        ci_matmul_fused a = {
            .x = &xg, .w = &wg, .bias = with_bias ? &bg : NULL, .accumulate = 1, .y = &yg};
        CHECK_OK(gpu->ops->matmul_fused(gpu, &a));
        void *y2 = malloc(ybytes);
        CHECK_OK(gpu->ops->to_host(gpu, y2, yg.data, ybytes));
        int64_t bad = 0;
        for (int64_t i = 0; i < ne; i++)
            bad += ybf ? ci_bf16_to_f32(((uint16_t *)y2)[i]) !=
                             2.0f * ci_bf16_to_f32(((uint16_t *)buf)[i])
                       : ((float *)y2)[i] != 2.0f * ((float *)buf)[i];
        CHECKF(bad == 0, "[bf16] %s n=%d bias=%d accumulate: %lld of %lld not doubled", what, n,
               with_bias, (long long)bad, (long long)ne);
        free(y2);
    }
    free(buf);
    cpu->ops->qweight_free(cpu, &wc);
    gpu->ops->qweight_free(gpu, &wg);
    ci_tensor_free(cpu, &xc);
    ci_tensor_free(gpu, &xg);
    ci_tensor_free(cpu, &yc);
    ci_tensor_free(gpu, &yg);
    if (with_bias) {
        ci_tensor_free(cpu, &bc);
        ci_tensor_free(gpu, &bg);
    }
}

/* CINFER_TEST_GEMV_ONLY=S: only the GEMV benches whose label holds S */
static int gemv_bench_wanted(const char *label) {
    const char *only = getenv("CINFER_TEST_GEMV_ONLY");
    return !(only && *only && !strstr(label, only));
}
/* the packed weight and scale (INT4: and zero-point) bytes of h */
static double gemv_bytes(const ci_qweight *h) {
    const int i4 = h->format == CI_QW_INT4;
    return (double)h->rows * (i4 ? h->cols / 2 : h->cols) +
           (double)h->rows * h->ngroups * (i4 ? 5 : 4);
}
/* copies of a weight of these bytes cycled so that their bytes are 4x the
 * 50 MB L2, as a model's successive layers are: a weight that fits in L2
 * would otherwise be read from it (at most GEMV_MAXC) */
enum { GEMV_MAXC = 32 };
static int gemv_copies(double bytes) {
    const int nc = (int)(200e6 / bytes) + 1;
    return nc > GEMV_MAXC ? GEMV_MAXC : nc;
}

/* GB/s of packed weight bytes streamed by the n = 1 GEMV. */
static void bench_gemv(int fmt, int rows, int cols, const char *kernel) {
    char label[96];
    const char *fn = fmt == CI_QW_INT4 ? "int4" : fmt == CI_QW_INT8 ? "int8" : "fp8";
    snprintf(label, sizeof label, "%s %dx%d %s", fn, rows, cols, kernel);
    if (!gemv_bench_wanted(label)) return;
    ci_cu_qgemv_select(kernel);
    /* CINFER_TEST_GEMV_GROUP=G: groups of G columns (0: one a row), not 128 */
    const char *ge = getenv("CINFER_TEST_GEMV_GROUP");
    const int gs = ge && *ge ? (atoi(ge) > 0 ? atoi(ge) : cols) : 128;
    ci_qweight h = make_qw(fmt, rows, cols, gs, 1, 0);
    const double bytes = gemv_bytes(&h);
    const int nc = gemv_copies(bytes);
    ci_tensor w[GEMV_MAXC], x, y;
    for (int c = 0; c < nc; c++)
        CHECK_OK(gpu->ops->qweight_create(gpu, &h, &w[c]));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, 1, h.cols, &x));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, 1, h.rows, &y));
    CHECK_OK(gpu->ops->memset0(gpu, x.data, (size_t)h.cols * ci_dtype_size(x.dtype)));
    for (int i = 0; i < nc; i++)
        CHECK_OK(gpu->ops->matmul(gpu, &x, &w[i], NULL, &y));
    CHECK_OK(gpu->ops->sync(gpu));
    const int reps = nc * (50 / nc + 1);
    double t0 = ci_now();
    for (int i = 0; i < reps; i++)
        CHECK_OK(gpu->ops->matmul(gpu, &x, &w[i % nc], NULL, &y));
    CHECK_OK(gpu->ops->sync(gpu));
    double dt = (ci_now() - t0) / reps;
    printf("  %s GEMV %dx%d g%d, n=1 (%s, %s, %d copies): %.1f us, %.0f GB/s\n", fn, rows, cols, gs,
           bf ? "bf16" : "f32", kernel, nc, dt * 1e6, bytes / dt / 1e9);
    ci_cu_qgemv_select(NULL);
    for (int c = 0; c < nc; c++)
        gpu->ops->qweight_free(gpu, &w[c]);
    ci_tensor_free(gpu, &x);
    ci_tensor_free(gpu, &y);
    free_qw(&h);
}

/* A decode layer's gate|up as the model runs it (BF16 only): the fused op
 * (RMSNorm deferred into the GEMV, SwiGLU as its epilogue: rows / 2 out)
 * against the plain GEMV of the same weight, n = 1, copies cycled as
 * bench_gemv's; INT4 GPTQ g128, FP8 one scale a row. What the fused kernel
 * costs above the plain one is its prologue and epilogue. */
static void bench_gemv_fused(int fmt, int rows, int cols) {
    char label[96];
    const char *fn = fmt == CI_QW_INT4 ? "int4" : "fp8";
    snprintf(label, sizeof label, "%s %dx%d fused", fn, rows, cols);
    if (!bf || !gemv_bench_wanted(label)) return;
    const int gs = fmt == CI_QW_INT4 ? 128 : cols; /* as the checkpoints: GPTQ g128, FP8 per row */
    ci_qweight h = make_qw(fmt, rows, cols, gs, 2, 0);
    const double bytes = gemv_bytes(&h);
    const int nc = gemv_copies(bytes);
    ci_tensor w[GEMV_MAXC], x, y, yh, nw, sc;
    for (int c = 0; c < nc; c++)
        CHECK_OK(gpu->ops->qweight_create(gpu, &h, &w[c]));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, 1, h.cols, &x));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, 1, h.cols, &sc));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, 1, h.rows, &y));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, 1, h.rows / 2, &yh));
    CHECK_OK(ci_tensor_alloc(gpu, CI_F32, 1, h.cols, &nw));
    CHECK_OK(gpu->ops->memset0(gpu, x.data, (size_t)h.cols * ci_dtype_size(x.dtype)));
    CHECK_OK(gpu->ops->memset0(gpu, nw.data, (size_t)h.cols * 4));
    ci_matmul_fused a = {.x = &x,
                         .pro = CI_MM_PRO_RMSNORM,
                         .norm_w = &nw,
                         .eps = 1e-5f,
                         .y = &yh,
                         .scratch = &sc,
                         .swiglu = 1};
    a.w = &w[0];
    const int fused = gpu->ops->matmul_swiglu_ok && gpu->ops->matmul_swiglu_ok(gpu, &a);
    double dt[2] = {0, 0};
    for (int v = 0; v < 1 + fused; v++) {
        const int reps = nc * (50 / nc + 1);
        double t0 = 0;
        for (int i = -nc; i < reps; i++) { /* one round of copies to warm up */
            if (i == 0) {
                CHECK_OK(gpu->ops->sync(gpu));
                t0 = ci_now();
            }
            const int c = (i + nc) % nc;
            if (v) {
                a.w = &w[c];
                CHECK_OK(gpu->ops->matmul_fused(gpu, &a));
            } else {
                CHECK_OK(gpu->ops->matmul(gpu, &x, &w[c], NULL, &y));
            }
        }
        CHECK_OK(gpu->ops->sync(gpu));
        dt[v] = (ci_now() - t0) / reps;
    }
    printf("  %s GEMV %dx%d g%d, n=1 gate|up (bf16, %d copies): plain %.1f us (%.0f GB/s), "
           "norm + SwiGLU fused %.1f us (%.0f GB/s)\n",
           fn, rows, cols, gs, nc, dt[0] * 1e6, bytes / dt[0] / 1e9, dt[1] * 1e6,
           dt[1] > 0 ? bytes / dt[1] / 1e9 : 0.0);
    CHECKF(fused, "%s: the fused gate|up not taken", label);
    for (int c = 0; c < nc; c++)
        gpu->ops->qweight_free(gpu, &w[c]);
    ci_tensor *all[] = {&x, &y, &yh, &nw, &sc};
    for (int i = 0; i < 5; i++)
        ci_tensor_free(gpu, all[i]);
    free_qw(&h);
}

/* Seconds per product of x [n][cols] with a zero BF16 dense [rows][cols]
 * weight (t[0], cuBLASLt) and with the quantized h (t[1 .. nv - 1]; pre(v),
 * when given, picks the path of variant v first). */
static void time_vs_dense(const ci_qweight *h, int n, int nv, void (*pre)(int), double *t) {
    const int64_t rows = h->rows, cols = h->cols;
    ci_tensor wq, wd, x, y;
    CHECK_OK(gpu->ops->qweight_create(gpu, h, &wq));
    CHECK_OK(ci_tensor_alloc(gpu, CI_BF16, rows, cols, &wd));
    CHECK_OK(ci_tensor_alloc(gpu, CI_BF16, n, cols, &x));
    CHECK_OK(ci_tensor_alloc(gpu, CI_BF16, n, rows, &y));
    CHECK_OK(gpu->ops->memset0(gpu, wd.data, (size_t)(rows * cols) * 2));
    float *xf = malloc(sizeof(float) * (size_t)(n * cols));
    for (int64_t i = 0; i < n * cols; i++)
        xf[i] = frand();
    act_upload(gpu, &x, xf, n * cols);
    free(xf);
    for (int v = 0; v < nv; v++) {
        ci_tensor *w = v ? &wq : &wd;
        if (pre) pre(v);
        for (int i = 0; i < 3; i++)
            CHECK_OK(gpu->ops->matmul(gpu, &x, w, NULL, &y));
        CHECK_OK(gpu->ops->sync(gpu));
        enum { REPS = 20 };
        double t0 = ci_now();
        for (int i = 0; i < REPS; i++)
            CHECK_OK(gpu->ops->matmul(gpu, &x, w, NULL, &y));
        CHECK_OK(gpu->ops->sync(gpu));
        t[v] = (ci_now() - t0) / REPS;
    }
    gpu->ops->qweight_free(gpu, &wq);
    ci_tensor_free(gpu, &wd);
    ci_tensor_free(gpu, &x);
    ci_tensor_free(gpu, &y);
}

/* The prefill / large-batch GEMM of a [rows][cols] weight at n tokens: bf16
 * dense (cuBLASLt) vs FP8 W8A8 per channel (activation quantization + the
 * FP8 GEMM), TFLOP/s of 2 n rows cols. */
static void bench_gemm(int rows, int cols, int n) {
    ci_qweight h = make_qw(CI_QW_FP8, rows, cols, cols, 1, 0);
    h.act_group = cols;
    double t[2];
    time_vs_dense(&h, n, 2, NULL, t);
    double fl = 2.0 * n * rows * cols;
    printf("  GEMM %dx%d n=%d: bf16 %.1f us (%.0f TFLOP/s), fp8 w8a8 %.1f us (%.0f TFLOP/s), "
           "%.2fx\n",
           rows, cols, n, t[0] * 1e6, fl / t[0] / 1e12, t[1] * 1e6, fl / t[1] / 1e12, t[0] / t[1]);
    free_qw(&h);
}

/* variant 1: the paths without the INT4 warpgroup-MMA GEMM; 2: that GEMM */
static void int4_path(int v) {
    ci_cu_qgemm_int4_range(1, v == 2 ? 512 : 0);
}

/* The INT4 weight's product at n tokens: bf16 dense (cuBLASLt), INT4 by the
 * paths without the warpgroup-MMA GEMM (the tc GEMV per 8 rows up to 32,
 * dequantize + cuBLASLt above) and by that GEMM; us and TFLOP/s of
 * 2 n rows cols. */
static void bench_int4_gemm(int rows, int cols, int n) {
    ci_qweight h = make_qw(CI_QW_INT4, rows, cols, 128, 1, 0);
    double t[3];
    time_vs_dense(&h, n, 3, int4_path, t);
    ci_cu_qgemm_int4_range(-1, -1);
    double fl = 2.0 * n * rows * cols;
    printf("  INT4 GEMM %dx%d n=%d: bf16 %.1f us (%.0f TFLOP/s), int4 old %.1f us (%.0f), "
           "int4 wgmma %.1f us (%.0f TFLOP/s, %.0f GB/s of weights), %.2fx old, %.2fx bf16\n",
           rows, cols, n, t[0] * 1e6, fl / t[0] / 1e12, t[1] * 1e6, fl / t[1] / 1e12, t[2] * 1e6,
           fl / t[2] / 1e12, (double)rows * cols * 0.5 / t[2] / 1e9, t[1] / t[2], t[0] / t[2]);
    free_qw(&h);
}

int main(void) {
    if (ci_cuda_device_count() <= 0) test_skip("no CUDA device");
    CHECK_OK(ci_backend_create("cpu", NULL, &cpu));
    int ns[] = {1, 2, 3, 4, 5, 8, 13, 24, 32, 33, 64, 100, 300};
    for (int m = 0; m < 2; m++) {
        ci_backend_options o = {0, 0, m == 0 ? CI_ACT_BF16 : CI_ACT_F32};
        ci_status s = ci_backend_create("cuda", &o, &gpu);
        CHECK_OK(s);
        if (s.code) break;
        bf = gpu->act_dtype == CI_BF16;
        /* CINFER_TEST_ONLY_BENCH=1: the timings alone (for a profiler) */
        const char *ob = getenv("CINFER_TEST_ONLY_BENCH");
        const char *go = getenv("CINFER_TEST_GEMV_ONLY");
        if (go && *go) ob = "1";
        for (size_t k = 0; k < (ob && *ob == '1' ? 0 : QWT_NCASES); k++) {
            ci_qweight h = make_case(&k_qwt_cases[k]);
            /* the row-major layout first (tiling is the BF16 INT4 default) */
            setenv("CINFER_QW_TILE", "0", 1);
            for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
                check_case(&h, ns[j], (int)(j & 1), k_qwt_cases[k].what);
            /* INT8 W8A8 past the rows of one INT8 GEMM (CUDA runs it in
             * chunks of 512 rows of x through an int32 scratch) */
            if (h.format == CI_QW_INT8 && h.act_group) check_case(&h, 1100, 1, k_qwt_cases[k].what);
            if (h.format == CI_QW_FP8 &&
                k_qwt_cases[k].act <
                    0) { /* per token: a static scale (AutoFP8), x / s saturating */
                h.act_scale = 0.5f / 448.0f;
                for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
                    check_case(&h, ns[j], (int)(j & 1), "fp8 w8a8, a static activation scale");
                h.act_scale = 0.0f;
            }
            /* every GEMV kernel (one whose preconditions the case misses
             * falls back to the next, still checked) at the decode sizes */
            const char *gk[6] = {"tc", "tc4", "tc2", "split", "vec", "scalar"};
            for (int v = 0; v < 6; v++) {
                ci_cu_qgemv_select(gk[v]);
                for (int n = 1; n <= 4; n++)
                    check_case(&h, n, n & 1, k_qwt_cases[k].what);
            }
            ci_cu_qgemv_select(NULL);
            unsetenv("CINFER_QW_TILE");
            /* INT4 in the tiled layout where the weight takes it (BF16):
             * tc / tc2 for the GEMV and, once per 8 rows, up to 32 rows; the
             * tiles' dequantization above */
            if (h.format == CI_QW_INT4) {
                for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
                    check_case(&h, ns[j], (int)(j & 1), k_qwt_cases[k].what);
                /* past the INT4 GEMM's rows: the tiles (interleaved nibbles)
                 * dequantized for cuBLASLt */
                check_case(&h, 600, 1, k_qwt_cases[k].what); /* > CI_CU_QGEMM_MAX_N */
                ci_cu_qgemv_select("tc2");
                check_case(&h, 1, 1, k_qwt_cases[k].what);
                ci_cu_qgemv_select(NULL);
            }
            free_qw(&h);
        }
        /* rows longer than the tiles a CTA's warps hold at once, with group
         * scales: each rolling slot of the tc GEMVs reloads (weights and
         * scales) many times; more 16-row blocks than the GPU's SMs (2-3 per
         * SM: tc's build for 3 CTAs an SM); the INT4 cases row-major and
         * tiled */
        const qwt_case lng[] = {
            {CI_QW_FP8, 2000, 8192, 128, 1, 0, "fp8 g128, 8192 columns (16 tiles a warp)", 0},
            {CI_QW_INT4, 2000, 16384, 128, 2, 0, "int4 g128, 16384 columns (16 tiles a warp)", 0},
            /* 384 blocks: 2-3 per SM of an H200, tc's 3-CTAs-an-SM build */
            {CI_QW_INT4, 6144, 1024, 128, 3, 0, "int4 g128, 384 16-row blocks", 0},
            /* the 8-bit GEMV's one-wave build (auto) at 2-3 blocks an SM */
            {CI_QW_FP8, 6144, 1024, 128, 3, 0, "fp8 g128, 384 16-row blocks", 0},
            {CI_QW_INT8, 6144, 1024, 128, 3, 0, "int8 g128, 384 16-row blocks", 0},
            /* the multi-block 8-bit GEMV (below): 3 blocks a CTA, 2 in the last */
            {CI_QW_FP8, 992, 4096, 4096, 2, 0, "fp8 per row, 4096 columns, 62 blocks", 0},
            {CI_QW_INT8, 992, 4096, 128, 1, 0, "int8 g128, 4096 columns, 62 blocks", 0},
            /* INT4 at 62 blocks of 4096 columns, 2 parts (no multiple of the SMs) */
            {CI_QW_INT4, 992, 4096, 128, 2, 0, "int4 g128, 4096 columns, 62 blocks", 0},
        };
        for (size_t k = 0; !(ob && *ob == '1') && k < sizeof lng / sizeof lng[0]; k++) {
            ci_qweight h = make_case(&lng[k]);
            for (int tile = 0; tile < 2; tile++) {
                setenv("CINFER_QW_TILE", tile ? "1" : "0", 1);
                for (int n = 1; n <= 8; n++)
                    check_case(&h, n, n & 1, lng[k].what);
            }
            unsetenv("CINFER_QW_TILE");
            /* the 8-bit GEMV with 3 16-row blocks a CTA (CINFER_QGEMV_MB),
             * each slot's loads running across a block's end; the last CTA
             * with fewer blocks */
            if (h.format == CI_QW_FP8 || h.format == CI_QW_INT8) {
                ci_cu_qgemv_mb(2);
                for (int n = 1; n <= 2; n++)
                    check_case(&h, n, n & 1, lng[k].what);
                ci_cu_qgemv_mb(-1);
                /* and with each warp owning whole blocks (CINFER_QGEMV_WPB:
                 * one CTA, its 8 warps striding over the 62-384 blocks) */
                ci_cu_qgemv_wpb(3);
                for (int n = 1; n <= 2; n++)
                    check_case(&h, n, n & 1, lng[k].what);
                ci_cu_qgemv_wpb(-1);
            }
            free_qw(&h);
        }
        /* the INT4 warpgroup-MMA GEMM (Hopper; elsewhere the paths above):
         * BN 64 and 128 token tiles with partial ones, a partial CTA of
         * rows, split K (its partials summed) and none, an odd number of
         * 128-column tiles, group and per-row scales; forced down to n = 1 */
        const qwt_case gm[] = {
            {CI_QW_INT4, 1040, 2048, 128, 2, 0, "int4 g128 gemm, 65 blocks, split K", 0},
            {CI_QW_INT4, 512, 1152, 1152, 3, 0, "int4 per row gemm, 9 tiles", 0},
            {CI_QW_INT4, 17408, 256, 128, 2, 0, "int4 g128 gemm, 136 row tiles", 0},
            {CI_QW_INT4, 256, 16384, 256, 1, 0, "int4 g256 gemm, 128 tiles", 0},
            {CI_QW_INT4, 384, 640, 128, 1, 0, "int4 g128 gemm, 5 tiles", 0},
        };
        const int gmn[] = {1, 7, 33, 64, 65, 100, 128, 129, 200, 256, 300, 512};
        ci_cu_qgemm_int4_range(1, 512);
        for (size_t k = 0; bf && !(ob && *ob == '1') && k < sizeof gm / sizeof gm[0]; k++) {
            ci_qweight h = make_case(&gm[k]);
            for (size_t j = 0; j < sizeof gmn / sizeof gmn[0]; j++)
                check_case(&h, gmn[j], (int)(j & 1), gm[k].what);
            /* an F32 output (the kernel's float instantiation), split K and not */
            yf32 = 1;
            check_case(&h, 40, 0, gm[k].what);
            check_case(&h, 129, 1, gm[k].what);
            yf32 = 0;
            free_qw(&h);
        }
        ci_cu_qgemm_int4_range(-1, -1);
        /* a weight whose dequantized copy is past the prefill scratch's cap
         * (CINFER_QSCRATCH_CAP_MB=0 at its load, on a backend of its own:
         * the scratch holds the INT4 GEMM's workspace alone): x of more
         * rows than one GEMM launch takes runs it in chunks of 512, a
         * remainder below its smallest (1029 = 2 x 512 + 5) through the
         * tensor-core GEMV passes; plain and a sorted act order */
        if (bf && !(ob && *ob == '1')) {
            ci_backend *keep = gpu;
            ci_backend_options o2 = {0, 0, CI_ACT_BF16};
            CHECK_OK(ci_backend_create("cuda", &o2, &gpu));
            const qwt_case big[] = {
                {CI_QW_INT4, 16384, 1024, 128, 2, 0, "int4 g128, no dequantized copy", 0},
                {CI_QW_INT4, 16384, 1024, 128, 2, 2, "int4 g128 act order, no dequantized copy", 0},
            };
            setenv("CINFER_QSCRATCH_CAP_MB", "0", 1);
            for (size_t k = 0; gpu && k < sizeof big / sizeof big[0]; k++) {
                ci_qweight h = make_case(&big[k]);
                check_case(&h, 600, 1, big[k].what);
                check_case(&h, 1029, 0, big[k].what);
                free_qw(&h);
            }
            unsetenv("CINFER_QSCRATCH_CAP_MB");
            if (gpu) ci_backend_destroy(gpu);
            gpu = keep;
        }
        /* FP8 W8A8 per token x channel through the skinny GEMM's E4M3 form
         * (CINFER_SKINNY, Hopper; a backend of its own): 5-128 rows, split
         * tiles, both tile heights; the cases must have taken it (its call
         * count), elsewhere this says it is off */
        if (bf && !(ob && *ob == '1')) {
            ci_backend *keep = gpu;
            const qwt_case sk[] = {
                {CI_QW_FP8, 384, 512, 512, 3, 0, "fp8 w8a8 per token x channel, skinny", -1},
                {CI_QW_FP8, 4112, 2048, 2048, 2, 0, "fp8 w8a8 4112 x 2048, skinny (split tiles)",
                 -1},
            };
            const int skn[] = {5, 8, 13, 24, 33, 64, 100, 128};
            for (int rows = 128; rows <= 256; rows += 128) {
                ci_backend_options o2 = {0, 0, CI_ACT_BF16};
                setenv("CINFER_SKINNY", "128", 1);
                setenv("CINFER_SKINNY_ROWS", rows == 256 ? "256" : "128", 1);
                CHECK_OK(ci_backend_create("cuda", &o2, &gpu));
                unsetenv("CINFER_SKINNY");
                unsetenv("CINFER_SKINNY_ROWS");
                const long long c0 = gpu ? ci_cuda_skinny_calls(gpu) : 0;
                for (size_t k = 0; gpu && k < sizeof sk / sizeof sk[0]; k++) {
                    ci_qweight h = make_case(&sk[k]);
                    for (size_t j = 0; j < sizeof skn / sizeof skn[0]; j++)
                        check_case(&h, skn[j], (int)(j & 1), sk[k].what);
                    free_qw(&h);
                }
                if (gpu && !ci_cuda_skinny_on(gpu))
                    printf("fp8 w8a8 skinny: off on this GPU (not compute 9.0)\n");
                else if (gpu)
                    CHECKF(ci_cuda_skinny_calls(gpu) - c0 == 2 * 8,
                           "fp8 w8a8 skinny, %d-row tiles: %lld GEMMs of 16", rows,
                           ci_cuda_skinny_calls(gpu) - c0);
                if (gpu) ci_backend_destroy(gpu);
            }
            gpu = keep;
        }
        /* INT8 weights (W8A16 on this backend: the dequantizing GEMVs, then
         * dequantize + dense GEMM), every size and GEMV kernel; 260 columns
         * leave the vectorized kernels to the per-word one */
        const qwt_case i8[] = {
            {CI_QW_INT8, 200, 512, 512, 1, 0, "int8 per channel", 0},
            {CI_QW_INT8, 96, 260, 260, 3, 0, "int8 per channel, 3 parts, 260 columns", 0},
            {CI_QW_INT8, 8200, 1024, 1024, 2, 0, "int8 per channel, tall", 0},
        };
        for (size_t k = 0; !(ob && *ob == '1') && k < sizeof i8 / sizeof i8[0]; k++) {
            ci_qweight h = make_case(&i8[k]);
            for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
                check_case(&h, ns[j], (int)(j & 1), i8[k].what);
            const char *gk[3] = {"split", "vec", "scalar"};
            for (int v = 0; v < 3; v++) {
                ci_cu_qgemv_select(gk[v]);
                for (int n = 1; n <= 4; n++)
                    check_case(&h, n, n & 1, i8[k].what);
            }
            ci_cu_qgemv_select(NULL);
            free_qw(&h);
        }
        /* a row the 32-bit words cannot tile is refused at create */
        ci_qweight odd = make_qw(CI_QW_INT4, 8, 12, 12, 1, 0);
        ci_tensor t;
        CHECK(gpu->ops->qweight_create(gpu, &odd, &t).code == CI_ERR_UNSUPPORTED);
        free_qw(&odd);
        /* Llama-3-8B's fused gate/up, its o_proj, down_proj and qkv shapes
         * (CINFER_TEST_NO_BENCH=1: skip, e.g. under compute-sanitizer) */
        const char *nb = getenv("CINFER_TEST_NO_BENCH");
        if (nb && *nb == '1') {
            ci_backend_destroy(gpu);
            continue;
        }
        const int shp[4][2] = {{28672, 4096}, {4096, 4096}, {4096, 14336}, {6144, 4096}};
        if (bf && !(go && *go)) {
            const int qn[8] = {16, 32, 64, 128, 200, 256, 384, 512};
            for (int k = 0; k < 4; k++)
                for (int j = 0; j < 8; j++)
                    bench_int4_gemm(shp[k][0], shp[k][1], qn[j]);
        }
        const char *og = getenv("CINFER_TEST_ONLY_GEMM");
        if (og && *og == '1') {
            ci_backend_destroy(gpu);
            break;
        }
        if (bf && !(go && *go)) {
            const int gn[3] = {64, 256, 4096};
            for (int k = 0; k < 3; k++)
                for (int j = 0; j < 3; j++)
                    bench_gemm(shp[k][0], shp[k][1], gn[j]);
        }
        bench_gemv_fused(CI_QW_FP8, shp[0][0], shp[0][1]);
        bench_gemv_fused(CI_QW_INT4, shp[0][0], shp[0][1]);
        const char *kern[6] = {"auto", "tc", "tc4", "tc2", "split", "vec"};
        for (int k = 0; k < 4; k++) {
            for (int v = 0; v < 4; v++) {
                bench_gemv(CI_QW_INT4, shp[k][0], shp[k][1], kern[v]);
                bench_gemv(CI_QW_FP8, shp[k][0], shp[k][1], kern[v]);
                bench_gemv(CI_QW_INT8, shp[k][0], shp[k][1], kern[v]);
                if (v == 0) /* INT8's GEMV before the tensor-core one */
                    bench_gemv(CI_QW_INT8, shp[k][0], shp[k][1], kern[4]);
            }
        }
        ci_backend_destroy(gpu);
    }
    ci_backend_destroy(cpu);
    return test_finish("test_cuda_quant");
}
#endif
