/* swiglu.cu — kernel lab for the one-pass elementwise kernels, BF16:
 *
 * SwiGLU: out[r][i] = silu(gu[r][i]) * gu[r][inter + i] (gate|up fused in
 * one GEMM output row), Llama-3-8B inter 14336, tokens 1, 64, 2048.
 *   v0  naive: one thread per element, expf, no grid-stride loop
 *   v1  swiglu_kernel: grid-stride, scalar 2-byte loads, __expf (production
 *       until 2026-11-23; still the F32 / odd-size path)
 *   v2  production (swiglu_vec_kernel via ci_cu_swiglu): 16-byte loads and
 *       stores, 8 elements per thread step
 * Embedding gather: out[i] = table[ids[i]], table 128256 x 4096, tokens 1,
 * 64, 2048 (prefill embeds 2048 random rows).
 *   v0  byte copy (gather_rows_kernel<unsigned char>, production's path for
 *       unaligned rows)
 *   v1  production (ci_cu_gather_rows): 16-byte copies
 *
 * Each version is checked against a CPU reference on fresh random inputs
 * (output NaN-poisoned first, every element must be written; the gather
 * must be exact), then timed with CUDA events: median over 15 reps of the
 * mean of 20 back-to-back launches over rotated buffer copies (>= 256 MiB
 * touched, so reads come from HBM). GB/s: SwiGLU reads gate and up and
 * writes out (3 x rows x inter x 2 bytes); the gather reads and writes each
 * row once.
 *
 *   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Isrc \
 *        bench/kernels/swiglu.cu -o swiglu && ./swiglu [--quick]
 * (or: ninja -C build kernel_swiglu) */
#include "../../src/backend/cuda/cuda_elementwise.cu"
#include "lab.cuh"

typedef __nv_bfloat16 bf16;
static cudaStream_t st_lab;

__global__ void swiglu_v0(const bf16 *gu, int64_t rows, int64_t inter, bf16 *out) {
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= rows * inter) return;
    int64_t r = e / inter, i = e % inter;
    float g = __bfloat162float(gu[r * 2 * inter + i]), u = __bfloat162float(gu[r * 2 * inter + inter + i]);
    out[e] = __float2bfloat16_rn(g / (1.0f + expf(-g)) * u);
}

/* 8 elements (16 bytes) per thread step; inter % 8 == 0 */
static int lab_swiglu(bool quick) {
    const int64_t inter = quick ? 1024 : 14336;
    const char *names[] = {"v0 naive", "v1 scalar", "v2 vec16"};
    printf("%5s %-7s %-9s %9s %8s %8s %10s\n", "rows", "inter", "version", "us", "GB/s", "%3TB/s",
           "rel err");
    int bad = 0;
    std::vector<int> shapes = quick ? std::vector<int>{3} : std::vector<int>{1, 64, 2048};
    for (int rows : shapes) {
        size_t n = (size_t)rows * inter, bytes = 3 * n * 2;
        int copies = quick ? 1 : lab_copies(bytes);
        std::vector<uint16_t> hgu(2 * n), ho(n);
        for (auto &v : hgu) v = lab_bf16(3.0f * lab_frand());
        std::vector<float> ref(n);
        for (int r = 0; r < rows; r++)
            for (int64_t i = 0; i < inter; i++) {
                float g = lab_f32(hgu[r * 2 * inter + i]), u = lab_f32(hgu[r * 2 * inter + inter + i]);
                ref[r * inter + i] = lab_round((float)(g / (1.0 + std::exp(-(double)g)) * u));
            }
        bf16 *dgu, *dout;
        CK(cudaMalloc(&dgu, 2 * n * 2 * copies));
        CK(cudaMalloc(&dout, n * 2 * copies));
        CK(cudaMemcpy(dgu, hgu.data(), 2 * n * 2, cudaMemcpyHostToDevice));
        lab_replicate(dgu, 2 * n * 2, copies);
        for (int v = 0; v < 3; v++) {
            auto launch = [&](int c) {
                const bf16 *gu = dgu + c * 2 * n;
                bf16 *out = dout + c * n;
                if (v == 0)
                    swiglu_v0<<<(unsigned)((n + 255) / 256), 256, 0, st_lab>>>(gu, rows, inter, out);
                else if (v == 1) /* the one-element loop (production for F32 / odd sizes) */
                    swiglu_kernel<bf16><<<ci_cu_blocks((int64_t)n, 256), 256, 0, st_lab>>>(
                        gu, rows, inter, out);
                else /* production: ci_cu_swiglu takes the 16-byte kernel here */
                    CK((cudaError_t)ci_cu_swiglu(st_lab, 1, gu, rows, inter, out));
            };
            CK(cudaMemset(dout, 0xff, n * 2)); /* NaN poison */
            launch(0);
            CK(cudaGetLastError());
            CK(cudaMemcpy(ho.data(), dout, n * 2, cudaMemcpyDeviceToHost));
            double rel = lab_rel_err(ho.data(), ref.data(), n);
            bool ok = rel < 1e-2;
            bad += !ok;
            double us = lab_time_us(st_lab, copies, launch);
            double gbs = bytes / (us * 1e-6) / 1e9;
            printf("%5d %-7lld %-9s %9.2f %8.0f %7.1f%% %10.2e%s\n", rows, (long long)inter, names[v],
                   us, gbs, 100.0 * gbs / LAB_PEAK_GBS, rel, ok ? "" : "  FAIL");
            if (v == 2) /* roofline row: ~4 flops per element (exp, add, div, mul) */
                printf("roof\tswiglu\trows=%d inter=%lld\t%zu\t%zu\t%.4e\n", rows, (long long)inter,
                       4 * n, bytes, us * 1e-6);
        }
        cudaFree(dgu);
        cudaFree(dout);
    }
    return bad;
}

static int lab_gather(bool quick) {
    const int64_t vocab = quick ? 1000 : 128256, hidden = 4096, row_bytes = hidden * 2;
    const char *names[] = {"v0 bytes", "v1 prod"};
    printf("%5s %-7s %-9s %9s %8s %8s %10s\n", "ids", "vocab", "version", "us", "GB/s", "%3TB/s",
           "errors");
    std::vector<uint16_t> htab((size_t)vocab * hidden);
    for (auto &v : htab) v = lab_bf16(lab_frand());
    bf16 *dtab;
    CK(cudaMalloc(&dtab, htab.size() * 2));
    CK(cudaMemcpy(dtab, htab.data(), htab.size() * 2, cudaMemcpyHostToDevice));
    int bad = 0;
    std::vector<int> shapes = quick ? std::vector<int>{3} : std::vector<int>{1, 64, 2048};
    for (int n : shapes) {
        size_t bytes = 2 * (size_t)n * row_bytes;
        int copies = quick ? 1 : lab_copies(bytes);
        std::vector<int32_t> ids((size_t)n * copies);
        for (auto &v : ids) v = (int32_t)lab_urand((uint32_t)vocab);
        std::vector<uint16_t> ho((size_t)n * hidden);
        int32_t *dids;
        bf16 *dout;
        CK(cudaMalloc(&dids, ids.size() * 4));
        CK(cudaMalloc(&dout, (size_t)n * row_bytes * copies));
        CK(cudaMemcpy(dids, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
        for (int v = 0; v < 2; v++) {
            auto launch = [&](int c) {
                const int32_t *id = dids + (size_t)c * n;
                bf16 *out = dout + (size_t)c * n * hidden;
                if (v == 0)
                    gather_rows_kernel<unsigned char><<<n, 256, 0, st_lab>>>(
                        (const unsigned char *)dtab, 0, vocab, row_bytes, id, (unsigned char *)out);
                else
                    CK((cudaError_t)ci_cu_gather_rows(st_lab, dtab, vocab, row_bytes, id, n, out));
            };
            CK(cudaMemset(dout, 0xff, (size_t)n * row_bytes)); /* NaN poison */
            launch(0);
            CK(cudaGetLastError());
            CK(cudaMemcpy(ho.data(), dout, (size_t)n * row_bytes, cudaMemcpyDeviceToHost));
            size_t errs = 0;
            for (int i = 0; i < n; i++)
                errs += memcmp(&ho[(size_t)i * hidden], &htab[(size_t)ids[i] * hidden], row_bytes) != 0;
            bad += errs != 0;
            double us = lab_time_us(st_lab, copies, launch);
            double gbs = bytes / (us * 1e-6) / 1e9;
            printf("%5d %-7lld %-9s %9.2f %8.0f %7.1f%% %10zu%s\n", n, (long long)vocab, names[v], us,
                   gbs, 100.0 * gbs / LAB_PEAK_GBS, errs, errs ? "  FAIL" : "");
            if (v == 2) /* roofline row: no flops (listed, not plotted) */
                printf("roof\tgather_rows\tids=%d hidden=%lld\t0\t%zu\t%.4e\n", n, (long long)hidden,
                       bytes, us * 1e-6);
        }
        cudaFree(dids);
        cudaFree(dout);
    }
    cudaFree(dtab);
    return bad;
}

int main(int argc, char **argv) {
    const bool quick = lab_quick(argc, argv);
    CK(cudaStreamCreate(&st_lab));
    int bad = lab_swiglu(quick);
    bad += lab_gather(quick);
    printf("%s\n", bad ? "FAILED" : "all versions within 1e-2 (gather exact)");
    return bad ? 1 : 0;
}
