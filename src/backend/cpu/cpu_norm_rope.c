/* cpu_norm_rope.c — RMSNorm (optionally fused with the residual add), the
 * Qwen3 per-head q/k norm, and rotary embedding + KV-cache write.
 *
 * RMSNorm follows HF exactly: residual = x + residual;
 * out = w * (residual * rsqrt(mean(residual^2) + eps)), all in f32 (the sum
 * of squares is accumulated in double). */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "util/fp8.h"
#include "util/half.h"

#define elem ci_cpu_load_elem

/* out[0:n] = w * (v * rsqrt(mean(v^2) + eps)); out may alias v */
static inline void rms_row(const float *v, const void *w, ci_dtype wdt, int64_t n, float eps,
                           float *out) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)v[i] * (double)v[i];
    float inv = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    if (wdt == CI_F32) {
        const float *wf = w;
        for (int64_t i = 0; i < n; i++)
            out[i] = wf[i] * (v[i] * inv);
    } else if (wdt == CI_BF16) {
        const uint16_t *wb = w;
        for (int64_t i = 0; i < n; i++)
            out[i] = ci_bf16_to_f32(wb[i]) * (v[i] * inv);
    } else {
        for (int64_t i = 0; i < n; i++)
            out[i] = elem(w, wdt, i) * (v[i] * inv);
    }
}

typedef struct norm_ctx {
    float *x, *res, *out;
    const void *w;
    ci_dtype wdt;
    int64_t n;
    float eps;
} norm_ctx;

static void rmsnorm_task(void *vctx, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const norm_ctx *c = vctx;
    for (int64_t r = r0; r < r1; r++) {
        float *x = c->x + r * c->n, *o = c->out + r * c->n;
        if (c->res) {
            float *res = c->res + r * c->n;
            for (int64_t i = 0; i < c->n; i++)
                res[i] = x[i] + res[i];
            rms_row(res, c->w, c->wdt, c->n, c->eps, o);
        } else {
            rms_row(x, c->w, c->wdt, c->n, c->eps, o);
        }
    }
}

static int64_t row_grain(ci_cpu *cpu, int64_t rows, int64_t cols) {
    int64_t per = (rows + cpu->nthreads - 1) / cpu->nthreads;
    if (rows * cols < 65536) return rows; /* not worth waking threads */
    return per < 1 ? 1 : per;
}

ci_status ci_cpu_rmsnorm(ci_backend *be, ci_tensor *x, ci_tensor *residual, const ci_tensor *w,
                         float eps, ci_tensor *out) {
    ci_cpu *cpu = ci_cpu_of(be);
    int64_t n = x->cols;
    if (x->dtype != CI_F32 || out->dtype != CI_F32 || out->cols != n || out->rows < x->rows ||
        w->rows * w->cols != n ||
        (residual &&
         (residual->cols != n || residual->rows < x->rows || residual->dtype != CI_F32)))
        return ci_errorf(CI_ERR_INVALID, "cpu rmsnorm: shape/dtype mismatch (x [%lld][%lld])",
                         (long long)x->rows, (long long)n);
    norm_ctx c = {x->data, residual ? residual->data : NULL, out->data, w->data, w->dtype, n, eps};
    ci_threadpool_run(cpu->tp, x->rows, row_grain(cpu, x->rows, n), rmsnorm_task, &c);
    return ci_ok();
}

typedef struct qkn_ctx {
    float *qkv;
    int64_t stride;
    int H, KV, hd;
    const void *wq, *wk;
    ci_dtype wqdt, wkdt;
    float eps;
} qkn_ctx;

static void qk_norm_task(void *vctx, int64_t t0, int64_t t1, int tid) {
    (void)tid;
    const qkn_ctx *c = vctx;
    for (int64_t t = t0; t < t1; t++) {
        float *row = c->qkv + t * c->stride;
        for (int h = 0; h < c->H; h++)
            rms_row(row + (int64_t)h * c->hd, c->wq, c->wqdt, c->hd, c->eps,
                    row + (int64_t)h * c->hd);
        float *k = row + (int64_t)c->H * c->hd;
        for (int h = 0; h < c->KV; h++)
            rms_row(k + (int64_t)h * c->hd, c->wk, c->wkdt, c->hd, c->eps, k + (int64_t)h * c->hd);
    }
}

ci_status ci_cpu_qk_norm(ci_backend *be, ci_tensor *qkv, const ci_attn_shape *shape,
                         const ci_tensor *w_q, const ci_tensor *w_k, float eps) {
    ci_cpu *cpu = ci_cpu_of(be);
    int64_t stride = (int64_t)(shape->num_heads + 2 * shape->num_kv_heads) * shape->head_dim;
    if (qkv->dtype != CI_F32 || qkv->cols != stride || w_q->rows * w_q->cols != shape->head_dim ||
        w_k->rows * w_k->cols != shape->head_dim)
        return ci_errorf(CI_ERR_INVALID, "cpu qk_norm: shape mismatch");
    qkn_ctx c = {qkv->data, stride,    shape->num_heads, shape->num_kv_heads, shape->head_dim,
                 w_q->data, w_k->data, w_q->dtype,       w_k->dtype,          eps};
    ci_threadpool_run(cpu->tp, qkv->rows, row_grain(cpu, qkv->rows, stride), qk_norm_task, &c);
    return ci_ok();
}

typedef struct rope_ctx {
    float *qkv;
    int64_t stride;
    int H, KV, hd, rot, neox;
    const float *cs;
    const int32_t *pos, *slots;
    void *kc, *vc;
    int bs;
    int fp8;              /* the cache stores E4M3 */
    float kscale, vscale; /* FP8: stored = e4m3(x / scale) */
} rope_ctx;

/* n floats -> E4M3 of x / scale (the CUDA kernel's bytes: one IEEE
 * division, then the saturating round-to-nearest-even codec) */
static void quant_row(uint8_t *dst, const float *x, int n, float scale) {
    for (int i = 0; i < n; i++)
        dst[i] = ci_f32_to_fp8_e4m3(x[i] / scale);
}

static inline void rotate(float *x, const float *cs, int rot, int neox) {
    int half = rot / 2;
    const float *cosv = cs, *sinv = cs + half;
    if (neox) {
        for (int i = 0; i < half; i++) {
            float x1 = x[i], x2 = x[i + half];
            x[i] = x1 * cosv[i] - x2 * sinv[i];
            x[i + half] = x2 * cosv[i] + x1 * sinv[i];
        }
    } else {
        for (int i = 0; i < half; i++) {
            float x1 = x[2 * i], x2 = x[2 * i + 1];
            x[2 * i] = x1 * cosv[i] - x2 * sinv[i];
            x[2 * i + 1] = x2 * cosv[i] + x1 * sinv[i];
        }
    }
}

static void rope_task(void *vctx, int64_t t0, int64_t t1, int tid) {
    (void)tid;
    const rope_ctx *c = vctx;
    for (int64_t t = t0; t < t1; t++) {
        float *row = c->qkv + t * c->stride;
        const float *cs = c->cs + (int64_t)c->pos[t] * c->rot;
        for (int h = 0; h < c->H + c->KV; h++)
            rotate(row + (int64_t)h * c->hd, cs, c->rot, c->neox);
        int32_t slot = c->slots[t];
        if (slot < 0) continue;
        int64_t blk = slot / c->bs, off = slot % c->bs;
        const float *k = row + (int64_t)c->H * c->hd, *v = k + (int64_t)c->KV * c->hd;
        for (int g = 0; g < c->KV; g++) {
            size_t dst = ((size_t)(blk * c->KV + g) * (size_t)c->bs + (size_t)off) * (size_t)c->hd;
            if (c->fp8) {
                quant_row((uint8_t *)c->kc + dst, k + (int64_t)g * c->hd, c->hd, c->kscale);
                quant_row((uint8_t *)c->vc + dst, v + (int64_t)g * c->hd, c->hd, c->vscale);
                continue;
            }
            memcpy((float *)c->kc + dst, k + (int64_t)g * c->hd, (size_t)c->hd * sizeof(float));
            memcpy((float *)c->vc + dst, v + (int64_t)g * c->hd, (size_t)c->hd * sizeof(float));
        }
    }
}

ci_status ci_cpu_rope_cache(ci_backend *be, ci_tensor *qkv, const ci_attn_shape *shape,
                            const ci_rope_table *rope, const ci_batch *batch, ci_kv_cache *kv,
                            int layer) {
    ci_cpu *cpu = ci_cpu_of(be);
    int64_t stride = (int64_t)(shape->num_heads + 2 * shape->num_kv_heads) * shape->head_dim;
    if (qkv->dtype != CI_F32 || qkv->cols != stride || qkv->rows < batch->num_tokens)
        return ci_errorf(CI_ERR_INVALID, "cpu rope: qkv shape mismatch");
    if (rope->rot_dim <= 0 || rope->rot_dim > shape->head_dim || (rope->rot_dim & 1) ||
        rope->cos_sin.dtype != CI_F32 || rope->cos_sin.cols != rope->rot_dim)
        return ci_errorf(CI_ERR_INVALID, "cpu rope: bad table (rot_dim %d, head_dim %d)",
                         rope->rot_dim, shape->head_dim);
    if (layer < 0 || layer >= kv->num_layers || !ci_kv_dtype_ok(be, kv->dtype) ||
        kv->num_kv_heads != shape->num_kv_heads || kv->head_dim != shape->head_dim)
        return ci_errorf(CI_ERR_INVALID, "cpu rope: kv cache does not match (layer %d)", layer);
    int64_t nslots = (int64_t)kv->num_blocks * kv->block_size;
    for (int t = 0; t < batch->num_tokens; t++) {
        int32_t p = batch->positions[t], s = batch->slot_mapping[t];
        if (p < 0 || p >= rope->max_positions)
            return ci_errorf(CI_ERR_INVALID, "cpu rope: position %d outside [0, %d)", p,
                             rope->max_positions);
        if (s < -1 || s >= nslots)
            return ci_errorf(CI_ERR_INVALID, "cpu rope: slot %d outside the cache (%lld slots)", s,
                             (long long)nslots);
    }
    rope_ctx c = {qkv->data,          stride,
                  shape->num_heads,   shape->num_kv_heads,
                  shape->head_dim,    rope->rot_dim,
                  rope->neox,         rope->cos_sin.data,
                  batch->positions,   batch->slot_mapping,
                  kv->k[layer],       kv->v[layer],
                  kv->block_size,     kv->dtype == CI_F8_E4M3,
                  kv->k_scale[layer], kv->v_scale[layer]};
    ci_threadpool_run(cpu->tp, batch->num_tokens, row_grain(cpu, batch->num_tokens, stride * 4),
                      rope_task, &c);
    return ci_ok();
}
