/* cuda_qgemm_int4.cu — the INT4 x BF16 GEMM on Hopper's warpgroup MMA for
 * decode batches and short prefills (CINFER_QGEMM_MIN_N .. _MAX_N rows of
 * x, 9 .. 512 by default): the packed weight is decoded in registers
 * straight into wgmma's register A operand, so it is streamed once per BN
 * tokens and never written back as BF16 (dequantize + cuBLASLt, the path
 * above, writes and re-reads a BF16 copy of every weight; the tensor-core
 * GEMV below streams it once per 8 tokens).
 *
 * Operands: A = the weight, 64 rows per warpgroup (each warp one 16-row
 * block of the tiled layout, cuda_qweight.c: lane (g, t) holds 16 bytes of
 * rows g and g + 8 per 128-column tile, the tensor-core GEMV's fragments,
 * qgemv_tc.cuh); B = BN tokens of x from shared memory (K-major, 128-byte
 * swizzle); D = 64 rows x BN tokens of f32 in registers.
 *
 * The k order: a dot product is summed in any order, so the GEMV binds
 * logical k of its mma k-steps to the physical columns each lane holds and
 * reads x in that order. wgmma reads B through a descriptor in its own
 * order, so x is permuted once per call to match (qg_permute_kernel, into
 * the workspace): within each 128-column tile, k-step s = 2j + h and
 * logical k = 2t + e + 8f hold column 32t + 8j + 4h + 2f + e (nibble pair
 * qt_pair(word j, 2h + f) of lane t is that column and the next: the tiled
 * layout's interleaved nibbles).
 * The permute kernel writes each (token tile, column tile) as the very
 * image the shared-memory stage holds, so a stage is one bulk copy.
 *
 * Scales: per-row weights (one group) are scaled in f32 in the epilogue;
 * group scales are folded into the decoded A (bf16 (q - z) x bf16 scale,
 * one rounding, as the dequantized BF16 weight of the GEMM path is rounded).
 *
 * CTA: 2 consumer warpgroups (128 rows x BN tokens, BN 64 or 128) and a
 * producer warp. The producer fills a ring of qg_nst stages through the TMA
 * engine (cp.async.bulk: the 8 blocks' 1 KB tiles and the x image, one
 * "full" mbarrier per stage with the bytes expected), refilling a stage
 * once all 8 consumer warps released it ("empty" mbarrier). A consumer
 * step: wait for the tile, decode it (the tile before's wgmmas still on the
 * tensor cores), 8 wgmmas, commit, wait for the tile before's and release
 * its stage. The two warpgroups run independently, so one decodes while the
 * other's wgmmas run. Zero points and scales come through registers, two
 * tiles ahead. Split-K (grid z) when the row x token tiles leave SMs idle:
 * f32 partials into the workspace, summed by qg_reduce_kernel. H200
 * numbers: docs/kernels/qmatmul.md. */
#include <stdint.h>
#include <stdlib.h>

#include <atomic>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/qgemv_tc.cuh"
#include "backend/cuda/wgmma.cuh"
#include "util/qweight.h"

using namespace ci_wg;

#define QG_ROWS 128                      /* weight rows per CTA: 2 warpgroups x 64 */
#define QG_CWARPS 8                      /* consumer warps: 2 warpgroups */
#define QG_THREADS (32 * QG_CWARPS + 32) /* and a producer warp */
#define QG_PART_FLOATS (4 << 20)         /* split-K partials: at most 16 MB of the workspace */

/* xp = x as the GEMM's shared-memory images: for token tile nt (BN rows,
 * zero past n) and 128-column tile kt, BN x 256 bytes at
 * (nt * tiles + kt) * BN * 128 elements, laid out as wgmma reads them
 * ([2][BN][64], 16-byte chunk c of row r at c ^ (r & 7) in its half), in
 * the permuted k order (top): a stage is then one contiguous copy. One
 * thread per 16-byte chunk of the images. */
template <int BN>
__global__ void qg_permute_kernel(const __nv_bfloat16 *__restrict__ x, int n, int K,
                                  const int32_t *__restrict__ perm, __nv_bfloat16 *__restrict__ xp) {
    ci_pdl_trigger();
    ci_pdl_wait();
    const int tiles = K / 128;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t img = i / (BN * 16); /* nt * tiles + kt */
    if (img >= (int64_t)((n + BN - 1) / BN) * tiles) return;
    const int p = (int)(i % (BN * 16)), kt = (int)(img % tiles), nt = (int)(img / tiles);
    const int half = p / (BN * 8), r = (p % (BN * 8)) >> 3;
    const int c = half * 8 + ((p & 7) ^ (r & 7)); /* logical chunk: k 8c .. 8c + 7 */
    const int tok = nt * BN + r, s = c >> 1, f = c & 1, j = s >> 1, h = s & 1;
    uint32_t o[4] = {0u, 0u, 0u, 0u};
    if (tok < n) {
        const unsigned short *row = (const unsigned short *)x + (size_t)tok * K;
        const int c0 = kt * 128 + 8 * j + 4 * h + 2 * f;
        /* perm: a sorted act order (util/qweight.h), stored column c holds x[perm[c]] */
#pragma unroll
        for (int q = 0; q < 4; q++) { /* logical k 8f + 2q + e: t = q, column 32q + e */
            const int ca = c0 + 32 * q, cb = ca + 1;
            o[q] = (uint32_t)__ldg(row + (perm ? __ldg(perm + ca) : ca)) |
                   (uint32_t)__ldg(row + (perm ? __ldg(perm + cb) : cb)) << 16;
        }
    }
    ((uint4 *)xp)[i] = make_uint4(o[0], o[1], o[2], o[3]);
}

/* one tile's weight bytes (rows g and g + 8), zero points and scales */
struct qg_w {
    uint4 a, b;
    uint32_t za, zb;
    float sa, sb;
};

__device__ __forceinline__ uint32_t qg_bf2(float v) {
    __nv_bfloat162 h = __floats2bfloat162_rn(v, v);
    return *(uint32_t *)&h;
}
__device__ __forceinline__ uint32_t qg_mul(uint32_t a, uint32_t s) {
    uint32_t r; /* a * s, one rounding (+ -0 changes nothing) */
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(s), "r"(0x80008000u));
    return r;
}

/* the 8 k-steps' A fragments of one tile (qgemv_tc.cuh's qt_tile order) */
template <bool GROUPED>
__device__ __forceinline__ void qg_decode(const qg_w &it, uint32_t (*A)[4]) {
    const uint32_t zza = qt_zz((int)it.za), zzb = qt_zz((int)it.zb);
    const uint32_t wa4[4] = {it.a.x, it.a.y, it.a.z, it.a.w};
    const uint32_t wb4[4] = {it.b.x, it.b.y, it.b.z, it.b.w};
    const uint32_t ssa = qg_bf2(it.sa), ssb = qg_bf2(it.sb);
#pragma unroll
    for (int s = 0; s < 8; s++) {
        const int j = s >> 1, h = s & 1;
        A[s][0] = qt_pair(wa4[j], 2 * h, zza);
        A[s][1] = qt_pair(wb4[j], 2 * h, zzb);
        A[s][2] = qt_pair(wa4[j], 2 * h + 1, zza);
        A[s][3] = qt_pair(wb4[j], 2 * h + 1, zzb);
        if (GROUPED) {
            A[s][0] = qg_mul(A[s][0], ssa);
            A[s][1] = qg_mul(A[s][1], ssb);
            A[s][2] = qg_mul(A[s][2], ssa);
            A[s][3] = qg_mul(A[s][3], ssb);
        }
    }
}

template <int BN>
__device__ __forceinline__ void qg_wgmma(float *d, const uint32_t *a, uint64_t desc) {
    if constexpr (BN == 64)
        wgmma_n64<0>(d, a, desc);
    else
        wgmma_n128<0>(d, a, desc);
}

/* The ring: qg_nst stages of one 128-column tile each (BN 64: 8 = 48 KB of
 * weights in flight per SM; BN 128: 5); stage: x [2][BN][64] bf16
 * (128-byte swizzle) and the CTA's 8 blocks' weight tiles (8 x 1 KB, as
 * stored); the stages' full and empty barriers after the ring. */
template <int BN> __host__ __device__ constexpr int qg_nst() {
    return BN == 64 ? 8 : 5;
}
template <int BN> __host__ __device__ constexpr int qg_stage_bytes() {
    return BN * 256 + 8192;
}
template <int BN> __host__ __device__ constexpr int qg_smem_bytes() {
    return qg_nst<BN>() * qg_stage_bytes<BN>() + 1024 + 16 * qg_nst<BN>();
}

template <int BN, bool GROUPED, typename OutT>
__global__ void __launch_bounds__(QG_THREADS, 1)
    qgemm_int4_wg_kernel(ci_qweight w, const __nv_bfloat16 *__restrict__ xp, int n,
                         const float *__restrict__ bias, OutT *__restrict__ y,
                         float *__restrict__ part, int gshift, int acc) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int NST = qg_nst<BN>(), SB = qg_stage_bytes<BN>();
    extern __shared__ uint8_t qg_smem_raw[];
    const uint32_t pad = (1024u - (smem_u32(qg_smem_raw) & 1023u)) & 1023u;
    uint8_t *sm = qg_smem_raw + pad; /* stage st at sm + st * SB */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int K = (int)w.cols, out = (int)w.rows, ng = (int)w.ngroups, splits = gridDim.z;
    const int n0 = blockIdx.x * BN, rcta = blockIdx.y * QG_ROWS;
    const int tiles = K / 128, z = blockIdx.z;
    const int kb = (int)((int64_t)tiles * z / splits);
    const int nk = (int)((int64_t)tiles * (z + 1) / splits) - kb;
    const uint32_t full0 = smem_u32(sm) + NST * SB, empty0 = full0 + 8 * NST;

    if (tid == 0) {
#pragma unroll
        for (int st = 0; st < NST; st++) {
            mbar_init((uint64_t *)(sm + NST * SB) + st, 1);
            mbar_init((uint64_t *)(sm + NST * SB) + NST + st, QG_CWARPS);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    ci_pdl_trigger();
    ci_pdl_wait(); /* x: the permute kernel's output; y: still read by the kernels before */

    if (warp == QG_CWARPS) {
        /* producer: tile i into stage i % NST once its previous use is
         * released; lanes b < 8 copy block b's tile (blocks past the weight
         * repeat its last, never stored), lanes 8 and 9 the two halves of
         * the x image, their rows of live tokens only (the stale rows past
         * n reach only output columns that are never stored) */
        const int live = min(BN, n - n0);
        const uint8_t *src = lane < 8
                                 ? w.q + (size_t)min(rcta + 16 * lane, out - 16) * (K / 2)
                                 : (const uint8_t *)(xp + (size_t)blockIdx.x * tiles * (BN * 128) +
                                                     (lane & 1) * (BN * 64));
        const size_t step = lane < 8 ? 1024 : BN * 256;
        const uint32_t bytes = lane < 8 ? 1024 : live * 128;
        const uint32_t dst0 =
            smem_u32(sm) + (lane < 8 ? BN * 256 + 1024 * lane : (lane & 1) * BN * 128);
        int st = 0;
        uint32_t ph = 0;
        for (int i = 0; i < nk; i++) {
            if (i >= NST) mbar_wait(empty0 + 8 * st, ph ^ 1);
            if (lane == 0) mbar_expect_tx(full0 + 8 * st, 8192 + live * 256);
            __syncwarp();
            if (lane < 10)
                bulk_g2s(dst0 + st * SB, src + (size_t)(kb + i) * step, bytes, full0 + 8 * st);
            if (++st == NST) st = 0, ph ^= 1;
        }
        return;
    }

    /* consumers: this thread's rows (within the CTA: la, lb) and their zero
     * points and scales, loaded two tiles ahead into registers (L2 hits: a
     * row's groups share lines) */
    const int r0 = rcta + warp * 16; /* this warp's 16-row block */
    const int la = warp * 16 + g, lb = la + 8;
    const int ra = min(rcta + la, out - 1), rb = min(rcta + lb, out - 1);
    const uint8_t *za = w.zeros + (size_t)ra * ng, *zb = w.zeros + (size_t)rb * ng;
    const float *sa = w.scales + (size_t)ra * ng, *sb = w.scales + (size_t)rb * ng;
    struct zs {
        uint32_t za, zb;
        float sa, sb;
    };
    auto zsload = [&](zs &v, int kt) {
        const int gi = kt >> gshift;
        v.za = __ldg(za + gi);
        v.zb = __ldg(zb + gi);
        v.sa = __ldg(sa + gi);
        v.sb = __ldg(sb + gi);
    };
    zs zs0, zs1;
    if (nk > 0) zsload(zs0, kb);
    if (nk > 1) zsload(zs1, kb + 1);
    float d[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; i++)
        d[i] = 0.0f;
    /* two A buffers: tile i is decoded while tile i - 1's wgmmas run (ptxas
     * serializes the wgmmas with a third buffer and two groups in flight:
     * C7513) */
    uint32_t A0[8][4], A1[8][4];

    /* descriptor of stage 0, k-step 0; a stage / k-step adds its byte offset >> 4 */
    const uint64_t desc0 = gmma_desc(sm, 16, 1024);
    int cur = 0, prev = NST - 1; /* the stages of tiles i and i - 1 */
    uint32_t ph = 0;             /* the phase parity of stage cur's barriers */
    const uint4 *wt0 = (const uint4 *)(sm + BN * 256) + warp * 64 + g * 4 + t;
    auto step = [&](int i, uint32_t(*A)[4], zs &v) {
        mbar_wait(full0 + 8 * cur, ph); /* tile i landed */
        const uint4 *wt = (const uint4 *)((const uint8_t *)wt0 + cur * SB);
        qg_w it;
        it.a = wt[0];
        it.b = wt[32];
        it.za = v.za;
        it.zb = v.zb;
        it.sa = v.sa;
        it.sb = v.sb;
        if (i + 2 < nk) zsload(v, kb + i + 2);
        qg_decode<GROUPED>(it, A);
        const uint64_t dst = desc0 + (uint64_t)((cur * SB) >> 4);
        wg_fence();
#pragma unroll
        for (int s = 0; s < 8; s++)
            qg_wgmma<BN>(d, A[s], dst + (uint64_t)(((s >> 2) * (BN * 128) + (s & 3) * 32) >> 4));
        wg_commit();
        wg_wait1(); /* tile i - 1's wgmmas: its stage goes back to the producer */
        __syncwarp();
        if (i > 0 && lane == 0) mbar_arrive(empty0 + 8 * prev);
        prev = cur;
        if (++cur == NST) cur = 0, ph ^= 1;
    };
    int i = 0;
    for (; i + 1 < nk; i += 2) {
        step(i, A0, zs0);
        step(i + 1, A1, zs1);
    }
    if (i < nk) step(i, A0, zs0);
    wg_wait0();
    fence_regs<BN / 2>(d);

    if (r0 >= out) return;
    float ca = 1.0f, cb = 1.0f;
    if (!GROUPED) ca = __ldg(w.scales + ra), cb = __ldg(w.scales + rb);
    const float ba = bias && splits == 1 ? bias[ra] : 0.0f;
    const float bb = bias && splits == 1 ? bias[rb] : 0.0f;
#pragma unroll
    for (int q = 0; q < BN / 2; q++) {
        const int hi = (q >> 1) & 1, row = hi ? rb : ra;
        const int tok = n0 + 8 * (q >> 2) + 2 * t + (q & 1);
        if (tok >= n) continue;
        const float v = d[q] * (hi ? cb : ca);
        if (splits == 1)
            ci_st_out(y + (size_t)tok * out, row, v + (hi ? bb : ba), acc);
        else
            part[((size_t)z * n + tok) * out + row] = v;
    }
#else
    __trap(); /* sm_90a code only: the launcher takes compute 9.0 alone */
#endif
}

/* y = the splits' partials summed in split order (+ bias; acc: into y) */
template <typename OutT>
__global__ void qg_reduce_kernel(const float *__restrict__ part, int splits, int n, int out,
                                 const float *__restrict__ bias, OutT *__restrict__ y, int acc) {
    ci_pdl_trigger();
    ci_pdl_wait();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, tot = (int64_t)n * out;
    if (i >= tot) return;
    float v = 0.0f;
    for (int z = 0; z < splits; z++)
        v += part[(size_t)z * tot + i];
    const int row = (int)(i % out);
    ci_st_out(y, i, bias ? v + bias[row] : v, acc);
}

static int g_min_n = -1, g_max_n = -1;

/* whether the current device is compute 9.0 (this build's sm_90a code),
 * asked once per device (tensor-parallel ranks are threads on several) */
extern "C" int ci_cu_sm90a(void) {
    static std::atomic<int> known[64]; /* 0: not asked, 1: no, 2: yes */
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 0;
    if (!known[dev].load(std::memory_order_relaxed)) {
        const int ok =
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
            major == 9 && minor == 0;
        known[dev].store(ok ? 2 : 1, std::memory_order_relaxed);
    }
    return known[dev].load(std::memory_order_relaxed) == 2;
}

extern "C" size_t ci_cu_qgemm_int4_ws_bytes(const ci_qweight *w) {
    return (size_t)CI_CU_QGEMM_CAP_N * (size_t)w->cols * 2 + 256 + (size_t)QG_PART_FLOATS * 4;
}

extern "C" void ci_cu_qgemm_int4_range(int min_n, int max_n) {
    g_min_n = min_n; /* a negative one: the environment's / defaults again */
    g_max_n = min_n < 0 ? -1 : (max_n > CI_CU_QGEMM_CAP_N ? CI_CU_QGEMM_CAP_N : max_n);
}

/* The most rows of x one launch takes on this GPU (0: the GEMM is off or
 * not here): a larger x runs it in chunks of this many */
extern "C" int ci_cu_qgemm_int4_chunk_n(void) {
    ci_cu_qgemm_int4_ok(nullptr, 0, nullptr); /* reads the environment once */
    return ci_cu_sm90a() && g_max_n >= g_min_n && g_max_n >= 1 ? g_max_n : 0;
}

extern "C" int ci_cu_qgemm_int4_ok(const ci_qweight *w, int n, const void *x) {
    if (g_min_n < 0) {
        /* CINFER_QGEMM_MIN_N / _MAX_N: the rows of x this GEMM takes (MAX 0: never) */
        g_min_n = ci_cu_env_int("CINFER_QGEMM_MIN_N", CI_CU_QGEMM_MIN_N);
        g_max_n = ci_cu_env_int("CINFER_QGEMM_MAX_N", CI_CU_QGEMM_MAX_N);
        if (g_max_n > CI_CU_QGEMM_CAP_N) g_max_n = CI_CU_QGEMM_CAP_N;
    }
    /* a tiled weight passed ci_cu_qweight_tileable: INT4, no act order,
     * whole 16-row blocks, 128-column tiles within one scale group */
    return w && ci_cu_sm90a() && w->format == CI_QW_INT4 && w->tiled && !w->g_idx && n >= g_min_n &&
           n <= g_max_n && n >= 1 && w->rows % 16 == 0 && w->cols % 128 == 0 &&
           qt_group_shift(w, 128) >= 0 && ((uintptr_t)x & 15) == 0;
}

template <int BN, bool GROUPED, typename OutT>
static cudaError_t qg_launch(cudaStream_t st, const ci_qweight *w, const __nv_bfloat16 *xp, int n,
                             const float *bias, OutT *y, float *part, int splits, int acc) {
    /* every launch: the attribute is per device (tensor-parallel ranks are
     * threads on several GPUs), and the call is cheap and host-only */
    auto kern = qgemm_int4_wg_kernel<BN, GROUPED, OutT>;
    const int smem = qg_smem_bytes<BN>();
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    const dim3 grid((unsigned)((n + BN - 1) / BN), (unsigned)((w->rows + QG_ROWS - 1) / QG_ROWS),
                    (unsigned)splits);
    ci_cu_launch(kern, grid, QG_THREADS, smem, st, *w, xp, n, bias, y, part, qt_group_shift(w, 128),
                 acc);
    e = cudaGetLastError();
    if (e != cudaSuccess || splits == 1) return e;
    const int64_t tot = (int64_t)n * w->rows;
    ci_cu_launch(qg_reduce_kernel<OutT>, dim3((unsigned)((tot + 255) / 256)), 256, 0, st,
                 (const float *)part, splits, n, (int)w->rows, bias, y, acc);
    return cudaGetLastError();
}

template <typename OutT>
static cudaError_t qg_run(cudaStream_t st, const ci_qweight *w, const __nv_bfloat16 *xp, int n,
                          const float *bias, OutT *y, float *part, int splits, int acc) {
    const bool grouped = w->ngroups > 1;
    if (n <= 64)
        return grouped ? qg_launch<64, true>(st, w, xp, n, bias, y, part, splits, acc)
                       : qg_launch<64, false>(st, w, xp, n, bias, y, part, splits, acc);
    return grouped ? qg_launch<128, true>(st, w, xp, n, bias, y, part, splits, acc)
                   : qg_launch<128, false>(st, w, xp, n, bias, y, part, splits, acc);
}

extern "C" int ci_cu_qgemm_int4(ci_cu_stream st, int f32_out, const ci_qweight *w, const void *x,
                                int n, const float *bias, void *y, int acc, int num_sms, void *ws,
                                size_t ws_bytes) {
    if (!ci_cu_qgemm_int4_ok(w, n, x) || ws_bytes < ci_cu_qgemm_int4_ws_bytes(w))
        return cudaErrorInvalidValue;
    cudaStream_t s = (cudaStream_t)st;
    const int K = (int)w->cols, tiles = K / 128;
    __nv_bfloat16 *xp = (__nv_bfloat16 *)ws;
    float *part = (float *)((char *)ws + ((size_t)CI_CU_QGEMM_CAP_N * K * 2 + 255) / 256 * 256);
    /* split K while the CTAs fill less than one wave (one CTA per SM), at
     * least 4 tiles per split, within the partials' room */
    const int bn = n <= 64 ? 64 : 128;
    const int64_t ctas = (int64_t)((n + bn - 1) / bn) * ((w->rows + QG_ROWS - 1) / QG_ROWS);
    int splits = ctas >= num_sms ? 1 : (int)(num_sms / ctas);
    if (splits > tiles / 4) splits = tiles / 4;
    while (splits > 1 && (int64_t)splits * n * w->rows > QG_PART_FLOATS)
        splits--;
    if (splits < 1) splits = 1;
    const int64_t nch = (int64_t)((n + bn - 1) / bn) * bn * K / 8; /* x images' chunks */
    if (bn == 64)
        ci_cu_launch(qg_permute_kernel<64>, dim3((unsigned)((nch + 255) / 256)), 256, 0, s,
                     (const __nv_bfloat16 *)x, n, K, (const int32_t *)w->perm, xp);
    else
        ci_cu_launch(qg_permute_kernel<128>, dim3((unsigned)((nch + 255) / 256)), 256, 0, s,
                     (const __nv_bfloat16 *)x, n, K, (const int32_t *)w->perm, xp);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    return f32_out ? qg_run(s, w, xp, n, bias, (float *)y, part, splits, acc)
                   : qg_run(s, w, xp, n, bias, (__nv_bfloat16 *)y, part, splits, acc);
}
