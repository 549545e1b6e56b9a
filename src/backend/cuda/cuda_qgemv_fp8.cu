/* cuda_qgemv_fp8.cu — the tensor-core 8-bit GEMV: y[n][rows] = x[n][K] .
 * W^T for E4M3 or INT8 weights (per-row or 64k-column group scales), BF16
 * x, n <= 2 (decode), on mma.m16n8k16 with f16 inputs and f32 accumulation.
 * INT8 (8-bit GPTQ, W8A16) differs only in the decode: each byte, offset
 * by 128, becomes the mantissa of an f16 1024 + (q + 128) (one byte
 * permute makes two), and one f16x2 subtraction of 1152 leaves q exactly.
 *
 * The split/vec kernels turn each weight into an f32 with ~5 instructions
 * (qv_weight); here one cvt.rn.f16x2.e4m3x2 makes two weights into an f16
 * pair, exactly (E4M3 values are f16 normals or subnormals), and the
 * tensor cores do the products. Layout (as the INT4 tc kernel): a CTA owns
 * 16 rows; its 8 warps split the 64-column tiles; per tile each lane loads
 * 16 bytes (16 weights) of row g = lane / 4 and of row g + 8 at columns
 * 64 kt + 16 t (t = lane % 4), and these are its A fragments of four
 * k-steps as they are: a dot product may be summed in any order, so the
 * logical k of k-step h is bound to the physical columns 4h .. 4h + 3 the
 * lane holds, and x (the B fragment, lanes 4n .. 4n + 3 hold token n) is
 * read in the same order.
 *
 * x is staged once per CTA in shared memory as f16, scaled by 2^-4 (the
 * sums are scaled back by 16): a power of two keeps every BF16 value of
 * magnitude 2^-10 .. 2^20 exact in f16's 10-bit mantissa, so the products
 * are the reference's W8A16 products; smaller values lose bits as f16
 * subnormals (absolute error <= 2^-29, below BF16's own rounding of values
 * near 2^-10), and magnitudes above ~1e6 saturate. Weights, scales of
 * FT_U tiles per warp are in flight, the first ones issued before the PDL
 * wait; each slot is reloaded with its next tile as soon as its tile is
 * used (ROLL), so a warp never waits with nothing in flight. H200, n = 1,
 * Llama-3-8B's gate/up, o, down, qkv: 3.42 / 2.84 / 2.42 / 3.31 TB/s with 4
 * tiles loaded then used, 4.03 / 3.47 / 2.70 / 3.12 rolling 8
 * (docs/kernels/qmatmul.md).
 *
 * The fused matmul's prologues run in the staging (cuda_fused_matmul.c): the
 * CTA stages RMSNorm(x) (ci_norm_stage_exact: the standalone kernel's values
 * bit for bit) or SwiGLU(x) ([N][2K] in) instead of x, so a decode step's
 * norms and SwiGLU need no kernel of their own before these weights. The
 * rope epilogue (EPI, the qkv projection of a decode step) gives each CTA
 * the 8 rotation pairs of one head whose first elements are its rows 0..7
 * and second ones its rows 8..15 (ci_rope_rows): the sums are rounded as
 * stored, rotated as rope_cache does and k / v written to the cache, so
 * rope_cache's kernel drops out of the layer.
 *
 * The deferred RMSNorm (CI_CU_PRO_RMSNORM_DEFER): RMSNorm(x) . W^T =
 * (x * norm_w) . W^T / rms(x), so the CTA stages f16(x * norm_w * 2^-4) and
 * each thread sums the squares of the x it staged; the warps' sums wait in
 * shared memory until the epilogue scales each token's sums by 1 / rms. The
 * exact prologue's block reduction (x read, summed, a barrier, then
 * normalized) stood before the first product of every CTA, 13.6 CTAs an
 * SM in sequence at Llama-3-8B's gate/up, and lost (docs/kernels/
 * qmatmul.md); here the sum rides along with the staging, and the norm's
 * values differ from the standalone kernel's only by its BF16 rounding of
 * the normalized x (f16 keeps 3 more bits of x * norm_w).
 *
 * The SwiGLU epilogue (EPI 3, the fused gate|up projection of a decode
 * step): CTA c's rows 0..7 are gate rows 8c .. 8c + 7 and its rows 8..15
 * the up rows of the same units (rows / 2 + 8c ..), so after the warps' sum
 * the CTA holds both halves of 8 units, rounds them as the product's store
 * would and writes silu(gate) * up as swiglu's kernel computes it: y is
 * [N][rows / 2], bit for bit the product and then swiglu_vec_kernel, and
 * the layer loses that kernel (and the product's round trip). */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/gemv_prologue.cuh"
#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/qgemv_epi.cuh"
#include "backend/cuda/qgemv_tc.cuh"
#include "backend/cuda/rope_epi.cuh"
#include "util/qweight.h"

#include <stdlib.h>

#define FT_WARPS 8
#define FT_U 8
#define FT_XSCALE 0.0625f /* x is staged as f16 x * 2^-4 */

/* the staging's prologue: CI_CU_PRO_*, the norm's weights, eps and the
 * standalone norm's vectors a thread (its mapping, emulated) */
struct ft_pro {
    int pro;
    const float *norm_w;
    float eps;
    int vpt;
    int batch; /* the deferred norm's staging (ci_defer_stage's batch) */
};

/* bf16x2 -> f16x2 of (x * 2^-4), saturated to the f16 range */
__device__ __forceinline__ uint32_t ft_x2(uint32_t v) {
    const float lo = fminf(fmaxf(__uint_as_float(v << 16) * FT_XSCALE, -65504.0f), 65504.0f);
    const float hi =
        fminf(fmaxf(__uint_as_float(v & 0xffff0000u) * FT_XSCALE, -65504.0f), 65504.0f);
    __half2 h = __floats2half2_rn(lo, hi);
    return *(uint32_t *)&h;
}

/* two floats -> f16x2 of (a, b) * 2^-4, saturated to the f16 range */
__device__ __forceinline__ uint32_t ft_f2(float a, float b) {
    a = fminf(fmaxf(a * FT_XSCALE, -65504.0f), 65504.0f);
    b = fminf(fmaxf(b * FT_XSCALE, -65504.0f), 65504.0f);
    __half2 h = __floats2half2_rn(a, b);
    return *(uint32_t *)&h;
}

/* The four E4M3 of w as two f16x2 (bytes 0, 1 -> lo; 2, 3 -> hi). sm_89+:
 * the word's halves straight into the two cvts; ci_fp8x2_f16x2 on a
 * masked / shifted word repacked each result (shifts and multiplies were
 * a fifth of the kernel's instructions, ncu on the H200). */
__device__ __forceinline__ void ft_cvt4(uint32_t w, uint32_t &lo, uint32_t &hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    asm("{\n .reg .b16 a, b;\n mov.b32 {a, b}, %2;\n cvt.rn.f16x2.e4m3x2 %0, a;\n"
        " cvt.rn.f16x2.e4m3x2 %1, b;\n}"
        : "=r"(lo), "=r"(hi)
        : "r"(w));
#else
    lo = ci_fp8x2_f16x2(w & 0xffff);
    hi = ci_fp8x2_f16x2(w >> 16);
#endif
}

/* The four INT8 of w as two f16x2 (bytes 0, 1 -> lo; 2, 3 -> hi), exactly:
 * u = q + 128 (the sign bit flipped) as the low byte of f16 0x64uu =
 * 1024 + u, minus 1152 */
__device__ __forceinline__ void ft_i8x4(uint32_t w, uint32_t &lo, uint32_t &hi) {
    const uint32_t u = w ^ 0x80808080u;
    const uint32_t l = __byte_perm(u, 0x64646464u, 0x5140), h = __byte_perm(u, 0x64646464u, 0x5342);
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(lo) : "r"(l), "r"(0x64806480u));
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(hi) : "r"(h), "r"(0x64806480u));
}

/* One tile: a, b = 16 weight bytes (E4M3 or INT8: FMT) of rows g and g + 8;
 * x0, x1 = the 16 f16 x values of the same columns; c += the tile's sums. */
template <int FMT>
__device__ __forceinline__ void ft_tile(float *c, uint4 a, uint4 b, uint4 x0, uint4 x1) {
    const uint32_t wa[4] = {a.x, a.y, a.z, a.w}, wb[4] = {b.x, b.y, b.z, b.w};
    const uint32_t xv[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
#pragma unroll
    for (int h = 0; h < 4; h++) {
        uint32_t al, ah, bl, bh;
        if (FMT == CI_QW_INT8) {
            ft_i8x4(wa[h], al, ah);
            ft_i8x4(wb[h], bl, bh);
        } else {
            ft_cvt4(wa[h], al, ah);
            ft_cvt4(wb[h], bl, bh);
        }
        qt_mma<true>(c, al, bl, ah, bh, xv[2 * h], xv[2 * h + 1]);
    }
}

/* After the first tiles' loads: the PDL wait, then x staged as f16 * 2^-4
 * in fxs [N][K / 8] through the prologue pro (the exact or deferred
 * RMSNorm, SwiGLU, or none; nred: the norm's warp sums) and the CTA's
 * barrier. Returns the lane's x: token g (N - 1 for lanes of tokens >= N:
 * their C columns are never stored), columns 16 t .. of each tile. */
template <int N>
__device__ __forceinline__ const uint4 *ft_begin(const __nv_bfloat16 *__restrict__ x, int K,
                                                 const ft_pro &pro, float *nred, uint4 *fxs) {
    if (pro.pro == CI_CU_PRO_RMSNORM_DEFER && pro.batch) ci_defer_pre(pro.norm_w, K);
    ci_pdl_trigger();
    ci_pdl_wait();
    auto put = [&](int e, uint4 v) {
        fxs[e] = make_uint4(ft_x2(v.x), ft_x2(v.y), ft_x2(v.z), ft_x2(v.w));
    };
    if (pro.pro == CI_CU_PRO_RMSNORM)
        ci_norm_stage_exact<N>(x, K, pro.vpt, pro.norm_w, pro.eps, nred, put);
    else if (pro.pro == CI_CU_PRO_RMSNORM_DEFER)
        ci_defer_stage<N>(
            x, K, pro.norm_w, nred,
            [&](int e, const float *f) {
                fxs[e] = make_uint4(ft_f2(f[0], f[1]), ft_f2(f[2], f[3]), ft_f2(f[4], f[5]),
                                    ft_f2(f[6], f[7]));
            },
            pro.batch);
    else /* x as it is, or SwiGLU of [N][2K] */
        ci_pro_stage_plain<N>(pro.pro, x, K, put);
    __syncthreads();
    const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    return fxs + (int64_t)min(g, N - 1) * (K / 8) + 2 * t;
}

/* U tiles in flight per warp; ROLL: reloaded one by one (else U loaded,
 * then U used); MINB: CTAs an SM the registers are capped for; EPI: 0, the
 * rope epilogue with a BF16 (1) or E4M3 (2) cache, or SwiGLU (3) (BF16 y,
 * no acc). MB (EPI 0 or 3, ROLL, K / 64 a multiple of 8 U): the CTA takes
 * bpc consecutive 16-row blocks, its x staged once, each slot's next tile
 * loaded across a block's end (see fp8tc_bpc) */
template <int FMT, int N, typename OutT, int U, bool ROLL, int MINB = 1, int EPI = 0,
          bool MB = false>
__global__ void __launch_bounds__(FT_WARPS * 32, MINB)
    qgemv_fp8tc_kernel(ci_qweight w, const __nv_bfloat16 *__restrict__ x,
                       const float *__restrict__ bias, OutT *__restrict__ y, int gshift, int acc,
                       ft_pro pro, ci_cu_rope_epi rope, int bpc) {
    extern __shared__ uint4 fxs[]; /* [N][K / 8]: x (or its prologue's output) as f16 * 2^-4 */
    __shared__ float red[FT_WARPS][16][N];
    __shared__ float nred[32];            /* the norm's warp sums */
    __shared__ float ys[EPI ? 16 : 1][N]; /* EPI: the CTA's products, rounded as stored */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int K = (int)w.cols, out = (int)w.rows, tiles = K / 64, r0 = blockIdx.x * 16;
    const int ng = (int)w.ngroups;
    int64_t ra = min(r0 + g, out - 1), rb = min(r0 + g + 8, out - 1);
    if constexpr (EPI == 1 || EPI == 2) {
        const ci_rope_rows rr(rope, blockIdx.x);
        ra = rr.row(rope, g);
        rb = rr.row(rope, g + 8);
    } else if constexpr (EPI == 3) { /* gate rows 8c + g, up rows rows / 2 + 8c + g */
        ra = 8 * blockIdx.x + g;
        rb = out / 2 + ra;
    }
    const uint4 *pa = (const uint4 *)(w.q + ra * K) + t, *pb = (const uint4 *)(w.q + rb * K) + t;
    const float *sa = w.scales + ra * ng, *sb = w.scales + rb * ng;
    uint4 qa[U], qb[U];
    float fa[U], fb[U];
    /* slot u <- tile kt of the rows whose pieces start at a / b + o, scales
     * at c / d + os */
    auto ld = [&](int u, const uint4 *a, const uint4 *b, const float *c, const float *d, int64_t o,
                  int64_t os, int kt) {
        qa[u] = __ldcs(a + o + 4 * kt);
        qb[u] = __ldcs(b + o + 4 * kt);
        const int gi = kt >> gshift;
        fa[u] = __ldg(c + os + gi);
        fb[u] = __ldg(d + os + gi);
    };
    auto load1 = [&](int u, int kt) {
        if (kt < tiles) ld(u, pa, pb, sa, sb, 0, 0, kt);
    };
    auto load = [&](int kt0) {
#pragma unroll
        for (int u = 0; u < U; u++)
            load1(u, kt0 + u * FT_WARPS);
    };
    /* MB: slot u of the warp's tile kt of the block whose rows g, g + 8 start
     * at qa0 / qb0 (scales sa0 / sb0); the next block's are dq uint4 and ds
     * floats on (EPI 3: 8 rows, else 16; the launcher asks whole blocks) */
    const int64_t b0 = MB ? (int64_t)blockIdx.x * bpc : 0, nblk = out / 16;
    const int64_t dq = (EPI == 3 ? 8 : 16) * (int64_t)(K / 16), ds = (EPI == 3 ? 8 : 16) * ng;
    const uint4 *qa0 = (const uint4 *)w.q + (EPI == 3 ? 8 * b0 + g : 16 * b0 + g) * (K / 16) + t;
    const uint4 *qb0 = qa0 + (EPI == 3 ? (int64_t)(out / 2) : 8) * (K / 16);
    const float *sa0 = w.scales + (EPI == 3 ? 8 * b0 + g : 16 * b0 + g) * ng;
    const float *sb0 = sa0 + (EPI == 3 ? (int64_t)(out / 2) : 8) * ng;
    auto load_mb = [&](int u, int64_t o, int64_t os, int kt) {
        ld(u, qa0, qb0, sa0, sb0, o, os, kt);
    };
    if constexpr (MB) {
#pragma unroll
        for (int u = 0; u < U; u++)
            load_mb(u, 0, 0, warp + u * FT_WARPS);
    } else {
        load(warp);
    }
    const uint4 *xr = ft_begin<N>(x, K, pro, nred, fxs);
    const bool defer = pro.pro == CI_CU_PRO_RMSNORM_DEFER;
    float tot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    /* tot += tile kt's scaled sums (slot u) */
    auto step = [&](int u, int kt) {
        float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        ft_tile<FMT>(c, qa[u], qb[u], xr[8 * kt], xr[8 * kt + 1]);
        tot[0] = fmaf(fa[u], c[0], tot[0]);
        tot[1] = fmaf(fa[u], c[1], tot[1]);
        tot[2] = fmaf(fb[u], c[2], tot[2]);
        tot[3] = fmaf(fb[u], c[3], tot[3]);
    };
    /* the sums of 16-row block b out: each token's scaled by the deferred
     * norm's 1 / rms (or as they are), stored (EPI 0, with bias and acc), or
     * through qt_epi's rope / SwiGLU epilogue */
    auto epilogue = [&](int64_t b) {
#pragma unroll
        for (int i = 0; i < 4; i++)
            tot[i] *= 1.0f / FT_XSCALE;
        auto scale = [&](int n, float sum) {
            return defer ? sum * ci_defer_inv<FT_WARPS>(nred, n, K, pro.eps) : sum;
        };
        if constexpr (EPI == 0) { /* qt_reduce's, with the scale */
            const int64_t rb0 = 16 * b;
            qt_red_put<N>(red, tot);
            __syncthreads();
            if (threadIdx.x < 16 * N) {
                const int r = threadIdx.x / N, n = threadIdx.x % N;
                const float sum = scale(n, qt_red_sum<N, FT_WARPS>(red, r, n));
                if (rb0 + r < out)
                    ci_st_out(y + (int64_t)n * out, rb0 + r, bias ? sum + bias[rb0 + r] : sum, acc);
            }
        } else {
            /* the weight row of the CTA's row lr (its bias) */
            auto row = [&](int lr) -> int64_t {
                if constexpr (EPI == 3) /* gate rows 8b .., up rows out / 2 + 8b .. */
                    return (lr < 8 ? 0 : out / 2 - 8) + 8 * b + lr;
                else
                    return ci_rope_rows(rope, (int)b).row(rope, lr);
            };
            qt_epi<N, FT_WARPS, EPI>(red, ys, tot, row, scale, bias, (__nv_bfloat16 *)y, out, rope,
                                     b);
        }
    };
    if constexpr (MB) { /* the warp's nt tiles of each block; slot u holds tiles m = u mod U */
        static_assert(ROLL && (EPI == 0 || EPI == 3), "MB: rolling loads, EPI 0 or 3");
        const int nt = tiles / FT_WARPS;
        int64_t o = 0, os = 0; /* the block's offsets from qa0 / sa0 */
        for (int j = 0; j < bpc && b0 + j < nblk; j++, o += dq, os += ds) {
            const int64_t b = b0 + j;
            const bool more = j + 1 < bpc && b + 1 < nblk;
            tot[0] = tot[1] = tot[2] = tot[3] = 0.0f;
            for (int m0 = 0; m0 < nt; m0 += U) {
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int kt = warp + (m0 + u) * FT_WARPS;
                    step(u, kt);
                    /* the slot's next tile: U on in this block, else in the next one */
                    if (m0 + U < nt)
                        load_mb(u, o, os, kt + U * FT_WARPS);
                    else if (more)
                        load_mb(u, o + dq, os + ds, warp + u * FT_WARPS);
                }
            }
            epilogue(b);
            if constexpr (EPI == 0) __syncthreads(); /* red read before the next block's put */
        }
    } else {
        for (int kt0 = warp; kt0 < tiles; kt0 += U * FT_WARPS) {
            if (!ROLL && kt0 != warp) load(kt0);
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int kt = kt0 + u * FT_WARPS;
                if (kt >= tiles) break;
                step(u, kt);
                /* ROLL: slot u's next tile in flight as soon as it is free (its
                 * scales too: after this tile's are used) */
                if (ROLL) load1(u, kt + U * FT_WARPS);
            }
        }
        epilogue(blockIdx.x);
    }
}

/* WPB, warp-owned blocks: each warp streams whole 16-row blocks (EPI 0: rows
 * 16b .. 16b + 15; SwiGLU, EPI 3: gate rows 8b .., up rows out / 2 + 8b ..)
 * through its FT_U rolling slots, all K / 64 tiles of a block, so the C
 * fragment ends whole in the lane's registers and the lane stores its own
 * rows (c[0] / c[2]: row g / g + 8 of token 2t, c[1] / c[3] of 2t + 1;
 * SwiGLU pairs gate and up unit 8b + g in one lane): after the staging no
 * barrier holds a warp. Blocks grid-stride over the warps, each slot's next
 * tile the next block's once this block's are used. The split-K builds
 * above end every block with qt_epi's two barriers (ncu, H100: 16 % of the
 * fused gate|up's warp stalls at them, 2.48 TB/s where the LM head's build
 * streams 3.09); cuda_gemv.cu's BF16 GEMV, one warp a row, streams 3.1.
 * Needs K / 64 a multiple of FT_U; 8 warps a CTA as the other builds (the
 * deferred norm's 1 / rms summed in the same order). */
template <int FMT, int N, typename OutT, int EPI>
__global__ void __launch_bounds__(FT_WARPS * 32, 2)
    qgemv_fp8tc_wpb_kernel(ci_qweight w, const __nv_bfloat16 *__restrict__ x,
                           const float *__restrict__ bias, OutT *__restrict__ y, int gshift,
                           int acc, ft_pro pro) {
    static_assert(EPI == 0 || EPI == 3, "WPB: the plain or the SwiGLU epilogue");
    constexpr int U = FT_U;
    extern __shared__ uint4 fxs[]; /* [N][K / 8]: x (or its prologue's output) as f16 * 2^-4 */
    __shared__ float nred[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int K = (int)w.cols, out = (int)w.rows, tiles = K / 64, ng = (int)w.ngroups;
    const int64_t nblk = out / 16, stride = (int64_t)gridDim.x * FT_WARPS;
    /* block b's rows ra, rb = ra + dr (EPI 3: gate and up, else 8 apart);
     * the lane's pieces and scales as 32-bit indices (fp8tc_wpb_on bounds
     * them) from w.q / w.scales: registers for the 8 rolling slots */
    const int64_t dr = EPI == 3 ? out / 2 : 8;
    const uint32_t dq = (uint32_t)(dr * (K / 16)), ds = (uint32_t)(dr * ng);
    const uint4 *Q = (const uint4 *)w.q;
    struct rows {
        uint32_t q, s;
    };
    auto row_a = [&](int64_t b) { return (EPI == 3 ? 8 : 16) * b + g; };
    auto rows_of = [&](int64_t b) {
        const int64_t ra = row_a(b);
        return rows{(uint32_t)(ra * (K / 16) + t), (uint32_t)(ra * ng)};
    };
    uint4 qa[U], qb[U];
    float fa[U], fb[U];
    auto ld = [&](int u, const rows &r, int kt) {
        qa[u] = __ldcs(Q + (r.q + 4u * (uint32_t)kt));
        qb[u] = __ldcs(Q + (r.q + dq + 4u * (uint32_t)kt));
        const uint32_t gi = (uint32_t)(kt >> gshift);
        fa[u] = __ldg(w.scales + (r.s + gi));
        fb[u] = __ldg(w.scales + (r.s + ds + gi));
    };
    int64_t b = (int64_t)blockIdx.x * FT_WARPS + warp;
    rows cur = rows_of(b < nblk ? b : 0);
    if (b < nblk) { /* the first tiles before the PDL wait (weights are constant) */
#pragma unroll
        for (int u = 0; u < U; u++)
            ld(u, cur, u);
    }
    const uint4 *xr = ft_begin<N>(x, K, pro, nred, fxs);
    const bool defer = pro.pro == CI_CU_PRO_RMSNORM_DEFER;
    for (; b < nblk; b += stride) {
        const bool more = b + stride < nblk;
        float tot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int m0 = 0; m0 < tiles; m0 += U) {
            /* the round's refills: U tiles on in this block, or (the last
             * round) the next block's first U */
            const bool last = m0 + U >= tiles;
            const rows nx = last && more ? rows_of(b + stride) : cur;
            const int kofs = last ? -m0 : U;
            const bool refill = !last || more;
#pragma unroll
            for (int u = 0; u < U; u++) {
                float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                ft_tile<FMT>(c, qa[u], qb[u], xr[8 * (m0 + u)], xr[8 * (m0 + u) + 1]);
                tot[0] = fmaf(fa[u], c[0], tot[0]);
                tot[1] = fmaf(fa[u], c[1], tot[1]);
                tot[2] = fmaf(fb[u], c[2], tot[2]);
                tot[3] = fmaf(fb[u], c[3], tot[3]);
                if (refill) ld(u, nx, m0 + u + kofs);
            }
        }
        const int64_t ra = row_a(b), rb = ra + dr;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int n = 2 * t + h;
            if (n >= N) break;
            const float inv = defer ? ci_defer_inv<FT_WARPS>(nred, n, K, pro.eps) : 1.0f;
            float a = tot[h] * (1.0f / FT_XSCALE), c = tot[2 + h] * (1.0f / FT_XSCALE);
            if (defer) {
                a *= inv;
                c *= inv;
            }
            if constexpr (EPI == 3) { /* qt_epi's: each rounded as stored, then SwiGLU */
                a = ci_round(bias ? a + bias[ra] : a, y);
                c = ci_round(bias ? c + bias[rb] : c, y);
                ci_st(y + (int64_t)n * (out / 2), ra, a / (1.0f + __expf(-a)) * c);
            } else {
                ci_st_out(y + (int64_t)n * out, ra, bias ? a + bias[ra] : a, acc);
                ci_st_out(y + (int64_t)n * out, rb, bias ? c + bias[rb] : c, acc);
            }
        }
        if (more) cur = rows_of(b + stride);
    }
}

extern "C" int ci_cu_qgemv_fp8tc_ok(const ci_qweight *w, int n, int x_bf16, const void *x) {
    if ((w->format != CI_QW_FP8 && w->format != CI_QW_INT8) || !x_bf16 || w->g_idx || n < 1 ||
        n > 2 || w->cols % 64)
        return 0;
    if (w->rows > INT32_MAX / 2 || w->cols > INT32_MAX / 4) return 0;
    if ((int64_t)n * w->cols * 2 > 96 * 1024) return 0; /* staged x */
    if (qt_group_shift(w, 64) < 0) return 0;            /* a shift finds a tile's group */
    return ((uintptr_t)w->q & 15) == 0 && ((uintptr_t)x & 15) == 0;
}

template <int N, typename OutT, int U, bool ROLL, int MINB = 1, int EPI = 0, bool MB = false>
static int fp8tc_launch(ci_cu_stream st, const ci_qweight *w, const void *x, const float *bias,
                        void *y, int acc, ft_pro pro, const ci_cu_rope_epi &rope, int bpc = 1) {
    auto k = w->format == CI_QW_INT8
                 ? qgemv_fp8tc_kernel<CI_QW_INT8, N, OutT, U, ROLL, MINB, EPI, MB>
                 : qgemv_fp8tc_kernel<CI_QW_FP8, N, OutT, U, ROLL, MINB, EPI, MB>;
    const size_t smem = (size_t)N * (size_t)w->cols * 2;
    const cudaError_t e = ci_cu_smem_optin(k, smem);
    if (e != cudaSuccess) return e;
    const int gshift = qt_group_shift(w, 64);
    const int64_t blocks = (w->rows + 15) / 16;
    const unsigned grid = (unsigned)(MB ? (blocks + bpc - 1) / bpc : blocks);
    ci_cu_launch(k, grid, FT_WARPS * 32, smem, st, *w, (const __nv_bfloat16 *)x, bias, (OutT *)y,
                 gshift, acc, pro, rope, MB ? bpc : 1);
    return cudaGetLastError();
}

/* Blocks a CTA for the multi-block build (MB), 1 for the others.
 * CINFER_QGEMV_MB: 0 off; 1 where the 16-row blocks are more than 3 an SM
 * (past waves3's one-wave build; Llama-3-8B's gate|up: 1792 blocks, 6.8
 * waves of CTAs that each stage x, stream their tiles and end, the SM's
 * loads idle between one CTA's last tile and the next CTA's first):
 * ceil(blocks / 2 SMs) a CTA, one wave (the build capped for 2 CTAs an SM),
 * every slot's loads running on across a block's end; 2 (tests) 3 blocks a
 * CTA wherever the shape allows; 3 as 1 for INT4's fused GEMV and off here:
 * measured on an H100 (2026-12-06, docs/benchmarks.md), batch 1 INT4 +
 * head 488 tok/s against 461, FP8 + head 319 against 325; 4 (the default)
 * as 3 and here the SwiGLU build (gate|up) only, not the plain one (the LM
 * head): the fused gate|up stages x and the f32 norm weights every CTA (24
 * KB a CTA), which one wave of multi-block CTAs stages 256 times instead of
 * 1792 (H100, 2026-12-06: FP8 + head 337.2 tok/s against 335.2 with 3). The
 * shape: whole 16-row blocks, K / 64 tiles a multiple of FT_WARPS * FT_U
 * (each warp's tiles of a block a whole number of slot rounds), EPI 0 or 3. */
static int g_mb = -1;
extern "C" void ci_cu_qgemv_mb(int mode) {
    g_mb = mode < 0 ? -1 : mode;
}
/* CINFER_DEFER_BATCH: 1 ci_defer_stage's batched loads and the norm weights
 * prefetched before the PDL wait (the default since the twenty-eighth
 * session's A/B), 0 one vector at a time; the same values either way */
static int g_defer_batch = -1;
extern "C" void ci_cu_defer_batch_mode(int mode) {
    g_defer_batch = mode < 0 ? -1 : mode != 0;
}
extern "C" int ci_cu_defer_batch(void) {
    if (g_defer_batch < 0) g_defer_batch = ci_cu_env_int("CINFER_DEFER_BATCH", 1) != 0;
    return g_defer_batch;
}
extern "C" int ci_cu_qgemv_mb_mode(void) {
    if (g_mb < 0) g_mb = ci_cu_env_int("CINFER_QGEMV_MB", 4);
    return g_mb;
}
static int fp8tc_bpc(const ci_qweight *w, int num_sms, int epi) {
    ci_cu_qgemv_mb_mode();
    const int64_t blocks = (w->rows + 15) / 16;
    if (g_mb == 0 || g_mb == 3 || (g_mb == 4 && epi != 3) || (epi != 0 && epi != 3) ||
        (w->cols / 64) % (FT_WARPS * FT_U) || w->rows % 16 || blocks < 2)
        return 1;
    if (g_mb == 2) return 3;
    const int64_t slots = 2 * (int64_t)num_sms;
    if (num_sms <= 0 || blocks <= 3 * (int64_t)num_sms) return 1; /* one or two waves (waves3) */
    return (int)((blocks + slots - 1) / slots);
}

/* The warp-owned-blocks builds (qgemv_fp8tc_wpb_kernel; INT4's fused GEMV
 * reads the mode too, for its SwiGLU and plain builds). CINFER_QGEMV_WPB:
 * 0 off (the default until measured), 1 the SwiGLU build (gate|up) where
 * the multi-block one would run, 2 that and the plain build where the
 * blocks are 8+ an SM (the LM head), 3 (tests) wherever the shape allows,
 * on one CTA so that its warps stride over the blocks; read at the first
 * call, ci_cu_qgemv_wpb sets it (-1: back to the env). */
static int g_wpb = -1;
extern "C" void ci_cu_qgemv_wpb(int mode) {
    g_wpb = mode;
}
extern "C" int ci_cu_qgemv_wpb_mode(void) {
    if (g_wpb < 0) g_wpb = ci_cu_env_int("CINFER_QGEMV_WPB", 0);
    return g_wpb;
}
static int fp8tc_wpb_on(const ci_qweight *w, int num_sms, int swiglu, int bpc) {
    ci_cu_qgemv_wpb_mode();
    if (g_wpb <= 0 || w->rows % 16 || (w->cols / 64) % FT_U || w->perm) return 0;
    if (w->rows * (w->cols / 16) >= UINT32_MAX / 2 || w->rows * w->ngroups >= UINT32_MAX / 2)
        return 0; /* the kernel's 32-bit piece and scale indices */
    if (g_wpb == 3) return 1;
    if (swiglu) return bpc > 1;
    return g_wpb == 2 && num_sms > 0 && (w->rows / 16) >= 8 * (int64_t)num_sms;
}
template <int N, typename OutT, int EPI>
static int fp8tc_wpb(ci_cu_stream st, const ci_qweight *w, const void *x, const float *bias,
                     void *y, int acc, ft_pro pro, int num_sms) {
    auto k = w->format == CI_QW_INT8 ? qgemv_fp8tc_wpb_kernel<CI_QW_INT8, N, OutT, EPI>
                                     : qgemv_fp8tc_wpb_kernel<CI_QW_FP8, N, OutT, EPI>;
    const size_t smem = (size_t)N * (size_t)w->cols * 2;
    const cudaError_t e = ci_cu_smem_optin(k, smem);
    if (e != cudaSuccess) return e;
    /* a warp a block, at most one wave of CTAs 2 an SM (then grid-stride;
     * mode 3, the tests', one CTA) */
    const int64_t ctas = (w->rows / 16 + FT_WARPS - 1) / FT_WARPS;
    const int64_t cap = g_wpb == 3 ? 1 : num_sms > 0 ? 2 * (int64_t)num_sms : ctas;
    ci_cu_launch(k, (unsigned)(ctas < cap ? ctas : cap), FT_WARPS * 32, smem, st, *w,
                 (const __nv_bfloat16 *)x, bias, (OutT *)y, qt_group_shift(w, 64), acc, pro);
    return cudaGetLastError();
}

/* old: the kernel as it was before the rolling loads (4 tiles loaded, then
 * used), for A/B (CINFER_QGEMV=tc4). waves3 (the choice of auto): the
 * weight's 16-row blocks are 2-3 per SM, which the FT_U build (126
 * registers: 2 CTAs an SM) runs in two waves, the second under half full
 * (Llama-3-8B's qkv: 384 blocks on the H200's 132 SMs); 4 rolling slots
 * capped for 3 CTAs an SM run them in one */
template <int N, typename OutT>
static int fp8tc_u(ci_cu_stream st, const ci_qweight *w, const void *x, const float *bias, void *y,
                   int acc, int old, int waves3, ft_pro pro, int bpc) {
    const ci_cu_rope_epi none = {};
    if (old) return fp8tc_launch<N, OutT, 4, false>(st, w, x, bias, y, acc, pro, none);
    if (bpc > 1)
        return fp8tc_launch<N, OutT, FT_U, true, 2, 0, true>(st, w, x, bias, y, acc, pro, none,
                                                             bpc);
    if (waves3) return fp8tc_launch<N, OutT, 4, true, 3>(st, w, x, bias, y, acc, pro, none);
    return fp8tc_launch<N, OutT, FT_U, true>(st, w, x, bias, y, acc, pro, none);
}

/* the epilogues' builds (rope, SwiGLU: BF16 y, the rolling loads) */
template <int N, int EPI>
static int fp8tc_epi(ci_cu_stream st, const ci_qweight *w, const void *x, const float *bias,
                     void *y, int waves3, ft_pro pro, const ci_cu_rope_epi &rope, int bpc = 1) {
    using B = __nv_bfloat16;
    if constexpr (EPI == 3)
        if (bpc > 1)
            return fp8tc_launch<N, B, FT_U, true, 2, 3, true>(st, w, x, bias, y, 0, pro, rope, bpc);
    if (waves3) return fp8tc_launch<N, B, 4, true, 3, EPI>(st, w, x, bias, y, 0, pro, rope);
    return fp8tc_launch<N, B, FT_U, true, 1, EPI>(st, w, x, bias, y, 0, pro, rope);
}

extern "C" int ci_cu_qgemv_fp8tc_rope_ok(const ci_qweight *w, const ci_cu_rope_epi *r) {
    return r && r->on && r->hd > 0 && r->hd % 16 == 0 && r->H > 0 && r->KV > 0 && r->bs > 0 &&
           w->rows == (int64_t)(r->H + 2 * r->KV) * r->hd;
}

extern "C" int ci_cu_qgemv_fp8tc_swiglu_ok(const ci_qweight *w) {
    return w->rows % 16 == 0 && !w->perm;
}

extern "C" int ci_cu_qgemv_fp8tc_pro_ok(const ci_qweight *w, int n, const void *x, int pro,
                                        const float *norm_w) {
    if (!ci_cu_qgemv_fp8tc_ok(w, n, 1, x) || w->perm) return 0; /* x in the weight's order */
    if (pro == CI_CU_PRO_RMSNORM) /* the standalone kernel's mapping, 32-byte weight loads */
        return ci_cu_rmsnorm_vpt(w->cols, norm_w) > 0;
    if (pro == CI_CU_PRO_RMSNORM_DEFER) /* 16-byte loads of the norm weights */
        return norm_w && ((uintptr_t)norm_w & 15) == 0;
    return pro == CI_CU_PRO_SWIGLU || pro == CI_CU_PRO_NONE;
}

extern "C" int ci_cu_qgemv_fp8tc(ci_cu_stream st, int f32_out, const ci_qweight *w, const void *x,
                                 int n, const float *bias, void *y, int acc, int old, int num_sms,
                                 int pro, const float *norm_w, float eps,
                                 const ci_cu_rope_epi *rope, int swiglu) {
    const int ro = rope && rope->on;
    if (!ci_cu_qgemv_fp8tc_ok(w, n, 1, x) ||
        (pro != CI_CU_PRO_NONE && !ci_cu_qgemv_fp8tc_pro_ok(w, n, x, pro, norm_w)) ||
        (ro && (acc || f32_out || !ci_cu_qgemv_fp8tc_rope_ok(w, rope))) ||
        (swiglu && (ro || acc || f32_out || !ci_cu_qgemv_fp8tc_swiglu_ok(w))))
        return cudaErrorInvalidValue;
    const ft_pro fp = {pro, norm_w, eps,
                       pro == CI_CU_PRO_RMSNORM ? ci_cu_rmsnorm_vpt(w->cols, norm_w) : 0,
                       ci_cu_defer_batch()};
    const int64_t blocks = (w->rows + 15) / 16;
    const int w3 = num_sms > 0 && blocks > 2 * (int64_t)num_sms && blocks <= 3 * (int64_t)num_sms;
    const int bpc = old || ro ? 1 : fp8tc_bpc(w, num_sms, swiglu ? 3 : 0);
    if (!old && !ro && fp8tc_wpb_on(w, num_sms, swiglu, bpc)) {
        if (swiglu)
            return n == 1 ? fp8tc_wpb<1, __nv_bfloat16, 3>(st, w, x, bias, y, 0, fp, num_sms)
                          : fp8tc_wpb<2, __nv_bfloat16, 3>(st, w, x, bias, y, 0, fp, num_sms);
        if (n == 1)
            return f32_out ? fp8tc_wpb<1, float, 0>(st, w, x, bias, y, acc, fp, num_sms)
                           : fp8tc_wpb<1, __nv_bfloat16, 0>(st, w, x, bias, y, acc, fp, num_sms);
        return f32_out ? fp8tc_wpb<2, float, 0>(st, w, x, bias, y, acc, fp, num_sms)
                       : fp8tc_wpb<2, __nv_bfloat16, 0>(st, w, x, bias, y, acc, fp, num_sms);
    }
    if (swiglu) {
        const ci_cu_rope_epi none = {};
        return n == 1 ? fp8tc_epi<1, 3>(st, w, x, bias, y, w3, fp, none, bpc)
                      : fp8tc_epi<2, 3>(st, w, x, bias, y, w3, fp, none, bpc);
    }
    if (ro) {
        if (n == 1)
            return rope->kv_fp8 ? fp8tc_epi<1, 2>(st, w, x, bias, y, w3, fp, *rope)
                                : fp8tc_epi<1, 1>(st, w, x, bias, y, w3, fp, *rope);
        return rope->kv_fp8 ? fp8tc_epi<2, 2>(st, w, x, bias, y, w3, fp, *rope)
                            : fp8tc_epi<2, 1>(st, w, x, bias, y, w3, fp, *rope);
    }
    if (n == 1)
        return f32_out ? fp8tc_u<1, float>(st, w, x, bias, y, acc, old, w3, fp, bpc)
                       : fp8tc_u<1, __nv_bfloat16>(st, w, x, bias, y, acc, old, w3, fp, bpc);
    return f32_out ? fp8tc_u<2, float>(st, w, x, bias, y, acc, old, w3, fp, bpc)
                   : fp8tc_u<2, __nv_bfloat16>(st, w, x, bias, y, acc, old, w3, fp, bpc);
}
