/* decode_chain_int4.cuh — decode_chain.cu's second part: the same question
 * with production's INT4 GEMV body instead of the stand-in. A chain of
 * INT4 GPTQ-g128 GEMVs in the tiled layout (cuda_qweight.c), per layer
 * q|k|v 6144 x 4096 -> o 4096 x 4096 -> gate|up 28672 x 4096 -> down 4096 x
 * 14336 (each taking the first K outputs of the one before; no attention,
 * norm or SwiGLU: the GEMVs alone), then the LM head 128256 x 4096. Each
 * 16-row block is computed as the tc kernel computes it (qgemv_tc.cuh:
 * qt_tile on the warp's tiles kt = warp + 8 m, 4 in flight a warp, the
 * warps' sums through shared memory), x staged in shared memory:
 *   v4  kernels, one a stage, one CTA a block (tc's grid), PDL, a graph
 *   v5  one persistent cooperative kernel: CTA c takes blocks c, c + G, ..
 *       of every stage; its 4 slots a warp roll across block and stage
 *       ends, so the next stage's first tiles stream before the barrier
 *   v6  v5 with the barrier replaced by a counter a 128-row chunk of each
 *       output: a tile waits only for the 8 blocks that wrote its x
 *   v7  v4 with each stage's last CTAs prefetching the next stage's front
 *       into L2 (cp.async.bulk.prefetch.L2), pf bytes a CTA; or (v8 in the
 *       table) each CTA prefetching its block's rest and the block one
 *       GPU-full ahead, before its wait
 * Same blocks, same order: the outputs are bit-identical; each stage is
 * checked against a CPU sum of the dequantized weights over the GPU's own
 * input to it (norm-wise, as test_cuda_quant). Not a lab of its own: the
 * CMake glob takes *.cu only. */
#ifndef CINFER_BENCH_KERNELS_DECODE_CHAIN_INT4_CUH
#define CINFER_BENCH_KERNELS_DECODE_CHAIN_INT4_CUH

#include <cuda_bf16.h>

#include "backend/cuda/qgemv_tc.cuh"
#include "lab.cuh"

#define Q4_WARPS 8
#define Q4_THREADS (Q4_WARPS * 32)
static_assert(Q4_THREADS == DC_THREADS, "dc_launch_coop launches DC_THREADS a CTA");

/* one stage: R rows (16-row blocks) by K columns (K / 128 tiles, a
 * multiple of 8: every warp the same count), scales / zero points [R][K /
 * 128]; x = the first K of xp (bf16), y = R bf16 */
struct q4_stage {
    const uint8_t *q, *z;
    const float *s;
    int R, K;
    const __nv_bfloat16 *xp;
    __nv_bfloat16 *y;
};

struct q4_item {
    uint4 a, b;
    uint32_t za, zb;
    float sa, sb;
};

/* the lane's (g, t) loads of tile kt of block blk */
__device__ __forceinline__ void q4_load(const q4_stage &S, int64_t blk, int kt, int g, int t,
                                        q4_item &it) {
    const int ng = S.K / 128;
    const uint4 *p = (const uint4 *)(S.q + (blk * ng + kt) * 1024) + g * 4 + t;
    it.a = __ldcs(p);
    it.b = __ldcs(p + 32);
    const int64_t ra = blk * 16 + g, rb = ra + 8;
    it.za = __ldg(S.z + ra * ng + kt);
    it.zb = __ldg(S.z + rb * ng + kt);
    it.sa = __ldg(S.s + ra * ng + kt);
    it.sb = __ldg(S.s + rb * ng + kt);
}

/* tot += tile kt's scaled sums (x: the staged bf16 row as uint4) */
__device__ __forceinline__ void q4_step(float *tot, const q4_item &it, const uint4 *xs, int kt,
                                        int t) {
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    qt_tile<true>(c, it.a, it.b, qt_zz((int)it.za), qt_zz((int)it.zb), xs + 4 * t + 16 * kt);
    tot[0] = fmaf(it.sa, c[0], tot[0]);
    tot[1] = fmaf(it.sa, c[1], tot[1]);
    tot[2] = fmaf(it.sb, c[2], tot[2]);
    tot[3] = fmaf(it.sb, c[3], tot[3]);
}

/* x of stage S into shared memory (its producer's outputs, through L2) */
__device__ __forceinline__ void q4_stage_x(const q4_stage &S, uint4 *xs) {
    const uint4 *src = (const uint4 *)S.xp;
    for (int i = threadIdx.x; i < S.K / 8; i += Q4_THREADS)
        xs[i] = __ldcg(src + i);
    __syncthreads();
}

/* block blk's 16 sums out (red: [warps][16][1]); ends with the barrier
 * that frees red */
__device__ __forceinline__ void q4_reduce(const q4_stage &S, int64_t blk, const float *tot,
                                          float (*red)[16][1]) {
    qt_red_put<1>(red, tot);
    __syncthreads();
    if (threadIdx.x < 16)
        S.y[blk * 16 + threadIdx.x] =
            __float2bfloat16_rn(qt_red_sum<1, Q4_WARPS>(red, threadIdx.x, 0));
    __syncthreads();
}

/* v7: an L2 prefetch of the next stage's weights (the step's first after
 * the LM head: the graph is replayed step after step), so that DRAM stays
 * busy through a stage's tail, where its last CTAs stream alone and the
 * next stage's CTAs have no room yet. The CTAs launched last prefetch the
 * next stage's front: CTA b of G takes bytes [r pf, (r + 1) pf), r = G - 1
 * - b, so the stage's last CTA fetches the blocks the next stage reads
 * first; 4 KiB a thread's bulk prefetch (the scales and zero points, 1/13
 * of the bytes, are left to the loads). pf = 0: none. */
__device__ __forceinline__ void q4_l2_prefetch(const uint8_t *p, int bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
    for (int i = 0; i < bytes; i += 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p + i));
#endif
}
__device__ __forceinline__ void q4_prefetch_next(const q4_stage *st, int s, int ns, int pf) {
    if (pf <= 0) return;
    const q4_stage N = st[s + 1 < ns ? s + 1 : 0];
    const int64_t tot = (int64_t)N.R * N.K / 2, r = (int64_t)gridDim.x - 1 - blockIdx.x;
    const int64_t lo = r * pf, hi = lo + pf < tot ? lo + pf : tot;
    for (int64_t o = lo + (int64_t)threadIdx.x * 4096; o < hi; o += (int64_t)Q4_THREADS * 4096)
        q4_l2_prefetch(N.q + o, (int)(hi - o < 4096 ? hi - o : 4096));
}

/* v8: a stage's lookahead of its own: before the wait, CTA b prefetches
 * the rest of its block (the tiles past the 4 a warp holds in registers)
 * and the whole block b + look (look: the CTAs that fit the GPU at once,
 * so the one that will take b's place): DRAM keeps streaming while the
 * resident CTAs wait for the stage before, and a later wave finds its
 * bytes in L2 (2 waves of blocks in L2 at most) */
__device__ __forceinline__ void q4_prefetch_range(const uint8_t *p, int64_t bytes) {
    for (int64_t o = (int64_t)threadIdx.x * 4096; o < bytes; o += (int64_t)Q4_THREADS * 4096)
        q4_l2_prefetch(p + o, (int)(bytes - o < 4096 ? bytes - o : 4096));
}
__device__ __forceinline__ void q4_prefetch_ahead(const q4_stage &S, int look) {
    if (look <= 0) return;
    const int64_t bb = (int64_t)S.K * 8, blk = blockIdx.x; /* a 16-row block's bytes */
    const int64_t held = (int64_t)4 * Q4_WARPS * 1024;     /* the tiles in registers */
    if (bb > held) q4_prefetch_range(S.q + blk * bb + held, bb - held);
    if (blk + look < (int64_t)gridDim.x) q4_prefetch_range(S.q + (blk + look) * bb, bb);
}

/* v4: stage s, CTA = block; v7 (pf > 0): plus the next stage's prefetch,
 * before the wait (AFTER false: right after the CTA's first loads) or
 * after its last tile; v8 (look > 0): plus its own lookahead */
template <bool AFTER>
__global__ void __launch_bounds__(Q4_THREADS)
    q4_stage_kernel(const q4_stage *st, int s, int ns, int pf, int look) {
    extern __shared__ uint4 q4xs[];
    __shared__ float red[Q4_WARPS][16][1];
    ci_pdl_trigger();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const q4_stage S = st[s];
    const int64_t blk = blockIdx.x;
    const int nt = S.K / 128 / Q4_WARPS;
    q4_item it[4];
#pragma unroll
    for (int u = 0; u < 4; u++)
        if (u < nt) q4_load(S, blk, warp + Q4_WARPS * u, g, t, it[u]);
    if (!AFTER) q4_prefetch_next(st, s, ns, pf);
    q4_prefetch_ahead(S, look);
    ci_pdl_wait();
    q4_stage_x(S, q4xs);
    float tot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int m0 = 0; m0 < nt; m0 += 4) {
#pragma unroll
        for (int u = 0; u < 4; u++) {
            if (m0 + u >= nt) break;
            q4_step(tot, it[u], q4xs, warp + Q4_WARPS * (m0 + u), t);
            if (m0 + u + 4 < nt) q4_load(S, blk, warp + Q4_WARPS * (m0 + u + 4), g, t, it[u]);
        }
    }
    if (AFTER) q4_prefetch_next(st, s, ns, pf);
    q4_reduce(S, blk, tot, red);
}

/* The persistent version's walk over (stage, block, m): CTA c's blocks c,
 * c + G, .. of each stage in turn, m < nt of each block; stages without a
 * block of c's are skipped */
struct q4_cursor {
    int s;
    int64_t blk;
    int m;
    __device__ void first_block(const q4_stage *st, int ns, int64_t c) {
        blk = c;
        m = 0;
        while (s < ns && blk * 16 >= st[s].R)
            s++;
    }
    __device__ void next(const q4_stage *st, int ns, int64_t c, int64_t G) {
        if (++m < st[s].K / 128 / Q4_WARPS) return;
        m = 0;
        blk += G;
        if (blk * 16 < st[s].R) return;
        s++;
        first_block(st, ns, c);
    }
};

/* A warp's 4 slots as a queue in static registers over the walk: slot 0 is
 * the next unit to use; advance() moves 1..3 down and loads the walk's next
 * unit into 3 (weights only: the walk runs ahead into the next GEMV) */
struct q4_queue {
    q4_item it[4];
    q4_cursor L;
    __device__ void prime(const q4_stage *st, int ns, int64_t c, int64_t G, int warp, int g,
                          int t) {
        L.s = 0;
        L.first_block(st, ns, c);
#pragma unroll
        for (int u = 0; u < 4; u++)
            if (L.s < ns) {
                q4_load(st[L.s], L.blk, warp + Q4_WARPS * L.m, g, t, it[u]);
                L.next(st, ns, c, G);
            }
    }
    __device__ void advance(const q4_stage *st, int ns, int64_t c, int64_t G, int warp, int g,
                            int t) {
        it[0] = it[1];
        it[1] = it[2];
        it[2] = it[3];
        if (L.s < ns) {
            q4_load(st[L.s], L.blk, warp + Q4_WARPS * L.m, g, t, it[3]);
            L.next(st, ns, c, G);
        }
    }
};

/* v5 / v6: the whole chain in one kernel, 4 slots a warp (q4_queue) running
 * across block and GEMV ends.
 * v5 (FLOW false): a grid barrier (bar) between GEMVs, x staged by the CTA
 * after it.
 * v6 (FLOW true): no barriers. Tile kt of GEMV s needs x columns [128 kt,
 * 128 kt + 128): the outputs of GEMV s - 1's blocks 8 kt .. 8 kt + 7, and
 * waits for those alone (cnt: a counter a 128-row chunk of every GEMV's
 * output from coff[s], 8 arrivals a step, so the step of epoch e waits for
 * 8 e). Tile kt is always warp kt % 8's, so each warp stages its own chunks
 * of x in shared memory at its first block of a GEMV and keeps them for the
 * others: a CTA starts a GEMV as soon as the chunks its first tiles need are
 * written, while slower CTAs finish the GEMV before. */
template <bool FLOW>
__global__ void __launch_bounds__(Q4_THREADS)
    q4_persist_kernel(const q4_stage *st, int ns, unsigned *bar, unsigned *cnt, const int *coff,
                      unsigned epoch) {
    extern __shared__ uint4 q4xs[];
    __shared__ float red[Q4_WARPS][16][1];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int64_t c = blockIdx.x, G = gridDim.x;
    q4_queue qu;
    qu.prime(st, ns, c, G, warp, g, t);
    for (int s = 0; s < ns; s++) {
        const q4_stage S = st[s];
        if (!FLOW) {
            if (s > 0) dc_wait(bar, (unsigned)s * (unsigned)G); /* decode_chain.cu's barrier */
            q4_stage_x(S, q4xs);
        }
        const int nt = S.K / 128 / Q4_WARPS;
        bool first = true;
        for (int64_t blk = c; blk * 16 < S.R; blk += G) {
            float tot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int m = 0; m < nt; m++) {
                const int kt = warp + Q4_WARPS * m;
                if (FLOW && first) { /* the warp's chunk kt of x: written, then staged */
                    if (s > 0 && lane == 0) dc_spin(cnt + coff[s - 1] + kt, 8u * epoch);
                    __syncwarp();
                    if (lane < 16)
                        q4xs[16 * kt + lane] = __ldcg((const uint4 *)S.xp + 16 * kt + lane);
                    __syncwarp();
                }
                q4_step(tot, qu.it[0], q4xs, kt, t);
                qu.advance(st, ns, c, G, warp, g, t);
            }
            q4_reduce(S, blk, tot, red); /* ends with a CTA barrier: the outputs are written */
            if (FLOW && threadIdx.x == 0) {
                __threadfence();
                atomicAdd(cnt + coff[s] + blk / 8, 1u);
            }
            first = false;
        }
        if (!FLOW) dc_arrive(bar, (unsigned)ns * (unsigned)G - 1u);
    }
}

/* ------------------------------------------------------------------ host */

__global__ void q4_fill(uint8_t *q, int64_t qn, uint8_t *z, float *s, int64_t gn, float sc,
                        uint64_t seed) {
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < qn / 4; i += step)
        ((uint32_t *)q)[i] = dc_hash(seed + (uint64_t)i);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < gn; i += step) {
        const uint32_t h = dc_hash(seed ^ 0x5555555555ull ^ (uint64_t)i);
        z[i] = (uint8_t)(7 + (h & 1));                           /* zero points 7 or 8 */
        s[i] = sc * (0.75f + 0.5f * (float)(h >> 8) * 0x1p-24f); /* keeps |x| ~ 1 */
    }
}

struct q4_chain {
    std::vector<q4_stage> h;
    q4_stage *d = nullptr;
    uint8_t *q = nullptr, *z = nullptr;
    float *s = nullptr;
    __nv_bfloat16 *y = nullptr, *in = nullptr;
    unsigned *bar = nullptr;
    unsigned *cnt = nullptr; /* v6: a counter a 128-row chunk of each GEMV's output */
    int *coff = nullptr;     /* ... GEMV s's first */
    unsigned epoch = 0;      /* v6 launches so far */
    int64_t qbytes = 0, groups = 0, ys = 0;
    int maxK = 0;
    double bytes = 0; /* weights, scales and zero points */
};

static void q4_make(q4_chain &c, int layers, bool head) {
    std::vector<std::pair<int, int>> lay; /* rows, columns */
    for (int l = 0; l < layers; l++) {
        lay.push_back({6144, 4096});
        lay.push_back({4096, 4096});
        lay.push_back({28672, 4096});
        lay.push_back({4096, 14336});
    }
    if (head) lay.push_back({128256, 4096});
    for (auto &p : lay) {
        c.qbytes += (int64_t)p.first * p.second / 2;
        c.groups += (int64_t)p.first * (p.second / 128);
        c.ys += p.first;
        c.maxK = std::max(c.maxK, p.second);
    }
    c.bytes = (double)c.qbytes + 5.0 * (double)c.groups;
    CK(cudaMalloc(&c.q, c.qbytes));
    CK(cudaMalloc(&c.z, c.groups));
    CK(cudaMalloc(&c.s, c.groups * 4));
    CK(cudaMalloc(&c.y, c.ys * 2));
    CK(cudaMalloc(&c.in, 4096 * 2));
    CK(cudaMalloc(&c.bar, 4));
    CK(cudaMemset(c.bar, 0, 4));
    std::vector<uint16_t> in(4096);
    for (auto &v : in)
        v = lab_bf16(lab_frand());
    CK(cudaMemcpy(c.in, in.data(), 4096 * 2, cudaMemcpyHostToDevice));
    int64_t qo = 0, go = 0, yo = 0;
    const __nv_bfloat16 *xp = c.in;
    for (auto &p : lay) {
        q4_stage S;
        S.q = c.q + qo;
        S.z = c.z + go;
        S.s = c.s + go;
        S.R = p.first;
        S.K = p.second;
        S.xp = xp;
        S.y = c.y + yo;
        /* E[(q - z)^2] ~ 21.5 for uniform nibbles, z 7 or 8: y ~ x in scale */
        const int64_t gn = (int64_t)p.first * (p.second / 128);
        q4_fill<<<1024, 256>>>(c.q + qo, (int64_t)p.first * p.second / 2, c.z + go, c.s + go, gn,
                               1.0f / sqrtf(21.5f * (float)p.second), (uint64_t)qo * 7 + 1);
        CK(cudaGetLastError());
        c.h.push_back(S);
        qo += (int64_t)p.first * p.second / 2;
        go += gn;
        yo += p.first;
        xp = S.y;
    }
    CK(cudaMalloc(&c.d, sizeof(q4_stage) * c.h.size()));
    CK(cudaMemcpy(c.d, c.h.data(), sizeof(q4_stage) * c.h.size(), cudaMemcpyHostToDevice));
    std::vector<int> off;
    int nc = 0;
    for (const q4_stage &S : c.h) {
        off.push_back(nc);
        nc += S.R / 128;
    }
    CK(cudaMalloc(&c.cnt, (size_t)nc * 4));
    CK(cudaMemset(c.cnt, 0, (size_t)nc * 4));
    CK(cudaMalloc(&c.coff, off.size() * sizeof(int)));
    CK(cudaMemcpy(c.coff, off.data(), off.size() * sizeof(int), cudaMemcpyHostToDevice));
    CK(cudaDeviceSynchronize());
}
static void q4_free(q4_chain &c) {
    cudaFree(c.cnt);
    cudaFree(c.coff);
    cudaFree(c.q);
    cudaFree(c.z);
    cudaFree(c.s);
    cudaFree(c.y);
    cudaFree(c.in);
    cudaFree(c.bar);
    cudaFree(c.d);
}

/* v4 / v7 (per-stage kernels; v7: pf bytes a CTA prefetched, after the
 * last tile when after) or v5 / v6 (persistent) for one step */
static void q4_launch(q4_chain &c, int v, int G, cudaStream_t st, int pf = 0, bool after = false,
                      int look = 0) {
    const size_t smem = (size_t)c.maxK * 2;
    if (v == 4 || v == 7) {
        const int ns = (int)c.h.size();
        for (int s = 0; s < ns; s++)
            CK(ci_cu_launch_ex(true, 0u, after ? q4_stage_kernel<true> : q4_stage_kernel<false>,
                               dim3((unsigned)(c.h[s].R / 16)), dim3(Q4_THREADS), smem, st,
                               (const q4_stage *)c.d, s, ns, v == 7 ? pf : 0, v == 7 ? look : 0));
        return;
    }
    const q4_stage *d = c.d;
    const int ns = (int)c.h.size();
    if (v == 6)
        dc_launch_coop(q4_persist_kernel<true>, G, smem, st, d, ns, c.bar, c.cnt,
                       (const int *)c.coff, ++c.epoch);
    else
        dc_launch_coop(q4_persist_kernel<false>, G, smem, st, d, ns, c.bar, c.cnt,
                       (const int *)c.coff, c.epoch);
}

/* the dequantized tiled weight of stage S (host copies) times x, row by
 * row, in double; the tiled layout as qt_tile reads it: tile kt of block b
 * at (b * K / 128 + kt) KiB, rows 0..7 then 8..15, 64 bytes a row (lane t's
 * 16 at 16 t: columns 128 kt + 32 t + 8 j + .. of word j), nibble p of a
 * word column 2p, nibble p + 4 column 2p + 1 */
static void q4_ref(const q4_stage &S, const std::vector<uint8_t> &q, const std::vector<uint8_t> &z,
                   const std::vector<float> &sc, const std::vector<float> &x,
                   std::vector<double> &y) {
    const int ng = S.K / 128;
    y.assign(S.R, 0.0);
    for (int r = 0; r < S.R; r++) {
        const int64_t blk = r / 16;
        const int i = r % 16, half = i / 8, gi = i % 8;
        double acc = 0;
        for (int kt = 0; kt < ng; kt++) {
            const uint8_t *tile = q.data() + (blk * ng + kt) * 1024 + half * 512 + gi * 64;
            const double sv = sc[(int64_t)r * ng + kt], zv = z[(int64_t)r * ng + kt];
            for (int t = 0; t < 4; t++)
                for (int j = 0; j < 4; j++) {
                    uint32_t w;
                    memcpy(&w, tile + t * 16 + j * 4, 4);
                    for (int p = 0; p < 4; p++) {
                        const int col = 128 * kt + 32 * t + 8 * j + 2 * p;
                        const double lo = (double)((w >> (4 * p)) & 15u) - zv,
                                     hi = (double)((w >> (16 + 4 * p)) & 15u) - zv;
                        acc += sv * (lo * x[col] + hi * x[col + 1]);
                    }
                }
        }
        y[r] = acc;
    }
}

#endif
