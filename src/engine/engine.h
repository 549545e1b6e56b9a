/* engine.h — the batching inference engine (vLLM V1 style).
 *
 * Owns: backend, model, tokenizer (optional), paged KV cache, scheduler,
 * batch builder, sampler and per-request state (sampling parameters, logits
 * processors, incremental detokenizers, stop-string matching).
 *
 * One step(): schedule -> apply copy-on-write block copies -> build the batch
 * -> forward -> per sampling sequence: logits processors (min_tokens mask,
 * repetition / presence / frequency penalties) and sampling (seeded Philox
 * keyed by (seed, sample index, output index)) -> scheduler update ->
 * incremental detokenization -> stop checks (stop ids, EOS, stop strings)
 * -> outputs. Buffers grow once; the per-step path does not allocate after
 * warm-up except when a buffer must grow.
 *
 * Stop strings are matched on the detokenized text across token boundaries;
 * text that could still be the start of a stop string is held back until it
 * is decided, and the stop string itself is not part of the output. */
#ifndef CINFER_ENGINE_ENGINE_H
#define CINFER_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/scheduler.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"

typedef struct ci_engine_config {
    const char *model_dir;
    const char *device;            /* "cpu" (default) */
    int num_threads;               /* 0 = all cores */
    int block_size;                /* 16 */
    int max_num_batched_tokens;    /* 2048 */
    int max_num_seqs;              /* 256 */
    int64_t kv_cache_tokens;       /* 0 = from kv_cache_memory or the default */
    int64_t kv_cache_memory;       /* bytes; 0 = default */
    int enable_prefix_caching;     /* 1 */
    int aging_steps;               /* 100 */
    const char *dtype;             /* activations and KV: NULL/"auto" (cpu: float32, cuda:
                                      bfloat16), "bfloat16", "float32" */
    double gpu_memory_utilization; /* cuda, KV sized from memory: fraction of the
                                      device to use (0 = 0.90) */
    int enforce_eager;             /* 1: no CUDA graphs */
    int max_graph_context;         /* decode graphs serve contexts up to this (0 = 8192) */
    ci_progress_fn progress;       /* weight-loading progress (may be NULL) */
    void *progress_user;
} ci_engine_config;

ci_engine_config ci_engine_default_config(void);

#define CI_MAX_LOGPROBS 20

typedef struct ci_engine_sampling {
    float temperature;        /* 1.0; 0 = greedy */
    int top_k;                /* 0 or -1 = off */
    float top_p;              /* 1 = off; must be in (0, 1] */
    float min_p;              /* 0 = off */
    float repetition_penalty; /* 1 = off (HF: prompt + output tokens) */
    float presence_penalty;   /* 0 (output tokens) */
    float frequency_penalty;  /* 0 (output tokens) */
    int64_t seed;             /* -1: derived from the request id */
    int max_tokens;           /* 16 */
    int min_tokens;           /* 0 */
    const int32_t *stop_token_ids;
    int num_stop_token_ids;
    const char *const *stop; /* stop strings */
    int num_stop;
    int ignore_eos;
    int n;                   /* 1 */
    int logprobs;            /* -1 = off, else top-k (0..20) + the sampled token */
    int prompt_logprobs;     /* -1 = off, else top-k per prompt position */
    int skip_special_tokens; /* 1 */
} ci_engine_sampling;

ci_engine_sampling ci_engine_default_sampling(void);

typedef struct ci_engine_logprob {
    int32_t token;
    float logprob; /* the token's log-prob (unprocessed log-softmax) */
    int num_top;
    int32_t top_ids[CI_MAX_LOGPROBS];
    float top_logprobs[CI_MAX_LOGPROBS];
} ci_engine_logprob;

typedef struct ci_engine_output {
    int64_t request_id;
    int sample_index;
    const int32_t *token_ids; /* new tokens (0 or 1 per step) */
    int num_token_ids;
    const char *text; /* new text (not NUL-terminated), may be empty */
    size_t text_len;
    ci_finish_reason finish_reason;           /* CI_FINISH_NONE while running */
    const ci_engine_logprob *logprobs;        /* one per new token, or NULL */
    const ci_engine_logprob *prompt_logprobs; /* positions 1.. of the prompt */
    int num_prompt_logprobs;
} ci_engine_output;

typedef struct ci_engine_metrics {
    int num_running, num_waiting;
    int64_t num_preemptions;
    double kv_usage; /* used blocks / total, 0..1 */
    int num_kv_blocks, kv_blocks_used, peak_kv_blocks_used;
    int block_size;
    int64_t prefix_cache_queried_tokens, prefix_cache_hit_tokens;
    int64_t prompt_tokens, generation_tokens;
    int64_t num_steps, num_requests, num_finished;
    /* wall time of the steps by phase: scheduling and batch building, the
     * model forward (to its sync), sampling, and token output handling */
    double time_schedule_s, time_forward_s, time_sample_s, time_output_s;
    /* startup: weight loading, the profiling forward and graph capture */
    double load_s, profile_s, capture_s;
    int num_graphs;
    int64_t kv_cache_bytes;
} ci_engine_metrics;

typedef struct ci_engine ci_engine;

ci_status ci_engine_create(const ci_engine_config *cfg, ci_engine **out);
void ci_engine_destroy(ci_engine *e);

/* Queues a request (prompt token ids). Errors concern this request only.
 * *request_id gets its id. */
ci_status ci_engine_add_request(ci_engine *e, const int32_t *prompt, int num_prompt,
                                const ci_engine_sampling *sp, int priority, int64_t *request_id);
/* Text prompt: encoded without special tokens added... unless the tokenizer
 * config asks for BOS (add_special_tokens = true, as the CLI does). */
ci_status ci_engine_add_request_text(ci_engine *e, const char *text, const ci_engine_sampling *sp,
                                     int priority, int64_t *request_id);
/* Aborts every sample of a request; its final output (finish reason abort)
 * comes from the next step. Unknown or finished id: CI_ERR_INVALID. */
ci_status ci_engine_abort(ci_engine *e, int64_t request_id);

/* Runs one step; *outs (valid until the next step) gets the outputs. */
ci_status ci_engine_step(ci_engine *e, const ci_engine_output **outs, int *num_outs);
int ci_engine_has_unfinished(const ci_engine *e);
ci_engine_metrics ci_engine_get_metrics(const ci_engine *e);

ci_model *ci_engine_model(ci_engine *e);
ci_tokenizer *ci_engine_tokenizer(ci_engine *e);
ci_scheduler *ci_engine_scheduler(ci_engine *e);
int ci_engine_vocab_size(const ci_engine *e);
int ci_engine_max_model_len(const ci_engine *e);

#endif
