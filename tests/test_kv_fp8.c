/* test_kv_fp8.c — the FP8 (E4M3) KV cache on the CPU backend: the codec
 * against a brute-force nearest-code reference, the rope/cache write's bytes,
 * paged attention over an FP8 cache against attention over the dequantized
 * values in an F32 cache (tight) and over the unquantized values (loose),
 * block copies, and the model's KV sizing. */
#include <stdint.h>

#include "backend/backend.h"
#include "model/model.h"
#include "test.h"
#include "util/fp8.h"

static ci_backend *be;

/* Nearest finite E4M3 code of x by search over all codes; ties to the even
 * code (even mantissa); beyond the largest magnitude, 448 (saturation). */
static uint8_t ref_encode(float x) {
    if (isnan(x)) return 0x7f;
    uint8_t best = 0;
    double bd = INFINITY;
    for (int c = 0; c < 256; c++) {
        float v = ci_fp8_e4m3_to_f32((uint8_t)c);
        if (isnan(v) || (c == 0x80 && !signbit(x)) || (c == 0 && signbit(x))) continue;
        double d = fabs((double)v - (double)x);
        if (d < bd || (d == bd && !(c & 1))) {
            bd = d;
            best = (uint8_t)c;
        }
    }
    return best;
}

static void test_codec(void) {
    int bad = 0;
    for (int c = 0; c < 256; c++) { /* every code decodes and encodes back */
        float v = ci_fp8_e4m3_to_f32((uint8_t)c);
        if ((c & 0x7f) == 0x7f) {
            if (!isnan(v) || ci_f32_to_fp8_e4m3(v) != 0x7f) bad++;
            continue;
        }
        if (ci_f32_to_fp8_e4m3(v) != c) bad++;
    }
    CHECKF(bad == 0, "%d codes do not round-trip", bad);
    CHECK(ci_fp8_e4m3_to_f32(0x7e) == 448.0f && ci_fp8_e4m3_to_f32(0x01) == 1.0f / 512);
    /* saturation, never NaN for finite or infinite input */
    CHECK(ci_f32_to_fp8_e4m3(1e9f) == 0x7e && ci_f32_to_fp8_e4m3(-1e9f) == 0xfe);
    CHECK(ci_f32_to_fp8_e4m3(INFINITY) == 0x7e && ci_f32_to_fp8_e4m3(-INFINITY) == 0xfe);
    CHECK(ci_f32_to_fp8_e4m3(464.0f) == 0x7e && ci_f32_to_fp8_e4m3(449.0f) == 0x7e);
    /* ties between neighbours go to the even code */
    int bad_tie = 0;
    for (int c = 0; c < 0x7e; c++) {
        float mid = (ci_fp8_e4m3_to_f32((uint8_t)c) + ci_fp8_e4m3_to_f32((uint8_t)(c + 1))) / 2;
        uint8_t want = (c & 1) ? (uint8_t)(c + 1) : (uint8_t)c;
        if (ci_f32_to_fp8_e4m3(mid) != want || ci_f32_to_fp8_e4m3(-mid) != (want | 0x80)) bad_tie++;
    }
    CHECKF(bad_tie == 0, "%d midpoints not rounded to even", bad_tie);
    /* random magnitudes 2^-14 .. 2^10 and signs vs the search */
    int bad_rand = 0;
    for (int i = 0; i < 20000; i++) {
        float x = (float)(ldexp(1.0 + test_urand(), (int)(test_urand() * 24) - 14) *
                          (test_urand() < 0.5 ? -1 : 1));
        if (ci_f32_to_fp8_e4m3(x) != ref_encode(x)) bad_rand++;
    }
    CHECKF(bad_rand == 0, "%d random floats rounded differently from the reference", bad_rand);
}

static ci_tensor act(int64_t r, int64_t c) {
    ci_tensor t;
    CHECK_OK(ci_tensor_alloc(be, CI_F32, r, c, &t));
    return t;
}

/* rope_cache into an FP8 cache: every cached byte is e4m3(rotated k / k_scale)
 * or e4m3(v / v_scale), from the rotated K the op leaves in qkv. */
static void test_rope_cache(void) {
    int H = 4, KV = 2, hd = 64, rot = 32, T = 5, maxpos = 64, bs = 4, nblk = 6;
    int stride = (H + 2 * KV) * hd;
    ci_rope_table rt = {.rot_dim = rot, .max_positions = maxpos, .neox = 1};
    rt.cos_sin = act(maxpos, rot);
    test_fill_rope((float *)rt.cos_sin.data, maxpos, rot);
    ci_kv_cache *kv;
    CHECK_OK(ci_kv_cache_create_dtype(be, CI_F8_E4M3, 2, KV, hd, nblk, bs, &kv));
    kv->k_scale[1] = 0.0625f;
    kv->v_scale[1] = 0.5f;
    size_t cache_n = (size_t)nblk * KV * bs * hd;
    memset(kv->k[1], 0x55, cache_n);
    memset(kv->v[1], 0x55, cache_n);
    int32_t pos[5] = {0, 7, 63, 12, 3}, slots[5] = {5, 6, -1, 23, 0};
    ci_batch b = {.num_tokens = T, .positions = pos, .slot_mapping = slots};
    ci_tensor qkv = act(T, stride);
    for (int i = 0; i < T * stride; i++) /* some K beyond 448 * k_scale: saturates */
        ((float *)qkv.data)[i] = test_frand() * (i % 7 == 0 ? 40.0f : 3.0f);
    CHECK_OK(be->ops->rope_cache(be, &qkv, &(ci_attn_shape){H, KV, hd}, &rt, &b, kv, 1));
    int bad = 0;
    for (int t = 0; t < T; t++) {
        if (slots[t] < 0) continue;
        int blk = slots[t] / bs, off = slots[t] % bs;
        for (int g = 0; g < KV; g++)
            for (int d = 0; d < hd; d++) {
                size_t ci = ((size_t)(blk * KV + g) * bs + off) * hd + d;
                const float *row = (float *)qkv.data + t * stride;
                uint8_t wk = ci_f32_to_fp8_e4m3(row[(H + g) * hd + d] / 0.0625f);
                uint8_t wv = ci_f32_to_fp8_e4m3(row[(H + KV + g) * hd + d] / 0.5f);
                if (((uint8_t *)kv->k[1])[ci] != wk || ((uint8_t *)kv->v[1])[ci] != wv) bad++;
            }
    }
    CHECKF(bad == 0, "rope_cache fp8: %d bytes differ from the codec", bad);
    CHECK(((uint8_t *)kv->k[1])[1 * hd] == 0x55); /* slot 1 never written */
    /* copy_blocks moves 1-byte elements: block 1 (slots 4..7) -> block 4 */
    int32_t src = 1, dst = 4;
    CHECK_OK(be->ops->copy_blocks(be, kv, &src, &dst, 1));
    size_t blk_bytes = (size_t)KV * bs * hd;
    CHECK(!memcmp((uint8_t *)kv->k[1] + 4 * blk_bytes, (uint8_t *)kv->k[1] + blk_bytes, blk_bytes));
    CHECK(!memcmp((uint8_t *)kv->v[1] + 4 * blk_bytes, (uint8_t *)kv->v[1] + blk_bytes, blk_bytes));
    CHECK(((uint8_t *)kv->k[1])[5 * blk_bytes] == 0x55); /* block 5 untouched */
    ci_tensor_free(be, &qkv);
    ci_tensor_free(be, &rt.cos_sin);
    ci_kv_cache_destroy(be, kv);
}

/* Attention over an FP8 cache vs the same op over an F32 cache holding the
 * dequantized values (same math: 1e-5) and over the unquantized values (the
 * quantization error: loose). Sequences of ragged lengths, several new
 * tokens each (prefill, chunked prefill, decode), shuffled block tables. */
static void attn_case(int bs, int H, int KV, int hd, int window) {
    enum { S = 4 };
    int ctx[S] = {1, 17, 40, 33}, newt[S] = {1, 5, 1, 9};
    float ks = 0.02f, vs = 0.01f;
    int maxb = 0, nblk = 0, T = 0;
    for (int s = 0; s < S; s++) {
        int nb = (ctx[s] + bs - 1) / bs;
        if (nb > maxb) maxb = nb;
        nblk += nb;
        T += newt[s];
    }
    nblk += 2;
    int32_t *bt = calloc((size_t)S * maxb, sizeof(int32_t));
    int *perm = malloc(sizeof(int) * nblk);
    for (int i = 0; i < nblk; i++)
        perm[i] = i;
    for (int i = nblk - 1; i > 0; i--) {
        int j = (int)(test_urand() * (i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int next = 0;
    for (int s = 0; s < S; s++)
        for (int i = 0; i < (ctx[s] + bs - 1) / bs; i++)
            bt[s * maxb + i] = perm[next++];
    ci_kv_cache *k8, *kdq, *kf;
    CHECK_OK(ci_kv_cache_create_dtype(be, CI_F8_E4M3, 1, KV, hd, nblk, bs, &k8));
    CHECK_OK(ci_kv_cache_create(be, 1, KV, hd, nblk, bs, &kdq));
    CHECK_OK(ci_kv_cache_create(be, 1, KV, hd, nblk, bs, &kf));
    k8->k_scale[0] = ks;
    k8->v_scale[0] = vs;
    size_t n = (size_t)nblk * KV * bs * hd;
    for (size_t i = 0; i < n; i++) {
        float k = test_frand() * 2.5f, v = test_frand();
        uint8_t qk = ci_f32_to_fp8_e4m3(k / ks), qv = ci_f32_to_fp8_e4m3(v / vs);
        ((uint8_t *)k8->k[0])[i] = qk;
        ((uint8_t *)k8->v[0])[i] = qv;
        ((float *)kdq->k[0])[i] = ci_fp8_e4m3_to_f32(qk) * ks;
        ((float *)kdq->v[0])[i] = ci_fp8_e4m3_to_f32(qv) * vs;
        ((float *)kf->k[0])[i] = k;
        ((float *)kf->v[0])[i] = v;
    }
    int stride = (H + 2 * KV) * hd;
    ci_tensor qkv = act(T, stride), o8 = act(T, H * hd), odq = act(T, H * hd), of = act(T, H * hd);
    for (int i = 0; i < T * stride; i++)
        ((float *)qkv.data)[i] = test_frand();
    int32_t qs[S + 1], pos[32], cl[S];
    qs[0] = 0;
    for (int s = 0, t = 0; s < S; s++) {
        for (int i = 0; i < newt[s]; i++)
            pos[t++] = ctx[s] - newt[s] + i;
        qs[s + 1] = t;
        cl[s] = ctx[s];
    }
    ci_batch b = {.num_tokens = T,
                  .num_seqs = S,
                  .max_blocks_per_seq = maxb,
                  .positions = pos,
                  .query_start = qs,
                  .context_lens = cl,
                  .block_tables = bt};
    ci_attn_shape sh = {H, KV, hd};
    float scale = 1.0f / sqrtf((float)hd);
    CHECK_OK(be->ops->attention(be, &qkv, &sh, &b, k8, 0, scale, window, &o8));
    CHECK_OK(be->ops->attention(be, &qkv, &sh, &b, kdq, 0, scale, window, &odq));
    CHECK_OK(be->ops->attention(be, &qkv, &sh, &b, kf, 0, scale, window, &of));
    double e_dq = 0, e_f = 0, mag = 0;
    for (int i = 0; i < T * H * hd; i++) {
        float a = ((float *)o8.data)[i];
        double d1 = fabs(a - ((float *)odq.data)[i]), d2 = fabs(a - ((float *)of.data)[i]);
        if (!(d1 <= e_dq)) e_dq = d1; /* NaN propagates */
        if (!(d2 <= e_f)) e_f = d2;
        if (fabs(((float *)of.data)[i]) > mag) mag = fabs(((float *)of.data)[i]);
    }
    CHECKF(e_dq <= 1e-5, "fp8 attention vs dequantized f32 (bs %d H %d KV %d hd %d w %d): %g", bs,
           H, KV, hd, window, e_dq);
    /* |v| <= 1 quantized with relative steps of <= 1/16: outputs (averages)
     * move by well under 0.05; garbage would move them by ~mag */
    CHECKF(e_f <= 0.05 && mag > 0.1, "fp8 attention vs unquantized: max err %g (|out| %g)", e_f,
           mag);
    free(bt);
    free(perm);
    ci_tensor_free(be, &qkv);
    ci_tensor_free(be, &o8);
    ci_tensor_free(be, &odq);
    ci_tensor_free(be, &of);
    ci_kv_cache_destroy(be, k8);
    ci_kv_cache_destroy(be, kdq);
    ci_kv_cache_destroy(be, kf);
}

static void test_attention(void) {
    attn_case(16, 8, 2, 64, 0);
    attn_case(16, 8, 8, 128, 0);
    attn_case(4, 12, 2, 128, 0);
    attn_case(1, 4, 1, 64, 0);
    attn_case(8, 8, 2, 64, 9);
}

/* The model's KV cache: E4M3, the checkpoint's scales (1.0 here), a quarter
 * of the F32 block bytes. */
static void test_model_sizing(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/tinyqwen2-code", test_source_dir());
    ci_model *m = NULL, *m8 = NULL;
    ci_model_options mo = {.max_batch_tokens = 16}, mo8 = {.max_batch_tokens = 16, .kv_fp8 = 1};
    ci_status s = ci_model_load(dir, be, &mo, &m);
    if (s.code) {
        printf("no %s: model sizing skipped\n", dir);
        return;
    }
    CHECK_OK(ci_model_load(dir, be, &mo8, &m8));
    if (!m8) {
        ci_model_free(m);
        return;
    }
    CHECK(ci_model_kv_block_bytes(m8, 16) * 4 == ci_model_kv_block_bytes(m, 16));
    ci_kv_cache *kv = NULL;
    CHECK_OK(ci_model_kv_cache_create(m8, 3, 16, &kv));
    if (kv) {
        CHECK(kv->dtype == CI_F8_E4M3 && kv->k_scale[0] == 1.0f && kv->v_scale[1] == 1.0f);
        ci_kv_cache_destroy(be, kv);
    }
    ci_model_free(m);
    ci_model_free(m8);
}

int main(void) {
    ci_backend_options o = {.num_threads = 2};
    CHECK_OK(ci_backend_create("cpu", &o, &be));
    if (!be) return test_finish("test_kv_fp8");
    test_codec();
    test_rope_cache();
    test_attention();
    test_model_sizing();
    ci_backend_destroy(be);
    return test_finish("test_kv_fp8");
}
