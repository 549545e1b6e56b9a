/* json_schema.c — JSON Schema (the subset OpenAI strict mode and agent
 * tool schemas use) to GBNF text, compiled by the GBNF front end. Each
 * schema node becomes one rule; $ref targets become one rule each, named
 * before their body is generated, so recursive schemas work.
 *
 * Objects: properties in the schema's order, required ones always and
 * optional ones optionally. Extra properties: with additionalProperties a
 * schema, extra string-keyed members of that schema may follow the listed
 * ones; with additionalProperties false, true or absent, only the listed
 * properties are generated (an object with no "properties" at all, and
 * additionalProperties not false, is any object). Unsupported keywords and
 * unsatisfiable constraints are errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/json_schema.h"

#define JS_MAX_DEPTH 64

typedef struct js_ref {
    char *ptr;
    char name[80];
} js_ref;

typedef struct js {
    json_t *root;
    gr_str out; /* rule definitions */
    ci_status err;
    unsigned n_rules;
    js_ref *refs;
    size_t n_refs, cap_refs;
    int depth;
} js;

static bool js_fail(js *c, ci_code code, const char *fmt, const char *a) {
    if (c->err.code == CI_OK) {
        char msg[200];
        snprintf(msg, sizeof msg, fmt, a);
        c->err = ci_errorf(code, "%s", msg);
    }
    return false;
}

static bool js_oom(js *c) {
    return js_fail(c, CI_ERR_NOMEM, "%s", "out of memory");
}

/* A fresh rule name from a hint (property name): GBNF name characters only. */
static void new_name(js *c, const char *hint, char out[80]) {
    char h[41];
    size_t k = 0;
    for (const char *p = hint; *p && k < 40; p++)
        h[k++] = ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))
                     ? *p
                     : '-';
    h[k] = 0;
    snprintf(out, 80, "s%u-%s", ++c->n_rules, h);
}

static bool define(js *c, const char *name, const gr_str *body) {
    bool empty = !body->p || !body->n;
    if (!gr_str_printf(&c->out, "%s ::= ", name) ||
        !gr_str_put(&c->out, empty ? "\"\"" : body->p, empty ? 2 : body->n) ||
        !gr_str_puts(&c->out, "\n"))
        return js_oom(c);
    return true;
}

static bool gen(js *c, json_t *s, const char *hint, char name[80]);

static const char *const annotations[] = {
    "title",      "description", "default",   "examples", "$schema",     "$id",    "$comment",
    "deprecated", "readOnly",    "writeOnly", "$defs",    "definitions", "strict", NULL};
static const char *const supported[] = {"type",
                                        "properties",
                                        "required",
                                        "additionalProperties",
                                        "items",
                                        "minItems",
                                        "maxItems",
                                        "enum",
                                        "const",
                                        "minimum",
                                        "maximum",
                                        "exclusiveMinimum",
                                        "exclusiveMaximum",
                                        "minLength",
                                        "maxLength",
                                        "pattern",
                                        "format",
                                        "anyOf",
                                        "oneOf",
                                        "allOf",
                                        "$ref",
                                        NULL};

static bool in_list(const char *k, const char *const *l) {
    for (; *l; l++)
        if (!strcmp(k, *l)) return true;
    return false;
}

/* Keywords other than annotations and `except`. */
static int n_constraints(json_t *s, const char *except) {
    const char *k;
    json_t *v;
    int n = 0;
    json_object_foreach(s, k, v) {
        (void)v;
        if (!in_list(k, annotations) && strcmp(k, except)) n++;
    }
    return n;
}

static bool get_uint(js *c, json_t *s, const char *key, long long *out) {
    json_t *v = json_object_get(s, key);
    if (!v) return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return js_fail(c, CI_ERR_INVALID, "JSON Schema: '%s' must be a non-negative integer", key);
    *out = json_integer_value(v);
    return true;
}

static bool resolve_ref(js *c, const char *ref, char name[80]) {
    for (size_t i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].ptr, ref)) {
            memcpy(name, c->refs[i].name, 80);
            return true;
        }
    if (ref[0] != '#')
        return js_fail(c, CI_ERR_UNSUPPORTED, "JSON Schema: only local $ref are supported: '%s'",
                       ref);
    json_t *t = c->root;
    const char *p = ref + 1;
    while (*p == '/') {
        p++;
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char key[256];
        size_t k = 0;
        for (size_t i = 0; i < l && k < sizeof key - 1;
             i++) { /* JSON pointer: ~1 = '/', ~0 = '~' */
            if (p[i] == '~' && i + 1 < l && (p[i + 1] == '0' || p[i + 1] == '1')) {
                key[k++] = p[i + 1] == '1' ? '/' : '~';
                i++;
            } else {
                key[k++] = p[i];
            }
        }
        key[k] = 0;
        t = json_is_array(t) ? json_array_get(t, (size_t)strtoul(key, NULL, 10))
                             : json_object_get(t, key);
        if (!t) return js_fail(c, CI_ERR_INVALID, "JSON Schema: $ref '%s' not found", ref);
        p += l;
    }
    if (*p) return js_fail(c, CI_ERR_INVALID, "JSON Schema: bad $ref '%s'", ref);
    if (c->n_refs == c->cap_refs) {
        size_t cap = c->cap_refs ? c->cap_refs * 2 : 8;
        js_ref *r = realloc(c->refs, cap * sizeof *r);
        if (!r) return js_oom(c);
        c->refs = r;
        c->cap_refs = cap;
    }
    js_ref *r = &c->refs[c->n_refs];
    r->ptr = strdup(ref);
    if (!r->ptr) return js_oom(c);
    const char *last = strrchr(ref, '/');
    new_name(c, last ? last + 1 : "root", r->name);
    c->n_refs++;
    memcpy(name, r->name, 80);
    /* named before its body: a recursive reference finds it above */
    char body[80];
    if (!gen(c, t, name, body)) return false;
    gr_str b = {0};
    bool ok = gr_str_puts(&b, body) && define(c, name, &b);
    free(b.p);
    return ok || js_oom(c);
}

static bool gen_object(js *c, json_t *s, gr_str *o) {
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *add = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: 'properties' must be an object");
    if (req && !json_is_array(req))
        return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: 'required' must be an array");
    if (add && !json_is_boolean(add) && !json_is_object(add))
        return js_fail(c, CI_ERR_INVALID, "%s",
                       "JSON Schema: 'additionalProperties' must be a boolean or a schema");
    size_t n = props ? json_object_size(props) : 0;
    size_t i;
    json_t *r;
    json_array_foreach(req, i, r) {
        if (!json_is_string(r))
            return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: 'required' must list strings");
        if (!props || !json_object_get(props, json_string_value(r)))
            return js_fail(c, CI_ERR_UNSUPPORTED,
                           "JSON Schema: required property '%s' is not in 'properties'",
                           json_string_value(r));
    }
    if (!n && !json_is_false(add) && !json_is_object(add))
        return gr_str_puts(o, "json-object") || js_oom(c);
    /* the extras' member rule, when additionalProperties is a schema */
    char extra[80] = "";
    if (json_is_object(add)) {
        char val[80];
        if (!gen(c, add, "additional", val)) return false;
        new_name(c, "extra", extra);
        gr_str b = {0};
        bool ok = gr_str_printf(&b, "json-string ws \":\" ws %s", val) && define(c, extra, &b);
        free(b.p);
        if (!ok) return js_oom(c);
    }
    /* first_i: nothing emitted yet, properties i.. to go; rest_i: something
     * emitted, so each member here starts with a comma. */
    char(*first)[80] = calloc(n + 1, 80), (*rest)[80] = calloc(n + 1, 80),
    (*kv)[80] = calloc(n + 1, 80);
    bool ok = first && rest && kv;
    const char *key;
    json_t *ps;
    i = 0;
    json_object_foreach(props, key, ps) {
        if (!ok) break;
        char val[80];
        if (!gen(c, ps, key, val)) {
            ok = false;
            break;
        }
        new_name(c, key, kv[i]);
        json_t *kj = json_string(key);
        gr_str b = {0};
        ok = kj && gr_json_literal(&b, kj) && gr_str_printf(&b, " ws \":\" ws %s", val) &&
             define(c, kv[i], &b);
        json_decref(kj);
        free(b.p);
        i++;
    }
    for (i = 0; ok && i <= n; i++) {
        new_name(c, "first", first[i]);
        new_name(c, "rest", rest[i]);
    }
    i = 0;
    json_object_foreach(props, key, ps) {
        if (!ok) break;
        bool required = false;
        size_t k;
        json_array_foreach(req, k, r) required |= !strcmp(json_string_value(r), key);
        gr_str b = {0};
        ok = gr_str_printf(&b, "ws \",\" ws %s %s", kv[i], rest[i + 1]) &&
             (required || gr_str_printf(&b, " | %s", rest[i + 1])) && define(c, rest[i], &b);
        b.n = 0;
        ok = ok && gr_str_printf(&b, "%s %s", kv[i], rest[i + 1]) &&
             (required || gr_str_printf(&b, " | %s", first[i + 1])) && define(c, first[i], &b);
        free(b.p);
        i++;
    }
    if (ok) {
        gr_str b = {0};
        if (extra[0]) ok = gr_str_printf(&b, "(ws \",\" ws %s)*", extra);
        ok = ok && define(c, rest[n], &b);
        b.n = 0;
        if (extra[0]) ok = ok && gr_str_printf(&b, "(%s %s)?", extra, rest[n]);
        ok = ok && define(c, first[n], &b);
        free(b.p);
        ok = ok && gr_str_printf(o, "\"{\" ws %s ws \"}\"", first[0]);
        if (!ok) js_oom(c);
    }
    free(first);
    free(rest);
    free(kv);
    return ok;
}

static bool gen_array(js *c, json_t *s, gr_str *o) {
    long long min = 0, max = -1;
    if (!get_uint(c, s, "minItems", &min) || !get_uint(c, s, "maxItems", &max)) return false;
    if (max >= 0 && min > max)
        return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: minItems > maxItems");
    if (min > 1000 || max > 1000)
        return js_fail(c, CI_ERR_UNSUPPORTED, "%s",
                       "JSON Schema: minItems/maxItems above 1000 are not supported");
    json_t *items = json_object_get(s, "items");
    if (json_is_false(items)) {
        if (min > 0)
            return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: items false with minItems > 0");
        max = 0;
    }
    char item[80] = "json-value";
    if (items && !json_is_boolean(items) && !gen(c, items, "item", item)) return false;
    if (max == 0) return gr_str_puts(o, "\"[\" ws \"]\"") || js_oom(c);
    bool ok = gr_str_puts(o, "\"[\" ws ");
    if (min == 0) ok = ok && gr_str_puts(o, "(");
    ok = ok && gr_str_printf(o, "%s (ws \",\" ws %s)", item, item);
    long long lo = min > 0 ? min - 1 : 0;
    if (max < 0)
        ok = ok && gr_str_printf(o, "{%lld,}", lo);
    else
        ok = ok && gr_str_printf(o, "{%lld,%lld}", lo, max - 1);
    if (min == 0) ok = ok && gr_str_puts(o, ")?");
    ok = ok && gr_str_puts(o, " ws \"]\"");
    return ok || js_oom(c);
}

static bool gen_string(js *c, json_t *s, gr_str *o) {
    long long min = 0, max = -1;
    if (!get_uint(c, s, "minLength", &min) || !get_uint(c, s, "maxLength", &max)) return false;
    if (max >= 0 && min > max)
        return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: minLength > maxLength");
    if (min > 10000 || max > 10000)
        return js_fail(c, CI_ERR_UNSUPPORTED, "%s",
                       "JSON Schema: minLength/maxLength above 10000 are not supported");
    json_t *pat = json_object_get(s, "pattern"), *fmt = json_object_get(s, "format");
    bool lens = json_object_get(s, "minLength") || json_object_get(s, "maxLength");
    if ((pat != NULL) + (fmt != NULL) + lens > 1)
        return js_fail(
            c, CI_ERR_UNSUPPORTED, "%s",
            "JSON Schema: combining pattern, format and minLength/maxLength is not supported");
    bool ok = gr_str_puts(o, "\"\\\"\" ");
    if (pat) {
        if (!json_is_string(pat))
            return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: 'pattern' must be a string");
        ci_status st = gr_regex_to_gbnf_json(json_string_value(pat), json_string_length(pat), o);
        if (st.code != CI_OK) {
            c->err = ci_status_wrap(st, "JSON Schema pattern");
            return false;
        }
    } else if (fmt) {
        const char *f = json_is_string(fmt) ? gr_json_format(json_string_value(fmt)) : NULL;
        if (!f)
            return js_fail(c, CI_ERR_UNSUPPORTED, "unsupported JSON Schema format '%s'",
                           json_is_string(fmt) ? json_string_value(fmt) : "?");
        ok = ok && gr_str_printf(o, "(%s)", f);
    } else if (max < 0) {
        ok = ok && gr_str_printf(o, "json-char{%lld,}", min);
    } else {
        ok = ok && gr_str_printf(o, "json-char{%lld,%lld}", min, max);
    }
    ok = ok && gr_str_puts(o, " \"\\\"\"");
    return ok || js_oom(c);
}

/* A numeric bound as an integer bound: lower bounds round up, upper down. */
static bool int_bound(js *c, json_t *s, const char *key, bool lower, bool excl, bool *has,
                      long long *v) {
    json_t *b = json_object_get(s, key);
    if (!b) return true;
    if (json_is_boolean(b)) return true; /* draft-4 exclusive flags: read with their bound */
    if (!json_is_number(b))
        return js_fail(c, CI_ERR_INVALID, "JSON Schema: '%s' must be a number", key);
    double d = json_number_value(b);
    if (fabs(d) > 9e17) return true; /* beyond 18 digits: the digit-count bound applies */
    bool draft4 = json_is_true(json_object_get(s, lower ? "exclusiveMinimum" : "exclusiveMaximum"));
    double r = lower ? ceil(d) : floor(d);
    if ((excl || draft4) && r == d) r += lower ? 1 : -1;
    long long x = (long long)r;
    if (*has) x = lower ? (x > *v ? x : *v) : (x < *v ? x : *v);
    *has = true;
    *v = x;
    return true;
}

static bool gen_integer(js *c, json_t *s, gr_str *o) {
    bool hl = false, hh = false;
    long long lo = 0, hi = 0;
    if (!int_bound(c, s, "minimum", true, false, &hl, &lo) ||
        !int_bound(c, s, "exclusiveMinimum", true, true, &hl, &lo) ||
        !int_bound(c, s, "maximum", false, false, &hh, &hi) ||
        !int_bound(c, s, "exclusiveMaximum", false, true, &hh, &hi))
        return false;
    if (hl && hh && lo > hi)
        return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: minimum > maximum");
    return gr_int_range(o, hl, lo, hh, hi) || js_oom(c);
}

/* Numbers: integer-valued minimum / maximum give an exact range (without
 * exponent: 3 and 3.0 are in [0, 3], 3.01 is not); exclusiveMinimum 0
 * gives the positive numbers. Other bounds (fractional, exclusive) are
 * refused rather than approximated. */
static bool gen_number(js *c, json_t *s, gr_str *o) {
    json_t *emin = json_object_get(s, "exclusiveMinimum"),
           *emax = json_object_get(s, "exclusiveMaximum");
    if (emax && !json_is_boolean(emax))
        return js_fail(c, CI_ERR_UNSUPPORTED, "%s",
                       "JSON Schema: 'exclusiveMaximum' on a number is not supported");
    if (json_is_true(emin) || json_is_true(emax))
        return js_fail(c, CI_ERR_UNSUPPORTED, "%s",
                       "JSON Schema: exclusive bounds on a number are not supported");
    bool hl = false, hh = false;
    long long lo = 0, hi = 0;
    static const char *const keys[] = {"minimum", "maximum"};
    for (int k = 0; k < 2; k++) {
        json_t *b = json_object_get(s, keys[k]);
        if (!b) continue;
        if (!json_is_number(b))
            return js_fail(c, CI_ERR_INVALID, "JSON Schema: '%s' must be a number", keys[k]);
        double d = json_number_value(b);
        if (d != floor(d) || fabs(d) > 9e17)
            return js_fail(
                c, CI_ERR_UNSUPPORTED,
                "JSON Schema: '%s' on a number must be an integer value (up to 18 digits)",
                keys[k]);
        *(k ? &hh : &hl) = true;
        *(k ? &hi : &lo) = (long long)d;
    }
    if (emin && !json_is_boolean(emin)) {
        if (!json_is_number(emin) || json_number_value(emin) != 0 || hl || hh)
            return js_fail(
                c, CI_ERR_UNSUPPORTED, "%s",
                "JSON Schema: 'exclusiveMinimum' on a number is supported only as 0, alone");
        /* > 0: a non-zero digit somewhere */
        return gr_str_puts(o, "([1-9] [0-9]{0,17} (\".\" [0-9]{1,16})? | \"0.\" [0-9]{0,15} [1-9]) "
                              "([eE] \"+\"? [0-9]{1,2})?") ||
               js_oom(c);
    }
    if (hl && hh && lo > hi)
        return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: minimum > maximum");
    if (!hl && !hh) return gr_str_puts(o, "json-number") || js_oom(c);
    return gr_num_range(o, hl, lo, hh, hi) || js_oom(c);
}

static bool gen_type(js *c, json_t *s, const char *t, gr_str *o) {
    if (!strcmp(t, "object")) return gen_object(c, s, o);
    if (!strcmp(t, "array")) return gen_array(c, s, o);
    if (!strcmp(t, "string")) return gen_string(c, s, o);
    if (!strcmp(t, "integer")) return gen_integer(c, s, o);
    if (!strcmp(t, "number")) return gen_number(c, s, o);
    if (!strcmp(t, "boolean")) return gr_str_puts(o, "json-boolean") || js_oom(c);
    if (!strcmp(t, "null")) return gr_str_puts(o, "json-null") || js_oom(c);
    return js_fail(c, CI_ERR_INVALID, "JSON Schema: unknown type '%s'", t);
}

/* Which type the keywords imply when "type" is absent (NULL: any value). */
static const char *implied_type(json_t *s) {
    if (json_object_get(s, "properties") || json_object_get(s, "additionalProperties") ||
        json_object_get(s, "required"))
        return "object";
    if (json_object_get(s, "items") || json_object_get(s, "minItems") ||
        json_object_get(s, "maxItems"))
        return "array";
    if (json_object_get(s, "minLength") || json_object_get(s, "maxLength") ||
        json_object_get(s, "pattern") || json_object_get(s, "format"))
        return "string";
    if (json_object_get(s, "minimum") || json_object_get(s, "maximum") ||
        json_object_get(s, "exclusiveMinimum") || json_object_get(s, "exclusiveMaximum"))
        return "number";
    return NULL;
}

static bool gen_alternatives(js *c, json_t *arr, const char *kw, const char *hint, gr_str *o) {
    if (!json_is_array(arr) || !json_array_size(arr))
        return js_fail(c, CI_ERR_INVALID, "JSON Schema: '%s' must be a non-empty array", kw);
    size_t i;
    json_t *sub;
    bool ok = gr_str_puts(o, "(");
    json_array_foreach(arr, i, sub) {
        char name[80];
        if (!gen(c, sub, hint, name)) return false;
        ok = ok && gr_str_printf(o, "%s%s", i ? " | " : "", name);
    }
    return (ok && gr_str_puts(o, ")")) || js_oom(c);
}

/* The body of schema s, appended to o. */
static bool gen_body(js *c, json_t *s, const char *hint, gr_str *o) {
    if (json_is_true(s)) return gr_str_puts(o, "json-value") || js_oom(c);
    if (json_is_false(s))
        return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: schema 'false' matches nothing");
    if (!json_is_object(s))
        return js_fail(c, CI_ERR_INVALID, "%s",
                       "JSON Schema: a schema must be an object or a boolean");
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        (void)v;
        if (!in_list(k, annotations) && !in_list(k, supported))
            return js_fail(c, CI_ERR_UNSUPPORTED, "unsupported JSON Schema keyword '%s'", k);
    }
    static const char *const combinators[] = {"$ref", "anyOf", "oneOf", "allOf", "enum", "const"};
    for (int i = 0; i < 6; i++) {
        json_t *x = json_object_get(s, combinators[i]);
        if (!x) continue;
        int others = n_constraints(s, combinators[i]);
        /* enum/const with a type: the values decide (they must be of it) */
        if (i >= 4 && json_object_get(s, "type")) others--;
        if (others > 0)
            return js_fail(c, CI_ERR_UNSUPPORTED,
                           "JSON Schema: '%s' combined with other keywords is not supported",
                           combinators[i]);
        if (i == 0) {
            if (!json_is_string(x))
                return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: '$ref' must be a string");
            char name[80];
            return resolve_ref(c, json_string_value(x), name) &&
                   (gr_str_puts(o, name) || js_oom(c));
        }
        if (i == 1 || i == 2) return gen_alternatives(c, x, combinators[i], hint, o);
        if (i == 3) {
            if (!json_is_array(x) || json_array_size(x) != 1)
                return js_fail(c, CI_ERR_UNSUPPORTED, "%s",
                               "JSON Schema: 'allOf' is supported with exactly one schema");
            return gen_body(c, json_array_get(x, 0), hint, o);
        }
        if (i == 5) return gr_json_literal(o, x) || js_oom(c);
        if (!json_is_array(x) || !json_array_size(x))
            return js_fail(c, CI_ERR_INVALID, "%s",
                           "JSON Schema: 'enum' must be a non-empty array");
        size_t j;
        json_t *e;
        bool ok = gr_str_puts(o, "(");
        json_array_foreach(x, j, e) ok =
            ok && gr_str_puts(o, j ? " | " : "") && gr_json_literal(o, e);
        return (ok && gr_str_puts(o, ")")) || js_oom(c);
    }
    json_t *type = json_object_get(s, "type");
    if (json_is_string(type)) return gen_type(c, s, json_string_value(type), o);
    if (json_is_array(type)) {
        if (!json_array_size(type))
            return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: empty 'type' array");
        size_t j;
        json_t *t;
        bool ok = gr_str_puts(o, "(");
        json_array_foreach(type, j, t) {
            if (!json_is_string(t))
                return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: 'type' must list strings");
            ok = ok && gr_str_puts(o, j ? " | " : "") && gr_str_puts(o, "(");
            if (!ok || !gen_type(c, s, json_string_value(t), o)) return ok ? false : js_oom(c);
            ok = gr_str_puts(o, ")");
        }
        return (ok && gr_str_puts(o, ")")) || js_oom(c);
    }
    if (type)
        return js_fail(c, CI_ERR_INVALID, "%s", "JSON Schema: 'type' must be a string or an array");
    const char *t = implied_type(s);
    return t ? gen_type(c, s, t, o) : (gr_str_puts(o, "json-value") || js_oom(c));
}

/* Generates schema s as a new rule; its name in name. */
static bool gen(js *c, json_t *s, const char *hint, char name[80]) {
    if (++c->depth > JS_MAX_DEPTH)
        return js_fail(c, CI_ERR_UNSUPPORTED, "%s", "JSON Schema nested too deep");
    gr_str body = {0};
    bool ok = gen_body(c, s, hint, &body);
    if (ok) {
        new_name(c, hint, name);
        ok = define(c, name, &body);
    }
    free(body.p);
    c->depth--;
    return ok;
}

static ci_status compile_schema(json_t *schema, ci_grammar **out) {
    js c;
    memset(&c, 0, sizeof c);
    c.root = schema;
    c.err = ci_ok();
    char root[80];
    if (gen(&c, schema, "root", root)) {
        if (!gr_str_printf(&c.out, "root ::= %s\n", root) || !gr_str_puts(&c.out, gr_json_common))
            js_oom(&c);
    }
    ci_status st = c.err;
    if (st.code == CI_OK) {
        st = gr_compile_text(c.out.p, c.out.n, out, NULL, 0);
        if (st.code != CI_OK) st = ci_status_wrap(st, "JSON Schema grammar");
    }
    for (size_t i = 0; i < c.n_refs; i++)
        free(c.refs[i].ptr);
    free(c.refs);
    free(c.out.p);
    return st;
}

ci_status ci_grammar_from_json_schema(const char *schema_json, size_t len, ci_grammar **out,
                                      char *err, size_t errlen) {
    *out = NULL;
    json_error_t je;
    json_t *j = json_loadb(schema_json, len, JSON_DECODE_ANY, &je);
    if (!j)
        return gr_report(
            ci_errorf(CI_ERR_INVALID, "JSON Schema: invalid JSON at line %d: %s", je.line, je.text),
            err, errlen);
    ci_status st = compile_schema(j, out);
    json_decref(j);
    return gr_report(st, err, errlen);
}

ci_status ci_grammar_json_object(ci_grammar **out, char *err, size_t errlen) {
    gr_str s = {0};
    ci_status st = gr_str_puts(&s, "root ::= json-object\n") && gr_str_puts(&s, gr_json_common)
                       ? gr_compile_text(s.p, s.n, out, err, errlen)
                       : gr_report(ci_errorf(CI_ERR_NOMEM, "out of memory"), err, errlen);
    free(s.p);
    return st;
}
