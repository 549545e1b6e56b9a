/* gemv.cu — kernel lab for the small-batch BF16 GEMV (decode projections):
 * y[n][out] = x[n][in] . W[out][in]^T, n = 1..4.
 *
 *   v0  naive: one thread per output element, scalar loads
 *   v1  cuBLASLt (BF16 in, f32 accumulate, the heuristic's first algorithm),
 *       what the backend used before the GEMV kernel
 *   v2  production (src/backend/cuda/cuda_gemv.cu): one warp per row, x in
 *       shared memory, 8 x 16-byte streaming loads in flight per lane; used
 *       for n <= CI_CU_GEMV_MAX_N (2): at n = 4 it measured no faster than v1
 *
 * Each version is checked against a CPU reference (double accumulation) on
 * fresh random inputs, output poisoned with NaN first, then timed with CUDA
 * events (median of 50 after warm-up) on Llama-3-8B's decode shapes.
 * Effective bandwidth counts the weight bytes once.
 *
 *   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Isrc \
 *        bench/kernels/gemv.cu -lcublasLt -o gemv && ./gemv */
#include <cublasLt.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../../src/backend/cuda/cuda_gemv.cu"
#include "lab.cuh"

#define LT(call)                                                                                   \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            fprintf(stderr, "%s:%d %s: status %d\n", __FILE__, __LINE__, #call, (int)s_);           \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

__global__ void gemv_naive(const __nv_bfloat16 *W, const __nv_bfloat16 *x, int n, int in, int out,
                           __nv_bfloat16 *y) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n * out) return;
    int r = (int)(i / out), o = (int)(i % out);
    float acc = 0.0f;
    for (int k = 0; k < in; k++)
        acc += __bfloat162float(W[(int64_t)o * in + k]) * __bfloat162float(x[(int64_t)r * in + k]);
    y[(int64_t)r * out + o] = __float2bfloat16_rn(acc);
}

struct Lt {
    cublasLtHandle_t h;
    void *ws;
    size_t wsz = 32u << 20;
    Lt() {
        LT(cublasLtCreate(&h));
        CK(cudaMalloc(&ws, wsz));
    }
    /* y^T[out][n] = W^T(op T)[out][in] . x^T[in][n], column-major views */
    void run(const void *W, const void *x, int n, int in, int out, void *y, cudaStream_t st) {
        cublasLtMatmulDesc_t d;
        cublasLtMatrixLayout_t la, lb, lc;
        LT(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        LT(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
        LT(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
        LT(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, in, out, in));
        LT(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, in, n, in));
        LT(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, out, n, out));
        cublasLtMatmulPreference_t p;
        LT(cublasLtMatmulPreferenceCreate(&p));
        LT(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz,
                                                sizeof wsz));
        cublasLtMatmulHeuristicResult_t r;
        int nr = 0;
        LT(cublasLtMatmulAlgoGetHeuristic(h, d, la, lb, lc, lc, p, 1, &r, &nr));
        float one = 1, zero = 0;
        LT(cublasLtMatmul(h, d, &one, W, la, x, lb, &zero, y, lc, y, lc, &r.algo, ws, wsz, st));
        cublasLtMatmulPreferenceDestroy(p);
        cublasLtMatrixLayoutDestroy(la);
        cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(lc);
        cublasLtMatmulDescDestroy(d);
    }
};

int main() {
    int sms = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    Lt lt;
    struct {
        const char *name;
        int out, in;
    } shapes[] = {{"qkv", 6144, 4096},       {"o", 4096, 4096},     {"gate_up", 28672, 4096},
                  {"down", 4096, 14336},     {"lm_head", 128256, 4096}};
    printf("%-8s %2s %-9s %10s %9s %8s %10s\n", "shape", "n", "version", "us", "GB/s", "%3TB/s",
           "rel err");
    int bad = 0;
    for (auto &sh : shapes)
        for (int n = 1; n <= 4; n *= 2) {
            size_t wn = (size_t)sh.out * sh.in, xn = (size_t)n * sh.in, yn = (size_t)n * sh.out;
            std::vector<uint16_t> hw(wn), hx(xn), hy(yn);
            for (auto &v : hw) v = lab_bf16(lab_frand() * 0.05f);
            for (auto &v : hx) v = lab_bf16(lab_frand());
            std::vector<double> ref(yn);
            for (int r = 0; r < n; r++)
                for (int o = 0; o < sh.out; o++) {
                    double a = 0;
                    const uint16_t *wr = &hw[(size_t)o * sh.in], *xr = &hx[(size_t)r * sh.in];
                    for (int k = 0; k < sh.in; k++) a += (double)lab_f32(wr[k]) * lab_f32(xr[k]);
                    ref[(size_t)r * sh.out + o] = a;
                }
            void *dw, *dx, *dy;
            CK(cudaMalloc(&dw, wn * 2));
            CK(cudaMalloc(&dx, xn * 2));
            CK(cudaMalloc(&dy, yn * 2));
            CK(cudaMemcpy(dw, hw.data(), wn * 2, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(dx, hx.data(), xn * 2, cudaMemcpyHostToDevice));
            for (int v = 0; v < 3; v++) {
                if (v == 2 && !ci_cu_gemv_ok(n, sh.in)) continue; /* n > CI_CU_GEMV_MAX_N */
                auto launch = [&]() {
                    if (v == 0)
                        gemv_naive<<<(unsigned)((yn + 255) / 256), 256, 0, st>>>(
                            (const __nv_bfloat16 *)dw, (const __nv_bfloat16 *)dx, n, sh.in, sh.out,
                            (__nv_bfloat16 *)dy);
                    else if (v == 1)
                        lt.run(dw, dx, n, sh.in, sh.out, dy, st);
                    else
                        CK((cudaError_t)ci_cu_gemv(st, 0, dw, dx, n, sh.in, sh.out, nullptr, dy,
                                                   sms, nullptr));
                    CK(cudaGetLastError());
                };
                CK(cudaMemsetAsync(dy, 0xff, yn * 2, st)); /* NaN poison */
                launch();
                CK(cudaMemcpyAsync(hy.data(), dy, yn * 2, cudaMemcpyDeviceToHost, st));
                CK(cudaStreamSynchronize(st));
                double num = 0, den = 0;
                for (size_t i = 0; i < yn; i++) {
                    double g = lab_f32(hy[i]);
                    num += (g - ref[i]) * (g - ref[i]);
                    den += ref[i] * ref[i];
                }
                double rel = std::sqrt(num / den);
                if (!(rel < 1e-2)) bad++;
                int iters = v == 0 ? 5 : 50;
                std::vector<float> ms;
                cudaEvent_t a, b;
                CK(cudaEventCreate(&a));
                CK(cudaEventCreate(&b));
                for (int i = 0; i < 3; i++) launch();
                for (int i = 0; i < iters; i++) {
                    CK(cudaEventRecord(a, st));
                    launch();
                    CK(cudaEventRecord(b, st));
                    CK(cudaEventSynchronize(b));
                    float t;
                    CK(cudaEventElapsedTime(&t, a, b));
                    ms.push_back(t);
                }
                std::sort(ms.begin(), ms.end());
                double us = 1000.0 * ms[ms.size() / 2];
                double gbs = wn * 2 / (us * 1e-6) / 1e9;
                const char *names[] = {"v0 naive", "v1 cublasLt", "v2 gemv"};
                printf("%-8s %2d %-11s %8.1f %9.0f %7.1f%% %10.2e%s\n", sh.name, n, names[v], us, gbs,
                       100.0 * gbs / 3000.0, rel, rel < 1e-2 ? "" : "  FAIL");
                cudaEventDestroy(a);
                cudaEventDestroy(b);
            }
            cudaFree(dw);
            cudaFree(dx);
            cudaFree(dy);
        }
    printf("%s\n", bad ? "FAILED" : "all versions within 1e-2");
    return bad ? 1 : 0;
}
