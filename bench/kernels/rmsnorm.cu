/* rmsnorm.cu — kernel lab: RMSNorm with the fused residual add, BF16.
 * res = bf16(x + res); out = bf16(w * res * rsqrt(mean(res^2) + eps))
 * ("plain": no residual, out = w * x * rsqrt(...)), hidden 4096.
 *
 *   v0  naive: one thread per row, two serial loops over the row
 *   v1  the previous production kernel (rmsnorm_kernel, still the fallback
 *       for F32 and odd widths): one 512-thread CTA per row, scalar
 *       strided loop, block reduction, second pass re-reads the row
 *   v2  production (rmsnorm_vec_kernel via ci_cu_rmsnorm): one CTA per row,
 *       one 16-byte load per thread and tensor, values kept in registers
 *       across the reduction, 16-byte stores
 *
 * Each version is checked against a CPU reference on fresh random inputs
 * (out NaN-poisoned first, every element must be written; res checked too),
 * then timed with CUDA events: median over 15 reps of the mean of 20
 * back-to-back launches, rotating over copies of the buffers (>= 256 MiB
 * touched) so every launch reads HBM, not L2. GB/s counts x + res read and
 * res + out written (plain: x read, out written), BF16; the 16 KB of F32
 * weights are not counted (L2-resident after the first row).
 *
 *   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Isrc \
 *        bench/kernels/rmsnorm.cu -o rmsnorm && ./rmsnorm [--quick]
 * (or: ninja -C build kernel_rmsnorm) */
#include "../../src/backend/cuda/cuda_norm.cu"
#include "lab.cuh"

typedef __nv_bfloat16 bf16;

__global__ void rmsnorm_v0(const bf16 *x, bf16 *res, const float *w, int rows, int n, float eps,
                           bf16 *out) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const bf16 *xr = x + (int64_t)r * n;
    bf16 *rr = res ? res + (int64_t)r * n : nullptr;
    float ss = 0.0f;
    for (int i = 0; i < n; i++) {
        float v = __bfloat162float(xr[i]);
        if (rr) {
            v = __bfloat162float(__float2bfloat16_rn(v + __bfloat162float(rr[i])));
            rr[i] = __float2bfloat16_rn(v);
        }
        ss += v * v;
    }
    float inv = rsqrtf(ss / (float)n + eps);
    const bf16 *src = rr ? rr : xr;
    for (int i = 0; i < n; i++)
        out[(int64_t)r * n + i] = __float2bfloat16_rn(w[i] * (__bfloat162float(src[i]) * inv));
}

int main(int argc, char **argv) {
    const int n = 4096;
    const float eps = 1e-5f;
    const bool quick = lab_quick(argc, argv);
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    std::vector<float> hw(n);
    for (auto &v : hw) v = 1.0f + 0.25f * lab_frand();
    float *dw;
    CK(cudaMalloc(&dw, n * 4));
    CK(cudaMemcpy(dw, hw.data(), n * 4, cudaMemcpyHostToDevice));

    const char *names[] = {"v0 naive", "v1 prev", "v2 vec"};
    printf("%5s %-5s %-9s %9s %8s %8s %10s\n", "rows", "kind", "version", "us", "GB/s", "%3TB/s",
           "rel err");
    int bad = 0;
    std::vector<int> shapes = quick ? std::vector<int>{3} : std::vector<int>{1, 64, 2048};
    for (int rows : shapes)
        for (int fused = 1; fused >= 0; fused--) {
            size_t elems = (size_t)rows * n;
            size_t bytes = (fused ? 4 : 2) * elems * 2;
            int copies = quick ? 1 : lab_copies(bytes);
            std::vector<uint16_t> hx(elems), hr(elems), ho(elems), hr2(elems);
            for (auto &v : hx) v = lab_bf16(lab_frand());
            for (auto &v : hr) v = lab_bf16(2.0f * lab_frand());
            std::vector<float> ref(elems), refres(elems);
            for (int r = 0; r < rows; r++) {
                double ss = 0;
                for (int i = 0; i < n; i++) {
                    size_t e = (size_t)r * n + i;
                    float v = lab_f32(hx[e]);
                    if (fused) v = lab_round(v + lab_f32(hr[e]));
                    refres[e] = v;
                    ss += (double)v * v;
                }
                float inv = (float)(1.0 / std::sqrt(ss / n + eps));
                for (int i = 0; i < n; i++) {
                    size_t e = (size_t)r * n + i;
                    ref[e] = lab_round(hw[i] * (refres[e] * inv));
                }
            }
            bf16 *dx, *dr, *dout;
            CK(cudaMalloc(&dx, elems * 2 * copies));
            CK(cudaMalloc(&dr, elems * 2 * copies));
            CK(cudaMalloc(&dout, elems * 2 * copies));
            CK(cudaMemcpy(dx, hx.data(), elems * 2, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(dr, hr.data(), elems * 2, cudaMemcpyHostToDevice));
            lab_replicate(dx, elems * 2, copies);
            lab_replicate(dr, elems * 2, copies);
            for (int v = 0; v < 3; v++) {
                if (v == 0 && rows > 64 && !quick) continue; /* v0 at 2048 rows: minutes of nothing */
                auto launch = [&](int c) {
                    const bf16 *x = dx + c * elems;
                    bf16 *res = fused ? dr + c * elems : nullptr, *out = dout + c * elems;
                    if (v == 0)
                        rmsnorm_v0<<<(rows + 127) / 128, 128, 0, st>>>(x, res, dw, rows, n, eps, out);
                    else if (v == 1)
                        rmsnorm_kernel<bf16><<<rows, 512, 0, st>>>(x, res, dw, n, eps, out);
                    else
                        CK((cudaError_t)ci_cu_rmsnorm(st, 1, x, res, dw, rows, n, eps, out));
                };
                CK(cudaMemcpy(dr, hr.data(), elems * 2, cudaMemcpyHostToDevice));
                CK(cudaMemset(dout, 0xff, elems * 2)); /* NaN poison */
                launch(0);
                CK(cudaGetLastError());
                CK(cudaMemcpy(ho.data(), dout, elems * 2, cudaMemcpyDeviceToHost));
                CK(cudaMemcpy(hr2.data(), dr, elems * 2, cudaMemcpyDeviceToHost));
                double rel = lab_rel_err(ho.data(), ref.data(), elems);
                if (fused) rel = std::max(rel, lab_rel_err(hr2.data(), refres.data(), elems));
                bool ok = rel < 1e-2;
                bad += !ok;
                double us = lab_time_us(st, copies, launch);
                double gbs = bytes / (us * 1e-6) / 1e9;
                printf("%5d %-5s %-9s %9.2f %8.0f %7.1f%% %10.2e%s\n", rows, fused ? "fused" : "plain",
                       names[v], us, gbs, 100.0 * gbs / LAB_PEAK_GBS, rel, ok ? "" : "  FAIL");
                if (v == 2) /* roofline row: flops ~ (fused ? 5 : 4) per element */
                    printf("roof\trmsnorm\t%s rows=%d n=%d\t%zu\t%zu\t%.4e\n",
                           fused ? "fused" : "plain", rows, n, (fused ? 5 : 4) * elems, bytes,
                           us * 1e-6);
            }
            cudaFree(dx);
            cudaFree(dr);
            cudaFree(dout);
        }
    cudaFree(dw);
    printf("%s\n", bad ? "FAILED" : "all versions within 1e-2");
    return bad ? 1 : 0;
}
