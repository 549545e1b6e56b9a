/* trace.h — named ranges around the engine's phases, for Nsight Systems.
 *
 * In CUDA builds these are NVTX v3 ranges (header-only: a call costs a
 * branch unless a profiler such as `nsys profile` injects itself, so they
 * stay in release builds). Elsewhere they compile to nothing. Ranges nest
 * and must be popped on the thread that pushed them. */
#ifndef CINFER_UTIL_TRACE_H
#define CINFER_UTIL_TRACE_H

#if defined(CINFER_HAVE_CUDA) && defined(__has_include)
#if __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define CI_TRACE_NVTX 1
#endif
#endif

#ifdef CI_TRACE_NVTX
#define CI_TRACE_PUSH(name) nvtxRangePushA(name)
#define CI_TRACE_POP() nvtxRangePop()
#else
#define CI_TRACE_PUSH(name) ((void)0)
#define CI_TRACE_POP() ((void)0)
#endif

#endif
