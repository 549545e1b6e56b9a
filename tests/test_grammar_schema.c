/* test_grammar_schema.c — the JSON Schema front end: errors name the
 * keyword or the conflict; integer ranges are exact (every integer around
 * the range checked); and for each schema, random walks over the demo
 * tokenizer (and Llama-3's when present) produce documents that jansson
 * parses and a small validator written here accepts, while known-valid
 * documents are accepted token by token and invalid ones rejected. */
#include <jansson.h>
#include <pcre2.h>

#include "grammar_test.h"

/* ---- an independent validator for the keywords the schemas below use ---- */
static bool full_match(const char *pat, const char *s, size_t n) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED, &ec, &eo, NULL);
    if (!re) return false;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static json_t *resolve(json_t *root, const char *ref) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", ref + 1);
    json_t *t = root;
    for (char *tok = strtok(buf, "/"); tok && t; tok = strtok(NULL, "/"))
        t = json_object_get(t, tok);
    return t;
}

static bool is_type(json_t *v, const char *t) {
    if (!strcmp(t, "object")) return json_is_object(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "integer")) return json_is_integer(v);
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    if (!strcmp(t, "null")) return json_is_null(v);
    return false;
}

static size_t utf8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static bool valid(json_t *root, json_t *s, json_t *v) {
    if (json_is_true(s) || (json_is_object(s) && !json_object_size(s))) return true;
    json_t *x;
    if ((x = json_object_get(s, "$ref")))
        return valid(root, resolve(root, json_string_value(x)), v);
    if ((x = json_object_get(s, "anyOf")) || (x = json_object_get(s, "oneOf"))) {
        size_t i;
        json_t *sub;
        json_array_foreach(x, i, sub) if (valid(root, sub, v)) return true;
        return false;
    }
    if ((x = json_object_get(s, "allOf"))) return valid(root, json_array_get(x, 0), v);
    if ((x = json_object_get(s, "const"))) return json_equal(x, v);
    if ((x = json_object_get(s, "enum"))) {
        size_t i;
        json_t *e;
        json_array_foreach(x, i, e) if (json_equal(e, v)) return true;
        return false;
    }
    if ((x = json_object_get(s, "type"))) {
        bool ok = false;
        if (json_is_string(x)) ok = is_type(v, json_string_value(x));
        size_t i;
        json_t *t;
        json_array_foreach(x, i, t) ok |= is_type(v, json_string_value(t));
        if (!ok) return false;
    }
    if (json_is_number(v)) {
        double d = json_number_value(v);
        if ((x = json_object_get(s, "minimum")) && d < json_number_value(x)) return false;
        if ((x = json_object_get(s, "maximum")) && d > json_number_value(x)) return false;
        if ((x = json_object_get(s, "exclusiveMinimum")) && d <= json_number_value(x)) return false;
        if ((x = json_object_get(s, "exclusiveMaximum")) && d >= json_number_value(x)) return false;
    }
    if (json_is_string(v)) {
        const char *str = json_string_value(v);
        size_t n = json_string_length(v), cps = utf8_count(str, n);
        if ((x = json_object_get(s, "minLength")) && cps < (size_t)json_integer_value(x))
            return false;
        if ((x = json_object_get(s, "maxLength")) && cps > (size_t)json_integer_value(x))
            return false;
        if ((x = json_object_get(s, "pattern")) && !full_match(json_string_value(x), str, n))
            return false;
        if ((x = json_object_get(s, "format"))) {
            const char *f = json_string_value(x), *re = NULL;
            if (!strcmp(f, "date")) re = "\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])";
            if (!strcmp(f, "uuid"))
                re = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
            if (!strcmp(f, "email")) re = "[^@\\s]+@[^@\\s]+\\.[a-zA-Z]{2,}";
            if (!strcmp(f, "date-time"))
                re = "\\d{4}-\\d\\d-\\d\\dT([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d+)?(Z|[-+]"
                     "\\d\\d:\\d\\d)";
            if (!re || !full_match(re, str, n)) return false;
        }
    }
    if (json_is_array(v)) {
        if ((x = json_object_get(s, "minItems")) &&
            json_array_size(v) < (size_t)json_integer_value(x))
            return false;
        if ((x = json_object_get(s, "maxItems")) &&
            json_array_size(v) > (size_t)json_integer_value(x))
            return false;
        json_t *items = json_object_get(s, "items"), *e;
        size_t i;
        if (items) json_array_foreach(v, i, e) if (!valid(root, items, e)) return false;
    }
    if (json_is_object(v)) {
        json_t *props = json_object_get(s, "properties"),
               *add = json_object_get(s, "additionalProperties"), *e;
        size_t i;
        json_array_foreach(json_object_get(s, "required"), i,
                           e) if (!json_object_get(v, json_string_value(e))) return false;
        const char *k, *pk;
        json_t *pv;
        size_t last = 0;
        json_object_foreach(v, k, e) {
            json_t *ps = json_object_get(props, k);
            if (ps) { /* the engine's policy: listed properties in the schema's order */
                size_t idx = 0;
                json_object_foreach(props, pk, pv) {
                    if (!strcmp(pk, k)) break;
                    idx++;
                }
                if (idx < last) return false;
                last = idx;
                if (!valid(root, ps, e)) return false;
            } else if (json_is_false(add) || (props && !add)) {
                return false; /* the engine's policy: listed properties only */
            } else if (json_is_object(add) && !valid(root, add, e)) {
                return false;
            }
        }
    }
    return true;
}

typedef struct sch {
    const char *schema;
    const char *yes[4], *no[4];
} sch;

static const sch schemas[] = {
    {"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1,"
     "\"maxLength\":20},"
     "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},\"email\":{\"type\":\"string\","
     "\"format\":\"email\"}},"
     "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}",
     {"{\"name\":\"Ann\",\"age\":31}", "{\"name\": \"Bo\", \"age\": 150, \"email\": \"bo@x.org\"}"},
     {"{\"name\":\"\",\"age\":3}", "{\"name\":\"A\",\"age\":151}", "{\"age\":3,\"name\":\"A\"}",
      "{\"name\":\"A\"}"}},
    {"{\"type\":\"object\",\"properties\":{\"user\":{\"type\":\"object\",\"properties\":{\"id\":{"
     "\"type\":\"integer\"},"
     "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":3}},\"required\":["
     "\"id\",\"tags\"]},"
     "\"active\":{\"type\":\"boolean\"}},\"required\":[\"user\",\"active\"]}",
     {"{\"user\":{\"id\":-5,\"tags\":[]},\"active\":true}",
      "{\n \"user\": {\"id\": 1, \"tags\": [\"a\", \"b\"]},\n \"active\": false\n}"},
     {"{\"user\":{\"id\":1,\"tags\":[\"a\",\"b\",\"c\",\"d\"]},\"active\":true}",
      "{\"user\":{\"id\":1.5,\"tags\":[]},\"active\":true}"}},
    {"{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":-5,\"maximum\":5},"
     "\"minItems\":2,\"maxItems\":4}",
     {"[1,-5]", "[0, 5, 3, -1]"},
     {"[1]", "[1,2,3,4,5]", "[6,1]", "[]"}},
    {"{\"enum\":[\"red\",\"green\",1,null,{\"a\":[true]}]}",
     {"\"red\"", "1", "null", "{\"a\":[true]}"},
     {"\"blue\"", "2", "\"Red\""}},
    {"{\"anyOf\":[{\"type\":\"string\",\"maxLength\":5},{\"type\":\"integer\",\"minimum\":10,"
     "\"maximum\":20},{\"type\":\"null\"}]}",
     {"\"abc\"", "15", "null"},
     {"\"abcdef\"", "9", "21", "true"}},
    {"{\"$defs\":{\"point\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"},\"y\":"
     "{\"type\":\"number\"}},"
     "\"required\":[\"x\",\"y\"],\"additionalProperties\":false}},\"type\":\"object\","
     "\"properties\":{\"a\":{\"$ref\":\"#/$defs/point\"},"
     "\"b\":{\"$ref\":\"#/$defs/point\"}},\"required\":[\"a\"],\"additionalProperties\":false}",
     {"{\"a\":{\"x\":1,\"y\":2.5e3}}", "{\"a\":{\"x\":-0.5,\"y\":0},\"b\":{\"x\":1,\"y\":1}}"},
     {"{\"b\":{\"x\":1,\"y\":1}}", "{\"a\":{\"x\":1}}"}},
    {"{\"definitions\":{\"node\":{\"type\":\"object\",\"properties\":{\"value\":{\"type\":"
     "\"integer\"},\"children\":{\"type\":\"array\","
     "\"items\":{\"$ref\":\"#/definitions/"
     "node\"},\"maxItems\":2}},\"required\":[\"value\"],\"additionalProperties\":false}},"
     "\"$ref\":\"#/definitions/node\"}",
     {"{\"value\":1}",
      "{\"value\":1,\"children\":[{\"value\":2,\"children\":[{\"value\":3}]},{\"value\":4}]}"},
     {"{\"value\":1,\"children\":[{}]}", "{\"children\":[]}"}},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":-123,"
     "\"maximum\":4567},"
     "\"b\":{\"type\":\"integer\",\"exclusiveMinimum\":99,\"exclusiveMaximum\":1000},\"c\":{"
     "\"type\":\"integer\",\"minimum\":-50,\"maximum\":-7}},"
     "\"required\":[\"a\",\"b\",\"c\"],\"additionalProperties\":false}",
     {"{\"a\":-123,\"b\":100,\"c\":-7}", "{\"a\":4567,\"b\":999,\"c\":-50}"},
     {"{\"a\":-124,\"b\":100,\"c\":-7}", "{\"a\":0,\"b\":99,\"c\":-7}",
      "{\"a\":0,\"b\":100,\"c\":-6}", "{\"a\":4568,\"b\":100,\"c\":-8}"}},
    {"{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-"
     "\\\\d{3}$\"},"
     "\"d\":{\"type\":\"string\",\"format\":\"date\"},\"u\":{\"type\":\"string\",\"format\":"
     "\"uuid\"},"
     "\"q\":{\"type\":\"string\",\"pattern\":\"a\\\"b\\\\\\\\c[^x]\"}},\"required\":[\"code\","
     "\"d\",\"u\",\"q\"],\"additionalProperties\":false}",
     {"{\"code\":\"AB-123\",\"d\":\"2024-02-29\",\"u\":\"123e4567-e89b-12d3-a456-426614174000\","
      "\"q\":\"a\\\"b\\\\c\\n\"}"},
     {"{\"code\":\"AB-1234\",\"d\":\"2024-02-29\",\"u\":\"123e4567-e89b-12d3-a456-426614174000\","
      "\"q\":\"a\\\"b\\\\cy\"}",
      "{\"code\":\"AB-123\",\"d\":\"2024-13-01\",\"u\":\"123e4567-e89b-12d3-a456-426614174000\","
      "\"q\":\"a\\\"b\\\\cy\"}"}},
    {"{\"type\":\"object\",\"properties\":{\"v\":{\"type\":[\"string\",\"null\"]},\"k\":{\"const\":"
     "\"fixed\"},"
     "\"n\":{\"type\":\"number\",\"minimum\":0},\"t\":{\"type\":\"string\",\"format\":\"date-"
     "time\"}},\"required\":[\"v\",\"k\",\"n\",\"t\"]}",
     {"{\"v\":null,\"k\":\"fixed\",\"n\":0.5,\"t\":\"2024-01-02T03:04:05Z\"}",
      "{\"v\":\"s\",\"k\":\"fixed\",\"n\":12,\"t\":\"2024-01-02T03:04:05.123+02:00\"}"},
     {"{\"v\":1,\"k\":\"fixed\",\"n\":1,\"t\":\"2024-01-02T03:04:05Z\"}",
      "{\"v\":null,\"k\":\"fixed\",\"n\":-1,\"t\":\"2024-01-02T03:04:05Z\"}"}},
    {"{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\",\"minimum\":0}}",
     {"{}", "{\"a\":1,\"b\":22}"},
     {"{\"a\":-1}", "{\"a\":\"x\"}"}},
    {"{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"},\"unit\":{\"type\":"
     "\"string\",\"enum\":[\"c\",\"f\"]}},"
     "\"required\":[\"location\",\"unit\"],\"additionalProperties\":false}",
     {"{\"location\":\"Paris, \\u00e9t\\u00e9 \xc3\xa9\",\"unit\":\"c\"}"},
     {"{\"location\":\"Paris\",\"unit\":\"k\"}", "{\"location\":\"Pa\nris\",\"unit\":\"c\"}"}},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}"
     ",\"c\":{\"type\":\"boolean\"}}}",
     {"{}", "{\"b\":\"x\"}", "{\"a\":1,\"c\":true}", "{\"a\":1,\"b\":\"\",\"c\":false}"},
     {"{\"b\":\"x\",\"a\":1}", "{\"a\":1,}", "{,\"a\":1}"}},
    {"{\"type\":\"object\",\"properties\":{\"p\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},"
     "\"t\":{\"type\":\"number\",\"minimum\":-2,\"maximum\":3},\"u\":{\"type\":\"number\","
     "\"maximum\":-10}},"
     "\"required\":[\"p\",\"t\",\"u\"],\"additionalProperties\":false}",
     {"{\"p\":0.25,\"t\":-2.0,\"u\":-10}", "{\"p\":1.000,\"t\":2.999,\"u\":-123.5}",
      "{\"p\":0,\"t\":-0.5,\"u\":-10.0}"},
     {"{\"p\":1.01,\"t\":0,\"u\":-10}", "{\"p\":0.5,\"t\":-2.5,\"u\":-10}",
      "{\"p\":0.5,\"t\":3.5,\"u\":-10}", "{\"p\":0.5,\"t\":0,\"u\":-9.5}"}},
    {"{}", {"{\"x\":[1,{\"y\":null}]}", "\"s\"", "-1.5e3"}, {"{\"x\":}", "01"}},
};

static bool check_doc(const char *text, size_t len, void *ctx) {
    json_t *schema = ctx;
    json_error_t e;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &e);
    bool ok = j && valid(schema, schema, j);
    json_decref(j);
    return ok;
}

static void test_errors(void) {
    static const struct {
        const char *schema, *want;
    } errs[] = {
        {"{\"not\":{\"type\":\"string\"}}", "unsupported JSON Schema keyword 'not'"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"if\":{}}}}",
         "unsupported JSON Schema keyword 'if'"},
        {"{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", "minItems > maxItems"},
        {"{\"enum\":[]}", "'enum' must be a non-empty array"},
        {"{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "minimum > maximum"},
        {"{\"type\":\"integer\",\"exclusiveMinimum\":4,\"exclusiveMaximum\":5}",
         "minimum > maximum"},
        {"{\"type\":\"string\",\"minLength\":3,\"maxLength\":2}", "minLength > maxLength"},
        {"{\"type\":\"string\",\"format\":\"hostname\"}",
         "unsupported JSON Schema format 'hostname'"},
        {"{\"$ref\":\"#/$defs/missing\"}", "$ref '#/$defs/missing' not found"},
        {"{\"type\":\"string\",\"pattern\":\"(?=a)\"}", "unsupported construct '(?='"},
        {"{\"type\":\"frob\"}", "unknown type 'frob'"},
        {"{\"allOf\":[{},{}]}", "'allOf' is supported with exactly one schema"},
        {"false", "matches nothing"},
        {"{\"type\":", "invalid JSON"},
        {"{\"type\":\"object\",\"required\":[\"a\"]}",
         "required property 'a' is not in 'properties'"},
        {"{\"type\":\"number\",\"maximum\":3.5}", "'maximum' on a number must be an integer value"},
        {"{\"type\":\"number\",\"exclusiveMaximum\":3}",
         "'exclusiveMaximum' on a number is not supported"},
        {"{\"type\":\"number\",\"minimum\":3,\"maximum\":2}", "minimum > maximum"},
        {"{\"$defs\":{\"a\":{\"anyOf\":[{\"$ref\":\"#/$defs/a\"}]}},\"$ref\":\"#/$defs/a\"}",
         "left recursion"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        ci_grammar *g = NULL;
        char err[256] = "";
        ci_status s = ci_grammar_from_json_schema(errs[i].schema, strlen(errs[i].schema), &g, err,
                                                  sizeof err);
        CHECKF(s.code != CI_OK && !g, "%s compiled", errs[i].schema);
        CHECKF(strstr(err, errs[i].want) != NULL, "%s: got [%s] want [%s]", errs[i].schema, err,
               errs[i].want);
        ci_grammar_free(g);
    }
}

/* Every integer in a window around [lo, hi] is accepted exactly when inside. */
static void test_int_ranges(const gt_vocab *gv, const char *label) {
    (void)label;
    static const long long r[][2] = {{-123, 4567}, {0, 0},     {7, 7},       {-50, -7},
                                     {1, 100},     {95, 1005}, {-1000, 999}, {0, 9}};
    for (size_t k = 0; k < sizeof r / sizeof r[0]; k++) {
        char schema[160];
        snprintf(schema, sizeof schema, "{\"type\":\"integer\",\"minimum\":%lld,\"maximum\":%lld}",
                 r[k][0], r[k][1]);
        ci_grammar *g = NULL;
        CHECK_OK(ci_grammar_from_json_schema(schema, strlen(schema), &g, NULL, 0));
        if (!g) continue;
        int bad = 0;
        for (long long x = r[k][0] - 300; x <= r[k][1] + 300; x++) {
            char t[32];
            snprintf(t, sizeof t, "%lld", x);
            bool in = x >= r[k][0] && x <= r[k][1];
            if (gt_accepts(g, gv, t) != in && bad++ < 3) fprintf(stderr, "%s: %lld\n", schema, x);
        }
        CHECKF(bad == 0, "%s: %d integers misjudged", schema, bad);
        CHECK(!gt_accepts(g, gv, "-0") && !gt_accepts(g, gv, "007"));
        ci_grammar_free(g);
    }
    /* unbounded above: digit count bounded, sign fixed */
    ci_grammar *g = NULL;
    const char *min42 = "{\"type\":\"integer\",\"minimum\":42}";
    CHECK_OK(ci_grammar_from_json_schema(min42, strlen(min42), &g, NULL, 0));
    if (g) {
        CHECK(gt_accepts(g, gv, "42") && gt_accepts(g, gv, "100000000000") &&
              !gt_accepts(g, gv, "41") && !gt_accepts(g, gv, "-42"));
        ci_grammar_free(g);
    }
}

static void run_schemas(const gt_vocab *gv, const char *label) {
    if (!strcmp(label, "tinyqwen2")) test_int_ranges(gv, label);
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        const sch *c = &schemas[i];
        ci_grammar *g = NULL;
        char err[256];
        ci_status s =
            ci_grammar_from_json_schema(c->schema, strlen(c->schema), &g, err, sizeof err);
        CHECKF(s.code == CI_OK, "schema %zu: %s", i, err);
        json_t *sj = json_loads(c->schema, 0, NULL);
        if (!g || !sj) {
            json_decref(sj);
            continue;
        }
        for (int k = 0; k < 4 && c->yes[k]; k++) {
            CHECKF(check_doc(c->yes[k], strlen(c->yes[k]), sj), "test data: schema %zu: %s invalid",
                   i, c->yes[k]);
            CHECKF(gt_accepts_tokens(g, gv, c->yes[k]), "%s schema %zu should accept %s", label, i,
                   c->yes[k]);
        }
        for (int k = 0; k < 4 && c->no[k]; k++) {
            CHECKF(!check_doc(c->no[k], strlen(c->no[k]), sj), "test data: schema %zu: %s valid", i,
                   c->no[k]);
            CHECKF(!gt_accepts(g, gv, c->no[k]), "%s schema %zu should reject %s", label, i,
                   c->no[k]);
        }
        char what[64];
        snprintf(what, sizeof what, "%s schema %zu", label, i);
        int fin = gt_walks(g, gv, 20, 100, i + 7, check_doc, sj, what);
        CHECKF(fin >= 2, "%s: only %d walks finished", what,
               fin); /* a liveness guard: EOS is picked at random */
        json_decref(sj);
        ci_grammar_free(g);
    }
    ci_grammar *g = NULL;
    CHECK_OK(ci_grammar_json_object(&g, NULL, 0));
    if (g) {
        CHECK(gt_accepts_tokens(g, gv, "{\"a\": [1, {\"b\": null}], \"c\": \"d\"}"));
        CHECK(!gt_accepts(g, gv, "[1]") && !gt_accepts(g, gv, " {}"));
        ci_grammar_free(g);
    }
}

int main(void) {
    test_errors();
    gt_each_vocab(run_schemas);
    return test_finish("test_grammar_schema");
}
