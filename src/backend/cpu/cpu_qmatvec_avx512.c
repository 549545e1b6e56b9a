/* cpu_qmatvec_avx512.c — the quantized decode matmul (n <= 4) on CPUs with
 * AVX-512: cpu_qmatmul.c's fused path (straight from the packed rows, no f32
 * copy of the weight) at twice the AVX2 width.
 *
 * Decode of a small model is bound by converting weights, not by reading
 * them (tinyqwen2-code's INT4 linears are 3.4 MB: they live in the caches).
 * Per 32 INT4 weights: one 16-byte load, the nibbles split and interleaved
 * into column order, two 16-lane int -> float conversions, then one FMA per
 * activation row per 16 weights; FP8 moves 32 E4M3 bytes into f16 bit
 * patterns (e4m3 * 2^-8, exact) and converts them with vcvtph2ps. The sums are those of
 * the AVX2 path regrouped (16 lanes instead of 8):
 *   INT4: y[i][r] = sum_g s_g * (sum_{k in g} q_k x[i][k] - z_g * xs[i][g])
 *   FP8:  y[i][r] = sum_g s_g * sum_{k in g} e4m3(q_k) x[i][k]
 *   INT8: y[i][r] = sum_g s_g * sum_{k in g} q_k x[i][k] (bytes sign-extended)
 * Each activation row has its own accumulators in the same k order whatever
 * n is, so a row's result does not depend on the rows beside it.
 *
 * The binary targets x86-64-v3, so these functions carry their own target
 * attribute; cpu_qmatmul.c calls them only when the backend found AVX-512. */
#include "backend/cpu/cpu_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define INL512 static inline __attribute__((always_inline)) T512

enum { NMAX = 4 };

/* 32 E4M3 bytes -> f32 times 2^-8, exactly: sign and the 7 magnitude bits
 * moved into an f16 (exponent bias 15 instead of 7, so the value is
 * e4m3 * 2^-8; E4M3 subnormals land on f16 subnormals, also exact), NaN
 * (0x7f) kept NaN, then the hardware f16 -> f32 conversion. The caller folds
 * the 2^8 into the group's scale. */
INL512 void fp8x32(const uint8_t *p, __m512 *lo, __m512 *hi) {
    const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p));
    const __m512i mag = _mm512_and_si512(b, _mm512_set1_epi16(0x7f));
    __m512i h = _mm512_or_si512(_mm512_slli_epi16(_mm512_and_si512(b, _mm512_set1_epi16(0x80)), 8),
                                _mm512_slli_epi16(mag, 7));
    h = _mm512_mask_mov_epi16(h, _mm512_cmpeq_epi16_mask(mag, _mm512_set1_epi16(0x7f)),
                              _mm512_set1_epi16(0x7e00));
    *lo = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
    *hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
}

INL512 void rows(const ci_qdecode_args *a, int64_t r0, int64_t r1, const int n, const int fmt) {
    const ci_qweight *w = a->w;
    const int fp8 = fmt == CI_QW_FP8, i8 = fmt == CI_QW_INT8, byte = fp8 || i8;
    const int64_t in = a->in, gs = w->group_size, ng = w->ngroups, rb = byte ? in : in / 2;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *q = w->q + r * rb;
        const uint8_t *z = byte ? NULL : w->zeros + r * ng;
        const float *s = w->scales + r * ng;
        __m512 tot[NMAX];
        float zt[NMAX];
        for (int i = 0; i < n; i++) {
            tot[i] = _mm512_setzero_ps();
            zt[i] = 0.0f;
        }
        for (int64_t g = 0; g < ng; g++) {
            __m512 acc[NMAX];
            for (int i = 0; i < n; i++)
                acc[i] = _mm512_setzero_ps();
            if (fp8) {
                for (int64_t k = g * gs; k < (g + 1) * gs; k += 32) {
                    /* rows stream from memory on a large model: two rows ahead */
                    _mm_prefetch((const char *)q + 2 * rb + k, _MM_HINT_T0);
                    __m512 q0, q1;
                    fp8x32(q + k, &q0, &q1);
                    for (int i = 0; i < n; i++) {
                        const float *xi = a->x + i * in + k;
                        acc[i] = _mm512_fmadd_ps(q0, _mm512_loadu_ps(xi), acc[i]);
                        acc[i] = _mm512_fmadd_ps(q1, _mm512_loadu_ps(xi + 16), acc[i]);
                    }
                }
            } else if (i8) {
                for (int64_t k = g * gs; k < (g + 1) * gs; k += 32) {
                    _mm_prefetch((const char *)q + 2 * rb + k, _MM_HINT_T0);
                    /* sign-extended bytes: exact in f32 */
                    const __m512 q0 = _mm512_cvtepi32_ps(
                        _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + k))));
                    const __m512 q1 = _mm512_cvtepi32_ps(
                        _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + k + 16))));
                    for (int i = 0; i < n; i++) {
                        const float *xi = a->x + i * in + k;
                        acc[i] = _mm512_fmadd_ps(q0, _mm512_loadu_ps(xi), acc[i]);
                        acc[i] = _mm512_fmadd_ps(q1, _mm512_loadu_ps(xi + 16), acc[i]);
                    }
                }
            } else {
                for (int64_t k = g * gs; k < (g + 1) * gs; k += 32) {
                    _mm_prefetch((const char *)q + 2 * rb + k / 2, _MM_HINT_T0);
                    const __m128i b = _mm_loadu_si128((const __m128i *)(q + k / 2));
                    const __m128i lo = _mm_and_si128(b, m4);
                    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
                    /* column 2j is the low nibble of byte j */
                    const __m512 q0 =
                        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)));
                    const __m512 q1 =
                        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo, hi)));
                    for (int i = 0; i < n; i++) {
                        const float *xi = a->x + i * in + k;
                        acc[i] = _mm512_fmadd_ps(q0, _mm512_loadu_ps(xi), acc[i]);
                        acc[i] = _mm512_fmadd_ps(q1, _mm512_loadu_ps(xi + 16), acc[i]);
                    }
                }
            }
            const __m512 sv = _mm512_set1_ps(fp8 ? s[g] * 256.0f : s[g]); /* fp8x32's 2^-8 */
            for (int i = 0; i < n; i++) {
                tot[i] = _mm512_fmadd_ps(sv, acc[i], tot[i]);
                if (!byte) zt[i] += s[g] * (float)z[g] * a->xs[i * ng + g];
            }
        }
        for (int i = 0; i < n; i++) {
            const float v = _mm512_reduce_add_ps(tot[i]) - zt[i];
            a->y[i * a->out + r] = a->bias ? v + a->bias[r] : v;
        }
    }
}

T512 void ci_cpu_qdecode_avx512(const ci_qdecode_args *a, int64_t r0, int64_t r1) {
    const int f = a->w->format;
#define CI_QD_CASE(N)                                                                              \
    case N:                                                                                        \
        if (f == CI_QW_FP8)                                                                        \
            rows(a, r0, r1, N, CI_QW_FP8);                                                         \
        else if (f == CI_QW_INT8)                                                                  \
            rows(a, r0, r1, N, CI_QW_INT8);                                                        \
        else                                                                                       \
            rows(a, r0, r1, N, CI_QW_INT4);                                                        \
        return;
    switch (a->n) {
        CI_QD_CASE(1)
        CI_QD_CASE(2)
        CI_QD_CASE(3)
        CI_QD_CASE(4)
    default: return;
    }
#undef CI_QD_CASE
}

int ci_cpu_qdecode_avx512_ok(const ci_qweight *w) {
    return w->group_size % 32 == 0;
}

#else

void ci_cpu_qdecode_avx512(const ci_qdecode_args *a, int64_t r0, int64_t r1) {
    (void)a;
    (void)r0;
    (void)r1;
}

int ci_cpu_qdecode_avx512_ok(const ci_qweight *w) {
    (void)w;
    return 0;
}

#endif
