/* nccl_lazy.c — NCCL, opened on first use, like cuBLASLt (cublaslt_lazy.c):
 * the collectives of tensor / pipeline parallelism on GPUs call the nccl*
 * functions below, which dlopen libnccl on the first call and forward to
 * it. One GPU needs no NCCL, and nothing NCCL is NEEDED when the binary
 * loads. */
#include <dlfcn.h>
#include <nccl.h>
#include <pthread.h>
#include <stdio.h>

#include "backend/cuda/cuda.h"

#define CI_NCCL_SONAME "libnccl.so.2"
#ifndef CINFER_CUDA_LIBDIR
#define CINFER_CUDA_LIBDIR "/usr/local/cuda/lib64"
#endif

/* X(name, parameters, arguments) for every entry point the backend uses */
#define CI_NCCL_FUNCS(X)                                                                           \
    X(ncclGetUniqueId, (ncclUniqueId * id), (id))                                                  \
    X(ncclCommInitRankConfig,                                                                      \
      (ncclComm_t * comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t *config),            \
      (comm, nranks, id, rank, config))                                                            \
    X(ncclCommGetAsyncError, (ncclComm_t comm, ncclResult_t * err), (comm, err))                   \
    X(ncclCommAbort, (ncclComm_t comm), (comm))                                                    \
    X(ncclAllReduce,                                                                               \
      (const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op,            \
       ncclComm_t comm, cudaStream_t stream),                                                      \
      (send, recv, count, type, op, comm, stream))                                                 \
    X(ncclSend,                                                                                    \
      (const void *send, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,             \
       cudaStream_t stream),                                                                       \
      (send, count, type, peer, comm, stream))                                                     \
    X(ncclRecv,                                                                                    \
      (void *recv, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,                   \
       cudaStream_t stream),                                                                       \
      (recv, count, type, peer, comm, stream))                                                     \
    X(ncclGroupStart, (void), ())                                                                  \
    X(ncclGroupEnd, (void), ())

#define CI_NCCL_PTR(name, params, args) static __typeof__(&name) p_##name;
CI_NCCL_FUNCS(CI_NCCL_PTR)
static const char *(*p_ncclGetErrorString)(ncclResult_t);

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char g_error[512];
static int g_loaded;

static void nccl_open(void) {
    void *lib = dlopen(CI_NCCL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen(CINFER_CUDA_LIBDIR "/" CI_NCCL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(g_error, sizeof g_error, "cannot load %s (%s)", CI_NCCL_SONAME, dlerror());
        return;
    }
#define CI_NCCL_SYM(name, params, args)                                                            \
    p_##name = (__typeof__(&name))dlsym(lib, #name);                                               \
    if (!p_##name) {                                                                               \
        snprintf(g_error, sizeof g_error, "%s has no %s", CI_NCCL_SONAME, #name);                  \
        return;                                                                                    \
    }
    CI_NCCL_FUNCS(CI_NCCL_SYM)
    p_ncclGetErrorString = (const char *(*)(ncclResult_t))dlsym(lib, "ncclGetErrorString");
    if (!p_ncclGetErrorString) {
        snprintf(g_error, sizeof g_error, "%s has no ncclGetErrorString", CI_NCCL_SONAME);
        return;
    }
    g_loaded = 1;
}

const char *ci_cuda_nccl_load(void) {
    pthread_once(&g_once, nccl_open);
    return g_loaded ? NULL : g_error;
}

#define CI_NCCL_DEF(name, params, args)                                                            \
    ncclResult_t name params {                                                                     \
        if (ci_cuda_nccl_load()) return ncclSystemError;                                           \
        return p_##name args;                                                                      \
    }
CI_NCCL_FUNCS(CI_NCCL_DEF)

const char *ncclGetErrorString(ncclResult_t r) {
    if (ci_cuda_nccl_load()) return g_error;
    return p_ncclGetErrorString(r);
}
