/* graphs.c — capture and replay of decode-step CUDA graphs (see graphs.h). */
#include "engine/graphs.h"

#include <stdlib.h>
#include <string.h>

struct ci_graphs {
    ci_model *m;
    ci_kv_cache *kv;
    int nsizes, nbounds;
    int sizes[CI_GRAPH_MAX_SIZES];
    int mb[CI_GRAPH_MAX_BOUNDS];                         /* block-table stride per bound */
    void *exec[CI_GRAPH_MAX_BOUNDS][CI_GRAPH_MAX_SIZES]; /* NULL: not captured yet */
    int count;
    ci_graph_extra_fn extra; /* recorded after the forward, or NULL */
    void *extra_user;
    int32_t *tok, *pos, *qs, *ctx, *bt, *slot, *lidx; /* host staging, largest size and bound */
    int32_t *src; /* sample_src (-1 where the token is known), always uploaded: one layout */
};

void ci_graphs_free(ci_graphs *g) {
    if (!g) return;
    for (int j = 0; j < g->nbounds; j++)
        for (int i = 0; i < g->nsizes; i++)
            if (g->exec[j][i]) g->m->be->ops->graph_destroy(g->m->be, g->exec[j][i]);
    free(g->tok);
    free(g->pos);
    free(g->qs);
    free(g->ctx);
    free(g->bt);
    free(g->slot);
    free(g->lidx);
    free(g->src);
    free(g);
}

int ci_graphs_count(const ci_graphs *g) {
    return g ? g->count : 0;
}

/* Fills the padded host batch of size G and stride mb from b (NULL: all
 * padding). A row copies only the blocks its context uses: the rest of the
 * row is never read. */
static void fill(ci_graphs *g, const ci_batch *b, int G, int mb, ci_batch *out) {
    int S = b ? b->num_seqs : 0, bs = g->kv->block_size;
    for (int i = 0; i < G; i++) {
        int real = i < S;
        g->tok[i] = real ? b->token_ids[i] : 0;
        g->pos[i] = real ? b->positions[i] : 0;
        g->qs[i] = i;
        g->ctx[i] = real ? b->context_lens[i] : 1;
        g->slot[i] = real ? b->slot_mapping[i] : -1;
        g->lidx[i] = i;
        g->src[i] = real && b->sample_src ? b->sample_src[i] : -1;
        int32_t *row = g->bt + (size_t)i * (size_t)mb;
        if (real) {
            int nb = (b->context_lens[i] + bs - 1) / bs;
            memcpy(row, b->block_tables + (size_t)i * (size_t)b->max_blocks_per_seq,
                   sizeof(int32_t) * (size_t)nb);
        } else {
            row[0] = 0;
        }
    }
    g->qs[G] = G;
    memset(out, 0, sizeof *out);
    out->num_tokens = out->num_seqs = out->num_logits = G;
    out->max_blocks_per_seq = mb;
    out->max_query_len = 1;
    out->max_context_len = mb * bs; /* launch shapes sized for the bound */
    out->token_ids = g->tok;
    out->positions = g->pos;
    out->query_start = g->qs;
    out->context_lens = g->ctx;
    out->block_tables = g->bt;
    out->slot_mapping = g->slot;
    out->logits_indices = g->lidx;
    out->sample_src = g->src;
}

/* Captures graph (bound j, size i). */
static ci_status capture(ci_graphs *g, int j, int i) {
    ci_model *m = g->m;
    const ci_backend_ops *ops = m->be->ops;
    int B = g->sizes[i];
    ci_batch hb, db; /* db: the same device pointers at every replay of (B, mb) */
    fill(g, NULL, B, g->mb[j], &hb);
    ci_status s = ops->prepare_batch_static(m->be, &hb, &db);
    if (!s.code) s = ci_model_enqueue(m, &db, B, B, g->kv); /* warm-up: plans, attributes */
    if (!s.code && g->extra) s = g->extra(g->extra_user, &db, B);
    if (!s.code) s = ops->sync(m->be);
    if (!s.code) s = ops->graph_capture_begin(m->be);
    if (s.code) return s;
    ci_status f = ci_model_enqueue(m, &db, B, B, g->kv);
    if (!f.code && g->extra) f = g->extra(g->extra_user, &db, B);
    void *ex = NULL;
    s = ops->graph_capture_end(m->be, &ex); /* always end the capture */
    if (f.code || s.code) {
        if (ex) ops->graph_destroy(m->be, ex);
        return f.code ? f : s;
    }
    g->exec[j][i] = ex;
    g->count++;
    return ops->sync(m->be);
}

ci_status ci_graphs_create(ci_model *m, ci_kv_cache *kv, const int *sizes, int n, int first_bound,
                           int max_context, ci_graph_extra_fn extra, void *extra_user,
                           ci_graphs **out) {
    *out = NULL;
    const ci_backend_ops *ops = m->be->ops;
    if (!ops->graph_capture_begin || !ops->prepare_batch_static)
        return ci_errorf(CI_ERR_UNSUPPORTED, "graphs: backend %s has no graphs", m->be->name);
    if (n <= 0 || n > CI_GRAPH_MAX_SIZES)
        return ci_errorf(CI_ERR_INVALID, "graphs: %d batch sizes (1..%d)", n, CI_GRAPH_MAX_SIZES);
    int top = m->max_logits < m->max_batch_tokens ? m->max_logits : m->max_batch_tokens;
    for (int i = 0; i < n; i++)
        if (sizes[i] < 1 || sizes[i] > top || (i > 0 && sizes[i] <= sizes[i - 1]))
            return ci_errorf(CI_ERR_INVALID, "graphs: batch size %d (ascending, <= %d)", sizes[i],
                             top);
    ci_graphs *g = calloc(1, sizeof *g);
    if (!g) return ci_errorf(CI_ERR_NOMEM, "graphs: out of memory");
    g->m = m;
    g->kv = kv;
    g->extra = extra;
    g->extra_user = extra_user;
    g->nsizes = n;
    memcpy(g->sizes, sizes, sizeof(int) * (size_t)n);
    int bs = kv->block_size;
    if (max_context < 1) max_context = 1;
    if (first_bound < 1 || first_bound > max_context) first_bound = max_context;
    /* bounds: first_bound, x4, ..., max_context (the last bucket may be x < 4) */
    for (long b = first_bound; g->nbounds < CI_GRAPH_MAX_BOUNDS; b *= 4) {
        if (b > max_context || g->nbounds == CI_GRAPH_MAX_BOUNDS - 1) b = max_context;
        g->mb[g->nbounds++] = (int)((b + bs - 1) / bs);
        if (b >= max_context) break;
    }
    int G = sizes[n - 1], mbmax = g->mb[g->nbounds - 1];
    g->tok = malloc(sizeof(int32_t) * (size_t)G);
    g->pos = malloc(sizeof(int32_t) * (size_t)G);
    g->qs = malloc(sizeof(int32_t) * ((size_t)G + 1));
    g->ctx = malloc(sizeof(int32_t) * (size_t)G);
    g->slot = malloc(sizeof(int32_t) * (size_t)G);
    g->lidx = malloc(sizeof(int32_t) * (size_t)G);
    g->src = malloc(sizeof(int32_t) * (size_t)G);
    g->bt = calloc((size_t)G * (size_t)mbmax, sizeof(int32_t));
    ci_status s = ci_ok();
    if (!g->tok || !g->pos || !g->qs || !g->ctx || !g->slot || !g->lidx || !g->bt || !g->src)
        s = ci_errorf(CI_ERR_NOMEM, "graphs: out of memory (staging)");
    if (!s.code) { /* the largest shape fixes the persistent buffer's capacity */
        ci_batch hb, db;
        fill(g, NULL, G, mbmax, &hb);
        s = ops->prepare_batch_static(m->be, &hb, &db);
    }
    for (int i = n - 1; i >= 0 && !s.code; i--)
        s = capture(g, 0, i);
    if (s.code) {
        ci_graphs_free(g);
        return ci_status_wrap(s, "capturing CUDA graphs");
    }
    *out = g;
    return ci_ok();
}

ci_status ci_graphs_run(ci_graphs *g, const ci_batch *b, int *ran) {
    *ran = 0;
    if (!g || b->num_tokens != b->num_seqs || b->num_logits != b->num_seqs || b->max_query_len != 1)
        return ci_ok();
    int maxctx = 0;
    for (int i = 0; i < b->num_seqs; i++) {
        if (b->logits_indices[i] != i) return ci_ok();
        if (b->context_lens[i] > maxctx) maxctx = b->context_lens[i];
    }
    int i = 0, j = 0, bs = g->kv->block_size;
    while (i < g->nsizes && g->sizes[i] < b->num_seqs)
        i++;
    while (j < g->nbounds && (int64_t)g->mb[j] * bs < maxctx)
        j++;
    if (i == g->nsizes || j == g->nbounds) return ci_ok();
    if (!g->exec[j][i]) CI_TRY(capture(g, j, i)); /* a longer bound, first use */
    ci_batch hb, db;
    fill(g, b, g->sizes[i], g->mb[j], &hb);
    const ci_backend_ops *ops = g->m->be->ops;
    CI_TRY(ops->prepare_batch_static(g->m->be, &hb, &db));
    /* plan-ahead scheduling: ids the step before this one draws, written
     * into the graph's input on the device */
    if (b->sample_src) CI_TRY(ops->take_samples(g->m->be, &db));
    CI_TRY(ops->graph_launch(g->m->be, g->exec[j][i]));
    *ran = 1;
    return ci_ok();
}
