/* cuda_prefill_attention.cuh — device code of the tensor-core prefill
 * attention (FlashAttention-2/3 style): varlen, causal, paged K/V, GQA, BF16,
 * head_dim 64 or 128. Included by cuda_prefill_attention.cu (the launcher)
 * and by the kernel lab bench/kernels/prefill_attention.cu; needs only the
 * CUDA runtime headers. docs/kernels/prefill_attention.md has the numbers.
 *
 * One CTA = (query tile of BM rows of one sequence, one query head); each
 * warp owns 16 query rows for the whole key loop (Q fragments, running
 * max/sum and output accumulators stay in registers). Keys are read from the
 * paged cache (prefix and new tokens alike) in tiles of BN keys:
 *   S = Q K^T      bf16 in, f32 accumulate;
 *   online softmax on the S accumulators in registers (exp2 with the scale
 *                  folded in; a row's columns spread over a quad of lanes);
 *   O += P V       P re-packed to bf16 A fragments straight from the S
 *                  accumulators (the C and A fragment layouts coincide).
 * K/V tiles stream through an NST-stage cp.async ring (each thread copies
 * 16-byte chunks, looking the cache block up in the block table per key
 * row, so a tile spans any number of blocks of any block size).
 * Causality: key tiles past the CTA's last allowed key are never loaded;
 * only tiles that reach past the CTA's smallest limit are masked. A sliding
 * window w (a per-layer constant) gives each row a first key too,
 * position + 1 - w: the key loop starts at the tile of the CTA's smallest
 * first key (tiles below it are never loaded), and only tiles that start
 * before the CTA's largest first key get the lower mask. Such a tile can
 * hold no key at all for some rows; their running max stays -inf and the
 * exponentials use 0 as the reference instead (no -inf - -inf).
 *
 * Two kernels:
 * - ci_prefill_attention_kernel (any sm_80+ GPU): mma.sync m16n8k16, BM/16
 *   warps, K through ldmatrix, V through ldmatrix.trans; shared-memory rows
 *   of HD bf16 with the 16-byte chunk c of row r at c ^ (r & 7) (ldmatrix
 *   conflict-free). Bound by shared-memory bandwidth: every warp reads the
 *   whole K and V tile for its 16 rows.
 * - ci_prefill_attention_wgp_kernel (sm_90a, Hopper): warpgroup MMA, 64 rows
 *   per warpgroup; the tensor cores read K and V from shared memory
 *   themselves (128-byte-swizzled [HD/64][BN][64] tiles, K-major K and
 *   MN-major V), once per warpgroup instead of once per warp; Q and P are
 *   register A operands. Software-pipelined: S(n+1) runs on the tensor
 *   cores while the warpgroup computes exp2 of tile n.
 *
 * FP8 (E4M3) cache (the kernels' FP8 instantiation, params.fp8): K/V tiles
 * are staged as BF16 like the BF16 cache's (E4M3 -> BF16 is exact), by plain
 * 8-byte loads converted in registers and stored to shared memory instead
 * of cp.async (so the loads are not overlapped with the math: correctness
 * first). k_scale is folded into scale_log2, v_scale into the output. */
#ifndef CINFER_BACKEND_CUDA_PREFILL_ATTENTION_CUH
#define CINFER_BACKEND_CUDA_PREFILL_ATTENTION_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/wgmma.cuh"

struct ci_prefill_params {
    const __nv_bfloat16 *qkv; /* [T][(H + 2 KV) hd]; q of head h at column h hd */
    const int32_t *positions; /* [T] absolute position of each query token */
    const int32_t *qstart;    /* [S + 1] first token of each sequence */
    const int32_t *ctx_lens;  /* [S] tokens in the cache after this step */
    const int32_t *btab;      /* [S][mbps] cache block of each key block */
    const __nv_bfloat16 *kc;  /* [blocks][KV][bs][hd] */
    const __nv_bfloat16 *vc;
    __nv_bfloat16 *out; /* [T][H hd] */
    int S, H, KV, mbps, bs;
    int window;       /* > 0: sliding window, row p sees keys p - window + 1 .. p */
    int ntiles;       /* query tiles per sequence: ceil(max_query_len / BM) */
    float scale_log2; /* softmax scale * log2(e) (* k_scale for FP8) */
    float vscale;     /* output multiplier: v_scale for FP8, else 1 */
    bool fp8;         /* kc / vc hold E4M3 bytes (the launcher picks the FP8 kernels) */
};

namespace ci_pf {
using namespace ci_wg;

__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void ldsm_x4(uint32_t *r, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t *r, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
/* d += a (16x16, row) . b (16x8, col), bf16 in, f32 accumulate */
__device__ __forceinline__ void mma_bf16(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ float ex2(float x) { /* 2^x; ex2(-inf) = 0 */
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}
/* element offset of 16-byte chunk c of row r in a swizzled [rows][HD] tile */
template <int HD> __device__ __forceinline__ int swz(int r, int c) {
    return r * HD + ((c ^ (r & 7)) << 3);
}


/* element offset of 16-byte chunk c of row r in a [HD / 64][rows][64] tile
 * (column blocks of 64 elements = 128-byte rows, 128-byte swizzle: the
 * layout wgmma reads through gmma_desc) */
template <int ROWS> __device__ __forceinline__ int swz128(int r, int c) {
    return (c >> 3) * (ROWS * 64) + r * 64 + (((c & 7) ^ (r & 7)) << 3);
}


/* One CTA's work item and key limits (both kernels). Row r of the tile
 * sees keys [lo, min(position + 1, ctx)) with lo = 0, or
 * max(0, position + 1 - window) with a sliding window; rows past the
 * sequence's end repeat its last row (computed, never stored). The key
 * loop's tile index n is relative: tile n holds keys (n0 + n) BN .. */
struct tile_info {
    int h, s, q0, r0, nrows, ctx, kvh;
    int lim0, lim1; /* this thread's rows: warp * 16 + g and + 8 */
    int lo0, lo1;   /* their first keys */
    int wlim;       /* the largest limit of the warp's 16 rows */
    int wlo;        /* the smallest first key of the warp's 16 rows */
    int kv_beg;     /* CTA: keys [kv_beg, kv_end) are loaded */
    int kv_end;
    int lim_lo;     /* CTA: the smallest limit */
    int n0;         /* the first tile: kv_beg / BN */
    int nblk;       /* K/V tiles to visit: ceil(kv_end / BN) - n0 */
    int nfull;      /* tiles n >= nfull need the upper mask: lim_lo / BN - n0 */
    int mlo;        /* tiles n < mlo need the lower mask: ceil(max lo / BN) - n0 */
    const int32_t *bt;
};
/* work item: heads fastest (the G heads of a kv head run together and share
 * its K/V in L2), then sequences, heaviest (last) query tiles first. Returns
 * false (for the whole CTA) when the tile starts past the sequence's end.
 * red: four shared ints. */
template <int BM, int BN>
__device__ __forceinline__ bool tile_setup(const ci_prefill_params &p, tile_info &w, int *red) {
    int idx = blockIdx.x;
    w.h = idx % p.H;
    idx /= p.H;
    w.s = idx % p.S;
    const int tile = p.ntiles - 1 - idx / p.S;
    w.q0 = p.qstart[w.s];
    w.r0 = tile * BM;
    const int qlen = p.qstart[w.s + 1] - w.q0;
    if (w.r0 >= qlen) return false;
    w.nrows = min(BM, qlen - w.r0);
    w.ctx = p.ctx_lens[w.s];
    w.kvh = w.h / (p.H / p.KV);
    w.bt = p.btab + (int64_t)w.s * p.mbps;
    const int lane = threadIdx.x & 31, row = (threadIdx.x >> 5) * 16 + (lane >> 2);
    const int pos0 = p.positions[w.q0 + w.r0 + min(row, w.nrows - 1)];
    const int pos1 = p.positions[w.q0 + w.r0 + min(row + 8, w.nrows - 1)];
    w.lim0 = min(pos0 + 1, w.ctx);
    w.lim1 = min(pos1 + 1, w.ctx);
    w.lo0 = p.window > 0 ? max(pos0 + 1 - p.window, 0) : 0;
    w.lo1 = p.window > 0 ? max(pos1 + 1 - p.window, 0) : 0;
    int hi = max(w.lim0, w.lim1), lo = min(w.lim0, w.lim1);
    int fmin = min(w.lo0, w.lo1), fmax = max(w.lo0, w.lo1);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
        lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
        fmin = min(fmin, __shfl_xor_sync(0xffffffffu, fmin, o));
        fmax = max(fmax, __shfl_xor_sync(0xffffffffu, fmax, o));
    }
    w.wlim = hi;
    w.wlo = fmin;
    if (threadIdx.x == 0) {
        red[0] = 1 << 30;
        red[1] = 0;
        red[2] = 1 << 30;
        red[3] = 0;
    }
    __syncthreads();
    if (lane == 0) {
        atomicMin(&red[0], lo);
        atomicMax(&red[1], hi);
        atomicMin(&red[2], fmin);
        atomicMax(&red[3], fmax);
    }
    __syncthreads();
    w.lim_lo = red[0];
    w.kv_end = red[1];
    w.kv_beg = red[2];
    w.n0 = w.kv_beg / BN;
    w.nblk = (w.kv_end + BN - 1) / BN - w.n0;
    w.nfull = w.lim_lo / BN - w.n0;
    w.mlo = (red[3] + BN - 1) / BN - w.n0;
    return true;
}
/* cp.async of the Q tile [BM][HD] (swizzled rows) */
template <int HD, int BM, int NT>
__device__ __forceinline__ void load_q(const ci_prefill_params &p, const tile_info &w,
                                       __nv_bfloat16 *sq) {
    constexpr int CH = HD / 8;
    const __nv_bfloat16 *qbase = p.qkv + (int64_t)w.h * HD;
    const int64_t qstride = (int64_t)(p.H + 2 * p.KV) * HD;
#pragma unroll
    for (int i = 0; i < BM * CH / NT; i++) {
        int e = threadIdx.x + i * NT, r = e / CH, c = e % CH;
        int64_t t = w.q0 + w.r0 + min(r, w.nrows - 1);
        cp_async16(sq + swz<HD>(r, c), qbase + t * qstride + c * 8);
    }
}
/* cp.async of K/V tile n (keys (n0 + n) BN ..) into dk, dv: each thread
 * copies chunk tid % CH of rows tid / CH + j NT / CH, looking every row's
 * cache block up in the block table. Keys outside [kv_beg, kv_end) are
 * clamped to a real row (masked later). SW128: the wgmma layout, else the
 * ldmatrix one. */
template <int HD, int BN, int NT, bool SW128, bool FP8 = false>
__device__ __forceinline__ void load_kv(const ci_prefill_params &p, const tile_info &w, int n,
                                        __nv_bfloat16 *dk, __nv_bfloat16 *dv) {
    constexpr int CH = HD / 8;
    static_assert((BN * CH) % NT == 0, "copy split");
    const int kr = threadIdx.x / CH, kc = threadIdx.x % CH;
#pragma unroll
    for (int j = 0; j < BN * CH / NT; j++) {
        int r = kr + j * (NT / CH);
        int key = max(min((w.n0 + n) * BN + r, w.kv_end - 1), w.kv_beg);
        int64_t off =
            (((int64_t)w.bt[key / p.bs] * p.KV + w.kvh) * p.bs + key % p.bs) * HD + kc * 8;
        int so = SW128 ? swz128<BN>(r, kc) : swz<HD>(r, kc);
        if constexpr (FP8) { /* 8 E4M3 -> 8 bf16 (off counts elements = bytes) */
            const uint8_t *k8 = (const uint8_t *)p.kc, *v8 = (const uint8_t *)p.vc;
            *(uint4 *)(dk + so) = ci_fp8x8_bf16(__ldg((const uint2 *)(k8 + off)));
            *(uint4 *)(dv + so) = ci_fp8x8_bf16(__ldg((const uint2 *)(v8 + off)));
        } else {
            cp_async16(dk + so, p.kc + off);
            cp_async16(dv + so, p.vc + off);
        }
    }
}
/* Q and K/V tiles 0 .. NST - 2 into stages 0 .. NST - 2, one commit group
 * per tile (Q in the first) */
template <int HD, int BM, int BN, int NT, int NST, bool SW128, bool FP8>
__device__ __forceinline__ void load_prologue(const ci_prefill_params &p, const tile_info &w,
                                              __nv_bfloat16 *sq, __nv_bfloat16 *sk,
                                              __nv_bfloat16 *sv) {
    load_q<HD, BM, NT>(p, w, sq);
#pragma unroll
    for (int st = 0; st < NST - 1; st++) {
        if (st < w.nblk)
            load_kv<HD, BN, NT, SW128, FP8>(p, w, st, sk + st * BN * HD, sv + st * BN * HD);
        cp_async_commit();
    }
}
/* S accumulators of tile n, C layout (sc[4 nb + e]): keys >= the row's
 * limit or below its first key -> -inf (only tiles n >= nfull or n < mlo
 * need it) */
template <int BN>
__device__ __forceinline__ void mask_tile(float *sc, const tile_info &w, int n) {
    const int tig = threadIdx.x & 3;
#pragma unroll
    for (int nb = 0; nb < BN / 8; nb++) {
        int key = (w.n0 + n) * BN + nb * 8 + 2 * tig;
        if (key >= w.lim0 || key < w.lo0) sc[4 * nb + 0] = -INFINITY;
        if (key + 1 >= w.lim0 || key + 1 < w.lo0) sc[4 * nb + 1] = -INFINITY;
        if (key >= w.lim1 || key < w.lo1) sc[4 * nb + 2] = -INFINITY;
        if (key + 1 >= w.lim1 || key + 1 < w.lo1) sc[4 * nb + 3] = -INFINITY;
    }
}
/* the reference maximum of a row for the exponentials: its running max, or
 * 0 while the row has seen no key (-inf: only with a sliding window, whose
 * first tiles may hold none of a row's keys); exp2(-inf - 0) = 0 */
__device__ __forceinline__ float ref_max(float m) { return m == -INFINITY ? 0.0f : m; }
/* new running maxima (log2 units) of the thread's two rows over the quad;
 * without a window tile 0 holds key 0, allowed for every row, so they are
 * finite from the first tile on */
template <int BN>
__device__ __forceinline__ void row_max(const float *sc, float sl2, float &mx0, float &mx1) {
#pragma unroll
    for (int nb = 0; nb < BN / 8; nb++) {
        mx0 = fmaxf(mx0, fmaxf(sc[4 * nb], sc[4 * nb + 1]) * sl2);
        mx1 = fmaxf(mx1, fmaxf(sc[4 * nb + 2], sc[4 * nb + 3]) * sl2);
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
}
/* P = exp2(S sl2 - m) as bf16 A fragments (the C layout of n-blocks 2k,
 * 2k+1 is the A layout of k-step k); adds the row sums to l0, l1 */
template <int BN>
__device__ __forceinline__ void exp_pack(const float *sc, float sl2, float mx0, float mx1,
                                         uint32_t (*pa)[4], float &l0, float &l1) {
    float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
    for (int nb = 0; nb < BN / 8; nb++) {
        float p0 = ex2(fmaf(sc[4 * nb], sl2, -mx0)), p1 = ex2(fmaf(sc[4 * nb + 1], sl2, -mx0));
        float p2 = ex2(fmaf(sc[4 * nb + 2], sl2, -mx1)), p3 = ex2(fmaf(sc[4 * nb + 3], sl2, -mx1));
        rs0 += p0 + p1;
        rs1 += p2 + p3;
        pa[nb >> 1][(nb & 1) * 2 + 0] = pack_bf16(p0, p1);
        pa[nb >> 1][(nb & 1) * 2 + 1] = pack_bf16(p2, p3);
    }
    l0 += rs0;
    l1 += rs1;
}
/* o[4 d + e] (C layout over HD) *= a0 (rows g) / a1 (rows g + 8) */
template <int HD> __device__ __forceinline__ void rescale(float *o, float a0, float a1) {
#pragma unroll
    for (int d = 0; d < HD / 8; d++) {
        o[4 * d + 0] *= a0;
        o[4 * d + 1] *= a0;
        o[4 * d + 2] *= a1;
        o[4 * d + 3] *= a1;
    }
}
/* num / l of the thread's two rows, l0 / l1 its partial sums reduced over
 * the lane quad (both store_rows variants) */
__device__ __forceinline__ void row_scales(float l0, float l1, float num, float &il0, float &il1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    il0 = num / l0;
    il1 = num / l1;
}
/* out = num * O / l for rows ra and ra + 8 of a tile whose row 0 is token
 * row0, head h (rows >= nrows are past the sequence: not stored); l0 / l1
 * are per-thread partial sums, reduced over the lane quad here (l >= 1: the
 * max key contributes 1). Shared by
 * every tensor-core prefill kernel (the warp-specialized ones in
 * prefill_attention_ws*.cuh too). */
template <int HD>
__device__ __forceinline__ void store_rows(const ci_prefill_params &p, int h, int row0, int nrows,
                                           int ra, const float *o, float l0, float l1, float num) {
    float il0, il1;
    row_scales(l0, l1, num, il0, il1);
    const int lane = threadIdx.x & 31, rb = ra + 8;
    const int64_t ostride = (int64_t)p.H * HD;
    __nv_bfloat16 *obase = p.out + (int64_t)h * HD + 2 * (lane & 3);
#pragma unroll
    for (int d = 0; d < HD / 8; d++) {
        if (ra < nrows)
            *(uint32_t *)(obase + (row0 + ra) * ostride + d * 8) =
                pack_bf16(o[4 * d] * il0, o[4 * d + 1] * il0);
        if (rb < nrows)
            *(uint32_t *)(obase + (row0 + rb) * ostride + d * 8) =
                pack_bf16(o[4 * d + 2] * il1, o[4 * d + 3] * il1);
    }
}
/* store_rows with 8 bytes a lane: a lane holds 2 columns of each 8-column
 * group, so a warp's 4-byte store covers half a 32-byte sector per row.
 * One shfl.xor(1) per 16 columns and row gives each lane 4 consecutive
 * columns instead: lane t keeps its word of group 2j + (t & 1) and
 * trades the other with lane t ^ 1, ending with 16-column block j's
 * 4-column chunk 2 (t & 1) + (t >> 1); the warp's 8-byte stores then fill
 * whole sectors, with half the store instructions. Same values as
 * store_rows. */
template <int HD>
__device__ __forceinline__ void store_rows_pair(const ci_prefill_params &p, int h, int row0,
                                                int nrows, int ra, const float *o, float l0,
                                                float l1, float num) {
    float il0, il1;
    row_scales(l0, l1, num, il0, il1);
    const int lane = threadIdx.x & 31, rb = ra + 8, t = lane & 3, odd = t & 1;
    const int64_t ostride = (int64_t)p.H * HD;
    __nv_bfloat16 *obase = p.out + (int64_t)h * HD + 4 * (2 * odd + (t >> 1));
#pragma unroll
    for (int j = 0; j < HD / 16; j++) {
#pragma unroll
        for (int half = 0; half < 2; half++) { /* row ra, then rb */
            const int r = half ? rb : ra;
            const float il = half ? il1 : il0;
            const uint32_t a = pack_bf16(o[8 * j + 2 * half] * il, o[8 * j + 2 * half + 1] * il);
            const uint32_t b =
                pack_bf16(o[8 * j + 4 + 2 * half] * il, o[8 * j + 4 + 2 * half + 1] * il);
            const uint32_t keep = odd ? b : a;
            const uint32_t got = __shfl_xor_sync(0xffffffffu, odd ? a : b, 1);
            if (r < nrows) {
                uint2 v;
                v.x = odd ? got : keep; /* the chunk's first two columns */
                v.y = odd ? keep : got;
                *(uint2 *)(obase + (row0 + r) * ostride + j * 16) = v;
            }
        }
    }
}
/* the tile's rows of this warp (16 per warp, warps from thread 0) */
template <int HD>
__device__ __forceinline__ void store_out(const ci_prefill_params &p, const tile_info &w,
                                          const float *o, float l0, float l1) {
    const int ra = (threadIdx.x >> 5) * 16 + ((threadIdx.x & 31) >> 2);
    store_rows<HD>(p, w.h, w.q0 + w.r0, w.nrows, ra, o, l0, l1, p.vscale);
}

} // namespace ci_pf

/* Shared memory: Q [BM][HD] + NST stages of K [BN][HD] and V [BN][HD]. */
template <int HD, int BM, int BN, int NST> constexpr size_t ci_prefill_smem_bytes() {
    return (size_t)(BM * HD + NST * 2 * BN * HD) * sizeof(__nv_bfloat16);
}

/* ---- mma.sync kernel (sm_80+) ---- */
template <int HD, int BM, int BN, int NST, bool FP8 = false>
__global__ void __launch_bounds__(BM * 2, 1)
    ci_prefill_attention_kernel(const ci_prefill_params p) {
    ci_pdl_trigger();
    ci_pdl_wait();
    using namespace ci_pf;
    constexpr int NT = BM * 2;  /* BM / 16 warps */
    constexpr int KD = HD / 16; /* k-steps of Q K^T */
    constexpr int NB = BN / 8;  /* n-blocks of S */
    static_assert(HD % 64 == 0 && BN % 16 == 0 && BM % 16 == 0 && NST >= 2, "tile shape");
    extern __shared__ uint4 smem_u4[];
    __nv_bfloat16 *sq = (__nv_bfloat16 *)smem_u4;
    __nv_bfloat16 *sk = sq + BM * HD;
    __nv_bfloat16 *sv = sk + NST * BN * HD;
    __shared__ int red[4];
    tile_info w;
    if (!tile_setup<BM, BN>(p, w, red)) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nblk = w.nblk, nfull = w.nfull, mlo = w.mlo;
    load_prologue<HD, BM, BN, NT, NST, false, FP8>(p, w, sq, sk, sv);

    float o[HD / 8][4];
#pragma unroll
    for (int d = 0; d < HD / 8; d++) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    uint32_t qf[KD][4];
    const float sl2 = p.scale_log2;

    for (int n = 0; n < nblk; n++) {
        cp_async_wait<NST - 2>();
        __syncthreads(); /* tile n visible to all; stage (n - 1) % NST free */
        if (n == 0) {
#pragma unroll
            for (int kk = 0; kk < KD; kk++)
                ldsm_x4(qf[kk], sq + swz<HD>(warp * 16 + (lane & 15), kk * 2 + (lane >> 4)));
        }
        if (n + NST - 1 < nblk) {
            const int st = (n + NST - 1) % NST;
            load_kv<HD, BN, NT, false, FP8>(p, w, n + NST - 1, sk + st * BN * HD,
                                            sv + st * BN * HD);
        }
        cp_async_commit();
        /* every key of this tile is masked for this warp: past its limits or
         * before its window */
        if ((w.n0 + n) * BN >= w.wlim || (w.n0 + n + 1) * BN <= w.wlo) continue;
        const __nv_bfloat16 *kt = sk + (n % NST) * BN * HD, *vt = sv + (n % NST) * BN * HD;

        float sc[NB][4];
#pragma unroll
        for (int nb = 0; nb < NB; nb++) sc[nb][0] = sc[nb][1] = sc[nb][2] = sc[nb][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KD; kk++) {
#pragma unroll
            for (int nb2 = 0; nb2 < NB / 2; nb2++) {
                uint32_t b[4];
                ldsm_x4(b, kt + swz<HD>(nb2 * 16 + ((lane >> 4) << 3) + (lane & 7),
                                        kk * 2 + ((lane >> 3) & 1)));
                mma_bf16(sc[2 * nb2], qf[kk], b[0], b[1]);
                mma_bf16(sc[2 * nb2 + 1], qf[kk], b[2], b[3]);
            }
        }
        if (n >= nfull || n < mlo) mask_tile<BN>(&sc[0][0], w, n);
        float nm0 = m0, nm1 = m1;
        row_max<BN>(&sc[0][0], sl2, nm0, nm1);
        const float mx0 = ref_max(nm0), mx1 = ref_max(nm1);
        const float a0 = ex2(m0 - mx0), a1 = ex2(m1 - mx1); /* 0 while m is -inf */
        m0 = nm0;
        m1 = nm1;
        l0 *= a0; /* per-thread partial sums, reduced over the quad at the end */
        l1 *= a1;
        uint32_t pa[BN / 16][4];
        exp_pack<BN>(&sc[0][0], sl2, mx0, mx1, pa, l0, l1);
        rescale<HD>(&o[0][0], a0, a1);
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
#pragma unroll
            for (int db = 0; db < HD / 16; db++) {
                uint32_t b[4];
                ldsm_x4_t(b, vt + swz<HD>(kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3),
                                          db * 2 + (lane >> 4)));
                mma_bf16(o[2 * db], pa[kk], b[0], b[1]);
                mma_bf16(o[2 * db + 1], pa[kk], b[2], b[3]);
            }
        }
    }
    cp_async_wait<0>(); /* no copy may land after the CTA exits */
    store_out<HD>(p, w, &o[0][0], l0, l1);
}

/* Shared memory of the wgmma kernel: Q, NST stages of K and V, 1 KB to align. */
template <int HD, int BN, int NWG, int NST>
constexpr size_t ci_prefill_wg_smem_bytes() {
    return (size_t)(64 * NWG * HD + NST * 2 * BN * HD) * sizeof(__nv_bfloat16) + 1024;
}

/* ---- Hopper kernel, software-pipelined: S(n+1) = Q K(n+1)^T is issued
 * before the softmax of tile n, so the tensor cores work while the
 * warpgroup does its exp2 and rescaling (FA3's intra-warpgroup overlap).
 * Two S accumulators alternate (the loop is unrolled by two). NST >= 3
 * stages: iteration n refills the stage PV(n-1) read, while tiles n
 * (V) and n+1 (K) are in use. */
template <int HD, int BN, int NWG, int NST, bool FP8 = false>
__global__ void __launch_bounds__(NWG * 128, 1)
    ci_prefill_attention_wgp_kernel(const ci_prefill_params p) {
    ci_pdl_trigger();
    ci_pdl_wait();
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using namespace ci_pf;
    constexpr int BM = 64 * NWG, NT = NWG * 128;
    constexpr int CH = HD / 8;
    constexpr int KD = HD / 16;
    static_assert((HD == 64 || HD == 128) && (BN == 64 || BN == 128) && NST >= 3, "tile shape");
    static_assert((BN * CH) % NT == 0 && (BM * CH) % NT == 0, "copy split");
    extern __shared__ uint4 smem_u4[];
    __nv_bfloat16 *sk = (__nv_bfloat16 *)(((uintptr_t)smem_u4 + 1023) & ~(uintptr_t)1023);
    __nv_bfloat16 *sv = sk + NST * BN * HD;
    __nv_bfloat16 *sq = sv + NST * BN * HD;
    __shared__ int red[4];
    tile_info w;
    if (!tile_setup<BM, BN>(p, w, red)) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nblk = w.nblk, nfull = w.nfull, mlo = w.mlo;
    load_prologue<HD, BM, BN, NT, NST, true, FP8>(p, w, sq, sk, sv);

    float o[HD / 2];
#pragma unroll
    for (int i = 0; i < HD / 2; i++) o[i] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    uint32_t qf[KD][4];
    const float sl2 = p.scale_log2;
    float sa[BN / 2], sb[BN / 2];

    /* S(n) = Q K(n)^T into sc, asynchronous (committed, not waited) */
    /* no per-warpgroup skip of masked tiles here: a branch around wgmma
     * makes ptxas serialize them (C7520); masking zeroes such tiles */
    auto issue_s = [&](float *sc, int n) {
        const __nv_bfloat16 *kt = sk + (n % NST) * BN * HD;
        fence_regs<BN / 2>(sc);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < KD; kk++) {
            uint64_t dk = gmma_desc(kt + (kk >> 2) * (BN * 64) + (kk & 3) * 16, 16, 1024);
            if constexpr (BN == 64)
                wgmma_n64s<0>(sc, qf[kk], dk, kk > 0);
            else
                wgmma_n128s<0>(sc, qf[kk], dk, kk > 0);
        }
        wg_commit();
    };
    /* softmax of tile n, first half (S(n) complete, nothing in flight):
     * mask, row max, rescale of O and l. Done before S(n + 1) is issued:
     * a write to wgmma accumulators (O) while any wgmma is in flight makes
     * ptxas serialize them all (C7515). */
    float mx0 = 0.0f, mx1 = 0.0f;
    auto pre = [&](float *sc, int n) {
        if (n >= nfull || n < mlo) mask_tile<BN>(sc, w, n);
        float nm0 = m0, nm1 = m1;
        row_max<BN>(sc, sl2, nm0, nm1);
        mx0 = ref_max(nm0); /* post's exponentials use these */
        mx1 = ref_max(nm1);
        const float a0 = ex2(m0 - mx0), a1 = ex2(m1 - mx1); /* 0 while m is -inf */
        m0 = nm0;
        m1 = nm1;
        l0 *= a0;
        l1 *= a1;
        /* the row maxima rarely move after the first tiles: skip the
         * rescale when no row of the warp changed */
        if (__any_sync(0xffffffffu, a0 != 1.0f || a1 != 1.0f)) rescale<HD>(o, a0, a1);
        fence_regs<HD / 2>(o);
    };
    /* second half, overlapping S(n + 1): P = exp2(S - m) to bf16 A
     * fragments, row sums, then PV(n) issued */
    auto post = [&](float *sc, int n) {
        uint32_t pa[BN / 16][4];
        exp_pack<BN>(sc, sl2, mx0, mx1, pa, l0, l1);
        const __nv_bfloat16 *vt = sv + (n % NST) * BN * HD;
        fence_regs<BN / 4>(&pa[0][0]);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            uint64_t dv = gmma_desc(vt + kk * 16 * 64, BN * 128, 1024);
            if constexpr (HD == 64)
                wgmma_n64<1>(o, pa[kk], dv);
            else
                wgmma_n128<1>(o, pa[kk], dv);
        }
        wg_commit();
        fence_regs<BN / 4>(&pa[0][0]); /* pa stays live until the wait */
    };
    auto iter = [&](float *cur, float *next, int n) {
        wg_wait0(); /* S(n) and PV(n - 1) complete */
        fence_regs<BN / 2>(cur);
        fence_regs<HD / 2>(o);
        pre(cur, n);
        cp_async_wait<NST - 3>(); /* tile n + 1 landed (this thread's part) */
        fence_proxy_async();
        __syncthreads(); /* ... everyone's; stage (n - 1) % NST is free */
        if (n + NST - 1 < nblk) {
            const int st = (n + NST - 1) % NST;
            load_kv<HD, BN, NT, true, FP8>(p, w, n + NST - 1, sk + st * BN * HD,
                                           sv + st * BN * HD);
        }
        cp_async_commit();
        if (n + 1 < nblk) issue_s(next, n + 1);
        post(cur, n);
    };

    cp_async_wait<NST - 2>(); /* Q and tile 0 */
    fence_proxy_async();
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < KD; kk++)
        ldsm_x4(qf[kk], sq + swz<HD>(warp * 16 + (lane & 15), kk * 2 + (lane >> 4)));
    fence_regs<KD * 4>(&qf[0][0]);
    issue_s(sa, 0);
    wg_wait0(); /* nothing overlaps tile 0: the loop's register setup would
                 * otherwise write accumulators with S(0) in flight (C7515) */
    for (int n = 0; n < nblk; n += 2) {
        iter(sa, sb, n);
        if (n + 1 < nblk) iter(sb, sa, n + 1);
    }
    wg_wait0();
    fence_regs<HD / 2>(o);
    cp_async_wait<0>();

    store_out<HD>(p, w, o, l0, l1);
#else
    __trap();
#endif
}

#endif
