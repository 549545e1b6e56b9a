/* test_cpu_ops.c — every CPU op against a naive float64 reference on random
 * inputs. Outputs are poisoned with NaN first so unwritten elements fail. */
#include <stdint.h>

#include "backend/backend.h"
#include "test.h"
#include "util/half.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* [0, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}
static float frand(void) {
    return (float)(urand() * 2.0 - 1.0);
}
static void fill(float *p, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++)
        p[i] = frand() * scale;
}
static void poison(void *p, int64_t n) {
    float *f = p;
    for (int64_t i = 0; i < n; i++)
        f[i] = NAN;
}
static double stored(const ci_tensor *w, int64_t i) {
    const uint16_t *h = w->data;
    switch (w->dtype) {
    case CI_F32: return ((const float *)w->data)[i];
    case CI_BF16: return ci_bf16_to_f32(h[i]);
    case CI_F16: return ci_f16_to_f32(h[i]);
    default: return 0;
    }
}
/* err within atol + rtol * scale; NaN fails */
static int close_to(double got, double want, double tol) {
    return fabs(got - want) <= tol;
}

static ci_backend *be;

static ci_tensor act(int64_t r, int64_t c) {
    ci_tensor t;
    CHECK_OK(ci_tensor_alloc(be, CI_F32, r, c, &t));
    return t;
}
static ci_tensor weight(ci_dtype dt, int64_t r, int64_t c, float scale) {
    ci_tensor w;
    CHECK_OK(be->ops->weight_alloc(be, dt, r, c, &w));
    CHECK(w.dtype == dt);
    float *src = malloc((size_t)(r * c) * sizeof(float));
    fill(src, r * c, scale);
    /* write in two pieces to exercise row offsets */
    int64_t half = r / 2;
    CHECK_OK(be->ops->weight_write(be, &w, 0, src, CI_F32, half));
    CHECK_OK(be->ops->weight_write(be, &w, half, src + half * c, CI_F32, r - half));
    free(src);
    return w;
}

static void test_matmul(void) {
    ci_dtype dts[3] = {CI_F32, CI_F16, CI_BF16};
    int ns[6] = {1, 3, 4, 9, 16, 37}; /* matvec (odd/even rows), its limit, sgemm */
    int shapes[3][2] = {{96, 203}, {300, 256}, {17, 8}};
    for (int di = 0; di < 3; di++)
        for (int si = 0; si < 3; si++)
            for (int ni = 0; ni < 6; ni++)
                for (int wb = 0; wb < 2; wb++) {
                    int out = shapes[si][0], in = shapes[si][1], n = ns[ni];
                    ci_tensor w = weight(dts[di], out, in, 0.5f);
                    ci_tensor b = {0};
                    if (wb) b = weight(dts[di], 1, out, 1.0f);
                    ci_tensor x = act(n, in), y = act(n, out);
                    fill(x.data, n * in, 1.0f);
                    poison(y.data, n * out);
                    CHECK_OK(be->ops->matmul(be, &x, &w, wb ? &b : NULL, &y));
                    double maxerr = 0;
                    int bad = 0;
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < out; j++) {
                            double acc = wb ? stored(&b, j) : 0, mag = fabs(acc);
                            for (int k = 0; k < in; k++) {
                                double t = (double)((float *)x.data)[i * in + k] *
                                           stored(&w, (int64_t)j * in + k);
                                acc += t;
                                mag += fabs(t);
                            }
                            double got = ((float *)y.data)[i * out + j];
                            double err = fabs(got - acc);
                            if (!(err <= 1e-5 * mag + 1e-6)) bad++;
                            if (err > maxerr || got != got) maxerr = got != got ? INFINITY : err;
                        }
                    CHECKF(bad == 0, "matmul %s n=%d out=%d in=%d bias=%d: %d bad, max err %g",
                           ci_dtype_name(dts[di]), n, out, in, wb, bad, maxerr);
                    /* small batches: each row is bitwise what it is alone (a
                     * speculative verify step must reproduce a decode) */
                    if (n <= 16) {
                        ci_tensor x1 = act(1, in), y1 = act(1, out);
                        int diff = 0;
                        for (int i = 0; i < n; i++) {
                            memcpy(x1.data, (float *)x.data + i * in, (size_t)in * sizeof(float));
                            CHECK_OK(be->ops->matmul(be, &x1, &w, wb ? &b : NULL, &y1));
                            diff += memcmp(y1.data, (float *)y.data + i * out,
                                           (size_t)out * sizeof(float)) != 0;
                        }
                        CHECKF(diff == 0, "matmul %s n=%d out=%d in=%d: %d rows differ from alone",
                               ci_dtype_name(dts[di]), n, out, in, diff);
                        ci_tensor_free(be, &x1);
                        ci_tensor_free(be, &y1);
                    }
                    ci_tensor_free(be, &w);
                    if (wb) ci_tensor_free(be, &b);
                    ci_tensor_free(be, &x);
                    ci_tensor_free(be, &y);
                }
}

static void ref_rms(const double *v, int n, const ci_tensor *w, double eps, double *out) {
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += v[i] * v[i];
    double inv = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        out[i] = stored(w, i) * v[i] * inv;
}

static void test_rmsnorm(void) {
    int rows = 7, n = 256;
    for (int mode = 0; mode < 3; mode++) { /* 0: plain, 1: residual, 2: plain in place */
        ci_tensor w = weight(CI_BF16, 1, n, 1.0f);
        ci_tensor x = act(rows, n), r = act(rows, n), o = act(rows, n);
        fill(x.data, rows * n, 2.0f);
        fill(r.data, rows * n, 2.0f);
        double *xd = malloc(sizeof(double) * rows * n), *rd = malloc(sizeof(double) * rows * n);
        for (int i = 0; i < rows * n; i++) {
            xd[i] = ((float *)x.data)[i];
            rd[i] = ((float *)r.data)[i] + (double)((float *)x.data)[i];
        }
        ci_tensor *out = mode == 2 ? &x : &o;
        if (mode != 2) poison(o.data, rows * n);
        CHECK_OK(be->ops->rmsnorm(be, &x, mode == 1 ? &r : NULL, &w, 1e-6f, out));
        int bad = 0;
        double ref[256];
        for (int i = 0; i < rows; i++) {
            ref_rms(mode == 1 ? rd + i * n : xd + i * n, n, &w, 1e-6, ref);
            for (int j = 0; j < n; j++) {
                if (!close_to(((float *)out->data)[i * n + j], ref[j], 1e-5 * (1 + fabs(ref[j]))))
                    bad++;
                if (mode == 1 && !close_to(((float *)r.data)[i * n + j], rd[i * n + j],
                                           1e-6 * (1 + fabs(rd[i * n + j]))))
                    bad++;
            }
        }
        CHECKF(bad == 0, "rmsnorm mode %d: %d bad", mode, bad);
        free(xd);
        free(rd);
        ci_tensor_free(be, &w);
        ci_tensor_free(be, &x);
        ci_tensor_free(be, &r);
        ci_tensor_free(be, &o);
    }
}

static void test_qk_norm(void) {
    ci_attn_shape sh = {4, 2, 64};
    int T = 5, stride = (4 + 4) * 64;
    ci_tensor qkv = act(T, stride), wq = weight(CI_BF16, 1, 64, 1.0f),
              wk = weight(CI_F32, 1, 64, 1.0f);
    fill(qkv.data, T * stride, 3.0f);
    float *orig = malloc(sizeof(float) * T * stride);
    memcpy(orig, qkv.data, sizeof(float) * T * stride);
    CHECK_OK(be->ops->qk_norm(be, &qkv, &sh, &wq, &wk, 1e-6f));
    int bad = 0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < 8; h++) {
            double v[64], ref[64];
            const float *src = orig + t * stride + h * 64;
            for (int i = 0; i < 64; i++)
                v[i] = src[i];
            if (h < 6)
                ref_rms(v, 64, h < 4 ? &wq : &wk, 1e-6, ref);
            else
                for (int i = 0; i < 64; i++)
                    ref[i] = v[i]; /* v untouched */
            for (int i = 0; i < 64; i++)
                if (!close_to(((float *)qkv.data)[t * stride + h * 64 + i], ref[i],
                              1e-5 * (1 + fabs(ref[i]))))
                    bad++;
        }
    CHECKF(bad == 0, "qk_norm: %d bad", bad);
    free(orig);
    ci_tensor_free(be, &qkv);
    ci_tensor_free(be, &wq);
    ci_tensor_free(be, &wk);
}

static void test_rope_cache(void) {
    for (int cfg = 0; cfg < 4; cfg++) {
        int neox = cfg & 1, partial = cfg >> 1;
        int H = 4, KV = 2, hd = 64, rot = partial ? 32 : 64, T = 6, maxpos = 100, bs = 4, nblk = 8;
        int stride = (H + 2 * KV) * hd;
        ci_attn_shape sh = {H, KV, hd};
        ci_rope_table rt;
        rt.rot_dim = rot;
        rt.max_positions = maxpos;
        rt.neox = neox;
        rt.cos_sin = act(maxpos, rot);
        test_fill_rope((float *)rt.cos_sin.data, maxpos, rot);
        ci_kv_cache *kv;
        CHECK_OK(ci_kv_cache_create(be, 2, KV, hd, nblk, bs, &kv));
        int64_t cache_n = (int64_t)nblk * KV * bs * hd;
        poison(kv->k[1], cache_n);
        poison(kv->v[1], cache_n);
        int32_t pos[6] = {0, 1, 2, 57, 99, 13};
        int32_t slots[6] = {5, 6, -1, 0, 31, 17};
        ci_batch b = {0};
        b.num_tokens = T;
        b.positions = pos;
        b.slot_mapping = slots;
        ci_tensor qkv = act(T, stride);
        fill(qkv.data, T * stride, 1.0f);
        float *orig = malloc(sizeof(float) * T * stride);
        memcpy(orig, qkv.data, sizeof(float) * T * stride);
        CHECK_OK(be->ops->rope_cache(be, &qkv, &sh, &rt, &b, kv, 1));
        int bad = 0, badc = 0;
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < H + 2 * KV; h++) {
                const float *x = orig + t * stride + h * hd;
                double ref[64];
                for (int i = 0; i < hd; i++)
                    ref[i] = x[i];
                if (h < H + KV)
                    for (int i = 0; i < rot / 2; i++) {
                        double ang = pos[t] * pow(10000.0, -2.0 * i / rot), c = cos(ang),
                               s = sin(ang);
                        int a = neox ? i : 2 * i, bb = neox ? i + rot / 2 : 2 * i + 1;
                        ref[a] = x[a] * c - x[bb] * s;
                        ref[bb] = x[bb] * c + x[a] * s;
                    }
                for (int i = 0; i < hd; i++) {
                    float got = ((float *)qkv.data)[t * stride + h * hd + i];
                    if (h < H && !close_to(got, ref[i], 2e-6 * (1 + fabs(ref[i])))) bad++;
                    if (h >= H && slots[t] >= 0) {
                        int g = h < H + KV ? h - H : h - H - KV;
                        int blk = slots[t] / bs, off = slots[t] % bs;
                        const float *c = h < H + KV ? kv->k[1] : kv->v[1];
                        float cg = c[((blk * KV + g) * bs + off) * hd + i];
                        if (!close_to(cg, ref[i], 2e-6 * (1 + fabs(ref[i])))) badc++;
                    }
                }
            }
        }
        /* slot 1 (never written) must still be NaN */
        CHECK(((float *)kv->k[1])[1 * hd] != ((float *)kv->k[1])[1 * hd]);
        CHECKF(bad == 0 && badc == 0, "rope neox=%d partial=%d: %d bad q, %d bad cache", neox,
               partial, bad, badc);
        /* out-of-range position is an error */
        pos[0] = maxpos;
        ci_status s = be->ops->rope_cache(be, &qkv, &sh, &rt, &b, kv, 1);
        CHECK(s.code == CI_ERR_INVALID);
        free(orig);
        ci_tensor_free(be, &qkv);
        ci_tensor_free(be, &rt.cos_sin);
        ci_kv_cache_destroy(be, kv);
    }
}

static void test_elementwise(void) {
    int n = 9, I = 300;
    ci_tensor gu = act(n, 2 * I), o = act(n, I);
    fill(gu.data, n * 2 * I, 6.0f);
    poison(o.data, n * I);
    CHECK_OK(be->ops->swiglu(be, &gu, &o));
    int bad = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < I; j++) {
            double g = ((float *)gu.data)[i * 2 * I + j], u = ((float *)gu.data)[i * 2 * I + I + j];
            double ref = g / (1 + exp(-g)) * u;
            if (!close_to(((float *)o.data)[i * I + j], ref, 1e-5 * (1 + fabs(ref)))) bad++;
        }
    CHECKF(bad == 0, "swiglu: %d bad", bad);
    /* embedding from bf16 and f16 tables */
    for (int d = 0; d < 2; d++) {
        ci_tensor tab = weight(d ? CI_F16 : CI_BF16, 50, 33, 1.0f), e = act(4, 33);
        int32_t ids[4] = {0, 49, 7, 7};
        poison(e.data, 4 * 33);
        CHECK_OK(be->ops->embedding(be, &tab, ids, 4, &e));
        bad = 0;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 33; j++)
                if (((float *)e.data)[i * 33 + j] != stored(&tab, ids[i] * 33 + j)) bad++;
        CHECKF(bad == 0, "embedding: %d bad", bad);
        ids[1] = 50;
        CHECK(be->ops->embedding(be, &tab, ids, 4, &e).code == CI_ERR_INVALID);
        ci_tensor_free(be, &tab);
        ci_tensor_free(be, &e);
    }
    int32_t idx[3] = {8, 0, 3};
    ci_tensor g = act(3, I);
    poison(g.data, 3 * I);
    CHECK_OK(be->ops->gather_rows(be, &o, idx, 3, &g));
    CHECK(memcmp(g.data, (float *)o.data + 8 * I, I * 4) == 0);
    CHECK(memcmp((float *)g.data + 2 * I, (float *)o.data + 3 * I, I * 4) == 0);
    ci_tensor_free(be, &gu);
    ci_tensor_free(be, &o);
    ci_tensor_free(be, &g);
}

/* Paged attention on a ragged mixed batch vs dense float64 causal attention;
 * window > 0: sliding window (cache positions no query may see are NaN, so
 * reading one shows). */
static void test_attention_case(int bs, int H, int KV, int hd, int window) {
    enum { S = 3 };
    int cached[S] = {0, 17, 40}, newt[S] = {5, 1, 9};
    int ctx[S], T = 0, maxb = 0;
    for (int s = 0; s < S; s++) {
        ctx[s] = cached[s] + newt[s];
        T += newt[s];
        int nb = (ctx[s] + bs - 1) / bs;
        if (nb > maxb) maxb = nb;
    }
    int total_blocks = 0;
    for (int s = 0; s < S; s++)
        total_blocks += (ctx[s] + bs - 1) / bs;
    int nblk = total_blocks + 3;
    /* a shuffled assignment of physical blocks */
    int *perm = malloc(sizeof(int) * nblk);
    for (int i = 0; i < nblk; i++)
        perm[i] = i;
    for (int i = nblk - 1; i > 0; i--) {
        int j = (int)(urand() * (i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int32_t *bt = malloc(sizeof(int32_t) * S * maxb);
    for (int i = 0; i < S * maxb; i++)
        bt[i] = -7; /* unused entries: garbage */
    int next = 0;
    for (int s = 0; s < S; s++)
        for (int i = 0; i < (ctx[s] + bs - 1) / bs; i++)
            bt[s * maxb + i] = perm[next++];
    ci_kv_cache *kv;
    CHECK_OK(ci_kv_cache_create(be, 1, KV, hd, nblk, bs, &kv));
    int64_t cache_n = (int64_t)nblk * KV * bs * hd;
    poison(kv->k[0], cache_n); /* unused slots stay NaN: reading them would show */
    poison(kv->v[0], cache_n);
    /* dense K/V per sequence [s][pos][kvh][hd] */
    int maxctx = 49;
    double *K = malloc(sizeof(double) * S * maxctx * KV * hd),
           *V = malloc(sizeof(double) * S * maxctx * KV * hd);
    for (int s = 0; s < S; s++)
        for (int p = 0; p < ctx[s]; p++)
            for (int g = 0; g < KV; g++)
                for (int d = 0; d < hd; d++) {
                    float kf = frand() * 2, vf = frand();
                    int64_t di = (((int64_t)s * maxctx + p) * KV + g) * hd + d;
                    K[di] = kf;
                    V[di] = vf;
                    int blk = bt[s * maxb + p / bs], off = p % bs;
                    int64_t ci = (((int64_t)blk * KV + g) * bs + off) * hd + d;
                    int hidden = window > 0 && p < cached[s] + 1 - window;
                    ((float *)kv->k[0])[ci] = hidden ? NAN : kf;
                    ((float *)kv->v[0])[ci] = hidden ? NAN : vf;
                }
    int stride = (H + 2 * KV) * hd;
    ci_tensor qkv = act(T, stride), out = act(T, H * hd);
    fill(qkv.data, T * stride, 1.0f);
    poison(out.data, T * H * hd);
    int32_t qs[S + 1], pos[64], cl[S];
    qs[0] = 0;
    int t = 0;
    for (int s = 0; s < S; s++) {
        for (int i = 0; i < newt[s]; i++)
            pos[t++] = cached[s] + i;
        qs[s + 1] = t;
        cl[s] = ctx[s];
    }
    ci_batch b = {0};
    b.num_tokens = T;
    b.num_seqs = S;
    b.max_blocks_per_seq = maxb;
    b.positions = pos;
    b.query_start = qs;
    b.context_lens = cl;
    b.block_tables = bt;
    float scale = (float)(1.0 / sqrt(hd));
    CHECK_OK(
        be->ops->attention(be, &qkv, &(ci_attn_shape){H, KV, hd}, &b, kv, 0, scale, window, &out));
    int bad = 0;
    double maxerr = 0;
    for (int s = 0; s < S; s++)
        for (int ti = qs[s]; ti < qs[s + 1]; ti++)
            for (int h = 0; h < H; h++) {
                int g = h / (H / KV);
                const float *q = (float *)qkv.data + ti * stride + h * hd;
                int n = pos[ti] + 1, lo = window > 0 && n > window ? n - window : 0;
                double sc[64], mx = -INFINITY, sum = 0;
                for (int p = lo; p < n; p++) {
                    double d = 0;
                    for (int k = 0; k < hd; k++)
                        d += q[k] * K[(((int64_t)s * maxctx + p) * KV + g) * hd + k];
                    sc[p] = d * (1.0 / sqrt(hd));
                    if (sc[p] > mx) mx = sc[p];
                }
                for (int p = lo; p < n; p++)
                    sum += (sc[p] = exp(sc[p] - mx));
                for (int k = 0; k < hd; k++) {
                    double o = 0;
                    for (int p = lo; p < n; p++)
                        o += sc[p] / sum * V[(((int64_t)s * maxctx + p) * KV + g) * hd + k];
                    double got = ((float *)out.data)[ti * H * hd + h * hd + k];
                    double err = fabs(got - o);
                    if (!(err <= 1e-5)) bad++;
                    if (!(err <= maxerr)) maxerr = err;
                }
            }
    CHECKF(bad == 0, "attention bs=%d H=%d KV=%d hd=%d window=%d: %d bad, max err %g", bs, H, KV,
           hd, window, bad, maxerr);
    free(perm);
    free(bt);
    free(K);
    free(V);
    ci_tensor_free(be, &qkv);
    ci_tensor_free(be, &out);
    ci_kv_cache_destroy(be, kv);
}

static void test_attention(void) {
    int bss[3] = {1, 16, 32}, gqa[3] = {1, 2, 4}, hds[2] = {64, 128};
    for (int a = 0; a < 3; a++)
        for (int g = 0; g < 3; g++)
            for (int h = 0; h < 2; h++)
                test_attention_case(bss[a], 2 * gqa[g], 2, hds[h], 0);
    test_attention_case(16, 16, 1, 64, 0); /* group of 16 > one pass of heads */
    test_attention_case(16, 4, 2, 80, 0);  /* head_dim not a multiple of 64 */
    test_attention_case(32, 6, 3, 36, 0);  /* ... nor of 8 */
    /* sliding windows: 1 key, shorter / longer than a block, not block
     * aligned, and one at least as long as every context (no effect) */
    int windows[6] = {1, 3, 8, 17, 33, 49};
    for (int a = 0; a < 3; a++)
        for (int wi = 0; wi < 6; wi++)
            test_attention_case(bss[a], 4 * (1 + wi % 2), 2, wi < 3 ? 64 : 36, windows[wi]);
}

static void test_backend_create(void) {
    ci_backend *b2;
    CHECK(ci_backend_create("nope", NULL, &b2).code == CI_ERR_INVALID);
#ifndef CINFER_HAVE_CUDA
    CHECK(ci_backend_create("cuda", NULL, &b2).code == CI_ERR_UNSUPPORTED);
#endif
    ci_tensor w;
    CHECK(be->ops->weight_alloc(be, CI_I32, 2, 2, &w).code == CI_ERR_UNSUPPORTED);
}

int main(void) {
    /* 3 threads, 1 thread, and the AVX2 matmul kernel forced where the CPU
     * would pick the AVX-512 one */
    int threads[3] = {3, 1, 3};
    for (int i = 0; i < 3; i++) {
        if (i == 2) setenv("CINFER_CPU_ISA", "avx2", 1);
        ci_backend_options o = {threads[i], 0, CI_ACT_DEFAULT};
        CHECK_OK(ci_backend_create("cpu", &o, &be));
        if (!be) return test_finish("test_cpu_ops");
        test_backend_create();
        test_matmul();
        test_rmsnorm();
        test_qk_norm();
        test_rope_cache();
        test_elementwise();
        test_attention();
        ci_backend_destroy(be);
    }
    unsetenv("CINFER_CPU_ISA");
    return test_finish("test_cpu_ops");
}
