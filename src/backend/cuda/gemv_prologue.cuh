/* gemv_prologue.cuh — the fused matmul's prologue for GEMVs that stage x in
 * shared memory once per CTA (cuda_gemv.cu's BF16 GEMV; the FP8 / INT8
 * tensor-core GEMV through ci_norm_stage_exact): instead of copying x, the
 * CTA computes the product's input from it, so a decode step's RMSNorm and
 * SwiGLU need no kernel of their own.
 *
 * The arithmetic is the standalone kernels' (cuda_norm.cu's
 * rmsnorm_vec_kernel, cuda_elementwise.cu's swiglu_vec_kernel): f32 math,
 * each value rounded to BF16 as they store it. The norm's sum of squares
 * is each thread's 16-byte vectors t, t + blockDim, ... in order, then
 * ci_block_sum: the standalone kernel's order whenever it runs one vector
 * (or the same vectors) per thread, so the values are bit-identical there
 * (Llama-3-8B's 4096: 512 threads of one vector in both). Each CTA reads
 * x (and the norm weights) from L2: n x K x 2 (+ 4 K) bytes. */
#ifndef CINFER_BACKEND_CUDA_GEMV_PROLOGUE_CUH
#define CINFER_BACKEND_CUDA_GEMV_PROLOGUE_CUH

#include "backend/cuda/cuda_common.cuh"

/* The prologues without a reduction: x's N rows [N][K] as they are
 * (CI_CU_PRO_NONE), or SwiGLU of [N][2K] (CI_CU_PRO_SWIGLU), emit(e, v) for
 * each 16-byte vector e of the output, the block's threads sharing them. */
template <int N, typename Emit>
__device__ __forceinline__ void ci_pro_stage_plain(int pro, const __nv_bfloat16 *x, int K,
                                                   Emit emit) {
    const int kv = K / 8;
    const uint4 *xg = (const uint4 *)x;
    if (pro == CI_CU_PRO_SWIGLU) {
        for (int e = threadIdx.x; e < N * kv; e += blockDim.x) {
            const int n = e / kv, i = e - n * kv;
            const uint4 g = xg[(int64_t)n * 2 * kv + i], u = xg[(int64_t)n * 2 * kv + kv + i];
            emit(e, ci_swiglu8(g, u));
        }
        return;
    }
    for (int e = threadIdx.x; e < N * kv; e += blockDim.x)
        emit(e, xg[e]);
}

/* The prologue of a CTA: pre() before the PDL wait loads the thread's norm
 * weights (constant data) into registers, so after the wait a norm costs
 * one read of x (kept in registers: VMAX vectors per thread, K <= 8 VMAX
 * blockDim) and the block's sum, the same round trip as copying x. Larger K
 * takes a loop that reads x twice. */
template <int N, int VMAX> struct ci_pro {
    float w[VMAX][8];

    __device__ __forceinline__ void pre(const ci_cu_fuse &f, int K) {
        const int kv = K / 8;
        if (f.pro != CI_CU_PRO_RMSNORM || kv > VMAX * (int)blockDim.x) return;
#pragma unroll
        for (int k = 0; k < VMAX; k++) {
            const int i = threadIdx.x + k * blockDim.x;
            if (i < kv) ci_ldg_f32x8(f.norm_w + (int64_t)i * 8, w[k]);
        }
    }

    /* For each 16-byte vector e of the input [N][K / 8] (BF16), emit(e, v)
     * with its 8 values; the block's threads share the vectors. x is [N][K]
     * (NONE, RMSNORM) or [N][2K] (SWIGLU); red: 32 floats of shared memory.
     * The caller synchronizes before reading what emit wrote. */
    template <typename Emit>
    __device__ __forceinline__ void stage(const ci_cu_fuse &f, const __nv_bfloat16 *x, int K,
                                          float *red, Emit emit) {
        const int kv = K / 8;
        const uint4 *xg = (const uint4 *)x;
        if (f.pro != CI_CU_PRO_RMSNORM) {
            ci_pro_stage_plain<N>(f.pro, x, K, emit);
            return;
        }
        if (kv <= VMAX * (int)blockDim.x) { /* x in registers, weights from pre() */
            uint4 xr[N][VMAX];
            float ss[N];
#pragma unroll
            for (int n = 0; n < N; n++) {
                ss[n] = 0.0f;
#pragma unroll
                for (int k = 0; k < VMAX; k++) {
                    const int i = threadIdx.x + k * blockDim.x;
                    xr[n][k] = i < kv ? xg[(int64_t)n * kv + i] : make_uint4(0, 0, 0, 0);
                }
            }
#pragma unroll
            for (int n = 0; n < N; n++) {
#pragma unroll
                for (int k = 0; k < VMAX; k++) {
                    float v[8];
                    ci_bf16x8(xr[n][k], v);
#pragma unroll
                    for (int j = 0; j < 8; j++)
                        ss[n] += v[j] * v[j];
                }
                ss[n] = ci_block_sum(ss[n], red);
                const float inv = rsqrtf(ss[n] / (float)K + f.eps);
#pragma unroll
                for (int k = 0; k < VMAX; k++) {
                    const int i = threadIdx.x + k * blockDim.x;
                    if (i < kv) {
                        float v[8];
                        ci_bf16x8(xr[n][k], v);
                        emit(n * kv + i, ci_norm8(v, w[k], inv));
                    }
                }
            }
            return;
        }
        for (int n = 0; n < N; n++) {
            float ss = 0.0f;
            for (int i = threadIdx.x; i < kv; i += blockDim.x) {
                float v[8];
                ci_bf16x8(xg[(int64_t)n * kv + i], v);
#pragma unroll
                for (int j = 0; j < 8; j++)
                    ss += v[j] * v[j];
            }
            ss = ci_block_sum(ss, red);
            const float inv = rsqrtf(ss / (float)K + f.eps);
            for (int i = threadIdx.x; i < kv; i += blockDim.x) {
                float v[8], wv[8];
                ci_bf16x8(xg[(int64_t)n * kv + i], v);
                ci_ldg_f32x8(f.norm_w + (int64_t)i * 8, wv);
                emit(n * kv + i, ci_norm8(v, wv, inv));
            }
        }
    }
};

/* RMSNorm of the N rows of x [N][K] with rmsnorm_vec_kernel's arithmetic bit
 * for bit at any blockDim (a warp multiple): that kernel's thread mapping
 * (vpt vectors a thread, K / 8 / vpt threads: ci_cu_rmsnorm_vpt) is run by
 * virtual threads, real warp w summing virtual warps w, w + warps, ... with
 * the standalone's order inside each, so every warp sum, the block's total
 * and each value are the standalone's. emit(e, v) as ci_pro::stage; red: 32
 * floats of shared memory; the caller synchronizes before reading. */
template <int N, typename Emit>
__device__ __forceinline__ void ci_norm_stage_exact(const __nv_bfloat16 *x, int K, int vpt,
                                                    const float *norm_w, float eps, float *red,
                                                    Emit emit) {
    const int kv = K / 8, ts = kv / vpt, nws = ts / 32;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int n = 0; n < N; n++) {
        const uint4 *xr = (const uint4 *)x + (int64_t)n * kv;
        __syncthreads(); /* red may still be read for the row before */
        for (int vw = warp; vw < nws; vw += nw) {
            const int v = 32 * vw + lane;
            float ss = 0.0f;
            for (int k = 0; k < vpt; k++) {
                float f[8];
                ci_bf16x8(xr[v + k * ts], f);
#pragma unroll
                for (int j = 0; j < 8; j++)
                    ss += f[j] * f[j];
            }
            ss = ci_warp_sum(ss);
            if (lane == 0) red[vw] = ss;
        }
        __syncthreads();
        const float tot = ci_warp_sum(lane < nws ? red[lane] : 0.0f);
        const float inv = rsqrtf(tot / (float)K + eps);
        for (int i = threadIdx.x; i < kv; i += blockDim.x) {
            float f[8], wv[8];
            ci_bf16x8(xr[i], f);
            ci_ldg_f32x8(norm_w + (int64_t)i * 8, wv);
            emit(n * kv + i, ci_norm8(f, wv, inv));
        }
    }
}

/* The deferred RMSNorm of the tensor-core GEMVs (CI_CU_PRO_RMSNORM_DEFER):
 * RMSNorm(x) . W^T = (x * norm_w) . W^T / rms(x), so the staging hands
 * emit(e, v) the 8 values x * norm_w of vector e of [N][K / 8] and each
 * warp's sum of x^2 goes to red[n * warps + warp] (the caller synchronizes);
 * ci_defer_inv then gives token n's 1 / rms, every CTA summing in one
 * order. No reduction before the first product: the sum rides along with
 * the staging and scales the products' sums.
 *
 * batch (the default; CINFER_DEFER_BATCH=0 turns it off): each thread's
 * vectors two at a time, x of both loaded before either is used, so staging
 * K = 4096 with 256 threads is one L2 round trip after the PDL wait where
 * the loop of one vector can take two; the same sums in the same order
 * either way, so the values are identical. With ci_defer_pre before the
 * wait, the norm weights come from L1. */
__device__ __forceinline__ void ci_defer_pre(const float *norm_w, int K) {
    for (int i = threadIdx.x; i < K / 8; i += blockDim.x)
        asm volatile("prefetch.global.L1 [%0];" ::"l"(norm_w + (int64_t)i * 8));
}
template <int N, typename Emit>
__device__ __forceinline__ void ci_defer_stage(const __nv_bfloat16 *x, int K, const float *norm_w,
                                               float *red, Emit emit, bool batch) {
    const int kv = K / 8, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    const uint4 *xg = (const uint4 *)x;
    /* vector i of every token (xv[n]): x * norm_w emitted, x^2 summed into ss[] */
    auto one = [&](int i, const uint4 *xv, float *ss) {
        float wv[8];
        ci_ldg_f32x8(norm_w + (int64_t)i * 8, wv);
#pragma unroll
        for (int n = 0; n < N; n++) {
            float f[8];
            ci_bf16x8(xv[n], f);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                ss[n] = fmaf(f[j], f[j], ss[n]);
                f[j] *= wv[j];
            }
            emit(n * kv + i, f);
        }
    };
    float ss[N];
#pragma unroll
    for (int n = 0; n < N; n++)
        ss[n] = 0.0f;
    if (batch) { /* x's loads first (the norm weights: L1 hits after ci_defer_pre) */
        const int bd = blockDim.x;
        for (int i = threadIdx.x; i < kv; i += 2 * bd) {
            const bool two = i + bd < kv;
            uint4 xa[N], xb[N];
#pragma unroll
            for (int n = 0; n < N; n++) {
                xa[n] = xg[(int64_t)n * kv + i];
                if (two) xb[n] = xg[(int64_t)n * kv + i + bd];
            }
            one(i, xa, ss);
            if (two) one(i + bd, xb, ss);
        }
    } else {
        for (int i = threadIdx.x; i < kv; i += blockDim.x) {
            uint4 xv[N];
#pragma unroll
            for (int n = 0; n < N; n++)
                xv[n] = xg[(int64_t)n * kv + i];
            one(i, xv, ss);
        }
    }
#pragma unroll
    for (int n = 0; n < N; n++) {
        const float s = ci_warp_sum(ss[n]);
        if (lane == 0) red[n * warps + warp] = s;
    }
}
template <int W>
__device__ __forceinline__ float ci_defer_inv(const float *red, int n, int K, float eps) {
    float ss = 0.0f;
#pragma unroll
    for (int w = 0; w < W; w++)
        ss += red[n * W + w];
    return rsqrtf(ss / (float)K + eps);
}

#endif
