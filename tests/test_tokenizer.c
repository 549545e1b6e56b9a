/* test_tokenizer.c — token-exact checks against HF tokenizers goldens
 * (../shared/tokenizers/NAME, models/tinyqwen2-code) plus error handling. */
#include <jansson.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "test.h"
#include "tokenizer/tokenizer.h"

static int verbose;

static bool ids_equal(const int32_t *a, size_t na, json_t *arr) {
    if (!json_is_array(arr) || json_array_size(arr) != na) return false;
    for (size_t i = 0; i < na; i++)
        if (json_integer_value(json_array_get(arr, i)) != a[i]) return false;
    return true;
}

static int32_t *json_ids(json_t *arr, size_t *n) {
    *n = json_array_size(arr);
    int32_t *v = malloc((*n ? *n : 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++)
        v[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return v;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n && i < 40; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

/* Streams ids through a detok stream; returns true if the pieces concatenate to `want`. */
static bool stream_ok(const ci_tokenizer *tok, const int32_t *ids, size_t n, bool skip,
                      const char *want, size_t want_len) {
    ci_detok_stream *s;
    if (ci_detok_stream_create(tok, skip, &s).code != CI_OK) return false;
    char *acc = malloc(want_len * 2 + 64);
    size_t cap = want_len * 2 + 64, len = 0;
    bool ok = true;
    for (size_t i = 0; i <= n && ok; i++) {
        const char *p;
        size_t pl;
        ci_status st =
            i < n ? ci_detok_stream_put(s, ids[i], &p, &pl) : ci_detok_stream_finish(s, &p, &pl);
        if (st.code != CI_OK) {
            ok = false;
            break;
        }
        /* never a partial UTF-8 sequence at the end of a piece */
        if (pl > 0 && i < n) {
            size_t k = pl - 1, back = 0;
            while (k > 0 && ((unsigned char)p[k] & 0xC0) == 0x80 && back < 4)
                k--, back++;
            unsigned char c = (unsigned char)p[k];
            size_t need = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            if (need != pl - k) ok = false;
        }
        if (len + pl > cap) {
            ok = false;
            break;
        }
        memcpy(acc + len, p, pl);
        len += pl;
    }
    if (ok) ok = len == want_len && memcmp(acc, want, len) == 0;
    free(acc);
    ci_detok_stream_free(s);
    return ok;
}

static void run_vectors(const char *name, const char *dir) {
    char path[4400];
    snprintf(path, sizeof path, "%s/vectors_public.json", dir);
    json_error_t err;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &err);
    CHECKF(root != NULL, "%s: %s", path, err.text);
    if (!root) return;
    ci_tokenizer *tok = NULL;
    clock_t t0 = clock();
    ci_status st = ci_tokenizer_load(dir, &tok);
    double load_s = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECKF(st.code == CI_OK, "%s: %s", name, st.msg);
    if (!tok) {
        json_decref(root);
        return;
    }
    json_t *vecs = json_object_get(root, "vectors");
    size_t nv = json_array_size(vecs), pass = 0, stream_pass = 0;
    for (size_t i = 0; i < nv; i++) {
        json_t *v = json_array_get(vecs, i);
        const char *id = json_string_value(json_object_get(v, "id"));
        json_t *jt = json_object_get(v, "text");
        const char *text = json_string_value(jt);
        size_t tlen = json_string_length(jt);
        bool ok = true;
        int32_t *ids = NULL, *ids2 = NULL;
        size_t n = 0, n2 = 0;
        st = ci_tokenizer_encode(tok, text, tlen, true, &ids, &n);
        if (st.code != CI_OK || !ids_equal(ids, n, json_object_get(v, "ids"))) {
            fprintf(stderr, "%s %s: ids mismatch %s\n", name, id, st.msg);
            if (st.code == CI_OK) print_ids("got ", ids, n);
            ok = false;
        }
        st = ci_tokenizer_encode(tok, text, tlen, false, &ids2, &n2);
        if (st.code != CI_OK || !ids_equal(ids2, n2, json_object_get(v, "ids_no_special"))) {
            fprintf(stderr, "%s %s: ids_no_special mismatch %s\n", name, id, st.msg);
            if (st.code == CI_OK) {
                print_ids("got ", ids2, n2);
                size_t nw;
                int32_t *w = json_ids(json_object_get(v, "ids_no_special"), &nw);
                print_ids("want", w, nw);
                free(w);
            }
            ok = false;
        }
        size_t ng;
        int32_t *gold = json_ids(json_object_get(v, "ids"), &ng);
        const char *keys[2] = {"decoded", "decoded_skip_special"};
        for (int k = 0; k < 2; k++) {
            json_t *jw = json_object_get(v, keys[k]);
            char *out = NULL;
            size_t ol = 0;
            st = ci_tokenizer_decode(tok, gold, ng, k == 1, &out, &ol);
            if (st.code != CI_OK || ol != json_string_length(jw) ||
                memcmp(out, json_string_value(jw), ol) != 0) {
                fprintf(stderr, "%s %s: %s mismatch %s\n  got  \"%s\"\n  want \"%s\"\n", name, id,
                        keys[k], st.msg, out ? out : "", json_string_value(jw));
                ok = false;
            }
            free(out);
            if (stream_ok(tok, gold, ng, k == 1, json_string_value(jw), json_string_length(jw))) {
                if (k == 0) stream_pass++;
            } else {
                fprintf(stderr, "%s %s: stream (skip=%d) mismatch\n", name, id, k);
                ok = false;
            }
        }
        free(gold);
        free(ids);
        free(ids2);
        if (ok) pass++;
        CHECKF(ok, "%s vector %s", name, id);
    }
    printf("%s: %zu/%zu vectors (stream %zu/%zu), load %.3f s\n", name, pass, nv, stream_pass, nv,
           load_s);
    snprintf(path, sizeof path, "%s/chat_public.json", dir);
    json_t *chat = json_load_file(path, JSON_ALLOW_NUL, &err);
    if (chat) {
        json_t *cases = json_object_get(chat, "cases");
        size_t nc = json_array_size(cases), cpass = 0;
        for (size_t i = 0; i < nc; i++) {
            json_t *c = json_array_get(cases, i);
            json_t *jr = json_object_get(c, "rendered");
            int32_t *ids = NULL;
            size_t n = 0;
            st = ci_tokenizer_encode(tok, json_string_value(jr), json_string_length(jr), false,
                                     &ids, &n);
            bool ok = st.code == CI_OK && ids_equal(ids, n, json_object_get(c, "ids"));
            CHECKF(ok, "%s chat %s: %s", name, json_string_value(json_object_get(c, "id")), st.msg);
            cpass += ok;
            free(ids);
        }
        printf("%s: %zu/%zu chat renders\n", name, cpass, nc);
        json_decref(chat);
    }
    if (verbose)
        printf("  vocab %d bos %d eos %d\n", ci_tokenizer_vocab_size(tok), ci_tokenizer_bos_id(tok),
               ci_tokenizer_eos_id(tok));
    ci_tokenizer_free(tok);
    json_decref(root);
}

static void run_tinyqwen(void) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/models/tinyqwen2-code", test_source_dir());
    snprintf(path, sizeof path, "%s/golden_public.json", dir);
    json_error_t err;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &err);
    if (!root) {
        printf("tinyqwen2-code: no golden_public.json, skipped\n");
        return;
    }
    ci_tokenizer *tok = NULL;
    ci_status st = ci_tokenizer_load(dir, &tok);
    CHECKF(st.code == CI_OK, "tinyqwen2-code: %s", st.msg);
    if (!tok) {
        json_decref(root);
        return;
    }
    CHECK(ci_tokenizer_bos_id(tok) == -1);
    CHECK(ci_tokenizer_eos_id(tok) == 8189);
    CHECK(ci_tokenizer_vocab_size(tok) == 8192);
    json_t *prompts = json_object_get(root, "prompts");
    size_t np = json_array_size(prompts), pass = 0;
    for (size_t i = 0; i < np; i++) {
        json_t *p = json_array_get(prompts, i);
        json_t *jt = json_object_get(p, "prompt");
        int32_t *ids;
        size_t n;
        bool ok = true;
        st = ci_tokenizer_encode(tok, json_string_value(jt), json_string_length(jt), false, &ids,
                                 &n);
        if (st.code != CI_OK || !ids_equal(ids, n, json_object_get(p, "prompt_token_ids"))) {
            fprintf(stderr, "tinyqwen2-code prompt %zu: ids mismatch %s\n", i, st.msg);
            ok = false;
        }
        if (st.code == CI_OK) free(ids);
        size_t ng;
        int32_t *g = json_ids(json_object_get(p, "greedy_token_ids"), &ng);
        char *out = NULL;
        size_t ol;
        json_t *gt = json_object_get(p, "greedy_text");
        st = ci_tokenizer_decode(tok, g, ng, false, &out, &ol);
        if (st.code != CI_OK || ol != json_string_length(gt) ||
            memcmp(out, json_string_value(gt), ol)) {
            fprintf(stderr, "tinyqwen2-code prompt %zu: greedy_text mismatch\n", i);
            ok = false;
        }
        if (out && !stream_ok(tok, g, ng, false, out, ol)) {
            fprintf(stderr, "tinyqwen2-code prompt %zu: stream mismatch\n", i);
            ok = false;
        }
        free(out);
        free(g);
        if (ok) pass++;
        CHECK(ok);
    }
    printf("tinyqwen2-code: %zu/%zu prompts\n", pass, np);
    json_t *val = json_object_get(json_object_get(root, "validation"), "token_ids");
    if (json_is_array(val)) {
        snprintf(path, sizeof path, "%s/val_text.txt", dir);
        size_t len;
        char *text = test_read_file(path, &len);
        CHECK(text != NULL);
        if (text) {
            int32_t *ids;
            size_t n;
            clock_t t0 = clock();
            st = ci_tokenizer_encode(tok, text, len, false, &ids, &n);
            double s = (double)(clock() - t0) / CLOCKS_PER_SEC;
            CHECKF(st.code == CI_OK, "%s", st.msg);
            if (st.code == CI_OK) {
                bool eq = ids_equal(ids, n, val);
                CHECKF(eq, "val_text: %zu ids, want %zu", n, json_array_size(val));
                printf("tinyqwen2-code: val_text %zu/%zu ids %s (%.3f s)\n", n,
                       json_array_size(val), eq ? "match" : "MISMATCH", s);
                free(ids);
            }
            free(text);
        }
    }
    ci_tokenizer_free(tok);
    json_decref(root);
}

static ci_status load_str(const char *js, ci_tokenizer **tok) {
    return ci_tokenizer_load_json(js, strlen(js), NULL, 0, tok);
}

static void expect_err(const char *js, ci_code code, const char *needle) {
    ci_tokenizer *tok = NULL;
    ci_status st = load_str(js, &tok);
    CHECKF(st.code == code && strstr(st.msg, needle) && tok == NULL,
           "want %s containing \"%s\", got %s \"%s\"", ci_code_name(code), needle,
           ci_code_name(st.code), st.msg);
    ci_tokenizer_free(tok);
}

static void run_errors(void) {
    expect_err("{\"model\": ", CI_ERR_FORMAT, "invalid JSON");
    expect_err("[]", CI_ERR_FORMAT, "top level");
    expect_err("{\"version\": \"1.0\"}", CI_ERR_FORMAT, "model");
    expect_err("{\"model\": {\"type\": \"Magic\", \"vocab\": {}}}", CI_ERR_FORMAT,
               "unknown model type");
    expect_err("{\"model\": {\"type\": \"BPE\", \"vocab\": []}}", CI_ERR_FORMAT, "model.vocab");
    expect_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}}", CI_ERR_FORMAT,
               "model.vocab");
    expect_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
               "\"merges\": [\"a c\"]}}",
               CI_ERR_FORMAT, "model.merges[0]");
    expect_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
               "\"merges\": [[\"a\", \"b\"]]}}",
               CI_ERR_FORMAT, "model.merges[0]");
    expect_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}",
               CI_ERR_FORMAT, "model.merges[0]");
    expect_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
               "\"added_tokens\": [{\"id\": \"x\", \"content\": \"<s>\"}]}",
               CI_ERR_FORMAT, "added_tokens[0].id");
    expect_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
               "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
               "\"behavior\": \"Isolated\"}}",
               CI_ERR_FORMAT, "pre_tokenizer");
    expect_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], "
               "\"byte_fallback\": 3}}",
               CI_ERR_FORMAT, "model.byte_fallback");

    /* escapes in vocab keys, through the fast scanner ("merges": []) and
     * through jansson ("merges": null is left to it) */
    const char *forms[2] = {"[]", "null"};
    for (int f = 0; f < 2; f++) {
        char js[512];
        snprintf(js, sizeof js,
                 "{\"model\": {\"type\": \"BPE\", \"merges\": %s, \"vocab\": {\"\\u0120a\": 0, "
                 "\"\\\"\": 1, \"\\ud83d\\ude00\": 2, \"a\\/b\\n\": 3}}}",
                 forms[f]);
        ci_tokenizer *t2 = NULL;
        ci_status st = load_str(js, &t2);
        CHECKF(st.code == CI_OK, "%s: %s", forms[f], st.msg);
        if (!t2) continue;
        CHECK(ci_tokenizer_token_to_id(t2, "\xc4\xa0"
                                           "a") == 0);
        CHECK(ci_tokenizer_token_to_id(t2, "\"") == 1);
        CHECK(ci_tokenizer_token_to_id(t2, "\xf0\x9f\x98\x80") == 2);
        CHECK(ci_tokenizer_token_to_id(t2, "a/b\n") == 3);
        CHECK(ci_tokenizer_vocab_size(t2) == 4);
        ci_tokenizer_free(t2);
    }
    expect_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\\ud800\": 0}}}", CI_ERR_FORMAT,
               "invalid JSON");
    expect_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}",
               CI_ERR_FORMAT, "model.vocab[\"a\"]");
    expect_err("{\"model\": {\"type\": \"BPE\", \"merges\": [\"a b\"], \"vocab\": {\"a\": 0}}}",
               CI_ERR_FORMAT, "model.merges[0]");
    expect_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}",
               CI_ERR_FORMAT, "model.merges[0]");
    expect_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}} x", CI_ERR_FORMAT,
               "invalid JSON");

    /* a small working tokenizer: encode/decode, invalid UTF-8, bad ids */
    const char *js = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, "
                     "\"<s>\": 3}, \"merges\": [\"a b\"]}, \"added_tokens\": [{\"id\": 3, "
                     "\"content\": \"<s>\", \"special\": true, \"normalized\": false}]}";
    ci_tokenizer *tok = NULL;
    CHECK_OK(load_str(js, &tok));
    if (!tok) return;
    int32_t *ids;
    size_t n;
    CHECK_OK(ci_tokenizer_encode(tok, "ab<s>ba", 7, true, &ids, &n));
    CHECK(n == 4 && ids[0] == 2 && ids[1] == 3 && ids[2] == 1 && ids[3] == 0);
    free(ids);
    ci_status st = ci_tokenizer_encode(tok, "a\xff", 2, false, &ids, &n);
    CHECKF(st.code == CI_ERR_INVALID && strstr(st.msg, "UTF-8"), "%s", st.msg);
    st = ci_tokenizer_encode(tok, "a\xed\xa0\x80", 4, false, &ids, &n); /* surrogate */
    CHECK(st.code == CI_ERR_INVALID);
    char *out;
    size_t ol;
    int32_t bad[2] = {0, -1};
    st = ci_tokenizer_decode(tok, bad, 2, false, &out, &ol);
    CHECK(st.code == CI_ERR_INVALID);
    /* an id the tokenizer does not know (a padded embedding row) decodes to
     * nothing, as HF tokenizers skip it */
    int32_t unknown[3] = {2, 99, 3};
    CHECK_OK(ci_tokenizer_decode(tok, unknown, 3, false, &out, &ol));
    CHECKF(strcmp(out, "ab <s>") == 0, "'%s'", out);
    free(out);
    ci_detok_stream *ds;
    CHECK_OK(ci_detok_stream_create(tok, false, &ds));
    const char *piece;
    size_t pl;
    CHECK_OK(ci_detok_stream_put(ds, 99, &piece, &pl));
    CHECK(pl == 0);
    CHECK(ci_detok_stream_put(ds, -5, &piece, &pl).code == CI_ERR_INVALID);
    ci_detok_stream_free(ds);
    int32_t good[3] = {2, 3, 0};
    CHECK_OK(ci_tokenizer_decode(tok, good, 3, false, &out, &ol));
    CHECK(strcmp(out, "ab <s> a") == 0); /* no decoder: joined with spaces */
    free(out);
    CHECK_OK(ci_tokenizer_decode(tok, good, 3, true, &out, &ol));
    CHECK(strcmp(out, "ab a") == 0);
    free(out);
    CHECK(ci_tokenizer_token_to_id(tok, "ab") == 2);
    CHECK(ci_tokenizer_token_to_id(tok, "zz") == -1);
    CHECK(ci_tokenizer_is_special(tok, 3) && !ci_tokenizer_is_special(tok, 0));
    CHECK(ci_tokenizer_id_to_token(tok, 99) == NULL);
    ci_tokenizer_free(tok);

    CHECK(ci_tokenizer_load("/nonexistent/dir", &tok).code == CI_ERR_IO);
}

/* The fuzz seeds: each non-"broken" file loads and round-trips text. */
static void run_seeds(void) {
    static const char *seeds[] = {"bytelevel_str_merges", "bytelevel_pair_merges",
                                  "spm_byte_fallback", "metaspace"};
    static const char *want[] = {"Hello world", "<|begin_of_text|> Hello", "<s> Hello\n\xc3\xa9",
                                 "<s> hi</w></s>"};
    static const char *text[] = {"Hello world", "Hello", "Hello\n\xc3\xa9", "HI"};
    for (size_t i = 0; i < 4; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus/tokenizer_json/%s.json",
                 test_source_dir(), seeds[i]);
        size_t len;
        char *js = test_read_file(path, &len);
        CHECKF(js != NULL, "%s", path);
        if (!js) continue;
        ci_tokenizer *tok = NULL;
        ci_status st = ci_tokenizer_load_json(js, len, NULL, 0, &tok);
        CHECKF(st.code == CI_OK, "%s: %s", seeds[i], st.msg);
        free(js);
        if (!tok) continue;
        int32_t *ids;
        size_t n;
        st = ci_tokenizer_encode(tok, text[i], strlen(text[i]), true, &ids, &n);
        CHECKF(st.code == CI_OK, "%s: %s", seeds[i], st.msg);
        if (st.code == CI_OK) {
            char *out;
            size_t ol;
            st = ci_tokenizer_decode(tok, ids, n, false, &out, &ol);
            CHECKF(st.code == CI_OK && strcmp(out, want[i]) == 0, "%s: got \"%s\" (%zu ids)",
                   seeds[i], st.code == CI_OK ? out : st.msg, n);
            if (verbose) print_ids(seeds[i], ids, n);
            if (st.code == CI_OK) free(out);
            free(ids);
        }
        ci_tokenizer_free(tok);
    }
}

int main(int argc, char **argv) {
    verbose = argc > 1;
    run_errors();
    run_seeds();
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tokenizers", test_shared_dir());
    struct stat sb;
    run_tinyqwen();
    if (stat(dir, &sb) != 0) {
        printf("no shared tokenizers at %s\n", dir);
        if (test_failed_) return test_finish("test_tokenizer");
        test_skip("shared tokenizer data absent");
    }
    const char *names[] = {"qwen3", "llama3", "llama3_nobos", "mistral"};
    for (size_t i = 0; i < 4; i++) {
        char d[4200];
        snprintf(d, sizeof d, "%s/%s", dir, names[i]);
        run_vectors(names[i], d);
    }
    return test_finish("test_tokenizer");
}
