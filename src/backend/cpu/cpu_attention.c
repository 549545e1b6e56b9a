/* cpu_attention.c — paged causal attention with GQA, online softmax in f32.
 *
 * One task per (token, kv head): the token's sequence is found in
 * query_start, and it attends to cache positions 0..positions[t] (capped at
 * the sequence's context length; with a sliding window w, only
 * positions[t] - w + 1 .. positions[t]), read block by block through
 * block_tables. The group's query heads share each K/V load. An FP8 cache
 * is dequantized (e4m3 * scale, through 256-entry tables) one chunk of keys
 * at a time into the thread's f32 scratch; the math after that is the same. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "util/fp8.h"

#define CI_ATT_HB 8     /* query heads per pass */
#define CI_ATT_CHUNK 32 /* keys per softmax update */
#define CI_ATT_MAX_HD 512

typedef struct att_ctx {
    const float *qkv;
    int64_t stride;
    int H, KV, hd, G;
    const ci_batch *b;
    const void *kc, *vc; /* F32, or E4M3 when fp8 */
    int bs;
    float scale;
    int window; /* > 0: sliding window */
    float *out;
    int64_t out_stride;
    int fp8;
    const float *lut_k, *lut_v; /* fp8: [256] e4m3(code) * k_scale / v_scale */
    float *const *ws;           /* fp8: per-thread scratch, 2 * CI_ATT_CHUNK * hd floats */
} att_ctx;

static void dequant(float *dst, const uint8_t *src, int64_t n, const float *lut) {
    for (int64_t i = 0; i < n; i++)
        dst[i] = lut[src[i]];
}

/* out[0:4] = q . k_j for 4 consecutive keys (stride hd). */
static inline void dot4_keys(const float *q, const float *k, int hd, float *out) {
#if defined(__AVX2__) && defined(__FMA__)
    if (hd % 8 == 0) {
        const float *k1 = k + hd, *k2 = k1 + hd, *k3 = k2 + hd;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int d = 0; d < hd; d += 8) {
            __m256 qv = _mm256_loadu_ps(q + d);
            a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + d), a0);
            a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + d), a1);
            a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + d), a2);
            a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + d), a3);
        }
        __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
        return;
    }
#endif
    for (int j = 0; j < 4; j++)
        out[j] = ci_dot_f32(q, k + (size_t)j * hd, hd);
}

/* a[0:hd] += sum_j p[j] * v[j][0:hd]; 64-wide column blocks stay in
 * registers across the keys. */
static inline void acc_pv(float *a, const float *p, const float *v, int nj, int hd) {
    int d0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; d0 + 64 <= hd; d0 += 64) {
        __m256 r[8];
        for (int u = 0; u < 8; u++)
            r[u] = _mm256_loadu_ps(a + d0 + 8 * u);
        for (int j = 0; j < nj; j++) {
            __m256 pj = _mm256_set1_ps(p[j]);
            const float *vj = v + (size_t)j * hd + d0;
            for (int u = 0; u < 8; u++)
                r[u] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * u), r[u]);
        }
        for (int u = 0; u < 8; u++)
            _mm256_storeu_ps(a + d0 + 8 * u, r[u]);
    }
#endif
    if (d0 < hd)
        for (int j = 0; j < nj; j++) {
            const float *vj = v + (size_t)j * hd;
            for (int d = d0; d < hd; d++)
                a[d] += p[j] * vj[d];
        }
}

/* The same for two query vectors: each K load feeds both. */
static inline void dot4_keys_x2(const float *q0, const float *q1, const float *k, int hd,
                                float *out0, float *out1) {
#if defined(__AVX2__) && defined(__FMA__)
    if (hd % 8 == 0) {
        const float *k1 = k + hd, *k2 = k1 + hd, *k3 = k2 + hd;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0,
               b3 = a0;
        for (int d = 0; d < hd; d += 8) {
            __m256 qa = _mm256_loadu_ps(q0 + d), qb = _mm256_loadu_ps(q1 + d);
            __m256 v0 = _mm256_loadu_ps(k + d), v1 = _mm256_loadu_ps(k1 + d),
                   v2 = _mm256_loadu_ps(k2 + d), v3 = _mm256_loadu_ps(k3 + d);
            a0 = _mm256_fmadd_ps(qa, v0, a0);
            a1 = _mm256_fmadd_ps(qa, v1, a1);
            a2 = _mm256_fmadd_ps(qa, v2, a2);
            a3 = _mm256_fmadd_ps(qa, v3, a3);
            b0 = _mm256_fmadd_ps(qb, v0, b0);
            b1 = _mm256_fmadd_ps(qb, v1, b1);
            b2 = _mm256_fmadd_ps(qb, v2, b2);
            b3 = _mm256_fmadd_ps(qb, v3, b3);
        }
        __m256 ha = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        __m256 hb = _mm256_hadd_ps(_mm256_hadd_ps(b0, b1), _mm256_hadd_ps(b2, b3));
        _mm_storeu_ps(out0, _mm_add_ps(_mm256_castps256_ps128(ha), _mm256_extractf128_ps(ha, 1)));
        _mm_storeu_ps(out1, _mm_add_ps(_mm256_castps256_ps128(hb), _mm256_extractf128_ps(hb, 1)));
        return;
    }
#endif
    dot4_keys(q0, k, hd, out0);
    dot4_keys(q1, k, hd, out1);
}

/* acc_pv for two heads sharing V: 32-wide column blocks, 8 accumulators. */
static inline void acc_pv2(float *a0, float *a1, const float *p0, const float *p1, const float *v,
                           int nj, int hd) {
    int d0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; d0 + 32 <= hd; d0 += 32) {
        __m256 r[4], s[4];
        for (int u = 0; u < 4; u++) {
            r[u] = _mm256_loadu_ps(a0 + d0 + 8 * u);
            s[u] = _mm256_loadu_ps(a1 + d0 + 8 * u);
        }
        for (int j = 0; j < nj; j++) {
            __m256 pa = _mm256_set1_ps(p0[j]), pb = _mm256_set1_ps(p1[j]);
            const float *vj = v + (size_t)j * hd + d0;
            for (int u = 0; u < 4; u++) {
                __m256 vv = _mm256_loadu_ps(vj + 8 * u);
                r[u] = _mm256_fmadd_ps(pa, vv, r[u]);
                s[u] = _mm256_fmadd_ps(pb, vv, s[u]);
            }
        }
        for (int u = 0; u < 4; u++) {
            _mm256_storeu_ps(a0 + d0 + 8 * u, r[u]);
            _mm256_storeu_ps(a1 + d0 + 8 * u, s[u]);
        }
    }
#endif
    if (d0 < hd)
        for (int j = 0; j < nj; j++) {
            const float *vj = v + (size_t)j * hd;
            for (int d = d0; d < hd; d++) {
                a0[d] += p0[j] * vj[d];
                a1[d] += p1[j] * vj[d];
            }
        }
}

static int seq_of(const int32_t *qs, int S, int t) {
    int lo = 0, hi = S - 1; /* largest s with qs[s] <= t */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (qs[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static void att_one(const att_ctx *c, int t, int g, float *scratch) {
    const ci_batch *b = c->b;
    const int hd = c->hd;
    int s = seq_of(b->query_start, b->num_seqs, t);
    int nctx = b->positions[t] + 1;
    if (nctx > b->context_lens[s]) nctx = b->context_lens[s];
    int lo = c->window > 0 ? b->positions[t] + 1 - c->window : 0; /* first visible key */
    if (lo < 0) lo = 0;
    const int32_t *bt = b->block_tables + (int64_t)s * b->max_blocks_per_seq;
    for (int h0 = 0; h0 < c->G; h0 += CI_ATT_HB) {
        int nh = c->G - h0 < CI_ATT_HB ? c->G - h0 : CI_ATT_HB;
        const float *q[CI_ATT_HB];
        float acc[CI_ATT_HB][CI_ATT_MAX_HD];
        float m[CI_ATT_HB], l[CI_ATT_HB];
        for (int i = 0; i < nh; i++) {
            q[i] = c->qkv + (int64_t)t * c->stride + (int64_t)(g * c->G + h0 + i) * hd;
            m[i] = -INFINITY;
            l[i] = 0.0f;
            memset(acc[i], 0, (size_t)hd * sizeof(float));
        }
        /* keys [lo, nctx), one cache block (or the part of it from lo) at a time */
        for (int p0 = lo; p0 < nctx; p0 += c->bs - p0 % c->bs) {
            int phys = bt[p0 / c->bs], off = p0 % c->bs;
            int inblk = nctx - p0 < c->bs - off ? nctx - p0 : c->bs - off;
            size_t base =
                (((size_t)phys * (size_t)c->KV + (size_t)g) * (size_t)c->bs + (size_t)off) *
                (size_t)hd;
            for (int j0 = 0; j0 < inblk; j0 += CI_ATT_CHUNK) {
                int nj = inblk - j0 < CI_ATT_CHUNK ? inblk - j0 : CI_ATT_CHUNK;
                size_t at = base + (size_t)j0 * hd;
                const float *kc, *vc;
                if (c->fp8) {
                    float *kd = scratch, *vd = scratch + (size_t)CI_ATT_CHUNK * hd;
                    dequant(kd, (const uint8_t *)c->kc + at, (int64_t)nj * hd, c->lut_k);
                    dequant(vd, (const uint8_t *)c->vc + at, (int64_t)nj * hd, c->lut_v);
                    kc = kd;
                    vc = vd;
                } else {
                    kc = (const float *)c->kc + at;
                    vc = (const float *)c->vc + at;
                }
                float pe[CI_ATT_HB][CI_ATT_CHUNK];
                /* scores: heads of the group in pairs share each K load */
                int i = 0;
                for (; i + 2 <= nh; i += 2) {
                    int j = 0;
                    for (; j + 4 <= nj; j += 4)
                        dot4_keys_x2(q[i], q[i + 1], kc + (size_t)j * hd, hd, pe[i] + j,
                                     pe[i + 1] + j);
                    for (; j < nj; j++) {
                        pe[i][j] = ci_dot_f32(q[i], kc + (size_t)j * hd, hd);
                        pe[i + 1][j] = ci_dot_f32(q[i + 1], kc + (size_t)j * hd, hd);
                    }
                }
                for (; i < nh; i++) {
                    int j = 0;
                    for (; j + 4 <= nj; j += 4)
                        dot4_keys(q[i], kc + (size_t)j * hd, hd, pe[i] + j);
                    for (; j < nj; j++)
                        pe[i][j] = ci_dot_f32(q[i], kc + (size_t)j * hd, hd);
                }
                /* online softmax: pe becomes exp(score - running max) */
                for (i = 0; i < nh; i++) {
                    float cm = -INFINITY;
                    for (int j = 0; j < nj; j++) {
                        pe[i][j] *= c->scale;
                        if (pe[i][j] > cm) cm = pe[i][j];
                    }
                    float nm = cm > m[i] ? cm : m[i];
                    float alpha = expf(m[i] - nm); /* exp(-inf) = 0 at the start */
                    if (alpha != 1.0f)
                        for (int d = 0; d < hd; d++)
                            acc[i][d] *= alpha;
                    for (int j = 0; j < nj; j++)
                        pe[i][j] -= nm;
                    ci_exp_f32(pe[i], pe[i], nj);
                    float lsum = l[i] * alpha;
                    for (int j = 0; j < nj; j++)
                        lsum += pe[i][j];
                    l[i] = lsum;
                    m[i] = nm;
                }
                /* acc += P V, pairs of heads share each V load */
                for (i = 0; i + 2 <= nh; i += 2)
                    acc_pv2(acc[i], acc[i + 1], pe[i], pe[i + 1], vc, nj, hd);
                for (; i < nh; i++)
                    acc_pv(acc[i], pe[i], vc, nj, hd);
            }
        }
        for (int i = 0; i < nh; i++) {
            float *o = c->out + (int64_t)t * c->out_stride + (int64_t)(g * c->G + h0 + i) * hd;
            float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
            for (int d = 0; d < hd; d++)
                o[d] = acc[i][d] * inv;
        }
    }
}

static void att_task(void *vctx, int64_t i0, int64_t i1, int tid) {
    const att_ctx *c = vctx;
    float *scratch = c->fp8 ? c->ws[tid] : NULL;
    for (int64_t i = i0; i < i1; i++)
        att_one(c, (int)(i / c->KV), (int)(i % c->KV), scratch);
}

ci_status ci_cpu_attention(ci_backend *be, const ci_tensor *qkv, const ci_attn_shape *shape,
                           const ci_batch *batch, const ci_kv_cache *kv, int layer, float scale,
                           int window, ci_tensor *out) {
    ci_cpu *cpu = ci_cpu_of(be);
    const int H = shape->num_heads, KV = shape->num_kv_heads, hd = shape->head_dim;
    int64_t stride = (int64_t)(H + 2 * KV) * hd;
    const int T = batch->num_tokens, S = batch->num_seqs;
    if (window < 0) return ci_errorf(CI_ERR_INVALID, "cpu attention: window %d", window);
    if (KV <= 0 || H % KV != 0 || hd <= 0 || hd > CI_ATT_MAX_HD)
        return ci_errorf(CI_ERR_UNSUPPORTED, "cpu attention: heads %d / kv heads %d / head_dim %d",
                         H, KV, hd);
    if (qkv->dtype != CI_F32 || qkv->cols != stride || qkv->rows < T || out->dtype != CI_F32 ||
        out->cols != (int64_t)H * hd || out->rows < T)
        return ci_errorf(CI_ERR_INVALID, "cpu attention: shape mismatch");
    const int fp8 = kv->dtype == CI_F8_E4M3;
    if (layer < 0 || layer >= kv->num_layers || !ci_kv_dtype_ok(be, kv->dtype) ||
        kv->num_kv_heads != KV || kv->head_dim != hd)
        return ci_errorf(CI_ERR_INVALID, "cpu attention: kv cache does not match (layer %d)",
                         layer);
    if (S <= 0 || batch->query_start[0] != 0 || batch->query_start[S] != T)
        return ci_errorf(CI_ERR_INVALID, "cpu attention: query_start does not cover %d tokens", T);
    for (int s = 0; s < S; s++) {
        int cl = batch->context_lens[s];
        int nb = (cl + kv->block_size - 1) / kv->block_size;
        if (cl < 0 || nb > batch->max_blocks_per_seq ||
            batch->query_start[s + 1] < batch->query_start[s])
            return ci_errorf(
                CI_ERR_INVALID,
                "cpu attention: sequence %d: context %d needs %d blocks (table has %d)", s, cl, nb,
                batch->max_blocks_per_seq);
        for (int i = 0; i < nb; i++) {
            int32_t blk = batch->block_tables[(int64_t)s * batch->max_blocks_per_seq + i];
            if (blk < 0 || blk >= kv->num_blocks)
                return ci_errorf(CI_ERR_INVALID,
                                 "cpu attention: sequence %d block %d = %d outside "
                                 "the cache (%d blocks)",
                                 s, i, blk, kv->num_blocks);
        }
    }
    int64_t keys = 0; /* total (token, key) pairs: the work */
    for (int t = 0; t < T; t++) {
        if (batch->positions[t] < 0)
            return ci_errorf(CI_ERR_INVALID, "cpu attention: negative position");
        keys += window > 0 && window < batch->positions[t] + 1 ? window : batch->positions[t] + 1;
    }
    float lut_k[256], lut_v[256];
    if (fp8) {
        ci_fp8_e4m3_table(kv->k_scale[layer], lut_k);
        ci_fp8_e4m3_table(kv->v_scale[layer], lut_v);
        CI_TRY(ci_cpu_ws_reserve(cpu, (size_t)2 * CI_ATT_CHUNK * (size_t)hd));
    }
    att_ctx c = {
        qkv->data,    stride,         H,     KV,     hd,        H / KV,    batch, kv->k[layer],
        kv->v[layer], kv->block_size, scale, window, out->data, out->cols, fp8,   lut_k,
        lut_v,        cpu->ws};
    int64_t n = (int64_t)T * KV;
    int64_t grain = (n + 4 * cpu->nthreads - 1) / (4 * cpu->nthreads);
    if (keys * H * hd < 65536) grain = n; /* a short decode step: not worth waking threads */
    ci_threadpool_run(cpu->tp, n, grain < 1 ? 1 : grain, att_task, &c);
    return ci_ok();
}
