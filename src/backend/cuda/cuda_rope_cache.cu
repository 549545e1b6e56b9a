/* cuda_rope_cache.cu — rotary embedding fused with the paged KV write
 * (vLLM's rotary_embedding + reshape_and_cache in one pass).
 *
 * Each q and k head is rotated with the token's row of the cos/sin table
 * (neox: pairs (i, i + rot/2); GPT-J: (2i, 2i+1)) and written back to qkv;
 * k heads also go to the cache slot, with their unrotated dims (partial
 * rotary) and the V head. slot < 0 skips the cache write (padding).
 * Moves ~ (2 x (H + KV) + 2 x KV) x head_dim x elt per token. */
#include "backend/cuda/cuda_common.cuh"

#define ROPE_WARPS 4

/* One warp per (token, head) of the H q heads and KV k heads: blockIdx.x is
 * the token, blockIdx.y a group of ROPE_WARPS heads. A warp rotates its
 * head's pairs; a k head's warp also writes the rotated K, its unrotated
 * tail (partial rotary) and the matching V head to the cache slot. Every
 * lane's loads are independent, so a decode step's single token costs one
 * memory round trip, not a serial loop. */
template <typename T>
__global__ void rope_cache_kernel(T *qkv, int H, int KV, int hd, const float *__restrict__ cos_sin,
                                  int rot, int neox, const int32_t *__restrict__ positions,
                                  const int32_t *__restrict__ slots, T *kc, T *vc, int bs) {
    const int t = blockIdx.x, lane = threadIdx.x & 31;
    const int h = blockIdx.y * ROPE_WARPS + (threadIdx.x >> 5);
    if (h >= H + KV) return;
    int64_t stride = (int64_t)(H + 2 * KV) * hd;
    T *row = qkv + (int64_t)t * stride;
    T *x = row + (int64_t)h * hd;
    const int half = rot / 2;
    const float *cs = cos_sin + (int64_t)positions[t] * rot;
    const int32_t slot = slots[t];
    const int g = h - H; /* kv head, when h >= H */
    T *kdst = nullptr, *vdst = nullptr;
    if (g >= 0 && slot >= 0) {
        int64_t blk = slot / bs, off = slot % bs;
        int64_t cbase = ((blk * KV + g) * bs + off) * hd;
        kdst = kc + cbase;
        vdst = vc + cbase;
    }
    for (int i = lane; i < half; i += 32) {
        int i1 = neox ? i : 2 * i, i2 = neox ? i + half : 2 * i + 1;
        float x1 = ci_ld(x, i1), x2 = ci_ld(x, i2), c = cs[i], s = cs[half + i];
        float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
        ci_st(x, i1, y1);
        ci_st(x, i2, y2);
        if (kdst) {
            ci_st(kdst, i1, y1);
            ci_st(kdst, i2, y2);
        }
    }
    if (!kdst) return;
    for (int d = rot + lane; d < hd; d += 32) kdst[d] = x[d]; /* unrotated K dims */
    const T *v = row + (int64_t)(H + KV + g) * hd;
    for (int d = lane; d < hd; d += 32) vdst[d] = v[d];
}

extern "C" int ci_cu_rope_cache(ci_cu_stream st, int bf16, void *qkv, int ntok, int H, int KV, int hd,
                                const float *cos_sin, int rot, int neox, const int32_t *positions,
                                const int32_t *slots, void *kc, void *vc, int block_size) {
    if (ntok <= 0) return cudaSuccess;
    dim3 grid((unsigned)ntok, (unsigned)((H + KV + ROPE_WARPS - 1) / ROPE_WARPS));
    CI_CU_DISPATCH(bf16, rope_cache_kernel<T><<<grid, ROPE_WARPS * 32, 0, st>>>(
                             (T *)qkv, H, KV, hd, cos_sin, rot, neox, positions, slots, (T *)kc,
                             (T *)vc, block_size));
    return cudaGetLastError();
}
