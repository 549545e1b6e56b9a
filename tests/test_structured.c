/* test_structured.c — structured outputs in the engine on tinyqwen2-code at
 * temperature 1: every constrained sample matches its grammar and ends with
 * reason stop; constrained requests (n = 2 too) batched with unconstrained
 * ones change nothing for the others and draw what they draw alone; under
 * preemption (a small KV cache) the outputs are those of a large cache;
 * constrained sequences get no speculative drafts; a bad grammar is refused
 * at add time with the compiler's message. */
#include <regex.h>
#include <stdint.h>

#include "engine/engine.h"
#include "engine_test.h"
#include "test.h"

#define NJ 8
#define MAXT 48

static char model_dir[4096];
static const char *k_regex = "[a-z]{2,6}-[0-9]{1,3}";
/* a bracketed sum of at most four integers, checked by sum() below */
static const char *k_gbnf = "root ::= \"(\" num (op num){0,3} \")\"\n"
                            "op ::= \"+\" | \"-\"\n"
                            "num ::= [0-9]{1,3}\n";

typedef struct out {
    char text[1024];
    size_t len;
    int32_t toks[MAXT];
    int n, fr;
} out;

typedef struct job {
    const char *prompt;
    int kind; /* cinfer_structured_kind */
    int n;
    uint64_t seed;
    int64_t id;
    out o[2];
} job;

static ci_engine *mk(int64_t kv_tokens, int mbt, int spec) {
    ci_engine_config c = ci_engine_default_config();
    c.model_dir = model_dir;
    c.block_size = 16;
    c.max_num_batched_tokens = mbt;
    c.kv_cache_tokens = kv_tokens;
    c.max_num_seqs = 32;
    c.num_threads = 1;
    if (spec) {
        c.speculative_method = "ngram";
        c.num_speculative_tokens = 3;
    }
    return test_engine_create(&c, getenv("CINFER_TEST_DTYPE"));
}

static void run(ci_engine *e, job *jobs, int nj) {
    for (int i = 0; i < nj; i++) {
        job *j = &jobs[i];
        memset(j->o, 0, sizeof j->o);
        ci_engine_sampling sp = ci_engine_default_sampling();
        sp.temperature = 1.0f;
        sp.seed = (int64_t)j->seed;
        sp.max_tokens = MAXT;
        sp.n = j->n;
        sp.structured_kind = j->kind;
        sp.structured = j->kind == CINFER_STRUCTURED_REGEX     ? k_regex
                        : j->kind == CINFER_STRUCTURED_GRAMMAR ? k_gbnf
                                                               : NULL;
        CHECK_OK(ci_engine_add_request_text(e, j->prompt, &sp, 0, &j->id));
    }
    while (ci_engine_has_unfinished(e)) {
        const ci_engine_output *o;
        int n;
        CHECK_OK(ci_engine_step(e, &o, &n));
        for (int k = 0; k < n; k++) {
            job *j = NULL;
            for (int i = 0; i < nj; i++)
                if (jobs[i].id == o[k].request_id) j = &jobs[i];
            if (!j || o[k].sample_index >= 2) continue;
            out *r = &j->o[o[k].sample_index];
            if (r->len + o[k].text_len < sizeof r->text) {
                memcpy(r->text + r->len, o[k].text, o[k].text_len);
                r->len += o[k].text_len;
            }
            for (int t = 0; t < o[k].num_token_ids && r->n < MAXT; t++)
                r->toks[r->n++] = o[k].token_ids[t];
            if (o[k].finish_reason) r->fr = o[k].finish_reason;
        }
    }
}

static int num(const char *s, size_t *p) {
    int d = 0;
    while (s[*p] >= '0' && s[*p] <= '9' && d < 4)
        (*p)++, d++;
    return d >= 1 && d <= 3 ? 0 : -1;
}
/* k_gbnf's language: 0 when s is in it */
static int sum(const char *s, size_t len) {
    size_t p = 0;
    if (s[p++] != '(' || num(s, &p)) return -1;
    for (int k = 0; k < 3 && (s[p] == '+' || s[p] == '-'); k++) {
        p++;
        if (num(s, &p)) return -1;
    }
    return s[p] == ')' && p + 1 == len ? 0 : -1;
}

static int matches(const job *j, const out *r) {
    if (j->kind == CINFER_STRUCTURED_REGEX) {
        regex_t re;
        char full[64];
        snprintf(full, sizeof full, "^%s$", k_regex);
        if (regcomp(&re, full, REG_EXTENDED | REG_NOSUB)) return 0;
        int ok = regexec(&re, r->text, 0, NULL, 0) == 0;
        regfree(&re);
        return ok;
    }
    return sum(r->text, r->len) == 0;
}

static const char *k_prompts[] = {
    "def parse(line):\n    ",     "# a tag and a number: ", "x = ",        "import os\n", "print(",
    "class A:\n    def f(self):", "for i in range(10):\n",  "total = 3 + "};

static void make(job *jobs, int constrained_every) {
    for (int i = 0; i < NJ; i++) {
        jobs[i].prompt = k_prompts[i];
        jobs[i].n = i == 2 ? 2 : 1;
        jobs[i].seed = 1000 + (uint64_t)i;
        jobs[i].kind = i % constrained_every ? CINFER_STRUCTURED_NONE
                       : i % 4 == 0          ? CINFER_STRUCTURED_REGEX
                                             : CINFER_STRUCTURED_GRAMMAR;
    }
}

static int same(const out *a, const out *b) {
    return a->n == b->n && a->fr == b->fr && !memcmp(a->toks, b->toks, sizeof(int32_t) * a->n);
}

int main(void) {
    snprintf(model_dir, sizeof model_dir, "%s/models/tinyqwen2-code", test_source_dir());
    ci_engine *e = mk(0, 2048, 0);
    if (!e) return test_finish("test_structured");
    /* every other job constrained (job 2: n = 2), batched with unconstrained ones */
    job mixed[NJ], alone[1];
    make(mixed, 2);
    run(e, mixed, NJ);
    int checked = 0;
    for (int i = 0; i < NJ; i++)
        for (int s = 0; s < mixed[i].n; s++) {
            if (!mixed[i].kind) continue;
            const out *r = &mixed[i].o[s];
            printf("job %d.%d (%s): \"%s\" (%d tokens)\n", i, s,
                   mixed[i].kind == CINFER_STRUCTURED_REGEX ? "regex" : "gbnf", r->text, r->n);
            CHECKF(matches(&mixed[i], r), "job %d.%d: \"%s\"", i, s, r->text);
            CHECKF(r->fr == CINFER_FINISH_STOP, "job %d.%d finish %d", i, s, r->fr);
            checked++;
        }
    CHECK(checked == NJ / 2 + 1);
    CHECK(mixed[2].n == 2 && !same(&mixed[2].o[0], &mixed[2].o[1])); /* two samples, two draws */
    /* each job alone draws the same tokens: masks belong to their rows only */
    for (int i = 0; i < NJ; i++) {
        alone[0] = mixed[i];
        run(e, alone, 1);
        for (int s = 0; s < mixed[i].n; s++)
            CHECKF(same(&alone[0].o[s], &mixed[i].o[s]), "job %d.%d alone differs", i, s);
    }
    /* a bad grammar is refused at add time, naming the construct */
    ci_engine_sampling sp = ci_engine_default_sampling();
    sp.structured_kind = CINFER_STRUCTURED_GRAMMAR;
    sp.structured = "root ::= (\"a\"";
    int64_t id;
    ci_status st = ci_engine_add_request_text(e, "x", &sp, 0, &id);
    CHECKF(st.code == CI_ERR_INVALID && strstr(st.msg, "gbnf"), "%s", st.msg);
    sp.structured_kind = CINFER_STRUCTURED_REGEX;
    sp.structured = "";
    st = ci_engine_add_request_text(e, "x", &sp, 0, &id);
    CHECK(st.code == CI_ERR_INVALID);
    CHECK(!ci_engine_has_unfinished(e));
    ci_engine_destroy(e);

    /* preemption: a cache of ~3 requests; every job constrained */
    job all[NJ], small[NJ];
    make(all, 1);
    e = mk(0, 2048, 0);
    if (e) run(e, all, NJ);
    ci_engine_destroy(e);
    memcpy(small, all, sizeof small);
    e = mk(96, 64, 0);
    if (e) {
        run(e, small, NJ);
        ci_engine_metrics m = ci_engine_get_metrics(e);
        printf("small cache: %lld preemptions\n", (long long)m.num_preemptions);
        CHECK(m.num_preemptions > 0);
        for (int i = 0; i < NJ; i++)
            for (int s = 0; s < all[i].n; s++) {
                CHECKF(same(&small[i].o[s], &all[i].o[s]), "job %d.%d differs under preemption", i,
                       s);
                CHECK(matches(&small[i], &small[i].o[s]));
            }
    }
    ci_engine_destroy(e);

    /* n-gram speculation on: constrained sequences get no drafts */
    e = mk(0, 2048, 1);
    if (e) {
        memcpy(small, all, sizeof small);
        run(e, small, NJ);
        ci_engine_metrics m = ci_engine_get_metrics(e);
        CHECK(m.spec_draft_tokens == 0);
        for (int i = 0; i < NJ; i++)
            CHECK(same(&small[i].o[0], &all[i].o[0]));
    }
    ci_engine_destroy(e);
    return test_finish("test_structured");
}
