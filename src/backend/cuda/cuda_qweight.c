/* cuda_qweight.c — quantized weights on the CUDA backend: storage
 * (qweight_create / qweight_free) and the matmul for CI_QW weights.
 *
 * A CI_QW tensor's data is a host ci_qweight whose arrays live in one device
 * allocation (packed weights first, then f32 scales, zero bytes, g_idx: the
 * canonical layout of util/qweight.h, unchanged). matmul: n <= 4 activation
 * rows run the weight-streaming GEMV (dequantized in registers), INT4 up to
 * CI_CU_QGEMV_TC_MAX_N rows its tensor-core GEMV once per 8 rows; larger n
 * dequantize the weight into a scratch of the activation dtype, sized at
 * load for the largest quantized weight, and run the dense cuBLASLt GEMM on
 * it. W8A8 FP8 weights (act_group, on Hopper) instead quantize the
 * activations (ci_cu_qact) and run cuBLASLt's FP8 GEMM with per-row or
 * 128 x 128 block scales (ci_cuda_gemm_fp8), quantized by the RMSNorm or
 * SwiGLU that makes them where the fused matmul op names its prologue
 * (ci_cuda_qmatmul_fused); W8A8 INT8 weights the same with INT8 codes,
 * cuBLASLt's INT8 GEMM into int32 sums and a scaling pass
 * (ci_cuda_gemm_i8, ci_cu_i8_scale); INT4 runs its warpgroup-MMA GEMM
 * (cuda_qgemm_int4.cu) where it applies: docs/quantization.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

static size_t align256(size_t n) {
    return (n + 255) & ~(size_t)255;
}

enum { W8A8_FP8_ROW = 1, W8A8_FP8_BLOCK = 2, W8A8_INT8 = 4 };

/* INT8 W8A8: the GEMM's int32 sums go through a scratch of this many rows
 * of x at a time (the row count qact is sized for at load), so prefill of
 * any length needs no more */
#define I8_CHUNK_ROWS 512

typedef struct cu_qw {
    ci_qweight w; /* first: backend.h promises data is a ci_qweight */
    void *block;
    int w8a8;       /* W8A8 on tensor cores (0: not): W8A8_FP8_ROW / _FP8_BLOCK
                     * (ci_cuda_gemm_fp8's modes 1 / 2) or W8A8_INT8 */
    float *bscales; /* mode 2: one scale per 128 x 128 block, [ceil(rows/128)][kb4] */
} cu_qw;

/* bytes of the W8A8 activation scales for n4 rows: [cols / 128][n4] per
 * 128-column group, or [n4] per token */
static size_t qact_scale_bytes(const ci_qweight *w, int64_t n4) {
    int64_t groups = w->act_group == w->cols ? 1 : (w->cols + 127) / 128;
    return align256((size_t)(n4 * groups) * sizeof(float) + 16);
}

/* bytes of the W8A8 scratch for n rows: xq [n4][cols], the scales, and with
 * pad_out an output of n4 rows (block scales pad the rows to 4; y has only n);
 * INT8: the int32 sums of up to I8_CHUNK_ROWS rows after the scales */
static size_t qact_need(const ci_qweight *w, int64_t n, size_t out_elt, int pad_out) {
    int64_t n4 = (n + 3) / 4 * 4, n8 = n4 < I8_CHUNK_ROWS ? n4 : I8_CHUNK_ROWS;
    return align256((size_t)(n4 * w->cols)) + qact_scale_bytes(w, n4) +
           (pad_out ? (size_t)(n4 * w->rows) * out_elt : 0) +
           (w->format == CI_QW_INT8 ? (size_t)(n8 * w->rows) * sizeof(int32_t) : 0);
}

/* Grows a W8A8 scratch buffer (never while a graph is being captured). */
static ci_status qact_grow(ci_cuda *c, void **buf, size_t *bytes, size_t need) {
    if (need <= *bytes) return ci_ok();
    enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    CI_CU_TRY(cudaStreamIsCapturing(c->stream, &cs));
    if (cs != cudaStreamCaptureStatusNone)
        return ci_errorf(CI_ERR_INVALID,
                         "cuda qmatmul: W8A8 scratch of %zu bytes, need %zu while capturing a "
                         "graph",
                         *bytes, need);
    if (*buf) {
        CI_CU_TRY(cudaStreamSynchronize(c->stream));
        cudaFree(*buf);
        *buf = NULL;
        *bytes = 0;
    }
    CI_CU_TRY(cudaMalloc(buf, need));
    *bytes = need;
    return ci_ok();
}

/* The tiled INT4 layout: for each block of 16 rows and each 128-column
 * tile (64 bytes of a row), 1 KiB: the 16-byte pieces t = 0..3 of rows
 * 0..7 of the block in the order (row, t), then those of rows 8..15 —
 * lane 4 g + t of a warp loads the piece of rows g and g + 8
 * (qgemv_tc_kernel's A fragments). Blocks in row order, tiles in column
 * order: a block's bytes stay where its rows were. Within each 32-bit word
 * (8 columns) the nibbles are interleaved: slot p holds column 2p and slot
 * p + 4 column 2p + 1 (p < 4), so qt_pair(word, p), which decodes slots p
 * and p + 4 into one bf16x2, yields two adjacent columns, paired with one
 * 32-bit word of x as it is in memory. */
static uint32_t ilv_word(uint32_t w) {
    uint32_t o = 0;
    for (int p = 0; p < 4; p++)
        o |= ((w >> (8 * p)) & 0xFu) << (4 * p) | ((w >> (8 * p + 4)) & 0xFu) << (4 * p + 16);
    return o;
}

static void tile_int4(const ci_qweight *h, uint8_t *out) {
    const int64_t rbytes = h->cols / 2, tiles = h->cols / 128;
    for (int64_t r = 0; r < h->rows; r++) {
        const int64_t g = r & 15;
        uint8_t *blk = out + (r - g) * rbytes + (g >> 3) * 512 + (g & 7) * 64;
        for (int64_t kt = 0; kt < tiles; kt++) {
            uint32_t wd[16];
            memcpy(wd, h->q + r * rbytes + kt * 64, 64);
            for (int i = 0; i < 16; i++)
                wd[i] = ilv_word(wd[i]);
            memcpy(blk + kt * 1024, wd, 64);
        }
    }
}

#define QACT_RESERVE_ROWS 512 /* at load: decode graphs up to this batch never grow it */

/* the largest dequantized copy the prefill scratch is sized for where the
 * INT4 GEMM can take the weight instead (CINFER_QSCRATCH_CAP_MB) */
static size_t qscratch_cap(void) {
    const char *e = getenv("CINFER_QSCRATCH_CAP_MB");
    return (e && *e ? (size_t)strtoull(e, NULL, 10) : 512) << 20;
}

/* x gathered by a sorted act order needs room for this many rows (the GEMVs'
 * and the tensor-core GEMV's; the INT4 GEMM and the dequantizing path take
 * the order themselves) */
#define XPERM_ROWS CI_CU_QGEMV_TC_MAX_N

/* A scratch buffer grown to need bytes at load (nothing holds it yet) */
static ci_status grow_at_load(ci_cuda *c, void **buf, size_t *bytes, size_t need) {
    if (need <= *bytes) return ci_ok();
    if (*buf) {
        cudaStreamSynchronize(c->stream);
        cudaFree(*buf);
        *buf = NULL;
        *bytes = 0;
    }
    CI_CU_TRY(cudaMalloc(buf, need));
    *bytes = need;
    return ci_ok();
}

static ci_status qweight_create(ci_backend *be, ci_cuda *c, const ci_qweight *h, ci_tensor *out) {
    if (h->rows <= 0 || h->cols <= 0 || h->ngroups <= 0 || h->group_size <= 0 ||
        (h->format != CI_QW_INT4 && h->format != CI_QW_FP8 && h->format != CI_QW_INT8) ||
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
    size_t pb = h->perm ? (size_t)h->cols * sizeof(int32_t) : 0;
    /* W8A8 on the FP8 / INT8 tensor cores (n >= CI_QW_ACT_MIN_ROWS) */
    int w8a8 = h->format == CI_QW_FP8 && h->act_group && c->fp8_mma > 0
                   ? (h->act_group == h->cols ? W8A8_FP8_ROW : W8A8_FP8_BLOCK)
                   : 0;
    if (w8a8) {
        /* cuBLASLt must have the FP8 GEMM (a library older than 12.9 has no
         * vector scales): else W8A16 on this GPU, said once */
        ci_status ps = ci_cuda_gemm_fp8_probe(c, w8a8, h->rows, 16, h->cols, be->act_dtype);
        if (ps.code != CI_OK) {
            fprintf(stderr, "cinfer: cuda: no FP8 GEMM (%s); W8A8 weights run as W8A16\n", ps.msg);
            c->fp8_mma = -1;
            w8a8 = 0;
        }
    }
    if (h->format == CI_QW_INT8 && h->act_group && c->i8_mma >= 0) {
        ci_status ps = ci_cuda_gemm_i8_probe(c, h->rows, 16, h->cols);
        if (ps.code == CI_OK) {
            w8a8 = W8A8_INT8;
        } else {
            fprintf(stderr, "cinfer: cuda: no INT8 GEMM (%s); W8A8 weights run as W8A16\n", ps.msg);
            c->i8_mma = -1;
        }
    }
    const int64_t kb4 = (h->cols / 128 + 3) / 4 * 4, rb = (h->rows + 127) / 128;
    size_t bb = w8a8 == W8A8_FP8_BLOCK ? (size_t)(rb * kb4) * sizeof(float) : 0;
    size_t off_s = align256(qb), off_z = off_s + align256(sb), off_g = off_z + align256(zb),
           off_p = off_g + align256(gb), off_b = off_p + align256(pb);
    /* the prefill scratch: the largest dequantized weight in the act dtype
     * (W8A8 weights: their quantized activations instead) */
    size_t need = w8a8 ? 0 : (size_t)(h->rows * h->cols) * ci_dtype_size(be->act_dtype);
    /* ... but a weight stored tiled for the INT4 GEMM (Hopper) larger than
     * qscratch_cap() runs the GEMM in chunks of rows of x instead of its
     * dequantized copy (a quantized LM head of 128k x 4096 would hold 1 GB
     * of scratch for the rare step of more logits rows than one launch
     * takes) */
    const char *te = getenv("CINFER_QW_TILE");
    const int tiles = be->act_dtype == CI_BF16 && ci_cu_qweight_tileable(h) && !(te && *te == '0');
    if (tiles && need > qscratch_cap() && ci_cu_qgemm_int4_chunk_n() > 0) need = 0;
    /* the INT4 GEMM's workspace (x permuted, split-K partials) shares it */
    if (tiles && ci_cu_qgemm_int4_ws_bytes(h) > need) need = ci_cu_qgemm_int4_ws_bytes(h);
    if (w8a8)
        CI_TRY(qact_grow(
            c, &c->qact, &c->qact_bytes,
            qact_need(h, QACT_RESERVE_ROWS, ci_dtype_size(be->act_dtype), w8a8 == W8A8_FP8_BLOCK)));
    CI_TRY(grow_at_load(c, &c->qscratch, &c->qscratch_bytes, need));
    CI_TRY(grow_at_load(c, &c->xperm, &c->xperm_bytes,
                        pb ? (size_t)(XPERM_ROWS * h->cols) * sizeof(float) : 0));
    cu_qw *q = calloc(1, sizeof *q);
    if (!q) return ci_errorf(CI_ERR_NOMEM, "cuda: out of host memory");
    char *blk = NULL;
    cudaError_t e = cudaMalloc((void **)&blk, off_b + bb);
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
    q->w.perm = pb ? (int32_t *)(blk + off_p) : NULL;
    q->w8a8 = w8a8;
    q->bscales = bb ? (float *)(blk + off_b) : NULL;
    out->data = q;
    out->dtype = CI_QW;
    out->rows = h->rows;
    out->cols = h->cols;
    /* 128 x 128 blocks: the scale of each block's first row (the rows of a
     * block share it: ci_qweight_act_ok), columns padded to 4 for cuBLASLt */
    float *bs = NULL;
    if (bb) {
        bs = calloc(1, bb);
        if (!bs) {
            ci_cuda_qweight_free(be, out);
            return ci_errorf(CI_ERR_NOMEM, "cuda: out of host memory");
        }
        for (int64_t r = 0; r < rb; r++)
            for (int64_t k = 0; k < h->ngroups; k++)
                bs[r * kb4 + k] = h->scales[r * 128 * h->ngroups + k];
    }
    /* INT4 for BF16 activations: the packed rows as the tensor-core GEMV
     * reads them (see tile_int4), so each of its warp loads is 512
     * contiguous bytes instead of 16 rows' 64-byte pieces */
    uint8_t *tq = NULL;
    /* on by default; CINFER_QW_TILE=0 keeps the row-major layout (the
     * A/B in docs/kernels/qmatmul.md, and test_cuda_quant's row-major pass) */
    if (tiles) {
        tq = malloc(qb);
        if (!tq) {
            free(bs);
            ci_cuda_qweight_free(be, out);
            return ci_errorf(CI_ERR_NOMEM, "cuda: out of host memory");
        }
        tile_int4(h, tq);
        q->w.tiled = 1;
    }
    const void *src[] = {tq ? tq : h->q, h->scales, h->zeros, h->g_idx, h->perm, bs};
    void *dst[] = {q->w.q, q->w.scales, q->w.zeros, q->w.g_idx, q->w.perm, q->bscales};
    size_t len[] = {qb, sb, zb, gb, pb, bb};
    for (int i = 0; i < 6; i++) {
        if (!len[i]) continue;
        e = cudaMemcpy(dst[i], src[i], len[i], cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            free(bs);
            free(tq);
            ci_cuda_qweight_free(be, out);
            return ci_errorf(CI_ERR_BACKEND, "cuda: quantized weight upload: %s",
                             cudaGetErrorString(e));
        }
    }
    free(bs);
    free(tq);
    return ci_ok();
}

/* Act order a column sort undoes (util/qweight.h) is stored sorted, so
 * every kernel takes it as a weight without act order on x gathered by perm
 * (not for W8A8 weights: their FP8 GEMM reads x as it is). */
ci_status ci_cuda_qweight_create(ci_backend *be, const ci_qweight *h, ci_tensor *out) {
    ci_cuda *c = ci_cuda_of(be);
    memset(out, 0, sizeof *out);
    ci_qweight sorted;
    if (h->act_group || !ci_qweight_act_sort(h, &sorted)) return qweight_create(be, c, h, out);
    ci_status st = qweight_create(be, c, &sorted, out);
    ci_qweight_act_sort_free(&sorted);
    return st;
}

void ci_cuda_qweight_free(ci_backend *be, ci_tensor *w) {
    cu_qw *q = w->data;
    if (!q) return;
    cudaStreamSynchronize(ci_cuda_of(be)->stream); /* queued work may still read it */
    cudaFree(q->block);
    free(q);
    w->data = NULL;
}

/* Where a W8A8 product's FP8 activations come from: x as it is
 * (ci_cu_qact), or the RMSNorm (residual += x first when res is given) or
 * SwiGLU that produces it (ci_matmul_fused's prologue), quantized from
 * registers: the same bytes, one pass over the row instead of three. */
typedef struct qact_src {
    ci_mm_prologue pro;
    const ci_tensor *x;
    ci_tensor *res;
    const ci_tensor *norm_w;
    float eps;
} qact_src;

/* W8A8: activations to E4M3 (per row, or per row and 128 columns, rows
 * padded to 4 for the block scales), then the FP8 GEMM; the output goes
 * through the scratch when y has no room for the pad. INT8: to INT8 codes
 * per row, then per I8_CHUNK_ROWS rows the INT8 GEMM's int32 sums (in the
 * scratch) and their scaling into y. */
static ci_status qmatmul_w8a8(ci_backend *be, const qact_src *src, const ci_tensor *w,
                              const float *b, ci_tensor *y) {
    ci_cuda *c = ci_cuda_of(be);
    const ci_qweight *q = w->data;
    const cu_qw *cq = w->data;
    const int mode = cq->w8a8, i8 = mode == W8A8_INT8;
    const int64_t n = src->x->rows, np = mode == W8A8_FP8_BLOCK ? (n + 3) / 4 * 4 : n;
    const size_t esz = ci_dtype_size(y->dtype);
    const size_t need = qact_need(q, n, esz, np != n && y->rows < np);
    void *buf = c->qact;
    if (need > c->qact_bytes) {
        CI_TRY(qact_grow(c, &c->qact_big, &c->qact_big_bytes, need));
        buf = c->qact_big;
    }
    uint8_t *xq = buf;
    float *xs = (float *)((char *)buf + align256((size_t)(np * q->cols)));
    void *d = y->rows >= np ? y->data : (char *)xs + qact_scale_bytes(q, np);
    const ci_cu_stream st = (ci_cu_stream)c->stream;
    const int K = (int)q->cols, g = (int)q->act_group;
    if (src->pro == CI_MM_PRO_RMSNORM)
        CI_CU_LAUNCH("rmsnorm_qact",
                     ci_cu_rmsnorm_qact(st, src->x->data, src->res ? src->res->data : NULL,
                                        src->norm_w->data, (int)n, K, src->eps, g, (int)np, xq, xs,
                                        q->act_scale, i8));
    else if (src->pro == CI_MM_PRO_SWIGLU)
        CI_CU_LAUNCH("swiglu_qact", ci_cu_swiglu_qact(st, src->x->data, (int)n, K, g, (int)np, xq,
                                                      xs, q->act_scale, i8));
    else
        CI_CU_LAUNCH("qact", ci_cu_qact(st, ci_cu_bf16(src->x->dtype), src->x->data, (int)n, K, g,
                                        (int)np, xq, xs, q->act_scale, i8));
    if (i8) {
        int32_t *sums = (int32_t *)((char *)xs + qact_scale_bytes(q, np));
        for (int64_t r0 = 0; r0 < n; r0 += I8_CHUNK_ROWS) {
            const int64_t m = n - r0 < I8_CHUNK_ROWS ? n - r0 : I8_CHUNK_ROWS;
            CI_TRY(ci_cuda_gemm_i8(c, q->q, xq + r0 * K, q->rows, m, K, sums));
            CI_CU_LAUNCH("i8_scale",
                         ci_cu_i8_scale(st, ci_cu_bf16(y->dtype), sums, m, (int)q->rows, xs + r0,
                                        q->scales, b,
                                        (char *)y->data + (size_t)(r0 * q->rows) * esz));
        }
        return ci_ok();
    }
    /* decode batches: the skinny GEMM's E4M3 form (per-row weight and
     * per-token x scales; cuda_gemm_skinny.cu, CINFER_SKINNY) */
    if (mode == W8A8_FP8_ROW && q->ngroups == 1 && n <= c->skinny_max && d == y->data &&
        q->rows <= INT32_MAX) {
        const int e = ci_cu_skinny_gemm_e4m3(st, y->dtype == CI_F32, q->q, q->scales, xq, xs,
                                             (int)n, K, (int)q->rows, b, y->data, c->skinny_rows,
                                             c->num_sms, (float *)c->workspace, c->skinny_cnt);
        if (e != cudaErrorNotSupported) {
            CI_CU_LAUNCH("skinny gemm e4m3", e);
            c->skinny_calls++;
            return ci_ok();
        }
        (void)cudaGetLastError();
    }
    CI_TRY(ci_cuda_gemm_fp8(c, mode, q->q, mode == W8A8_FP8_BLOCK ? cq->bscales : q->scales, xq, xs,
                            q->rows, np, q->cols, y->dtype, b, d));
    if (d != y->data)
        CI_CU_TRY(cudaMemcpyAsync(y->data, d, (size_t)(n * q->rows) * esz, cudaMemcpyDeviceToDevice,
                                  c->stream));
    return ci_ok();
}

/* The bias's data (NULL: none), checked: F32 with one value per weight row */
static ci_status bias_of(const ci_tensor *bias, const ci_tensor *w, const float **out) {
    *out = bias && bias->data ? bias->data : NULL;
    if (*out && (bias->rows * bias->cols != w->rows || bias->dtype != CI_F32))
        return ci_errorf(CI_ERR_INVALID, "cuda qmatmul: bias must be F32 with %lld elements",
                         (long long)w->rows);
    return ci_ok();
}

int ci_cuda_qmatmul_fuses(ci_backend *be, const ci_matmul_fused *a) {
    const ci_tensor *w = a->w, *x = a->x;
    if (w->dtype != CI_QW || a->pro == CI_MM_PRO_NONE || a->accumulate || a->rope ||
        x->dtype != CI_BF16 || x->rows < CI_QW_ACT_MIN_ROWS || x->rows > INT32_MAX ||
        a->y->dtype != be->act_dtype || a->y->cols != w->rows || a->y->rows < x->rows)
        return 0;
    const cu_qw *cq = w->data;
    const ci_qweight *q = w->data;
    if (!cq->w8a8 || q->cols > INT32_MAX) return 0;
    if (a->pro == CI_MM_PRO_RMSNORM)
        return ci_cu_rmsnorm_qact_ok(q->cols, a->norm_w->data, (int)q->act_group);
    return ci_cu_swiglu_qact_ok(q->cols, x->data, (int)q->act_group);
}

ci_status ci_cuda_qmatmul_fused(ci_backend *be, const ci_matmul_fused *a) {
    if (!ci_cuda_qmatmul_fuses(be, a))
        return ci_errorf(CI_ERR_INVALID, "cuda qmatmul: no fused FP8 activations for this op");
    const float *b;
    CI_TRY(bias_of(a->bias, a->w, &b));
    const qact_src src = {a->pro, a->x, a->residual, a->norm_w, a->eps};
    return qmatmul_w8a8(be, &src, a->w, b, a->y);
}

/* x for the GEMVs in w's stored column order: a weight stored in a sorted
 * act order (w->perm) reads x gathered by it into the xperm scratch (sized
 * at load; the INT4 GEMM's own permute and the dequantizing path take the
 * order themselves) */
static ci_status x_in_order(ci_cuda *c, const ci_qweight *w, const ci_tensor *x, const void **xd) {
    *xd = x->data;
    if (!w->perm) return ci_ok();
    const size_t need = (size_t)(x->rows * x->cols) * ci_dtype_size(x->dtype);
    if (need > c->xperm_bytes)
        return ci_errorf(CI_ERR_INVALID, "cuda qmatmul: act-order scratch of %zu bytes, need %zu",
                         c->xperm_bytes, need);
    CI_CU_LAUNCH("gather_cols",
                 ci_cu_gather_cols((ci_cu_stream)c->stream, ci_cu_bf16(x->dtype), x->data,
                                   (int)x->rows, (int)x->cols, w->perm, c->xperm));
    *xd = c->xperm;
    return ci_ok();
}

/* x of more rows than one INT4 GEMM launch takes, for a weight sized
 * without its dequantized copy (qweight_create): the GEMM on chunks of
 * `chunk` rows, a remainder below its smallest through the tensor-core GEMV
 * passes (x gathered for a sorted act order) */
static ci_status qmatmul_chunked(ci_cuda *c, const ci_qweight *q, const ci_tensor *x,
                                 const float *b, ci_tensor *y, int acc, int chunk) {
    const int64_t K = x->cols, out = y->cols;
    const size_t ysz = ci_dtype_size(y->dtype);
    for (int64_t r = 0; r < x->rows; r += chunk) {
        const int m = (int)(x->rows - r < chunk ? x->rows - r : chunk);
        const void *xr = (const char *)x->data + (size_t)(r * K) * 2;
        void *yr = (char *)y->data + (size_t)(r * out) * ysz;
        if (ci_cu_qgemm_int4_ok(q, m, xr)) {
            CI_CU_LAUNCH("qgemm_int4",
                         ci_cu_qgemm_int4((ci_cu_stream)c->stream, y->dtype == CI_F32, q, xr, m, b,
                                          yr, acc, c->num_sms, c->qscratch, c->qscratch_bytes));
            continue;
        }
        if (!ci_cu_qgemv_tc_rows_ok(q, m, xr))
            return ci_errorf(CI_ERR_UNSUPPORTED, "cuda qmatmul: %d rows past the INT4 GEMM's", m);
        ci_tensor xs = {(void *)xr, x->dtype, m, K};
        const void *xd;
        CI_TRY(x_in_order(c, q, &xs, &xd));
        CI_CU_LAUNCH("qgemv_tc_rows",
                     ci_cu_qgemv_tc_rows((ci_cu_stream)c->stream, y->dtype == CI_F32, q, xd, m, b,
                                         yr, c->num_sms, acc));
    }
    return ci_ok();
}

ci_status ci_cuda_qmatmul(ci_backend *be, const ci_tensor *x, const ci_tensor *w,
                          const ci_tensor *bias, ci_tensor *y, int acc) {
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
    const float *b;
    CI_TRY(bias_of(bias, w, &b));
    if (x->rows == 0) return ci_ok();
    if (x->rows <= CI_CU_QGEMV_MAX_N) {
        const void *xd;
        CI_TRY(x_in_order(c, q, x, &xd));
        CI_CU_LAUNCH("qgemv",
                     ci_cu_qgemv((ci_cu_stream)c->stream, ci_cu_bf16(x->dtype), y->dtype == CI_F32,
                                 q, xd, (int)x->rows, b, y->data, c->num_sms, acc));
        return ci_ok();
    }
    const cu_qw *cq = w->data;
    if (cq->w8a8 && x->rows >= CI_QW_ACT_MIN_ROWS) {
        if (acc) /* the model accumulates only in decode steps, below CI_QW_ACT_MIN_ROWS */
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             "cuda qmatmul: accumulate with quantized activations");
        return qmatmul_w8a8(be, &(qact_src){.x = x}, w, b, y);
    }
    if (x->dtype == CI_BF16 && x->rows <= INT32_MAX &&
        ci_cu_qgemm_int4_ok(q, (int)x->rows, x->data) &&
        ci_cu_qgemm_int4_ws_bytes(q) <= c->qscratch_bytes) {
        CI_CU_LAUNCH("qgemm_int4", ci_cu_qgemm_int4((ci_cu_stream)c->stream, y->dtype == CI_F32, q,
                                                    x->data, (int)x->rows, b, y->data, acc,
                                                    c->num_sms, c->qscratch, c->qscratch_bytes));
        return ci_ok();
    }
    if (x->dtype == CI_BF16 && x->rows <= INT32_MAX &&
        ci_cu_qgemv_tc_rows_ok(q, (int)x->rows, x->data)) {
        const void *xd;
        CI_TRY(x_in_order(c, q, x, &xd));
        CI_CU_LAUNCH("qgemv_tc_rows",
                     ci_cu_qgemv_tc_rows((ci_cu_stream)c->stream, y->dtype == CI_F32, q, xd,
                                         (int)x->rows, b, y->data, c->num_sms, acc));
        return ci_ok();
    }
    size_t need = (size_t)(w->rows * w->cols) * ci_dtype_size(x->dtype);
    const int chunk = ci_cu_qgemm_int4_chunk_n();
    if (need > c->qscratch_bytes && x->dtype == CI_BF16 && chunk > 0 &&
        ci_cu_qgemm_int4_ok(q, chunk, x->data) && ci_cu_qgemm_int4_ws_bytes(q) <= c->qscratch_bytes)
        return qmatmul_chunked(c, q, x, b, y, acc, chunk);
    if (need > c->qscratch_bytes)
        return ci_errorf(CI_ERR_INVALID, "cuda qmatmul: scratch of %zu bytes, need %zu",
                         c->qscratch_bytes, need);
    CI_CU_LAUNCH("qdequant",
                 ci_cu_qdequant((ci_cu_stream)c->stream, ci_cu_bf16(x->dtype), q, c->qscratch));
    ci_tensor dense = {c->qscratch, x->dtype, w->rows, w->cols};
    return ci_cuda_matmul(be, x, &dense, bias, y, acc);
}
