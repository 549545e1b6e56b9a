/* test_engine.c — the engine loop on tinyqwen2-code: batch invariance
 * (chunking, block sizes, n), prefix caching, preemption, sampling
 * reproducibility, stop strings, min_tokens, penalties, abort, bad input,
 * the public API. */
#include <stdint.h>

#include "cinfer.h"
#include "engine/engine.h"
#include "engine/generate.h"
#include "engine/scheduler.h"
#include "engine_test.h"
#include "test.h"

#define MAXS 4
#define MAXTOK 64

typedef struct res {
    int32_t toks[MAXTOK];
    int n;
    char text[2048];
    size_t tlen;
    int fr;
} res;

typedef struct job {
    int32_t *prompt;
    int np;
    ci_engine_sampling sp;
    int priority;
    int64_t id;
    int err;
    int abort_at; /* abort after this many steps (0 = never) */
    res r[MAXS];
} job;

static char model_dir[4096];

/* BF16 on a GPU is not batch-invariant: batch size picks the GEMM kernel
 * (GEMV at 1-2 rows, cuBLASLt tiles above) and the attention kernel, so
 * logits differ in the last bits and a greedy near-tie or a seeded draw on a
 * boundary can flip. There the invariance checks count and report
 * differences instead of failing; float32 (the parity mode) must match. */
static int lax_invariance(void) {
    const char *dev = getenv("CINFER_TEST_DEVICE"), *dt = getenv("CINFER_TEST_DTYPE");
    return dev && *dev && dt && !strcmp(dt, "bfloat16");
}
static int lax_diffs; /* differences reported instead of failed (bf16 on a GPU) */
/* An output that must equal one from another batch composition. */
#define CHECK_SAME_OUT(cond, ...)                                                                  \
    do {                                                                                           \
        if (lax_invariance()) {                                                                    \
            if (!(cond)) lax_diffs++;                                                              \
        } else {                                                                                   \
            CHECKF(cond, __VA_ARGS__);                                                             \
        }                                                                                          \
    } while (0)

static ci_engine *mk_engine(int block_size, int mbt, int64_t kv_tokens, int prefix) {
    ci_engine_config c = ci_engine_default_config();
    c.model_dir = model_dir;
    c.block_size = block_size;
    c.max_num_batched_tokens = mbt;
    c.kv_cache_tokens = kv_tokens;
    c.enable_prefix_caching = prefix;
    c.max_num_seqs = 64;
    c.num_threads = 1; /* a shared 2-core machine: no pool handoffs */
    /* CINFER_TEST_DEVICE=cuda runs the suite on the GPU, in float32 unless
     * CINFER_TEST_DTYPE says otherwise (bf16 GEMMs may round differently at
     * different batch sizes, which can flip a greedy near-tie) */
    return test_engine_create(&c, getenv("CINFER_TEST_DTYPE"));
}

static job *find_job(job *jobs, int nj, int64_t id) {
    for (int i = 0; i < nj; i++)
        if (jobs[i].id == id) return &jobs[i];
    return NULL;
}

/* Adds every job (errors recorded per job), runs to completion. */
static int run_jobs(ci_engine *e, job *jobs, int nj, int check) {
    for (int i = 0; i < nj; i++) {
        memset(jobs[i].r, 0, sizeof jobs[i].r);
        ci_status s = ci_engine_add_request(e, jobs[i].prompt, jobs[i].np, &jobs[i].sp,
                                            jobs[i].priority, &jobs[i].id);
        jobs[i].err = s.code;
        if (s.code) jobs[i].id = -100 - i;
    }
    int steps = 0, bad = 0;
    while (ci_engine_has_unfinished(e)) {
        const ci_engine_output *o;
        int n;
        ci_status s = ci_engine_step(e, &o, &n);
        if (s.code) {
            CHECKF(0, "step: %s", s.msg);
            return -1;
        }
        steps++;
        for (int i = 0; i < nj; i++)
            if (jobs[i].abort_at == steps && !jobs[i].err) ci_engine_abort(e, jobs[i].id);
        if (check) {
            ci_status c = ci_sched_check(ci_engine_scheduler(e));
            if (c.code && !bad++) CHECKF(0, "sched_check: %s", c.msg);
        }
        for (int k = 0; k < n; k++) {
            job *j = find_job(jobs, nj, o[k].request_id);
            if (!j || o[k].sample_index >= MAXS) {
                CHECK(0);
                continue;
            }
            res *r = &j->r[o[k].sample_index];
            CHECK(r->fr == 0); /* nothing after the finish */
            for (int t = 0; t < o[k].num_token_ids; t++)
                if (r->n < MAXTOK) r->toks[r->n++] = o[k].token_ids[t];
            if (r->tlen + o[k].text_len < sizeof r->text) {
                memcpy(r->text + r->tlen, o[k].text, o[k].text_len);
                r->tlen += o[k].text_len;
                r->text[r->tlen] = 0;
            }
            if (o[k].finish_reason) r->fr = o[k].finish_reason;
        }
        if (steps > 100000) {
            CHECK(0);
            break;
        }
    }
    return steps;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static int same_res(const res *a, const res *b) {
    return a->n == b->n && !memcmp(a->toks, b->toks, sizeof(int32_t) * (size_t)a->n) &&
           a->fr == b->fr;
}

static void greedy(ci_engine_sampling *sp, int max_tokens) {
    *sp = ci_engine_default_sampling();
    sp->temperature = 0.0f;
    sp->max_tokens = max_tokens;
    sp->ignore_eos = 1;
}

/* ---- batch invariance ---- */

static job *make_jobs(int nj, int maxlen, int max_tokens, const int32_t *shared, int nshared) {
    job *jobs = calloc((size_t)nj, sizeof *jobs);
    for (int i = 0; i < nj; i++) {
        int np = 1 + (int)(rnd() % (unsigned)maxlen);
        if (i == 0) np = 1;
        if (i == 1) np = maxlen;
        jobs[i].prompt = malloc(sizeof(int32_t) * (size_t)(np + nshared));
        int k = 0;
        if (shared) {
            memcpy(jobs[i].prompt, shared, sizeof(int32_t) * (size_t)nshared);
            k = nshared;
        }
        for (int t = 0; t < np; t++)
            jobs[i].prompt[k++] = (int32_t)(rnd() % 8000);
        jobs[i].np = k;
        greedy(&jobs[i].sp, max_tokens);
    }
    return jobs;
}

static void free_jobs(job *jobs, int nj) {
    for (int i = 0; i < nj; i++)
        free(jobs[i].prompt);
    free(jobs);
}

static void test_batch_invariance(void) {
    const int NJ = 32, MAXLEN = CI_ASAN ? 64 : 300, MT = CI_ASAN ? 4 : 6;
    job *jobs = make_jobs(NJ, MAXLEN, MT, NULL, 0);
    /* reference: each request alone (same engine, one at a time) */
    res *ref = calloc((size_t)NJ, sizeof *ref);
    ci_engine *e = mk_engine(16, 2048, 0, 0);
    if (!e) return;
    for (int i = 0; i < NJ; i++) {
        run_jobs(e, &jobs[i], 1, 0);
        ref[i] = jobs[i].r[0];
        CHECK(ref[i].n == MT && ref[i].fr == CI_FINISH_LENGTH);
    }
    ci_engine_destroy(e);
    struct {
        int bs, mbt;
    } cfgs[] = {{16, 2048}, {16, 7}, {1, 256}, {32, 512}};
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        double tc = ci_now();
        e = mk_engine(cfgs[c].bs, cfgs[c].mbt, 0, 1);
        if (!e) continue;
        run_jobs(e, jobs, NJ, 1);
        int diff = 0;
        for (int i = 0; i < NJ; i++)
            if (!same_res(&jobs[i].r[0], &ref[i])) diff++;
        if (lax_invariance())
            printf("bf16: block size %d, max_num_batched_tokens %d: %d of %d differ from alone "
                   "(reported, not checked)\n",
                   cfgs[c].bs, cfgs[c].mbt, diff, NJ);
        else
            CHECKF(diff == 0, "block size %d, max_num_batched_tokens %d: %d of %d differ",
                   cfgs[c].bs, cfgs[c].mbt, diff, NJ);
        ci_engine_metrics m = ci_engine_get_metrics(e);
        CHECK(m.kv_blocks_used == 0 && m.num_running == 0 && m.num_waiting == 0);
        ci_engine_destroy(e);
        printf("config bs %d mbt %d: %.1f s\n", cfgs[c].bs, cfgs[c].mbt, ci_now() - tc);
    }
    /* n = 3: greedy samples equal each other and the n=1 result */
    e = mk_engine(16, 2048, 0, 1);
    if (e) {
        for (int i = 0; i < 8; i++)
            jobs[i].sp.n = 3;
        run_jobs(e, jobs, 8, 1);
        int ndiff3 = 0;
        for (int i = 0; i < 8; i++)
            for (int k = 0; k < 3; k++) {
                int same = same_res(&jobs[i].r[k], &ref[i]);
                ndiff3 += !same;
                if (!lax_invariance()) CHECKF(same, "n=3 job %d sample %d", i, k);
            }
        if (lax_invariance()) printf("bf16: n=3 samples differing from n=1: %d of 24\n", ndiff3);
        /* seeded sampling with n = 3: reproducible, samples differ */
        for (int i = 0; i < 8; i++) {
            jobs[i].sp.temperature = 1.0f;
            jobs[i].sp.seed = 1234 + i;
        }
        run_jobs(e, jobs, 8, 1);
        res first[8][3];
        for (int i = 0; i < 8; i++)
            for (int k = 0; k < 3; k++)
                first[i][k] = jobs[i].r[k];
        int distinct = 0;
        for (int i = 0; i < 8; i++)
            if (!same_res(&first[i][0], &first[i][1])) distinct++;
        CHECK(distinct > 0);
        /* again, in another batch composition: job order reversed, plus others */
        job rev[12];
        for (int i = 0; i < 8; i++)
            rev[i] = jobs[7 - i];
        for (int i = 8; i < 12; i++)
            rev[i] = jobs[i + 8];
        run_jobs(e, rev, 12, 1);
        /* bf16 on a GPU: cuBLAS picks other kernels for other batch sizes,
         * so logits differ in the last bits and a draw on a probability
         * boundary may differ; counted, not failed (float32 must match) */
        int lax = lax_invariance();
        int ndiff = 0;
        for (int i = 0; i < 8; i++)
            for (int k = 0; k < 3; k++) {
                int same = same_res(&rev[7 - i].r[k], &first[i][k]);
                ndiff += !same;
                if (!lax) CHECKF(same, "seeded job %d sample %d not reproducible", i, k);
            }
        printf("seeded samples differing across batch compositions: %d of 24%s\n", ndiff,
               lax ? " (bf16: reported, not checked)" : "");
        for (int i = 0; i < 8; i++) {
            jobs[i].sp.n = 1;
            jobs[i].sp.temperature = 0.0f;
            jobs[i].sp.seed = -1;
        }
        ci_engine_destroy(e);
    }
    free(ref);
    free_jobs(jobs, NJ);
}

/* ---- prefix caching + preemption ---- */

static void test_prefix_and_preemption(void) {
    const int NJ = CI_ASAN ? 8 : 12, SHARED = 100, MT = CI_ASAN ? 4 : 6;
    int32_t shared[100];
    for (int i = 0; i < SHARED; i++)
        shared[i] = (int32_t)(rnd() % 8000);
    job *jobs = make_jobs(NJ, 40, MT, shared, SHARED);
    res ref[12];
    ci_engine *e = mk_engine(16, 2048, 0, 0);
    if (!e) return;
    run_jobs(e, jobs, NJ, 1);
    for (int i = 0; i < NJ; i++)
        ref[i] = jobs[i].r[0];
    ci_engine_metrics m = ci_engine_get_metrics(e);
    CHECK(m.prefix_cache_hit_tokens == 0);
    ci_engine_destroy(e);

    e = mk_engine(16, 2048, 0, 1);
    if (!e) return;
    /* first request alone, so the others find its blocks */
    run_jobs(e, jobs, 1, 1);
    run_jobs(e, jobs + 1, NJ - 1, 1);
    m = ci_engine_get_metrics(e);
    printf("prefix caching: queried %lld, hit %lld tokens\n",
           (long long)m.prefix_cache_queried_tokens, (long long)m.prefix_cache_hit_tokens);
    CHECK(m.prefix_cache_hit_tokens >= (NJ - 1) * 96);
    for (int i = 0; i < NJ; i++)
        CHECK_SAME_OUT(same_res(&jobs[i].r[0], &ref[i]), "prefix job %d", i);
    /* prompt_logprobs on a cached prompt: every position is still reported */
    {
        ci_engine_sampling sp;
        greedy(&sp, 2);
        sp.prompt_logprobs = 1;
        int64_t id;
        CHECK_OK(ci_engine_add_request(e, jobs[0].prompt, jobs[0].np, &sp, 0, &id));
        int got = 0;
        while (ci_engine_has_unfinished(e)) {
            const ci_engine_output *o;
            int n;
            CHECK_OK(ci_engine_step(e, &o, &n));
            for (int k = 0; k < n; k++) {
                if (!o[k].prompt_logprobs) continue;
                got++;
                CHECK(o[k].num_prompt_logprobs == jobs[0].np - 1);
                int badtok = 0;
                for (int i = 0; i < o[k].num_prompt_logprobs; i++)
                    badtok += o[k].prompt_logprobs[i].token != jobs[0].prompt[i + 1] ||
                              o[k].prompt_logprobs[i].num_top != 1 ||
                              o[k].prompt_logprobs[i].logprob > 0;
                CHECK(badtok == 0);
            }
        }
        CHECK(got == 1);
    }
    ci_engine_destroy(e);

    /* eviction pressure + preemption: the cache holds ~1.3 requests */
    int64_t kv = 200;
    e = mk_engine(16, 64, kv, 1);
    if (!e) return;
    run_jobs(e, jobs, NJ, 1);
    m = ci_engine_get_metrics(e);
    printf("small cache: preemptions %lld, hit %lld tokens, peak %d of %d blocks\n",
           (long long)m.num_preemptions, (long long)m.prefix_cache_hit_tokens,
           m.peak_kv_blocks_used, m.num_kv_blocks);
    CHECK(m.num_preemptions > 0);
    for (int i = 0; i < NJ; i++)
        CHECK_SAME_OUT(same_res(&jobs[i].r[0], &ref[i]), "small cache job %d", i);
    CHECK(m.kv_blocks_used == 0);
    ci_engine_destroy(e);

    /* preemption without prefix caching */
    e = mk_engine(8, 48, kv, 0);
    if (!e) return;
    run_jobs(e, jobs, NJ, 1);
    m = ci_engine_get_metrics(e);
    printf("small cache, no prefix caching: preemptions %lld\n", (long long)m.num_preemptions);
    CHECK(m.num_preemptions > 0);
    for (int i = 0; i < NJ; i++)
        CHECK_SAME_OUT(same_res(&jobs[i].r[0], &ref[i]), "no-prefix small cache job %d", i);
    ci_engine_destroy(e);
    free_jobs(jobs, NJ);
}

/* ---- sampling ---- */

static void test_sampling(void) {
    ci_engine *e = mk_engine(16, 2048, 0, 1);
    if (!e) return;
    ci_tokenizer *tok = ci_engine_tokenizer(e);
    CHECK(tok != NULL);
    const char *text = "def fibonacci(n):";
    int32_t *ids = NULL;
    size_t nids = 0;
    CHECK_OK(ci_tokenizer_encode(tok, text, strlen(text), true, &ids, &nids));
    job j[4];
    memset(j, 0, sizeof j);
    /* greedy reference with text */
    j[0].prompt = ids;
    j[0].np = (int)nids;
    greedy(&j[0].sp, 40);
    run_jobs(e, j, 1, 1);
    res g = j[0].r[0];
    CHECK(g.n == 40);
    /* full decode equals the streamed text */
    char *full = NULL;
    size_t flen = 0;
    CHECK_OK(ci_tokenizer_decode(tok, g.toks, (size_t)g.n, true, &full, &flen));
    CHECKF(flen == g.tlen && !memcmp(full, g.text, flen), "streamed text differs from decode");

    /* stop string spanning two tokens */
    char stop[32] = {0};
    for (int i = 1; i + 1 < g.n && !stop[0]; i++) {
        char *a = NULL, *b = NULL;
        size_t la, lb;
        ci_tokenizer_decode(tok, &g.toks[i], 1, true, &a, &la);
        ci_tokenizer_decode(tok, &g.toks[i + 1], 1, true, &b, &lb);
        if (la >= 2 && lb >= 2 && la < 12 && lb < 12) {
            snprintf(stop, sizeof stop, "%.*s%.2s", 2, a + la - 2, b);
            /* the prefix before position must not already contain it */
        }
        free(a);
        free(b);
    }
    CHECK(stop[0] != 0);
    const char *hit = strstr(full, stop);
    CHECK(hit != NULL);
    if (hit) {
        const char *stops[1] = {stop};
        greedy(&j[0].sp, 40);
        j[0].sp.stop = stops;
        j[0].sp.num_stop = 1;
        run_jobs(e, j, 1, 1);
        size_t want = (size_t)(hit - full);
        CHECKF(j[0].r[0].tlen == want && !memcmp(j[0].r[0].text, full, want),
               "stop '%s': got %zu bytes '%s', want %zu", stop, j[0].r[0].tlen, j[0].r[0].text,
               want);
        CHECK(j[0].r[0].fr == CI_FINISH_STOP);
        CHECK(j[0].r[0].n < 40);
        printf("stop string '%s' cut the text at %zu bytes after %d tokens\n", stop, want,
               j[0].r[0].n);
    }
    /* a stop string that starts matching but never completes: the held-back
     * text is released, nothing is lost */
    if (g.tlen > 8) {
        char partial[16];
        snprintf(partial, sizeof partial, "%.3s\x01", full + 4);
        const char *stops[2] = {partial, "\x02never"};
        greedy(&j[0].sp, 40);
        j[0].sp.stop = stops;
        j[0].sp.num_stop = 2;
        run_jobs(e, j, 1, 1);
        CHECK(j[0].r[0].tlen == g.tlen && !memcmp(j[0].r[0].text, g.text, g.tlen));
        CHECK(j[0].r[0].fr == CI_FINISH_LENGTH && j[0].r[0].n == 40);
    }
    free(full);

    /* stop token id + min_tokens */
    greedy(&j[0].sp, 20);
    int32_t st = g.toks[3];
    j[0].sp.stop_token_ids = &st;
    j[0].sp.num_stop_token_ids = 1;
    run_jobs(e, j, 1, 1);
    CHECK(j[0].r[0].n == 4 && j[0].r[0].fr == CI_FINISH_STOP && j[0].r[0].toks[3] == st);
    j[0].sp.min_tokens = 10;
    run_jobs(e, j, 1, 1);
    CHECK(j[0].r[0].n >= 10);
    for (int i = 0; i < 10 && i < j[0].r[0].n; i++)
        CHECK(j[0].r[0].toks[i] != st);

    /* seeded sampling: reproducible, batch-independent, seed-dependent */
    for (int i = 0; i < 4; i++) {
        j[i].prompt = ids;
        j[i].np = (int)nids;
        j[i].sp = ci_engine_default_sampling();
        j[i].sp.max_tokens = 24;
        j[i].sp.ignore_eos = 1;
        j[i].sp.temperature = 0.9f;
        j[i].sp.top_p = 0.95f;
        j[i].sp.top_k = 50;
        j[i].sp.seed = 7 + (i == 3);
    }
    run_jobs(e, j, 1, 1);
    res alone = j[0].r[0];
    run_jobs(e, j, 4, 1);
    CHECK_SAME_OUT(same_res(&j[0].r[0], &alone) && same_res(&j[1].r[0], &alone) &&
                       same_res(&j[2].r[0], &alone),
                   "jobs differ from alone");
    CHECK(!same_res(&j[3].r[0], &alone));

    /* penalties: a repetitive greedy continuation repeats less */
    int uniq_g = 0;
    for (int i = 0; i < g.n; i++) {
        int seen = 0;
        for (int k = 0; k < i; k++)
            seen |= g.toks[k] == g.toks[i];
        uniq_g += !seen;
    }
    float pens[3][3] = {{1.5f, 0, 0}, {1.0f, 1.5f, 0}, {1.0f, 0, 1.0f}};
    for (int p = 0; p < 3; p++) {
        greedy(&j[0].sp, 40);
        j[0].sp.repetition_penalty = pens[p][0];
        j[0].sp.presence_penalty = pens[p][1];
        j[0].sp.frequency_penalty = pens[p][2];
        run_jobs(e, j, 1, 1);
        int uniq = 0;
        for (int i = 0; i < j[0].r[0].n; i++) {
            int seen = 0;
            for (int k = 0; k < i; k++)
                seen |= j[0].r[0].toks[k] == j[0].r[0].toks[i];
            uniq += !seen;
        }
        CHECKF(uniq > uniq_g, "penalty %d: %d distinct tokens, greedy %d", p, uniq, uniq_g);
    }

    /* logprobs: sampled token's value is the top-1 under greedy */
    greedy(&j[0].sp, 3);
    j[0].sp.logprobs = 5;
    j[0].sp.prompt_logprobs = 2;
    CHECK_OK(ci_engine_add_request(e, ids, (int)nids, &j[0].sp, 0, &j[0].id));
    int got_lp = 0, got_plp = 0;
    while (ci_engine_has_unfinished(e)) {
        const ci_engine_output *o;
        int n;
        CHECK_OK(ci_engine_step(e, &o, &n));
        for (int k = 0; k < n; k++) {
            if (o[k].logprobs) {
                const ci_engine_logprob *lp = o[k].logprobs;
                CHECK(lp->num_top == 5 && lp->top_ids[0] == lp->token && lp->logprob <= 0);
                CHECK(lp->top_logprobs[0] >= lp->top_logprobs[4]);
                got_lp++;
            }
            if (o[k].prompt_logprobs) {
                CHECK(o[k].num_prompt_logprobs == (int)nids - 1);
                CHECK(o[k].prompt_logprobs[0].token == ids[1] &&
                      o[k].prompt_logprobs[1].token == ids[2] &&
                      o[k].prompt_logprobs[1].num_top == 2);
                got_plp++;
            }
        }
    }
    CHECK(got_lp == 3 && got_plp == 1);
    free(ids);
    ci_engine_destroy(e);
}

/* ---- abort and bad input ---- */

static void test_abort_and_bad_input(void) {
    ci_engine *e = mk_engine(16, 256, 4096, 1);
    if (!e) return;
    job *jobs = make_jobs(10, 80, 30, NULL, 0);
    for (int i = 0; i < 10; i += 2)
        jobs[i].abort_at = 1 + i;
    jobs[1].sp.n = 2;
    jobs[2].sp.n = 3;
    run_jobs(e, jobs, 10, 1);
    for (int i = 0; i < 10; i++) {
        for (int k = 0; k < jobs[i].sp.n; k++)
            CHECKF(jobs[i].r[k].fr == (i % 2 == 0 ? CI_FINISH_ABORT : CI_FINISH_LENGTH),
                   "job %d sample %d: %d", i, k, jobs[i].r[k].fr);
    }
    ci_engine_metrics m = ci_engine_get_metrics(e);
    ci_block_manager *bm = ci_sched_block_manager(ci_engine_scheduler(e));
    CHECK(m.kv_blocks_used == 0 && ci_bm_num_available(bm) == m.num_kv_blocks);
    CHECK(ci_engine_abort(e, 999999).code != CI_OK);

    /* bad requests between good ones */
    for (int i = 0; i < 10; i++)
        jobs[i].abort_at = 0, jobs[i].sp.n = 1;
    jobs[1].prompt[0] = 8192;  /* out of range */
    jobs[3].sp.max_tokens = 0; /* max_tokens <= 0 */
    jobs[5].sp.top_p = 1.5f;   /* top_p */
    jobs[6].sp.top_p = 0.0f;
    jobs[7].sp.temperature = -1.0f; /* temperature */
    int32_t *big = calloc(3000, sizeof(int32_t));
    int32_t *keep9 = jobs[9].prompt;
    int keepn = jobs[9].np;
    jobs[9].prompt = big; /* longer than the context (2048) */
    jobs[9].np = 3000;
    run_jobs(e, jobs, 10, 1);
    int bad[10] = {0, 1, 0, 1, 0, 1, 1, 1, 0, 1};
    for (int i = 0; i < 10; i++) {
        CHECKF((jobs[i].err != 0) == bad[i], "job %d: err %d", i, jobs[i].err);
        if (!bad[i]) CHECK(jobs[i].r[0].n == 30 && jobs[i].r[0].fr == CI_FINISH_LENGTH);
    }
    jobs[9].prompt = keep9;
    jobs[9].np = keepn;
    /* prompt + max_tokens that can never fit the cache */
    ci_engine_sampling sp;
    greedy(&sp, 2000);
    int64_t id;
    CHECK(ci_engine_add_request(e, big, 1000, &sp, 0, &id).code == CI_ERR_CAPACITY);
    free(big);
    CHECK(!ci_engine_has_unfinished(e));
    ci_engine_destroy(e);
    free_jobs(jobs, 10);
}

/* ---- public API ---- */

static void test_api(void) {
    cinfer_engine_config c = cinfer_engine_config_default();
    c.model_dir = model_dir;
    c.kv_cache_tokens = 2048;
    c.num_threads = 1;
    cinfer_engine *e;
    cinfer_error err;
    CHECKF(cinfer_engine_create(&c, &e, &err) == 0, "%s", err.message);
    if (!e) return;
    cinfer_sampling_params sp = cinfer_sampling_params_default();
    sp.temperature = 0;
    sp.max_tokens = 8;
    int64_t a, b;
    CHECK(cinfer_add_request(e, "def fibonacci(n):", NULL, 0, &sp, 0, &a, &err) == 0);
    sp.top_p = 2;
    CHECK(cinfer_add_request(e, "x", NULL, 0, &sp, 0, &b, &err) == CINFER_ERR_INVALID && b == -1);
    CHECK(strstr(err.message, "top_p") != NULL);
    int ntok = 0, fin = 0;
    char text[512] = {0};
    while (cinfer_has_unfinished(e)) {
        const cinfer_output *o;
        int n;
        CHECK(cinfer_step(e, &o, &n, &err) == 0);
        for (int i = 0; i < n; i++) {
            CHECK(o[i].request_id == a);
            ntok += o[i].num_token_ids;
            strncat(text, o[i].text, o[i].text_len);
            if (o[i].finish_reason) fin = o[i].finish_reason;
        }
    }
    CHECK(ntok == 8 && fin == CINFER_FINISH_LENGTH);
    int32_t *ids;
    size_t nid;
    CHECK(cinfer_tokenize(e, text, 0, &ids, &nid, &err) == 0 && nid > 0);
    char *back;
    CHECK(cinfer_detokenize(e, ids, nid, 1, &back, &err) == 0 && !strcmp(back, text));
    cinfer_free(ids);
    cinfer_free(back);
    cinfer_metrics m = cinfer_get_metrics(e);
    CHECK(m.generation_tokens == 8 && m.num_finished == 1 && m.kv_blocks_used == 0);
    {
        /* async scheduling, a server's loop: cinfer_complete_step takes the launched step's
         * tokens in, a request added then joins the next plan, and the text is the same;
         * cinfer_early_outputs hands out a step's first tokens before the next plan, and
         * only those (each output once: the texts still match) */
        cinfer_engine_config ca = c;
        ca.async_scheduling = 1;
        cinfer_engine *ea;
        CHECKF(cinfer_engine_create(&ca, &ea, &err) == 0, "%s", err.message);
        cinfer_sampling_params sa = cinfer_sampling_params_default();
        sa.temperature = 0;
        sa.max_tokens = 8;
        int64_t ids2[2];
        char txt2[2][512] = {{0}};
        int steps = 0, ntok2[2] = {0, 0}, first_early[2] = {0, 0}, early_calls = 0;
        CHECK(ea &&
              cinfer_add_request(ea, "def fibonacci(n):", NULL, 0, &sa, 0, &ids2[0], &err) == 0);
        while (ea && cinfer_has_unfinished(ea)) {
            const cinfer_output *o;
            int n;
            CHECK(cinfer_complete_step(ea, &err) == 0);
            CHECK(cinfer_complete_step(ea, &err) == 0); /* nothing in flight: a no-op */
            CHECK(cinfer_early_outputs(ea, &o, &n, &err) == 0);
            early_calls += n > 0;
            for (int i = 0; i < n; i++) {
                int k = o[i].request_id == ids2[0] ? 0 : 1;
                if (ntok2[k] == 0 && o[i].num_token_ids > 0) first_early[k] = 1;
                /* only first tokens: the running request's token of that
                 * step comes from cinfer_step, after the next launch */
                CHECKF(ntok2[k] == 0, "an early output of request %d after its first token", k);
                ntok2[k] += o[i].num_token_ids;
                strncat(txt2[k], o[i].text, o[i].text_len);
            }
            if (++steps == 3) {
                CHECK(cinfer_add_request(ea, "def fibonacci(n):", NULL, 0, &sa, 0, &ids2[1],
                                         &err) == 0);
                int run0 = cinfer_get_metrics(ea).num_running;
                CHECK(cinfer_step(ea, &o, &n, &err) == 0);
                CHECKF(cinfer_get_metrics(ea).num_running == run0 + 1,
                       "the request added after complete_step is not in the next plan");
            } else {
                CHECK(cinfer_step(ea, &o, &n, &err) == 0);
            }
            for (int i = 0; i < n; i++) {
                int k = o[i].request_id == ids2[0] ? 0 : 1;
                ntok2[k] += o[i].num_token_ids;
                strncat(txt2[k], o[i].text, o[i].text_len);
            }
        }
        CHECK(ntok2[0] == 8 && ntok2[1] == 8);
        CHECKF(first_early[0] && first_early[1] && early_calls == 2,
               "first tokens early: %d %d, in %d calls (want 2: one a request)", first_early[0],
               first_early[1], early_calls);
        CHECKF(!strcmp(txt2[0], text) && !strcmp(txt2[1], text), "async text '%s' / '%s' vs '%s'",
               txt2[0], txt2[1], text);
        cinfer_engine_destroy(ea);
    }
    /* logit_bias: copied at add (the caller's list may change after), +100 forces its token
     * under top-p sampling, a bad id or bias is refused by name */
    cinfer_logit_bias lb[2] = {{309, 100.0f}, {5, -100.0f}};
    sp = cinfer_sampling_params_default();
    sp.max_tokens = 6;
    sp.top_p = 0.9f;
    sp.seed = 11;
    sp.logit_bias = lb;
    sp.num_logit_bias = 2;
    CHECK(cinfer_add_request(e, "def fibonacci(n):", NULL, 0, &sp, 0, &a, &err) == 0);
    lb[0].token = 7;
    int forced = 0;
    ntok = 0;
    while (cinfer_has_unfinished(e)) {
        const cinfer_output *o;
        int n;
        CHECK(cinfer_step(e, &o, &n, &err) == 0);
        for (int i = 0; i < n; i++)
            for (int t = 0; t < o[i].num_token_ids; t++)
                ntok++, forced += o[i].token_ids[t] == 309;
    }
    CHECKF(ntok == 6 && forced == 6, "%d of %d tokens were the biased one", forced, ntok);
    lb[0] = (cinfer_logit_bias){cinfer_vocab_size(e), 1.0f};
    CHECK(cinfer_add_request(e, "x", NULL, 0, &sp, 0, &b, &err) == CINFER_ERR_INVALID &&
          strstr(err.message, "logit_bias token"));
    lb[0] = (cinfer_logit_bias){3, 100.5f};
    CHECK(cinfer_add_request(e, "x", NULL, 0, &sp, 0, &b, &err) == CINFER_ERR_INVALID &&
          strstr(err.message, "[-100, 100]"));
    cinfer_engine_destroy(e);
}

/* ---- plan-ahead scheduling ---- */

/* A mix of requests run without async scheduling and with plan-ahead:
 * the same tokens, finish reasons and texts. Every step but the first
 * launches while the one before is in flight, penalties too (their lists
 * are built once that step completes, while the next forward runs); a step
 * that owes prompt logprobs completes before the next one is planned (its
 * logits). */
static void test_plan_ahead(void) {
    const int NJ = 12;
    const char *stops[1] = {"\n"};
    job *jobs = make_jobs(NJ, 40, 24, NULL, 0);
    for (int i = 0; i < NJ; i++) {
        ci_engine_sampling *sp = &jobs[i].sp;
        switch (i % 6) {
        case 1: /* seeded sampling, two samples */
            sp->temperature = 0.9f;
            sp->top_p = 0.9f;
            sp->seed = 1000 + i;
            sp->n = 2;
            break;
        case 2: /* EOS, a stop string and a short max_tokens */
            sp->ignore_eos = 0;
            sp->stop = stops;
            sp->num_stop = 1;
            sp->max_tokens = 7 + i;
            break;
        case 3: sp->logprobs = 3; break;
        case 4:
            sp->min_tokens = 5;
            sp->ignore_eos = 0;
            break;
        case 5: jobs[i].abort_at = 6; break;
        default: break;
        }
    }
    job *ref = calloc((size_t)NJ, sizeof *ref);
    memcpy(ref, jobs, sizeof *ref * (size_t)NJ);
    for (int round = 0; round < 2; round++) {
        if (round == 1) { /* a penalty, and prompt logprobs: that prompt's steps wait */
            jobs[0].sp.repetition_penalty = ref[0].sp.repetition_penalty = 1.3f;
            jobs[1].sp.prompt_logprobs = ref[1].sp.prompt_logprobs = 1;
        }
        int64_t ahead = 0, steps = 0;
        for (int mode = 0; mode < 2; mode++) {
            ci_engine_config c = ci_engine_default_config();
            c.model_dir = model_dir;
            c.block_size = 16;
            c.max_num_batched_tokens = 64; /* chunked prompts beside decodes */
            c.kv_cache_tokens = 2048;
            c.max_num_seqs = 64;
            c.num_threads = 1;
            c.async_scheduling = mode ? 2 : -1;
            ci_engine *e = test_engine_create(&c, getenv("CINFER_TEST_DTYPE"));
            if (!e) break;
            job *js = mode ? jobs : ref;
            run_jobs(e, js, NJ, 1);
            if (mode) {
                ci_engine_metrics m = ci_engine_get_metrics(e);
                ahead = m.ahead_steps;
                steps = m.num_steps;
            }
            ci_engine_destroy(e);
        }
        int diff = 0;
        for (int i = 0; i < NJ; i++)
            for (int k = 0; k < jobs[i].sp.n; k++) {
                const res *a = &jobs[i].r[k], *b = &ref[i].r[k];
                if (jobs[i].abort_at) { /* the token in flight at the abort is dropped */
                    CHECKF(a->fr == CI_FINISH_ABORT && b->fr == CI_FINISH_ABORT && a->n <= b->n &&
                               a->n + 1 >= b->n &&
                               !memcmp(a->toks, b->toks, sizeof(int32_t) * (size_t)a->n),
                           "plan-ahead: aborted request %d: %d tokens vs %d", i, a->n, b->n);
                    continue;
                }
                if (!same_res(a, b) || strcmp(a->text, b->text) != 0) {
                    if (!diff++)
                        CHECKF(0, "plan-ahead: request %d sample %d: %d tokens '%s' vs %d '%s'", i,
                               k, jobs[i].r[k].n, jobs[i].r[k].text, ref[i].r[k].n,
                               ref[i].r[k].text);
                }
            }
        CHECKF(diff == 0, "plan-ahead: %d samples differ from the synchronous engine", diff);
        printf("plan-ahead%s: %lld of %lld steps launched while the one before ran\n",
               round ? " (a penalty, prompt logprobs)" : "", (long long)ahead, (long long)steps);
        if (round == 0)
            CHECKF(ahead == steps - 1, "plan-ahead: %lld of %lld steps ahead", (long long)ahead,
                   (long long)steps);
        else /* the steps after the prompt-logprob prompt's chunks were not */
            CHECKF(ahead * 2 > steps && ahead < steps - 1, "plan-ahead, round 2: %lld of %lld",
                   (long long)ahead, (long long)steps);
    }
    free(ref);
    free_jobs(jobs, NJ);
}

int main(void) {
    snprintf(model_dir, sizeof model_dir, "%s/models/tinyqwen2-code", test_source_dir());
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", model_dir);
    FILE *f = fopen(path, "rb");
    if (!f) test_skip("no tinyqwen2-code model");
    fclose(f);
    const char *dev = getenv("CINFER_TEST_DEVICE");
    if (dev && *dev) {
        ci_engine_config c = ci_engine_default_config();
        c.model_dir = model_dir;
        c.device = dev;
        c.kv_cache_tokens = 64;
        c.enforce_eager = 1;
        ci_engine *e = NULL;
        ci_status s = ci_engine_create(&c, &e);
        if (s.code) {
            printf("device %s unavailable: %s\n", dev, s.msg);
            test_skip("no such device");
        }
        ci_engine_destroy(e);
        printf("device %s, dtype %s\n", dev,
               getenv("CINFER_TEST_DTYPE") ? getenv("CINFER_TEST_DTYPE") : "float32");
    }
    double t0 = ci_now();
    test_api();
    test_sampling();
    double t1 = ci_now();
    test_abort_and_bad_input();
    double t2 = ci_now();
    test_prefix_and_preemption();
    double t3 = ci_now();
    test_batch_invariance();
    test_plan_ahead();
    if (lax_invariance())
        printf("bf16 on a GPU: %d more outputs differed from another batch composition "
               "(reported, not checked)\n",
               lax_diffs);
    printf(
        "times: api+sampling %.1f s, abort+bad %.1f s, prefix+preempt %.1f s, invariance %.1f s\n",
        t1 - t0, t2 - t1, t3 - t2, ci_now() - t3);
    return test_finish("test_engine");
}
