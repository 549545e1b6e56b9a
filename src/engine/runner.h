/* runner.h — the model runner (nano-vllm's ModelRunner): everything between
 * the engine's scheduled step and sampled token ids.
 *
 * Owns: the backend, the model, the paged KV cache and its sizing (the
 * profiling forward on a GPU), the CUDA graphs of decode steps (graphs.h),
 * copy-on-write block copies, the sample op, and speculative decoding's
 * draft model (draft.h: its KV cache mirrors the target's blocks).
 *
 * One step is one ci_runner_launch() + ci_runner_wait(): block copies ->
 * forward (a graph replay when one fits, else eager) -> the sample op over
 * every sample row; between the two the engine emits the previous step's
 * outputs (async scheduling, docs/engine.md).
 * The batch may carry several query tokens per sequence and the rows may
 * sample several logits rows of one sequence, so a step can verify drafted
 * tokens and return several tokens per sequence. The runner allocates
 * nothing per step after warm-up (a graph of a longer context bound is
 * captured on first use). */
#ifndef CINFER_ENGINE_RUNNER_H
#define CINFER_ENGINE_RUNNER_H

#include <stdint.h>

#include "backend/backend.h"
#include "cinfer.h"
#include "engine/draft.h"
#include "model/model.h"
#include "util/status.h"

typedef struct ci_runner ci_runner;

/* What one step hands the runner (host memory). */
typedef struct ci_runner_step {
    const ci_batch *batch;
    const int32_t *copy_src, *copy_dst; /* KV block copies applied before the forward */
    int num_copies;
    const ci_sample_row *rows; /* one per token to sample; rows name logits rows */
    int num_rows;
    const ci_logit_adjust *adj;
    int num_adj;
    const uint32_t *masks; /* grammar bitmasks named by rows' mask_row (ci_mask_words(V) each) */
    int num_masks;
    /* called after the forward is enqueued and before the host waits for it
     * (may be NULL): host work for the sample op that overlaps the device,
     * e.g. filling `masks`; it may set rows, adj and masks (and their
     * counts) itself, read after it returns (plan-ahead scheduling builds
     * the rows there, once the step before is complete) */
    ci_status (*before_sample)(void *user, struct ci_runner_step *st);
    void *before_sample_user;
} ci_runner_step;

/* Where a fault can be injected (tests and CINFER_FAULT_INJECT). */
typedef enum ci_fault_site {
    CI_FAULT_FORWARD = 0,
    CI_FAULT_SAMPLE,
    CI_FAULT_DETOK,
    CI_FAULT_OUTPUT,
    CI_FAULT_RANK, /* another rank's part of the forward (tensor / pipeline parallelism) */
} ci_fault_site;

/* A fault hook: a non-OK status fails that site. request_id and seed (the
 * request's sampling seed as given, -1 if none) are -1 for the sites that
 * concern a whole step (forward, sample); for CI_FAULT_RANK request_id is
 * the failing rank (asked for each rank but the runner's, from the
 * runner's thread, before the step starts: the rank then fails without
 * its forward while the others wait for it in a collective). */
typedef ci_status (*ci_fault_fn)(void *user, ci_fault_site site, int64_t step, int64_t request_id,
                                 int64_t seed);

typedef struct ci_runner_stats {
    int64_t graph_steps, eager_steps; /* forwards that replayed a graph / ran eagerly */
    double time_forward_s, time_sample_s, time_draft_s; /* draft: proposals + mirror */
    double time_forward_eager_s; /* the eager forwards' share of time_forward_s */
    double time_host_overlap_s;  /* before_sample hooks (inside time_forward_s) */
    double load_s, profile_s, capture_s;
    int64_t kv_cache_bytes;
    int num_kv_blocks;
} ci_runner_stats;

/* Loads the model on cfg->device and sizes the KV cache. The config must
 * have passed ci_engine_config_check (engine.h). max_model_len is the
 * context limit the KV sizing and the graphs use. */
ci_status ci_runner_create(const cinfer_engine_config *cfg, ci_runner **out);
/* Logits rows a step may have (the size of the logits buffer; the
 * scheduler keeps every step within it): every running sequence's sampled
 * row and drafts, plus a quarter of the token budget for prompt logprobs,
 * at most the token budget. CUDA defaults with the Llama-3 vocabulary:
 * 3072 rows, 1.6 GB of f32 logits instead of 8192 rows, 4.2 GB. */
int ci_runner_max_logits_rows(const cinfer_engine_config *cfg);
void ci_runner_destroy(ci_runner *r);

/* One step: ci_runner_launch enqueues the copies, the forward and the
 * sample op and, where the backend samples asynchronously (CUDA, one rank),
 * returns while the device runs them; ci_runner_wait completes the oldest
 * step in flight (results written, device errors reported). A backend with
 * take_samples takes a second launch before the first is waited for
 * (plan-ahead scheduling: the batch's sample_src reads the first step's
 * tokens on the device). A failed launch leaves nothing of itself in
 * flight; an earlier step still waits for its ci_runner_wait. */
ci_status ci_runner_launch(ci_runner *r, ci_runner_step *st, ci_sample_result *results);
ci_status ci_runner_wait(ci_runner *r);
/* Plan-ahead: with one step in flight, blocks until it reaches its
 * forward's ready mark (ci_model_options.ready_layers: its last layers
 * begin); at once without marks. */
ci_status ci_runner_wait_ready(ci_runner *r);
/* Whether the runner can plan ahead: one rank whose backend reads sampled
 * ids on the device (take_samples), no draft model. */
int ci_runner_can_plan_ahead(const ci_runner *r);
/* Copies logits rows [row0, row0 + n) of the last execute to dst [n][vocab]. */
ci_status ci_runner_logits_to_host(ci_runner *r, int row0, int n, float *dst);

/* The hook is called with `step` as last given to ci_runner_set_step. */
void ci_runner_set_fault_hook(ci_runner *r, ci_fault_fn fn, void *user);
void ci_runner_set_step(ci_runner *r, int64_t step);

/* Speculative decoding with a draft model (cfg->speculative_model): greedy
 * guesses for each sequence (draft.h); CI_ERR_INVALID without a draft. */
int ci_runner_has_draft(const ci_runner *r);
ci_status ci_runner_propose(ci_runner *r, const ci_draft_seq *seqs, int n, int32_t *out);

ci_model *ci_runner_model(ci_runner *r);
int ci_runner_max_model_len(const ci_runner *r);
int ci_runner_num_graphs(const ci_runner *r);
ci_runner_stats ci_runner_get_stats(const ci_runner *r);

#endif
