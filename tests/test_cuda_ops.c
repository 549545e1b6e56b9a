/* test_cuda_ops.c — every CUDA op against the CPU backend on fresh random
 * inputs, in BF16 mode (norm-wise relative error <= 1e-2) and F32 mode
 * (<= 1e-4). Both backends get the same inputs (rounded to BF16 first in
 * BF16 mode); CUDA outputs are poisoned with NaN before every op, so an
 * element the kernel does not write fails. Shapes: head_dim 64/128, GQA
 * groups 1/4/8, block sizes 16/32, ragged batches mixing prefill, chunked
 * prefill over a cached prefix and decode, contexts up to 2048; pure decode
 * batches (contexts 1..8192, context bounds beyond the contexts). The FP8
 * (E4M3) KV cache: the cache write's bytes equal the CPU twin's, and every
 * attention kernel reads the same bytes as the CPU twin.
 * Skips (exit 77) without CUDA or without a GPU. */
#include <stdint.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "engine/generate.h"
#include "test.h"

#ifndef CINFER_HAVE_CUDA
int main(void) {
    test_skip("built without CUDA");
    return 77;
}
#else
#include "act_io.h"
#include "util/fp8.h"
#include "util/half.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}
static float frand(void) {
    return (float)(urand() * 2.0 - 1.0);
}

static ci_backend *cpu, *gpu;
static int quick;  /* CINFER_TEST_QUICK: sanitizer runs */
static int bf;     /* gpu activations are BF16 */
static double tol; /* norm-wise relative tolerance of this mode */
static const char *mode;

static float rnd(float f) {
    return bf ? ci_bf16_to_f32(ci_f32_to_bf16(f)) : f;
}
static float *host_rand(int64_t n, float scale) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        p[i] = rnd(frand() * scale);
    return p;
}

static void poison(ci_backend *be, void *data, size_t bytes) {
    void *buf = malloc(bytes ? bytes : 1);
    memset(buf, 0xff, bytes); /* NaN in F32 and BF16 */
    CHECK_OK(be->ops->to_device(be, data, buf, bytes));
    free(buf);
}

/* a pair of tensors holding the same values */
typedef struct pair {
    ci_tensor c, g;
    int64_t n;
} pair;

static pair act_pair(int64_t rows, int64_t cols, const float *vals) {
    pair p;
    p.n = rows * cols;
    CHECK_OK(ci_tensor_alloc(cpu, CI_F32, rows, cols, &p.c));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, rows, cols, &p.g));
    if (vals) {
        memcpy(p.c.data, vals, sizeof(float) * (size_t)p.n);
        act_upload(gpu, &p.g, vals, p.n);
    } else {
        poison(gpu, p.g.data, (size_t)p.n * ci_dtype_size(p.g.dtype));
    }
    return p;
}
static pair weight_pair(int64_t rows, int64_t cols, float scale) {
    pair p;
    p.n = rows * cols;
    float *src = host_rand(p.n, scale);
    CHECK_OK(cpu->ops->weight_alloc(cpu, CI_F32, rows, cols, &p.c));
    CHECK_OK(gpu->ops->weight_alloc(gpu, CI_F32, rows, cols, &p.g));
    int64_t half = rows / 2; /* two pieces: exercises row offsets */
    CHECK_OK(cpu->ops->weight_write(cpu, &p.c, 0, src, CI_F32, rows));
    CHECK_OK(gpu->ops->weight_write(gpu, &p.g, 0, src, CI_F32, half));
    CHECK_OK(gpu->ops->weight_write(gpu, &p.g, half, src + half * cols, CI_F32, rows - half));
    free(src);
    return p;
}
static void pair_free(pair *p) {
    ci_tensor_free(cpu, &p->c);
    ci_tensor_free(gpu, &p->g);
}

/* norm-wise relative error of the gpu values vs the cpu ones; NaN -> inf */
static double rel_err_vals(const float *got, const float *want, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)want[i];
        if (!(d == d)) return INFINITY;
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static double worst_seen;
static void compare(const char *what, const pair *p, int64_t n) {
    float *g = act_download(gpu, p->g.data, p->g.dtype, n);
    double e = rel_err_vals(g, p->c.data, n);
    if (e > worst_seen) worst_seen = e;
    CHECKF(e <= tol, "[%s] %s: rel err %.3g > %.0e", mode, what, e, tol);
    free(g);
}

/* n <= 2 with in % 8 == 0 takes the BF16 GEMV kernel */
static const int matmul_shapes[][3] = {
    {96, 203, 1},   {300, 256, 37},  {17, 8, 3},      {1024, 512, 128}, {256, 768, 1},
    {8192, 256, 4}, {1000, 4096, 2}, {333, 14336, 1}, {4097, 1024, 3},  {64, 2048, 5}};

static void test_matmul_shapes(const int (*shapes)[3], int count) {
    for (int si = 0; si < count; si++)
        for (int wb = 0; wb < 2; wb++)
            for (int f32out = 0; f32out < 1 + bf; f32out++) {
                int out = shapes[si][0], in = shapes[si][1], n = shapes[si][2];
                pair w = weight_pair(out, in, 0.5f), b = {0};
                if (wb) b = weight_pair(1, out, 1.0f);
                float *xv = host_rand((int64_t)n * in, 1.0f);
                pair x = act_pair(n, in, xv), y;
                if (f32out) { /* BF16 x BF16 -> F32 (the logits GEMM) */
                    y.n = (int64_t)n * out;
                    CHECK_OK(ci_tensor_alloc(cpu, CI_F32, n, out, &y.c));
                    CHECK_OK(ci_tensor_alloc(gpu, CI_F32, n, out, &y.g));
                    poison(gpu, y.g.data, (size_t)y.n * 4);
                } else {
                    y = act_pair(n, out, NULL);
                }
                CHECK_OK(cpu->ops->matmul(cpu, &x.c, &w.c, wb ? &b.c : NULL, &y.c));
                CHECK_OK(gpu->ops->matmul(gpu, &x.g, &w.g, wb ? &b.g : NULL, &y.g));
                char what[96];
                snprintf(what, sizeof what, "matmul %dx%dx%d bias %d f32out %d", out, in, n, wb,
                         f32out);
                compare(what, &y, y.n);
                pair_free(&w);
                if (wb) pair_free(&b);
                pair_free(&x);
                pair_free(&y);
                free(xv);
            }
}
static void test_matmul(void) {
    test_matmul_shapes(matmul_shapes, (int)(sizeof matmul_shapes / sizeof matmul_shapes[0]));
}

/* Eager GEMMs by token-count bucket (cuda_gemm.c): plans timed at the
 * buckets' top counts under tune_gemms, then counts inside those buckets
 * take the timed algorithms (the counter says so) and still match the CPU */
static void test_matmul_buckets(void) {
    if (!ci_cuda_gemm_buckets_on()) return; /* CINFER_GEMM_BUCKETS=1 */
    static const int tops[][3] = {{384, 256, 64}, {384, 256, 96}, {1000, 512, 32}, {1000, 512, 64}};
    static const int inner[][3] = {{384, 256, 33}, {384, 256, 50},  {384, 256, 63}, {384, 256, 70},
                                   {384, 256, 95}, {1000, 512, 17}, {1000, 512, 41}};
    gpu->ops->tune_gemms(gpu, 1);
    test_matmul_shapes(tops, (int)(sizeof tops / sizeof tops[0]));
    gpu->ops->tune_gemms(gpu, 0);
    const long long b0 = ci_cuda_bucket_plans(gpu);
    test_matmul_shapes(inner, (int)(sizeof inner / sizeof inner[0]));
    const char *t = getenv("CINFER_GEMM_TUNE");
    if (!(t && *t == '0')) CHECK(ci_cuda_bucket_plans(gpu) >= b0 + 7);
}

static void test_rmsnorm(void) {
    int rows[] = {1, 7, 64}, ns[] = {256, 1000, 4096};
    for (int ri = 0; ri < 3; ri++)
        for (int ni = 0; ni < 3; ni++)
            for (int variant = 0; variant < 3; variant++) { /* 0 plain, 1 residual, 2 in place */
                int r = rows[ri], n = ns[ni];
                float *xv = host_rand((int64_t)r * n, 2.0f), *rv = host_rand((int64_t)r * n, 2.0f);
                pair w = weight_pair(1, n, 1.0f), x = act_pair(r, n, xv);
                pair res = act_pair(r, n, rv);
                pair out = variant == 2 ? x : act_pair(r, n, NULL);
                ci_tensor *rc = variant == 1 ? &res.c : NULL, *rg = variant == 1 ? &res.g : NULL;
                CHECK_OK(cpu->ops->rmsnorm(cpu, &x.c, rc, &w.c, 1e-6f, &out.c));
                CHECK_OK(gpu->ops->rmsnorm(gpu, &x.g, rg, &w.g, 1e-6f, &out.g));
                char what[96];
                snprintf(what, sizeof what, "rmsnorm %dx%d variant %d", r, n, variant);
                compare(what, &out, out.n);
                if (variant == 1) {
                    snprintf(what, sizeof what, "rmsnorm residual %dx%d", r, n);
                    compare(what, &res, res.n);
                }
                pair_free(&w);
                pair_free(&x);
                pair_free(&res);
                if (variant != 2) pair_free(&out);
                free(xv);
                free(rv);
            }
}

static void test_qk_norm(void) {
    int cfg[][4] = {{5, 8, 2, 64}, {3, 16, 4, 128}, {1, 4, 4, 128}};
    for (int ci = 0; ci < 3; ci++) {
        int T = cfg[ci][0], H = cfg[ci][1], KV = cfg[ci][2], hd = cfg[ci][3];
        int64_t cols = (int64_t)(H + 2 * KV) * hd;
        float *v = host_rand(T * cols, 3.0f);
        pair q = act_pair(T, cols, v), wq = weight_pair(1, hd, 1.0f), wk = weight_pair(1, hd, 1.0f);
        ci_attn_shape sh = {H, KV, hd};
        CHECK_OK(cpu->ops->qk_norm(cpu, &q.c, &sh, &wq.c, &wk.c, 1e-6f));
        CHECK_OK(gpu->ops->qk_norm(gpu, &q.g, &sh, &wq.g, &wk.g, 1e-6f));
        compare("qk_norm", &q, q.n);
        pair_free(&q);
        pair_free(&wq);
        pair_free(&wk);
        free(v);
    }
}

static void test_swiglu_gather(void) {
    int rows[] = {1, 33}, inters[] = {768, 1000};
    for (int ri = 0; ri < 2; ri++)
        for (int ii = 0; ii < 2; ii++) {
            int r = rows[ri], I = inters[ii];
            float *v = host_rand((int64_t)r * 2 * I, 4.0f);
            pair gu = act_pair(r, 2 * I, v), out = act_pair(r, I, NULL);
            CHECK_OK(cpu->ops->swiglu(cpu, &gu.c, &out.c));
            CHECK_OK(gpu->ops->swiglu(gpu, &gu.g, &out.g));
            compare("swiglu", &out, out.n);
            pair_free(&gu);
            pair_free(&out);
            free(v);
        }
    /* embedding (table rows -> activations) and gather_rows */
    int V = 1000, hid = 264, n = 9;
    pair table = weight_pair(V, hid, 1.0f);
    int32_t ids[9] = {0, 999, 5, 5, 123, 77, 500, 1, 998};
    ci_batch hb = {0}, db;
    hb.num_tokens = n;
    hb.num_seqs = 1;
    hb.token_ids = ids;
    CHECK_OK(gpu->ops->prepare_batch(gpu, &hb, &db));
    pair e = act_pair(n, hid, NULL);
    CHECK_OK(cpu->ops->embedding(cpu, &table.c, ids, n, &e.c));
    CHECK_OK(gpu->ops->embedding(gpu, &table.g, db.token_ids, n, &e.g));
    compare("embedding", &e, e.n);
    int32_t rows_idx[4] = {8, 0, 3, 3};
    hb.logits_indices = rows_idx;
    hb.num_logits = 4;
    CHECK_OK(gpu->ops->prepare_batch(gpu, &hb, &db));
    pair gr = act_pair(4, hid, NULL);
    CHECK_OK(cpu->ops->gather_rows(cpu, &e.c, rows_idx, 4, &gr.c));
    CHECK_OK(gpu->ops->gather_rows(gpu, &e.g, db.logits_indices, 4, &gr.g));
    compare("gather_rows", &gr, gr.n);
    pair_free(&table);
    pair_free(&e);
    pair_free(&gr);
}

/* A ragged batch over a paged cache: per sequence, ctx tokens in the cache
 * after the step, the last q of them new. */
typedef struct rbatch {
    int S, T, mbps, nblocks;
    int32_t *ids, *pos, *qs, *cl, *bt, *slots;
    ci_batch hb;
} rbatch;

static void rbatch_make(rbatch *b, const int *ctx, const int *q, int S, int bs, int pad_slot) {
    memset(b, 0, sizeof *b);
    b->S = S;
    for (int s = 0; s < S; s++) {
        b->T += q[s];
        int nb = (ctx[s] + bs - 1) / bs;
        if (nb > b->mbps) b->mbps = nb;
        b->nblocks += nb;
    }
    b->nblocks += 3; /* unused blocks */
    b->ids = calloc((size_t)b->T, 4);
    b->pos = calloc((size_t)b->T, 4);
    b->slots = calloc((size_t)b->T, 4);
    b->qs = calloc((size_t)S + 1, 4);
    b->cl = calloc((size_t)S, 4);
    b->bt = calloc((size_t)S * (size_t)b->mbps, 4);
    /* odd sequences: a run of consecutive physical blocks from the top (as
     * a fresh prefill gets them; the prefill kernel's wide TMA boxes take
     * those); even ones: a random permutation of the rest */
    int top = b->nblocks, nshuf = b->nblocks;
    for (int s = 1; s < S; s += 2)
        nshuf -= (ctx[s] + bs - 1) / bs;
    int *perm = malloc(sizeof(int) * (size_t)nshuf);
    for (int i = 0; i < nshuf; i++)
        perm[i] = i;
    for (int i = nshuf - 1; i > 0; i--) {
        int j = (int)(urand() * (i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int next = 0, t = 0;
    for (int s = 0; s < S; s++) {
        int nb = (ctx[s] + bs - 1) / bs;
        if (s & 1) top -= nb;
        for (int i = 0; i < nb; i++)
            b->bt[s * b->mbps + i] = s & 1 ? top + i : perm[next++];
        b->qs[s] = t;
        b->cl[s] = ctx[s];
        for (int i = 0; i < q[s]; i++, t++) {
            int p = ctx[s] - q[s] + i;
            b->pos[t] = p;
            b->slots[t] = b->bt[s * b->mbps + p / bs] * bs + p % bs;
        }
    }
    b->qs[S] = t;
    if (pad_slot && b->T > 1) b->slots[1] = -1;
    int maxc = 0, maxq = 0;
    for (int s = 0; s < S; s++) {
        if (ctx[s] > maxc) maxc = ctx[s];
        if (q[s] > maxq) maxq = q[s];
    }
    free(perm);
    ci_batch *h = &b->hb;
    h->num_tokens = b->T;
    h->num_seqs = S;
    h->max_blocks_per_seq = b->mbps;
    h->max_context_len = maxc;
    h->max_query_len = maxq;
    while (h->num_decode_seqs < S && q[h->num_decode_seqs] == 1) /* as batch.c counts them */
        h->num_decode_seqs++;
    h->token_ids = b->ids;
    h->positions = b->pos;
    h->query_start = b->qs;
    h->context_lens = b->cl;
    h->block_tables = b->bt;
    h->slot_mapping = b->slots;
}
static void rbatch_free(rbatch *b) {
    free(b->ids);
    free(b->pos);
    free(b->slots);
    free(b->qs);
    free(b->cl);
    free(b->bt);
}

/* NaN into the cache rows of batch b that no query of a sliding window
 * sees (positions before the first new token's window): reading one shows */
static void hide_outside_window(float *v, const rbatch *b, int window, int KV, int hd, int bs) {
    for (int s = 0; s < b->S; s++) {
        int lo = b->pos[b->qs[s]] + 1 - window;
        for (int p = 0; p < lo; p++)
            for (int g = 0; g < KV; g++)
                for (int d = 0; d < hd; d++)
                    v[(((int64_t)b->bt[s * b->mbps + p / bs] * KV + g) * bs + p % bs) * hd + d] =
                        NAN;
    }
}

/* kv8: the caches are FP8 E4M3 with these scales (test_kv_fp8) */
static int kv8;
static const float kv8_scale[2] = {0.03f, 0.004f};

/* FP8 caches of both backends holding the same bytes: e4m3(v / scale) of
 * v (NaN -> 0x7f, which the CPU twin reads as NaN too) */
static void kv_pair_fp8(int KV, int hd, int nblocks, int bs, ci_kv_cache **kc, ci_kv_cache **kg,
                        const rbatch *hide, int window) {
    CHECK_OK(ci_kv_cache_create_dtype(cpu, CI_F8_E4M3, 1, KV, hd, nblocks, bs, kc));
    CHECK_OK(ci_kv_cache_create_dtype(gpu, CI_F8_E4M3, 1, KV, hd, nblocks, bs, kg));
    int64_t n = (int64_t)nblocks * KV * bs * hd;
    (*kc)->k_scale[0] = (*kg)->k_scale[0] = kv8_scale[0];
    (*kc)->v_scale[0] = (*kg)->v_scale[0] = kv8_scale[1];
    for (int kvi = 0; kvi < 2; kvi++) {
        float *v = host_rand(n, 1.5f);
        if (hide && window > 0) hide_outside_window(v, hide, window, KV, hd, bs);
        uint8_t *q = kvi ? (*kc)->v[0] : (*kc)->k[0];
        for (int64_t i = 0; i < n; i++)
            q[i] = ci_f32_to_fp8_e4m3(v[i] / kv8_scale[kvi]);
        CHECK_OK(gpu->ops->to_device(gpu, kvi ? (*kg)->v[0] : (*kg)->k[0], q, (size_t)n));
        free(v);
    }
}

/* kv caches of both backends with the same random contents (hide, window:
 * see hide_outside_window; NULL, 0: none) */
static void kv_pair(int KV, int hd, int nblocks, int bs, ci_kv_cache **kc, ci_kv_cache **kg,
                    const rbatch *hide, int window) {
    if (kv8) {
        kv_pair_fp8(KV, hd, nblocks, bs, kc, kg, hide, window);
        return;
    }
    CHECK_OK(ci_kv_cache_create(cpu, 1, KV, hd, nblocks, bs, kc));
    CHECK_OK(ci_kv_cache_create(gpu, 1, KV, hd, nblocks, bs, kg));
    int64_t n = (int64_t)nblocks * KV * bs * hd;
    for (int kvi = 0; kvi < 2; kvi++) {
        float *v = host_rand(n, 1.5f);
        if (hide && window > 0) hide_outside_window(v, hide, window, KV, hd, bs);
        memcpy(kvi ? (*kc)->v[0] : (*kc)->k[0], v, sizeof(float) * (size_t)n);
        ci_tensor t = {kvi ? (*kg)->v[0] : (*kg)->k[0], gpu->act_dtype, 1, n};
        act_upload(gpu, &t, v, n);
        free(v);
    }
}
/* FP8 caches: the bytes must be identical (same floats, same rounding) */
static void compare_cache_fp8(const char *what, ci_kv_cache *kc, ci_kv_cache *kg) {
    size_t n = (size_t)kc->num_blocks * kc->num_kv_heads * kc->block_size * kc->head_dim;
    uint8_t *g = malloc(n);
    for (int kvi = 0; kvi < 2; kvi++) {
        CHECK_OK(gpu->ops->to_host(gpu, g, kvi ? kg->v[0] : kg->k[0], n));
        const uint8_t *c = kvi ? kc->v[0] : kc->k[0];
        size_t bad = 0, first = n;
        for (size_t i = 0; i < n; i++)
            if (g[i] != c[i] && bad++ == 0) first = i;
        CHECKF(bad == 0,
               "[%s] %s %s fp8 cache: %zu of %zu bytes differ (first at %zu: %02x vs %02x)", mode,
               what, kvi ? "V" : "K", bad, n, first, first < n ? g[first] : 0,
               first < n ? c[first] : 0);
    }
    free(g);
}
static void compare_cache(const char *what, ci_kv_cache *kc, ci_kv_cache *kg) {
    if (kv8) {
        compare_cache_fp8(what, kc, kg);
        return;
    }
    int64_t n = (int64_t)kc->num_blocks * kc->num_kv_heads * kc->block_size * kc->head_dim;
    for (int kvi = 0; kvi < 2; kvi++) {
        pair p;
        p.c.data = kvi ? kc->v[0] : kc->k[0];
        p.g.data = kvi ? kg->v[0] : kg->k[0];
        p.g.dtype = kg->dtype;
        char w[160];
        snprintf(w, sizeof w, "%s %s cache", what, kvi ? "V" : "K");
        compare(w, &p, n);
    }
}

static void test_rope_cache(void) {
    int cfg[][5] = {/* H, KV, hd, rot, neox */
                    {8, 2, 64, 64, 1},
                    {8, 2, 64, 64, 0},
                    {16, 4, 128, 64, 1},
                    {4, 4, 128, 32, 0}};
    for (int ci = 0; ci < 4; ci++) {
        int H = cfg[ci][0], KV = cfg[ci][1], hd = cfg[ci][2], rot = cfg[ci][3], neox = cfg[ci][4];
        int bs = ci & 1 ? 32 : 16, maxpos = 2100;
        int ctx[3] = {40, 2048, 100}, q[3] = {40, 1, 30};
        rbatch b;
        rbatch_make(&b, ctx, q, 3, bs, 1);
        ci_kv_cache *kc, *kg;
        kv_pair(KV, hd, b.nblocks, bs, &kc, &kg, NULL, 0);
        /* the table: random angles, as rope.c lays it out */
        float *cs = malloc(sizeof(float) * (size_t)maxpos * rot);
        for (int p = 0; p < maxpos; p++)
            for (int i = 0; i < rot / 2; i++) {
                double a = urand() * 6.283;
                cs[p * rot + i] = (float)cos(a);
                cs[p * rot + rot / 2 + i] = (float)sin(a);
            }
        ci_rope_table rc = {{0}, rot, maxpos, neox}, rg = rc;
        CHECK_OK(ci_tensor_alloc(cpu, CI_F32, maxpos, rot, &rc.cos_sin));
        CHECK_OK(ci_tensor_alloc(gpu, CI_F32, maxpos, rot, &rg.cos_sin));
        memcpy(rc.cos_sin.data, cs, sizeof(float) * (size_t)maxpos * rot);
        CHECK_OK(
            gpu->ops->to_device(gpu, rg.cos_sin.data, cs, sizeof(float) * (size_t)maxpos * rot));
        int64_t cols = (int64_t)(H + 2 * KV) * hd;
        float *v = host_rand(b.T * cols, 2.0f);
        if (kv8) /* some V beyond 448 * v_scale: saturation */
            for (int64_t i = 0; i < b.T * cols; i += 5)
                v[i] = rnd(v[i] * 2.0f);
        pair qkv = act_pair(b.T, cols, v);
        ci_attn_shape sh = {H, KV, hd};
        ci_batch db;
        CHECK_OK(gpu->ops->prepare_batch(gpu, &b.hb, &db));
        CHECK_OK(cpu->ops->rope_cache(cpu, &qkv.c, &sh, &rc, &b.hb, kc, 0));
        CHECK_OK(gpu->ops->rope_cache(gpu, &qkv.g, &sh, &rg, &db, kg, 0));
        char what[96];
        snprintf(what, sizeof what, "rope H%d KV%d hd%d rot%d neox%d%s", H, KV, hd, rot, neox,
                 kv8 ? " fp8" : "");
        compare(what, &qkv, qkv.n);
        compare_cache(what, kc, kg);
        pair_free(&qkv);
        ci_tensor_free(cpu, &rc.cos_sin);
        ci_tensor_free(gpu, &rg.cos_sin);
        ci_kv_cache_destroy(cpu, kc);
        ci_kv_cache_destroy(gpu, kg);
        free(cs);
        free(v);
        rbatch_free(&b);
    }
}

/* Attention over batch b on random q/k/v: CUDA vs the CPU backend
 * (window > 0: sliding window; the keys no query sees are NaN). */
static void attention_case(rbatch *b, int H, int KV, int hd, int bs, int window, const char *what) {
    ci_kv_cache *kc, *kg;
    kv_pair(KV, hd, b->nblocks, bs, &kc, &kg, b, window);
    int64_t cols = (int64_t)(H + 2 * KV) * hd;
    float *v = host_rand(b->T * cols, 1.5f);
    pair qkv = act_pair(b->T, cols, v), out = act_pair(b->T, (int64_t)H * hd, NULL);
    ci_attn_shape sh = {H, KV, hd};
    ci_batch db;
    CHECK_OK(gpu->ops->prepare_batch(gpu, &b->hb, &db));
    float scale = 1.0f / sqrtf((float)hd);
    CHECK_OK(cpu->ops->attention(cpu, &qkv.c, &sh, &b->hb, kc, 0, scale, window, &out.c));
    CHECK_OK(gpu->ops->attention(gpu, &qkv.g, &sh, &db, kg, 0, scale, window, &out.g));
    compare(what, &out, out.n);
    pair_free(&qkv);
    pair_free(&out);
    ci_kv_cache_destroy(cpu, kc);
    ci_kv_cache_destroy(gpu, kg);
    free(v);
}

static void test_attention(void) {
    int cfg[][4] = {/* H, KV, hd, bs */
                    {8, 8, 64, 16},
                    {16, 4, 64, 32},
                    {32, 4, 128, 16},
                    {16, 16, 128, 32},
                    {16, 2, 128, 16},
                    {4, 2, 64, 1},
                    {16, 1, 128, 16} /* G = 16 */,
                    {32, 1, 64, 32} /* G = 32: generic kernel */};
    const int ncfg = (int)(sizeof cfg / sizeof cfg[0]);
    /* mixed prefill/chunked/decode; decode only (split-K); decode only with
     * max_context_len understated (the split must still cover everything);
     * long prefill over a 3.8k cached prefix, a 700-token prompt and a short
     * chunk (tensor-core prefill kernel: many query and key tiles, lengths
     * off the tile sizes; only for configs 0, 1, 4 to keep the CPU side short) */
    /* batch 4: four decodes ahead of two prefill chunks, as the scheduler
     * orders a mixed step (the decodes go to the decode kernel) */
    int ctx[5][6] = {{1, 37, 700, 2048, 130, 1500},
                     {2048, 700, 1, 0, 0, 0},
                     {1999, 300, 0, 0, 0, 0},
                     {4133, 700, 97, 0, 0, 0},
                     {513, 2000, 90, 17, 1200, 64}};
    int q[5][6] = {{1, 37, 1, 1, 64, 3},
                   {1, 1, 1, 0, 0, 0},
                   {1, 1, 0, 0, 0, 0},
                   {300, 700, 60, 0, 0, 0},
                   {1, 1, 1, 1, 200, 64}};
    int nseq[5] = {6, 3, 2, 3, 6};
    for (int ci = 0; ci < ncfg * 5; ci++) {
        int H = cfg[ci % ncfg][0], KV = cfg[ci % ncfg][1], hd = cfg[ci % ncfg][2],
            bs = cfg[ci % ncfg][3];
        int bi = ci / ncfg;
        if (bi == 3 && ci % ncfg != 0 && ci % ncfg != 1 && ci % ncfg != 4) continue;
        if (quick && bi == 3 && ci % ncfg != 0) continue; /* sanitizer runs: one long case */
        rbatch b;
        rbatch_make(&b, ctx[bi], q[bi], nseq[bi], bs, 0);
        if (bi == 2) b.hb.max_context_len = 300;
        char what[96];
        snprintf(what, sizeof what, "attention H%d KV%d hd%d bs%d batch %d", H, KV, hd, bs, bi);
        attention_case(&b, H, KV, hd, bs, 0, what);
        rbatch_free(&b);
    }
}

/* Makes the block-table rows mbps long (a context bound beyond the batch's
 * contexts, as a CUDA graph captured for longer contexts sees); the extra
 * entries name blocks far outside the cache, so a read of one faults. */
static void rbatch_widen(rbatch *b, int mbps) {
    if (mbps <= b->mbps) return;
    int32_t *bt = malloc(sizeof(int32_t) * (size_t)b->S * (size_t)mbps);
    for (int s = 0; s < b->S; s++)
        for (int i = 0; i < mbps; i++)
            bt[s * mbps + i] = i < b->mbps ? b->bt[s * b->mbps + i] : 1 << 28;
    free(b->bt);
    b->bt = bt;
    b->mbps = mbps;
    b->hb.block_tables = bt;
    b->hb.max_blocks_per_seq = mbps;
}

/* Pure decode batches (the flash-decoding kernel in BF16, the split-K path
 * of the generic kernel in F32): contexts 1..8192 incl. 1, block +- 1 and
 * non-multiples of the 16-key tile; context bound equal to the longest
 * context and far beyond it (one launch shape for every step of a graph). */
static void test_decode_attention(void) {
    int cfg[][4] = {/* H, KV, hd, bs */
                    {8, 8, 64, 16},  {32, 8, 128, 16}, {16, 2, 128, 32},
                    {16, 4, 64, 32}, {8, 1, 64, 16},   {32, 8, 128, 8}};
    const int ncfg = (int)(sizeof cfg / sizeof cfg[0]);
    enum { NB = 5, MAXS = 64 };
    for (int ci = 0; ci < ncfg; ci++) {
        int H = cfg[ci][0], KV = cfg[ci][1], hd = cfg[ci][2], bs = cfg[ci][3];
        for (int bi = 0; bi < NB; bi++) {
            if (quick && ci >= 2 && (bi == 0 || bi == 3)) continue; /* sanitizer runs */
            int ctx[MAXS], q[MAXS], S, bound = 0;
            if (bi == 0) { /* one long sequence, bound = its context */
                S = 1;
                ctx[0] = ci & 1 ? 8192 : 4096 + 7 * ci;
            } else if (bi == 1) { /* short ragged contexts, bound 8192 */
                int c[7] = {1, bs - 1, bs + 1, 63, 65, 1000, 3001};
                S = 7;
                for (int s = 0; s < S; s++)
                    ctx[s] = c[s];
                bound = 8192;
            } else if (bi == 2) { /* a full batch of random contexts */
                S = MAXS;
                for (int s = 0; s < S; s++)
                    ctx[s] = 1 + (int)(urand() * 600);
            } else if (bi == 3) { /* a few, one just past a block */
                S = 3;
                ctx[0] = 4096;
                ctx[1] = 2;
                ctx[2] = 4097;
            } else { /* batch 1, a short context, bound 8192 (a decode step's graph) */
                S = 1;
                ctx[0] = 37 + 50 * ci;
                bound = 8192;
            }
            for (int s = 0; s < S; s++)
                q[s] = 1;
            rbatch b;
            rbatch_make(&b, ctx, q, S, bs, 0);
            if (bound) rbatch_widen(&b, (bound + bs - 1) / bs);
            char what[112];
            snprintf(what, sizeof what, "decode attention H%d KV%d hd%d bs%d batch %d (S=%d)", H,
                     KV, hd, bs, bi, S);
            attention_case(&b, H, KV, hd, bs, 0, what);
            rbatch_free(&b);
        }
    }
}

/* Sliding-window attention vs the CPU reference, every kernel: tensor-core
 * prefill (BF16, head_dim 64/128, 64- and 128-row query tiles), flash
 * decoding (BF16, G <= 8) with the context bound far beyond the contexts,
 * the BF16 128-key kernel (G = 16, head_dim 32) and the generic kernel
 * (G = 32, head_dim 96, F32), split-K included. Windows of 1 key, shorter
 * and longer than a block and a 64/128-key tile, not aligned to either, and
 * longer than every context; one-shot prefill, chunked prefill over a cached
 * prefix, a mixed batch, pure decode. Keys outside every window are NaN. */
static void test_window_attention(void) {
    int cfg[][4] = {/* H, KV, hd, bs */
                    {8, 8, 64, 16},  {32, 4, 128, 16}, {16, 2, 128, 32}, {8, 1, 64, 16},
                    {16, 1, 32, 16}, {32, 1, 64, 32},  {8, 2, 96, 16}};
    const int ncfg = (int)(sizeof cfg / sizeof cfg[0]);
    const int windows[] = {1, 5, 16, 33, 100, 257, 5000};
    const int nwin = (int)(sizeof windows / sizeof windows[0]);
    /* batches: one-shot prefill of 300; a 200-token chunk after 500 cached
     * (context offset) plus a 40-token chunk after 1000; a mixed batch
     * (decode, prefill, chunk); pure decode (bound widened to 8192) */
    int ctx[4][5] = {{300, 0, 0, 0, 0},
                     {700, 1040, 0, 0, 0},
                     {1, 37, 1500, 130, 2049},
                     {4096, 2, 17, 1000, 3001}};
    int q[4][5] = {{300, 0, 0, 0, 0}, {200, 40, 0, 0, 0}, {1, 37, 1, 64, 3}, {1, 1, 1, 1, 1}};
    int nseq[4] = {1, 2, 5, 5};
    for (int ci = 0; ci < ncfg; ci++) {
        int H = cfg[ci][0], KV = cfg[ci][1], hd = cfg[ci][2], bs = cfg[ci][3];
        for (int bi = 0; bi < 4; bi++)
            for (int wi = 0; wi < nwin; wi++) {
                /* a spread of windows per config keeps the CPU side short */
                if ((wi + ci + bi) % 2 && windows[wi] != 1 && windows[wi] != 33) continue;
                if (quick && (wi + bi) % 3) continue; /* sanitizer runs */
                rbatch b;
                rbatch_make(&b, ctx[bi], q[bi], nseq[bi], bs, 0);
                if (bi == 3) rbatch_widen(&b, (8192 + bs - 1) / bs);
                char what[128];
                snprintf(what, sizeof what, "window %d attention H%d KV%d hd%d bs%d batch %d",
                         windows[wi], H, KV, hd, bs, bi);
                attention_case(&b, H, KV, hd, bs, windows[wi], what);
                rbatch_free(&b);
            }
    }
}

/* Decode attention timing: S sequences of ctx tokens, one query each. */
static void bench_decode_attention(int S, int ctx, int H, int KV, int hd, int fp8) {
    int bs = 16;
    int *cv = malloc(sizeof(int) * S), *qv = malloc(sizeof(int) * S);
    for (int s = 0; s < S; s++) {
        cv[s] = ctx;
        qv[s] = 1;
    }
    rbatch b;
    rbatch_make(&b, cv, qv, S, bs, 0);
    ci_kv_cache *kg;
    CHECK_OK(ci_kv_cache_create_dtype(gpu, fp8 ? CI_F8_E4M3 : gpu->act_dtype, 1, KV, hd, b.nblocks,
                                      bs, &kg));
    ci_tensor qkv, out;
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, b.T, (int64_t)(H + 2 * KV) * hd, &qkv));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, b.T, (int64_t)H * hd, &out));
    CHECK_OK(
        gpu->ops->memset0(gpu, qkv.data, (size_t)qkv.rows * qkv.cols * ci_dtype_size(qkv.dtype)));
    ci_batch db;
    CHECK_OK(gpu->ops->prepare_batch(gpu, &b.hb, &db));
    ci_attn_shape sh = {H, KV, hd};
    CHECK_OK(gpu->ops->attention(gpu, &qkv, &sh, &db, kg, 0, 0.1f, 0, &out));
    CHECK_OK(gpu->ops->sync(gpu));
    int iters = 20;
    double t0 = ci_now();
    for (int i = 0; i < iters; i++)
        CHECK_OK(gpu->ops->attention(gpu, &qkv, &sh, &db, kg, 0, 0.1f, 0, &out));
    CHECK_OK(gpu->ops->sync(gpu));
    double us = (ci_now() - t0) / iters * 1e6;
    double bytes = 2.0 * S * ctx * KV * hd * ci_dtype_size(kg->dtype);
    printf("[%s] decode attention S=%d ctx=%d H=%d KV=%d hd=%d kv %s: %.1f us, %.0f GB/s of K/V\n",
           mode, S, ctx, H, KV, hd, fp8 ? "fp8" : "auto", us, bytes / (us * 1e-6) / 1e9);
    ci_tensor_free(gpu, &qkv);
    ci_tensor_free(gpu, &out);
    ci_kv_cache_destroy(gpu, kg);
    rbatch_free(&b);
    free(cv);
    free(qv);
}

/* Causal prefill attention timing: one sequence of T new tokens. */
static void bench_prefill_attention(int T, int H, int KV, int hd) {
    int bs = 16, ctx = T, q = T;
    rbatch b;
    rbatch_make(&b, &ctx, &q, 1, bs, 0);
    ci_kv_cache *kg;
    CHECK_OK(ci_kv_cache_create(gpu, 1, KV, hd, b.nblocks, bs, &kg));
    ci_tensor qkv, out;
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, T, (int64_t)(H + 2 * KV) * hd, &qkv));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, T, (int64_t)H * hd, &out));
    CHECK_OK(
        gpu->ops->memset0(gpu, qkv.data, (size_t)qkv.rows * qkv.cols * ci_dtype_size(qkv.dtype)));
    ci_batch db;
    CHECK_OK(gpu->ops->prepare_batch(gpu, &b.hb, &db));
    ci_attn_shape sh = {H, KV, hd};
    CHECK_OK(gpu->ops->attention(gpu, &qkv, &sh, &db, kg, 0, 0.1f, 0, &out));
    CHECK_OK(gpu->ops->sync(gpu));
    int iters = 5;
    double t0 = ci_now();
    for (int i = 0; i < iters; i++)
        CHECK_OK(gpu->ops->attention(gpu, &qkv, &sh, &db, kg, 0, 0.1f, 0, &out));
    CHECK_OK(gpu->ops->sync(gpu));
    double s = (ci_now() - t0) / iters;
    double flops = 4.0 * (double)T * (T + 1) / 2.0 * H * hd;
    printf("[%s] prefill attention T=%d H=%d KV=%d hd=%d: %.3f ms, %.1f TFLOP/s\n", mode, T, H, KV,
           hd, s * 1e3, flops / s / 1e12);
    ci_tensor_free(gpu, &qkv);
    ci_tensor_free(gpu, &out);
    ci_kv_cache_destroy(gpu, kg);
    rbatch_free(&b);
}

/* GEMM timing: y[n][out] = x[n][in] . w^T */
static void bench_gemm(int n, int out, int in) {
    ci_tensor w, x, y;
    CHECK_OK(gpu->ops->weight_alloc(gpu, CI_F32, out, in, &w));
    CHECK_OK(gpu->ops->memset0(gpu, w.data, (size_t)out * in * ci_dtype_size(w.dtype)));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, n, in, &x));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, n, out, &y));
    CHECK_OK(gpu->ops->memset0(gpu, x.data, (size_t)n * in * ci_dtype_size(x.dtype)));
    CHECK_OK(gpu->ops->matmul(gpu, &x, &w, NULL, &y));
    CHECK_OK(gpu->ops->sync(gpu));
    int iters = 20;
    double t0 = ci_now();
    for (int i = 0; i < iters; i++)
        CHECK_OK(gpu->ops->matmul(gpu, &x, &w, NULL, &y));
    CHECK_OK(gpu->ops->sync(gpu));
    double s = (ci_now() - t0) / iters;
    double bytes = (double)out * in * ci_dtype_size(w.dtype);
    printf("[%s] gemm n=%d out=%d in=%d: %.1f us, %.1f TFLOP/s, %.0f GB/s of weights\n", mode, n,
           out, in, s * 1e6, 2.0 * n * out * in / s / 1e12, bytes / s / 1e9);
    ci_tensor_free(gpu, &w);
    ci_tensor_free(gpu, &x);
    ci_tensor_free(gpu, &y);
}

/* The FP8 KV cache: rope_cache's bytes (every rope config) and the
 * attention kernels over the same bytes as the CPU twin: tensor-core
 * prefill (head_dim 64/128), flash decoding (G <= 8; contexts to 8192,
 * bounds beyond the contexts, S = 64), the generic kernel (G = 16 and 32,
 * F32 mode), sliding windows; block copies (copy-on-write) of 1-byte
 * elements. */
static void test_kv_fp8(void) {
    kv8 = 1;
    test_rope_cache();
    int cfg[][4] = {/* H, KV, hd, bs */
                    {8, 8, 64, 16}, {32, 4, 128, 16}, {16, 2, 128, 32},
                    {4, 2, 64, 1},  {16, 1, 128, 16}, {32, 1, 64, 32}};
    const int ncfg = (int)(sizeof cfg / sizeof cfg[0]);
    int ctx[5][8] = {{1, 37, 700, 2048, 130, 1500},
                     {4133, 700, 97},
                     {8192, 1, 15, 17, 4097},
                     {600, 2, 300, 451, 99, 1, 64, 16},
                     {1, 37, 1500, 130, 2049}};
    int q[5][8] = {{1, 37, 1, 1, 64, 3},
                   {300, 700, 60},
                   {1, 1, 1, 1, 1},
                   {1, 1, 1, 1, 1, 1, 1, 1},
                   {1, 37, 1, 64, 3}};
    int nseq[5] = {6, 3, 5, 8, 5}, window[5] = {0, 0, 0, 0, 33};
    for (int ci = 0; ci < ncfg; ci++)
        for (int bi = 0; bi < 5; bi++) {
            if (bi == 1 && ci > 2) continue;                        /* long prefill: 3 configs */
            if (quick && (bi == 1 || bi == 2) && ci != 1) continue; /* sanitizer runs */
            int bs = cfg[ci][3];
            rbatch b;
            rbatch_make(&b, ctx[bi], q[bi], nseq[bi], bs, 0);
            if (bi == 3) rbatch_widen(&b, (8192 + bs - 1) / bs); /* a graph's context bound */
            char what[128];
            snprintf(what, sizeof what, "fp8 attention H%d KV%d hd%d bs%d batch %d window %d",
                     cfg[ci][0], cfg[ci][1], cfg[ci][2], bs, bi, window[bi]);
            attention_case(&b, cfg[ci][0], cfg[ci][1], cfg[ci][2], bs, window[bi], what);
            rbatch_free(&b);
        }
    /* copy_blocks: block 2 -> 5 and 0 -> 1, bytes as on the CPU */
    ci_kv_cache *kc, *kg;
    kv_pair(2, 64, 8, 16, &kc, &kg, NULL, 0);
    int32_t src[2] = {2, 0}, dst[2] = {5, 1};
    CHECK_OK(cpu->ops->copy_blocks(cpu, kc, src, dst, 2));
    CHECK_OK(gpu->ops->copy_blocks(gpu, kg, src, dst, 2));
    compare_cache_fp8("copy_blocks", kc, kg);
    ci_kv_cache_destroy(cpu, kc);
    ci_kv_cache_destroy(gpu, kg);
    kv8 = 0;
}

/* Errors come back as statuses that name the problem. */
static void test_errors(void) {
    ci_backend *b2 = NULL;
    ci_backend_options o = {0, 9999, CI_ACT_DEFAULT};
    ci_status s = ci_backend_create("cuda", &o, &b2);
    CHECKF(s.code == CI_ERR_INVALID && strstr(s.msg, "device 9999"), "%s", s.msg);
    /* head_dim not a multiple of 8 */
    ci_tensor qkv, out;
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, 1, 3 * 12, &qkv));
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, 1, 12, &out));
    ci_kv_cache *kv;
    CHECK_OK(ci_kv_cache_create(gpu, 1, 1, 12, 1, 16, &kv));
    ci_attn_shape sh = {1, 1, 12};
    ci_batch b = {0};
    b.num_tokens = 1;
    b.num_seqs = 1;
    s = gpu->ops->attention(gpu, &qkv, &sh, &b, kv, 0, 1.0f, 0, &out);
    CHECKF(s.code == CI_ERR_UNSUPPORTED && strstr(s.msg, "head_dim"), "%s", s.msg);
    /* matmul with mismatched shapes / dtypes */
    ci_tensor w;
    CHECK_OK(gpu->ops->weight_alloc(gpu, CI_BF16, 4, 36, &w));
    s = gpu->ops->matmul(gpu, &qkv, &w, NULL, &out);
    CHECKF(s.code == CI_ERR_INVALID && strstr(s.msg, "matmul"), "%s", s.msg);
    ci_tensor x32;
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype == CI_F32 ? CI_BF16 : CI_F32, 1, 36, &x32));
    ci_tensor y4;
    CHECK_OK(ci_tensor_alloc(gpu, gpu->act_dtype, 1, 4, &y4));
    s = gpu->ops->matmul(gpu, &x32, &w, NULL, &y4);
    CHECKF(s.code == CI_ERR_UNSUPPORTED, "%s", s.msg);
    ci_tensor_free(gpu, &w);
    ci_tensor_free(gpu, &x32);
    ci_tensor_free(gpu, &y4);
    ci_tensor_free(gpu, &qkv);
    ci_tensor_free(gpu, &out);
    ci_kv_cache_destroy(gpu, kv);
}

/* The skinny BF16 GEMM of decode batches (cuda_gemm_skinny.cu, CINFER_SKINNY;
 * Hopper only, else the backend leaves it off and this says so): the
 * matmul cases and decode shapes of the 8B models against the CPU (split
 * tiles: K of 4 steps over 12 CTAs, stream-K ranges over 132 SMs, ragged M
 * and K, 16-128 rows, bias, F32 out), every case run through it (its call
 * count), reruns bit-identical (the split tiles' fixed summation order),
 * then its times beside cuBLASLt's. */
static void test_skinny(void) {
    setenv("CINFER_SKINNY", "128", 1);
    ci_backend_options o = {0, 0, CI_ACT_BF16};
    ci_status s = ci_backend_create("cuda", &o, &gpu);
    unsetenv("CINFER_SKINNY");
    CHECK_OK(s);
    if (s.code) return;
    bf = 1;
    tol = 1e-2;
    mode = "bf16 skinny";
    const long long c0 = ci_cuda_skinny_calls(gpu);
    test_matmul();
    if (!ci_cuda_skinny_on(gpu)) {
        printf("[%s] the skinny GEMM is off on this GPU (not compute 9.0): skipped\n", mode);
        ci_backend_destroy(gpu);
        gpu = NULL;
        return;
    }
    CHECK(ci_cuda_skinny_calls(gpu) > c0); /* the matmul cases took it */
    static const int dec[][3] = {{6144, 4096, 48}, {4096, 14336, 48}, {5000, 4104, 20},
                                 {4096, 4096, 64}, {28672, 4096, 17}, {32000, 2048, 9}};
    const long long c1 = ci_cuda_skinny_calls(gpu);
    test_matmul_shapes(dec, (int)(sizeof dec / sizeof dec[0]));
    CHECKF(ci_cuda_skinny_calls(gpu) - c1 == 6 * 2 * 2, "skinny calls %lld of 24",
           ci_cuda_skinny_calls(gpu) - c1);
    /* bit-identical reruns: the split tiles sum their partials in CTA order */
    for (int si = 0; si < 3; si++) {
        int out = dec[si][0], in = dec[si][1], n = dec[si][2];
        pair w = weight_pair(out, in, 0.5f);
        float *xv = host_rand((int64_t)n * in, 1.0f);
        pair x = act_pair(n, in, xv), y1 = act_pair(n, out, NULL), y2 = act_pair(n, out, NULL);
        CHECK_OK(gpu->ops->matmul(gpu, &x.g, &w.g, NULL, &y1.g));
        CHECK_OK(gpu->ops->matmul(gpu, &x.g, &w.g, NULL, &y2.g));
        float *a = act_download(gpu, y1.g.data, y1.g.dtype, y1.n);
        float *b = act_download(gpu, y2.g.data, y2.g.dtype, y2.n);
        CHECKF(memcmp(a, b, (size_t)y1.n * sizeof(float)) == 0, "skinny %dx%dx%d: reruns differ",
               out, in, n);
        free(a);
        free(b);
        free(xv);
        pair_free(&w);
        pair_free(&x);
        pair_free(&y1);
        pair_free(&y2);
    }
    /* tiles of 256 weight rows (CINFER_SKINNY_ROWS=256; up to 64 tokens) */
    ci_backend_destroy(gpu);
    setenv("CINFER_SKINNY", "128", 1);
    setenv("CINFER_SKINNY_ROWS", "256", 1);
    CHECK_OK(ci_backend_create("cuda", &o, &gpu));
    mode = "bf16 skinny 256";
    const long long c2 = ci_cuda_skinny_calls(gpu);
    test_matmul();
    test_matmul_shapes(dec, (int)(sizeof dec / sizeof dec[0]));
    CHECK(ci_cuda_skinny_calls(gpu) > c2);
    if (!quick) {
        static const int nb[] = {16, 48, 64, 128};
        for (int pass = 0; pass < 3; pass++) { /* skinny 256-row tiles, 128-row, cuBLASLt */
            if (pass) {
                ci_backend_destroy(gpu);
                if (pass == 1) setenv("CINFER_SKINNY_ROWS", "128", 1);
                if (pass == 2) unsetenv("CINFER_SKINNY");
                CHECK_OK(ci_backend_create("cuda", &o, &gpu));
                mode = pass == 1 ? "bf16 skinny" : "bf16 cublaslt";
            }
            for (int i = 0; i < 4; i++) {
                bench_gemm(nb[i], 6144, 4096);
                bench_gemm(nb[i], 4096, 4096);
                bench_gemm(nb[i], 14336 * 2, 4096);
                bench_gemm(nb[i], 4096, 14336);
                bench_gemm(nb[i], 128256, 4096);
            }
        }
    }
    unsetenv("CINFER_SKINNY");
    unsetenv("CINFER_SKINNY_ROWS");
    CHECK_OK(gpu->ops->sync(gpu));
    ci_backend_destroy(gpu);
    gpu = NULL;
}

int main(void) {
    if (ci_cuda_device_count() <= 0) test_skip("no CUDA device");
    const char *qe = getenv("CINFER_TEST_QUICK"); /* sanitizer runs: fewer long cases, no timing */
    quick = qe && qe[0] && qe[0] != '0';
    const char *modes = getenv("CINFER_TEST_MODES"); /* bf16 | f32 | skinny | (default) all */
    CHECK_OK(ci_backend_create("cpu", NULL, &cpu));
    for (int m = 0; m < 2; m++) {
        if (modes && *modes && strcmp(modes, m == 0 ? "bf16" : "f32") != 0) continue;
        ci_backend_options o = {0, 0, m == 0 ? CI_ACT_BF16 : CI_ACT_F32};
        ci_status s = ci_backend_create("cuda", &o, &gpu);
        CHECK_OK(s);
        if (s.code) break;
        bf = gpu->act_dtype == CI_BF16;
        CHECK(gpu->act_dtype == (m == 0 ? CI_BF16 : CI_F32));
        tol = bf ? 1e-2 : 1e-4;
        mode = bf ? "bf16" : "f32";
        worst_seen = 0;
        int f0 = test_failed_;
        test_matmul();
        if (bf) test_matmul_buckets();
        test_rmsnorm();
        test_qk_norm();
        test_swiglu_gather();
        test_rope_cache();
        test_attention();
        ci_cu_decode_cluster(0); /* the splits merged by their last CTA */
        test_decode_attention();
        test_window_attention();
        test_kv_fp8();
        if (bf) { /* the splits merged in a thread-block cluster (the default on sm_90a) */
            ci_cu_decode_cluster(1);
            test_decode_attention();
            test_window_attention();
            test_kv_fp8();
        }
        ci_cu_decode_cluster(-1);
        test_errors();
        printf("[%s] all ops: worst rel err %.3g (tolerance %.0e), %d failures\n", mode, worst_seen,
               tol, test_failed_ - f0);
        if (!quick) {
            bench_decode_attention(1, 2048, 32, 8, 128, 0);
            bench_decode_attention(32, 2048, 32, 8, 128, 0);
            bench_decode_attention(64, 512, 16, 16, 128, 0);
            bench_decode_attention(64, 4096, 32, 8, 128, 0);
            bench_decode_attention(64, 8192, 32, 8, 128, 0);
            bench_decode_attention(64, 8192, 32, 8, 128, 1);
            bench_prefill_attention(2048, 32, 8, 128);
            bench_gemm(1, 4096, 4096);
            bench_gemm(2048, 4096, 4096);
            bench_gemm(1, 14336 * 2, 4096);
            /* a decode step of an offline run at ~1000 sequences (Llama-3-8B):
             * attention at short contexts, the five GEMMs */
            bench_decode_attention(1024, 384, 32, 8, 128, 0);
            bench_gemm(1024, 6144, 4096);
            bench_gemm(1024, 4096, 4096);
            bench_gemm(1024, 14336 * 2, 4096);
            bench_gemm(1024, 4096, 14336);
            bench_gemm(1024, 128256, 4096);
        }
        CHECK_OK(gpu->ops->sync(gpu));
        ci_backend_destroy(gpu);
        gpu = NULL;
    }
    if (!modes || !*modes || !strcmp(modes, "bf16") || !strcmp(modes, "skinny")) test_skinny();
    ci_backend_destroy(cpu);
    return test_finish("test_cuda_ops");
}
#endif
