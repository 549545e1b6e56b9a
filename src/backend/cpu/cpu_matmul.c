/* cpu_matmul.c — y[n][out] = x[n][in] . w[out][in]^T (+ bias).
 *
 * Decode and small batches (n <= CI_MATVEC_MAX_N): a multithreaded kernel
 * that streams the weight once in its stored dtype, converting BF16/F16 to
 * f32 in registers (AVX2/FMA/F16C); each group of 4 weight rows is reused
 * from L1 for every activation row, two rows per pass.
 * Prefill (larger n): output rows are cut into panels; each thread converts
 * its panel to f32 in its own preallocated scratch and runs a single-threaded
 * cblas_sgemm on it. */
#include <cblas.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "util/half.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define CI_HAVE_AVX2 1
#endif

/* Up to this many activation rows the weight-streaming kernel beats
 * converting panels for sgemm (measured: 1536x256 and 4096x4096 BF16). */
#ifndef CI_MATVEC_MAX_N
#define CI_MATVEC_MAX_N 16
#endif

typedef struct mm_ctx {
    ci_matvec_args a; /* x, w, bias, y and the shape */
    int64_t panel;
    ci_cpu *cpu;
} mm_ctx;

#define load_elem ci_cpu_load_elem

#ifdef CI_HAVE_AVX2
static inline __m256 load8(const void *w, ci_dtype dt, int64_t k) {
    if (dt == CI_BF16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    if (dt == CI_F16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
        return _mm256_cvtph_ps(h);
    }
    return _mm256_loadu_ps((const float *)w + k);
}

static inline float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
#endif

#define CI_INLINE static inline __attribute__((always_inline))

/* out[0:4] = x . w_r for 4 consecutive weight rows (stride `in` elements);
 * dt is a compile-time constant at every call site. */
CI_INLINE void dot4(const float *x, int64_t in, const void *w, ci_dtype dt, float *out) {
    const size_t esz = dt == CI_F32 ? 4 : 2;
    const char *w0 = w, *w1 = w0 + (size_t)in * esz, *w2 = w1 + (size_t)in * esz,
               *w3 = w2 + (size_t)in * esz;
    int64_t k = 0;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#ifdef CI_HAVE_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    /* the next group of 4 rows follows w3 contiguously: prefetch it one
     * cache line (two for F32) per iteration */
    const char *pf = w3 + (size_t)in * esz;
    for (; k + 8 <= in; k += 8) {
        _mm_prefetch(pf + (size_t)k * 4 * esz, _MM_HINT_T0);
        if (esz == 4) _mm_prefetch(pf + (size_t)k * 16 + 64, _MM_HINT_T0);
        __m256 xv = _mm256_loadu_ps(x + k);
        a0 = _mm256_fmadd_ps(load8(w0, dt, k), xv, a0);
        a1 = _mm256_fmadd_ps(load8(w1, dt, k), xv, a1);
        a2 = _mm256_fmadd_ps(load8(w2, dt, k), xv, a2);
        a3 = _mm256_fmadd_ps(load8(w3, dt, k), xv, a3);
    }
    /* 4 horizontal sums at once */
    __m256 h01 = _mm256_hadd_ps(a0, a1), h23 = _mm256_hadd_ps(a2, a3);
    __m256 h = _mm256_hadd_ps(h01, h23); /* [s0 s1 s2 s3 | s0 s1 s2 s3] partials */
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    float t[4];
    _mm_storeu_ps(t, r);
    s0 = t[0];
    s1 = t[1];
    s2 = t[2];
    s3 = t[3];
#endif
    for (; k < in; k++) {
        float xk = x[k];
        s0 += load_elem(w0, dt, k) * xk;
        s1 += load_elem(w1, dt, k) * xk;
        s2 += load_elem(w2, dt, k) * xk;
        s3 += load_elem(w3, dt, k) * xk;
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

/* out0[0:4] = x0 . w_r and out1[0:4] = x1 . w_r for 4 consecutive weight
 * rows: each converted weight vector feeds two activation rows. */
CI_INLINE void dot4x2(const float *x0, const float *x1, int64_t in, const void *w, ci_dtype dt,
                      float *out0, float *out1) {
#ifdef CI_HAVE_AVX2
    const size_t esz = dt == CI_F32 ? 4 : 2;
    const char *w0 = w, *w1 = w0 + (size_t)in * esz, *w2 = w1 + (size_t)in * esz,
               *w3 = w2 + (size_t)in * esz;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int64_t k = 0;
    for (; k + 8 <= in; k += 8) {
        __m256 xa = _mm256_loadu_ps(x0 + k), xb = _mm256_loadu_ps(x1 + k);
        __m256 v0 = load8(w0, dt, k), v1 = load8(w1, dt, k), v2 = load8(w2, dt, k),
               v3 = load8(w3, dt, k);
        a0 = _mm256_fmadd_ps(v0, xa, a0);
        a1 = _mm256_fmadd_ps(v1, xa, a1);
        a2 = _mm256_fmadd_ps(v2, xa, a2);
        a3 = _mm256_fmadd_ps(v3, xa, a3);
        b0 = _mm256_fmadd_ps(v0, xb, b0);
        b1 = _mm256_fmadd_ps(v1, xb, b1);
        b2 = _mm256_fmadd_ps(v2, xb, b2);
        b3 = _mm256_fmadd_ps(v3, xb, b3);
    }
    __m256 ha = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 hb = _mm256_hadd_ps(_mm256_hadd_ps(b0, b1), _mm256_hadd_ps(b2, b3));
    _mm_storeu_ps(out0, _mm_add_ps(_mm256_castps256_ps128(ha), _mm256_extractf128_ps(ha, 1)));
    _mm_storeu_ps(out1, _mm_add_ps(_mm256_castps256_ps128(hb), _mm256_extractf128_ps(hb, 1)));
    for (; k < in; k++) {
        const char *ws[4] = {w0, w1, w2, w3};
        for (int q = 0; q < 4; q++) {
            float wk = load_elem(ws[q], dt, k);
            out0[q] += wk * x0[k];
            out1[q] += wk * x1[k];
        }
    }
#else
    dot4(x0, in, w, dt, out0);
    dot4(x1, in, w, dt, out1);
#endif
}

CI_INLINE float dot1(const float *x, int64_t in, const void *w, ci_dtype dt) {
    int64_t k = 0;
    float s = 0;
#ifdef CI_HAVE_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (; k + 16 <= in; k += 16) {
        a0 = _mm256_fmadd_ps(load8(w, dt, k), _mm256_loadu_ps(x + k), a0);
        a1 = _mm256_fmadd_ps(load8(w, dt, k + 8), _mm256_loadu_ps(x + k + 8), a1);
    }
    s = hsum8(_mm256_add_ps(a0, a1));
#endif
    for (; k < in; k++)
        s += load_elem(w, dt, k) * x[k];
    return s;
}

/* Rows [j0, j1) of the weight against all n (<= 4) activation rows. Each
 * group of 4 weight rows is read from memory once and reused from L1 for
 * every activation row. */
CI_INLINE void matvec_rows(const ci_matvec_args *c, int64_t j0, int64_t j1, ci_dtype dt) {
    const size_t esz = dt == CI_F32 ? 4 : 2;
    const int64_t in = c->in, out = c->out;
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) {
        const void *w = (const char *)c->w + (size_t)j * (size_t)in * esz;
        float b[4] = {0, 0, 0, 0};
        if (c->bias)
            for (int q = 0; q < 4; q++)
                b[q] = load_elem(c->bias, c->bdt, j + q);
        int64_t r = 0;
        for (; r + 2 <= c->n; r += 2) {
            float d0[4], d1[4];
            dot4x2(c->x + r * in, c->x + (r + 1) * in, in, w, dt, d0, d1);
            float *y0 = c->y + r * out + j, *y1 = y0 + out;
            for (int q = 0; q < 4; q++) {
                y0[q] = d0[q] + b[q];
                y1[q] = d1[q] + b[q];
            }
        }
        for (; r < c->n; r++) {
            float d[4];
            dot4(c->x + r * in, in, w, dt, d);
            float *y = c->y + r * out + j;
            for (int q = 0; q < 4; q++)
                y[q] = d[q] + b[q];
        }
    }
    for (; j < j1; j++) {
        const void *w = (const char *)c->w + (size_t)j * (size_t)in * esz;
        float b = c->bias ? load_elem(c->bias, c->bdt, j) : 0.0f;
        for (int64_t r = 0; r < c->n; r++)
            c->y[r * out + j] = dot1(c->x + r * in, in, w, dt) + b;
    }
}

static void matvec_task(void *vctx, int64_t j0, int64_t j1, int tid) {
    (void)tid;
    const mm_ctx *c = vctx;
    if (c->cpu->avx512) {
        ci_cpu_matvec_avx512(&c->a, j0, j1);
        return;
    }
    switch (c->a.wdt) {
    case CI_BF16: matvec_rows(&c->a, j0, j1, CI_BF16); break;
    case CI_F16: matvec_rows(&c->a, j0, j1, CI_F16); break;
    default: matvec_rows(&c->a, j0, j1, CI_F32); break;
    }
}

static void gemm_task(void *vctx, int64_t p0, int64_t p1, int tid) {
    const mm_ctx *m = vctx;
    const ci_matvec_args *c = &m->a;
    const size_t esz = ci_dtype_size(c->wdt);
    for (int64_t p = p0; p < p1; p++) {
        int64_t j0 = p * m->panel;
        int64_t np = c->out - j0 < m->panel ? c->out - j0 : m->panel;
        const float *panel;
        if (c->wdt == CI_F32) {
            panel = (const float *)c->w + j0 * c->in;
        } else {
            float *ws = m->cpu->ws[tid];
            ci_cpu_row_to_f32((const char *)c->w + (size_t)j0 * (size_t)c->in * esz, c->wdt,
                              np * c->in, ws);
            panel = ws;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)c->n, (blasint)np,
                    (blasint)c->in, 1.0f, c->x, (blasint)c->in, panel, (blasint)c->in, 0.0f,
                    c->y + j0, (blasint)c->out);
        if (c->bias) {
            for (int64_t i = 0; i < c->n; i++) {
                float *yr = c->y + i * c->out + j0;
                for (int64_t j = 0; j < np; j++)
                    yr[j] += load_elem(c->bias, c->bdt, j0 + j);
            }
        }
    }
}

ci_status ci_cpu_matmul(ci_backend *be, const ci_tensor *x, const ci_tensor *w,
                        const ci_tensor *bias, ci_tensor *y) {
    if (w->dtype == CI_QW) return ci_cpu_qmatmul(be, x, w, bias, y); /* cpu_qmatmul.c */
    ci_cpu *cpu = ci_cpu_of(be);
    if (x->dtype != CI_F32 || y->dtype != CI_F32)
        return ci_errorf(CI_ERR_INVALID, "cpu matmul: activations must be F32");
    if (w->dtype != CI_F32 && w->dtype != CI_F16 && w->dtype != CI_BF16)
        return ci_errorf(CI_ERR_UNSUPPORTED, "cpu matmul: weight dtype %s",
                         ci_dtype_name(w->dtype));
    if (x->cols != w->cols || y->cols != w->rows || y->rows < x->rows)
        return ci_errorf(CI_ERR_INVALID,
                         "cpu matmul: shapes x[%lld][%lld] w[%lld][%lld] y[%lld][%lld]",
                         (long long)x->rows, (long long)x->cols, (long long)w->rows,
                         (long long)w->cols, (long long)y->rows, (long long)y->cols);
    const void *b = bias && bias->data ? bias->data : NULL;
    if (b && bias->rows * bias->cols != w->rows)
        return ci_errorf(CI_ERR_INVALID, "cpu matmul: bias has %lld elements, want %lld",
                         (long long)(bias->rows * bias->cols), (long long)w->rows);
    mm_ctx c = {{x->data, w->data, w->dtype, b, b ? bias->dtype : CI_F32, y->data, x->rows, x->cols,
                 w->rows},
                0,
                cpu};
    if (c.a.n == 0) return ci_ok();
    int nt = cpu->nthreads;
    if (c.a.n <= CI_MATVEC_MAX_N) {
        /* ~4 chunks per thread for balance on a shared machine */
        int64_t grain = (c.a.out + 4 * nt - 1) / (4 * nt);
        grain = (grain + 15) / 16 * 16;                        /* whole groups of 4 rows */
        if (c.a.out * c.a.in * c.a.n < 32768) grain = c.a.out; /* too small to split */
        ci_threadpool_run(cpu->tp, c.a.out, grain, matvec_task, &c);
        return ci_ok();
    }
    const int64_t panel = ci_cpu_panel_rows(c.a.out, c.a.in);
    c.panel = panel;
    if (w->dtype != CI_F32) CI_TRY(ci_cpu_ws_reserve(cpu, (size_t)(panel * c.a.in)));
    int64_t npanels = (c.a.out + panel - 1) / panel;
    ci_threadpool_run(cpu->tp, npanels, 1, gemm_task, &c);
    return ci_ok();
}
