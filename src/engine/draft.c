/* draft.c — the draft model: load and checks, the mirror forward, greedy
 * proposals (see draft.h). */
#include "engine/draft.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ci_draft {
    ci_backend *be;
    ci_model *model;
    ci_kv_cache *kv;
    int max_seqs, mb;
    /* proposal batch, host; sized once */
    int32_t *tok, *pos, *qs, *ctx, *slot, *li, *bt, *idx;
    ci_sample_row *rows;
    ci_sample_result *res;
};

void ci_draft_free(ci_draft *d) {
    if (!d) return;
    if (d->kv) ci_kv_cache_destroy(d->be, d->kv);
    ci_model_free(d->model);
    free(d->tok);
    free(d->pos);
    free(d->qs);
    free(d->ctx);
    free(d->slot);
    free(d->li);
    free(d->bt);
    free(d->idx);
    free(d->rows);
    free(d->res);
    free(d);
}

/* 1 when the two files hold the same bytes. */
static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

ci_status ci_draft_load(ci_backend *be, const char *dir, const char *target_dir,
                        const ci_model *target, int max_model_len, int max_batch_tokens,
                        int max_seqs, int max_blocks_per_seq, int kv_fp8, ci_draft **out) {
    *out = NULL;
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/tokenizer.json", dir);
    snprintf(b, sizeof b, "%s/tokenizer.json", target_dir);
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int both = fa && fb, neither = !fa && !fb;
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    if (!neither && !(both && same_file(a, b)))
        return ci_errorf(CI_ERR_INVALID,
                         "speculative model %s: its tokenizer.json differs from the target's "
                         "(a draft must share the target's tokenizer)",
                         dir);
    ci_draft *d = calloc(1, sizeof *d);
    if (!d) return ci_errorf(CI_ERR_NOMEM, "draft: out of memory");
    d->be = be;
    /* the draft's cache follows --kv-cache-dtype: its blocks mirror the target's */
    ci_model_options mo = {
        .max_batch_tokens = max_batch_tokens, .max_logits = max_batch_tokens, .kv_fp8 = kv_fp8};
    ci_status s = ci_model_load(dir, be, &mo, &d->model);
    if (s.code) {
        ci_draft_free(d);
        return ci_status_wrap(s, "speculative model");
    }
    const ci_model_config *c = &d->model->cfg;
    int ctx = c->max_position_embeddings < d->model->rope.max_positions
                  ? c->max_position_embeddings
                  : d->model->rope.max_positions;
    if (c->vocab_size != target->cfg.vocab_size)
        s = ci_errorf(CI_ERR_INVALID,
                      "speculative model %s: vocabulary of %d ids, the target has %d", dir,
                      c->vocab_size, target->cfg.vocab_size);
    else if (ctx < max_model_len)
        s = ci_errorf(CI_ERR_INVALID,
                      "speculative model %s: context of %d tokens, below max_model_len %d "
                      "(lower --max-model-len)",
                      dir, ctx, max_model_len);
    size_t S = (size_t)max_seqs;
    d->max_seqs = max_seqs;
    d->mb = max_blocks_per_seq;
    d->tok = malloc(sizeof(int32_t) * S);
    d->pos = malloc(sizeof(int32_t) * S);
    d->qs = malloc(sizeof(int32_t) * (S + 1));
    d->ctx = malloc(sizeof(int32_t) * S);
    d->slot = malloc(sizeof(int32_t) * S);
    d->li = malloc(sizeof(int32_t) * S);
    d->idx = malloc(sizeof(int32_t) * S);
    d->bt = calloc(S * (size_t)max_blocks_per_seq, sizeof(int32_t));
    d->rows = calloc(S, sizeof *d->rows);
    d->res = calloc(S, sizeof *d->res);
    if (!s.code && (!d->tok || !d->pos || !d->qs || !d->ctx || !d->slot || !d->li || !d->idx ||
                    !d->bt || !d->rows || !d->res))
        s = ci_errorf(CI_ERR_NOMEM, "draft: out of memory");
    if (s.code) {
        ci_draft_free(d);
        return s;
    }
    *out = d;
    return ci_ok();
}

size_t ci_draft_block_bytes(const ci_draft *d, int block_size) {
    return ci_model_kv_block_bytes(d->model, block_size);
}

ci_status ci_draft_kv_create(ci_draft *d, int num_blocks, int block_size) {
    return ci_model_kv_cache_create(d->model, num_blocks, block_size, &d->kv);
}

ci_status ci_draft_mirror_enqueue(ci_draft *d, const ci_batch *dev, int T) {
    return ci_model_enqueue(d->model, dev, T, 0, d->kv);
}

ci_status ci_draft_copy_blocks(ci_draft *d, const int32_t *src, const int32_t *dst, int n) {
    return d->be->ops->copy_blocks(d->be, d->kv, src, dst, n);
}

ci_status ci_draft_propose(ci_draft *d, const ci_draft_seq *seqs, int n, int32_t *out) {
    if (n > d->max_seqs) return ci_errorf(CI_ERR_INVALID, "draft: %d sequences", n);
    int bs = d->kv->block_size, kmax = 0;
    for (int i = 0; i < n; i++)
        if (seqs[i].k > kmax) kmax = seqs[i].k;
    for (int j = 0; j < kmax; j++) {
        int S = 0, maxctx = 0;
        for (int i = 0; i < n; i++) {
            const ci_draft_seq *q = &seqs[i];
            if (q->k <= j) continue;
            int p = q->pos + j;
            if (q->num_blocks > d->mb || (p / bs) >= q->num_blocks)
                return ci_errorf(CI_ERR_INTERNAL, "draft: position %d beyond %d blocks", p,
                                 q->num_blocks);
            int32_t *row = d->bt + (size_t)S * (size_t)d->mb;
            memcpy(row, q->block_table, sizeof(int32_t) * (size_t)q->num_blocks);
            d->tok[S] = j == 0 ? q->last_token : out[i * 16 + j - 1];
            d->pos[S] = p;
            d->qs[S] = S;
            d->ctx[S] = p + 1;
            d->slot[S] = row[p / bs] * bs + p % bs;
            d->li[S] = S;
            d->idx[S] = i;
            if (p + 1 > maxctx) maxctx = p + 1;
            ci_sample_row *r = &d->rows[S];
            memset(r, 0, sizeof *r);
            r->logits_row = S;
            r->top_logprobs = -1; /* temperature 0: greedy */
            r->mask_row = -1;
            S++;
        }
        d->qs[S] = S;
        ci_batch b = {.num_tokens = S,
                      .num_seqs = S,
                      .num_logits = S,
                      .max_blocks_per_seq = d->mb,
                      .max_query_len = 1,
                      .max_context_len = maxctx,
                      .token_ids = d->tok,
                      .positions = d->pos,
                      .query_start = d->qs,
                      .context_lens = d->ctx,
                      .block_tables = d->bt,
                      .slot_mapping = d->slot,
                      .logits_indices = d->li};
        CI_TRY(ci_model_forward(d->model, &b, d->kv, NULL));
        CI_TRY(d->be->ops->sample(d->be, ci_model_logits(d->model), d->rows, S, NULL, 0, NULL, 0,
                                  d->res));
        for (int s = 0; s < S; s++)
            out[d->idx[s] * 16 + j] = d->res[s].token;
    }
    return ci_ok();
}
