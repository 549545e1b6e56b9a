/* pdl.cuh — programmatic dependent launch (Hopper).
 * A kernel launched by ci_cu_launch may start while the kernel before it in
 * the stream is still running (its CTAs become resident as soon as every CTA
 * of the previous grid has called ci_pdl_trigger), so the launch latency and
 * the previous kernel's tail overlap. The rule that keeps this correct: every
 * kernel launched by ci_cu_launch calls ci_pdl_wait() before its first read
 * or write of global memory that another kernel touches (it returns when the
 * previous grid has completed and its writes are visible), and before any
 * early return. Every kernel calls ci_pdl_trigger() first, before its wait:
 * the next kernel's CTAs then become resident in the slots left free and
 * wait there (a GEMV issuing its first weight loads), two kernels ahead of
 * the one running (docs/benchmarks.md has the H200 batch-1 effect). This
 * cannot deadlock: a grid launches only when every CTA of
 * its predecessor has triggered, i.e. is resident, so each waited-on grid
 * can finish. Data that no kernel writes (weights) may be read before the
 * wait. Without PDL (ci_cu_pdl_on = 0, pre-Hopper) both are no-ops and
 * the launch is an ordinary one. Kernels outside this scheme (cuBLASLt) are
 * launched normally and simply serialize. */
#ifndef CINFER_BACKEND_CUDA_PDL_CUH
#define CINFER_BACKEND_CUDA_PDL_CUH

#include <cuda_runtime.h>

#ifdef CINFER_TIMELINE
/* The in-graph timeline (timeline.cu; a build with -DCINFER_TIMELINE=ON):
 * CTA 0 of every kernel records when it passes its wait — when the kernel
 * before it completed — so consecutive records give each kernel's time in
 * the step as it runs, graphs and PDL overlap included. Each translation
 * unit has its own copy of the buffer pointer, registered for timeline.cu
 * to set. */
static __device__ unsigned long long *ci_tl_ptr;
extern "C" int ci_cu_tl_register(const void *symbol);
extern "C" void ci_cu_tl_log(const void *fn, dim3 grid, dim3 block);
[[maybe_unused]] static const int ci_tl_registered = ci_cu_tl_register((const void *)&ci_tl_ptr);
#define CI_TL_CAP 8192 /* records: [0] the count, then 4 words each */
#endif

__device__ __forceinline__ void ci_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
#if defined(CINFER_TIMELINE) && defined(__CUDA_ARCH__)
    if (ci_tl_ptr &&
        (threadIdx.x | threadIdx.y | threadIdx.z | blockIdx.x | blockIdx.y | blockIdx.z) == 0) {
        unsigned long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        const unsigned i = atomicAdd((unsigned *)ci_tl_ptr, 1u);
        if (i < CI_TL_CAP) {
            unsigned long long *r = ci_tl_ptr + 4 + 4 * (size_t)i;
            r[0] = t;
            r[1] = (unsigned long long)gridDim.x | (unsigned long long)gridDim.y << 24 |
                   (unsigned long long)gridDim.z << 44;
            r[2] = blockDim.x * blockDim.y * blockDim.z;
        }
    }
#endif
}
__device__ __forceinline__ void ci_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* set once by the backend (ci_cu_set_pdl); an inline variable so the kernel
 * labs that include a launcher .cu link without pdl.cu (they run with it off) */
inline int ci_cu_pdl_on = 0;

/* kernel<<<grid, block, smem, st>>>(args), as a programmatic dependent
 * launch when pdl is set, in thread-block clusters of cluster_x CTAs along
 * x when cluster_x > 0 (Hopper) */
template <typename... KArgs, typename... Args>
static inline cudaError_t ci_cu_launch_ex(bool pdl, unsigned cluster_x, void (*kernel)(KArgs...),
                                          dim3 grid, dim3 block, size_t smem, cudaStream_t st,
                                          Args &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute attr[2];
    unsigned n = 0;
    if (pdl) {
        attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (cluster_x) {
        attr[n].id = cudaLaunchAttributeClusterDimension;
        attr[n].val.clusterDim.x = cluster_x;
        attr[n].val.clusterDim.y = 1;
        attr[n++].val.clusterDim.z = 1;
    }
    cfg.attrs = attr;
    cfg.numAttrs = n;
#ifdef CINFER_TIMELINE
    ci_cu_tl_log((const void *)kernel, grid, block);
#endif
    return cudaLaunchKernelEx(&cfg, kernel, static_cast<Args &&>(args)...);
}
template <typename... KArgs, typename... Args>
static inline cudaError_t ci_cu_launch_pdl(bool pdl, void (*kernel)(KArgs...), dim3 grid,
                                           dim3 block, size_t smem, cudaStream_t st,
                                           Args &&...args) {
    return ci_cu_launch_ex(pdl, 0u, kernel, grid, block, smem, st, static_cast<Args &&>(args)...);
}

/* Opts kernel into dyn bytes of dynamic shared memory where dyn plus its
 * static __shared__ arrays pass the 48 KB a launch gets without the
 * attribute (a kernel whose dynamic part alone is exactly 48 KB fails to
 * launch otherwise). The attribute query runs only for dyn in (40, 48] KB
 * (the callers' static arrays are a few KB); above 48 KB it opts in at once. */
template <typename... KArgs>
static inline cudaError_t ci_cu_smem_optin(void (*kernel)(KArgs...), size_t dyn) {
    if (dyn <= 40 * 1024) return cudaSuccess;
    if (dyn <= 48 * 1024) {
        cudaFuncAttributes fa;
        const cudaError_t e = cudaFuncGetAttributes(&fa, kernel);
        if (e != cudaSuccess || dyn + fa.sharedSizeBytes <= 48 * 1024) return e;
    }
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dyn);
}

/* the backend's launches: PDL as the switch says */
template <typename... KArgs, typename... Args>
static inline cudaError_t ci_cu_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block,
                                       size_t smem, cudaStream_t st, Args &&...args) {
    return ci_cu_launch_pdl(ci_cu_pdl_on != 0, kernel, grid, block, smem, st,
                            static_cast<Args &&>(args)...);
}

#endif
