/* rope_epi.cuh — one value of the qkv GEMVs' rope epilogue (a decode step's
 * rope_cache, fused: cuda_gemv.cu's BF16 GEMV, cuda_qgemv_fp8.cu's 8-bit
 * tensor-core GEMV): the product of (head, dim) for one token, as the store
 * would round it, rotated with its pair's as rope_cache_kernel does when
 * the head is a q or k head, stored to y and, for k and v heads, to the
 * cache row of the token's slot. Each kernel maps its rows to (head, dim)
 * pairs its own way and brings the two products of a pair together. */
#ifndef CINFER_BACKEND_CUDA_ROPE_EPI_CUH
#define CINFER_BACKEND_CUDA_ROPE_EPI_CUH

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/kv_fp8.cuh"

/* v: this row's product, xo: its pair's (first: v is the pair's first
 * element); c / sn: the pair's cos and sin at the token's position; yn: the
 * token's row of y; row: the column of yn this value is; slot: the token's
 * KV slot (< 0: not written). TC: the cache's element type. */
template <typename TC>
__device__ __forceinline__ void ci_rope_epi_put(const ci_cu_rope_epi &r, int head, int dim,
                                                bool first, float v, float xo, float c, float sn,
                                                __nv_bfloat16 *yn, int64_t row, int slot) {
    if (head < r.H + r.KV) { /* q or k: rotated as rope_cache_kernel does */
        const float x1 = first ? v : xo, x2 = first ? xo : v;
        v = first ? __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, sn))
                  : __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, sn));
    }
    ci_st(yn, row, v);
    if (head >= r.H && slot >= 0) { /* k or v: the cache row of the token's slot */
        const bool isk = head < r.H + r.KV;
        const int g = head - r.H - (isk ? 0 : r.KV);
        const int64_t base =
            (((int64_t)(slot / r.bs) * r.KV + g) * r.bs + slot % r.bs) * r.hd + dim;
        ci_kv_st((TC *)(isk ? r.kc : r.vc), base, v, isk ? r.kscale : r.vscale);
    }
}

/* The tensor-core GEMVs' rope rows (16-row CTAs): CTA c holds head c / (hd / 16)'s rotation pairs
 * j * 8 .. j * 8 + 7 (j = c % (hd / 16)); local row lr < 8 is pair
 * j * 8 + lr's first element, lr + 8 its second (neox: dims i and
 * i + hd / 2; GPT-J: 2i and 2i + 1), so a lane's C fragment (rows g and
 * g + 8) holds both elements of its pair. */
struct ci_rope_rows {
    int head, j;
    __device__ __forceinline__ ci_rope_rows(const ci_cu_rope_epi &r, int cta)
        : head(cta / (r.hd / 16)), j(cta % (r.hd / 16)) {}
    __device__ __forceinline__ int pair(int lr) const {
        return j * 8 + (lr & 7);
    }
    __device__ __forceinline__ int dim(const ci_cu_rope_epi &r, int lr) const {
        const int i = pair(lr), second = lr >= 8;
        return r.neox ? i + (second ? r.hd / 2 : 0) : 2 * i + second;
    }
    __device__ __forceinline__ int64_t row(const ci_cu_rope_epi &r, int lr) const {
        return (int64_t)head * r.hd + dim(r, lr);
    }
};

#endif
