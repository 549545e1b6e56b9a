/* test_sampling.c — greedy ties, Philox known answers, seeded
 * reproducibility, top-k / top-p / min-p masks, and a chi-square test of the
 * sampled distribution against the analytic one. */
#include <stdint.h>

#include "backend/sample_ref.h"
#include "logit_bias_cases.h"
#include "test.h"

static void test_philox(void) {
    /* Random123 known-answer vectors for philox4x32_10 */
    uint32_t o[4];
    uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
    ci_philox4x32_10(c0, k0, o);
    CHECK(o[0] == 0x6627e8d5u && o[1] == 0xe169c58du && o[2] == 0xbc57ac4cu && o[3] == 0x9b00dbd8u);
    uint32_t c1[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
             k1[2] = {0xffffffffu, 0xffffffffu};
    ci_philox4x32_10(c1, k1, o);
    CHECK(o[0] == 0x408f276du && o[1] == 0x41c83b0eu && o[2] == 0xa20bc7c6u && o[3] == 0x6d5451fdu);
    uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
             k2[2] = {0xa4093822u, 0x299f31d0u};
    ci_philox4x32_10(c2, k2, o);
    CHECK(o[0] == 0xd16cfe09u && o[1] == 0x94fdccebu && o[2] == 0x5001e420u && o[3] == 0x24126ea1u);
    double u = ci_philox_uniform(42, 7);
    CHECK(u >= 0.0 && u < 1.0);
    CHECK(u == ci_philox_uniform(42, 7));
    CHECK(u != ci_philox_uniform(42, 8) && u != ci_philox_uniform(43, 7));
}

static void test_greedy(void) {
    float l[6] = {1.0f, 3.0f, -2.0f, 3.0f, NAN, 0.0f};
    CHECK(ci_sample_greedy(l, 6) == 1);
    float m[3] = {NAN, -INFINITY, -INFINITY};
    CHECK(ci_sample_greedy(m, 3) == 1);
    float z[4] = {0, 0, 0, 0};
    CHECK(ci_sample_greedy(z, 4) == 0);
    ci_sampler *s;
    CHECK_OK(ci_sampler_create(6, &s));
    ci_sampling_params g = ci_sampling_greedy();
    CHECK(ci_sampler_sample(s, l, &g, 0) == 1);
    ci_sampling_params k1 = {1.0f, 1, 1.0f, 0.0f, 5};
    CHECK(ci_sampler_sample(s, l, &k1, 3) == 1);
    float ninf[6] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    ci_sampling_params t1 = {1.0f, 0, 0.9f, 0.1f, 5};
    CHECK(ci_sampler_sample(s, ninf, &t1, 0) == 0);
    ci_sampler_free(s);
}

static void test_masks(void) {
    enum { V = 10 };
    float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = (float)((i * 7) % V) * 0.5f; /* a permutation */
    double e[V], tot = 0;
    for (int i = 0; i < V; i++)
        tot += (e[i] = exp(logits[i]));
    ci_sampler *s;
    CHECK_OK(ci_sampler_create(V, &s));
    float probs[V];
    /* no filtering: softmax */
    ci_sampling_params p = {1.0f, 0, 1.0f, 0.0f, 1};
    ci_sampler_probs(s, logits, &p, probs);
    for (int i = 0; i < V; i++)
        CHECK(fabs(probs[i] - e[i] / tot) < 1e-6);
    /* top-k = 3 keeps the 3 largest logits: values 4.5, 4.0, 3.5 */
    p.top_k = 3;
    ci_sampler_probs(s, logits, &p, probs);
    double t3 = exp(4.5) + exp(4.0) + exp(3.5);
    for (int i = 0; i < V; i++) {
        double want = logits[i] >= 3.5f ? exp(logits[i]) / t3 : 0.0;
        CHECKF(fabs(probs[i] - want) < 1e-6, "top-k id %d: %g vs %g", i, probs[i], want);
    }
    /* top-p: smallest prefix whose mass reaches p */
    p.top_k = 0;
    double sorted[V];
    for (int i = 0; i < V; i++)
        sorted[i] = exp(0.5 * (V - 1 - i)) / tot; /* descending */
    double cum = sorted[0] + sorted[1];
    p.top_p = (float)(cum - 1e-4); /* needs exactly two tokens */
    ci_sampler_probs(s, logits, &p, probs);
    int kept = 0;
    for (int i = 0; i < V; i++)
        kept += probs[i] > 0;
    CHECK(kept == 2);
    for (int i = 0; i < V; i++)
        if (logits[i] >= 4.0f)
            CHECK(fabs(probs[i] - exp(logits[i]) / (exp(4.5) + exp(4.0))) < 1e-6);
    p.top_p = (float)(cum + 1e-4); /* needs three */
    ci_sampler_probs(s, logits, &p, probs);
    kept = 0;
    for (int i = 0; i < V; i++)
        kept += probs[i] > 0;
    CHECK(kept == 3);
    /* min-p: keep p >= min_p * pmax; exp(-1.0) ratio keeps 4.5, 4.0, 3.5 */
    p.top_p = 1.0f;
    p.min_p = (float)exp(-1.0) - 1e-4f;
    ci_sampler_probs(s, logits, &p, probs);
    for (int i = 0; i < V; i++)
        CHECK((probs[i] > 0) == (logits[i] >= 3.5f));
    /* temperature: 0.5 doubles the logits */
    ci_sampling_params pt = {0.5f, 0, 1.0f, 0.0f, 1};
    ci_sampler_probs(s, logits, &pt, probs);
    double t2 = 0;
    for (int i = 0; i < V; i++)
        t2 += exp(2 * logits[i]);
    for (int i = 0; i < V; i++)
        CHECK(fabs(probs[i] - exp(2 * logits[i]) / t2) < 1e-6);
    /* sampled tokens never fall outside the mask */
    p.min_p = 0.0f;
    p.top_k = 4;
    int outside = 0;
    for (uint64_t step = 0; step < 2000; step++) {
        int32_t id = ci_sampler_sample(s, logits, &p, step);
        if (logits[id] < 3.0f) outside++;
    }
    CHECK(outside == 0);
    ci_sampler_free(s);
}

static void test_reproducible(void) {
    enum { V = 1000 };
    float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = (float)sin(i * 0.37) * 3.0f;
    ci_sampler *a, *b;
    CHECK_OK(ci_sampler_create(V, &a));
    CHECK_OK(ci_sampler_create(V, &b));
    ci_sampling_params p = {0.9f, 50, 0.95f, 0.01f, 1234};
    int same = 1, differs = 0;
    for (uint64_t st = 0; st < 200; st++) {
        int32_t x = ci_sampler_sample(a, logits, &p, st);
        /* interleave other requests on b: must not matter */
        ci_sampling_params q = p;
        q.seed = 99;
        (void)ci_sampler_sample(b, logits, &q, st);
        int32_t y = ci_sampler_sample(b, logits, &p, st);
        if (x != y) same = 0;
        q.seed = 1235;
        if (ci_sampler_sample(b, logits, &q, st) != x) differs++;
    }
    CHECK(same);
    CHECK(differs > 50);
    ci_sampler_free(a);
    ci_sampler_free(b);
}

static void test_chi_square(void) {
    enum { V = 8, N = 40000 };
    float logits[V] = {0.0f, 1.0f, -1.0f, 2.0f, 0.5f, 0.5f, -3.0f, 1.5f};
    ci_sampler *s;
    CHECK_OK(ci_sampler_create(V, &s));
    ci_sampling_params p = {0.8f, 0, 1.0f, 0.0f, 20261122};
    float probs[V];
    ci_sampler_probs(s, logits, &p, probs);
    long cnt[V] = {0};
    for (uint64_t st = 0; st < N; st++)
        cnt[ci_sampler_sample(s, logits, &p, st)]++;
    double chi = 0;
    for (int i = 0; i < V; i++) {
        double e = probs[i] * N;
        chi += (cnt[i] - e) * (cnt[i] - e) / e;
    }
    /* 7 degrees of freedom: P(chi2 > 30) ~ 1e-4 */
    printf("chi-square (7 dof) = %.2f\n", chi);
    CHECKF(chi < 30.0, "chi-square %g", chi);
    /* and with top-k 5 + top-p 0.9 the masked distribution is still matched */
    ci_sampling_params q = {1.0f, 5, 0.9f, 0.0f, 7};
    ci_sampler_probs(s, logits, &q, probs);
    long c2[V] = {0};
    for (uint64_t st = 0; st < N; st++)
        c2[ci_sampler_sample(s, logits, &q, st)]++;
    chi = 0;
    int dof = -1;
    for (int i = 0; i < V; i++) {
        if (probs[i] == 0) {
            CHECK(c2[i] == 0);
            continue;
        }
        dof++;
        double e = probs[i] * N;
        chi += (c2[i] - e) * (c2[i] - e) / e;
    }
    printf("chi-square masked (%d dof) = %.2f\n", dof, chi);
    CHECKF(chi < 30.0, "masked chi-square %g", chi);
    ci_sampler_free(s);
}

static void test_log_softmax(void) {
    float l[4] = {1.0f, 2.0f, 3.0f, 4.0f}, o[4];
    double lse = ci_log_softmax(l, 4, o);
    double want = log(exp(1.0) + exp(2.0) + exp(3.0) + exp(4.0));
    CHECK(fabs(lse - want) < 1e-9);
    for (int i = 0; i < 4; i++)
        CHECK(fabs(o[i] - (l[i] - want)) < 1e-6);
    float big[2] = {1000.0f, 1000.0f};
    CHECK(fabs(ci_log_softmax(big, 2, NULL) - (1000.0 + log(2.0))) < 1e-9);
}

/* The sample op's argument checks (ci_sample_check, shared by the CPU and
 * CUDA ops), through the CPU backend: each bad field is refused by name. */
static void test_sample_op_checks(void) {
    ci_backend *be = NULL;
    CHECK_OK(ci_backend_create("cpu", NULL, &be));
    if (!be) return;
    ci_tensor lg;
    CHECK_OK(ci_tensor_alloc(be, CI_F32, 2, 8, &lg));
    for (int i = 0; i < 16; i++)
        ((float *)lg.data)[i] = (float)(i % 5);
    ci_logit_adjust adj[1] = {{1, CI_ADJ_MASK, 0, 0.0f}}; /* row 1 is 3 4 0 1 2 3 4 0 */
    ci_sample_row ok = {
        .logits_row = 1, .top_logprobs = 2, .adj_start = 0, .adj_count = 1, .mask_row = -1};
    ci_sample_result res[1];
    CHECK_OK(be->ops->sample(be, &lg, &ok, 1, adj, 1, NULL, 0, res));
    CHECK(res[0].token == 6 && res[0].num_top == 2); /* greedy: 1 masked, 6 ties it */
    ci_sample_row bad[5] = {ok, ok, ok, ok, ok};
    bad[0].logits_row = 2; /* past the logits */
    bad[1].adj_count = 2;  /* past the adjustment list */
    bad[2].top_logprobs = CI_SAMPLE_MAX_TOP + 1;
    bad[3].mask_row = 1; /* past the one bitmask row */
    bad[4].mask_row = -2;
    uint32_t one_mask[1] = {0xffu};
    for (int i = 0; i < 5; i++) {
        ci_status s = be->ops->sample(be, &lg, &bad[i], 1, adj, 1, one_mask, 1, res);
        CHECKF(s.code == CI_ERR_INVALID && strstr(s.msg, "row 0 out of range"), "case %d: %s", i,
               s.msg);
    }
    ci_logit_adjust far[1] = {{8, CI_ADJ_MASK, 0, 0.0f}}; /* outside the vocabulary */
    ci_status s = be->ops->sample(be, &lg, &ok, 1, far, 1, NULL, 0, res);
    CHECKF(s.code == CI_ERR_INVALID && strstr(s.msg, "adjusted token 8"), "%s", s.msg);
    ci_tensor_free(be, &lg);
    ci_backend_destroy(be);
}

/* Bitmask rows (grammar masks) through the CPU sample op: under every
 * sampling setting a masked-out id is never drawn, a one-id mask forces
 * that id, logprobs stay those of the raw row, and unmasked rows batched
 * with masked ones (sharing their logits rows) draw what they draw alone. */
static void test_sample_op_masks(void) {
    enum { V = 100, W = (V + 31) / 32, L = 3, NR = 6 };
    ci_backend *be = NULL;
    CHECK_OK(ci_backend_create("cpu", NULL, &be));
    if (!be) return;
    ci_tensor lg;
    CHECK_OK(ci_tensor_alloc(be, CI_F32, L, V, &lg));
    uint64_t st = 12345;
    for (int i = 0; i < L * V; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        ((float *)lg.data)[i] = (float)((st >> 33) % 1000) / 150.0f;
    }
    uint32_t masks[3][W];
    memset(masks, 0, sizeof masks);
    for (int t = 0; t < V; t++) {
        if (t % 3 == 0 || t > 90) masks[0][t / 32] |= 1u << (t % 32); /* tail word too */
        if (t == 57) masks[1][t / 32] |= 1u << (t % 32);              /* one id */
        if (t % 7 == 1) masks[2][t / 32] |= 1u << (t % 32);
    }
    const struct {
        float temp;
        int top_k;
        float top_p, min_p;
    } ps[] = {{0, 0, 1, 0},    {1, 0, 1, 0},           {1.5f, 5, 1, 0}, {1, 0, 0.5f, 0},
              {1, 0, 1, 0.3f}, {0.7f, 3, 0.9f, 0.05f}, {1, 1, 1, 0},    {2, 0, 0.99f, 0}};
    for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++)
        for (uint64_t seed = 0; seed < 40; seed++) {
            ci_sample_row rows[NR];
            for (int i = 0; i < NR; i++) {
                ci_sample_row r = {.logits_row = i % L,
                                   .top_logprobs = 3,
                                   .mask_row = i < 3 ? i : -1, /* rows 3..5 unmasked */
                                   .temperature = ps[pi].temp,
                                   .top_k = ps[pi].top_k,
                                   .top_p = ps[pi].top_p,
                                   .min_p = ps[pi].min_p,
                                   .seed = seed,
                                   .stream = (uint64_t)i,
                                   .step = seed * 3};
                rows[i] = r;
            }
            ci_sample_result res[NR], alone[NR];
            CHECK_OK(be->ops->sample(be, &lg, rows, NR, NULL, 0, &masks[0][0], 3, res));
            for (int i = 0; i < 3; i++) {
                int t = res[i].token;
                CHECKF(t >= 0 && t < V && (masks[i][t / 32] >> (t % 32) & 1u),
                       "params %zu seed %llu row %d drew masked id %d", pi,
                       (unsigned long long)seed, i, t);
            }
            CHECK(res[1].token == 57);
            for (int i = 0; i < NR; i++) {
                /* logprobs are of the raw row: the masked row's top ids equal the unmasked one's */
                CHECK(res[i].num_top == 3 && res[i].top_ids[0] == res[(i + 3) % NR].top_ids[0]);
                CHECK_OK(
                    be->ops->sample(be, &lg, &rows[i], 1, NULL, 0, &masks[0][0], 3, &alone[i]));
                CHECK(alone[i].token == res[i].token);
            }
        }
    ci_tensor_free(be, &lg);
    ci_backend_destroy(be);
}

/* logit_bias through the CPU backend's sample op: draws equal the reference's exactly */
static void test_logit_bias(void) {
    ci_backend *be = NULL;
    CHECK_OK(ci_backend_create("cpu", NULL, &be));
    if (!be) return;
    ci_tensor lg;
    CHECK_OK(ci_tensor_alloc(be, CI_F32, 1, LB_V, &lg));
    lb_fill(lg.data);
    logit_bias_cases(be, &lg, lg.data, 1);
    ci_tensor_free(be, &lg);
    ci_backend_destroy(be);
}

int main(void) {
    test_sample_op_checks();
    test_sample_op_masks();
    test_logit_bias();
    test_philox();
    test_greedy();
    test_masks();
    test_reproducible();
    test_chi_square();
    test_log_softmax();
    return test_finish("test_sampling");
}
