/* cuda_norm.cu — RMSNorm kernels.
 *
 * rmsnorm (fused residual add): one CTA per row. Pass 1: r = x + res (the
 *   sum rounded to the activation type, as HF stores it), written back to
 *   res, sum of squares in f32; block reduction; pass 2 re-reads r (the CTA's
 *   own writes) and writes out = w * r * rsqrt(mean + eps). out may alias x:
 *   x is only read before the reduction's barrier. Moves 4 (3 without the
 *   residual) x n x elt per row: memory bound.
 * rmsnorm_qact: the same (BF16) with the normalized row quantized to E4M3
 *   from registers (qact.cuh) instead of stored: the input of a W8A8 GEMM in
 *   one pass over the row (the unfused pair stores it, then reads it twice).
 * qk_norm (Qwen3): one warp per (token, head) over the q and k heads of the
 *   fused qkv row, in place; weights [head_dim] F32. */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/qact.cuh"

template <typename T>
__global__ void rmsnorm_kernel(const T *x, T *res, const float *__restrict__ w, int64_t n,
                               float eps, T *out) {
    ci_pdl_trigger();
    ci_pdl_wait();
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

/* BF16 rows of n = 8 x VPT x blockDim.x elements (VPT 16-byte vectors per
 * thread): every element is loaded once, with 16-byte loads, and kept in
 * registers between the two passes, so a row costs one round trip to memory
 * instead of a loop of dependent scalar loads (a decode step's single row
 * is pure latency). Same arithmetic as rmsnorm_kernel. Q8: the output row
 * goes to q8 as E4M3 codes instead (rows >= `rows`: q8's padding). */
template <int VPT, bool Q8>
__global__ void rmsnorm_vec_kernel(const __nv_bfloat16 *x, __nv_bfloat16 *res,
                                   const float *__restrict__ w, int64_t n, float eps,
                                   __nv_bfloat16 *out, ci_qact_out q8, int rows) {
    /* the weights are constant: loaded before the PDL wait, off the
     * critical path of a decode step's single row */
    float wv[VPT][8];
#pragma unroll
    for (int k = 0; k < VPT; k++)
        ci_ldg_f32x8(w + (int64_t)(threadIdx.x + k * blockDim.x) * 8, wv[k]);
    ci_pdl_trigger();
    ci_pdl_wait();
    __shared__ float red[32];
    int64_t row = blockIdx.x;
    if (Q8 && row >= rows) {
        ci_qact_pad_row(q8, (int)row);
        return;
    }
    const uint4 *xr = (const uint4 *)(x + row * n);
    uint4 *rr = res ? (uint4 *)(res + row * n) : nullptr;
    float v[VPT][8];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < VPT; k++) {
        int i = threadIdx.x + k * blockDim.x;
        ci_bf16x8(xr[i], v[k]);
        if (rr) {
            float b[8];
            ci_bf16x8(rr[i], b);
#pragma unroll
            for (int j = 0; j < 8; j++)
                v[k][j] = __bfloat162float(__float2bfloat16_rn(v[k][j] + b[j]));
            uint4 r;
            __nv_bfloat162 *rh = (__nv_bfloat162 *)&r;
#pragma unroll
            for (int j = 0; j < 4; j++) rh[j] = __floats2bfloat162_rn(v[k][2 * j], v[k][2 * j + 1]);
            rr[i] = r;
        }
#pragma unroll
        for (int j = 0; j < 8; j++) ss += v[k][j] * v[k][j];
    }
    ss = ci_block_sum(ss, red);
    float inv = rsqrtf(ss / (float)n + eps);
    if constexpr (Q8) {
#pragma unroll
        for (int k = 0; k < VPT; k++) { /* the values a store would keep */
            const uint4 b = ci_norm8(v[k], wv[k], inv);
            ci_bf16x8(b, v[k]);
        }
        ci_qact_regs<VPT>(v, q8, (int)row, red);
    } else {
        uint4 *o = (uint4 *)(out + row * n);
#pragma unroll
        for (int k = 0; k < VPT; k++)
            o[threadIdx.x + k * blockDim.x] = ci_norm8(v[k], wv[k], inv);
    }
}

/* the vectors per thread of rmsnorm_vec_kernel for rows of n BF16 (0: it
 * cannot take them): blockDim = n / 8 / VPT, a warp multiple <= 1024 */
static int rmsnorm_vpt(int64_t n, const float *w) {
    if (n % 8 || ((uintptr_t)w & 15)) return 0;
    const int64_t vecs = n / 8;
    for (int vpt = 1; vpt <= 4; vpt *= 2)
        if (vecs % vpt == 0 && (vecs / vpt) % 32 == 0 && vecs / vpt <= 1024) return vpt;
    return 0;
}

template <bool Q8>
static void rmsnorm_vec_launch(ci_cu_stream st, int vpt, const void *x, void *res, const float *w,
                               int64_t rows, int64_t n, float eps, void *out, ci_qact_out q8,
                               int grid) {
    const unsigned th = (unsigned)(n / 8 / vpt);
    const __nv_bfloat16 *xb = (const __nv_bfloat16 *)x;
    __nv_bfloat16 *rb = (__nv_bfloat16 *)res, *ob = (__nv_bfloat16 *)out;
    if (vpt == 1)
        ci_cu_launch(rmsnorm_vec_kernel<1, Q8>, (unsigned)grid, th, 0, st, xb, rb, w, n, eps, ob,
                     q8, (int)rows);
    else if (vpt == 2)
        ci_cu_launch(rmsnorm_vec_kernel<2, Q8>, (unsigned)grid, th, 0, st, xb, rb, w, n, eps, ob,
                     q8, (int)rows);
    else
        ci_cu_launch(rmsnorm_vec_kernel<4, Q8>, (unsigned)grid, th, 0, st, xb, rb, w, n, eps, ob,
                     q8, (int)rows);
}

extern "C" int ci_cu_rmsnorm_vpt(int64_t n, const float *w) {
    return rmsnorm_vpt(n, w);
}

extern "C" int ci_cu_rmsnorm(ci_cu_stream st, int bf16, const void *x, void *res, const float *w,
                             int64_t rows, int64_t n, float eps, void *out) {
    if (rows <= 0) return cudaSuccess;
    const int vpt = bf16 ? rmsnorm_vpt(n, w) : 0;
    if (vpt && rows <= INT32_MAX) {
        rmsnorm_vec_launch<false>(st, vpt, x, res, w, rows, n, eps, out, ci_qact_out{}, (int)rows);
        return cudaGetLastError();
    }
    int th = n >= 1024 ? 512 : (n >= 256 ? 256 : 128);
    CI_CU_DISPATCH(bf16, ci_cu_launch(rmsnorm_kernel<T>, (unsigned)rows, th, 0, st, (const T *)x,
                                      (T *)res, w, n, eps, (T *)out));
    return cudaGetLastError();
}

extern "C" int ci_cu_rmsnorm_qact_ok(int64_t n, const float *w, int group) {
    return rmsnorm_vpt(n, w) && n <= INT32_MAX && (group == n || (group == 128 && n % 128 == 0));
}

extern "C" int ci_cu_rmsnorm_qact(ci_cu_stream st, const void *x, void *res, const float *w,
                                  int rows, int64_t n, float eps, int group, int n_pad,
                                  uint8_t *xq, float *scales, float fixed, int i8) {
    if (rows <= 0 || n_pad < rows || !ci_cu_rmsnorm_qact_ok(n, w, group) || ((uintptr_t)xq & 7))
        return cudaErrorInvalidValue;
    rmsnorm_vec_launch<true>(st, rmsnorm_vpt(n, w), x, res, w, rows, n, eps, NULL,
                             ci_qact_out{xq, scales, (int)n, n_pad, group, fixed, i8}, n_pad);
    return cudaGetLastError();
}

template <typename T>
__global__ void qk_norm_kernel(T *qkv, int T_, int H, int KV, int hd, const float *__restrict__ wq,
                               const float *__restrict__ wk, float eps) {
    ci_pdl_trigger();
    ci_pdl_wait();
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
    CI_CU_DISPATCH(bf16, ci_cu_launch(qk_norm_kernel<T>, blocks, 128, 0, st, (T *)qkv, ntok, H, KV,
                                      hd, wq, wk, eps));
    return cudaGetLastError();
}
