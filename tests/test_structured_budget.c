/* test_structured_budget.c — constrained requests end within max_tokens: on
 * tinyqwen2-code at temperature 1, json_object and a nested JSON Schema with
 * max_tokens 16 / 24 / 40 over many seeds (n = 2 and n-gram speculation on
 * too): every output whose max_tokens could hold the grammar's shortest
 * text (+ EOS) parses, validates and ends with reason stop; one whose
 * max_tokens is too small still runs (reason length, or stop when longer
 * tokens made it fit) instead of being refused. Without the budget the
 * model runs out of tokens inside nested objects. */
#include <jansson.h>
#include <stdint.h>

#include "engine/engine.h"
#include "engine_test.h"
#include "grammar/grammar.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

#define NSEEDS 24
#define MAXN 2

static char model_dir[4096];

/* nested objects and arrays: "pos" required, "tags" optional with objects inside */
static const char *k_schema =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
    "\"pos\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"},"
    "\"y\":{\"type\":\"integer\"}},\"required\":[\"x\",\"y\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
    "\"k\":{\"type\":\"string\"},\"v\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}},"
    "\"required\":[\"k\"]}}},\"required\":[\"name\",\"pos\"]}";

typedef struct out {
    char text[4096];
    size_t len;
    int fr;
} out;

typedef struct req {
    int64_t id;
    int n;
    out o[MAXN];
} req;

static ci_engine *mk(int spec) {
    ci_engine_config c = ci_engine_default_config();
    c.model_dir = model_dir;
    c.block_size = 16;
    c.max_num_batched_tokens = 2048;
    c.max_num_seqs = 64;
    c.num_threads = 1;
    if (spec) {
        c.speculative_method = "ngram";
        c.num_speculative_tokens = 3;
    }
    return test_engine_create(&c, getenv("CINFER_TEST_DTYPE"));
}

static const char *k_prompts[] = {
    "{\"a\": {\"b\": {\"c\": [", "data = ", "def f(x):\n    return ", "# JSON\n", "[[[[{",
    "config = {\"nested\": {"};

/* NSEEDS requests of one kind and max_tokens, n samples each, run together */
static void run(ci_engine *e, int kind, int max_tokens, int n, uint64_t seed0, req *rs) {
    for (int i = 0; i < NSEEDS; i++) {
        memset(&rs[i], 0, sizeof rs[i]);
        rs[i].n = n;
        ci_engine_sampling sp = ci_engine_default_sampling();
        sp.temperature = 1.0f;
        sp.seed = (int64_t)(seed0 + (uint64_t)i);
        sp.max_tokens = max_tokens;
        sp.n = n;
        sp.structured_kind = kind;
        sp.structured = kind == CINFER_STRUCTURED_JSON_SCHEMA ? k_schema : NULL;
        const char *p = k_prompts[i % (int)(sizeof k_prompts / sizeof *k_prompts)];
        CHECK_OK(ci_engine_add_request_text(e, p, &sp, 0, &rs[i].id));
    }
    while (ci_engine_has_unfinished(e)) {
        const ci_engine_output *o;
        int no;
        CHECK_OK(ci_engine_step(e, &o, &no));
        for (int k = 0; k < no; k++) {
            req *r = NULL;
            for (int i = 0; i < NSEEDS; i++)
                if (rs[i].id == o[k].request_id) r = &rs[i];
            if (!r || o[k].sample_index >= MAXN) continue;
            out *x = &r->o[o[k].sample_index];
            if (x->len + o[k].text_len < sizeof x->text) {
                memcpy(x->text + x->len, o[k].text, o[k].text_len);
                x->len += o[k].text_len;
                x->text[x->len] = '\0';
            }
            if (o[k].finish_reason) x->fr = o[k].finish_reason;
        }
    }
}

static bool is_int(const json_t *v) {
    return json_is_integer(v);
}

/* k_schema's validator (no extra members: the grammar lists only these) */
static bool valid_schema(const json_t *d) {
    if (!json_is_object(d) || !json_is_string(json_object_get(d, "name"))) return false;
    const json_t *pos = json_object_get(d, "pos");
    if (!json_is_object(pos) || !is_int(json_object_get(pos, "x")) ||
        !is_int(json_object_get(pos, "y")) || json_object_size(pos) != 2)
        return false;
    size_t want = 2;
    const json_t *tags = json_object_get(d, "tags");
    if (tags) {
        want++;
        if (!json_is_array(tags)) return false;
        for (size_t i = 0; i < json_array_size(tags); i++) {
            const json_t *t = json_array_get(tags, i), *v = json_object_get(t, "v");
            if (!json_is_object(t) || !json_is_string(json_object_get(t, "k"))) return false;
            if (json_object_size(t) != 1u + (v != NULL)) return false;
            if (v && !json_is_array(v)) return false;
            for (size_t j = 0; v && j < json_array_size(v); j++)
                if (!is_int(json_array_get(v, j))) return false;
        }
    }
    return json_object_size(d) == want;
}

static bool valid(int kind, const char *text, size_t len) {
    json_error_t err;
    json_t *d = json_loadb(text, len, 0, &err);
    bool ok = d && (kind == CINFER_STRUCTURED_JSON_OBJECT ? json_is_object(d) : valid_schema(d));
    json_decref(d);
    return ok;
}

/* Tokens the grammar needs from its start (its shortest text + EOS, or no
 * EOS when nothing can follow), as the engine's budget reckons them. */
static uint32_t need_at_start(int kind) {
    ci_tokenizer *tok = NULL;
    ci_grammar_vocab *v = NULL;
    ci_grammar *g = NULL;
    ci_grammar_matcher *m = NULL;
    uint32_t need = UINT32_MAX;
    CHECK_OK(ci_tokenizer_load(model_dir, &tok));
    int32_t eos = tok ? ci_tokenizer_eos_id(tok) : -1;
    if (tok) CHECK_OK(ci_grammar_vocab_from_tokenizer(tok, &eos, eos >= 0, &v));
    if (kind == CINFER_STRUCTURED_JSON_OBJECT)
        CHECK_OK(ci_grammar_json_object(&g, NULL, 0));
    else
        CHECK_OK(ci_grammar_from_json_schema(k_schema, strlen(k_schema), &g, NULL, 0));
    if (g && v) CHECK_OK(ci_grammar_matcher_create(g, v, &m));
    if (m) need = ci_grammar_matcher_tokens_to_end(m);
    ci_grammar_matcher_free(m);
    ci_grammar_free(g);
    ci_grammar_vocab_free(v);
    ci_tokenizer_free(tok);
    return need;
}

typedef struct tally {
    int fit, fit_ok, short_stop, short_length;
} tally;

static void check(int kind, int max_tokens, uint32_t need, const req *rs, const char *what,
                  tally *t) {
    for (int i = 0; i < NSEEDS; i++)
        for (int s = 0; s < rs[i].n; s++) {
            const out *x = &rs[i].o[s];
            if ((uint32_t)max_tokens >= need) {
                bool ok = x->fr == CINFER_FINISH_STOP && valid(kind, x->text, x->len);
                CHECKF(ok, "%s max_tokens %d req %d.%d: finish %d [%s]", what, max_tokens, i, s,
                       x->fr, x->text);
                t->fit++;
                t->fit_ok += ok;
            } else if (x->fr == CINFER_FINISH_STOP) { /* fewer tokens than bytes: still valid */
                CHECKF(valid(kind, x->text, x->len), "%s max_tokens %d req %d.%d: [%s]", what,
                       max_tokens, i, s, x->text);
                t->short_stop++;
            } else {
                CHECKF(x->fr == CINFER_FINISH_LENGTH, "%s: finish %d", what, x->fr);
                t->short_length++;
            }
        }
}

int main(void) {
    snprintf(model_dir, sizeof model_dir, "%s/models/tinyqwen2-code", test_source_dir());
    static const int kinds[2] = {CINFER_STRUCTURED_JSON_OBJECT, CINFER_STRUCTURED_JSON_SCHEMA};
    static const char *names[2] = {"json_object", "schema"};
    static const int maxt[] = {16, 24, 40};
    static req rs[NSEEDS];
    for (int spec = 0; spec <= 1; spec++) {
        ci_engine *e = mk(spec);
        if (!e) return test_finish("test_structured_budget");
        for (int k = 0; k < 2; k++) {
            uint32_t need = need_at_start(kinds[k]);
            tally t = {0};
            for (size_t b = 0; b < sizeof maxt / sizeof *maxt; b++)
                for (int n = 1; n <= MAXN; n++) {
                    if (spec && n > 1) continue;
                    run(e, kinds[k], maxt[b], n, 7000 + 100 * b + 10 * (uint64_t)n, rs);
                    check(kinds[k], maxt[b], need, rs, names[k], &t);
                }
            printf("%s%s: need %u tokens at the start; %d/%d that fit ended valid with stop; "
                   "too short: %d stop, %d length\n",
                   names[k], spec ? " (ngram speculation)" : "", need, t.fit_ok, t.fit,
                   t.short_stop, t.short_length);
        }
        ci_engine_destroy(e);
    }
    return test_finish("test_structured_budget");
}
