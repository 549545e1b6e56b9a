/* cuda_elementwise.cu — the memory-bound one-pass kernels.
 *
 * gather_rows: copies whole rows (embedding lookup and the logits-row gather
 *   are both this): one CTA per output row, 16-byte loads when the row
 *   allows. Moves 2 x n x row_bytes.
 * swiglu: out = silu(gate) * up over [rows][inter], f32 math, grid-stride.
 *   BF16 with inter % 8 == 0 (every real model): 8 elements per thread step
 *   with 16-byte loads and stores (95% of 3.0 TB/s at 2048 x 14336 in
 *   bench/kernels/swiglu.cu, against 49% for the one-element loop kept for
 *   F32 and odd sizes). Moves 3 x rows x inter x elt.
 * swiglu_qact: the same (BF16), one CTA per row, the product quantized to
 *   E4M3 from registers (qact.cuh) instead of stored: a W8A8 down
 *   projection's input in one pass (the unfused pair stores the row, then
 *   reads it twice).
 * add_bias: y += bias (only used when cuBLASLt's bias epilogue is not
 *   available for a GEMM's types).
 * i8_scale: the INT8 W8A8 GEMM's epilogue (cuBLASLt's INT8 GEMM writes
 *   int32 sums and has no per-row / per-token scales): y = s_x s_w sum
 *   (+ bias), the CPU twin's order (cpu_qgemm_i8_vnni.c). 4 outputs per
 *   thread. Moves rows x cols x (4 + elt).
 * gather_cols: out[r][c] = x[r][perm[c]], x for a quantized weight stored
 *   in a sorted act order (util/qweight.h). One thread per element, its
 *   index read before the PDL wait (constant). Moves n x K x (2 elt + 4). */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/qact.cuh"

/* One CTA per output row; W is the vector width in bytes (16 or 1). */
template <typename V>
__global__ void gather_rows_kernel(const V *__restrict__ rows, int64_t row0, int64_t nrows,
                                   int64_t row_vecs, const int32_t *__restrict__ idx,
                                   V *__restrict__ out) {
    ci_pdl_trigger();
    ci_pdl_wait();
    int i = blockIdx.x;
    const int64_t r = (int64_t)idx[i] - row0;
    V *o = out + (int64_t)i * row_vecs;
    if (r < 0 || r >= nrows) {
        V z;
        memset(&z, 0, sizeof z);
        for (int64_t k = threadIdx.x; k < row_vecs; k += blockDim.x) o[k] = z;
        return;
    }
    const V *src = rows + (int64_t)r * row_vecs;
    for (int64_t k = threadIdx.x; k < row_vecs; k += blockDim.x) o[k] = src[k];
}

extern "C" int ci_cu_gather_rows(ci_cu_stream st, const void *rows, int64_t nrows,
                                 int64_t row_bytes, const int32_t *idx, int n, void *out) {
    return ci_cu_gather_rows_from(st, rows, 0, nrows, row_bytes, idx, n, out);
}

extern "C" int ci_cu_gather_rows_from(ci_cu_stream st, const void *rows, int64_t row0,
                                      int64_t nrows, int64_t row_bytes, const int32_t *idx, int n,
                                      void *out) {
    if (n <= 0) return cudaSuccess;
    int aligned = row_bytes % 16 == 0 && ((uintptr_t)rows % 16) == 0 && ((uintptr_t)out % 16) == 0;
    if (aligned) {
        int64_t vecs = row_bytes / 16;
        int th = vecs >= 256 ? 256 : (int)((vecs + 31) / 32 * 32);
        ci_cu_launch(gather_rows_kernel<uint4>, n, th, 0, st, (const uint4 *)rows, row0, nrows,
                     vecs, idx, (uint4 *)out);
    } else {
        ci_cu_launch(gather_rows_kernel<unsigned char>, n, 256, 0, st, (const unsigned char *)rows,
                     row0, nrows, row_bytes, idx, (unsigned char *)out);
    }
    return cudaGetLastError();
}

template <typename T>
__global__ void swiglu_kernel(const T *__restrict__ gu, int64_t rows, int64_t inter,
                              T *__restrict__ out) {
    ci_pdl_trigger();
    ci_pdl_wait();
    int64_t total = rows * inter;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / inter, i = e - r * inter;
        const T *g = gu + r * 2 * inter;
        float gv = ci_ld(g, i), uv = ci_ld(g, inter + i);
        ci_st(out, e, gv / (1.0f + __expf(-gv)) * uv);
    }
}

/* BF16, 8 elements per step: inter8 = inter / 8 16-byte vectors per row. */
__global__ void swiglu_vec_kernel(const uint4 *__restrict__ gu, int64_t rows, int64_t inter8,
                                  uint4 *__restrict__ out) {
    ci_pdl_trigger();
    ci_pdl_wait();
    int64_t total = rows * inter8;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / inter8, i = e - r * inter8;
        const uint4 g = gu[r * 2 * inter8 + i], u = gu[r * 2 * inter8 + inter8 + i];
        out[e] = ci_swiglu8(g, u);
    }
}

extern "C" int ci_cu_swiglu(ci_cu_stream st, int bf16, const void *gu, int64_t rows,
                            int64_t inter, void *out) {
    if (rows <= 0 || inter <= 0) return cudaSuccess;
    if (bf16 && inter % 8 == 0 && ((uintptr_t)gu % 16) == 0 && ((uintptr_t)out % 16) == 0) {
        ci_cu_launch(swiglu_vec_kernel, ci_cu_blocks(rows * inter / 8, 256), 256, 0, st,
                     (const uint4 *)gu, rows, inter / 8, (uint4 *)out);
        return cudaGetLastError();
    }
    CI_CU_DISPATCH(bf16, ci_cu_launch(swiglu_kernel<T>, ci_cu_blocks(rows * inter, 256), 256, 0, st,
                                      (const T *)gu, rows, inter, (T *)out));
    return cudaGetLastError();
}

template <int VPT>
__global__ void swiglu_qact_kernel(const uint4 *__restrict__ gu, int rows, ci_qact_out q8) {
    ci_pdl_trigger();
    ci_pdl_wait();
    __shared__ float red[32];
    const int row = blockIdx.x, nv = q8.K / 8;
    if (row >= rows) {
        ci_qact_pad_row(q8, row);
        return;
    }
    const uint4 *g = gu + (int64_t)row * 2 * nv;
    uint4 gv[VPT], uv[VPT];
#pragma unroll
    for (int k = 0; k < VPT; k++) { /* every load of the row in flight at once */
        const int i = threadIdx.x + k * blockDim.x;
        if (i < nv) gv[k] = g[i], uv[k] = g[nv + i];
    }
    float v[VPT][8];
#pragma unroll
    for (int k = 0; k < VPT; k++)
        if (threadIdx.x + k * blockDim.x < nv) ci_bf16x8(ci_swiglu8(gv[k], uv[k]), v[k]);
    ci_qact_regs<VPT>(v, q8, row, red);
}

/* 2, 4 or 8 vectors per thread, at most 512 threads (0: too wide) */
static int swiglu_qact_vpt(int64_t inter) {
    for (int vpt = 2; vpt <= 8; vpt *= 2)
        if ((inter / 8 + vpt - 1) / vpt <= 512) return vpt;
    return 0;
}

extern "C" int ci_cu_swiglu_qact_ok(int64_t inter, const void *gu, int group) {
    return inter % 8 == 0 && ((uintptr_t)gu % 16) == 0 && swiglu_qact_vpt(inter) &&
           (group == inter || (group == 128 && inter % 128 == 0));
}

extern "C" int ci_cu_swiglu_qact(ci_cu_stream st, const void *gu, int rows, int64_t inter,
                                 int group, int n_pad, uint8_t *xq, float *scales, float fixed,
                                 int i8) {
    if (rows <= 0 || n_pad < rows || !ci_cu_swiglu_qact_ok(inter, gu, group) ||
        ((uintptr_t)xq & 7))
        return cudaErrorInvalidValue;
    const int vpt = swiglu_qact_vpt(inter);
    const unsigned th = (unsigned)(((inter / 8 + vpt - 1) / vpt + 31) / 32 * 32);
    const ci_qact_out q8 = {xq, scales, (int)inter, n_pad, group, fixed, i8};
    const uint4 *g = (const uint4 *)gu;
    if (vpt == 2)
        ci_cu_launch(swiglu_qact_kernel<2>, (unsigned)n_pad, th, 0, st, g, rows, q8);
    else if (vpt == 4)
        ci_cu_launch(swiglu_qact_kernel<4>, (unsigned)n_pad, th, 0, st, g, rows, q8);
    else
        ci_cu_launch(swiglu_qact_kernel<8>, (unsigned)n_pad, th, 0, st, g, rows, q8);
    return cudaGetLastError();
}

template <typename T>
__global__ void add_bias_kernel(T *y, int64_t rows, int64_t cols, const float *__restrict__ b) {
    ci_pdl_trigger();
    ci_pdl_wait();
    int64_t total = rows * cols;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x)
        ci_st(y, e, ci_ld(y, e) + b[e % cols]);
}

template <typename T>
__global__ void i8_scale_kernel(const int4 *__restrict__ acc, int64_t rows, int cols,
                                const float *__restrict__ sx, const float *__restrict__ sw,
                                const float *__restrict__ b, T *__restrict__ y) {
    ci_pdl_trigger();
    ci_pdl_wait();
    const int64_t cq = cols / 4;
    for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < rows * cq;
         q += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = q / cq;
        const int c = (int)(q - r * cq) * 4;
        const int4 a = __ldcs(acc + q);
        const int av[4] = {a.x, a.y, a.z, a.w};
        const float s = sx[r];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float v = s * sw[c + j] * (float)av[j];
            if (b) v += b[c + j];
            ci_st(y, r * cols + c + j, v);
        }
    }
}

extern "C" int ci_cu_i8_scale(ci_cu_stream st, int bf16, const int32_t *acc, int64_t rows,
                              int cols, const float *sx, const float *sw, const float *bias,
                              void *y) {
    if (rows < 0 || cols <= 0 || cols % 4 || ((uintptr_t)acc & 15)) return cudaErrorInvalidValue;
    if (!rows) return cudaSuccess;
    CI_CU_DISPATCH(bf16, ci_cu_launch(i8_scale_kernel<T>, ci_cu_blocks(rows * (cols / 4), 256),
                                      256, 0, st, (const int4 *)acc, rows, cols, sx, sw, bias,
                                      (T *)y));
    return cudaGetLastError();
}

extern "C" int ci_cu_add_bias(ci_cu_stream st, int bf16, void *y, int64_t rows, int64_t cols,
                              const float *bias) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    CI_CU_DISPATCH(bf16, ci_cu_launch(add_bias_kernel<T>, ci_cu_blocks(rows * cols, 256), 256, 0,
                                      st, (T *)y, rows, cols, bias));
    return cudaGetLastError();
}

template <typename T>
__global__ void gather_cols_kernel(const T *__restrict__ x, int64_t total, int K,
                                   const int32_t *__restrict__ perm, T *__restrict__ out) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int c = (int)(i % K);
    const int src = i < total ? __ldg(perm + c) : 0;
    ci_pdl_trigger();
    ci_pdl_wait();
    if (i < total) out[i] = x[i - c + src];
}

extern "C" int ci_cu_gather_cols(ci_cu_stream st, int bf16, const void *x, int n, int K,
                                 const int32_t *perm, void *out) {
    if (n < 0 || K <= 0) return cudaErrorInvalidValue;
    const int64_t total = (int64_t)n * K;
    if (!total) return cudaSuccess;
    CI_CU_DISPATCH(bf16, {
        ci_cu_launch(gather_cols_kernel<T>, ci_cu_blocks(total, 256), 256, 0, st, (const T *)x,
                     total, K, perm, (T *)out);
    });
    return cudaGetLastError();
}

/* Reads every 16 bytes of buf (grid-stride) and writes nothing unless the
 * impossible happens (a sum the compiler cannot drop): evicts L2 with clean
 * lines, so the next kernel timed reads its operands from DRAM without a
 * write-back of anyone's dirty lines in its window (cuda_gemm.c's tuning). */
__global__ void l2_evict_kernel(const uint4 *__restrict__ buf, int64_t n, unsigned *sink) {
    unsigned acc = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const uint4 v = __ldcg(buf + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9E3779B9u && sink) *sink = acc;
}

extern "C" int ci_cu_l2_evict(ci_cu_stream st, const void *buf, int64_t bytes, int num_sms) {
    const int64_t n = bytes / 16;
    if (n <= 0) return cudaSuccess;
    l2_evict_kernel<<<num_sms > 0 ? 4 * num_sms : 512, 512, 0, st>>>((const uint4 *)buf, n,
                                                                      nullptr);
    return cudaGetLastError();
}
