/* tp_group.h — the tensor-parallel ranks of a runner beyond its own
 * (issue 15; cpu: threads of this process).
 *
 * Rank 0 is the runner's backend, model share and KV cache; the group owns
 * ranks 1..N-1, each a worker thread with its backend (in the same comm),
 * its model share and a KV cache of the same blocks. A step runs on every
 * rank at once: ci_tp_group_begin wakes the workers with the step's batch
 * and block copies (host memory, unchanged until ci_tp_group_end), they run
 * the same forward as rank 0, and ci_tp_group_end waits for them. The first
 * error of any rank is the step's; a failing rank aborts the comm so that
 * no rank waits in an all-reduce for it, and the comm is reset once every
 * rank has left the step. Rank 0's logits are whole (the LM head is not
 * split), so sampling stays on rank 0. */
#ifndef CINFER_ENGINE_TP_GROUP_H
#define CINFER_ENGINE_TP_GROUP_H

#include "backend/backend.h"
#include "backend/comm.h"
#include "model/model.h"
#include "util/status.h"

typedef struct ci_tp_group ci_tp_group;

/* Loads ranks 1..size-1 of model_dir (options as rank 0's: bo, mo; their
 * tp_rank / tp_size are set here) with KV caches of num_blocks x block_size. */
ci_status ci_tp_group_create(const char *model_dir, int size, ci_comm *comm,
                             const ci_backend_options *bo, const ci_model_options *mo,
                             int num_blocks, int block_size, ci_tp_group **out);
void ci_tp_group_free(ci_tp_group *g);

ci_status ci_tp_group_begin(ci_tp_group *g, const ci_batch *b, const int32_t *copy_src,
                            const int32_t *copy_dst, int num_copies);
/* rank0: rank 0's own result for the step (its error aborts the comm first) */
ci_status ci_tp_group_end(ci_tp_group *g, ci_status rank0);

#endif
