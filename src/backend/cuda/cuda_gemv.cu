/* cuda_gemv.cu — y[n][out] = x[n][in] . W[out][in]^T (+ bias) for n <= 2
 * rows (decode at small batch), BF16 weights and activations, f32
 * accumulation, BF16 or F32 output.
 *
 * At n <= 2 the product is a stream over W (out x in x 2 bytes) with a few
 * flops per byte: memory bound, so the kernel is built to keep HBM busy.
 * cuBLASLt's small-n kernels reached 1.7-2.8 TB/s on Llama-3-8B's decode
 * shapes (split-K adds a reduction kernel for some); this one streams each
 * weight row once:
 *   - x (n x in BF16, <= 200 KiB) is staged in shared memory once per CTA;
 *   - one warp per output row (grid-stride over rows), each lane loading
 *     16-byte pieces of the row, UNROLL loads in flight before any math, with
 *     the evict-first hint (weights are read once per step);
 *   - per piece, 8 multiply-adds per x row in f32; a warp shuffle sum; lane 0
 *     adds the bias and stores.
 * Fused (ci_cu_fuse): the staging computes the RMSNorm or SwiGLU of x
 * (gemv_prologue.cuh) and lane 0 adds its result into y (the residual).
 * The rope epilogue (EPI, the qkv projection of a decode step) gives each
 * CTA the 16 rows of 8 rotation pairs of one head, rotates them through
 * shared memory and writes k / v to the KV cache: rope_cache's kernel and
 * its launch drop out of the layer.
 * Bytes: out x in x 2 (+ x per CTA from L2). Roofline: ~3.0 TB/s. */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/gemv_prologue.cuh"
#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/rope_epi.cuh"

#include <string.h>

#include <type_traits>

#define GEMV_WARPS 16
#define GEMV_UNROLL 8

__device__ __forceinline__ void fma8(const uint4 &w, const uint4 &x, float &acc) {
    const __nv_bfloat162 *wh = (const __nv_bfloat162 *)&w;
    const __nv_bfloat162 *xh = (const __nv_bfloat162 *)&x;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 a = __bfloat1622float2(wh[i]), b = __bfloat1622float2(xh[i]);
        acc = fmaf(a.x, b.x, acc);
        acc = fmaf(a.y, b.y, acc);
    }
}

/* The rope epilogue's row of (CTA, warp): the CTA holds head `head`'s
 * 8 rotation pairs j * 8 .. j * 8 + 7, warp w is pair i's first or second
 * row; its partner warp holds the other. GPT-J pairs are adjacent rows. */
struct ci_rope_row {
    int head, dim, i, partner;
    bool first;
    __device__ __forceinline__ ci_rope_row(const ci_cu_rope_epi &r, int cta, int w) {
        const int P = r.hd / 16, j = cta % P;
        head = cta / P;
        if (r.neox) {
            i = j * 8 + (w & 7);
            first = w < 8;
            dim = i + (first ? 0 : r.hd / 2);
            partner = w ^ 8;
        } else {
            dim = j * 16 + w;
            i = dim >> 1;
            first = !(w & 1);
            partner = w ^ 1;
        }
    }
};

/* PRO: the prologue (CI_CU_PRO_*), a template argument so that the plain
 * GEMV carries none of its registers (the norm's in registers would take
 * the kernel past 64 and to one CTA per SM: measured 5% slower steps).
 * EPI: 0, or the rope epilogue with a BF16 (1) or E4M3 (2) cache. */
template <int N, typename OutT, int PRO, int EPI>
__global__ void __launch_bounds__(GEMV_WARPS * 32, 2) /* <= 64 registers: 2 CTAs per SM */
    gemv_kernel(const __nv_bfloat16 *__restrict__ W, const __nv_bfloat16 *__restrict__ x, int in,
                int out, const float *__restrict__ bias, OutT *__restrict__ y, ci_cu_fuse f) {
    f.pro = PRO;
    extern __shared__ uint4 xs[]; /* [N][in / 8] */
    __shared__ float red[32];
    const int kv = in / 8;        /* 16-byte pieces per row */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    /* EPI: one row per warp (grid = out / 16), mapped by ci_rope_row; the
     * products meet in ys, the token's cos / sin and slot are read before
     * the PDL wait (a constant table and host uploads) into rcs / rslot */
    __shared__ float ys[EPI ? N : 1][GEMV_WARPS];
    __shared__ float2 rcs[EPI ? N : 1][GEMV_WARPS];
    __shared__ int rslot[EPI ? N : 1];
    int row0 = blockIdx.x * GEMV_WARPS + warp;
    if constexpr (EPI != 0) {
        const ci_rope_row rr(f.rope, blockIdx.x, warp);
        row0 = rr.head * f.rope.hd + rr.dim;
        if (lane < N && rr.head < f.rope.H + f.rope.KV) {
            const float *cs = f.rope.cos_sin + (int64_t)f.rope.positions[lane] * f.rope.hd;
            rcs[lane][warp] = make_float2(__ldg(cs + rr.i), __ldg(cs + f.rope.hd / 2 + rr.i));
        }
        if (threadIdx.x < N) rslot[threadIdx.x] = f.rope.slots[threadIdx.x];
    }
    uint4 wv[GEMV_UNROLL];
    auto load = [&](const uint4 *wr, int base) {
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            int idx = base + u * 32;
            wv[u] = idx < kv ? __ldcs(wr + idx) : make_uint4(0, 0, 0, 0);
        }
    };
    /* the warp's first loads are issued before the PDL wait (weights are
     * constant): they stream while the previous kernel finishes */
    bool have = false;
    if (row0 < out) {
        load((const uint4 *)(W + (int64_t)row0 * in), lane);
        have = true;
    }
    ci_pro<N, 1> pro;
    pro.pre(f, in); /* the norm weights too */
    ci_pdl_trigger();
    ci_pdl_wait();
    pro.stage(f, x, in, red, [&](int e, uint4 v) { xs[e] = v; });
    __syncthreads();
    for (int row = row0; row < out; row += gridDim.x * GEMV_WARPS) {
        const uint4 *wr = (const uint4 *)(W + (int64_t)row * in);
        float acc[N];
#pragma unroll
        for (int n = 0; n < N; n++) acc[n] = 0.0f;
        for (int base = lane; base < kv; base += 32 * GEMV_UNROLL) {
            if (!have) load(wr, base);
            have = false;
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++) {
                int idx = base + u * 32;
                if (idx < kv) {
#pragma unroll
                    for (int n = 0; n < N; n++) fma8(wv[u], xs[n * kv + idx], acc[n]);
                }
            }
        }
#pragma unroll
        for (int n = 0; n < N; n++) {
            float v = ci_warp_sum(acc[n]);
            if (lane != 0) continue;
            v = bias ? v + bias[row] : v;
            if constexpr (EPI != 0)
                ys[n][warp] = ci_round(v, y); /* the stored product rope_cache would read */
            else
                ci_st_out(y + (int64_t)n * out, row, v, f.acc);
        }
    }
    if constexpr (EPI != 0) {
        using TC = typename std::conditional<EPI == 2, uint8_t, __nv_bfloat16>::type;
        __syncthreads();
        const ci_cu_rope_epi &r = f.rope;
        const ci_rope_row rr(r, blockIdx.x, warp);
        if (lane < N && row0 < out) {
            const int n = lane;
            ci_rope_epi_put<TC>(r, rr.head, rr.dim, rr.first, ys[n][warp], ys[n][rr.partner],
                                rcs[n][warp].x, rcs[n][warp].y, y + (int64_t)n * out, row0,
                                rslot[n]);
        }
    }
}

template <int N, typename OutT, int PRO, int EPI = 0>
static int launch(ci_cu_stream st, const void *W, const void *x, int in, int out, const float *bias,
                  void *y, int num_sms, const ci_cu_fuse &f) {
    size_t smem = (size_t)N * in * 2;
    const cudaError_t e = ci_cu_smem_optin(gemv_kernel<N, OutT, PRO, EPI>, smem);
    if (e != cudaSuccess) return e;
    /* one row per warp up to 4 CTAs per SM, then grid-stride (amortizes
     * the x staging on tall matrices); the rope epilogue: one row per warp */
    int64_t want = ((int64_t)out + GEMV_WARPS - 1) / GEMV_WARPS;
    if (!EPI && want > (int64_t)num_sms * 4) want = (int64_t)num_sms * 4;
    ci_cu_launch(gemv_kernel<N, OutT, PRO, EPI>, (unsigned)want, GEMV_WARPS * 32, smem, st,
                 (const __nv_bfloat16 *)W, (const __nv_bfloat16 *)x, in, out, bias, (OutT *)y, f);
    return cudaGetLastError();
}

/* BF16 y: the epilogue's instantiation */
template <int N, int PRO>
static int launch_epi(ci_cu_stream st, const void *W, const void *x, int in, int out,
                      const float *bias, void *y, int num_sms, const ci_cu_fuse &f) {
    using B = __nv_bfloat16;
    if (!f.rope.on) return launch<N, B, PRO>(st, W, x, in, out, bias, y, num_sms, f);
    return f.rope.kv_fp8 ? launch<N, B, PRO, 2>(st, W, x, in, out, bias, y, num_sms, f)
                         : launch<N, B, PRO, 1>(st, W, x, in, out, bias, y, num_sms, f);
}

template <int N>
static int launch_n(ci_cu_stream st, int f32_out, const void *W, const void *x, int in, int out,
                    const float *bias, void *y, int num_sms, const ci_cu_fuse &f) {
    if (f32_out) /* the logits GEMM: no prologue, no epilogue */
        return f.pro == CI_CU_PRO_NONE && !f.rope.on
                   ? launch<N, float, CI_CU_PRO_NONE>(st, W, x, in, out, bias, y, num_sms, f)
                   : (int)cudaErrorInvalidValue;
    switch (f.pro) {
    case CI_CU_PRO_RMSNORM:
        return launch_epi<N, CI_CU_PRO_RMSNORM>(st, W, x, in, out, bias, y, num_sms, f);
    case CI_CU_PRO_SWIGLU:
        return launch_epi<N, CI_CU_PRO_SWIGLU>(st, W, x, in, out, bias, y, num_sms, f);
    }
    return launch_epi<N, CI_CU_PRO_NONE>(st, W, x, in, out, bias, y, num_sms, f);
}

extern "C" int ci_cu_gemv_ok(int n, int64_t in) {
    return n >= 1 && n <= CI_CU_GEMV_MAX_N && in % 8 == 0 && in > 0 &&
           (int64_t)n * in * 2 <= 200 * 1024;
}

extern "C" int ci_cu_gemv_fuse_ok(int n, int64_t in, int64_t out, const void *x,
                                  const ci_cu_fuse *f) {
    /* x staged in 16-byte vectors; the norm weights read 32 bytes at a time */
    if (!ci_cu_gemv_ok(n, in) || ((uintptr_t)x & 15) != 0 ||
        (f && f->pro == CI_CU_PRO_RMSNORM && ((uintptr_t)f->norm_w & 15)))
        return 0;
    if (!f || !f->rope.on) return 1;
    const ci_cu_rope_epi &r = f->rope; /* whole heads of 8 pairs per CTA; no add into y */
    return !f->acc && r.hd > 0 && r.hd % 16 == 0 && r.H > 0 && r.KV > 0 && r.bs > 0 &&
           out == (int64_t)(r.H + 2 * r.KV) * r.hd && out / GEMV_WARPS <= INT32_MAX;
}

extern "C" int ci_cu_gemv(ci_cu_stream st, int f32_out, const void *W, const void *x, int n, int in,
                          int out, const float *bias, void *y, int num_sms, const ci_cu_fuse *fp) {
    if (!ci_cu_gemv_fuse_ok(n, in, out, x, fp)) return cudaErrorInvalidValue;
    ci_cu_fuse f;
    if (fp) {
        f = *fp;
    } else {
        memset(&f, 0, sizeof f);
        f.pro = CI_CU_PRO_NONE;
    }
    if (n == 1) return launch_n<1>(st, f32_out, W, x, in, out, bias, y, num_sms, f);
    if (n == 2) return launch_n<2>(st, f32_out, W, x, in, out, bias, y, num_sms, f);
    return cudaErrorInvalidValue;
}
