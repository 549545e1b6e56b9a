/* jinja_filters.c — Jinja2's tests (`is defined`, ...) and filters
 * (`| tojson`, `| sort`, ...). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/jinja_filters.h"
#include "tokenizer/jinja_methods.h"
#include "tokenizer/jinja_ops.h"
#include "tokenizer/jinja_value.h"

/* ----------------------------------------------------------- tests */

bool jn_apply_test(R *r, frame *f, const jn_node *n, const char *t, jv v, args *a, bool *out) {
    jv a0 = UNDEF;
    bool h0 = jn_get_arg(a, 0, NULL, &a0);
    if (!strcmp(t, "defined"))
        *out = v.t != JV_UNDEF;
    else if (!strcmp(t, "undefined"))
        *out = v.t == JV_UNDEF;
    else if (!strcmp(t, "none"))
        *out = v.t == JV_NONE;
    else if (!strcmp(t, "string"))
        *out = v.t == JV_STR;
    else if (!strcmp(t, "mapping"))
        *out = v.t == JV_DICT && !v.u.d->ns;
    else if (!strcmp(t, "iterable"))
        *out = v.t == JV_STR || v.t == JV_LIST || (v.t == JV_DICT && !v.u.d->ns) || v.t == JV_UNDEF;
    else if (!strcmp(t, "sequence"))
        *out = v.t == JV_STR || (v.t == JV_LIST && !v.u.l->view) || (v.t == JV_DICT && !v.u.d->ns);
    else if (!strcmp(t, "number"))
        *out = is_num(v);
    else if (!strcmp(t, "integer"))
        *out = v.t == JV_INT;
    else if (!strcmp(t, "float"))
        *out = v.t == JV_FLOAT;
    else if (!strcmp(t, "boolean"))
        *out = v.t == JV_BOOL;
    else if (!strcmp(t, "true"))
        *out = v.t == JV_BOOL && v.u.b;
    else if (!strcmp(t, "false"))
        *out = v.t == JV_BOOL && !v.u.b;
    else if (!strcmp(t, "callable"))
        *out = v.t == JV_FUNC || v.t == JV_MACRO;
    else if (!strcmp(t, "even") || !strcmp(t, "odd") || !strcmp(t, "divisibleby")) {
        if (v.t == JV_UNDEF) return jn_undef_err(r, n, v);
        if (!is_num(v)) return jn_fail(r, n, "test '%s' needs a number", t);
        if (t[0] == 'd') {
            if (!h0 || !is_num(a0)) return jn_fail(r, n, "divisibleby needs a number");
            if (num_f(a0) == 0) return jn_fail(r, n, "division by zero");
            if (v.t == JV_FLOAT || a0.t == JV_FLOAT) {
                double z = fmod(num_f(v), num_f(a0));
                *out = z == 0;
            } else {
                int64_t d = num_i(a0);
                *out = d == -1 ? true : num_i(v) % d == 0;
            }
        } else {
            double z = v.t == JV_FLOAT ? fmod(v.u.f, 2) : (double)(num_i(v) % 2);
            *out = t[0] == 'e' ? z == 0 : z != 0;
        }
    } else if (!strcmp(t, "eq") || !strcmp(t, "equalto") || !strcmp(t, "=="))
        *out = jv_eq(v, a0);
    else if (!strcmp(t, "ne") || !strcmp(t, "!="))
        *out = !jv_eq(v, a0);
    else if (!strcmp(t, "lt") || !strcmp(t, "lessthan"))
        return jn_eval_cmp(r, n, "<", v, a0, out);
    else if (!strcmp(t, "le"))
        return jn_eval_cmp(r, n, "<=", v, a0, out);
    else if (!strcmp(t, "gt") || !strcmp(t, "greaterthan"))
        return jn_eval_cmp(r, n, ">", v, a0, out);
    else if (!strcmp(t, "ge"))
        return jn_eval_cmp(r, n, ">=", v, a0, out);
    else if (!strcmp(t, "in"))
        return jn_eval_cmp(r, n, "in", v, a0, out);
    else if (!strcmp(t, "sameas"))
        *out = v.t == a0.t &&
               (v.t == JV_NONE || v.t == JV_UNDEF || (v.t == JV_BOOL && v.u.b == a0.u.b) ||
                (v.t != JV_BOOL && jv_eq(v, a0)));
    else if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        if (v.t != JV_STR) {
            *out = false;
            return true;
        }
        jv res;
        args none = {0};
        if (!jn_call_method(r, n, v, t[0] == 'l' ? "islower" : "isupper", &none, &res))
            return false;
        *out = res.u.b;
    } else if (!strcmp(t, "escaped"))
        *out = false;
    else
        return jn_fail(r, n, "no test named '%s'", t);
    (void)f;
    (void)h0;
    return true;
}

/* ----------------------------------------------------------- filters */

static int cmp_for_sort(R *r, jv a, jv b, bool case_sensitive, bool *ok) {
    if (!case_sensitive && a.t == JV_STR && b.t == JV_STR) {
        jv la, lb;
        if (!jn_map_case(r, a, 1, &la) || !jn_map_case(r, b, 1, &lb)) {
            *ok = false;
            return 0;
        }
        return jn_cmp_values(r, la, lb, ok);
    }
    return jn_cmp_values(r, a, b, ok);
}

/* attribute path "a.b" or integer index */
static bool get_path(R *r, const jn_node *n, jv v, jv attr, jv *out) {
    if (attr.t == JV_INT) return jn_get_index(r, n, v, attr, out);
    if (attr.t != JV_STR) return jn_fail(r, n, "attribute must be a string");
    const char *p = attr.u.s.p, *end = p + attr.u.s.n;
    *out = v;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        if (!dot) dot = end;
        size_t len = (size_t)(dot - p);
        bool digits = len > 0;
        for (size_t i = 0; i < len; i++)
            if (p[i] < '0' || p[i] > '9') digits = false;
        if (digits) {
            if (!jn_get_index(r, n, *out, mk_int(strtoll(p, NULL, 10)), out)) return false;
        } else {
            char *nm = jn_strndup(&r->a, p, len);
            if (!nm) return jn_nomem(r, n);
            if (out->t == JV_UNDEF) return jn_undef_err(r, n, *out);
            if (out->t == JV_DICT) {
                jv key = mk_str(nm, len);
                jv *x = jn_dict_find(out->u.d, key);
                *out = x ? *x : mk_undef(nm);
            } else if (!jn_get_attr(r, n, *out, nm, len, out)) {
                return false;
            }
        }
        p = dot + 1;
        if (dot == end) break;
    }
    return true;
}

static bool sort_list(R *r, const jn_node *n, jv_list *src, bool reverse, bool cs, jv attr,
                      bool by_value_pairs, jv_list **out) {
    size_t cnt = src->n;
    jv_list *l = jn_new_list(r, cnt);
    jv *keys = jn_alloc(&r->a, (cnt + 1) * sizeof *keys);
    size_t *ord = jn_alloc(&r->a, (cnt + 1) * sizeof *ord),
           *tmp = jn_alloc(&r->a, (cnt + 1) * sizeof *tmp);
    if (!l || !keys || !ord || !tmp) return jn_nomem(r, n);
    for (size_t i = 0; i < cnt; i++) {
        keys[i] = src->v[i];
        if (by_value_pairs)
            keys[i] = src->v[i].u.l->v[attr.u.i];
        else if (attr.t != JV_NONE && !get_path(r, n, src->v[i], attr, &keys[i]))
            return false;
        if (!cs && keys[i].t == JV_STR && !jn_map_case(r, keys[i], 1, &keys[i])) return false;
        ord[i] = i;
    }
    /* stable bottom-up merge sort (Python's sorted is stable, also with reverse) */
    for (size_t w = 1; w < cnt; w *= 2) {
        for (size_t lo = 0; lo < cnt; lo += 2 * w) {
            size_t mid = lo + w < cnt ? lo + w : cnt, hi = lo + 2 * w < cnt ? lo + 2 * w : cnt;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                bool ok = true;
                int c = jn_cmp_values(r, keys[ord[i]], keys[ord[j]], &ok);
                if (!ok)
                    return r->err.code
                               ? false
                               : jn_fail(r, n,
                                         "'<' not supported between instances of '%s' and '%s'",
                                         jn_type_name(keys[ord[j]]), jn_type_name(keys[ord[i]]));
                tmp[k++] = (reverse ? c >= 0 : c <= 0) ? ord[i++] : ord[j++];
            }
            while (i < mid)
                tmp[k++] = ord[i++];
            while (j < hi)
                tmp[k++] = ord[j++];
        }
        size_t *t = ord;
        ord = tmp;
        tmp = t;
        r->steps += cnt / 16;
        if (!jn_step(r, n)) return false;
    }
    for (size_t i = 0; i < cnt; i++)
        l->v[i] = src->v[ord[i]];
    l->n = cnt;
    *out = l;
    return true;
}

static bool py_round(double x, int64_t nd, double *out) {
    if (nd > 300 || nd < -300 || isnan(x) || isinf(x)) {
        *out = x;
        return true;
    }
    if (nd >= 0) {
        char buf[512];
        snprintf(buf, sizeof buf, "%.*f", (int)nd, x);
        *out = strtod(buf, NULL);
    } else {
        double p = pow(10, (double)-nd);
        double y = x / p, fl = floor(y), diff = y - fl;
        double rr = diff > 0.5 ? fl + 1 : diff < 0.5 ? fl : (fmod(fl, 2) == 0 ? fl : fl + 1);
        *out = rr * p;
    }
    return true;
}

/* Jinja's select/map/unique/items filters are generators: a bad input only
 * fails when the result is iterated. */
static bool lazy_input(R *r, const jn_node *n, jv v, jv *out, bool *done) {
    *done = false;
    if (v.t == JV_STR || v.t == JV_LIST || v.t == JV_UNDEF || (v.t == JV_DICT && !v.u.d->ns))
        return true;
    jv_list *l = jn_new_list(r, 0);
    if (!l) return jn_nomem(r, n);
    char msg[96];
    snprintf(msg, sizeof msg, "'%s' object is not iterable", jn_type_name(v));
    l->view = JL_GEN;
    l->lazy_err = jn_strndup(&r->a, msg, strlen(msg));
    if (!l->lazy_err) return jn_nomem(r, n);
    *out = mk_list(l);
    *done = true;
    return true;
}

static bool filter_select(R *r, frame *f, const jn_node *n, jv v, args *a, bool attr_mode,
                          bool reject, jv *out) {
    jv_list *src, *l;
    bool done;
    if (!lazy_input(r, n, v, out, &done)) return false;
    if (done) return true;
    if (!jn_iter_list(r, n, v, &src)) return false;
    l = jn_new_list(r, 0);
    if (!l) return jn_nomem(r, n);
    size_t ai = 0;
    jv attr = UNDEF, test = UNDEF;
    if (attr_mode) {
        if (a->np < 1) return jn_fail(r, n, "selectattr/rejectattr need an attribute name");
        attr = a->pos[ai++];
    }
    if (ai < a->np) test = a->pos[ai++];
    if (test.t != JV_UNDEF && test.t != JV_STR) return jn_fail(r, n, "test name must be a string");
    args targs = {.pos = a->pos ? a->pos + ai : NULL,
                  .np = a->np - ai,
                  .kn = a->kn,
                  .kv = a->kv,
                  .nk = a->nk};
    const char *tname = test.t == JV_STR ? jn_cstr(r, test) : NULL;
    for (size_t i = 0; i < src->n; i++) {
        jv item = src->v[i], x = item;
        if (attr_mode && !get_path(r, n, item, attr, &x)) return false;
        bool keep;
        if (tname) {
            if (!jn_apply_test(r, f, n, tname, x, &targs, &keep)) return false;
        } else {
            keep = jn_truthy(x);
        }
        if (keep != reject && !jn_list_push(r, l, item)) return false;
    }
    l->view = JL_GEN;
    *out = mk_list(l);
    return true;
}

static const char *const KNOWN_UNSUPPORTED[] = {
    "batch",    "filesizeformat", "groupby", "pprint",   "random",  "slice", "striptags",
    "truncate", "urlencode",      "urlize",  "wordwrap", "xmlattr", NULL};

static bool apply_filter_impl(R *r, frame *f, const jn_node *n, const char *name, jv v, args *a,
                              jv *out);

bool jn_apply_filter(R *r, frame *f, const jn_node *n, const char *name, jv v, args *a, jv *out) {
    if (!apply_filter_impl(r, f, n, name, v, a, out)) return false;
    if (v.t == JV_STR && v.mk && out->t == JV_STR &&
        (!strcmp(name, "trim") || !strcmp(name, "upper") || !strcmp(name, "lower") ||
         !strcmp(name, "title") || !strcmp(name, "capitalize") || !strcmp(name, "string") ||
         !strcmp(name, "indent") || !strcmp(name, "center")))
        out->mk = 1;
    return true;
}

static bool apply_filter_impl(R *r, frame *f, const jn_node *n, const char *name, jv v, args *a,
                              jv *out) {
    jv a0 = UNDEF, a1 = UNDEF;
    bool h0 = jn_get_arg(a, 0, NULL, &a0);
    bool h1 = jn_get_arg(a, 1, NULL, &a1);
    (void)h1;
#define IS(s) (!strcmp(name, s))
    if (IS("safe")) {
        if (!jn_to_str(r, v, out)) return false;
        out->mk = 1;
        return true;
    }
    if (IS("trim")) {
        jv s, chars = NONE;
        jn_get_arg(a, 0, "chars", &chars);
        return jn_to_str(r, v, &s) && jn_strip_impl(r, s, chars, true, true, out);
    }
    if (IS("tojson")) {
        json_opts o = {.item_sep = ", ", .key_sep = ": "};
        jv ind = NONE, seps = NONE, sk = mk_bool(false), ea = mk_bool(false);
        jn_get_arg(a, 0, "indent", &ind);
        jn_get_arg(a, 1, "separators", &seps);
        jn_get_arg(a, 2, "sort_keys", &sk);
        for (size_t k = 0; k < a->nk; k++)
            if (!strcmp(a->kn[k], "ensure_ascii")) ea = a->kv[k];
        char *spaces = NULL;
        if (ind.t == JV_INT || ind.t == JV_BOOL) {
            int64_t w = num_i(ind);
            if (w < 0) w = 0;
            if (w > 1024) return jn_fail(r, n, "tojson: indent too large");
            spaces = jn_alloc(&r->a, (size_t)w + 1);
            if (!spaces) return jn_nomem(r, n);
            memset(spaces, ' ', (size_t)w);
            o.indent = spaces;
            o.indent_n = (size_t)w;
        } else if (ind.t == JV_STR) {
            o.indent = ind.u.s.p;
            o.indent_n = ind.u.s.n;
        } else if (ind.t == JV_UNDEF) {
            return jn_undef_err(r, n, ind);
        } else if (ind.t != JV_NONE) {
            return jn_fail(r, n, "tojson: indent must be an int or a string");
        }
        if (o.indent) o.item_sep = ",";
        if (seps.t == JV_LIST && seps.u.l->n == 2 && seps.u.l->v[0].t == JV_STR &&
            seps.u.l->v[1].t == JV_STR) {
            o.item_sep = jn_cstr(r, seps.u.l->v[0]);
            o.key_sep = jn_cstr(r, seps.u.l->v[1]);
            if (!o.item_sep || !o.key_sep) return jn_nomem(r, n);
        } else if (seps.t != JV_NONE && seps.t != JV_UNDEF) {
            return jn_fail(r, n, "tojson: separators must be a pair of strings");
        }
        o.sort_keys = jn_truthy(sk);
        o.ensure_ascii = jn_truthy(ea);
        sbuf b = {0};
        if (!jn_json_dump(r, n, v, &o, &b, 0)) {
            free(b.p);
            return false;
        }
        return jn_sb_finish(r, &b, out);
    }
    if (IS("length") || IS("count")) {
        switch (v.t) {
        case JV_UNDEF: *out = mk_int(0); return true;
        case JV_STR: *out = mk_int((int64_t)jn_u8_len(v.u.s.p, v.u.s.n)); return true;
        case JV_LIST:
            if (v.u.l->view == JL_GEN) break;
            *out = mk_int((int64_t)v.u.l->n);
            return true;
        case JV_DICT:
            if (!v.u.d->ns) {
                *out = mk_int((int64_t)v.u.d->n);
                return true;
            }
            /* fallthrough */
        default: break;
        }
        return jn_fail(r, n, "object of type '%s' has no len()", jn_type_name(v));
    }
    if (IS("items") || IS("keys") || IS("values")) {
        if (v.t == JV_UNDEF) {
            jv_list *l = jn_new_list(r, 0);
            if (!l) return jn_nomem(r, n);
            *out = mk_list(l);
            return true;
        }
        if (v.t != JV_DICT || v.u.d->ns) {
            if (!IS("items"))
                return jn_fail(r, n, "can only get item pairs from a mapping, not %s",
                               jn_type_name(v));
            jv_list *l = jn_new_list(r, 0);
            if (!l) return jn_nomem(r, n);
            l->view = JL_GEN;
            l->lazy_err = "Can only get item pairs from a mapping.";
            *out = mk_list(l);
            return true;
        }
        args none = {0};
        if (!jn_call_method(r, n, v, name, &none, out)) return false;
        if (IS("items")) out->u.l->view = JL_GEN;
        return true;
    }
    if (IS("first") || IS("last")) {
        jv_list *l;
        if (!jn_iter_list(r, n, v, &l)) return false;
        *out = l->n ? l->v[IS("first") ? 0 : l->n - 1] : UNDEF;
        return true;
    }
    if (IS("join")) {
        jv sep = mk_str("", 0), attr = NONE;
        jn_get_arg(a, 0, "d", &sep);
        jn_get_arg(a, 1, "attribute", &attr);
        jv_list *l;
        if (!jn_to_str(r, sep, &sep) || !jn_iter_list(r, n, v, &l)) return false;
        if (attr.t != JV_NONE && attr.t != JV_UNDEF) {
            jv_list *m = jn_new_list(r, l->n);
            if (!m) return jn_nomem(r, n);
            for (size_t i = 0; i < l->n; i++)
                if (!get_path(r, n, l->v[i], attr, &m->v[m->n++])) return false;
            l = m;
        }
        return jn_join_items(r, n, l, sep, NULL, out);
    }
    if (IS("upper") || IS("lower") || IS("capitalize") || IS("title")) {
        jv s;
        if (!jn_to_str(r, v, &s)) return false;
        return jn_map_case(r, s, IS("upper") ? 0 : IS("lower") ? 1 : IS("capitalize") ? 2 : 3, out);
    }
    if (IS("replace")) {
        jv s, cnt = NONE;
        jn_get_arg(a, 2, "count", &cnt);
        if (!jn_to_str(r, v, &s)) return false;
        jv o, nw;
        if (!jn_get_arg(a, 0, "old", &o) || !jn_get_arg(a, 1, "new", &nw))
            return jn_fail(r, n, "replace needs old and new");
        if (!jn_to_str(r, o, &o) || !jn_to_str(r, nw, &nw)) return false;
        return jn_str_replace(r, s, o, nw, cnt.t == JV_INT ? cnt.u.i : -1, out);
    }
    if (IS("default") || IS("d")) {
        jv dv = mk_str("", 0), boolean = mk_bool(false);
        jn_get_arg(a, 0, "default_value", &dv);
        jn_get_arg(a, 1, "boolean", &boolean);
        if (v.t == JV_UNDEF || (jn_truthy(boolean) && !jn_truthy(v)))
            *out = dv;
        else
            *out = v;
        return true;
    }
    if (IS("string")) return jn_to_str(r, v, out);
    if ((IS("int") || IS("float")) && v.t == JV_UNDEF) return jn_undef_err(r, n, v);
    if (IS("int")) {
        jv dflt = mk_int(0);
        jn_get_arg(a, 0, "default", &dflt);
        if (v.t == JV_INT)
            *out = v;
        else if (v.t == JV_BOOL)
            *out = mk_int(v.u.b);
        else if (v.t == JV_FLOAT) {
            if (isnan(v.u.f) || isinf(v.u.f) || fabs(v.u.f) > 9.2e18)
                *out = dflt;
            else
                *out = mk_int((int64_t)v.u.f);
        } else if (v.t == JV_STR) {
            jv s;
            if (!jn_strip_impl(r, v, NONE, true, true, &s)) return false;
            const char *cs = jn_cstr(r, s);
            if (!cs) return jn_nomem(r, n);
            char *end;
            long long x = strtoll(cs, &end, 10);
            if (strpbrk(cs, "xXpP"))
                *out = dflt; /* no C hex literals */
            else if (*cs && !*end)
                *out = mk_int(x);
            else {
                double d = strtod(cs, &end);
                *out = (*cs && !*end && !isnan(d) && !isinf(d) && fabs(d) < 9.2e18)
                           ? mk_int((int64_t)d)
                           : dflt;
            }
        } else
            *out = dflt;
        return true;
    }
    if (IS("float")) {
        jv dflt = mk_float(0.0);
        jn_get_arg(a, 0, "default", &dflt);
        if (is_num(v))
            *out = mk_float(num_f(v));
        else if (v.t == JV_STR) {
            jv s;
            if (!jn_strip_impl(r, v, NONE, true, true, &s)) return false;
            const char *cs = jn_cstr(r, s);
            if (!cs) return jn_nomem(r, n);
            char *end;
            double d = strtod(cs, &end);
            *out = (*cs && !*end && !strpbrk(cs, "xXpP")) ? mk_float(d) : dflt;
        } else
            *out = dflt;
        return true;
    }
    if (IS("list")) {
        jv_list *l;
        if (!jn_iter_list(r, n, v, &l)) return false;
        jv_list *c = jn_new_list(r, l->n);
        if (!c) return jn_nomem(r, n);
        for (size_t i = 0; i < l->n; i++)
            c->v[c->n++] = l->v[i];
        *out = mk_list(c);
        return true;
    }
    if (IS("map")) {
        jv_list *l;
        bool done;
        if (!lazy_input(r, n, v, out, &done)) return false;
        if (done) return true;
        if (!jn_iter_list(r, n, v, &l)) return false;
        jv_list *m = jn_new_list(r, l->n);
        if (!m) return jn_nomem(r, n);
        jv attr, dflt = UNDEF;
        bool has_attr = false;
        for (size_t k = 0; k < a->nk; k++) {
            if (!strcmp(a->kn[k], "attribute")) {
                attr = a->kv[k];
                has_attr = true;
            }
            if (!strcmp(a->kn[k], "default")) dflt = a->kv[k];
        }
        if (has_attr) {
            for (size_t i = 0; i < l->n; i++) {
                jv x;
                if (!get_path(r, n, l->v[i], attr, &x)) return false;
                if (x.t == JV_UNDEF && dflt.t != JV_UNDEF) x = dflt;
                m->v[m->n++] = x;
            }
        } else {
            if (a->np < 1 || a->pos[0].t != JV_STR)
                return jn_fail(r, n, "map: expected a filter name");
            const char *fname = jn_cstr(r, a->pos[0]);
            if (!fname) return jn_nomem(r, n);
            args fa = {.pos = a->pos + 1, .np = a->np - 1, .kn = a->kn, .kv = a->kv, .nk = a->nk};
            for (size_t i = 0; i < l->n; i++)
                if (!jn_apply_filter(r, f, n, fname, l->v[i], &fa, &m->v[m->n++])) return false;
        }
        m->view = JL_GEN;
        *out = mk_list(m);
        return true;
    }
    if (IS("select") || IS("reject")) return filter_select(r, f, n, v, a, false, IS("reject"), out);
    if (IS("selectattr") || IS("rejectattr"))
        return filter_select(r, f, n, v, a, true, IS("rejectattr"), out);
    if (IS("unique")) {
        jv cs = mk_bool(false), attr = NONE;
        jn_get_arg(a, 0, "case_sensitive", &cs);
        jn_get_arg(a, 1, "attribute", &attr);
        jv_list *l, *u;
        bool done;
        if (!lazy_input(r, n, v, out, &done)) return false;
        if (done) return true;
        if (!jn_iter_list(r, n, v, &l)) return false;
        u = jn_new_list(r, 0);
        jv *seen = jn_alloc(&r->a, (l->n + 1) * sizeof *seen);
        if (!u || !seen) return jn_nomem(r, n);
        size_t ns = 0;
        for (size_t i = 0; i < l->n; i++) {
            jv key = l->v[i];
            if (attr.t != JV_NONE && !get_path(r, n, key, attr, &key)) return false;
            if (!jn_truthy(cs) && key.t == JV_STR && !jn_map_case(r, key, 1, &key)) return false;
            bool dup = false;
            WORK(ns);
            for (size_t k = 0; k < ns && !dup; k++)
                dup = jv_eq(seen[k], key);
            if (!dup) {
                seen[ns++] = key;
                if (!jn_list_push(r, u, l->v[i])) return false;
            }
            if (!jn_step(r, n)) return false;
        }
        u->view = JL_GEN;
        *out = mk_list(u);
        return true;
    }
    if (IS("sort")) {
        jv rev = mk_bool(false), cs = mk_bool(false), attr = NONE;
        jn_get_arg(a, 0, "reverse", &rev);
        jn_get_arg(a, 1, "case_sensitive", &cs);
        jn_get_arg(a, 2, "attribute", &attr);
        jv_list *l, *s;
        if (!jn_iter_list(r, n, v, &l) ||
            !sort_list(r, n, l, jn_truthy(rev), jn_truthy(cs), attr, false, &s))
            return false;
        *out = mk_list(s);
        return true;
    }
    if (IS("dictsort")) {
        jv cs = mk_bool(false), by = mk_str("key", 3), rev = mk_bool(false);
        jn_get_arg(a, 0, "case_sensitive", &cs);
        jn_get_arg(a, 1, "by", &by);
        jn_get_arg(a, 2, "reverse", &rev);
        if (v.t != JV_DICT) return jn_fail(r, n, "dictsort: expected a mapping");
        jv items;
        args none = {0};
        if (!jn_call_method(r, n, v, "items", &none, &items)) return false;
        int64_t idx = str_eq(by, "value", 5) ? 1 : 0;
        jv_list *s;
        if (!sort_list(r, n, items.u.l, jn_truthy(rev), jn_truthy(cs), mk_int(idx), true, &s))
            return false;
        *out = mk_list(s);
        return true;
    }
    if (IS("reverse")) {
        if (v.t == JV_STR) {
            jv st = mk_int(-1);
            return jn_do_slice(r, n, v, NONE, NONE, st, out);
        }
        jv_list *l;
        if (!jn_iter_list(r, n, v, &l)) return false;
        jv_list *c = jn_new_list(r, l->n);
        if (!c) return jn_nomem(r, n);
        for (size_t i = l->n; i-- > 0;)
            c->v[c->n++] = l->v[i];
        c->view = JL_GEN; /* reversed(): an iterator */
        *out = mk_list(c);
        return true;
    }
    if (IS("indent")) {
        jv width = mk_int(4), first = mk_bool(false), blank = mk_bool(false);
        jn_get_arg(a, 0, "width", &width);
        jn_get_arg(a, 1, "first", &first);
        jn_get_arg(a, 2, "blank", &blank);
        jv s = v, ind;
        if (v.t != JV_STR)
            return jn_fail(r, n, "unsupported operand type(s) for +=: '%s' and 'str'",
                           jn_type_name(v));
        if (width.t == JV_STR)
            ind = width;
        else {
            int64_t w = is_num(width) ? num_i(width) : 4;
            if (w < 0) w = 0;
            if (w > 1024) return jn_fail(r, n, "indent: width too large");
            char *sp = jn_alloc(&r->a, (size_t)w + 1);
            if (!sp) return jn_nomem(r, n);
            memset(sp, ' ', (size_t)w);
            ind = mk_str(sp, (size_t)w);
        }
        jv withnl;
        jv_list *lines;
        if (!jn_concat_str(r, s, mk_str("\n", 1), &withnl) ||
            !jn_splitlines(r, withnl, false, &lines))
            return false;
        sbuf b = {0};
        bool ok = true;
        if (jn_truthy(first)) ok = jn_sb_put(r, &b, ind.u.s.p, ind.u.s.n);
        for (size_t i = 0; i < lines->n && ok; i++) {
            jv ln = lines->v[i];
            if (i) ok = sb_putc(r, &b, '\n');
            if (ok && i && (jn_truthy(blank) || ln.u.s.n))
                ok = jn_sb_put(r, &b, ind.u.s.p, ind.u.s.n);
            if (ok) ok = jn_sb_put(r, &b, ln.u.s.p, ln.u.s.n);
        }
        if (!ok) {
            free(b.p);
            return false;
        }
        return jn_sb_finish(r, &b, out);
    }
    if (IS("escape") || IS("e") || IS("forceescape")) {
        jv s;
        return jn_to_str(r, v, &s) && jn_html_escape(r, s, out);
    }
    if (IS("round")) {
        jv prec = mk_int(0), method = mk_str("common", 6);
        jn_get_arg(a, 0, "precision", &prec);
        jn_get_arg(a, 1, "method", &method);
        if (!is_num(v)) return jn_fail(r, n, "round: expected a number");
        int64_t p = is_num(prec) ? num_i(prec) : 0;
        double x = num_f(v), res;
        if (str_eq(method, "common", 6)) {
            if (v.t != JV_FLOAT && p >= 0) {
                *out = v.t == JV_BOOL ? mk_int(v.u.b) : v;
                return true;
            }
            py_round(x, p, &res);
        } else if (str_eq(method, "floor", 5) || str_eq(method, "ceil", 4)) {
            double m = pow(10, (double)p);
            res = (method.u.s.p[0] == 'f' ? floor(x * m) : ceil(x * m)) / m;
        } else {
            return jn_fail(r, n, "method must be common, ceil or floor");
        }
        *out = mk_float(res);
        return true;
    }
    if (IS("abs")) {
        if (!is_num(v)) return jn_fail(r, n, "bad operand type for abs(): '%s'", jn_type_name(v));
        if (v.t == JV_FLOAT)
            *out = mk_float(fabs(v.u.f));
        else if (num_i(v) == INT64_MIN)
            return jn_fail(r, n, "integer overflow");
        else
            *out = mk_int(num_i(v) < 0 ? -num_i(v) : num_i(v));
        return true;
    }
    if (IS("min") || IS("max")) {
        jv cs = mk_bool(false), attr = NONE;
        jn_get_arg(a, 0, "case_sensitive", &cs);
        jn_get_arg(a, 1, "attribute", &attr);
        jv_list *l, *s;
        if (!jn_iter_list(r, n, v, &l)) return false;
        if (!l->n) {
            *out = UNDEF;
            return true;
        }
        if (!sort_list(r, n, l, false, jn_truthy(cs), attr, false, &s)) return false;
        *out = IS("min") ? s->v[0] : s->v[s->n - 1];
        if (IS("max")) { /* first of the maxima, like Python's max */
            for (size_t i = s->n - 1; i-- > 0;) {
                bool ok = true;
                jv ka = s->v[i], kb = s->v[s->n - 1];
                if (attr.t != JV_NONE &&
                    (!get_path(r, n, ka, attr, &ka) || !get_path(r, n, kb, attr, &kb)))
                    return false;
                if (cmp_for_sort(r, ka, kb, jn_truthy(cs), &ok) == 0 && ok)
                    *out = s->v[i];
                else
                    break;
            }
        }
        return true;
    }
    if (IS("sum")) {
        jv attr = NONE, start = mk_int(0);
        jn_get_arg(a, 0, "attribute", &attr);
        jn_get_arg(a, 1, "start", &start);
        jv_list *l;
        if (!jn_iter_list(r, n, v, &l)) return false;
        jv acc = start;
        for (size_t i = 0; i < l->n; i++) {
            jv x = l->v[i];
            if (attr.t != JV_NONE && !get_path(r, n, x, attr, &x)) return false;
            if (!jn_arith(r, n, "+", acc, x, &acc)) return false;
        }
        *out = acc;
        return true;
    }
    if (IS("attr")) {
        if (!h0 || a0.t != JV_STR) return jn_fail(r, n, "attr: expected a name");
        const char *nm = jn_cstr(r, a0);
        if (!nm) return jn_nomem(r, n);
        return jn_get_attr(r, n, v, nm, a0.u.s.n, out);
    }
    if (IS("format")) {
        jv s;
        if (!jn_to_str(r, v, &s)) return false;
        jv_list *t = jn_new_list(r, a->np);
        if (!t) return jn_nomem(r, n);
        t->tuple = true;
        for (size_t i = 0; i < a->np; i++)
            t->v[t->n++] = a->pos[i];
        return jn_percent_format(r, n, s, mk_list(t), out);
    }
    if (IS("wordcount")) { /* len(re.findall(r"\w+", str(v))) */
        jv s;
        if (!jn_to_str(r, v, &s)) return false;
        int64_t words = 0;
        bool in_word = false;
        for (size_t i = 0; i < s.u.s.n;) {
            int32_t cp;
            i += jn_u8_dec(s.u.s.p + i, s.u.s.n - i, &cp);
            utf8proc_category_t c = utf8proc_category(cp);
            bool w = cp == '_' || (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
                     (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO) ||
                     c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_MC;
            if (w && !in_word) words++;
            in_word = w;
        }
        *out = mk_int(words);
        return true;
    }
    if (IS("center")) {
        jv s, w = mk_int(80);
        jn_get_arg(a, 0, "width", &w);
        args ca = {.pos = &w, .np = 1};
        return jn_to_str(r, v, &s) && jn_call_method(r, n, s, "center", &ca, out);
    }
    (void)h0;
    for (size_t i = 0; KNOWN_UNSUPPORTED[i]; i++)
        if (!strcmp(KNOWN_UNSUPPORTED[i], name))
            return jn_fail(r, n, "filter '%s' is not supported", name);
    return jn_fail(r, n, "no filter named '%s'", name);
#undef IS
}
