/* cpu_backend.c — the CPU reference backend: host memory, weight storage
 * (BF16/F16 kept as stored, F32 as F32; converted to f32 inside the ops) and
 * the op table. Activations and the KV cache are F32. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#if defined(__F16C__)
#include <immintrin.h>
#endif
#include "backend/comm.h"
#include "backend/sample_ref.h"
#include "util/half.h"

static ci_status cpu_alloc(ci_backend *be, size_t bytes, void **out) {
    (void)be;
    *out = NULL;
    size_t sz = (bytes + 63) & ~(size_t)63;
    if (sz == 0) sz = 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, sz) != 0 || !p)
        return ci_errorf(CI_ERR_NOMEM, "cpu: cannot allocate %zu bytes", bytes);
    *out = p;
    return ci_ok();
}

static void cpu_free(ci_backend *be, void *p) {
    (void)be;
    free(p);
}

static ci_status cpu_copy(ci_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memmove(dst, src, bytes);
    return ci_ok();
}

static ci_status cpu_memset0(ci_backend *be, void *dst, size_t bytes) {
    (void)be;
    if (bytes) memset(dst, 0, bytes);
    return ci_ok();
}

static ci_status cpu_sync(ci_backend *be) {
    (void)be;
    return ci_ok();
}

void ci_cpu_row_to_f32(const void *src, ci_dtype dt, int64_t n, float *dst) {
    switch (dt) {
    case CI_F32: memcpy(dst, src, (size_t)n * 4); break;
    case CI_BF16: {
        const uint16_t *s = src;
        uint32_t *d = (uint32_t *)dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = (uint32_t)s[i] << 16;
        break;
    }
    case CI_F16: {
        const uint16_t *s = src;
        int64_t i = 0;
#if defined(__F16C__)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
#endif
        for (; i < n; i++)
            dst[i] = ci_f16_to_f32(s[i]);
        break;
    }
    default: memset(dst, 0, (size_t)n * 4); break;
    }
}

static ci_status cpu_weight_alloc(ci_backend *be, ci_dtype src_dtype, int64_t rows, int64_t cols,
                                  ci_tensor *out) {
    memset(out, 0, sizeof *out);
    if (src_dtype != CI_F32 && src_dtype != CI_F16 && src_dtype != CI_BF16)
        return ci_errorf(CI_ERR_UNSUPPORTED, "cpu: weights of dtype %s are not supported",
                         ci_dtype_name(src_dtype));
    if (rows <= 0 || cols <= 0)
        return ci_errorf(CI_ERR_INVALID, "cpu: bad weight shape [%lld][%lld]", (long long)rows,
                         (long long)cols);
    void *p;
    CI_TRY(cpu_alloc(be, (size_t)rows * (size_t)cols * ci_dtype_size(src_dtype), &p));
    out->data = p;
    out->dtype = src_dtype;
    out->rows = rows;
    out->cols = cols;
    return ci_ok();
}

static ci_status cpu_weight_write(ci_backend *be, ci_tensor *w, int64_t row0, const void *src,
                                  ci_dtype src_dtype, int64_t nrows) {
    (void)be;
    if (row0 < 0 || nrows < 0 || row0 + nrows > w->rows)
        return ci_errorf(CI_ERR_INVALID, "cpu: weight write rows [%lld, %lld) outside [0, %lld)",
                         (long long)row0, (long long)(row0 + nrows), (long long)w->rows);
    size_t n = (size_t)nrows * (size_t)w->cols;
    char *dst = (char *)w->data + (size_t)row0 * (size_t)w->cols * ci_dtype_size(w->dtype);
    if (src_dtype == w->dtype) {
        memcpy(dst, src, n * ci_dtype_size(w->dtype));
        return ci_ok();
    }
    if (src_dtype != CI_F32 && src_dtype != CI_F16 && src_dtype != CI_BF16)
        return ci_errorf(CI_ERR_UNSUPPORTED, "cpu: cannot convert %s weights",
                         ci_dtype_name(src_dtype));
    /* src may be unaligned (safetensors does not align tensors): memcpy */
    const char *sb = src;
    for (size_t i = 0; i < n; i++) {
        float f;
        uint16_t h;
        if (src_dtype == CI_F32) {
            memcpy(&f, sb + 4 * i, 4);
        } else {
            memcpy(&h, sb + 2 * i, 2);
            f = src_dtype == CI_BF16 ? ci_bf16_to_f32(h) : ci_f16_to_f32(h);
        }
        if (w->dtype == CI_F32)
            ((float *)dst)[i] = f;
        else if (w->dtype == CI_BF16)
            ((uint16_t *)dst)[i] = ci_f32_to_bf16(f);
        else
            ((uint16_t *)dst)[i] = ci_f32_to_f16(f);
    }
    return ci_ok();
}

static ci_status cpu_prepare_batch(ci_backend *be, const ci_batch *host, ci_batch *dev) {
    (void)be;
    *dev = *host;
    return ci_ok();
}

ci_status ci_cpu_ws_reserve(ci_cpu *c, size_t n) {
    for (int t = 0; t < c->nthreads; t++) {
        if (c->ws_floats[t] >= n) continue;
        free(c->ws[t]);
        c->ws[t] = NULL;
        c->ws_floats[t] = 0;
        void *p = NULL;
        if (posix_memalign(&p, 64, n * sizeof(float)) != 0 || !p)
            return ci_errorf(CI_ERR_NOMEM, "cpu: cannot allocate %zu bytes of scratch",
                             n * sizeof(float));
        c->ws[t] = p;
        c->ws_floats[t] = n;
    }
    return ci_ok();
}

static void cpu_destroy(ci_backend *be) {
    if (!be) return;
    ci_cpu *c = be->impl;
    if (c) {
        ci_threadpool_destroy(c->tp);
        if (c->ws)
            for (int t = 0; t < c->nthreads; t++)
                free(c->ws[t]);
        free(c->ws);
        free(c->ws_floats);
        ci_sampler_free(c->smp);
        free(c->smp_row);
        free(c->qact);
        free(c->smp_lsm);
        free(c->last_tok);
        free(c);
    }
    free(be);
}

/* the in-process all-reduce of backend/comm.h over the ranks' host tensors */
static ci_status cpu_all_reduce(ci_backend *be, ci_tensor *x) {
    if (x->dtype != CI_F32)
        return ci_errorf(CI_ERR_INVALID, "cpu all_reduce: %s tensor, want F32",
                         ci_dtype_name(x->dtype));
    if (ci_comm_all_reduce_f32(be->comm, be->rank, x->data, x->rows * x->cols))
        return ci_errorf(CI_ERR_BACKEND, "all_reduce: %s", CI_COMM_ABORTED_MSG);
    return ci_ok();
}

/* pipeline stages: the in-process rendezvous of backend/comm.h */
static ci_status cpu_send(ci_backend *be, const ci_tensor *x, int peer) {
    const size_t n = (size_t)(x->rows * x->cols) * ci_dtype_size(x->dtype);
    if (ci_comm_send(be->pp_comm, be->pp_rank, peer, x->data, n))
        return ci_errorf(CI_ERR_BACKEND, "send to rank %d: %s", peer, CI_COMM_ABORTED_MSG);
    return ci_ok();
}
static ci_status cpu_recv(ci_backend *be, ci_tensor *x, int peer) {
    const size_t n = (size_t)(x->rows * x->cols) * ci_dtype_size(x->dtype);
    if (ci_comm_recv(be->pp_comm, be->pp_rank, peer, x->data, n))
        return ci_errorf(CI_ERR_BACKEND, "recv from rank %d: %s", peer, CI_COMM_ABORTED_MSG);
    return ci_ok();
}

static ci_status cpu_gather_cols(ci_backend *be, const ci_tensor *part, ci_tensor *out, int root) {
    if (part->dtype != CI_F32 || out->dtype != CI_F32 || out->rows < part->rows)
        return ci_errorf(CI_ERR_INVALID, "cpu gather_cols: F32 tensors of matching rows");
    if (ci_comm_gather_cols_f32(be->comm, be->rank, root, part->data, part->rows, part->cols,
                                out->data, out->cols))
        return ci_errorf(CI_ERR_BACKEND, "gather_cols: %s", CI_COMM_ABORTED_MSG);
    return ci_ok();
}

static const ci_backend_ops cpu_ops = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .memset0 = cpu_memset0,
    .sync = cpu_sync,
    .weight_alloc = cpu_weight_alloc,
    .weight_write = cpu_weight_write,
    .qweight_create = ci_cpu_qweight_create,
    .qweight_free = ci_cpu_qweight_free,
    .prepare_batch = cpu_prepare_batch,
    .embedding = ci_cpu_embedding,
    .matmul = ci_cpu_matmul,
    .rmsnorm = ci_cpu_rmsnorm,
    .qk_norm = ci_cpu_qk_norm,
    .rope_cache = ci_cpu_rope_cache,
    .attention = ci_cpu_attention,
    .swiglu = ci_cpu_swiglu,
    .gather_rows = ci_cpu_gather_rows,
    .copy_blocks = ci_cpu_copy_blocks,
    .sample = ci_cpu_sample,
    .take_samples = ci_cpu_take_samples,
    .all_reduce = cpu_all_reduce,
    .send = cpu_send,
    .recv = cpu_recv,
    .embedding_shard = ci_cpu_embedding_shard,
    .gather_cols = cpu_gather_cols,
    .destroy = cpu_destroy,
};

ci_status ci_cpu_backend_create(const ci_backend_options *opts, ci_backend **out) {
    *out = NULL;
    if (opts && opts->act_dtype == CI_ACT_BF16)
        return ci_errorf(CI_ERR_UNSUPPORTED, "cpu backend: activations are F32 only");
    ci_backend *be = calloc(1, sizeof *be);
    ci_cpu *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return ci_errorf(CI_ERR_NOMEM, "cpu backend: out of memory");
    }
    be->ops = &cpu_ops;
    be->name = "cpu";
    be->act_dtype = CI_F32;
    be->impl = c;
    const char *env = getenv("CINFER_THREADS");
    int nt = opts ? opts->num_threads : 0;
    if (nt <= 0 && env) nt = atoi(env);
    ci_status s = ci_threadpool_create(nt, &c->tp);
    if (s.code != CI_OK) {
        cpu_destroy(be);
        return s;
    }
    c->nthreads = ci_threadpool_size(c->tp);
    c->avx512 = ci_cpu_have_avx512();
    c->vnni = ci_cpu_have_vnni();
    c->ws = calloc((size_t)c->nthreads, sizeof *c->ws);
    c->ws_floats = calloc((size_t)c->nthreads, sizeof *c->ws_floats);
    if (!c->ws || !c->ws_floats) {
        cpu_destroy(be);
        return ci_errorf(CI_ERR_NOMEM, "cpu backend: out of memory");
    }
    /* Our pool parallelises over weight panels; each panel's GEMM runs
     * single-threaded on the thread that owns it. */
    openblas_set_num_threads(1);
    *out = be;
    return ci_ok();
}
