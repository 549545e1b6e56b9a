/* cuda_prefill_attention.cu — launcher of the tensor-core prefill attention
 * (device code and design notes in cuda_prefill_attention.cuh). Called by
 * ci_cu_attention for BF16 batches with prefill tokens and head_dim 64/128. */
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_prefill_attention.cuh"

/* Tile shapes measured in bench/kernels/prefill_attention.cu: 128 query rows
 * (8 warps) x 64 keys, two K/V stages; 64 rows (4 warps) when no sequence
 * has more than 64 new tokens, so short chunks waste fewer rows. */
#define PF_BN 64
#define PF_NST 2

template <int HD, int BM>
static cudaError_t launch_prefill(cudaStream_t st, const ci_prefill_params &p) {
    constexpr size_t smem = ci_prefill_smem_bytes<HD, BM, PF_BN, PF_NST>();
    auto kern = ci_prefill_attention_kernel<HD, BM, PF_BN, PF_NST>;
    /* a static flag would race between devices/threads; the attribute call
     * is cheap and host-only */
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)smem);
    if (e != cudaSuccess) return e;
    int64_t ctas = (int64_t)p.ntiles * p.S * p.H;
    if (ctas > 0x7fffffff) return cudaErrorInvalidConfiguration;
    kern<<<(unsigned)ctas, BM * 2, smem, st>>>(p);
    return cudaGetLastError();
}

extern "C" int ci_cu_prefill_attention(ci_cu_stream st, const void *qkv, int S, int H, int KV,
                                       int hd, const int32_t *positions,
                                       const int32_t *query_start, const int32_t *context_lens,
                                       const int32_t *block_tables, int max_blocks_per_seq,
                                       const void *kc, const void *vc, int block_size, float scale,
                                       void *out, int max_query_len) {
    if (max_query_len <= 0 || S <= 0) return cudaSuccess;
    if ((hd != 64 && hd != 128) || KV <= 0 || H % KV != 0) return cudaErrorInvalidValue;
    ci_prefill_params p;
    p.qkv = (const __nv_bfloat16 *)qkv;
    p.positions = positions;
    p.qstart = query_start;
    p.ctx_lens = context_lens;
    p.btab = block_tables;
    p.kc = (const __nv_bfloat16 *)kc;
    p.vc = (const __nv_bfloat16 *)vc;
    p.out = (__nv_bfloat16 *)out;
    p.S = S;
    p.H = H;
    p.KV = KV;
    p.mbps = max_blocks_per_seq;
    p.bs = block_size;
    p.scale_log2 = scale * 1.4426950408889634f;
    const int bm = max_query_len <= 64 ? 64 : 128;
    p.ntiles = (max_query_len + bm - 1) / bm;
    if (hd == 64)
        return bm == 64 ? launch_prefill<64, 64>(st, p) : launch_prefill<64, 128>(st, p);
    return bm == 64 ? launch_prefill<128, 64>(st, p) : launch_prefill<128, 128>(st, p);
}
