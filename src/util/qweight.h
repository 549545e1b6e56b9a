/* qweight.h — the one description of a quantized linear weight and its
 * reference dequantization (below src/backend and src/model, like dtype.h).
 *
 * Every checkpoint format (compressed-tensors FP8, FineGrainedFP8 blocks,
 * GPTQ, AWQ, online FP8) is repacked at load into this canonical host layout
 * (src/model/quant_load.c); a backend's qweight_create op then keeps it in its
 * own layout and its matmul must compute exactly
 *
 *     y[n][r] = sum_c x[n][c] * ci_qweight_dequant(w, r, c)   (+ bias[r])
 *
 * so the CPU twin and a GPU kernel agree. A W8A8 weight (FP8 or INT8,
 * act_group > 0) also quantizes the activations, dynamically, when a matmul
 * has at least CI_QW_ACT_MIN_ROWS rows: x is replaced by
 * ci_qweight_quant_act's values (E4M3, or INT8 for INT8 weights, with one
 * f32 scale per row and act_group columns) before the sum above. Below that (decode at batch <= 4)
 * both backends keep x as it is (W8A16): the weight-streaming GEMV is bound by weight bytes, so FP8
 * activations would cost accuracy and buy nothing. docs/quantization.md. */
#ifndef CINFER_UTIL_QWEIGHT_H
#define CINFER_UTIL_QWEIGHT_H

#include <stdint.h>

#include "util/fp8.h"

typedef enum ci_qw_format {
    CI_QW_INT4 = 1, /* 4-bit integers with per-group scale and zero point */
    CI_QW_FP8 = 2,  /* FP8 E4M3 with per-group scale */
    CI_QW_INT8 = 3, /* signed 8-bit integers with per-row scale (symmetric) */
} ci_qw_format;

/* Parts of a fused weight (q|k|v has three), each with its own g_idx. */
#define CI_QW_MAX_PARTS 3

typedef struct ci_qweight {
    int format;         /* ci_qw_format */
    int64_t rows, cols; /* [out][in] */
    int64_t group_size; /* input columns per scale group (cols: one per row) */
    int64_t ngroups;    /* scale groups per row */
    int nparts;
    int64_t part_row0[CI_QW_MAX_PARTS + 1]; /* part p owns rows [part_row0[p], part_row0[p+1]) */
    /* INT4: [rows][cols/2], column 2j in the low nibble of byte j, unsigned 0..15.
     * FP8: [rows][cols] E4M3 (fn: no infinities, max 448).
     * INT8: [rows][cols] two's complement bytes, -128..127. */
    uint8_t *q;
    float *scales;  /* [rows][ngroups] */
    uint8_t *zeros; /* INT4: [rows][ngroups] zero points (0..16: GPTQ v1's 15 + 1); FP8: NULL */
    int32_t *g_idx; /* NULL: column c is in group c / group_size; else [nparts][cols] (act order) */
    int64_t act_group; /* W8A8: activation columns per dynamic scale (cols: one per token;
                          128: per token and 128-column group, FP8 only); 0: W8A16 */
    float act_scale;   /* W8A8 FP8 per token: a static scale instead of the dynamic one (the
                          checkpoint's input_scale; fused parts: their largest, as vLLM); 0:
                          dynamic */
    int tiled;         /* a backend's device layout of q: 0 (always on the host) row-major as above;
                          1: the CUDA INT4 tensor-core tiles (src/backend/cuda/cuda_qweight.c) */
    int32_t *perm;     /* act order sorted by group (ci_qweight_act_sort's copy, and the backends'
                          layouts made from it): stored column c holds input column perm[c],
                          g_idx NULL, x gathered in that order; NULL as loaded */
} ci_qweight;

/* Act order that a column sort undoes: every part has the same g_idx (GPTQ's
 * order comes from the input's Hessian, which q|k|v and gate|up share) and
 * group g has exactly the columns a contiguous group g would. Then perm (a
 * stable counting sort of the columns by group) makes the groups
 * contiguous: the weight with its columns in perm's order and g_idx dropped
 * is a weight without act order, whose products with x gathered by perm
 * (xp[c] = x[perm[c]]) are the same dot products reordered. Per-group W8A8
 * activations are not permutation-free: not for those. Returns 1 with
 * *sorted = h in that form (its q and perm allocated; the rest h's arrays),
 * freed by ci_qweight_act_sort_free; 0 (nothing allocated) when h has no such
 * act order or memory runs out. util/qweight.c. */
#ifdef __cplusplus
extern "C" {
#endif
int ci_qweight_act_sort(const ci_qweight *h, ci_qweight *sorted);
void ci_qweight_act_sort_free(ci_qweight *sorted);
#ifdef __cplusplus
}
#endif

/* matmuls of fewer rows keep their activations unquantized (see above) */
#define CI_QW_ACT_MIN_ROWS 5

/* Whether W8A8 can apply to w with activation groups of `group` columns
 * (cols: per token), the shapes an FP8 / INT8 tensor-core GEMM takes: rows
 * and columns multiples of 16; per-group activations only for FP8 with
 * 128 x 128 weight blocks (block_n 128, group_size 128) whose fused parts
 * start on a block; INT8 per token with per-channel weight scales. */
static inline int ci_qweight_act_ok(const ci_qweight *w, int64_t group, int64_t block_n) {
    if (w->format == CI_QW_INT8) /* per token x per channel (an INT8 GEMM's scales) */
        return !w->g_idx && w->rows % 16 == 0 && w->cols % 16 == 0 && group == w->cols &&
               w->ngroups == 1;
    if (w->format != CI_QW_FP8 || w->g_idx || w->rows % 16 || w->cols % 16) return 0;
    if (group == w->cols) return w->ngroups == 1;
    if (group != 128 || block_n != 128 || w->group_size != 128 || w->cols % 128) return 0;
    for (int p = 0; p < w->nparts; p++)
        if (w->part_row0[p] % 128) return 0;
    return 1;
}

/* INT8 of v / s: round to nearest even (rintf), clamped to -128..127 */
static inline float ci_int8_round(float v) {
    float r = rintf(v);
    return r > 127.0f ? 127.0f : (r < -128.0f ? -128.0f : r);
}

/* The activation quantization of a W8A8 weight, in place on a row of cols
 * floats: per group of act_group columns s = amax / 448 for FP8, amax / 127
 * for INT8 (1 when amax is 0; vLLM's dynamic per-token scales) or the
 * static act_scale, then x = e4m3(x / s) * s or int8(x / s) * s: the values an FP8 / INT8 GEMM
 * multiplies (the codes, with the scale s applied to each group's products). */
/* the dynamic scale of n activations (one group of a row) */
static inline float ci_qweight_act_scale(const ci_qweight *w, const float *x, int64_t n) {
    float amax = 0.0f;
    for (int64_t c = 0; c < n; c++)
        amax = fabsf(x[c]) > amax ? fabsf(x[c]) : amax;
    return amax > 0.0f ? amax / (w->format == CI_QW_INT8 ? 127.0f : 448.0f) : 1.0f;
}

static inline void ci_qweight_quant_act(const ci_qweight *w, float *x) {
    const int i8 = w->format == CI_QW_INT8;
    for (int64_t g0 = 0; g0 < w->cols; g0 += w->act_group) {
        int64_t g1 = g0 + w->act_group < w->cols ? g0 + w->act_group : w->cols;
        /* a static scale: x / s beyond E4M3's range saturates at 448 */
        const float s =
            w->act_scale > 0.0f ? w->act_scale : ci_qweight_act_scale(w, x + g0, g1 - g0);
        for (int64_t c = g0; c < g1; c++)
            x[c] = i8 ? ci_int8_round(x[c] / s) * s : ci_e4m3_round(x[c] / s) * s;
    }
}

static inline int ci_qweight_part_of(const ci_qweight *w, int64_t r) {
    int p = 0;
    while (p + 1 < w->nparts && r >= w->part_row0[p + 1])
        p++;
    return p;
}

/* Row r of the weight in f32: the reference semantics of every backend. */
static inline void ci_qweight_dequant_row(const ci_qweight *w, int64_t r, float *out) {
    const float *s = w->scales + r * w->ngroups;
    const int32_t *gi = w->g_idx ? w->g_idx + (int64_t)ci_qweight_part_of(w, r) * w->cols : NULL;
    if (w->format == CI_QW_FP8) {
        const uint8_t *q = w->q + r * w->cols;
        for (int64_t c = 0; c < w->cols; c++)
            out[c] = ci_fp8_e4m3_to_f32(q[c]) * s[gi ? gi[c] : c / w->group_size];
        return;
    }
    if (w->format == CI_QW_INT8) {
        const int8_t *q = (const int8_t *)(w->q + r * w->cols);
        for (int64_t c = 0; c < w->cols; c++)
            out[c] = (float)q[c] * s[gi ? gi[c] : c / w->group_size];
        return;
    }
    const uint8_t *q = w->q + r * (w->cols / 2), *z = w->zeros + r * w->ngroups;
    for (int64_t c = 0; c < w->cols; c++) {
        int64_t g = gi ? gi[c] : c / w->group_size;
        int v = (q[c >> 1] >> ((c & 1) * 4)) & 0xF;
        out[c] = (float)(v - (int)z[g]) * s[g];
    }
}

#endif
