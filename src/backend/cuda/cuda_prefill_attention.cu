/* cuda_prefill_attention.cu — launcher of the tensor-core prefill attention
 * (device code and design notes in cuda_prefill_attention.cuh). Called by
 * ci_cu_attention for BF16 batches with prefill tokens and head_dim 64/128. */
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_prefill_attention.cuh"
#include "backend/cuda/prefill_attention_ws_tma.cuh"

#include <stdlib.h>

/* Tile shapes measured in bench/kernels/prefill_attention.cu. Hopper
 * (sm_90), BF16 cache, no sliding window, block size 16/32/64/128: the
 * warp-specialized TMA kernel (prefill_attention_ws_tma.cuh; lab v23:
 * persistent, 128 x 128 tiles, 3 stages, H200 524-575 TFLOP/s on the
 * 8 x 4096 causal hd-128 shape against 327-330 for the kernel below;
 * CINFER_PREFILL_WS=0: off). Other Hopper cases: the pipelined wgmma kernel, 128 query rows (2
 * warpgroups) x 64 keys with 4 K/V stages for head_dim 128 (v12 in the lab), x 128 keys with 3
 * stages for head_dim 64 (v13). Others (sm_80): the mma.sync kernel, 128 rows (8 warps) x 64 keys,
 * 2 stages. All drop to 64 query rows when no sequence has more than 64 new tokens, so short chunks
 * waste fewer rows. */
/* one launch of kern over the work list; smem above 48 KB needs the opt-in
 * (a static "done" flag would race between devices/threads; the attribute
 * call is cheap and host-only) */
static cudaError_t launch(void (*kern)(ci_prefill_params), size_t smem, int threads,
                          cudaStream_t st, const ci_prefill_params &p) {
    cudaError_t e =
        cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    int64_t ctas = (int64_t)p.ntiles * p.S * p.H;
    if (ctas > 0x7fffffff) return cudaErrorInvalidConfiguration;
    ci_cu_launch(kern, (unsigned)ctas, threads, smem, st, p);
    return cudaGetLastError();
}
/* FP8: the kernels' E4M3 instantiation (tiles staged as BF16) */
template <int HD, int BM>
static cudaError_t launch_prefill(cudaStream_t st, const ci_prefill_params &p) {
    return launch(p.fp8 ? ci_prefill_attention_kernel<HD, BM, 64, 2, true>
                        : ci_prefill_attention_kernel<HD, BM, 64, 2, false>,
                  ci_prefill_smem_bytes<HD, BM, 64, 2>(), BM * 2, st, p);
}
template <int HD, int BN, int NWG, int NST>
static cudaError_t launch_prefill_wg(cudaStream_t st, const ci_prefill_params &p) {
    return launch(p.fp8 ? ci_prefill_attention_wgp_kernel<HD, BN, NWG, NST, true>
                        : ci_prefill_attention_wgp_kernel<HD, BN, NWG, NST, false>,
                  ci_prefill_wg_smem_bytes<HD, BN, NWG, NST>(), NWG * 128, st, p);
}

/* The TMA kernel with NC consumer warpgroups (64 NC-row query tiles; p's
 * ntiles must count those): tensor maps over this call's qkv (ntok rows)
 * and the layer's cache (num_blocks blocks), one persistent CTA per SM.
 * Returns cudaErrorNotSupported when the driver has no
 * cuTensorMapEncodeTiled or rejects a map: the caller falls back to the
 * cp.async kernels. */
template <int HD, int NC = 2, bool SPLITP = false, bool EPI = false>
static cudaError_t launch_wst(cudaStream_t st, const ci_prefill_params &p, int ntok,
                              int num_blocks) {
    static int looked = 0, nsm = 0;
    PFN_cuTensorMapEncodeTiled_v12000 enc = ci_wg::tma_encoder();
    if (!looked) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            nsm = 0;
        (void)cudaGetLastError();
        looked = 1;
    }
    if (!enc || nsm <= 0) return cudaErrorNotSupported;
    CUtensorMap mq, mk, mv;
    if (ci_prefill_wst_make_maps(enc, p, ntok, HD, num_blocks, &mq, &mk, &mv, 64 * NC, nullptr,
                                 nullptr) != 0)
        return cudaErrorNotSupported;
    /* the ILP softmax with two or three warpgroups: at three it spills 4
     * bytes at 160 registers and still beats the plain one (hd 64 on an H100:
     * 431 against 408 TFLOP/s, lab v33 / v35) */
    auto kern = ci_prefill_attention_wst_kernel<HD, 128, 3, true, NC, 0, false, SPLITP, EPI>;
    const size_t smem = ci_prefill_wst_smem_bytes<HD, 128, 3, NC>();
    cudaError_t e =
        cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    const int64_t items = (int64_t)p.ntiles * p.S * p.H;
    const unsigned grid = (unsigned)(items < nsm ? items : nsm);
    ci_cu_launch(kern, grid, ci_prefill_wst_threads(NC), smem, st, p, mq, mk, mv, mk, mv);
    return cudaGetLastError();
}

extern "C" int ci_cu_prefill_attention(ci_cu_stream st, const void *qkv, int ntok, int S, int H,
                                       int KV, int hd, const int32_t *positions,
                                       const int32_t *query_start, const int32_t *context_lens,
                                       const int32_t *block_tables, int max_blocks_per_seq,
                                       const void *kc, const void *vc, int block_size, float scale,
                                       int window, void *out, int max_query_len, int kv_fp8,
                                       float k_scale, float v_scale, int num_blocks) {
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
    p.window = window > 0 ? window : 0;
    p.fp8 = kv_fp8 != 0;
    p.scale_log2 = scale * (kv_fp8 ? k_scale : 1.0f) * 1.4426950408889634f;
    p.vscale = kv_fp8 ? v_scale : 1.0f;
    const int bm = max_query_len <= 64 ? 64 : 128;
    p.ntiles = (max_query_len + bm - 1) / bm;
    /* wgmma needs sm_90a code, which this build carries for compute 9.0 */
    int dev = 0, major = 0, minor = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    if (e != cudaSuccess) return e;
    static const int ws_on = !getenv("CINFER_PREFILL_WS") || atoi(getenv("CINFER_PREFILL_WS"));
    if (major == 9 && minor == 0 && ws_on && !p.fp8 && p.window == 0 && ntok > 0 &&
        num_blocks > 0 && ci_prefill_wst_bs_ok(block_size, 128)) {
        /* hd 64 with three consumer warpgroups (192-row tiles, as FA3):
         * 431 against 391 TFLOP/s with two on an H100, cuDNN 430
         * (docs/kernels/prefill_attention.md, round 4);
         * CINFER_PREFILL_NC3=0 takes two */
        static const int nc3 = !getenv("CINFER_PREFILL_NC3") || atoi(getenv("CINFER_PREFILL_NC3"));
        /* hd 128 with K and V from two producer warps (lab v40): 572
         * against 522 TFLOP/s at block 16 on an H100, level at 32 and 64;
         * no gain at hd 64 (round 7); CINFER_PREFILL_SPLITP=0 takes one.
         * (The wide K / V boxes of lab v39 never won and left production.) */
        static const int splitp =
            !getenv("CINFER_PREFILL_SPLITP") || atoi(getenv("CINFER_PREFILL_SPLITP"));
        /* hd 128's epilogue in 8-byte stores (lab v41, round 9);
         * CINFER_PREFILL_EPI=0 goes back to 4-byte ones */
        static const int epi = !getenv("CINFER_PREFILL_EPI") || atoi(getenv("CINFER_PREFILL_EPI"));
        if (hd == 64 && nc3) {
            p.ntiles = (max_query_len + 191) / 192;
            e = launch_wst<64, 3>(st, p, ntok, num_blocks);
        } else {
            p.ntiles = (max_query_len + 127) / 128; /* BM = 128 */
            e = hd == 64        ? launch_wst<64>(st, p, ntok, num_blocks)
                : splitp && epi ? launch_wst<128, 2, true, true>(st, p, ntok, num_blocks)
                : splitp        ? launch_wst<128, 2, true>(st, p, ntok, num_blocks)
                                : launch_wst<128>(st, p, ntok, num_blocks);
        }
        if (e != cudaErrorNotSupported) return e;
        p.ntiles = (max_query_len + bm - 1) / bm;
    }
    if (major == 9 && minor == 0) {
        if (hd == 64)
            return bm == 64 ? launch_prefill_wg<64, 64, 1, 3>(st, p)
                            : launch_prefill_wg<64, 128, 2, 3>(st, p);
        return bm == 64 ? launch_prefill_wg<128, 64, 1, 3>(st, p)
                        : launch_prefill_wg<128, 64, 2, 4>(st, p);
    }
    if (hd == 64) return bm == 64 ? launch_prefill<64, 64>(st, p) : launch_prefill<64, 128>(st, p);
    return bm == 64 ? launch_prefill<128, 64>(st, p) : launch_prefill<128, 128>(st, p);
}
