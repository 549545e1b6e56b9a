/* engine.h — the batching inference engine (vLLM V1 style).
 *
 * Owns: the tokenizer (optional), the model runner (backend, model, KV
 * cache, graphs, sample op: runner.h), the scheduler, the batch builder and
 * per-request state (request.c: sampling parameters, incremental
 * detokenizers, stop strings, outputs).
 *
 * One step(): schedule -> batch -> sample rows (logits processors:
 * min_tokens mask, repetition / presence / frequency penalties, vocabulary
 * limit) -> runner (copy-on-write block copies, forward, sample op: seeded
 * Philox keyed by (seed, sample index, output index)) -> scheduler update ->
 * incremental detokenization -> stop checks (stop ids, EOS, stop strings)
 * -> outputs. Buffers grow once; the per-step path does not allocate after
 * warm-up except when a buffer must grow.
 *
 * Steps are all or nothing: when the forward or the sample op fails, the
 * scheduler abandons the step (nothing advances) and the step's requests
 * finish with reason error and a message; when one request's
 * detokenization or output fails, only that request finishes with error.
 * The engine keeps serving either way.
 *
 * Stop strings are matched on the detokenized text across token boundaries;
 * text that could still be the start of a stop string is held back until it
 * is decided, and the stop string itself is not part of the output. */
#ifndef CINFER_ENGINE_ENGINE_H
#define CINFER_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine_types.h"
#include "engine/runner.h"
#include "engine/scheduler.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"

ci_engine_config ci_engine_default_config(void);
ci_engine_sampling ci_engine_default_sampling(void);
/* Fills the defaults of 0 / NULL fields and checks every option (the CLI
 * calls it before loading anything; ci_engine_create calls it again). */
ci_status ci_engine_config_check(ci_engine_config *c);

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
/* Async scheduling: completes the step in flight (wait, update, stop
 * tokens; its outputs come from the next ci_engine_step), so requests added
 * now make the next plan (cinfer_complete_step). Status: the step's failure
 * is reported through its requests' outputs, so always OK today. */
ci_status ci_engine_complete_step(ci_engine *e);
/* Async scheduling, after ci_engine_complete_step: when the completed
 * step's tokens hold a request's first, its outputs now (valid until the
 * next call), so that a server streams them before the next step's plan and
 * launch (time to first token); else none (they leave from the next
 * ci_engine_step, overlapping the device). cinfer_early_outputs. */
ci_status ci_engine_early_outputs(ci_engine *e, const ci_engine_output **outs, int *num_outs);
int ci_engine_has_unfinished(const ci_engine *e);
ci_engine_metrics ci_engine_get_metrics(const ci_engine *e);

/* Testing: a hook that can fail the forward, the sample op, a request's
 * detokenization or its output on chosen steps (replaces the one
 * CINFER_FAULT_INJECT set; see fault.h). NULL removes it. */
void ci_engine_set_fault_hook(ci_engine *e, ci_fault_fn fn, void *user);

ci_model *ci_engine_model(ci_engine *e);
ci_tokenizer *ci_engine_tokenizer(ci_engine *e);
ci_scheduler *ci_engine_scheduler(ci_engine *e);
int ci_engine_vocab_size(const ci_engine *e);
int ci_engine_max_model_len(const ci_engine *e);

#endif
