/* cuda_qgemv_int4_fused.cu — the INT4 tensor-core GEMV of a decode step's
 * normed projections (q|k|v, gate|up) with the layer's small kernels inside
 * it: the RMSNorm deferred to a scale of the sums, and the rope or the SwiGLU
 * epilogue. y[n][..] = epilogue(RMSNorm(x) . W^T), n <= 2, BF16 x and y,
 * GPTQ / AWQ-style INT4 in the tiled layout (cuda_qweight.c), no act order.
 *
 * The arithmetic per tile is cuda_qmatmul.cu's tc kernel's (qt_tile: nibble
 * pairs as bf16 q - zero, mma.m16n8k16 with f32 sums, the group scale per
 * tile), but x is staged once per CTA in shared memory as BF16(x * norm_w)
 * while each thread sums x^2 (ci_defer_stage); the sums of token n are then
 * scaled by its 1 / rms (ci_defer_inv). The plain tc kernel reads x from L2
 * per tile and stages nothing, so its layer ran RMSNorm, rope_cache and
 * SwiGLU as kernels of their own (5 µs a layer of a 61 µs INT4 step on the
 * H200, docs/benchmarks.md); here a layer is the 5 kernels of the 8-bit one
 * (cuda_qgemv_fp8.cu).
 *
 * Rows: a CTA computes 16 rows as the tc kernel does, as two halves of 8
 * (the tiled layout's 512-byte halves of a tile, rows 0..7 and 8..15 of a
 * 16-row block). Plain (EPI 0): the halves of block c. SwiGLU (EPI 3): gate
 * rows 8c .. 8c + 7 and the up rows rows / 2 + 8c .., so the CTA holds both
 * halves of 8 units and writes silu(g) * u as swiglu_vec_kernel does. Rope
 * (EPI 1 / 2: a BF16 / E4M3 cache; neox rotation only): the 8 pairs of
 * ci_rope_rows, dims 8j .. 8j + 7 of a head and the same + hd / 2, each an
 * 8-row half of some block.
 *
 * Two shapes: the tc kernel's (8 warps, 4 rolling tile slots each; the
 * default) and tc2's (4 warps, double-buffered; CINFER_QFUSE_TC2, for the
 * next measurement: gate|up's fused kernel runs 2 CTAs an SM at 102
 * registers where tc2 ran 5, docs/kernels/qmatmul.md). */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/gemv_prologue.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/qgemv_epi.cuh"
#include "backend/cuda/qgemv_tc.cuh"
#include "backend/cuda/rope_epi.cuh"
#include "util/qweight.h"

#include <stdlib.h>

#define QF_WARPS 8
#define QF_U 4      /* tiles in flight per warp, rolling */
#define QF2_WARPS 4 /* TWO: tc2's shape, each warp's tiles double-buffered two at a time */

/* the 8 consecutive rows starting at row r0 (8-aligned) as a half of the
 * tiled layout's 16-row block: tile kt's 16 bytes of the lane's row are
 * p[64 kt] */
__device__ __forceinline__ const uint4 *qf_half(const ci_qweight &w, int64_t r0, int g, int t) {
    return (const uint4 *)(w.q + (r0 & ~(int64_t)15) * (w.cols / 2)) + ((r0 >> 3) & 1) * 32 +
           (g & 7) * 4 + t;
}

struct qf_item {
    uint4 a, b;
    uint32_t za, zb;
    float sa, sb;
};

/* TWO: 4 warps a CTA whose tiles are double-buffered two at a time (the
 * tc2 kernel's shape: more CTAs an SM, each staging with fewer threads),
 * else 8 warps with QF_U rolling slots (the tc kernel's; deeper shapes were
 * measured and dropped: docs/kernels/qmatmul.md) */
/* MB (EPI 0 or 3, the tc shape, K / 128 a multiple of QF_WARPS * QF_U): the
 * CTA takes bpc consecutive 16-row blocks with x staged once, each slot's
 * next tile the next block's once this block's are used (as the 8-bit
 * GEMV's MB build; qf_launch) */
/* WPB (EPI 0 or 3, the tc shape, K / 128 a multiple of QF_U): each warp
 * owns whole 16-row blocks, all their tiles through its QF_U rolling slots
 * (8 spilled 130-200 bytes at the 2-CTAs-an-SM cap), and
 * stores its rows from its own C fragment (SwiGLU: gate and up unit 8b + g
 * in one lane), blocks grid-striding over the warps: no barrier after the
 * staging (cuda_qgemv_fp8.cu's warp-owned-blocks build, the same reason) */
template <int N, int EPI, int MINB, bool TWO = false, bool MB = false, bool WPB = false>
__global__ void __launch_bounds__((TWO ? QF2_WARPS : QF_WARPS) * 32, MINB)
    qgemv_int4_fused_kernel(ci_qweight w, const __nv_bfloat16 *__restrict__ x,
                            const float *__restrict__ bias, __nv_bfloat16 *__restrict__ y,
                            int gshift, const float *__restrict__ norm_w, float eps,
                            ci_cu_rope_epi rope, int bpc, int batch) {
    constexpr int W = TWO ? QF2_WARPS : QF_WARPS;
    extern __shared__ uint4 xs[]; /* [N][K / 8]: BF16(x * norm_w) */
    __shared__ float red[W][16][N];
    __shared__ float nred[N * W];
    __shared__ float ys[16][N];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int K = (int)w.cols, out = (int)w.rows, tiles = K / 128, ng = (int)w.ngroups;
    /* the first row of each half: a (rows 0..7 of the CTA), b (8..15) */
    int64_t ha, hb;
    if constexpr (EPI == 3) {
        ha = 8 * (int64_t)blockIdx.x;
        hb = out / 2 + ha;
    } else if constexpr (EPI != 0) {
        const ci_rope_rows rr(rope, blockIdx.x);
        ha = rr.row(rope, 0);
        hb = rr.row(rope, 8);
    } else {
        ha = 16 * (int64_t)blockIdx.x;
        hb = ha + 8;
    }
    const uint4 *pa = qf_half(w, ha, g, t), *pb = qf_half(w, hb, g, t);
    const uint8_t *za = w.zeros + (ha + g) * ng, *zb = w.zeros + (hb + g) * ng;
    const float *sa = w.scales + (ha + g) * ng, *sb = w.scales + (hb + g) * ng;
    qf_item it[4]; /* QF_U rolling slots, or TWO's p0, p1, q0, q1 */
    /* slot u <- tile kt of the halves whose pieces start at a / b (zero
     * points c / d, scales e / f) */
    auto ld = [&](int u, const uint4 *a, const uint4 *b, const uint8_t *c, const uint8_t *d,
                  const float *e, const float *f, int kt) {
        const int gi = kt >> gshift;
        it[u].a = __ldcs(a + 64 * kt);
        it[u].b = __ldcs(b + 64 * kt);
        it[u].za = __ldg(c + gi);
        it[u].zb = __ldg(d + gi);
        it[u].sa = __ldg(e + gi);
        it[u].sb = __ldg(f + gi);
    };
    auto load = [&](int u, int kt) {
        if (kt < tiles) ld(u, pa, pb, za, zb, sa, sb, kt);
    };
    /* MB: block b's halves (first rows xa, xb as EPI 0 / 3 place them), the
     * tile kt of slot u */
    const int64_t b0 = MB ? (int64_t)blockIdx.x * bpc : 0, nblk = out / 16;
    auto halves = [&](int64_t b, int64_t &xa, int64_t &xb) {
        xa = EPI == 3 ? 8 * b : 16 * b;
        xb = EPI == 3 ? out / 2 + xa : xa + 8;
    };
    auto load_at = [&](int u, int64_t xa, int64_t xb, int kt) {
        ld(u, qf_half(w, xa, g, t), qf_half(w, xb, g, t), w.zeros + (xa + g) * ng,
           w.zeros + (xb + g) * ng, w.scales + (xa + g) * ng, w.scales + (xb + g) * ng, kt);
    };
    /* the first tiles before the PDL wait (weights are constant) */
    int64_t wb = (int64_t)blockIdx.x * W + warp; /* WPB: the warp's block */
    if constexpr (WPB) {
        if (wb < nblk) {
            int64_t xa, xb;
            halves(wb, xa, xb);
#pragma unroll
            for (int u = 0; u < QF_U; u++)
                load_at(u, xa, xb, u);
        }
    } else if constexpr (MB) {
        int64_t xa, xb;
        halves(b0, xa, xb);
#pragma unroll
        for (int u = 0; u < QF_U; u++)
            load_at(u, xa, xb, warp + u * W);
    } else {
#pragma unroll
        for (int u = 0; u < 4; u++)
            load(u, warp + u * W);
    }
    if (batch) ci_defer_pre(norm_w, K);
    ci_pdl_trigger();
    ci_pdl_wait();
    ci_defer_stage<N>(
        x, K, norm_w, nred,
        [&](int e, const float *f) {
            uint4 v;
            __nv_bfloat162 *h = (__nv_bfloat162 *)&v;
#pragma unroll
            for (int j = 0; j < 4; j++)
                h[j] = __floats2bfloat162_rn(f[2 * j], f[2 * j + 1]);
            xs[e] = v;
        },
        batch);
    __syncthreads();
    /* the lane's x: token g (N - 1 for lanes of tokens >= N: their C
     * columns are never stored), columns 128 kt + 32 t .. */
    const uint4 *xr = xs + (int64_t)min(g, N - 1) * (K / 8) + 4 * t;
    auto scale = [&](int n, float sum) { return sum * ci_defer_inv<W>(nred, n, K, eps); };
    float tot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    /* tot += tile kt's scaled sums (slot u) */
    auto step = [&](int u, int kt) {
        if (kt >= tiles) return;
        float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        qt_tile<true>(c, it[u].a, it[u].b, qt_zz((int)it[u].za), qt_zz((int)it[u].zb),
                      xr + 16 * kt);
        tot[0] = fmaf(it[u].sa, c[0], tot[0]);
        tot[1] = fmaf(it[u].sa, c[1], tot[1]);
        tot[2] = fmaf(it[u].sb, c[2], tot[2]);
        tot[3] = fmaf(it[u].sb, c[3], tot[3]);
    };
    if constexpr (WPB) { /* slot u holds the block's tiles m = u mod QF_U */
        static_assert(!TWO && !MB && (EPI == 0 || EPI == 3), "WPB: the tc shape, EPI 0 or 3");
        const int64_t stride = (int64_t)gridDim.x * W;
        for (; wb < nblk; wb += stride) {
            const bool more = wb + stride < nblk;
            int64_t xa, xb, na = 0, nb = 0;
            halves(wb, xa, xb);
            if (more) halves(wb + stride, na, nb);
            tot[0] = tot[1] = tot[2] = tot[3] = 0.0f;
            for (int m0 = 0; m0 < tiles; m0 += QF_U) {
#pragma unroll
                for (int u = 0; u < QF_U; u++) {
                    step(u, m0 + u);
                    if (m0 + QF_U < tiles)
                        load_at(u, xa, xb, m0 + u + QF_U);
                    else if (more)
                        load_at(u, na, nb, u);
                }
            }
#pragma unroll
            for (int h = 0; h < 2; h++) { /* c[h] / c[2 + h]: rows g / g + 8, token 2t + h */
                const int n = 2 * t + h;
                if (n >= N) break;
                const int64_t ra = xa + g, rb = xb + g;
                const float sa = scale(n, tot[h]), sb = scale(n, tot[2 + h]);
                const float a = ci_round(bias ? sa + bias[ra] : sa, y);
                const float c = ci_round(bias ? sb + bias[rb] : sb, y);
                if constexpr (EPI == 3) /* qt_epi's SwiGLU of the rounded products */
                    ci_st(y + (int64_t)n * (out / 2), 8 * wb + g, a / (1.0f + __expf(-a)) * c);
                else {
                    ci_st(y + (int64_t)n * out, ra, a);
                    ci_st(y + (int64_t)n * out, rb, c);
                }
            }
        }
        return;
    }
    if constexpr (MB) { /* the warp's nt tiles of each block; slot u holds tiles m = u mod QF_U */
        static_assert(!TWO && (EPI == 0 || EPI == 3), "MB: the tc shape, EPI 0 or 3");
        const int nt = tiles / W;
        for (int j = 0; j < bpc && b0 + j < nblk; j++) {
            const int64_t b = b0 + j;
            const bool more = j + 1 < bpc && b + 1 < nblk;
            int64_t xa, xb, na = 0, nb = 0;
            halves(b, xa, xb);
            if (more) halves(b + 1, na, nb);
            tot[0] = tot[1] = tot[2] = tot[3] = 0.0f;
            for (int m0 = 0; m0 < nt; m0 += QF_U) {
#pragma unroll
                for (int u = 0; u < QF_U; u++) {
                    const int kt = warp + (m0 + u) * W;
                    step(u, kt);
                    if (m0 + QF_U < nt)
                        load_at(u, xa, xb, kt + QF_U * W);
                    else if (more)
                        load_at(u, na, nb, warp + u * W);
                }
            }
            qt_epi<N, W, EPI>(
                red, ys, tot, [&](int lr) { return (lr < 8 ? xa : xb) + (lr & 7); }, scale, bias, y,
                out, rope, b);
        }
        return;
    }
    if constexpr (TWO) { /* item i: tile warp + 4 i; i, i + 1 used while i + 2, i + 3 load */
        for (int kt = warp; kt < tiles; kt += 4 * W) {
            step(0, kt);
            step(1, kt + W);
            load(0, kt + 4 * W);
            load(1, kt + 5 * W);
            step(2, kt + 2 * W);
            step(3, kt + 3 * W);
            load(2, kt + 6 * W);
            load(3, kt + 7 * W);
        }
    } else { /* each slot reloaded with its next tile as soon as it is used */
        for (int kt0 = warp; kt0 < tiles; kt0 += QF_U * W) {
#pragma unroll
            for (int u = 0; u < QF_U; u++) {
                const int kt = kt0 + u * W;
                if (kt >= tiles) break;
                step(u, kt);
                if (kt + QF_U * W < tiles) load(u, kt + QF_U * W);
            }
        }
    }
    qt_epi<N, W, EPI>(
        red, ys, tot, [&](int lr) { return (lr < 8 ? ha : hb) + (lr & 7); }, scale, bias, y, out,
        rope, blockIdx.x);
}

extern "C" int ci_cu_qgemv_int4_fused_ok(const ci_qweight *w, int n, const void *x,
                                         const float *norm_w, const ci_cu_rope_epi *rope,
                                         int swiglu) {
    if (w->format != CI_QW_INT4 || !w->tiled || w->g_idx || w->perm || n < 1 || n > 2 ||
        w->cols % 128 || w->rows % 16 || w->rows > INT32_MAX / 2 || w->cols > INT32_MAX / 2)
        return 0;
    if ((int64_t)n * w->cols * 2 > 48 * 1024) return 0; /* staged x, no opt-in */
    if (qt_group_shift(w, 128) < 0) return 0;
    if (((uintptr_t)w->q & 15) || ((uintptr_t)x & 15) || ((uintptr_t)norm_w & 15)) return 0;
    if (rope && rope->on) /* neox pairs are 8-row halves; GPT-J's interleave rows */
        return !swiglu && rope->neox && ci_cu_qgemv_fp8tc_rope_ok(w, rope);
    return !swiglu || (w->rows / 2) % 8 == 0;
}

/* the tc2 shape (TWO): CINFER_QFUSE_TC2=1 for weights of 4+ blocks an SM
 * (tc2's rule for the plain GEMV: Llama-3-8B's gate|up), 2 for every
 * weight (tests); 0, the default until measured: the tc shape. Read once;
 * ci_cu_qgemv_int4_fused_two sets it. */
static int g_qf_two = -1;
extern "C" void ci_cu_qgemv_int4_fused_two(int mode) {
    g_qf_two = mode;
}
/* one launch of the kernel's build <MINB, TWO, MB, WPB> on ctas CTAs */
template <int N, int EPI, int MINB, bool TWO = false, bool MB = false, bool WPB = false>
static int qf_go(ci_cu_stream st, const ci_qweight *w, const void *x, const float *bias, void *y,
                 const float *norm_w, float eps, const ci_cu_rope_epi &rope, unsigned ctas,
                 size_t smem, int gshift, int bpc, int db) {
    ci_cu_launch(qgemv_int4_fused_kernel<N, EPI, MINB, TWO, MB, WPB>, ctas,
                 (TWO ? QF2_WARPS : QF_WARPS) * 32, smem, st, *w, (const __nv_bfloat16 *)x, bias,
                 (__nv_bfloat16 *)y, gshift, norm_w, eps, rope, bpc, db);
    return cudaGetLastError();
}

template <int N, int EPI>
static int qf_launch(ci_cu_stream st, const ci_qweight *w, const void *x, const float *bias,
                     void *y, int num_sms, const float *norm_w, float eps,
                     const ci_cu_rope_epi &rope) {
    const unsigned grid = (unsigned)(w->rows / 16);
    const size_t smem = (size_t)N * (size_t)w->cols * 2;
    const int gshift = qt_group_shift(w, 128), db = ci_cu_defer_batch();
    if (g_qf_two < 0) g_qf_two = ci_cu_env_int("CINFER_QFUSE_TC2", 0);
    /* several blocks a CTA (ci_cu_qgemv_mb 1, 3 or the default 4):
     * ceil(blocks / 2 SMs), one wave of CTAs capped for 2 an SM, where the
     * blocks exceed 3 an SM (gate|up: batch 1 +6 % on an H100); 2 (tests):
     * 3 blocks a CTA */
    const int mb = (EPI == 0 || EPI == 3) && (w->cols / 128) % (QF_WARPS * QF_U) == 0
                       ? ci_cu_qgemv_mb_mode()
                       : 0;
    int bpc = 1;
    if (mb == 2 && grid >= 2u)
        bpc = 3;
    else if ((mb == 1 || mb == 3 || mb == 4) && num_sms > 0 && grid > 3u * (unsigned)num_sms)
        bpc = (int)((grid + 2u * (unsigned)num_sms - 1) / (2u * (unsigned)num_sms));
    const unsigned ctas = (grid + (unsigned)bpc - 1) / (unsigned)bpc;
#define QF_ARGS st, w, x, bias, y, norm_w, eps, rope
    /* warp-owned blocks (ci_cu_qgemv_wpb_mode: 1 where the multi-block
     * build would run, 3 wherever the shape allows, on one CTA so that its
     * warps stride over the blocks): a warp a block, one wave of CTAs 2 an
     * SM at most */
    if constexpr (EPI == 0 || EPI == 3) {
        const int wm = ci_cu_qgemv_wpb_mode();
        if ((wm == 3 || (wm >= 1 && bpc > 1)) && (w->cols / 128) % QF_U == 0) {
            const unsigned cap = wm == 3 ? 1u : num_sms > 0 ? 2u * (unsigned)num_sms : grid;
            const unsigned wc = (grid + QF_WARPS - 1) / QF_WARPS;
            return qf_go<N, EPI, 2, false, false, true>(QF_ARGS, wc < cap ? wc : cap, smem,
                                                        gshift, 1, db);
        }
    }
    if constexpr (EPI == 0 || EPI == 3)
        if (bpc > 1) return qf_go<N, EPI, 2, false, true>(QF_ARGS, ctas, smem, gshift, bpc, db);
    if (g_qf_two == 2 || (g_qf_two == 1 && num_sms > 0 && grid >= 4u * (unsigned)num_sms))
        return qf_go<N, EPI, 1, true>(QF_ARGS, grid, smem, gshift, 1, db);
    /* registers capped for 3 CTAs an SM where the blocks are 2-3 an SM (one
     * wave, as the tc kernel's choice for q|k|v) */
    if (num_sms > 0 && grid > 2u * (unsigned)num_sms && grid <= 3u * (unsigned)num_sms)
        return qf_go<N, EPI, 3>(QF_ARGS, grid, smem, gshift, 1, db);
    return qf_go<N, EPI, 1>(QF_ARGS, grid, smem, gshift, 1, db);
#undef QF_ARGS
}

template <int N>
static int qf_epi(ci_cu_stream st, const ci_qweight *w, const void *x, const float *bias, void *y,
                  int num_sms, const float *norm_w, float eps, const ci_cu_rope_epi *rope,
                  int swiglu) {
    const ci_cu_rope_epi none = {};
    if (swiglu) return qf_launch<N, 3>(st, w, x, bias, y, num_sms, norm_w, eps, none);
    if (rope && rope->on)
        return rope->kv_fp8 ? qf_launch<N, 2>(st, w, x, bias, y, num_sms, norm_w, eps, *rope)
                            : qf_launch<N, 1>(st, w, x, bias, y, num_sms, norm_w, eps, *rope);
    return qf_launch<N, 0>(st, w, x, bias, y, num_sms, norm_w, eps, none);
}

extern "C" int ci_cu_qgemv_int4_fused(ci_cu_stream st, const ci_qweight *w, const void *x, int n,
                                      const float *bias, void *y, int num_sms, const float *norm_w,
                                      float eps, const ci_cu_rope_epi *rope, int swiglu) {
    if (!ci_cu_qgemv_int4_fused_ok(w, n, x, norm_w, rope, swiglu)) return cudaErrorInvalidValue;
    return n == 1 ? qf_epi<1>(st, w, x, bias, y, num_sms, norm_w, eps, rope, swiglu)
                  : qf_epi<2>(st, w, x, bias, y, num_sms, norm_w, eps, rope, swiglu);
}
