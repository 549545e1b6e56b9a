/* cuda_common.cuh — small device helpers shared by the kernels: activation
 * load/store (F32 or BF16, math always in f32) and warp/block reductions. */
#ifndef CINFER_BACKEND_CUDA_COMMON_CUH
#define CINFER_BACKEND_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/pdl.cuh"

__device__ __forceinline__ float ci_ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ci_ld(const __nv_bfloat16 *p, int64_t i) {
    return __bfloat162float(p[i]);
}
__device__ __forceinline__ void ci_st(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void ci_st(__nv_bfloat16 *p, int64_t i, float v) {
    p[i] = __float2bfloat16_rn(v);
}
/* rounds v to what a store of T keeps */
__device__ __forceinline__ float ci_round(float v, const float *) { return v; }
__device__ __forceinline__ float ci_round(float v, const __nv_bfloat16 *) {
    return __bfloat162float(__float2bfloat16_rn(v));
}

__device__ __forceinline__ float ci_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float ci_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread
 * gets the result. `red` is 32 floats of shared memory. */
__device__ __forceinline__ float ci_block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = ci_warp_sum(v);
    __syncthreads(); /* red may still be read by a previous call */
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return ci_warp_sum(v);
}

/* Asks the L2 for bytes of row-major weights from p on (Hopper's bulk
 * prefetch: a hint with no register cost), so that a GEMV's CTA has its
 * whole weight slice on the way before its PDL wait, not only the loads its
 * registers hold. Called by one warp; p and bytes multiples of 16. */
__device__ __forceinline__ void ci_l2_prefetch(const void *p, int64_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const char *c = (const char *)p;
    for (int64_t o = (int64_t)(threadIdx.x & 31) * 16384; o < bytes; o += 32 * 16384) {
        const uint32_t n = (uint32_t)min(bytes - o, (int64_t)16384);
        asm volatile(
            "{.reg .u64 g; cvta.to.global.u64 g, %0; cp.async.bulk.prefetch.L2.global [g], %1;}" ::
                "l"(c + o),
            "r"(n)
            : "memory");
    }
#endif
}

#define CI_CU_DISPATCH(bf16, ...)                                                                  \
    do {                                                                                           \
        if (bf16) {                                                                                \
            typedef __nv_bfloat16 T;                                                               \
            __VA_ARGS__;                                                                           \
        } else {                                                                                   \
            typedef float T;                                                                       \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
    } while (0)

/* Bytes of L2 prefetch (ci_l2_prefetch) per CTA of a GEMV whose grid CTAs
 * own slices of `slice` bytes: the whole slice while the grid's total stays
 * within CINFER_L2_PREFETCH MiB (default 24, half the H200's L2; 0 = off),
 * else an equal share of that. */
static inline int64_t ci_cu_l2pf(int64_t slice, int64_t grid) {
    static int64_t budget = -1;
    if (budget < 0) {
        const char *e = getenv("CINFER_L2_PREFETCH");
        budget = (int64_t)(e && *e ? atoi(e) : 24) << 20;
        if (budget < 0) budget = 0;
    }
    const int64_t per = grid > 0 ? budget / grid : 0;
    return (slice < per ? slice : per) & ~(int64_t)15;
}

static inline unsigned ci_cu_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b > 65535 * 16) b = 65535 * 16;
    return (unsigned)(b < 1 ? 1 : b);
}

#endif
