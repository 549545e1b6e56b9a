/* decode_chain.cu — kernel lab: what the stage boundaries of a batch-1
 * decode step cost, and what one persistent kernel would save.
 *
 * A batch-1 step is a chain of dependent stages (each layer: q|k|v, the
 * attention, o, gate|up, down; then the LM head), each needing the whole
 * output of the one before. cinfer runs each stage as its own kernel in a
 * CUDA graph with programmatic dependent launch (the next kernel's CTAs
 * load their first weights before griddepcontrol.wait, where they fit
 * beside the running kernel). The batch-1 "megakernels" keep one set of
 * CTAs resident for the whole step instead, with a grid-wide barrier
 * between stages, each CTA loading its next stage's first weights before it
 * waits at the barrier. Which is cheaper, and by how much a boundary, is
 * what this lab measures before the engine would pay for a persistent
 * decode kernel (issue 10's INT4 goal: docs/kernels/decode_chain.md).
 *
 * Both run the same stand-in stages over the same bytes: stage s streams
 * its weight (R rows of B bytes: the Llama-3-8B shape's INT4 or FP8 byte
 * counts; the attention as 1 MiB of 512-byte rows, a 256-token context's
 * K/V) and computes y[r] = sum_i f(w_ri) x[i], one FMA per 32-bit word of
 * the row (f: the word as a signed fraction), a lower bound on a real
 * stage's arithmetic, so that the boundaries are what differs; x is built
 * from values of the previous stage's y spread over all its rows, so every
 * stage depends on every CTA of the one before. The row partition and the
 * order of every sum are the same in all versions and in the CPU reference
 * (explicit fmaf, the warp's xor-shuffle order), so the outputs must be
 * bit-identical; the check runs a 2-layer chain with the outputs poisoned.
 *
 *   v0  kernels, one a stage, PDL, in a CUDA graph; 2 CTAs an SM
 *   v1  the same with 1 CTA an SM (room beside each for the next's CTAs)
 *   v2  persistent: one cooperative kernel, 2 CTAs an SM, grid barriers,
 *       the next stage's first weights loaded before each barrier wait
 *   v3  persistent without those early loads
 *   v4, v5  the same two schemes with production's INT4 GEMV body (the
 *       tensor-core tc tiles of qgemv_tc.cuh) on an INT4 GPTQ-g128 chain of
 *       the 8B shape's GEMVs, and v6 the persistent one with a counter a
 *       128-row output chunk instead of barriers: decode_chain_int4.cuh
 *   v7, v8  v4 with L2 prefetches before the PDL wait (the next stage's
 *       front by the CTAs launched last; each CTA's own lookahead)
 *
 * Prints µs a step, TB/s of weight bytes, and the difference per boundary;
 * the device-to-device copy of the same run is the roofline.
 *
 *   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Isrc \
 *        bench/kernels/decode_chain.cu -o decode_chain && ./decode_chain */
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "backend/cuda/pdl.cuh"
#include "lab.cuh"

#define DC_WARPS 8
#define DC_THREADS (DC_WARPS * 32)
#define DC_D 8 /* 16-byte loads in flight per lane */

/* one stage: R rows of B bytes (B a multiple of 512: a warp's 32 lanes read
 * 16 bytes each per step), x built from the Rp outputs yp of the stage
 * before (or the step's input) */
struct dc_stage {
    const uint4 *w;
    int64_t R;
    int B;
    float *y;
    const float *yp;
    int Rp;
};

__host__ __device__ inline uint32_t dc_hash(uint64_t i) { /* splitmix64's finalizer */
    uint64_t z = i * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)(z ^ (z >> 31));
}
__host__ __device__ inline float dc_f(uint32_t w) { /* the word as a fraction in [-1, 1) */
    return (float)(int32_t)w * 0x1p-31f;
}
__host__ __device__ inline float dc_sq(float v) {
    return v / (1.0f + fabsf(v));
}
/* x[k] of a stage from the previous outputs: two of them, far apart */
__host__ __device__ inline float dc_x(const float *yp, int Rp, int k, bool l2) {
    /* 32-bit indices (k < 2^28): the staging is on each stage's critical path */
    const unsigned a = (unsigned)k % (unsigned)Rp, b = ((unsigned)k * 7u + 3u) % (unsigned)Rp;
#ifdef __CUDA_ARCH__
    const float ya = l2 ? __ldcg(yp + a) : yp[a], yb = l2 ? __ldcg(yp + b) : yp[b];
#else
    (void)l2;
    const float ya = yp[a], yb = yp[b];
#endif
    return dc_sq(fmaf(0.5f, yb, ya));
}

__global__ void dc_fill(uint32_t *w, int64_t n, uint64_t seed) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        w[i] = dc_hash(seed + (uint64_t)i);
}

/* A warp's stream through its rows of a stage: units (row, i), i < n = B /
 * 512, DC_D of them in flight per lane, each slot reloaded as soon as it is
 * used. prime() loads the first DC_D (weights only: before a wait); run()
 * stages nothing, it reads x from shared memory. */
struct dc_warp {
    uint4 buf[DC_D];
    int64_t row0, nrows, lrow; /* the warp's rows; the load iterator */
    int n, li;
    __device__ void init(const dc_stage &S, int64_t gw, int64_t nw) {
        row0 = S.R * gw / nw;
        nrows = S.R * (gw + 1) / nw - row0;
        n = S.B / 512;
        lrow = row0;
        li = 0;
    }
    __device__ void load(const dc_stage &S, int d, int lane) {
        buf[d] = __ldcs(S.w + lrow * (S.B / 16) + li * 32 + lane);
        if (++li == n) {
            li = 0;
            lrow++;
        }
    }
    __device__ void prime(const dc_stage &S, int lane) {
        const int64_t U = nrows * n;
#pragma unroll
        for (int d = 0; d < DC_D; d++)
            if (d < U) load(S, d, lane);
    }
    __device__ void run(const dc_stage &S, const float4 *xs, int lane) {
        const int64_t U = nrows * n;
        int64_t crow = row0;
        int ci = 0;
        float acc = 0.0f;
        for (int64_t u = 0; u < U; u += DC_D) {
#pragma unroll
            for (int d = 0; d < DC_D; d++) {
                if (u + d >= U) break;
                const uint4 w = buf[d];
                if (u + d + DC_D < U) load(S, d, lane);
                const float4 x = xs[ci * 32 + lane];
                acc = fmaf(dc_f(w.x), x.x, acc);
                acc = fmaf(dc_f(w.y), x.y, acc);
                acc = fmaf(dc_f(w.z), x.z, acc);
                acc = fmaf(dc_f(w.w), x.w, acc);
                if (++ci == n) { /* the row's sum, in the reference's order */
#pragma unroll
                    for (int o = 16; o > 0; o >>= 1)
                        acc += __shfl_xor_sync(0xffffffffu, acc, o);
                    if (lane == 0) S.y[crow] = acc;
                    acc = 0.0f;
                    ci = 0;
                    crow++;
                }
            }
        }
    }
};

/* x of stage S into shared memory (after the wait: it reads the stage
 * before through L2) */
__device__ void dc_stage_x(const dc_stage &S, float *xs) {
    const int K = S.B / 4;
    for (int k = threadIdx.x; k < K; k += DC_THREADS)
        xs[k] = dc_x(S.yp, S.Rp, k, true);
    __syncthreads();
}

/* v0 / v1: stage s as a kernel of its own */
__global__ void __launch_bounds__(DC_THREADS) dc_stage_kernel(const dc_stage *st, int s) {
    extern __shared__ float4 xs4[];
    ci_pdl_trigger();
    const int lane = threadIdx.x & 31;
    const dc_stage S = st[s]; /* constant descriptors: read before the wait */
    dc_warp wp;
    wp.init(S, (int64_t)blockIdx.x * DC_WARPS + (threadIdx.x >> 5), (int64_t)gridDim.x * DC_WARPS);
    wp.prime(S, lane);
    ci_pdl_wait();
    dc_stage_x(S, (float *)xs4);
    wp.run(S, xs4, lane);
}

__device__ __forceinline__ void dc_arrive(unsigned *bar, unsigned last) {
    __syncthreads(); /* every warp's outputs written */
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(bar, 1u) == last)
            atomicExch(bar, 0u); /* the step's last: ready for the next */
    }
}
/* set when a wait gave up: a logic error shows as a failed check, not a
 * hung device call */
__device__ unsigned dc_err;
/* spins until *p >= target (one thread), ~1 s at most */
__device__ __forceinline__ void dc_spin(const unsigned *p, unsigned target) {
    unsigned v;
    for (long it = 0;; it++) {
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
        if (v >= target) return;
        if (it > (1l << 21)) {
            atomicExch(&dc_err, 1u);
            return;
        }
    }
}
__device__ __forceinline__ void dc_wait(unsigned *bar, unsigned target) {
    if (threadIdx.x == 0) dc_spin(bar, target);
    __syncthreads();
}
/* (host) whether a wait gave up since the last call; clears the flag */
static bool dc_gave_up() {
    unsigned e = 0, z = 0;
    CK(cudaMemcpyFromSymbol(&e, dc_err, 4));
    CK(cudaMemcpyToSymbol(dc_err, &z, 4));
    return e != 0;
}

/* v2 / v3: the whole chain, a grid barrier between stages (bar: zero at
 * launch; the last arrival of the step zeroes it again) */
template <bool EARLY>
__global__ void __launch_bounds__(DC_THREADS)
    dc_chain_kernel(const dc_stage *st, int ns, unsigned *bar) {
    extern __shared__ float4 xs4[];
    const int lane = threadIdx.x & 31;
    const int64_t gw = (int64_t)blockIdx.x * DC_WARPS + (threadIdx.x >> 5),
                  nw = (int64_t)gridDim.x * DC_WARPS;
    const unsigned G = gridDim.x;
    dc_warp wp;
    wp.init(st[0], gw, nw);
    wp.prime(st[0], lane);
    for (int s = 0; s < ns; s++) {
        const dc_stage S = st[s];
        if (s > 0) {
            dc_wait(bar, (unsigned)s * G);
            if (!EARLY) wp.prime(S, lane);
        }
        dc_stage_x(S, (float *)xs4);
        wp.run(S, xs4, lane);
        /* the next stage's first weights before this one's barrier */
        if (s + 1 < ns) {
            wp.init(st[s + 1], gw, nw);
            if (EARLY) wp.prime(st[s + 1], lane);
        }
        dc_arrive(bar, (unsigned)ns * G - 1u);
    }
}

/* ------------------------------------------------------------------ host */

struct dc_shape {
    const char *name;
    int layers;
    double wbytes; /* bytes a weight: 0.5 INT4, 1 FP8 */
};

/* the chain of a Llama-3-8B-shaped step: per layer q|k|v 6144 x 4096,
 * attention (1 MiB of 512-byte rows), o 4096 x 4096, gate|up 28672 x 4096,
 * down 4096 x 14336; then the LM head 128256 x 4096 */
static std::vector<std::pair<int64_t, int>> dc_layout(const dc_shape &sh) {
    auto b = [&](int64_t cols) { return (int)(cols * sh.wbytes); };
    std::vector<std::pair<int64_t, int>> v;
    for (int l = 0; l < sh.layers; l++) {
        v.push_back({6144, b(4096)});
        v.push_back({2048, 512});
        v.push_back({4096, b(4096)});
        v.push_back({28672, b(4096)});
        v.push_back({4096, b(14336)});
    }
    v.push_back({128256, b(4096)});
    return v;
}

struct dc_chain {
    std::vector<dc_stage> h;
    dc_stage *d = nullptr;
    uint32_t *w = nullptr;
    float *y = nullptr, *in = nullptr;
    unsigned *bar = nullptr;
    int64_t wwords = 0, ys = 0;
    int maxB = 0, inlen = 1024;
    double bytes = 0;
};

static void dc_make(dc_chain &c, const dc_shape &sh) {
    auto lay = dc_layout(sh);
    for (auto &p : lay) {
        c.wwords += p.first * p.second / 4;
        c.ys += p.first;
        c.maxB = std::max(c.maxB, p.second);
        c.bytes += (double)p.first * p.second;
    }
    CK(cudaMalloc(&c.w, c.wwords * 4));
    CK(cudaMalloc(&c.y, c.ys * 4));
    CK(cudaMalloc(&c.in, c.inlen * 4));
    CK(cudaMalloc(&c.bar, 4));
    CK(cudaMemset(c.bar, 0, 4));
    dc_fill<<<1024, 256>>>(c.w, c.wwords, 0);
    CK(cudaGetLastError());
    std::vector<float> in(c.inlen);
    for (int i = 0; i < c.inlen; i++)
        in[i] = lab_frand();
    CK(cudaMemcpy(c.in, in.data(), c.inlen * 4, cudaMemcpyHostToDevice));
    int64_t wo = 0, yo = 0;
    const float *yp = c.in;
    int Rp = c.inlen;
    for (auto &p : lay) {
        dc_stage s;
        s.w = (const uint4 *)(c.w + wo);
        s.R = p.first;
        s.B = p.second;
        s.y = c.y + yo;
        s.yp = yp;
        s.Rp = Rp;
        c.h.push_back(s);
        wo += p.first * p.second / 4;
        yo += p.first;
        yp = s.y;
        Rp = (int)p.first;
    }
    CK(cudaMalloc(&c.d, sizeof(dc_stage) * c.h.size()));
    CK(cudaMemcpy(c.d, c.h.data(), sizeof(dc_stage) * c.h.size(), cudaMemcpyHostToDevice));
    CK(cudaDeviceSynchronize());
}
static void dc_free(dc_chain &c) {
    cudaFree(c.w);
    cudaFree(c.y);
    cudaFree(c.in);
    cudaFree(c.bar);
    cudaFree(c.d);
}

/* the CPU reference of every stage's y, in the GPU's order: per row, lane
 * partials over its 16-byte pieces, then the xor-shuffle reduction */
static std::vector<float> dc_reference(const dc_chain &c, const std::vector<float> &in) {
    std::vector<float> y(c.ys);
    int64_t wo = 0, yo = 0;
    const float *yp = in.data();
    int Rp = (int)in.size();
    std::vector<float> x;
    for (const dc_stage &S : c.h) {
        const int K = S.B / 4, n = S.B / 512;
        x.resize(K);
        for (int k = 0; k < K; k++)
            x[k] = dc_x(yp, Rp, k, false);
        for (int64_t r = 0; r < S.R; r++) {
            float p[32];
            for (int l = 0; l < 32; l++) {
                float acc = 0.0f;
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < 4; j++) {
                        const int64_t word = (i * 32 + l) * 4 + j;
                        acc = fmaf(dc_f(dc_hash((uint64_t)(wo + r * K + word))), x[word], acc);
                    }
                p[l] = acc;
            }
            for (int o = 16; o > 0; o >>= 1) {
                float q[32];
                for (int l = 0; l < 32; l++)
                    q[l] = p[l] + p[l ^ o];
                memcpy(p, q, sizeof p);
            }
            y[yo + r] = p[0];
        }
        wo += S.R * K;
        yp = y.data() + yo;
        yo += S.R;
        Rp = (int)S.R;
    }
    return y;
}

/* kernel<<<G, 256, smem, st>>>(args) as a cooperative launch: its G CTAs
 * resident at once (or the launch fails), which the grid barrier needs */
template <typename... KArgs, typename... Args>
static void dc_launch_coop(void (*kernel)(KArgs...), int G, size_t smem, cudaStream_t st,
                           Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(G);
    cfg.blockDim = dim3(DC_THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeCooperative;
    at[0].val.cooperative = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    CK(cudaLaunchKernelEx(&cfg, kernel, args...));
}

/* one step of version v on st: the stage kernels, or the persistent one */
static void dc_launch(const dc_chain &c, int v, int G, cudaStream_t st) {
    const size_t smem = (size_t)c.maxB; /* maxB / 4 floats */
    const dc_stage *d = c.d;
    if (v <= 1) {
        for (int s = 0; s < (int)c.h.size(); s++)
            CK(ci_cu_launch_ex(true, 0u, dc_stage_kernel, dim3(G), dim3(DC_THREADS), smem, st, d,
                               s));
        return;
    }
    const int ns = (int)c.h.size();
    if (v == 2)
        dc_launch_coop(dc_chain_kernel<true>, G, smem, st, d, ns, c.bar);
    else
        dc_launch_coop(dc_chain_kernel<false>, G, smem, st, d, ns, c.bar);
}

/* A step as it is replayed: as a CUDA graph of launch's kernels (the stage
 * kernels, as cinfer's decode graphs), or launch itself each time (the
 * persistent kernels: a graph of one kernel saves nothing, and v6 passes a
 * new epoch every launch) */
struct dc_step {
    cudaGraphExec_t ge = nullptr;
    std::function<void(cudaStream_t)> launch;
    dc_step(std::function<void(cudaStream_t)> f, bool graph, cudaStream_t st) : launch(f) {
        if (!graph) return;
        cudaGraph_t gr;
        CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
        launch(st);
        CK(cudaStreamEndCapture(st, &gr));
        CK(cudaGraphInstantiate(&ge, gr, 0));
        CK(cudaGraphDestroy(gr));
    }
    ~dc_step() {
        if (ge) cudaGraphExecDestroy(ge);
    }
    void run(cudaStream_t st) {
        if (ge)
            CK(cudaGraphLaunch(ge, st));
        else
            launch(st);
    }
};

#include "decode_chain_int4.cuh" /* v4 / v5: the INT4 GEMV body */

static const char *dc_names[4] = {"v0 kernels, PDL, 2 CTAs an SM", "v1 kernels, PDL, 1 CTA an SM",
                                  "v2 persistent, early loads", "v3 persistent, loads after"};

/* v4 - v6: a 2-layer INT4 chain checked (v5, v6 bit for bit against v4, each
 * stage against the CPU on the GPU's own input), then the 32-layer chain
 * with its LM head timed; returns the failed checks */
static int q4_main(cudaStream_t st, int sms, double copy_tbs, bool quick) {
    int occ = 0, occ5 = 0; /* v5 and v6 launch the same G: what both fit */
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, q4_persist_kernel<true>, Q4_THREADS,
                                                     14336 * 2));
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ5, q4_persist_kernel<false>, Q4_THREADS,
                                                     14336 * 2));
    occ = std::min(occ, occ5);
    const int G = std::min(occ, 2) * sms;
    int fails = 0;
    {
        q4_chain c;
        q4_make(c, 2, false);
        std::vector<uint16_t> y4(c.ys), y5(c.ys);
        CK(cudaMemset(c.y, 0xff, c.ys * 2));
        q4_launch(c, 4, G, st);
        CK(cudaStreamSynchronize(st));
        CK(cudaMemcpy(y4.data(), c.y, c.ys * 2, cudaMemcpyDeviceToHost));
        CK(cudaMemset(c.y, 0xff, c.ys * 2));
        for (int r = 0; r < 2; r++)
            q4_launch(c, 5, G, st); /* twice: the barrier resets */
        CK(cudaStreamSynchronize(st));
        CK(cudaMemcpy(y5.data(), c.y, c.ys * 2, cudaMemcpyDeviceToHost));
        std::vector<uint16_t> y6(c.ys);
        CK(cudaMemset(c.y, 0xff, c.ys * 2));
        for (int r = 0; r < 2; r++)
            q4_launch(c, 6, G, st); /* twice: the epochs */
        CK(cudaStreamSynchronize(st));
        CK(cudaMemcpy(y6.data(), c.y, c.ys * 2, cudaMemcpyDeviceToHost));
        std::vector<uint16_t> y7(c.ys);
        CK(cudaMemset(c.y, 0xff, c.ys * 2));
        q4_launch(c, 7, G, st, 65536, true, 264);
        CK(cudaStreamSynchronize(st));
        CK(cudaMemcpy(y7.data(), c.y, c.ys * 2, cudaMemcpyDeviceToHost));
        const int same = !memcmp(y4.data(), y5.data(), c.ys * 2) &&
                         !memcmp(y4.data(), y6.data(), c.ys * 2) &&
                         !memcmp(y4.data(), y7.data(), c.ys * 2) && !dc_gave_up();
        std::vector<uint8_t> q(c.qbytes), z(c.groups);
        std::vector<float> sc(c.groups);
        CK(cudaMemcpy(q.data(), c.q, c.qbytes, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(z.data(), c.z, c.groups, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(sc.data(), c.s, c.groups * 4, cudaMemcpyDeviceToHost));
        std::vector<uint16_t> in(4096);
        CK(cudaMemcpy(in.data(), c.in, 4096 * 2, cudaMemcpyDeviceToHost));
        double worst = 0;
        int64_t qo = 0, go = 0, yo = 0, xo = -1; /* xo: the input's offset in y4, -1: in */
        std::vector<float> x;
        std::vector<double> ref;
        for (const q4_stage &S : c.h) {
            x.resize(S.K);
            for (int k = 0; k < S.K; k++)
                x[k] = lab_f32(xo < 0 ? in[k] : y4[xo + k]);
            std::vector<uint8_t> qs(q.begin() + qo, q.begin() + qo + (int64_t)S.R * S.K / 2);
            std::vector<uint8_t> zs(z.begin() + go, z.begin() + go + (int64_t)S.R * (S.K / 128));
            std::vector<float> ss(sc.begin() + go, sc.begin() + go + (int64_t)S.R * (S.K / 128));
            q4_ref(S, qs, zs, ss, x, ref);
            double num = 0, den = 0;
            for (int r = 0; r < S.R; r++) {
                const double d = lab_f32(y4[yo + r]) - ref[r];
                num += d * d;
                den += ref[r] * ref[r];
            }
            const double rel = std::sqrt(num / den); /* NaN (unwritten) fails below */
            worst = std::max(worst, std::isnan(rel) ? 1e9 : rel);
            qo += (int64_t)S.R * S.K / 2;
            go += (int64_t)S.R * (S.K / 128);
            xo = yo;
            yo += S.R;
        }
        const bool ok = same && worst < 1e-2;
        printf("check v4 - v7 (INT4 tc body, 2 layers): v5, v6, v7 %s v4, worst stage rel err %.2e "
               "against the CPU%s\n",
               same ? "bit-identical to" : "DIFFERS from", worst, ok ? "" : "  FAIL");
        fails += !ok;
        q4_free(c);
    }
    q4_chain c;
    q4_make(c, quick ? 2 : 32, !quick);
    printf("\n| INT4 GEMV chain (%d GEMVs%s) | us a step | TB/s of weights | %% of copy |\n",
           (int)c.h.size(), quick ? "" : " + LM head");
    printf("|---|---|---|---|\n");
    /* v7's rows: prefetch bytes a CTA, before the wait / after the last
     * tile; v4 again at the end (the drift of the run) */
    int occ4 = 0; /* v8's lookahead: the CTAs that fit at once (smem of the widest K) */
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ4, q4_stage_kernel<false>, Q4_THREADS,
                                                     (size_t)c.maxK * 2));
    const int res = occ4 * sms;
    printf("(v8's lookahead: %d CTAs an SM x %d SMs = %d blocks)\n\n", occ4, sms, res);
    struct {
        int v, pf;
        bool after;
        int look; /* in GPU-fulls of CTAs */
    } rows[] = {{4, 0, false, 0},     {5, 0, false, 0},     {6, 0, false, 0},
                {7, 16384, false, 0}, {7, 65536, false, 0}, {7, 16384, true, 0},
                {7, 65536, true, 0},  {7, 131072, true, 0}, {7, 0, false, 1},
                {7, 0, false, 2},     {7, 65536, true, 1},  {4, 0, false, 0}};
    for (const auto &rw : rows) {
        if (quick && rw.v == 7 && rw.pf != 65536) continue;
        dc_step step(
            [&](cudaStream_t s2) { q4_launch(c, rw.v, G, s2, rw.pf, rw.after, rw.look * res); },
            rw.v == 4 || rw.v == 7, st);
        const double us = lab_time_us(
            st, 1, [&](int) { step.run(st); }, 7, 5);
        const double tbs = c.bytes / us / 1e6;
        char name[96];
        if (rw.v == 7 && rw.look == 0)
            snprintf(name, sizeof name, "v7 = v4 + next stage's L2 prefetch, %d KiB a CTA, %s",
                     rw.pf / 1024, rw.after ? "after the last tile" : "before the wait");
        else if (rw.v == 7 && rw.pf == 0)
            snprintf(name, sizeof name, "v8 = v4 + own L2 lookahead, %d GPU-full%s ahead", rw.look,
                     rw.look > 1 ? "s" : "");
        else if (rw.v == 7)
            snprintf(name, sizeof name, "v7 (%d KiB, after) + v8 (%d ahead)", rw.pf / 1024,
                     rw.look);
        printf("| %s | %.1f | %.2f | %.0f%% |\n",
               rw.v == 4   ? "v4 kernels (tc's grid), PDL, a graph"
               : rw.v == 5 ? "v5 persistent, slots across stages, barriers"
               : rw.v == 6 ? "v6 persistent, slots across stages, chunk counters"
                           : name,
               us, tbs, 100.0 * tbs / copy_tbs);
    }
    if (dc_gave_up()) {
        printf("a wait gave up during the timed runs  FAIL\n");
        fails++;
    }
    q4_free(c);
    return fails;
}

int main(int argc, char **argv) {
    const bool quick = lab_quick(argc, argv);
    ci_cu_pdl_on = 1;
    int dev = 0, sms = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, dev));
    int occ = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, dc_chain_kernel<true>, DC_THREADS,
                                                     16384));
    const int per = std::min(occ, 2);
    printf("decode_chain: %s, %d SMs, %d CTAs an SM fit the persistent kernel\n", prop.name, sms,
           occ);
    cudaStream_t st;
    CK(cudaStreamCreate(&st));

    /* check: a 2-layer chain, every version bit for bit against the CPU */
    int fails = 0;
    {
        dc_chain c;
        dc_make(c, {"check", 2, 0.5});
        std::vector<float> in(c.inlen);
        CK(cudaMemcpy(in.data(), c.in, c.inlen * 4, cudaMemcpyDeviceToHost));
        const std::vector<float> ref = dc_reference(c, in);
        for (int v = 0; v < 4; v++) {
            const int G = (v == 1 ? 1 : per) * sms;
            CK(cudaMemset(c.y, 0xff, c.ys * 4)); /* NaN: an unwritten output fails */
            dc_step step([&](cudaStream_t s2) { dc_launch(c, v, G, s2); }, v <= 1, st);
            for (int r = 0; r < 2; r++)
                step.run(st); /* twice: the barrier resets */
            CK(cudaStreamSynchronize(st));
            std::vector<float> y(c.ys);
            CK(cudaMemcpy(y.data(), c.y, c.ys * 4, cudaMemcpyDeviceToHost));
            int64_t bad = 0;
            for (int64_t i = 0; i < c.ys; i++)
                bad += memcmp(&y[i], &ref[i], 4) != 0;
            const bool gave = dc_gave_up();
            printf("check %-32s %lld of %lld outputs differ from the CPU%s%s\n", dc_names[v],
                   (long long)bad, (long long)c.ys, gave ? ", a barrier wait gave up" : "",
                   bad || gave ? "  FAIL" : "");
            fails += bad != 0 || gave;
        }
        dc_free(c);
    }

    /* the copy roofline of this run: 1 GiB device to device */
    double copy_tbs = 0;
    {
        const size_t nb = (size_t)1 << 30;
        void *a, *b;
        CK(cudaMalloc(&a, nb));
        CK(cudaMalloc(&b, nb));
        const double us = lab_time_us(
            st, 1, [&](int) { CK(cudaMemcpyAsync(b, a, nb, cudaMemcpyDeviceToDevice, st)); }, 5, 4);
        copy_tbs = 2.0 * nb / us / 1e6;
        cudaFree(a);
        cudaFree(b);
    }
    printf("copy (read + write): %.2f TB/s\n\n", copy_tbs);

    /* bf16 calibrates the lab against the production step (~90 % of the
     * copy rate at batch 1): if v0 matches production there and on INT4,
     * the lab's boundaries are the real ones */
    const dc_shape shapes[3] = {{"Llama-3-8B, INT4 bytes", 32, 0.5},
                                {"Llama-3-8B, FP8 bytes", 32, 1.0},
                                {"Llama-3-8B, bf16 bytes", 32, 2.0}};
    printf("| weights | stages | version | us a step | TB/s of weights | %% of copy | us a "
           "boundary vs v0 |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < (quick ? 1 : 3); k++) {
        dc_shape sh = shapes[k];
        if (quick) sh.layers = 2;
        dc_chain c;
        dc_make(c, sh);
        const int ns = (int)c.h.size();
        double t0 = 0;
        for (int v = 0; v < 4; v++) {
            const int G = (v == 1 ? 1 : per) * sms;
            dc_step step([&](cudaStream_t s2) { dc_launch(c, v, G, s2); }, v <= 1, st);
            const double us = lab_time_us(
                st, 1, [&](int) { step.run(st); }, 7, 5);
            if (v == 0) t0 = us;
            const double tbs = c.bytes / us / 1e6;
            printf("| %s | %d | %s | %.1f | %.2f | %.0f%% | %+.2f |\n", sh.name, ns, dc_names[v],
                   us, tbs, 100.0 * tbs / copy_tbs, (us - t0) / (ns - 1));
        }
        dc_free(c);
    }
    if (dc_gave_up()) {
        printf("a barrier wait gave up during the timed runs  FAIL\n");
        fails++;
    }
    fails += q4_main(st, sms, copy_tbs, quick);
    CK(cudaStreamDestroy(st));
    printf("%s\n", fails ? "decode_chain: FAILED" : "decode_chain: all checks passed");
    return fails ? 1 : 0;
}
