/* model.c — load a decoder checkpoint onto a backend and run its forward
 * pass (every family of src/model/arch/), exactly in HF's order:
 *
 *   residual = embed(ids)
 *   per layer: x = norm(residual)            (layer 0; later layers fuse
 *                                              residual += mlp_out first)
 *              qkv = x Wqkv^T (+b); [q/k-norm]; rope + cache write
 *              attn = paged attention; o = attn Wo^T
 *              residual += o; x = norm(residual)
 *              mlp_out = swiglu(x Wgu^T) Wdown^T
 *   residual += mlp_out; x = norm(residual); logits = x[rows] Wlm^T
 *
 * All activations are preallocated for max_batch_tokens at load; a forward
 * step allocates nothing. */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CI_MAX_ROPE_POSITIONS 131072

static ci_tensor view(const ci_tensor *t, int64_t rows, int64_t cols) {
    ci_tensor v = *t;
    v.rows = rows;
    v.cols = cols;
    return v;
}

void ci_model_free(ci_model *m) {
    if (!m) return;
    ci_backend *be = m->be;
    ci_tensor *acts[] = {&m->x,       &m->residual,    &m->qkv,    &m->attn_out,   &m->gate_up,
                         &m->mlp_out, &m->last_hidden, &m->logits, &m->logits_part};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (acts[i]->data) ci_tensor_free(be, acts[i]);
    if (m->rope.cos_sin.data) ci_rope_table_free(be, &m->rope);
    if (m->w.layers) ci_weights_free(be, &m->w);
    if (m->ck) ci_checkpoint_close(m->ck);
    free(m);
}

static ci_status check_config(const ci_model_config *c) {
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->intermediate_size <= 0 ||
        c->num_layers <= 0 || c->num_heads <= 0 || c->num_kv_heads <= 0 || c->head_dim <= 0)
        return ci_errorf(CI_ERR_FORMAT, "config: non-positive model dimension");
    if (c->num_heads % c->num_kv_heads != 0)
        return ci_errorf(CI_ERR_UNSUPPORTED, "config: %d heads not a multiple of %d kv heads",
                         c->num_heads, c->num_kv_heads);
    return ci_ok();
}

ci_status ci_model_load(const char *model_dir, ci_backend *be, const ci_model_options *opts,
                        ci_model **out) {
    *out = NULL;
    ci_model_options def = {0};
    if (!opts) opts = &def;
    ci_model *m = calloc(1, sizeof *m);
    if (!m) return ci_errorf(CI_ERR_NOMEM, "model: out of memory");
    m->be = be;
    m->kv_dtype = opts->kv_fp8 ? CI_F8_E4M3 : be->act_dtype;
    ci_status s = ci_config_load(model_dir, &m->cfg);
    if (s.code == CI_OK) s = check_config(&m->cfg);
    if (s.code == CI_OK && opts->online_fp8) {
        if (m->cfg.quant.method != CI_QUANT_NONE)
            s = ci_errorf(CI_ERR_UNSUPPORTED,
                          "quantization fp8: the checkpoint is already quantized (%s); "
                          "it loads as published without --quantization",
                          ci_quant_method_name(m->cfg.quant.method));
        m->cfg.quant.method = CI_QUANT_ONLINE_FP8;
        m->cfg.quant.act_group = -1; /* W8A8, per-token activations (as vLLM's online fp8) */
    }
    if (s.code == CI_OK && opts->weight_only) m->cfg.quant.act_group = 0;
    if (s.code == CI_OK) s = ci_config_tp_split(&m->cfg, opts->tp_rank, opts->tp_size);
    if (s.code == CI_OK && opts->tp_size > 1 &&
        !(be->ops->all_reduce && be->ops->embedding_shard && be->ops->gather_cols))
        s = ci_errorf(CI_ERR_UNSUPPORTED, "tensor parallelism: the %s backend has no collectives",
                      be->name);
    if (s.code == CI_OK) s = ci_config_pp_split(&m->cfg, opts->pp_stage, opts->pp_size);
    if (s.code == CI_OK && opts->pp_size > 1 && !(be->ops->send && be->ops->recv))
        s = ci_errorf(CI_ERR_UNSUPPORTED, "pipeline parallelism: the %s backend has no send / recv",
                      be->name);
    if (s.code == CI_OK) s = ci_checkpoint_open(model_dir, &m->ck);
    if (s.code == CI_OK)
        s = ci_weights_load(be, m->ck, &m->cfg, opts->progress, opts->progress_user, &m->w);
    if (s.code != CI_OK) {
        ci_model_free(m);
        return s;
    }
    if (m->cfg.tp.size > 1) { /* from here on the config is this rank's share */
        ci_model_config *c = &m->cfg;
        c->num_heads = c->tp.nh;
        c->num_kv_heads = c->tp.nkv;
        c->intermediate_size = c->tp.ni;
    }
    if (m->cfg.pp.size > 1) { /* ... and its stage's layers */
        ci_model_config *c = &m->cfg;
        c->num_layers = c->pp.l1 - c->pp.l0;
        memmove(c->layer_window, c->layer_window + c->pp.l0, sizeof(int) * (size_t)c->num_layers);
    }
    /* Every backend copies the weights: drop the mapping so its pages do
     * not stay resident next to the copy. */
    ci_checkpoint_close(m->ck);
    m->ck = NULL;
    const ci_model_config *c = &m->cfg;
    int maxpos = c->max_position_embeddings;
    if (maxpos <= 0 || maxpos > CI_MAX_ROPE_POSITIONS) maxpos = CI_MAX_ROPE_POSITIONS;
    s = ci_rope_table_create(be, c, maxpos, &m->rope);
    if (s.code != CI_OK) {
        ci_model_free(m);
        return ci_status_wrap(s, "model: rope table");
    }
    int mbt = opts->max_batch_tokens > 0 ? opts->max_batch_tokens : 2048;
    int ml = opts->max_logits > 0 ? opts->max_logits : mbt;
    if (ml > mbt) ml = mbt;
    m->max_batch_tokens = mbt;
    m->max_logits = ml;
    m->ready_layer = -1; /* one rank running every layer only */
    if (opts->ready_layers > 0 && be->ops->mark_ready && c->tp.size <= 1 && c->pp.size <= 1)
        m->ready_layer =
            c->num_layers > opts->ready_layers ? c->num_layers - opts->ready_layers : 0;
    const int64_t hid = c->hidden_size, inter = c->intermediate_size, hd = c->head_dim;
    const int64_t qkv_dim = (c->num_heads + 2 * (int64_t)c->num_kv_heads) * hd;
    const int64_t attn_dim = c->num_heads * hd;
    const ci_dtype at = be->act_dtype;
    struct {
        ci_tensor *t;
        int64_t r, cc;
    } plan[] = {
        {&m->x, mbt, hid},
        {&m->residual, mbt, hid},
        {&m->qkv, mbt, qkv_dim},
        {&m->attn_out, mbt, attn_dim > inter ? attn_dim : inter}, /* also the SwiGLU output */
        {&m->gate_up, mbt, 2 * inter},
        {&m->mlp_out, mbt, hid},
        {&m->last_hidden, ml, hid},
        {&m->logits, ml, c->vocab_size},
        {&m->logits_part, c->tp.size > 1 ? ml : 0, c->tp.nv},
    };
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        if (plan[i].r == 0) continue; /* not needed here */
        /* logits are F32 on every backend: they go to the host as floats */
        ci_dtype dt = plan[i].t == &m->logits || plan[i].t == &m->logits_part ? CI_F32 : at;
        s = ci_tensor_alloc(be, dt, plan[i].r, plan[i].cc, plan[i].t);
        if (s.code != CI_OK) {
            ci_model_free(m);
            return ci_status_wrap(s, "model: activation workspace (max_batch_tokens %d)", mbt);
        }
    }
    *out = m;
    return ci_ok();
}

ci_status ci_model_kv_cache_create(ci_model *m, int num_blocks, int block_size, ci_kv_cache **out) {
    CI_TRY(ci_kv_cache_create_dtype(m->be, m->kv_dtype, m->cfg.num_layers, m->cfg.num_kv_heads,
                                    m->cfg.head_dim, num_blocks, block_size, out));
    if (m->kv_dtype == CI_F8_E4M3) /* an act-dtype cache stores values as they are */
        for (int l = 0; l < m->cfg.num_layers; l++) {
            (*out)->k_scale[l] = m->w.layers[l].k_scale;
            (*out)->v_scale[l] = m->w.layers[l].v_scale;
        }
    return ci_ok();
}

size_t ci_model_kv_block_bytes(const ci_model *m, int block_size) {
    const ci_model_config *c = &m->cfg;
    return (size_t)2 * (size_t)c->num_layers * (size_t)c->num_kv_heads * (size_t)block_size *
           (size_t)c->head_dim * ci_dtype_size(m->kv_dtype);
}

ci_status ci_model_check_batch(const ci_model *m, const ci_batch *b, const ci_kv_cache *kv) {
    const int T = b->num_tokens;
    if (T <= 0 || T > m->max_batch_tokens)
        return ci_errorf(CI_ERR_INVALID, "forward: %d tokens (must be 1..max_batch_tokens %d)", T,
                         m->max_batch_tokens);
    if (b->num_logits < 0 || b->num_logits > m->max_logits || b->num_logits > T)
        return ci_errorf(CI_ERR_INVALID, "forward: %d logits rows (max_logits %d, tokens %d)",
                         b->num_logits, m->max_logits, T);
    if (b->num_seqs <= 0 || b->num_seqs > T)
        return ci_errorf(CI_ERR_INVALID, "forward: %d sequences for %d tokens", b->num_seqs, T);
    if (!kv || kv->num_layers != m->cfg.num_layers || kv->num_kv_heads != m->cfg.num_kv_heads ||
        kv->head_dim != m->cfg.head_dim || !ci_kv_dtype_ok(m->be, kv->dtype))
        return ci_errorf(CI_ERR_INVALID, "forward: KV cache does not match the model");
    for (int t = 0; t < T; t++) {
        if (b->token_ids[t] < 0 || b->token_ids[t] >= m->cfg.vocab_size)
            return ci_errorf(CI_ERR_INVALID, "forward: token id %d outside the vocabulary (%d)",
                             b->token_ids[t], m->cfg.vocab_size);
        if (b->positions[t] < 0 || b->positions[t] >= m->rope.max_positions)
            return ci_errorf(CI_ERR_CAPACITY, "forward: position %d outside [0, %d)",
                             b->positions[t], m->rope.max_positions);
    }
    for (int i = 0; i < b->num_logits; i++)
        if (b->logits_indices[i] < 0 || b->logits_indices[i] >= T)
            return ci_errorf(CI_ERR_INVALID, "forward: logits row %d outside [0, %d)",
                             b->logits_indices[i], T);
    for (int s = 0; s < b->num_seqs; s++)
        if (b->query_start[s + 1] < b->query_start[s])
            return ci_errorf(CI_ERR_INVALID, "forward: query_start not ascending");
    if (b->query_start[0] != 0 || b->query_start[b->num_seqs] != T)
        return ci_errorf(CI_ERR_INVALID, "forward: query_start does not cover %d tokens", T);
    if (b->num_decode_seqs < 0 || b->num_decode_seqs > b->num_seqs ||
        (b->num_decode_seqs > 0 && b->query_start[b->num_decode_seqs] != b->num_decode_seqs))
        return ci_errorf(CI_ERR_INVALID,
                         "forward: %d leading decode sequences, but not one token each",
                         b->num_decode_seqs);
    return ci_ok();
}

ci_status ci_model_enqueue(ci_model *m, const ci_batch *db, int T, int L, ci_kv_cache *kv) {
    return ci_model_enqueue_rows(m, db, T, L, 0, kv);
}

ci_status ci_model_enqueue_rows(ci_model *m, const ci_batch *db, int T, int L, int row0,
                                ci_kv_cache *kv) {
    ci_backend *be = m->be;
    const ci_backend_ops *ops = be->ops;
    const ci_model_config *c = &m->cfg;
    const int64_t hid = c->hidden_size, inter = c->intermediate_size, hd = c->head_dim;
    const int64_t qkv_dim = (c->num_heads + 2 * (int64_t)c->num_kv_heads) * hd;
    const float eps = (float)c->rms_norm_eps;
    const float scale = (float)(1.0 / sqrt((double)hd));
    ci_attn_shape shape = {c->num_heads, c->num_kv_heads, c->head_dim};
    ci_tensor x = view(&m->x, T, hid), res = view(&m->residual, T, hid);
    ci_tensor qkv = view(&m->qkv, T, qkv_dim);
    ci_tensor attn = view(&m->attn_out, T, c->num_heads * hd);
    ci_tensor act = view(&m->attn_out, T, inter);
    ci_tensor gu = view(&m->gate_up, T, 2 * inter), mo = view(&m->mlp_out, T, hid);

    /* pipeline parallelism: a stage after the first starts from the
     * previous stage's residual stream (res and the last MLP output, which
     * the first norm adds in), and a stage before the last ends by sending
     * it on */
    const int pp = c->pp.size > 1, first = ci_config_first_stage(c), last = ci_config_last_stage(c);
    const int stage_ranks = c->tp.size > 1 ? c->tp.size : 1; /* pp_rank = stage x this + tp */
    if (first && c->tp.size > 1) { /* this rank's vocabulary rows, then every row */
        CI_TRY(ops->embedding_shard(be, &m->w.embed, c->tp.v0, db->token_ids, T, &res));
        CI_TRY(ops->all_reduce(be, &res));
    } else if (first) {
        CI_TRY(ops->embedding(be, &m->w.embed, db->token_ids, T, &res));
    } else {
        CI_TRY(ops->recv(be, &res, be->pp_rank - stage_ranks));
        CI_TRY(ops->recv(be, &mo, be->pp_rank - stage_ranks));
    }
    /* a step of few tokens (decode) runs each layer as fused matmuls where
     * the backend offers them (CUDA with BF16 activations:
     * docs/kernels/gemv.md): the norms and SwiGLU become their prologues
     * and the residual adds their epilogues where the backend fuses them,
     * 9 kernels a layer down to 5 */
    /* tensor parallelism: o and down give this rank's partial sums, joined
     * by an all-reduce before the residual add (not in the fused layer,
     * whose GEMVs add into the residual themselves) */
    const int tp = c->tp.size > 1;
    const int fused = !tp && !pp && ops->matmul_fused && T <= ops->matmul_fused_rows(be);
    /* ... and the rotation and cache write as the qkv product's epilogue
     * (not with Qwen3's q/k-norm, which comes between) */
    const int rope_fused =
        ops->matmul_fused && ops->matmul_rope_rows && !c->qk_norm && T <= ops->matmul_rope_rows(be);
    /* larger steps hand a quantized weight its norm or SwiGLU as the fused
     * matmul's prologue: the backend may then write the product's quantized
     * input in the same pass (CUDA: W8A8's FP8 activations) */
    const int qpro = !fused && ops->matmul_fused;
    for (int l = 0; l < c->num_layers; l++) {
        const ci_layer_weights *lw = &m->w.layers[l];
        const ci_tensor *bqkv = lw->bqkv.data ? &lw->bqkv : NULL;
        const ci_mm_rope rope = {&shape, &m->rope, db, kv, l};
        if (l == m->ready_layer) CI_TRY(ops->mark_ready(be)); /* the host may plan on */
        if (fused) {
            ci_matmul_fused a = {.x = &res,
                                 .pro = CI_MM_PRO_RMSNORM,
                                 .norm_w = &lw->attn_norm,
                                 .eps = eps,
                                 .w = &lw->wqkv,
                                 .bias = bqkv,
                                 .y = &qkv,
                                 .scratch = &x,
                                 .rope = rope_fused ? &rope : NULL};
            CI_TRY(ops->matmul_fused(be, &a));
        } else if (qpro && !rope_fused && lw->wqkv.dtype == CI_QW) {
            const int l0 = l == 0 && first; /* the first norm has no residual add */
            ci_matmul_fused a = {.x = l0 ? &res : &mo,
                                 .pro = CI_MM_PRO_RMSNORM,
                                 .norm_w = &lw->attn_norm,
                                 .eps = eps,
                                 .residual = l0 ? NULL : &res,
                                 .w = &lw->wqkv,
                                 .bias = bqkv,
                                 .y = &qkv,
                                 .scratch = &x};
            CI_TRY(ops->matmul_fused(be, &a));
        } else {
            if (l == 0 && first)
                CI_TRY(ops->rmsnorm(be, &res, NULL, &lw->attn_norm, eps, &x));
            else
                CI_TRY(ops->rmsnorm(be, &mo, &res, &lw->attn_norm, eps, &x));
            if (rope_fused) {
                ci_matmul_fused a = {
                    .x = &x, .w = &lw->wqkv, .bias = bqkv, .y = &qkv, .rope = &rope};
                CI_TRY(ops->matmul_fused(be, &a));
            } else {
                CI_TRY(ops->matmul(be, &x, &lw->wqkv, bqkv, &qkv));
            }
        }
        if (c->qk_norm) CI_TRY(ops->qk_norm(be, &qkv, &shape, &lw->q_norm, &lw->k_norm, eps));
        if (!rope_fused) CI_TRY(ops->rope_cache(be, &qkv, &shape, &m->rope, db, kv, l));
        CI_TRY(ops->attention(be, &qkv, &shape, db, kv, l, scale, c->layer_window[l], &attn));
        if (fused) {
            /* SwiGLU as the gate|up product's epilogue where the backend
             * offers it (CUDA's quantized tensor-core GEMVs), else as
             * down's prologue */
            ci_matmul_fused o = {.x = &attn, .w = &lw->wo, .accumulate = 1, .y = &res};
            ci_matmul_fused gup = {.x = &res,
                                   .pro = CI_MM_PRO_RMSNORM,
                                   .norm_w = &lw->mlp_norm,
                                   .eps = eps,
                                   .w = &lw->w_gate_up,
                                   .y = &act,
                                   .scratch = &x,
                                   .swiglu = 1};
            if (!ops->matmul_swiglu_ok || !ops->matmul_swiglu_ok(be, &gup)) {
                gup.y = &gu;
                gup.swiglu = 0;
            }
            ci_matmul_fused down = {.x = gup.swiglu ? &act : &gu,
                                    .pro = gup.swiglu ? CI_MM_PRO_NONE : CI_MM_PRO_SWIGLU,
                                    .w = &lw->w_down,
                                    .accumulate = 1,
                                    .y = &res,
                                    .scratch = &act};
            CI_TRY(ops->matmul_fused(be, &o));
            CI_TRY(ops->matmul_fused(be, &gup));
            CI_TRY(ops->matmul_fused(be, &down));
            continue;
        }
        CI_TRY(ops->matmul(be, &attn, &lw->wo, NULL, &mo));
        if (tp) CI_TRY(ops->all_reduce(be, &mo));
        if (qpro && lw->w_gate_up.dtype == CI_QW) {
            ci_matmul_fused a = {.x = &mo,
                                 .pro = CI_MM_PRO_RMSNORM,
                                 .norm_w = &lw->mlp_norm,
                                 .eps = eps,
                                 .residual = &res,
                                 .w = &lw->w_gate_up,
                                 .y = &gu,
                                 .scratch = &x};
            CI_TRY(ops->matmul_fused(be, &a));
        } else {
            CI_TRY(ops->rmsnorm(be, &mo, &res, &lw->mlp_norm, eps, &x));
            CI_TRY(ops->matmul(be, &x, &lw->w_gate_up, NULL, &gu));
        }
        if (qpro && lw->w_down.dtype == CI_QW) {
            ci_matmul_fused a = {
                .x = &gu, .pro = CI_MM_PRO_SWIGLU, .w = &lw->w_down, .y = &mo, .scratch = &act};
            CI_TRY(ops->matmul_fused(be, &a));
        } else {
            CI_TRY(ops->swiglu(be, &gu, &act));
            CI_TRY(ops->matmul(be, &act, &lw->w_down, NULL, &mo));
        }
        if (tp) CI_TRY(ops->all_reduce(be, &mo));
    }
    if (!last) {
        CI_TRY(ops->send(be, &res, be->pp_rank + stage_ranks));
        return ops->send(be, &mo, be->pp_rank + stage_ranks);
    }
    /* the fused layers leave the whole residual stream in res */
    CI_TRY(ops->rmsnorm(be, fused ? &res : &mo, fused ? NULL : &res, &m->w.final_norm, eps, &x));
    if (L == 0) return ci_ok();
    if (row0 < 0 || row0 + L > m->max_logits)
        return ci_errorf(CI_ERR_INVALID, "forward: logits rows [%d, %d) outside [0, %d)", row0,
                         row0 + L, m->max_logits);
    ci_tensor lh = view(&m->last_hidden, L, hid), lg = view(&m->logits, L, c->vocab_size);
    lg.data = (float *)m->logits.data + (size_t)row0 * (size_t)c->vocab_size;
    CI_TRY(ops->gather_rows(be, &x, db->logits_indices, L, &lh));
    if (c->tp.size > 1) { /* this rank's vocabulary columns, side by side on tensor rank 0 */
        ci_tensor part = view(&m->logits_part, L, c->tp.nv);
        CI_TRY(ops->matmul(be, &lh, &m->w.lm_head, NULL, &part));
        return ops->gather_cols(be, &part, &lg, 0);
    }
    return ops->matmul(be, &lh, &m->w.lm_head, NULL, &lg);
}

const ci_tensor *ci_model_logits(const ci_model *m) {
    return &m->logits;
}

ci_status ci_model_forward(ci_model *m, const ci_batch *batch, ci_kv_cache *kv, float *logits_out) {
    CI_TRY(ci_model_check_batch(m, batch, kv));
    ci_backend *be = m->be;
    const ci_backend_ops *ops = be->ops;
    const int L = batch->num_logits;
    CI_TRY(ops->prepare_batch(be, batch, &m->dev_batch));
    CI_TRY(ci_model_enqueue(m, &m->dev_batch, batch->num_tokens, L, kv));
    /* the model's logits: the last stage's, on its tensor rank 0 */
    if (L > 0 && logits_out && ci_config_last_stage(&m->cfg) && m->cfg.tp.rank == 0)
        CI_TRY(
            ops->to_host(be, logits_out, m->logits.data,
                         (size_t)L * (size_t)m->cfg.vocab_size * ci_dtype_size(m->logits.dtype)));
    return ops->sync(be);
}
