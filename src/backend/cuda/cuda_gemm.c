/* cuda_gemm.c — y[n][out] = x[n][in] . w[out][in]^T (+ bias) through cuBLASLt.
 *
 * Row-major y is column-major y^T [out][n], so cuBLASLt computes
 * D[m=out][n] = op(A)=w^T-view^T . B=x-view with A = w as column-major
 * [in][out] (transposed), B = x as column-major [in][n]. BF16 mode: A/B BF16,
 * D BF16 (or F32 for the logits), fp32 accumulation (CUBLAS_COMPUTE_32F).
 * F32 mode: everything F32, CUBLAS_COMPUTE_32F (true fp32, no TF32).
 * The bias (F32 on this backend) is the BIAS epilogue; if cuBLASLt offers no
 * algorithm for that combination the plan falls back to a bias kernel.
 * Plans (descriptors, layouts, the heuristic's algorithm) are cached per
 * (m, n, k, types, bias); the workspace is allocated once. Dense weights
 * only: the op table (cuda_backend.c) sends CI_QW weights to cuda_qweight.c,
 * whose prefill path calls back down into this GEMM. ci_cuda_gemm_fp8 is the
 * same GEMM on E4M3 operands with cuBLASLt's scale modes (outer vectors or
 * 128 x 128 / 1 x 128 blocks, CUDA 12.9+ on sm_90), for W8A8 weights;
 * ci_cuda_gemm_i8 the INT8 one (int32 sums, CUBLAS_COMPUTE_32I: cuBLASLt
 * has no per-row scales for it, the caller scales). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_internal.h"

static cudaDataType_t cu_type(ci_dtype t) {
    return t == CI_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static void plan_destroy(ci_cu_gemm_plan *p) {
    if (!p->used) return;
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    memset(p, 0, sizeof *p);
}

void ci_cuda_gemm_plans_free(ci_cuda *c) {
    for (int i = 0; i < CI_CU_GEMM_CACHE; i++)
        plan_destroy(&c->plans[i]);
    c->nplans = 0;
}

/* Algorithm tuning (on by default; CINFER_GEMM_TUNE=0 turns it off): a dense BF16 (or W8A8 FP8)
 * GEMM of at most TUNE_MAX_N rows of x whose plan a decode graph's warm-up makes (c->gemm_tune)
 * times the heuristic's first TUNE_ALGOS algorithms on its own operands and keeps the fastest,
 * instead of the heuristic's first: cuBLASLt's pick for skinny decode GEMMs streams the weights at
 * ~89 % of the copy rate at batch 48; the fastest gave +1.8 % decode tok/s there (H200,
 * docs/benchmarks.md). Eager steps (prefill, mixed) take the heuristic's first (or, opt-in, their
 * token-count bucket's algorithm timed at startup, below): no timing on a new shape mid-serve. The
 * CUDA suites pass with it; on an H100 it gave +1.8 % at batch 48, ITL -3 % serving at 32 req/s,
 * offline +0.2 % (2026-12-05). The pick is by timing, so two processes may pick differently and
 * round differently: CINFER_GEMM_TUNE=0 for bitwise-reproducible runs. */
#define TUNE_MAX_N 512
#define TUNE_ALGOS 8

typedef struct tune_io {
    const void *a, *b, *bias; /* w, x, the bias (or NULL) */
    const float *sa, *sb;     /* FP8: the scales of w and x */
} tune_io;

/* 0 off, 1 on (graph plans), 2: eager plans of <= TUNE_MAX_N rows too (a
 * measurement knob: each new eager shape then syncs to time its picks) */
static int tune_on(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("CINFER_GEMM_TUNE");
        on = !(e && *e == '0') + (e && *e == '2');
    }
    return on;
}

/* Measurement knobs of the tuning (docs/kernels/README.md), each off by default:
 * CINFER_GEMM_TUNE_COLD=1 times each run on a cold L2: a decode step streams
 * every weight from DRAM, but a candidate rerun on one weight finds the small
 * ones (q|k|v 50 MB, o 34 MB on the 8B shape) in L2 from its previous run. Each
 * timed run then follows a read of a buffer twice the L2's size (clean lines,
 * so no write-back lands in the timed window), outside it. Measured flat on an
 * H100 (decode picks and 256-300-token prompt steps alike; docs/benchmarks/
 * gpu-2026-12-06-to-07.md, thirty-fourth session). The buffer is allocated at
 * the first timing; without room for it the runs are timed warm. */
static void *l2_flush(ci_cuda *c, size_t *bytes) {
    static int cold = -1;
    if (cold < 0) cold = ci_cu_env_int("CINFER_GEMM_TUNE_COLD", 0) != 0;
    if (!cold) return NULL;
    if (!c->l2_flush && !c->l2_flush_failed) {
        int l2 = 0;
        if (cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, c->device) != cudaSuccess ||
            l2 <= 0 || cudaMalloc(&c->l2_flush, 2 * (size_t)l2) != cudaSuccess) {
            cudaGetLastError();
            c->l2_flush = NULL;
            c->l2_flush_failed = 1;
        } else {
            c->l2_flush_bytes = 2 * (size_t)l2;
            /* its contents are never used: zeros, so they are defined */
            if (cudaMemsetAsync(c->l2_flush, 0, c->l2_flush_bytes, c->stream) != cudaSuccess)
                cudaGetLastError();
        }
    }
    *bytes = c->l2_flush_bytes;
    return c->l2_flush;
}

/* candidates timed: the heuristic's first TUNE_ALGOS, or CINFER_GEMM_TUNE_ALGOS
 * (1..TUNE_ALGOS_MAX; a measurement knob) */
#define TUNE_ALGOS_MAX 32
static int tune_algos(void) {
    static int n = -1;
    if (n < 0) {
        n = ci_cu_env_int("CINFER_GEMM_TUNE_ALGOS", TUNE_ALGOS);
        if (n < 1) n = 1;
        if (n > TUNE_ALGOS_MAX) n = TUNE_ALGOS_MAX;
    }
    return n;
}

/* CINFER_GEMM_TUNE_SPLITK=1: the candidates that can split K also go in with
 * 2, 3 and 4 splits (partials reduced in the compute type, in the
 * workspace), where cublasLtMatmulAlgoCheck accepts them: at a few hundred
 * rows the 128-row tiles of o and down (96) and q|k|v (144) fill 0.7-1.1
 * waves of 132 SMs. Appended after the heuristic's list, so a memo's index
 * stays valid; each timed plan prints its first and best candidate. Measured
 * flat on an H200 (tools/gpu_gemm_splitk.sh: a 300-token prompt step 8.55 /
 * 8.21 ms cold against the heuristic's 8.18; thirty-fifth session). */
#define TUNE_CANDS_MAX (2 * TUNE_ALGOS_MAX) /* the heuristic's list and its splits */
static int splitk_on(void) {
    static int on = -1;
    if (on < 0) on = ci_cu_env_int("CINFER_GEMM_TUNE_SPLITK", 0) != 0;
    return on;
}

static int add_splitk(ci_cuda *c, const ci_cu_gemm_plan *p, cublasLtMatmulHeuristicResult_t *res,
                      int n) {
    if (!splitk_on()) return n;
    const int base = n;
    for (int i = 0; i < base && n < TUNE_CANDS_MAX; i++) {
        int32_t sup = 0;
        size_t wr = 0;
        uint32_t mask = 0;
        if (cublasLtMatmulAlgoCapGetAttribute(&res[i].algo, CUBLASLT_ALGO_CAP_SPLITK_SUPPORT, &sup,
                                              sizeof sup, &wr) != CUBLAS_STATUS_SUCCESS ||
            !sup)
            continue;
        if (cublasLtMatmulAlgoCapGetAttribute(&res[i].algo, CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK,
                                              &mask, sizeof mask, &wr) != CUBLAS_STATUS_SUCCESS ||
            !(mask & CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE))
            continue;
        for (int32_t k = 2; k <= 4 && n < TUNE_CANDS_MAX; k++) {
            cublasLtMatmulHeuristicResult_t r = res[i];
            uint32_t red = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
            if (cublasLtMatmulAlgoConfigSetAttribute(&r.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &k,
                                                     sizeof k) != CUBLAS_STATUS_SUCCESS ||
                cublasLtMatmulAlgoConfigSetAttribute(&r.algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
                                                     &red, sizeof red) != CUBLAS_STATUS_SUCCESS)
                continue;
            if (cublasLtMatmulAlgoCheck(c->lt, p->desc, p->la, p->lb, p->lc, p->lc, &r.algo, &r) !=
                    CUBLAS_STATUS_SUCCESS ||
                r.workspaceSize > CI_CU_GEMM_WORKSPACE)
                continue;
            res[n++] = r;
        }
    }
    if (n > base)
        fprintf(stderr, "cuda: gemm %lldx%lldx%lld: %d split-K candidates beside %d\n",
                (long long)p->n, (long long)p->m, (long long)p->k, n - base, base);
    return n;
}

#define TUNE_RUNS 3 /* timed runs a candidate, after one untimed */

/* The fastest of res[0..n) on t's operands (TUNE_RUNS timed runs each after
 * one untimed, on a cold L2 with CINFER_GEMM_TUNE_COLD; D in a scratch of its
 * own): its index, 0 when timing fails. */
static int tune_pick(ci_cuda *c, ci_cu_gemm_plan *p, const cublasLtMatmulHeuristicResult_t *res,
                     int n, const tune_io *t, int with_bias) {
    const size_t dbytes = (size_t)(p->m * p->n) * (p->cd == CUDA_R_16BF ? 2 : 4);
    const float one = 1.0f, zero = 0.0f;
    void *d = NULL;
    cudaEvent_t ev[2 * TUNE_RUNS] = {0};
    int best = 0, have = 0;
    float best_ms = 0.0f, first_ms = 0.0f;
    size_t fbytes = 0;
    void *flush = NULL;
    if (dbytes > ((size_t)256 << 20)) return 0;
    if (cudaMalloc(&d, dbytes) != cudaSuccess) { /* no room (the KV cache has it): untimed */
        cudaGetLastError();
        return 0;
    }
    for (int i = 0; i < 2 * TUNE_RUNS; i++)
        if (cudaEventCreate(&ev[i]) != cudaSuccess) goto done;
    flush = l2_flush(c, &fbytes);
    if (with_bias && t->bias)
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &t->bias,
                                       sizeof t->bias);
    if (p->fp8) {
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &t->sa,
                                       sizeof t->sa);
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &t->sb,
                                       sizeof t->sb);
    }
    for (int i = 0; i < n; i++) {
        cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
        for (int r = 0; r <= TUNE_RUNS && st == CUBLAS_STATUS_SUCCESS; r++) {
            if (flush && ci_cu_l2_evict(c->stream, flush, (int64_t)fbytes, c->num_sms)) break;
            if (r > 0) cudaEventRecord(ev[2 * (r - 1)], c->stream);
            st = cublasLtMatmul(c->lt, p->desc, &one, t->a, p->la, t->b, p->lb, &zero, d, p->lc, d,
                                p->lc, &res[i].algo, c->workspace, CI_CU_GEMM_WORKSPACE, c->stream);
            if (r > 0) cudaEventRecord(ev[2 * (r - 1) + 1], c->stream);
        }
        if (cudaEventSynchronize(ev[2 * TUNE_RUNS - 1]) != cudaSuccess) break;
        float ms = 0.0f, part = 0.0f;
        int ok = st == CUBLAS_STATUS_SUCCESS;
        for (int r = 0; ok && r < TUNE_RUNS; r++) {
            ok = cudaEventElapsedTime(&part, ev[2 * r], ev[2 * r + 1]) == cudaSuccess;
            ms += part;
        }
        if (ok && i == 0) first_ms = ms;
        if (ok && (!have || ms < best_ms)) {
            best = i;
            best_ms = ms;
            have = 1;
        }
    }
    if (have && splitk_on())
        fprintf(stderr, "cuda: gemm %lldx%lldx%lld: first %.1f us, best #%d of %d %.1f us\n",
                (long long)p->n, (long long)p->m, (long long)p->k, first_ms * 1e3 / TUNE_RUNS, best,
                n, best_ms * 1e3 / TUNE_RUNS);
done:
    cudaGetLastError(); /* a failed candidate leaves no sticky error behind */
    for (int i = 0; i < 2 * TUNE_RUNS; i++)
        if (ev[i]) cudaEventDestroy(ev[i]);
    cudaFree(d);
    return best;
}

/* The tuned picks of this process, by shape and types: every backend (a
 * second engine, another rank) takes the first one's pick instead of
 * timing again, so two backends of one process compute the same bits. */
#define TUNE_MEMO 512

/* what a memo entry is keyed by: a plan's shape and types, its token count
 * n exact (the picks) or rounded up to its bucket (the eager buckets) */
typedef struct memo_key {
    int64_t m, n, k;
    int ab, cd, bias, fp8;
} memo_key;

static memo_key key_of(const ci_cu_gemm_plan *p, int64_t n, int bias) {
    return (memo_key){p->m, n, p->k, (int)p->ab, (int)p->cd, bias, p->fp8};
}

static int key_eq(const memo_key *a, const memo_key *b) {
    return a->m == b->m && a->n == b->n && a->k == b->k && a->ab == b->ab && a->cd == b->cd &&
           a->bias == b->bias && a->fp8 == b->fp8;
}

static struct tune_memo {
    memo_key key;
    int pick;
} g_memo[TUNE_MEMO];
static int g_nmemo;
static pthread_mutex_t g_memo_mu = PTHREAD_MUTEX_INITIALIZER;

static int memo_find(const ci_cu_gemm_plan *p, int bias) {
    const memo_key key = key_of(p, p->n, bias);
    for (int i = 0; i < g_nmemo; i++)
        if (key_eq(&g_memo[i].key, &key)) return g_memo[i].pick;
    return -1;
}

/* the pick for p among res[0..n): the memo's, else timed (and remembered) */
static int tune_choose(ci_cuda *c, ci_cu_gemm_plan *p, const cublasLtMatmulHeuristicResult_t *res,
                       int n, const tune_io *t, int with_bias) {
    pthread_mutex_lock(&g_memo_mu);
    int pick = memo_find(p, with_bias);
    if (pick < 0 || pick >= n) {
        pick = tune_pick(c, p, res, n, t, with_bias);
        if (g_nmemo < TUNE_MEMO)
            g_memo[g_nmemo++] = (struct tune_memo){key_of(p, p->n, with_bias), pick};
    }
    pthread_mutex_unlock(&g_memo_mu);
    return pick;
}

/* Eager steps' token counts change step to step (a prompt beside the
 * decodes), so each brings new GEMM shapes, and the heuristic's first pick
 * at such counts was 3-45 % slower than the fastest of 8 on an H100 (the
 * 8B layer GEMMs at 256-512 rows: gate|up at 448 rows 294.7 us against
 * 156.8 timed, while 512 rows took 143.4; docs/benchmarks.md). Eager plans
 * of <= TUNE_MAX_N rows therefore take the algorithm timed for their bucket
 * (rows rounded up to BUCKET_ROWS), which the runner's startup forwards at
 * each bucket's top count time (tune_gemms -> gemm_tune_eager); a bucket
 * without one keeps the heuristic's first. A new count then costs a
 * descriptor and an algorithm check, not a heuristic query. */
#define BUCKET_ROWS 32
static struct bucket_memo {
    memo_key key; /* n: the bucket's top count */
    cublasLtMatmulAlgo_t algo;
} g_bmemo[TUNE_MEMO];
static int g_nbmemo;

/* CINFER_GEMM_BUCKETS=1 turns the buckets on; off by default: correct, but
 * on an H100 a 300-token prefill step took 6 % longer with them and a
 * 448-token one 1 % (docs/benchmarks.md, thirty-third session); off, eager
 * plans take the heuristic's first */
int ci_cuda_gemm_buckets_on(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("CINFER_GEMM_BUCKETS");
        on = e && *e == '1';
    }
    return on;
}

static int64_t bucket_of(int64_t n) {
    return (n + BUCKET_ROWS - 1) / BUCKET_ROWS * BUCKET_ROWS;
}

/* (under g_memo_mu) the bucket's entry of p, or NULL */
static struct bucket_memo *bmemo_find(const ci_cu_gemm_plan *p, int bias) {
    const memo_key key = key_of(p, bucket_of(p->n), bias);
    for (int i = 0; i < g_nbmemo; i++)
        if (key_eq(&g_bmemo[i].key, &key)) return &g_bmemo[i];
    return NULL;
}

/* p's bucket's timed algorithm into p->algo when it runs p's shape; 0: none */
static int bmemo_take(ci_cuda *c, ci_cu_gemm_plan *p, int bias) {
    pthread_mutex_lock(&g_memo_mu);
    const struct bucket_memo *e = bmemo_find(p, bias);
    cublasLtMatmulAlgo_t a = {{0}};
    if (e) a = e->algo;
    pthread_mutex_unlock(&g_memo_mu);
    if (!e) return 0;
    cublasLtMatmulHeuristicResult_t chk;
    if (cublasLtMatmulAlgoCheck(c->lt, p->desc, p->la, p->lb, p->lc, p->lc, &a, &chk) !=
            CUBLAS_STATUS_SUCCESS ||
        chk.workspaceSize > CI_CU_GEMM_WORKSPACE)
        return 0;
    p->algo = a;
    return 1;
}

/* the timed algorithm of p (made at its bucket's top count, or the first
 * count of the bucket timed) as its bucket's */
static void bmemo_put(const ci_cu_gemm_plan *p, int bias) {
    pthread_mutex_lock(&g_memo_mu);
    struct bucket_memo *e = bmemo_find(p, bias);
    if (!e && g_nbmemo < TUNE_MEMO) e = &g_bmemo[g_nbmemo++];
    if (e && (e->key.m == 0 || p->n == bucket_of(p->n)))
        *e = (struct bucket_memo){key_of(p, bucket_of(p->n), bias), p->algo};
    pthread_mutex_unlock(&g_memo_mu);
}

/* Descriptor and layouts; with_bias picks the epilogue. Returns whether the
 * heuristic found an algorithm in *found (t: the fastest of several).
 * bucket (an eager plan of <= TUNE_MAX_N rows): its bucket's timed
 * algorithm where there is one; with t, the timed pick becomes it. */
static ci_status plan_build(ci_cuda *c, ci_cu_gemm_plan *p, int with_bias, int *found,
                            const tune_io *t, int bucket) {
    *found = 0;
    const int i8 = p->ab == CUDA_R_8I; /* exact int32 sums, int32 alpha / beta */
    CI_LT_TRY(cublasLtMatmulDescCreate(&p->desc, i8 ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F,
                                       i8 ? CUDA_R_32I : CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CI_LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CI_LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (p->fp8) {
        /* mode 3 (scalar scales) only probes why a vector mode failed */
        int32_t am = p->fp8 == 1   ? CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F
                     : p->fp8 == 2 ? CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F
                                   : CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F;
        int32_t bm = p->fp8 == 1   ? CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F
                     : p->fp8 == 2 ? CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F
                                   : CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F;
        CI_LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &am,
                                                 sizeof am));
        CI_LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &bm,
                                                 sizeof bm));
        /* vector scale modes want scale pointers when the heuristic runs:
         * any device address here, the call sets the real ones */
        const void *any = c->workspace;
        CI_LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                 &any, sizeof any));
        CI_LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                 &any, sizeof any));
    }
    if (with_bias) {
        cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = CUDA_R_32F;
        CI_LT_TRY(
            cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
        CI_LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                                 sizeof bt));
    }
    CI_LT_TRY(cublasLtMatrixLayoutCreate(&p->la, p->ab, (uint64_t)p->k, (uint64_t)p->m, p->k));
    CI_LT_TRY(cublasLtMatrixLayoutCreate(&p->lb, p->ab, (uint64_t)p->k, (uint64_t)p->n, p->k));
    CI_LT_TRY(cublasLtMatrixLayoutCreate(&p->lc, p->cd, (uint64_t)p->m, (uint64_t)p->n, p->m));
    if (bucket && !t && bmemo_take(c, p, with_bias)) {
        c->bucket_plans++;
        *found = 1;
        return ci_ok();
    }
    cublasLtMatmulPreference_t pref;
    CI_LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = CI_CU_GEMM_WORKSPACE;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    cublasLtMatmulHeuristicResult_t res[TUNE_CANDS_MAX];
    int nres = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->la, p->lb, p->lc, p->lc, pref,
                                            t ? tune_algos() : 1, res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    if (t && st == CUBLAS_STATUS_SUCCESS && nres > 0) nres = add_splitk(c, p, res, nres);
    if (st == CUBLAS_STATUS_SUCCESS && nres > 0) {
        p->algo = res[nres > 1 ? tune_choose(c, p, res, nres, t, with_bias) : 0].algo;
        if (bucket && t) bmemo_put(p, with_bias);
        *found = 1;
        return ci_ok();
    }
    /* with the bias epilogue, any refusal (BF16 output with an F32 bias is
     * CUBLAS_STATUS_INVALID_VALUE in cuBLASLt 13.0) means: try without */
    if (with_bias) return ci_ok();
    if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED)
        return ci_errorf(CI_ERR_BACKEND,
                         "cublasLt: cublasLtMatmulAlgoGetHeuristic: status %d (%lldx%lldx%lld, "
                         "types %d -> %d, fp8 scales %d)",
                         (int)st, (long long)p->m, (long long)p->n, (long long)p->k, (int)p->ab,
                         (int)p->cd, p->fp8);
    return ci_ok();
}

static unsigned plan_hash(int64_t m, int64_t n, int64_t k, int ab, int cd, int bias, int fp8) {
    uint64_t h = (uint64_t)m * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t)n * 0xC2B2AE3D27D4EB4Full + (h << 6);
    h ^= (uint64_t)k * 0x165667B19E3779F9ull + (h >> 7);
    h ^= (uint64_t)(ab * 7 + cd * 3 + bias + fp8 * 1031) * 0x27D4EB2F165667C5ull;
    return (unsigned)(h ^ (h >> 29)) & (CI_CU_GEMM_CACHE - 1);
}

/* Plans live in an open-addressed table keyed by shape and types: a
 * forward looks up the same few shapes 32 times per layer stack, and eager
 * steps bring new token counts; a full table (3/4) starts over. */
static ci_status plan_get(ci_cuda *c, int64_t m, int64_t n, int64_t k, cudaDataType_t ab,
                          cudaDataType_t cd, int bias, int fp8, const tune_io *t, int bucket,
                          ci_cu_gemm_plan **out) {
    unsigned i = plan_hash(m, n, k, (int)ab, (int)cd, bias, fp8);
    for (;; i = (i + 1) & (CI_CU_GEMM_CACHE - 1)) {
        ci_cu_gemm_plan *p = &c->plans[i];
        if (!p->used) break;
        if (p->m == m && p->n == n && p->k == k && p->ab == ab && p->cd == cd && p->bias == bias &&
            p->fp8 == fp8) {
            *out = p;
            return ci_ok();
        }
    }
    if (c->nplans >= CI_CU_GEMM_CACHE * 3 / 4) {
        ci_cuda_gemm_plans_free(c);
        i = plan_hash(m, n, k, (int)ab, (int)cd, bias, fp8);
    }
    ci_cu_gemm_plan *p = &c->plans[i];
    const ci_cu_gemm_plan key = {
        .used = 1, .m = m, .n = n, .k = k, .ab = ab, .cd = cd, .bias = bias, .fp8 = fp8};
    *p = key;
    int found = 0;
    if (t) { /* not while a graph is captured: the timing synchronizes */
        enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        if (cudaStreamIsCapturing(c->stream, &cs) != cudaSuccess ||
            cs != cudaStreamCaptureStatusNone)
            t = NULL;
    }
    ci_status s = plan_build(c, p, bias, &found, t, bucket);
    if (s.code == CI_OK && !found && bias) {
        /* no algorithm with the bias epilogue: plain GEMM + bias kernel */
        plan_destroy(p);
        *p = key;
        s = plan_build(c, p, 0, &found, t, bucket);
    } else if (s.code == CI_OK && found) {
        p->bias_ok = bias;
    }
    if (s.code == CI_OK && !found)
        s = ci_errorf(CI_ERR_UNSUPPORTED, "cublasLt: no algorithm for %lldx%lldx%lld", (long long)m,
                      (long long)n, (long long)k);
    if (s.code != CI_OK) {
        plan_destroy(p);
        return s;
    }
    c->nplans++;
    *out = p;
    return ci_ok();
}

ci_status ci_cuda_matmul(ci_backend *be, const ci_tensor *x, const ci_tensor *w,
                         const ci_tensor *bias, ci_tensor *y, int acc) {
    ci_cuda *c = ci_cuda_of(be);
    if (x->cols != w->cols || y->cols != w->rows || y->rows < x->rows)
        return ci_errorf(CI_ERR_INVALID,
                         "cuda matmul: shapes x[%lld][%lld] w[%lld][%lld] y[%lld][%lld]",
                         (long long)x->rows, (long long)x->cols, (long long)w->rows,
                         (long long)w->cols, (long long)y->rows, (long long)y->cols);
    if (x->dtype != w->dtype || (x->dtype != CI_F32 && x->dtype != CI_BF16) ||
        (y->dtype != CI_F32 && y->dtype != CI_BF16) || (x->dtype == CI_F32 && y->dtype != CI_F32))
        return ci_errorf(CI_ERR_UNSUPPORTED, "cuda matmul: x %s, w %s, y %s",
                         ci_dtype_name(x->dtype), ci_dtype_name(w->dtype), ci_dtype_name(y->dtype));
    const void *b = bias && bias->data ? bias->data : NULL;
    if (b && (bias->rows * bias->cols != w->rows || bias->dtype != CI_F32))
        return ci_errorf(CI_ERR_INVALID, "cuda matmul: bias [%lld] %s, want [%lld] F32",
                         (long long)(bias->rows * bias->cols), ci_dtype_name(bias->dtype),
                         (long long)w->rows);
    if (x->rows == 0) return ci_ok();
    /* decode at batch <= 4: a weight-streaming GEMV beats cuBLASLt's
     * small-n kernels (cuda_gemv.cu) */
    if (x->dtype == CI_BF16 && w->rows <= INT32_MAX && ci_cu_gemv_ok((int)x->rows, x->cols) &&
        c->use_gemv) {
        const ci_cu_fuse f = {.acc = acc};
        CI_CU_LAUNCH("gemv", ci_cu_gemv((ci_cu_stream)c->stream, y->dtype == CI_F32, w->data,
                                        x->data, (int)x->rows, (int)x->cols, (int)w->rows, b,
                                        y->data, c->num_sms, &f));
        return ci_ok();
    }
    /* decode batches up to c->skinny_max rows: the skinny GEMM streams the
     * weight at the bandwidth roof (cuda_gemm_skinny.cu); it declines shapes
     * it cannot take (cuBLASLt then) */
    if (x->dtype == CI_BF16 && x->rows <= c->skinny_max &&
        ci_cu_skinny_ok((int)x->rows, x->cols, w->rows)) {
        const int e =
            ci_cu_skinny_gemm((ci_cu_stream)c->stream, y->dtype == CI_F32, w->data, x->data,
                              (int)x->rows, (int)x->cols, (int)w->rows, b, y->data, acc,
                              c->skinny_rows, c->num_sms, (float *)c->workspace, c->skinny_cnt);
        if (e != cudaErrorNotSupported) {
            CI_CU_LAUNCH("skinny gemm", e);
            c->skinny_calls++;
            return ci_ok();
        }
        (void)cudaGetLastError();
    }
    ci_cu_gemm_plan *p;
    const tune_io tio = {w->data, x->data, b, NULL, NULL};
    const int fits = tune_on() && x->dtype == CI_BF16 && x->rows <= TUNE_MAX_N;
    const int tune = fits && (c->gemm_tune || c->gemm_tune_eager || tune_on() == 2);
    CI_TRY(plan_get(c, w->rows, x->rows, x->cols, cu_type(x->dtype), cu_type(y->dtype), b != NULL,
                    0, tune ? &tio : NULL, fits && !c->gemm_tune && ci_cuda_gemm_buckets_on(), &p));
    if (b && p->bias_ok)
        CI_LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b,
                                                 sizeof b));
    /* acc: beta = 1 with C = D = y (in place; BF16 then rounds once, not
     * twice as the GEMV's ci_st_out does) */
    const float one = 1.0f, beta = acc ? 1.0f : 0.0f;
    CI_CU_LAUNCH("timeline mark", ci_cu_tl_gemm(c->stream, w->rows));
    CI_LT_TRY(cublasLtMatmul(c->lt, p->desc, &one, w->data, p->la, x->data, p->lb, &beta, y->data,
                             p->lc, y->data, p->lc, &p->algo, c->workspace, CI_CU_GEMM_WORKSPACE,
                             c->stream));
    if (b && !p->bias_ok)
        CI_CU_LAUNCH("add_bias", ci_cu_add_bias((ci_cu_stream)c->stream, ci_cu_bf16(y->dtype),
                                                y->data, x->rows, w->rows, b));
    return ci_ok();
}

ci_status ci_cuda_gemm_fp8(ci_cuda *c, int mode, const void *wq, const float *ws, const void *xq,
                           const float *xs, int64_t m, int64_t n, int64_t k, ci_dtype ydt,
                           const float *bias, void *y) {
    ci_cu_gemm_plan *p;
    const tune_io tio = {wq, xq, bias, ws, xs};
    const int fits = tune_on() && n <= TUNE_MAX_N;
    const int tune = fits && (c->gemm_tune || c->gemm_tune_eager || tune_on() == 2);
    CI_TRY(plan_get(c, m, n, k, CUDA_R_8F_E4M3, cu_type(ydt), bias != NULL, mode,
                    tune ? &tio : NULL, fits && !c->gemm_tune && ci_cuda_gemm_buckets_on(), &p));
    CI_LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ws,
                                             sizeof ws));
    CI_LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xs,
                                             sizeof xs));
    if (bias && p->bias_ok)
        CI_LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                 sizeof bias));
    const float one = 1.0f, zero = 0.0f;
    CI_CU_LAUNCH("timeline mark", ci_cu_tl_gemm(c->stream, m));
    CI_LT_TRY(cublasLtMatmul(c->lt, p->desc, &one, wq, p->la, xq, p->lb, &zero, y, p->lc, y, p->lc,
                             &p->algo, c->workspace, CI_CU_GEMM_WORKSPACE, c->stream));
    if (bias && !p->bias_ok)
        CI_CU_LAUNCH("add_bias",
                     ci_cu_add_bias((ci_cu_stream)c->stream, ci_cu_bf16(ydt), y, n, m, bias));
    return ci_ok();
}

ci_status ci_cuda_gemm_i8(ci_cuda *c, const void *wq, const void *xq, int64_t m, int64_t n,
                          int64_t k, int32_t *sums) {
    ci_cu_gemm_plan *p;
    CI_TRY(plan_get(c, m, n, k, CUDA_R_8I, CUDA_R_32I, 0, 0, NULL, 0, &p));
    const int32_t one = 1, zero = 0;
    CI_CU_LAUNCH("timeline mark", ci_cu_tl_gemm(c->stream, m));
    CI_LT_TRY(cublasLtMatmul(c->lt, p->desc, &one, wq, p->la, xq, p->lb, &zero, sums, p->lc, sums,
                             p->lc, &p->algo, c->workspace, CI_CU_GEMM_WORKSPACE, c->stream));
    return ci_ok();
}

ci_status ci_cuda_gemm_i8_probe(ci_cuda *c, int64_t m, int64_t n, int64_t k) {
    ci_cu_gemm_plan *p;
    return plan_get(c, m, n, k, CUDA_R_8I, CUDA_R_32I, 0, 0, NULL, 0, &p);
}

ci_status ci_cuda_gemm_fp8_probe(ci_cuda *c, int mode, int64_t m, int64_t n, int64_t k,
                                 ci_dtype ydt) {
    ci_cu_gemm_plan *p;
    ci_status s = plan_get(c, m, n, k, CUDA_R_8F_E4M3, cu_type(ydt), 0, mode, NULL, 0, &p);
    if (s.code == CI_OK) return s;
    ci_status t = plan_get(c, m, n, k, CUDA_R_8F_E4M3, cu_type(ydt), 0, 3, NULL, 0, &p);
    return ci_errorf(s.code, "%s; with scalar scales: %s", s.msg,
                     t.code == CI_OK ? "available" : t.msg);
}

long long ci_cuda_bucket_plans(const ci_backend *be) {
    return ci_cuda_of((ci_backend *)be)->bucket_plans;
}

long long ci_cuda_skinny_calls(const ci_backend *be) {
    return ci_cuda_of((ci_backend *)be)->skinny_calls;
}

int ci_cuda_skinny_on(const ci_backend *be) {
    return ci_cuda_of((ci_backend *)be)->skinny_max > 0;
}
