/* cpu_elementwise.c — embedding lookup, SwiGLU and row gather. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

ci_status ci_cpu_embedding(ci_backend *be, const ci_tensor *table, const int32_t *ids, int n,
                           ci_tensor *out) {
    (void)be;
    if (out->dtype != CI_F32 || out->cols != table->cols || out->rows < n)
        return ci_errorf(CI_ERR_INVALID, "cpu embedding: output shape mismatch");
    size_t esz = ci_dtype_size(table->dtype);
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= table->rows)
            return ci_errorf(CI_ERR_INVALID, "cpu embedding: token id %d outside [0, %lld)", ids[i],
                             (long long)table->rows);
        ci_cpu_row_to_f32((const char *)table->data + (size_t)ids[i] * (size_t)table->cols * esz,
                          table->dtype, table->cols, (float *)out->data + (int64_t)i * out->cols);
    }
    return ci_ok();
}

ci_status ci_cpu_embedding_shard(ci_backend *be, const ci_tensor *table, int64_t row0,
                                 const int32_t *ids, int n, ci_tensor *out) {
    (void)be;
    if (out->dtype != CI_F32 || out->cols != table->cols || out->rows < n || row0 < 0)
        return ci_errorf(CI_ERR_INVALID, "cpu embedding_shard: output shape mismatch");
    size_t esz = ci_dtype_size(table->dtype);
    for (int i = 0; i < n; i++) {
        float *o = (float *)out->data + (int64_t)i * out->cols;
        const int64_t r = (int64_t)ids[i] - row0;
        if (r < 0 || r >= table->rows) {
            memset(o, 0, sizeof(float) * (size_t)out->cols);
            continue;
        }
        ci_cpu_row_to_f32((const char *)table->data + (size_t)r * (size_t)table->cols * esz,
                          table->dtype, table->cols, o);
    }
    return ci_ok();
}

typedef struct swiglu_ctx {
    const float *gu;
    float *out;
    int64_t inter;
} swiglu_ctx;

static void swiglu_task(void *vctx, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const swiglu_ctx *c = vctx;
    for (int64_t r = r0; r < r1; r++) {
        const float *g = c->gu + r * 2 * c->inter, *u = g + c->inter;
        float *o = c->out + r * c->inter;
        int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
        const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
        for (; i + 8 <= c->inter; i += 8) {
            __m256 gv = _mm256_loadu_ps(g + i);
            __m256 e = ci_exp256(_mm256_sub_ps(zero, gv));
            __m256 silu = _mm256_div_ps(gv, _mm256_add_ps(one, e));
            _mm256_storeu_ps(o + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
        }
#endif
        for (; i < c->inter; i++)
            o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

ci_status ci_cpu_swiglu(ci_backend *be, const ci_tensor *gate_up, ci_tensor *out) {
    ci_cpu *cpu = ci_cpu_of(be);
    if (gate_up->dtype != CI_F32 || out->dtype != CI_F32 || gate_up->cols != 2 * out->cols ||
        out->rows < gate_up->rows)
        return ci_errorf(CI_ERR_INVALID, "cpu swiglu: shape mismatch");
    swiglu_ctx c = {gate_up->data, out->data, out->cols};
    int64_t rows = gate_up->rows;
    int64_t grain = rows * out->cols < 65536 ? rows : (rows + cpu->nthreads - 1) / cpu->nthreads;
    ci_threadpool_run(cpu->tp, rows, grain, swiglu_task, &c);
    return ci_ok();
}

ci_status ci_cpu_gather_rows(ci_backend *be, const ci_tensor *x, const int32_t *idx, int n,
                             ci_tensor *out) {
    (void)be;
    if (x->dtype != out->dtype || x->cols != out->cols || out->rows < n)
        return ci_errorf(CI_ERR_INVALID, "cpu gather_rows: shape mismatch");
    size_t row = (size_t)x->cols * ci_dtype_size(x->dtype);
    for (int i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= x->rows)
            return ci_errorf(CI_ERR_INVALID, "cpu gather_rows: row %d outside [0, %lld)", idx[i],
                             (long long)x->rows);
        memcpy((char *)out->data + (size_t)i * row, (const char *)x->data + (size_t)idx[i] * row,
               row);
    }
    return ci_ok();
}
