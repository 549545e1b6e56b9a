/* test_model_golden.c — tinyqwen2-code against HF float32 goldens:
 * greedy ids for every prompt, top-20 logits and logsumexp at the last
 * prompt position, validation perplexity, KV-cached decode vs full
 * recompute, block-size independence, a mixed two-sequence batch, and the
 * forward's argument checks.
 *
 * Quick mode (ASan builds or CINFER_TEST_QUICK=1): 4 prompts and the first
 * two perplexity windows (checked against their per-chunk goldens). */
#include <jansson.h>
#include <stdint.h>

#include "backend/sample_ref.h"
#include "engine/generate.h"
#include "model/model.h"
#include "test.h"

static int32_t *json_ids(json_t *arr, int *n) {
    *n = (int)json_array_size(arr);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(*n > 0 ? *n : 1));
    for (int i = 0; i < *n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    return ids;
}

static ci_model *m;
static int V;

/* One sequence forward from an empty cache; logits of its last row. */
static ci_status forward_seq(const int32_t *ids, int n, ci_kv_cache *kv, int start, float *logits) {
    int32_t pos[1024], slots[1024], qs[2] = {0, n}, cl[1] = {start + n}, li[1] = {n - 1};
    int32_t bt[1024];
    for (int i = 0; i < kv->num_blocks; i++)
        bt[i] = i;
    for (int i = 0; i < n; i++) {
        pos[i] = start + i;
        slots[i] = start + i;
    }
    ci_batch b = {0};
    b.num_tokens = n;
    b.num_seqs = 1;
    b.num_logits = 1;
    b.max_blocks_per_seq = kv->num_blocks;
    b.max_query_len = n;
    b.max_context_len = start + n;
    b.token_ids = ids;
    b.positions = pos;
    b.query_start = qs;
    b.context_lens = cl;
    b.block_tables = bt;
    b.slot_mapping = slots;
    b.logits_indices = li;
    return ci_model_forward(m, &b, kv, logits);
}

static double max_abs_diff(const float *a, const float *b, int n) {
    double d = 0;
    for (int i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= d)) d = e;
    }
    return d;
}

/* KV-cached decode logits vs recomputing the whole prefix, block size 1. */
static void test_kv_vs_recompute(const int32_t *prompt, int np) {
    enum { STEPS = 6 };
    int32_t seq[1024];
    memcpy(seq, prompt, sizeof(int32_t) * (size_t)np);
    ci_kv_cache *kv, *kv2;
    CHECK_OK(ci_model_kv_cache_create(m, np + STEPS + 1, 1, &kv));
    CHECK_OK(ci_model_kv_cache_create(m, np + STEPS + 1, 1, &kv2));
    float *a = malloc(sizeof(float) * V), *b = malloc(sizeof(float) * V);
    CHECK_OK(forward_seq(seq, np, kv, 0, a));
    double worst = 0;
    for (int s = 0; s < STEPS; s++) {
        seq[np + s] = ci_sample_greedy(a, V);
        CHECK_OK(forward_seq(seq + np + s, 1, kv, np + s, a)); /* cached decode */
        CHECK_OK(forward_seq(seq, np + s + 1, kv2, 0, b));     /* full recompute */
        double d = max_abs_diff(a, b, V);
        if (d > worst) worst = d;
    }
    printf("kv-cached decode vs full recompute: max |dlogit| = %.3g\n", worst);
    CHECKF(worst <= 1e-4, "cached vs recompute %g", worst);
    free(a);
    free(b);
    ci_kv_cache_destroy(m->be, kv);
    ci_kv_cache_destroy(m->be, kv2);
}

/* Two sequences (one with cached context, one fresh) in one forward match
 * running them alone. */
static void test_mixed_batch(const int32_t *p0, int n0, const int32_t *p1, int n1) {
    int c0 = n0 / 2, q0 = n0 - c0; /* seq 0: c0 cached, q0 new */
    int bs = 16, nb0 = (n0 + bs - 1) / bs, nb1 = (n1 + bs - 1) / bs, mb = nb0 > nb1 ? nb0 : nb1;
    ci_kv_cache *kv;
    CHECK_OK(ci_model_kv_cache_create(m, nb0 + nb1, bs, &kv));
    int32_t bt[2 * 64];
    for (int i = 0; i < nb1; i++)
        bt[mb + i] = i; /* seq 1 gets the low blocks */
    for (int i = 0; i < nb0; i++)
        bt[i] = nb1 + nb0 - 1 - i; /* seq 0 reversed high blocks */
    float *ref0 = malloc(sizeof(float) * V), *ref1 = malloc(sizeof(float) * V);
    float *got = malloc(sizeof(float) * 2 * V);
    ci_kv_cache *kvr;
    CHECK_OK(ci_model_kv_cache_create(m, 64, bs, &kvr));
    CHECK_OK(forward_seq(p0, n0, kvr, 0, ref0));
    CHECK_OK(forward_seq(p1, n1, kvr, 0, ref1));
    ci_kv_cache_destroy(m->be, kvr);
    /* prefill seq 0's first c0 tokens alone through its block table */
    int32_t ids[1024], pos[1024], slots[1024], qs[3], cl[2], li[2];
    for (int i = 0; i < c0; i++) {
        ids[i] = p0[i];
        pos[i] = i;
        slots[i] = bt[i / bs] * bs + i % bs;
    }
    ci_batch b = {0};
    b.num_tokens = c0;
    b.num_seqs = 1;
    b.num_logits = 0;
    b.max_blocks_per_seq = mb;
    b.token_ids = ids;
    b.positions = pos;
    qs[0] = 0;
    qs[1] = c0;
    cl[0] = c0;
    b.query_start = qs;
    b.context_lens = cl;
    b.block_tables = bt;
    b.slot_mapping = slots;
    b.logits_indices = li;
    CHECK_OK(ci_model_forward(m, &b, kv, NULL));
    /* then both: seq 0's remaining q0 tokens, seq 1's whole prompt */
    int T = 0;
    for (int i = 0; i < q0; i++, T++) {
        int p = c0 + i;
        ids[T] = p0[p];
        pos[T] = p;
        slots[T] = bt[p / bs] * bs + p % bs;
    }
    for (int i = 0; i < n1; i++, T++) {
        ids[T] = p1[i];
        pos[T] = i;
        slots[T] = bt[mb + i / bs] * bs + i % bs;
    }
    qs[0] = 0;
    qs[1] = q0;
    qs[2] = T;
    cl[0] = n0;
    cl[1] = n1;
    li[0] = q0 - 1;
    li[1] = T - 1;
    b.num_tokens = T;
    b.num_seqs = 2;
    b.num_logits = 2;
    CHECK_OK(ci_model_forward(m, &b, kv, got));
    double d0 = max_abs_diff(got, ref0, V), d1 = max_abs_diff(got + V, ref1, V);
    printf("mixed batch vs alone: max |dlogit| = %.3g, %.3g\n", d0, d1);
    CHECKF(d0 <= 1e-4 && d1 <= 1e-4, "mixed batch %g %g", d0, d1);
    free(ref0);
    free(ref1);
    free(got);
    ci_kv_cache_destroy(m->be, kv);
}

static void test_errors(void) {
    ci_kv_cache *kv;
    CHECK_OK(ci_model_kv_cache_create(m, 4, 16, &kv));
    float *lg = malloc(sizeof(float) * V);
    int32_t bad[2] = {5, V};
    ci_status s = forward_seq(bad, 2, kv, 0, lg);
    CHECK(s.code == CI_ERR_INVALID);
    int32_t ok[1] = {5};
    s = forward_seq(ok, 1, kv, m->rope.max_positions, lg);
    CHECK(s.code != CI_OK);
    ci_batch b = {0};
    b.num_tokens = m->max_batch_tokens + 1;
    b.num_seqs = 1;
    s = ci_model_forward(m, &b, kv, lg);
    CHECK(s.code == CI_ERR_INVALID);
    free(lg);
    ci_kv_cache_destroy(m->be, kv);
}

static int stop_after_3(int32_t tok, int index, void *user) {
    (void)tok;
    (*(int *)user)++;
    return index == 2;
}

/* Seeded sampling is reproducible; stop ids and the callback end generation. */
static void test_generate_options(json_t *prompts) {
    int n;
    int32_t *ids = json_ids(json_object_get(json_array_get(prompts, 3), "prompt_token_ids"), &n);
    int32_t a[16], b[16], c[16];
    ci_generate_params gp = {0};
    gp.max_new_tokens = 16;
    gp.sampling.temperature = 0.9f;
    gp.sampling.top_k = 40;
    gp.sampling.top_p = 0.95f;
    gp.sampling.seed = 77;
    CHECK_OK(ci_generate(m, ids, n, &gp, a, NULL));
    CHECK_OK(ci_generate(m, ids, n, &gp, b, NULL));
    CHECK(memcmp(a, b, sizeof a) == 0);
    gp.sampling.seed = 78;
    CHECK_OK(ci_generate(m, ids, n, &gp, c, NULL));
    CHECK(memcmp(a, c, sizeof a) != 0);
    /* stop at the 5th token's id */
    gp.sampling.seed = 77;
    gp.stop_ids = &a[4];
    gp.num_stop_ids = 1;
    ci_generate_stats st;
    CHECK_OK(ci_generate(m, ids, n, &gp, b, &st));
    int first = 0;
    while (a[first] != a[4])
        first++;
    CHECK(st.generated_tokens == first + 1 && st.stopped == 1);
    /* callback stop after 3 tokens */
    int calls = 0;
    gp.num_stop_ids = 0;
    gp.on_token = stop_after_3;
    gp.user = &calls;
    CHECK_OK(ci_generate(m, ids, n, &gp, b, &st));
    CHECK(calls == 3 && st.generated_tokens == 3 && st.stopped == 2);
    /* too long for the model's positions */
    gp.on_token = NULL;
    gp.max_new_tokens = m->rope.max_positions;
    CHECK(ci_generate(m, ids, n, &gp, NULL, NULL).code == CI_ERR_CAPACITY);
    free(ids);
}

int main(void) {
    const char *quick_env = getenv("CINFER_TEST_QUICK");
    int quick = CI_ASAN || (quick_env && quick_env[0] && quick_env[0] != '0');
    char path[4096];
    snprintf(path, sizeof path, "%s/models/tinyqwen2-code", test_source_dir());
    char gpath[4200];
    snprintf(gpath, sizeof gpath, "%s/golden_public.json", path);
    json_error_t jerr;
    json_t *g = json_load_file(gpath, 0, &jerr);
    if (!g) test_skip("golden_public.json not found");
    ci_backend *be;
    CHECK_OK(ci_backend_create("cpu", NULL, &be));
    ci_model_options mo = {0};
    mo.max_batch_tokens = 512;
    ci_status ls = ci_model_load(path, be, &mo, &m);
    CHECK_OK(ls);
    if (ls.code != CI_OK) return test_finish("test_model_golden");
    V = m->cfg.vocab_size;
    CHECK(V == 8192);

    json_t *prompts = json_object_get(g, "prompts");
    int np = (int)json_array_size(prompts);
    int nrun = quick ? 4 : np;
    int exact = 0;
    double max_top20 = 0, max_lse = 0, prefill_s = 0, decode_s = 0;
    long prefill_tok = 0, decode_tok = 0;
    float *plog = malloc(sizeof(float) * V);
    for (int i = 0; i < nrun; i++) {
        json_t *pr = json_array_get(prompts, (size_t)i);
        int n, ng;
        int32_t *ids = json_ids(json_object_get(pr, "prompt_token_ids"), &n);
        int32_t *want = json_ids(json_object_get(pr, "greedy_token_ids"), &ng);
        int32_t got[64];
        ci_generate_params gp = {0};
        gp.max_new_tokens = ng;
        gp.sampling = ci_sampling_greedy();
        gp.prompt_logits = plog;
        ci_generate_stats st;
        CHECK_OK(ci_generate(m, ids, n, &gp, got, &st));
        int same = st.generated_tokens == ng && memcmp(got, want, sizeof(int32_t) * ng) == 0;
        exact += same;
        if (!same) {
            int k = 0;
            while (k < ng && got[k] == want[k])
                k++;
            fprintf(stderr, "prompt %d (%s): first mismatch at token %d\n", i,
                    json_string_value(json_object_get(pr, "name")), k);
        }
        prefill_s += st.prefill_s;
        decode_s += st.decode_s;
        prefill_tok += n;
        decode_tok += st.generated_tokens - 1;
        json_t *top = json_object_get(pr, "last_prompt_top20");
        for (size_t k = 0; k < json_array_size(top); k++) {
            json_t *e = json_array_get(top, k);
            int id = (int)json_integer_value(json_array_get(e, 0));
            double lv = json_real_value(json_array_get(e, 1));
            double d = fabs(plog[id] - lv);
            if (!(d <= max_top20)) max_top20 = d;
        }
        double lse = ci_log_softmax(plog, V, NULL);
        double dl = fabs(lse - json_real_value(json_object_get(pr, "last_prompt_logsumexp")));
        if (!(dl <= max_lse)) max_lse = dl;
        free(ids);
        free(want);
    }
    printf("golden greedy: %d/%d prompts exact\n", exact, nrun);
    printf("last-prompt top-20 logits: max |err| = %.3g; logsumexp max |err| = %.3g\n", max_top20,
           max_lse);
    printf("speed: prefill %.0f tok/s, decode %.1f tok/s\n",
           prefill_tok / (prefill_s > 0 ? prefill_s : 1e-9),
           decode_tok / (decode_s > 0 ? decode_s : 1e-9));
    CHECK(exact == nrun);
    CHECKF(max_top20 <= 1e-3, "top20 err %g", max_top20);
    CHECKF(max_lse <= 1e-3, "logsumexp err %g", max_lse);

    /* block sizes 1/16/32 give identical greedy output */
    {
        json_t *pr = json_array_get(prompts, 14); /* 53 tokens */
        int n;
        int32_t *ids = json_ids(json_object_get(pr, "prompt_token_ids"), &n);
        int32_t out[3][48];
        int bss[3] = {1, 16, 32};
        for (int k = 0; k < 3; k++) {
            ci_generate_params gp = {0};
            gp.max_new_tokens = quick ? 12 : 48;
            gp.block_size = bss[k];
            gp.sampling = ci_sampling_greedy();
            CHECK_OK(ci_generate(m, ids, n, &gp, out[k], NULL));
        }
        int nn = quick ? 12 : 48;
        CHECK(memcmp(out[0], out[1], sizeof(int32_t) * nn) == 0);
        CHECK(memcmp(out[0], out[2], sizeof(int32_t) * nn) == 0);
        free(ids);
    }
    /* chunked prefill (max_batch_tokens 64 < prompt length) changes nothing */
    {
        json_t *pr = json_array_get(prompts, 12); /* 437 tokens */
        int n, ng;
        int32_t *ids = json_ids(json_object_get(pr, "prompt_token_ids"), &n);
        int32_t *want = json_ids(json_object_get(pr, "greedy_token_ids"), &ng);
        ci_model_options o2 = {0};
        o2.max_batch_tokens = 64;
        ci_model *m2;
        CHECK_OK(ci_model_load(path, be, &o2, &m2));
        int32_t out[16];
        ci_generate_params gp = {0};
        gp.max_new_tokens = 16;
        gp.sampling = ci_sampling_greedy();
        CHECK(n > 64);
        CHECK_OK(ci_generate(m2, ids, n, &gp, out, NULL));
        CHECK(memcmp(out, want, sizeof out) == 0);
        ci_model_free(m2);
        free(ids);
        free(want);
    }
    /* KV cache vs recompute, mixed batch */
    {
        int n0, n1;
        /* 53 tokens: the recompute runs the sgemm path, cached decode the matvec */
        int32_t *a =
            json_ids(json_object_get(json_array_get(prompts, 14), "prompt_token_ids"), &n0);
        int32_t *b = json_ids(json_object_get(json_array_get(prompts, 2), "prompt_token_ids"), &n1);
        test_kv_vs_recompute(a, n0);
        if (n0 >= 2) test_mixed_batch(a, n0, b, n1);
        free(a);
        free(b);
    }
    test_errors();
    test_generate_options(prompts);

    /* perplexity */
    json_t *val = json_object_get(g, "validation");
    int nv;
    int32_t *vids = json_ids(json_object_get(val, "token_ids"), &nv);
    double want = json_real_value(json_object_get(val, "mean_ce"));
    int use = nv;
    if (quick) {
        json_t *cm = json_object_get(val, "chunk_mean_ce"),
               *cn = json_object_get(val, "chunk_n_predicted");
        double s = 0, c = 0;
        for (int k = 0; k < 2; k++) {
            double cnk = (double)json_integer_value(json_array_get(cn, (size_t)k));
            s += json_real_value(json_array_get(cm, (size_t)k)) * cnk;
            c += cnk;
        }
        want = s / c;
        use = 1024;
    }
    double nll;
    long cnt;
    double t0 = ci_now();
    CHECK_OK(ci_perplexity(m, vids, use, 512, &nll, &cnt));
    double dt = ci_now() - t0;
    printf("perplexity: mean NLL %.6f over %ld tokens (golden %.6f, rel err %.2e), ppl %.4f, "
           "%.0f tok/s\n",
           nll, cnt, want, fabs(nll - want) / want, exp(nll), use / dt);
    CHECKF(fabs(nll - want) <= 0.005 * want, "mean NLL %g vs %g", nll, want);
    if (!quick) CHECK(cnt == 19898);
    free(vids);
    free(plog);
    json_decref(g);
    ci_model_free(m);
    ci_backend_destroy(be);
    return test_finish("test_model_golden");
}
