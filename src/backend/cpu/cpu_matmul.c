/* cpu_matmul.c — y[n][out] = x[n][in] . w[out][in]^T (+ bias).
 *
 * Decode (n <= CI_MATVEC_MAX_N): a multithreaded matvec that streams the
 * weight once in its stored dtype, converting BF16/F16 to f32 in registers
 * (AVX2/FMA/F16C), for up to 4 activation rows at a time.
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

#define CI_MATVEC_MAX_N 4
#define CI_PANEL_MAX_FLOATS (256 * 1024) /* 1 MiB of f32 per thread */

typedef struct mm_ctx {
    const float *x;
    const void *w;
    ci_dtype wdt;
    const void *bias;
    ci_dtype bdt;
    float *y;
    int64_t n, in, out, panel;
    ci_cpu *cpu;
} mm_ctx;

static inline float load_elem(const void *p, ci_dtype dt, int64_t i) {
    switch (dt) {
    case CI_F32: return ((const float *)p)[i];
    case CI_BF16: return ci_bf16_to_f32(((const uint16_t *)p)[i]);
    case CI_F16: return ci_f16_to_f32(((const uint16_t *)p)[i]);
    default: return 0.0f;
    }
}

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

/* One weight row against nx (1..4) activation rows: dst[r] = x[r] . w_row */
static inline void dot_rows(const float *x, int64_t in, int nx, const void *wrow, ci_dtype dt,
                            float *dst) {
    int64_t k = 0;
    float s[CI_MATVEC_MAX_N] = {0};
#ifdef CI_HAVE_AVX2
    __m256 a0[CI_MATVEC_MAX_N], a1[CI_MATVEC_MAX_N];
    for (int r = 0; r < nx; r++) a0[r] = a1[r] = _mm256_setzero_ps();
    for (; k + 16 <= in; k += 16) {
        __m256 w0 = load8(wrow, dt, k), w1 = load8(wrow, dt, k + 8);
        for (int r = 0; r < nx; r++) {
            const float *xr = x + r * in + k;
            a0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr), a0[r]);
            a1[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + 8), a1[r]);
        }
    }
    for (int r = 0; r < nx; r++) s[r] = hsum8(_mm256_add_ps(a0[r], a1[r]));
#endif
    for (; k < in; k++) {
        float wk = load_elem(wrow, dt, k);
        for (int r = 0; r < nx; r++) s[r] += wk * x[r * in + k];
    }
    for (int r = 0; r < nx; r++) dst[r] = s[r];
}

static void matvec_task(void *vctx, int64_t j0, int64_t j1, int tid) {
    (void)tid;
    const mm_ctx *c = vctx;
    const size_t esz = ci_dtype_size(c->wdt);
    for (int64_t r0 = 0; r0 < c->n; r0 += CI_MATVEC_MAX_N) {
        int nx = (int)(c->n - r0 < CI_MATVEC_MAX_N ? c->n - r0 : CI_MATVEC_MAX_N);
        const float *x = c->x + r0 * c->in;
        for (int64_t j = j0; j < j1; j++) {
            float d[CI_MATVEC_MAX_N];
            dot_rows(x, c->in, nx, (const char *)c->w + (size_t)j * (size_t)c->in * esz, c->wdt,
                     d);
            float b = c->bias ? load_elem(c->bias, c->bdt, j) : 0.0f;
            for (int r = 0; r < nx; r++) c->y[(r0 + r) * c->out + j] = d[r] + b;
        }
    }
}

static void gemm_task(void *vctx, int64_t p0, int64_t p1, int tid) {
    const mm_ctx *c = vctx;
    const size_t esz = ci_dtype_size(c->wdt);
    for (int64_t p = p0; p < p1; p++) {
        int64_t j0 = p * c->panel;
        int64_t np = c->out - j0 < c->panel ? c->out - j0 : c->panel;
        const float *panel;
        if (c->wdt == CI_F32) {
            panel = (const float *)c->w + j0 * c->in;
        } else {
            float *ws = c->cpu->ws[tid];
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
                for (int64_t j = 0; j < np; j++) yr[j] += load_elem(c->bias, c->bdt, j0 + j);
            }
        }
    }
}

ci_status ci_cpu_matmul(ci_backend *be, const ci_tensor *x, const ci_tensor *w,
                        const ci_tensor *bias, ci_tensor *y) {
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
    mm_ctx c = {x->data, w->data, w->dtype, b, b ? bias->dtype : CI_F32, y->data,
                x->rows, x->cols, w->rows, 0, cpu};
    if (c.n == 0) return ci_ok();
    int nt = cpu->nthreads;
    if (c.n <= CI_MATVEC_MAX_N) {
        /* ~4 chunks per thread for balance on a shared machine */
        int64_t grain = (c.out + 4 * nt - 1) / (4 * nt);
        if (grain < 16) grain = 16;
        if (c.out * c.in * c.n < 32768) grain = c.out; /* too small to split */
        ci_threadpool_run(cpu->tp, c.out, grain, matvec_task, &c);
        return ci_ok();
    }
    int64_t panel = CI_PANEL_MAX_FLOATS / c.in;
    int64_t per_thread = (c.out + nt - 1) / nt;
    if (panel > per_thread) panel = per_thread;
    panel = (panel + 15) / 16 * 16;
    if (panel < 16) panel = 16;
    c.panel = panel;
    if (w->dtype != CI_F32) CI_TRY(ci_cpu_ws_reserve(cpu, (size_t)(panel * c.in)));
    int64_t npanels = (c.out + panel - 1) / panel;
    ci_threadpool_run(cpu->tp, npanels, 1, gemm_task, &c);
    return ci_ok();
}
