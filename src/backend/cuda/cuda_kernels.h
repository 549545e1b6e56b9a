/* cuda_kernels.h — launchers of the CUDA kernels (the .cu files here),
 * callable from C. Each takes raw device pointers, enqueues on `stream` and
 * returns the launch's cudaError_t (as int, so this header needs no CUDA
 * headers). `bf16` selects the activation type: 1 = BF16, 0 = F32. Weight
 * vectors (norm weights, biases) are always F32 on this backend. */
#ifndef CINFER_BACKEND_CUDA_KERNELS_H
#define CINFER_BACKEND_CUDA_KERNELS_H

#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *ci_cu_stream;

/* (host) an A/B switch's value: the environment variable's integer, def
 * when it is unset or empty (the kernels' launchers and cuda_gemm.c) */
static inline int ci_cu_env_int(const char *name, int def) {
    const char *e = getenv(name);
    return e && *e ? atoi(e) : def;
}

/* Programmatic dependent launch of every kernel here (pdl.cuh): on (1) or
 * off (0, the default). Set once, before any launch or capture. */
void ci_cu_set_pdl(int on);

/* out[i] = rows[idx[i]] for n rows of row_bytes; idx outside [0, nrows)
 * gives a zero row (the host checks ids first). */
int ci_cu_gather_rows(ci_cu_stream st, const void *rows, int64_t nrows, int64_t row_bytes,
                      const int32_t *idx, int n, void *out);
/* the same for idx - row0: rows outside [0, nrows) give zeros (a vocabulary
 * share of the embedding, tensor parallelism) */
int ci_cu_gather_rows_from(ci_cu_stream st, const void *rows, int64_t row0, int64_t nrows,
                           int64_t row_bytes, const int32_t *idx, int n, void *out);

/* Reads bytes of buf (a multiple of 16) and writes nothing: evicts the L2
 * with clean lines before a timed run (GEMM algorithm tuning) */
int ci_cu_l2_evict(ci_cu_stream st, const void *buf, int64_t bytes, int num_sms);

/* out[r][c] = x[r][perm[c]] for r < n, c < K (act-order activations) */
int ci_cu_gather_cols(ci_cu_stream st, int bf16, const void *x, int n, int K, const int32_t *perm,
                      void *out);

/* out[r][i] = silu(gu[r][i]) * gu[r][inter + i] */
int ci_cu_swiglu(ci_cu_stream st, int bf16, const void *gu, int64_t rows, int64_t inter, void *out);

/* y[r][j] = sx[r] sw[j] acc[r][j] (+ bias[j]): the INT8 GEMM's int32 sums
 * scaled (cols % 4 == 0, acc 16-byte aligned) */
int ci_cu_i8_scale(ci_cu_stream st, int bf16, const int32_t *acc, int64_t rows, int cols,
                   const float *sx, const float *sw, const float *bias, void *y);

/* y[r][j] += bias[j] */
int ci_cu_add_bias(ci_cu_stream st, int bf16, void *y, int64_t rows, int64_t cols,
                   const float *bias);

/* res (optional): res += x; out = rmsnorm(res or x) * w. out may alias x. */
/* the vectors a thread of the BF16 RMSNorm kernel for rows of n (0: that
 * kernel does not take them; another one runs) */
int ci_cu_rmsnorm_vpt(int64_t n, const float *w);
int ci_cu_rmsnorm(ci_cu_stream st, int bf16, const void *x, void *res, const float *w, int64_t rows,
                  int64_t n, float eps, void *out);

/* Qwen3 q/k-norm over each head_dim slice of q and k, in place. */
int ci_cu_qk_norm(ci_cu_stream st, int bf16, void *qkv, int T, int H, int KV, int hd,
                  const float *wq, const float *wk, float eps);

/* RoPE of q and k from the cos/sin table, then K/V into the paged cache.
 * kv_fp8: the cache is E4M3 and stores e4m3(x / scale). The attention
 * launchers below take the same (kv_fp8, k_scale, v_scale) and read
 * e4m3 * scale. */
int ci_cu_rope_cache(ci_cu_stream st, int bf16, void *qkv, int T, int H, int KV, int hd,
                     const float *cos_sin, int rot, int neox, const int32_t *positions,
                     const int32_t *slots, void *kc, void *vc, int block_size, int kv_fp8,
                     float k_scale, float v_scale);

/* Paged causal GQA attention; see cuda_attention.cu. window > 0: sliding
 * window, position p sees keys p - window + 1 .. p (0: none). max_ctx (a hint: the
 * batch's max_context_len, may be 0) and num_sms pick the split-K factor;
 * ws (ws_floats f32, may be NULL = no split) holds the split partials and
 * is followed by CI_CU_ATT_CNT unsigned counters, zero at rest (the decode
 * kernel's split merge counts on them and leaves them zero).
 * max_query_len == 1 (pure decode): the launch depends only on the shape and
 * max_blocks_per_seq * block_size, not on max_ctx (CUDA-graph capturable).
 * max_query_len > 1 (exact: the most new tokens of any sequence) sizes the grid
 * of the tensor-core prefill kernel; its first num_decode sequences (each
 * of one token) then go to the decode kernel. */
#define CI_CU_ATT_CNT 65536
int ci_cu_attention(ci_cu_stream st, int bf16, const void *qkv, int T, int S, int H, int KV, int hd,
                    const int32_t *positions, const int32_t *query_start,
                    const int32_t *context_lens, const int32_t *block_tables,
                    int max_blocks_per_seq, const void *kc, const void *vc, int block_size,
                    float scale, int window, void *out, int max_ctx, int max_query_len,
                    int num_decode, int num_sms, float *ws, int64_t ws_floats, int kv_fp8,
                    float k_scale, float v_scale, int num_blocks);
/* Tensor-core flash-decoding for one query token per sequence; see
 * cuda_decode_attention.cu. _ok says whether it takes the shape. */
int ci_cu_decode_attention_ok(int bf16, int H, int KV, int hd);
int ci_cu_decode_attention(ci_cu_stream st, const void *qkv, int S, int H, int KV, int hd,
                           const int32_t *positions, const int32_t *query_start,
                           const int32_t *context_lens, const int32_t *block_tables,
                           int max_blocks_per_seq, const void *kc, const void *vc, int block_size,
                           float scale, int window, void *out, int num_sms, float *ws,
                           int64_t ws_floats, int kv_fp8, float k_scale, float v_scale);

/* Tensor-core (FlashAttention-2 style) paged causal GQA prefill, BF16,
 * head_dim 64 or 128; see cuda_prefill_attention.cuh. Same inputs as
 * ci_cu_attention; max_query_len must be >= every sequence's new tokens;
 * ntok (the rows of qkv) and num_blocks (the cache's) bound the TMA
 * kernel's tensor maps. */
int ci_cu_prefill_attention(ci_cu_stream st, const void *qkv, int ntok, int S, int H, int KV,
                            int hd, const int32_t *positions, const int32_t *query_start,
                            const int32_t *context_lens, const int32_t *block_tables,
                            int max_blocks_per_seq, const void *kc, const void *vc, int block_size,
                            float scale, int window, void *out, int max_query_len, int kv_fp8,
                            float k_scale, float v_scale, int num_blocks);
/* Largest G * head_dim the attention kernel takes. */
#define CI_CU_ATT_MAX_GHD 2048
#define CI_CU_ATT_MAX_HD 256

/* The sample op (cuda_sampling.cu): rows (ci_sample_row[n]), adj
 * (ci_logit_adjust[]) and owners (int32[nowners]: the first row of each
 * logits row that has adjustments) in device memory; saved: one float per
 * adjustment entry (scratch); out: ci_sample_result[n]. logits [..][V] F32
 * is adjusted in place and restored before this returns to the stream.
 * masks: bitmask rows ((V + 31) / 32 words each, device) named by the
 * rows' mask_row, or NULL when no row has one.
 * fast = 0 turns off the approximate top-p probe (same results, slower). */
int ci_cu_sample(ci_cu_stream st, float *logits, int V, const void *rows, int n, const void *adj,
                 float *saved, const int32_t *owners, int nowners, const uint32_t *masks,
                 int any_logprobs, int fast, void *out);
/* ids[t] = res[src[t]].token where 0 <= src[t] < nres (res: ci_sample_result[nres] of a
 * sample op, device): plan-ahead scheduling's input ids, t < T. */
int ci_cu_take_samples(ci_cu_stream st, const void *res, int nres, const int32_t *src, int T,
                       int32_t *ids);

/* The qkv GEMV's rope epilogue (a decode step's rope_cache, fused): the
 * rows of y are H q, KV k and KV v heads of hd; q and k heads are rotated
 * (full rotary, neox pairs (i, i + hd/2) or GPT-J pairs (2i, 2i + 1)) from
 * the products rounded to BF16, with rope_cache_kernel's arithmetic, and
 * token n's k and v rows also go to the cache at slots[n] (skipped when
 * < 0; BF16, or E4M3 of value / scale with kv_fp8). cos_sin: [pos][hd] F32;
 * positions and slots: one per row of x (device). on = 0: no epilogue. */
typedef struct ci_cu_rope_epi {
    int on, H, KV, hd, neox, bs, kv_fp8;
    float kscale, vscale;
    const float *cos_sin;
    const int32_t *positions, *slots;
    void *kc, *vc;
} ci_cu_rope_epi;

/* What a GEMV does around its product (backend.h's ci_matmul_fused): a
 * prologue on x (pro: CI_CU_PRO_*; RMSNORM with norm_w [in] F32 and eps;
 * SWIGLU: x rows of 2 in), acc: y = round(round(product) + y), and the
 * rope epilogue. A NULL ci_cu_fuse is none of these. */
enum { CI_CU_PRO_NONE = 0, CI_CU_PRO_RMSNORM = 1, CI_CU_PRO_SWIGLU = 2 };
/* The 8-bit tensor-core GEMV's deferred RMSNorm (ci_cu_qgemv_pro only): the
 * CTA stages x * norm_w and sums x^2 as it goes, and the norm's 1 / rms
 * scales the products' sums: no reduction before the first product, the
 * values within rounding of the standalone norm's (not bit for bit) */
enum { CI_CU_PRO_RMSNORM_DEFER = 3 };
typedef struct ci_cu_fuse {
    int pro;
    const float *norm_w;
    float eps;
    int acc;
    ci_cu_rope_epi rope;
} ci_cu_fuse;

/* Small-batch GEMV (n <= 2: at n = 4 cuBLASLt is as fast), BF16: y[n][out] = x[n][in] .
 * W[out][in]^T (+ bias, F32), y BF16 or F32 (f32_out). Usable when ci_cu_gemv_ok(n, in).
 * Every prologue of f is fused (x is staged per CTA anyway). */
#define CI_CU_GEMV_MAX_N 2
int ci_cu_gemv_ok(int n, int64_t in);
/* ... and with f (NULL: none) for x: the alignments its staging needs, and
 * for the rope epilogue (no acc, BF16 y): out = (H + 2 KV) hd, hd % 16 == 0 */
int ci_cu_gemv_fuse_ok(int n, int64_t in, int64_t out, const void *x, const ci_cu_fuse *f);
int ci_cu_gemv(ci_cu_stream st, int f32_out, const void *W, const void *x, int n, int in, int out,
               const float *bias, void *y, int num_sms, const ci_cu_fuse *f);

/* The BF16 GEMM of decode batches (cuda_gemm_skinny.cu; Hopper TMA + wgmma,
 * sm_90a only): y[n][M] = x[n][K] . W[M][K]^T (+ bias F32) (acc: y +=), y BF16
 * or F32, for 1 <= n <= CI_CU_SKINNY_MAX_N. part: 2 x num_sms x 128 x 128
 * floats of scratch (CI_CU_SKINNY_PART_FLOATS per SM); counters:
 * CI_CU_SKINNY_MAX_TILES unsigned, zero at rest. cudaErrorNotSupported when
 * the shape, alignment or driver does not allow it (use cuBLASLt). tile_rows:
 * 128, or 256 (up to 64 tokens; else 128). */
#define CI_CU_SKINNY_MAX_N 128
#define CI_CU_SKINNY_MAX_TILES 8192
#define CI_CU_SKINNY_PART_FLOATS (2 * 128 * 128)
int ci_cu_skinny_ok(int n, int64_t K, int64_t M);
/* ... and the W8A8 E4M3 product: y = (Wq . xq^T) x ws[row] x xs[tok] (+ bias),
 * per-row weight scales, per-token x scales (ci_cu_qact's), K % 16 == 0 */
int ci_cu_skinny_gemm_e4m3(ci_cu_stream st, int f32_out, const void *Wq, const float *ws,
                           const void *xq, const float *xs, int n, int K, int M, const float *bias,
                           void *y, int tile_rows, int num_sms, float *part, unsigned *counters);
int ci_cu_skinny_gemm(ci_cu_stream st, int f32_out, const void *W, const void *x, int n, int K,
                      int M, const float *bias, void *y, int acc, int tile_rows, int num_sms,
                      float *part, unsigned *counters);

/* The in-graph kernel timeline of a -DCINFER_TIMELINE=ON build (timeline.cu;
 * no-ops otherwise): enable at init (CINFER_TIMELINE_OUT names the CSV),
 * begin at each forward (graph: the replayed graph, else NULL), graph when
 * a capture ends, dump at teardown. */
int ci_cu_tl_enable(void);
int ci_cu_tl_begin(void *stream, const void *graph);
void ci_cu_tl_graph(const void *graph);
void ci_cu_tl_dump(void *stream);
/* (timeline builds) a marker before a cuBLASLt GEMM of `rows` output rows,
 * so the GEMM gets a row of its own; a no-op otherwise */
int ci_cu_tl_gemm(void *stream, long long rows);

/* Quantized weights (cuda_qmatmul.cu); w is a host ci_qweight whose arrays
 * are device memory. y[n][rows] = x[n][cols] . dequant(w)^T (+ bias) for
 * n <= CI_CU_QGEMV_MAX_N; qdequant writes dequant(w) [rows][cols] in the
 * activation dtype (for a dense GEMM). shape_ok: words of 8 INT4 / 4 FP8
 * weights tile the row and never straddle a scale group. */
struct ci_qweight;
#define CI_CU_QGEMV_MAX_N 4
int ci_cu_qweight_shape_ok(const struct ci_qweight *w);
/* whether an INT4 weight for BF16 activations may be stored tiled (w->tiled) */
int ci_cu_qweight_tileable(const struct ci_qweight *w);
/* acc: y = round(round(product) + y) (ci_cu_fuse's acc) */
int ci_cu_qgemv(ci_cu_stream st, int bf16, int f32_out, const struct ci_qweight *w, const void *x,
                int n, const float *bias, void *y, int num_sms, int acc);
/* The fused matmul's prologue pro (CI_CU_PRO_*) inside the GEMV that
 * ci_cu_qgemv picks for BF16 x, where that one stages x per CTA (FP8 / INT8
 * weights: the 8-bit tensor-core GEMV); _ok says whether it does */
int ci_cu_qgemv_pro_ok(const struct ci_qweight *w, int n, const void *x, int pro,
                       const float *norm_w, int acc);
/* whether ci_cu_qgemv_pro takes the rope epilogue for w (8-bit: as
 * _fp8tc_rope_ok; INT4: neox rotation only) */
int ci_cu_qgemv_rope_ok(const struct ci_qweight *w, const ci_cu_rope_epi *rope);
/* swiglu: y [n][rows / 2] = SwiGLU of the product (gate rows, then up
 * rows; BF16 y, no acc, no rope), where _swiglu_ok */
int ci_cu_qgemv_swiglu_ok(const struct ci_qweight *w, int n, const void *x);
int ci_cu_qgemv_pro(ci_cu_stream st, int f32_out, const struct ci_qweight *w, const void *x, int n,
                    const float *bias, void *y, int num_sms, int acc, int pro, const float *norm_w,
                    float eps, const ci_cu_rope_epi *rope, int swiglu);
/* The tensor-core 8-bit GEMV (cuda_qgemv_fp8.cu): E4M3 or INT8 weights, BF16 x, n <= 2;
 * _ok says whether it takes the weight and n; old: the kernel before the
 * rolling loads (4 tiles a warp loaded, then used; A/B); num_sms: the
 * GPU's, for the build that fits a weight's blocks in one wave (0: none). */
int ci_cu_qgemv_fp8tc_ok(const struct ci_qweight *w, int n, int x_bf16, const void *x);
/* pro (CI_CU_PRO_*): the fused matmul's prologue, run in the CTA's staging of
 * x (RMSNorm with norm_w / eps: the standalone kernel's values; SwiGLU: x is
 * [n][2 cols]); _pro_ok says whether the kernel takes it (none for act order) */
int ci_cu_qgemv_fp8tc_pro_ok(const struct ci_qweight *w, int n, const void *x, int pro,
                             const float *norm_w);
/* rope (NULL or off: none): the rope epilogue (BF16 y, no acc; _rope_ok: the
 * weight is the q|k|v of rope's heads), as the BF16 GEMV's */
int ci_cu_qgemv_fp8tc_rope_ok(const struct ci_qweight *w, const ci_cu_rope_epi *rope);
/* swiglu: the SwiGLU epilogue (y [n][rows / 2], BF16, no acc, no rope;
 * _swiglu_ok: 16-row blocks of gate and up halves, no act order) */
int ci_cu_qgemv_fp8tc_swiglu_ok(const struct ci_qweight *w);
int ci_cu_qgemv_fp8tc(ci_cu_stream st, int f32_out, const struct ci_qweight *w, const void *x,
                      int n, const float *bias, void *y, int acc, int old, int num_sms, int pro,
                      const float *norm_w, float eps, const ci_cu_rope_epi *rope, int swiglu);
/* the multi-block mode of the GEMVs above and below (ci_cu_qgemv_mb,
 * CINFER_QGEMV_MB; cuda_qgemv_fp8.cu keeps it) */
int ci_cu_qgemv_mb_mode(void);
/* CINFER_QGEMV_WPB's mode (ci_cu_qgemv_wpb): the GEMVs' warp-owned-blocks builds */
int ci_cu_qgemv_wpb_mode(void);
/* the deferred norm's batched staging (CINFER_DEFER_BATCH, default 1;
 * gemv_prologue.cuh's ci_defer_stage) */
int ci_cu_defer_batch(void);
/* INT4 (tiled, no act order) for BF16 x, n <= 2, with the deferred RMSNorm
 * and the rope (neox) or SwiGLU epilogue or none (cuda_qgemv_int4_fused.cu;
 * no acc, BF16 y); norm_w / x NULL in _ok: their alignment not checked */
int ci_cu_qgemv_int4_fused_ok(const struct ci_qweight *w, int n, const void *x, const float *norm_w,
                              const ci_cu_rope_epi *rope, int swiglu);
int ci_cu_qgemv_int4_fused(ci_cu_stream st, const struct ci_qweight *w, const void *x, int n,
                           const float *bias, void *y, int num_sms, const float *norm_w, float eps,
                           const ci_cu_rope_epi *rope, int swiglu);
/* whether the current device runs sm_90a code (compute 9.0; asked once per
 * device): the INT4 GEMM's condition (cuda_qgemm_int4.cu) */
int ci_cu_sm90a(void);
/* INT4 for BF16 x at up to CI_CU_QGEMV_TC_MAX_N rows: the tensor-core
 * GEMV once per 8 rows (cuda_qmatmul.cu); _ok says whether it takes them */
#define CI_CU_QGEMV_TC_MAX_N 32
int ci_cu_qgemv_tc_rows_ok(const struct ci_qweight *w, int n, const void *x);
int ci_cu_qgemv_tc_rows(ci_cu_stream st, int f32_out, const struct ci_qweight *w, const void *x,
                        int n, const float *bias, void *y, int num_sms, int acc);
/* INT4 for BF16 x at CI_CU_QGEMM_MIN_N .. _MAX_N rows on Hopper: the
 * warpgroup-MMA GEMM (cuda_qgemm_int4.cu) with ws_bytes(w) of workspace
 * (x permuted, split-K partials); _ok says whether it takes the weight and n */
#define CI_CU_QGEMM_MIN_N 9
#define CI_CU_QGEMM_MAX_N 512
#define CI_CU_QGEMM_CAP_N 512 /* the most rows CINFER_QGEMM_MAX_N may ask (the workspace's) */
size_t ci_cu_qgemm_int4_ws_bytes(const struct ci_qweight *w);
int ci_cu_qgemm_int4_ok(const struct ci_qweight *w, int n, const void *x);
int ci_cu_qgemm_int4_chunk_n(void);
int ci_cu_qgemm_int4(ci_cu_stream st, int f32_out, const struct ci_qweight *w, const void *x, int n,
                     const float *bias, void *y, int acc, int num_sms, void *ws, size_t ws_bytes);
int ci_cu_qdequant(ci_cu_stream st, int bf16, const struct ci_qweight *w, void *out);
/* W8A8 activations: x [n][K] -> E4M3 (i8: INT8) xq [n_pad][K] and f32
 * scales, one per row and `group` columns (group == K: [n_pad]; else
 * [K/group][n_pad]); rows n..n_pad-1 zero with scale 1. fixed > 0 (group ==
 * K): that static scale for every row instead of amax / 448. */
int ci_cu_qact(ci_cu_stream st, int bf16, const void *x, int n, int K, int group, int n_pad,
               uint8_t *xq, float *scales, float fixed, int i8);
/* ... and straight from their BF16 producer, the same bytes as the
 * producer's stored output through ci_cu_qact: rmsnorm (ci_cu_rmsnorm's
 * arithmetic, residual += x first when res is given; cuda_norm.cu) and
 * swiglu (gu [rows][2 inter]; cuda_elementwise.cu). _ok: whether the
 * kernel takes the width, alignment and group. */
int ci_cu_rmsnorm_qact_ok(int64_t n, const float *w, int group);
int ci_cu_rmsnorm_qact(ci_cu_stream st, const void *x, void *res, const float *w, int rows,
                       int64_t n, float eps, int group, int n_pad, uint8_t *xq, float *scales,
                       float fixed, int i8);
int ci_cu_swiglu_qact_ok(int64_t inter, const void *gu, int group);
int ci_cu_swiglu_qact(ci_cu_stream st, const void *gu, int rows, int64_t inter, int group,
                      int n_pad, uint8_t *xq, float *scales, float fixed, int i8);

#ifdef __cplusplus
}
#endif

#endif
