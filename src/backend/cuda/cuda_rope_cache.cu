/* cuda_rope_cache.cu — rotary embedding fused with the paged KV write
 * (vLLM's rotary_embedding + reshape_and_cache in one pass).
 *
 * Each q and k head is rotated with the token's row of the cos/sin table
 * (neox: pairs (i, i + rot/2); GPT-J: (2i, 2i+1)) and written back to qkv;
 * k heads also go to the cache slot, with their unrotated dims (partial
 * rotary) and the V head. slot < 0 skips the cache write (padding).
 * Moves ~ (2 x (H + KV) + 2 x KV) x head_dim x elt per token. With an FP8
 * cache (TC = uint8_t) K and V are stored as e4m3(x / scale); the rotation
 * is computed without FMA contraction (__fmul_rn / __fsub_rn) so the values
 * quantized are the CPU twin's floats and the cache bytes are identical. */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/kv_fp8.cuh"

#include <stdlib.h>

#define ROPE_WARPS 4

/* One warp per (token, head) of the H q heads and KV k heads: blockIdx.x is
 * the token, blockIdx.y a group of ROPE_WARPS heads. A warp rotates its
 * head's pairs; a k head's warp also writes the rotated K, its unrotated
 * tail (partial rotary) and the matching V head to the cache slot. Every
 * lane's loads are independent, so a decode step's single token costs one
 * memory round trip, not a serial loop. */
template <typename T, typename TC>
__global__ void rope_cache_kernel(T *qkv, int H, int KV, int hd, const float *__restrict__ cos_sin,
                                  int rot, int neox, const int32_t *__restrict__ positions,
                                  const int32_t *__restrict__ slots, TC *kc, TC *vc, int bs,
                                  float kscale, float vscale) {
    const int t = blockIdx.x, lane = threadIdx.x & 31;
    const int h = blockIdx.y * ROPE_WARPS + (threadIdx.x >> 5);
    const int half = rot / 2;
    /* before the PDL wait: the token's position and slot (host uploads that
     * precede the forward's first kernel, which every kernel here starts
     * after) and its cos/sin (a constant table) for the lane's first
     * RP_U pairs: a decode step's rope then costs one round trip (q/k),
     * not three (position, then cos/sin, then q/k) */
    constexpr int RP_U = 4;
    int32_t slot = -1;
    const float *cs = cos_sin; /* the token's row */
    float cr[RP_U], sr[RP_U];
    if (h < H + KV) {
        cs += (int64_t)positions[t] * rot;
        slot = slots[t];
#pragma unroll
        for (int u = 0; u < RP_U; u++) {
            const int i = lane + 32 * u;
            cr[u] = i < half ? __ldg(cs + i) : 0.0f;
            sr[u] = i < half ? __ldg(cs + half + i) : 0.0f;
        }
    }
    ci_pdl_trigger();
    ci_pdl_wait();
    if (h >= H + KV) return;
    int64_t stride = (int64_t)(H + 2 * KV) * hd;
    T *row = qkv + (int64_t)t * stride;
    T *x = row + (int64_t)h * hd;
    const int g = h - H; /* kv head, when h >= H */
    TC *kdst = nullptr, *vdst = nullptr;
    if (g >= 0 && slot >= 0) {
        int64_t blk = slot / bs, off = slot % bs;
        int64_t cbase = ((blk * KV + g) * bs + off) * hd;
        kdst = kc + cbase;
        vdst = vc + cbase;
    }
    auto pair = [&](int i, float c, float s) {
        int i1 = neox ? i : 2 * i, i2 = neox ? i + half : 2 * i + 1;
        float x1 = ci_ld(x, i1), x2 = ci_ld(x, i2);
        float y1 = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
        float y2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
        ci_st(x, i1, y1);
        ci_st(x, i2, y2);
        if (kdst) {
            ci_kv_st(kdst, i1, y1, kscale);
            ci_kv_st(kdst, i2, y2, kscale);
        }
    };
#pragma unroll
    for (int u = 0; u < RP_U; u++)
        if (lane + 32 * u < half) pair(lane + 32 * u, cr[u], sr[u]);
    for (int i = lane + 32 * RP_U; i < half; i += 32)
        pair(i, cs[i], cs[half + i]);
    if (!kdst) return;
    for (int d = rot + lane; d < hd; d += 32)
        ci_kv_st(kdst, d, ci_ld(x, d), kscale); /* unrotated */
    const T *v = row + (int64_t)(H + KV + g) * hd;
    for (int d = lane; d < hd; d += 32)
        ci_kv_st(vdst, d, ci_ld(v, d), vscale);
}

/* Large steps (prefill chunks, big decode batches): 16-byte accesses. The
 * warp-per-head kernel above moves 2-byte elements (64-byte warp accesses)
 * and ran at ~1/3 of the bandwidth on an 8192-token step. Here thread j of
 * a head owns 16 of its hd dims: for a q or k head j < rot/16 rotates the
 * neox pairs (8j .. 8j+7, half + 8j .. half + 8j+7), the rest of a k head's
 * threads copy its unrotated tail (partial rotary) to the cache; a v head's
 * thread copies dims 16j .. 16j+15 to the cache. Same arithmetic (and so
 * the same bits) as rope_cache_kernel. Needs BF16 activations, neox, rot
 * and hd multiples of 16. */
template <typename TC> __device__ __forceinline__ void rope_st8(TC *p, const float *v, float sc) {
#pragma unroll
    for (int i = 0; i < 8; i++)
        ci_kv_st(p, i, v[i], sc);
}
template <> __device__ __forceinline__ void rope_st8(__nv_bfloat16 *p, const float *v, float) {
    __nv_bfloat162 h[4];
#pragma unroll
    for (int i = 0; i < 4; i++)
        h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
    *(uint4 *)p = *(const uint4 *)h;
}

template <typename TC>
__global__ void rope_cache_vec_kernel(__nv_bfloat16 *qkv, int ntok, int H, int KV, int hd,
                                      const float *__restrict__ cos_sin, int rot,
                                      const int32_t *__restrict__ positions,
                                      const int32_t *__restrict__ slots, TC *kc, TC *vc, int bs,
                                      float kscale, float vscale) {
    const int nj = hd / 16, NH = H + 2 * KV, half = rot / 2;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const bool live = idx < (int64_t)ntok * NH * nj;
    const int j = (int)(idx % nj), h = (int)(idx / nj % NH);
    const int64_t t = idx / ((int64_t)nj * NH);
    const bool rotj = h < H + KV && 16 * j < rot;
    /* constant data before the PDL wait (see rope_cache_kernel) */
    float c[8], sn[8];
    int32_t slot = -1;
    if (live) {
        slot = slots[t];
        if (rotj) {
            const float *cs = cos_sin + (int64_t)positions[t] * rot + 8 * j;
#pragma unroll
            for (int i = 0; i < 8; i += 4) {
                *(float4 *)(c + i) = __ldg((const float4 *)(cs + i));
                *(float4 *)(sn + i) = __ldg((const float4 *)(cs + half + i));
            }
        }
    }
    ci_pdl_trigger();
    ci_pdl_wait();
    if (!live) return;
    __nv_bfloat16 *x = qkv + t * (int64_t)NH * hd + (int64_t)h * hd;
    const int g = h >= H + KV ? h - H - KV : h - H; /* kv head of a k or v head */
    TC *dst = nullptr;
    if (h >= H && slot >= 0)
        dst = (h < H + KV ? kc : vc) + (((int64_t)(slot / bs) * KV + g) * bs + slot % bs) * hd;
    const float sc = h < H + KV ? kscale : vscale;
    float a[8], b[8];
    if (!rotj) { /* a k head's tail or a v head: a copy to the cache */
        if (!dst) return;
        const int d0 = h < H + KV ? rot + 16 * (j - rot / 16) : 16 * j;
        ci_bf16x8(*(const uint4 *)(x + d0), a);
        ci_bf16x8(*(const uint4 *)(x + d0 + 8), b);
        rope_st8(dst + d0, a, sc);
        rope_st8(dst + d0 + 8, b, sc);
        return;
    }
    const int i1 = 8 * j, i2 = half + 8 * j;
    ci_bf16x8(*(const uint4 *)(x + i1), a);
    ci_bf16x8(*(const uint4 *)(x + i2), b);
    float y1[8], y2[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        y1[i] = __fsub_rn(__fmul_rn(a[i], c[i]), __fmul_rn(b[i], sn[i]));
        y2[i] = __fadd_rn(__fmul_rn(b[i], c[i]), __fmul_rn(a[i], sn[i]));
    }
    rope_st8(x + i1, y1, 1.0f);
    rope_st8(x + i2, y2, 1.0f);
    if (dst) {
        rope_st8(dst + i1, y1, sc);
        rope_st8(dst + i2, y2, sc);
    }
}

/* steps of at least this many tokens take the vectorized kernel (decode
 * steps keep the one-round-trip warp-per-head kernel; CINFER_ROPE_VEC=0:
 * never) */
#define ROPE_VEC_MIN_TOKENS 64

extern "C" int ci_cu_rope_cache(ci_cu_stream st, int bf16, void *qkv, int ntok, int H, int KV,
                                int hd, const float *cos_sin, int rot, int neox,
                                const int32_t *positions, const int32_t *slots, void *kc, void *vc,
                                int block_size, int kv_fp8, float k_scale, float v_scale) {
    if (ntok <= 0) return cudaSuccess;
    static const int vec_on = !getenv("CINFER_ROPE_VEC") || atoi(getenv("CINFER_ROPE_VEC"));
    if (vec_on && bf16 && neox && ntok >= ROPE_VEC_MIN_TOKENS && rot % 16 == 0 && hd % 16 == 0) {
        const int64_t n = (int64_t)ntok * (H + 2 * KV) * (hd / 16);
        const unsigned blocks = (unsigned)((n + 255) / 256);
        if (kv_fp8)
            ci_cu_launch(rope_cache_vec_kernel<uint8_t>, dim3(blocks), 256, 0, st,
                         (__nv_bfloat16 *)qkv, ntok, H, KV, hd, cos_sin, rot, positions, slots,
                         (uint8_t *)kc, (uint8_t *)vc, block_size, k_scale, v_scale);
        else
            ci_cu_launch(rope_cache_vec_kernel<__nv_bfloat16>, dim3(blocks), 256, 0, st,
                         (__nv_bfloat16 *)qkv, ntok, H, KV, hd, cos_sin, rot, positions, slots,
                         (__nv_bfloat16 *)kc, (__nv_bfloat16 *)vc, block_size, 1.0f, 1.0f);
        return cudaGetLastError();
    }
    dim3 grid((unsigned)ntok, (unsigned)((H + KV + ROPE_WARPS - 1) / ROPE_WARPS));
    if (kv_fp8)
        CI_CU_DISPATCH(bf16,
                       ci_cu_launch(rope_cache_kernel<T, uint8_t>, grid, ROPE_WARPS * 32, 0, st,
                                    (T *)qkv, H, KV, hd, cos_sin, rot, neox, positions, slots,
                                    (uint8_t *)kc, (uint8_t *)vc, block_size, k_scale, v_scale));
    else
        CI_CU_DISPATCH(bf16, ci_cu_launch(rope_cache_kernel<T, T>, grid, ROPE_WARPS * 32, 0, st,
                                          (T *)qkv, H, KV, hd, cos_sin, rot, neox, positions, slots,
                                          (T *)kc, (T *)vc, block_size, 1.0f, 1.0f));
    return cudaGetLastError();
}
