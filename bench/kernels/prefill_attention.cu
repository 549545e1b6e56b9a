/* prefill_attention.cu — kernel lab for the paged causal GQA prefill
 * attention (BF16). Standalone (CUDA runtime only):
 *   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Isrc \
 *        bench/kernels/prefill_attention.cu -o kernel_prefill_attention
 *   ./kernel_prefill_attention          checks + timings (target shape too)
 *   ./kernel_prefill_attention --quick  small checks only (for compute-sanitizer)
 * Versions:
 *   0  naive: one thread per (query token, head), two passes over its keys
 *   1  the CUDA-core kernel of cuda_attention.cu (attention_bf16_kernel, copied):
 *      one CTA per (query token, kv head), 128-key tiles, scalar fp32
 *   2-6  the mma.sync kernel of cuda_prefill_attention.cuh (production on
 *        non-Hopper GPUs) at several tile shapes / pipeline depths
 *   7-10 a first wgmma kernel (prefill_attention_wg_first.cuh; wrong for hd == BN, see there)
 *   11-14 the software-pipelined wgmma kernel of cuda_prefill_attention.cuh
 *   15-19 the warp-specialized kernel of prefill_attention_ws.cuh (lab only,
 *        FA3-style: producer warpgroup + 2 consumer warpgroups, mbarrier
 *        ring, ping-pong); BF16 cache, no window (a version's supports()
 *        predicate skips the problems it cannot run)
 *   20-24 the TMA kernel of prefill_attention_ws_tma.cuh (K/V/Q by TMA
 *        from one producer warp, tensor maps made here through
 *        cudaGetDriverEntryPointByVersion; block sizes 16-128), one CTA
 *        per work item or persistent (one CTA per SM, snake order); ILP:
 *        softmax with 4 independent partial row maxima / sums
 *   33-35 the same kernel with three consumer warpgroups (NC = 3: 192-row
 *        query tiles, a ring of named barriers, registers 32 / 160), hd 64
 *        only, as FA3 tiles hd 64; 34 with 4 stages, 35 without the ILP
 *        softmax (the ILP build spills one register at 160)
 *   prod the production launcher ci_cu_prefill_attention itself
 * Every version runs on fresh random inputs with the output poisoned (NaN)
 * first, is checked fully written and against a CPU reference in double
 * (all rows on the small shapes, 512 random (token, head) rows on the big
 * ones), then timed with cudaEvents (warm-up, median). FLOPs count 4 * hd *
 * H * (keys a query sees, causal convention): for a full prefill of N
 * tokens 4 * H * N * N * hd / 2, the convention used for SDPA too. */
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

/* the production launcher (and, through it, the kernels' .cuh) */
#include "backend/cuda/cuda_prefill_attention.cu"
/* the warp-specialized kernel (not in production yet) */
#include "backend/cuda/prefill_attention_ws.cuh"
/* the same with TMA loads, optionally persistent */
#include "backend/cuda/prefill_attention_ws_tma.cuh"

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));      \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

typedef __nv_bfloat16 bf16;
static const double PEAK_TFLOPS = 787.0;

/* ---------------- version 0: naive ---------------- */
template <int HD>
__global__ void v0_naive_kernel(const ci_prefill_params p, int T, float scale) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= T * p.H) return;
    int t = idx / p.H, h = idx % p.H;
    int lo = 0, hi = p.S - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (p.qstart[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    int s = lo, lim = min(p.positions[t] + 1, p.ctx_lens[s]), kvh = h / (p.H / p.KV);
    const bf16 *q = p.qkv + (int64_t)t * (p.H + 2 * p.KV) * HD + h * HD;
    const int32_t *bt = p.btab + (int64_t)s * p.mbps;
    float m = -INFINITY, l = 0.0f, o[HD];
    for (int d = 0; d < HD; d++) o[d] = 0.0f;
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < lim; j++) {
            int64_t off = (((int64_t)bt[j / p.bs] * p.KV + kvh) * p.bs + j % p.bs) * HD;
            float dot = 0.0f;
            for (int d = 0; d < HD; d++) dot += __bfloat162float(q[d]) * __bfloat162float(p.kc[off + d]);
            dot *= scale;
            if (pass == 0) {
                m = fmaxf(m, dot);
            } else {
                float e = __expf(dot - m);
                l += e;
                for (int d = 0; d < HD; d++) o[d] += e * __bfloat162float(p.vc[off + d]);
            }
        }
    bf16 *out = p.out + (int64_t)t * p.H * HD + h * HD;
    for (int d = 0; d < HD; d++) out[d] = __float2bfloat16_rn(o[d] / l);
}

/* ---------------- version 1: copy of attention_bf16_kernel (no split) ---------------- */
#define ATT_THREADS 128
#define ATT2_TILE 128
#define ATT2_GMAX 16
__device__ __forceinline__ float v1_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float v1_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ void v1_ld_vec(const bf16 *p, float *out) {
    uint4 u = *(const uint4 *)p;
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(h[i]);
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}
__global__ void __launch_bounds__(ATT_THREADS)
    v1_attention_bf16_kernel(const bf16 *__restrict__ qkv, int S, int H, int KV, int hd,
                             const int32_t *__restrict__ positions, const int32_t *__restrict__ qstart,
                             const int32_t *__restrict__ ctx_lens, const int32_t *__restrict__ btab,
                             int mbps, const bf16 *__restrict__ kc, const bf16 *__restrict__ vc, int bs,
                             float scale, bf16 *__restrict__ out) {
    extern __shared__ float4 sm4[];
    float *sm = (float *)sm4;
    const int t = blockIdx.x, g = blockIdx.y, G = H / KV, GHD = G * hd;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kstride = hd + 8;
    float *q = sm;
    float *sc = q + GHD;
    float *mrow = sc + G * ATT2_TILE, *lrow = mrow + G, *alpha = lrow + G;
    float *region = sm + ((GHD + G * ATT2_TILE + 3 * G + 3) & ~3);
    bf16 *kt = (bf16 *)region;
    bf16 *vt = kt + ATT2_TILE * kstride;
    float *red = region;
    int lo = 0, hi = S - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (qstart[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    const int s = lo;
    int nctx = positions[t] + 1;
    if (nctx > ctx_lens[s]) nctx = ctx_lens[s];
    const int32_t *bt = btab + (int64_t)s * mbps;
    const int64_t stride = (int64_t)(H + 2 * KV) * hd;
    const bf16 *qrow = qkv + (int64_t)t * stride + (int64_t)g * GHD;
    for (int e = tid; e < GHD; e += ATT_THREADS) q[e] = __bfloat162float(qrow[e]) * scale;
    for (int i = tid; i < G; i += ATT_THREADS) {
        mrow[i] = -INFINITY;
        lrow[i] = 0.0f;
    }
    const int nq4 = hd / 4, KG = ATT_THREADS / nq4;
    const int dq = tid % nq4, kg = tid / nq4;
    float acc[ATT2_GMAX][4];
#pragma unroll
    for (int gi = 0; gi < ATT2_GMAX; gi++) acc[gi][0] = acc[gi][1] = acc[gi][2] = acc[gi][3] = 0.0f;
    const int nvec = hd / 8;
    for (int j0 = 0; j0 < nctx; j0 += ATT2_TILE) {
        const int nj = nctx - j0 < ATT2_TILE ? nctx - j0 : ATT2_TILE;
        __syncthreads();
        for (int e = tid; e < nj * nvec; e += ATT_THREADS) {
            int j = e / nvec, d = (e - j * nvec) * 8, pos = j0 + j;
            int64_t base = (((int64_t)bt[pos / bs] * KV + g) * bs + pos % bs) * hd + d;
            *(uint4 *)(kt + j * kstride + d) = *(const uint4 *)(kc + base);
            *(uint4 *)(vt + j * hd + d) = *(const uint4 *)(vc + base);
        }
        __syncthreads();
        {
            const int j = tid;
            float sc_j[ATT2_GMAX];
#pragma unroll
            for (int gi = 0; gi < ATT2_GMAX; gi++) sc_j[gi] = 0.0f;
            if (j < nj) {
                const bf16 *kr = kt + j * kstride;
                for (int d = 0; d < hd; d += 8) {
                    float k8[8];
                    v1_ld_vec(kr + d, k8);
#pragma unroll
                    for (int gi = 0; gi < ATT2_GMAX; gi++) {
                        if (gi < G) {
                            const float4 a = *(const float4 *)(q + gi * hd + d);
                            const float4 b = *(const float4 *)(q + gi * hd + d + 4);
                            float v = sc_j[gi];
                            v = fmaf(a.x, k8[0], v);
                            v = fmaf(a.y, k8[1], v);
                            v = fmaf(a.z, k8[2], v);
                            v = fmaf(a.w, k8[3], v);
                            v = fmaf(b.x, k8[4], v);
                            v = fmaf(b.y, k8[5], v);
                            v = fmaf(b.z, k8[6], v);
                            v = fmaf(b.w, k8[7], v);
                            sc_j[gi] = v;
                        }
                    }
                }
            }
#pragma unroll
            for (int gi = 0; gi < ATT2_GMAX; gi++)
                if (gi < G) sc[gi * ATT2_TILE + j] = j < nj ? sc_j[gi] : -INFINITY;
        }
        __syncthreads();
        for (int gi = warp; gi < G; gi += ATT_THREADS / 32) {
            float v[4], mx = -INFINITY;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                v[i] = sc[gi * ATT2_TILE + lane + 32 * i];
                mx = fmaxf(mx, v[i]);
            }
            float mold = mrow[gi];
            float mnew = fmaxf(mold, v1_warp_max(mx));
            float sum = 0.0f;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float p = lane + 32 * i < nj ? __expf(v[i] - mnew) : 0.0f;
                sc[gi * ATT2_TILE + lane + 32 * i] = p;
                sum += p;
            }
            sum = v1_warp_sum(sum);
            __syncwarp();
            if (lane == 0) {
                float a = __expf(mold - mnew);
                alpha[gi] = a;
                lrow[gi] = lrow[gi] * a + sum;
                mrow[gi] = mnew;
            }
        }
        __syncthreads();
#pragma unroll
        for (int gi = 0; gi < ATT2_GMAX; gi++) {
            if (gi < G) {
                float a = alpha[gi];
                acc[gi][0] *= a;
                acc[gi][1] *= a;
                acc[gi][2] *= a;
                acc[gi][3] *= a;
            }
        }
        for (int j = kg; j < nj; j += KG) {
            uint2 u = *(const uint2 *)(vt + j * hd + dq * 4);
            float2 v01 = __bfloat1622float2(*(const __nv_bfloat162 *)&u.x);
            float2 v23 = __bfloat1622float2(*(const __nv_bfloat162 *)&u.y);
            const float *pj = sc + j;
#pragma unroll
            for (int gi = 0; gi < ATT2_GMAX; gi++) {
                if (gi < G) {
                    float p = pj[gi * ATT2_TILE];
                    acc[gi][0] = fmaf(p, v01.x, acc[gi][0]);
                    acc[gi][1] = fmaf(p, v01.y, acc[gi][1]);
                    acc[gi][2] = fmaf(p, v23.x, acc[gi][2]);
                    acc[gi][3] = fmaf(p, v23.y, acc[gi][3]);
                }
            }
        }
    }
    __syncthreads();
#pragma unroll
    for (int gi = 0; gi < ATT2_GMAX; gi++)
        if (gi < G)
            *(float4 *)(red + ((int64_t)kg * G + gi) * hd + dq * 4) =
                make_float4(acc[gi][0], acc[gi][1], acc[gi][2], acc[gi][3]);
    __syncthreads();
    bf16 *orow = out + (int64_t)t * H * hd + (int64_t)g * GHD;
    for (int e = tid; e < GHD; e += ATT_THREADS) {
        float tot = 0.0f;
        for (int k = 0; k < KG; k++) tot += red[(int64_t)k * GHD + e];
        float l = lrow[e / hd];
        orow[e] = __float2bfloat16_rn(l > 0.0f ? tot / l : 0.0f);
    }
}
static size_t v1_smem_bytes(int G, int hd) {
    size_t head = ((size_t)G * hd + (size_t)G * ATT2_TILE + 3 * (size_t)G + 3) & ~(size_t)3;
    size_t kv = (size_t)ATT2_TILE * (size_t)(2 * hd + 8) * 2 / sizeof(float);
    size_t red = (size_t)(ATT_THREADS / (hd / 4)) * G * hd;
    return (head + (kv > red ? kv : red)) * sizeof(float);
}

/* versions 7-10: the first wgmma kernel (its own file: the lab's record) */
#include "prefill_attention_wg_first.cuh"

/* ---------------- problem ---------------- */
struct Problem {
    const char *name;
    int H, KV, hd, bs;
    std::vector<int> ctx, q; /* per sequence: tokens in cache after the step, new tokens */
    int full_check;          /* 1: every row against the CPU; 0: 512 sampled rows */
};
struct Dev {
    int T, S, mbps, nblocks, maxq;
    std::vector<bf16> qkv, kc, vc;
    std::vector<int32_t> pos, qs, cl, bt;
    bf16 *d_qkv, *d_kc, *d_vc, *d_out;
    int32_t *d_pos, *d_qs, *d_cl, *d_bt;
    double flops;
};

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static inline float urand() { /* uniform [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0) - 1.0);
}
static inline float b2f(bf16 v) { return __bfloat162float(v); }

static void fill(std::vector<bf16> &v, size_t n, float amp) {
    v.resize(n);
    for (size_t i = 0; i < n; i++) v[i] = __float2bfloat16_rn(amp * urand());
}

/* lab filters, from the environment: LAB_CASE (a substring of the problem
 * names to run), LAB_VER (comma-separated substrings of the version names),
 * LAB_CONTIGUOUS */
static const char *lab_case, *lab_ver;
static int lab_contiguous;

/* whether name contains one of the comma-separated substrings of list */
static bool name_in(const char *name, const char *list) {
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        std::string tok(p, n);
        if (!tok.empty() && strstr(name, tok.c_str())) return true;
        p += n + (e ? 1 : 0);
    }
    return false;
}

static void setup(const Problem &pb, Dev &d) {
    d.S = (int)pb.ctx.size();
    d.T = 0;
    d.mbps = 0;
    d.nblocks = 0;
    d.maxq = 0;
    d.flops = 0;
    for (int s = 0; s < d.S; s++) {
        int nb = (pb.ctx[s] + pb.bs - 1) / pb.bs;
        d.mbps = std::max(d.mbps, nb);
        d.nblocks += nb;
        d.T += pb.q[s];
        d.maxq = std::max(d.maxq, pb.q[s]);
        double qn = pb.q[s], c = pb.ctx[s];
        d.flops += 4.0 * pb.H * pb.hd * (qn * c - qn * qn / 2); /* causal convention */
    }
    d.nblocks += 3; /* a few unused blocks */
    std::vector<int> perm(d.nblocks);
    for (int i = 0; i < d.nblocks; i++) perm[i] = i;
    /* shuffled blocks: tiles span scattered blocks (LAB_CONTIGUOUS=1: in order,
     * as a fresh prefill gets them from an unfragmented free list) */
    for (int i = d.nblocks - 1; i > 0 && !lab_contiguous; i--) {
        int j = (int)((urand() * 0.5f + 0.5f) * (i + 1)) % (i + 1);
        std::swap(perm[i], perm[j]);
    }
    d.bt.assign((size_t)d.S * d.mbps, -1);
    d.pos.resize(d.T);
    d.qs.resize(d.S + 1);
    d.cl.resize(d.S);
    int next = 0, t = 0;
    for (int s = 0; s < d.S; s++) {
        int nb = (pb.ctx[s] + pb.bs - 1) / pb.bs;
        for (int i = 0; i < nb; i++) d.bt[(size_t)s * d.mbps + i] = perm[next++];
        d.qs[s] = t;
        d.cl[s] = pb.ctx[s];
        for (int i = 0; i < pb.q[s]; i++) d.pos[t++] = pb.ctx[s] - pb.q[s] + i;
    }
    d.qs[d.S] = t;
    size_t cols = (size_t)(pb.H + 2 * pb.KV) * pb.hd;
    size_t cache = (size_t)d.nblocks * pb.KV * pb.bs * pb.hd;
    fill(d.qkv, (size_t)d.T * cols, 2.0f);
    fill(d.kc, cache, 1.5f);
    fill(d.vc, cache, 1.0f);
    CK(cudaMalloc(&d.d_qkv, d.qkv.size() * 2));
    CK(cudaMalloc(&d.d_kc, cache * 2));
    CK(cudaMalloc(&d.d_vc, cache * 2));
    CK(cudaMalloc(&d.d_out, (size_t)d.T * pb.H * pb.hd * 2));
    CK(cudaMalloc(&d.d_pos, d.T * 4));
    CK(cudaMalloc(&d.d_qs, (d.S + 1) * 4));
    CK(cudaMalloc(&d.d_cl, d.S * 4));
    CK(cudaMalloc(&d.d_bt, d.bt.size() * 4));
    CK(cudaMemcpy(d.d_qkv, d.qkv.data(), d.qkv.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d.d_kc, d.kc.data(), cache * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d.d_vc, d.vc.data(), cache * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d.d_pos, d.pos.data(), d.T * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d.d_qs, d.qs.data(), (d.S + 1) * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d.d_cl, d.cl.data(), d.S * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d.d_bt, d.bt.data(), d.bt.size() * 4, cudaMemcpyHostToDevice));
}
static void teardown(Dev &d) {
    cudaFree(d.d_qkv);
    cudaFree(d.d_kc);
    cudaFree(d.d_vc);
    cudaFree(d.d_out);
    cudaFree(d.d_pos);
    cudaFree(d.d_qs);
    cudaFree(d.d_cl);
    cudaFree(d.d_bt);
}
static ci_prefill_params params(const Problem &pb, const Dev &d, int bm) {
    ci_prefill_params p;
    p.qkv = d.d_qkv;
    p.positions = d.d_pos;
    p.qstart = d.d_qs;
    p.ctx_lens = d.d_cl;
    p.btab = d.d_bt;
    p.kc = d.d_kc;
    p.vc = d.d_vc;
    p.out = d.d_out;
    p.S = d.S;
    p.H = pb.H;
    p.KV = pb.KV;
    p.mbps = d.mbps;
    p.bs = pb.bs;
    p.window = 0;
    p.ntiles = (d.maxq + bm - 1) / bm;
    p.scale_log2 = (float)(1.0 / std::sqrt((double)pb.hd) * 1.4426950408889634);
    p.vscale = 1.0f;
    p.fp8 = false;
    return p;
}

/* ---------------- versions ---------------- */
typedef void (*launch_fn)(const Problem &, const Dev &);
static void run_v0(const Problem &pb, const Dev &d) {
    ci_prefill_params p = params(pb, d, 64);
    int n = d.T * pb.H;
    float scale = (float)(1.0 / std::sqrt((double)pb.hd));
    if (pb.hd == 64) v0_naive_kernel<64><<<(n + 127) / 128, 128>>>(p, d.T, scale);
    else v0_naive_kernel<128><<<(n + 127) / 128, 128>>>(p, d.T, scale);
}
static void run_v1(const Problem &pb, const Dev &d) {
    size_t b = v1_smem_bytes(pb.H / pb.KV, pb.hd);
    CK(cudaFuncSetAttribute(v1_attention_bf16_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                            (int)b));
    v1_attention_bf16_kernel<<<dim3(d.T, pb.KV), ATT_THREADS, b>>>(
        d.d_qkv, d.S, pb.H, pb.KV, pb.hd, d.d_pos, d.d_qs, d.d_cl, d.d_bt, d.mbps, d.d_kc, d.d_vc,
        pb.bs, (float)(1.0 / std::sqrt((double)pb.hd)), d.d_out);
}
static void launch(void (*k)(ci_prefill_params), size_t smem, int threads,
                   const ci_prefill_params &p) {
    CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    k<<<p.ntiles * p.S * p.H, threads, smem>>>(p);
}
template <int HD, int BM, int BN, int NST> static void run_tc_hd(const Problem &pb, const Dev &d) {
    launch(ci_prefill_attention_kernel<HD, BM, BN, NST>, ci_prefill_smem_bytes<HD, BM, BN, NST>(),
           BM * 2, params(pb, d, BM));
}
template <int BM, int BN, int NST> static void run_tc(const Problem &pb, const Dev &d) {
    if (pb.hd == 64) run_tc_hd<64, BM, BN, NST>(pb, d);
    else run_tc_hd<128, BM, BN, NST>(pb, d);
}
/* P = 0: the first wgmma kernel (v7_wg_kernel), 1: the pipelined one */
template <int P, int BN, int NWG, int NST, int HD>
static void run_wg_hd(const Problem &pb, const Dev &d) {
    constexpr size_t smem = ci_prefill_wg_smem_bytes<HD, BN, NWG, NST>();
    if constexpr (P)
        launch(ci_prefill_attention_wgp_kernel<HD, BN, NWG, NST>, smem, NWG * 128,
               params(pb, d, 64 * NWG));
    else
        launch(v7_wg_kernel<HD, BN, NWG, NST>, smem, NWG * 128, params(pb, d, 64 * NWG));
}
template <int BN, int NWG, int NST> static void run_wg(const Problem &pb, const Dev &d) {
    if (pb.hd == 64) run_wg_hd<0, BN, NWG, NST, 64>(pb, d);
    else run_wg_hd<0, BN, NWG, NST, 128>(pb, d);
}
template <int BN, int NWG, int NST> static void run_wgp(const Problem &pb, const Dev &d) {
    if (pb.hd == 64) run_wg_hd<1, BN, NWG, NST, 64>(pb, d);
    else run_wg_hd<1, BN, NWG, NST, 128>(pb, d);
}
/* versions 15+: the warp-specialized kernel, BM = 128, 384 threads (PP:
 * ping-pong of the two consumer warpgroups) */
template <int BN, int NST, bool PP, int HD> static void run_ws_hd(const Problem &pb, const Dev &d) {
    launch(ci_prefill_attention_ws_kernel<HD, BN, NST, PP>, ci_prefill_ws_smem_bytes<HD, BN, NST>(),
           384, params(pb, d, 128));
}
template <int BN, int NST, bool PP> static void run_ws(const Problem &pb, const Dev &d) {
    if (pb.hd == 64) run_ws_hd<BN, NST, PP, 64>(pb, d);
    else run_ws_hd<BN, NST, PP, 128>(pb, d);
}
template <int BN, int NST, bool PP> static void run_ws128(const Problem &pb, const Dev &d) {
    run_ws_hd<BN, NST, PP, 128>(pb, d);
}
/* the lab's problems are all BF16 without a window: head_dim decides */
static bool ws_supports(const Problem &pb) { return pb.hd == 64 || pb.hd == 128; }
static bool ws128_supports(const Problem &pb) { return pb.hd == 128; }
/* versions 20+: the TMA kernel; the tensor maps are made once per problem
 * (cached on the device pointers and shape) */
static PFN_cuTensorMapEncodeTiled_v12000 tma_encode() {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
    if (!fn) {
        void *f = nullptr;
        cudaDriverEntryPointQueryResult q;
        CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                            &q));
        if (q != cudaDriverEntryPointSuccess || !f) {
            fprintf(stderr, "cuTensorMapEncodeTiled not found\n");
            exit(2);
        }
        fn = (PFN_cuTensorMapEncodeTiled_v12000)f;
    }
    return fn;
}
static const CUtensorMap *tma_maps(const Problem &pb, const Dev &d, const ci_prefill_params &p,
                                   int bm) {
    static CUtensorMap m[5];
    static const void *key[3];
    static int kshape[7] = {-1};
    const int shape[7] = {d.T, pb.H, pb.KV, pb.hd, pb.bs, d.nblocks, bm};
    if (key[0] != d.d_qkv || key[1] != d.d_kc || key[2] != d.d_vc ||
        memcmp(shape, kshape, sizeof shape)) {
        int r = ci_prefill_wst_make_maps(tma_encode(), p, d.T, pb.hd, d.nblocks, &m[0], &m[1], &m[2],
                                         bm, &m[3], &m[4]);
        if (r) {
            fprintf(stderr, "cuTensorMapEncodeTiled failed: %d\n", r);
            exit(2);
        }
        key[0] = d.d_qkv;
        key[1] = d.d_kc;
        key[2] = d.d_vc;
        memcpy(kshape, shape, sizeof shape);
    }
    return m;
}
template <int BN, int NST, bool PERS, bool ILP, int HD, int NC = 2, int PX = 0, bool WIDE = false,
          bool SPLITP = false, bool EPI = false>
static void run_wst_hd(const Problem &pb, const Dev &d) {
    static int nsm = 0;
    if (!nsm) CK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, 0));
    const ci_prefill_params p = params(pb, d, 64 * NC);
    const CUtensorMap *m = tma_maps(pb, d, p, 64 * NC);
    auto k = ci_prefill_attention_wst_kernel<HD, BN, NST, ILP, NC, PX, WIDE, SPLITP, EPI>;
    const size_t smem = ci_prefill_wst_smem_bytes<HD, BN, NST, NC>();
    CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const int items = p.ntiles * p.S * p.H;
    k<<<PERS ? std::min(items, nsm) : items, ci_prefill_wst_threads(NC), smem>>>(p, m[0], m[1], m[2],
                                                                             m[3], m[4]);
}
/* three consumer warpgroups (192-row query tiles), hd 64 */
template <int BN, int NST, bool ILP = true, int PX = 0>
static void run_wst3(const Problem &pb, const Dev &d) {
    run_wst_hd<BN, NST, true, ILP, 64, 3, PX>(pb, d);
}
/* v23 (hd 128) / v33 (hd 64) with WIDE (a tile of consecutive cache blocks in
 * one box per 64 columns: only LAB_CONTIGUOUS=1 has such tiles) or SPLITP (K
 * and V from two producer warps) */
template <bool WIDE, bool SPLITP> static void run_v23_v33(const Problem &pb, const Dev &d) {
    if (pb.hd == 64) run_wst_hd<128, 3, true, true, 64, 3, 0, WIDE, SPLITP>(pb, d);
    else run_wst_hd<128, 3, true, true, 128, 2, 0, WIDE, SPLITP>(pb, d);
}
/* production's configuration (v40 at hd 128, v33 at hd 64) with the
 * epilogue's 8-byte stores (store_rows_pair) */
static void run_v41(const Problem &pb, const Dev &d) {
    if (pb.hd == 64) run_wst_hd<128, 3, true, true, 64, 3, 0, false, false, true>(pb, d);
    else run_wst_hd<128, 3, true, true, 128, 2, 0, false, true, true>(pb, d);
}
/* v23 at hd 128 with PX / 8 of the exponentials on the FMA pipe */
template <int PX> static void run_wst128_px(const Problem &pb, const Dev &d) {
    run_wst_hd<128, 3, true, true, 128, 2, PX>(pb, d);
}
template <int BN> static bool wst64_supports(const Problem &pb) {
    return pb.hd == 64 && ci_prefill_wst_bs_ok(pb.bs, BN);
}
template <int BN, int NST, bool PERS, bool ILP>
static void run_wst(const Problem &pb, const Dev &d) {
    if (pb.hd == 64) run_wst_hd<BN, NST, PERS, ILP, 64>(pb, d);
    else run_wst_hd<BN, NST, PERS, ILP, 128>(pb, d);
}
template <int BN> static bool wst_supports(const Problem &pb) {
    return (pb.hd == 64 || pb.hd == 128) && ci_prefill_wst_bs_ok(pb.bs, BN);
}
template <int BN> static bool wst128_supports(const Problem &pb) {
    return pb.hd == 128 && ci_prefill_wst_bs_ok(pb.bs, BN);
}
template <int BN, int NST, bool PERS, bool ILP>
static void run_wst128(const Problem &pb, const Dev &d) {
    run_wst_hd<BN, NST, PERS, ILP, 128>(pb, d);
}
/* the production launcher, ci_cu_prefill_attention */
static void run_prod(const Problem &pb, const Dev &d) {
    CK((cudaError_t)ci_cu_prefill_attention(0, d.d_qkv, d.T, d.S, pb.H, pb.KV, pb.hd, d.d_pos, d.d_qs,
                                            d.d_cl, d.d_bt, d.mbps, d.d_kc, d.d_vc, pb.bs,
                                            (float)(1.0 / std::sqrt((double)pb.hd)), 0, d.d_out,
                                            d.maxq, 0, 1.0f, 1.0f, d.nblocks));
}
struct Version {
    const char *name;
    launch_fn fn;
    bool (*supports)(const Problem &); /* null: every problem */
};
static const Version versions[] = {
    {"v0 naive (thread per token x head)", run_v0},
    {"v1 CUDA-core (current kernel)", run_v1},
    {"v2 TC BM64 BN64 2-stage (4 warps)", run_tc<64, 64, 2>},
    {"v3 TC BM128 BN64 2-stage (8 warps)", run_tc<128, 64, 2>},
    {"v4 TC BM128 BN64 3-stage", run_tc<128, 64, 3>},
    {"v5 TC BM128 BN32 3-stage", run_tc<128, 32, 3>},
    {"v6 TC BM64 BN32 3-stage (4 warps)", run_tc<64, 32, 3>},
    {"v7 wgmma BM128 BN64 2-stage (2 WG)", run_wg<64, 2, 2>},
    {"v8 wgmma BM128 BN64 3-stage (2 WG)", run_wg<64, 2, 3>},
    {"v9 wgmma BM64 BN64 3-stage (1 WG)", run_wg<64, 1, 3>},
    {"v10 wgmma BM64 BN64 2-stage (1 WG)", run_wg<64, 1, 2>},
    {"v11 wgmma pipelined BM128 BN64 3-stage", run_wgp<64, 2, 3>},
    {"v12 wgmma pipelined BM128 BN64 4-stage", run_wgp<64, 2, 4>},
    {"v13 wgmma pipelined BM128 BN128 3-stg", run_wgp<128, 2, 3>},
    {"v14 wgmma pipelined BM64 BN64 3-stage", run_wgp<64, 1, 3>},
    {"v15 ws pingpong BN128 2-stage", run_ws<128, 2, true>, ws_supports},
    {"v16 ws pingpong BN128 3-stage", run_ws<128, 3, true>, ws_supports},
    {"v17 ws no-pingpong BN128 2-stage", run_ws<128, 2, false>, ws_supports},
    {"v18 ws pingpong BN64 4-stage", run_ws128<64, 4, true>, ws128_supports},
    {"v19 ws pingpong BN64 2-stage", run_ws128<64, 2, true>, ws128_supports},
    {"v20 ws TMA BN128 2-stage", run_wst<128, 2, false, false>, wst_supports<128>},
    {"v21 ws TMA persist BN128 2-stage", run_wst<128, 2, true, false>, wst_supports<128>},
    {"v22 ws TMA persist BN128 2-stg ILP", run_wst<128, 2, true, true>, wst_supports<128>},
    {"v23 ws TMA persist BN128 3-stg ILP", run_wst<128, 3, true, true>, wst_supports<128>},
    {"v24 ws TMA persist BN64 4-stg ILP", run_wst128<64, 4, true, true>, wst128_supports<64>},
    {"v33 ws TMA persist 3 WG BM192 3-stg", run_wst3<128, 3>, wst64_supports<128>},
    {"v34 ws TMA persist 3 WG BM192 4-stg", run_wst3<128, 4>, wst64_supports<128>},
    {"v35 ws TMA persist 3 WG BM192 no ILP", run_wst3<128, 3, false>, wst64_supports<128>},
    {"v36 v33 + 1/8 exp2 on the FMA pipe", run_wst3<128, 3, true, 1>, wst64_supports<128>},
    {"v37 v33 + 1/4 exp2 on the FMA pipe", run_wst3<128, 3, true, 2>, wst64_supports<128>},
    {"v38 v23 + 1/8 exp2 on the FMA pipe", run_wst128_px<1>, wst128_supports<128>},
    {"v39 v23 / v33 + wide boxes", run_v23_v33<true, false>, wst_supports<128>},
    {"v40 v23 / v33 + K, V producer warps", run_v23_v33<false, true>, wst_supports<128>},
    {"v41 prod + 8-byte epilogue stores", run_v41, wst_supports<128>},
    {"prod (launcher's choice)", run_prod},
};
static const int NVER = sizeof versions / sizeof versions[0];

/* ---------------- CPU reference ---------------- */
static void cpu_row(const Problem &pb, const Dev &d, int t, int h, std::vector<double> &o) {
    int s = 0;
    while (d.qs[s + 1] <= t) s++;
    int lim = std::min(d.pos[t] + 1, d.cl[s]), kvh = h / (pb.H / pb.KV), hd = pb.hd;
    const bf16 *q = d.qkv.data() + (size_t)t * (pb.H + 2 * pb.KV) * hd + (size_t)h * hd;
    std::vector<double> sc(lim);
    double mx = -1e300, scale = 1.0 / std::sqrt((double)hd);
    for (int j = 0; j < lim; j++) {
        size_t off = (((size_t)d.bt[(size_t)s * d.mbps + j / pb.bs] * pb.KV + kvh) * pb.bs + j % pb.bs) * hd;
        double a = 0;
        for (int e = 0; e < hd; e++) a += (double)b2f(q[e]) * b2f(d.kc[off + e]);
        sc[j] = a * scale;
        mx = std::max(mx, sc[j]);
    }
    o.assign(hd, 0.0);
    double l = 0;
    for (int j = 0; j < lim; j++) {
        size_t off = (((size_t)d.bt[(size_t)s * d.mbps + j / pb.bs] * pb.KV + kvh) * pb.bs + j % pb.bs) * hd;
        double p = std::exp(sc[j] - mx);
        l += p;
        for (int e = 0; e < hd; e++) o[e] += p * b2f(d.vc[off + e]);
    }
    for (int e = 0; e < hd; e++) o[e] /= l;
}

/* rows checked: all, or 512 random (token, head) pairs */
static std::vector<std::pair<int, int>> check_rows(const Problem &pb, const Dev &d) {
    std::vector<std::pair<int, int>> r;
    if (pb.full_check) {
        for (int t = 0; t < d.T; t++)
            for (int h = 0; h < pb.H; h++) r.push_back({t, h});
    } else {
        for (int i = 0; i < 512; i++) {
            int t = (int)((urand() * 0.5f + 0.5f) * d.T) % d.T;
            int h = (int)((urand() * 0.5f + 0.5f) * pb.H) % pb.H;
            if (i < 8) t = d.T - 1 - i; /* the last (longest) rows too */
            r.push_back({t, h});
        }
    }
    return r;
}

/* runs version v once on a poisoned output; returns rel. err (inf if unwritten) */
static double check(const Problem &pb, const Dev &d, int v,
                    const std::vector<std::pair<int, int>> &rows,
                    const std::vector<std::vector<double>> &ref) {
    size_t n = (size_t)d.T * pb.H * pb.hd;
    CK(cudaMemset(d.d_out, 0xff, n * 2)); /* bf16 0xffff = NaN */
    versions[v].fn(pb, d);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    std::vector<bf16> out(n);
    CK(cudaMemcpy(out.data(), d.d_out, n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++)
        if (!std::isfinite(b2f(out[i]))) {
            printf("  %s: element %zu not written / not finite\n", versions[v].name, i);
            return INFINITY;
        }
    double num = 0, den = 0;
    for (size_t i = 0; i < rows.size(); i++) {
        const bf16 *o = out.data() + ((size_t)rows[i].first * pb.H + rows[i].second) * pb.hd;
        for (int e = 0; e < pb.hd; e++) {
            double df = b2f(o[e]) - ref[i][e];
            num += df * df;
            den += ref[i][e] * ref[i][e];
        }
    }
    return std::sqrt(num / den);
}

static double time_ms(const Problem &pb, const Dev &d, int v, int iters) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    versions[v].fn(pb, d); /* warm-up */
    CK(cudaDeviceSynchronize());
    std::vector<float> ms(iters);
    for (int i = 0; i < iters; i++) {
        CK(cudaEventRecord(a));
        versions[v].fn(pb, d);
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&ms[i], a, b));
    }
    CK(cudaGetLastError());
    std::sort(ms.begin(), ms.end());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return ms[iters / 2];
}

static int failures = 0;
static int no_wg = 0; /* LAB_NO_WG=1: leave out the wgmma versions (and prod) */
static const int V_WG_FIRST = 7, V_WG_PLAIN_LAST = 10; /* the first wgmma kernel */

/* skip_naive: version 0 would take seconds on the big shapes */
static void run_problem(const Problem &pb, int timing, int skip_naive) {
    if (lab_case && !name_in(pb.name, lab_case)) return;
    Dev d;
    setup(pb, d);
    std::vector<std::pair<int, int>> rows = check_rows(pb, d);
    std::vector<std::vector<double>> ref(rows.size());
    for (size_t i = 0; i < rows.size(); i++) cpu_row(pb, d, rows[i].first, rows[i].second, ref[i]);
    printf("\n== %s: H=%d KV=%d hd=%d bs=%d, %d seqs, %d tokens, %.3g GFLOP (%s check)\n", pb.name,
           pb.H, pb.KV, pb.hd, pb.bs, d.S, d.T, d.flops / 1e9, pb.full_check ? "full" : "sampled");
    printf("%-38s %10s %9s %7s %10s\n", "version", "ms", "TFLOP/s", "%peak", "rel err");
    for (int v = 0; v < NVER; v++) {
        if (lab_ver && !name_in(versions[v].name, lab_ver)) continue;
        if ((v == 1 && pb.H / pb.KV > ATT2_GMAX) || (v == 0 && skip_naive) ||
            (no_wg && v >= V_WG_FIRST)) {
            printf("%-38s %10s\n", versions[v].name, "skipped");
            continue;
        }
        if (versions[v].supports && !versions[v].supports(pb)) {
            printf("%-38s %10s\n", versions[v].name, "skipped (not supported)");
            continue;
        }
        if (pb.hd == 64 && v >= V_WG_FIRST && v <= V_WG_PLAIN_LAST) {
            printf("%-38s %10s\n", versions[v].name, "skipped (wrong for hd == BN, see source)");
            continue;
        }
        double err = check(pb, d, v, rows, ref);
        bool ok = err <= 1e-2;
        if (!ok) failures++;
        if (!timing) {
            printf("%-38s %10s %9s %7s %10.3g%s\n", versions[v].name, "-", "-", "-", err,
                   ok ? "" : "  FAIL");
            continue;
        }
        int iters = v == 0 ? 3 : v == 1 ? 5 : 30;
        double ms = time_ms(pb, d, v, iters);
        double tf = d.flops / (ms * 1e-3) / 1e12;
        printf("%-38s %10.3f %9.1f %6.1f%% %10.3g%s\n", versions[v].name, ms, tf,
               100.0 * tf / PEAK_TFLOPS, err, ok ? "" : "  FAIL");
    }
    teardown(d);
}

/* the checks of a and b again with the cache blocks in order, as names na /
 * nb: v39's wide boxes take only tiles of consecutive blocks */
static void run_checks_in_order(Problem a, Problem b, const char *na, const char *nb) {
    const int was = lab_contiguous;
    lab_contiguous = 1;
    a.name = na;
    b.name = nb;
    run_problem(a, 0, 0);
    run_problem(b, 0, 0);
    lab_contiguous = was;
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    no_wg = getenv("LAB_NO_WG") && atoi(getenv("LAB_NO_WG"));
    lab_case = getenv("LAB_CASE");
    lab_ver = getenv("LAB_VER");
    lab_contiguous = getenv("LAB_CONTIGUOUS") && atoi(getenv("LAB_CONTIGUOUS"));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    /* correctness: ragged batches with cached prefixes, decode rows, query
     * lengths off the tile sizes, block sizes 16 and 32 */
    Problem c1 = {"ragged hd128 bs16", 8, 2, 128, 16, {300, 1000, 77, 2100, 5}, {300, 517, 77, 1, 3}, 1};
    Problem c2 = {"ragged hd64 bs32", 8, 8, 64, 32, {129, 700, 4100, 33}, {129, 64, 250, 1}, 1};
    Problem c3 = {"ragged hd128 bs32 G8", 16, 2, 128, 32, {4133, 64, 191}, {130, 64, 190}, 1};
    /* block size 1: every key row its own cache block */
    Problem c4 = {"ragged hd128 bs1", 4, 1, 128, 1, {300, 9, 260}, {200, 9, 1}, 1};
    if (quick) {
        Problem q1 = {"quick hd128 bs16", 4, 2, 128, 16, {200, 70}, {200, 33}, 1};
        Problem q2 = {"quick hd64 bs32", 4, 1, 64, 32, {150, 90}, {80, 90}, 1};
        run_problem(q1, 0, 0);
        run_problem(q2, 0, 0);
        run_checks_in_order(q1, q2, "quick hd128 bs16, blocks in order",
                            "quick hd64 bs32, blocks in order");
    } else {
        run_problem(c1, 0, 0);
        run_problem(c2, 0, 0);
        run_problem(c3, 0, 0);
        run_problem(c4, 0, 0);
        run_checks_in_order(c1, c2, "ragged hd128 bs16, blocks in order",
                            "ragged hd64 bs32, blocks in order");
        Problem small = {"small: 1 x 2048 prefill", 32, 8, 128, 16, {2048}, {2048}, 0};
        run_problem(small, 1, 0);
        Problem target = {"target: 8 x 4096 prefill", 32, 8, 128, 16,
                          std::vector<int>(8, 4096), std::vector<int>(8, 4096), 0};
        run_problem(target, 1, 1);
        Problem t32 = {"target, block size 32", 32, 8, 128, 32,
                       std::vector<int>(8, 4096), std::vector<int>(8, 4096), 0};
        run_problem(t32, 1, 1);
        Problem t64b = {"target, block size 64", 32, 8, 128, 64,
                        std::vector<int>(8, 4096), std::vector<int>(8, 4096), 0};
        run_problem(t64b, 1, 1);
        Problem t64 = {"8 x 4096 prefill, hd64 (H32 KV8)", 32, 8, 64, 16,
                       std::vector<int>(8, 4096), std::vector<int>(8, 4096), 0};
        run_problem(t64, 1, 1);
        Problem t64s = {"8 x 4096 prefill, hd64, block size 32", 32, 8, 64, 32,
                        std::vector<int>(8, 4096), std::vector<int>(8, 4096), 0};
        run_problem(t64s, 1, 1);
        /* chunked prefill: a 4096-token chunk after a 4096-token cached prefix
         * (issue 14: >= 90 % of the plain 8 x 4096 rate) */
        Problem tc = {"8 x 4096 chunk after 4096 cached", 32, 8, 128, 16,
                      std::vector<int>(8, 8192), std::vector<int>(8, 4096), 0};
        run_problem(tc, 1, 1);
        Problem tc64 = {"8 x 4096 chunk after 4096 cached, hd64", 32, 8, 64, 16,
                        std::vector<int>(8, 8192), std::vector<int>(8, 4096), 0};
        run_problem(tc64, 1, 1);
    }
    printf("\n%s: %d failures\n", failures ? "FAIL" : "OK", failures);
    return failures ? 1 : 0;
}
