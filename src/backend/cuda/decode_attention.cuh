/* decode_attention.cuh — paged GQA decode attention (flash-decoding) on the
 * tensor cores, BF16; shared by cuda_decode_attention.cu and the kernel lab
 * (bench/kernels/decode_attention.cu).
 *
 * Every sequence s has one query token t = query_start[s]. CTA (z, g, s)
 * (4 warps) takes split z of the context of kv head g: the context's
 * ceil(ctx / 16) tiles of 16 keys are cut into nsplit equal ranges on the
 * device (ctx is read from device memory, so the launch depends only on the
 * batch shape and a context bound: CUDA-graph capturable). With a sliding
 * window w (a per-layer constant) only the tiles that hold keys
 * position + 1 - w .. position are cut into ranges; keys of the first tile
 * before the window are masked like those past the context. Warp w takes
 * tiles w, w + 4, ... of the range. Per tile, all on registers:
 *   - each lane loads 16 bytes of K and of V for key qr = lane / 4 and
 *     qr + 8, dims c * 32 + (lane % 4) * 8 .. + 7 (c < head_dim / 32): the
 *     warp reads each 64-byte run of a key row once, for all G q heads;
 *     with PREFETCH the next tile's loads (FP8: the next two tiles') are
 *     issued before this tile's math;
 *   - S = Q K^T by mma.m16n8k16 (rows = the G <= 8 heads, cols = keys). The
 *     dot product is summed over head_dim in any order, so logical k index
 *     (lane % 4) * 2 + e of k-step (c, s2) is bound to dim
 *     c * 32 + (lane % 4) * 8 + 4 * s2 + e (+2 for k + 8): the loaded 16
 *     bytes are the B fragment as they are, and q is loaded the same way;
 *   - online softmax in the log2 domain on the S fragment (one head per
 *     quad of lanes, 4 keys per lane);
 *   - O^T += V^T P^T by mma (rows = dims, cols = heads): the S accumulator
 *     is already the P^T B fragment (keys (lane % 4) * 2 + e, head lane / 4);
 *     V^T's A fragment comes from the loaded V registers through movmatrix
 *     (an 8x8 b16 transpose within the warp).
 * The 4 warps' (m, l, O) are merged through shared memory; with nsplit > 1
 * the CTA writes unnormalized O and (m, l) to the workspace and
 * ci_decode_combine_kernel merges the splits (splits with no keys write
 * m = -inf and are skipped), launched as a programmatic dependent launch.
 *
 * FP8 (E4M3) cache: each lane loads 16 bytes = 16 dims of a key row per load
 * (half the loads and registers of BF16), dims c2 * 64 + (lane % 4) * 16 ..
 * + 15, and converts them in registers to two f16 chunks (exact); the mmas
 * run in f16 (q converted once, saturated to +-65504; P in [0, 1]). The
 * chunk c of 8 dims is then dims (c / 2) * 64 + (lane % 4) * 16 + (c % 2) * 8
 * (ci_dec_dim0), for q, K, V and the output alike. k_scale is folded into
 * the softmax scale, v_scale into the output. */
#ifndef CINFER_BACKEND_CUDA_DECODE_ATTENTION_CUH
#define CINFER_BACKEND_CUDA_DECODE_ATTENTION_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/pdl.cuh"

#include <cooperative_groups.h>

#define CI_DEC_WARPS 4
#define CI_DEC_THREADS (CI_DEC_WARPS * 32)
#define CI_DEC_TILE 16 /* keys per warp per step */
#define CI_DEC_GMAX 8  /* q heads per kv head (the mma's 8 columns) */

/* c += a (16x16, row) . b (16x8, col), f32 accumulate; TY: bf16 or f16 inputs */
#define CI_DEC_MMA_ASM(TY)                                                                         \
    asm("mma.sync.aligned.m16n8k16.row.col.f32." TY "." TY ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "   \
        "{%8,%9}, {%0,%1,%2,%3};\n"                                                                \
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                           \
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1))
template <bool F16>
__device__ __forceinline__ void ci_dec_mma_t(float c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                             uint32_t a3, uint32_t b0, uint32_t b1) {
    if constexpr (F16)
        CI_DEC_MMA_ASM("f16");
    else
        CI_DEC_MMA_ASM("bf16");
}
__device__ __forceinline__ void ci_dec_mma(float c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                           uint32_t a3, uint32_t b0, uint32_t b1) {
    ci_dec_mma_t<false>(c, a0, a1, a2, a3, b0, b1);
}
/* transpose of the 8x8 b16 matrix whose row lane / 4 holds columns
 * (lane % 4) * 2, +1 in x */
__device__ __forceinline__ uint32_t ci_dec_movt(uint32_t x) {
    uint32_t y;
    asm("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
    return y;
}
__device__ __forceinline__ uint32_t ci_dec_pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&h;
}
template <bool F16> __device__ __forceinline__ uint32_t ci_dec_pack_t(float lo, float hi) {
    if constexpr (F16) {
        __half2 h = __floats2half2_rn(lo, hi);
        return *(uint32_t *)&h;
    } else {
        return ci_dec_pack(lo, hi);
    }
}
/* 8 bf16 -> 8 f16, saturated to the f16 range (q of the FP8 path) */
__device__ __forceinline__ uint4 ci_dec_bf16_to_f16(uint4 u) {
    uint32_t *p = &u.x;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(*(const __nv_bfloat162 *)&p[i]);
        f.x = fminf(fmaxf(f.x, -65504.0f), 65504.0f);
        f.y = fminf(fmaxf(f.y, -65504.0f), 65504.0f);
        __half2 h = __floats2half2_rn(f.x, f.y);
        p[i] = *(uint32_t *)&h;
    }
    return u;
}
/* first dim of 8-dim chunk c of a lane with lane % 4 = qc (see the top) */
template <bool FP8> __device__ __forceinline__ int ci_dec_dim0(int c, int qc) {
    return FP8 ? (c >> 1) * 64 + qc * 16 + (c & 1) * 8 : c * 32 + qc * 8;
}
__device__ __forceinline__ uint4 ci_dec_ld(const __nv_bfloat16 *p) {
    return __ldg((const uint4 *)p);
}

__device__ __forceinline__ void ci_dec_st(float *p, float v) { *p = v; }
__device__ __forceinline__ void ci_dec_st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* K and V registers of one tile: [key half][dim chunk] */
template <int NC> struct ci_dec_kv {
    uint4 k[2][NC], v[2][NC];
};

#define CI_DEC_MAX_SPLIT 64

/* The weights of one (seq, head)'s splits, by one warp (nsplit <=
 * CI_DEC_MAX_SPLIT): with m in the log2 domain, M = max_z m_z and wz[z] =
 * 2^(m_z - M), 0 for a split with no keys (m = -inf); returns sum_z wz l_z
 * to every lane. (m, l) are read through L2: another CTA may have written
 * them after this SM's L1 saw the lines. */
__device__ __forceinline__ float ci_dec_split_weights(const float2 *ml, int nsplit, float *wz) {
    const int lane = threadIdx.x & 31;
    const float2 a = lane < nsplit ? __ldcg(ml + lane) : make_float2(-INFINITY, 0.0f);
    const float2 b = lane + 32 < nsplit ? __ldcg(ml + lane + 32) : make_float2(-INFINITY, 0.0f);
    float M = fmaxf(a.x, b.x);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    const float wa = a.x == -INFINITY ? 0.0f : exp2f(a.x - M);
    const float wb = b.x == -INFINITY ? 0.0f : exp2f(b.x - M);
    if (lane < nsplit) wz[lane] = wa;
    if (lane + 32 < nsplit) wz[lane + 32] = wb;
    float den = wa * a.y + wb * b.y;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        den += __shfl_xor_sync(0xffffffffu, den, o);
    return den;
}

/* The split merge inside the attention kernel (cnt set): each CTA of a
 * (seq, kv head) counts itself done after its partials are written, and
 * the last one merges the nsplit partials of the G heads and leaves the
 * counter at 0 for the next launch (a merge kernel of its own costs a
 * launch and a grid drain per layer: ~5 us of a ~10 us decode attention at
 * batch 1). With m in the log2 domain, M = max_z m_z, w_z = 2^(m_z - M):
 * out = sum_z w_z O_z / sum_z w_z l_z; splits with m = -inf hold no keys
 * and weigh 0 (ci_dec_split_weights). The partials of other CTAs are read
 * through L2 (__ldcg): they were written after this CTA's L1 could have
 * cached the lines. */
template <int HD>
__device__ __forceinline__ void ci_dec_merge_last(unsigned *cnt, int G, int nsplit, int64_t sh0,
                                                  const float *part_o, const float2 *part_ml,
                                                  __nv_bfloat16 *orow) {
    __shared__ float wz[CI_DEC_GMAX][CI_DEC_MAX_SPLIT];
    __shared__ float dz[CI_DEC_GMAX];
    __shared__ int last;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    __threadfence(); /* this CTA's partials before its count */
    __syncthreads();
    if (tid == 0) {
        last = atomicAdd(cnt, 1u) == (unsigned)nsplit - 1;
        if (last) *cnt = 0u;
    }
    __syncthreads();
    if (!last) return;
    __threadfence(); /* the other CTAs' partials, counted before ours, are visible */
    for (int gi = w; gi < G; gi += CI_DEC_WARPS) {
        const float den = ci_dec_split_weights(part_ml + (sh0 + gi) * nsplit, nsplit, wz[gi]);
        if (lane == 0) dz[gi] = den;
    }
    __syncthreads();
    for (int e = tid; e < G * HD; e += CI_DEC_THREADS) {
        const int gi = e / HD, d = e - gi * HD;
        const float *po = part_o + (sh0 + gi) * nsplit * HD + d;
        float num = 0.0f;
        for (int z = 0; z < nsplit; z++) {
            const float wt = wz[gi][z];
            if (wt != 0.0f) num += wt * __ldcg(po + (int64_t)z * HD);
        }
        const float den = dz[gi];
        orow[e] = __float2bfloat16_rn(den > 0.0f ? num / den : 0.0f);
    }
}

/* The split merge through distributed shared memory (CL: the nsplit CTAs
 * of a (seq, kv head) launched as one thread-block cluster, Hopper): each
 * CTA leaves its partial (O times vscale, and (m, l) per head) in its own
 * shared memory; after a cluster barrier CTA z merges elements
 * [z, z + 1) * ceil(G HD / nsplit) of the G heads' outputs from every
 * CTA's partials, and a second barrier keeps each CTA's shared memory until
 * all have read it. No workspace, fence or counter: the global round trips
 * of ci_dec_merge_last (partials out, a fence, an atomic, the last CTA's
 * reads back through L2) become on-chip reads. */
template <int HD>
__device__ __forceinline__ void ci_dec_merge_cluster(int G, int nsplit, float (*cl_o)[HD],
                                                     float2 *cl_ml, __nv_bfloat16 *orow) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    cl.sync();
    const int z = (int)cl.block_rank(), tot = G * HD, per = (tot + nsplit - 1) / nsplit;
    const int e1 = min(tot, (z + 1) * per);
    for (int e = z * per + (int)threadIdx.x; e < e1; e += CI_DEC_THREADS) {
        const int gi = e / HD;
        float M = -INFINITY;
        for (int r = 0; r < nsplit; r++)
            M = fmaxf(M, cl.map_shared_rank(cl_ml, r)[gi].x);
        float num = 0.0f, den = 0.0f;
        for (int r = 0; r < nsplit; r++) {
            const float2 ml = cl.map_shared_rank(cl_ml, r)[gi];
            if (ml.x == -INFINITY) continue; /* a split with no keys */
            const float wt = exp2f(ml.x - M);
            num += wt * cl.map_shared_rank(&cl_o[0][0], r)[e];
            den += wt * ml.y;
        }
        orow[e] = __float2bfloat16_rn(den > 0.0f ? num / den : 0.0f);
    }
    cl.sync();
#endif
}

/* kc / vc: BF16, or E4M3 bytes when FP8; scale_log2 includes k_scale, and
 * the output is multiplied by vscale (1 for BF16). */
template <int HD, bool PREFETCH, bool FP8 = false, bool CL = false>
__global__ void __launch_bounds__(CI_DEC_THREADS, 2)
    ci_decode_attn_kernel(const __nv_bfloat16 *__restrict__ qkv, int H, int KV,
                          const int32_t *__restrict__ positions, const int32_t *__restrict__ qstart,
                          const int32_t *__restrict__ ctx_lens, const int32_t *__restrict__ btab,
                          int mbps, const void *__restrict__ kc, const void *__restrict__ vc,
                          int bs, float scale_log2, int window, __nv_bfloat16 *__restrict__ out,
                          int nsplit, float *__restrict__ part_o, float2 *__restrict__ part_ml,
                          float vscale = 1.0f, unsigned *__restrict__ cnt = nullptr) {
    ci_pdl_trigger();
    constexpr int NC = HD / 32;            /* 8-dim (16-byte bf16/f16) chunks per lane per key row */
    constexpr int NL = FP8 ? NC / 2 : NC;  /* 16-byte loads per lane per key row */
    constexpr int ESZ = FP8 ? 1 : 2;       /* cache bytes per element */
    constexpr int NW = CI_DEC_WARPS;
    __shared__ float sm_o[NW][CI_DEC_GMAX][HD];
    __shared__ float sm_m[NW][CI_DEC_GMAX], sm_l[NW][CI_DEC_GMAX];
    __shared__ float cl_o[CL ? CI_DEC_GMAX : 1][CL ? HD : 1]; /* CL: this split's partial */
    __shared__ float2 cl_ml[CL ? CI_DEC_GMAX : 1];

    const int z = blockIdx.x, g = blockIdx.y, s = blockIdx.z, G = H / KV;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, qr = lane >> 2, qc = lane & 3;
    const int t = qstart[s];
    int nctx = positions[t] + 1;
    if (nctx > ctx_lens[s]) nctx = ctx_lens[s];
    int kbeg = window > 0 ? positions[t] + 1 - window : 0; /* first key in the window */
    if (kbeg < 0) kbeg = 0;
    const int t0 = kbeg / CI_DEC_TILE; /* tiles [t0, tend) hold keys [kbeg, nctx) */
    const int tend = (nctx + CI_DEC_TILE - 1) / CI_DEC_TILE;
    const int tps = (tend - t0 + nsplit - 1) / nsplit;
    const int tb = t0 + z * tps, te = tb + tps < tend ? tb + tps : tend;
    const int64_t sh0 = (int64_t)s * H + (int64_t)g * G; /* (seq, first head) for the workspace */
    __nv_bfloat16 *orow = out + ((int64_t)t * H + (int64_t)g * G) * HD;
    /* the batch metadata above (host uploads, which precede the forward's
     * first kernel) is read before the PDL wait, and so is the cache of every
     * tile whose keys all precede the current token: no kernel of this
     * forward writes those rows (the previous kernel writes the current
     * token's K/V; block copies are stream-ordered before the forward), so
     * their loads overlap the previous kernel's tail instead of following
     * it. A tile holding the current key (or clamped onto it) and q wait;
     * that tile's block-table entry is fetched meanwhile. */
    const int32_t *bt = btab + (int64_t)s * mbps;
    const char *kcb = (const char *)kc, *vcb = (const char *)vc;
    auto load = [&](int ti, ci_dec_kv<NL> &r) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int kk = ti * CI_DEC_TILE + 8 * h + qr;
            if (kk > nctx - 1) kk = nctx - 1; /* masked below; stays inside the context */
            if (kk < kbeg) kk = kbeg;         /* ... and the window */
            const int bi = kk / bs;
            /* bytes: lane qc reads 16 of each 64-byte run of the key row */
            const int64_t base =
                ((((int64_t)bt[bi] * KV + g) * bs + (kk - bi * bs)) * HD) * ESZ + qc * 16;
#pragma unroll
            for (int c = 0; c < NL; c++) {
                r.k[h][c] = __ldg((const uint4 *)(kcb + base + c * 64));
                r.v[h][c] = __ldg((const uint4 *)(vcb + base + c * 64));
            }
        }
    };

    /* FP8 prefetches two tiles ahead: a tile is half the bytes, so this keeps
     * as many bytes in flight per warp as BF16's one tile (in registers that
     * BF16's second buffer would take) */
    ci_dec_kv<NL> cur, nxt, nxt2;
    int ti = tb + w;
    const int tpre = (nctx - 1) / CI_DEC_TILE; /* tiles [0, tpre) end before the current key */
    const bool pre0 = PREFETCH && ti < te && ti < tpre;
    const bool pre1 = PREFETCH && FP8 && ti + NW < te && ti + NW < tpre;
    if (pre0) load(ti, nxt);
    if (pre1) load(ti + NW, nxt2);
    if (!pre0 && ti < te) {
        const int32_t *bte = bt + (ti * CI_DEC_TILE) / bs;
        asm volatile("prefetch.global.L1 [%0];" ::"l"(bte));
    }
    ci_pdl_wait();
    if (tb >= te) { /* no keys in this split (or an empty context) */
        if constexpr (CL) {
            for (int gi = tid; gi < G; gi += CI_DEC_THREADS)
                cl_ml[gi] = make_float2(-INFINITY, 0.0f);
            ci_dec_merge_cluster<HD>(G, nsplit, cl_o, cl_ml, orow);
        } else if (nsplit > 1) {
            for (int gi = tid; gi < G; gi += CI_DEC_THREADS)
                part_ml[(sh0 + gi) * nsplit + z] = make_float2(-INFINITY, 0.0f);
            if (cnt)
                ci_dec_merge_last<HD>(cnt + (int64_t)s * KV + g, G, nsplit, sh0, part_o, part_ml,
                                      orow);
        } else {
            for (int e = tid; e < G * HD; e += CI_DEC_THREADS)
                orow[e] = __float2bfloat16_rn(0.0f);
        }
        return;
    }

    /* q fragment: head qr (zero rows beyond G), the dims of the K loads */
    uint4 qf[NC];
    const __nv_bfloat16 *qrow = qkv + (int64_t)t * (H + 2 * KV) * HD + ((int64_t)g * G + qr) * HD;
#pragma unroll
    for (int c = 0; c < NC; c++) {
        qf[c] = qr < G ? ci_dec_ld(qrow + ci_dec_dim0<FP8>(c, qc)) : make_uint4(0, 0, 0, 0);
        if (FP8) qf[c] = ci_dec_bf16_to_f16(qf[c]);
    }

    if (PREFETCH && ti < te && !pre0) load(ti, nxt);
    if (PREFETCH && FP8 && ti + NW < te && !pre1) load(ti + NW, nxt2);
    float o[2 * NC][4]; /* O^T m-tiles (c, rp): dims x heads */
#pragma unroll
    for (int i = 0; i < 2 * NC; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m_run = -INFINITY, l_run = 0.0f; /* head qr; l over this lane's keys */

    for (; ti < te; ti += NW) {
        if (PREFETCH) {
            cur = nxt;
            if constexpr (FP8) {
                nxt = nxt2;
                if (ti + 2 * NW < te) load(ti + 2 * NW, nxt2);
            } else {
                if (ti + NW < te) load(ti + NW, nxt);
            }
        } else {
            load(ti, cur);
        }
        /* the tile's K and V as 8-dim chunks of bf16 (as loaded) or f16
         * (converted from E4M3: 16 dims per load) */
        uint4 kr[2][NC], vr[2][NC];
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int c = 0; c < NL; c++) {
                if constexpr (FP8) {
                    ci_fp8x16_f16(cur.k[h][c], kr[h][2 * c], kr[h][2 * c + 1]);
                    ci_fp8x16_f16(cur.v[h][c], vr[h][2 * c], vr[h][2 * c + 1]);
                } else {
                    kr[h][c] = cur.k[h][c];
                    vr[h][c] = cur.v[h][c];
                }
            }
        /* S = Q K^T: sc[h] = keys 8h + 2qc + {0,1} of head qr (c0, c1) */
        float sc[2][4];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            sc[h][0] = sc[h][1] = sc[h][2] = sc[h][3] = 0.0f;
#pragma unroll
            for (int c = 0; c < NC; c++) {
                ci_dec_mma_t<FP8>(sc[h], qf[c].x, 0u, qf[c].y, 0u, kr[h][c].x, kr[h][c].y);
                ci_dec_mma_t<FP8>(sc[h], qf[c].z, 0u, qf[c].w, 0u, kr[h][c].z, kr[h][c].w);
            }
        }
        float x[4], mx = -INFINITY;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int key = ti * CI_DEC_TILE + 8 * (i >> 1) + 2 * qc + (i & 1);
            x[i] = key < nctx && key >= kbeg ? sc[i >> 1][i & 1] * scale_log2 : -INFINITY;
            mx = fmaxf(mx, x[i]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_run, mx); /* finite: every tile holds a key of the window */
        const float alpha = exp2f(m_run - m_new); /* 0 on the first tile */
        float p[4], ps = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            p[i] = exp2f(x[i] - m_new);
            ps += p[i];
        }
        l_run = l_run * alpha + ps;
        m_run = m_new;
        /* rescale O^T: its columns are heads 2qc, 2qc + 1, held by quads 2qc, 2qc+1 */
        const float a0 = __shfl_sync(0xffffffffu, alpha, 8 * qc);
        const float a1 = __shfl_sync(0xffffffffu, alpha, 8 * qc + 4);
#pragma unroll
        for (int i = 0; i < 2 * NC; i++) {
            o[i][0] *= a0;
            o[i][1] *= a1;
            o[i][2] *= a0;
            o[i][3] *= a1;
        }
        const uint32_t pb0 = ci_dec_pack_t<FP8>(p[0], p[1]), pb1 = ci_dec_pack_t<FP8>(p[2], p[3]);
        /* O^T += V^T P^T; m-tile (c, rp) rows m / m + 8 are dims
         * ci_dec_dim0(c, m/2) + 4rp + m%2 (+2) */
#pragma unroll
        for (int c = 0; c < NC; c++) {
            ci_dec_mma_t<FP8>(o[2 * c], ci_dec_movt(vr[0][c].x), ci_dec_movt(vr[0][c].y),
                              ci_dec_movt(vr[1][c].x), ci_dec_movt(vr[1][c].y), pb0, pb1);
            ci_dec_mma_t<FP8>(o[2 * c + 1], ci_dec_movt(vr[0][c].z), ci_dec_movt(vr[0][c].w),
                              ci_dec_movt(vr[1][c].z), ci_dec_movt(vr[1][c].w), pb0, pb1);
        }
    }

    /* merge the warps: per-warp (m, l) of each head, O scattered to [head][dim] */
    l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
    l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);
    if (qc == 0) {
        sm_m[w][qr] = m_run;
        sm_l[w][qr] = l_run;
    }
#pragma unroll
    for (int c = 0; c < NC; c++)
#pragma unroll
        for (int rp = 0; rp < 2; rp++) {
            const int d = ci_dec_dim0<FP8>(c, qr >> 1) + 4 * rp + (qr & 1);
            const float *oo = o[2 * c + rp];
            sm_o[w][2 * qc][d] = oo[0];
            sm_o[w][2 * qc + 1][d] = oo[1];
            sm_o[w][2 * qc][d + 2] = oo[2];
            sm_o[w][2 * qc + 1][d + 2] = oo[3];
        }
    __syncthreads();
    for (int e = tid; e < G * HD; e += CI_DEC_THREADS) {
        const int gi = e / HD, d = e - gi * HD;
        float M = -INFINITY;
#pragma unroll
        for (int i = 0; i < NW; i++) M = fmaxf(M, sm_m[i][gi]);
        float num = 0.0f, den = 0.0f;
#pragma unroll
        for (int i = 0; i < NW; i++) {
            if (sm_m[i][gi] == -INFINITY) continue; /* a warp with no tile */
            const float wt = exp2f(sm_m[i][gi] - M);
            num += wt * sm_o[i][gi][d];
            den += wt * sm_l[i][gi];
        }
        if constexpr (CL) {
            cl_o[gi][d] = num * vscale;
            if (d == 0) cl_ml[gi] = make_float2(M, den);
        } else if (nsplit > 1) {
            part_o[((sh0 + gi) * nsplit + z) * HD + d] = num * vscale;
            if (d == 0) part_ml[(sh0 + gi) * nsplit + z] = make_float2(M, den);
        } else {
            orow[e] = __float2bfloat16_rn(num * vscale / den);
        }
    }
    if constexpr (CL)
        ci_dec_merge_cluster<HD>(G, nsplit, cl_o, cl_ml, orow);
    else if (nsplit > 1 && cnt)
        ci_dec_merge_last<HD>(cnt + (int64_t)s * KV + g, G, nsplit, sh0, part_o, part_ml, orow);
}

/* Split merge, one CTA of head_dim threads per (seq, head). With m in the
 * log2 domain, M = max_z m_z, w_z = 2^(m_z - M):
 * out = sum_z w_z O_z / sum_z w_z l_z. Warp 0 computes the nsplit
 * (<= CI_DEC_MAX_SPLIT) weights once; splits with m = -inf hold no keys and
 * weigh 0 (their O, never written, is loaded but selected away), so the
 * loads over z are independent and overlap. */
template <typename T>
__global__ void __launch_bounds__(128)
    ci_decode_combine_kernel(int H, int hd, int nsplit, const int32_t *__restrict__ qstart,
                             const float *__restrict__ part_o, const float2 *__restrict__ part_ml,
                             T *__restrict__ out) {
    ci_pdl_trigger();
    ci_pdl_wait();
    __shared__ float wts[CI_DEC_MAX_SPLIT];
    __shared__ float sden;
    const int64_t sh = blockIdx.x;
    const int s = (int)(sh / H), h = (int)(sh - (int64_t)s * H);
    if (threadIdx.x < 32) {
        const float den = ci_dec_split_weights(part_ml + sh * nsplit, nsplit, wts);
        if (threadIdx.x == 0) sden = den;
    }
    __syncthreads();
    const float den = sden;
    const int32_t t = qstart[s];
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        const float *po = part_o + sh * nsplit * hd + d;
        float num = 0.0f;
#pragma unroll 8
        for (int z = 0; z < nsplit; z++) {
            const float wt = wts[z], v = po[(int64_t)z * hd];
            num += wt != 0.0f ? wt * v : 0.0f;
        }
        ci_dec_st(out + ((int64_t)t * H + h) * hd + d, den > 0.0f ? num / den : 0.0f);
    }
}

/* Launches the combine after the attention kernel on st; pdl: as a
 * programmatic dependent launch (overlaps its launch with the drain). */
template <typename T>
static inline cudaError_t ci_decode_combine(cudaStream_t st, bool pdl, int S, int H, int hd,
                                            int nsplit, const int32_t *qstart,
                                            const float *part_o, const float2 *part_ml, T *out) {
    return ci_cu_launch_pdl(pdl, ci_decode_combine_kernel<T>, dim3((unsigned)((int64_t)S * H)),
                            dim3((unsigned)hd), 0, st, H, hd, nsplit, qstart, part_o, part_ml,
                            out);
}

/* Splits per (seq, kv head): about one CTA per SM, and at least 8 tiles
 * (2 per warp) per split at the context bound. Fewer, longer splits win
 * once the (seq, kv head) pairs fill the SMs: the lab's sweep on an H100
 * (H=32, KV=8, hd=128) measured B=64 ctx 4096 at 1 split 2979 GB/s vs 2933 at
 * 2 and 2798 at 8, B=32 ctx 2048 2835 vs 2580 at 3, and B=1 ctx 4096 16.5 us
 * at 16 splits vs 18.8 at 32 and 26.1 at 4 (docs/kernels/decode_attention.md).
 * Depends only on the launch shape: one CUDA graph per batch size stays
 * valid as contexts grow up to the bound. */
static inline int ci_decode_nsplit(int S, int KV, int num_sms, int64_t max_ctx_bound) {
    int64_t pairs = (int64_t)S * KV;
    if (pairs <= 0) return 1;
    int64_t want = ((int64_t)num_sms + pairs - 1) / pairs;
    int64_t cap = (max_ctx_bound + CI_DEC_TILE - 1) / CI_DEC_TILE / 8;
    if (want > cap) want = cap;
    if (want > CI_DEC_MAX_SPLIT) want = CI_DEC_MAX_SPLIT;
    return want < 1 ? 1 : (int)want;
}

#endif
