/* structured_req.c — the structured-output fields of a generate request:
 * OpenAI's response_format (text / json_object / json_schema), vLLM's
 * structured_outputs {json, regex, grammar, choice, json_object} and its
 * legacy guided_json / guided_regex / guided_grammar / guided_choice, and
 * llama.cpp's grammar / json_schema. Exactly one may be given; the engine
 * compiles it (a construct it does not support is its 400). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

int srv_set_structured(srv_cmd *c, int kind, const char *text, srv_err *e) {
    free(c->structured);
    c->structured = strdup(text ? text : "");
    if (!c->structured) return srv_errf(e, 500, NULL, "out of memory");
    c->sp.structured_kind = kind;
    c->sp.structured = c->structured;
    return 0;
}

/* A JSON schema given as an object (or a JSON text in a string, as vLLM
 * accepts) -> compact JSON text (malloc'd). */
static int schema_text(json_t *v, const char *param, char **out, srv_err *e) {
    if (json_is_string(v)) {
        json_error_t je;
        json_t *p = json_loads(json_string_value(v), JSON_DECODE_ANY, &je);
        int ok = json_is_object(p) || json_is_boolean(p);
        json_decref(p);
        if (!ok) return srv_errf(e, 400, param, "'%s' is not a JSON schema", param);
        *out = strdup(json_string_value(v));
    } else if (json_is_object(v) || json_is_boolean(v)) {
        *out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    } else {
        return srv_errf(e, 400, param, "'%s' must be a JSON schema object", param);
    }
    return *out ? 0 : srv_errf(e, 500, NULL, "out of memory");
}

/* guided_choice: a GBNF grammar of the alternatives, each a string literal. */
static int choice_grammar(json_t *v, const char *param, char **out, srv_err *e) {
    if (!json_is_array(v) || json_array_size(v) == 0)
        return srv_errf(e, 400, param, "'%s' must be a non-empty list of strings", param);
    size_t cap = 16, n = 0, i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_string(x) || json_string_length(x) == 0)
            return srv_errf(e, 400, param, "'%s' must be a non-empty list of strings", param);
        cap += 4 * json_string_length(x) + 8;
    }
    char *g = malloc(cap);
    if (!g) return srv_errf(e, 500, NULL, "out of memory");
    n += (size_t)sprintf(g, "root ::= ");
    json_array_foreach(v, i, x) {
        if (i) n += (size_t)sprintf(g + n, " | ");
        g[n++] = '"';
        for (const char *s = json_string_value(x); *s; s++) {
            unsigned char ch = (unsigned char)*s;
            if (ch == '"' || ch == '\\') {
                g[n++] = '\\';
                g[n++] = (char)ch;
            } else if (ch == '\n') {
                g[n++] = '\\', g[n++] = 'n';
            } else if (ch == '\r') {
                g[n++] = '\\', g[n++] = 'r';
            } else if (ch == '\t') {
                g[n++] = '\\', g[n++] = 't';
            } else {
                g[n++] = (char)ch;
            }
        }
        g[n++] = '"';
    }
    g[n] = '\0';
    *out = g;
    return 0;
}

/* One candidate constraint: kind + text (owned), and the field it came from. */
typedef struct cand {
    int kind;
    char *text;
    const char *param;
} cand;

static int add(cand *got, int *n, int kind, char *text, const char *param, srv_err *e) {
    if (*n > 0) {
        free(text);
        return srv_errf(e, 400, param,
                        "only one structured output constraint per request (got '%s' and '%s')",
                        got[0].param, param);
    }
    got[0].kind = kind;
    got[0].text = text;
    got[0].param = param;
    (*n)++;
    return 0;
}

static int str_field(json_t *v, const char *param, char **out, srv_err *e) {
    if (!json_is_string(v) || json_string_length(v) == 0)
        return srv_errf(e, 400, param, "'%s' must be a non-empty string", param);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return srv_errf(e, 400, param, "'%s' contains a NUL character", param);
    *out = strdup(json_string_value(v));
    return *out ? 0 : srv_errf(e, 500, NULL, "out of memory");
}

static int present(json_t *v) {
    return v && !json_is_null(v);
}

static int response_format(json_t *rf, cand *got, int *n, srv_err *e) {
    if (!json_is_object(rf))
        return srv_errf(e, 400, "response_format", "'response_format' must be an object");
    json_t *type = json_object_get(rf, "type");
    const char *t = json_string_value(type);
    if (!t) return srv_errf(e, 400, "response_format", "'response_format.type' is required");
    if (!strcmp(t, "text")) return 0;
    if (!strcmp(t, "json_object"))
        return add(got, n, CINFER_STRUCTURED_JSON_OBJECT, NULL, "response_format", e);
    if (!strcmp(t, "json_schema")) {
        json_t *js = json_object_get(rf, "json_schema");
        if (!json_is_object(js))
            return srv_errf(e, 400, "response_format",
                            "'response_format.json_schema' must be an object");
        json_t *schema = json_object_get(js, "schema");
        char *text = NULL;
        if (!present(schema)) /* OpenAI: no schema = any JSON object */
            return add(got, n, CINFER_STRUCTURED_JSON_OBJECT, NULL, "response_format", e);
        if (schema_text(schema, "response_format", &text, e)) return -1;
        return add(got, n, CINFER_STRUCTURED_JSON_SCHEMA, text, "response_format", e);
    }
    return srv_errf(e, 400, "response_format",
                    "'response_format.type' must be text, json_object or json_schema (got '%s')",
                    t);
}

/* The fields of vLLM's structured_outputs object or the guided_* keys of the body. */
static int vllm_fields(json_t *o, const char *json_k, const char *regex_k, const char *grammar_k,
                       const char *choice_k, const char *object_k, cand *got, int *n, srv_err *e) {
    json_t *v;
    char *text = NULL;
    if (present(v = json_object_get(o, json_k))) {
        if (schema_text(v, json_k, &text, e)) return -1;
        if (add(got, n, CINFER_STRUCTURED_JSON_SCHEMA, text, json_k, e)) return -1;
    }
    if (present(v = json_object_get(o, regex_k))) {
        if (str_field(v, regex_k, &text, e)) return -1;
        if (add(got, n, CINFER_STRUCTURED_REGEX, text, regex_k, e)) return -1;
    }
    if (present(v = json_object_get(o, grammar_k))) {
        if (str_field(v, grammar_k, &text, e)) return -1;
        if (add(got, n, CINFER_STRUCTURED_GRAMMAR, text, grammar_k, e)) return -1;
    }
    if (present(v = json_object_get(o, choice_k))) {
        if (choice_grammar(v, choice_k, &text, e)) return -1;
        if (add(got, n, CINFER_STRUCTURED_GRAMMAR, text, choice_k, e)) return -1;
    }
    if (object_k && present(v = json_object_get(o, object_k))) {
        if (!json_is_boolean(v))
            return srv_errf(e, 400, object_k, "'%s' must be a boolean", object_k);
        if (json_is_true(v) && add(got, n, CINFER_STRUCTURED_JSON_OBJECT, NULL, object_k, e))
            return -1;
    }
    return 0;
}

int srv_parse_structured(json_t *body, srv_cmd *c, srv_err *e) {
    cand got[1] = {{0, NULL, NULL}};
    int n = 0, rc = 0;
    json_t *v;
    if (present(v = json_object_get(body, "response_format"))) rc = response_format(v, got, &n, e);
    if (!rc && present(v = json_object_get(body, "structured_outputs"))) {
        if (!json_is_object(v))
            rc = srv_errf(e, 400, "structured_outputs", "'structured_outputs' must be an object");
        else
            rc = vllm_fields(v, "json", "regex", "grammar", "choice", "json_object", got, &n, e);
    }
    if (!rc)
        rc = vllm_fields(body, "guided_json", "guided_regex", "guided_grammar", "guided_choice",
                         NULL, got, &n, e);
    /* llama.cpp's server fields */
    if (!rc && present(v = json_object_get(body, "grammar"))) {
        char *text = NULL;
        rc = str_field(v, "grammar", &text, e);
        if (!rc) rc = add(got, &n, CINFER_STRUCTURED_GRAMMAR, text, "grammar", e);
    }
    if (!rc && present(v = json_object_get(body, "json_schema"))) {
        char *text = NULL;
        rc = schema_text(v, "json_schema", &text, e);
        if (!rc) rc = add(got, &n, CINFER_STRUCTURED_JSON_SCHEMA, text, "json_schema", e);
    }
    if (!rc && n == 1) rc = srv_set_structured(c, got[0].kind, got[0].text, e);
    free(got[0].text);
    return rc;
}
