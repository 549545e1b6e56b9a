/* cuda_gemm_skinny.cu — the BF16 GEMM of decode batches (5 .. 128 rows of x):
 * y[n][M] = x[n][K] . W[M][K]^T (+ bias) (+= y), on Hopper's warpgroup MMA
 * with the weight as the MMA's M side ("swap AB": 64 weight rows a
 * warpgroup, the n tokens as its N of 16 / 32 / 64 / 128).
 *
 * Why: at these batches a decode step streams every weight once and the
 * tensor cores idle; what counts is the weight bandwidth. cuBLASLt's small-n
 * kernels reach ~3.1-3.6 TB/s of the H200's 4.2 on the 8B shapes (docs/
 * benchmarks.md: gate|up 64.9 µs, down 37.4, qkv 16.4, o 10.1 at n = 64), and
 * a cuBLASLt launch cannot start its weight loads before the kernel in front
 * of it ends. Here weight tiles stream through a deep TMA ring that is
 * filled before the PDL wait (weights are constant), and work is split
 * evenly over the SMs whatever the shape.
 *
 * CTA: a producer warp and 2 consumer warpgroups (128 weight rows). A stage
 * holds one 128 x 64 weight tile and the BN x 64 tile of x at the same
 * columns (both 128-byte swizzled, the layout wgmma's K-major descriptors
 * read), filled by two TMA loads completing on the stage's "full" mbarrier;
 * consumers release it on its "empty" mbarrier once their wgmmas on it are
 * done, keeping one wgmma group in flight.
 *
 * Stream-K (stream_k.h, checked on the CPU by test_stream_k): the (row
 * tile, 64-column step) units, row tile major, are cut into one contiguous
 * range per CTA (grid = min(SMs, units)), so every SM streams the same
 * number of weight bytes. A CTA whose range covers a whole row tile writes
 * it; a tile split between CTAs has each write its f32 partial to its slot
 * of the workspace, and the last to arrive on the tile's counter sums the
 * slots in CTA order (deterministic: the same bits whichever CTA arrives
 * last), writes y and resets the counter for the next call (graph replays
 * included). */
#include <stdint.h>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/stream_k.h"
#include "backend/cuda/wgmma.cuh"

using namespace ci_wg;

namespace {

constexpr int SK_KB = 128; /* bytes of a row a step: one 128-byte swizzle row (64 BF16 / 128 E4M3) */
constexpr int SK_THREADS = 256 + 32;       /* 2 consumer warpgroups and a producer warp */
constexpr int SK_SMEM_BUDGET = 200 * 1024; /* the stages' bytes, at most */
constexpr int SK_BAR_CONS = 1;             /* named barrier of the 256 consumer threads */

/* BN tokens; R blocks of 64 weight rows a warpgroup: a tile of ROWS = 128 R
 * rows (R = 2 halves the x bytes read per weight byte) */
template <int BN, int R> struct sk_cfg {
    static constexpr int ROWS = 128 * R;
    static constexpr int WB = ROWS * SK_KB; /* a stage's weight tile */
    static constexpr int XB = BN * SK_KB;   /* a stage's x tile */
    static constexpr int SB = WB + XB;      /* a multiple of 1024: swizzle atoms stay aligned */
    static constexpr int NST = SK_SMEM_BUDGET / SB < 8 ? SK_SMEM_BUDGET / SB : 8;
    static constexpr size_t SMEM = (size_t)NST * SB + 1024 /* alignment */ + 256 /* barriers */;
    static_assert(SB % 1024 == 0, "stage alignment");
};

struct sk_params {
    const float *bias; /* [M] f32 or NULL */
    const float *ws;   /* E4M3: the weight's row scales [M] */
    const float *xs;   /* E4M3: x's token scales [n] */
    void *y;           /* [n][M] */
    float *part;       /* 2 x grid slots of ROWS x BN f32 partials */
    unsigned *cnt;     /* [row tiles] arrival counters, zero between calls */
    int n, M, K, ksteps, units, f32_out, acc;
};

[[maybe_unused]] __device__ __forceinline__ void sk_cons_sync() {
    asm volatile("bar.sync %0, 256;\n" ::"n"(SK_BAR_CONS) : "memory");
}

/* block r of this thread's warpgroup: rows 64 (R w + r) .. of tile t */
template <typename T, int BN, int R, bool F8>
__device__ __forceinline__ void sk_store(const sk_params &p, const float *d, int t, int r) {
    const int ct = threadIdx.x, lane = ct & 31;
    const int r0 = t * (128 * R) + ((ct >> 7) * R + r) * 64 + ((ct >> 5) & 3) * 16 + (lane >> 2);
    T *y = (T *)p.y;
#pragma unroll
    for (int j = 0; j < BN / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int row = r0 + (e >> 1) * 8, tok = 8 * j + 2 * (lane & 3) + (e & 1);
            if (row < p.M && tok < p.n) {
                const float a = F8 ? d[4 * j + e] * p.ws[row] * p.xs[tok] : d[4 * j + e];
                const float v = a + (p.bias ? p.bias[row] : 0.0f);
                ci_st_out(y, (int64_t)tok * p.M + row, v, p.acc);
            }
        }
}

template <int BN, int R, bool F8>
__global__ void __launch_bounds__(SK_THREADS, 1)
    sk_kernel(const __grid_constant__ CUtensorMap mw, const __grid_constant__ CUtensorMap mx,
              const sk_params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using C = sk_cfg<BN, R>;
    constexpr int ND = BN / 2;                 /* accumulators a consumer thread and block */
    constexpr int KC = F8 ? SK_KB : SK_KB / 2; /* columns a step */
    extern __shared__ __align__(1024) unsigned char sk_raw[];
    unsigned char *sm = (unsigned char *)(((uintptr_t)sk_raw + 1023) & ~(uintptr_t)1023);
    uint64_t *full = (uint64_t *)(sm + (size_t)C::NST * C::SB), *empty = full + C::NST;
    __shared__ int last_flag;
    ci_pdl_trigger();
    const int G = gridDim.x, c = blockIdx.x;
    const int u0 = ci_sk_start(c, p.units, G), u1 = ci_sk_start(c + 1, p.units, G);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (threadIdx.x == 0) {
        for (int s = 0; s < C::NST; s++) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], 8);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (warp == 8) { /* ---- producer ---- */
        if (lane == 0) {
            tma_prefetch_desc(&mw);
            tma_prefetch_desc(&mx);
            /* the first stages' weight tiles go out before the PDL wait: they
             * stream while the kernel in front finishes */
            const int npre = min(C::NST, u1 - u0);
            for (int i = 0; i < npre; i++) {
                const int u = u0 + i;
                mbar_expect_tx(smem_u32(&full[i]), C::SB);
                tma_load_2d(sm + (size_t)i * C::SB, &mw, (u % p.ksteps) * KC,
                            (u / p.ksteps) * C::ROWS, smem_u32(&full[i]));
            }
            ci_pdl_wait();
            for (int i = 0; i < npre; i++)
                tma_load_2d(sm + (size_t)i * C::SB + C::WB, &mx, ((u0 + i) % p.ksteps) * KC, 0,
                            smem_u32(&full[i]));
            for (int u = u0 + npre, q = npre; u < u1; u++, q++) {
                const int s = q % C::NST;
                mbar_wait(smem_u32(&empty[s]), (uint32_t)((q / C::NST - 1) & 1));
                mbar_expect_tx(smem_u32(&full[s]), C::SB);
                unsigned char *st = sm + (size_t)s * C::SB;
                tma_load_2d(st, &mw, (u % p.ksteps) * KC, (u / p.ksteps) * C::ROWS,
                            smem_u32(&full[s]));
                tma_load_2d(st + C::WB, &mx, (u % p.ksteps) * KC, 0, smem_u32(&full[s]));
            }
        } else {
            ci_pdl_wait();
        }
        return;
    }

    /* ---- consumers: warpgroup w computes rows 64 (R w + r) .. + 63, r < R, of a tile ---- */
    ci_pdl_wait();
    const int ct = threadIdx.x, w = ct >> 7;
    const uint64_t da0 = gmma_desc(sm + w * R * 64 * 128, 16, 1024);
    const uint64_t db0 = gmma_desc(sm + C::WB, 16, 1024);
    float d[R * ND]; /* block r: d + r ND */
#pragma unroll
    for (int i = 0; i < R * ND; i++)
        d[i] = 0.0f;
    int q = 0;
    for (int u = u0; u < u1;) {
        const int t = u / p.ksteps, ka = u % p.ksteps;
        const int kb = min(p.ksteps, ka + (u1 - u));
        int prev = -1;
        for (int k = ka; k < kb; k++, q++) {
            const int s = q % C::NST;
            mbar_wait(smem_u32(&full[s]), (uint32_t)((q / C::NST) & 1));
            fence_regs<R * ND>(d);
            wg_fence();
            const uint64_t off = (uint64_t)(s * C::SB) >> 4;
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int kk = 0; kk < 4; kk++) { /* k16 (BF16) or k32 (E4M3): 32 bytes */
                    const uint64_t a = da0 + off + r * (64 * 128 >> 4) + kk * 2, b = db0 + off + kk * 2;
                    if constexpr (F8)
                        wgmma_ss_e4m3<BN>(d + r * ND, a, b, (k > ka || kk > 0) ? 1 : 0);
                    else
                        wgmma_ss<BN>(d + r * ND, a, b, (k > ka || kk > 0) ? 1 : 0);
                }
            wg_commit();
            if (prev >= 0) {
                wg_wait1();
                if (lane == 0) mbar_arrive(smem_u32(&empty[prev]));
            }
            prev = s;
        }
        wg_wait0();
        fence_regs<R * ND>(d);
        if (lane == 0) mbar_arrive(smem_u32(&empty[prev]));
        u += kb - ka;

        if (ka > 0 || kb < p.ksteps) { /* a split tile: partial, then the last sums */
            const int slot = ci_sk_slot(c, t, p.units, G, p.ksteps);
            float *ps = p.part + (size_t)slot * (C::ROWS * BN);
#pragma unroll
            for (int i = 0; i < R * ND; i++)
                __stcg(ps + i * 256 + ct, d[i]);
            __threadfence();
            sk_cons_sync();
            const int clo = ci_sk_owner(t * p.ksteps, p.units, G);
            const int chi = ci_sk_owner((t + 1) * p.ksteps - 1, p.units, G);
            if (ct == 0) {
                const unsigned old = atomicAdd(&p.cnt[t], 1u);
                last_flag = old == (unsigned)(chi - clo);
                if (last_flag) p.cnt[t] = 0u; /* every contributor has arrived */
            }
            sk_cons_sync();
            if (!last_flag) continue;
            __threadfence();
#pragma unroll
            for (int i = 0; i < R * ND; i++)
                d[i] = 0.0f;
            for (int cc = clo; cc <= chi; cc++) {
                const int sl = ci_sk_slot(cc, t, p.units, G, p.ksteps);
                const float *qs = p.part + (size_t)sl * (C::ROWS * BN);
#pragma unroll
                for (int i = 0; i < R * ND; i++)
                    d[i] += __ldcg(qs + i * 256 + ct);
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (p.f32_out)
                sk_store<float, BN, R, F8>(p, d + r * ND, t, r);
            else
                sk_store<__nv_bfloat16, BN, R, F8>(p, d + r * ND, t, r);
        }
    }
#else
    __trap(); /* sm_90a code only: the launcher takes compute 9.0 alone */
#endif
}

int sk_map(PFN_cuTensorMapEncodeTiled_v12000 enc, CUtensorMap *m, const void *p, int rows, int K,
           int box_rows, bool f8) {
    const int esz = f8 ? 1 : 2;
    const cuuint64_t dim[2] = {(cuuint64_t)K, (cuuint64_t)rows};
    const cuuint64_t str[1] = {(cuuint64_t)K * esz};
    const cuuint32_t box[2] = {(cuuint32_t)(SK_KB / esz), (cuuint32_t)box_rows}, one[2] = {1, 1};
    return enc(m, f8 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void *)p,
               dim, str, box, one, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
               CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS;
}

template <int BN, int R, bool F8>
cudaError_t sk_launch(cudaStream_t st, const CUtensorMap &mw, const CUtensorMap &mx,
                      const sk_params &p, int grid) {
    auto kern = sk_kernel<BN, R, F8>;
    /* every call: the attribute is per device (tensor-parallel ranks are
     * threads on several GPUs), and the call is cheap and host-only */
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)sk_cfg<BN, R>::SMEM);
    if (e != cudaSuccess) return e;
    ci_cu_launch(kern, grid, SK_THREADS, sk_cfg<BN, R>::SMEM, st, mw, mx, p);
    return cudaGetLastError();
}

/* both element types: the checks, the maps, the split and the launch */
template <bool F8>
int sk_run(ci_cu_stream st, int f32_out, const void *W, const float *ws, const void *x,
           const float *xs, int n, int K, int M, const float *bias, void *y, int acc,
           int tile_rows, int num_sms, float *part, unsigned *counters) {
    const int kc = F8 ? SK_KB : SK_KB / 2;
    if (!ci_cu_skinny_ok(n, K, M) || (F8 && K % 16) || ((uintptr_t)W & 15) ||
        ((uintptr_t)x & 15) || !ci_cu_sm90a())
        return (int)cudaErrorNotSupported;
    PFN_cuTensorMapEncodeTiled_v12000 enc = tma_encoder();
    if (!enc) return (int)cudaErrorNotSupported;
    const int BN = n <= 16 ? 16 : n <= 32 ? 32 : n <= 64 ? 64 : 128;
    /* 256-row tiles read half the x bytes a weight byte; at 128 tokens their
     * partials would outgrow the workspace */
    const int R = tile_rows == 256 && BN <= 64 ? 2 : 1;
    CUtensorMap mw, mx;
    if (sk_map(enc, &mw, W, M, K, 128 * R, F8) || sk_map(enc, &mx, x, n, K, BN, F8))
        return (int)cudaErrorNotSupported;
    sk_params p;
    p.bias = bias;
    p.ws = ws;
    p.xs = xs;
    p.y = y;
    p.part = part;
    p.cnt = counters;
    p.n = n;
    p.M = M;
    p.K = K;
    p.ksteps = (K + kc - 1) / kc;
    p.units = (M + 128 * R - 1) / (128 * R) * p.ksteps; /* row tiles x column steps */
    p.f32_out = f32_out;
    p.acc = acc;
    const int grid = p.units < num_sms ? p.units : num_sms;
    cudaStream_t s = (cudaStream_t)st;
    if (R == 2)
        return (int)(BN == 16   ? sk_launch<16, 2, F8>(s, mw, mx, p, grid)
                     : BN == 32 ? sk_launch<32, 2, F8>(s, mw, mx, p, grid)
                                : sk_launch<64, 2, F8>(s, mw, mx, p, grid));
    return (int)(BN == 16   ? sk_launch<16, 1, F8>(s, mw, mx, p, grid)
                 : BN == 32 ? sk_launch<32, 1, F8>(s, mw, mx, p, grid)
                 : BN == 64 ? sk_launch<64, 1, F8>(s, mw, mx, p, grid)
                            : sk_launch<128, 1, F8>(s, mw, mx, p, grid));
}

} // namespace

extern "C" int ci_cu_skinny_ok(int n, int64_t K, int64_t M) {
    return n >= 1 && n <= CI_CU_SKINNY_MAX_N && K >= 64 && K % 8 == 0 && K <= INT32_MAX &&
           M >= 128 && (M + 127) / 128 <= CI_CU_SKINNY_MAX_TILES &&
           (M + 127) / 128 * ((K + 63) / 64) <= INT32_MAX;
}

extern "C" int ci_cu_skinny_gemm(ci_cu_stream st, int f32_out, const void *W, const void *x, int n,
                                 int K, int M, const float *bias, void *y, int acc, int tile_rows,
                                 int num_sms, float *part, unsigned *counters) {
    return sk_run<false>(st, f32_out, W, nullptr, x, nullptr, n, K, M, bias, y, acc, tile_rows,
                         num_sms, part, counters);
}

extern "C" int ci_cu_skinny_gemm_e4m3(ci_cu_stream st, int f32_out, const void *Wq, const float *ws,
                                      const void *xq, const float *xs, int n, int K, int M,
                                      const float *bias, void *y, int tile_rows, int num_sms,
                                      float *part, unsigned *counters) {
    return sk_run<true>(st, f32_out, Wq, ws, xq, xs, n, K, M, bias, y, 0, tile_rows, num_sms, part,
                        counters);
}
