/* cuda_qmatmul.cu — kernels for quantized weights (util/qweight.h): a
 * weight-streaming GEMV for n <= 4 activation rows that dequantizes in
 * registers, a dequantize-to-activation-dtype kernel that feeds the dense
 * cuBLASLt GEMM for larger n (prefill), and the activation quantization of
 * W8A8 weights (qact, for cuBLASLt's FP8 GEMM). The GEMVs compute the
 * products of ci_qweight_dequant_row exactly: (q - zero) * scale for INT4,
 * e4m3(q) * scale for FP8, accumulated in f32.
 *
 * The GEMVs (CINFER_QGEMV / ci_cu_qgemv_select; "auto", the default, takes
 * tc2 or tc for INT4 weights with BF16 activations and 128-column groups,
 * else vec for weights with rows enough to fill the GPU, split for the
 * rest): "tc" and "tc2" dequantize INT4 in registers into bf16 mma.sync
 * fragments (see qgemv_tc_kernel); "split" and "vec" stream 16-byte chunks of four rows at
 * a time (qv_chunk's f32 arithmetic), split with 32..256 threads per row
 * group and two chunks in flight per thread, vec with one warp per row
 * group; "scalar", one warp per row and a 32-bit word per lane, is what
 * act-order (g_idx) weights and unaligned
 * shapes run. Weights are read with the evict-first hint; x through L1/L2. */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/qact.cuh"
#include "backend/cuda/qgemv_tc.cuh"
#include "util/qweight.h"

#include <stdlib.h>
#include <string.h>

#define QGEMV_WARPS 8

__device__ __forceinline__ float fp8_e4m3(uint32_t v) {
    uint32_t s = (v & 0x80u) << 24, e = (v >> 3) & 0xFu, m = v & 7u;
    if (e == 15 && m == 7) return __int_as_float(0x7fc00000);
    if (e == 0) return __uint_as_float(__float_as_uint((float)m * (1.0f / 512.0f)) | s);
    return __uint_as_float(s | ((e + 120) << 23) | (m << 20));
}

/* an FP8 or INT8 weight byte as a float (before its scale) */
template <int FMT> __device__ __forceinline__ float byte_value(uint32_t v) {
    if (FMT == CI_QW_INT8) return (float)(int)(int8_t)(uint8_t)v;
    return fp8_e4m3(v);
}

/* bytes of one packed row */
template <int FMT>
__device__ __forceinline__ int64_t row_bytes(const ci_qweight &w) {
    return FMT == CI_QW_INT4 ? w.cols / 2 : w.cols;
}

__device__ __forceinline__ int part_of(const ci_qweight &w, int64_t r) {
    int p = 0;
    while (p + 1 < w.nparts && r >= w.part_row0[p + 1]) p++;
    return p;
}

/* Weights e .. e+per-1 of row r (one 32-bit word) in f32. */
template <int FMT>
__device__ __forceinline__ void word_values(const ci_qweight &w, int64_t r, const int32_t *gi,
                                            int64_t c0, uint32_t word, float *v) {
    const float *s = w.scales + r * w.ngroups;
    if (FMT == CI_QW_INT4) {
        const uint8_t *z = w.zeros + r * w.ngroups;
        if (!gi) {
            int64_t g = c0 / w.group_size;
            float sc = s[g];
            int zz = z[g];
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] = (float)((int)((word >> (4 * j)) & 0xF) - zz) * sc;
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) {
                int g = gi[c0 + j];
                v[j] = (float)((int)((word >> (4 * j)) & 0xF) - (int)z[g]) * s[g];
            }
        }
    } else {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t g = gi ? gi[c0 + j] : (c0 + j) / w.group_size;
            v[j] = byte_value<FMT>((word >> (8 * j)) & 0xFF) * s[g];
        }
    }
}

template <int FMT, int N, typename T, typename OutT>
__global__ void __launch_bounds__(QGEMV_WARPS * 32)
    qgemv_kernel(ci_qweight w, const T *__restrict__ x, const float *__restrict__ bias,
                 OutT *__restrict__ y, int yacc) {
    ci_pdl_trigger();
    ci_pdl_wait();
    constexpr int PER = FMT == CI_QW_INT4 ? 8 : 4; /* weights per 32-bit word */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t words = w.cols / PER, out = w.rows;
    for (int64_t row = (int64_t)blockIdx.x * QGEMV_WARPS + warp; row < out;
         row += (int64_t)gridDim.x * QGEMV_WARPS) {
        const uint32_t *wr = (const uint32_t *)(w.q + row * row_bytes<FMT>(w));
        const int32_t *gi = w.g_idx ? w.g_idx + (int64_t)part_of(w, row) * w.cols : nullptr;
        float acc[N];
#pragma unroll
        for (int n = 0; n < N; n++) acc[n] = 0.0f;
        for (int64_t k = lane; k < words; k += 32) {
            float v[PER];
            word_values<FMT>(w, row, gi, k * PER, __ldcs(wr + k), v);
#pragma unroll
            for (int n = 0; n < N; n++) {
                const T *xr = x + (int64_t)n * w.cols + k * PER;
#pragma unroll
                for (int j = 0; j < PER; j++) acc[n] = fmaf(v[j], ci_ld(xr, j), acc[n]);
            }
        }
#pragma unroll
        for (int n = 0; n < N; n++) {
            float s = ci_warp_sum(acc[n]);
            if (lane == 0) ci_st_out(y + (int64_t)n * out, row, bias ? s + bias[row] : s, yacc);
        }
    }
}

/* ---- the vectorized GEMV: the common case (no g_idx, groups whole 16-byte
 * chunks). Each lane streams 16-byte chunks of ROWS rows at once (32 INT4 or
 * 16 FP8 weights per row), so x is loaded and converted once per ROWS rows,
 * and the scale group is one per chunk (no per-element division). Weights
 * become floats with a few integer ops instead of conversions:
 *  INT4: 0x3F800000 | q << 19 is the float 1 + q/16, so a chunk's
 *        sum((1 + q/16) x) = sx + sum(q x)/16 and
 *        sum((q - z) x) = 16 (part - sx) - z sx (exact q, f32 sums);
 *  FP8:  the E4M3 byte moved to the top of a word, shifted right by 4
 *        (arithmetic: the sign stays) and masked is the float e4m3 * 2^-120
 *        (exact, subnormal codes become f32 subnormals), times 2^120. */
#define QV_ROWS 4

__device__ __forceinline__ void qv_load_x(const float *p, float *v, int n) {
    for (int i = 0; i < n; i += 4) {
        float4 f = *(const float4 *)(p + i);
        v[i] = f.x;
        v[i + 1] = f.y;
        v[i + 2] = f.z;
        v[i + 3] = f.w;
    }
}
__device__ __forceinline__ void qv_load_x(const __nv_bfloat16 *p, float *v, int n) {
    for (int i = 0; i < n; i += 8) {
        uint4 u = *(const uint4 *)(p + i);
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            v[i + 2 * j] = __uint_as_float(w[j] << 16);
            v[i + 2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
        }
    }
}

/* weight j of a 32-bit word, as the float the chunk sums use (see above) */
template <int FMT>
__device__ __forceinline__ float qv_weight(uint32_t wd, int j) {
    if (FMT == CI_QW_INT4) {
        uint32_t b = j <= 4 ? wd << (19 - 4 * j) : wd >> (4 * j - 19);
        return __uint_as_float((b & 0x00780000u) | 0x3F800000u);
    }
    if (FMT == CI_QW_INT8) return byte_value<FMT>(wd >> (8 * j));
    uint32_t t = j == 3 ? wd : __byte_perm(wd, 0, 0x0444u | ((uint32_t)j << 12));
    return __uint_as_float((uint32_t)((int32_t)t >> 4) & 0x87F00000u) * 0x1p120f;
}

/* One 16-byte chunk (index c) of each of the QV_ROWS rows rr: wv holds
 * their bytes; adds scale * (chunk . x) into acc. */
template <int FMT, int N, typename T>
__device__ __forceinline__ void qv_chunk(const ci_qweight &w, const T *__restrict__ x, int K,
                                         const int *rr, const uint4 *wv, int c, int gshift,
                                         float (*acc)[N]) {
    constexpr int EPW = FMT == CI_QW_INT4 ? 8 : 4;
    constexpr int EPC = 4 * EPW;
    const int ng = (int)w.ngroups, c0 = c * EPC;
    const int g = ng == 1 ? 0 : gshift >= 0 ? c0 >> gshift : c0 / (int)w.group_size;
    float part[QV_ROWS][N], sx[N];
#pragma unroll
    for (int n = 0; n < N; n++) {
        sx[n] = 0.0f;
#pragma unroll
        for (int i = 0; i < QV_ROWS; i++) part[i][n] = 0.0f;
    }
#pragma unroll
    for (int q = 0; q < 4; q++) {
        float xv[N][EPW];
#pragma unroll
        for (int n = 0; n < N; n++) {
            qv_load_x(x + (int64_t)n * K + c0 + q * EPW, xv[n], EPW);
            if (FMT == CI_QW_INT4)
#pragma unroll
                for (int j = 0; j < EPW; j++) sx[n] += xv[n][j];
        }
#pragma unroll
        for (int i = 0; i < QV_ROWS; i++) {
            const uint32_t wd = q == 0 ? wv[i].x : q == 1 ? wv[i].y : q == 2 ? wv[i].z : wv[i].w;
#pragma unroll
            for (int j = 0; j < EPW; j++) {
                const float v = qv_weight<FMT>(wd, j);
#pragma unroll
                for (int n = 0; n < N; n++) part[i][n] = fmaf(v, xv[n][j], part[i][n]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < QV_ROWS; i++) {
        const int64_t si = (int64_t)rr[i] * ng + g;
        const float sc = w.scales[si];
        if (FMT == CI_QW_INT4) {
            const float z = (float)w.zeros[si];
#pragma unroll
            for (int n = 0; n < N; n++)
                acc[i][n] = fmaf(sc, 16.0f * part[i][n] - (16.0f + z) * sx[n], acc[i][n]);
        } else {
#pragma unroll
            for (int n = 0; n < N; n++) acc[i][n] = fmaf(sc, part[i][n], acc[i][n]);
        }
    }
}

template <int FMT, int N, typename T, typename OutT>
__global__ void __launch_bounds__(QGEMV_WARPS * 32)
    qgemv_vec_kernel(ci_qweight w, const T *__restrict__ x, const float *__restrict__ bias,
                     OutT *__restrict__ y, int gshift, int yacc) {
    constexpr int EPC = FMT == CI_QW_INT4 ? 32 : 16; /* weights per 16-byte chunk */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int K = (int)w.cols, out = (int)w.rows, chunks = K / EPC;
    const int64_t rb = FMT == CI_QW_INT4 ? K / 2 : K;
    /* the first chunk's loads are issued before the PDL wait (weights are
     * constant): they stream while the previous kernel finishes */
    uint4 wv[QV_ROWS];
    bool have = false;
    {
        const int r0 = (blockIdx.x * QGEMV_WARPS + warp) * QV_ROWS;
        if (r0 < out && lane < chunks) {
#pragma unroll
            for (int i = 0; i < QV_ROWS; i++)
                wv[i] = __ldcs((const uint4 *)(w.q + (int64_t)min(r0 + i, out - 1) * rb) + lane);
            have = true;
        }
    }
    ci_pdl_trigger();
    ci_pdl_wait();
    for (int r0 = (blockIdx.x * QGEMV_WARPS + warp) * QV_ROWS; r0 < out;
         r0 += gridDim.x * QGEMV_WARPS * QV_ROWS) {
        int rr[QV_ROWS];
#pragma unroll
        for (int i = 0; i < QV_ROWS; i++) rr[i] = min(r0 + i, out - 1);
        float acc[QV_ROWS][N];
#pragma unroll
        for (int i = 0; i < QV_ROWS; i++)
#pragma unroll
            for (int n = 0; n < N; n++) acc[i][n] = 0.0f;
        for (int c = lane; c < chunks; c += 32) {
            if (!have) {
#pragma unroll
                for (int i = 0; i < QV_ROWS; i++)
                    wv[i] = __ldcs((const uint4 *)(w.q + (int64_t)rr[i] * rb) + c);
            }
            have = false;
            qv_chunk<FMT, N, T>(w, x, K, rr, wv, c, gshift, acc);
        }
#pragma unroll
        for (int i = 0; i < QV_ROWS; i++)
#pragma unroll
            for (int n = 0; n < N; n++) {
                float s = ci_warp_sum(acc[i][n]);
                if (lane == 0 && r0 + i < out)
                    ci_st_out(y + (int64_t)n * out, r0 + i, bias ? s + bias[r0 + i] : s, yacc);
            }
    }
}

/* ---- the split-K GEMV (the default): TPR threads (a power of two, 32..256)
 * share each group of QV_ROWS rows, so a 4096-column INT4 row (128 chunks)
 * keeps 64 threads busy instead of one warp, and every thread has U chunks
 * of each row in flight before it decodes any (the loads of a chunk do not
 * wait for the arithmetic of the previous one). The chunk arithmetic is the
 * vectorized kernel's; per-thread sums are reduced over the warp, then over
 * the row group's warps through shared memory. */
#define QS_THREADS 256
#define QS_U 2

template <int FMT, int N, typename T, typename OutT>
__global__ void __launch_bounds__(QS_THREADS)
    qgemv_split_kernel(ci_qweight w, const T *__restrict__ x, const float *__restrict__ bias,
                       OutT *__restrict__ y, int gshift, int tpr, int yacc) {
    constexpr int EPC = FMT == CI_QW_INT4 ? 32 : 16;
    __shared__ float red[QS_THREADS / 32][QV_ROWS * N];
    const int K = (int)w.cols, out = (int)w.rows, chunks = K / EPC;
    const int groups = QS_THREADS / tpr, grp = threadIdx.x / tpr, t = threadIdx.x % tpr;
    const int r0 = (blockIdx.x * groups + grp) * QV_ROWS;
    const int64_t rb = FMT == CI_QW_INT4 ? K / 2 : K;
    int rr[QV_ROWS];
#pragma unroll
    for (int i = 0; i < QV_ROWS; i++) rr[i] = min(r0 + i, out - 1);
    float acc[QV_ROWS][N];
#pragma unroll
    for (int i = 0; i < QV_ROWS; i++)
#pragma unroll
        for (int n = 0; n < N; n++) acc[i][n] = 0.0f;
    /* the first loads are issued before the PDL wait (weights are constant):
     * they stream while the previous kernel finishes */
    uint4 wv[QS_U][QV_ROWS];
    auto load = [&](int c) {
#pragma unroll
        for (int u = 0; u < QS_U; u++)
            if (c + u * tpr < chunks)
#pragma unroll
                for (int i = 0; i < QV_ROWS; i++)
                    wv[u][i] = __ldcs((const uint4 *)(w.q + (int64_t)rr[i] * rb) + c + u * tpr);
    };
    if (r0 < out) load(t);
    ci_pdl_trigger();
    ci_pdl_wait();
    if (r0 < out) {
        for (int c = t; c < chunks; c += QS_U * tpr) {
            if (c != t) load(c);
#pragma unroll
            for (int u = 0; u < QS_U; u++)
                if (c + u * tpr < chunks)
                    qv_chunk<FMT, N, T>(w, x, K, rr, wv[u], c + u * tpr, gshift, acc);
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int i = 0; i < QV_ROWS; i++)
#pragma unroll
        for (int n = 0; n < N; n++) {
            float s = ci_warp_sum(acc[i][n]);
            if (lane == 0) red[warp][i * N + n] = s;
        }
    __syncthreads();
    /* the row group's first QV_ROWS * N threads add its warps' sums */
    const int wpg = tpr / 32;
    if (t < QV_ROWS * N) {
        const int i = t / N, n = t % N;
        float s = 0.0f;
        for (int k = 0; k < wpg; k++) s += red[grp * wpg + k][t];
        if (r0 + i < out)
            ci_st_out(y + (int64_t)n * out, r0 + i, bias ? s + bias[r0 + i] : s, yacc);
    }
}

/* ---- the tensor-core INT4 GEMV (BF16 activations, groups of 128k columns
 * or one per row): 16 rows per CTA, its 8 warps splitting the 128-column
 * tiles of K. Each lane loads 16 bytes (32 weights) of row lane/4 and of
 * row lane/4 + 8 per tile, and these are its A fragments of an
 * mma.m16n8k16 as they are: a dot product is summed in any order, so
 * logical k of k-step s is bound to the physical columns the lane holds.
 * Nibbles i and i + 4 of a word become one bf16x2 register with one shift
 * and one lop3, (w >> 4p) & 0x000F000F | 0x43004300 = bf16 (128 + q) in both
 * halves, and one bf16x2 fma adding -(128 + zero) leaves q - zero exactly.
 * The B fragment is x in the same order (lanes 4n..4n+3 hold row n of x,
 * n < N <= 8; lanes of rows >= N repeat row N - 1, their C columns are never
 * stored); the mma's f32 products of exact integers and bf16 x are the
 * reference's, and each tile's sums are scaled in f32 by its group's scale.
 * The decode itself is ~1.4 instructions per weight; index arithmetic and
 * the loads add to it (docs/kernels/qmatmul.md has ncu's count). */
#define QT_WARPS 8
#define QT_U 4

/* Rows g and g + 8 of the CTA's 16 and one tile kt of them, in the tiled
 * layout (whole 16-row blocks; the 1 KiB tile: 512 bytes of rows 0..7,
 * then of rows 8..15): 16 bytes of each, their zero points and scales
 * (group kt >> gshift; 31: one group per row); x: the lane's x row (row g,
 * or N - 1 for lanes of rows >= N: their C columns are never stored) at
 * column 32 t. */
struct qt_rows {
    const uint4 *pa; /* tile kt's 16 bytes of row g: pa[64 kt]; of row g + 8: pa[64 kt + 32] */
    const uint8_t *za, *zb;
    const float *sa, *sb;
    const uint4 *x;
};
struct qt_item {
    uint4 a, b;
    uint32_t za, zb;
    float sa, sb;
};

__device__ __forceinline__ qt_rows qt_rows_of(const ci_qweight &w, const __nv_bfloat16 *x, int xrow,
                                              int r0, int g, int t) {
    const int ng = (int)w.ngroups;
    const size_t ra = (size_t)(r0 + g), rb = ra + 8;
    qt_rows r;
    r.pa = (const uint4 *)(w.q + (size_t)r0 * (size_t)(w.cols / 2)) + (g * 4 + t);
    r.za = w.zeros + ra * ng;
    r.zb = w.zeros + rb * ng;
    r.sa = w.scales + ra * ng;
    r.sb = w.scales + rb * ng;
    r.x = (const uint4 *)(x + (size_t)xrow * (size_t)w.cols + 32 * t);
    return r;
}

__device__ __forceinline__ void qt_load(const qt_rows &r, int kt, int gshift, qt_item &it) {
    const int gi = kt >> gshift;
    it.a = __ldcs(r.pa + 64 * kt);
    it.b = __ldcs(r.pa + 64 * kt + 32);
    it.za = __ldg(r.za + gi);
    it.zb = __ldg(r.zb + gi);
    it.sa = __ldg(r.sa + gi);
    it.sb = __ldg(r.sb + gi);
}

/* tot += tile kt's scaled sums */
__device__ __forceinline__ void qt_step(float *tot, const qt_rows &r, const qt_item &it, int kt) {
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    qt_tile(c, it.a, it.b, qt_zz((int)it.za), qt_zz((int)it.zb), r.x + 16 * kt);
    tot[0] = fmaf(it.sa, c[0], tot[0]);
    tot[1] = fmaf(it.sa, c[1], tot[1]);
    tot[2] = fmaf(it.sb, c[2], tot[2]);
    tot[3] = fmaf(it.sb, c[3], tot[3]);
}

/* MINB 3: registers capped for 3 CTAs an SM (a few spill), for weights
 * whose 16-row blocks are 2-3 per SM: one wave, not two (qkv of
 * Llama-3-8B, 384 blocks on the H200's 132 SMs: 6.4 us vs 8.4; down_proj's
 * 256 blocks lose 12.3 -> 15.0 us to the spills, so only there) */
template <int N, typename OutT, bool ROLL, int MINB>
__global__ void __launch_bounds__(QT_WARPS * 32, MINB)
    qgemv_tc_kernel(ci_qweight w, const __nv_bfloat16 *__restrict__ x,
                    const float *__restrict__ bias, OutT *__restrict__ y, int gshift, int acc) {
    __shared__ float red[QT_WARPS][16][N];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int K = (int)w.cols, out = (int)w.rows, tiles = K / 128, r0 = blockIdx.x * 16;
    const qt_rows rows = qt_rows_of(w, x, min(g, N - 1), r0, g, t);
    /* weights, zero points and scales of QT_U tiles in flight: a scale
     * loaded only when its tile's sums are ready would put one memory
     * latency per tile on the critical path. ROLL: a slot takes its next
     * tile as soon as its tile is used (down_proj on the H200: 13.2 us vs
     * 15.1 for loading 4 then using 4; 8 rolling slots cost occupancy:
     * 20.3) */
    qt_item it[QT_U];
    auto load = [&](int kt0) {
#pragma unroll
        for (int u = 0; u < QT_U; u++)
            if (kt0 + u * QT_WARPS < tiles) qt_load(rows, kt0 + u * QT_WARPS, gshift, it[u]);
    };
    /* the first tiles are loaded before the PDL wait (weights are
     * constant): they stream while the previous kernel finishes */
    load(warp);
    ci_pdl_trigger();
    ci_pdl_wait();
    float tot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int kt0 = warp; kt0 < tiles; kt0 += QT_U * QT_WARPS) {
        if (!ROLL && kt0 != warp) load(kt0);
#pragma unroll
        for (int u = 0; u < QT_U; u++) {
            if (kt0 + u * QT_WARPS >= tiles) break;
            qt_step(tot, rows, it[u], kt0 + u * QT_WARPS);
            /* ROLL: slot u's next tile in flight as soon as it is free */
            if (ROLL && kt0 + (u + QT_U) * QT_WARPS < tiles)
                qt_load(rows, kt0 + (u + QT_U) * QT_WARPS, gshift, it[u]);
        }
    }
    qt_reduce<N, QT_WARPS>(red, tot, r0, out, bias, y, acc);
}

/* ---- "tc2": the same tiles, 4 warps per CTA, each warp's tiles
 * (warp, warp + 4, ...) double-buffered two at a time: the loads of items
 * i + 2, i + 3 are in flight while items i, i + 1 are decoded, so a warp
 * always has memory work outstanding (tc's warps load once, then only
 * compute). */
#define Q2_WARPS 4

template <int N, typename OutT>
__global__ void __launch_bounds__(Q2_WARPS * 32)
    qgemv_tc2_kernel(ci_qweight w, const __nv_bfloat16 *__restrict__ x,
                     const float *__restrict__ bias, OutT *__restrict__ y, int gshift, int acc) {
    __shared__ float red[Q2_WARPS][16][N];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int K = (int)w.cols, out = (int)w.rows, tiles = K / 128, r0 = blockIdx.x * 16;
    const qt_rows rows = qt_rows_of(w, x, min(g, N - 1), r0, g, t);
    const int items = (tiles - warp + Q2_WARPS - 1) / Q2_WARPS; /* item i: tile warp + 4 i */
    auto load = [&](qt_item &it, int i) {
        if (i < items) qt_load(rows, warp + i * Q2_WARPS, gshift, it);
    };
    float tot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    auto compute = [&](const qt_item &it, int i) {
        if (i < items) qt_step(tot, rows, it, warp + i * Q2_WARPS);
    };
    qt_item p0, p1, q0, q1;
    load(p0, 0);
    load(p1, 1);
    load(q0, 2);
    load(q1, 3);
    ci_pdl_trigger();
    ci_pdl_wait();
    for (int i = 0; i < items; i += 4) {
        compute(p0, i);
        compute(p1, i + 1);
        load(p0, i + 4);
        load(p1, i + 5);
        compute(q0, i + 2);
        compute(q1, i + 3);
        load(q0, i + 6);
        load(q1, i + 7);
    }
    qt_reduce<N, Q2_WARPS>(red, tot, r0, out, bias, y, acc);
}

/* The tensor-core GEMV's preconditions: INT4, BF16 x, no act order, whole
 * 128-column tiles within one group, 16-byte aligned rows and x. */
static int qt_ok(const ci_qweight *w, const void *x, int xsize) {
    if (w->format != CI_QW_INT4 || xsize != 2 || w->g_idx || w->cols % 128) return 0;
    if (w->rows > INT32_MAX / 2 || w->cols > INT32_MAX / 2) return 0;
    if (qt_group_shift(w, 128) < 0) return 0; /* a shift finds a tile's group */
    return ((uintptr_t)w->q & 15) == 0 && ((uintptr_t)x & 15) == 0;
}

/* whether cuda_qweight.c may store w tiled: INT4 for BF16 activations
 * whose whole 16-row blocks the tensor-core GEMV takes */
extern "C" int ci_cu_qweight_tileable(const ci_qweight *w) {
    return w->format == CI_QW_INT4 && w->rows % 16 == 0 && w->rows >= 16 &&
           qt_ok(w, (const void *)(uintptr_t)16, 2) && w->rows * (w->cols / 2) < INT32_MAX;
}

/* The vectorized kernel's preconditions: no act order, whole chunks per
 * row and per scale group, 16-byte aligned weight rows and x rows. */
static int qv_ok(const ci_qweight *w, const void *x, int xsize) {
    const int epc = w->format == CI_QW_INT4 ? 32 : 16;
    if (w->g_idx || w->cols % epc || w->rows > INT32_MAX / 2 || w->cols > INT32_MAX / 2) return 0;
    if (w->ngroups != 1 && w->group_size % epc) return 0;
    if (((uintptr_t)w->q & 15) || ((uintptr_t)x & 15) || (w->cols * xsize) % 16) return 0;
    return 1;
}

/* 32-bit word k of packed row r in the natural nibble order (column 8k + i
 * in nibble i), from either layout (w.tiled: tile k / 16 of the row's
 * 16-row block, 512 bytes per half block, 16 per lane, nibbles interleaved:
 * cuda_qweight.c's tile_int4) */
__device__ __forceinline__ uint32_t qt_word(const ci_qweight &w, int64_t r, int64_t k) {
    const int64_t rbytes = w.format == CI_QW_INT4 ? w.cols / 2 : w.cols;
    if (!w.tiled) return *((const uint32_t *)(w.q + r * rbytes) + k);
    const int64_t b = 4 * k, g = r & 15;
    const uint32_t t = *(const uint32_t *)(w.q + (r - g) * rbytes + (b >> 6) * 1024 +
                                           (g >> 3) * 512 + ((g & 7) * 4 + ((b & 63) >> 4)) * 16 +
                                           (b & 15));
    uint32_t o = 0; /* slot p holds column 2p, slot p + 4 column 2p + 1 */
#pragma unroll
    for (int p = 0; p < 4; p++)
        o |= ((t >> (4 * p)) & 0xFu) << (8 * p) | ((t >> (4 * p + 16)) & 0xFu) << (8 * p + 4);
    return o;
}

template <int FMT, typename T> __global__ void qdequant_kernel(ci_qweight w, T *__restrict__ out) {
    ci_pdl_trigger();
    ci_pdl_wait();
    constexpr int PER = FMT == CI_QW_INT4 ? 8 : 4;
    const int64_t words = w.cols / PER, total = w.rows * words;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / words, k = i % words;
        const int32_t *gi = w.g_idx ? w.g_idx + (int64_t)part_of(w, r) * w.cols : nullptr;
        float v[PER];
        word_values<FMT>(w, r, gi, k * PER, qt_word(w, r, k), v);
#pragma unroll
        for (int j = 0; j < PER; j++) ci_st(out + r * w.cols, k * PER + j, v[j]);
    }
}

/* 8 (INT4) or 4 (FP8) values stored at once: 16 or 8 bytes of BF16, two
 * or one float4 of F32 (the row offset c is a multiple of per) */
template <int PER>
__device__ __forceinline__ void st_vals(__nv_bfloat16 *p, const float *v) {
    __nv_bfloat162 h[PER / 2];
#pragma unroll
    for (int j = 0; j < PER / 2; j++) h[j] = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
    if (PER == 8) *(uint4 *)p = *(const uint4 *)h;
    else *(uint2 *)p = *(const uint2 *)h;
}
template <int PER> __device__ __forceinline__ void st_vals(float *p, const float *v) {
#pragma unroll
    for (int j = 0; j < PER; j += 4) *(float4 *)(p + j) = make_float4(v[j], v[j + 1], v[j + 2], v[j + 3]);
}

/* Without act order (or sorted act order: w.perm scatters each value back
 * to its input column): a 2D grid (x: words of a row, y strides rows), 32-bit
 * index math and one vector store per word. The flat kernel above divides
 * 64-bit indices per word and stores element by element: a decode step of
 * the INT4 Llama-3-8B shape at batch 64 (dequantize + bf16 GEMM per
 * weight) took 48.8 ms with it, 14.0 ms with this one (H200). */
template <int FMT, typename T>
__global__ void qdequant_rows_kernel(ci_qweight w, T *__restrict__ out) {
    ci_pdl_trigger();
    ci_pdl_wait();
    constexpr int PER = FMT == CI_QW_INT4 ? 8 : 4;
    const int words = (int)(w.cols / PER), gsize = (int)w.group_size;
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= words) return;
    const int g = (k * PER) / gsize;
    for (int64_t r = blockIdx.y; r < w.rows; r += gridDim.y) {
        const uint32_t word = qt_word(w, r, k);
        const float sc = w.scales[r * w.ngroups + g];
        float v[PER];
        if (FMT == CI_QW_INT4) {
            const int zz = w.zeros[r * w.ngroups + g];
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] = (float)((int)((word >> (4 * j)) & 0xF) - zz) * sc;
        } else {
#pragma unroll
            for (int j = 0; j < PER; j++) v[j] = byte_value<FMT>((word >> (8 * j)) & 0xFF) * sc;
        }
        if (w.perm) { /* a sorted act order: back to the input's column order */
#pragma unroll
            for (int j = 0; j < PER; j++) ci_st(out + r * w.cols, w.perm[k * PER + j], v[j]);
        } else {
            st_vals<PER>(out + r * w.cols + (int64_t)k * PER, v);
        }
    }
}

extern "C" int ci_cu_qweight_shape_ok(const ci_qweight *w) {
    int per = w->format == CI_QW_INT4 ? 8 : 4;
    return w->cols % per == 0 && (w->group_size % per == 0 || w->group_size >= w->cols);
}

/* Which GEMV kernel: CINFER_QGEMV=auto (default) | tc | tc4 | tc2 | split |
 * vec | scalar (tc4: tc and the FP8 tc kernel with 4 tiles a warp loaded,
 * then used, as before their rolling loads), read once; ci_cu_qgemv_select
 * sets it (the test times each side by side).
 * A kernel whose preconditions a weight misses falls back to the next one
 * down: tc -> split/vec -> scalar. */
static int g_qgemv = -1; /* 0 split, 1 vec, 2 scalar, 3 auto, 4 tc, 5 tc2 */
static int g_tc_old = 0; /* "tc4": tc / FP8 tc as before the rolling loads (A/B) */

extern "C" void ci_cu_qgemv_select(const char *name) {
    g_tc_old = name && !strcmp(name, "tc4");
    g_qgemv = !name                     ? 3
              : !strcmp(name, "scalar") ? 2
              : !strcmp(name, "vec")    ? 1
              : !strcmp(name, "split")  ? 0
              : !strcmp(name, "tc")     ? 4
              : !strcmp(name, "tc4")    ? 4
              : !strcmp(name, "tc2")    ? 5
                                        : 3;
}

/* the current device converts E4M3 pairs in one instruction (sm_89+) */
static int fp8_cvt_native(void) {
    static int native = -1;
    if (native < 0) {
        int dev = 0, major = 0, minor = 0;
        native =
            cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
            major * 10 + minor >= 89;
    }
    return native;
}

/* threads per row group: about QS_U chunks per thread, 32..256 */
static int qs_tpr(int64_t chunks) {
    int tpr = 32;
    while (tpr < QS_THREADS && (int64_t)tpr * 2 * QS_U <= chunks) tpr *= 2;
    return tpr;
}

template <int N, bool ROLL, int MINB>
static int qt_launch_tc(ci_cu_stream st, int f32_out, const ci_qweight *w,
                        const __nv_bfloat16 *xb, const float *bias, void *y, int gshift,
                        unsigned grid, int acc) {
    if (f32_out)
        ci_cu_launch(qgemv_tc_kernel<N, float, ROLL, MINB>, grid, QT_WARPS * 32, 0, st, *w, xb,
                     bias, (float *)y, gshift, acc);
    else
        ci_cu_launch(qgemv_tc_kernel<N, __nv_bfloat16, ROLL, MINB>, grid, QT_WARPS * 32, 0, st, *w,
                     xb, bias, (__nv_bfloat16 *)y, gshift, acc);
    return cudaGetLastError();
}

/* The INT4 tensor-core GEMV for N <= 8 rows of x (qt_ok): tc (ROLL: its
 * rolling loads) or tc2 */
template <int N, bool ROLL>
static int qt_launch_u(ci_cu_stream st, int f32_out, const ci_qweight *w, const __nv_bfloat16 *xb,
                     const float *bias, void *y, int num_sms, int acc) {
    const int gshift = qt_group_shift(w, 128);
    const unsigned grid = (unsigned)((w->rows + 15) / 16);
    /* auto: tc2 where its row tiles fill the GPU 4 deep (Llama-3-8B's
     * gate/up: 25.3 us vs 26.5), tc for skinnier weights (o: 4.6 vs 6.4,
     * down: 16.3 vs 19.8 on the H200) */
    const int two = g_qgemv == 5 || (g_qgemv == 3 && (w->rows + 15) / 16 >= 4 * num_sms);
    if (two && f32_out)
        ci_cu_launch(qgemv_tc2_kernel<N, float>, grid, Q2_WARPS * 32, 0, st, *w, xb, bias,
                     (float *)y, gshift, acc);
    else if (two)
        ci_cu_launch(qgemv_tc2_kernel<N, __nv_bfloat16>, grid, Q2_WARPS * 32, 0, st, *w, xb, bias,
                     (__nv_bfloat16 *)y, gshift, acc);
    else if (ROLL && grid > 2u * (unsigned)num_sms && grid <= 3u * (unsigned)num_sms)
        return qt_launch_tc<N, ROLL, 3>(st, f32_out, w, xb, bias, y, gshift, grid, acc);
    else
        return qt_launch_tc<N, ROLL, 1>(st, f32_out, w, xb, bias, y, gshift, grid, acc);
    return cudaGetLastError();
}

template <int N>
static int qt_launch(ci_cu_stream st, int f32_out, const ci_qweight *w, const __nv_bfloat16 *xb,
                     const float *bias, void *y, int num_sms, int acc) {
    return g_tc_old ? qt_launch_u<N, false>(st, f32_out, w, xb, bias, y, num_sms, acc)
                    : qt_launch_u<N, true>(st, f32_out, w, xb, bias, y, num_sms, acc);
}

/* g_qgemv, CINFER_QGEMV's choice from the first call on */
static int qgemv_sel(void) {
    if (g_qgemv < 0) ci_cu_qgemv_select(getenv("CINFER_QGEMV"));
    return g_qgemv;
}

/* FP8 on the tensor cores: tc / tc2, and auto where cvt.e4m3x2 is an
 * instruction (sm_89+; older GPUs would emulate it); INT8 (its decode is
 * integer and f16 arithmetic) for tc / tc2 / auto */
static int tc8_selected(int fmt) {
    const int q = qgemv_sel();
    return (fmt == CI_QW_FP8 && (q >= 4 || (q == 3 && fp8_cvt_native()))) ||
           (fmt == CI_QW_INT8 && q >= 3);
}

/* whether the GEMV the selection picks for w at n rows stages x per CTA
 * and takes the fused matmul's prologue pro there: the 8-bit tensor-core
 * one, or for INT4 (auto's choice of the tc kernels) the fused kernel of
 * cuda_qgemv_int4_fused.cu, which runs only the deferred norm and no acc */
extern "C" int ci_cu_qgemv_pro_ok(const ci_qweight *w, int n, const void *x, int pro,
                                  const float *norm_w, int acc) {
    if (w->format == CI_QW_INT4)
        return qgemv_sel() == 3 && pro == CI_CU_PRO_RMSNORM_DEFER && !acc &&
               ci_cu_qgemv_int4_fused_ok(w, n, x, norm_w, NULL, 0);
    return tc8_selected(w->format) && n >= 1 && n <= 2 &&
           ci_cu_qgemv_fp8tc_pro_ok(w, n, x, pro, norm_w);
}

extern "C" int ci_cu_qgemv_swiglu_ok(const ci_qweight *w, int n, const void *x) {
    if (w->format == CI_QW_INT4) /* x's alignment and the norm's are the op's to check */
        return qgemv_sel() == 3 && ci_cu_qgemv_int4_fused_ok(w, n, x, NULL, NULL, 1);
    return ci_cu_qgemv_pro_ok(w, n, x, CI_CU_PRO_NONE, NULL, 0) && ci_cu_qgemv_fp8tc_swiglu_ok(w);
}

extern "C" int ci_cu_qgemv_rope_ok(const ci_qweight *w, const ci_cu_rope_epi *rope) {
    return ci_cu_qgemv_fp8tc_rope_ok(w, rope) && (w->format != CI_QW_INT4 || rope->neox);
}

extern "C" int ci_cu_qgemv_pro(ci_cu_stream st, int f32_out, const ci_qweight *w, const void *x,
                               int n, const float *bias, void *y, int num_sms, int acc, int pro,
                               const float *norm_w, float eps, const ci_cu_rope_epi *rope,
                               int swiglu) {
    if (!ci_cu_qgemv_pro_ok(w, n, x, pro, norm_w, acc)) return cudaErrorInvalidValue;
    if (w->format == CI_QW_INT4)
        return f32_out ? cudaErrorInvalidValue
                       : ci_cu_qgemv_int4_fused(st, w, x, n, bias, y, num_sms, norm_w, eps, rope,
                                                swiglu);
    return ci_cu_qgemv_fp8tc(st, f32_out, w, x, n, bias, y, acc, g_tc_old,
                             g_qgemv == 3 ? num_sms : 0, pro, norm_w, eps, rope, swiglu);
}

template <int FMT, int N, typename T>
static int qgemv_launch(ci_cu_stream st, int f32_out, const ci_qweight *w, const void *x,
                        const float *bias, void *y, int num_sms, int acc) {
    if (tc8_selected(FMT) && ci_cu_qgemv_fp8tc_ok(w, N, sizeof(T) == 2, x))
        return ci_cu_qgemv_fp8tc(st, f32_out, w, x, N, bias, y, acc, g_tc_old,
                                 g_qgemv == 3 ? num_sms : 0, CI_CU_PRO_NONE, NULL, 0.0f, NULL, 0);
    /* a tiled weight (cuda_qweight.c) runs only on the tensor-core kernels,
     * and they only on its interleaved nibbles */
    if (w->tiled) {
        if (FMT != CI_QW_INT4 || !qt_ok(w, x, (int)sizeof(T))) return cudaErrorInvalidValue;
        return qt_launch<N>(st, f32_out, w, (const __nv_bfloat16 *)x, bias, y, num_sms, acc);
    }
    if (g_qgemv != 2 && qv_ok(w, x, (int)sizeof(T))) {
        int gshift = -1;
        if (w->group_size > 0 && (w->group_size & (w->group_size - 1)) == 0)
            gshift = __builtin_ctzll((unsigned long long)w->group_size);
        /* auto: vec where its warps fill the GPU (4+ CTAs per SM: Llama-3-8B's
         * gate/up measured 10% faster so), split for skinnier weights */
        const int split = g_qgemv == 0 ||
                          (g_qgemv >= 3 && w->rows < (int64_t)QGEMV_WARPS * QV_ROWS * 4 * num_sms);
        if (split) {
            const int tpr = qs_tpr(w->cols / (FMT == CI_QW_INT4 ? 32 : 16));
            const int64_t per = (int64_t)(QS_THREADS / tpr) * QV_ROWS;
            const unsigned grid = (unsigned)((w->rows + per - 1) / per);
            if (f32_out)
                ci_cu_launch(qgemv_split_kernel<FMT, N, T, float>, grid, QS_THREADS, 0, st, *w,
                             (const T *)x, bias, (float *)y, gshift, tpr, acc);
            else
                ci_cu_launch(qgemv_split_kernel<FMT, N, T, __nv_bfloat16>, grid, QS_THREADS, 0, st,
                             *w, (const T *)x, bias, (__nv_bfloat16 *)y, gshift, tpr, acc);
            return cudaGetLastError();
        }
        int64_t per = QGEMV_WARPS * QV_ROWS, want = (w->rows + per - 1) / per;
        if (want > (int64_t)num_sms * 8) want = (int64_t)num_sms * 8;
        if (f32_out)
            ci_cu_launch(qgemv_vec_kernel<FMT, N, T, float>, (unsigned)want, QGEMV_WARPS * 32, 0,
                         st, *w, (const T *)x, bias, (float *)y, gshift, acc);
        else
            ci_cu_launch(qgemv_vec_kernel<FMT, N, T, __nv_bfloat16>, (unsigned)want,
                         QGEMV_WARPS * 32, 0, st, *w, (const T *)x, bias, (__nv_bfloat16 *)y,
                         gshift, acc);
        return cudaGetLastError();
    }
    int64_t want = (w->rows + QGEMV_WARPS - 1) / QGEMV_WARPS;
    if (want > (int64_t)num_sms * 8) want = (int64_t)num_sms * 8;
    if (f32_out)
        ci_cu_launch(qgemv_kernel<FMT, N, T, float>, (unsigned)want, QGEMV_WARPS * 32, 0, st, *w,
                     (const T *)x, bias, (float *)y, acc);
    else
        ci_cu_launch(qgemv_kernel<FMT, N, T, __nv_bfloat16>, (unsigned)want, QGEMV_WARPS * 32, 0,
                     st, *w, (const T *)x, bias, (__nv_bfloat16 *)y, acc);
    return cudaGetLastError();
}

template <int FMT, typename T>
static int qgemv_n(ci_cu_stream st, int f32_out, const ci_qweight *w, const void *x, int n,
                   const float *bias, void *y, int num_sms, int acc) {
    switch (n) {
    case 1: return qgemv_launch<FMT, 1, T>(st, f32_out, w, x, bias, y, num_sms, acc);
    case 2: return qgemv_launch<FMT, 2, T>(st, f32_out, w, x, bias, y, num_sms, acc);
    case 3: return qgemv_launch<FMT, 3, T>(st, f32_out, w, x, bias, y, num_sms, acc);
    case 4: return qgemv_launch<FMT, 4, T>(st, f32_out, w, x, bias, y, num_sms, acc);
    }
    return cudaErrorInvalidValue;
}

extern "C" int ci_cu_qgemv(ci_cu_stream st, int bf16, int f32_out, const ci_qweight *w,
                           const void *x, int n, const float *bias, void *y, int num_sms, int acc) {
    if (n < 1 || n > CI_CU_QGEMV_MAX_N || !ci_cu_qweight_shape_ok(w)) return cudaErrorInvalidValue;
    if (w->format == CI_QW_INT4)
        return bf16
                   ? qgemv_n<CI_QW_INT4, __nv_bfloat16>(st, f32_out, w, x, n, bias, y, num_sms, acc)
                   : qgemv_n<CI_QW_INT4, float>(st, f32_out, w, x, n, bias, y, num_sms, acc);
    if (w->format == CI_QW_INT8)
        return bf16
                   ? qgemv_n<CI_QW_INT8, __nv_bfloat16>(st, f32_out, w, x, n, bias, y, num_sms, acc)
                   : qgemv_n<CI_QW_INT8, float>(st, f32_out, w, x, n, bias, y, num_sms, acc);
    return bf16 ? qgemv_n<CI_QW_FP8, __nv_bfloat16>(st, f32_out, w, x, n, bias, y, num_sms, acc)
                : qgemv_n<CI_QW_FP8, float>(st, f32_out, w, x, n, bias, y, num_sms, acc);
}

/* A few more rows than the GEMV takes (decode at batch 5..24): the
 * tensor-core GEMV once per 8 rows of x. Each pass streams the weight like
 * a batch-1 step (its mma.m16n8k16 has 8 token columns either way), so up
 * to 3 passes beat dequantizing the whole weight to BF16 and back for the
 * dense GEMM (~4.5x the packed bytes written, then read); a row's sums are
 * the GEMV's, whatever rows share its pass. */
extern "C" int ci_cu_qgemv_tc_rows_ok(const ci_qweight *w, int n, const void *x) {
    qgemv_sel(); /* qt_launch reads the selection */
    return n >= 1 && n <= CI_CU_QGEMV_TC_MAX_N && w->tiled && ci_cu_qweight_shape_ok(w) &&
           qt_ok(w, x, 2);
}

extern "C" int ci_cu_qgemv_tc_rows(ci_cu_stream st, int f32_out, const ci_qweight *w,
                                   const void *x, int n, const float *bias, void *y, int num_sms,
                                   int acc) {
    if (!ci_cu_qgemv_tc_rows_ok(w, n, x)) return cudaErrorInvalidValue;
    const __nv_bfloat16 *xb = (const __nv_bfloat16 *)x;
    const size_t ysz = f32_out ? 4 : 2;
    for (int r0 = 0; r0 < n; r0 += 8) {
        const int k = n - r0 < 8 ? n - r0 : 8;
        const __nv_bfloat16 *xr = xb + (size_t)r0 * (size_t)w->cols;
        void *yr = (char *)y + (size_t)r0 * (size_t)w->rows * ysz;
        int e;
        switch (k) {
        case 1: e = qt_launch<1>(st, f32_out, w, xr, bias, yr, num_sms, acc); break;
        case 2: e = qt_launch<2>(st, f32_out, w, xr, bias, yr, num_sms, acc); break;
        case 3: e = qt_launch<3>(st, f32_out, w, xr, bias, yr, num_sms, acc); break;
        case 4: e = qt_launch<4>(st, f32_out, w, xr, bias, yr, num_sms, acc); break;
        case 5: e = qt_launch<5>(st, f32_out, w, xr, bias, yr, num_sms, acc); break;
        case 6: e = qt_launch<6>(st, f32_out, w, xr, bias, yr, num_sms, acc); break;
        case 7: e = qt_launch<7>(st, f32_out, w, xr, bias, yr, num_sms, acc); break;
        default: e = qt_launch<8>(st, f32_out, w, xr, bias, yr, num_sms, acc); break;
        }
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

/* kernel template K's instance for weight format f and output type T */
#define QDQ_FMT(f, K, T)                                                                           \
    ((f) == CI_QW_INT4 ? K<CI_QW_INT4, T> : (f) == CI_QW_INT8 ? K<CI_QW_INT8, T> : K<CI_QW_FP8, T>)

extern "C" int ci_cu_qdequant(ci_cu_stream st, int bf16, const ci_qweight *w, void *out) {
    if (!ci_cu_qweight_shape_ok(w)) return cudaErrorInvalidValue;
    int per = w->format == CI_QW_INT4 ? 8 : 4;
    if (!w->g_idx && w->cols / per <= INT32_MAX / 8 && ((uintptr_t)out & 15) == 0) {
        /* one grid row per weight row up to 65535, then y strides */
        dim3 grid((unsigned)((w->cols / per + 127) / 128),
                  (unsigned)(w->rows < 65535 ? w->rows : 65535));
        CI_CU_DISPATCH(bf16, {
            ci_cu_launch(QDQ_FMT(w->format, qdequant_rows_kernel, T), grid, 128, 0, st, *w,
                         (T *)out);
        });
        return cudaGetLastError();
    }
    unsigned blocks = ci_cu_blocks(w->rows * (w->cols / per), 256);
    CI_CU_DISPATCH(bf16, {
        ci_cu_launch(QDQ_FMT(w->format, qdequant_kernel, T), blocks, 256, 0, st, *w, (T *)out);
    });
    return cudaGetLastError();
}

/* W8A8 activations from x in memory (qact.cuh's rule and layout): one
 * block per row, each thread 8-element vectors (16-byte loads of BF16, two
 * of F32), 128-column groups a half-warp's 16 vectors (shuffles within
 * it), codes stored 8 bytes at a time. Rows n..n_pad-1 are zero, scale 1. */
#define QACT_THREADS 512

__device__ __forceinline__ void qact_load8(const float *p, float *v) {
    float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void qact_load8(const __nv_bfloat16 *p, float *v) { qv_load_x(p, v, 8); }

template <typename T>
__global__ void __launch_bounds__(QACT_THREADS)
    qact_kernel(const T *__restrict__ x, int n, int K, int group, int n_pad,
                uint8_t *__restrict__ xq, float *__restrict__ sc, float fixed, int i8) {
    ci_pdl_trigger();
    ci_pdl_wait();
    __shared__ float red[QACT_THREADS / 32];
    const int row = blockIdx.x, nv = K / 8;
    const int64_t base = (int64_t)row * K;
    if (row >= n) { /* padding rows */
        ci_qact_pad_row(ci_qact_out{xq, sc, K, n_pad, group, 0.0f, i8}, row);
        return;
    }
    if (group != K) { /* 128-column groups: 16 vectors, a half-warp each */
        const int nv32 = (nv + 31) / 32 * 32; /* whole warps in the shuffles */
        for (int v = threadIdx.x; v < nv32; v += blockDim.x) {
            float e[8] = {0}, m = 0.0f;
            if (v < nv) qact_load8(x + base + v * 8, e);
#pragma unroll
            for (int j = 0; j < 8; j++) m = fmaxf(m, fabsf(e[j]));
#pragma unroll
            for (int o = 8; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
            const float s = ci_qact_scale(m, i8);
            if (v < nv) {
                *(uint2 *)(xq + base + v * 8) = ci_qact_enc8(e, s, i8);
                if ((v & 15) == 0) sc[(int64_t)(v / 16) * n_pad + row] = s;
            }
        }
        return;
    }
    float m = 0.0f;
    for (int v = threadIdx.x; v < nv; v += blockDim.x) {
        float e[8];
        qact_load8(x + base + v * 8, e);
#pragma unroll
        for (int j = 0; j < 8; j++) m = fmaxf(m, fabsf(e[j]));
    }
    m = ci_warp_max(m);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    m = 0.0f;
#pragma unroll
    for (int w = 0; w < QACT_THREADS / 32; w++) m = fmaxf(m, red[w]);
    const float s = fixed > 0.0f ? fixed : ci_qact_scale(m, i8);
    for (int v = threadIdx.x; v < nv; v += blockDim.x) { /* the row again, from L1/L2 */
        float e[8];
        qact_load8(x + base + v * 8, e);
        *(uint2 *)(xq + base + v * 8) = ci_qact_enc8(e, s, i8);
    }
    if (threadIdx.x == 0) sc[row] = s;
}

extern "C" int ci_cu_qact(ci_cu_stream st, int bf16, const void *x, int n, int K, int group,
                          int n_pad, uint8_t *xq, float *scales, float fixed, int i8) {
    /* whole 8-element vectors, 16-byte aligned rows; groups of 128 or the row */
    if (n < 1 || n_pad < n || K % 16 || (group != K && group != 128) || K % group ||
        ((uintptr_t)x & 15) || ((uintptr_t)xq & 7))
        return cudaErrorInvalidValue;
    CI_CU_DISPATCH(bf16, {
        ci_cu_launch(qact_kernel<T>, (unsigned)n_pad, QACT_THREADS, 0, st, (const T *)x, n, K,
                     group, n_pad, xq, scales, fixed, i8);
    });
    return cudaGetLastError();
}
