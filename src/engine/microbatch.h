/* microbatch.h — a step's batch cut into micro-batches of whole sequences,
 * for pipeline parallelism: stage s runs micro-batch k + 1 while stage s + 1
 * runs k, so the stages overlap within a step (vLLM and SGLang overlap
 * stages the same way, over whole batches).
 *
 * Part k holds sequences [s0, s1) with about 1/n of the step's tokens. Its
 * host arrays point into the step's batch, except query_start and
 * logits_indices, which are rebased into buffers this module owns (grown
 * once, reused every step). Its logits rows are the step's rows
 * [logits_row0, logits_row0 + num_logits): the engine emits a sequence's
 * logits rows together and in sequence order, and a batch where they are
 * not is left whole (n = 1). */
#ifndef CINFER_ENGINE_MICROBATCH_H
#define CINFER_ENGINE_MICROBATCH_H

#include "backend/backend.h"
#include "util/status.h"

#define CI_MAX_MICROBATCHES 16

typedef struct ci_microbatch {
    ci_batch b;
    int logits_row0;
} ci_microbatch;

typedef struct ci_microbatches {
    int n;
    ci_microbatch part[CI_MAX_MICROBATCHES];
    int32_t *buf; /* the rebased query_start and logits_indices of every part */
    size_t cap;   /* int32_t elements of buf */
} ci_microbatches;

/* Cuts b into at most `want` parts (fewer when it has fewer sequences). */
ci_status ci_microbatch_split(const ci_batch *b, int want, ci_microbatches *out);
void ci_microbatches_free(ci_microbatches *m);

#endif
