/* qgemv_epi.cuh — the epilogues of the tensor-core GEMVs that fuse a
 * decode layer's small kernels (cuda_qgemv_fp8.cu's 8-bit kernel,
 * cuda_qgemv_int4_fused.cu's INT4 one): after the CTA's warps have their
 * partial sums of its 16 rows, each row's product (times the token's scale:
 * the deferred norm's 1 / rms, or 1) is rounded as its store would round it
 * and then stored (EPI 0), rotated with its rope pair and written to y and
 * the KV cache (EPI 1: BF16 cache, 2: E4M3), or, the CTA holding gate rows
 * 0..7 and up rows 8..15 of 8 units, turned into silu(gate) * up with
 * swiglu_vec_kernel's arithmetic (EPI 3, y [N][out / 2]). */
#ifndef CINFER_BACKEND_CUDA_QGEMV_EPI_CUH
#define CINFER_BACKEND_CUDA_QGEMV_EPI_CUH

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/qgemv_tc.cuh"
#include "backend/cuda/rope_epi.cuh"

#include <type_traits>

/* tot: the thread's C fragment sums; red / ys: the kernel's shared arrays;
 * row(lr): the weight row of the CTA's row lr (its bias, EPI 0's store;
 * EPI 1 / 2 store at ci_rope_rows' rows, EPI 3 at unit 8 blk + lr);
 * scale(n, s): token n's sum s scaled (by the deferred norm's 1 / rms, or
 * s as it is); blk: the CTA's 16-row block (blockIdx.x, or the block a
 * CTA of several is at). Every thread of the CTA calls it (two barriers;
 * red may be written again once it returns). */
template <int N, int W, int EPI, typename Row, typename Scale>
__device__ __forceinline__ void qt_epi(float (*red)[16][N], float (*ys)[N], const float *tot,
                                       Row row, Scale scale, const float *__restrict__ bias,
                                       __nv_bfloat16 *__restrict__ y, int out,
                                       const ci_cu_rope_epi &rope, int64_t blk) {
    qt_red_put<N>(red, tot);
    __syncthreads();
    const int lr = threadIdx.x / N, n = threadIdx.x % N;
    if (threadIdx.x < 16 * N) { /* the product, rounded as its store would */
        const float sum = scale(n, qt_red_sum<N, W>(red, lr, n));
        ys[lr][n] = ci_round(bias ? sum + bias[row(lr)] : sum, y);
    }
    __syncthreads();
    if constexpr (EPI == 0) {
        if (threadIdx.x < 16 * N) ci_st(y + (int64_t)n * out, row(lr), ys[lr][n]);
    } else if constexpr (EPI == 3) {
        if (threadIdx.x < 8 * N) { /* swiglu_vec_kernel's arithmetic (ci_swiglu8) */
            const float a = ys[lr][n], b = ys[lr + 8][n];
            ci_st(y + (int64_t)n * (out / 2), 8 * blk + lr, a / (1.0f + __expf(-a)) * b);
        }
    } else if (threadIdx.x < 16 * N) {
        using TC = typename std::conditional<EPI == 2, uint8_t, __nv_bfloat16>::type;
        const ci_rope_rows rr(rope, (int)blk);
        const int i = rr.pair(lr);
        const float *cs = rope.cos_sin + (int64_t)rope.positions[n] * rope.hd;
        ci_rope_epi_put<TC>(rope, rr.head, rr.dim(rope, lr), lr < 8, ys[lr][n], ys[lr ^ 8][n],
                            __ldg(cs + i), __ldg(cs + rope.hd / 2 + i), y + (int64_t)n * out,
                            rr.row(rope, lr), rope.slots[n]);
    }
}

#endif
