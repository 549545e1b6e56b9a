/* cmd_tokenize.c — `cinfer tokenize` and `cinfer detokenize`. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/common.h"
#include "tokenizer/tokenizer.h"

static void print_ids(FILE *f, const int32_t *ids, size_t n) {
    fputc('[', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, i ? ", %d" : "%d", ids[i]);
    fputc(']', f);
}

static ci_status encode_print(const ci_tokenizer *tok, const char *text, size_t len, bool special,
                              bool as_object) {
    int32_t *ids = NULL;
    size_t n = 0;
    CI_TRY(ci_tokenizer_encode(tok, text, len, special, &ids, &n));
    if (as_object) {
        json_t *o = json_object(), *jids = json_array(), *toks = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(jids, json_integer(ids[i]));
            const char *t = ci_tokenizer_id_to_token(tok, ids[i]);
            json_array_append_new(toks, t ? json_string(t) : json_null());
        }
        json_object_set_new(o, "ids", jids);
        json_object_set_new(o, "tokens", toks);
        json_object_set_new(o, "count", json_integer((json_int_t)n));
        char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        fputs(s ? s : "null", stdout);
        free(s);
        json_decref(o);
    } else {
        print_ids(stdout, ids, n);
    }
    fputc('\n', stdout);
    free(ids);
    return ci_ok();
}

static ci_status tokenize_jsonl(const ci_tokenizer *tok, char *input, bool special,
                                bool as_object) {
    size_t lineno = 0;
    for (char *line = input; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        lineno++;
        if (*line && strspn(line, " \t\r") != strlen(line)) {
            json_error_t jerr;
            json_t *v = json_loads(line, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
            if (!v || !json_is_string(v)) {
                json_decref(v);
                return ci_errorf(CI_ERR_INVALID, "stdin line %zu: expected a JSON string%s%s",
                                 lineno, v ? "" : ": ", v ? "" : jerr.text);
            }
            ci_status s =
                encode_print(tok, json_string_value(v), json_string_length(v), special, as_object);
            json_decref(v);
            if (s.code) return ci_status_wrap(s, "stdin line %zu", lineno);
        }
        line = nl ? nl + 1 : NULL;
    }
    return ci_ok();
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    bool no_special = false, as_json = false, jsonl = false;
    const ci_arg args[] = {
        {"--model", "-m", CI_ARG_STR, &model, "DIR", "model directory with tokenizer.json"},
        {"--no-special", NULL, CI_ARG_FLAG, &no_special, "", "add_special_tokens=false"},
        {"--json", NULL, CI_ARG_FLAG, &as_json, "",
         "print {\"ids\", \"tokens\", \"count\"} instead of a bare id array"},
        {"--jsonl", NULL, CI_ARG_FLAG, &jsonl, "",
         "each stdin line is a JSON string; print one id array per line"},
    };
    const char *usage = "usage: cinfer tokenize -m DIR [--no-special] [--json] [--jsonl] < text\n"
                        "Encodes the text on stdin and prints its token ids as a JSON array.";
    ci_status err = ci_ok();
    ci_args_result r = ci_args_parse(usage, args, 4, argc, argv, &err);
    if (r == CI_ARGS_HELP) return 0;
    if (r == CI_ARGS_ERROR) return ci_cli_fail(err);
    if (!model) return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "tokenize: -m DIR is required"));

    ci_tokenizer *tok = NULL;
    char *input = NULL;
    size_t len = 0;
    ci_status s = ci_tokenizer_load(model, &tok);
    if (!s.code) s = ci_read_stream(stdin, "stdin", &input, &len);
    if (!s.code) {
        s = jsonl ? tokenize_jsonl(tok, input, !no_special, as_json)
                  : encode_print(tok, input, len, !no_special, as_json);
    }
    free(input);
    ci_tokenizer_free(tok);
    return s.code ? ci_cli_fail(s) : 0;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    bool skip = false;
    const ci_arg args[] = {
        {"--model", "-m", CI_ARG_STR, &model, "DIR", "model directory with tokenizer.json"},
        {"--skip-special", NULL, CI_ARG_FLAG, &skip, "", "skip_special_tokens=true"},
    };
    const char *usage = "usage: cinfer detokenize -m DIR [--skip-special] < ids.json\n"
                        "Decodes a JSON array of token ids on stdin and prints the text.";
    ci_status err = ci_ok();
    ci_args_result r = ci_args_parse(usage, args, 2, argc, argv, &err);
    if (r == CI_ARGS_HELP) return 0;
    if (r == CI_ARGS_ERROR) return ci_cli_fail(err);
    if (!model) return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "detokenize: -m DIR is required"));

    ci_tokenizer *tok = NULL;
    char *input = NULL, *text = NULL;
    size_t len = 0, tlen = 0;
    int32_t *ids = NULL;
    json_t *arr = NULL;
    ci_status s = ci_tokenizer_load(model, &tok);
    if (!s.code) s = ci_read_stream(stdin, "stdin", &input, &len);
    if (!s.code) {
        json_error_t jerr;
        arr = json_loadb(input, len, 0, &jerr);
        if (!json_is_array(arr))
            s = ci_errorf(CI_ERR_INVALID, "stdin: expected a JSON array of token ids%s%s",
                          arr ? "" : ": ", arr ? "" : jerr.text);
    }
    if (!s.code) {
        size_t n = json_array_size(arr);
        ids = malloc((n ? n : 1) * sizeof *ids);
        for (size_t i = 0; i < n && !s.code; i++) {
            json_t *v = json_array_get(arr, i);
            json_int_t x = json_is_integer(v) ? json_integer_value(v) : -1;
            /* ids the tokenizer does not know (a padded embedding's rows)
             * decode to nothing, as HF tokenizers do */
            if (!json_is_integer(v) || x < 0 || x > INT32_MAX)
                s = ci_errorf(CI_ERR_INVALID, "stdin: element %zu is not a token id", i);
            else
                ids[i] = (int32_t)x;
        }
        if (!s.code) s = ci_tokenizer_decode(tok, ids, n, skip, &text, &tlen);
        if (!s.code) fwrite(text, 1, tlen, stdout);
    }
    free(text);
    free(ids);
    json_decref(arr);
    free(input);
    ci_tokenizer_free(tok);
    return s.code ? ci_cli_fail(s) : 0;
}
