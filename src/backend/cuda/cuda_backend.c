/* cuda_backend.c — the CUDA backend: device memory, one stream, weight
 * upload, batch metadata upload, and the op table (argument checks here,
 * kernels in *.cu, GEMM in cuda_gemm.c).
 *
 * Dtypes. Activations and the KV cache are BF16 by default (fp32 math and
 * accumulation inside every kernel and GEMM), or F32 with
 * ci_backend_options.act_dtype = CI_ACT_F32 (parity work). Weight storage:
 * matrices (rows > 1) are stored in the activation dtype — BF16 for BF16,
 * F16 and F32 checkpoints in BF16 mode (F16 -> BF16 drops 3 mantissa bits;
 * one GEMM type keeps the GEMM path single), all F32 in F32 mode (exact for
 * every checkpoint dtype). Vectors (rows == 1: norm weights, biases) are
 * always F32.
 *
 * Every call is on one non-blocking stream; ops only enqueue. Copies to the
 * device wait for completion (their source is host memory the caller may
 * free); to_host waits too. Nothing is allocated per op: the GEMM workspace
 * is made once, batch metadata reuses a staging buffer that grows only. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_internal.h"
#include "util/half.h"

#define ST(c) ((ci_cu_stream)(c)->stream)

int ci_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

static ci_status cu_alloc(ci_backend *be, size_t bytes, void **out) {
    ci_cuda *c = ci_cuda_of(be);
    *out = NULL;
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *out = NULL;
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return ci_errorf(e == cudaErrorMemoryAllocation ? CI_ERR_NOMEM : CI_ERR_BACKEND,
                         "cuda: cudaMalloc(%zu bytes) on device %d: %s (%zu MiB free of %zu)",
                         bytes, c->device, cudaGetErrorString(e), fr >> 20, tot >> 20);
    }
    return ci_ok();
}

static void cu_free(ci_backend *be, void *p) {
    if (!p) return;
    /* memory may still be read by queued work */
    cudaStreamSynchronize(ci_cuda_of(be)->stream);
    cudaFree(p);
}

static ci_status cu_to_device(ci_backend *be, void *dst, const void *src, size_t bytes) {
    ci_cuda *c = ci_cuda_of(be);
    if (!bytes) return ci_ok();
    CI_CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    CI_CU_TRY(cudaStreamSynchronize(c->stream));
    return ci_ok();
}

static ci_status cu_to_host(ci_backend *be, void *dst, const void *src, size_t bytes) {
    ci_cuda *c = ci_cuda_of(be);
    if (!bytes) return ci_ok();
    CI_CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CI_CU_TRY(cudaStreamSynchronize(c->stream));
    return ci_ok();
}

static ci_status cu_memset0(ci_backend *be, void *dst, size_t bytes) {
    ci_cuda *c = ci_cuda_of(be);
    if (!bytes) return ci_ok();
    CI_CU_TRY(cudaMemsetAsync(dst, 0, bytes, c->stream));
    return ci_ok();
}

static ci_status cu_sync(ci_backend *be) {
    CI_CU_TRY(cudaStreamSynchronize(ci_cuda_of(be)->stream));
    return ci_ok();
}

static ci_status cu_weight_alloc(ci_backend *be, ci_dtype src_dtype, int64_t rows, int64_t cols,
                                 ci_tensor *out) {
    memset(out, 0, sizeof *out);
    if (src_dtype != CI_F32 && src_dtype != CI_F16 && src_dtype != CI_BF16)
        return ci_errorf(CI_ERR_UNSUPPORTED, "cuda: weights of dtype %s are not supported",
                         ci_dtype_name(src_dtype));
    if (rows <= 0 || cols <= 0)
        return ci_errorf(CI_ERR_INVALID, "cuda: bad weight shape [%lld][%lld]", (long long)rows,
                         (long long)cols);
    ci_dtype st = rows == 1 ? CI_F32 : be->act_dtype;
    void *p;
    CI_TRY(cu_alloc(be, (size_t)rows * (size_t)cols * ci_dtype_size(st), &p));
    out->data = p;
    out->dtype = st;
    out->rows = rows;
    out->cols = cols;
    return ci_ok();
}

/* Converts host elements (possibly unaligned) to the storage dtype. */
static void convert(const void *src, ci_dtype sdt, size_t n, void *dst, ci_dtype ddt) {
    const char *sb = src;
    for (size_t i = 0; i < n; i++) {
        float f;
        uint16_t h;
        if (sdt == CI_F32) {
            memcpy(&f, sb + 4 * i, 4);
        } else {
            memcpy(&h, sb + 2 * i, 2);
            f = sdt == CI_BF16 ? ci_bf16_to_f32(h) : ci_f16_to_f32(h);
        }
        if (ddt == CI_F32)
            ((float *)dst)[i] = f;
        else
            ((uint16_t *)dst)[i] = ci_f32_to_bf16(f);
    }
}

static ci_status cu_weight_write(ci_backend *be, ci_tensor *w, int64_t row0, const void *src,
                                 ci_dtype src_dtype, int64_t nrows) {
    if (row0 < 0 || nrows < 0 || row0 + nrows > w->rows)
        return ci_errorf(CI_ERR_INVALID, "cuda: weight write rows [%lld, %lld) outside [0, %lld)",
                         (long long)row0, (long long)(row0 + nrows), (long long)w->rows);
    if (src_dtype != CI_F32 && src_dtype != CI_F16 && src_dtype != CI_BF16)
        return ci_errorf(CI_ERR_UNSUPPORTED, "cuda: cannot convert %s weights",
                         ci_dtype_name(src_dtype));
    size_t esz = ci_dtype_size(w->dtype);
    char *dst = (char *)w->data + (size_t)row0 * (size_t)w->cols * esz;
    if (src_dtype == w->dtype)
        return cu_to_device(be, dst, src, (size_t)nrows * (size_t)w->cols * esz);
    /* convert on the host in pieces of at most 16M elements */
    const size_t piece = (size_t)16 << 20;
    size_t total = (size_t)nrows * (size_t)w->cols;
    size_t n0 = total < piece ? total : piece;
    void *tmp = malloc(n0 * esz);
    if (!tmp)
        return ci_errorf(CI_ERR_NOMEM, "cuda: weight conversion buffer (%zu bytes)", n0 * esz);
    ci_status s = ci_ok();
    for (size_t off = 0; off < total && s.code == CI_OK; off += n0) {
        size_t n = total - off < n0 ? total - off : n0;
        convert((const char *)src + off * ci_dtype_size(src_dtype), src_dtype, n, tmp, w->dtype);
        s = cu_to_device(be, dst + off * esz, tmp, n * esz);
    }
    free(tmp);
    return s;
}

/* Grows a pinned host + device buffer pair to at least `bytes` (doubling). */
static ci_status grow_pair(ci_cuda *c, void **host, void **dev, size_t *cap, size_t bytes) {
    if (bytes <= *cap) return ci_ok();
    size_t nc = *cap ? *cap : 65536;
    while (nc < bytes)
        nc *= 2;
    CI_CU_TRY(cudaStreamSynchronize(c->stream)); /* old buffers may be in use */
    if (*host) cudaFreeHost(*host);
    if (*dev) cudaFree(*dev);
    *host = *dev = NULL;
    *cap = 0;
    CI_CU_TRY(cudaMallocHost(host, nc));
    CI_CU_TRY(cudaMalloc(dev, nc));
    *cap = nc;
    return ci_ok();
}

/* Packs the batch's int arrays into pinned staging memory and uploads them
 * with one copy; the device batch points into the device copy. The staging
 * pair (*hbuf, *dbuf, *cap) grows when `grow` is set; a persistent pair
 * (CUDA graphs) is allocated on its first use and never moves. */
static ci_status pack_batch(ci_cuda *c, const ci_batch *host, ci_batch *dev, void **hbuf,
                            void **dbuf, size_t *cap, int grow) {
    const int T = host->num_tokens, S = host->num_seqs, L = host->num_logits;
    size_t n[8] = {(size_t)T,
                   (size_t)T,
                   (size_t)S + 1,
                   (size_t)S,
                   (size_t)S * (size_t)host->max_blocks_per_seq,
                   (size_t)T,
                   (size_t)L,
                   (size_t)T};
    const int32_t *src[8] = {host->token_ids,      host->positions,    host->query_start,
                             host->context_lens,   host->block_tables, host->slot_mapping,
                             host->logits_indices, host->sample_src};
    size_t off[8], total = 0;
    for (int i = 0; i < 8; i++) {
        off[i] = total;
        if (!src[i]) n[i] = 0;
        total += (n[i] + 31) / 32 * 32; /* 128-byte aligned pieces */
    }
    size_t bytes = total * sizeof(int32_t);
    if (c->meta_pending) { /* the previous upload may still read a staging buffer */
        CI_CU_TRY(cudaEventSynchronize(c->meta_done));
        c->meta_pending = 0;
    }
    if (!grow && *dbuf && bytes > *cap)
        return ci_errorf(CI_ERR_INTERNAL,
                         "cuda: static batch of %zu bytes exceeds the %zu captured", bytes, *cap);
    CI_TRY(grow_pair(c, hbuf, dbuf, cap, bytes));
    int32_t *h = *hbuf, *d = *dbuf;
    for (int i = 0; i < 8; i++)
        if (n[i]) memcpy(h + off[i], src[i], n[i] * sizeof(int32_t));
    if (bytes) {
        CI_CU_TRY(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, c->stream));
        CI_CU_TRY(cudaEventRecord(c->meta_done, c->stream));
        c->meta_pending = 1;
    }
    *dev = *host;
    dev->token_ids = n[0] ? d + off[0] : NULL;
    dev->positions = n[1] ? d + off[1] : NULL;
    dev->query_start = n[2] ? d + off[2] : NULL;
    dev->context_lens = n[3] ? d + off[3] : NULL;
    dev->block_tables = n[4] ? d + off[4] : NULL;
    dev->slot_mapping = n[5] ? d + off[5] : NULL;
    dev->logits_indices = n[6] ? d + off[6] : NULL;
    dev->sample_src = n[7] ? d + off[7] : NULL;
    return ci_ok();
}

static ci_status cu_prepare_batch(ci_backend *be, const ci_batch *host, ci_batch *dev) {
    ci_cuda *c = ci_cuda_of(be);
    CI_CU_TRY(ci_cu_tl_begin(c->stream, NULL)); /* an eager forward begins */
    c->gemm_tune = 0;
    return pack_batch(c, host, dev, &c->meta_host, &c->meta_dev, &c->meta_cap, 1);
}

static ci_status cu_prepare_batch_static(ci_backend *be, const ci_batch *host, ci_batch *dev) {
    ci_cuda *c = ci_cuda_of(be);
    c->gemm_tune = 1; /* a graph's warm-up forward (or its replay) follows */
    return pack_batch(c, host, dev, &c->smeta_host, &c->smeta_dev, &c->smeta_cap, 0);
}

static int cu_tune_gemms(ci_backend *be, int on) {
    ci_cuda_of(be)->gemm_tune_eager = on && ci_cuda_gemm_buckets_on();
    return ci_cuda_gemm_buckets_on();
}

static ci_status cu_mem_info(ci_backend *be, size_t *free_bytes, size_t *total_bytes) {
    (void)be;
    CI_CU_TRY(cudaMemGetInfo(free_bytes, total_bytes));
    return ci_ok();
}

/* ---- CUDA graphs: the stream records instead of running ---- */

static ci_status cu_graph_capture_begin(ci_backend *be) {
    ci_cuda *c = ci_cuda_of(be);
    c->gemm_tune = 0;
    /* thread-local mode: other threads' CUDA calls do not break the capture */
    CI_CU_TRY(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    CI_CU_TRY(ci_cu_tl_begin(c->stream, NULL));
    return ci_ok();
}

static ci_status cu_graph_capture_end(ci_backend *be, void **graph) {
    ci_cuda *c = ci_cuda_of(be);
    cudaGraph_t g = NULL;
    cudaGraphExec_t ex = NULL;
    *graph = NULL;
    CI_CU_TRY(cudaStreamEndCapture(c->stream, &g));
    cudaError_t e = cudaGraphInstantiate(&ex, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess)
        return ci_errorf(CI_ERR_BACKEND, "cuda: cudaGraphInstantiate: %s", cudaGetErrorString(e));
    *graph = ex;
    ci_cu_tl_graph(ex);
    return ci_ok();
}

static ci_status cu_graph_launch(ci_backend *be, void *graph) {
    ci_cuda *c = ci_cuda_of(be);
    c->gemm_tune = 0;
    CI_CU_TRY(ci_cu_tl_begin(c->stream, graph));
    CI_CU_TRY(cudaGraphLaunch((cudaGraphExec_t)graph, c->stream));
    return ci_ok();
}

static void cu_graph_destroy(ci_backend *be, void *graph) {
    (void)be;
    if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

/* ---- ops: checks, then a kernel ---- */

static int act_ok(ci_backend *be, const ci_tensor *t) {
    return t->dtype == be->act_dtype;
}

ci_status ci_cuda_embedding(ci_backend *be, const ci_tensor *table, const int32_t *ids, int n,
                            ci_tensor *out) {
    ci_cuda *c = ci_cuda_of(be);
    if (!act_ok(be, out) || out->cols != table->cols || out->rows < n || table->dtype != out->dtype)
        return ci_errorf(CI_ERR_INVALID, "cuda embedding: table %s [%lld] -> out %s [%lld]",
                         ci_dtype_name(table->dtype), (long long)table->cols,
                         ci_dtype_name(out->dtype), (long long)out->cols);
    CI_CU_LAUNCH("embedding", ci_cu_gather_rows(ST(c), table->data, table->rows,
                                                table->cols * (int64_t)ci_dtype_size(table->dtype),
                                                ids, n, out->data));
    return ci_ok();
}

ci_status ci_cuda_gather_rows(ci_backend *be, const ci_tensor *x, const int32_t *idx, int n,
                              ci_tensor *out) {
    ci_cuda *c = ci_cuda_of(be);
    if (x->dtype != out->dtype || x->cols != out->cols || out->rows < n)
        return ci_errorf(CI_ERR_INVALID, "cuda gather_rows: shape mismatch");
    CI_CU_LAUNCH("gather_rows",
                 ci_cu_gather_rows(ST(c), x->data, x->rows,
                                   x->cols * (int64_t)ci_dtype_size(x->dtype), idx, n, out->data));
    return ci_ok();
}

ci_status ci_cuda_swiglu(ci_backend *be, const ci_tensor *gate_up, ci_tensor *out) {
    ci_cuda *c = ci_cuda_of(be);
    if (!act_ok(be, gate_up) || !act_ok(be, out) || gate_up->cols != 2 * out->cols ||
        out->rows < gate_up->rows)
        return ci_errorf(CI_ERR_INVALID, "cuda swiglu: shape mismatch");
    CI_CU_LAUNCH("swiglu", ci_cu_swiglu(ST(c), ci_cu_bf16(out->dtype), gate_up->data, gate_up->rows,
                                        out->cols, out->data));
    return ci_ok();
}

ci_status ci_cuda_rmsnorm(ci_backend *be, ci_tensor *x, ci_tensor *residual, const ci_tensor *w,
                          float eps, ci_tensor *out) {
    ci_cuda *c = ci_cuda_of(be);
    int64_t n = x->cols;
    if (!act_ok(be, x) || !act_ok(be, out) || out->cols != n || out->rows < x->rows ||
        w->rows * w->cols != n || w->dtype != CI_F32 ||
        (residual && (residual->cols != n || residual->rows < x->rows || !act_ok(be, residual))))
        return ci_errorf(CI_ERR_INVALID, "cuda rmsnorm: shape/dtype mismatch (x [%lld][%lld])",
                         (long long)x->rows, (long long)n);
    CI_CU_LAUNCH("rmsnorm", ci_cu_rmsnorm(ST(c), ci_cu_bf16(x->dtype), x->data,
                                          residual ? residual->data : NULL, w->data, x->rows, n,
                                          eps, out->data));
    return ci_ok();
}

ci_status ci_cuda_qk_norm(ci_backend *be, ci_tensor *qkv, const ci_attn_shape *shape,
                          const ci_tensor *w_q, const ci_tensor *w_k, float eps) {
    ci_cuda *c = ci_cuda_of(be);
    int64_t stride = (int64_t)(shape->num_heads + 2 * shape->num_kv_heads) * shape->head_dim;
    if (!act_ok(be, qkv) || qkv->cols != stride || w_q->rows * w_q->cols != shape->head_dim ||
        w_k->rows * w_k->cols != shape->head_dim || w_q->dtype != CI_F32 || w_k->dtype != CI_F32)
        return ci_errorf(CI_ERR_INVALID, "cuda qk_norm: shape mismatch");
    CI_CU_LAUNCH("qk_norm", ci_cu_qk_norm(ST(c), ci_cu_bf16(qkv->dtype), qkv->data, (int)qkv->rows,
                                          shape->num_heads, shape->num_kv_heads, shape->head_dim,
                                          w_q->data, w_k->data, eps));
    return ci_ok();
}

ci_status ci_cuda_rope_cache(ci_backend *be, ci_tensor *qkv, const ci_attn_shape *shape,
                             const ci_rope_table *rope, const ci_batch *batch, ci_kv_cache *kv,
                             int layer) {
    ci_cuda *c = ci_cuda_of(be);
    int64_t stride = (int64_t)(shape->num_heads + 2 * shape->num_kv_heads) * shape->head_dim;
    if (!act_ok(be, qkv) || qkv->cols != stride || qkv->rows < batch->num_tokens)
        return ci_errorf(CI_ERR_INVALID, "cuda rope: qkv shape mismatch");
    if (rope->rot_dim <= 0 || rope->rot_dim > shape->head_dim || (rope->rot_dim & 1) ||
        rope->cos_sin.dtype != CI_F32 || rope->cos_sin.cols != rope->rot_dim)
        return ci_errorf(CI_ERR_INVALID, "cuda rope: bad table (rot_dim %d, head_dim %d)",
                         rope->rot_dim, shape->head_dim);
    if (layer < 0 || layer >= kv->num_layers || !ci_kv_dtype_ok(be, kv->dtype) ||
        kv->num_kv_heads != shape->num_kv_heads || kv->head_dim != shape->head_dim)
        return ci_errorf(CI_ERR_INVALID, "cuda rope: kv cache does not match (layer %d)", layer);
    /* positions and slots live on the device: the model checked positions;
     * slots come from the block manager */
    CI_CU_LAUNCH("rope_cache",
                 ci_cu_rope_cache(ST(c), ci_cu_bf16(qkv->dtype), qkv->data, batch->num_tokens,
                                  shape->num_heads, shape->num_kv_heads, shape->head_dim,
                                  rope->cos_sin.data, rope->rot_dim, rope->neox, batch->positions,
                                  batch->slot_mapping, kv->k[layer], kv->v[layer], kv->block_size,
                                  kv->dtype == CI_F8_E4M3, kv->k_scale[layer], kv->v_scale[layer]));
    return ci_ok();
}

ci_status ci_cuda_attention(ci_backend *be, const ci_tensor *qkv, const ci_attn_shape *shape,
                            const ci_batch *batch, const ci_kv_cache *kv, int layer, float scale,
                            int window, ci_tensor *out) {
    ci_cuda *c = ci_cuda_of(be);
    const int H = shape->num_heads, KV = shape->num_kv_heads, hd = shape->head_dim;
    int64_t stride = (int64_t)(H + 2 * KV) * hd;
    const int T = batch->num_tokens, S = batch->num_seqs;
    if (KV <= 0 || H % KV != 0 || hd <= 0 || hd % 8 != 0 || hd > CI_CU_ATT_MAX_HD ||
        (H / KV) * hd > CI_CU_ATT_MAX_GHD)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "cuda attention: heads %d / kv heads %d / head_dim %d (head_dim must be "
                         "a multiple of 8 <= %d, group x head_dim <= %d)",
                         H, KV, hd, CI_CU_ATT_MAX_HD, CI_CU_ATT_MAX_GHD);
    if (!act_ok(be, qkv) || qkv->cols != stride || qkv->rows < T || !act_ok(be, out) ||
        out->cols != (int64_t)H * hd || out->rows < T)
        return ci_errorf(CI_ERR_INVALID, "cuda attention: shape mismatch");
    if (layer < 0 || layer >= kv->num_layers || !ci_kv_dtype_ok(be, kv->dtype) ||
        kv->num_kv_heads != KV || kv->head_dim != hd || (kv->dtype == CI_F8_E4M3 && hd % 16 != 0))
        return ci_errorf(CI_ERR_INVALID,
                         "cuda attention: kv cache does not match (layer %d; FP8 needs head_dim "
                         "a multiple of 16)",
                         layer);
    if (S <= 0) return ci_errorf(CI_ERR_INVALID, "cuda attention: no sequences");
    if (window < 0) return ci_errorf(CI_ERR_INVALID, "cuda attention: window %d", window);
    CI_CU_LAUNCH("attention",
                 ci_cu_attention(ST(c), ci_cu_bf16(qkv->dtype), qkv->data, T, S, H, KV, hd,
                                 batch->positions, batch->query_start, batch->context_lens,
                                 batch->block_tables, batch->max_blocks_per_seq, kv->k[layer],
                                 kv->v[layer], kv->block_size, scale, window, out->data,
                                 batch->max_context_len, batch->max_query_len,
                                 batch->num_decode_seqs, c->num_sms, c->att_ws, CI_CU_ATT_WS_FLOATS,
                                 kv->dtype == CI_F8_E4M3, kv->k_scale[layer], kv->v_scale[layer],
                                 kv->num_blocks));
    return ci_ok();
}

static size_t align16(size_t x) {
    return (x + 15) & ~(size_t)15;
}

/* Grammar masks of the next sample op: one pinned copy, then an async upload
 * on the copy stream, so the copy engine moves them while the forward's
 * kernels run; the sample op waits on msk_done instead of uploading them. */
static ci_status cu_stage_masks(ci_backend *be, const uint32_t *masks, int nmasks, int words) {
    ci_cuda *c = ci_cuda_of(be);
    c->msk_src = NULL;
    if (nmasks <= 0) return ci_ok();
    size_t bytes = sizeof(uint32_t) * (size_t)words * (size_t)nmasks;
    /* the previous upload has finished reading msk_host; a sample op still
     * in flight (plan-ahead scheduling) reads msk_dev until it completes */
    CI_CU_TRY(cudaEventSynchronize(c->msk_done));
    if (c->smp_q_len > 0)
        CI_CU_TRY(cudaStreamWaitEvent(c->copy_stream, c->smp_done[c->smp_last], 0));
    CI_TRY(grow_pair(c, &c->msk_host, &c->msk_dev, &c->msk_cap, bytes));
    memcpy(c->msk_host, masks, bytes);
    CI_CU_TRY(
        cudaMemcpyAsync(c->msk_dev, c->msk_host, bytes, cudaMemcpyHostToDevice, c->copy_stream));
    CI_CU_TRY(cudaEventRecord(c->msk_done, c->copy_stream));
    c->msk_src = masks;
    c->msk_n = nmasks;
    return ci_ok();
}

/* The sample op: checks and packs rows | adjustments | owner rows | bitmasks
 * into one pinned upload (one async H2D copy into the persistent device
 * buffer, grown only), runs the kernels (cuda_sampling.cu), one download of
 * the results; cu_sample_wait's stream sync completes it. */
static ci_status cu_sample_async(ci_backend *be, const ci_tensor *logits, const ci_sample_row *rows,
                                 int n, const ci_logit_adjust *adj, int nadj, const uint32_t *masks,
                                 int nmasks, ci_sample_result *out) {
    ci_cuda *c = ci_cuda_of(be);
    CI_TRY(ci_sample_check("cuda sample", logits, rows, n, adj, nadj, masks, nmasks));
    if (n <= 0) return ci_ok();
    if (c->smp_q_len >= 2)
        return ci_errorf(CI_ERR_INTERNAL, "cuda sample: two sample ops already in flight");
    const int slot = c->smp_slot;
    const int V = (int)logits->cols;
    if (logits->rows > c->smp_mark_cap) {
        int64_t cap = logits->rows;
        uint32_t *mk = realloc(c->smp_mark, sizeof(uint32_t) * (size_t)cap);
        if (mk) c->smp_mark = mk;
        int32_t *ow = realloc(c->smp_owner, sizeof(int32_t) * (size_t)cap);
        if (ow) c->smp_owner = ow;
        if (!mk || !ow) return ci_errorf(CI_ERR_NOMEM, "cuda sample: out of memory");
        memset(c->smp_mark + c->smp_mark_cap, 0,
               sizeof(uint32_t) * (size_t)(cap - c->smp_mark_cap));
        c->smp_mark_cap = cap;
    }
    if (++c->smp_gen == 0) {
        memset(c->smp_mark, 0, sizeof(uint32_t) * (size_t)c->smp_mark_cap);
        c->smp_gen = 1;
    }
    size_t o_adj = align16(sizeof(ci_sample_row) * (size_t)n);
    size_t o_own = o_adj + align16(sizeof(ci_logit_adjust) * (size_t)(nadj > 0 ? nadj : 0));
    size_t o_mask = o_own + align16(sizeof(int32_t) * (size_t)n);
    /* masks staged during the forward are on the device already */
    const int staged = nmasks > 0 && masks == c->msk_src && nmasks == c->msk_n;
    c->msk_src = NULL;
    if (staged) CI_CU_TRY(cudaStreamWaitEvent(c->stream, c->msk_done, 0));
    size_t mask_bytes =
        staged ? 0
               : sizeof(uint32_t) * (size_t)ci_mask_words(V) * (size_t)(nmasks > 0 ? nmasks : 0);
    size_t up = o_mask + align16(mask_bytes);
    size_t total = up + align16(sizeof(float) * (size_t)(nadj > 0 ? nadj : 0));
    /* the slot's last user is two sample ops back: complete (waited for) */
    CI_TRY(grow_pair(c, &c->smp_host[slot], &c->smp_dev[slot], &c->smp_cap[slot], total));
    CI_TRY(grow_pair(c, &c->smp_res_host[slot], &c->smp_res_dev[slot], &c->smp_res_cap[slot],
                     sizeof(ci_sample_result) * (size_t)n));
    char *h = c->smp_host[slot];
    int32_t *owners = (int32_t *)(h + o_own);
    int nown = 0, any_lp = 0;
    for (int i = 0; i < n; i++) {
        const ci_sample_row *r = &rows[i];
        if (r->top_logprobs >= 0) any_lp = 1;
        if (r->adj_count == 0) continue;
        if (c->smp_mark[r->logits_row] == c->smp_gen) {
            const ci_sample_row *first = &rows[c->smp_owner[r->logits_row]];
            if (first->adj_start != r->adj_start || first->adj_count != r->adj_count)
                return ci_errorf(CI_ERR_INVALID,
                                 "cuda sample: rows %d and %d share logits row %d with different "
                                 "adjustments",
                                 c->smp_owner[r->logits_row], i, r->logits_row);
            continue;
        }
        c->smp_mark[r->logits_row] = c->smp_gen;
        c->smp_owner[r->logits_row] = i;
        owners[nown++] = i;
    }
    memcpy(h, rows, sizeof(ci_sample_row) * (size_t)n);
    if (nadj > 0) memcpy(h + o_adj, adj, sizeof(ci_logit_adjust) * (size_t)nadj);
    if (mask_bytes > 0) memcpy(h + o_mask, masks, mask_bytes);
    char *d = c->smp_dev[slot];
    CI_CU_TRY(cudaMemcpyAsync(d, h, up, cudaMemcpyHostToDevice, c->stream));
    CI_CU_LAUNCH("sample", ci_cu_sample(ST(c), (float *)logits->data, V, d, n, d + o_adj,
                                        (float *)(d + up), (const int32_t *)(d + o_own), nown,
                                        staged           ? (const uint32_t *)c->msk_dev
                                        : mask_bytes > 0 ? (const uint32_t *)(d + o_mask)
                                                         : NULL,
                                        any_lp, !c->smp_exact, c->smp_res_dev[slot]));
    CI_CU_TRY(cudaMemcpyAsync(c->smp_res_host[slot], c->smp_res_dev[slot],
                              sizeof(ci_sample_result) * (size_t)n, cudaMemcpyDeviceToHost,
                              c->stream));
    CI_CU_TRY(cudaEventRecord(c->smp_done[slot], c->stream));
    c->smp_q_slot[c->smp_q_len] = slot;
    c->smp_q_out[c->smp_q_len] = out;
    c->smp_q_n[c->smp_q_len] = n;
    c->smp_q_len++;
    c->smp_slot = slot ^ 1;
    c->smp_last = slot;
    c->smp_last_n = n;
    return ci_ok();
}

/* Completes the oldest sample op in flight (its results copied to its out);
 * with none, waits for the stream. */
static ci_status cu_sample_wait(ci_backend *be) {
    ci_cuda *c = ci_cuda_of(be);
    if (c->smp_q_len == 0) {
        CI_CU_TRY(cudaStreamSynchronize(c->stream));
        return ci_ok();
    }
    const int slot = c->smp_q_slot[0], n = c->smp_q_n[0];
    ci_sample_result *out = c->smp_q_out[0];
    c->smp_q_len--;
    c->smp_q_slot[0] = c->smp_q_slot[1];
    c->smp_q_out[0] = c->smp_q_out[1];
    c->smp_q_n[0] = c->smp_q_n[1];
    CI_CU_TRY(cudaEventSynchronize(c->smp_done[slot]));
    if (out) memcpy(out, c->smp_res_host[slot], sizeof(ci_sample_result) * (size_t)n);
    return ci_ok();
}

/* Plan-ahead scheduling: the step's tail begins here. While capturing it
 * is recorded as an external event, so that the graph keeps it as an event
 * node and every replay records it; an eager stream refuses that flag
 * ("not permitted in the present state"), so there it is a plain record. */
static ci_status cu_mark_ready(ci_backend *be) {
    ci_cuda *c = ci_cuda_of(be);
    enum cudaStreamCaptureStatus cs;
    CI_CU_TRY(cudaStreamIsCapturing(c->stream, &cs));
    if (cs == cudaStreamCaptureStatusActive)
        CI_CU_TRY(cudaEventRecordWithFlags(c->ready, c->stream, cudaEventRecordExternal));
    else
        CI_CU_TRY(cudaEventRecord(c->ready, c->stream));
    return ci_ok();
}

static ci_status cu_wait_ready(ci_backend *be) {
    CI_CU_TRY(cudaEventSynchronize(ci_cuda_of(be)->ready));
    return ci_ok();
}

/* Plan-ahead scheduling: the batch's ids that the last sample op draws. */
static ci_status cu_take_samples(ci_backend *be, const ci_batch *dev) {
    ci_cuda *c = ci_cuda_of(be);
    if (!dev->sample_src) return ci_ok();
    if (c->smp_last < 0)
        return ci_errorf(CI_ERR_INVALID, "cuda take_samples: no sample op ran before");
    CI_CU_LAUNCH("take_samples",
                 ci_cu_take_samples(ST(c), c->smp_res_dev[c->smp_last], c->smp_last_n,
                                    dev->sample_src, dev->num_tokens, (int32_t *)dev->token_ids));
    return ci_ok();
}

ci_status ci_cuda_sample(ci_backend *be, const ci_tensor *logits, const ci_sample_row *rows, int n,
                         const ci_logit_adjust *adj, int nadj, const uint32_t *masks, int nmasks,
                         ci_sample_result *out) {
    ci_cuda *c = ci_cuda_of(be);
    if (c->smp_q_len > 0) /* its wait would complete the older one */
        return ci_errorf(CI_ERR_INTERNAL, "cuda sample: a sample op is still in flight");
    ci_status s = cu_sample_async(be, logits, rows, n, adj, nadj, masks, nmasks, out);
    if (s.code) return s;
    return cu_sample_wait(be);
}

static void cu_destroy(ci_backend *be) {
    if (!be) return;
    ci_cuda *c = be->impl;
    if (c) {
        if (c->stream) cudaSetDevice(c->device); /* another rank's device may be current */
        if (c->stream) cudaStreamSynchronize(c->stream);
        if (c->stream) ci_cu_tl_dump(c->stream);
        ci_cuda_comm_free(c);
        ci_cuda_gemm_plans_free(c);
        if (c->lt) cublasLtDestroy(c->lt);
        if (c->workspace) cudaFree(c->workspace);
        if (c->l2_flush) cudaFree(c->l2_flush);
        if (c->att_ws) cudaFree(c->att_ws);
        if (c->skinny_cnt) cudaFree(c->skinny_cnt);
        if (c->qscratch) cudaFree(c->qscratch);
        if (c->xperm) cudaFree(c->xperm);
        if (c->qact) cudaFree(c->qact);
        if (c->qact_big) cudaFree(c->qact_big);
        if (c->meta_host) cudaFreeHost(c->meta_host);
        if (c->meta_dev) cudaFree(c->meta_dev);
        if (c->smeta_host) cudaFreeHost(c->smeta_host);
        if (c->smeta_dev) cudaFree(c->smeta_dev);
        if (c->meta_done) cudaEventDestroy(c->meta_done);
        if (c->copy_stream) cudaStreamSynchronize(c->copy_stream);
        if (c->msk_host) cudaFreeHost(c->msk_host);
        if (c->msk_dev) cudaFree(c->msk_dev);
        if (c->msk_done) cudaEventDestroy(c->msk_done);
        if (c->copy_stream) cudaStreamDestroy(c->copy_stream);
        for (int i = 0; i < 2; i++) {
            if (c->smp_host[i]) cudaFreeHost(c->smp_host[i]);
            if (c->smp_dev[i]) cudaFree(c->smp_dev[i]);
            if (c->smp_res_host[i]) cudaFreeHost(c->smp_res_host[i]);
            if (c->smp_res_dev[i]) cudaFree(c->smp_res_dev[i]);
            if (c->smp_done[i]) cudaEventDestroy(c->smp_done[i]);
        }
        if (c->ready) cudaEventDestroy(c->ready);
        free(c->smp_mark);
        free(c->smp_owner);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
    }
    free(be);
}

/* Copy-on-write of shared KV blocks: whole blocks, every layer, K and V.
 * Rare (n > 1 forks), so plain async device-to-device copies suffice. */
static ci_status cu_copy_blocks(ci_backend *be, ci_kv_cache *kv, const int32_t *src,
                                const int32_t *dst, int n) {
    ci_cuda *c = ci_cuda_of(be);
    size_t block_bytes = (size_t)kv->num_kv_heads * (size_t)kv->block_size * (size_t)kv->head_dim *
                         ci_dtype_size(kv->dtype);
    for (int i = 0; i < n; i++)
        if (src[i] < 0 || src[i] >= kv->num_blocks || dst[i] < 0 || dst[i] >= kv->num_blocks)
            return ci_errorf(CI_ERR_INVALID, "copy_blocks: pair %d (%d -> %d) outside [0, %d)", i,
                             src[i], dst[i], kv->num_blocks);
    for (int l = 0; l < kv->num_layers; l++) {
        char *k = kv->k[l], *v = kv->v[l];
        for (int i = 0; i < n; i++) {
            if (src[i] == dst[i]) continue;
            size_t so = (size_t)src[i] * block_bytes, d = (size_t)dst[i] * block_bytes;
            CI_CU_TRY(
                cudaMemcpyAsync(k + d, k + so, block_bytes, cudaMemcpyDeviceToDevice, c->stream));
            CI_CU_TRY(
                cudaMemcpyAsync(v + d, v + so, block_bytes, cudaMemcpyDeviceToDevice, c->stream));
        }
    }
    return ci_ok();
}

/* The matmul op: quantized weights go to cuda_qweight.c (which runs its
 * prefill through the dense GEMM), everything else to cuda_gemm.c. The
 * dispatch lives here so that the two files depend one way. */
static ci_status cu_matmul(ci_backend *be, const ci_tensor *x, const ci_tensor *w,
                           const ci_tensor *bias, ci_tensor *y) {
    if (w->dtype == CI_QW) return ci_cuda_qmatmul(be, x, w, bias, y, 0);
    return ci_cuda_matmul(be, x, w, bias, y, 0);
}

static const ci_backend_ops cuda_ops = {
    .alloc = cu_alloc,
    .free = cu_free,
    .to_device = cu_to_device,
    .to_host = cu_to_host,
    .memset0 = cu_memset0,
    .sync = cu_sync,
    .weight_alloc = cu_weight_alloc,
    .weight_write = cu_weight_write,
    .qweight_create = ci_cuda_qweight_create,
    .qweight_free = ci_cuda_qweight_free,
    .prepare_batch = cu_prepare_batch,
    .embedding = ci_cuda_embedding,
    .matmul = cu_matmul,
    .rmsnorm = ci_cuda_rmsnorm,
    .qk_norm = ci_cuda_qk_norm,
    .rope_cache = ci_cuda_rope_cache,
    .attention = ci_cuda_attention,
    .swiglu = ci_cuda_swiglu,
    .gather_rows = ci_cuda_gather_rows,
    .copy_blocks = cu_copy_blocks,
    .sample = ci_cuda_sample,
    .sample_async = cu_sample_async,
    .sample_wait = cu_sample_wait,
    .take_samples = cu_take_samples,
    .mark_ready = cu_mark_ready,
    .wait_ready = cu_wait_ready,
    .matmul_fused_rows = ci_cuda_matmul_fused_rows,
    .matmul_fused = ci_cuda_matmul_fused,
    .matmul_rope_rows = ci_cuda_matmul_rope_rows,
    .matmul_swiglu_ok = ci_cuda_matmul_swiglu_ok,
    .stage_masks = cu_stage_masks,
    .mem_info = cu_mem_info,
    .tune_gemms = cu_tune_gemms,
    .prepare_batch_static = cu_prepare_batch_static,
    .graph_capture_begin = cu_graph_capture_begin,
    .graph_capture_end = cu_graph_capture_end,
    .graph_launch = cu_graph_launch,
    .graph_destroy = cu_graph_destroy,
    .all_reduce = ci_cuda_all_reduce,
    .send = ci_cuda_send,
    .recv = ci_cuda_recv,
    .embedding_shard = ci_cuda_embedding_shard,
    .gather_cols = ci_cuda_gather_cols,
    .thread_attach = ci_cuda_thread_attach,
    .comm_ready = ci_cuda_comm_ready,
    .destroy = cu_destroy,
};

static ci_status cu_init(ci_cuda *c, int device) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        return ci_errorf(CI_ERR_UNSUPPORTED, "cuda: no CUDA device (%s)",
                         e != cudaSuccess ? cudaGetErrorString(e) : "device count 0");
    }
    if (device < 0 || device >= n)
        return ci_errorf(CI_ERR_INVALID, "cuda: device %d outside [0, %d)", device, n);
    c->device = device;
    CI_CU_TRY(cudaSetDevice(device));
    CI_CU_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CI_CU_TRY(cudaEventCreateWithFlags(&c->meta_done, cudaEventDisableTiming));
    CI_CU_TRY(cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking));
    CI_CU_TRY(cudaEventCreateWithFlags(&c->msk_done, cudaEventDisableTiming));
    for (int i = 0; i < 2; i++)
        CI_CU_TRY(cudaEventCreateWithFlags(&c->smp_done[i], cudaEventDisableTiming));
    CI_CU_TRY(cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming));
    c->smp_last = -1;
    CI_LT_TRY(cublasLtCreate(&c->lt));
    CI_CU_TRY(cudaMalloc(&c->workspace, CI_CU_GEMM_WORKSPACE));
    {
        const size_t ws = (size_t)CI_CU_ATT_WS_FLOATS * sizeof(float);
        CI_CU_TRY(cudaMalloc((void **)&c->att_ws, ws + (size_t)CI_CU_ATT_CNT * sizeof(unsigned)));
        CI_CU_TRY(cudaMemsetAsync((char *)c->att_ws + ws, 0,
                                  (size_t)CI_CU_ATT_CNT * sizeof(unsigned), c->stream));
    }
    CI_CU_TRY(cudaDeviceGetAttribute(&c->num_sms, cudaDevAttrMultiProcessorCount, device));
    int cc_major = 0, cc_minor = 0;
    CI_CU_TRY(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device));
    CI_CU_TRY(cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, device));
    /* cuBLASLt's per-row and block FP8 scales are Hopper's (CUDA 12.9+); our
     * SASS is sm_90a + sm_80, so elsewhere W8A8 weights run as W8A16 */
    c->fp8_mma = cc_major == 9;
    (void)cc_minor;
    const char *ng = getenv("CINFER_NO_GEMV");
    c->use_gemv = !(ng && *ng && strcmp(ng, "0") != 0);
    /* the skinny BF16 GEMM for decode batches (cuda_gemm_skinny.cu): Hopper
     * only, off by default (5-8 % slower than cuBLASLt on an H100); CINFER_SKINNY=1 up to 64 rows,
     * =N up to N */
    const char *sk = getenv("CINFER_SKINNY");
    const int skn = sk ? atoi(sk) : 0;
    c->skinny_max = skn == 1                   ? 64
                    : skn < 0                  ? 0
                    : skn > CI_CU_SKINNY_MAX_N ? CI_CU_SKINNY_MAX_N
                                               : skn;
    if (cc_major != 9 ||
        (size_t)c->num_sms * CI_CU_SKINNY_PART_FLOATS * sizeof(float) > CI_CU_GEMM_WORKSPACE)
        c->skinny_max = 0;
    const char *skr = getenv("CINFER_SKINNY_ROWS");
    c->skinny_rows = skr && atoi(skr) == 256 ? 256 : 128;
    if (c->skinny_max > 0) {
        const size_t cb = (size_t)CI_CU_SKINNY_MAX_TILES * sizeof(unsigned);
        CI_CU_TRY(cudaMalloc((void **)&c->skinny_cnt, cb));
        CI_CU_TRY(cudaMemsetAsync(c->skinny_cnt, 0, cb, c->stream));
    }
    /* the fused decode layer (cuda_fused_matmul.c; docs/kernels/gemv.md):
     * CINFER_FUSE=1 all prologues in the GEMV, norm / swiglu that one, acc
     * the residual adds only, 0 off (the classic ops). Unset: norm, with
     * BF16 activations only (the fastest on the H200: the SwiGLU prologue
     * measured slower; F32 parity mode keeps the classic ops) */
    const char *fu = getenv("CINFER_FUSE");
    c->fuse_auto = !fu || !*fu;
    if (c->fuse_auto) fu = "norm";
    c->fuse_off = strcmp(fu, "0") == 0;
    c->fuse_pro = 1 << CI_CU_PRO_NONE;
    if (!strcmp(fu, "norm") || !strcmp(fu, "1")) c->fuse_pro |= 1 << CI_CU_PRO_RMSNORM;
    if (!strcmp(fu, "swiglu") || !strcmp(fu, "1")) c->fuse_pro |= 1 << CI_CU_PRO_SWIGLU;
    /* the quantized GEMVs' prologues and epilogues at decode (the 8-bit
     * tensor-core GEMV, cuda_qgemv_fp8.cu; INT4's fused kernel,
     * cuda_qgemv_int4_fused.cu): by default (CINFER_FUSE_TC8 unset or
     * "all") the RMSNorm as a scale of the sums, the qkv rope and the
     * gate|up SwiGLU epilogues (batch-1 on an H100: FP8 +3.7 %, INT4
     * +0.9 %, docs/benchmarks.md); "norm" without the SwiGLU one; 1 the
     * exact prologues (8-bit only; measured slower) and both epilogues; 0
     * none (the classic kernels) */
    const char *f8 = getenv("CINFER_FUSE_TC8");
    c->fuse_tc8 = !f8 || !*f8 || !strcmp(f8, "all") ? 3
                  : !strcmp(f8, "norm")             ? 2
                  : !strcmp(f8, "1")                ? 1
                                                    : 0;
    /* the qkv GEMV's rope epilogue for decode steps (CINFER_FUSE_ROPE=0:
     * rope_cache's own kernel, for A/B) */
    const char *fr = getenv("CINFER_FUSE_ROPE");
    c->rope_off = fr && strcmp(fr, "0") == 0;
    /* PDL (griddepcontrol) is sm_90+; CINFER_PDL=0 turns it off (A/B) */
    const char *pdl = getenv("CINFER_PDL");
    ci_cu_set_pdl(cc_major >= 9 && !(pdl && strcmp(pdl, "0") == 0));
    CI_CU_TRY(ci_cu_tl_enable()); /* a profiling build's timeline (CINFER_TIMELINE_OUT) */
    const char *ex = getenv("CINFER_SAMPLE_EXACT"); /* 1: no approximate top-p probe (A/B) */
    c->smp_exact = ex && ex[0] == '1';
    return ci_ok();
}

ci_status ci_cuda_backend_create(const ci_backend_options *opts, ci_backend **out) {
    *out = NULL;
    ci_backend *be = calloc(1, sizeof *be);
    ci_cuda *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return ci_errorf(CI_ERR_NOMEM, "cuda backend: out of memory");
    }
    be->ops = &cuda_ops;
    be->name = "cuda";
    int act = opts ? opts->act_dtype : CI_ACT_DEFAULT;
    const char *env = getenv("CINFER_CUDA_DTYPE"); /* float32 | bfloat16: overrides default */
    if (act == CI_ACT_DEFAULT && env && (!strcmp(env, "float32") || !strcmp(env, "f32")))
        act = CI_ACT_F32;
    be->act_dtype = act == CI_ACT_F32 ? CI_F32 : CI_BF16;
    be->impl = c;
    ci_status s = cu_init(c, opts ? opts->device_id : 0);
    if (s.code != CI_OK) {
        cu_destroy(be);
        return ci_status_wrap(s, "cuda backend");
    }
    *out = be;
    return ci_ok();
}
