/* cuda_norm.cu — RMSNorm kernels.
 *
 * rmsnorm (fused residual add): one CTA per row. Pass 1: r = x + res (the
 *   sum rounded to the activation type, as HF stores it), written back to
 *   res, sum of squares in f32; block reduction; pass 2 re-reads r (the CTA's
 *   own writes) and writes out = w * r * rsqrt(mean + eps). out may alias x:
 *   x is only read before the reduction's barrier. Moves 4 (3 without the
 *   residual) x n x elt per row: memory bound.
 * qk_norm (Qwen3): one warp per (token, head) over the q and k heads of the
 *   fused qkv row, in place; weights [head_dim] F32. */
#include "backend/cuda/cuda_common.cuh"

template <typename T>
__global__ void rmsnorm_kernel(const T *x, T *res, const float *__restrict__ w, int64_t n,
                               float eps, T *out) {
    __shared__ float red[32];
    int64_t row = blockIdx.x;
    const T *xr = x + row * n;
    T *rr = res ? res + row * n : nullptr;
    T *o = out + row * n;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float v = ci_ld(xr, i);
        if (rr) {
            v = ci_round(v + ci_ld(rr, i), rr);
            ci_st(rr, i, v);
        }
        ss += v * v;
    }
    ss = ci_block_sum(ss, red);
    float inv = rsqrtf(ss / (float)n + eps);
    const T *src = rr ? rr : xr;
    /* without a residual, out may alias x: each element is read then
     * written by the same thread */
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ci_st(o, i, w[i] * (ci_ld(src, i) * inv));
}

extern "C" int ci_cu_rmsnorm(ci_cu_stream st, int bf16, const void *x, void *res, const float *w,
                             int64_t rows, int64_t n, float eps, void *out) {
    if (rows <= 0) return cudaSuccess;
    int th = n >= 1024 ? 512 : (n >= 256 ? 256 : 128);
    CI_CU_DISPATCH(bf16, rmsnorm_kernel<T><<<(unsigned)rows, th, 0, st>>>(
                             (const T *)x, (T *)res, w, n, eps, (T *)out));
    return cudaGetLastError();
}

template <typename T>
__global__ void qk_norm_kernel(T *qkv, int T_, int H, int KV, int hd, const float *__restrict__ wq,
                               const float *__restrict__ wk, float eps) {
    int warps = blockDim.x >> 5, lane = threadIdx.x & 31;
    int64_t item = (int64_t)blockIdx.x * warps + (threadIdx.x >> 5);
    int nh = H + KV;
    if (item >= (int64_t)T_ * nh) return;
    int64_t t = item / nh;
    int h = (int)(item % nh);
    T *p = qkv + t * (int64_t)(H + 2 * KV) * hd + (int64_t)h * hd;
    const float *w = h < H ? wq : wk;
    float ss = 0.0f;
    for (int i = lane; i < hd; i += 32) {
        float v = ci_ld(p, i);
        ss += v * v;
    }
    ss = ci_warp_sum(ss);
    float inv = rsqrtf(ss / (float)hd + eps);
    for (int i = lane; i < hd; i += 32) ci_st(p, i, w[i] * (ci_ld(p, i) * inv));
}

extern "C" int ci_cu_qk_norm(ci_cu_stream st, int bf16, void *qkv, int ntok, int H, int KV, int hd,
                             const float *wq, const float *wk, float eps) {
    if (ntok <= 0) return cudaSuccess;
    int64_t items = (int64_t)ntok * (H + KV);
    unsigned blocks = (unsigned)((items + 3) / 4);
    CI_CU_DISPATCH(bf16, qk_norm_kernel<T><<<blocks, 128, 0, st>>>((T *)qkv, ntok, H, KV, hd, wq, wk,
                                                                   eps));
    return cudaGetLastError();
}
