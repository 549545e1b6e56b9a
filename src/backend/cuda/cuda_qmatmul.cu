/* cuda_qmatmul.cu — kernels for quantized weights (util/qweight.h): a
 * weight-streaming GEMV for n <= 4 activation rows that dequantizes in
 * registers, and a dequantize-to-activation-dtype kernel that feeds the dense
 * cuBLASLt GEMM for larger n (prefill). Both compute the products of
 * ci_qweight_dequant_row exactly: (q - zero) * scale for INT4, e4m3(q) *
 * scale for FP8, accumulated in f32.
 *
 * GEMV: one warp per output row (grid-stride), each lane reading 32-bit words
 * of the packed row (8 INT4 or 4 FP8 weights) with the evict-first hint; a
 * word never straddles a scale group (group sizes are multiples of 8 / 4,
 * checked at create), so its scale and zero are loaded once, unless the
 * weight has act-order g_idx (then per element). x is read through L1/L2. */
#include "backend/cuda/cuda_common.cuh"
#include "util/qweight.h"

#define QGEMV_WARPS 8

__device__ __forceinline__ float fp8_e4m3(uint32_t v) {
    uint32_t s = (v & 0x80u) << 24, e = (v >> 3) & 0xFu, m = v & 7u;
    if (e == 15 && m == 7) return __int_as_float(0x7fc00000);
    if (e == 0) return __uint_as_float(__float_as_uint((float)m * (1.0f / 512.0f)) | s);
    return __uint_as_float(s | ((e + 120) << 23) | (m << 20));
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
            v[j] = fp8_e4m3((word >> (8 * j)) & 0xFF) * s[g];
        }
    }
}

template <int FMT, int N, typename T, typename OutT>
__global__ void __launch_bounds__(QGEMV_WARPS * 32)
    qgemv_kernel(ci_qweight w, const T *__restrict__ x, const float *__restrict__ bias,
                 OutT *__restrict__ y) {
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
            if (lane == 0) ci_st(y + (int64_t)n * out, row, bias ? s + bias[row] : s);
        }
    }
}

template <int FMT, typename T>
__global__ void qdequant_kernel(ci_qweight w, T *__restrict__ out) {
    constexpr int PER = FMT == CI_QW_INT4 ? 8 : 4;
    const int64_t words = w.cols / PER, total = w.rows * words;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / words, k = i % words;
        const uint32_t *wr = (const uint32_t *)(w.q + r * row_bytes<FMT>(w));
        const int32_t *gi = w.g_idx ? w.g_idx + (int64_t)part_of(w, r) * w.cols : nullptr;
        float v[PER];
        word_values<FMT>(w, r, gi, k * PER, wr[k], v);
#pragma unroll
        for (int j = 0; j < PER; j++) ci_st(out + r * w.cols, k * PER + j, v[j]);
    }
}

extern "C" int ci_cu_qweight_shape_ok(const ci_qweight *w) {
    int per = w->format == CI_QW_INT4 ? 8 : 4;
    return w->cols % per == 0 && (w->group_size % per == 0 || w->group_size >= w->cols);
}

template <int FMT, int N, typename T>
static int qgemv_launch(ci_cu_stream st, int f32_out, const ci_qweight *w, const void *x,
                        const float *bias, void *y, int num_sms) {
    int64_t want = (w->rows + QGEMV_WARPS - 1) / QGEMV_WARPS;
    if (want > (int64_t)num_sms * 8) want = (int64_t)num_sms * 8;
    if (f32_out)
        qgemv_kernel<FMT, N, T, float>
            <<<(unsigned)want, QGEMV_WARPS * 32, 0, st>>>(*w, (const T *)x, bias, (float *)y);
    else
        qgemv_kernel<FMT, N, T, __nv_bfloat16><<<(unsigned)want, QGEMV_WARPS * 32, 0, st>>>(
            *w, (const T *)x, bias, (__nv_bfloat16 *)y);
    return cudaGetLastError();
}

template <int FMT, typename T>
static int qgemv_n(ci_cu_stream st, int f32_out, const ci_qweight *w, const void *x, int n,
                   const float *bias, void *y, int num_sms) {
    switch (n) {
    case 1: return qgemv_launch<FMT, 1, T>(st, f32_out, w, x, bias, y, num_sms);
    case 2: return qgemv_launch<FMT, 2, T>(st, f32_out, w, x, bias, y, num_sms);
    case 3: return qgemv_launch<FMT, 3, T>(st, f32_out, w, x, bias, y, num_sms);
    case 4: return qgemv_launch<FMT, 4, T>(st, f32_out, w, x, bias, y, num_sms);
    }
    return cudaErrorInvalidValue;
}

extern "C" int ci_cu_qgemv(ci_cu_stream st, int bf16, int f32_out, const ci_qweight *w,
                           const void *x, int n, const float *bias, void *y, int num_sms) {
    if (n < 1 || n > CI_CU_QGEMV_MAX_N || !ci_cu_qweight_shape_ok(w)) return cudaErrorInvalidValue;
    if (w->format == CI_QW_INT4)
        return bf16 ? qgemv_n<CI_QW_INT4, __nv_bfloat16>(st, f32_out, w, x, n, bias, y, num_sms)
                    : qgemv_n<CI_QW_INT4, float>(st, f32_out, w, x, n, bias, y, num_sms);
    return bf16 ? qgemv_n<CI_QW_FP8, __nv_bfloat16>(st, f32_out, w, x, n, bias, y, num_sms)
                : qgemv_n<CI_QW_FP8, float>(st, f32_out, w, x, n, bias, y, num_sms);
}

extern "C" int ci_cu_qdequant(ci_cu_stream st, int bf16, const ci_qweight *w, void *out) {
    if (!ci_cu_qweight_shape_ok(w)) return cudaErrorInvalidValue;
    int per = w->format == CI_QW_INT4 ? 8 : 4;
    unsigned blocks = ci_cu_blocks(w->rows * (w->cols / per), 256);
    CI_CU_DISPATCH(bf16, {
        if (w->format == CI_QW_INT4)
            qdequant_kernel<CI_QW_INT4, T><<<blocks, 256, 0, st>>>(*w, (T *)out);
        else
            qdequant_kernel<CI_QW_FP8, T><<<blocks, 256, 0, st>>>(*w, (T *)out);
    });
    return cudaGetLastError();
}
