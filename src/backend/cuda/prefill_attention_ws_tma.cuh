/* prefill_attention_ws_tma.cuh — the warp-specialized Hopper prefill
 * attention of prefill_attention_ws.cuh with TMA loads and an optional
 * persistent schedule: production on Hopper for BF16 caches without a
 * sliding window (cuda_prefill_attention.cu launches the v40 configuration
 * of bench/kernels/prefill_attention.cu at hd 128: persistent, BN 128,
 * 3 stages, ILP softmax, two producer warps; v33 at hd 64). Same inputs,
 * masking and results as that kernel, with two
 * more restrictions: the cache block size must be 16, 32, 64 or 128 and
 * divide BN (one TMA box per cache block and 64-column half), and the host
 * passes three tensor maps (ci_prefill_ws_tma_maps below):
 *   Q: 2-D over qkv, dims ((H + 2 KV) hd, T), box (64, 128);
 *   K, V: 4-D over the cache, dims (hd, bs, KV, num_blocks), box
 *     (64, bs, 1, 1);
 * all 128-byte swizzled: a box lands exactly in the [hd/64][rows][64]
 * layout the wgmma descriptors read (the swizzle is a function of the
 * shared-memory address bits, and every box starts at a multiple of
 * 1024 bytes from the 1024-aligned tiles).
 *
 * Differences from prefill_attention_ws.cuh:
 *  - Producer = one warp (warps 1-3 of warpgroup 0 exit after setmaxnreg;
 *    SPLITP: warp 0 loads Q and K, warp 1 V, as produce() says).
 *    Per tile it waits for the stage's "empty" barrier, lane 0 posts
 *    mbarrier.arrive.expect_tx(BN hd 2 bytes) on the "full" barrier (count
 *    1), then lanes 0 .. nbox-1 (nbox = hd/64 x BN/bs <= 16) each issue one
 *    box, its cache block read from the block table by the same lane. Block
 *    indices past the CTA's last needed block ((kv_end - 1) / bs) are
 *    clamped to it: the table may hold garbage there; the rows read are
 *    real cache rows and masked. Q: 2 boxes (hd 128) on "qfull" (count 1);
 *    rows past the tensor's end come back zero, rows past the sequence's
 *    end are the next sequence's (finite, computed, never stored).
 *  - No fence.proxy.async anywhere: TMA writes and wgmma reads are both in
 *    the async proxy, ordered by the mbarrier complete_tx -> try_wait
 *    (acquire); consumer reads -> producer overwrite by wgmma.wait_group ->
 *    mbarrier.arrive (release) -> try_wait (acquire) -> TMA issue, the
 *    pattern of CUTLASS's PipelineTmaAsync.
 *    Caveat: unlike the cp.async kernel, keys past ctx inside the last
 *    cache block (never written in this step) are read raw into V; P is 0
 *    there but 0 x NaN = NaN in the tensor cores, so the cache must hold
 *    finite values in unused slots (zero-initialized or stale, as in
 *    vLLM-style engines).
 *  - Work loop: every role runs the same sequence of work items: item k of
 *    CTA b is round k of a snake order over the heaviest-first item list
 *    (k G + b for even k, k G + G - 1 - b for odd k, G = gridDim.x). With
 *    G = the number of items (one per CTA) this is the plain grid of the
 *    cp.async kernel; with G = the number of SMs the kernel is persistent:
 *    the producer loads item k+1's Q and first K/V tiles while the
 *    consumers finish item k's last PV and epilogue.
 *    Items whose tile starts past the sequence's rows or that see no key
 *    are skipped. The producer warps walk the list themselves (the tile's
 *    key limits: 4 positions per lane and a warp reduction); the consumers
 *    get each item from the post warp (qinfo), so their item starts wait
 *    on no global load.
 *  - Barrier state carries over items: stage / phase counters of the K/V
 *    ring continue; qfull / qempty (count 8: lane 0 of each consumer warp
 *    once its last S GEMM of the item completed) flip parity per item, the
 *    producer waits qempty with parity (item & 1) ^ 1 before overwriting Q.
 *  - Ping-pong across items: consumer 2 arrives on consumer 1's named
 *    barrier once at the start, then every section is sync(own) - issue -
 *    arrive(other) for both consumers without exception; consumer 1 takes
 *    the one surplus arrival with a final sync after its last item (so both
 *    barriers end balanced, however many items there were).
 * Deadlock freedom: as in prefill_attention_ws.cuh; in addition the
 * producer's qempty wait for item k+1 needs only the consumers' S GEMMs of
 * item k, whose K tiles the producer issued before that wait, and the
 * consumers' full waits of item k+1 need only producer steps that follow
 * releases of item k. Define CI_PFWS_DEBUG_HANG for the bounded spin. */
#ifndef CINFER_BACKEND_CUDA_PREFILL_ATTENTION_WS_TMA_CUH
#define CINFER_BACKEND_CUDA_PREFILL_ATTENTION_WS_TMA_CUH

#include "backend/cuda/prefill_attention_ws.cuh"
#include <cuda.h>         /* CUtensorMap (types only: nothing is linked) */
#include <cudaTypedefs.h> /* PFN_cuTensorMapEncodeTiled */

namespace ci_pfwt {
using namespace ci_pfws;

template <int NST> struct tbars {
    uint64_t full_k[NST], full_v[NST], empty_k[NST], empty_v[NST], qfull, qempty;
    int scratch; /* pin_before_wait's never-executed store */
};

__device__ __forceinline__ void tma_load_4d(void *dst, const CUtensorMap *m, int c0, int c1, int c2,
                                            int c3, uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(smem_u32(dst)),
                 "l"((uint64_t)m), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
                 : "memory");
}

/* The items the consumers start, handed over by warp 2 of the producer
 * warpgroup (otherwise idle: the "post" warp), so a consumer's item start
 * reads shared memory instead of walking the item list with two dependent
 * global loads (qstart, then positions), which all consumer warpgroups
 * waited for at once (round 8 of docs/kernels/prefill_attention.md). The
 * post warp writes item j to slot j & 1, then meets each consumer
 * warpgroup c at its named barrier BAR_QI + c (a full bar.sync of the 32
 * post threads and the group's 128), after which the group reads the slot;
 * item j + 2's write follows the post warp's barriers of item j + 1, which
 * each group passes only after reading item j. Full barriers, so
 * compute-sanitizer's racecheck follows the hand-off (it did not follow an
 * mbarrier's release / acquire or bar.arrive); one barrier per group, so
 * the groups keep their ping-pong offset, and the warp that waits on them
 * issues no loads. hdr: h, first token row, rows, smallest key limit, key
 * tiles, end (QI_MORE: an item; QI_NONE: no more, in the slot after the
 * CTA's last); lim: each row's key limit (rows past the end repeat the
 * last). */
template <int BMT> struct qslot {
    int hdr[8];
    int lim[BMT];
};
template <int BMT> struct qinfo { qslot<BMT> slot[2]; };
enum { QI_H, QI_ROW0, QI_NROWS, QI_LIM_LO, QI_NBLK, QI_END };
enum { QI_MORE, QI_NONE };
constexpr int BAR_QI = 4; /* BAR_QI + c, c < NC: after BAR_PP + 0 .. 2 */
__device__ __forceinline__ void bar_sync_n(int id, int n) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

/* one work item: (sequence, head, query tile) and its key range */
struct item {
    int h, s, q0, r0, nrows, ctx;
    int lim_lo, kv_end, nblk; /* smallest / largest key limit of the 128 rows; key tiles */
};
/* item k of this CTA (snake order over the heaviest-first list); false
 * when past the list. valid = false: skip (no rows or no key). Every warp
 * gets the same answer. BMT: query rows of a tile (64 per consumer
 * warpgroup). */
template <int BN, int BMT>
__device__ __forceinline__ bool get_item(const ci_prefill_params &p, int k, item &it, bool &valid) {
    const int G = gridDim.x, b = blockIdx.x;
    const int64_t w = (int64_t)k * G + ((k & 1) ? G - 1 - b : b);
    if (w >= (int64_t)p.ntiles * p.S * p.H) return false;
    int idx = (int)w;
    it.h = idx % p.H;
    idx /= p.H;
    it.s = idx % p.S;
    const int tile = p.ntiles - 1 - idx / p.S;
    it.q0 = p.qstart[it.s];
    it.r0 = tile * BMT;
    const int qlen = p.qstart[it.s + 1] - it.q0;
    valid = false;
    if (it.r0 >= qlen) return true;
    it.nrows = min(BMT, qlen - it.r0);
    it.ctx = p.ctx_lens[it.s];
    /* rows past the end repeat the last row */
    const int lane = threadIdx.x & 31;
    int lo = 1 << 30, hi = 0;
#pragma unroll
    for (int i = 0; i < BMT / 32; i++) {
        const int r = min(lane + 32 * i, it.nrows - 1);
        const int lim = min(p.positions[it.q0 + it.r0 + r] + 1, it.ctx);
        lo = min(lo, lim);
        hi = max(hi, lim);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
        hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    }
    it.lim_lo = lo;
    it.kv_end = hi;
    it.nblk = (hi + BN - 1) / BN;
    valid = it.nblk > 0;
    return true;
}

/* the post warp (see qinfo): every valid item of this CTA, then QI_NONE */
template <int BN, int NC>
__device__ __forceinline__ void post_items(const ci_prefill_params &p, qinfo<64 * NC> &qi) {
    constexpr int BMT = 64 * NC;
    const int lane = threadIdx.x & 31;
    item it;
    bool valid;
    int j = 0;
    for (int k = 0; get_item<BN, BMT>(p, k, it, valid); k++) {
        if (!valid) continue;
        qslot<BMT> &q = qi.slot[j & 1];
#pragma unroll 1
        for (int i = 0; i < BMT / 32; i++) {
            const int r = min(lane + 32 * i, it.nrows - 1);
            q.lim[lane + 32 * i] = min(p.positions[it.q0 + it.r0 + r] + 1, it.ctx);
        }
        if (lane == 0) {
            q.hdr[QI_H] = it.h;
            q.hdr[QI_ROW0] = it.q0 + it.r0;
            q.hdr[QI_NROWS] = it.nrows;
            q.hdr[QI_LIM_LO] = it.lim_lo;
            q.hdr[QI_NBLK] = it.nblk;
            q.hdr[QI_END] = QI_MORE;
        }
#pragma unroll
        for (int c = 0; c < NC; c++)
            bar_sync_n(BAR_QI + c, 32 + 128);
        j++;
    }
    if (lane == 0) qi.slot[j & 1].hdr[QI_END] = QI_NONE;
#pragma unroll
    for (int c = 0; c < NC; c++)
        bar_sync_n(BAR_QI + c, 32 + 128);
}

/* ---- softmax pieces (ILP: 4 independent partial maxima / sums per row) ----
 * During a warpgroup's softmax its 4 warps are often the only ones issuing
 * on their schedulers (with ping-pong the other consumer waits for its
 * GEMMs, the producer for its barriers), so a 32-long dependent chain of
 * FMNMX / FADD per row shows its full latency. With ILP the chains are 4
 * interleaved ones of 8 (BN 128), and the raw maximum is scaled once
 * instead of every pair (sl2 > 0 and rounding is monotonic:
 * max(s) sl2 == max(s sl2) exactly). The row sums change only in fp32
 * summation order. */
template <int BN, bool ILP>
__device__ __forceinline__ void row_max2(const float *s, float sl2, float &mx0, float &mx1) {
    if constexpr (!ILP) {
        row_max<BN>(s, sl2, mx0, mx1);
    } else {
        static_assert(BN / 8 >= 4, "4 partial maxima");
        float a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            a[i] = fmaxf(s[4 * i], s[4 * i + 1]);
            b[i] = fmaxf(s[4 * i + 2], s[4 * i + 3]);
        }
#pragma unroll
        for (int nb = 4; nb < BN / 8; nb++) {
            a[nb & 3] = fmaxf(a[nb & 3], fmaxf(s[4 * nb], s[4 * nb + 1]));
            b[nb & 3] = fmaxf(b[nb & 3], fmaxf(s[4 * nb + 2], s[4 * nb + 3]));
        }
        float x = fmaxf(fmaxf(a[0], a[1]), fmaxf(a[2], a[3]));
        float y = fmaxf(fmaxf(b[0], b[1]), fmaxf(b[2], b[3]));
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
        y = fmaxf(y, __shfl_xor_sync(0xffffffffu, y, 1));
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
        y = fmaxf(y, __shfl_xor_sync(0xffffffffu, y, 2));
        mx0 = fmaxf(mx0, x * sl2);
        mx1 = fmaxf(mx1, y * sl2);
    }
}
/* 2^x (x <= 0, as a softmax's exponents) on the FMA pipe instead of the
 * MUFU: x rounded to the integer j by the 1.5 * 2^23 trick (j lands in t's
 * low mantissa bits), 2^(x - j) on [-0.5, 0.5] by a degree-3 polynomial
 * (relative error 7.5e-5, below BF16's 3.9e-3 that P is rounded to), j
 * added to the result's exponent. x is clamped at -126 (below, the
 * exponent add would wrap): -inf (a masked key) gives 2^-126 ~ 1.2e-38
 * where ex2.approx gives 0, nothing an fp32 sum of weights ~1 can see.
 * At hd 64 a tile's exponentials take the MUFU as long as its two GEMMs take
 * the tensor cores (FA4 moves some to the FMA pipe on Blackwell for that). */
__device__ __forceinline__ float ex2_fma(float x) {
    /* one asm block: built from C, ptxas serialized the wgmma pipeline */
    float y;
    asm("{\n\t.reg .f32 x, t, j, f, q;\n\t.reg .b32 a, b;\n\t"
        "max.f32 x, %1, 0fC2FC0000;\n\t"   /* -126 */
        "add.rn.f32 t, x, 0f4B400000;\n\t" /* 1.5 * 2^23 */
        "sub.rn.f32 j, t, 0f4B400000;\n\t"
        "sub.rn.f32 f, x, j;\n\t"
        "fma.rn.f32 q, f, 0f3D61FBA8, 0f3E786F10;\n\t"
        "fma.rn.f32 q, q, f, 0f3F31798D;\n\t"
        "fma.rn.f32 q, q, f, 0f3F7FFB49;\n\t"
        "mov.b32 a, q;\n\t"
        "mov.b32 b, t;\n\t"
        "shl.b32 b, b, 23;\n\t"
        "add.s32 a, a, b;\n\t"
        "mov.b32 %0, a;\n\t}"
        : "=f"(y)
        : "f"(x));
    return y;
}
/* 2^x on the FMA pipe (fma_pipe) or the MUFU */
__device__ __forceinline__ float ex2_on(bool fma_pipe, float x) {
    return fma_pipe ? ex2_fma(x) : ex2(x);
}
/* PX: of every 8 column groups of 8, the first PX take ex2_fma */
template <int BN, bool ILP, int PX = 0>
__device__ __forceinline__ void exp_rows2(float *s, float sl2, float mx0, float mx1, float &rs0,
                                          float &rs1) {
    if constexpr (!ILP) {
        exp_rows<BN>(s, sl2, mx0, mx1, rs0, rs1);
    } else {
        float a[4] = {0.0f, 0.0f, 0.0f, 0.0f}, b[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int nb = 0; nb < BN / 8; nb++) {
            const bool fp = (nb & 7) < PX; /* a constant: nb is unrolled */
            s[4 * nb + 0] = ex2_on(fp, fmaf(s[4 * nb + 0], sl2, -mx0));
            s[4 * nb + 1] = ex2_on(fp, fmaf(s[4 * nb + 1], sl2, -mx0));
            s[4 * nb + 2] = ex2_on(fp, fmaf(s[4 * nb + 2], sl2, -mx1));
            s[4 * nb + 3] = ex2_on(fp, fmaf(s[4 * nb + 3], sl2, -mx1));
            a[nb & 3] += s[4 * nb + 0] + s[4 * nb + 1];
            b[nb & 3] += s[4 * nb + 2] + s[4 * nb + 3];
        }
        rs0 = (a[0] + a[1]) + (a[2] + a[3]);
        rs1 = (b[0] + b[1]) + (b[2] + b[3]);
    }
}

/* ---- producer warp ----
 * Per K / V tile one box per cache block and 64 columns (16 at block size 16
 * and hd 128), each lane issuing one. WIDE: where the tile's blocks are
 * consecutive in the cache (a fresh prefill's, from an unfragmented free
 * list), one box over all of them per 64 columns (tmkw / tmvw: box
 * 64 x bs x 1 x BN / bs), landing in the same [BN][64] rows. ROLE 2: this
 * warp loads Q, K and V; 0: Q and K, 1: V (two producer warps walking the
 * same items and tiles, so K(n + 1) is not issued behind V(n)'s wait for
 * its stage: the consumers free a K stage after S, its V stage after PV). */
template <int HD, int BN, int NST, int BMT, bool WIDE = false, int ROLE = 2>
__device__ __forceinline__ void
produce(const ci_prefill_params &p, tbars<NST> &bar, const CUtensorMap *tmq, const CUtensorMap *tmk,
        const CUtensorMap *tmv, const CUtensorMap *tmkw, const CUtensorMap *tmvw, __nv_bfloat16 *sq,
        __nv_bfloat16 *sk, __nv_bfloat16 *sv) {
    const int lane = threadIdx.x & 31;
    if (lane == 0) {
        tma_prefetch_desc(tmq);
        tma_prefetch_desc(tmk);
        tma_prefetch_desc(tmv);
        if constexpr (WIDE) {
            tma_prefetch_desc(tmkw);
            tma_prefetch_desc(tmvw);
        }
    }
    const int bs = p.bs, bsh = __ffs(bs) - 1;
    const int nbb = BN >> bsh;        /* cache blocks per tile */
    const int nbox = (HD / 64) * nbb; /* boxes per tile (<= 16) */
    const int jj = lane & (nbb - 1);  /* this lane's block of the tile */
    const int half = lane >> (__ffs(nbb) - 1);
    const int doff = half * (BN * 64) + jj * bs * 64; /* its box in a stage */
    const int G = p.H / p.KV;
    int st = 0;
    uint32_t ph = 0, qph = 0;
    item it;
    bool valid;
    for (int k = 0; get_item<BN, BMT>(p, k, it, valid); k++) {
        if (!valid) continue;
        const int kvh = it.h / G;
        if (ROLE != 1) {
            mbar_wait(smem_u32(&bar.qempty), qph ^ 1);
            if (lane == 0) {
                const uint32_t qb = smem_u32(&bar.qfull);
                mbar_expect_tx(qb, BMT * HD * 2);
#pragma unroll
                for (int c = 0; c < HD / 64; c++)
                    tma_load_2d(sq + c * (BMT * 64), tmq, it.h * HD + c * 64, it.q0 + it.r0, qb);
            }
            qph ^= 1;
        }
        const int32_t *bt = p.btab + (int64_t)it.s * p.mbps;
        const int lastb = (it.kv_end - 1) >> bsh;
        for (int n = 0; n < it.nblk; n++) {
            int blk = 0;
            if (lane < nbox) blk = bt[min(n * nbb + jj, lastb)];
            bool wide = false; /* every block of the tile its predecessor + 1 */
            if constexpr (WIDE) {
                const int prev = __shfl_up_sync(0xffffffffu, blk, 1);
                wide =
                    nbb > 1 && __all_sync(0xffffffffu, lane >= nbox || jj == 0 || blk == prev + 1);
            }
            const int blk0 = WIDE ? __shfl_sync(0xffffffffu, blk, 0) : 0;
            /* one stage of K or V: wait for it to be free, post its bytes, issue */
            auto fill = [&](__nv_bfloat16 *dst, const CUtensorMap *m, const CUtensorMap *mw,
                            uint64_t *empty, uint64_t *full) {
                const uint32_t fb = smem_u32(full);
                mbar_wait(smem_u32(empty), ph ^ 1);
                if (lane == 0) mbar_expect_tx(fb, BN * HD * 2);
                __syncwarp(); /* the expected bytes are posted before any lands */
                if (wide) {
                    if (lane < HD / 64)
                        tma_load_4d(dst + lane * (BN * 64), mw, lane * 64, 0, kvh, blk0, fb);
                } else if (lane < nbox) {
                    tma_load_4d(dst + doff, m, half * 64, 0, kvh, blk, fb);
                }
            };
            if (ROLE != 1) fill(sk + st * (BN * HD), tmk, tmkw, &bar.empty_k[st], &bar.full_k[st]);
            if (ROLE != 0) fill(sv + st * (BN * HD), tmv, tmvw, &bar.empty_v[st], &bar.full_v[st]);
            if (++st == NST) {
                st = 0;
                ph ^= 1;
            }
        }
    }
}

/* ---- consumer warpgroups 1 .. NC (always ping-pong: with NC = 3 a ring,
 * each warpgroup's GEMMs issued after the one before it) ---- */
template <int HD, int BN, int NST, bool ILP, int NC, int PX, bool EPI>
__device__ __forceinline__ void consume(const ci_prefill_params &p, tbars<NST> &bar,
                                        const qinfo<64 * NC> &qi, const __nv_bfloat16 *sq,
                                        const __nv_bfloat16 *sk, const __nv_bfloat16 *sv) {
    constexpr int NS = BN / 2, NO = HD / 2, NP = BN / 4, BMT = 64 * NC;
    const int ct = threadIdx.x - NPROD;                   /* 0 .. 128 NC - 1 */
    const int cw = ct >> 7;                               /* consumer warpgroup: rows 64 cw .. */
    const int nxt = BAR_PP + (cw + 1 == NC ? 0 : cw + 1); /* the next one's barrier */
    const int lane = ct & 31;
    const int ra = cw * 64 + ((ct >> 5) & 3) * 16 + (lane >> 2), rb = ra + 8;
    const float sl2 = p.scale_log2;
    const uint64_t dq = gmma_desc(sq + cw * 64 * 64, 16, 1024);
    const uint64_t dk = gmma_desc(sk, 16, 1024);
    const uint64_t dv = gmma_desc(sv, BN * 128, 1024);
    auto issue_s = [&](float *s, int st) { issue_qk<HD, BN, BMT>(s, dq, dk, st); };
    auto issue_pv = [&](float *o, uint32_t(*pa)[4], int st) { issue_pv_st<HD, BN>(o, pa, dv, st); };
    auto release = [&](uint64_t *b) {
        if (lane == 0) mbar_arrive(smem_u32(b));
    };

    int kst = 0, vst = 0;
    uint32_t kph = 0, vph = 0, qph = 0;
    if (cw == NC - 1) named_arrive(BAR_PP + 0); /* consumer 1 issues first */
    for (int j = 0;; j++) {
        /* item j from the post warp (slot j & 1) */
        bar_sync_n(BAR_QI + cw, 32 + 128);
        const qslot<BMT> &q = qi.slot[j & 1];
        if (q.hdr[QI_END] == QI_NONE) break;
        const int nblk = q.hdr[QI_NBLK], nrows = q.hdr[QI_NROWS], row0 = q.hdr[QI_ROW0];
        const int h = q.hdr[QI_H], lim0 = q.lim[ra], lim1 = q.lim[rb];
        const int nfull = q.hdr[QI_LIM_LO] / BN; /* tiles n >= nfull need the mask */

        float o[NO], s[NS];
        uint32_t pa[BN / 16][4];
#pragma unroll
        for (int i = 0; i < NO; i++)
            o[i] = 0.0f;
        fence_regs<NO>(o);

        /* tile 0: S(0) alone */
        named_sync(BAR_PP + cw);
        mbar_wait(smem_u32(&bar.qfull), qph);
        qph ^= 1;
        mbar_wait(smem_u32(&bar.full_k[kst]), kph);
        fence_regs<NS>(s);
        wg_fence();
        issue_s(s, kst);
        wg_commit();
        named_arrive(nxt);
        wg_wait0();
        fence_regs<NS>(s);
        release(&bar.empty_k[kst]);
        if (++kst == NST) {
            kst = 0;
            kph ^= 1;
        }
        if (nfull <= 0) mask_keys<BN>(s, 0, lim0, lim1);
        float m0 = -INFINITY, m1 = -INFINITY, l0, l1;
        row_max2<BN, ILP>(s, sl2, m0, m1);
        exp_rows2<BN, ILP, PX>(s, sl2, m0, m1, l0, l1);
        pack_p<BN>(s, pa);

        for (int n = 0; n + 1 < nblk; n++) {
            named_sync(BAR_PP + cw);
            mbar_wait(smem_u32(&bar.full_k[kst]), kph);
            mbar_wait(smem_u32(&bar.full_v[vst]), vph);
            fence_regs<NS>(s);
            fence_regs<NO>(o);
            fence_regs<NP>(&pa[0][0]);
            wg_fence();
            issue_s(s, kst); /* S(n+1) */
            wg_commit();
            issue_pv(o, pa, vst); /* PV(n) */
            wg_commit();
            named_arrive(nxt);
            wg_wait1(); /* S(n+1) done, PV(n) may still run */
            fence_regs<NS>(s);
            release(&bar.empty_k[kst]);
            if (++kst == NST) {
                kst = 0;
                kph ^= 1;
            }
            if (n + 1 >= nfull) mask_keys<BN>(s, (n + 1) * BN, lim0, lim1);
            float nm0 = m0, nm1 = m1;
            row_max2<BN, ILP>(s, sl2, nm0, nm1);
            const float a0 = ex2(m0 - nm0), a1 = ex2(m1 - nm1);
            m0 = nm0;
            m1 = nm1;
            float rs0, rs1;
            exp_rows2<BN, ILP, PX>(s, sl2, m0, m1, rs0, rs1);
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
            if (__any_sync(0xffffffffu, a0 != 1.0f || a1 != 1.0f)) rescale<HD>(o, a0, a1);
            pack_p<BN>(s, pa);
        }
        /* every S GEMM of the item has completed: Q may be overwritten */
        release(&bar.qempty);

        /* PV(last) */
        named_sync(BAR_PP + cw);
        mbar_wait(smem_u32(&bar.full_v[vst]), vph);
        fence_regs<NO>(o);
        fence_regs<NP>(&pa[0][0]);
        wg_fence();
        issue_pv(o, pa, vst);
        wg_commit();
        named_arrive(nxt);
        wg_wait0();
        fence_regs<NO>(o);
        fence_regs<NP>(&pa[0][0]);
        release(&bar.empty_v[vst]);
        if (++vst == NST) {
            vst = 0;
            vph ^= 1;
        }

        if constexpr (EPI) /* out = O / l */
            store_rows_pair<HD>(p, h, row0, nrows, ra, o, l0, l1, 1.0f);
        else
            store_rows<HD>(p, h, row0, nrows, ra, o, l0, l1, 1.0f);
    }
    if (cw == 0) named_sync(BAR_PP + 0); /* the last consumer's surplus arrival */
}

} // namespace ci_pfwt

/* Dynamic shared memory: NST stages of K and V [HD/64][BN][64], Q
 * [HD/64][64 NC][64], 1 KB to align the swizzle atoms. */
template <int HD, int BN, int NST, int NC = 2>
__host__ __device__ constexpr size_t ci_prefill_wst_smem_bytes() {
    return (size_t)(2 * NST * BN * HD + 64 * NC * HD) * sizeof(__nv_bfloat16) + 1024;
}
/* threads of the kernel with NC consumer warpgroups (and the producer's) */
__host__ __device__ constexpr int ci_prefill_wst_threads(int NC) {
    return 128 * (NC + 1);
}
/* the cache block sizes the TMA kernel takes with tile width BN */
__host__ __device__ constexpr bool ci_prefill_wst_bs_ok(int bs, int BN) {
    return (bs == 16 || bs == 32 || bs == 64 || bs == 128) && BN % bs == 0;
}

/* Grid: any number of CTAs of ci_prefill_wst_threads(NC) threads (the
 * number of work items, ntiles * S * H with ntiles of 64 NC rows: one item
 * each; the number of SMs: persistent). p.window must be 0, p.fp8 false,
 * p.bs as ci_prefill_wst_bs_ok. ILP: the softmax with independent partial
 * maxima / sums (row_max2). NC: consumer warpgroups, 2 (128-row tiles,
 * registers 40 / 232) or 3 (192-row tiles as FA3 takes at hd 64: each K/V
 * tile serves half again as many rows and the tensor cores have two other
 * warpgroups' GEMMs to run during a softmax; registers 32 / 160). PX: the
 * share (PX / 8) of the exponentials computed on the FMA pipe (ex2_fma;
 * lab v36-v38: slower at every share tried, production launches PX = 0).
 * WIDE: a tile of consecutive cache blocks comes in one box per 64 columns
 * (tmkw / tmvw, ci_prefill_wst_make_maps' wide maps; unused otherwise).
 * SPLITP: K and V from two producer warps (produce's ROLE 0 and 1). EPI:
 * the epilogue's 8-byte stores (store_rows_pair; lab v41). */
template <int HD, int BN, int NST, bool ILP, int NC = 2, int PX = 0, bool WIDE = false,
          bool SPLITP = false, bool EPI = false>
__global__ void __launch_bounds__(128 * (NC + 1), 1)
    ci_prefill_attention_wst_kernel(const ci_prefill_params p,
                                    const __grid_constant__ CUtensorMap tmq,
                                    const __grid_constant__ CUtensorMap tmk,
                                    const __grid_constant__ CUtensorMap tmv,
                                    const __grid_constant__ CUtensorMap tmkw,
                                    const __grid_constant__ CUtensorMap tmvw) {
    ci_pdl_trigger();
    ci_pdl_wait();
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using namespace ci_pfwt;
    static_assert((HD == 64 || HD == 128) && (BN == 64 || BN == 128) && NST >= 2, "tile shape");
    static_assert(BAR_QI >= BAR_PP + NC && BAR_QI + NC <= 16, "named barriers");
    static_assert(ci_prefill_wst_smem_bytes<HD, BN, NST, NC>() + sizeof(tbars<NST>) +
                          sizeof(qinfo<64 * NC>) <=
                      232448,
                  "shared memory");
    static_assert(NC == 2 || NC == 3, "consumer warpgroups");
    static_assert(!WIDE || BN == 128, "the wide maps' boxes cover 128 keys");
    constexpr int PREGS = NC == 2 ? WS_PROD_REGS : 32, CREGS = NC == 2 ? WS_CONS_REGS : 160;
    static_assert(128 * (PREGS + NC * CREGS) <= 65536, "register split");
    extern __shared__ uint4 smem_u4[];
    __nv_bfloat16 *sk = (__nv_bfloat16 *)(((uintptr_t)smem_u4 + 1023) & ~(uintptr_t)1023);
    __nv_bfloat16 *sv = sk + NST * BN * HD;
    __nv_bfloat16 *sq = sv + NST * BN * HD;
    __shared__ tbars<NST> bar;
    __shared__ qinfo<64 * NC> qi;

    if (threadIdx.x == 0) {
#pragma unroll
        for (int st = 0; st < NST; st++) {
            mbar_init(&bar.full_k[st], 1);
            mbar_init(&bar.full_v[st], 1);
            mbar_init(&bar.empty_k[st], 4 * NC);
            mbar_init(&bar.empty_v[st], 4 * NC);
        }
        mbar_init(&bar.qfull, 1);
        mbar_init(&bar.qempty, 4 * NC);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (threadIdx.x < NPROD) {
        reg_dealloc<PREGS>();
        if (threadIdx.x < 32)
            produce<HD, BN, NST, 64 * NC, WIDE, SPLITP ? 0 : 2>(p, bar, &tmq, &tmk, &tmv, &tmkw,
                                                                &tmvw, sq, sk, sv);
        else if (SPLITP && threadIdx.x < 64)
            produce<HD, BN, NST, 64 * NC, WIDE, 1>(p, bar, &tmq, &tmk, &tmv, &tmkw, &tmvw, sq, sk,
                                                   sv);
        else if (threadIdx.x >= 64 && threadIdx.x < 96)
            post_items<BN, NC>(p, qi);
    } else {
        reg_alloc<CREGS>();
        consume<HD, BN, NST, ILP, NC, PX, EPI>(p, bar, qi, sq, sk, sv);
    }
#else
    __trap();
#endif
}

/* Host: the three tensor maps of the kernel (Q over p.qkv with T tokens in
 * boxes of bm = 64 NC rows, K / V over p.kc / p.vc with num_blocks cache
 * blocks) through enc, the
 * driver's cuTensorMapEncodeTiled (from cudaGetDriverEntryPointByVersion:
 * no -lcuda), and with mkw / mvw the WIDE kernel's two (boxes of 128 / bs
 * consecutive blocks). Returns 0 on success. */
static inline int ci_prefill_wst_make_maps(PFN_cuTensorMapEncodeTiled_v12000 enc,
                                           const ci_prefill_params &p, int T, int hd,
                                           int num_blocks, CUtensorMap *mq, CUtensorMap *mk,
                                           CUtensorMap *mv, int bm = ci_pfws::BM,
                                           CUtensorMap *mkw = nullptr, CUtensorMap *mvw = nullptr) {
    const cuuint32_t one[4] = {1, 1, 1, 1};
    const cuuint64_t qdim[2] = {(cuuint64_t)(p.H + 2 * p.KV) * hd, (cuuint64_t)T};
    const cuuint64_t qstr[1] = {(cuuint64_t)(p.H + 2 * p.KV) * hd * 2};
    const cuuint32_t qbox[2] = {64, (cuuint32_t)bm}; /* the tile's query rows */
    CUresult r = enc(mq, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void *)p.qkv, qdim, qstr, qbox, one,
                     CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                     CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) return (int)r;
    const cuuint64_t kdim[4] = {(cuuint64_t)hd, (cuuint64_t)p.bs, (cuuint64_t)p.KV,
                                (cuuint64_t)num_blocks};
    const cuuint64_t kstr[3] = {(cuuint64_t)hd * 2, (cuuint64_t)p.bs * hd * 2,
                                (cuuint64_t)p.KV * p.bs * hd * 2};
    const cuuint32_t kbox[4] = {64, (cuuint32_t)p.bs, 1, 1};
    const cuuint32_t wbox[4] = {64, (cuuint32_t)p.bs, 1, (cuuint32_t)(p.bs < 128 ? 128 / p.bs : 1)};
    for (int i = 0; i < 4; i++) {
        CUtensorMap *m = i == 0 ? mk : i == 1 ? mv : i == 2 ? mkw : mvw;
        if (!m) continue;
        r = enc(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, (void *)(i & 1 ? p.vc : p.kc), kdim, kstr,
                i < 2 ? kbox : wbox, one, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
        if (r != CUDA_SUCCESS) return (int)r;
    }
    return 0;
}

#endif
