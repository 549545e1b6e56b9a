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
 * so the CPU twin and a GPU kernel agree (activations are not quantized: a
 * W8A8 checkpoint runs as W8A16 here, see docs/quantization.md). */
#ifndef CINFER_UTIL_QWEIGHT_H
#define CINFER_UTIL_QWEIGHT_H

#include <stdint.h>

#include "util/fp8.h"

typedef enum ci_qw_format {
    CI_QW_INT4 = 1, /* 4-bit integers with per-group scale and zero point */
    CI_QW_FP8 = 2,  /* FP8 E4M3 with per-group scale */
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
     * FP8: [rows][cols] E4M3 (fn: no infinities, max 448). */
    uint8_t *q;
    float *scales;  /* [rows][ngroups] */
    uint8_t *zeros; /* INT4: [rows][ngroups] zero points (0..16: GPTQ v1's 15 + 1); FP8: NULL */
    int32_t *g_idx; /* NULL: column c is in group c / group_size; else [nparts][cols] (act order) */
} ci_qweight;

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
    const uint8_t *q = w->q + r * (w->cols / 2), *z = w->zeros + r * w->ngroups;
    for (int64_t c = 0; c < w->cols; c++) {
        int64_t g = gi ? gi[c] : c / w->group_size;
        int v = (q[c >> 1] >> ((c & 1) * 4)) & 0xF;
        out[c] = (float)(v - (int)z[g]) * s[g];
    }
}

#endif
