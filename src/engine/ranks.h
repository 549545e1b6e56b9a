/* ranks.h — the ranks of tensor and pipeline parallelism beyond the
 * runner's own (issue 15): threads of this process, on the CPU backend or
 * one GPU each on CUDA (world rank w on device w; NCCL's collectives).
 *
 * tp x pp ranks: rank w is tensor rank w % tp of pipeline stage w / tp.
 * The groups: one comm per stage for the tensor ranks' all-reduce, one
 * over every rank for the stages' send / recv. The runner is the last
 * stage's tensor rank 0 (the logits are gathered there from the tensor
 * ranks' vocabulary shares): ci_ranks_bind gives its backend
 * the comms. Every other rank is a worker thread with its backend, model
 * share (ci_ranks_load) and a KV cache of the same blocks
 * (ci_ranks_kv_create). A step runs on
 * every rank at once: ci_ranks_begin wakes the workers with the step's
 * batch and block copies (host memory, unchanged until ci_ranks_end), they
 * run their forward as the runner runs its own, and ci_ranks_end waits for
 * them. The step's error is the first rank's (not the echo of an abort); a
 * failing rank aborts every comm so that no rank waits for it, and the
 * comms are reset once every rank has left the step. */
#ifndef CINFER_ENGINE_RANKS_H
#define CINFER_ENGINE_RANKS_H

#include "backend/backend.h"
#include "backend/comm.h"
#include "engine/microbatch.h"
#include "model/model.h"
#include "util/status.h"

typedef struct ci_ranks ci_ranks;

/* The comms of tp x pp ranks (tp, pp >= 1, tp * pp > 1). */
ci_status ci_ranks_create(int tp, int pp, ci_ranks **out);
/* The runner's backend joins as the last stage's tensor rank 0. */
void ci_ranks_bind(ci_ranks *g, ci_backend *be);
/* The options of the runner's model share (mo's tp_* / pp_* set). */
void ci_ranks_runner_options(const ci_ranks *g, ci_model_options *mo);
/* Loads every other rank of model_dir on backend `device` (options bo, its
 * device_id the rank's world rank; model options mo with their tp_* /
 * pp_* set per rank) and starts its thread; its KV cache comes later
 * (ci_ranks_kv_create), once the cache is sized. */
ci_status ci_ranks_load(ci_ranks *g, const char *model_dir, const char *device,
                        const ci_backend_options *bo, const ci_model_options *mo);
/* Every other rank's KV cache of num_blocks x block_size (the runner's
 * blocks: the scheduler's tables serve all). Leaves another device current
 * on the calling thread (CUDA): the runner attaches again. */
ci_status ci_ranks_kv_create(ci_ranks *g, int num_blocks, int block_size);
/* KV sizing on devices: a step like ci_ranks_begin's (ended by
 * ci_ranks_end) in which every rank runs batch b on a scratch cache of
 * num_blocks x block_size, then reads its device memory; and the least
 * free and total bytes over the other ranks (free / total: the runner's in,
 * lowered where a rank has less). */
ci_status ci_ranks_begin_profile(ci_ranks *g, const ci_batch *b, int num_blocks, int block_size);
void ci_ranks_min_memory(const ci_ranks *g, size_t *free_bytes, size_t *total_bytes);
void ci_ranks_free(ci_ranks *g);

/* A rank's forward of a step (workers and the runner alike; batch checked
 * by the caller): the batch whole, or with pipeline stages its
 * micro-batches one after another (microbatch.h), so that stage s runs
 * micro-batch k + 1 while stage s + 1 runs k. mbs: the rank's buffers. */
ci_status ci_ranks_forward(const ci_ranks *g, ci_model *m, ci_kv_cache *kv, const ci_batch *b,
                           ci_microbatches *mbs);

ci_status ci_ranks_begin(ci_ranks *g, const ci_batch *b, const int32_t *copy_src,
                         const int32_t *copy_dst, int num_copies);
/* Ranks, and which is the runner's; before ci_ranks_begin, a fault for
 * rank w's part of the next step (fault injection: it fails without its
 * forward, and the step with it). */
int ci_ranks_count(const ci_ranks *g);
int ci_ranks_runner_rank(const ci_ranks *g);
void ci_ranks_inject(ci_ranks *g, int w, ci_status fault);
/* runner: the runner's own result for the step (its error aborts first) */
ci_status ci_ranks_end(ci_ranks *g, ci_status runner);

#endif
