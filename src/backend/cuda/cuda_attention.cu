/* cuda_attention.cu — paged, causal, varlen attention with GQA (prefill,
 * chunked prefill over a cached prefix, and decode in one kernel).
 *
 * One CTA (128 threads) per (query token, kv head): the G = H / KV query
 * heads that share the kv head are handled together, so each K/V element is
 * read once per token for all G heads. The token's sequence comes from a
 * binary search of query_start; it attends to cache positions
 * [0, min(position + 1, context_len)) (with a sliding window w, from
 * position + 1 - w on: the tiles start there, so nothing outside the window
 * is read and no tile needs a mask), read through the block table in
 * tiles of 32 keys:
 *   1. the K and V tile is loaded with 16-byte loads into shared memory as
 *      f32 (K rows padded to head_dim + 1 floats: conflict-free dot products);
 *   2. 32 x G scores q.k (q pre-scaled, kept in shared memory);
 *   3. online softmax, one warp per head (32 keys = one lane each): running
 *      max m, sum l, rescale factor alpha;
 *   4. acc[g][d] = alpha * acc + sum_j p[g][j] v[j][d], acc in registers
 *      (G x head_dim / 128 values per thread, at most 16).
 * The output is acc / l in the activation dtype.
 *
 * Split-K (flash-decoding): when the (token, kv head) CTAs are fewer than
 * two waves and the context is long (small decode batches), grid.z splits
 * each context into interleaved tiles; every split writes its unnormalized
 * acc and (m, l) to a preallocated f32 workspace and attention_combine
 * merges them. Decode moves the context's K/V once per (seq, kv head):
 * 2 x ctx x head_dim x elt bytes. Prefill re-reads the prefix once per query
 * token; a query-tiled (flash-attention-2 style) kernel is the next step.
 *
 * An FP8 (E4M3) cache goes to the prefill and decode kernels' FP8 paths
 * when they take the shape, else to attention_kernel<T, uint8_t> (16 E4M3
 * per 16-byte load, converted to f32 in the tile; k_scale folded into q,
 * v_scale into the output); never to attention_bf16_kernel. */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/kv_fp8.cuh"

#define ATT_TILE 32
#define ATT_THREADS 128
#define ATT_NACC (CI_CU_ATT_MAX_GHD / ATT_THREADS)

/* 16-byte vector of T: 8 bf16 or 4 f32, converted to f32 */
__device__ __forceinline__ void ld_vec(const __nv_bfloat16 *p, float *out) {
    ci_bf16x8(*(const uint4 *)p, out);
}
__device__ __forceinline__ void ld_vec(const uint8_t *p, float *out) { /* 16 E4M3 */
    uint4 u = *(const uint4 *)p;
    ci_fp8x4_f32(u.x, out);
    ci_fp8x4_f32(u.y, out + 4);
    ci_fp8x4_f32(u.z, out + 8);
    ci_fp8x4_f32(u.w, out + 12);
}
__device__ __forceinline__ void ld_vec(const float *p, float *out) {
    float4 f = *(const float4 *)p;
    out[0] = f.x;
    out[1] = f.y;
    out[2] = f.z;
    out[3] = f.w;
}

/* TC: the cache element (T, or uint8_t for E4M3); scale includes k_scale,
 * vscale multiplies the output */
/* the sequence of token t: the largest s with qstart[s] <= t */
__device__ __forceinline__ int att_seq_of(const int32_t *qstart, int S, int t) {
    int lo = 0, hi = S - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (qstart[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

template <typename T, typename TC>
__global__ void __launch_bounds__(ATT_THREADS)
    attention_kernel(const T *__restrict__ qkv, int S, int H, int KV, int hd,
                     const int32_t *__restrict__ positions, const int32_t *__restrict__ qstart,
                     const int32_t *__restrict__ ctx_lens, const int32_t *__restrict__ btab,
                     int mbps, const TC *__restrict__ kc, const TC *__restrict__ vc, int bs,
                     float scale, int window, T *__restrict__ out, int nsplit,
                     float *__restrict__ part_o, float2 *__restrict__ part_ml, float vscale) {
    ci_pdl_trigger();
    ci_pdl_wait();
    constexpr int VEC = 16 / sizeof(TC);
    extern __shared__ float sm[];
    const int t = blockIdx.x, g = blockIdx.y, z = blockIdx.z, G = H / KV, GHD = G * hd;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float *q = sm;                        /* [G][hd] */
    float *kt = q + GHD;                  /* [TILE][hd + 1] */
    float *vt = kt + ATT_TILE * (hd + 1); /* [TILE][hd] */
    float *sc = vt + ATT_TILE * hd;       /* [G][TILE] */
    float *mrow = sc + G * ATT_TILE, *lrow = mrow + G, *alpha = lrow + G;

    const int s = att_seq_of(qstart, S, t);
    int nctx = positions[t] + 1;
    if (nctx > ctx_lens[s]) nctx = ctx_lens[s];
    const int32_t *bt = btab + (int64_t)s * mbps;

    const int64_t stride = (int64_t)(H + 2 * KV) * hd;
    const T *qrow = qkv + (int64_t)t * stride + (int64_t)g * GHD;
    for (int e = tid; e < GHD; e += ATT_THREADS)
        q[e] = ci_ld(qrow, e) * scale;
    for (int i = tid; i < G; i += ATT_THREADS) {
        mrow[i] = -INFINITY;
        lrow[i] = 0.0f;
    }
    float acc[ATT_NACC];
#pragma unroll
    for (int k = 0; k < ATT_NACC; k++)
        acc[k] = 0.0f;

    const int nvec = hd / VEC;
    /* split z of nsplit takes tiles z, z + nsplit, ... (any context length) */
    const int kbeg = window > 0 && nctx > window ? nctx - window : 0; /* first key in the window */
    for (int j0 = kbeg + z * ATT_TILE; j0 < nctx; j0 += nsplit * ATT_TILE) {
        const int nj = nctx - j0 < ATT_TILE ? nctx - j0 : ATT_TILE;
        __syncthreads(); /* the previous tile is consumed (and q/m/l are set) */
        for (int e = tid; e < nj * nvec; e += ATT_THREADS) {
            int j = e / nvec, d = (e - j * nvec) * VEC, pos = j0 + j;
            int64_t base = (((int64_t)bt[pos / bs] * KV + g) * bs + pos % bs) * hd + d;
            float kv8[VEC], vv8[VEC];
            ld_vec(kc + base, kv8);
            ld_vec(vc + base, vv8);
#pragma unroll
            for (int i = 0; i < VEC; i++) {
                kt[j * (hd + 1) + d + i] = kv8[i];
                vt[j * hd + d + i] = vv8[i];
            }
        }
        __syncthreads();
        for (int p = tid; p < G * ATT_TILE; p += ATT_THREADS) {
            int gi = p / ATT_TILE, j = p - gi * ATT_TILE;
            float dot = -INFINITY;
            if (j < nj) {
                const float *qq = q + gi * hd, *kk = kt + j * (hd + 1);
                dot = 0.0f;
                for (int d = 0; d < hd; d++)
                    dot = fmaf(qq[d], kk[d], dot);
            }
            sc[p] = dot;
        }
        __syncthreads();
        for (int gi = warp; gi < G; gi += ATT_THREADS / 32) {
            float v = sc[gi * ATT_TILE + lane];
            float mold = mrow[gi];
            float mnew = fmaxf(mold, ci_warp_max(v)); /* finite: nj >= 1 */
            float p = lane < nj ? __expf(v - mnew) : 0.0f;
            sc[gi * ATT_TILE + lane] = p;
            float sum = ci_warp_sum(p);
            __syncwarp(); /* every lane has read mrow[gi] */
            if (lane == 0) {
                float a = __expf(mold - mnew); /* 0 on the first tile */
                alpha[gi] = a;
                lrow[gi] = lrow[gi] * a + sum;
                mrow[gi] = mnew;
            }
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < ATT_NACC; k++) {
            int e = tid + k * ATT_THREADS;
            if (e < GHD) {
                int gi = e / hd, d = e - gi * hd;
                const float *pp = sc + gi * ATT_TILE;
                float a = acc[k] * alpha[gi];
                for (int j = 0; j < nj; j++)
                    a = fmaf(pp[j], vt[j * hd + d], a);
                acc[k] = a;
            }
        }
    }
    __syncthreads();
    if (nsplit > 1) { /* unnormalized partial result, merged by attention_combine */
        const int64_t h0 = (int64_t)t * H + (int64_t)g * G; /* first head of the group */
#pragma unroll
        for (int k = 0; k < ATT_NACC; k++) {
            int e = tid + k * ATT_THREADS;
            if (e < GHD) {
                int gi = e / hd, d = e - gi * hd;
                part_o[((h0 + gi) * nsplit + z) * hd + d] = acc[k] * vscale;
            }
        }
        for (int gi = tid; gi < G; gi += ATT_THREADS)
            part_ml[(h0 + gi) * nsplit + z] = make_float2(mrow[gi], lrow[gi]);
        return;
    }
    T *orow = out + (int64_t)t * H * hd + (int64_t)g * GHD;
#pragma unroll
    for (int k = 0; k < ATT_NACC; k++) {
        int e = tid + k * ATT_THREADS;
        if (e < GHD) {
            float l = lrow[e / hd];
            ci_st(orow, e, l > 0.0f ? acc[k] * vscale / l : 0.0f);
        }
    }
}

/* ---- BF16 kernel: 128-key tiles kept in BF16, one thread per key ----
 *
 * Same contract and split-K scheme as attention_kernel, for BF16 with
 * G <= 16 and 128 % (head_dim / 4) == 0. The generic kernel above is bound
 * by shared-memory instructions (every K and V element is read once per
 * query head, and q once per score). Here a K/V tile of 128 keys stays BF16
 * in shared memory (16-byte copies, K rows padded by 16 bytes: conflict-free);
 *   scores: thread j owns key j and computes it against all G heads, so
 *           each K row is read once (q is a float4 broadcast);
 *   softmax: one warp per head, 4 keys per lane;
 *   P.V:    thread (key group kg, dims 4dq..4dq+3) accumulates all G heads
 *           over keys kg, kg + KG, ... so each V element is read once;
 *           acc[16][4] in registers; the KG partial sums are reduced
 *           through shared memory at the end. */
#define ATT2_TILE 128
#define ATT2_GMAX 16

__global__ void __launch_bounds__(ATT_THREADS)
    attention_bf16_kernel(const __nv_bfloat16 *__restrict__ qkv, int S, int H, int KV, int hd,
                          const int32_t *__restrict__ positions, const int32_t *__restrict__ qstart,
                          const int32_t *__restrict__ ctx_lens, const int32_t *__restrict__ btab,
                          int mbps, const __nv_bfloat16 *__restrict__ kc,
                          const __nv_bfloat16 *__restrict__ vc, int bs, float scale, int window,
                          __nv_bfloat16 *__restrict__ out, int nsplit, float *__restrict__ part_o,
                          float2 *__restrict__ part_ml) {
    ci_pdl_trigger();
    ci_pdl_wait();
    extern __shared__ float4 sm4[];
    float *sm = (float *)sm4;
    const int t = blockIdx.x, g = blockIdx.y, z = blockIdx.z, G = H / KV, GHD = G * hd;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kstride = hd + 8; /* bf16 elements per K row in shared memory */
    float *q = sm;              /* [G][hd] */
    float *sc = q + GHD;        /* [G][TILE] */
    float *mrow = sc + G * ATT2_TILE, *lrow = mrow + G, *alpha = lrow + G;
    float *region = sm + ((GHD + G * ATT2_TILE + 3 * G + 3) & ~3); /* 16-byte aligned */
    __nv_bfloat16 *kt = (__nv_bfloat16 *)region;                   /* [TILE][hd + 8] */
    __nv_bfloat16 *vt = kt + ATT2_TILE * kstride;                  /* [TILE][hd] */
    float *red = region;                                           /* after the loop: [KG][G][hd] */

    const int s = att_seq_of(qstart, S, t);
    int nctx = positions[t] + 1;
    if (nctx > ctx_lens[s]) nctx = ctx_lens[s];
    const int32_t *bt = btab + (int64_t)s * mbps;

    const int64_t stride = (int64_t)(H + 2 * KV) * hd;
    const __nv_bfloat16 *qrow = qkv + (int64_t)t * stride + (int64_t)g * GHD;
    for (int e = tid; e < GHD; e += ATT_THREADS)
        q[e] = __bfloat162float(qrow[e]) * scale;
    for (int i = tid; i < G; i += ATT_THREADS) {
        mrow[i] = -INFINITY;
        lrow[i] = 0.0f;
    }
    const int nq4 = hd / 4, KG = ATT_THREADS / nq4;
    const int dq = tid % nq4, kg = tid / nq4;
    float acc[ATT2_GMAX][4];
#pragma unroll
    for (int gi = 0; gi < ATT2_GMAX; gi++)
        acc[gi][0] = acc[gi][1] = acc[gi][2] = acc[gi][3] = 0.0f;

    const int nvec = hd / 8;
    const int kbeg = window > 0 && nctx > window ? nctx - window : 0; /* first key in the window */
    for (int j0 = kbeg + z * ATT2_TILE; j0 < nctx; j0 += nsplit * ATT2_TILE) {
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
            for (int gi = 0; gi < ATT2_GMAX; gi++)
                sc_j[gi] = 0.0f;
            if (j < nj) {
                const __nv_bfloat16 *kr = kt + j * kstride;
                for (int d = 0; d < hd; d += 8) {
                    float k8[8];
                    ld_vec(kr + d, k8);
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
            float mnew = fmaxf(mold, ci_warp_max(mx)); /* finite: key j0 is valid */
            float sum = 0.0f;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float p = lane + 32 * i < nj ? __expf(v[i] - mnew) : 0.0f;
                sc[gi * ATT2_TILE + lane + 32 * i] = p;
                sum += p;
            }
            sum = ci_warp_sum(sum);
            __syncwarp(); /* every lane has read mrow[gi] */
            if (lane == 0) {
                float a = __expf(mold - mnew); /* 0 on the first tile */
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
    __syncthreads(); /* the K/V region becomes the reduction buffer */
#pragma unroll
    for (int gi = 0; gi < ATT2_GMAX; gi++)
        if (gi < G)
            *(float4 *)(red + ((int64_t)kg * G + gi) * hd + dq * 4) =
                make_float4(acc[gi][0], acc[gi][1], acc[gi][2], acc[gi][3]);
    __syncthreads();
    const int64_t h0 = (int64_t)t * H + (int64_t)g * G;
    __nv_bfloat16 *orow = out + (int64_t)t * H * hd + (int64_t)g * GHD;
    for (int e = tid; e < GHD; e += ATT_THREADS) {
        float tot = 0.0f;
        for (int k = 0; k < KG; k++)
            tot += red[(int64_t)k * GHD + e];
        int gi = e / hd;
        if (nsplit > 1) {
            part_o[((h0 + gi) * nsplit + z) * hd + (e - gi * hd)] = tot;
        } else {
            float l = lrow[gi];
            orow[e] = __float2bfloat16_rn(l > 0.0f ? tot / l : 0.0f);
        }
    }
    if (nsplit > 1)
        for (int gi = tid; gi < G; gi += ATT_THREADS)
            part_ml[(h0 + gi) * nsplit + z] = make_float2(mrow[gi], lrow[gi]);
}

static size_t att2_smem_bytes(int G, int hd) {
    size_t head = ((size_t)G * hd + (size_t)G * ATT2_TILE + 3 * (size_t)G + 3) & ~(size_t)3;
    size_t kv = (size_t)ATT2_TILE * (size_t)(2 * hd + 8) * 2 / sizeof(float);
    size_t red = (size_t)(ATT_THREADS / (hd / 4)) * G * hd;
    return (head + (kv > red ? kv : red)) * sizeof(float);
}

/* Split-K merge: one CTA per (token, head), one thread per dim. With
 * M = max_z m_z and w_z = exp(m_z - M): out = sum_z w_z acc_z / sum_z w_z l_z. */
template <typename T>
__global__ void attention_combine_kernel(int H, int hd, int nsplit,
                                         const float *__restrict__ part_o,
                                         const float2 *__restrict__ part_ml, T *__restrict__ out) {
    ci_pdl_trigger();
    ci_pdl_wait();
    const int64_t th = (int64_t)blockIdx.x * H + blockIdx.y;
    const float2 *ml = part_ml + th * nsplit;
    float M = -INFINITY;
    for (int z = 0; z < nsplit; z++)
        M = fmaxf(M, ml[z].x);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float num = 0.0f, den = 0.0f;
        if (M > -INFINITY)
            for (int z = 0; z < nsplit; z++) {
                float w = ml[z].x > -INFINITY ? __expf(ml[z].x - M) : 0.0f;
                den += w * ml[z].y;
                num += w * part_o[(th * nsplit + z) * hd + d];
            }
        ci_st(out + th * hd, d, den > 0.0f ? num / den : 0.0f);
    }
}

/* attention_kernel<T, TC> (+ the split merge) on grid with `bytes` of
 * shared memory */
template <typename T, typename TC>
static cudaError_t
launch_generic(dim3 grid, size_t bytes, cudaStream_t st, const T *qkv, int S, int H, int KV, int hd,
               const int32_t *positions, const int32_t *qstart, const int32_t *ctx_lens,
               const int32_t *btab, int mbps, const void *kc, const void *vc, int bs, float scale,
               int window, T *out, int nsplit, float *part_o, float2 *part_ml, float vscale) {
    cudaError_t e = cudaSuccess;
    if (bytes > 48 * 1024)
        e = cudaFuncSetAttribute(attention_kernel<T, TC>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != cudaSuccess) return e;
    ci_cu_launch(attention_kernel<T, TC>, grid, ATT_THREADS, bytes, st, qkv, S, H, KV, hd,
                 positions, qstart, ctx_lens, btab, mbps, (const TC *)kc, (const TC *)vc, bs, scale,
                 window, out, nsplit, part_o, part_ml, vscale);
    if (nsplit > 1)
        ci_cu_launch(attention_combine_kernel<T>, dim3((unsigned)grid.x, (unsigned)H),
                     hd < 128 ? hd : 128, 0, st, H, hd, nsplit, part_o, part_ml, out);
    return cudaGetLastError();
}

extern "C" int ci_cu_attention(ci_cu_stream st, int bf16, const void *qkv, int ntok, int S, int H,
                               int KV, int hd, const int32_t *positions, const int32_t *query_start,
                               const int32_t *context_lens, const int32_t *block_tables,
                               int max_blocks_per_seq, const void *kc, const void *vc,
                               int block_size, float scale, int window, void *out, int max_ctx,
                               int max_query_len, int num_decode, int num_sms, float *ws,
                               int64_t ws_floats, int kv_fp8, float k_scale, float v_scale,
                               int num_blocks) {
    if (ntok <= 0) return cudaSuccess;
    /* batches with prefill: tensor-core kernel (cuda_prefill_attention.cu).
     * The leading single-token sequences of a mixed batch (the scheduler
     * puts decodes first) go to the decode kernel instead: in the prefill
     * kernel each would fill a whole query tile for one row, and each query
     * head would stream the context apart (CINFER_ATT_SPLIT=0: no split) */
    if (bf16 && (hd == 64 || hd == 128) && max_query_len > 1) {
        static const int split = !getenv("CINFER_ATT_SPLIT") || atoi(getenv("CINFER_ATT_SPLIT"));
        int nd = num_decode > 0 && num_decode < S && split ? num_decode : 0;
        if (nd > 0 && ci_cu_decode_attention_ok(bf16, H, KV, hd)) {
            int e = ci_cu_decode_attention(st, qkv, nd, H, KV, hd, positions, query_start,
                                           context_lens, block_tables, max_blocks_per_seq, kc, vc,
                                           block_size, scale, window, out, num_sms, ws, ws_floats,
                                           kv_fp8, k_scale, v_scale);
            if (e != cudaSuccess) return e;
            const int64_t bt_off = (int64_t)nd * max_blocks_per_seq;
            return ci_cu_prefill_attention(
                st, qkv, ntok, S - nd, H, KV, hd, positions, query_start + nd, context_lens + nd,
                block_tables + bt_off, max_blocks_per_seq, kc, vc, block_size, scale, window, out,
                max_query_len, kv_fp8, k_scale, v_scale, num_blocks);
        }
        return ci_cu_prefill_attention(st, qkv, ntok, S, H, KV, hd, positions, query_start,
                                       context_lens, block_tables, max_blocks_per_seq, kc, vc,
                                       block_size, scale, window, out, max_query_len, kv_fp8,
                                       k_scale, v_scale, num_blocks);
    }
    if (max_query_len == 1) { /* pure decode: split from the context bound, not the hint */
        if (ci_cu_decode_attention_ok(bf16, H, KV, hd))
            return ci_cu_decode_attention(st, qkv, S, H, KV, hd, positions, query_start,
                                          context_lens, block_tables, max_blocks_per_seq, kc, vc,
                                          block_size, scale, window, out, num_sms, ws, ws_floats,
                                          kv_fp8, k_scale, v_scale);
        max_ctx = max_blocks_per_seq * block_size;
    }
    if (window > 0 && max_ctx > window) max_ctx = window; /* keys per query (a layer constant) */
    int G = H / KV;
    /* split-K (flash-decoding) when (token, kv head) CTAs cannot fill the
     * GPU and the context is long: ~128 keys per split, <= 2 waves */
    int nsplit = 1;
    int64_t ctas = (int64_t)ntok * KV;
    if (ws && max_ctx >= 256 && ctas < 2 * (int64_t)num_sms) {
        int64_t want = (2 * (int64_t)num_sms + ctas - 1) / ctas;
        int64_t by_len = (max_ctx + 127) / 128;
        if (want > by_len) want = by_len;
        if (want > 64) want = 64;
        int64_t per = (int64_t)ntok * H * (hd + 2); /* floats per split */
        while (want > 1 && want * per > ws_floats)
            want--;
        nsplit = (int)want;
    }
    size_t floats = (size_t)G * hd + (size_t)ATT_TILE * (hd + 1) + (size_t)ATT_TILE * hd +
                    (size_t)G * ATT_TILE + 3 * (size_t)G;
    size_t bytes = floats * sizeof(float);
    dim3 grid((unsigned)ntok, (unsigned)KV, (unsigned)nsplit);
    float *part_o = ws;
    float2 *part_ml = nsplit > 1 ? (float2 *)(ws + (int64_t)ntok * H * nsplit * hd) : nullptr;
    cudaError_t e = cudaSuccess;
    if (!kv_fp8 && bf16 && G <= ATT2_GMAX && ATT_THREADS % (hd / 4) == 0) {
        size_t b2 = att2_smem_bytes(G, hd);
        if (b2 > 48 * 1024)
            e = cudaFuncSetAttribute(attention_bf16_kernel,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)b2);
        if (e != cudaSuccess) return e;
        ci_cu_launch(attention_bf16_kernel, grid, ATT_THREADS, b2, st, (const __nv_bfloat16 *)qkv,
                     S, H, KV, hd, positions, query_start, context_lens, block_tables,
                     max_blocks_per_seq, (const __nv_bfloat16 *)kc, (const __nv_bfloat16 *)vc,
                     block_size, scale, window, (__nv_bfloat16 *)out, nsplit, part_o, part_ml);
        if (nsplit > 1)
            ci_cu_launch(attention_combine_kernel<__nv_bfloat16>, dim3((unsigned)ntok, (unsigned)H),
                         hd < 128 ? hd : 128, 0, st, H, hd, nsplit, part_o, part_ml,
                         (__nv_bfloat16 *)out);
        return cudaGetLastError();
    }
    CI_CU_DISPATCH(bf16, {
        e = kv_fp8 ? launch_generic<T, uint8_t>(
                         grid, bytes, st, (const T *)qkv, S, H, KV, hd, positions, query_start,
                         context_lens, block_tables, max_blocks_per_seq, kc, vc, block_size,
                         scale * k_scale, window, (T *)out, nsplit, part_o, part_ml, v_scale)
                   : launch_generic<T, T>(grid, bytes, st, (const T *)qkv, S, H, KV, hd, positions,
                                          query_start, context_lens, block_tables,
                                          max_blocks_per_seq, kc, vc, block_size, scale, window,
                                          (T *)out, nsplit, part_o, part_ml, 1.0f);
    });
    if (e != cudaSuccess) return e;
    return cudaGetLastError();
}
