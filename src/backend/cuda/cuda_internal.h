/* cuda_internal.h — state of the CUDA backend and its checked-call macros.
 *
 * Every CUDA runtime and cuBLASLt call goes through CI_CU_TRY / CI_LT_TRY,
 * which turn a failure into a ci_status naming the call and the error. */
#ifndef CINFER_BACKEND_CUDA_INTERNAL_H
#define CINFER_BACKEND_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_kernels.h"

#define CI_CU_GEMM_CACHE 512 /* open-addressed by shape; power of two */
#define CI_CU_GEMM_WORKSPACE (32u << 20)
#define CI_CU_ATT_WS_FLOATS ((int64_t)4 << 20) /* 16 MiB */

/* One cached cuBLASLt plan per GEMM shape and type combination. */
typedef struct ci_cu_gemm_plan {
    int used;
    int64_t m, n, k;
    cudaDataType_t ab, cd;
    int bias;    /* 1: bias epilogue; 0: none */
    int fp8;     /* FP8 scale modes: 0 none, 1 per row x per column, 2 128x128 blocks x 1x128 */
    int bias_ok; /* 0: the epilogue had no algorithm; bias added by a kernel */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} ci_cu_gemm_plan;

typedef struct ci_cuda {
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    int num_sms;
    int use_gemv;         /* small-n GEMV kernel for BF16 (CINFER_NO_GEMV=1: cuBLASLt only) */
    int skinny_max;       /* the skinny BF16 GEMM up to this many rows (CINFER_SKINNY; 0: off) */
    unsigned *skinny_cnt; /* its tile counters, CI_CU_SKINNY_MAX_TILES, zero at rest */
    int skinny_rows;      /* its tile height: 128, or 256 (CINFER_SKINNY_ROWS) */
    long long skinny_calls;
    long long bucket_plans; /* plans that took their bucket's timed algorithm (cuda_gemm.c) */
    int fuse_off;           /* CINFER_FUSE=0: no fused matmul op (the model's classic ops) */
    int fuse_auto;          /* CINFER_FUSE unset: the fused layer with BF16 activations only */
    int fuse_pro;           /* bit CI_CU_PRO_*: prologues the BF16 GEMV runs itself (CINFER_FUSE) */
    int fuse_tc8;           /* ... the 8-bit tensor-core GEMV's (CINFER_FUSE_TC8): 0 none, 1 exact
                             * prologues + SwiGLU epilogue, 2 deferred norm, 3 both deferred */
    int rope_off;           /* CINFER_FUSE_ROPE=0: decode steps' rope_cache as its own op (A/B) */
    void *workspace;        /* GEMM workspace, CI_CU_GEMM_WORKSPACE bytes */
    void *l2_flush;         /* GEMM tuning's L2 eviction buffer (cuda_gemm.c), or NULL */
    size_t l2_flush_bytes;
    int l2_flush_failed; /* no room for it: tuning times on a warm L2 */
    float *att_ws; /* split-K attention partials, CI_CU_ATT_WS_FLOATS, + CI_CU_ATT_CNT counters */
    ci_cu_gemm_plan plans[CI_CU_GEMM_CACHE];
    int nplans;
    /* 1 between prepare_batch_static and the capture / replay: a decode
     * graph's warm-up forward, whose new dense GEMM plans are timed
     * (cuda_gemm.c); eager steps never pay for it */
    int gemm_tune;
    int gemm_tune_eager; /* ... and eager forwards' plans too (tune_gemms, at startup) */
    /* batch metadata: pinned host staging -> device, grown when needed */
    void *meta_host, *meta_dev;
    size_t meta_cap;
    cudaEvent_t meta_done; /* the last metadata upload finished reading meta_host */
    int meta_pending;
    /* sample op: pinned staging <-> device, grown only (rows | adj | owners | masks
     * up, results down; the device side also holds the saved raw logits), in
     * two slots used in turn: with plan-ahead scheduling a second step's
     * sample op is enqueued while the first one's copies may still read or
     * write its slot */
    void *smp_host[2], *smp_dev[2], *smp_res_host[2], *smp_res_dev[2];
    size_t smp_cap[2], smp_res_cap[2];
    cudaEvent_t smp_done[2]; /* the slot's results reached its host buffer */
    int smp_slot;            /* the slot of the next sample_async */
    /* sample_asyncs not yet waited for, oldest first: slot, results, rows */
    int smp_q_slot[2], smp_q_n[2], smp_q_len;
    ci_sample_result *smp_q_out[2];
    int smp_last, smp_last_n; /* the last sample op's slot (-1: none) and rows: take_samples */
    cudaEvent_t ready;        /* mark_ready: a step's last layers begin (plan-ahead) */
    uint32_t *smp_mark;       /* [smp_mark_cap] per logits row: call stamp of its owner */
    int32_t *smp_owner;       /* [smp_mark_cap] the owner row of each logits row */
    int64_t smp_mark_cap;
    uint32_t smp_gen;
    int smp_exact; /* CINFER_SAMPLE_EXACT=1: skip the approximate top-p probe */
    /* staged grammar masks: pinned -> device on the copy stream during the
     * forward (stage_masks); msk_src/msk_n name the host masks they hold */
    void *msk_host, *msk_dev;
    size_t msk_cap;
    cudaStream_t copy_stream;
    cudaEvent_t msk_done;
    const uint32_t *msk_src;
    int msk_n;
    /* persistent metadata for CUDA graphs: allocated once, never moved */
    void *smeta_host, *smeta_dev;
    size_t smeta_cap;
    /* quantized weights: the largest one dequantized (prefill), grown at load */
    void *qscratch;
    size_t qscratch_bytes;
    /* x gathered in a sorted act order's column order (ci_qweight.perm) for
     * the GEMVs, CI_CU_QGEMV_TC_MAX_N rows of the widest such weight, grown
     * at load */
    void *xperm;
    size_t xperm_bytes;
    /* W8A8 weights: quantized activations and their scales (+ an output when
     * padded). qact is sized at load for QACT_RESERVE_ROWS rows and never
     * moves (decode graphs hold it); larger (eager) matmuls use qact_big,
     * grown when needed */
    void *qact, *qact_big;
    size_t qact_bytes, qact_big_bytes;
    int fp8_mma; /* Hopper: cuBLASLt FP8 GEMMs with vector / block scales (-1: probed, none) */
    int i8_mma;  /* cuBLASLt's INT8 GEMM: 0 untried, -1 probed and missing */
    /* tensor / pipeline parallelism (cuda_comm.c): this rank's NCCL
     * communicators over be->comm and be->pp_comm, and the root's staging
     * buffer of gather_cols */
    struct cu_nccl *nccl_tp, *nccl_pp;
    void *gather_buf;
    size_t gather_bytes;
} ci_cuda;

/* y[n][m] = (xq . wq^T) * xs[n] * ws[m] (+ bias) through cuBLASLt's FP8 GEMM
 * (cuda_gemm.c): wq [m][k] and xq [n][k] E4M3; mode 1: ws per row of wq, xs
 * per row of xq; mode 2: ws per 128x128 block ([ceil(m/128)][ld kb4]), xs per
 * row and 128 columns ([k/128][n]). y BF16 or F32. */
ci_status ci_cuda_gemm_fp8(ci_cuda *c, int mode, const void *wq, const float *ws, const void *xq,
                           const float *xs, int64_t m, int64_t n, int64_t k, ci_dtype ydt,
                           const float *bias, void *y);
/* Whether cuBLASLt has that FP8 GEMM (a plan for it): ci_ok or why not. */
ci_status ci_cuda_gemm_fp8_probe(ci_cuda *c, int mode, int64_t m, int64_t n, int64_t k,
                                 ci_dtype ydt);
/* sums[n][m] = xq . wq^T in int32 through cuBLASLt's INT8 GEMM: wq [m][k]
 * and xq [n][k] INT8 (k a multiple of 16); _probe: whether it has one. */
ci_status ci_cuda_gemm_i8(ci_cuda *c, const void *wq, const void *xq, int64_t m, int64_t n,
                          int64_t k, int32_t *sums);
ci_status ci_cuda_gemm_i8_probe(ci_cuda *c, int64_t m, int64_t n, int64_t k);

/* cuda_comm.c: the collectives over NCCL (one GPU per rank) and the
 * thread_attach op; ci_cuda_comm_free releases what they hold */
ci_status ci_cuda_all_reduce(ci_backend *be, ci_tensor *x);
ci_status ci_cuda_send(ci_backend *be, const ci_tensor *x, int peer);
ci_status ci_cuda_recv(ci_backend *be, ci_tensor *x, int peer);
ci_status ci_cuda_embedding_shard(ci_backend *be, const ci_tensor *table, int64_t row0,
                                  const int32_t *ids, int n, ci_tensor *out);
ci_status ci_cuda_gather_cols(ci_backend *be, const ci_tensor *part, ci_tensor *out, int root);
ci_status ci_cuda_thread_attach(ci_backend *be);
ci_status ci_cuda_comm_ready(ci_backend *be);
void ci_cuda_comm_free(struct ci_cuda *c);

static inline ci_cuda *ci_cuda_of(ci_backend *be) {
    return (ci_cuda *)be->impl;
}
static inline int ci_cu_bf16(ci_dtype t) {
    return t == CI_BF16;
}

#define CI_CU_TRY(call)                                                                            \
    do {                                                                                           \
        cudaError_t ci_cu_e_ = (call);                                                             \
        if (ci_cu_e_ != cudaSuccess) {                                                             \
            (void)cudaGetLastError(); /* a later launch check must not report it again */          \
            return ci_errorf(CI_ERR_BACKEND, "cuda: %s: %s", #call, cudaGetErrorString(ci_cu_e_)); \
        }                                                                                          \
    } while (0)

/* kernel launchers return a cudaError_t as int */
#define CI_CU_LAUNCH(name, call)                                                                   \
    do {                                                                                           \
        int ci_cu_e_ = (call);                                                                     \
        if (ci_cu_e_ != 0)                                                                         \
            return ci_errorf(CI_ERR_BACKEND, "cuda: %s kernel: %s", name,                          \
                             cudaGetErrorString((cudaError_t)ci_cu_e_));                           \
    } while (0)

#define CI_LT_TRY(call)                                                                            \
    do {                                                                                           \
        cublasStatus_t ci_lt_e_ = (call);                                                          \
        if (ci_lt_e_ != CUBLAS_STATUS_SUCCESS)                                                     \
            return ci_errorf(CI_ERR_BACKEND, "cublasLt: %s: status %d", #call, (int)ci_lt_e_);     \
    } while (0)

/* cuda_gemm.c: dense (F32 / BF16) weights only; the op table dispatches CI_QW.
 * acc: y += the product (ci_matmul_fused's accumulate) */
ci_status ci_cuda_matmul(ci_backend *be, const ci_tensor *x, const ci_tensor *w,
                         const ci_tensor *bias, ci_tensor *y, int acc);
void ci_cuda_gemm_plans_free(ci_cuda *c);
/* cuda_qweight.c: quantized weights (CI_QW) */
ci_status ci_cuda_qweight_create(ci_backend *be, const ci_qweight *host, ci_tensor *out);
void ci_cuda_qweight_free(ci_backend *be, ci_tensor *w);
ci_status ci_cuda_qmatmul(ci_backend *be, const ci_tensor *x, const ci_tensor *w,
                          const ci_tensor *bias, ci_tensor *y, int acc);
/* the fused matmul's W8A8 case (n >= CI_QW_ACT_MIN_ROWS, BF16, RMSNorm or
 * SwiGLU prologue, no accumulate or rope): the prologue's kernel writes the
 * FP8 activations itself; _fuses says whether it takes a */
int ci_cuda_qmatmul_fuses(ci_backend *be, const ci_matmul_fused *a);
ci_status ci_cuda_qmatmul_fused(ci_backend *be, const ci_matmul_fused *a);
/* cuda_fused_matmul.c: the fused matmul op (backend.h) */
int ci_cuda_matmul_fused_rows(ci_backend *be);
ci_status ci_cuda_matmul_fused(ci_backend *be, const ci_matmul_fused *a);
int ci_cuda_matmul_rope_rows(ci_backend *be);
int ci_cuda_matmul_swiglu_ok(ci_backend *be, const ci_matmul_fused *a);

ci_status ci_cuda_embedding(ci_backend *be, const ci_tensor *table, const int32_t *ids, int n,
                            ci_tensor *out);
ci_status ci_cuda_rmsnorm(ci_backend *be, ci_tensor *x, ci_tensor *residual, const ci_tensor *w,
                          float eps, ci_tensor *out);
ci_status ci_cuda_qk_norm(ci_backend *be, ci_tensor *qkv, const ci_attn_shape *shape,
                          const ci_tensor *w_q, const ci_tensor *w_k, float eps);
ci_status ci_cuda_rope_cache(ci_backend *be, ci_tensor *qkv, const ci_attn_shape *shape,
                             const ci_rope_table *rope, const ci_batch *batch, ci_kv_cache *kv,
                             int layer);
ci_status ci_cuda_attention(ci_backend *be, const ci_tensor *qkv, const ci_attn_shape *shape,
                            const ci_batch *batch, const ci_kv_cache *kv, int layer, float scale,
                            int window, ci_tensor *out);
ci_status ci_cuda_swiglu(ci_backend *be, const ci_tensor *gate_up, ci_tensor *out);
ci_status ci_cuda_sample(ci_backend *be, const ci_tensor *logits, const ci_sample_row *rows, int n,
                         const ci_logit_adjust *adj, int nadj, const uint32_t *masks, int nmasks,
                         ci_sample_result *out);
ci_status ci_cuda_gather_rows(ci_backend *be, const ci_tensor *x, const int32_t *idx, int n,
                              ci_tensor *out);

#endif
