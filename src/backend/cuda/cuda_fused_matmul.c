/* cuda_fused_matmul.c — the fused matmul op (backend.h's ci_matmul_fused).
 *
 * Where the weight's GEMV stages x per CTA (the BF16 GEMV, cuda_gemv.cu; the
 * 8-bit tensor-core GEMV of FP8 / INT8 weights, cuda_qgemv_fp8.cu), the
 * prologue runs inside it and the op is one kernel. Elsewhere (quantized
 * GEMVs, F32 parity mode, cuBLASLt) the prologue's own kernel writes the
 * scratch first. Every GEMV adds into y itself (acc), and cuBLASLt with
 * beta = 1, so the residual adds never need a kernel. CINFER_FUSE at
 * backend creation (cuda_backend.c) picks the prologues the GEMV runs
 * itself; by default the RMSNorm one with BF16 activations (measured
 * fastest: docs/kernels/gemv.md), 0 the model's classic ops.
 *
 * The SwiGLU epilogue (a->swiglu, the gate|up projection of a decode step)
 * runs in the 8-bit tensor-core GEMV and in INT4's fused kernel (with the
 * deferred norm only): matmul_swiglu_ok says where.
 *
 * The rope epilogue (the qkv projection of a decode step, on by default,
 * CINFER_FUSE_ROPE=0 off) runs in the BF16 GEMV where it applies (full
 * rotary, head_dim % 16 == 0) and as rope_cache's own kernel after the
 * product elsewhere: the values are the same either way.
 *
 * Larger steps: W8A8 FP8 weights take their RMSNorm / SwiGLU prologue as
 * the kernel that writes the FP8 GEMM's activations (ci_cuda_qmatmul_fused);
 * every other weight runs the prologue's kernel into the scratch and then
 * the matmul, the classic ops' kernels. */
#include "backend/cuda/cuda_internal.h"

#include <string.h>

int ci_cuda_matmul_fused_rows(ci_backend *be) {
    const ci_cuda *c = ci_cuda_of(be);
    return c->fuse_off || (c->fuse_auto && be->act_dtype != CI_BF16) ? 0 : CI_CU_GEMV_MAX_N;
}

int ci_cuda_matmul_rope_rows(ci_backend *be) {
    return ci_cuda_of(be)->rope_off ? 0 : CI_CU_GEMV_MAX_N;
}

static int cu_pro(ci_mm_prologue p) {
    return p == CI_MM_PRO_RMSNORM  ? CI_CU_PRO_RMSNORM
           : p == CI_MM_PRO_SWIGLU ? CI_CU_PRO_SWIGLU
                                   : CI_CU_PRO_NONE;
}

/* what a GEMV running the whole op (its prologue, product and epilogues)
 * asks of the operands */
static int gemv_ok(const ci_cuda *c, const ci_matmul_fused *a) {
    const ci_tensor *b = a->bias && a->bias->data ? a->bias : NULL;
    return (c->fuse_pro & (1 << cu_pro(a->pro))) && !a->residual && a->x->dtype == CI_BF16 &&
           (!b || (b->dtype == CI_F32 && b->rows * b->cols == a->w->rows)) &&
           a->y->cols * (a->swiglu ? 2 : 1) == a->w->rows && a->y->rows >= a->x->rows;
}

/* Whether the quantized tensor-core GEMVs run the op (FP8 / INT8 weights
 * at decode batches, CINFER_FUSE_TC8; INT4's fused kernel with the
 * deferred norm): *qp, the prologue as they run it (1: the classic ops'
 * values; by default the RMSNorm's 1 / rms applied to the sums). */
static int qtc_path(const ci_cuda *c, const ci_matmul_fused *a, int *qp) {
    const int pro = cu_pro(a->pro);
    *qp = c->fuse_tc8 >= 2 && pro == CI_CU_PRO_RMSNORM ? CI_CU_PRO_RMSNORM_DEFER : pro;
    const float *nw = a->pro == CI_MM_PRO_RMSNORM ? a->norm_w->data : NULL;
    return a->w->dtype == CI_QW && c->fuse_tc8 && a->x->rows <= 2 && gemv_ok(c, a) &&
           ci_cu_qgemv_pro_ok(a->w->data, (int)a->x->rows, a->x->data, *qp, nw, a->accumulate);
}

/* ... and with a->swiglu, whether they take the SwiGLU epilogue too (not
 * with CINFER_FUSE_TC8=norm) */
static int swiglu_path(const ci_cuda *c, const ci_matmul_fused *a) {
    int qp;
    return (c->fuse_tc8 & 1) && !a->accumulate && !a->rope && qtc_path(c, a, &qp) &&
           ci_cu_qgemv_swiglu_ok(a->w->data, (int)a->x->rows, a->x->data);
}

int ci_cuda_matmul_swiglu_ok(ci_backend *be, const ci_matmul_fused *a) {
    const ci_cuda *c = ci_cuda_of(be);
    if (!a->swiglu || c->fuse_off || a->w->dtype != CI_QW || a->x->dtype != be->act_dtype ||
        a->y->dtype != be->act_dtype || (a->pro == CI_MM_PRO_RMSNORM && !a->norm_w))
        return 0;
    return swiglu_path(c, a);
}

/* the GEMV's epilogue for a->rope when it can take it: f->rope.on */
static void rope_epi(const ci_matmul_fused *a, ci_cu_rope_epi *r) {
    memset(r, 0, sizeof *r);
    const ci_mm_rope *m = a->rope;
    if (!m || a->accumulate || m->rope->rot_dim != m->shape->head_dim || m->layer < 0 ||
        m->layer >= m->kv->num_layers || m->rope->cos_sin.dtype != CI_F32 ||
        m->rope->cos_sin.cols != m->rope->rot_dim ||
        m->kv->num_kv_heads != m->shape->num_kv_heads || m->kv->head_dim != m->shape->head_dim ||
        (m->kv->dtype != CI_BF16 && m->kv->dtype != CI_F8_E4M3))
        return;
    *r = (ci_cu_rope_epi){.on = 1,
                          .H = m->shape->num_heads,
                          .KV = m->shape->num_kv_heads,
                          .hd = m->shape->head_dim,
                          .neox = m->rope->neox != 0,
                          .bs = m->kv->block_size,
                          .kv_fp8 = m->kv->dtype == CI_F8_E4M3,
                          .kscale = m->kv->k_scale[m->layer],
                          .vscale = m->kv->v_scale[m->layer],
                          .cos_sin = m->rope->cos_sin.data,
                          .positions = m->batch->positions,
                          .slots = m->batch->slot_mapping,
                          .kc = m->kv->k[m->layer],
                          .vc = m->kv->v[m->layer]};
}

/* a->rope as rope_cache's own kernel, after the product */
static ci_status rope_after(ci_backend *be, const ci_matmul_fused *a) {
    const ci_mm_rope *r = a->rope;
    return r ? ci_cuda_rope_cache(be, a->y, r->shape, r->rope, r->batch, r->kv, r->layer) : ci_ok();
}

ci_status ci_cuda_matmul_fused(ci_backend *be, const ci_matmul_fused *a) {
    ci_cuda *c = ci_cuda_of(be);
    const ci_tensor *x = a->x, *w = a->w;
    const int64_t K = w->cols, n = x->rows;
    const int64_t xcols = a->pro == CI_MM_PRO_SWIGLU ? 2 * K : K;
    if (x->cols != xcols || x->dtype != be->act_dtype || a->y->dtype != be->act_dtype)
        return ci_errorf(CI_ERR_INVALID, "cuda matmul_fused: x [%lld][%lld] %s for w [%lld][%lld]",
                         (long long)n, (long long)x->cols, ci_dtype_name(x->dtype),
                         (long long)w->rows, (long long)K);
    if (a->pro == CI_MM_PRO_RMSNORM &&
        (!a->norm_w || a->norm_w->dtype != CI_F32 || a->norm_w->rows * a->norm_w->cols != K))
        return ci_errorf(CI_ERR_INVALID, "cuda matmul_fused: norm weight must be [%lld] F32",
                         (long long)K);
    if (a->residual && (a->pro != CI_MM_PRO_RMSNORM || a->residual->cols != K ||
                        a->residual->rows < n || a->residual->dtype != be->act_dtype))
        return ci_errorf(CI_ERR_INVALID,
                         "cuda matmul_fused: residual must be [%lld][%lld] of the "
                         "activation dtype, with the RMSNorm prologue",
                         (long long)n, (long long)K);
    if (a->pro != CI_MM_PRO_NONE && (!a->scratch || a->scratch->cols != K || a->scratch->rows < n))
        return ci_errorf(CI_ERR_INVALID, "cuda matmul_fused: scratch must be [%lld][%lld]",
                         (long long)n, (long long)K);
    if (a->swiglu && !swiglu_path(c, a))
        return ci_errorf(CI_ERR_INVALID,
                         "cuda matmul_fused: a SwiGLU epilogue for w [%lld][%lld] at %lld rows "
                         "into y [%lld][%lld] is not supported",
                         (long long)w->rows, (long long)K, (long long)n, (long long)a->y->rows,
                         (long long)a->y->cols);
    if (a->rope && (a->accumulate || !a->rope->shape || !a->rope->rope || !a->rope->batch ||
                    !a->rope->kv || a->rope->batch->num_tokens != n))
        return ci_errorf(CI_ERR_INVALID, "cuda matmul_fused: rope epilogue without its batch, "
                                         "cache or table, or with accumulate");
    /* the BF16 GEMV: prologue, product and accumulate in one kernel */
    const ci_cu_fuse f = {.pro = cu_pro(a->pro),
                          .norm_w = a->pro == CI_MM_PRO_RMSNORM ? a->norm_w->data : NULL,
                          .eps = a->eps,
                          .acc = a->accumulate};
    const float *b = a->bias && a->bias->data ? a->bias->data : NULL;
    ci_cu_fuse fr = f;
    rope_epi(a, &fr.rope);
    const int gemv =
        gemv_ok(c, a) && !a->swiglu && w->dtype == CI_BF16 && c->use_gemv && w->rows <= INT32_MAX;
    /* the whole op in the GEMV (the rope epilogue with it when it applies,
     * else rope_cache's kernel after) */
    const int epi = gemv && fr.rope.on && ci_cu_gemv_fuse_ok((int)n, K, w->rows, x->data, &fr);
    if (epi || (gemv && ci_cu_gemv_fuse_ok((int)n, K, w->rows, x->data, &f))) {
        CI_CU_LAUNCH("gemv",
                     ci_cu_gemv((ci_cu_stream)c->stream, 0, w->data, x->data, (int)n, (int)K,
                                (int)w->rows, b, a->y->data, c->num_sms, epi ? &fr : &f));
        return epi ? ci_ok() : rope_after(be, a);
    }
    /* the quantized tensor-core GEMVs: prologue, product and epilogues */
    int qp;
    if (qtc_path(c, a, &qp)) {
        /* the rope epilogue with it where it applies (as the BF16 GEMV's) */
        const int qepi =
            fr.rope.on && a->y->dtype == CI_BF16 && ci_cu_qgemv_rope_ok(w->data, &fr.rope);
        CI_CU_LAUNCH("qgemv",
                     ci_cu_qgemv_pro((ci_cu_stream)c->stream, a->y->dtype == CI_F32, w->data,
                                     x->data, (int)n, b, a->y->data, c->num_sms, a->accumulate, qp,
                                     f.norm_w, f.eps, qepi ? &fr.rope : NULL, a->swiglu));
        return qepi ? ci_ok() : rope_after(be, a);
    }
    if (a->swiglu) /* not with this prologue or operands */
        return ci_errorf(CI_ERR_INVALID, "cuda matmul_fused: no SwiGLU epilogue with prologue %d",
                         (int)a->pro);
    /* W8A8: the prologue's kernel writes the FP8 activations */
    if (ci_cuda_qmatmul_fuses(be, a)) return ci_cuda_qmatmul_fused(be, a);
    /* elsewhere: the prologue's kernel into the scratch, then the product
     * (and its epilogue) as an op without prologue */
    if (a->pro != CI_MM_PRO_NONE) {
        ci_tensor s = *a->scratch;
        s.rows = n;
        if (a->pro == CI_MM_PRO_RMSNORM)
            CI_TRY(ci_cuda_rmsnorm(be, (ci_tensor *)x, a->residual, a->norm_w, a->eps, &s));
        else
            CI_TRY(ci_cuda_swiglu(be, x, &s));
        ci_matmul_fused b2 = *a;
        b2.x = &s;
        b2.pro = CI_MM_PRO_NONE;
        b2.norm_w = NULL;
        b2.residual = NULL;
        b2.scratch = NULL;
        return ci_cuda_matmul_fused(be, &b2);
    }
    if (w->dtype == CI_QW)
        CI_TRY(ci_cuda_qmatmul(be, x, w, a->bias, a->y, a->accumulate));
    else
        CI_TRY(ci_cuda_matmul(be, x, w, a->bias, a->y, a->accumulate));
    return rope_after(be, a);
}
