/* cublaslt_lazy.c — cuBLASLt, opened on first use. The CUDA backend calls
 * the cublasLt* functions below, which dlopen libcublasLt on the first call
 * and forward to it; the CUDA runtime is linked statically and opens the
 * driver itself. So nothing CUDA is NEEDED when the binary loads, and
 * `--device cpu` runs on machines without any CUDA library. */
#include <cublasLt.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "backend/cuda/cuda.h"

#define CI_STR2(x) #x
#define CI_STR(x) CI_STR2(x)
#define CI_LT_SONAME "libcublasLt.so." CI_STR(CUBLAS_VER_MAJOR)
#ifndef CINFER_CUDA_LIBDIR
#define CINFER_CUDA_LIBDIR "/usr/local/cuda/lib64"
#endif

/* X(name, parameters, arguments) for every entry point the backend uses. */
#define CI_LT_FUNCS(X)                                                                             \
    X(cublasLtCreate, (cublasLtHandle_t * h), (h))                                                 \
    X(cublasLtDestroy, (cublasLtHandle_t h), (h))                                                  \
    X(cublasLtMatmul,                                                                              \
      (cublasLtHandle_t h, cublasLtMatmulDesc_t op, const void *alpha, const void *A,              \
       cublasLtMatrixLayout_t Ad, const void *B, cublasLtMatrixLayout_t Bd, const void *beta,      \
       const void *C, cublasLtMatrixLayout_t Cd, void *D, cublasLtMatrixLayout_t Dd,               \
       const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_size, cudaStream_t stream),           \
      (h, op, alpha, A, Ad, B, Bd, beta, C, Cd, D, Dd, algo, ws, ws_size, stream))                 \
    X(cublasLtMatmulAlgoGetHeuristic,                                                              \
      (cublasLtHandle_t h, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t Ad,                     \
       cublasLtMatrixLayout_t Bd, cublasLtMatrixLayout_t Cd, cublasLtMatrixLayout_t Dd,            \
       cublasLtMatmulPreference_t pref, int requested, cublasLtMatmulHeuristicResult_t results[],  \
       int *returned),                                                                             \
      (h, op, Ad, Bd, Cd, Dd, pref, requested, results, returned))                                 \
    X(cublasLtMatmulAlgoCheck,                                                                     \
      (cublasLtHandle_t h, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t Ad,                     \
       cublasLtMatrixLayout_t Bd, cublasLtMatrixLayout_t Cd, cublasLtMatrixLayout_t Dd,            \
       const cublasLtMatmulAlgo_t *algo, cublasLtMatmulHeuristicResult_t *result),                 \
      (h, op, Ad, Bd, Cd, Dd, algo, result))                                                       \
    X(cublasLtMatmulAlgoCapGetAttribute,                                                           \
      (const cublasLtMatmulAlgo_t *algo, cublasLtMatmulAlgoCapAttributes_t attr, void *buf,        \
       size_t n, size_t *written),                                                                 \
      (algo, attr, buf, n, written))                                                               \
    X(cublasLtMatmulAlgoConfigSetAttribute,                                                        \
      (cublasLtMatmulAlgo_t * algo, cublasLtMatmulAlgoConfigAttributes_t attr, const void *buf,    \
       size_t n),                                                                                  \
      (algo, attr, buf, n))                                                                        \
    X(cublasLtMatmulDescCreate,                                                                    \
      (cublasLtMatmulDesc_t * d, cublasComputeType_t compute, cudaDataType_t scale),               \
      (d, compute, scale))                                                                         \
    X(cublasLtMatmulDescDestroy, (cublasLtMatmulDesc_t d), (d))                                    \
    X(cublasLtMatmulDescSetAttribute,                                                              \
      (cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const void *buf, size_t n),    \
      (d, attr, buf, n))                                                                           \
    X(cublasLtMatmulPreferenceCreate, (cublasLtMatmulPreference_t * p), (p))                       \
    X(cublasLtMatmulPreferenceDestroy, (cublasLtMatmulPreference_t p), (p))                        \
    X(cublasLtMatmulPreferenceSetAttribute,                                                        \
      (cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr, const void *buf,   \
       size_t n),                                                                                  \
      (p, attr, buf, n))                                                                           \
    X(cublasLtMatrixLayoutCreate,                                                                  \
      (cublasLtMatrixLayout_t * l, cudaDataType type, uint64_t rows, uint64_t cols, int64_t ld),   \
      (l, type, rows, cols, ld))                                                                   \
    X(cublasLtMatrixLayoutDestroy, (cublasLtMatrixLayout_t l), (l))

#define CI_LT_PTR(name, params, args) static __typeof__(&name) p_##name;
CI_LT_FUNCS(CI_LT_PTR)

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char g_error[512];
static int g_loaded;

static void lt_open(void) {
    /* The loader's path first (LD_LIBRARY_PATH, ld.so.cache), then the
     * toolkit this was built with. */
    void *lib = dlopen(CI_LT_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen(CINFER_CUDA_LIBDIR "/" CI_LT_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(g_error, sizeof g_error, "cannot load %s (%s)", CI_LT_SONAME, dlerror());
        return;
    }
#define CI_LT_SYM(name, params, args)                                                              \
    p_##name = (__typeof__(&name))dlsym(lib, #name);                                               \
    if (!p_##name) {                                                                               \
        snprintf(g_error, sizeof g_error, "%s has no %s", CI_LT_SONAME, #name);                    \
        return;                                                                                    \
    }
    CI_LT_FUNCS(CI_LT_SYM)
    g_loaded = 1;
}

const char *ci_cuda_libs_load(void) {
    pthread_once(&g_once, lt_open);
    return g_loaded ? NULL : g_error;
}

#define CI_LT_DEF(name, params, args)                                                              \
    cublasStatus_t CUBLASWINAPI name params {                                                      \
        if (ci_cuda_libs_load()) return CUBLAS_STATUS_NOT_INITIALIZED;                             \
        return p_##name args;                                                                      \
    }
CI_LT_FUNCS(CI_LT_DEF)
