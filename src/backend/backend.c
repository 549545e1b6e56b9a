/* backend.c — the backend-independent helpers (activation tensors, paged KV
 * cache, the sample op's checks) built on the backend's memory ops.
 * Selection by name is backend_registry.c's. */
#include "backend/backend.h"

#include <stdlib.h>
#include <string.h>

void ci_backend_destroy(ci_backend *be) {
    if (be && be->ops && be->ops->destroy) be->ops->destroy(be);
}

ci_status ci_tensor_alloc(ci_backend *be, ci_dtype dtype, int64_t rows, int64_t cols,
                          ci_tensor *out) {
    memset(out, 0, sizeof *out);
    if (rows < 0 || cols < 0)
        return ci_errorf(CI_ERR_INVALID, "tensor alloc: bad shape [%lld][%lld]", (long long)rows,
                         (long long)cols);
    size_t bytes = (size_t)rows * (size_t)cols * ci_dtype_size(dtype);
    void *p = NULL;
    CI_TRY(be->ops->alloc(be, bytes ? bytes : 1, &p));
    out->data = p;
    out->dtype = dtype;
    out->rows = rows;
    out->cols = cols;
    return ci_ok();
}

void ci_tensor_free(ci_backend *be, ci_tensor *t) {
    if (!t) return;
    if (t->data) be->ops->free(be, t->data);
    memset(t, 0, sizeof *t);
}

ci_status ci_kv_cache_create(ci_backend *be, int num_layers, int num_kv_heads, int head_dim,
                             int num_blocks, int block_size, ci_kv_cache **out) {
    return ci_kv_cache_create_dtype(be, be->act_dtype, num_layers, num_kv_heads, head_dim,
                                    num_blocks, block_size, out);
}

ci_status ci_kv_cache_create_dtype(ci_backend *be, ci_dtype dtype, int num_layers, int num_kv_heads,
                                   int head_dim, int num_blocks, int block_size,
                                   ci_kv_cache **out) {
    *out = NULL;
    if (!ci_kv_dtype_ok(be, dtype))
        return ci_errorf(CI_ERR_UNSUPPORTED, "kv cache: dtype %s on a %s backend",
                         ci_dtype_name(dtype), ci_dtype_name(be->act_dtype));
    if (num_layers <= 0 || num_kv_heads <= 0 || head_dim <= 0 || num_blocks <= 0 || block_size <= 0)
        return ci_errorf(CI_ERR_INVALID,
                         "kv cache: bad shape (layers %d, kv heads %d, head_dim %d, blocks %d, "
                         "block_size %d)",
                         num_layers, num_kv_heads, head_dim, num_blocks, block_size);
    ci_kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return ci_errorf(CI_ERR_NOMEM, "kv cache: out of memory");
    kv->num_layers = num_layers;
    kv->num_blocks = num_blocks;
    kv->block_size = block_size;
    kv->num_kv_heads = num_kv_heads;
    kv->head_dim = head_dim;
    kv->dtype = dtype;
    kv->k = calloc((size_t)num_layers, sizeof *kv->k);
    kv->v = calloc((size_t)num_layers, sizeof *kv->v);
    kv->k_scale = malloc((size_t)num_layers * sizeof *kv->k_scale);
    kv->v_scale = malloc((size_t)num_layers * sizeof *kv->v_scale);
    if (!kv->k || !kv->v || !kv->k_scale || !kv->v_scale) {
        ci_kv_cache_destroy(be, kv);
        return ci_errorf(CI_ERR_NOMEM, "kv cache: out of memory");
    }
    for (int l = 0; l < num_layers; l++)
        kv->k_scale[l] = kv->v_scale[l] = 1.0f;
    size_t bytes = (size_t)num_blocks * (size_t)num_kv_heads * (size_t)block_size *
                   (size_t)head_dim * ci_dtype_size(kv->dtype);
    for (int l = 0; l < num_layers; l++) {
        ci_status s = be->ops->alloc(be, bytes, &kv->k[l]);
        if (s.code == CI_OK) s = be->ops->alloc(be, bytes, &kv->v[l]);
        if (s.code == CI_OK) s = be->ops->memset0(be, kv->k[l], bytes);
        if (s.code == CI_OK) s = be->ops->memset0(be, kv->v[l], bytes);
        if (s.code != CI_OK) {
            ci_kv_cache_destroy(be, kv);
            return ci_status_wrap(s, "kv cache (%zu bytes per layer and K/V)", bytes);
        }
    }
    *out = kv;
    return ci_ok();
}

void ci_kv_cache_destroy(ci_backend *be, ci_kv_cache *kv) {
    if (!kv) return;
    for (int l = 0; l < kv->num_layers; l++) {
        if (kv->k && kv->k[l]) be->ops->free(be, kv->k[l]);
        if (kv->v && kv->v[l]) be->ops->free(be, kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    free(kv->k_scale);
    free(kv->v_scale);
    free(kv);
}

ci_status ci_sample_check(const char *who, const ci_tensor *logits, const ci_sample_row *rows,
                          int n, const ci_logit_adjust *adj, int nadj, const uint32_t *masks,
                          int nmasks) {
    if (logits->dtype != CI_F32 || logits->cols <= 0 || logits->cols > INT32_MAX)
        return ci_errorf(CI_ERR_INVALID, "%s: logits must be F32 [rows][V]", who);
    for (int i = 0; i < n; i++) {
        const ci_sample_row *r = &rows[i];
        if (r->logits_row < 0 || r->logits_row >= logits->rows || r->adj_start < 0 ||
            r->adj_count < 0 || r->adj_start > nadj - r->adj_count ||
            r->top_logprobs > CI_SAMPLE_MAX_TOP || r->vocab_limit < 0 || r->mask_row < -1 ||
            r->mask_row >= nmasks || (r->mask_row >= 0 && !masks))
            return ci_errorf(CI_ERR_INVALID, "%s: row %d out of range", who, i);
    }
    for (int j = 0; j < nadj; j++)
        if (adj[j].token < 0 || adj[j].token >= logits->cols)
            return ci_errorf(CI_ERR_INVALID, "%s: adjusted token %d outside [0, %lld)", who,
                             adj[j].token, (long long)logits->cols);
    return ci_ok();
}
