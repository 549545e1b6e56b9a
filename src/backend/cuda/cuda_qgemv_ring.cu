/* cuda_qgemv_ring.cu — the INT4 tensor-core GEMV fed by the TMA engine
 * (`CINFER_QGEMV=ring`, an experiment beside tc / tc2): BF16 x of 1-4 rows,
 * the tiled layout (cuda_qweight.c: a 16-row block is K / 128 tiles of
 * 1 KB, contiguous), groups of 128k columns or one per row.
 *
 * Why: tc / tc2 hold their loads in flight in registers (4 tiles a warp),
 * which caps the bytes in flight per SM at their occupancy; ncu put them at
 * ~40 % of the DRAM bandwidth and ~45 % of the issue slots, latency-bound
 * (docs/kernels/qmatmul.md), and the batch-1 INT4 step spends ~60 % of its
 * time in them. Here a producer warp streams each CTA's row blocks through a
 * shared-memory ring with cp.async.bulk (one instruction per 8 KB, nothing
 * held in registers), started before the PDL wait, and 8 consumer warps
 * decode from shared memory (qgemv_tc.cuh's tile arithmetic: each lane's
 * 16 bytes of rows g and g + 8 are its mma A fragments as they are).
 *
 * CTA: 8 consumer warps + 1 producer warp; persistent over row blocks rb =
 * blockIdx.x, + gridDim.x, ... A row block's scales [16][ng] f32 and zero
 * points [16][ng] bytes (contiguous: its rows are) come through a 2-slot
 * ring of their own, one copy each per block. Weight stage = 8 tiles (the
 * last of a block may hold fewer); consumer warp w takes tile w of each
 * stage; at a block's end the 8 warps' sums meet in shared memory (a named
 * barrier: the producer takes no part). */
#include <stdint.h>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/qgemv_tc.cuh"
#include "backend/cuda/wgmma.cuh"
#include "util/qweight.h"

using namespace ci_wg;

#define QR_CWARPS 8                      /* consumer warps */
#define QR_THREADS (32 * QR_CWARPS + 32) /* and the producer */
#define QR_NST 6                         /* weight stages of 8 tiles (8 KB) */
#define QR_META_MAX 12288                /* bytes of one block's scales + zeros */

static constexpr int qr_smem_bytes() {
    return QR_NST * 8192 + 2 * QR_META_MAX + 16 * (QR_NST + 2) * 2 + 128;
}

/* consumer warps only: bar.sync on barrier 1 (0 is __syncthreads') */
__device__ __forceinline__ void qr_sync_consumers() {
    asm volatile("bar.sync 1, %0;" ::"n"(QR_CWARPS * 32) : "memory");
}

template <int N, typename OutT>
__global__ void __launch_bounds__(QR_THREADS, 2)
    qgemv_ring_kernel(ci_qweight w, const __nv_bfloat16 *__restrict__ x,
                      const float *__restrict__ bias, OutT *__restrict__ y, int gshift, int acc) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ __align__(128) uint8_t qr_smem[];
    __shared__ float red[QR_CWARPS][16][N];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int K = (int)w.cols, out = (int)w.rows, ng = (int)w.ngroups, tiles = K / 128;
    const int nblocks = out / 16, chunks = (tiles + 7) / 8;
    uint8_t *ring = qr_smem, *meta = qr_smem + QR_NST * 8192;
    uint64_t *bars = (uint64_t *)(meta + 2 * QR_META_MAX);
    /* barriers: weight full [0, NST), weight empty [NST, 2 NST), meta full
     * 2 NST + s, meta empty 2 NST + 2 + s */
    const uint32_t b0 = smem_u32(bars);
    auto wfull = [&](int s) { return b0 + 8 * s; };
    auto wempty = [&](int s) { return b0 + 8 * (QR_NST + s); };
    auto mfull = [&](int s) { return b0 + 8 * (2 * QR_NST + s); };
    auto mempty = [&](int s) { return b0 + 8 * (2 * QR_NST + 2 + s); };
    if (tid == 0) {
        for (int s = 0; s < QR_NST; s++) {
            mbar_init(bars + s, 1);
            mbar_init(bars + QR_NST + s, QR_CWARPS);
        }
        for (int s = 0; s < 2; s++) {
            mbar_init(bars + 2 * QR_NST + s, 1);
            mbar_init(bars + 2 * QR_NST + 2 + s, QR_CWARPS);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    ci_pdl_trigger();
    const uint32_t sbytes = 16u * (uint32_t)ng * 4u, zbytes = 16u * (uint32_t)ng;

    if (warp == QR_CWARPS) {
        /* producer (lane 0): constant weights, so no PDL wait: the first
         * stages stream while the kernel before finishes */
        if (lane != 0) return;
        int st = 0, ms = 0, i = 0, bi = 0;
        uint32_t ph = 0, mph = 0;
        for (int rb = blockIdx.x; rb < nblocks; rb += gridDim.x, bi++) {
            if (bi >= 2) mbar_wait(mempty(ms), mph ^ 1);
            mbar_expect_tx(mfull(ms), sbytes + zbytes);
            const uint32_t md = smem_u32(meta + ms * QR_META_MAX);
            bulk_g2s(md, w.scales + (size_t)rb * 16 * ng, sbytes, mfull(ms));
            bulk_g2s(md + sbytes, w.zeros + (size_t)rb * 16 * ng, zbytes, mfull(ms));
            if (++ms == 2) ms = 0, mph ^= 1;
            const uint8_t *src = w.q + (size_t)rb * 16 * (K / 2);
            for (int c = 0; c < chunks; c++, i++) {
                if (i >= QR_NST) mbar_wait(wempty(st), ph ^ 1);
                const uint32_t bytes = (uint32_t)min(8, tiles - 8 * c) * 1024u;
                mbar_expect_tx(wfull(st), bytes);
                bulk_g2s(smem_u32(ring + st * 8192), src + (size_t)c * 8192, bytes, wfull(st));
                if (++st == QR_NST) st = 0, ph ^= 1;
            }
        }
        return;
    }

    ci_pdl_wait(); /* x is the kernel before's output */
    /* the lane's x: row g (N - 1 for lanes of rows >= N: their C columns are
     * never stored), columns 32 t .. of each tile (the tiled layout's order) */
    const uint4 *xr = (const uint4 *)(x + (size_t)min(g, N - 1) * K + 32 * t);
    int st = 0, ms = 0;
    uint32_t ph = 0, mph = 0;
    for (int rb = blockIdx.x; rb < nblocks; rb += gridDim.x) {
        mbar_wait(mfull(ms), mph);
        const float *S = (const float *)(meta + ms * QR_META_MAX);
        const uint8_t *Z = meta + ms * QR_META_MAX + sbytes;
        float tot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int c = 0; c < chunks; c++) {
            mbar_wait(wfull(st), ph);
            const int kt = 8 * c + warp;
            if (kt < tiles) {
                const uint4 *tile = (const uint4 *)(ring + st * 8192 + warp * 1024);
                const uint4 a = tile[g * 4 + t], b = tile[32 + g * 4 + t];
                const int gi = kt >> gshift;
                float cc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                qt_tile(cc, a, b, qt_zz((int)Z[g * ng + gi]), qt_zz((int)Z[(g + 8) * ng + gi]),
                        xr + 16 * kt);
                const float sa = S[g * ng + gi], sb = S[(g + 8) * ng + gi];
                tot[0] = fmaf(sa, cc[0], tot[0]);
                tot[1] = fmaf(sa, cc[1], tot[1]);
                tot[2] = fmaf(sb, cc[2], tot[2]);
                tot[3] = fmaf(sb, cc[3], tot[3]);
            }
            __syncwarp();
            if (lane == 0) mbar_arrive(wempty(st));
            if (++st == QR_NST) st = 0, ph ^= 1;
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(mempty(ms));
        if (++ms == 2) ms = 0, mph ^= 1;
        /* the 8 warps' fragments summed (qt_reduce, on a named barrier) */
        qt_red_put<N>(red, tot);
        qr_sync_consumers();
        qt_red_out<N, QR_CWARPS>(red, rb * 16, out, bias, y, acc);
        qr_sync_consumers(); /* red is rewritten by the next block */
    }
#else
    __trap(); /* sm_90 only: the launcher checks the device */
#endif
}

extern "C" int ci_cu_qgemv_ring_ok(const ci_qweight *w, int n) {
    if (!w || w->format != CI_QW_INT4 || !w->tiled || w->g_idx || !w->zeros || n < 1 || n > 4)
        return 0;
    if (w->cols % 128 || w->rows % 16 || w->rows > INT32_MAX / 2 || w->cols > INT32_MAX / 2)
        return 0;
    if (qt_group_shift(w, 128) < 0 || (size_t)w->ngroups * 16 * 5 > QR_META_MAX) return 0;
    return ci_cu_sm90a();
}

template <int N>
static int ring_launch(ci_cu_stream st, int f32_out, const ci_qweight *w, const void *x,
                       const float *bias, void *y, int num_sms, int acc) {
    const int smem = qr_smem_bytes();
    const int gshift = qt_group_shift(w, 128);
    int64_t grid = w->rows / 16;
    if (grid > 2 * (int64_t)num_sms) grid = 2 * (int64_t)num_sms;
    cudaError_t e;
    if (f32_out) {
        e = cudaFuncSetAttribute(qgemv_ring_kernel<N, float>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return e;
        ci_cu_launch(qgemv_ring_kernel<N, float>, (unsigned)grid, QR_THREADS, (size_t)smem, st,
                     *w, (const __nv_bfloat16 *)x, bias, (float *)y, gshift, acc);
    } else {
        e = cudaFuncSetAttribute(qgemv_ring_kernel<N, __nv_bfloat16>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return e;
        ci_cu_launch(qgemv_ring_kernel<N, __nv_bfloat16>, (unsigned)grid, QR_THREADS,
                     (size_t)smem, st, *w, (const __nv_bfloat16 *)x, bias, (__nv_bfloat16 *)y,
                     gshift, acc);
    }
    return cudaGetLastError();
}

extern "C" int ci_cu_qgemv_ring(ci_cu_stream st, int f32_out, const ci_qweight *w, const void *x,
                                int n, const float *bias, void *y, int num_sms, int acc) {
    if (!ci_cu_qgemv_ring_ok(w, n) || ((uintptr_t)x & 15)) return cudaErrorInvalidValue;
    switch (n) {
    case 1: return ring_launch<1>(st, f32_out, w, x, bias, y, num_sms, acc);
    case 2: return ring_launch<2>(st, f32_out, w, x, bias, y, num_sms, acc);
    case 3: return ring_launch<3>(st, f32_out, w, x, bias, y, num_sms, acc);
    default: return ring_launch<4>(st, f32_out, w, x, bias, y, num_sms, acc);
    }
}
