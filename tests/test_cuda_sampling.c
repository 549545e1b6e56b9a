/* test_cuda_sampling.c — the CUDA sample op against the CPU one (the
 * reference math of src/engine/sampling.c) on fresh random logits: ties,
 * -inf entries, huge and tiny values, flat and peaked rows; rows mixing
 * greedy / temperature / top-k / top-p / min-p, adjustments (logit_bias
 * too: logit_bias_cases.h), logprobs and
 * n > 1 rows sharing a logits row. Greedy tokens must be equal; sampled
 * rows must keep the same set (num_kept against ci_sampler_probs' support,
 * the token inside it) and mostly draw the same token for the same seed
 * (the mismatch rate is printed: only rounding-boundary cases may differ);
 * a chi-square over many seeds checks the GPU's distribution; logprobs
 * within 1e-4; the caller's logits are unchanged. Then timings at
 * V = 128256, 256 rows. Skips (exit 77) without CUDA or without a GPU. */
#include <stdint.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "backend/sample_ref.h"
#include "test.h"

#ifndef CINFER_HAVE_CUDA
int main(void) {
    test_skip("built without CUDA");
    return 77;
}
#else
#include "logit_bias_cases.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}
static double nrand(void) {
    double u = urand() + 1e-12, v = urand();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static ci_backend *cpu, *gpu;

/* a logits row of one of several styles */
static void fill_row(float *x, int V, int style) {
    for (int i = 0; i < V; i++) {
        switch (style) {
        case 0: x[i] = (float)(urand() * 16.0 - 8.0); break;      /* broad */
        case 1: x[i] = (float)floor(nrand() * 4.0) * 0.5f; break; /* many ties */
        case 2: x[i] = (float)(nrand() * 2.0); break;             /* peaked below */
        case 3: x[i] = urand() < 0.1 ? -INFINITY : (float)(nrand() * 3.0); break;
        case 4: x[i] = (float)(urand() * 0.01); break; /* flat */
        default: x[i] = urand() < 0.5 ? (float)(nrand() * 1e4) : (float)(nrand() * 1e-30); break;
        }
    }
    if (style == 2)
        for (int j = 0; j < 5; j++)
            x[(int)(urand() * V)] = (float)(20.0 + nrand());
}

static void upload_logits(ci_tensor *t, const float *x, int rows, int V) {
    CHECK_OK(ci_tensor_alloc(gpu, CI_F32, rows, V, t));
    CHECK_OK(gpu->ops->to_device(gpu, t->data, x, sizeof(float) * (size_t)rows * (size_t)V));
}

/* CPU's distribution for row r: probs of the adjusted row; returns support size */
static int cpu_support(ci_sampler *s, const float *x, int V, const ci_sample_row *r,
                       const ci_logit_adjust *adj, const uint32_t *masks, float *row,
                       float *probs) {
    memcpy(row, x + (size_t)r->logits_row * V, sizeof(float) * (size_t)V);
    ci_logit_adjust_apply(row, adj + r->adj_start, r->adj_count, r->repetition_penalty,
                          r->presence_penalty, r->frequency_penalty);
    if (r->mask_row >= 0)
        ci_logit_mask_apply(row, masks + (size_t)r->mask_row * (size_t)ci_mask_words(V), V);
    for (int t = r->vocab_limit > 0 ? r->vocab_limit : V; t < V; t++)
        row[t] = -INFINITY; /* a padded vocabulary's rows are never drawn */
    ci_sampling_params p = {r->temperature, r->top_k, r->top_p, r->min_p, r->seed};
    ci_sampler_probs(s, row, &p, probs);
    int n = 0;
    for (int i = 0; i < V; i++)
        n += probs[i] > 0;
    return n;
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static void test_mixed(int V, int L, int N) {
    float *x = malloc(sizeof(float) * (size_t)L * V);
    for (int r = 0; r < L; r++)
        fill_row(x + (size_t)r * V, V, r % 6);
    ci_tensor lg_cpu = {x, CI_F32, L, V}, lg_gpu;
    upload_logits(&lg_gpu, x, L, V);
    ci_sample_row *rows = calloc((size_t)N, sizeof *rows);
    ci_logit_adjust *adj = malloc(sizeof *adj * (size_t)L * 64);
    int nadj = 0;
    int *adj0 = malloc(sizeof(int) * L), *nad = malloc(sizeof(int) * L);
    uint8_t *seen = calloc((size_t)V, 1);
    for (int r = 0; r < L; r++) { /* every third logits row has adjustments */
        adj0[r] = nadj;
        nad[r] = 0;
        if (r % 3 != 1) continue;
        int cnt = 1 + (int)(urand() * 60);
        for (int j = 0; j < cnt; j++) {
            int t = (int)(urand() * V);
            if (seen[t]) continue;
            seen[t] = 1;
            ci_logit_adjust *a = &adj[nadj++];
            a->token = t;
            a->flags = (urand() < 0.2 ? CI_ADJ_MASK : 0) | (urand() < 0.7 ? CI_ADJ_REPEAT : 0);
            a->count = urand() < 0.5 ? (int)(urand() * 4) : 0;
            if (urand() < 0.4) { /* logit_bias, up to +-100 */
                a->flags |= CI_ADJ_BIAS;
                a->bias = (float)((urand() * 2.0 - 1.0) * (urand() < 0.2 ? 100.0 : 5.0));
            } else {
                a->bias = 0.0f;
            }
        }
        for (int j = adj0[r]; j < nadj; j++)
            seen[adj[j].token] = 0;
        nad[r] = nadj - adj0[r];
    }
    /* grammar bitmasks: sparse (2%), dense (90%), a single id, the odd ids */
    enum { NM = 4 };
    const int W = ci_mask_words(V);
    uint32_t *masks = calloc((size_t)NM * (size_t)W, sizeof(uint32_t));
    for (int m = 0; m < NM; m++)
        for (int t = 0; t < V; t++) {
            double u = urand();
            int on = m == 0 ? u < 0.02 : m == 1 ? u < 0.9 : m == 2 ? t == V / 3 : t % 2 == 1;
            if (on) masks[(size_t)m * W + t / 32] |= 1u << (t % 32);
        }
    static const float temps[] = {0.0f, 0.5f, 0.8f, 1.0f, 1.5f};
    static const int topks[] = {0, 0, 1, 5, 50, 1000, 4500};
    static const float topps[] = {1.0f, 0.9f, 0.5f, 0.99f};
    static const float minps[] = {0.0f, 0.0f, 0.05f, 0.2f};
    for (int i = 0; i < N; i++) {
        ci_sample_row *r = &rows[i];
        r->logits_row = (int)(urand() * L);
        if (i > 0 && urand() < 0.15) { /* n > 1: a sibling of the previous row */
            *r = rows[i - 1];
            r->stream++;
            continue;
        }
        r->temperature = temps[(int)(urand() * 5)];
        r->top_k = topks[(int)(urand() * 7)];
        r->top_p = topps[(int)(urand() * 4)];
        r->min_p = minps[(int)(urand() * 4)];
        r->repetition_penalty = 1.3f;
        r->presence_penalty = 0.5f;
        r->frequency_penalty = 0.25f;
        r->adj_start = adj0[r->logits_row];
        r->adj_count = nad[r->logits_row];
        r->top_logprobs = urand() < 0.3 ? (int)(urand() * 21) : -1;
        /* a padded vocabulary on a quarter of the rows: the last ids never drawn */
        r->vocab_limit = urand() < 0.25 ? V - 1 - (int)(urand() * (V / 4)) : 0;
        r->seed = (uint64_t)(urand() * 1e9);
        r->stream = 0;
        r->step = (uint64_t)(urand() * 100);
        /* masked rows batched with unmasked ones (and their siblings keep the mask) */
        r->mask_row = urand() < 0.4 ? (int)(urand() * NM) : -1;
    }
    ci_sample_result *rc = malloc(sizeof *rc * (size_t)N), *rg = malloc(sizeof *rg * (size_t)N);
    memset(rg, 0xff, sizeof *rg * (size_t)N); /* poison */
    CHECK_OK(cpu->ops->sample(cpu, &lg_cpu, rows, N, adj, nadj, masks, NM, rc));
    CHECK_OK(gpu->ops->sample(gpu, &lg_gpu, rows, N, adj, nadj, masks, NM, rg));
    if (gpu->ops->stage_masks) { /* masks uploaded ahead (during a forward): the same draws */
        ci_sample_result *rs = malloc(sizeof *rs * (size_t)N);
        CHECK_OK(gpu->ops->stage_masks(gpu, masks, NM, W));
        CHECK_OK(gpu->ops->sample(gpu, &lg_gpu, rows, N, adj, nadj, masks, NM, rs));
        int same = 0;
        for (int i = 0; i < N; i++)
            same += rs[i].token == rg[i].token && rs[i].logprob == rg[i].logprob;
        printf("V %d: staged masks: %d/%d rows drew the same\n", V, same, N);
        CHECK(same == N);
        free(rs);
    }
    int mask_rows = 0, mask_bad = 0;
    for (int i = 0; i < N; i++) {
        int m = rows[i].mask_row, t = rg[i].token;
        if (m < 0 || t < 0 || t >= V) continue;
        mask_rows++;
        int lim = rows[i].vocab_limit > 0 ? rows[i].vocab_limit : V;
        /* a mask with no id left under the vocabulary limit, the row's own
         * CI_ADJ_MASK adjustments (min_tokens) and the -inf logits of the
         * row leaves only the fallback */
        int any = 0;
        for (int u = 0; u < lim && !any; u++) {
            any = ((masks[(size_t)m * W + u / 32] >> (u % 32)) & 1u) &&
                  isfinite(x[(size_t)rows[i].logits_row * V + u]);
            for (int j = rows[i].adj_start; any && j < rows[i].adj_start + rows[i].adj_count; j++)
                if (adj[j].token == u && (adj[j].flags & CI_ADJ_MASK)) any = 0;
        }
        if (any && !((masks[(size_t)m * W + t / 32] >> (t % 32)) & 1u)) mask_bad++;
    }
    printf("V %d: %d masked rows, %d drew a masked-out id\n", V, mask_rows, mask_bad);
    CHECK(mask_rows > 0 && mask_bad == 0);
    /* the caller's logits are unchanged (adjustments were restored) */
    float *back = malloc(sizeof(float) * (size_t)L * V);
    CHECK_OK(gpu->ops->to_host(gpu, back, lg_gpu.data, sizeof(float) * (size_t)L * V));
    CHECK(memcmp(back, x, sizeof(float) * (size_t)L * V) == 0);
    ci_sampler *s;
    CHECK_OK(ci_sampler_create(V, &s));
    float *row = malloc(sizeof(float) * V), *probs = malloc(sizeof(float) * V);
    int greedy = 0, greedy_bad = 0, sampled = 0, tok_diff = 0, kept_diff = 0, outside = 0;
    int lp_rows = 0, lp_bad = 0;
    double lp_worst = 0;
    for (int i = 0; i < N; i++) {
        const ci_sample_row *r = &rows[i];
        int lim = r->vocab_limit > 0 ? r->vocab_limit : V;
        CHECKF(rg[i].token >= 0 && rg[i].token < lim, "row %d token %d (limit %d)", i, rg[i].token,
               lim);
        CHECKF(rc[i].token >= 0 && rc[i].token < lim, "cpu row %d token %d (limit %d)", i,
               rc[i].token, lim);
        if (rg[i].token < 0 || rg[i].token >= V) continue;
        int is_greedy = !(r->temperature > 0) || r->top_k == 1;
        if (is_greedy) {
            greedy++;
            if (rg[i].token != rc[i].token) greedy_bad++;
        } else {
            sampled++;
            int sup = cpu_support(s, x, V, r, adj, masks, row, probs);
            if (rg[i].token != rc[i].token) tok_diff++;
            if (rg[i].num_kept != sup) {
                kept_diff++;
                if (kept_diff < 5)
                    fprintf(stderr,
                            "row %d (style %d T %g k %d p %g minp %g): kept gpu %d cpu %d\n", i,
                            r->logits_row % 6, r->temperature, r->top_k, r->top_p, r->min_p,
                            rg[i].num_kept, sup);
            }
            if (!(probs[rg[i].token] > 0)) outside++;
        }
        if (r->top_logprobs >= 0) {
            lp_rows++;
            int bad = 0;
            double d = fabs((double)rg[i].logprob - rc[i].logprob);
            if (!(d <= 1e-4) && !(rg[i].logprob == rc[i].logprob)) bad = 1;
            if (d > lp_worst && isfinite(d)) lp_worst = d;
            if (rg[i].num_top != rc[i].num_top) bad = 1;
            for (int j = 0; !bad && j < rc[i].num_top; j++) {
                if (rg[i].top_ids[j] != rc[i].top_ids[j]) bad = 1;
                double dj = fabs((double)rg[i].top_logprobs[j] - rc[i].top_logprobs[j]);
                if (dj > lp_worst && isfinite(dj)) lp_worst = dj;
                if (!(dj <= 1e-4) && rg[i].top_logprobs[j] != rc[i].top_logprobs[j]) bad = 1;
            }
            if (bad && lp_bad < 5)
                fprintf(stderr, "row %d logprobs: gpu %g (%d top) cpu %g (%d top)\n", i,
                        rg[i].logprob, rg[i].num_top, rc[i].logprob, rc[i].num_top);
            lp_bad += bad;
        }
    }
    printf("V %d, %d rows: greedy %d (%d differ); sampled %d: token differs %d (%.3f%%), kept set "
           "differs %d, outside the CPU support %d; logprob rows %d (%d bad, worst %.2e)\n",
           V, N, greedy, greedy_bad, sampled, tok_diff, sampled ? 100.0 * tok_diff / sampled : 0.0,
           kept_diff, outside, lp_rows, lp_bad, lp_worst);
    CHECK(greedy_bad == 0);
    CHECK(outside == 0);
    CHECKF(kept_diff <= sampled / 200, "%d kept sets differ", kept_diff);
    CHECKF(tok_diff <= sampled / 100, "%d tokens differ", tok_diff);
    CHECK(lp_bad == 0);
    ci_sampler_free(s);
    ci_tensor_free(gpu, &lg_gpu);
    free(x), free(rows), free(adj), free(adj0), free(nad), free(seen), free(rc), free(rg);
    free(masks);
    free(back), free(row), free(probs);
}

/* many seeds on one row: GPU counts against the CPU probabilities */
static void test_chi_square(int V, float temp, int top_k, float top_p, int style) {
    enum { N = 4000, CALLS = 10 };
    float *x = malloc(sizeof(float) * V);
    fill_row(x, V, style);
    ci_tensor lg;
    upload_logits(&lg, x, 1, V);
    ci_sample_row *rows = calloc(N, sizeof *rows);
    ci_sample_result *res = malloc(sizeof *res * N);
    long *cnt = calloc((size_t)V, sizeof(long));
    for (int c = 0; c < CALLS; c++) {
        for (int i = 0; i < N; i++) {
            ci_sample_row *r = &rows[i];
            r->top_logprobs = -1;
            r->mask_row = -1;
            r->temperature = temp;
            r->top_k = top_k;
            r->top_p = top_p;
            r->seed = 1000003u * (uint64_t)c + (uint64_t)i;
            r->step = 5;
        }
        CHECK_OK(gpu->ops->sample(gpu, &lg, rows, N, NULL, 0, NULL, 0, res));
        for (int i = 0; i < N; i++)
            if (res[i].token >= 0 && res[i].token < V) cnt[res[i].token]++;
    }
    ci_sampler *s;
    CHECK_OK(ci_sampler_create(V, &s));
    float *probs = malloc(sizeof(float) * V);
    ci_sampling_params p = {temp, top_k, top_p, 0.0f, 0};
    ci_sampler_probs(s, x, &p, probs);
    /* buckets of B consecutive ids keep expected counts large on wide supports */
    int B = V / 200 > 1 ? V / 200 : 1;
    double chi = 0, total = (double)N * CALLS;
    int dof = -1, outside = 0;
    for (int i = 0; i < V; i++)
        outside += probs[i] == 0 && cnt[i] != 0;
    for (int b0 = 0; b0 < V; b0 += B) {
        double e = 0;
        long c = 0;
        for (int i = b0; i < b0 + B && i < V; i++)
            e += probs[i] * total, c += cnt[i];
        if (e == 0) continue;
        dof++;
        chi += (c - e) * (c - e) / e;
    }
    /* mean dof, sd sqrt(2 dof): 6 sd is far in the tail */
    double lim = dof + 6.0 * sqrt(2.0 * dof) + 10;
    printf("chi-square V %d T %g top-k %d top-p %g: %.1f over %d dof (limit %.0f)\n", V, temp,
           top_k, top_p, chi, dof, lim);
    CHECK(outside == 0);
    CHECKF(chi < lim, "chi-square %g", chi);
    ci_sampler_free(s);
    ci_tensor_free(gpu, &lg);
    free(x), free(rows), free(res), free(cnt), free(probs);
}

static void bench(int V, int n, float temp, int top_k, float top_p, const char *name) {
    float *x = malloc(sizeof(float) * (size_t)n * V);
    for (int r = 0; r < n; r++) { /* LM-like: peaked heads over a normal bulk */
        float *row = x + (size_t)r * V;
        for (int i = 0; i < V; i++)
            row[i] = (float)(nrand() * 2.0);
        for (int j = 0; j < 20; j++)
            row[(int)(urand() * V)] = (float)(12.0 + 3.0 * nrand());
    }
    ci_tensor lg;
    upload_logits(&lg, x, n, V);
    ci_sample_row *rows = calloc((size_t)n, sizeof *rows);
    for (int i = 0; i < n; i++) {
        rows[i].logits_row = i;
        rows[i].top_logprobs = -1;
        rows[i].mask_row = -1;
        rows[i].temperature = temp;
        rows[i].top_k = top_k;
        rows[i].top_p = top_p;
        rows[i].seed = (uint64_t)i;
    }
    ci_sample_result *res = malloc(sizeof *res * (size_t)n);
    for (int w = 0; w < 3; w++)
        CHECK_OK(gpu->ops->sample(gpu, &lg, rows, n, NULL, 0, NULL, 0, res));
    const int iters = 50;
    double t0 = now_us();
    for (int it = 0; it < iters; it++)
        CHECK_OK(gpu->ops->sample(gpu, &lg, rows, n, NULL, 0, NULL, 0, res));
    double us = (now_us() - t0) / iters;
    /* check a few rows against the CPU */
    ci_tensor lc = {x, CI_F32, n, V};
    ci_sample_result *rc = malloc(sizeof *rc * 16);
    CHECK_OK(cpu->ops->sample(cpu, &lc, rows, 16, NULL, 0, NULL, 0, rc));
    int same = 0;
    for (int i = 0; i < 16; i++)
        same += rc[i].token == res[i].token;
    double mb = (double)n * V * 4 / 1e6;
    printf("bench %-24s %d rows x V %d: %8.1f us per call (%.0f MB of logits: %.2f TB/s for one "
           "read), %d/16 rows equal to the CPU\n",
           name, n, V, us, mb, mb / us, same);
    CHECK(same >= 15);
    ci_tensor_free(gpu, &lg);
    free(x), free(rows), free(res), free(rc);
}

/* logit_bias on the GPU (logit_bias_cases.h): +-100 and mixed biases against the reference */
static void test_logit_bias(void) {
    float x[LB_V];
    lb_fill(x);
    ci_tensor lg;
    upload_logits(&lg, x, 1, LB_V);
    logit_bias_cases(gpu, &lg, x, 0);
    ci_tensor_free(gpu, &lg);
}

int main(void) {
    if (ci_cuda_device_count() <= 0) test_skip("no CUDA device");
    CHECK_OK(ci_backend_create("cpu", NULL, &cpu));
    CHECK_OK(ci_backend_create("cuda", NULL, &gpu));
    if (!gpu) return test_finish("test_cuda_sampling");
    test_mixed(5000, 24, 1500);
    test_mixed(131, 12, 400);
    test_mixed(128256, 6, 120);
    test_logit_bias();
    test_chi_square(5000, 0.8f, 20, 0.9f, 2);        /* shared-memory path */
    test_chi_square(300, 1.0f, 0, 0.95f, 4);         /* flat, small V */
    test_chi_square(300, 2.0f, 0, 1.0f, 0);          /* no filter */
    const char *quick = getenv("CINFER_TEST_QUICK"); /* sanitizer runs */
    if (!quick || !quick[0] || quick[0] == '0') {
        test_chi_square(40000, 1.0f, 0, 0.95f, 4);   /* flat: radix path over V */
        test_chi_square(40000, 1.0f, 6000, 1.0f, 0); /* top-k above CAP */
        bench(128256, 256, 0.0f, 0, 1.0f, "greedy");
        bench(128256, 256, 0.8f, 50, 0.9f, "T0.8 top-k 50 top-p 0.9");
        bench(128256, 256, 0.8f, 0, 0.9f, "T0.8 top-p 0.9");
        bench(128256, 256, 1.0f, 0, 1.0f, "T1 no filter");
    }
    ci_backend_destroy(gpu);
    ci_backend_destroy(cpu);
    return test_finish("test_cuda_sampling");
}
#endif
