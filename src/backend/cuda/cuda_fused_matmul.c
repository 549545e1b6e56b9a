/* cuda_fused_matmul.c — the fused matmul op (backend.h's ci_matmul_fused)
 * for decode steps of up to CI_CU_GEMV_MAX_N rows.
 *
 * Where the weight's GEMV stages x per CTA (the BF16 GEMV, cuda_gemv.cu),
 * the prologue runs inside it and the op is one kernel. Elsewhere (quantized
 * GEMVs, F32 parity mode, cuBLASLt) the prologue's own kernel writes the
 * scratch first. Every GEMV adds into y itself (acc), and cuBLASLt with
 * beta = 1, so the residual adds never need a kernel. Opt-in: CINFER_FUSE=1
 * at backend creation (cuda_backend.c) turns the op on; without it the model
 * runs the classic ops (measured faster so far: docs/kernels/gemv.md). */
#include "backend/cuda/cuda_internal.h"

int ci_cuda_matmul_fused_rows(ci_backend *be) {
    return ci_cuda_of(be)->fuse_off ? 0 : CI_CU_GEMV_MAX_N;
}

ci_status ci_cuda_matmul_fused(ci_backend *be, const ci_matmul_fused *a) {
    ci_cuda *c = ci_cuda_of(be);
    const ci_tensor *x = a->x, *w = a->w;
    const int64_t K = w->cols, n = x->rows;
    const int64_t xcols = a->pro == CI_MM_PRO_SWIGLU ? 2 * K : K;
    if (n > CI_CU_GEMV_MAX_N || x->cols != xcols || x->dtype != be->act_dtype ||
        a->y->dtype != be->act_dtype)
        return ci_errorf(CI_ERR_INVALID, "cuda matmul_fused: x [%lld][%lld] %s for w [%lld][%lld]",
                         (long long)n, (long long)x->cols, ci_dtype_name(x->dtype),
                         (long long)w->rows, (long long)K);
    if (a->pro == CI_MM_PRO_RMSNORM &&
        (!a->norm_w || a->norm_w->dtype != CI_F32 || a->norm_w->rows * a->norm_w->cols != K))
        return ci_errorf(CI_ERR_INVALID, "cuda matmul_fused: norm weight must be [%lld] F32",
                         (long long)K);
    if (a->pro != CI_MM_PRO_NONE && (!a->scratch || a->scratch->cols != K || a->scratch->rows < n))
        return ci_errorf(CI_ERR_INVALID, "cuda matmul_fused: scratch must be [%lld][%lld]",
                         (long long)n, (long long)K);
    /* the BF16 GEMV: prologue, product and accumulate in one kernel */
    const ci_cu_fuse f = {.pro = a->pro == CI_MM_PRO_RMSNORM  ? CI_CU_PRO_RMSNORM
                                 : a->pro == CI_MM_PRO_SWIGLU ? CI_CU_PRO_SWIGLU
                                                              : CI_CU_PRO_NONE,
                          .norm_w = a->pro == CI_MM_PRO_RMSNORM ? a->norm_w->data : NULL,
                          .eps = a->eps,
                          .acc = a->accumulate};
    const float *b = a->bias && a->bias->data ? a->bias->data : NULL;
    const int gemv =
        (c->fuse_pro & (1 << f.pro)) && w->dtype == CI_BF16 && x->dtype == CI_BF16 && c->use_gemv &&
        w->rows <= INT32_MAX && ci_cu_gemv_fuse_ok((int)n, K, x->data, &f) &&
        (!b || (a->bias->dtype == CI_F32 && a->bias->rows * a->bias->cols == w->rows)) &&
        a->y->cols == w->rows && a->y->rows >= n;
    if (gemv) {
        CI_CU_LAUNCH("gemv", ci_cu_gemv((ci_cu_stream)c->stream, 0, w->data, x->data, (int)n,
                                        (int)K, (int)w->rows, b, a->y->data, c->num_sms, &f));
        return ci_ok();
    }
    /* elsewhere: the prologue's kernel into the scratch, then the product */
    const ci_tensor *in = x;
    ci_tensor s;
    if (a->pro != CI_MM_PRO_NONE) {
        s = *a->scratch;
        s.rows = n;
        if (a->pro == CI_MM_PRO_RMSNORM)
            CI_TRY(ci_cuda_rmsnorm(be, (ci_tensor *)x, NULL, a->norm_w, a->eps, &s));
        else
            CI_TRY(ci_cuda_swiglu(be, x, &s));
        in = &s;
    }
    if (w->dtype == CI_QW) return ci_cuda_qmatmul(be, in, w, a->bias, a->y, a->accumulate);
    return ci_cuda_matmul(be, in, w, a->bias, a->y, a->accumulate);
}
