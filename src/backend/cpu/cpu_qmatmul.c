/* cpu_qmatmul.c — quantized weights on the CPU: storage (qweight_create) and
 * y = x . dequant(w)^T (+ bias), the twin every GPU quantized kernel is
 * tested against.
 *
 * The weight stays packed in memory (INT4: half a byte per weight plus one f32
 * scale and one zero byte per group; FP8: one byte plus one scale per group).
 * Decode (n <= 4, contiguous groups of a multiple of 16 columns) computes
 * straight from the packed row (fused_rows: the products of
 * ci_qweight_dequant_row regrouped per scale group; at AVX-512 width in
 * cpu_qmatvec_avx512.c where the CPU has it). Otherwise each thread
 * dequantizes a panel of output rows into its own f32 scratch, exactly
 * ci_qweight_dequant_row's floats, and either dots it with every activation
 * row (n <= 16) or runs one single-threaded sgemm on it (prefill). Results
 * equal an f32 model of the dequantized weights up to the summation order.
 * Act order that a column sort undoes (ci_qweight_act_sort) is stored sorted
 * by group (w.perm), and x gathered to match, so it takes the paths above too.
 * A W8A8 weight first replaces x by its quantized values (util/qweight.h). */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

/* The backend's block: this header (a ci_qweight first, as backend.h
 * promises), then the arrays it points into. */
typedef struct cpu_qw {
    ci_qweight w;
    float fp8_lut[256]; /* E4M3 code -> f32 */
    size_t bytes;       /* the whole block */
    int32_t *wsum;      /* INT8: each row's sum of codes (the VNNI GEMM's offset), else NULL */
} cpu_qw;

#define QW_DECODE_MAX_N 16
#define QW_PANEL_ROWS 4 /* decode: 4 dequantized rows stay in L1 while every x row passes */

static size_t align64(size_t n) {
    return (n + 63) & ~(size_t)63;
}

ci_status ci_cpu_qweight_create(ci_backend *be, const ci_qweight *h0, ci_tensor *out) {
    (void)be;
    memset(out, 0, sizeof *out);
    const ci_qweight *h = h0;
    if (h->rows <= 0 || h->cols <= 0 || h->ngroups <= 0 || h->group_size <= 0 ||
        (h->format == CI_QW_INT4 && (h->cols % 2 || !h->zeros)) ||
        (h->format != CI_QW_INT4 && h->format != CI_QW_FP8 && h->format != CI_QW_INT8) ||
        h->nparts < 1 || h->nparts > CI_QW_MAX_PARTS)
        return ci_errorf(CI_ERR_INVALID, "cpu: bad quantized weight [%lld][%lld]",
                         (long long)h->rows, (long long)h->cols);
    size_t qb = (size_t)h->rows * (size_t)(h->format == CI_QW_INT4 ? h->cols / 2 : h->cols);
    size_t sb = (size_t)(h->rows * h->ngroups) * sizeof(float);
    size_t zb = h->zeros ? (size_t)(h->rows * h->ngroups) : 0;
    ci_qweight sorted; /* act order a column sort undoes: stored sorted, x gathered */
    const int srt = ci_qweight_act_sort(h0, &sorted);
    if (srt) h = &sorted;
    size_t gb = h->g_idx ? (size_t)(h->nparts * h->cols) * sizeof(int32_t) : 0;
    size_t pb = h->perm ? (size_t)h->cols * sizeof(int32_t) : 0;
    size_t wb = h->format == CI_QW_INT8 ? (size_t)h->rows * sizeof(int32_t) : 0;
    size_t off_q = align64(sizeof(cpu_qw)), off_s = off_q + align64(qb),
           off_z = off_s + align64(sb), off_g = off_z + align64(zb), off_p = off_g + align64(gb),
           off_w = off_p + align64(pb), total = off_w + wb;
    char *blk = NULL;
    if (posix_memalign((void **)&blk, 64, total) != 0 || !blk) {
        if (srt) ci_qweight_act_sort_free(&sorted);
        return ci_errorf(CI_ERR_NOMEM, "cpu: cannot allocate %zu bytes for a quantized weight",
                         total);
    }
    cpu_qw *c = (cpu_qw *)blk;
    c->w = *h;
    c->bytes = total;
    c->w.q = (uint8_t *)(blk + off_q);
    c->w.scales = (float *)(blk + off_s);
    c->w.zeros = zb ? (uint8_t *)(blk + off_z) : NULL;
    c->w.g_idx = gb ? (int32_t *)(blk + off_g) : NULL;
    c->w.perm = pb ? (int32_t *)(blk + off_p) : NULL;
    memcpy(c->w.q, h->q, qb);
    if (pb) memcpy(c->w.perm, h->perm, pb);
    memcpy(c->w.scales, h->scales, sb);
    if (zb) memcpy(c->w.zeros, h->zeros, zb);
    if (gb) memcpy(c->w.g_idx, h->g_idx, gb);
    c->wsum = wb ? (int32_t *)(blk + off_w) : NULL;
    for (int64_t r = 0; wb && r < h->rows; r++) {
        const int8_t *q = (const int8_t *)h->q + r * h->cols;
        int32_t t = 0;
        for (int64_t k = 0; k < h->cols; k++)
            t += q[k];
        c->wsum[r] = t;
    }
    for (int i = 0; i < 256; i++)
        c->fp8_lut[i] = ci_fp8_e4m3_to_f32((uint8_t)i);
    if (srt) ci_qweight_act_sort_free(&sorted);
    out->data = blk;
    out->dtype = CI_QW;
    out->rows = h->rows;
    out->cols = h->cols;
    return ci_ok();
}

void ci_cpu_qweight_free(ci_backend *be, ci_tensor *w) {
    (void)be;
    free(w->data); /* the one block */
    w->data = NULL;
}

size_t ci_cpu_qweight_bytes(const ci_tensor *w) {
    return w->dtype == CI_QW && w->data ? ((const cpu_qw *)w->data)->bytes : 0;
}

#if defined(__AVX2__) && defined(__F16C__)
/* 8 E4M3 bytes -> f32 times 2^-8, exactly: sign and the 7 magnitude bits
 * moved into f16 bit patterns (exponent bias 15 instead of 7, so the value
 * is e4m3 * 2^-8; E4M3 subnormals land on f16 subnormals), 0x7f kept NaN,
 * then F16C's conversion. Callers fold the 2^8 into the scale (exact). */
static inline __m256 fp8x8(const uint8_t *p) {
    const __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)p));
    const __m128i mag = _mm_and_si128(b, _mm_set1_epi16(0x7f));
    __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8),
                             _mm_slli_epi16(mag, 7));
    const __m128i nan = _mm_cmpeq_epi16(mag, _mm_set1_epi16(0x7f));
    h = _mm_blendv_epi8(h, _mm_set1_epi16(0x7e00), nan);
    return _mm256_cvtph_ps(h);
}
#endif

/* Row r in f32 (the values of ci_qweight_dequant_row, faster). */
static void dequant_row(const cpu_qw *c, int64_t r, float *out) {
    const ci_qweight *w = &c->w;
    if (w->g_idx) {
        ci_qweight_dequant_row(w, r, out);
        return;
    }
    const float *s = w->scales + r * w->ngroups;
    if (w->format == CI_QW_INT8) { /* a loop the compiler vectorizes */
        const int8_t *q = (const int8_t *)(w->q + r * w->cols);
        for (int64_t g = 0; g < w->ngroups; g++) {
            int64_t c0 = g * w->group_size,
                    c1 = c0 + w->group_size < w->cols ? c0 + w->group_size : w->cols;
            const float sg = s[g];
            for (int64_t k = c0; k < c1; k++)
                out[k] = (float)q[k] * sg;
        }
        return;
    }
    if (w->format == CI_QW_FP8) {
        const uint8_t *q = w->q + r * w->cols;
        for (int64_t g = 0; g < w->ngroups; g++) {
            int64_t c0 = g * w->group_size,
                    c1 = c0 + w->group_size < w->cols ? c0 + w->group_size : w->cols;
            int64_t k = c0;
#if defined(__AVX2__) && defined(__F16C__)
            const __m256 sv = _mm256_set1_ps(s[g] * 256.0f); /* fp8x8's 2^-8 */
            for (; k + 8 <= c1; k += 8)
                _mm256_storeu_ps(out + k, _mm256_mul_ps(fp8x8(q + k), sv));
#endif
            for (; k < c1; k++)
                out[k] = c->fp8_lut[q[k]] * s[g];
        }
        return;
    }
    const uint8_t *q = w->q + r * (w->cols / 2), *z = w->zeros + r * w->ngroups;
    for (int64_t g = 0; g < w->ngroups; g++) {
        int64_t c0 = g * w->group_size,
                c1 = c0 + w->group_size < w->cols ? c0 + w->group_size : w->cols;
        int64_t k = c0;
#if defined(__AVX2__)
        /* 16 weights per step: bytes -> low/high nibbles interleaved in
         * column order -> int32 - zero -> float * scale (the same products) */
        const __m256i zv = _mm256_set1_epi32(z[g]);
        const __m256 sv = _mm256_set1_ps(s[g]);
        const __m128i m4 = _mm_set1_epi8(0x0F);
        for (; k + 16 <= c1; k += 16) {
            __m128i b = _mm_loadl_epi64((const __m128i *)(q + (k >> 1)));
            __m128i lo = _mm_and_si128(b, m4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
            __m128i v = _mm_unpacklo_epi8(lo, hi); /* 16 nibbles in column order */
            __m256i v0 = _mm256_sub_epi32(_mm256_cvtepu8_epi32(v), zv);
            __m256i v1 = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)), zv);
            _mm256_storeu_ps(out + k, _mm256_mul_ps(_mm256_cvtepi32_ps(v0), sv));
            _mm256_storeu_ps(out + k + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(v1), sv));
        }
#endif
        float lut[16];
        for (int v = 0; v < 16; v++)
            lut[v] = (float)(v - (int)z[g]) * s[g];
        for (; k < c1; k += 2) { /* group sizes are even */
            uint8_t b = q[k >> 1];
            out[k] = lut[b & 0xF];
            out[k + 1] = lut[b >> 4];
        }
    }
}

typedef struct qmm_ctx {
    const cpu_qw *w;
    const float *x, *bias;
    float *y;
    int64_t n, in, out, panel;
    int fused; /* decode straight from the packed row (fused_rows) */
    ci_cpu *cpu;
} qmm_ctx;

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define QW_FUSED_MAX_N 4

/* Decode (n <= 4) straight from the packed row, no f32 copy of it, for
 * contiguous groups (no act order) of a multiple of 16 columns:
 *   INT4: y[i][r] = sum_g s_g * (sum_{k in g} q_k x[i][k] - z_g * xs[i][g])
 *   FP8:  y[i][r] = sum_g s_g * sum_{k in g} e4m3(q_k) x[i][k]
 *   INT8: y[i][r] = sum_g s_g * sum_{k in g} q_k x[i][k]
 * the products of dequant_row regrouped (equal up to rounding);
 * xs[i][g] = sum of x[i] over group g. */
static inline __attribute__((always_inline)) void
fused_rows(const qmm_ctx *c, const float *xs, int64_t r0, int64_t r1, const int n, const int fmt) {
    const ci_qweight *w = &c->w->w;
    const int fp8 = fmt == CI_QW_FP8, i8 = fmt == CI_QW_INT8, byte = fp8 || i8;
    const int64_t in = c->in, gs = w->group_size, ng = w->ngroups, rb = byte ? in : in / 2;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *q = w->q + r * rb;
        const uint8_t *z = byte ? NULL : w->zeros + r * ng;
        const float *s = w->scales + r * ng;
        __m256 tot[QW_FUSED_MAX_N];
        float zt[QW_FUSED_MAX_N];
        for (int i = 0; i < n; i++) {
            tot[i] = _mm256_setzero_ps();
            zt[i] = 0.0f;
        }
        for (int64_t g = 0; g < ng; g++) {
            __m256 acc[QW_FUSED_MAX_N];
            for (int i = 0; i < n; i++)
                acc[i] = _mm256_setzero_ps();
            for (int64_t k = g * gs; k < (g + 1) * gs; k += 16) {
                __m256 q0, q1;
                /* the rows stream from DRAM: fetch two rows ahead (one
                 * hint per 16 weights; the hardware prefetcher alone left
                 * the FP8 decode at a fifth of the speed) */
                _mm_prefetch((const char *)q + 2 * rb + (byte ? k : k / 2), _MM_HINT_T0);
                if (fp8) {
                    q0 = fp8x8(q + k);
                    q1 = fp8x8(q + k + 8);
                } else if (i8) { /* sign-extended bytes: exact in f32 */
                    q0 = _mm256_cvtepi32_ps(
                        _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + k))));
                    q1 = _mm256_cvtepi32_ps(
                        _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + k + 8))));
                } else {
                    __m128i b = _mm_loadl_epi64((const __m128i *)(q + (k >> 1)));
                    __m128i lo = _mm_and_si128(b, m4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
                    __m128i v = _mm_unpacklo_epi8(lo, hi);
                    q0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
                    q1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)));
                }
                for (int i = 0; i < n; i++) {
                    const float *xi = c->x + i * in + k;
                    acc[i] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(xi), acc[i]);
                    acc[i] = _mm256_fmadd_ps(q1, _mm256_loadu_ps(xi + 8), acc[i]);
                }
            }
            __m256 sv = _mm256_set1_ps(fp8 ? s[g] * 256.0f : s[g]); /* fp8x8's 2^-8 */
            for (int i = 0; i < n; i++) {
                tot[i] = _mm256_fmadd_ps(sv, acc[i], tot[i]);
                if (!byte) zt[i] += s[g] * (float)z[g] * xs[i * ng + g];
            }
        }
        for (int i = 0; i < n; i++) {
            float lanes[8], v = -zt[i];
            _mm256_storeu_ps(lanes, tot[i]);
            for (int l = 0; l < 8; l++)
                v += lanes[l];
            c->y[i * c->out + r] = c->bias ? v + c->bias[r] : v;
        }
    }
}

/* fused_rows with n and the format as constants (each case inlines its own loop) */
#define FUSED_N(FMT)                                                                               \
    switch (c->n) {                                                                                \
    case 1: fused_rows(c, xs, r0, r1, 1, FMT); break;                                              \
    case 2: fused_rows(c, xs, r0, r1, 2, FMT); break;                                              \
    case 3: fused_rows(c, xs, r0, r1, 3, FMT); break;                                              \
    default: fused_rows(c, xs, r0, r1, 4, FMT); break;                                             \
    }

static void fused_decode(const qmm_ctx *c, float *xs, int64_t r0, int64_t r1) {
    const ci_qweight *w = &c->w->w;
    const int wide = c->cpu->avx512 && ci_cpu_qdecode_avx512_ok(w);
    const ci_qdecode_args qa = {w, c->x, xs, c->bias, c->y, c->n, c->in, c->out};
    if (w->format != CI_QW_INT4 && wide) { /* FP8, INT8: no zero points, no group sums */
        ci_cpu_qdecode_avx512(&qa, r0, r1);
        return;
    }
    if (w->format == CI_QW_FP8) {
        FUSED_N(CI_QW_FP8)
        return;
    }
    if (w->format == CI_QW_INT8) {
        FUSED_N(CI_QW_INT8)
        return;
    }
    for (int64_t i = 0; i < c->n; i++)
        for (int64_t g = 0; g < w->ngroups; g++) {
            const float *xg = c->x + i * c->in + g * w->group_size;
            float t = 0.0f;
            for (int64_t k = 0; k < w->group_size; k++)
                t += xg[k];
            xs[i * w->ngroups + g] = t;
        }
    if (wide) {
        ci_cpu_qdecode_avx512(&qa, r0, r1);
        return;
    }
    FUSED_N(CI_QW_INT4)
}
#undef FUSED_N

static int fusable(const ci_qweight *w, int64_t n) {
    return n <= QW_FUSED_MAX_N && !w->g_idx && w->group_size % 16 == 0 &&
           w->ngroups * w->group_size == w->cols;
}
#else
static void fused_decode(const qmm_ctx *c, float *xs, int64_t r0, int64_t r1) {
    (void)c, (void)xs, (void)r0, (void)r1;
}
static int fusable(const ci_qweight *w, int64_t n) {
    (void)w, (void)n;
    return 0;
}
#endif

typedef struct qact_ctx {
    const ci_qweight *w;
    float *x; /* [rows][K] */
    int64_t K;
} qact_ctx;

/* W8A8: rows [i0, i1) of x rounded as ci_qweight_quant_act says */
static void qact_task(void *vctx, int64_t i0, int64_t i1, int tid) {
    (void)tid;
    const qact_ctx *q = vctx;
    for (int64_t i = i0; i < i1; i++)
        ci_qweight_quant_act(q->w, q->x + i * q->K);
}

static void qmm_task(void *vctx, int64_t p0, int64_t p1, int tid) {
    const qmm_ctx *c = vctx;
    float *ws = c->cpu->ws[tid];
    if (c->fused) {
        int64_t r1 = p1 * c->panel < c->out ? p1 * c->panel : c->out;
        fused_decode(c, ws, p0 * c->panel, r1);
        return;
    }
    for (int64_t p = p0; p < p1; p++) {
        int64_t j0 = p * c->panel, np = c->out - j0 < c->panel ? c->out - j0 : c->panel;
        for (int64_t j = 0; j < np; j++)
            dequant_row(c->w, j0 + j, ws + j * c->in);
        if (c->n <= QW_DECODE_MAX_N) {
            for (int64_t i = 0; i < c->n; i++)
                for (int64_t j = 0; j < np; j++)
                    c->y[i * c->out + j0 + j] = ci_dot_f32(c->x + i * c->in, ws + j * c->in, c->in);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)c->n, (blasint)np,
                        (blasint)c->in, 1.0f, c->x, (blasint)c->in, ws, (blasint)c->in, 0.0f,
                        c->y + j0, (blasint)c->out);
        }
        if (c->bias)
            for (int64_t i = 0; i < c->n; i++)
                for (int64_t j = 0; j < np; j++)
                    c->y[i * c->out + j0 + j] += c->bias[j0 + j];
    }
}

/* the W8A8 activation scratch holds at least `floats` floats (grown, never shrunk) */
static ci_status qact_reserve(ci_cpu *cpu, size_t floats) {
    if (floats <= cpu->qact_floats) return ci_ok();
    free(cpu->qact);
    cpu->qact_floats = 0;
    cpu->qact = malloc(floats * sizeof(float));
    if (!cpu->qact) return ci_errorf(CI_ERR_NOMEM, "cpu qmatmul: out of memory");
    cpu->qact_floats = floats;
    return ci_ok();
}

/* INT8 W8A8 on integer products (cpu_qgemm_i8_vnni.c): the activations'
 * codes (ci_qweight_quant_act's, + 128) and scales go to the W8A8 scratch */
typedef struct i8_ctx {
    ci_i8_gemm_args a;
    int64_t rows_per_task; /* a multiple of 16 */
    ci_cpu *cpu;
} i8_ctx;

static void i8_task(void *vctx, int64_t p0, int64_t p1, int tid) {
    const i8_ctx *c = vctx;
    int64_t r1 = p1 * c->rows_per_task < c->a.out ? p1 * c->rows_per_task : c->a.out;
    ci_cpu_i8_gemm_vnni(&c->a, p0 * c->rows_per_task, r1, (int8_t *)c->cpu->ws[tid]);
}

typedef struct i8q_ctx {
    const ci_qweight *w;
    const float *x; /* [n][K] */
    uint8_t *xq;    /* [n][kp] codes + 128 */
    float *sx;      /* [n] scales */
    int64_t K, kp;
} i8q_ctx;

/* tokens [t0, t1): ci_qweight_quant_act's INT8 codes (+ 128) and scales */
static void i8q_task(void *vctx, int64_t t0, int64_t t1, int tid) {
    (void)tid;
    const i8q_ctx *c = vctx;
    for (int64_t t = t0; t < t1; t++) {
        const float *xr = c->x + t * c->K;
        const float s = ci_qweight_act_scale(c->w, xr, c->K);
        uint8_t *q = c->xq + t * c->kp;
        for (int64_t k = 0; k < c->K; k++)
            q[k] = (uint8_t)((int)ci_int8_round(xr[k] / s) + 128);
        memset(q + c->K, 128, (size_t)(c->kp - c->K));
        c->sx[t] = s;
    }
}

static ci_status i8_gemm(ci_cpu *cpu, const cpu_qw *cw, const ci_tensor *x, const float *b,
                         ci_tensor *y) {
    const ci_qweight *qw = &cw->w;
    const int64_t n = x->rows, K = qw->cols, kp = (K + 63) / 64 * 64;
    CI_TRY(qact_reserve(cpu, ((size_t)(n * kp) + 3) / 4 + (size_t)n + 16));
    float *sx = cpu->qact;
    uint8_t *xq = (uint8_t *)(cpu->qact + n + 16 - (n % 16)); /* 64-byte offset */
    i8q_ctx q = {qw, x->data, xq, sx, K, kp};
    ci_threadpool_run(cpu->tp, n, 8, i8q_task, &q); /* each token's codes on its own */
    i8_ctx c = {
        {(const int8_t *)qw->q, cw->wsum, qw->scales, xq, sx, b, y->data, n, K, kp, qw->rows},
        64,
        cpu};
    CI_TRY(ci_cpu_ws_reserve(cpu, (size_t)(16 * kp) / sizeof(float) + 16)); /* the row packs */
    int64_t tasks = (qw->rows + c.rows_per_task - 1) / c.rows_per_task;
    ci_threadpool_run(cpu->tp, tasks, 1, i8_task, &c);
    return ci_ok();
}

ci_status ci_cpu_qmatmul(ci_backend *be, const ci_tensor *x, const ci_tensor *w,
                         const ci_tensor *bias, ci_tensor *y) {
    ci_cpu *cpu = ci_cpu_of(be);
    if (x->dtype != CI_F32 || y->dtype != CI_F32)
        return ci_errorf(CI_ERR_INVALID, "cpu qmatmul: activations must be F32");
    if (x->cols != w->cols || y->cols != w->rows || y->rows < x->rows)
        return ci_errorf(CI_ERR_INVALID,
                         "cpu qmatmul: shapes x[%lld][%lld] w[%lld][%lld] y[%lld][%lld]",
                         (long long)x->rows, (long long)x->cols, (long long)w->rows,
                         (long long)w->cols, (long long)y->rows, (long long)y->cols);
    const float *b = bias && bias->data ? bias->data : NULL;
    if (b && (bias->dtype != CI_F32 || bias->rows * bias->cols != w->rows))
        return ci_errorf(CI_ERR_INVALID, "cpu qmatmul: bias must be F32 with %lld elements",
                         (long long)w->rows);
    const ci_qweight *qw = w->data;
    const int32_t *perm = qw->perm;
    const float *xs = x->data;
    if (qw->format == CI_QW_INT8 && qw->act_group == qw->cols && qw->ngroups == 1 && !qw->g_idx &&
        !perm && qw->rows % 16 == 0 && x->rows >= CI_QW_ACT_MIN_ROWS && cpu->vnni &&
        qw->cols <= 65536)
        return i8_gemm(cpu, w->data, x, b, y);
    const int act = qw->act_group && x->rows >= CI_QW_ACT_MIN_ROWS;
    if (act || perm) {
        /* x in the stored columns' order (act order sorted by group); W8A8:
         * the activations as the FP8 GEMM sees them (util/qweight.h; per
         * token, so the order does not change them) */
        const int64_t K = x->cols;
        size_t need = (size_t)(x->rows * K);
        CI_TRY(qact_reserve(cpu, need));
        if (perm)
            for (int64_t i = 0; i < x->rows; i++)
                for (int64_t k = 0; k < K; k++)
                    cpu->qact[i * K + k] = xs[i * K + perm[k]];
        else
            memcpy(cpu->qact, xs, need * sizeof(float));
        if (act) { /* each token's rounding on its own: spread over the pool */
            qact_ctx q = {qw, cpu->qact, K};
            ci_threadpool_run(cpu->tp, x->rows, 8, qact_task, &q);
        }
        xs = cpu->qact;
    }
    qmm_ctx c = {w->data,
                 xs,
                 b,
                 y->data,
                 x->rows,
                 x->cols,
                 w->rows,
                 QW_PANEL_ROWS,
                 fusable(w->data, x->rows),
                 cpu};
    if (c.n == 0) return ci_ok();
    int nt = cpu->nthreads;
    if (c.n > QW_DECODE_MAX_N) /* panels for sgemm, the same at any thread count */
        c.panel = ci_cpu_panel_rows(c.out, c.in);
    CI_TRY(ci_cpu_ws_reserve(cpu, (size_t)(c.panel * c.in)));
    int64_t npanels = (c.out + c.panel - 1) / c.panel;
    int64_t grain = c.n <= QW_DECODE_MAX_N ? (npanels + 4 * nt - 1) / (4 * nt) : 1;
    ci_threadpool_run(cpu->tp, npanels, grain, qmm_task, &c);
    return ci_ok();
}
