/* test_grammar.c — the GBNF front end and the matcher: parse errors with
 * positions, acceptance of texts, partial UTF-8 across tokens, masks equal
 * to a brute-force check of every token, rollback, and random walks over
 * the demo tokenizer checked by independent parsers (jansson for JSON, a
 * recursive-descent parser for arithmetic). */
#include <jansson.h>

#include "grammar_test.h"

static ci_grammar *compile(const char *text) {
    ci_grammar *g = NULL;
    char err[256];
    ci_status s = ci_grammar_from_gbnf(text, strlen(text), &g, err, sizeof err);
    CHECKF(s.code == CI_OK, "%s", err);
    return g;
}

static ci_grammar *compile_file(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/grammars/%s", test_source_dir(), name);
    char *text = test_read_file(path, NULL);
    CHECKF(text != NULL, "%s", path);
    if (!text) return NULL;
    ci_grammar *g = compile(text);
    free(text);
    return g;
}

static void test_errors(void) {
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"root ::= foo", "undefined rule 'foo'"},
        {"root ::= \"a\"\nroot ::= \"b\"", "line 2 col 1: rule 'root' defined twice"},
        {"a ::= \"x\"", "no 'root' rule"},
        {"root ::= \"abc", "line 1 col 10: unterminated string literal"},
        {"root ::= [a-", "unterminated character class"},
        {"root ::= [z-a]", "out of order"},
        {"root ::= ( \"a\"", "unclosed '('"},
        {"root ::= \"a\" )", "line 1 col 14: unmatched ')'"},
        {"root ::= * \"a\"", "quantifier without an item"},
        {"root ::= \"a\"{3,1}", "n < m"},
        {"root ::= \"\\q\"", "unknown escape"},
        {"root ::= \"\\xZZ\"", "bad hex escape"},
        {"root ::= x\nx ::= x \"a\" | \"b\"", "left recursion in rule 'x'"},
        {"root ::= e? root\ne ::= \"x\"", "left recursion in rule 'root'"},
        {"root \"a\"", "expected '::='"},
        {"root ::= \"a\" $", "line 1 col 14: unexpected character '$'"},
        {"root ::= \"a\"{99999}", "repetition count too large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ci_grammar *g = NULL;
        char err[256] = "";
        ci_status s =
            ci_grammar_from_gbnf(cases[i].text, strlen(cases[i].text), &g, err, sizeof err);
        CHECKF(s.code != CI_OK && g == NULL, "case %zu compiled", i);
        CHECKF(strstr(err, cases[i].want) != NULL, "case %zu: got [%s], want [%s]", i, err,
               cases[i].want);
        CHECK(!strcmp(err, s.msg));
    }
    /* many large repetitions: refused, not billions of elements */
    char *big = malloc(200 * 16 + 16);
    size_t n = (size_t)sprintf(big, "root ::=");
    for (int i = 0; i < 200; i++)
        n += (size_t)sprintf(big + n, " \"a\"{0,10000}");
    ci_grammar *bg = NULL;
    char err[256] = "";
    gt_check_error(ci_grammar_from_gbnf(big, n, &bg, err, sizeof err), bg, err, "200 x {0,10000}",
                   "grammar too large");
    free(big);
    /* "e ::= ..." undefined e: the left-recursion case above must not hide it */
    ci_grammar *g = NULL;
    CHECK(ci_grammar_from_gbnf("root ::= e", 10, &g, NULL, 0).code != CI_OK);
}

static void test_accept(const gt_vocab *gv) {
    static const struct {
        const char *gbnf;
        const char *yes[6], *no[6];
    } cases[] = {
        {"root ::= \"ab\" [0-9]+ (\"x\" | \"yz\")?",
         {"ab1", "ab123x", "ab0yz"},
         {"ab", "abx", "ab1y", "ab1xx"}},
        {"root ::= [^\"]* \"\\\"\"", {"\"", "abc\"", "héllo\""}, {"", "a\"b", "abc"}},
        {"root ::= \"a\"{2,3} \"b\"{2} \"c\"{1,}",
         {"aabbc", "aaabbccc"},
         {"abbc", "aaaabbc", "aabc", "aabb"}},
        {"root ::= . . \"!\"  # two of anything", {"ab!", "éß!", "😀x!"}, {"a!", "abc!"}},
        {"root ::= \"\\u00e9\\x41\" [\\u0100-\\U0001F600]", {"éAĀ", "éA😀"}, {"éA", "éAz", "éA😁"}},
        {"root ::= item (\",\" item)*\nitem ::= [a-z]+ | \"(\" root \")\"",
         {"a,b", "(a,(b,c)),d"},
         {"a,", "(a", "a)"}},
        {"root ::= ws? \"x\"\nws ::= [ \\t\\n]{0,3}", {"x", "   x", "\n\tx"}, {"    x", "y"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ci_grammar *g = compile(cases[i].gbnf);
        if (!g) continue;
        for (int k = 0; k < 6 && cases[i].yes[k]; k++)
            CHECKF(gt_accepts(g, gv, cases[i].yes[k]), "case %zu should accept [%s]", i,
                   cases[i].yes[k]);
        for (int k = 0; k < 6 && cases[i].no[k]; k++)
            CHECKF(!gt_accepts(g, gv, cases[i].no[k]), "case %zu should reject [%s]", i,
                   cases[i].no[k]);
        ci_grammar_free(g);
    }
}

/* A multi-byte character split across tokens, fed byte by byte. */
static void test_partial_utf8(const gt_vocab *gv) {
    ci_grammar *g = compile("root ::= \"é\" [α-ω]");
    ci_grammar_matcher *m = NULL;
    CHECK_OK(ci_grammar_matcher_create(g, gv->v, &m));
    const uint8_t e[] = {0xC3, 0xA9}, beta[] = {0xCE, 0xB2},
                  bad[] = {0xCF, 0x8A}; /* β, ϊ (U+03CA) */
    CHECK(ci_grammar_matcher_accept_bytes(m, e, 1) == 0);
    CHECK(!ci_grammar_matcher_can_end(m));
    CHECK(ci_grammar_matcher_accept_bytes(m, (const uint8_t *)"A", 1) == -1);
    CHECK(ci_grammar_matcher_accept_bytes(m, e + 1, 1) == 0);
    CHECK(ci_grammar_matcher_accept_bytes(m, (const uint8_t *)"\xC3", 1) ==
          -1);                                                    /* no Latin-1 there */
    CHECK(ci_grammar_matcher_accept_bytes(m, bad, 1) == 0);       /* U+03C0..: could be ω */
    CHECK(ci_grammar_matcher_accept_bytes(m, bad + 1, 1) == -1);  /* U+03CA is past ω */
    CHECK(ci_grammar_matcher_accept_bytes(m, beta + 1, 1) == -1); /* CF B2 = U+03F2 */
    ci_grammar_matcher_rollback(m, 1);
    CHECK(ci_grammar_matcher_accept_bytes(m, beta, 2) == 0);
    CHECK(ci_grammar_matcher_can_end(m) && ci_grammar_matcher_is_done(m));
    /* overlong and surrogate encodings are never accepted */
    ci_grammar *any = compile("root ::= .*");
    ci_grammar_matcher *m2 = NULL;
    CHECK_OK(ci_grammar_matcher_create(any, gv->v, &m2));
    CHECK(ci_grammar_matcher_accept_bytes(m2, (const uint8_t *)"\xC0\x80", 2) == -1);
    CHECK(ci_grammar_matcher_accept_bytes(m2, (const uint8_t *)"\xED\xA0\x80", 3) == -1);
    CHECK(ci_grammar_matcher_accept_bytes(m2, (const uint8_t *)"\xE2\x82\xAC", 3) == 0);
    ci_grammar_matcher_free(m2);
    ci_grammar_free(any);
    ci_grammar_matcher_free(m);
    ci_grammar_free(g);
}

/* fill_mask == {ids whose accept succeeds} at several states along a text. */
static void check_mask_brute(ci_grammar *g, const gt_vocab *gv, const char *prefix_text,
                             const char *what) {
    int nv = ci_grammar_vocab_size(gv->v);
    uint32_t *mask = calloc(((size_t)nv + 31) / 32, 4);
    ci_grammar_matcher *m = NULL;
    CHECK_OK(ci_grammar_matcher_create(g, gv->v, &m));
    size_t n = strlen(prefix_text);
    for (size_t cut = 0; cut <= n; cut += (n / 4) + 1) {
        ci_grammar_matcher_free(m);
        m = NULL;
        CHECK_OK(ci_grammar_matcher_create(g, gv->v, &m));
        CHECK(ci_grammar_matcher_accept_bytes(m, (const uint8_t *)prefix_text, cut) == 0);
        for (int pass = 0; pass < 2; pass++) { /* cold, then from the cache */
            ci_grammar_matcher_fill_mask(m, mask);
            int bad = 0;
            for (int id = 0; id < nv; id++) {
                bool in = (mask[id >> 5] >> (id & 31)) & 1;
                bool ok = ci_grammar_matcher_accept(m, id) == 0;
                if (ok) ci_grammar_matcher_rollback(m, 1);
                if (in != ok && bad++ < 3)
                    fprintf(stderr, "%s cut %zu: id %d mask %d accept %d\n", what, cut, id, in, ok);
            }
            CHECKF(bad == 0, "%s: %d ids disagree", what, bad);
        }
    }
    ci_grammar_matcher_free(m);
    free(mask);
}

static void test_rollback(const gt_vocab *gv) {
    ci_grammar *g = compile_file("json.gbnf");
    if (!g) return;
    ci_grammar_matcher *m = NULL;
    CHECK_OK(ci_grammar_matcher_create(g, gv->v, &m));
    const char *parts[] = {"{", "\"a\"", ":", " [1", ",", "2]", "}"};
    for (int i = 0; i < 7; i++)
        CHECK(ci_grammar_matcher_accept_bytes(m, (const uint8_t *)parts[i], strlen(parts[i])) == 0);
    CHECK(ci_grammar_matcher_can_end(m));
    CHECK(ci_grammar_matcher_accept(m, gv->eos) == 0);
    CHECK(ci_grammar_matcher_is_done(m));
    CHECK(ci_grammar_matcher_accept_bytes(m, (const uint8_t *)" ", 1) == -1);
    ci_grammar_matcher_rollback(m, 1); /* un-EOS */
    CHECK(!ci_grammar_matcher_is_done(m) || ci_grammar_matcher_can_end(m));
    ci_grammar_matcher_rollback(m, 3); /* back to after "{\"a\": [1" */
    CHECK(!ci_grammar_matcher_can_end(m));
    CHECK(ci_grammar_matcher_accept_bytes(m, (const uint8_t *)"}", 1) == -1);
    CHECK(ci_grammar_matcher_accept_bytes(m, (const uint8_t *)"]}", 2) == 0);
    CHECK(ci_grammar_matcher_can_end(m));
    ci_grammar_matcher_rollback(m, 100); /* as far as kept: the start */
    CHECK(ci_grammar_matcher_accept_bytes(m, (const uint8_t *)"{}", 2) == 0);
    CHECK(ci_grammar_matcher_can_end(m));
    /* a rejected token changes nothing */
    CHECK(ci_grammar_matcher_accept_bytes(m, (const uint8_t *)" x", 2) == -1);
    CHECK(ci_grammar_matcher_can_end(m));
    ci_grammar_matcher_free(m);
    ci_grammar_free(g);
}

static bool check_json_object(const char *text, size_t len, void *ctx) {
    (void)ctx;
    json_error_t e;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &e);
    bool ok = j && json_is_object(j);
    json_decref(j);
    return ok;
}

/* expr := term ((+|-) term)*; term := factor ((*|/) factor)*;
 * factor := number | ( expr ) | - factor; single optional spaces. */
typedef struct ap {
    const char *s;
    size_t i, n;
} ap;
static void ap_sp(ap *p) {
    if (p->i < p->n && p->s[p->i] == ' ') p->i++;
}
static bool ap_expr(ap *p, int depth);
static bool ap_factor(ap *p, int depth) {
    if (depth > 200 || p->i >= p->n) return false;
    if (p->s[p->i] == '-') {
        p->i++;
        return ap_factor(p, depth + 1);
    }
    if (p->s[p->i] == '(') {
        p->i++;
        ap_sp(p);
        if (!ap_expr(p, depth + 1)) return false;
        ap_sp(p);
        if (p->i >= p->n || p->s[p->i] != ')') return false;
        p->i++;
        return true;
    }
    size_t st = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
        p->i++;
    return p->i > st;
}
static bool ap_chain(ap *p, int depth, const char *ops, bool (*sub)(ap *, int)) {
    if (!sub(p, depth)) return false;
    for (;;) {
        size_t save = p->i;
        ap_sp(p);
        if (p->i < p->n && strchr(ops, p->s[p->i])) {
            p->i++;
            ap_sp(p);
            if (!sub(p, depth)) return false;
        } else {
            p->i = save;
            return true;
        }
    }
}
static bool ap_term(ap *p, int depth) {
    return ap_chain(p, depth, "*/", ap_factor);
}
static bool ap_expr(ap *p, int depth) {
    return ap_chain(p, depth, "+-", ap_term);
}
static bool check_arith(const char *text, size_t len, void *ctx) {
    (void)ctx;
    ap p = {text, 0, len};
    return ap_expr(&p, 0) && p.i == len;
}

static void test_walks(const gt_vocab *gv, const char *label) {
    ci_grammar *json = compile_file("json.gbnf");
    ci_grammar *arith = compile_file("arithmetic.gbnf");
    if (!json || !arith) return;
    char what[128];
    snprintf(what, sizeof what, "%s json.gbnf", label);
    int fin = gt_walks(json, gv, 30, 60, 1, check_json_object, NULL, what);
    printf("%s: %d of 30 walks finished\n", what, fin);
    CHECKF(fin >= 5, "%s: only %d walks finished", what, fin);
    snprintf(what, sizeof what, "%s arithmetic.gbnf", label);
    fin = gt_walks(arith, gv, 40, 40, 2, check_arith, NULL, what);
    printf("%s: %d of 40 walks finished\n", what, fin);
    CHECKF(fin >= 10, "%s: only %d walks finished", what, fin);
    static const char *valid_json[] = {
        "{\"name\": \"cinfer\", \"n\": [1, 2.5, -3e10, true, null], \"o\": {}}",
        "{\"s\": \"tab\\tquote\\\" unicode \\u00e9 é 😀\"}",
        "{\n  \"a\": [\n    {}\n  ]\n}",
    };
    for (size_t i = 0; i < sizeof valid_json / sizeof valid_json[0]; i++)
        CHECKF(gt_accepts_tokens(json, gv, valid_json[i]), "%s: json.gbnf token by token: %s",
               label, valid_json[i]);
    static const char *valid_arith[] = {"1+2*3", "(12 - 4) / -2", "((7))*(8+9)-10"};
    for (size_t i = 0; i < 3; i++)
        CHECKF(gt_accepts_tokens(arith, gv, valid_arith[i]), "%s: arithmetic token by token: %s",
               label, valid_arith[i]);
    CHECK(!gt_accepts(json, gv, "{\"a\": 01}"));
    CHECK(!gt_accepts(json, gv, "{\"a\": \"\x01\"}"));
    CHECK(!gt_accepts(arith, gv, "1+"));
    ci_grammar_free(json);
    ci_grammar_free(arith);
}

/* Everything that needs a vocabulary; the brute-force mask checks only on
 * the small demo vocabulary (they try every id at every checked state). */
/* A model vocabulary padded past the tokenizer's ids: the extra ids are
 * never allowed, the others as before. */
static void test_padded(const gt_vocab *gv) {
    int n_tok = ci_tokenizer_vocab_size(gv->tok), n = n_tok + 100;
    ci_grammar_vocab *pv = NULL;
    CHECK_OK(ci_grammar_vocab_from_tokenizer_n(gv->tok, n, &gv->eos, 1, &pv));
    ci_grammar *g = compile("root ::= [a-z ]* \"!\"");
    if (!pv || !g) return;
    CHECK(ci_grammar_vocab_size(pv) == n);
    uint32_t *a = calloc(((size_t)n + 31) / 32, 4), *b = calloc(((size_t)n_tok + 31) / 32, 4);
    ci_grammar_matcher *m1 = NULL, *m2 = NULL;
    CHECK_OK(ci_grammar_matcher_create(g, pv, &m1));
    CHECK_OK(ci_grammar_matcher_create(g, gv->v, &m2));
    ci_grammar_matcher_fill_mask(m1, a);
    ci_grammar_matcher_fill_mask(m2, b);
    int diff = 0, extra = 0;
    for (int i = 0; i < n; i++) {
        bool x = (a[i >> 5] >> (i & 31)) & 1;
        if (i >= n_tok)
            extra += x;
        else
            diff += x != (bool)((b[i >> 5] >> (i & 31)) & 1);
    }
    CHECK(diff == 0 && extra == 0);
    CHECK(ci_grammar_matcher_accept(m1, n_tok + 5) == -1);
    ci_grammar_matcher_free(m1);
    ci_grammar_matcher_free(m2);
    free(a);
    free(b);
    ci_grammar_free(g);
    ci_grammar_vocab_free(pv);
}

static void with_vocab(const gt_vocab *gv, const char *label) {
    if (!strcmp(label, "tinyqwen2")) {
        test_padded(gv);
        test_accept(gv);
        test_partial_utf8(gv);
        test_rollback(gv);
        ci_grammar *json = compile_file("json.gbnf");
        if (json) {
            check_mask_brute(json, gv, "{\"key\": [1.5e3, \"é😀\\n\", {}], \"x\": null}",
                             "json.gbnf");
            ci_grammar_free(json);
        }
        /* a schema: bounded strings, optional properties, integer ranges */
        const char *schema =
            "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"maxLength\":6},"
            "\"n\":{\"type\":\"integer\",\"minimum\":-20,\"maximum\":300},\"o\":{\"type\":"
            "\"boolean\"}},"
            "\"required\":[\"s\"],\"additionalProperties\":false}";
        ci_grammar *sg = NULL;
        CHECK_OK(ci_grammar_from_json_schema(schema, strlen(schema), &sg, NULL, 0));
        if (sg) {
            check_mask_brute(sg, gv, "{\"s\": \"ab\\\"c\", \"n\": -7}", "schema");
            ci_grammar_free(sg);
        }
        ci_grammar *utf = compile("root ::= [α-ω]+ \"é\" | \"ab\" [^a-z]*");
        if (utf) {
            check_mask_brute(utf, gv, "αβγé", "utf8 classes");
            ci_grammar_free(utf);
        }
    }
    if (!strcmp(label, "mistral")) { /* the first token's leading space is not output */
        ci_grammar *json = compile_file("json.gbnf");
        if (json) {
            check_mask_brute(json, gv, "{\"k\": [1, \"é\"]}", "mistral json.gbnf");
            ci_grammar_free(json);
        }
    }
    test_walks(gv, label);
}

int main(void) {
    test_errors();
    gt_each_vocab(with_vocab);
    return test_finish("test_grammar");
}
