/* kv_fp8.cuh — FP8 E4M3 KV cache elements on the device: the store the
 * rope/cache kernel makes and the conversions the attention kernels read
 * with. The store is cuda_fp8.h's saturating round-to-nearest-even of
 * x / scale (an IEEE division), which gives the bytes of the CPU twin
 * (ci_f32_to_fp8_e4m3 in util/fp8.h). E4M3 -> f16 is exact (the values are
 * f16 normals or subnormals), one cvt per pair on sm_89+. */
#ifndef CINFER_BACKEND_CUDA_KV_FP8_CUH
#define CINFER_BACKEND_CUDA_KV_FP8_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>

__device__ __forceinline__ uint8_t ci_fp8_enc(float v, float scale) {
    return (uint8_t)__nv_cvt_float_to_fp8(__fdiv_rn(v, scale), __NV_SATFINITE, __NV_E4M3);
}
/* cache element stores (rope_cache and the qkv GEMV's rope epilogue): the
 * activation dtype as is, or E4M3 of v / scale */
__device__ __forceinline__ void ci_kv_st(float *p, int64_t i, float v, float) {
    p[i] = v;
}
__device__ __forceinline__ void ci_kv_st(__nv_bfloat16 *p, int64_t i, float v, float) {
    p[i] = __float2bfloat16_rn(v);
}
__device__ __forceinline__ void ci_kv_st(uint8_t *p, int64_t i, float v, float scale) {
    p[i] = ci_fp8_enc(v, scale);
}
/* two E4M3 (low byte first) -> f16x2 bits (low half first) */
__device__ __forceinline__ uint32_t ci_fp8x2_f16x2(uint32_t two) {
    __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)two, __NV_E4M3);
    return (uint32_t)h.x | ((uint32_t)h.y << 16);
}
/* 16 E4M3 -> 16 f16 in two uint4 (elements 0..7, 8..15) */
__device__ __forceinline__ void ci_fp8x16_f16(uint4 u, uint4 &lo, uint4 &hi) {
    lo.x = ci_fp8x2_f16x2(u.x & 0xffff);
    lo.y = ci_fp8x2_f16x2(u.x >> 16);
    lo.z = ci_fp8x2_f16x2(u.y & 0xffff);
    lo.w = ci_fp8x2_f16x2(u.y >> 16);
    hi.x = ci_fp8x2_f16x2(u.z & 0xffff);
    hi.y = ci_fp8x2_f16x2(u.z >> 16);
    hi.z = ci_fp8x2_f16x2(u.w & 0xffff);
    hi.w = ci_fp8x2_f16x2(u.w >> 16);
}
/* 4 E4M3 -> f32 */
__device__ __forceinline__ void ci_fp8x4_f32(uint32_t w, float *out) {
    uint32_t lo = ci_fp8x2_f16x2(w & 0xffff), hi = ci_fp8x2_f16x2(w >> 16);
    float2 f0 = __half22float2(*(const __half2 *)&lo), f1 = __half22float2(*(const __half2 *)&hi);
    out[0] = f0.x;
    out[1] = f0.y;
    out[2] = f1.x;
    out[3] = f1.y;
}
/* 8 E4M3 -> 8 bf16 (exact: E4M3 fits bf16's exponent range and mantissa) */
__device__ __forceinline__ uint4 ci_fp8x8_bf16(uint2 u) {
    float f[8];
    ci_fp8x4_f32(u.x, f);
    ci_fp8x4_f32(u.y, f + 4);
    uint4 r;
    uint32_t *p = &r.x;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        __nv_bfloat162 b = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
        p[i] = *(uint32_t *)&b;
    }
    return r;
}

#endif
