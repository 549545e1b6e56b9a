/* jinja_ops.c — the operators of expressions on values: attribute and
 * item lookup, slicing, arithmetic, string concatenation and %-formatting,
 * comparisons and membership, HTML escaping. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_ops.h"
#include "tokenizer/jinja_value.h"

/* attribute lookup (getattr then getitem), as jinja2's Environment.getattr */
static const char *const STR_METHODS[] = {
    "startswith", "endswith",     "strip",        "lstrip",     "rstrip",
    "split",      "rsplit",       "replace",      "upper",      "lower",
    "title",      "capitalize",   "find",         "rfind",      "count",
    "format",     "join",         "isdigit",      "isalpha",    "isalnum",
    "isspace",    "isupper",      "islower",      "splitlines", "index",
    "zfill",      "removeprefix", "removesuffix", "casefold",   "swapcase",
    "center",     "ljust",        "rjust",        NULL};
static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", NULL};
static const char *const LIST_METHODS[] = {"index", "count", NULL};

static bool in_names(const char *const *names, const char *s, size_t n) {
    for (int i = 0; names[i]; i++)
        if (strlen(names[i]) == n && !memcmp(names[i], s, n)) return true;
    return false;
}

static bool bind_method(R *r, jv self, const char *name, jv *out) {
    jv_func *fn = jn_alloc(&r->a, sizeof *fn);
    if (!fn) return jn_nomem(r, NULL);
    fn->kind = FN_METHOD;
    fn->name = name;
    fn->self = self;
    out->t = JV_FUNC;
    out->u.fn = fn;
    out->uname = NULL;
    return true;
}

bool jn_get_attr(R *r, const jn_node *n, jv obj, const char *name, size_t nl, jv *out) {
    switch (obj.t) {
    case JV_UNDEF: return jn_undef_err(r, n, obj);
    case JV_DICT:
        if (!obj.u.d->ns && in_names(DICT_METHODS, name, nl)) return bind_method(r, obj, name, out);
        {
            jv *v = jn_dict_find_s(obj.u.d, name, nl);
            *out = v ? *v : mk_undef(name);
            return true;
        }
    case JV_STR:
        if (in_names(STR_METHODS, name, nl)) return bind_method(r, obj, name, out);
        break;
    case JV_LIST:
        if (!obj.u.l->view && in_names(LIST_METHODS, name, nl))
            return bind_method(r, obj, name, out);
        break;
    default: break;
    }
    *out = mk_undef(name);
    return true;
}

bool jn_get_index(R *r, const jn_node *n, jv obj, jv key, jv *out) {
    switch (obj.t) {
    case JV_UNDEF: return jn_undef_err(r, n, obj);
    case JV_DICT: {
        jv *v = jn_dict_find(obj.u.d, key);
        if (v) {
            *out = *v;
            return true;
        }
        break;
    }
    case JV_LIST:
        if (obj.u.l->view) {
            *out = UNDEF;
            return true;
        }
        if (key.t == JV_INT || key.t == JV_BOOL) {
            int64_t i = num_i(key), len = (int64_t)obj.u.l->n;
            if (i < 0) i += len;
            if (i >= 0 && i < len) {
                *out = obj.u.l->v[i];
                return true;
            }
            *out = UNDEF;
            return true;
        }
        break;
    case JV_STR:
        if (key.t == JV_INT || key.t == JV_BOOL) {
            bool ascii = true;
            WORK(obj.u.s.n);
            for (size_t i = 0; i < obj.u.s.n && ascii; i++)
                ascii = !((unsigned char)obj.u.s.p[i] & 0x80);
            if (ascii) {
                int64_t i = num_i(key), len = (int64_t)obj.u.s.n;
                if (i < 0) i += len;
                *out = i >= 0 && i < len ? mk_str(obj.u.s.p + i, 1) : UNDEF;
                return true;
            }
            size_t cnt;
            size_t *off = jn_u8_offsets(r, obj.u.s.p, obj.u.s.n, &cnt);
            if (!off) return jn_nomem(r, n);
            int64_t i = num_i(key);
            if (i < 0) i += (int64_t)cnt;
            if (i >= 0 && i < (int64_t)cnt) {
                *out = mk_str(obj.u.s.p + off[i], off[i + 1] - off[i]);
                return true;
            }
            *out = UNDEF;
            return true;
        }
        break;
    default: break;
    }
    if (key.t == JV_STR) {
        const char *nm = jn_cstr(r, key);
        if (!nm) return jn_nomem(r, n);
        if (obj.t == JV_DICT) {
            *out = mk_undef(nm);
            return true;
        }
        return jn_get_attr(r, n, obj, nm, key.u.s.n, out);
    }
    *out = UNDEF;
    return true;
}

static bool slice_indices(R *r, const jn_node *n, int64_t len, jv vs, jv ve, jv vst, int64_t *start,
                          int64_t *stop, int64_t *stepv) {
    int64_t st = 1;
    if (vst.t != JV_NONE && vst.t != JV_UNDEF) {
        if (vst.t != JV_INT) return jn_fail(r, n, "slice indices must be integers");
        st = vst.u.i;
        if (st == 0) return jn_fail(r, n, "slice step cannot be zero");
    }
    int64_t lo, hi;
    if (st > 0) {
        lo = 0;
        hi = len;
    } else {
        lo = -1;
        hi = len - 1;
    }
    int64_t s = st > 0 ? lo : hi, e = st > 0 ? hi : lo;
    if (vs.t != JV_NONE && vs.t != JV_UNDEF) {
        if (vs.t != JV_INT && vs.t != JV_BOOL)
            return jn_fail(r, n, "slice indices must be integers");
        s = num_i(vs);
        if (s < 0) {
            s += len;
            if (s < lo) s = lo;
        } else if (s > hi) {
            s = hi;
        }
    }
    if (ve.t != JV_NONE && ve.t != JV_UNDEF) {
        if (ve.t != JV_INT && ve.t != JV_BOOL)
            return jn_fail(r, n, "slice indices must be integers");
        e = num_i(ve);
        if (e < 0) {
            e += len;
            if (e < lo) e = lo;
        } else if (e > hi) {
            e = hi;
        }
    }
    *start = s;
    *stop = e;
    *stepv = st;
    return true;
}

bool jn_do_slice(R *r, const jn_node *n, jv obj, jv vs, jv ve, jv vst, jv *out) {
    if (obj.t == JV_UNDEF) return jn_undef_err(r, n, obj);
    if ((obj.t != JV_LIST && obj.t != JV_STR) || (obj.t == JV_LIST && obj.u.l->view))
        return jn_fail(r, n, "'%s' object is not subscriptable", jn_type_name(obj));
    size_t cnt;
    size_t *off = NULL;
    if (obj.t == JV_STR) {
        off = jn_u8_offsets(r, obj.u.s.p, obj.u.s.n, &cnt);
        if (!off) return jn_nomem(r, n);
    } else {
        cnt = obj.u.l->n;
    }
    int64_t s = 0, e = 0, st = 1;
    if (!slice_indices(r, n, (int64_t)cnt, vs, ve, vst, &s, &e, &st)) return false;
    if (obj.t == JV_STR) {
        if (st == 1) {
            *out = s < e ? mk_str(obj.u.s.p + off[s], off[e] - off[s]) : mk_str("", 0);
            return true;
        }
        sbuf b = {0};
        for (int64_t i = s; st > 0 ? i < e : i > e; i += st)
            if (!jn_sb_put(r, &b, obj.u.s.p + off[i], off[i + 1] - off[i])) {
                free(b.p);
                return false;
            }
        return jn_sb_finish(r, &b, out);
    }
    jv_list *l = jn_new_list(r, 0);
    if (!l) return jn_nomem(r, n);
    l->tuple = obj.u.l->tuple;
    for (int64_t i = s; st > 0 ? i < e : i > e; i += st)
        if (!jn_list_push(r, l, obj.u.l->v[i])) return false;
    *out = mk_list(l);
    return true;
}

bool jn_concat_str(R *r, jv a, jv b, jv *out) {
    size_t n = a.u.s.n + b.u.s.n;
    if (n > r->lim.max_output)
        return jn_fail(r, NULL, "string longer than %zu bytes", r->lim.max_output);
    char *p = jn_alloc(&r->a, n + 1);
    if (!p) return jn_nomem(r, NULL);
    memcpy(p, a.u.s.p, a.u.s.n);
    memcpy(p + a.u.s.n, b.u.s.p, b.u.s.n);
    *out = mk_str(p, n);
    return true;
}

bool jn_arith(R *r, const jn_node *n, const char *op, jv a, jv b, jv *out) {
    if (a.t == JV_UNDEF) return jn_undef_err(r, n, a);
    if (b.t == JV_UNDEF) return jn_undef_err(r, n, b);
    char c = op[0];
    bool dbl = op[1] != '\0';
    if (c == '+' && a.t == JV_STR && b.t == JV_STR) {
        /* Markup + str escapes the str (markupsafe) */
        if (a.mk != b.mk && !jn_html_escape(r, a.mk ? b : a, a.mk ? &b : &a)) return false;
        if (!jn_concat_str(r, a, b, out)) return false;
        out->mk = a.mk || b.mk;
        return true;
    }
    if (c == '+' && a.t == JV_LIST && b.t == JV_LIST && a.u.l->tuple == b.u.l->tuple &&
        !a.u.l->view && !b.u.l->view) {
        jv_list *l = jn_new_list(r, a.u.l->n + b.u.l->n);
        if (!l) return jn_nomem(r, n);
        l->tuple = a.u.l->tuple;
        for (size_t i = 0; i < a.u.l->n; i++)
            l->v[l->n++] = a.u.l->v[i];
        for (size_t i = 0; i < b.u.l->n; i++)
            l->v[l->n++] = b.u.l->v[i];
        *out = mk_list(l);
        return true;
    }
    if (c == '*' && !dbl &&
        ((a.t == JV_STR || (a.t == JV_LIST && !a.u.l->view)) &&
         (b.t == JV_INT || b.t == JV_BOOL))) {
        int64_t k = num_i(b);
        if (k < 0) k = 0;
        if (a.t == JV_STR) {
            if (a.u.s.n && (uint64_t)k > r->lim.max_output / a.u.s.n)
                return jn_fail(r, n, "string longer than %zu bytes", r->lim.max_output);
            sbuf sb = {0};
            for (int64_t i = 0; i < k; i++)
                if (!jn_sb_put(r, &sb, a.u.s.p, a.u.s.n)) {
                    free(sb.p);
                    return false;
                }
            return jn_sb_finish(r, &sb, out);
        }
        if (a.u.l->n && (uint64_t)k > (r->lim.max_memory / 32) / a.u.l->n)
            return jn_fail(r, n, "list too long");
        jv_list *l = jn_new_list(r, 0);
        if (!l) return jn_nomem(r, n);
        l->tuple = a.u.l->tuple;
        for (int64_t i = 0; i < k; i++)
            for (size_t j = 0; j < a.u.l->n; j++)
                if (!jn_list_push(r, l, a.u.l->v[j])) return false;
        *out = mk_list(l);
        return true;
    }
    if (c == '*' && !dbl && (b.t == JV_STR || (b.t == JV_LIST && !b.u.l->view)) &&
        (a.t == JV_INT || a.t == JV_BOOL))
        return jn_arith(r, n, op, b, a, out);
    if (!is_num(a) || !is_num(b))
        return jn_fail(r, n, "unsupported operand type(s) for %s: '%s' and '%s'", op,
                       jn_type_name(a), jn_type_name(b));
    bool fl = a.t == JV_FLOAT || b.t == JV_FLOAT;
    if (c == '/' && !dbl) {
        if (num_f(b) == 0) return jn_fail(r, n, "division by zero");
        *out = mk_float(num_f(a) / num_f(b));
        return true;
    }
    if (fl || (c == '*' && dbl)) {
        double x = num_f(a), y = num_f(b), z;
        if (c == '*' && dbl && !fl) {
            int64_t base = num_i(a), e = num_i(b);
            if (e >= 0) {
                int64_t res = 1;
                bool ovf = false;
                for (int64_t i = 0; i < e && !ovf; i++) {
                    if (__builtin_mul_overflow(res, base, &res)) ovf = true;
                    if (res == 0 || res == 1) break;
                    if (res == -1) {
                        res = (e % 2) ? -1 : 1;
                        if (base == -1) break;
                    }
                }
                if (ovf) return jn_fail(r, n, "integer overflow");
                *out = mk_int(res);
                return true;
            }
            *out = mk_float(pow(x, y));
            return true;
        }
        switch (c) {
        case '+': z = x + y; break;
        case '-': z = x - y; break;
        case '*': z = dbl ? pow(x, y) : x * y; break;
        case '/':
            if (y == 0) return jn_fail(r, n, "division by zero");
            z = floor(x / y);
            break;
        case '%':
            if (y == 0) return jn_fail(r, n, "modulo by zero");
            z = fmod(x, y);
            if (z != 0 && ((z < 0) != (y < 0))) z += y;
            break;
        default: return jn_fail(r, n, "bad operator");
        }
        *out = mk_float(z);
        return true;
    }
    int64_t x = num_i(a), y = num_i(b), z;
    switch (c) {
    case '+':
        if (__builtin_add_overflow(x, y, &z)) return jn_fail(r, n, "integer overflow");
        break;
    case '-':
        if (__builtin_sub_overflow(x, y, &z)) return jn_fail(r, n, "integer overflow");
        break;
    case '*':
        if (__builtin_mul_overflow(x, y, &z)) return jn_fail(r, n, "integer overflow");
        break;
    case '/':
    case '%':
        if (y == 0) return jn_fail(r, n, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) return jn_fail(r, n, "integer overflow");
        if (c == '/') {
            z = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) z--;
        } else {
            z = x % y;
            if (z != 0 && ((z < 0) != (y < 0))) z += y;
        }
        break;
    default: return jn_fail(r, n, "bad operator");
    }
    *out = mk_int(z);
    return true;
}

/* "%s" % args (printf-style, the common conversions) */
bool jn_percent_format(R *r, const jn_node *n, jv fmt, jv argv, jv *out) {
    jv_list one = {.v = &argv, .n = 1};
    jv_list *al = argv.t == JV_LIST && argv.u.l->tuple ? argv.u.l : &one;
    size_t ai = 0;
    sbuf b = {0};
    const char *s = fmt.u.s.p;
    size_t len = fmt.u.s.n;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            if (!sb_putc(r, &b, s[i])) goto err;
            continue;
        }
        if (++i >= len) {
            jn_fail(r, n, "incomplete format");
            goto err;
        }
        if (s[i] == '%') {
            if (!sb_putc(r, &b, '%')) goto err;
            continue;
        }
        char spec[32];
        size_t k = 0;
        spec[k++] = '%';
        while (i < len && strchr("-+ 0#.0123456789", s[i]) && k < 20)
            spec[k++] = s[i++];
        if (i >= len) {
            jn_fail(r, n, "incomplete format");
            goto err;
        }
        char conv = s[i];
        if (ai >= al->n) {
            jn_fail(r, n, "not enough arguments for format string");
            goto err;
        }
        jv a = al->v[ai++];
        char tmp[512];
        if ((conv == 's' || conv == 'r') && fmt.mk) {
            jv sa;
            if (conv == 'r') {
                sbuf rb = {0};
                if (!jn_repr_sb(r, a, &rb, 0) || !jn_sb_finish(r, &rb, &sa)) {
                    free(rb.p);
                    goto err;
                }
            } else if (!jn_to_str(r, a, &sa)) {
                goto err;
            }
            if (!jn_html_escape(r, sa, &sa) || !jn_sb_put(r, &b, sa.u.s.p, sa.u.s.n)) goto err;
        } else if (conv == 's' || conv == 'r') {
            if (conv == 'r' ? !jn_repr_sb(r, a, &b, 0) : !jn_to_str_sb(r, a, &b)) goto err;
        } else if (conv == 'd' || conv == 'i') {
            if (!is_num(a)) {
                jn_fail(r, n, "%%d format: a number is required");
                goto err;
            }
            spec[k++] = 'l';
            spec[k++] = 'l';
            spec[k++] = 'd';
            spec[k] = '\0';
            snprintf(tmp, sizeof tmp, spec,
                     (long long)(a.t == JV_FLOAT ? (int64_t)a.u.f : num_i(a)));
            if (!sb_puts(r, &b, tmp)) goto err;
        } else if (strchr("feEgGxXo", conv)) {
            if (!is_num(a)) {
                jn_fail(r, n, "format: a number is required");
                goto err;
            }
            spec[k++] = conv;
            spec[k] = '\0';
            if (strchr("xXo", conv)) {
                spec[k - 1] = 'l';
                spec[k++] = 'l';
                spec[k++] = conv;
                spec[k] = '\0';
                snprintf(tmp, sizeof tmp, spec, (long long)num_i(a));
            } else {
                snprintf(tmp, sizeof tmp, spec, num_f(a));
            }
            if (!sb_puts(r, &b, tmp)) goto err;
        } else {
            jn_fail(r, n, "unsupported format character '%c'", conv);
            goto err;
        }
    }
    if (ai < al->n && !(argv.t == JV_DICT && !argv.u.d->ns)) {
        jn_fail(r, n, "not all arguments converted during string formatting");
        goto err;
    }
    if (!jn_sb_finish(r, &b, out)) return false;
    out->mk = fmt.mk;
    return true;
err:
    free(b.p);
    return false;
}

bool jn_eval_cmp(R *r, const jn_node *n, const char *op, jv a, jv b, bool *res) {
    if (!strcmp(op, "==")) {
        *res = jv_eq(a, b);
        return true;
    }
    if (!strcmp(op, "!=")) {
        *res = !jv_eq(a, b);
        return true;
    }
    if (!strcmp(op, "in") || !strcmp(op, "notin")) {
        bool found = false;
        if (b.t == JV_STR) {
            if (a.t != JV_STR)
                return jn_fail(r, n, "'in <string>' requires string as left operand, not %s",
                               jn_type_name(a));
            WORK(b.u.s.n);
            found = a.u.s.n == 0 ||
                    (a.u.s.n <= b.u.s.n && memmem(b.u.s.p, b.u.s.n, a.u.s.p, a.u.s.n) != NULL);
        } else if (b.t == JV_LIST) {
            WORK(b.u.l->n);
            for (size_t i = 0; i < b.u.l->n && !found; i++)
                found = jv_eq(a, b.u.l->v[i]);
        } else if (b.t == JV_DICT) {
            found = jn_dict_find(b.u.d, a) != NULL;
        } else if (b.t == JV_UNDEF) {
            found = false;
        } else {
            return jn_fail(r, n, "argument of type '%s' is not iterable", jn_type_name(b));
        }
        *res = op[0] == 'i' ? found : !found;
        return true;
    }
    if (a.t == JV_UNDEF) return jn_undef_err(r, n, a);
    if (b.t == JV_UNDEF) return jn_undef_err(r, n, b);
    bool ok = true;
    int c = jn_cmp_values(r, a, b, &ok);
    if (!ok)
        return jn_fail(r, n, "'%s' not supported between instances of '%s' and '%s'", op,
                       jn_type_name(a), jn_type_name(b));
    if (!strcmp(op, "<"))
        *res = c < 0;
    else if (!strcmp(op, "<="))
        *res = c <= 0;
    else if (!strcmp(op, ">"))
        *res = c > 0;
    else
        *res = c >= 0;
    return true;
}

bool jn_html_escape(R *r, jv s, jv *out) {
    if (s.mk) {
        *out = s;
        return true;
    }
    sbuf b = {0};
    for (size_t i = 0; i < s.u.s.n; i++) {
        const char *e = NULL;
        switch (s.u.s.p[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&#34;"; break;
        case '\'': e = "&#39;"; break;
        }
        if (!(e ? sb_puts(r, &b, e) : sb_putc(r, &b, s.u.s.p[i]))) {
            free(b.p);
            return false;
        }
    }
    if (!jn_sb_finish(r, &b, out)) return false;
    out->mk = 1;
    return true;
}
