/* generate.c — single-sequence generation driver and perplexity. */
#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct seq_bufs {
    int32_t *ids, *pos, *slots, *blocks, *lidx;
} seq_bufs;

static void bufs_free(seq_bufs *b) {
    free(b->ids);
    free(b->pos);
    free(b->slots);
    free(b->blocks);
    free(b->lidx);
}

static ci_status bufs_alloc(seq_bufs *b, int chunk, int nblocks) {
    memset(b, 0, sizeof *b);
    b->ids = malloc(sizeof(int32_t) * (size_t)chunk);
    b->pos = malloc(sizeof(int32_t) * (size_t)chunk);
    b->slots = malloc(sizeof(int32_t) * (size_t)chunk);
    b->lidx = malloc(sizeof(int32_t) * (size_t)chunk);
    b->blocks = malloc(sizeof(int32_t) * (size_t)nblocks);
    if (!b->ids || !b->pos || !b->slots || !b->lidx || !b->blocks) {
        bufs_free(b);
        return ci_errorf(CI_ERR_NOMEM, "generate: out of memory");
    }
    for (int i = 0; i < nblocks; i++)
        b->blocks[i] = i; /* sequential block table */
    return ci_ok();
}

/* Runs tokens [start, start+T) of one sequence whose cache holds `start`
 * tokens; logits for the last row only (want_last) or every row (all_rows). */
static ci_status run_chunk(ci_model *m, ci_kv_cache *kv, seq_bufs *b, const int32_t *tokens,
                           int start, int T, int nblocks, int nlogits, float *logits) {
    int32_t qs[2] = {0, T}, cl[1] = {start + T};
    for (int i = 0; i < T; i++) {
        int p = start + i;
        b->ids[i] = tokens[i];
        b->pos[i] = p;
        b->slots[i] = b->blocks[p / kv->block_size] * kv->block_size + p % kv->block_size;
    }
    for (int i = 0; i < nlogits; i++)
        b->lidx[i] = T - nlogits + i;
    ci_batch batch = {0};
    batch.num_tokens = T;
    batch.num_seqs = 1;
    batch.num_logits = nlogits;
    batch.max_blocks_per_seq = nblocks;
    batch.max_query_len = T;
    batch.max_context_len = start + T;
    batch.token_ids = b->ids;
    batch.positions = b->pos;
    batch.query_start = qs;
    batch.context_lens = cl;
    batch.block_tables = b->blocks;
    batch.slot_mapping = b->slots;
    batch.logits_indices = b->lidx;
    return ci_model_forward(m, &batch, kv, logits);
}

ci_status ci_generate(ci_model *m, const int32_t *prompt, int n_prompt, const ci_generate_params *p,
                      int32_t *out_tokens, ci_generate_stats *stats) {
    ci_generate_stats st = {0};
    if (stats) *stats = st;
    if (n_prompt <= 0) return ci_errorf(CI_ERR_INVALID, "generate: empty prompt");
    if (p->max_new_tokens < 0) return ci_errorf(CI_ERR_INVALID, "generate: max_new_tokens < 0");
    const int V = m->cfg.vocab_size;
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return ci_errorf(CI_ERR_INVALID, "generate: prompt token %d = %d outside [0, %d)", i,
                             prompt[i], V);
    int64_t total = (int64_t)n_prompt + p->max_new_tokens;
    if (total > m->rope.max_positions)
        return ci_errorf(CI_ERR_CAPACITY,
                         "generate: prompt (%d) + max_new_tokens (%d) exceeds the model's %d "
                         "positions",
                         n_prompt, p->max_new_tokens, m->rope.max_positions);
    int bs = p->block_size > 0 ? p->block_size : 16;
    int nblocks = (int)((total + bs - 1) / bs);
    int chunk = n_prompt < m->max_batch_tokens ? n_prompt : m->max_batch_tokens;
    ci_kv_cache *kv = NULL;
    seq_bufs b;
    float *logits = malloc(sizeof(float) * (size_t)V);
    ci_sampler *smp = NULL;
    ci_status s = logits ? ci_ok() : ci_errorf(CI_ERR_NOMEM, "generate: out of memory");
    if (s.code == CI_OK) s = ci_sampler_create(V, &smp);
    if (s.code == CI_OK) s = ci_model_kv_cache_create(m, nblocks, bs, &kv);
    if (s.code == CI_OK)
        s = bufs_alloc(&b, chunk, nblocks);
    else
        memset(&b, 0, sizeof b);
    st.prompt_tokens = n_prompt;
    double t0 = ci_now();
    for (int c0 = 0; s.code == CI_OK && c0 < n_prompt; c0 += chunk) {
        int T = n_prompt - c0 < chunk ? n_prompt - c0 : chunk;
        int last = c0 + T == n_prompt;
        s = run_chunk(m, kv, &b, prompt + c0, c0, T, nblocks, last ? 1 : 0, logits);
    }
    double t1 = ci_now();
    st.prefill_s = t1 - t0;
    if (s.code == CI_OK && p->prompt_logits) memcpy(p->prompt_logits, logits, sizeof(float) * V);
    int pos = n_prompt;
    for (int i = 0; s.code == CI_OK && i < p->max_new_tokens; i++) {
        if (i > 0) {
            int32_t prev = out_tokens ? out_tokens[i - 1] : b.ids[0];
            s = run_chunk(m, kv, &b, &prev, pos, 1, nblocks, 1, logits);
            if (s.code != CI_OK) break;
            pos++;
        }
        int32_t tok = ci_sampler_sample(smp, logits, &p->sampling, (uint64_t)i);
        if (out_tokens) out_tokens[i] = tok;
        b.ids[0] = tok; /* remembered for the next step when out_tokens is NULL */
        st.generated_tokens = i + 1;
        int stop = 0;
        for (int k = 0; k < p->num_stop_ids; k++)
            if (tok == p->stop_ids[k]) stop = 1;
        if (p->on_token && p->on_token(tok, i, p->user)) {
            st.stopped = 2;
            break;
        }
        if (stop) {
            st.stopped = 1;
            break;
        }
    }
    st.decode_s = ci_now() - t1;
    if (stats) *stats = st;
    bufs_free(&b);
    ci_kv_cache_destroy(m->be, kv);
    ci_sampler_free(smp);
    free(logits);
    return s;
}

ci_status ci_perplexity(ci_model *m, const int32_t *ids, int n, int ctx, double *mean_nll,
                        long *count) {
    *mean_nll = 0.0;
    *count = 0;
    if (n <= 0 || ctx < 2) return ci_errorf(CI_ERR_INVALID, "perplexity: need tokens and ctx >= 2");
    if (ctx > m->rope.max_positions)
        return ci_errorf(CI_ERR_CAPACITY, "perplexity: ctx %d exceeds the model's %d positions",
                         ctx, m->rope.max_positions);
    const int V = m->cfg.vocab_size;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return ci_errorf(CI_ERR_INVALID, "perplexity: token %d = %d outside [0, %d)", i, ids[i],
                             V);
    int chunk = m->max_batch_tokens < m->max_logits ? m->max_batch_tokens : m->max_logits;
    if (chunk > ctx) chunk = ctx;
    const int bs = 16;
    int nblocks = (ctx + bs - 1) / bs;
    ci_kv_cache *kv = NULL;
    seq_bufs b;
    float *logits = malloc(sizeof(float) * (size_t)chunk * (size_t)V);
    ci_status s = logits ? ci_ok() : ci_errorf(CI_ERR_NOMEM, "perplexity: out of memory");
    if (s.code == CI_OK) s = ci_model_kv_cache_create(m, nblocks, bs, &kv);
    if (s.code == CI_OK)
        s = bufs_alloc(&b, chunk, nblocks);
    else
        memset(&b, 0, sizeof b);
    double nll = 0.0;
    long cnt = 0;
    for (int w0 = 0; s.code == CI_OK && w0 < n; w0 += ctx) {
        int wl = n - w0 < ctx ? n - w0 : ctx;
        if (wl < 2) break; /* nothing to predict */
        for (int c0 = 0; s.code == CI_OK && c0 < wl; c0 += chunk) {
            int T = wl - c0 < chunk ? wl - c0 : chunk;
            s = run_chunk(m, kv, &b, ids + w0 + c0, c0, T, nblocks, T, logits);
            if (s.code != CI_OK) break;
            for (int i = 0; i < T; i++) {
                int j = c0 + i; /* position in window; predicts j + 1 */
                if (j + 1 >= wl) break;
                const float *row = logits + (size_t)i * V;
                double lse = ci_log_softmax(row, V, NULL);
                nll += lse - (double)row[ids[w0 + j + 1]];
                cnt++;
            }
        }
    }
    bufs_free(&b);
    ci_kv_cache_destroy(m->be, kv);
    free(logits);
    if (s.code != CI_OK) return s;
    *count = cnt;
    *mean_nll = cnt ? nll / (double)cnt : 0.0;
    return ci_ok();
}
