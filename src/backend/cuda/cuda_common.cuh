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

/* stores a product to y[i]; with acc, y[i] = round(round(v) + y[i]): the
 * product rounded to T first, as a matmul and then an add would have it */
template <typename T> __device__ __forceinline__ void ci_st_out(T *p, int64_t i, float v, int acc) {
    if (acc) v = ci_round(v, p) + ci_ld(p, i);
    ci_st(p, i, v);
}

/* 8 BF16 values (one 16-byte vector) as f32 */
__device__ __forceinline__ void ci_bf16x8(const uint4 &a, float *v) {
    const __nv_bfloat162 *ah = (const __nv_bfloat162 *)&a;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        float2 fa = __bfloat1622float2(ah[j]);
        v[2 * j] = fa.x;
        v[2 * j + 1] = fa.y;
    }
}

/* 8 f32 from p (32-byte aligned) through the read-only path: norm weights */
__device__ __forceinline__ void ci_ldg_f32x8(const float *p, float *w) {
    const float4 w0 = __ldg((const float4 *)p), w1 = __ldg((const float4 *)p + 1);
    w[0] = w0.x, w[1] = w0.y, w[2] = w0.z, w[3] = w0.w;
    w[4] = w1.x, w[5] = w1.y, w[6] = w1.z, w[7] = w1.w;
}

/* bf16(w * (v * inv)) for 8 values: the RMSNorm kernel's and the fused
 * GEMV prologue's one output formula */
__device__ __forceinline__ uint4 ci_norm8(const float *v, const float *w, float inv) {
    uint4 o;
    __nv_bfloat162 *oh = (__nv_bfloat162 *)&o;
#pragma unroll
    for (int j = 0; j < 4; j++)
        oh[j] =
            __floats2bfloat162_rn(w[2 * j] * (v[2 * j] * inv), w[2 * j + 1] * (v[2 * j + 1] * inv));
    return o;
}

/* silu(g) * u for 8 BF16 values of each (f32 math, BF16 out): the SwiGLU
 * kernel's and the fused GEMV prologue's one formula */
__device__ __forceinline__ uint4 ci_swiglu8(const uint4 &g, const uint4 &u) {
    const __nv_bfloat162 *gh = (const __nv_bfloat162 *)&g, *uh = (const __nv_bfloat162 *)&u;
    uint4 o;
    __nv_bfloat162 *oh = (__nv_bfloat162 *)&o;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        float2 a = __bfloat1622float2(gh[j]), b = __bfloat1622float2(uh[j]);
        oh[j] = __floats2bfloat162_rn(a.x / (1.0f + __expf(-a.x)) * b.x,
                                      a.y / (1.0f + __expf(-a.y)) * b.y);
    }
    return o;
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

static inline unsigned ci_cu_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b > 65535 * 16) b = 65535 * 16;
    return (unsigned)(b < 1 ? 1 : b);
}

#endif
