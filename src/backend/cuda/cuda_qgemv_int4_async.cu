/* cuda_qgemv_int4_async.cu — "tca": the INT4 tensor-core GEMV (tc, in
 * cuda_qmatmul.cu) with each warp's tiles streamed through a ring of its own
 * in shared memory by cp.async, not held in registers.
 *
 * Why: tc holds a warp's next tiles in registers, 4 slots (32 KiB a CTA, 2
 * CTAs an SM: 64 KiB in flight an SM), and its GEMVs stream at 2.6-2.8 TB/s
 * where the 8-bit kernel, 8 slots (128 KiB an SM), reaches ~4.0 on the H200;
 * 8 register slots cost tc its second CTA an SM (docs/kernels/qmatmul.md).
 * Bytes copied by cp.async take no registers while in flight. Each lane
 * copies its own 16 bytes of rows g and g + 8, its rows' scales and the
 * 4-byte words holding their zero points, and later reads back only what it
 * copied, so a warp's ring needs no barrier and no other warp waits on it
 * (the shared-memory rings tried before, one ring a CTA behind per-stage
 * barriers or mbarriers, lost to tc; qmatmul.md). S tiles a warp in
 * flight: 8 (96 KiB a CTA, 2 CTAs an SM: twice tc's bytes) or, with
 * CINFER_QT_ASYNC_S=6, 6 (72 KiB, 3 CTAs an SM: 144 KiB and more warps).
 *
 * A CTA takes bpc consecutive 16-row blocks (one wave of 2 or 3 CTAs an SM;
 * bpc = 1 for o_proj / down_proj's 256 blocks, 31 for an LM head of 8016),
 * the ring running on across a block's end; the block's sums are reduced as
 * tc reduces them. Per tile, the arithmetic and the order of the sums are
 * tc's (qt_tile, then the group scale), so y is tc's bit for bit.
 * Preconditions (ci_cu_qgemv_tca_ok): tc's, with whole 16-row blocks,
 * K a multiple of 1024 (every warp has tiles in every block) and scale
 * groups a multiple of 4 a row (a zero point's aligned word lies in its
 * row). CINFER_QGEMV=tca selects it; CINFER_QT_ASYNC=1 has auto take it
 * where auto takes tc or tc2 (the A/B). */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/qgemv_tc.cuh"
#include "util/qweight.h"

#define QA_WARPS 8
/* a stage, per lane: 16 bytes of row g, of row g + 8, then {scale g, scale
 * g + 8, zero word g, zero word g + 8}; laid out [3][32 lanes] x 16 bytes */
#define QA_STAGE_B (3 * 32 * 16)

__device__ __forceinline__ void qa_cp16(uint32_t dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void qa_cp4(uint32_t dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void qa_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int K> __device__ __forceinline__ void qa_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(K) : "memory");
}

template <int N, typename OutT, int QA_S>
__global__ void __launch_bounds__(QA_WARPS * 32, QA_S >= 8 ? 2 : 3)
    qgemv_tca_kernel(ci_qweight w, const __nv_bfloat16 *__restrict__ x,
                     const float *__restrict__ bias, OutT *__restrict__ y, int gshift, int acc,
                     int bpc) {
    extern __shared__ uint4 qas[]; /* [QA_WARPS][QA_S] stages */
    __shared__ float red[QA_WARPS][16][N];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int K = (int)w.cols, out = (int)w.rows, ng = (int)w.ngroups;
    const int ipb = K / 128 / QA_WARPS; /* the warp's tiles a block: warp + QA_WARPS j */
    const int b0 = (int)blockIdx.x * bpc, nb = min(bpc, out / 16 - b0);
    const int items = nb * ipb;
    const uint32_t ring =
        (uint32_t)__cvta_generic_to_shared(qas) + (uint32_t)(warp * QA_S * QA_STAGE_B + lane * 16);
    const size_t half = (size_t)(K / 2); /* bytes a row */
    /* the issue cursor: block ib (from b0), the warp's tile j of it */
    int ib = 0, ij = 0;
    auto issue = [&](int i) {
        if (i < items) {
            const int b = b0 + ib, kt = warp + QA_WARPS * ij, gi = kt >> gshift;
            const uint4 *pa = (const uint4 *)(w.q + (size_t)b * 16 * half) + (g * 4 + t) + 64 * kt;
            const uint32_t s = ring + (uint32_t)((i % QA_S) * QA_STAGE_B);
            qa_cp16(s, pa);
            qa_cp16(s + 512, pa + 32);
            const int64_t ea = (int64_t)(16 * b + g) * ng + gi, eb = ea + 8 * (int64_t)ng;
            qa_cp4(s + 1024, w.scales + ea);
            qa_cp4(s + 1028, w.scales + eb);
            qa_cp4(s + 1032, w.zeros + (ea & ~(int64_t)3));
            qa_cp4(s + 1036, w.zeros + (eb & ~(int64_t)3));
            if (++ij == ipb) ij = 0, ib++;
        }
        qa_commit(); /* every call one group, empty or not: the wait counts them */
    };
    /* the first QA_S tiles before the PDL wait (weights are constant) */
#pragma unroll
    for (int i = 0; i < QA_S; i++)
        issue(i);
    ci_pdl_trigger();
    ci_pdl_wait();
    const uint4 *xr = (const uint4 *)(x + (size_t)min(g, N - 1) * (size_t)K + 32 * t);
    const uint4 *mine = qas + (size_t)warp * QA_S * (QA_STAGE_B / 16) + lane;
    float tot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int cb = 0, cj = 0; /* the consume cursor */
    for (int i = 0; i < items; i++) {
        qa_wait<QA_S - 1>(); /* this lane's copies of item i are in */
        const uint4 *sp = mine + (i % QA_S) * (QA_STAGE_B / 16);
        const uint4 a = sp[0], b = sp[32], aux = sp[64];
        const int kt = warp + QA_WARPS * cj, sh = 8 * ((kt >> gshift) & 3);
        float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        qt_tile(c, a, b, qt_zz((int)((aux.z >> sh) & 0xFFu)), qt_zz((int)((aux.w >> sh) & 0xFFu)),
                xr + 16 * kt);
        tot[0] = fmaf(__uint_as_float(aux.x), c[0], tot[0]);
        tot[1] = fmaf(__uint_as_float(aux.x), c[1], tot[1]);
        tot[2] = fmaf(__uint_as_float(aux.y), c[2], tot[2]);
        tot[3] = fmaf(__uint_as_float(aux.y), c[3], tot[3]);
        issue(i + QA_S);   /* into the stage just read (its values are in registers, used) */
        if (++cj == ipb) { /* the block's last tile of every warp: its rows out */
            qt_reduce<N, QA_WARPS>(red, tot, 16 * (b0 + cb), out, bias, y, acc);
            __syncthreads(); /* red read before the next block's put */
            tot[0] = tot[1] = tot[2] = tot[3] = 0.0f;
            cj = 0;
            cb++;
        }
    }
    qa_wait<0>();
}

extern "C" int ci_cu_qgemv_tca_ok(const ci_qweight *w) {
    return w->format == CI_QW_INT4 && w->tiled && !w->g_idx && w->rows % 16 == 0 &&
           w->cols % (128 * QA_WARPS) == 0 && w->ngroups % 4 == 0 && w->zeros && w->scales &&
           qt_group_shift(w, 128) >= 0 && ((uintptr_t)w->q & 15) == 0 &&
           ((uintptr_t)w->zeros & 3) == 0 && ((uintptr_t)w->scales & 3) == 0 &&
           w->rows <= INT32_MAX / 2 && w->cols <= INT32_MAX / 2;
}

template <int N, typename OutT, int S>
static int tca_launch_s(ci_cu_stream st, const ci_qweight *w, const void *x, const float *bias,
                        void *y, int num_sms, int acc) {
    auto k = qgemv_tca_kernel<N, OutT, S>;
    const size_t smem = (size_t)QA_WARPS * S * QA_STAGE_B;
    const cudaError_t e = ci_cu_smem_optin(k, smem);
    if (e != cudaSuccess) return e;
    const int64_t blocks = w->rows / 16;
    const int64_t slots = (S >= 8 ? 2 : 3) * (int64_t)(num_sms > 0 ? num_sms : 1);
    const int bpc = (int)((blocks + slots - 1) / slots);
    const unsigned grid = (unsigned)((blocks + bpc - 1) / bpc);
    ci_cu_launch(k, grid, QA_WARPS * 32, smem, st, *w, (const __nv_bfloat16 *)x, bias, (OutT *)y,
                 qt_group_shift(w, 128), acc, bpc);
    return cudaGetLastError();
}

static int g_tca_s = -1; /* CINFER_QT_ASYNC_S: 6, else 8 */
template <int N, typename OutT>
static int tca_launch(ci_cu_stream st, const ci_qweight *w, const void *x, const float *bias,
                      void *y, int num_sms, int acc) {
    if (g_tca_s < 0) g_tca_s = ci_cu_env_int("CINFER_QT_ASYNC_S", 8) == 6 ? 6 : 8;
    return g_tca_s == 6 ? tca_launch_s<N, OutT, 6>(st, w, x, bias, y, num_sms, acc)
                        : tca_launch_s<N, OutT, 8>(st, w, x, bias, y, num_sms, acc);
}

template <typename OutT>
static int tca_n(ci_cu_stream st, const ci_qweight *w, const void *x, int n, const float *bias,
                 void *y, int num_sms, int acc) {
    switch (n) {
    case 1: return tca_launch<1, OutT>(st, w, x, bias, y, num_sms, acc);
    case 2: return tca_launch<2, OutT>(st, w, x, bias, y, num_sms, acc);
    case 3: return tca_launch<3, OutT>(st, w, x, bias, y, num_sms, acc);
    case 4: return tca_launch<4, OutT>(st, w, x, bias, y, num_sms, acc);
    }
    return cudaErrorInvalidValue;
}

extern "C" int ci_cu_qgemv_tca(ci_cu_stream st, int f32_out, const ci_qweight *w, const void *x,
                               int n, const float *bias, void *y, int num_sms, int acc) {
    if (!ci_cu_qgemv_tca_ok(w) || ((uintptr_t)x & 15)) return cudaErrorInvalidValue;
    return f32_out ? tca_n<float>(st, w, x, n, bias, y, num_sms, acc)
                   : tca_n<__nv_bfloat16>(st, w, x, n, bias, y, num_sms, acc);
}
