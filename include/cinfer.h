/* cinfer.h — public C API of the cinfer inference engine.
 *
 * Self-contained: includes only the C standard headers. Handles are opaque;
 * every fallible call returns an int code (0 = ok) and fills a cinfer_error
 * when one is passed (may be NULL).
 *
 *   cinfer_engine_config cfg = cinfer_engine_config_default();
 *   cfg.model_dir = "models/tinyqwen2-code";
 *   cinfer_engine *e;  cinfer_error err;
 *   if (cinfer_engine_create(&cfg, &e, &err)) { puts(err.message); ... }
 *   cinfer_sampling_params sp = cinfer_sampling_params_default();
 *   int64_t id;
 *   cinfer_add_request(e, "def fib(n):", NULL, 0, &sp, 0, &id, &err);
 *   while (cinfer_has_unfinished(e)) {
 *       const cinfer_output *o; int n;
 *       cinfer_step(e, &o, &n, &err);
 *       for (int i = 0; i < n; i++) fwrite(o[i].text, 1, o[i].text_len, stdout);
 *   }
 *   cinfer_engine_destroy(e);
 */
#ifndef CINFER_H
#define CINFER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CINFER_OK = 0,
    CINFER_ERR_IO = 1,
    CINFER_ERR_FORMAT = 2,
    CINFER_ERR_INVALID = 3,
    CINFER_ERR_UNSUPPORTED = 4,
    CINFER_ERR_NOMEM = 5,
    CINFER_ERR_CAPACITY = 6,
    CINFER_ERR_BACKEND = 7,
    CINFER_ERR_INTERNAL = 8,
};

typedef struct cinfer_error {
    int code;          /* CINFER_OK or CINFER_ERR_* */
    char message[256]; /* one line */
} cinfer_error;

typedef enum cinfer_finish_reason {
    CINFER_FINISH_NONE = 0, /* still running */
    CINFER_FINISH_STOP,     /* EOS, stop token id or stop string */
    CINFER_FINISH_LENGTH,   /* max_tokens */
    CINFER_FINISH_ABORT,
    CINFER_FINISH_ERROR,
} cinfer_finish_reason;

typedef struct cinfer_engine cinfer_engine;

/* Every engine option; the CLI (--flag names in brackets) and the server fill
 * this one struct, and the engine validates it at create time (an invalid
 * value is an error, never ignored). Start from
 * cinfer_engine_config_default(); a 0 (or NULL) size, dtype, device or
 * utilization means its default. */
typedef struct cinfer_engine_config {
    const char *model_dir;         /* Hugging Face directory (required) */
    const char *device;            /* "cpu" (default) or "cuda" [--device] */
    int num_threads;               /* CPU threads, 0 = all cores [--threads] */
    const char *dtype;             /* activations and KV: "auto" (cpu float32, cuda
                                      bfloat16), "bfloat16", "float32" [--dtype] */
    int block_size;                /* KV block size in tokens (16) [--block-size] */
    int max_num_batched_tokens;    /* token budget per step (cuda 8192, cpu 2048) */
    int max_num_seqs;              /* running sequences (cuda 1024, cpu 256)
                                      [--max-num-seqs] */
    int max_model_len;             /* prompt + output limit; 0 = the model's context,
                                      larger is refused [--max-model-len] */
    int64_t kv_cache_tokens;       /* KV capacity in tokens (0 = from memory) */
    int64_t kv_cache_memory;       /* KV budget in bytes (0 = default) */
    double gpu_memory_utilization; /* cuda: fraction of the device for weights,
                                      activations and KV, in (0, 1] (0.90) */
    int enable_prefix_caching;     /* 1 [--no-prefix-caching] */
    int enforce_eager;             /* 1: no CUDA graphs [--enforce-eager] */
    int max_graph_batch_size;      /* decode graphs up to this batch (0 = max_num_seqs,
                                      at most 512) [--max-graph-batch-size] */
    int max_graph_context;         /* the first graph set serves contexts up to this;
                                      longer contexts get graphs of a larger bound
                                      (0 = 8192) [--max-graph-context] */
    int aging_steps;               /* scheduler: steps per priority level gained (100) */
    /* speculative decoding (off when num_speculative_tokens is 0) */
    const char *speculative_method; /* "ngram" (prompt lookup) or "draft" (a smaller model of
                                       the same tokenizer) [--speculative-method] */
    const char *speculative_model;  /* the draft model's directory [--speculative-model] */
    int num_speculative_tokens;     /* drafted tokens per step, 1..16 [--num-speculative-tokens] */
    int ngram_min, ngram_max;       /* n-gram sizes looked up (1, 4) [--ngram-min/--ngram-max] */
    int speculative_disable_by_batch_size; /* no drafts when more decodes run in a step
                                              (0 = never off) */
    const char *kv_cache_dtype; /* NULL or "auto" (the model dtype); "fp8" / "fp8_e4m3": E4M3
                                   with the checkpoint's per-layer k/v scales (else 1.0), half
                                   the KV bytes [--kv-cache-dtype]; fp8_e5m2 is refused */
    const char *quantization;   /* NULL or "none"; "fp8": per-channel FP8 E4M3 of a
                                   dense checkpoint's linear weights at load */
    int tensor_parallel_size;   /* ranks the model is split over (0 or 1: none); cpu:
                                   threads of one process [--tensor-parallel-size] */
    int pipeline_parallel_size; /* stages the layers are split over (0 or 1: none), each of
                                   tensor_parallel_size ranks [--pipeline-parallel-size] */
    int async_scheduling;       /* 1: the next step is launched before the last one's
                                   tokens become outputs, so detokenization, stop strings,
                                   streaming and the caller's own work overlap the device
                                   (-1: off; 0: by device, cuda on, cpu off); 2: plan
                                   ahead too: the next step is planned and launched
                                   while this one runs, its input ids read on the
                                   device (not with speculative decoding or several
                                   ranks) [--async-scheduling / --no-async-scheduling /
                                   --plan-ahead] */
    int prefill_first;          /* 1: a step with prompt work runs it without the running
                                   decodes (they wait one step, never two in a row): a
                                   shorter time to first token, a longer gap between tokens
                                   when prompts arrive (SGLang's default); 0: decodes ride
                                   along in every step (vLLM's) [--prefill-first] */
    /* weight-loading progress (may be NULL) */
    void (*progress)(size_t done, size_t total, void *user);
    void *progress_user;
} cinfer_engine_config;

/* "device=cuda dtype=bfloat16 ..." : the options that shape the engine, one
 * line (for startup logs). Returns buf. */
const char *cinfer_engine_config_describe(const cinfer_engine_config *cfg, char *buf, size_t size);

cinfer_engine_config cinfer_engine_config_default(void);

#define CINFER_MAX_LOGPROBS 20

/* Structured outputs: the output is constrained to a grammar
 * (docs/structured_outputs.md). */
typedef enum cinfer_structured_kind {
    CINFER_STRUCTURED_NONE = 0,
    CINFER_STRUCTURED_JSON_SCHEMA, /* structured: a JSON Schema document */
    CINFER_STRUCTURED_JSON_OBJECT, /* any JSON object (structured unused) */
    CINFER_STRUCTURED_REGEX,       /* structured: a pattern the whole output matches */
    CINFER_STRUCTURED_GRAMMAR,     /* structured: GBNF (llama.cpp syntax) */
} cinfer_structured_kind;
/* OpenAI logit_bias: bias added to the token's logit before sampling. */
typedef struct cinfer_logit_bias {
    int32_t token; /* [0, vocab) */
    float bias;    /* [-100, 100] */
} cinfer_logit_bias;

typedef struct cinfer_sampling_params {
    float temperature;        /* 1.0; 0 = greedy */
    int top_k;                /* 0 or -1 = off */
    float top_p;              /* (0, 1]; 1 = off */
    float min_p;              /* [0, 1]; 0 = off */
    float repetition_penalty; /* 1 = off; HF: prompt + output tokens */
    float presence_penalty;   /* [-2, 2]; output tokens */
    float frequency_penalty;  /* [-2, 2]; output tokens */
    int64_t seed;             /* -1 = derived from the request id */
    int max_tokens;           /* 16 */
    int min_tokens;           /* 0: EOS / stop ids masked before this many */
    const int32_t *stop_token_ids;
    int num_stop_token_ids;
    const char *const *stop; /* stop strings (not part of the output text) */
    int num_stop;
    int ignore_eos;
    int n;                   /* parallel samples (1) */
    int logprobs;            /* -1 = off; k >= 0: top-k + the sampled token */
    int prompt_logprobs;     /* -1 = off; k >= 0 */
    int skip_special_tokens; /* 1 */
    /* structured output: compiled at add time (a bad one refuses the request
     * with the compiler's message); each sample is constrained, ends (reason
     * stop) when the grammar is complete, and gets no speculative drafts */
    int structured_kind;                 /* cinfer_structured_kind */
    const char *structured;              /* its text (NUL-terminated), copied by the engine */
    const cinfer_logit_bias *logit_bias; /* copied; a token listed twice: the last wins */
    int num_logit_bias;
} cinfer_sampling_params;

cinfer_sampling_params cinfer_sampling_params_default(void);

typedef struct cinfer_logprob {
    int32_t token;
    float logprob; /* from the unprocessed log-softmax */
    int num_top;
    int32_t top_ids[CINFER_MAX_LOGPROBS];
    float top_logprobs[CINFER_MAX_LOGPROBS];
} cinfer_logprob;

typedef struct cinfer_output {
    int64_t request_id;
    int sample_index;
    const int32_t *token_ids; /* new token ids this step */
    int num_token_ids;
    const char *text; /* new text (not NUL-terminated), text_len bytes */
    size_t text_len;
    cinfer_finish_reason finish_reason;    /* NONE until the sample ends */
    const cinfer_logprob *logprobs;        /* num_token_ids entries, or NULL */
    const cinfer_logprob *prompt_logprobs; /* prompt positions 1.. (once) */
    int num_prompt_logprobs;
    const char *error; /* finish_reason ERROR: what failed (one line), else NULL */
} cinfer_output;

typedef struct cinfer_metrics {
    int num_running, num_waiting;
    int64_t num_preemptions;
    double kv_usage; /* used blocks / total, 0..1 */
    int num_kv_blocks, kv_blocks_used, peak_kv_blocks_used, block_size;
    int64_t prefix_cache_queried_tokens, prefix_cache_hit_tokens;
    int64_t prompt_tokens, generation_tokens;
    int64_t num_steps, num_requests, num_finished;
    int64_t num_errors; /* samples finished with reason ERROR (engine faults) */
    /* decode steps that replayed a CUDA graph / forwards that ran eagerly */
    int64_t graph_steps, eager_steps;
    /* wall time of the steps by phase: scheduling and batch building, the
     * model forward (to its sync), sampling, and token output handling */
    double time_schedule_s, time_forward_s, time_sample_s, time_output_s;
    double time_masks_s; /* grammar masks filled on the host while the forward runs (inside
                            time_forward_s; hidden when shorter than the device's forward) */
    double time_draft_s; /* speculative decoding's draft model proposals (its K/V mirror is
                            enqueued with the target's forward and counted there) */
    /* startup: weight loading, the profiling forward and graph capture */
    double load_s, profile_s, capture_s;
    int num_graphs; /* captured so far */
    int64_t kv_cache_bytes;
    int max_model_len;
    /* speculative decoding: verification steps, drafted and accepted tokens,
     * accepted tokens by draft position (position 0 = the first draft) */
    int64_t spec_verify_steps, spec_draft_tokens, spec_accepted_tokens;
    int64_t spec_accepted_at[16];
    /* plan-ahead scheduling: steps launched while the step before them was
     * still on the device (their input ids read there) */
    int64_t ahead_steps;
    /* the eager forwards' share of time_forward_s (steps with prompt
     * tokens, or beyond the graphs); the rest replayed graphs */
    double time_forward_eager_s;
} cinfer_metrics;

int cinfer_engine_create(const cinfer_engine_config *cfg, cinfer_engine **out, cinfer_error *err);
void cinfer_engine_destroy(cinfer_engine *e);

/* Queues a request: text (encoded with the model's tokenizer), or, when
 * text is NULL, token_ids[num_token_ids]. Errors concern this request only
 * (bad token id, max_tokens <= 0, top_p outside (0, 1], negative
 * temperature, prompt longer than the context, cannot fit the KV cache).
 * params may be NULL (defaults). Lower priority value = more urgent. */
int cinfer_add_request(cinfer_engine *e, const char *text, const int32_t *token_ids,
                       int num_token_ids, const cinfer_sampling_params *params, int priority,
                       int64_t *request_id, cinfer_error *err);
/* Aborts a request; its outputs with finish reason abort come from the
 * next cinfer_step(). */
int cinfer_abort_request(cinfer_engine *e, int64_t request_id, cinfer_error *err);
/* One engine step. *outputs is valid until the next step (or
 * cinfer_complete_step). */
int cinfer_step(cinfer_engine *e, const cinfer_output **outputs, int *num_outputs,
                cinfer_error *err);
/* Async scheduling: waits for the step the last cinfer_step launched and
 * takes its tokens in (their outputs come from the next cinfer_step), so that
 * requests added and aborted now make the next step's plan; a no-op with
 * nothing in flight. A loop that adds requests between steps (a server)
 * calls it before adding them; cinfer_step calls it itself. With plan-ahead
 * scheduling (async_scheduling 2) the next plan is made before the step in
 * flight completes, so this only waits, where the forward marks it, until
 * that step's last layers begin. */
int cinfer_complete_step(cinfer_engine *e, cinfer_error *err);
/* Async scheduling, after cinfer_complete_step: the first tokens of the step
 * it completed (valid until the next cinfer_step or cinfer_early_outputs),
 * so that they reach their clients before the next step is planned and
 * launched (time to first token); the step's other outputs come from the
 * next cinfer_step while the device runs, as do all of a step that gave no
 * first token. Either way each output is returned once. */
int cinfer_early_outputs(cinfer_engine *e, const cinfer_output **outputs, int *num_outputs,
                         cinfer_error *err);
int cinfer_has_unfinished(const cinfer_engine *e);
cinfer_metrics cinfer_get_metrics(const cinfer_engine *e);

/* Helpers: *ids / *text are malloc'd; release with cinfer_free. */
int cinfer_tokenize(cinfer_engine *e, const char *text, int add_special_tokens, int32_t **ids,
                    size_t *num_ids, cinfer_error *err);
int cinfer_detokenize(cinfer_engine *e, const int32_t *ids, size_t num_ids, int skip_special_tokens,
                      char **text, cinfer_error *err);
void cinfer_free(void *p);
int cinfer_vocab_size(const cinfer_engine *e);
/* The vocabulary entry of a token as the tokenizer stores it (byte-level
 * BPE: "\u0120world" for " world"), as HF's convert_ids_to_tokens; NULL when
 * there is none. Valid while the engine lives. */
const char *cinfer_token_str(const cinfer_engine *e, int32_t id);

#ifdef __cplusplus
}
#endif
#endif
