/* test_spec.c — speculative decoding on tinyqwen2-code (CPU f32, or
 * CINFER_TEST_DEVICE in float32): every output with drafts verified in the
 * step equals the output without them — greedy on the 16 golden prompts
 * (and the goldens themselves), and in one batch with seeded sampling,
 * penalties, min_tokens, stop strings, n = 3, logprobs, 7-token prefill
 * chunks, prefix-cache hits and forced preemption; drafts are really
 * verified and accepted; the n-gram proposer; bad options refused. */
#include <jansson.h>
#include <stdint.h>

#include "engine/engine.h"
#include "engine/proposer.h"
#include "engine_test.h"
#include "test.h"

static char model_dir[4096];

#define NP 16
#define MAXN 3
#define MT 64

typedef struct res {
    int32_t toks[MAXN][MT];
    float lps[MAXN][MT];
    char text[MAXN][1024];
    int n[MAXN], fr[MAXN];
} res;

static ci_engine *mk(int spec, int method_draft, int block, int mbt, int64_t kv) {
    ci_engine_config c = ci_engine_default_config();
    c.model_dir = model_dir;
    c.block_size = block;
    c.max_num_batched_tokens = mbt;
    c.kv_cache_tokens = kv;
    c.max_num_seqs = 64;
    c.num_threads = 1;
    c.num_speculative_tokens = spec;
    if (spec && method_draft) {
        c.speculative_method = "draft";
        c.speculative_model = model_dir; /* the model drafting for itself: all accepted */
    }
    return test_engine_create(&c, NULL);
}

/* Runs every request at once; res[i] gets request i's samples. */
static void run(ci_engine *e, int32_t **prompts, const int *lens, const ci_engine_sampling *sp,
                int np, res *out) {
    int64_t ids[NP];
    memset(out, 0, sizeof(res) * (size_t)np);
    for (int i = 0; i < np; i++)
        CHECK_OK(ci_engine_add_request(e, prompts[i], lens[i], &sp[i], 0, &ids[i]));
    for (int guard = 0; ci_engine_has_unfinished(e) && guard < 100000; guard++) {
        const ci_engine_output *o;
        int n;
        CHECK_OK(ci_engine_step(e, &o, &n));
        for (int k = 0; k < n; k++)
            for (int i = 0; i < np; i++) {
                if (ids[i] != o[k].request_id) continue;
                int s = o[k].sample_index;
                for (int t = 0; t < o[k].num_token_ids && out[i].n[s] < MT; t++) {
                    out[i].lps[s][out[i].n[s]] = o[k].logprobs ? o[k].logprobs[t].logprob : 0;
                    out[i].toks[s][out[i].n[s]++] = o[k].token_ids[t];
                }
                size_t len = strlen(out[i].text[s]);
                if (len + o[k].text_len < sizeof out[i].text[s]) {
                    memcpy(out[i].text[s] + len, o[k].text, o[k].text_len);
                    out[i].text[s][len + o[k].text_len] = '\0';
                }
                if (o[k].finish_reason) out[i].fr[s] = o[k].finish_reason;
            }
    }
}

/* Same tokens, text and finish reasons; logprobs within 1e-4 (a verified
 * row runs in a multi-row attention and GEMM, whose float rounding differs
 * from the one-row decode's in the last bits). */
static int same(const res *a, const res *b, int nsamples, const char *what, int i) {
    for (int s = 0; s < nsamples; s++) {
        if (a->n[s] != b->n[s] ||
            memcmp(a->toks[s], b->toks[s], sizeof(int32_t) * (size_t)a->n[s]) ||
            strcmp(a->text[s], b->text[s]) || a->fr[s] != b->fr[s]) {
            fprintf(stderr, "%s: request %d sample %d: %d vs %d tokens, finish %d vs %d\n", what, i,
                    s, a->n[s], b->n[s], a->fr[s], b->fr[s]);
            return 0;
        }
        for (int t = 0; t < a->n[s]; t++)
            if (fabsf(a->lps[s][t] - b->lps[s][t]) > 1e-4f) {
                fprintf(stderr, "%s: request %d logprob %d: %g vs %g\n", what, i, t,
                        (double)a->lps[s][t], (double)b->lps[s][t]);
                return 0;
            }
    }
    return 1;
}

static int32_t *prompts[NP];
static int lens[NP];
static int32_t golden[NP][48];

static void load_golden(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/golden_public.json", model_dir);
    json_t *g = json_load_file(path, 0, NULL);
    json_t *ps = json_object_get(g, "prompts");
    for (int i = 0; i < NP; i++) {
        json_t *p = json_array_get(ps, (size_t)i), *ids = json_object_get(p, "prompt_token_ids");
        json_t *gr = json_object_get(p, "greedy_token_ids");
        lens[i] = (int)json_array_size(ids);
        prompts[i] = malloc(sizeof(int32_t) * (size_t)lens[i]);
        for (int k = 0; k < lens[i]; k++)
            prompts[i][k] = (int32_t)json_integer_value(json_array_get(ids, (size_t)k));
        for (int k = 0; k < 48; k++)
            golden[i][k] = (int32_t)json_integer_value(json_array_get(gr, (size_t)k));
    }
    json_decref(g);
}

/* Greedy on the 16 golden prompts, one batch: HF's tokens, with and without drafts. */
static void test_greedy_golden(int method_draft) {
    ci_engine_sampling sp[NP];
    for (int i = 0; i < NP; i++) {
        sp[i] = ci_engine_default_sampling();
        sp[i].temperature = 0;
        sp[i].max_tokens = 48;
        sp[i].ignore_eos = 1;
    }
    static res r[NP];
    ci_engine *e = mk(5, method_draft, 16, 2048, 0);
    if (!e) return;
    run(e, prompts, lens, sp, NP, r);
    int ok = 0;
    for (int i = 0; i < NP; i++)
        ok += r[i].n[0] == 48 && !memcmp(r[i].toks[0], golden[i], sizeof golden[i]);
    ci_engine_metrics m = ci_engine_get_metrics(e);
    printf("%s, K=5, greedy: %d/16 golden continuations exact; %lld drafted, %lld accepted "
           "(%.0f%%) in %lld verify steps\n",
           method_draft ? "draft model" : "ngram", ok, (long long)m.spec_draft_tokens,
           (long long)m.spec_accepted_tokens,
           100.0 * (double)m.spec_accepted_tokens /
               (double)(m.spec_draft_tokens + !m.spec_draft_tokens),
           (long long)m.spec_verify_steps);
    CHECK(ok == NP);
    CHECK(m.spec_draft_tokens > 0 && m.spec_accepted_tokens > 0);
    if (method_draft) /* a model drafting for itself is always right */
        CHECK(m.spec_accepted_tokens == m.spec_draft_tokens);
    ci_engine_destroy(e);
}

/* Mixed requests in one batch under stress, against the same run without drafts. */
static void test_mixed(int method_draft) {
    ci_engine_sampling sp[NP];
    static const char *stops[] = {"\n\n", "return"};
    for (int i = 0; i < NP; i++) {
        ci_engine_sampling *p = &sp[i];
        *p = ci_engine_default_sampling();
        p->max_tokens = MT - 4 * (i % 3);
        p->temperature = i % 4 == 0 ? 0.0f : 0.8f;
        p->seed = 1000 + i;
        p->logprobs = 2;
        if (i % 3 == 0) p->repetition_penalty = 1.2f;
        if (i % 3 == 1) {
            p->presence_penalty = 0.4f;
            p->frequency_penalty = 0.3f;
            p->min_tokens = 6;
        }
        if (i % 5 == 2) {
            p->stop = stops;
            p->num_stop = 2;
        }
        if (i == 7) p->n = 3;
        if (i % 2) p->ignore_eos = 1;
    }
    /* requests 8.. repeat prompts 0.. (prefix-cache hits) */
    int32_t *pr[NP];
    int ln[NP];
    for (int i = 0; i < NP; i++) {
        pr[i] = prompts[i < 8 ? i : i - 8];
        ln[i] = lens[i < 8 ? i : i - 8];
    }
    static res base[NP], spec[NP];
    /* 7-token chunks, block 4, a KV cache small enough to force preemption */
    for (int pass = 0; pass < 2; pass++) {
        ci_engine *e = mk(pass ? 4 : 0, method_draft, 4, 7, 300);
        if (!e) return;
        run(e, pr, ln, sp, NP, pass ? spec : base);
        ci_engine_metrics m = ci_engine_get_metrics(e);
        if (pass) {
            printf("mixed batch (%s): %lld preemptions, %lld prefix-hit tokens, %lld drafted, %lld "
                   "accepted\n",
                   method_draft ? "draft model" : "ngram", (long long)m.num_preemptions,
                   (long long)m.prefix_cache_hit_tokens, (long long)m.spec_draft_tokens,
                   (long long)m.spec_accepted_tokens);
            CHECK(m.num_preemptions > 0);
            CHECK(m.prefix_cache_hit_tokens > 0);
            CHECK(m.spec_accepted_tokens > 0);
        }
        CHECK(ci_bm_num_used(ci_sched_block_manager(ci_engine_scheduler(e))) == 0);
        ci_engine_destroy(e);
    }
    int ok = 0;
    for (int i = 0; i < NP; i++)
        ok += same(&base[i], &spec[i], sp[i].n, "mixed", i);
    CHECKF(ok == NP, "%d of %d requests equal with drafts", ok, NP);
}

static void test_ngram(void) {
    int32_t t[] = {1, 2, 3, 4, 9, 1, 2, 3, 4, 5, 6, 1, 2, 3}, out[8];
    int n = (int)(sizeof t / sizeof t[0]);
    /* suffix 1 2 3 last seen at 5: followed by 4 5 6 1 2 */
    int k = ci_ngram_propose(t, n, 1, 3, 4, out);
    CHECK(k == 4 && out[0] == 4 && out[1] == 5 && out[2] == 6 && out[3] == 1);
    CHECK(ci_ngram_propose(t, n, 1, 3, 8, out) == 6); /* only 6 tokens follow */
    int32_t u[] = {7, 8, 9};
    CHECK(ci_ngram_propose(u, 3, 1, 2, 4, out) == 0); /* no repeat: no draft */
}

static void test_bad_options(void) {
    struct {
        int k;
        const char *method, *model;
        int nmin, nmax;
    } bad[] = {{17, "ngram", NULL, 0, 0}, {-1, NULL, NULL, 0, 0},   {3, "ngram", NULL, 4, 2},
               {3, "eagle", NULL, 0, 0},  {0, "ngram", NULL, 0, 0}, {3, "draft", NULL, 0, 0},
               {3, "ngram", "x", 0, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ci_engine_config c = ci_engine_default_config();
        c.model_dir = model_dir;
        c.num_speculative_tokens = bad[i].k;
        c.speculative_method = bad[i].method;
        c.speculative_model = bad[i].model;
        c.ngram_min = bad[i].nmin;
        c.ngram_max = bad[i].nmax;
        ci_status s = ci_engine_config_check(&c);
        CHECKF(s.code == CI_ERR_INVALID, "bad option set %zu accepted", i);
    }
}

int main(void) {
    snprintf(model_dir, sizeof model_dir, "%s/models/tinyqwen2-code", test_source_dir());
    test_ngram();
    test_bad_options();
    load_golden();
    test_greedy_golden(0);
    test_mixed(0);
    test_greedy_golden(1);
    test_mixed(1);
    for (int i = 0; i < NP; i++)
        free(prompts[i]);
    return test_finish("test_spec");
}
