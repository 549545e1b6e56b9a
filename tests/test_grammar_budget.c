/* test_grammar_budget.c — the distance to the end of a match and the
 * budget-aware mask: exact min_bytes_to_accept values along texts of JSON
 * (json_object, json.gbnf), regexes (multi-byte and negated classes) and
 * GBNF (rule order, a rule that never ends); fill_mask_budget equal to a
 * brute force (accept each token of the plain mask, ask tokens_to_end,
 * roll back) on random walks under a tight budget, every walk that could end
 * in time ending in time; a budget far off equal to the plain mask. */
#include <stdint.h>

#include "grammar_test.h"

typedef ci_status (*compile_fn)(const char *, size_t, ci_grammar **, char *, size_t);

static ci_grammar *compile(compile_fn fn, const char *text) {
    ci_grammar *g = NULL;
    char err[256];
    ci_status s = fn(text, strlen(text), &g, err, sizeof err);
    CHECKF(s.code == CI_OK, "%s: %s", text, err);
    return g;
}

static ci_grammar *gbnf(const char *text) {
    return compile(ci_grammar_from_gbnf, text);
}

static ci_grammar *regex(const char *pat) {
    return compile(ci_grammar_from_regex, pat);
}

/* After each prefix of text (cut at the given byte counts), the distance
 * and the tokens to end must be as listed. */
typedef struct step {
    size_t bytes;
    uint32_t dist, need;
} step;

static void check_steps(ci_grammar *g, const gt_vocab *gv, const char *name, const char *text,
                        const step *steps, int n) {
    ci_grammar_matcher *m = NULL;
    CHECK_OK(ci_grammar_matcher_create(g, gv->v, &m));
    if (!m) return;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (steps[i].bytes > at) {
            int rc =
                ci_grammar_matcher_accept_bytes(m, (const uint8_t *)text + at, steps[i].bytes - at);
            CHECKF(rc == 0, "%s: %.*s rejected", name, (int)steps[i].bytes, text);
            at = steps[i].bytes;
        }
        uint32_t d = ci_grammar_matcher_min_bytes_to_accept(m);
        uint32_t k = ci_grammar_matcher_tokens_to_end(m);
        CHECKF(d == steps[i].dist, "%s after [%.*s]: dist %u want %u", name, (int)at, text, d,
               steps[i].dist);
        CHECKF(k == steps[i].need, "%s after [%.*s]: need %u want %u", name, (int)at, text, k,
               steps[i].need);
    }
    ci_grammar_matcher_free(m);
}

#define NO UINT32_MAX

static void exact_values(const gt_vocab *gv) {
    ci_grammar *g = NULL;
    /* json_object: nothing may follow the top-level object, so its end is done (no EOS) */
    CHECK_OK(ci_grammar_json_object(&g, NULL, 0));
    const step jo[] = {{0, 2, 3}, {1, 1, 2}, {2, 4, 5}, {4, 3, 4}, {5, 2, 3}, {6, 4, 5}};
    check_steps(g, gv, "json_object", "{\"a\":true", jo, 6);
    const step jo2[] = {{5, 2, 3}, {6, 1, 2}, {7, 0, 0}};
    check_steps(g, gv, "json_object", "{\"a\":1}", jo2, 3);
    const step jo3[] = {{5, 2, 3}, {6, 2, 3}, {8, 3, 4}, {9, 2, 3}, {10, 1, 2}};
    check_steps(g, gv, "json_object", "{\"a\":[1,2]", jo3, 5);
    ci_grammar_free(g);

    /* json.gbnf: trailing whitespace may follow the object: its end needs an EOS */
    char path[1100];
    snprintf(path, sizeof path, "%s/tests/data/grammars/json.gbnf", test_source_dir());
    char *text = test_read_file(path, NULL);
    g = gbnf(text);
    free(text);
    const step jg[] = {{0, 2, 3}, {1, 1, 2}, {2, 4, 5}, {4, 3, 4}, {6, 1, 2}, {7, 0, 1}};
    check_steps(g, gv, "json.gbnf", "{\"a\":1}", jg, 6);
    ci_grammar_free(g);

    g = regex("[a-z]{2,6}-[0-9]{1,3}");
    const step rx[] = {{0, 4, 5}, {1, 3, 4}, {2, 2, 3}, {5, 2, 3},
                       {6, 2, 3}, {7, 1, 2}, {9, 0, 1}, {10, 0, 0}};
    check_steps(g, gv, "regex", "abcdef-123", rx, 8);
    ci_grammar_free(g);

    /* a class's cost is its smallest code point's UTF-8 length; a pending
     * character costs its bytes still to come */
    g = regex("(é|ab){2}[^\\x00-\\x7F]x");
    const step mb[] = {{0, 7, 8}, {1, 6, 7}, {2, 5, 6}, {3, 4, 5}, {4, 3, 4}, {5, 2, 3}, {6, 1, 2}};
    check_steps(g, gv, "utf8 regex",
                "\xC3\xA9"
                "ab\xC2\x80x",
                mb, 7);
    ci_grammar_free(g);
    g = regex("[\\u0100-\\uFFFF]?\\u0800");
    const step mb2[] = {{0, 3, 4}, {1, 4, 5}, {2, 3, 4}};
    check_steps(g, gv, "utf8 regex 2", "\xC4\x80", mb2, 3);
    ci_grammar_free(g);

    /* GBNF: rules used before they are defined, a repetition, and a rule
     * that never ends (its alternative is a dead end: no distance) */
    g = gbnf("root ::= a b{2,3} | \"long-one\"\n"
             "a ::= b b b | \"xy\"\n"
             "b ::= \"z\" | c\n"
             "c ::= \"(\" c \")\" | \"q\"\n");
    const step gb[] = {{0, 4, 5}, {1, 6, 7}, {2, 7, 8}, {3, 6, 7}, {4, 5, 6}};
    check_steps(g, gv, "gbnf", "((q)", gb, 5);
    ci_grammar_free(g);
    g = gbnf("root ::= \"a\" | \"b\" x\nx ::= \"c\" x\n");
    const step inf[] = {{0, 1, 2}, {1, NO, NO}, {2, NO, NO}};
    check_steps(g, gv, "never ends", "bc", inf, 3);
    ci_grammar_free(g);
}

/* Brute force of fill_mask_budget: the plain mask's tokens whose state
 * needs at most left - 1 more tokens, and EOS when the text can end. */
static void brute_budget(ci_grammar_matcher *m, const gt_vocab *gv, int64_t left,
                         const uint32_t *plain, uint32_t *want, int nw) {
    memset(want, 0, sizeof(uint32_t) * (size_t)nw);
    int nv = ci_grammar_vocab_size(gv->v);
    for (int t = 0; t < nv; t++) {
        if (!((plain[t >> 5] >> (t & 31)) & 1)) continue;
        if (t == gv->eos) {
            want[t >> 5] |= 1u << (t & 31);
            continue;
        }
        if (ci_grammar_matcher_accept(m, t) != 0) {
            CHECKF(0, "token %d in the mask rejected", t);
            continue;
        }
        uint32_t need = ci_grammar_matcher_tokens_to_end(m);
        ci_grammar_matcher_rollback(m, 1);
        if (need != UINT32_MAX && (int64_t)need <= left - 1) want[t >> 5] |= 1u << (t & 31);
    }
}

/* Random walks of at most max_tokens tokens drawn from the budget mask,
 * checked against the brute force at every step; returns how many ended
 * (EOS or done) and counts the steps whose mask the budget changed. */
static int budget_walks(ci_grammar *g, const gt_vocab *gv, int walks, int max_tokens, uint64_t seed,
                        const char *what, int *filtered) {
    int nv = ci_grammar_vocab_size(gv->v), nw = (nv + 31) / 32, ended = 0;
    uint32_t *plain = malloc(sizeof(uint32_t) * (size_t)nw);
    uint32_t *mask = malloc(sizeof(uint32_t) * (size_t)nw);
    uint32_t *want = malloc(sizeof(uint32_t) * (size_t)nw);
    int32_t *allowed = malloc(sizeof(int32_t) * (size_t)nv);
    uint64_t rs = seed * 2654435761u + 7;
    for (int w = 0; w < walks; w++) {
        ci_grammar_matcher *m = NULL;
        CHECK_OK(ci_grammar_matcher_create(g, gv->v, &m));
        if (!m) break;
        uint32_t need0 = ci_grammar_matcher_tokens_to_end(m);
        bool fits = need0 <= (uint32_t)max_tokens, done = false;
        for (int nt = 0; nt < max_tokens && !done; nt++) {
            int64_t left = max_tokens - nt;
            ci_grammar_matcher_fill_mask(m, plain);
            ci_grammar_matcher_fill_mask_budget(m, mask, left);
            if (fits) { /* in time from the start: exact */
                brute_budget(m, gv, left, plain, want, nw);
                CHECKF(!memcmp(mask, want, sizeof(uint32_t) * (size_t)nw),
                       "%s: walk %d step %d (left %lld): budget mask != brute force", what, w, nt,
                       (long long)left);
            }
            int na = 0;
            bool eos = false;
            for (int t = 0; t < nv; t++) {
                if (!((mask[t >> 5] >> (t & 31)) & 1)) continue;
                CHECKF((plain[t >> 5] >> (t & 31)) & 1, "%s: token %d not in the plain mask", what,
                       t);
                if (t == gv->eos)
                    eos = true;
                else
                    allowed[na++] = t;
            }
            *filtered += memcmp(mask, plain, sizeof(uint32_t) * (size_t)nw) != 0;
            CHECKF(na || eos, "%s: walk %d: empty budget mask at step %d", what, w, nt);
            if (!na && !eos) break;
            if (eos && (!na || gt_rand(&rs) % 4 == 0)) {
                CHECK(ci_grammar_matcher_accept(m, gv->eos) == 0);
                done = true;
                break;
            }
            CHECK(ci_grammar_matcher_accept(m, allowed[gt_rand(&rs) % (uint64_t)na]) == 0);
            done = ci_grammar_matcher_is_done(m);
        }
        if (fits) CHECKF(done, "%s: walk %d did not end within %d tokens", what, w, max_tokens);
        ended += done;
        ci_grammar_matcher_free(m);
    }
    free(plain);
    free(mask);
    free(want);
    free(allowed);
    return ended;
}

static void walks(const gt_vocab *gv, const char *label) {
    static const char *const schema =
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
        "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":"
        "{\"k\":{\"type\":\"string\"},\"v\":{\"type\":\"integer\"}},\"required\":[\"k\"]}},"
        "\"meta\":{\"type\":\"object\",\"properties\":{\"deep\":{\"type\":\"object\"}}}},"
        "\"required\":[\"name\",\"tags\"]}";
    ci_grammar *gs[4] = {NULL, NULL, NULL, NULL};
    const char *names[4] = {"json_object", "schema", "regex", "gbnf"};
    CHECK_OK(ci_grammar_json_object(&gs[0], NULL, 0));
    CHECK_OK(ci_grammar_from_json_schema(schema, strlen(schema), &gs[1], NULL, 0));
    gs[2] = regex("([a-z]+ ){1,4}[0-9]{2,}(\\.[0-9]+)?");
    gs[3] = gbnf("root ::= \"(\" e \")\"\ne ::= t ((\"+\" | \"*\") t)*\n"
                 "t ::= [0-9]+ | \"(\" e \")\"\n");
    static const int budgets[] = {3, 6, 10, 16, 24, 40};
    for (int k = 0; k < 4; k++) {
        if (!gs[k]) continue;
        ci_grammar_matcher *m = NULL;
        CHECK_OK(ci_grammar_matcher_create(gs[k], gv->v, &m));
        uint32_t need0 = ci_grammar_matcher_tokens_to_end(m);
        ci_grammar_matcher_free(m);
        int filtered = 0, ended = 0, n = 0;
        for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++) {
            char what[96];
            snprintf(what, sizeof what, "%s %s max %d", label, names[k], budgets[b]);
            /* the brute force costs a vocabulary of accepts per step: fewer walks on 128k */
            int nwalks =
                (budgets[b] >= 24 ? 3 : 5) - (ci_grammar_vocab_size(gv->v) > 20000 ? 2 : 0);
            int e = budget_walks(gs[k], gv, nwalks, budgets[b], 17 + b, what, &filtered);
            if ((uint32_t)budgets[b] >= need0) CHECK(e == nwalks);
            ended += e;
            n += nwalks;
        }
        printf("%s %s: need %u at the start; %d of %d walks ended, %d masks filtered\n", label,
               names[k], need0, ended, n, filtered);
        CHECK(filtered > 0); /* the budget did something */
        ci_grammar_free(gs[k]);
    }
}

/* Far from the limit the budget mask is the plain one. */
static void far_budget(const gt_vocab *gv) {
    ci_grammar *g = NULL;
    CHECK_OK(ci_grammar_json_object(&g, NULL, 0));
    ci_grammar_matcher *m = NULL;
    CHECK_OK(ci_grammar_matcher_create(g, gv->v, &m));
    int nw = (ci_grammar_vocab_size(gv->v) + 31) / 32;
    uint32_t *a = malloc(sizeof(uint32_t) * (size_t)nw), *b = malloc(sizeof(uint32_t) * (size_t)nw);
    const char *text = "{\"key\": [1, 2, {\"x\": \"str";
    for (size_t i = 0; i <= strlen(text); i++) {
        ci_grammar_matcher_fill_mask(m, a);
        ci_grammar_matcher_fill_mask_budget(m, b, 1000);
        CHECKF(!memcmp(a, b, sizeof(uint32_t) * (size_t)nw), "far budget differs after %zu", i);
        ci_grammar_matcher_fill_mask_budget(m, b, 0); /* no limit */
        CHECK(!memcmp(a, b, sizeof(uint32_t) * (size_t)nw));
        if (i < strlen(text))
            CHECK(ci_grammar_matcher_accept_bytes(m, (const uint8_t *)text + i, 1) == 0);
    }
    free(a);
    free(b);
    ci_grammar_matcher_free(m);
    ci_grammar_free(g);
}

static void each_vocab(const gt_vocab *gv, const char *label) {
    walks(gv, label);
}

int main(void) {
    gt_vocab gv;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/tinyqwen2-code", test_source_dir());
    if (!gt_vocab_load(dir, &gv)) test_skip("no demo tokenizer");
    exact_values(&gv);
    far_budget(&gv);
    gt_vocab_free(&gv);
    gt_each_vocab(each_vocab);
    return test_finish("test_grammar_budget");
}
