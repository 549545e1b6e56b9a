/* weights.c — HF tensor names -> backend weights, checked against the config.
 * The names come from the family's table (src/model/arch/).
 *
 * Two passes: first every tensor the config needs is looked up and its
 * presence, dtype and exact shape checked (so a bad checkpoint fails before
 * any backend memory is allocated); then tensors are written through the
 * backend's weight_alloc/weight_write (which convert dtypes), concatenating
 * q|k|v and gate|up rows. Biases of q|k|v are concatenated along columns of a
 * single row, so they are converted to F32 on the host first. Quantized
 * linears (config.json's quantization_config, or --quantization fp8; and an LM
 * head the checkpoint quantized too: find_head) go
 * through model/quant.h: their tensors are checked in pass 1 and repacked into
 * one quantized backend weight per fused group in pass 2. */
#include "model/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/qweight.h"

typedef struct layer_src {
    const ci_st_tensor *attn_norm, *qb, *kb, *vb, *qn, *kn, *mlp_norm;
    ci_qlinear_src q, k, v, o, gate, up, down; /* dense or quantized (model/quant.h) */
} layer_src;

typedef struct progress_ctx {
    ci_progress_fn fn;
    void *user;
    size_t done, total;
} progress_ctx;

static void progress_add(progress_ctx *p, size_t bytes) {
    p->done += bytes;
    if (p->fn) p->fn(p->done, p->total, p->user);
}

static void fmt_shape(char *buf, size_t n, const ci_st_tensor *t) {
    size_t used = 0;
    used += (size_t)snprintf(buf + used, n - used, "[");
    for (int i = 0; i < t->ndim && used < n; i++)
        used +=
            (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

/* Looks a tensor up and checks dtype and shape. d1 < 0: 1-D [d0]. */
static ci_status need(const ci_checkpoint *ck, const char *name, int64_t d0, int64_t d1,
                      const char *what, const ci_st_tensor **out) {
    const ci_st_tensor *t = ci_checkpoint_find(ck, name);
    if (!t)
        return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%s' is missing",
                         ci_checkpoint_file_name(ck, -1), name);
    const char *file = ci_checkpoint_file_name(ck, t->file_index);
    if (t->dtype != CI_F32 && t->dtype != CI_F16 && t->dtype != CI_BF16)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "%s: tensor '%s' has dtype %s, expected F32, F16 or BF16", file, name,
                         ci_dtype_name(t->dtype));
    int ndim = d1 < 0 ? 1 : 2;
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        char got[96];
        fmt_shape(got, sizeof got, t);
        if (ndim == 1)
            return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected [%lld] (%s)",
                             file, name, got, (long long)d0, what);
        return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected [%lld, %lld] (%s)",
                         file, name, got, (long long)d0, (long long)d1, what);
    }
    *out = t;
    return ci_ok();
}

static ci_status need_layer(const ci_checkpoint *ck, const ci_arch_names *nm, int layer,
                            const char *suffix, int64_t d0, int64_t d1, const char *what,
                            const ci_st_tensor **out) {
    char name[160];
    snprintf(name, sizeof name, "%s%d.%s", nm->layers, layer, suffix);
    return need(ck, name, d0, d1, what, out);
}

/* "P.weight" -> "P": a linear's prefix, as model/quant.h looks its tensors up */
static void drop_weight_suffix(char *name) {
    size_t n = strlen(name);
    if (n > 7 && !strcmp(name + n - 7, ".weight")) name[n - 7] = 0;
}

/* A linear module: dense through need() unless the config is quantized. */
static ci_status need_linear(const ci_checkpoint *ck, const ci_model_config *c, int layer,
                             const char *suffix, int64_t d0, int64_t d1, const char *what,
                             ci_qlinear_src *out) {
    if (c->quant.method == CI_QUANT_NONE) {
        memset(out, 0, sizeof *out);
        out->dense = true;
        out->out = d0;
        out->in = d1;
        return need_layer(ck, c->arch->names, layer, suffix, d0, d1, what, &out->weight);
    }
    char prefix[160];
    snprintf(prefix, sizeof prefix, "%s%d.%s", c->arch->names->layers, layer, suffix);
    drop_weight_suffix(prefix);
    return ci_qlinear_find(ck, &c->quant, prefix, d0, d1, out);
}

/* The LM head of an untied model (or of a GPTQ `lm_head: true` one, tied or
 * not): a dense tensor (*dense), or a quantized linear (*quant set, hq) when
 * the checkpoint quantized it too — GPTQ says so in its config; the other
 * methods by the tensors (an FP8 / INT8 weight, INT4 packed tensors), as
 * for the decoder's linears, since their ignore lists are not needed to
 * tell. Tied and not quantized: *dense NULL. */
static ci_status find_head(const ci_checkpoint *ck, const ci_model_config *c,
                           const ci_st_tensor **dense, ci_qlinear_src *hq, int *quant) {
    const char *name = c->arch->names->lm_head;
    const int m = c->quant.method;
    *dense = NULL;
    *quant = 0;
    if (c->tie_word_embeddings && !c->quant.lm_head) return ci_ok();
    char prefix[160];
    snprintf(prefix, sizeof prefix, "%s", name);
    drop_weight_suffix(prefix);
    const int maybe = m != CI_QUANT_NONE && m != CI_QUANT_ONLINE_FP8 && m != CI_QUANT_AWQ &&
                      ((m != CI_QUANT_GPTQ && m != CI_QUANT_GPTQ_INT8) || c->quant.lm_head);
    char qname[192];
    snprintf(qname, sizeof qname, "%s.%s", prefix,
             m == CI_QUANT_CT_INT4 ? "weight_packed" : "qweight");
    if (!ci_checkpoint_find(ck, name) && !(maybe && ci_checkpoint_find(ck, qname)))
        return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%s' is missing (config.json has %s)",
                         ci_checkpoint_file_name(ck, -1), c->quant.lm_head ? qname : name,
                         c->quant.lm_head ? "quantization_config.lm_head true"
                                          : "tie_word_embeddings false");
    if (!maybe)
        return need(ck, name, c->vocab_size, c->hidden_size, "vocab_size, hidden_size", dense);
    CI_TRY(ci_qlinear_find(ck, &c->quant, prefix, c->vocab_size, c->hidden_size, hq));
    if (!hq->dense) {
        *quant = 1;
        return ci_ok();
    }
    if (c->quant.lm_head)
        return ci_errorf(CI_ERR_FORMAT,
                         "config.json: quantization_config: field 'lm_head' is true but tensor "
                         "'%s' is dense (%s)",
                         name, ci_dtype_name(hq->weight->dtype));
    *dense = hq->weight;
    return ci_ok();
}

static ci_status check_layer(const ci_checkpoint *ck, const ci_model_config *c, int i,
                             layer_src *L) {
    const ci_arch_names *nm = c->arch->names;
    int64_t h = c->hidden_size, q = (int64_t)c->num_heads * c->head_dim,
            kv = (int64_t)c->num_kv_heads * c->head_dim, in = c->intermediate_size;
    CI_TRY(need_layer(ck, nm, i, nm->attn_norm, h, -1, "hidden_size", &L->attn_norm));
    CI_TRY(need_linear(ck, c, i, nm->q, q, h, "num_attention_heads*head_dim, hidden_size", &L->q));
    CI_TRY(need_linear(ck, c, i, nm->k, kv, h, "num_key_value_heads*head_dim, hidden_size", &L->k));
    CI_TRY(need_linear(ck, c, i, nm->v, kv, h, "num_key_value_heads*head_dim, hidden_size", &L->v));
    CI_TRY(need_linear(ck, c, i, nm->o, h, q, "hidden_size, num_attention_heads*head_dim", &L->o));
    if (c->qkv_bias) {
        CI_TRY(need_layer(ck, nm, i, nm->q_bias, q, -1, "num_attention_heads*head_dim", &L->qb));
        CI_TRY(need_layer(ck, nm, i, nm->k_bias, kv, -1, "num_key_value_heads*head_dim", &L->kb));
        CI_TRY(need_layer(ck, nm, i, nm->v_bias, kv, -1, "num_key_value_heads*head_dim", &L->vb));
    }
    char name[160];
    snprintf(name, sizeof name, "%s%d.%s", nm->layers, i, nm->o_bias);
    if (ci_checkpoint_find(ck, name))
        return ci_errorf(
            CI_ERR_UNSUPPORTED, "%s: tensor '%s' is present; o_proj bias is not supported",
            ci_checkpoint_file_name(ck, ci_checkpoint_find(ck, name)->file_index), name);
    if (c->qk_norm) {
        CI_TRY(need_layer(ck, nm, i, nm->q_norm, c->head_dim, -1, "head_dim", &L->qn));
        CI_TRY(need_layer(ck, nm, i, nm->k_norm, c->head_dim, -1, "head_dim", &L->kn));
    }
    CI_TRY(need_layer(ck, nm, i, nm->mlp_norm, h, -1, "hidden_size", &L->mlp_norm));
    CI_TRY(need_linear(ck, c, i, nm->gate, in, h, "intermediate_size, hidden_size", &L->gate));
    CI_TRY(need_linear(ck, c, i, nm->up, in, h, "intermediate_size, hidden_size", &L->up));
    CI_TRY(need_linear(ck, c, i, nm->down, h, in, "hidden_size, intermediate_size", &L->down));
    return ci_ok();
}

/* An optional scalar (shape [] or [1], F32/F16/BF16) tensor of layer i:
 * *out = its value, or unchanged when absent. */
static ci_status opt_scalar(const ci_checkpoint *ck, const ci_arch_names *nm, int i,
                            const char *suffix, float *out) {
    char name[160];
    snprintf(name, sizeof name, "%s%d.%s", nm->layers, i, suffix);
    const ci_st_tensor *t = ci_checkpoint_find(ck, name);
    if (!t) return ci_ok();
    const char *file = ci_checkpoint_file_name(ck, t->file_index);
    if ((t->dtype != CI_F32 && t->dtype != CI_F16 && t->dtype != CI_BF16) || t->ndim > 1 ||
        (t->ndim == 1 && t->shape[0] != 1))
        return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%s' must be one F32/F16/BF16 scalar", file,
                         name);
    float v = ci_st_elem_f32(t, 0);
    if (!(v > 0.0f) || isinf(v))
        return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%s' = %g is not a positive scale", file, name,
                         (double)v);
    *out = v;
    return ci_ok();
}

/* FP8 KV cache scales of layer i under the names vLLM reads (its
 * maybe_remap_kv_scale_name): self_attn.k_scale / v_scale, the older
 * combined self_attn.kv_scale, and compressed-tensors' k_proj / v_proj
 * output_scale. 1.0 when none is present, as in vLLM. */
static ci_status kv_scales(const ci_checkpoint *ck, const ci_arch_names *nm, int i, float *k,
                           float *v) {
    *k = *v = 1.0f;
    CI_TRY(opt_scalar(ck, nm, i, "self_attn.kv_scale", k));
    *v = *k;
    CI_TRY(opt_scalar(ck, nm, i, "self_attn.k_proj.output_scale", k));
    CI_TRY(opt_scalar(ck, nm, i, "self_attn.v_proj.output_scale", v));
    CI_TRY(opt_scalar(ck, nm, i, "self_attn.k_scale", k));
    return opt_scalar(ck, nm, i, "self_attn.v_scale", v);
}

static size_t layer_bytes(const layer_src *L) {
    const ci_st_tensor *all[] = {L->attn_norm, L->qb, L->kb, L->vb, L->qn, L->kn, L->mlp_norm};
    const ci_qlinear_src *lin[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down};
    size_t n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]) n += all[i]->nbytes;
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++)
        n += ci_qlinear_bytes(lin[i]);
    return n;
}

static ci_status wrap_tensor(ci_status s, const ci_st_tensor *t) {
    return ci_status_wrap(s, "loading tensor '%s'", t->name);
}

/* Row ranges of 2-D tensors: the whole tensors, or a tensor-parallel share
 * (cfg->tp) of column-parallel weights and of the vocabulary. */
typedef struct row_range {
    const ci_st_tensor *t;
    int64_t r0, n; /* rows [r0, r0 + n) */
} row_range;

/* Row-concatenates row ranges of 2-D tensors of equal cols into one
 * backend weight. */
static ci_status load_row_ranges(ci_backend *be, const row_range *parts, int n, progress_ctx *p,
                                 ci_tensor *out) {
    int64_t rows = 0, cols = parts[0].t->shape[1];
    for (int i = 0; i < n; i++)
        rows += parts[i].n;
    ci_status s = be->ops->weight_alloc(be, parts[0].t->dtype, rows, cols, out);
    if (s.code != CI_OK) {
        out->data = NULL;
        return wrap_tensor(s, parts[0].t);
    }
    int64_t row0 = 0;
    for (int i = 0; i < n; i++) {
        const ci_st_tensor *t = parts[i].t;
        const size_t es = ci_dtype_size(t->dtype);
        const char *src = (const char *)t->data + (size_t)(parts[i].r0 * cols) * es;
        s = be->ops->weight_write(be, out, row0, src, t->dtype, parts[i].n);
        if (s.code != CI_OK) return wrap_tensor(s, t);
        row0 += parts[i].n;
        progress_add(p, (size_t)(parts[i].n * cols) * es);
    }
    return ci_ok();
}

/* Columns [c0, c0 + nc) of a 2-D tensor (a tensor-parallel share of a
 * row-parallel weight), staged on the host in its dtype. */
static ci_status load_cols(ci_backend *be, const ci_st_tensor *t, int64_t c0, int64_t nc,
                           progress_ctx *p, ci_tensor *out) {
    const int64_t rows = t->shape[0], cols = t->shape[1];
    const size_t es = ci_dtype_size(t->dtype);
    char *host = malloc((size_t)(rows * nc) * es);
    if (!host) return ci_errorf(CI_ERR_NOMEM, "loading tensor '%s': out of memory", t->name);
    for (int64_t r = 0; r < rows; r++)
        memcpy(host + (size_t)(r * nc) * es, (const char *)t->data + (size_t)(r * cols + c0) * es,
               (size_t)nc * es);
    ci_status s = be->ops->weight_alloc(be, t->dtype, rows, nc, out);
    if (s.code != CI_OK) out->data = NULL;
    if (s.code == CI_OK) s = be->ops->weight_write(be, out, 0, host, t->dtype, rows);
    free(host);
    if (s.code != CI_OK) return wrap_tensor(s, t);
    progress_add(p, (size_t)(rows * nc) * es);
    return ci_ok();
}

/* Row-concatenated linear parts, dense rows or one quantized weight, or
 * (sh) their tensor-parallel share: rows of each part (column parallel) or
 * columns of one (row parallel); a quantized share is cut from the
 * repacked whole (ci_qweight_shard), so it holds the full weight's values. */
static ci_status load_linear(ci_backend *be, const ci_model_config *c,
                             const ci_qlinear_src *const *parts, int n, const ci_qshard *sh,
                             progress_ctx *p, ci_tensor *out) {
    int dense = 1;
    for (int i = 0; i < n; i++)
        dense &= parts[i]->dense;
    if (dense && c->quant.method != CI_QUANT_ONLINE_FP8) {
        if (sh && sh->nc > 0) return load_cols(be, parts[0]->weight, sh->c0, sh->nc, p, out);
        row_range w[CI_QW_MAX_PARTS];
        for (int i = 0; i < n; i++)
            w[i] = sh ? (row_range){parts[i]->weight, sh->r0[i], sh->nr[i]}
                      : (row_range){parts[i]->weight, 0, parts[i]->weight->shape[0]};
        return load_row_ranges(be, w, n, p, out);
    }
    ci_status s = ci_qlinear_upload_shard(be, &c->quant, parts, n, sh, out);
    if (s.code != CI_OK) {
        out->data = NULL;
        return s;
    }
    for (int i = 0; i < n; i++)
        progress_add(p, ci_qlinear_bytes(parts[i]));
    return ci_ok();
}

/* 1-D tensor -> [1][n] weight. */
static ci_status load_vec(ci_backend *be, const ci_st_tensor *t, progress_ctx *p, ci_tensor *out) {
    ci_status s = be->ops->weight_alloc(be, t->dtype, 1, t->shape[0], out);
    if (s.code != CI_OK) {
        out->data = NULL;
        return wrap_tensor(s, t);
    }
    s = be->ops->weight_write(be, out, 0, t->data, t->dtype, 1);
    if (s.code != CI_OK) return wrap_tensor(s, t);
    progress_add(p, t->nbytes);
    return ci_ok();
}

/* Column-concatenates ranges [r0, r0 + n) of 1-D biases into one [1][sum]
 * F32 weight. */
static ci_status load_bias_concat(ci_backend *be, const row_range *parts, int n, progress_ctx *p,
                                  ci_tensor *out) {
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += parts[i].n;
    float *host = malloc((size_t)total * sizeof *host);
    if (!host)
        return ci_errorf(CI_ERR_NOMEM, "loading tensor '%s': out of memory", parts[0].t->name);
    int64_t k = 0;
    for (int i = 0; i < n; i++)
        for (int64_t j = parts[i].r0; j < parts[i].r0 + parts[i].n; j++)
            host[k++] = ci_st_elem_f32(parts[i].t, (size_t)j);
    ci_status s = be->ops->weight_alloc(be, CI_F32, 1, total, out);
    if (s.code != CI_OK) {
        out->data = NULL;
        free(host);
        return wrap_tensor(s, parts[0].t);
    }
    s = be->ops->weight_write(be, out, 0, host, CI_F32, 1);
    free(host);
    if (s.code != CI_OK) return wrap_tensor(s, parts[0].t);
    for (int i = 0; i < n; i++)
        progress_add(p, (size_t)parts[i].n * ci_dtype_size(parts[i].t->dtype));
    return ci_ok();
}

static void free_tensor(ci_backend *be, ci_tensor *t) {
    if (t->data && t->dtype == CI_QW)
        be->ops->qweight_free(be, t);
    else if (t->data)
        be->ops->free(be, t->data);
    t->data = NULL;
}

void ci_weights_free(ci_backend *be, ci_weights *w) {
    if (!be || !w) return;
    if (w->layers) {
        for (int i = 0; i < w->num_layers; i++) {
            ci_layer_weights *L = &w->layers[i];
            ci_tensor *all[] = {&L->attn_norm, &L->wqkv,     &L->bqkv,      &L->q_norm, &L->k_norm,
                                &L->wo,        &L->mlp_norm, &L->w_gate_up, &L->w_down};
            for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
                free_tensor(be, all[j]);
        }
        free(w->layers);
    }
    if (w->lm_head_tied) w->lm_head.data = NULL; /* same memory as embed: freed once */
    free_tensor(be, &w->lm_head);
    free_tensor(be, &w->embed);
    free_tensor(be, &w->final_norm);
    memset(w, 0, sizeof *w);
}

ci_status ci_weights_load(ci_backend *be, const ci_checkpoint *ck, const ci_model_config *cfg,
                          ci_progress_fn progress, void *progress_user, ci_weights *out) {
    if (!be || !ck || !cfg || !out)
        return ci_errorf(CI_ERR_INVALID, "ci_weights_load: NULL argument");
    memset(out, 0, sizeof *out);
    const ci_model_config *c = cfg;
    if (!c->arch || c->num_layers <= 0 || c->hidden_size <= 0 || c->vocab_size <= 0 ||
        c->head_dim <= 0)
        return ci_errorf(CI_ERR_INVALID, "ci_weights_load: config not loaded");

    /* pass 1: presence, dtype, shape */
    const ci_st_tensor *embed, *norm, *head = NULL;
    const ci_arch_names *nm = c->arch->names;
    CI_TRY(need(ck, nm->embed, c->vocab_size, c->hidden_size, "vocab_size, hidden_size", &embed));
    CI_TRY(need(ck, nm->final_norm, c->hidden_size, -1, "hidden_size", &norm));
    ci_qlinear_src hq; /* a quantized LM head (head_q) */
    int head_q;
    CI_TRY(find_head(ck, c, &head, &hq, &head_q));
    layer_src *src = calloc((size_t)c->num_layers, sizeof *src);
    if (!src) return ci_errorf(CI_ERR_NOMEM, "ci_weights_load: out of memory");
    progress_ctx p = {progress, progress_user, 0, embed->nbytes + norm->nbytes};
    if (head) p.total += head->nbytes;
    if (head_q) p.total += ci_qlinear_bytes(&hq);
    ci_status s = ci_ok();
    for (int i = 0; i < c->num_layers; i++) {
        s = check_layer(ck, c, i, &src[i]);
        if (s.code != CI_OK) {
            free(src);
            return s;
        }
        p.total += layer_bytes(&src[i]);
    }

    /* pass 2: upload. Pipeline parallelism (cfg->pp): this stage's layers
     * only (out->layers[0] is layer l0), the embedding on the first stage
     * (and the last when the LM head is tied to it), the final norm and LM
     * head on the last */
    const int pp = c->pp.size > 1, l0 = pp ? c->pp.l0 : 0, l1 = pp ? c->pp.l1 : c->num_layers;
    const int first = ci_config_first_stage(c), last = ci_config_last_stage(c);
    out->layers = calloc((size_t)(l1 - l0), sizeof *out->layers);
    if (!out->layers) {
        free(src);
        return ci_errorf(CI_ERR_NOMEM, "ci_weights_load: out of memory");
    }
    out->num_layers = l1 - l0;
    /* tensor parallelism (cfg->tp, ci_config_tp_split): the norms whole on
     * every rank, the embedding and LM head split by vocabulary rows, the
     * linears' shares dense or quantized (load_linear) */
    const int tp = c->tp.size > 1;
    const int64_t nh = tp ? c->tp.nh : c->num_heads, nkv = tp ? c->tp.nkv : c->num_kv_heads,
                  ni = tp ? c->tp.ni : c->intermediate_size;
#define TRY_GO(expr)                                                                               \
    do {                                                                                           \
        s = (expr);                                                                                \
        if (s.code != CI_OK) goto fail;                                                            \
    } while (0)
    /* the vocabulary share of the embedding and LM head (tensor parallelism) */
    const row_range ve = {embed, tp ? c->tp.v0 : 0, tp ? c->tp.nv : c->vocab_size},
                    vh = {head, ve.r0, ve.n};
    if (first || (last && !head && !head_q)) TRY_GO(load_row_ranges(be, &ve, 1, &p, &out->embed));
    for (int i = l0; i < l1; i++) {
        const layer_src *S = &src[i];
        ci_layer_weights *L = &out->layers[i - l0];
        TRY_GO(kv_scales(ck, nm, i, &L->k_scale, &L->v_scale));
        TRY_GO(load_vec(be, S->attn_norm, &p, &L->attn_norm));
        /* this rank's rows of q|k|v and gate|up, columns of o and down
         * (the whole tensors without tensor parallelism) */
        const int64_t hd = c->head_dim;
        const row_range rq = {S->q.weight, tp ? c->tp.q0 * hd : 0, nh * hd},
                        rk = {S->k.weight, tp ? c->tp.kv0 * hd : 0, nkv * hd},
                        rv = {S->v.weight, rk.r0, rk.n};
        /* this rank's share (NULL: the whole linear) */
        const ci_qshard sq = {{rq.r0, rk.r0, rv.r0}, {rq.n, rk.n, rv.n}, 0, 0},
                        so = {{0}, {0}, rq.r0, rq.n}, sgu = {{c->tp.i0, c->tp.i0}, {ni, ni}, 0, 0},
                        sd = {{0}, {0}, c->tp.i0, ni};
        const ci_qlinear_src *qkv[3] = {&S->q, &S->k, &S->v};
        TRY_GO(load_linear(be, c, qkv, 3, tp ? &sq : NULL, &p, &L->wqkv));
        if (c->qkv_bias) {
            const row_range b[3] = {
                {S->qb, rq.r0, rq.n}, {S->kb, rk.r0, rk.n}, {S->vb, rv.r0, rv.n}};
            TRY_GO(load_bias_concat(be, b, 3, &p, &L->bqkv));
        }
        if (c->qk_norm) {
            TRY_GO(load_vec(be, S->qn, &p, &L->q_norm));
            TRY_GO(load_vec(be, S->kn, &p, &L->k_norm));
        }
        const ci_qlinear_src *o = &S->o;
        TRY_GO(load_linear(be, c, &o, 1, tp ? &so : NULL, &p, &L->wo));
        TRY_GO(load_vec(be, S->mlp_norm, &p, &L->mlp_norm));
        const ci_qlinear_src *gu[2] = {&S->gate, &S->up}, *down = &S->down;
        TRY_GO(load_linear(be, c, gu, 2, tp ? &sgu : NULL, &p, &L->w_gate_up));
        TRY_GO(load_linear(be, c, &down, 1, tp ? &sd : NULL, &p, &L->w_down));
    }
    if (last) TRY_GO(load_vec(be, norm, &p, &out->final_norm));
    if (last && head_q) { /* its vocabulary rows, as a column-parallel share */
        const ci_qlinear_src *hp = &hq;
        const ci_qshard sv = {{ve.r0}, {ve.n}, 0, 0};
        TRY_GO(load_linear(be, c, &hp, 1, tp ? &sv : NULL, &p, &out->lm_head));
    } else if (last && head) {
        TRY_GO(load_row_ranges(be, &vh, 1, &p, &out->lm_head));
    } else if (last) {
        out->lm_head = out->embed;
        out->lm_head_tied = 1;
    }
#undef TRY_GO
    free(src);
    return ci_ok();
fail:
    free(src);
    ci_weights_free(be, out);
    return s;
}
