/* prefill_attention_ws.cuh — warp-specialized Hopper (sm_90a) prefill
 * attention in the manner of FlashAttention-3, with a cp.async producer
 * (lab versions 15-19 of bench/kernels/prefill_attention.cu); its consumer
 * side (this file's device functions) also serves the TMA kernel of
 * prefill_attention_ws_tma.cuh, which is the production one. Same inputs, grid and masking as the
 * kernels of cuda_prefill_attention.cuh (ci_prefill_params; causal via positions[] and ctx_lens[],
 * paged K/V through the block table, varlen, GQA, any cached prefix, any block size), restricted to
 * a BF16 cache, no sliding window (window == 0) and head_dim 64 / 128.
 *
 * CTA = 384 threads, BM = 128 query rows of one (sequence, head):
 *   warpgroup 0 (producer, setmaxnreg.dec to WS_PROD_REGS): cp.async of Q
 *     once, then K(n), V(n) for n = 0 .. nblk-1 into an NST-stage ring,
 *     16-byte chunks looked up row by row through the block table (any block
 *     size; keys past the CTA's last allowed key are clamped to a real row
 *     and masked by the consumers). Each copy batch ends with
 *     cp.async.mbarrier.arrive.noinc on its "full" barrier (count 128: the
 *     phase completes when every producer thread's copies have landed), so
 *     the producer never waits for its own copies.
 *   warpgroups 1, 2 (consumers, setmaxnreg.inc to WS_CONS_REGS): 64 rows
 *     each. S = Q K^T is an SS wgmma (Q and K from shared memory, 128-byte
 *     swizzle, K-major), online softmax in registers (exp2, scale_log2
 *     folded in), P re-packed to bf16 A fragments, O += P V an RS wgmma (V
 *     MN-major from shared memory).
 * Barriers (all counts fixed, every role runs the same nblk):
 *   qfull          count 128, producer (cp.async noinc), waited parity 0;
 *   full_k/full_v  per stage, count 128, producer (cp.async noinc); tile n
 *                  is phase n / NST of stage n % NST, waited with that
 *                  phase's parity;
 *   empty_k/empty_v per stage, count 8: lane 0 of each of the 8 consumer
 *                  warps after its wgmma reading that stage completed
 *                  (wgmma.wait_group); the producer waits parity
 *                  ((n / NST) & 1) ^ 1 before refilling (the first round
 *                  passes at once: the "preceding" phase of a fresh
 *                  barrier counts as complete).
 * Producer order: K(0), V(0), K(1), V(1), ...; with NST stages K(n) is
 *   issued once the consumers released K(n - NST), i.e. about NST tiles
 *   ahead of its use.
 * Consumer loop (FA3's intra-warpgroup overlap), per iteration n:
 *   issue S(n+1) = Q K(n+1)^T and PV(n); wait<1> (S done): release K(n+1),
 *   mask, row max, exp2 in place (overlaps PV(n) on the tensor cores);
 *   wait<0>: release V(n), rescale O and l, pack P(n+1). ptxas would hoist
 *   wait<0> above the exp2s (pin_before_wait keeps them apart). Registers:
 *   S 64 + O 64 + P 32 (hd 128, BN 128); ptxas uses up to 195 of the 232.
 * Ping-pong (PP): named barriers 1 and 2 (bar.sync id, 256 / bar.arrive id,
 *   256) order the two consumers' GEMM issues: a consumer syncs on its own
 *   barrier before issuing and arrives on the other's after, so one
 *   warpgroup's softmax runs while the other's GEMMs occupy the tensor
 *   cores. Every consumer has nblk + 1 issue sections (S(0); S(n+1)+PV(n);
 *   PV(last)); consumer 2 arrives once up front (consumer 1 goes first) and
 *   skips its last arrive, so both barriers end balanced.
 * Deadlock freedom: every wait of the producer is for a release of an
 *   earlier tile, every wait of a consumer for a load of an earlier (or the
 *   current) producer step or for the other consumer's previous section,
 *   which in turn needs only earlier loads. CTAs whose tile starts past the
 *   sequence's query rows return before any barrier is initialized, and a
 *   CTA with no key at all (nblk == 0, CTA-uniform) before the role split;
 *   there is no other early exit (rows past the end repeat the last row and
 *   are not stored). Define CI_PFWS_DEBUG_HANG for a bounded mbarrier spin
 *   that traps with a message instead of hanging (named barriers cannot be
 *   bounded). */
#ifndef CINFER_BACKEND_CUDA_PREFILL_ATTENTION_WS_CUH
#define CINFER_BACKEND_CUDA_PREFILL_ATTENTION_WS_CUH

#include "backend/cuda/cuda_prefill_attention.cuh"

/* register split: 128 (40 + 2 x 232) = 384 x 168 (the launch allocation at
 * __launch_bounds__(384, 1)) */
#define WS_PROD_REGS 40
#define WS_CONS_REGS 232

namespace ci_pfws {
using namespace ci_pf;

constexpr int BM = 128;    /* query rows per CTA: 2 consumer warpgroups x 64 */
constexpr int NPROD = 128; /* producer threads (the full barriers' count) */
constexpr int NCWARPS = 8; /* consumer warps (the empty barriers' count) */
constexpr int BAR_PP = 1;  /* named barriers BAR_PP + 0/1 (0: __syncthreads) */
static_assert(128 * (WS_PROD_REGS + 2 * WS_CONS_REGS) <= 384 * 168, "register split");

template <int NST> struct bars {
    uint64_t full_k[NST], full_v[NST], empty_k[NST], empty_v[NST], qfull;
    int lim_lo, lim_hi;
    int scratch; /* pin_before_wait's never-executed store */
};

/* ---- cp.async arrivals, named barrier, setmaxnreg (mbarriers: wgmma.cuh) ---- */
/* arrive on b when all of this thread's earlier cp.async have landed; the
 * arrival counts towards the barrier's expected count (noinc) */
__device__ __forceinline__ void cp_async_mbar_arrive(uint32_t b) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(b) : "memory");
}
__device__ __forceinline__ void named_sync(int id) {
    asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory");
}
__device__ __forceinline__ void named_arrive(int id) {
    asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory");
}
template <int R> __device__ __forceinline__ void reg_dealloc() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R> __device__ __forceinline__ void reg_alloc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}

/* keys >= the row's limit -> -inf (C layout: s[4 nb + e], rows g / g + 8) */
template <int BN>
__device__ __forceinline__ void mask_keys(float *s, int kbase, int lim0, int lim1) {
    const int tig = threadIdx.x & 3;
#pragma unroll
    for (int nb = 0; nb < BN / 8; nb++) {
        const int key = kbase + nb * 8 + 2 * tig;
        if (key >= lim0) s[4 * nb + 0] = -INFINITY;
        if (key + 1 >= lim0) s[4 * nb + 1] = -INFINITY;
        if (key >= lim1) s[4 * nb + 2] = -INFINITY;
        if (key + 1 >= lim1) s[4 * nb + 3] = -INFINITY;
    }
}
/* s = exp2(s sl2 - m) in place (P in f32, packed to bf16 later, once PV of
 * the previous tile has released the P registers); per-thread row sums */
template <int BN>
__device__ __forceinline__ void exp_rows(float *s, float sl2, float mx0, float mx1, float &rs0,
                                         float &rs1) {
    rs0 = 0.0f;
    rs1 = 0.0f;
#pragma unroll
    for (int nb = 0; nb < BN / 8; nb++) {
        s[4 * nb + 0] = ex2(fmaf(s[4 * nb + 0], sl2, -mx0));
        s[4 * nb + 1] = ex2(fmaf(s[4 * nb + 1], sl2, -mx0));
        s[4 * nb + 2] = ex2(fmaf(s[4 * nb + 2], sl2, -mx1));
        s[4 * nb + 3] = ex2(fmaf(s[4 * nb + 3], sl2, -mx1));
        rs0 += s[4 * nb + 0] + s[4 * nb + 1];
        rs1 += s[4 * nb + 2] + s[4 * nb + 3];
    }
}
/* Keeps the exponentials before the following wgmma.wait_group: ptxas
 * places that wait where its latency model expects PV to be done (70-180
 * instructions after the issue), i.e. before most of the exp2s, which then
 * no longer overlap PV (and with ping-pong PV runs after the other
 * warpgroup's GEMMs). A wait can always legally move up, but ptxas keeps
 * shared-memory stores on their side of it: this store's predicate depends
 * on every exponential (through the row sums), opaquely (asm), and is never
 * true (no sum of exp2 results has the bits 0xffffffff, a negative NaN), so
 * it costs an ISETP and a predicated-off STS. */
__device__ __forceinline__ void pin_before_wait(float rs, int *scratch) {
    uint32_t bits;
    asm volatile("mov.b32 %0, %1;\n" : "=r"(bits) : "f"(rs));
    if (bits == 0xffffffffu) *scratch = 0;
}
/* C layout of n-blocks 2k, 2k+1 = A layout of k-step k */
template <int BN> __device__ __forceinline__ void pack_p(const float *s, uint32_t (*pa)[4]) {
#pragma unroll
    for (int nb = 0; nb < BN / 8; nb++) {
        pa[nb >> 1][(nb & 1) * 2 + 0] = pack_bf16(s[4 * nb + 0], s[4 * nb + 1]);
        pa[nb >> 1][(nb & 1) * 2 + 1] = pack_bf16(s[4 * nb + 2], s[4 * nb + 3]);
    }
}

/* ---- producer warpgroup: Q, then K(n), V(n) for every tile ---- */
/* cp.async of rows kr + j RP of tile n (chunk kc of each) into dst; keys
 * past kv_end - 1 repeat that key (masked by the consumers). POW2: block
 * size 2^bsh (shift and mask instead of a division per row). */
template <int HD, int BN, bool POW2>
__device__ __forceinline__ void load_tile(const __nv_bfloat16 *src, __nv_bfloat16 *dst,
                                          const int32_t *bt, int n, int kv_end, int bs, int bsh,
                                          int64_t bstride, int64_t hoff, int kr, int kc) {
    constexpr int RP = NPROD / (HD / 8);
#pragma unroll 4
    for (int j = 0; j < BN / RP; j++) {
        const int r = kr + j * RP;
        const int key = min(n * BN + r, kv_end - 1);
        const int blk = POW2 ? key >> bsh : key / bs;
        const int slot = POW2 ? key & (bs - 1) : key - blk * bs;
        cp_async16(dst + swz128<BN>(r, kc),
                   src + (int64_t)bt[blk] * bstride + hoff + (int64_t)slot * HD);
    }
}
template <int HD, int BN, int NST, bool POW2>
__device__ __forceinline__ void produce_kv(const ci_prefill_params &p, bars<NST> &bar,
                                           __nv_bfloat16 *sk, __nv_bfloat16 *sv, int s, int h,
                                           int kv_end, int nblk) {
    constexpr int CH = HD / 8;
    const int kc = threadIdx.x % CH, kr = threadIdx.x / CH;
    const int32_t *bt = p.btab + (int64_t)s * p.mbps;
    const int bs = p.bs, bsh = __ffs(bs) - 1;
    const int64_t bstride = (int64_t)p.KV * bs * HD; /* one cache block, all kv heads */
    const int64_t hoff = (int64_t)(h / (p.H / p.KV)) * bs * HD + kc * 8;
    int st = 0;
    uint32_t ph = 0;
    for (int n = 0; n < nblk; n++) {
        mbar_wait(smem_u32(&bar.empty_k[st]), ph ^ 1);
        load_tile<HD, BN, POW2>(p.kc, sk + st * BN * HD, bt, n, kv_end, bs, bsh, bstride, hoff, kr,
                                kc);
        cp_async_mbar_arrive(smem_u32(&bar.full_k[st]));
        mbar_wait(smem_u32(&bar.empty_v[st]), ph ^ 1);
        load_tile<HD, BN, POW2>(p.vc, sv + st * BN * HD, bt, n, kv_end, bs, bsh, bstride, hoff, kr,
                                kc);
        cp_async_mbar_arrive(smem_u32(&bar.full_v[st]));
        if (++st == NST) {
            st = 0;
            ph ^= 1;
        }
    }
}
template <int HD, int BN, int NST>
__device__ __forceinline__ void
produce(const ci_prefill_params &p, bars<NST> &bar, __nv_bfloat16 *sq, __nv_bfloat16 *sk,
        __nv_bfloat16 *sv, int s, int h, int q0, int r0, int nrows, int kv_end, int nblk) {
    constexpr int CH = HD / 8;     /* 16-byte chunks per row */
    constexpr int RP = NPROD / CH; /* rows per pass of the 128 threads */
    static_assert(NPROD % CH == 0 && BN % RP == 0 && BM % RP == 0, "copy split");
    const int kc = threadIdx.x % CH, kr = threadIdx.x / CH;
    const __nv_bfloat16 *qb = p.qkv + (int64_t)h * HD + kc * 8;
    const int64_t qstride = (int64_t)(p.H + 2 * p.KV) * HD;
#pragma unroll 4
    for (int j = 0; j < BM / RP; j++) {
        const int r = kr + j * RP;
        cp_async16(sq + swz128<BM>(r, kc), qb + (int64_t)(q0 + r0 + min(r, nrows - 1)) * qstride);
    }
    cp_async_mbar_arrive(smem_u32(&bar.qfull));
    if ((p.bs & (p.bs - 1)) == 0) /* 16, 32 (and 1) */
        produce_kv<HD, BN, NST, true>(p, bar, sk, sv, s, h, kv_end, nblk);
    else
        produce_kv<HD, BN, NST, false>(p, bar, sk, sv, s, h, kv_end, nblk);
    asm volatile("cp.async.wait_all;\n" ::: "memory"); /* nothing lands after the exit */
}

/* ---- consumer warpgroups 1, 2 ---- */
/* S = Q K^T of K/V stage st (the consumer warpgroup's 64 rows against BN
 * keys): HD / 16 k-steps; dq / dk the descriptors of stage 0 / k-step 0, Q
 * in a buffer of BMR rows (offsets (bytes >> 4) go into the start-address
 * field: shared memory < 256 KB, no carry out) */
template <int HD, int BN, int BMR>
__device__ __forceinline__ void issue_qk(float *s, uint64_t dq, uint64_t dk, int st) {
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        const uint64_t a = dq + (uint64_t)(((kk >> 2) * (BMR * 128) + (kk & 3) * 32) >> 4);
        const uint64_t b =
            dk + (uint64_t)((st * (BN * HD * 2) + (kk >> 2) * (BN * 128) + (kk & 3) * 32) >> 4);
        wgmma_ss<BN>(s, a, b, kk > 0);
    }
}
/* O += P V of stage st, P from registers (pa), dv stage 0's descriptor */
template <int HD, int BN>
__device__ __forceinline__ void issue_pv_st(float *o, uint32_t (*pa)[4], uint64_t dv, int st) {
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) {
        const uint64_t b = dv + (uint64_t)((st * (BN * HD * 2) + kk * 16 * 128) >> 4);
        if constexpr (HD == 64)
            wgmma_n64<1>(o, pa[kk], b);
        else
            wgmma_n128<1>(o, pa[kk], b);
    }
}

template <int HD, int BN, int NST, bool PP>
__device__ __forceinline__ void consume(const ci_prefill_params &p, bars<NST> &bar,
                                        const __nv_bfloat16 *sq, const __nv_bfloat16 *sk,
                                        const __nv_bfloat16 *sv, int h, int q0, int r0, int nrows,
                                        int ctx, int lim_lo, int nblk) {
    constexpr int NS = BN / 2, NO = HD / 2, NP = BN / 4;
    const int ct = threadIdx.x - NPROD; /* 0 .. 255 */
    const int cw = ct >> 7;             /* consumer warpgroup: rows 64 cw .. */
    const int lane = ct & 31;
    const int ra = cw * 64 + ((ct >> 5) & 3) * 16 + (lane >> 2), rb = ra + 8;
    const int lim0 = min(p.positions[q0 + r0 + min(ra, nrows - 1)] + 1, ctx);
    const int lim1 = min(p.positions[q0 + r0 + min(rb, nrows - 1)] + 1, ctx);
    const int nfull = lim_lo / BN; /* tiles n >= nfull need the mask */
    const float sl2 = p.scale_log2;
    /* descriptors of stage 0 / k-step 0; offsets (bytes >> 4) are added to
     * the start-address field (shared memory < 256 KB: no carry out) */
    const uint64_t dq = gmma_desc(sq + cw * 64 * 64, 16, 1024);
    const uint64_t dk = gmma_desc(sk, 16, 1024);
    const uint64_t dv = gmma_desc(sv, BN * 128, 1024);
    auto issue_s = [&](float *s, int st) { issue_qk<HD, BN, BM>(s, dq, dk, st); };
    auto issue_pv = [&](float *o, uint32_t(*pa)[4], int st) { issue_pv_st<HD, BN>(o, pa, dv, st); };
    auto release = [&](uint64_t *b) {
        if (lane == 0) mbar_arrive(smem_u32(b));
    };

    float o[NO], s[NS];
    uint32_t pa[BN / 16][4];
#pragma unroll
    for (int i = 0; i < NO; i++)
        o[i] = 0.0f;
    fence_regs<NO>(o);
    int kst = 0, vst = 0;
    uint32_t kph = 0, vph = 0;

    mbar_wait(smem_u32(&bar.qfull), 0);
    if (PP && cw == 1) named_arrive(BAR_PP + 0); /* consumer 1 issues first */

    /* tile 0: S(0) alone, nothing to overlap with yet */
    if (PP) named_sync(BAR_PP + cw);
    mbar_wait(smem_u32(&bar.full_k[0]), 0);
    fence_proxy_async(); /* cp.async (generic proxy) data -> wgmma (async proxy) */
    fence_regs<NS>(s);
    wg_fence();
    issue_s(s, 0);
    wg_commit();
    if (PP) named_arrive(BAR_PP + (cw ^ 1));
    wg_wait0();
    fence_regs<NS>(s);
    release(&bar.empty_k[0]);
    if (++kst == NST) {
        kst = 0;
        kph ^= 1;
    }
    if (nfull <= 0) mask_keys<BN>(s, 0, lim0, lim1);
    /* tile 0 holds key 0, allowed for every row: the maxima are finite */
    float m0 = -INFINITY, m1 = -INFINITY, l0, l1;
    row_max<BN>(s, sl2, m0, m1);
    exp_rows<BN>(s, sl2, m0, m1, l0, l1);
    pack_p<BN>(s, pa);

    for (int n = 0; n + 1 < nblk; n++) {
        if (PP) named_sync(BAR_PP + cw);
        mbar_wait(smem_u32(&bar.full_k[kst]), kph);
        mbar_wait(smem_u32(&bar.full_v[vst]), vph);
        fence_proxy_async();
        fence_regs<NS>(s);
        fence_regs<NO>(o);
        fence_regs<NP>(&pa[0][0]);
        wg_fence();
        issue_s(s, kst); /* S(n+1) */
        wg_commit();
        issue_pv(o, pa, vst); /* PV(n) */
        wg_commit();
        if (PP) named_arrive(BAR_PP + (cw ^ 1));
        wg_wait1(); /* S(n+1) done, PV(n) may still run */
        fence_regs<NS>(s);
        release(&bar.empty_k[kst]);
        if (++kst == NST) {
            kst = 0;
            kph ^= 1;
        }
        /* softmax of tile n+1 while PV(n) runs: only s is touched (writing
         * o or pa now would make ptxas serialize the wgmmas, C7515) */
        if (n + 1 >= nfull) mask_keys<BN>(s, (n + 1) * BN, lim0, lim1);
        float nm0 = m0, nm1 = m1;
        row_max<BN>(s, sl2, nm0, nm1);
        const float a0 = ex2(m0 - nm0), a1 = ex2(m1 - nm1);
        m0 = nm0;
        m1 = nm1;
        float rs0, rs1;
        exp_rows<BN>(s, sl2, m0, m1, rs0, rs1);
        pin_before_wait(rs0 + rs1, &bar.scratch);
        wg_wait0(); /* PV(n) done: o and pa free */
        fence_regs<NO>(o);
        fence_regs<NP>(&pa[0][0]);
        release(&bar.empty_v[vst]);
        if (++vst == NST) {
            vst = 0;
            vph ^= 1;
        }
        l0 = l0 * a0 + rs0;
        l1 = l1 * a1 + rs1;
        /* the maxima rarely move after the first tiles */
        if (__any_sync(0xffffffffu, a0 != 1.0f || a1 != 1.0f)) rescale<HD>(o, a0, a1);
        pack_p<BN>(s, pa);
    }

    /* PV(last) */
    if (PP) named_sync(BAR_PP + cw);
    mbar_wait(smem_u32(&bar.full_v[vst]), vph);
    fence_proxy_async();
    fence_regs<NO>(o);
    fence_regs<NP>(&pa[0][0]);
    wg_fence();
    issue_pv(o, pa, vst);
    wg_commit();
    if (PP && cw == 0) named_arrive(BAR_PP + 1); /* consumer 2's last sync */
    wg_wait0();
    fence_regs<NO>(o);
    fence_regs<NP>(&pa[0][0]);
    release(&bar.empty_v[vst]); /* not waited for: keeps the counts uniform */

    store_rows<HD>(p, h, q0 + r0, nrows, ra, o, l0, l1, 1.0f); /* out = O / l */
}

} // namespace ci_pfws

/* Dynamic shared memory: NST stages of K and V [HD/64][BN][64], Q
 * [HD/64][128][64], 1 KB to align the swizzle atoms. */
template <int HD, int BN, int NST> __host__ __device__ constexpr size_t ci_prefill_ws_smem_bytes() {
    return (size_t)(2 * NST * BN * HD + ci_pfws::BM * HD) * sizeof(__nv_bfloat16) + 1024;
}

/* Grid: ntiles * S * H CTAs of 384 threads, heads fastest, heaviest (last)
 * query tiles first; BM = 128. p.window must be 0 and p.fp8 false. */
template <int HD, int BN, int NST, bool PP>
__global__ void __launch_bounds__(384, 1)
    ci_prefill_attention_ws_kernel(const ci_prefill_params p) {
    ci_pdl_trigger();
    ci_pdl_wait();
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using namespace ci_pfws;
    static_assert((HD == 64 || HD == 128) && (BN == 64 || BN == 128) && NST >= 2, "tile shape");
    static_assert(ci_prefill_ws_smem_bytes<HD, BN, NST>() + sizeof(bars<NST>) <= 232448,
                  "shared memory");
    extern __shared__ uint4 smem_u4[];
    __nv_bfloat16 *sk = (__nv_bfloat16 *)(((uintptr_t)smem_u4 + 1023) & ~(uintptr_t)1023);
    __nv_bfloat16 *sv = sk + NST * BN * HD;
    __nv_bfloat16 *sq = sv + NST * BN * HD;
    __shared__ bars<NST> bar;

    /* work item (the same for every thread): a CTA past its sequence's rows
     * leaves before any barrier exists */
    int idx = blockIdx.x;
    const int h = idx % p.H;
    idx /= p.H;
    const int s = idx % p.S;
    const int tile = p.ntiles - 1 - idx / p.S;
    const int q0 = p.qstart[s], r0 = tile * BM;
    const int qlen = p.qstart[s + 1] - q0;
    if (r0 >= qlen) return;
    const int nrows = min(BM, qlen - r0);
    const int ctx = p.ctx_lens[s];

    if (threadIdx.x == 0) {
        bar.lim_lo = 1 << 30;
        bar.lim_hi = 0;
#pragma unroll
        for (int st = 0; st < NST; st++) {
            mbar_init(&bar.full_k[st], NPROD);
            mbar_init(&bar.full_v[st], NPROD);
            mbar_init(&bar.empty_k[st], NCWARPS);
            mbar_init(&bar.empty_v[st], NCWARPS);
        }
        mbar_init(&bar.qfull, NPROD);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    /* the CTA's smallest and largest key limit (rows past the end repeat
     * the last row) */
    if (threadIdx.x < BM) {
        const int r = min((int)threadIdx.x, nrows - 1);
        int lo = min(p.positions[q0 + r0 + r] + 1, ctx), hi = lo;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
            hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
        }
        if ((threadIdx.x & 31) == 0) {
            atomicMin(&bar.lim_lo, lo);
            atomicMax(&bar.lim_hi, hi);
        }
    }
    __syncthreads();
    const int lim_lo = bar.lim_lo, kv_end = bar.lim_hi;
    const int nblk = (kv_end + BN - 1) / BN; /* tiles past the last allowed key: never loaded */
    if (nblk <= 0) return; /* no key at all (empty context): same for every thread */

    if (threadIdx.x < NPROD) {
        reg_dealloc<WS_PROD_REGS>();
        produce<HD, BN, NST>(p, bar, sq, sk, sv, s, h, q0, r0, nrows, kv_end, nblk);
    } else {
        reg_alloc<WS_CONS_REGS>();
        consume<HD, BN, NST, PP>(p, bar, sq, sk, sv, h, q0, r0, nrows, ctx, lim_lo, nblk);
    }
#else
    __trap();
#endif
}

#endif
