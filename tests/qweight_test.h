/* qweight_test.h — random quantized weights (util/qweight.h) for the CPU and
 * CUDA quantized-matmul tests: INT4 with zero points up to 16 (GPTQ v1) and
 * optional act-order g_idx per part, FP8 without NaN codes. */
#ifndef CINFER_TESTS_QWEIGHT_TEST_H
#define CINFER_TESTS_QWEIGHT_TEST_H

#include <stdlib.h>

#include "util/qweight.h"

/* splitmix64 */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}
static float frand(void) {
    return (float)(rnd() % 20001) / 10000.0f - 1.0f;
}

/* A random quantized weight of nparts parts; gidx: act-order tables (1: a
 * shuffle per part; 2: one shuffle all parts share, as GPTQ's q|k|v do). */
static ci_qweight make_qw(int fmt, int64_t rows, int64_t cols, int64_t gs, int nparts, int gidx) {
    ci_qweight w = {0};
    w.format = fmt;
    w.rows = rows;
    w.cols = cols;
    w.group_size = gs;
    w.ngroups = (cols + gs - 1) / gs;
    w.nparts = nparts;
    for (int p = 0; p <= nparts; p++)
        w.part_row0[p] = rows * p / nparts;
    size_t qb = (size_t)(rows * (fmt == CI_QW_INT4 ? cols / 2 : cols));
    w.q = malloc(qb);
    for (size_t i = 0; i < qb; i++) {
        w.q[i] = (uint8_t)rnd();
        if (fmt == CI_QW_FP8 && (w.q[i] & 0x7f) == 0x7f) w.q[i] = 0x30; /* no NaN */
    }
    w.scales = malloc(sizeof(float) * (size_t)(rows * w.ngroups));
    for (int64_t i = 0; i < rows * w.ngroups; i++)
        w.scales[i] = 0.01f + 0.02f * fabsf(frand());
    if (fmt == CI_QW_INT4) {
        w.zeros = malloc((size_t)(rows * w.ngroups));
        for (int64_t i = 0; i < rows * w.ngroups; i++)
            w.zeros[i] = (uint8_t)(rnd() % 17);
    }
    if (gidx) {
        w.g_idx = malloc(sizeof(int32_t) * (size_t)(nparts * cols));
        for (int p = 0; p < nparts; p++) {
            int32_t *g = w.g_idx + p * cols;
            if (gidx == 2 && p > 0) {
                memcpy(g, w.g_idx, sizeof(int32_t) * (size_t)cols);
                continue;
            }
            for (int64_t c = 0; c < cols; c++)
                g[c] = (int32_t)(c / gs);
            for (int64_t c = cols - 1; c > 0; c--) { /* a different shuffle per part */
                int64_t j = rnd() % (uint32_t)(c + 1);
                int32_t t = g[c];
                g[c] = g[j];
                g[j] = t;
            }
        }
    }
    return w;
}

static void free_qw(ci_qweight *w) {
    free(w->q);
    free(w->scales);
    free(w->zeros);
    free(w->g_idx);
}

/* Shapes both quantized-matmul tests run (rows, cols, group size, fused
 * parts, act order): every layout the loaders produce, GPU-tileable. */
typedef struct qwt_case {
    int fmt;
    int64_t rows, cols, gs;
    int parts, gidx;
    const char *what;
    int64_t act; /* W8A8: activation group (-1: per token); 0: weight only */
} qwt_case;

static const qwt_case k_qwt_cases[] = {
    {CI_QW_INT4, 200, 512, 128, 1, 0, "int4 g128", 0},
    {CI_QW_INT4, 96, 256, 32, 3, 1, "int4 g32 act-order, 3 parts", 0},
    {CI_QW_INT4, 64, 136, 136, 2, 0, "int4 one group per row", 0},
    {CI_QW_FP8, 136, 320, 128, 2, 0, "fp8 blocks of 128 (last partial)", 0},
    {CI_QW_FP8, 40, 100, 100, 3, 0, "fp8 per channel, 3 parts", 0},
    /* whole groups of multiples of 16 columns: the CPU's fused decode path */
    {CI_QW_FP8, 72, 384, 128, 2, 0, "fp8 blocks of 128", 0},
    {CI_QW_FP8, 48, 256, 256, 3, 0, "fp8 per channel, 256 columns", 0},
    {CI_QW_INT4, 40, 192, 64, 2, 0, "int4 g64", 0},
    /* INT8 with group scales (8-bit GPTQ): groups of 128, act order */
    {CI_QW_INT8, 200, 512, 128, 1, 0, "int8 g128", 0},
    {CI_QW_INT8, 96, 256, 32, 3, 1, "int8 g32 act-order, 3 parts", 0},
    /* act order every part shares (the CPU sorts such columns by group) */
    {CI_QW_INT4, 96, 256, 32, 3, 2, "int4 g32 act-order shared by 3 parts", 0},
    {CI_QW_INT4, 40, 512, 128, 1, 1, "int4 g128 act-order, 1 part", 0},
    {CI_QW_INT8, 64, 384, 128, 2, 2, "int8 g128 act-order shared by 2 parts", 0},
    /* ... in whole 16-row blocks of 128-column groups: CUDA's tensor-core
     * GEMV, tiled layout and INT4 GEMM on the sorted columns */
    {CI_QW_INT4, 96, 512, 128, 2, 2, "int4 g128 act-order shared by 2 parts, 16-row blocks", 0},
    /* the tensor-core GEMV's shapes: 128-column tiles, groups of 128k or per row */
    {CI_QW_INT4, 72, 384, 384, 2, 0, "int4 per channel, 384 columns", 0},
    {CI_QW_INT4, 40, 1024, 256, 1, 0, "int4 g256", 0},
    {CI_QW_INT4, 8200, 1024, 128, 3, 0, "int4 g128 tall (several row tiles per CTA)", 0},
    /* whole 16-row blocks: the CUDA tiled INT4 layout (the default; CINFER_QW_TILE=0 for row-major)
     */
    {CI_QW_INT4, 96, 512, 128, 3, 0, "int4 g128, 16-row blocks", 0},
    {CI_QW_INT4, 48, 256, 256, 2, 0, "int4 per channel, 16-row blocks", 0},
    {CI_QW_INT4, 1040, 2048, 128, 2, 0, "int4 g128, 65 16-row blocks, 16 tiles of K", 0},
    {CI_QW_INT4, 32, 128, 128, 1, 0, "int4 g128, one 128-column tile", 0},
    /* W8A8: per-token activations x per-channel weights, and 1 x 128
     * activation groups x 128 x 128 weight blocks (parts on block rows) */
    {CI_QW_FP8, 96, 256, 256, 3, 0, "fp8 w8a8 per token x channel", -1},
    {CI_QW_FP8, 384, 512, 128, 3, 0, "fp8 w8a8 1x128 x 128x128 blocks", 128},
    /* INT8 W8A8 (compressed-tensors int-quantized): per token x channel */
    {CI_QW_INT8, 96, 256, 256, 3, 0, "int8 w8a8 per token x channel", -1},
};
#define QWT_NCASES (sizeof k_qwt_cases / sizeof k_qwt_cases[0])

static ci_qweight make_case(const qwt_case *c) {
    ci_qweight w = make_qw(c->fmt, c->rows, c->cols, c->gs, c->parts, c->gidx);
    if (c->act) {
        w.act_group = c->act < 0 ? c->cols : c->act;
        /* block scales: every row of a 128-row block has its first row's */
        if (c->act > 0)
            for (int64_t r = 0; r < w.rows; r++)
                for (int64_t g = 0; g < w.ngroups; g++)
                    w.scales[r * w.ngroups + g] = w.scales[(r / 128) * 128 * w.ngroups + g];
        for (int p = 0; p <= w.nparts; p++)
            w.part_row0[p] = w.rows * p / w.nparts;
        if (!ci_qweight_act_ok(&w, w.act_group, c->act > 0 ? 128 : 0)) abort();
    }
    return w;
}

#endif
