/* cuda.h — what the rest of cinfer (and the tests) may ask of the CUDA
 * backend beyond the ops table. Only declared when built with CUDA. */
#ifndef CINFER_BACKEND_CUDA_CUDA_H
#define CINFER_BACKEND_CUDA_CUDA_H

#ifdef CINFER_HAVE_CUDA
struct ci_backend;
/* Number of usable CUDA devices (0 when there is no GPU or no driver). */
int ci_cuda_device_count(void);
/* Opens cuBLASLt (dlopen, once): NULL when loaded, else why not. */
const char *ci_cuda_libs_load(void);
/* Opens NCCL (dlopen, once; the collectives of several GPUs): the same. */
const char *ci_cuda_nccl_load(void);
/* The quantized GEMV kernel: "auto" (default: tc, or vec or split by shape), "tc",
 * "split", "vec" or "scalar"; NULL: auto. For measurements (CINFER_QGEMV sets it at the first call
 * too). */
void ci_cu_qgemv_select(const char *name);
/* The rows of x the INT4 warpgroup-MMA GEMM takes (Hopper; max 0: never);
 * min_n < 0: CINFER_QGEMM_MIN_N / _MAX_N or the defaults (9 .. 512). */
void ci_cu_qgemm_int4_range(int min_n, int max_n);
/* INT4's fused decode GEMV (cuda_qgemv_int4_fused.cu) in tc2's shape: 0
 * never (the default; CINFER_QFUSE_TC2 is read at the first call otherwise),
 * 1 for weights of 4+ 16-row blocks an SM, 2 always (tests) */
void ci_cu_qgemv_int4_fused_two(int mode);
/* The 8-bit tensor-core GEMV (cuda_qgemv_fp8.cu) and INT4's fused one
 * (cuda_qgemv_int4_fused.cu) with several 16-row blocks a CTA: 0 never, 1
 * where the blocks exceed 3 an SM, 2 three a CTA wherever the shape allows
 * (tests), 3 as 1 for INT4's fused GEMV only, 4 (the default) as 3 and the
 * 8-bit GEMV's SwiGLU build (gate|up), -1 back to the default
 * (CINFER_QGEMV_MB is read at the first call) */
void ci_cu_qgemv_mb(int mode);
/* The 8-bit GEMV and INT4's fused one with each warp owning whole 16-row
 * blocks (no split K, no barrier after the staging): 0 off (the default
 * unless CINFER_QGEMV_WPB says), 1 the SwiGLU build where the multi-block
 * one would run, 2 also the plain build at 8+ blocks an SM, 3 wherever the
 * shape allows, on one CTA whose warps stride over the blocks (tests); -1
 * back to the default (read at the next call) */
void ci_cu_qgemv_wpb(int mode);
/* The deferred RMSNorm's staging in the tensor-core GEMVs (gemv_prologue.cuh,
 * ci_defer_stage): 1 two vectors a thread loaded at once, the norm weights
 * prefetched before the PDL wait (the default unless CINFER_DEFER_BATCH=0,
 * read at the first call); 0 one at a time; -1 back to the default.
 * The values are the same either way. */
void ci_cu_defer_batch_mode(int mode);
/* The decode attention's splits of a (seq, kv head) as one thread-block
 * cluster merging through distributed shared memory (Hopper's sm_90a build;
 * 1 on, the default unless CINFER_DEC_CLUSTER=0, read at the first call; 0
 * off; -1 back to the default) */
void ci_cu_decode_cluster(int on);
/* GEMMs the skinny BF16 kernel (CINFER_SKINNY) ran on this backend so far:
 * tests check that a case took it */
long long ci_cuda_skinny_calls(const struct ci_backend *be);
/* (tests) GEMM plans that took their token-count bucket's timed algorithm */
long long ci_cuda_bucket_plans(const struct ci_backend *be);
/* eager GEMM algorithms by token-count bucket (cuda_gemm.c): on with
 * CINFER_GEMM_BUCKETS=1 */
int ci_cuda_gemm_buckets_on(void);
/* whether this backend runs it at all (CINFER_SKINNY set, a compute 9.0 GPU) */
int ci_cuda_skinny_on(const struct ci_backend *be);
#endif

#endif
