/* backend.h — the op interface every backend implements.
 *
 * The model code (src/model/model.c) calls only these ops, so the same
 * forward pass runs on the CPU reference backend and on CUDA. Tensors are
 * 2-D row-major views of backend memory. Activations use the backend's
 * act_dtype (F32 on the CPU); weights keep whatever storage dtype the backend
 * chose in weight_alloc. Every op returns a status: asynchronous backends
 * report launch errors here and execution errors at sync().
 *
 * A step's work is described by ci_batch (vLLM-style flattened metadata):
 * T scheduled tokens of S sequences, each sequence's new tokens contiguous.
 * K/V of the new tokens are written through slot_mapping; attention reads
 * every cached token through block_tables. Prefill, chunked prefill, prefix
 * cache hits and decode are all this one call with different numbers. */
#ifndef CINFER_BACKEND_BACKEND_H
#define CINFER_BACKEND_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "util/dtype.h"
#include "util/qweight.h"
#include "util/status.h"

typedef struct ci_tensor {
    void *data; /* backend memory */
    ci_dtype dtype;
    int64_t rows, cols; /* [rows][cols], row-major, contiguous */
} ci_tensor;

typedef struct ci_batch {
    int num_tokens;                /* T */
    int num_seqs;                  /* S */
    int num_logits;                /* L */
    int max_blocks_per_seq;        /* row stride of block_tables */
    int max_query_len;             /* max over sequences of new tokens */
    int max_context_len;           /* max of context_lens */
    const int32_t *token_ids;      /* [T] */
    const int32_t *positions;      /* [T] absolute position of each token */
    const int32_t *query_start;    /* [S+1] prefix sums of new tokens */
    const int32_t *context_lens;   /* [S] tokens in the cache after this step */
    const int32_t *block_tables;   /* [S][max_blocks_per_seq] physical blocks */
    const int32_t *slot_mapping;   /* [T] block*block_size+offset for new K/V;
                                      -1 = do not write (padding) */
    const int32_t *logits_indices; /* [L] rows of T whose logits are wanted */
    int num_decode_seqs;           /* leading sequences with exactly one new
                                      token (0: none or not counted); a
                                      backend may run their attention apart */
    const int32_t *sample_src;     /* [T] or NULL: where sample_src[t] >= 0, token t is
                                      the token row sample_src[t] of the backend's
                                      last sample op drew (plan-ahead scheduling: that
                                      step may still be running); take_samples writes
                                      it into token_ids on the device */
} ci_batch;

/* Paged KV cache. Per layer, K and V are each
 * [num_blocks][num_kv_heads][block_size][head_dim]: one kv head's block is
 * contiguous, so a kernel reads it with wide loads. dtype is the backend's
 * act_dtype, or CI_F8_E4M3 (--kv-cache-dtype fp8): rope_cache stores
 * e4m3(x / scale) (saturated, ties to even: ci_f32_to_fp8_e4m3) and
 * attention reads e4m3 * scale, with the layer's k_scale / v_scale. */
typedef struct ci_kv_cache {
    int num_layers, num_blocks, block_size, num_kv_heads, head_dim;
    ci_dtype dtype;
    void **k, **v;            /* [num_layers] backend pointers */
    float *k_scale, *v_scale; /* [num_layers] host; 1.0 unless the checkpoint has scales */
} ci_kv_cache;

/* Shape of the fused q|k|v activation [T][(H + 2*KV) * head_dim]. */
typedef struct ci_attn_shape {
    int num_heads, num_kv_heads, head_dim;
} ci_attn_shape;

/* Rotary embedding table built on the host (src/model/rope.c) for any
 * scaling type: cos_sin is [max_positions][rot_dim] holding rot_dim/2 cosines
 * then rot_dim/2 sines (F32). rot_dim <= head_dim (partial rotary). */
typedef struct ci_rope_table {
    ci_tensor cos_sin;
    int rot_dim;
    int max_positions;
    int neox; /* 1: rotate-half (HF Llama/Qwen) pairs (i, i+rot/2); 0: GPT-J
                 interleaved pairs (2i, 2i+1) */
} ci_rope_table;

/* ---- sampling op (logits stay on the device; only results come back) ----
 *
 * One ci_sample_row per sample to draw. Several rows may name the same
 * logits row (n > 1 samples of a sequence, different `stream`); such rows
 * must carry the same adjustment range (adjustments belong to the logits
 * row). Semantics are those of src/engine/sampling.c (the reference):
 * adjust -> greedy or temperature -> top-k -> top-p -> min-p -> a draw by
 * inverse CDF over the kept set in token-id order with u = Philox(seed,
 * stream, step); logprobs are of the RAW logits (before adjustments and
 * the bitmask). The bitmask array holds nmasks rows of (V + 31) / 32 words;
 * bit (id % 32) of word id / 32 set = id allowed. */
#define CI_SAMPLE_MAX_TOP 20

typedef struct ci_sample_row {
    int32_t logits_row;   /* row of the logits tensor */
    int32_t top_logprobs; /* -1: no logprobs; 0..CI_SAMPLE_MAX_TOP: the token's
                             logprob plus that many top ones */
    int32_t adj_start;    /* adjustments [adj_start, adj_start + adj_count) */
    int32_t adj_count;
    int32_t vocab_limit; /* ids >= vocab_limit are never sampled (a padded
                            vocabulary); 0: the whole row */
    int32_t mask_row;    /* -1: none; else row of the op's bitmask array (a grammar's allowed ids):
                            ids whose bit is clear are -inf before temperature and the filters */
    float temperature;   /* <= 0: greedy */
    int32_t top_k;       /* <= 0: off (1: greedy) */
    float top_p;         /* >= 1 or <= 0: off */
    float min_p;         /* <= 0: off; at most 1 */
    float repetition_penalty;                  /* used by entries with CI_ADJ_REPEAT */
    float presence_penalty, frequency_penalty; /* used by entries with count > 0 */
    uint64_t seed, stream, step;               /* the draw's Philox counter key */
} ci_sample_row;

/* One distinct token of a logits row to adjust, applied in process order:
 * mask to -inf, then x += bias (OpenAI logit_bias; before the penalties as
 * in vLLM v1, whose logits processors run before apply_penalties), then
 * repetition penalty (x > 0 ? x / rp : x * rp), then
 * x -= presence + frequency * count. */
enum { CI_ADJ_MASK = 1, CI_ADJ_REPEAT = 2, CI_ADJ_BIAS = 4 };
typedef struct ci_logit_adjust {
    int32_t token;
    int32_t flags; /* CI_ADJ_* */
    int32_t count; /* occurrences in the output (presence/frequency); 0: none */
    float bias;    /* added when flags has CI_ADJ_BIAS */
} ci_logit_adjust;

typedef struct ci_sample_result {
    int32_t token;
    int32_t num_kept; /* tokens with nonzero probability in the final distribution */
    float logprob;    /* the token's log-softmax of the raw row (when asked) */
    int32_t num_top;
    int32_t top_ids[CI_SAMPLE_MAX_TOP]; /* by logprob, lowest id first on ties */
    float top_logprobs[CI_SAMPLE_MAX_TOP];
} ci_sample_result;

typedef struct ci_backend ci_backend;

/* ---- fused matmul: a prologue on x, the product, and an optional
 * accumulate into y, in one op so that a backend can run it as one kernel
 * where the rows are few (the model's decode-step layer), or write the
 * product's quantized input straight from the prologue (W8A8 weights) ---- */
typedef enum ci_mm_prologue {
    CI_MM_PRO_NONE = 0,
    CI_MM_PRO_RMSNORM, /* in = rmsnorm(x) * norm_w (x: [n][K]) */
    CI_MM_PRO_SWIGLU,  /* in = silu(x[:, 0:K]) * x[:, K:2K] (x: [n][2K]) */
} ci_mm_prologue;

/* rope_cache's work (rotate q and k, write k and v of every token to
 * layer `layer` of the cache) as the product's epilogue: y is the qkv
 * activation [n][(H + 2 KV) head_dim] */
typedef struct ci_mm_rope {
    const ci_attn_shape *shape;
    const ci_rope_table *rope;
    const ci_batch *batch;
    ci_kv_cache *kv;
    int layer;
} ci_mm_rope;

typedef struct ci_matmul_fused {
    const ci_tensor *x;
    ci_mm_prologue pro;
    const ci_tensor *norm_w; /* RMSNORM: [K] F32 */
    float eps;
    /* RMSNORM only, or NULL: residual += x first, then in = rmsnorm(residual)
     * * norm_w (the rmsnorm op with a residual; x is not written) */
    ci_tensor *residual;
    const ci_tensor *w, *bias; /* as matmul's */
    int accumulate;            /* y += in . w^T (+ bias), the product rounded to y's dtype first */
    ci_tensor *y;
    const ci_mm_rope *rope; /* NULL, or rope_cache on y after the product (no accumulate) */
    /* y [n][rows / 2] = swiglu of the product [n][rows] (w the fused
     * gate|up: gate rows, then up rows), only where matmul_swiglu_ok says
     * the backend takes this op with it (no accumulate, no rope) */
    int swiglu;
    /* [n][K] of the activation dtype: where a backend that cannot fuse a
     * weight's prologue writes `in` first (the op is then two kernels) */
    ci_tensor *scratch;
} ci_matmul_fused;

typedef struct ci_backend_ops {
    /* memory */
    ci_status (*alloc)(ci_backend *be, size_t bytes, void **out);
    void (*free)(ci_backend *be, void *ptr);
    ci_status (*to_device)(ci_backend *be, void *dst, const void *src, size_t bytes);
    ci_status (*to_host)(ci_backend *be, void *dst, const void *src, size_t bytes);
    ci_status (*memset0)(ci_backend *be, void *dst, size_t bytes);
    ci_status (*sync)(ci_backend *be);

    /* weights: the backend picks the storage dtype for a checkpoint dtype,
     * then rows are written (converted) piecewise so q|k|v and gate|up can be
     * concatenated at load. */
    ci_status (*weight_alloc)(ci_backend *be, ci_dtype src_dtype, int64_t rows, int64_t cols,
                              ci_tensor *out);
    ci_status (*weight_write)(ci_backend *be, ci_tensor *w, int64_t row0, const void *src,
                              ci_dtype src_dtype, int64_t nrows);

    /* quantized weights: qweight_create takes the canonical host description
     * (util/qweight.h) and returns a tensor of dtype CI_QW, [rows][cols], whose
     * data is the backend's own ci_qweight (a host struct; its arrays in
     * backend memory) and that matmul accepts as w with the semantics of
     * ci_qweight_dequant_row; qweight_free releases it. Both NULL on a
     * backend without quantized kernels (the load then fails). */
    ci_status (*qweight_create)(ci_backend *be, const ci_qweight *host, ci_tensor *out);
    void (*qweight_free)(ci_backend *be, ci_tensor *w);

    /* batch metadata: copy host arrays into backend memory the ops can read
     * (identity on the CPU). The returned batch is valid until the next call. */
    ci_status (*prepare_batch)(ci_backend *be, const ci_batch *host, ci_batch *dev);

    /* ops */
    /* out[i] = table[ids[i]] (converted to act dtype). ids in backend memory. */
    ci_status (*embedding)(ci_backend *be, const ci_tensor *table, const int32_t *ids, int n,
                           ci_tensor *out);
    /* y[n][out] = x[n][in] . w[out][in]^T (+ bias[out]) */
    ci_status (*matmul)(ci_backend *be, const ci_tensor *x, const ci_tensor *w,
                        const ci_tensor *bias, ci_tensor *y);
    /* With residual: residual += x; out = rmsnorm(residual) * w.
     * Without: out = rmsnorm(x) * w. out may alias x. */
    ci_status (*rmsnorm)(ci_backend *be, ci_tensor *x, ci_tensor *residual, const ci_tensor *w,
                         float eps, ci_tensor *out);
    /* Qwen3 q/k-norm: RMSNorm over each head_dim slice of q and k inside the
     * fused qkv activation, in place; w_q, w_k are [head_dim]. */
    ci_status (*qk_norm)(ci_backend *be, ci_tensor *qkv, const ci_attn_shape *shape,
                         const ci_tensor *w_q, const ci_tensor *w_k, float eps);
    /* Rotates q (in place) and k by positions, then writes k and v of every
     * token into layer `layer` of the cache at slot_mapping. */
    ci_status (*rope_cache)(ci_backend *be, ci_tensor *qkv, const ci_attn_shape *shape,
                            const ci_rope_table *rope, const ci_batch *batch, ci_kv_cache *kv,
                            int layer);
    /* out[T][H*head_dim] = causal attention of each token's q over its
     * sequence's cached K/V (positions < its own + 1), GQA by head groups.
     * window > 0: sliding-window attention, the token at position p sees only
     * positions p - window + 1 .. p (0: no window). */
    ci_status (*attention)(ci_backend *be, const ci_tensor *qkv, const ci_attn_shape *shape,
                           const ci_batch *batch, const ci_kv_cache *kv, int layer, float scale,
                           int window, ci_tensor *out);
    /* out[n][I] = silu(gate_up[n][0:I]) * gate_up[n][I:2I] */
    ci_status (*swiglu)(ci_backend *be, const ci_tensor *gate_up, ci_tensor *out);
    /* out[i] = x[idx[i]] (idx in backend memory) */
    ci_status (*gather_rows)(ci_backend *be, const ci_tensor *x, const int32_t *idx, int n,
                             ci_tensor *out);

    /* KV block copies: for each i, block src[i] -> dst[i] in every layer,
     * K and V (the scheduler's copy-on-write list; src/dst host arrays,
     * pairs must not chain within one call). May be NULL on a backend
     * without it (the engine then falls back to to_device/to_host copies). */
    ci_status (*copy_blocks)(ci_backend *be, ci_kv_cache *kv, const int32_t *src,
                             const int32_t *dst, int n);

    /* Samples n rows from logits ([rows][V] F32, backend memory; not modified
     * as seen by the caller). rows, adj, masks and out are host arrays.
     * Completes before returning (one host sync). */
    ci_status (*sample)(ci_backend *be, const ci_tensor *logits, const ci_sample_row *rows, int n,
                        const ci_logit_adjust *adj, int nadj, const uint32_t *masks, int nmasks,
                        ci_sample_result *out);
    /* Optional (NULL: only the blocking sample): sample_async enqueues what
     * sample does and returns while the device works (the engine plans the
     * next step meanwhile); sample_wait completes it, writing `out`. Nothing
     * else may run on the backend in between, except one more step's
     * prepare_batch, take_samples, forward and sample_async where
     * take_samples is offered (plan-ahead scheduling: two samples in flight,
     * sample_wait completing the older); rows, adj and masks are read
     * before sample_async returns. */
    ci_status (*sample_async)(ci_backend *be, const ci_tensor *logits, const ci_sample_row *rows,
                              int n, const ci_logit_adjust *adj, int nadj, const uint32_t *masks,
                              int nmasks, ci_sample_result *out);
    ci_status (*sample_wait)(ci_backend *be);
    /* Plan-ahead scheduling: token_ids[t] of the prepared batch dev (its
     * backend copy) becomes the token of row sample_src[t] of the last
     * sample op, for every t with sample_src[t] >= 0, in stream order (the
     * sample op may still be running; nothing waits). NULL: the engine
     * does not plan ahead on this backend. */
    ci_status (*take_samples)(ci_backend *be, const ci_batch *dev);
    /* Plan-ahead scheduling (optional): mark_ready records, in stream order
     * (a graph captures it), that the step is near its end; wait_ready
     * blocks until the stream passes the last mark (at once when none is
     * pending), so the host plans the next step while the tail runs. */
    ci_status (*mark_ready)(ci_backend *be);
    ci_status (*wait_ready)(ci_backend *be);

    /* Tensor parallelism: x (every rank's [rows][cols], same shape) becomes
     * the sum over the ranks of be->comm, on every rank; a no-op without a
     * group (CPU: comm.c's in-process all-reduce; CUDA: NCCL's, one GPU
     * per rank). NULL where the backend has no collectives (ci_model_load
     * then refuses a tensor-parallel split). */
    ci_status (*all_reduce)(ci_backend *be, ci_tensor *x);
    /* Pipeline parallelism: x to rank `peer` of be->pp_comm, which receives
     * it into a tensor of the same shape; each returns once the data has
     * moved (NULL where the backend has none). */
    ci_status (*send)(ci_backend *be, const ci_tensor *x, int peer);
    ci_status (*recv)(ci_backend *be, ci_tensor *x, int peer);
    /* Tensor parallelism, the vocabulary split: out[i] = table[ids[i] -
     * row0] for ids in [row0, row0 + table rows), zeros for the others (the
     * all-reduce over the ranks then gives every row); and the ranks' parts
     * [rows][cols_r] side by side in rank order into out [rows][sum cols_r]
     * on rank `root` of be->comm (the LM head's logits). NULL: none. */
    ci_status (*embedding_shard)(ci_backend *be, const ci_tensor *table, int64_t row0,
                                 const int32_t *ids, int n, ci_tensor *out);
    ci_status (*gather_cols)(ci_backend *be, const ci_tensor *part, ci_tensor *out, int root);
    /* The calling thread will run this backend's ops (a rank's worker
     * thread, or the runner's after other ranks' backends were created on
     * it): CUDA makes the backend's device current. NULL: nothing to do. */
    ci_status (*thread_attach)(ci_backend *be);
    /* Every rank calls it at the start of a step, before anything that may
     * fail: CUDA makes its NCCL communicators over comm and pp_comm there
     * when the comm's epoch has none yet (every rank must call it; it
     * returns once all have). NULL: nothing to do. */
    ci_status (*comm_ready)(ci_backend *be);

    /* ---- optional (NULL on the CPU backend) ---- */
    /* The fused matmul above, for x of any rows: the values of the
     * prologue's op, matmul and an add run one after another (up to the
     * order of the norm's sum of squares). The model runs its whole
     * decode-step layer through it for steps of up to matmul_fused_rows(be)
     * tokens, and larger steps' quantized weights with their norm / SwiGLU. */
    int (*matmul_fused_rows)(ci_backend *be);
    ci_status (*matmul_fused)(ci_backend *be, const ci_matmul_fused *a);
    /* Steps of up to this many tokens run the qkv projection and rope_cache
     * as one matmul_fused (its rope epilogue, no prologue), whether or not
     * matmul_fused_rows allows the rest (0: never; NULL on the CPU). */
    int (*matmul_rope_rows)(ci_backend *be);
    /* Whether matmul_fused takes a, whose .swiglu is set (the product and
     * swiglu in one kernel); NULL: never. */
    int (*matmul_swiglu_ok)(ci_backend *be, const ci_matmul_fused *a);
    /* Starts uploading the next sample op's bitmasks (nmasks rows of
     * ci_mask_words(V) words, host memory read before returning) while the
     * device still runs the forward; a sample call with the same masks
     * pointer and count then uses the upload instead of packing them. */
    ci_status (*stage_masks)(ci_backend *be, const uint32_t *masks, int nmasks, int words);
    /* Device memory: free and total bytes (KV cache sizing). */
    ci_status (*mem_info)(ci_backend *be, size_t *free_bytes, size_t *total_bytes);
    /* While on, the GEMM plans the forwards make are tuned for eager steps
     * too (the runner's startup forwards at a few token counts: CUDA times
     * cuBLASLt's candidates once a bucket of token counts, so eager steps
     * later find a timed algorithm instead of the heuristic's first).
     * Returns whether it tunes at all (0: nothing was turned on, no
     * forwards needed). NULL: nothing to tune. */
    int (*tune_gemms)(ci_backend *be, int on);
    /* prepare_batch into one persistent buffer whose address never changes,
     * for CUDA graphs: the same array sizes give the same device pointers on
     * every call. The first call fixes the buffer's capacity (call it with
     * the largest batch first); a larger batch later is an error. */
    ci_status (*prepare_batch_static)(ci_backend *be, const ci_batch *host, ci_batch *dev);
    /* Graph capture: between capture_begin and capture_end the ops are
     * recorded, not run; capture_end instantiates the recording. A launch
     * replays the same kernels on the same pointers, so inputs must be
     * written to the same buffers (prepare_batch_static) before it. */
    ci_status (*graph_capture_begin)(ci_backend *be);
    ci_status (*graph_capture_end)(ci_backend *be, void **graph);
    ci_status (*graph_launch)(ci_backend *be, void *graph);
    void (*graph_destroy)(ci_backend *be, void *graph);

    void (*destroy)(ci_backend *be);
} ci_backend_ops;

struct ci_comm; /* backend/comm.h */

struct ci_backend {
    const ci_backend_ops *ops;
    const char *name;
    ci_dtype act_dtype; /* activations and KV cache */
    void *impl;
    /* tensor parallelism: the group this backend's rank belongs to (NULL:
     * none) and its rank in it; all_reduce runs over it. Pipeline
     * parallelism: the group of every rank of every stage (stage s, tensor
     * rank t is rank s * tp + t there), over which send / recv run */
    struct ci_comm *comm;
    int rank;
    struct ci_comm *pp_comm;
    int pp_rank;
};

/* Activation (and KV cache) dtype a backend is asked for. */
typedef enum ci_act_dtype {
    CI_ACT_DEFAULT = 0, /* CPU: F32; CUDA: BF16 */
    CI_ACT_BF16,
    CI_ACT_F32, /* CUDA parity mode: F32 activations, F32 weights, F32 GEMM */
} ci_act_dtype;

typedef struct ci_backend_options {
    int num_threads; /* CPU: 0 = all cores */
    int device_id;   /* CUDA */
    int act_dtype;   /* ci_act_dtype; the CPU backend is F32 only */
} ci_backend_options;

/* name: "cpu" (or "cuda" when built with it). */
ci_status ci_backend_create(const char *name, const ci_backend_options *opts, ci_backend **out);
void ci_backend_destroy(ci_backend *be);
/* Devices a backend can run ranks on: -1 no limit (the CPU's ranks are
 * threads), else the GPUs present (0 when none or not built in). */
int ci_backend_device_count(const char *name);

/* The sample op's argument checks, shared by every backend: F32 logits,
 * each row's logits row, adjustment range, mask row and top_logprobs in
 * range, every adjusted token inside the vocabulary. `who` prefixes the
 * message. */
ci_status ci_sample_check(const char *who, const ci_tensor *logits, const ci_sample_row *rows,
                          int n, const ci_logit_adjust *adj, int nadj, const uint32_t *masks,
                          int nmasks);

/* Words per bitmask row of a V-token vocabulary. */
static inline int ci_mask_words(int64_t V) {
    return (int)((V + 31) / 32);
}

/* Allocates an activation tensor of act_dtype. */
ci_status ci_tensor_alloc(ci_backend *be, ci_dtype dtype, int64_t rows, int64_t cols,
                          ci_tensor *out);
void ci_tensor_free(ci_backend *be, ci_tensor *t);

/* The dtypes a KV cache may hold on be: its activation dtype, or E4M3
 * (--kv-cache-dtype fp8). */
static inline int ci_kv_dtype_ok(const ci_backend *be, ci_dtype d) {
    return d == be->act_dtype || d == CI_F8_E4M3;
}

/* Allocates a paged KV cache for the model shape in the backend's act_dtype
 * (scales 1.0). */
ci_status ci_kv_cache_create(ci_backend *be, int num_layers, int num_kv_heads, int head_dim,
                             int num_blocks, int block_size, ci_kv_cache **out);
/* The same with the element type: act_dtype or CI_F8_E4M3. */
ci_status ci_kv_cache_create_dtype(ci_backend *be, ci_dtype dtype, int num_layers, int num_kv_heads,
                                   int head_dim, int num_blocks, int block_size, ci_kv_cache **out);
void ci_kv_cache_destroy(ci_backend *be, ci_kv_cache *kv);

#endif
