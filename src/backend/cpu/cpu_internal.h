/* cpu_internal.h — shared state and op entry points of the CPU backend. */
#ifndef CINFER_BACKEND_CPU_INTERNAL_H
#define CINFER_BACKEND_CPU_INTERNAL_H

#include <math.h>

#include "backend/backend.h"
#include "util/half.h"
#include "util/threadpool.h"

typedef struct ci_cpu {
    ci_threadpool *tp;
    int nthreads;
    /* per-thread f32 scratch (GEMM weight panels); grown on the calling
     * thread before a parallel region, never shrunk */
    float **ws;
    size_t *ws_floats;
    /* sample op scratch for one vocabulary size (made on first use) */
    struct ci_sampler *smp;
    float *smp_row, *smp_lsm;
    int smp_vocab;
    /* the last sample op's tokens (take_samples: plan-ahead scheduling) */
    int32_t *last_tok;
    int last_n, last_cap;
    int avx512; /* the small-batch matmul uses cpu_matvec_avx512.c */
    int vnni;   /* INT8 W8A8 prefill on integer products (cpu_qgemm_i8_vnni.c) */
    /* W8A8 weights: the quantized copy of a matmul's activations, grown only */
    float *qact;
    size_t qact_floats;
} ci_cpu;

/* element i of a row stored as dt, as f32 */
static inline float ci_cpu_load_elem(const void *p, ci_dtype dt, int64_t i) {
    switch (dt) {
    case CI_F32: return ((const float *)p)[i];
    case CI_BF16: return ci_bf16_to_f32(((const uint16_t *)p)[i]);
    case CI_F16: return ci_f16_to_f32(((const uint16_t *)p)[i]);
    default: return 0.0f;
    }
}

/* y[n][out] = x[n][in] . w[out][in]^T (+ bias), for weight rows [j0, j1)
 * (cpu_matmul.c; cpu_matvec_avx512.c runs it on CPUs with AVX-512). */
typedef struct ci_matvec_args {
    const float *x;
    const void *w;
    ci_dtype wdt;
    const void *bias; /* NULL: none */
    ci_dtype bdt;
    float *y;
    int64_t n, in, out;
} ci_matvec_args;
void ci_cpu_matvec_avx512(const ci_matvec_args *a, int64_t j0, int64_t j1);
/* the CPU runs AVX-512F/BW/VL and CINFER_CPU_ISA is not "avx2" */
int ci_cpu_have_avx512(void);

/* Quantized decode (n <= 4, no act order, whole groups): y[n][out] =
 * x . dequant(w)^T (+ bias) for weight rows [r0, r1), straight from the
 * packed rows (cpu_qmatmul.c's fused path at AVX-512 width,
 * cpu_qmatvec_avx512.c). xs[i][g] = sum of x row i over group g (INT4). */
typedef struct ci_qdecode_args {
    const ci_qweight *w;
    const float *x, *xs, *bias; /* bias F32 or NULL */
    float *y;
    int64_t n, in, out;
} ci_qdecode_args;
void ci_cpu_qdecode_avx512(const ci_qdecode_args *a, int64_t r0, int64_t r1);
/* whether w's groups suit it: multiples of 32 columns */
int ci_cpu_qdecode_avx512_ok(const ci_qweight *w);

/* INT8 W8A8 matmul on AVX512-VNNI (cpu_qgemm_i8_vnni.c) for weight rows
 * [r0, r1) (multiples of 16; pack: 16 kp bytes of scratch): w [out][k] INT8
 * with row sums wsum and scales sw; x [n][kp]
 * the activations' INT8 codes + 128 (kp = k rounded up to 64, padded with
 * 128) with per-token scales sx; y[t][r] = sx[t] sw[r] sum_k q_x q_w (+ bias). */
typedef struct ci_i8_gemm_args {
    const int8_t *w;
    const int32_t *wsum;
    const float *sw;
    const uint8_t *x;
    const float *sx, *bias;
    float *y;
    int64_t n, k, kp, out;
} ci_i8_gemm_args;
void ci_cpu_i8_gemm_vnni(const ci_i8_gemm_args *a, int64_t r0, int64_t r1, int8_t *pack);
/* the CPU runs AVX512-VNNI and CINFER_CPU_ISA is not "avx2" */
int ci_cpu_have_vnni(void);

static inline ci_cpu *ci_cpu_of(ci_backend *be) {
    return (ci_cpu *)be->impl;
}

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

/* f32 dot product (vectorised: plain loops are not, without -ffast-math). */
static inline float ci_dot_f32(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    float s = 0.0f;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
    }
    a0 = _mm256_add_ps(a0, a1);
    __m128 lo = _mm256_castps256_ps128(a0), hi = _mm256_extractf128_ps(a0, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    s = _mm_cvtss_f32(lo);
#endif
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

#if defined(__AVX2__) && defined(__FMA__)
/* exp of 8 floats (Cephes expf polynomial; ~1 ulp over [-87, 88], inputs
 * clamped to that range, so -inf gives ~1e-38 rather than 0). */
static inline __m256 ci_exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3762626647949f));
    __m256 fx = _mm256_floor_ps(
        _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
#endif

/* dst[i] = exp(src[i]) for n floats (vectorised where possible). */
static inline void ci_exp_f32(const float *src, float *dst, int64_t n) {
    int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, ci_exp256(_mm256_loadu_ps(src + i)));
#endif
    for (; i < n; i++)
        dst[i] = expf(src[i]);
}

/* Ensures every thread's scratch holds at least n floats. */
ci_status ci_cpu_ws_reserve(ci_cpu *c, size_t n);

/* Converts n elements of a weight row (F32/F16/BF16) to f32. */
void ci_cpu_row_to_f32(const void *src, ci_dtype dt, int64_t n, float *dst);

ci_status ci_cpu_copy_blocks(ci_backend *be, ci_kv_cache *kv, const int32_t *src,
                             const int32_t *dst, int n);
ci_status ci_cpu_embedding_shard(ci_backend *be, const ci_tensor *table, int64_t row0,
                                 const int32_t *ids, int n, ci_tensor *out);
ci_status ci_cpu_embedding(ci_backend *be, const ci_tensor *table, const int32_t *ids, int n,
                           ci_tensor *out);
/* Quantized weights (cpu_qmatmul.c): the qweight_create op, the matmul for
 * CI_QW weights, and a CI_QW tensor's bytes in memory. */
ci_status ci_cpu_qweight_create(ci_backend *be, const ci_qweight *host, ci_tensor *out);
void ci_cpu_qweight_free(ci_backend *be, ci_tensor *w);
ci_status ci_cpu_qmatmul(ci_backend *be, const ci_tensor *x, const ci_tensor *w,
                         const ci_tensor *bias, ci_tensor *y);
size_t ci_cpu_qweight_bytes(const ci_tensor *w);
ci_status ci_cpu_matmul(ci_backend *be, const ci_tensor *x, const ci_tensor *w,
                        const ci_tensor *bias, ci_tensor *y);
ci_status ci_cpu_rmsnorm(ci_backend *be, ci_tensor *x, ci_tensor *residual, const ci_tensor *w,
                         float eps, ci_tensor *out);
ci_status ci_cpu_qk_norm(ci_backend *be, ci_tensor *qkv, const ci_attn_shape *shape,
                         const ci_tensor *w_q, const ci_tensor *w_k, float eps);
ci_status ci_cpu_rope_cache(ci_backend *be, ci_tensor *qkv, const ci_attn_shape *shape,
                            const ci_rope_table *rope, const ci_batch *batch, ci_kv_cache *kv,
                            int layer);
ci_status ci_cpu_attention(ci_backend *be, const ci_tensor *qkv, const ci_attn_shape *shape,
                           const ci_batch *batch, const ci_kv_cache *kv, int layer, float scale,
                           int window, ci_tensor *out);
ci_status ci_cpu_swiglu(ci_backend *be, const ci_tensor *gate_up, ci_tensor *out);
/* token_ids[t] = the last sample op's token of row sample_src[t] */
ci_status ci_cpu_take_samples(ci_backend *be, const ci_batch *dev);
ci_status ci_cpu_sample(ci_backend *be, const ci_tensor *logits, const ci_sample_row *rows, int n,
                        const ci_logit_adjust *adj, int nadj, const uint32_t *masks, int nmasks,
                        ci_sample_result *out);
ci_status ci_cpu_gather_rows(ci_backend *be, const ci_tensor *x, const int32_t *idx, int n,
                             ci_tensor *out);

/* Output rows per prefill panel (cpu_matmul.c, cpu_qmatmul.c: each panel is
 * one single-threaded sgemm): from the weight's shape only, never the
 * thread count, since OpenBLAS's summation order depends on the panel's
 * width: a matmul's sums, and so W8A8's rounded activations downstream,
 * are then the same at any --threads. About 16 panels a weight (beyond 16
 * threads, small weights leave some idle), at least 64 rows, at most
 * CI_PANEL_MAX_FLOATS f32 of weight (bigger panels re-pack x less often:
 * measured +25% on 4096x4096; Llama-3-8B's weights hit this cap, so their
 * panels are the per-thread ones of 2 threads), whole 16-row groups. */
#define CI_PANEL_MAX_FLOATS (1024 * 1024)
static inline int64_t ci_cpu_panel_rows(int64_t out, int64_t in) {
    int64_t p = (out + 15) / 16;
    if (p < 64) p = 64;
    if (p > CI_PANEL_MAX_FLOATS / in) p = CI_PANEL_MAX_FLOATS / in;
    p = (p + 15) / 16 * 16;
    return p < 16 ? 16 : p;
}

#endif
