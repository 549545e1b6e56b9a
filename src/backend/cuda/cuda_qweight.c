/* cuda_qweight.c — quantized weights on the CUDA backend: storage
 * (qweight_create / qweight_free) and the matmul for CI_QW weights.
 *
 * A CI_QW tensor's data is a host ci_qweight whose arrays live in one device
 * allocation (packed weights first, then f32 scales, zero bytes, g_idx: the
 * canonical layout of util/qweight.h, unchanged). matmul: n <= 4 activation
 * rows run the weight-streaming GEMV (dequantized in registers); larger n
 * dequantize the weight into a scratch of the activation dtype, sized at
 * load for the largest quantized weight, and run the dense cuBLASLt GEMM on
 * it. That prefill path is not the FP8 / INT4 tensor-core path (no FP8 GEMM
 * with scale epilogues, no Marlin-class kernel yet): docs/quantization.md. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

typedef struct cu_qw {
    ci_qweight w; /* first: backend.h promises data is a ci_qweight */
    void *block;
} cu_qw;

static size_t align256(size_t n) {
    return (n + 255) & ~(size_t)255;
}

ci_status ci_cuda_qweight_create(ci_backend *be, const ci_qweight *h, ci_tensor *out) {
    ci_cuda *c = ci_cuda_of(be);
    memset(out, 0, sizeof *out);
    if (h->rows <= 0 || h->cols <= 0 || h->ngroups <= 0 || h->group_size <= 0 ||
        (h->format != CI_QW_INT4 && h->format != CI_QW_FP8) ||
        (h->format == CI_QW_INT4 && !h->zeros) || h->nparts < 1 || h->nparts > CI_QW_MAX_PARTS)
        return ci_errorf(CI_ERR_INVALID, "cuda: bad quantized weight [%lld][%lld]",
                         (long long)h->rows, (long long)h->cols);
    if (!ci_cu_qweight_shape_ok(h))
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "cuda: quantized weight [%lld][%lld] with group size %lld: columns "
                         "and groups must be multiples of %d",
                         (long long)h->rows, (long long)h->cols, (long long)h->group_size,
                         h->format == CI_QW_INT4 ? 8 : 4);
    size_t qb = (size_t)h->rows * (size_t)(h->format == CI_QW_INT4 ? h->cols / 2 : h->cols);
    size_t sb = (size_t)(h->rows * h->ngroups) * sizeof(float);
    size_t zb = h->zeros ? (size_t)(h->rows * h->ngroups) : 0;
    size_t gb = h->g_idx ? (size_t)(h->nparts * h->cols) * sizeof(int32_t) : 0;
    size_t off_s = align256(qb), off_z = off_s + align256(sb), off_g = off_z + align256(zb);
    /* the prefill scratch: the largest dequantized weight in the act dtype */
    size_t need = (size_t)(h->rows * h->cols) * ci_dtype_size(be->act_dtype);
    if (need > c->qscratch_bytes) {
        if (c->qscratch) {
            cudaStreamSynchronize(c->stream);
            cudaFree(c->qscratch);
            c->qscratch = NULL;
            c->qscratch_bytes = 0;
        }
        CI_CU_TRY(cudaMalloc(&c->qscratch, need));
        c->qscratch_bytes = need;
    }
    cu_qw *q = calloc(1, sizeof *q);
    if (!q) return ci_errorf(CI_ERR_NOMEM, "cuda: out of host memory");
    char *blk = NULL;
    cudaError_t e = cudaMalloc((void **)&blk, off_g + gb);
    if (e != cudaSuccess) {
        free(q);
        return ci_errorf(CI_ERR_NOMEM, "cuda: quantized weight [%lld][%lld]: %s",
                         (long long)h->rows, (long long)h->cols, cudaGetErrorString(e));
    }
    q->block = blk;
    q->w = *h;
    q->w.q = (uint8_t *)blk;
    q->w.scales = (float *)(blk + off_s);
    q->w.zeros = zb ? (uint8_t *)(blk + off_z) : NULL;
    q->w.g_idx = gb ? (int32_t *)(blk + off_g) : NULL;
    out->data = q;
    out->dtype = CI_QW;
    out->rows = h->rows;
    out->cols = h->cols;
    const void *src[] = {h->q, h->scales, h->zeros, h->g_idx};
    void *dst[] = {q->w.q, q->w.scales, q->w.zeros, q->w.g_idx};
    size_t len[] = {qb, sb, zb, gb};
    for (int i = 0; i < 4; i++) {
        if (!len[i]) continue;
        e = cudaMemcpy(dst[i], src[i], len[i], cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            ci_cuda_qweight_free(be, out);
            return ci_errorf(CI_ERR_BACKEND, "cuda: quantized weight upload: %s",
                             cudaGetErrorString(e));
        }
    }
    return ci_ok();
}

void ci_cuda_qweight_free(ci_backend *be, ci_tensor *w) {
    cu_qw *q = w->data;
    if (!q) return;
    cudaStreamSynchronize(ci_cuda_of(be)->stream); /* queued work may still read it */
    cudaFree(q->block);
    free(q);
    w->data = NULL;
}

ci_status ci_cuda_qmatmul(ci_backend *be, const ci_tensor *x, const ci_tensor *w,
                          const ci_tensor *bias, ci_tensor *y) {
    ci_cuda *c = ci_cuda_of(be);
    const ci_qweight *q = w->data;
    if (x->cols != w->cols || y->cols != w->rows || y->rows < x->rows)
        return ci_errorf(CI_ERR_INVALID,
                         "cuda qmatmul: shapes x[%lld][%lld] w[%lld][%lld] y[%lld][%lld]",
                         (long long)x->rows, (long long)x->cols, (long long)w->rows,
                         (long long)w->cols, (long long)y->rows, (long long)y->cols);
    if ((x->dtype != CI_F32 && x->dtype != CI_BF16) ||
        (y->dtype != CI_F32 && y->dtype != CI_BF16) || (x->dtype == CI_F32 && y->dtype != CI_F32))
        return ci_errorf(CI_ERR_UNSUPPORTED, "cuda qmatmul: x %s, y %s", ci_dtype_name(x->dtype),
                         ci_dtype_name(y->dtype));
    const float *b = bias && bias->data ? bias->data : NULL;
    if (b && (bias->rows * bias->cols != w->rows || bias->dtype != CI_F32))
        return ci_errorf(CI_ERR_INVALID, "cuda qmatmul: bias must be F32 with %lld elements",
                         (long long)w->rows);
    if (x->rows == 0) return ci_ok();
    if (x->rows <= CI_CU_QGEMV_MAX_N) {
        CI_CU_LAUNCH("qgemv",
                     ci_cu_qgemv((ci_cu_stream)c->stream, ci_cu_bf16(x->dtype), y->dtype == CI_F32,
                                 q, x->data, (int)x->rows, b, y->data, c->num_sms));
        return ci_ok();
    }
    size_t need = (size_t)(w->rows * w->cols) * ci_dtype_size(x->dtype);
    if (need > c->qscratch_bytes)
        return ci_errorf(CI_ERR_INVALID, "cuda qmatmul: scratch of %zu bytes, need %zu",
                         c->qscratch_bytes, need);
    CI_CU_LAUNCH("qdequant",
                 ci_cu_qdequant((ci_cu_stream)c->stream, ci_cu_bf16(x->dtype), q, c->qscratch));
    ci_tensor dense = {c->qscratch, x->dtype, w->rows, w->cols};
    return ci_cuda_matmul(be, x, &dense, bias, y);
}
