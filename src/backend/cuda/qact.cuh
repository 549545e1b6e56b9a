/* qact.cuh — W8A8 activation quantization of one row per CTA, shared by
 * the standalone kernel (cuda_qmatmul.cu's qact) and the producers that
 * write the FP8 / INT8 GEMM's input straight from registers (RMSNorm in
 * cuda_norm.cu, SwiGLU in cuda_elementwise.cu): s = amax / 448 (1 when 0)
 * per row or per 128 columns (or a static scale per row), q = e4m3(x / s)
 * (kv_fp8.cuh's store, saturating at 448); INT8 (i8): s = amax / 127,
 * q = clamp(rint(x / s), -128, 127): the CPU twin's bytes either way.
 * Scales: [n_pad] per row, or [K / 128][n_pad] (cuBLASLt's VEC128 layout).
 * The values quantized are the activation dtype's (BF16 rounded), so a
 * producer that quantizes in place gives the bytes the standalone kernel
 * gives for its stored output. */
#ifndef CINFER_BACKEND_CUDA_QACT_CUH
#define CINFER_BACKEND_CUDA_QACT_CUH

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/kv_fp8.cuh"

/* where one matmul's quantized activations go */
struct ci_qact_out {
    uint8_t *xq; /* [n_pad][K] E4M3 */
    float *sc;   /* the scales */
    int K, n_pad;
    int group;   /* K (per row) or 128 */
    float fixed; /* > 0: a static scale for every row (per row only), not amax / 448 */
    int i8;      /* INT8 codes (per row only), not E4M3 */
};

/* INT8 of v / s as a byte (util/qweight.h's ci_int8_round) */
__device__ __forceinline__ uint8_t ci_i8_enc(float v, float s) {
    const float r = fminf(fmaxf(rintf(__fdiv_rn(v, s)), -128.0f), 127.0f);
    return (uint8_t)(int8_t)r;
}

__device__ __forceinline__ uint2 ci_qact_enc8(const float *v, float s, int i8) {
    uint32_t lo = 0, hi = 0;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        lo |= (uint32_t)(i8 ? ci_i8_enc(v[j], s) : ci_fp8_enc(v[j], s)) << (8 * j);
        hi |= (uint32_t)(i8 ? ci_i8_enc(v[j + 4], s) : ci_fp8_enc(v[j + 4], s)) << (8 * j);
    }
    return make_uint2(lo, hi);
}

__device__ __forceinline__ float ci_qact_scale(float amax, int i8) {
    return amax > 0.0f ? __fdiv_rn(amax, i8 ? 127.0f : 448.0f) : 1.0f;
}

/* a padding row (row >= n): zero codes, scale 1 */
__device__ __forceinline__ void ci_qact_pad_row(const ci_qact_out &q, int row) {
    const int64_t base = (int64_t)row * q.K;
    for (int v = threadIdx.x; v < q.K / 8; v += blockDim.x)
        *(uint2 *)(q.xq + base + v * 8) = make_uint2(0, 0);
    if (q.group == q.K) {
        if (threadIdx.x == 0) q.sc[row] = 1.0f;
    } else {
        for (int g = threadIdx.x; g < q.K / q.group; g += blockDim.x)
            q.sc[(int64_t)g * q.n_pad + row] = 1.0f;
    }
}

/* Row `row` held in registers: thread t's vector k (8 values) is vector
 * t + k blockDim.x of the row (valid below K / 8; blockDim.x a multiple of
 * 32, so a 128-column group is the 16 vectors of one half-warp). red: 32
 * floats of shared memory. Every thread of the block calls it. */
template <int VPT>
__device__ __forceinline__ void ci_qact_regs(const float (*v)[8], const ci_qact_out &q, int row,
                                             float *red) {
    const int nv = q.K / 8;
    const int64_t base = (int64_t)row * q.K;
    if (q.group != q.K) { /* 128-column groups */
#pragma unroll
        for (int k = 0; k < VPT; k++) {
            const int i = threadIdx.x + k * blockDim.x;
            float m = 0.0f;
            if (i < nv)
#pragma unroll
                for (int j = 0; j < 8; j++) m = fmaxf(m, fabsf(v[k][j]));
#pragma unroll
            for (int o = 8; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
            const float s = ci_qact_scale(m, q.i8);
            if (i < nv) {
                *(uint2 *)(q.xq + base + i * 8) = ci_qact_enc8(v[k], s, q.i8);
                if ((i & 15) == 0) q.sc[(int64_t)(i / 16) * q.n_pad + row] = s;
            }
        }
        return;
    }
    float m = 0.0f;
#pragma unroll
    for (int k = 0; k < VPT; k++)
        if (threadIdx.x + k * blockDim.x < nv)
#pragma unroll
            for (int j = 0; j < 8; j++) m = fmaxf(m, fabsf(v[k][j]));
    m = ci_warp_max(m);
    __syncthreads(); /* red may still be read by a previous reduction */
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    m = (threadIdx.x & 31) < (blockDim.x >> 5) ? red[threadIdx.x & 31] : 0.0f;
    const float s = q.fixed > 0.0f ? q.fixed : ci_qact_scale(ci_warp_max(m), q.i8);
#pragma unroll
    for (int k = 0; k < VPT; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < nv) *(uint2 *)(q.xq + base + i * 8) = ci_qact_enc8(v[k], s, q.i8);
    }
    if (threadIdx.x == 0) q.sc[row] = s;
}

#endif
