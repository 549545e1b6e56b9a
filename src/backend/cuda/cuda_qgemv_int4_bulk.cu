/* cuda_qgemv_int4_bulk.cu — the INT4 tensor-core GEMV's bulk build
 * (CINFER_QGEMV_BULK=1, as the 8-bit GEMV's in cuda_qgemv_fp8.cu; off by
 * default, for the A/B): for a weight whose 16-row blocks fit the GPU in one
 * wave (Llama-3-8B's o_proj: 256 blocks), each CTA asks the TMA engine for
 * its whole block before the PDL wait — the tiled layout keeps a block's
 * 16 rows in one contiguous run (cuda_qweight.c), so the weights are one
 * bulk copy and the block's zero points and scales two more — and computes
 * from shared memory once the previous kernel (the decode attention) is
 * done. The register-slot tc kernel holds 4 tiles a warp in flight, so of
 * o_proj's 8.4 MB about half streams under the attention; here all of it
 * can, at ~40 registers and ~35 KiB a CTA, so every CTA fits beside the
 * attention's.
 *
 * Same tiles, same products in the same order as qgemv_tc_kernel (each warp
 * its tiles warp, warp + 8, ... ascending; qt_tile, qt_reduce), so the same
 * values; test_cuda_quant checks it. */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/qgemv_tc.cuh"
#include "backend/cuda/wgmma.cuh" /* the mbarrier and bulk-copy helpers */
#include "util/qweight.h"

#define QB_WARPS 8

template <int N, typename OutT>
__global__ void __launch_bounds__(QB_WARPS * 32)
    qgemv_4bulk_kernel(ci_qweight w, const __nv_bfloat16 *__restrict__ x,
                       const float *__restrict__ bias, OutT *__restrict__ y, int gshift, int acc) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    /* [16 K / 2] the block's nibbles as tiled, [16][ng] f32 scales, [16][ng] zeros */
    extern __shared__ __align__(128) uint8_t qbs[];
    __shared__ float red[QB_WARPS][16][N];
    __shared__ __align__(8) uint64_t bar;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int K = (int)w.cols, out = (int)w.rows, tiles = K / 128, r0 = blockIdx.x * 16;
    const int ng = (int)w.ngroups;
    const uint32_t qbytes = 8u * (uint32_t)K, sbytes = 64u * (uint32_t)ng, zbytes = 16u * ng;
    const uint32_t bar_s = ci_wg::smem_u32(&bar), q_s = ci_wg::smem_u32(qbs);
    if (threadIdx.x == 0) {
        ci_wg::mbar_init(&bar, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        ci_wg::mbar_expect_tx(bar_s, qbytes + sbytes + zbytes);
        ci_wg::bulk_g2s(q_s, w.q + (int64_t)r0 * (K / 2), qbytes, bar_s);
        ci_wg::bulk_g2s(q_s + qbytes, w.scales + (int64_t)r0 * ng, sbytes, bar_s);
        ci_wg::bulk_g2s(q_s + qbytes + sbytes, w.zeros + (int64_t)r0 * ng, zbytes, bar_s);
    }
    __syncthreads(); /* the barrier initialized before anyone waits on it */
    ci_pdl_trigger();
    ci_pdl_wait();
    ci_wg::mbar_wait(bar_s, 0);
    const uint4 *qs = (const uint4 *)qbs + g * 4 + t;
    const float *ss = (const float *)(qbs + qbytes);
    const uint8_t *zs = qbs + qbytes + sbytes;
    /* x of token g (N - 1 for lanes past the tokens), columns 32 t .. of a tile */
    const uint4 *xr = (const uint4 *)(x + (int64_t)min(g, N - 1) * K + 32 * t);
    float tot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int kt = warp; kt < tiles; kt += QB_WARPS) {
        const int gi = kt >> gshift;
        float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        qt_tile(c, qs[64 * kt], qs[64 * kt + 32], qt_zz(zs[g * ng + gi]),
                qt_zz(zs[(g + 8) * ng + gi]), xr + 16 * kt);
        const float sa = ss[g * ng + gi], sb = ss[(g + 8) * ng + gi];
        tot[0] = fmaf(sa, c[0], tot[0]);
        tot[1] = fmaf(sa, c[1], tot[1]);
        tot[2] = fmaf(sb, c[2], tot[2]);
        tot[3] = fmaf(sb, c[3], tot[3]);
    }
    qt_reduce<N, QB_WARPS>(red, tot, r0, out, bias, y, acc);
#endif
}

/* shared memory a bulk CTA takes: the block, its scales and zero points */
static size_t q4bulk_smem(const ci_qweight *w) {
    return 8 * (size_t)w->cols + 80 * (size_t)w->ngroups;
}

/* w: a tiled weight the tc kernel takes (qt_ok in cuda_qmatmul.cu, the
 * caller: INT4, no act order, whole 128-column tiles in a group, 16-byte
 * aligned rows and x, whole 16-row blocks); what the bulk build asks on top */
extern "C" int ci_cu_qgemv_int4_bulk_ok(const ci_qweight *w, int n, int num_sms) {
    if (!ci_cu_qgemv_bulk_on() || !ci_cu_sm90a() || n < 1 || n > 2 || num_sms <= 0) return 0;
    /* one wave at up to 3 CTAs an SM, in at most 96 KiB */
    if (w->rows / 16 > 3 * (int64_t)num_sms || q4bulk_smem(w) > 96 * 1024) return 0;
    /* the scales' and zero points' bulk copies 16-byte aligned (the block
     * starts are, given the bases) */
    return ((uintptr_t)w->scales & 15) == 0 && ((uintptr_t)w->zeros & 15) == 0;
}

template <int N, typename OutT>
static int q4bulk_launch(ci_cu_stream st, const ci_qweight *w, const void *x, const float *bias,
                         void *y, int acc) {
    auto k = qgemv_4bulk_kernel<N, OutT>;
    const size_t smem = q4bulk_smem(w);
    const cudaError_t e = ci_cu_smem_optin(k, smem);
    if (e != cudaSuccess) return e;
    ci_cu_launch(k, (unsigned)(w->rows / 16), QB_WARPS * 32, smem, st, *w, (const __nv_bfloat16 *)x,
                 bias, (OutT *)y, qt_group_shift(w, 128), acc);
    return cudaGetLastError();
}

extern "C" int ci_cu_qgemv_int4_bulk(ci_cu_stream st, int f32_out, const ci_qweight *w,
                                     const void *x, int n, const float *bias, void *y, int acc) {
    if (n == 1)
        return f32_out ? q4bulk_launch<1, float>(st, w, x, bias, y, acc)
                       : q4bulk_launch<1, __nv_bfloat16>(st, w, x, bias, y, acc);
    return f32_out ? q4bulk_launch<2, float>(st, w, x, bias, y, acc)
                   : q4bulk_launch<2, __nv_bfloat16>(st, w, x, bias, y, acc);
}
