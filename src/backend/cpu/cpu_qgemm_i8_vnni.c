/* cpu_qgemm_i8_vnni.c — the INT8 W8A8 matmul of prefill (n >= CI_QW_ACT_MIN_ROWS)
 * on CPUs with AVX512-VNNI: integer products instead of dequantized floats.
 *
 * A W8A8 INT8 weight's activations are rounded per token to INT8 codes with
 * one scale (util/qweight.h, ci_qweight_quant_act): the matmul's sums are
 * then sums of integer products times s_x s_w. vpdpbusd multiplies unsigned
 * by signed bytes and adds groups of four into 32-bit lanes (64 products
 * per instruction, 4x an f32 FMA's 16), so the codes are stored + 128
 * (0..255) and the offset comes back out with the row sums of the weight:
 *   sum_k (q_x + 128) q_w - 128 sum_k q_w = sum_k q_x q_w   (exact in int32
 *   for K <= 65536: |sum| <= K 255 128 < 2^31),
 *   y[t][r] = s_x[t] s_w[r] (that integer) (+ bias[r]).
 * The reference (the dequantized weight times the rounded activations, in
 * f32 or double) differs only by its own rounding. Each block of 16 weight
 * rows is repacked (4 consecutive k of each row per 64-byte vector) into
 * the thread's scratch and met by every token, 8 at a time: 8 accumulators
 * of 16 rows' sums, no horizontal reductions; K is padded to kp with zero
 * weights and code 128 (i.e. 0) in x. The binary targets x86-64-v3, so
 * these functions carry their own target attribute; cpu_qmatmul.c calls them
 * only where ci_cpu_have_vnni() says the CPU has the instructions. */
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TV __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))

int ci_cpu_have_vnni(void) {
    return ci_cpu_have_avx512() && __builtin_cpu_supports("avx512vnni");
}

/* rows [r0, r1) (a multiple of 16 apart) for every token; pack: 16 kp bytes */
TV void ci_cpu_i8_gemm_vnni(const ci_i8_gemm_args *a, int64_t r0, int64_t r1, int8_t *pack) {
    const int64_t K = a->k, kq = a->kp / 4;
    for (int64_t rb = r0; rb < r1; rb += 16) {
        /* the 16 rows as [k / 4][row][4]: one 64-byte vector holds 4
         * consecutive k of each row, so a vpdpbusd against 4 bytes of one
         * token's x broadcast to every lane adds into 16 rows' sums at
         * once (no horizontal reductions); past K the weights are 0 */
        for (int64_t q = 0; q < kq; q++)
            for (int r = 0; r < 16; r++)
                for (int b = 0; b < 4; b++) {
                    const int64_t k = 4 * q + b;
                    pack[(q * 16 + r) * 4 + b] = k < K ? a->w[(rb + r) * K + k] : 0;
                }
        const __m512i off = _mm512_mullo_epi32(_mm512_loadu_si512((const void *)(a->wsum + rb)),
                                               _mm512_set1_epi32(128));
        const __m512 sw = _mm512_loadu_ps(a->sw + rb);
        const __m512 bias = a->bias ? _mm512_loadu_ps(a->bias + rb) : _mm512_setzero_ps();
        for (int64_t tb = 0; tb < a->n; tb += 8) {
            const int nt = a->n - tb < 8 ? (int)(a->n - tb) : 8;
            const uint8_t *x[8];
            for (int j = 0; j < 8; j++)
                x[j] = a->x + (tb + (j < nt ? j : 0)) * a->kp;
            __m512i acc[8];
            for (int j = 0; j < 8; j++)
                acc[j] = _mm512_setzero_si512();
            for (int64_t q = 0; q < kq; q++) {
                const __m512i wv = _mm512_loadu_si512((const void *)(pack + q * 64));
                for (int j = 0; j < 8; j++) {
                    int32_t xv;
                    memcpy(&xv, x[j] + 4 * q, 4);
                    acc[j] = _mm512_dpbusd_epi32(acc[j], _mm512_set1_epi32(xv), wv);
                }
            }
            for (int j = 0; j < nt; j++) {
                const int64_t t = tb + j;
                const __m512 d = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[j], off));
                __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(a->sx[t]), sw), d);
                if (a->bias) v = _mm512_add_ps(v, bias);
                _mm512_storeu_ps(a->y + t * a->out + rb, v);
            }
        }
    }
}

#else

int ci_cpu_have_vnni(void) {
    return 0;
}

void ci_cpu_i8_gemm_vnni(const ci_i8_gemm_args *a, int64_t r0, int64_t r1, int8_t *pack) {
    (void)a;
    (void)r0;
    (void)r1;
    (void)pack;
}

#endif
