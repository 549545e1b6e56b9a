/* qgemv_tc.cuh — what the tensor-core GEMVs share (cuda_qmatmul.cu's INT4
 * tc/tc2, cuda_qgemv_fp8.cu's FP8 kernel): a CTA owns 16 weight rows, each
 * warp's mma.m16n8k16 C fragment holds (row g, token 2t / 2t + 1) and
 * (row g + 8, ...) for lane (g = lane / 4, t = lane % 4), and the warps'
 * fragments are summed through shared memory. */
#ifndef CINFER_BACKEND_CUDA_QGEMV_TC_CUH
#define CINFER_BACKEND_CUDA_QGEMV_TC_CUH

#include "backend/cuda/cuda_common.cuh"
#include "util/qweight.h"

/* The shift from a tile index (tiles of `tile` columns) to its scale group:
 * 31 for one group per row, log2(group_size / tile) when groups are a power
 * of two of tiles, -1 when the tensor-core GEMVs cannot take the groups. */
static inline int qt_group_shift(const ci_qweight *w, int64_t tile) {
    if (w->ngroups == 1) return 31;
    const int64_t k = w->group_size / tile;
    if (w->group_size % tile || k < 1 || (k & (k - 1))) return -1;
    return __builtin_ctzll((unsigned long long)k);
}

/* INT4 nibble pairs to BF16 (the tiled layout's decode, shared with the
 * INT4 GEMM): nibbles p and p + 4 of w as one bf16x2 of (q - zero).
 * ((w >> 4p) & 0x000F000F) | 0x43004300 = bf16 (128 + q) in both halves;
 * nzz: bf16x2 of -(128 + zero); one fma.bf16x2 (v * 1 + nzz) keeps the
 * subtraction a single instruction on sm_80 and sm_90 alike (__hsub2 on
 * bf16 compiled to several) */
__device__ __forceinline__ uint32_t qt_pair(uint32_t w, int p, uint32_t nzz) {
    /* one lop3 for the and + or ((a & b) | c = 0xEA), its two constants in
     * registers: written as C, the compiler emitted two (a LOP3 takes one
     * immediate), 15 instructions per 8 weights where 11 do (ncu, H200) */
    uint32_t v, r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;"
        : "=r"(v)
        : "r"(w >> (4 * p)), "r"(0x000F000Fu), "r"(0x43004300u));
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(v), "r"(0x3F803F80u), "r"(nzz));
    return r;
}

/* bf16x2 of -(128 + z) in both halves */
__device__ __forceinline__ uint32_t qt_zz(int z) {
    uint32_t h = 0xC300u | (uint32_t)z;
    return h | h << 16;
}

/* c += a (16x16, row) . b (16x8, col), f32 accumulate; F16: f16 inputs, else bf16 */
template <bool F16>
__device__ __forceinline__ void qt_mma(float *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                       uint32_t b0, uint32_t b1) {
    if constexpr (F16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* The 8 k-steps of one tile: a, b = 16 bytes of rows g and g + 8 (32
 * columns 128 kt + 32 t .., the tiled layout's interleaved nibbles:
 * qt_pair(word, p) = columns 2p, 2p + 1 of the word's 8), zza / zzb their
 * -(128 + zero), xt = x at those columns; c += the tile's (q - zero) . x
 * sums. Each bf16x2 of weights meets the 32-bit word of x holding the same
 * two columns, as loaded (the natural nibble order took 4 byte permutes a
 * word of x to pair columns i and i + 4). */
template <bool XSMEM = false> /* x staged in shared memory (else read through L1 / L2) */
__device__ __forceinline__ void qt_tile(float *c, uint4 a, uint4 b, uint32_t zza, uint32_t zzb,
                                        const uint4 *__restrict__ xt) {
    const uint32_t wa4[4] = {a.x, a.y, a.z, a.w}, wb4[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        /* x columns 128 kt + 32 t + 8 j .. + 7 */
        const uint4 xv = XSMEM ? xt[j] : __ldg(xt + j);
        /* k-step h: columns 4h, 4h + 1 (k 2t, 2t + 1) and 4h + 2, 4h + 3 (k 2t + 8, + 9) */
        qt_mma<false>(c, qt_pair(wa4[j], 0, zza), qt_pair(wb4[j], 0, zzb), qt_pair(wa4[j], 1, zza),
                      qt_pair(wb4[j], 1, zzb), xv.x, xv.y);
        qt_mma<false>(c, qt_pair(wa4[j], 2, zza), qt_pair(wb4[j], 2, zzb), qt_pair(wa4[j], 3, zza),
                      qt_pair(wb4[j], 3, zzb), xv.z, xv.w);
    }
}

/* The CTA's 16 rows: each warp's C fragment ((row g, col 2t), (row g,
 * col 2t + 1), (row g + 8, ...)) into red, summed over the W warps; the
 * first 16 N threads add the bias and store (acc: add into y, ci_st_out). */
template <int N> __device__ __forceinline__ void qt_red_put(float (*red)[16][N], const float *tot) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    if (2 * t < N) {
        red[warp][g][2 * t] = tot[0];
        red[warp][g + 8][2 * t] = tot[2];
    }
    if (2 * t + 1 < N) {
        red[warp][g][2 * t + 1] = tot[1];
        red[warp][g + 8][2 * t + 1] = tot[3];
    }
}
/* ... after a barrier over the W warps: row r's sum for token n */
template <int N, int W>
__device__ __forceinline__ float qt_red_sum(float (*red)[16][N], int r, int n) {
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < W; k++)
        sum += red[k][r][n];
    return sum;
}
/* ... the sums out */
template <int N, int W, typename OutT>
__device__ __forceinline__ void qt_red_out(float (*red)[16][N], int r0, int out,
                                           const float *__restrict__ bias, OutT *__restrict__ y,
                                           int acc) {
    if (threadIdx.x < 16 * N) {
        const int r = threadIdx.x / N, n = threadIdx.x % N;
        const float sum = qt_red_sum<N, W>(red, r, n);
        if (r0 + r < out)
            ci_st_out(y + (int64_t)n * out, r0 + r, bias ? sum + bias[r0 + r] : sum, acc);
    }
}
template <int N, int W, typename OutT>
__device__ __forceinline__ void qt_reduce(float (*red)[16][N], const float *tot, int r0, int out,
                                          const float *__restrict__ bias, OutT *__restrict__ y,
                                          int acc) {
    qt_red_put<N>(red, tot);
    __syncthreads();
    qt_red_out<N, W>(red, r0, out, bias, y, acc);
}

#endif
