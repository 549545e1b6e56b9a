/* test_grammar_regex.c — the regex front end: unsupported constructs are
 * named; acceptance agrees with PCRE2 full matching on fixed strings; and
 * random walks over the demo tokenizer (and Llama-3's when present) produce
 * only texts PCRE2 fully matches, while tokenized valid texts are accepted
 * token by token. */
#include <pcre2.h>

#include "grammar_test.h"

typedef struct rx_case {
    const char *pat;
    const char *yes[5], *no[5];
} rx_case;

static const rx_case cases[] = {
    {"[a-z]{1,8}@[a-z]{1,8}\\.com",
     {"bob@example.com"},
     {"bob@example.org", "@x.com", "BOB@x.com"}},
    {"^\\d{3}-\\d{4}$", {"555-1234"}, {"5555-1234", "555-12345", "abc-defg"}},
    {"(cat|dog)s?", {"cat", "dogs"}, {"cats!", "cow", ""}},
    {"\\w+(?:\\s\\w+)*", {"hello world", "a_b c9"}, {"hello  world", " x", "a-b"}},
    {"[^,\\s]+(,[^,\\s]+){0,2}", {"a", "a,b,c", "é,😀"}, {"a,b,c,d", "a,", "a b"}},
    {"\\D\\W\\S", {"a b"}, {"1 b", "aab", "a  "}},
    {"-?(0|[1-9]\\d*)(\\.\\d+)?", {"0", "-12.5", "3"}, {"01", "1.", "--1"}},
    {"(?<year>\\d{4})-(?P<m>0[1-9]|1[0-2])", {"2024-01", "1999-12"}, {"2024-13", "24-01"}},
    {"a.c", {"abc", "aéc"}, {"a\nc", "ac"}},
    {"[\\[\\]\\\\-]+x{2,}?", {"[]\\-xx", "-xxx"}, {"[]x", "a"}},
    {"\\u00e9\\x41|\\t", {"éA", "\t"}, {"e"}},
    {"(ab|a)(bc|c)", {"abc"}, {"ab", "abcc"}},
    {"x*", {"", "xxx"}, {"y"}},
    {"[.]{1,3}\\.?", {".", "...."}, {".....", "a"}},
};

static pcre2_code *pcre(const char *pat) {
    int ec;
    PCRE2_SIZE eo;
    return pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                         PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_ANCHORED | PCRE2_ENDANCHORED, &ec, &eo,
                         NULL);
}

static bool pcre_full(pcre2_code *re, const char *s, size_t n) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

static bool check_pcre(const char *text, size_t len, void *ctx) {
    return pcre_full(ctx, text, len);
}

static void test_errors(void) {
    static const struct {
        const char *pat, *want;
    } errs[] = {
        {"a\\bc", "unsupported construct '\\b'"},
        {"(?=a)b", "unsupported construct '(?='"},
        {"(?!a)b", "unsupported construct '(?!'"},
        {"(?<=a)b", "unsupported construct '(?<='"},
        {"(a)\\1", "unsupported construct '\\1'"},
        {"(?i)a", "unsupported construct '(?i'"},
        {"a++", "possessive quantifier"},
        {"a|^b", "anchor '^'"},
        {"a$b", "anchor '$'"},
        {"(ab", "unclosed '('"},
        {"ab)", "unmatched ')'"},
        {"[abc", "unterminated character class"},
        {"*a", "quantifier without an item"},
        {"[[:alpha:]]", "unsupported construct '[:class:]'"},
        {"a{3,1}", "n < m"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        ci_grammar *g = NULL;
        char err[256] = "";
        ci_status s = ci_grammar_from_regex(errs[i].pat, strlen(errs[i].pat), &g, err, sizeof err);
        CHECKF(s.code != CI_OK && !g, "%s compiled", errs[i].pat);
        CHECKF(strstr(err, errs[i].want) != NULL, "%s: got [%s] want [%s]", errs[i].pat, err,
               errs[i].want);
        ci_grammar_free(g);
    }
}

static void run_cases(const gt_vocab *gv, const char *label) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const rx_case *c = &cases[i];
        ci_grammar *g = NULL;
        char err[256];
        ci_status s = ci_grammar_from_regex(c->pat, strlen(c->pat), &g, err, sizeof err);
        CHECKF(s.code == CI_OK, "%s: %s", c->pat, err);
        pcre2_code *re = pcre(c->pat);
        CHECK(re != NULL);
        if (!g || !re) {
            ci_grammar_free(g);
            pcre2_code_free(re);
            continue;
        }
        for (int k = 0; k < 5 && c->yes[k]; k++) {
            CHECKF(pcre_full(re, c->yes[k], strlen(c->yes[k])), "test data: pcre rejects %s",
                   c->yes[k]);
            CHECKF(gt_accepts(g, gv, c->yes[k]), "%s should accept [%s]", c->pat, c->yes[k]);
            if (c->yes[k][0])
                CHECKF(gt_accepts_tokens(g, gv, c->yes[k]), "%s: %s token by token", label,
                       c->yes[k]);
        }
        for (int k = 0; k < 5 && c->no[k]; k++) {
            CHECKF(!pcre_full(re, c->no[k], strlen(c->no[k])), "test data: pcre accepts %s",
                   c->no[k]);
            CHECKF(!gt_accepts(g, gv, c->no[k]), "%s should reject [%s]", c->pat, c->no[k]);
        }
        char what[160];
        snprintf(what, sizeof what, "%s /%s/", label, c->pat);
        int fin = gt_walks(g, gv, 20, 30, i + 1, check_pcre, re, what);
        CHECKF(fin >= 1, "%s: no walk finished", what);
        pcre2_code_free(re);
        ci_grammar_free(g);
    }
}

int main(void) {
    test_errors();
    gt_each_vocab(run_cases);
    return test_finish("test_grammar_regex");
}
