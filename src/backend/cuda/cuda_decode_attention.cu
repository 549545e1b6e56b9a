/* cuda_decode_attention.cu — launcher of the tensor-core flash-decoding
 * kernel (decode_attention.cuh) for pure-decode batches: one query token per
 * sequence, BF16, G = H / KV <= 8 q heads per kv head, head_dim 64 or 128,
 * any block size. The grid and the number of splits depend only on
 * (S, KV, num_sms, max_blocks_per_seq * block_size), never on the step's
 * context lengths (read on the device), so the launch can be captured in a
 * CUDA graph per batch size and replayed as contexts grow. A sliding window
 * (a per-layer constant) bounds the keys per query, hence the splits. The
 * cache is BF16 or FP8 E4M3 (kv_fp8: the kernel's FP8 instantiation, same
 * grid and splits). The splits are merged by the last CTA of each (seq, kv
 * head) through the counters that follow ws (CINFER_DEC_COMBINE=1: by the
 * separate merge kernel, for A/B), or on sm_90a (the default; off with
 * CINFER_DEC_CLUSTER=0) each (seq, kv head)'s splits as one thread-block
 * cluster merging on chip. */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/decode_attention.cuh"

#include <stdlib.h>

extern "C" int ci_cu_decode_attention_ok(int bf16, int H, int KV, int hd) {
    return bf16 && KV > 0 && H % KV == 0 && H / KV <= CI_DEC_GMAX && (hd == 64 || hd == 128);
}

/* the splits as one thread-block cluster each (ci_dec_merge_cluster): the
 * sm_90a build, 2-16 splits (nsplit capped at 16; above 8 the non-portable
 * cluster size), unless CINFER_DEC_CLUSTER=0 or ci_cu_decode_cluster(0).
 * Measured on an H100 (2026-12-06, docs/benchmarks.md): batch 1 FP8 + head
 * 329 tok/s against 325, INT4 + head 471 against 461. Splits come only
 * where the (seq, kv head) pairs are fewer than the SMs (batch <= 16 at 8
 * kv heads), so larger batches run as before. */
static int g_dec_cluster = -1;
extern "C" void ci_cu_decode_cluster(int on) {
    g_dec_cluster = on < 0 ? -1 : on > 0;
}
static int decode_cluster_on(void) {
    if (g_dec_cluster < 0) g_dec_cluster = ci_cu_env_int("CINFER_DEC_CLUSTER", 1) > 0;
    return g_dec_cluster && ci_cu_sm90a();
}

/* CL: the splits of a (seq, kv head) as one cluster merging on chip (no
 * workspace, no merge kernel) */
template <int HD, bool FP8, bool CL = false>
static cudaError_t decode_launch(cudaStream_t st, const void *qkv, int S, int H, int KV,
                                 const int32_t *positions, const int32_t *query_start,
                                 const int32_t *context_lens, const int32_t *block_tables, int mbps,
                                 const void *kc, const void *vc, int bs, float scale, int window,
                                 void *out, int nsplit, float *ws, float vscale, unsigned *cnt) {
    auto k = ci_decode_attn_kernel<HD, true, FP8, CL>;
    float *part_o = CL ? nullptr : ws;
    float2 *part_ml = CL ? nullptr : (float2 *)(ws + (int64_t)S * H * nsplit * HD);
    if (CL) {
        cnt = nullptr;
        static cudaError_t np = cudaErrorNotReady; /* the non-portable size, once */
        if (np == cudaErrorNotReady)
            np = cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
        if (np != cudaSuccess && nsplit > 8) return np;
    }
    dim3 grid((unsigned)nsplit, (unsigned)KV, (unsigned)S);
    ci_cu_launch_ex(ci_cu_pdl_on != 0, CL ? (unsigned)nsplit : 0u, k, grid, CI_DEC_THREADS, 0, st,
                    (const __nv_bfloat16 *)qkv, H, KV, positions, query_start, context_lens,
                    block_tables, mbps, kc, vc, bs, scale * 1.4426950408889634f, window,
                    (__nv_bfloat16 *)out, nsplit, part_o, part_ml, vscale, cnt);
    cudaError_t e = cudaGetLastError();
    if (!CL && e == cudaSuccess && nsplit > 1 && !cnt)
        e = ci_decode_combine<__nv_bfloat16>(st, ci_cu_pdl_on != 0, S, H, HD, nsplit, query_start,
                                             part_o, part_ml, (__nv_bfloat16 *)out);
    return e;
}

extern "C" int ci_cu_decode_attention(ci_cu_stream st, const void *qkv, int S, int H, int KV,
                                      int hd, const int32_t *positions,
                                      const int32_t *query_start, const int32_t *context_lens,
                                      const int32_t *block_tables, int max_blocks_per_seq,
                                      const void *kc, const void *vc, int block_size, float scale,
                                      int window, void *out, int num_sms, float *ws,
                                      int64_t ws_floats, int kv_fp8, float k_scale,
                                      float v_scale) {
    if (S <= 0) return cudaSuccess;
    int64_t bound = (int64_t)max_blocks_per_seq * block_size;
    if (window > 0 && bound > (int64_t)window + CI_DEC_TILE) bound = (int64_t)window + CI_DEC_TILE;
    int nsplit = ci_decode_nsplit(S, KV, num_sms, bound);
#ifdef CINFER_TIMELINE
    /* profiling builds only (their outputs are not the model's):
     * CINFER_TL_SKIP_ATTN=1 leaves the attention out of the step, so the
     * timeline tells what the step costs without it (the most that hiding
     * it in another kernel could save); CINFER_TL_NSPLIT=k forces k splits */
    static const int tl_skip = ci_cu_env_int("CINFER_TL_SKIP_ATTN", 0);
    static const int tl_nsplit = ci_cu_env_int("CINFER_TL_NSPLIT", 0);
    if (tl_skip) return cudaSuccess;
    if (tl_nsplit > 0) nsplit = tl_nsplit;
#endif
    const int64_t per = (int64_t)S * H * (hd + 2); /* workspace floats per split */
    if (!ws) nsplit = 1;
    while (nsplit > 1 && nsplit * per > ws_floats) nsplit--;
    /* the splits merged by the kernel's last CTA per (seq, kv head) when the
     * counters after ws cover the grid; else by the merge kernel */
    static const int separate = getenv("CINFER_DEC_COMBINE") != nullptr;
    unsigned *cnt = nsplit > 1 && (int64_t)S * KV <= CI_CU_ATT_CNT && !separate
                        ? (unsigned *)(ws + ws_floats)
                        : nullptr;
    const bool clu = nsplit > 1 && decode_cluster_on();
    if (clu && nsplit > 16) nsplit = 16;
    auto go = [&](auto launch, float sc, float vs) {
        return launch(st, qkv, S, H, KV, positions, query_start, context_lens, block_tables,
                      max_blocks_per_seq, kc, vc, block_size, sc, window, out, nsplit, ws, vs, cnt);
    };
    if (clu) {
        if (kv_fp8)
            return hd == 64 ? go(decode_launch<64, true, true>, scale * k_scale, v_scale)
                            : go(decode_launch<128, true, true>, scale * k_scale, v_scale);
        return hd == 64 ? go(decode_launch<64, false, true>, scale, 1.0f)
                        : go(decode_launch<128, false, true>, scale, 1.0f);
    }
    if (kv_fp8) /* dequantized K = e4m3 * k_scale: k_scale joins the softmax scale */
        return hd == 64 ? go(decode_launch<64, true>, scale * k_scale, v_scale)
                        : go(decode_launch<128, true>, scale * k_scale, v_scale);
    return hd == 64 ? go(decode_launch<64, false>, scale, 1.0f)
                    : go(decode_launch<128, false>, scale, 1.0f);
}
