/* cpu_matvec_avx512.c — the small-batch matmul kernel on CPUs with AVX-512.
 *
 * The binary targets x86-64-v3 (AVX2), so these functions carry their own
 * target attribute and cpu_matmul.c calls them only when the CPU has
 * AVX-512F/BW (checked once at backend creation).
 *
 * Why a second kernel: for a handful of activation rows (a speculative
 * verify step carries K+1 rows of one sequence) the AVX2 kernel is bound by
 * FMAs and weight conversion, not by reading the weight. Here each group of 4
 * weight rows is converted once per 16 inputs and feeds up to 6 activation
 * rows from registers (24 accumulators + 4 weight vectors + 1 input of the 32
 * zmm registers), at twice the AVX2 width.
 *
 * Bitwise contract: a row's result depends only on its own inputs, never on
 * how many rows share the call (one accumulator per (row, weight row), the
 * same k order and the same final reduction for every row count), so a
 * verify step reproduces a one-row decode exactly. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define INL512 static inline __attribute__((always_inline)) T512

enum { ROWS_MAX = 6 };

INL512 __m512 ld16(const char *w, ci_dtype dt, int64_t k) {
    if (dt == CI_BF16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)(const void *)w + k));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    if (dt == CI_F16)
        return _mm512_cvtph_ps(
            _mm256_loadu_si256((const __m256i *)((const uint16_t *)(const void *)w + k)));
    return _mm512_loadu_ps((const float *)(const void *)w + k);
}

INL512 __m512 ld16m(const char *w, ci_dtype dt, int64_t k, __mmask16 m) {
    if (dt == CI_BF16) {
        __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)(const void *)w + k);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    if (dt == CI_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)(const void *)w + k));
    return _mm512_maskz_loadu_ps(m, (const float *)(const void *)w + k);
}

/* out[r][q] = x_r . w_q for R activation rows (stride `in`) and Q (1 or 4)
 * consecutive weight rows (stride wstride bytes). R and Q are constants at
 * every call site, so the accumulators live in registers. */
INL512 void dot_qr(const float *x, int64_t in, int R, const char *w, size_t wstride, int Q,
                   ci_dtype dt, float out[ROWS_MAX][4]) {
    __m512 acc[ROWS_MAX][4];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++)
            acc[r][q] = _mm512_setzero_ps();
    /* the next group of weight rows follows these contiguously */
    const char *pf = w + wstride * (size_t)Q;
    const size_t esz = dt == CI_F32 ? 4 : 2;
    int64_t k = 0;
    for (; k + 16 <= in; k += 16) {
        _mm_prefetch(pf + (size_t)k * esz * (size_t)Q, _MM_HINT_T0);
        if (esz == 4 || Q == 4) _mm_prefetch(pf + (size_t)k * esz * (size_t)Q + 64, _MM_HINT_T0);
        __m512 wv[4];
        for (int q = 0; q < Q; q++)
            wv[q] = ld16(w + wstride * (size_t)q, dt, k);
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)r * (size_t)in + k);
            for (int q = 0; q < Q; q++)
                acc[r][q] = _mm512_fmadd_ps(wv[q], xv, acc[r][q]);
        }
    }
    if (k < in) {
        __mmask16 m = (__mmask16)((1u << (in - k)) - 1u);
        __m512 wv[4];
        for (int q = 0; q < Q; q++)
            wv[q] = ld16m(w + wstride * (size_t)q, dt, k, m);
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)r * (size_t)in + k);
            for (int q = 0; q < Q; q++)
                acc[r][q] = _mm512_fmadd_ps(wv[q], xv, acc[r][q]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++)
            out[r][q] = _mm512_reduce_add_ps(acc[r][q]);
}

/* dt, R and Q become constants through these switches */
INL512 void dot_dispatch(const float *x, int64_t in, int R, const char *w, size_t wstride, int Q,
                         ci_dtype dt, float out[ROWS_MAX][4]) {
#define CI_DOT_R(DT, QQ)                                                                           \
    switch (R) {                                                                                   \
    case 1: dot_qr(x, in, 1, w, wstride, QQ, DT, out); break;                                      \
    case 2: dot_qr(x, in, 2, w, wstride, QQ, DT, out); break;                                      \
    case 3: dot_qr(x, in, 3, w, wstride, QQ, DT, out); break;                                      \
    case 4: dot_qr(x, in, 4, w, wstride, QQ, DT, out); break;                                      \
    case 5: dot_qr(x, in, 5, w, wstride, QQ, DT, out); break;                                      \
    default: dot_qr(x, in, 6, w, wstride, QQ, DT, out); break;                                     \
    }
    if (dt == CI_BF16) {
        if (Q == 4) CI_DOT_R(CI_BF16, 4) else CI_DOT_R(CI_BF16, 1)
    } else if (dt == CI_F16) {
        if (Q == 4) CI_DOT_R(CI_F16, 4) else CI_DOT_R(CI_F16, 1)
    } else {
        if (Q == 4) CI_DOT_R(CI_F32, 4) else CI_DOT_R(CI_F32, 1)
    }
#undef CI_DOT_R
}

T512 void ci_cpu_matvec_avx512(const ci_matvec_args *a, int64_t j0, int64_t j1) {
    const size_t esz = a->wdt == CI_F32 ? 4 : 2;
    const size_t wstride = (size_t)a->in * esz;
    int64_t j = j0;
    while (j < j1) {
        const int Q = j + 4 <= j1 ? 4 : 1;
        const char *w = (const char *)a->w + (size_t)j * wstride;
        float b[4] = {0, 0, 0, 0};
        for (int q = 0; q < Q && a->bias; q++)
            b[q] = ci_cpu_load_elem(a->bias, a->bdt, j + q);
        for (int64_t r0 = 0; r0 < a->n; r0 += ROWS_MAX) {
            int R = a->n - r0 < ROWS_MAX ? (int)(a->n - r0) : ROWS_MAX;
            float d[ROWS_MAX][4];
            dot_dispatch(a->x + r0 * a->in, a->in, R, w, wstride, Q, a->wdt, d);
            for (int r = 0; r < R; r++)
                for (int q = 0; q < Q; q++)
                    a->y[(r0 + r) * a->out + j + q] = d[r][q] + b[q];
        }
        j += Q;
    }
}

int ci_cpu_have_avx512(void) {
    const char *isa = getenv("CINFER_CPU_ISA");
    if (isa && strcmp(isa, "avx2") == 0) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}

#else

void ci_cpu_matvec_avx512(const ci_matvec_args *a, int64_t j0, int64_t j1) {
    (void)a;
    (void)j0;
    (void)j1;
}

int ci_cpu_have_avx512(void) {
    return 0;
}

#endif
