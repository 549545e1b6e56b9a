/* cuda_prefill_attention.cuh — device code of the tensor-core prefill
 * attention (FlashAttention-2 style): varlen, causal, paged K/V, GQA, BF16.
 * Included by cuda_prefill_attention.cu (the launcher) and by the kernel lab
 * bench/kernels/prefill_attention.cu; needs only the CUDA runtime headers.
 *
 * One CTA = (query tile of BM rows of one sequence, one query head); BM/16
 * warps, each owning 16 query rows for the whole key loop (its Q fragments,
 * running max/sum and output accumulators stay in registers). Keys are read
 * from the paged cache (prefix and new tokens alike) in tiles of BN keys:
 *   S = Q K^T      mma.sync m16n8k16 (bf16 in, f32 accumulate), Q as the A
 *                  operand from registers, K through ldmatrix (K rows are
 *                  already the "col" B layout);
 *   online softmax on the S accumulators in registers (exp2 with the scale
 *                  folded in; a row's 16 columns per thread, quad shuffles);
 *   O += P V       P re-packed to bf16 A fragments straight from the S
 *                  accumulators (their layouts coincide), V via ldmatrix.trans.
 * K/V tiles stream through an NST-stage cp.async ring (each thread copies
 * 16-byte chunks, looking the block up in the block table per key row, so a
 * tile spans any number of cache blocks of any block size). Shared-memory
 * rows are HD bf16; the 16-byte chunk c of row r sits at c ^ (r & 7), so the
 * 8 row addresses of every ldmatrix phase hit 8 different bank groups.
 * Causality: key tiles past the CTA's last allowed key are never loaded;
 * only tiles that reach past the CTA's smallest limit are masked, and a warp
 * whose own rows allow no key of a tile skips its math for that tile. */
#ifndef CINFER_BACKEND_CUDA_PREFILL_ATTENTION_CUH
#define CINFER_BACKEND_CUDA_PREFILL_ATTENTION_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

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
    int ntiles;       /* query tiles per sequence: ceil(max_query_len / BM) */
    float scale_log2; /* softmax scale * log2(e) */
};

namespace ci_pf {

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
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

} // namespace ci_pf

/* Shared memory: Q [BM][HD] + NST stages of K [BN][HD] and V [BN][HD]. */
template <int HD, int BM, int BN, int NST> constexpr size_t ci_prefill_smem_bytes() {
    return (size_t)(BM * HD + NST * 2 * BN * HD) * sizeof(__nv_bfloat16);
}

template <int HD, int BM, int BN, int NST>
__global__ void __launch_bounds__(BM * 2, 1) ci_prefill_attention_kernel(const ci_prefill_params p) {
    using namespace ci_pf;
    constexpr int NT = BM * 2;  /* BM / 16 warps */
    constexpr int CH = HD / 8;  /* 16-byte chunks per row */
    constexpr int KD = HD / 16; /* k-steps of Q K^T */
    constexpr int NB = BN / 8;  /* n-blocks of S */
    static_assert(HD % 64 == 0 && BN % 16 == 0 && BM % 16 == 0 && NST >= 2, "tile shape");
    static_assert((BN * CH) % NT == 0 && (BM * CH) % NT == 0, "copy split");
    extern __shared__ uint4 smem_u4[];
    __nv_bfloat16 *sq = (__nv_bfloat16 *)smem_u4;
    __nv_bfloat16 *sk = sq + BM * HD;
    __nv_bfloat16 *sv = sk + NST * BN * HD;
    __shared__ int lim_lo, lim_hi;

    /* work item: heads fastest (the G heads of a kv head run together and
     * share its K/V in L2), then sequences, heaviest (last) query tiles first */
    int idx = blockIdx.x;
    const int h = idx % p.H;
    idx /= p.H;
    const int s = idx % p.S;
    const int tile = p.ntiles - 1 - idx / p.S;
    const int q0 = p.qstart[s], qlen = p.qstart[s + 1] - q0, r0 = tile * BM;
    if (r0 >= qlen) return;
    const int nrows = min(BM, qlen - r0);
    const int ctx = p.ctx_lens[s];
    const int kvh = h / (p.H / p.KV);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t qstride = (int64_t)(p.H + 2 * p.KV) * HD;
    const int32_t *bt = p.btab + (int64_t)s * p.mbps;

    /* key limits: row r sees keys [0, min(position + 1, ctx)); rows past
     * the sequence's end repeat its last row (computed, never stored) */
    auto row_lim = [&](int r) {
        int pos = p.positions[q0 + r0 + min(r, nrows - 1)];
        return min(pos + 1, ctx);
    };
    const int g = lane >> 2, tig = lane & 3;
    const int lim0 = row_lim(warp * 16 + g), lim1 = row_lim(warp * 16 + g + 8);
    int wlim = max(lim0, lim1);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) wlim = max(wlim, __shfl_xor_sync(0xffffffffu, wlim, o));
    int wmin = min(lim0, lim1);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, o));
    if (tid == 0) {
        lim_lo = 1 << 30;
        lim_hi = 0;
    }
    __syncthreads();
    if (lane == 0) {
        atomicMin(&lim_lo, wmin);
        atomicMax(&lim_hi, wlim);
    }
    __syncthreads();
    const int kv_end = lim_hi;           /* keys [0, kv_end) are loaded */
    const int nblk = (kv_end + BN - 1) / BN;
    const int nfull = lim_lo / BN;       /* tiles below this need no mask */

    /* Q tile (group 0, with K/V tile 0) */
    {
        const __nv_bfloat16 *qbase = p.qkv + (int64_t)h * HD;
#pragma unroll
        for (int i = 0; i < BM * CH / NT; i++) {
            int e = tid + i * NT, r = e / CH, c = e % CH;
            int64_t t = q0 + r0 + min(r, nrows - 1);
            cp_async16(sq + swz<HD>(r, c), qbase + t * qstride + c * 8);
        }
    }
    /* this thread's chunk of every K/V tile: rows kr + j * (NT / CH), chunk kc */
    const int kr = tid / CH, kcol = tid % CH;
    auto load_kv = [&](int n, int st) {
        __nv_bfloat16 *dk = sk + st * BN * HD, *dv = sv + st * BN * HD;
#pragma unroll
        for (int j = 0; j < BN * CH / NT; j++) {
            int r = kr + j * (NT / CH);
            int key = min(n * BN + r, kv_end - 1); /* past the end: a real row, masked */
            int64_t off =
                (((int64_t)bt[key / p.bs] * p.KV + kvh) * p.bs + key % p.bs) * HD + kcol * 8;
            cp_async16(dk + swz<HD>(r, kcol), p.kc + off);
            cp_async16(dv + swz<HD>(r, kcol), p.vc + off);
        }
    };
#pragma unroll
    for (int st = 0; st < NST - 1; st++) {
        if (st < nblk) load_kv(st, st);
        cp_async_commit();
    }

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
        if (n + NST - 1 < nblk) load_kv(n + NST - 1, (n + NST - 1) % NST);
        cp_async_commit();
        if (n * BN >= wlim) continue; /* every key of this tile is masked for this warp */
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
        if (n >= nfull) { /* diagonal / ragged tile: mask keys >= the row's limit */
#pragma unroll
            for (int nb = 0; nb < NB; nb++) {
                int key = n * BN + nb * 8 + 2 * tig;
                if (key >= lim0) sc[nb][0] = -INFINITY;
                if (key + 1 >= lim0) sc[nb][1] = -INFINITY;
                if (key >= lim1) sc[nb][2] = -INFINITY;
                if (key + 1 >= lim1) sc[nb][3] = -INFINITY;
            }
        }
        /* online softmax; tile 0 holds key 0, allowed for every row, so the
         * running max is finite from the first tile on */
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
            mx0 = fmaxf(mx0, fmaxf(sc[nb][0], sc[nb][1]) * sl2);
            mx1 = fmaxf(mx1, fmaxf(sc[nb][2], sc[nb][3]) * sl2);
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float a0 = ex2(m0 - mx0), a1 = ex2(m1 - mx1); /* 0 while m is -inf */
        m0 = mx0;
        m1 = mx1;
        float rs0 = 0.0f, rs1 = 0.0f;
        uint32_t pa[BN / 16][4];
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
            float p0 = ex2(fmaf(sc[nb][0], sl2, -mx0)), p1 = ex2(fmaf(sc[nb][1], sl2, -mx0));
            float p2 = ex2(fmaf(sc[nb][2], sl2, -mx1)), p3 = ex2(fmaf(sc[nb][3], sl2, -mx1));
            rs0 += p0 + p1;
            rs1 += p2 + p3;
            /* C layout of n-blocks 2k, 2k+1 = A layout of k-step k */
            pa[nb >> 1][(nb & 1) * 2 + 0] = pack_bf16(p0, p1);
            pa[nb >> 1][(nb & 1) * 2 + 1] = pack_bf16(p2, p3);
        }
        l0 = l0 * a0 + rs0; /* per-thread partial sums, reduced over the quad at the end */
        l1 = l1 * a1 + rs1;
#pragma unroll
        for (int d = 0; d < HD / 8; d++) {
            o[d][0] *= a0;
            o[d][1] *= a0;
            o[d][2] *= a1;
            o[d][3] *= a1;
        }
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

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float il0 = 1.0f / l0, il1 = 1.0f / l1; /* l >= 1: the max key contributes 1 */
    const int ra = warp * 16 + g, rb = ra + 8;
    const int64_t ostride = (int64_t)p.H * HD;
    __nv_bfloat16 *obase = p.out + (int64_t)h * HD + 2 * tig;
#pragma unroll
    for (int d = 0; d < HD / 8; d++) {
        if (ra < nrows)
            *(uint32_t *)(obase + (q0 + r0 + ra) * ostride + d * 8) =
                pack_bf16(o[d][0] * il0, o[d][1] * il0);
        if (rb < nrows)
            *(uint32_t *)(obase + (q0 + r0 + rb) * ostride + d * 8) =
                pack_bf16(o[d][2] * il1, o[d][3] * il1);
    }
}

#endif
