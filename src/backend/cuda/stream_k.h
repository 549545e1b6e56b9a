/* stream_k.h — how the skinny GEMM (cuda_gemm_skinny.cu) cuts its work over
 * the SMs, as plain integer functions the kernel and a CPU test
 * (tests/test_stream_k.c) share.
 *
 * Work: units = tiles x ksteps (row tile major). CTA c of G takes the
 * contiguous units [start(c), start(c + 1)): every CTA streams the same
 * number of weight bytes, whatever the shape. A row tile whose units lie in
 * one CTA's range is written by it; a tile split between CTAs (its
 * contributors, owner(first unit) .. owner(last unit)) has each write an f32
 * partial to slot(c, t): 2c when t is CTA c's first tile, else 2c + 1 (only
 * a range's first and last tile can be split, so slots never collide), and
 * the last to arrive sums the slots in CTA order. */
#ifndef CINFER_BACKEND_CUDA_STREAM_K_H
#define CINFER_BACKEND_CUDA_STREAM_K_H

#include <stdint.h>

#ifdef __CUDACC__
#define CI_SK_FN __host__ __device__ __forceinline__
#else
#define CI_SK_FN static inline
#endif

/* first unit of CTA c: ranges as even as integers allow */
CI_SK_FN int ci_sk_start(int c, int units, int G) {
    return (int)((int64_t)c * units / G);
}
/* the CTA whose range holds unit u: the c with start(c) <= u < start(c + 1) */
CI_SK_FN int ci_sk_owner(int u, int units, int G) {
    return (int)(((int64_t)(u + 1) * G + units - 1) / units) - 1;
}
/* the partial slot of CTA c for row tile t (t within c's range) */
CI_SK_FN int ci_sk_slot(int c, int t, int units, int G, int ksteps) {
    return 2 * c + (t == ci_sk_start(c, units, G) / ksteps ? 0 : 1);
}

#endif
