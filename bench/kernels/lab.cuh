/* lab.cuh — helpers shared by the kernel labs (the .cu files here): CUDA
 * error check, a seeded RNG, BF16 <-> float on the host, the norm-wise
 * relative error and the timing loop. Not a lab itself (the CMake glob takes
 * *.cu only). */
#ifndef CINFER_BENCH_KERNELS_LAB_CUH
#define CINFER_BENCH_KERNELS_LAB_CUH

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CK(call)                                                                               \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* xorshift64: uniform in [-1, 1); seeded per lab so runs are repeatable */
static uint64_t lab_rng = 0x9E3779B97F4A7C15ull;
static inline float lab_frand() {
    lab_rng ^= lab_rng << 13;
    lab_rng ^= lab_rng >> 7;
    lab_rng ^= lab_rng << 17;
    return (float)((lab_rng >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}
static inline uint32_t lab_urand(uint32_t n) {
    lab_frand();
    return (uint32_t)((lab_rng >> 11) % n);
}

static inline uint16_t lab_bf16(float f) { /* round to nearest even */
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
static inline float lab_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline float lab_round(float f) { return lab_f32(lab_bf16(f)); }

/* ||got - ref|| / ||ref||; a NaN anywhere (an unwritten poisoned element)
 * makes it NaN, which fails every `rel < tol` check */
static inline double lab_rel_err(const uint16_t *got, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double g = lab_f32(got[i]), r = ref[i];
        num += (g - r) * (g - r);
        den += r * r;
    }
    return std::sqrt(num / den);
}

/* How many copies of a working set of `bytes` to rotate over so that the
 * timed launches touch >= 256 MiB (5x the H100's 50 MB L2): every launch
 * reads from HBM, not from the previous launch's L2 lines. */
static inline int lab_copies(size_t bytes) {
    size_t c = ((size_t)256 << 20) / (bytes ? bytes : 1);
    return (int)std::max<size_t>(1, std::min<size_t>(c, 8192));
}

/* Fills copies 1.. of a buffer of `copies` x `bytes` from copy 0 (the
 * timing copies hold the same data at other addresses). */
static inline void lab_replicate(void *base, size_t bytes, int copies) {
    char *p = (char *)base;
    for (int have = 1; have < copies;) {
        int k = std::min(have, copies - have);
        CK(cudaMemcpy(p + have * bytes, p, k * bytes, cudaMemcpyDeviceToDevice));
        have += k;
    }
}

static bool lab_is_quick = false; /* set by lab_quick(): time one launch only */

/* Median over `reps` of the mean time of `batch` back-to-back launches
 * (launch(i) runs on copy i % copies), after a warm-up pass; microseconds. */
template <typename F>
static double lab_time_us(cudaStream_t st, int copies, F launch, int reps = 15, int batch = 20) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    if (lab_is_quick) reps = batch = 1;
    int k = 0;
    for (int i = 0; i < (lab_is_quick ? 1 : std::max(3, std::min(copies, 64))); i++)
        launch(k++ % copies);
    CK(cudaGetLastError());
    std::vector<float> ms;
    for (int r = 0; r < reps; r++) {
        CK(cudaEventRecord(a, st));
        for (int i = 0; i < batch; i++) launch(k++ % copies);
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float t;
        CK(cudaEventElapsedTime(&t, a, b));
        ms.push_back(t / batch);
    }
    CK(cudaGetLastError());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(ms.begin(), ms.end());
    return 1000.0 * ms[ms.size() / 2];
}

/* --quick: the smallest shape only, timed once (for compute-sanitizer) */
static inline bool lab_quick(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick")) lab_is_quick = true;
    return lab_is_quick;
}

#define LAB_PEAK_GBS 3000.0 /* measured device-to-device copy on the H100 */

#endif
