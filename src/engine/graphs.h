/* graphs.h — CUDA graphs of decode steps, owned by the runner.
 *
 * A graph replays fixed kernels on fixed pointers, so a decode batch of S
 * sequences (one new token each) is padded to a captured batch size G >= S
 * and laid out with a fixed block-table stride in the backend's persistent
 * device batch (prepare_batch_static). Padding rows read block 0 (context 1)
 * and write no K/V (slot -1); their outputs are never read.
 *
 * Graphs are bucketed by batch size and by context bound: the first bound
 * (max_graph_context, 8192 by default) is captured for every size at
 * startup; each longer bound (x4 up to max_model_len) is captured for a size
 * the first time a batch needs it. Kernels inside a graph take their launch
 * shape from the captured sizes only (the decode attention's split count
 * comes from the bound), so a short context never pays for a 128k bound. */
#ifndef CINFER_ENGINE_GRAPHS_H
#define CINFER_ENGINE_GRAPHS_H

#include "model/model.h"
#include "util/status.h"

#define CI_GRAPH_MAX_SIZES 72
#define CI_GRAPH_MAX_BOUNDS 8

typedef struct ci_graphs ci_graphs;

/* Work recorded into every graph after the model's forward, on the same
 * device batch (the speculative draft model's K/V mirror): dev is the
 * padded batch, T its token count. */
typedef ci_status (*ci_graph_extra_fn)(void *user, const ci_batch *dev, int T);

/* Captures the first bound's graph for every batch size in sizes[]
 * (ascending) on this KV cache, after reserving the persistent device batch
 * for the largest size and bound. first_bound and max_context are in tokens.
 * Needs a backend with graph ops (CI_ERR_UNSUPPORTED otherwise). The model and
 * the KV cache must outlive the graphs. */
ci_status ci_graphs_create(ci_model *m, ci_kv_cache *kv, const int *sizes, int n, int first_bound,
                           int max_context, ci_graph_extra_fn extra, void *extra_user,
                           ci_graphs **out);
void ci_graphs_free(ci_graphs *g);

/* Runs the host batch b through a graph when it is a decode batch that fits
 * one (capturing the graph of a longer bound on first use): *ran = 1, and
 * the logits are in the model's logits tensor once the backend syncs.
 * *ran = 0: not a graph batch; the caller runs it eagerly. */
ci_status ci_graphs_run(ci_graphs *g, const ci_batch *b, int *ran);

/* Graphs captured so far. */
int ci_graphs_count(const ci_graphs *g);

#endif
