/* cuda_rope_cache.cu — rotary embedding fused with the paged KV write
 * (vLLM's rotary_embedding + reshape_and_cache in one pass).
 *
 * One CTA per token. Phase 1: every rotated pair of every q and k head is
 * read, rotated with the token's row of the cos/sin table (neox: pairs
 * (i, i + rot/2); GPT-J: (2i, 2i+1)), written back to qkv, and for k heads
 * also written to the cache slot. Phase 2: the K dims past rot_dim (partial
 * rotary) and all of V go to the cache. Phase 2 reads elements phase 1 never
 * writes, so no barrier is needed. slot < 0 skips the cache write (padding).
 * Moves ~ (2 x (H + KV) + 2 x KV) x head_dim x elt per token. */
#include "backend/cuda/cuda_common.cuh"

template <typename T>
__global__ void rope_cache_kernel(T *qkv, int H, int KV, int hd, const float *__restrict__ cos_sin,
                                  int rot, int neox, const int32_t *__restrict__ positions,
                                  const int32_t *__restrict__ slots, T *kc, T *vc, int bs) {
    int t = blockIdx.x;
    int64_t stride = (int64_t)(H + 2 * KV) * hd;
    T *row = qkv + (int64_t)t * stride;
    int half = rot / 2;
    const float *cs = cos_sin + (int64_t)positions[t] * rot;
    int32_t slot = slots[t];
    int64_t blk = slot >= 0 ? slot / bs : 0, off = slot >= 0 ? slot % bs : 0;
    int npairs = (H + KV) * half;
    for (int e = threadIdx.x; e < npairs; e += blockDim.x) {
        int h = e / half, i = e - h * half;
        int i1 = neox ? i : 2 * i, i2 = neox ? i + half : 2 * i + 1;
        T *x = row + (int64_t)h * hd;
        float x1 = ci_ld(x, i1), x2 = ci_ld(x, i2), c = cs[i], s = cs[half + i];
        float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
        ci_st(x, i1, y1);
        ci_st(x, i2, y2);
        if (h >= H && slot >= 0) {
            int g = h - H;
            T *dst = kc + ((blk * KV + g) * bs + off) * hd;
            ci_st(dst, i1, y1);
            ci_st(dst, i2, y2);
        }
    }
    if (slot < 0) return;
    int tail = hd - rot; /* unrotated K dims */
    for (int e = threadIdx.x; e < KV * (tail + hd); e += blockDim.x) {
        int g = e / (tail + hd), d = e - g * (tail + hd);
        int64_t cbase = ((blk * KV + g) * bs + off) * hd;
        if (d < tail) {
            kc[cbase + rot + d] = row[(int64_t)(H + g) * hd + rot + d];
        } else {
            d -= tail;
            vc[cbase + d] = row[(int64_t)(H + KV + g) * hd + d];
        }
    }
}

extern "C" int ci_cu_rope_cache(ci_cu_stream st, int bf16, void *qkv, int ntok, int H, int KV, int hd,
                                const float *cos_sin, int rot, int neox, const int32_t *positions,
                                const int32_t *slots, void *kc, void *vc, int block_size) {
    if (ntok <= 0) return cudaSuccess;
    CI_CU_DISPATCH(bf16, rope_cache_kernel<T><<<ntok, 128, 0, st>>>(
                             (T *)qkv, H, KV, hd, cos_sin, rot, neox, positions, slots, (T *)kc,
                             (T *)vc, block_size));
    return cudaGetLastError();
}
