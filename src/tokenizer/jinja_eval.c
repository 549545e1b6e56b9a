/* jinja_eval.c — renders a parsed template: values, scopes, expressions,
 * statements, filters, tests, methods and globals, with Python semantics
 * where templates print values (str(), repr(), json.dumps). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "tokenizer/jinja_internal.h"

/* ---------------------------------------------------------------- types */

typedef struct frame frame;
struct frame {
    jv_dict vars;
    frame *parent;
};

enum fn_kind { FN_GLOBAL, FN_METHOD, FN_MACRO, FN_CALLER };

struct jv_func {
    int kind;
    const char *name; /* global / method name */
    jv self;          /* FN_METHOD: the bound object */
    const jn_node *node;
    frame *closure;
    const jn_node *caller; /* macro called from {% call %} */
    frame *caller_frame;
};

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

typedef struct R {
    jn_arena a;
    jn_limits lim;
    uint64_t steps;
    int depth;
    ci_status err;
    sbuf *out;
    frame *globals;
} R;

typedef struct args {
    jv *pos;
    size_t np;
    const char **kn;
    jv *kv;
    size_t nk;
} args;

enum { X_OK = 0, X_BREAK, X_CONTINUE, X_ERR };

static const jv UNDEF = {.t = JV_UNDEF};
static const jv NONE = {.t = JV_NONE};

/* --------------------------------------------------------------- errors */

static bool fail(R *r, const jn_node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(R *r, const jn_node *n, const char *fmt, ...) {
    if (r->err.code == CI_OK) {
        char buf[220];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        r->err = ci_errorf(CI_ERR_INVALID, "chat template line %d: %s", n ? n->line : 0, buf);
    }
    return false;
}

static bool nomem(R *r, const jn_node *n) {
    if (r->a.over_limit)
        return fail(r, n, "template used more than %zu bytes of memory", r->lim.max_memory);
    return fail(r, n, "out of memory");
}

/* Work done inside one step that grows with data size (scans, compares,
 * code-point offsets) is charged to the step budget too, so no single
 * expression can run unbounded. */
static _Thread_local uint64_t g_work;
#define WORK(n) (g_work += (uint64_t)(n))

static bool step(R *r, const jn_node *n) {
    if (r->err.code) return false;
    r->steps += g_work / 4;
    g_work %= 4;
    if (++r->steps > r->lim.max_steps)
        return fail(r, n, "template ran more than %llu steps", (unsigned long long)r->lim.max_steps);
    if (r->a.oom) return nomem(r, n);
    return true;
}

/* -------------------------------------------------------------- sbuf */

static bool sb_put(R *r, sbuf *b, const char *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        if (b->n + n > r->lim.max_output)
            return fail(r, NULL, "template output exceeded %zu bytes", r->lim.max_output);
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) return fail(r, NULL, "out of memory");
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}
static bool sb_puts(R *r, sbuf *b, const char *s) { return sb_put(r, b, s, strlen(s)); }
static bool sb_putc(R *r, sbuf *b, char c) { return sb_put(r, b, &c, 1); }

/* moves the buffer's bytes into the arena as a string value */
static bool sb_finish(R *r, sbuf *b, jv *out) {
    char *s = jn_strndup(&r->a, b->p ? b->p : "", b->n);
    size_t n = b->n;
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    if (!s) return nomem(r, NULL);
    out->t = JV_STR;
    out->u.s.p = s;
    out->u.s.n = n;
    return true;
}

/* ------------------------------------------------------------ values */

static jv mk_bool(bool b) {
    jv v = {.t = JV_BOOL};
    v.u.b = b;
    return v;
}
static jv mk_int(int64_t i) {
    jv v = {.t = JV_INT};
    v.u.i = i;
    return v;
}
static jv mk_float(double f) {
    jv v = {.t = JV_FLOAT};
    v.u.f = f;
    return v;
}
static jv mk_str(const char *p, size_t n) {
    jv v = {.t = JV_STR};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static bool mk_strcpy(R *r, const char *p, size_t n, jv *out) {
    char *s = jn_strndup(&r->a, p, n);
    if (!s) return nomem(r, NULL);
    *out = mk_str(s, n);
    return true;
}
static jv mk_undef(const char *name) {
    jv v = {.t = JV_UNDEF};
    v.uname = name;
    return v;
}

static jv_list *new_list(R *r, size_t cap) {
    jv_list *l = jn_alloc(&r->a, sizeof *l);
    if (!l) return NULL;
    if (cap) {
        l->v = jn_alloc(&r->a, cap * sizeof *l->v);
        if (!l->v) return NULL;
        l->cap = cap;
    }
    return l;
}
static bool list_push(R *r, jv_list *l, jv v) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        jv *nv = jn_alloc(&r->a, nc * sizeof *nv);
        if (!nv) return nomem(r, NULL);
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = v;
    return true;
}
static jv mk_list(jv_list *l) {
    jv v = {.t = JV_LIST};
    v.u.l = l;
    return v;
}
static jv mk_dict(jv_dict *d) {
    jv v = {.t = JV_DICT};
    v.u.d = d;
    return v;
}

static bool is_num(jv v) { return v.t == JV_BOOL || v.t == JV_INT || v.t == JV_FLOAT; }
static double num_f(jv v) {
    return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b;
}
static int64_t num_i(jv v) { return v.t == JV_INT ? v.u.i : v.t == JV_BOOL ? v.u.b : 0; }

static bool jv_eq(jv a, jv b);

static bool str_eq(jv a, const char *s, size_t n) {
    return a.t == JV_STR && a.u.s.n == n && !memcmp(a.u.s.p, s, n);
}

/* Hash consistent with jv_eq for hashable keys (1 == 1.0 == True). */
static bool key_hash(jv k, uint64_t *h, int depth) {
    uint64_t x = 1469598103934665603ull;
    switch (k.t) {
    case JV_STR:
        for (size_t i = 0; i < k.u.s.n; i++) x = (x ^ (unsigned char)k.u.s.p[i]) * 1099511628211ull;
        *h = x;
        return true;
    case JV_BOOL:
    case JV_INT: *h = (uint64_t)num_i(k) * 0x9e3779b97f4a7c15ull; return true;
    case JV_FLOAT:
        if (k.u.f == floor(k.u.f) && fabs(k.u.f) < 9.2e18) {
            *h = (uint64_t)(int64_t)k.u.f * 0x9e3779b97f4a7c15ull;
        } else {
            uint64_t bits;
            memcpy(&bits, &k.u.f, sizeof bits);
            *h = bits * 0x9e3779b97f4a7c15ull;
        }
        return true;
    case JV_NONE: *h = 0x1234567ull; return true;
    case JV_UNDEF: *h = 0x7654321ull; return true;
    case JV_LIST:
        if (!k.u.l->tuple || k.u.l->view || depth > 8) return false;
        for (size_t i = 0; i < k.u.l->n; i++) {
            uint64_t e;
            if (!key_hash(k.u.l->v[i], &e, depth + 1)) return false;
            x = (x ^ e) * 1099511628211ull;
        }
        *h = x;
        return true;
    default: return false;
    }
}

#define DICT_INDEX_MIN 16

static jv *dict_find(const jv_dict *d, jv key) {
    uint64_t h;
    if (d->hidx && key_hash(key, &h, 0)) {
        size_t mask = d->hcap - 1;
        for (size_t i = h & mask;; i = (i + 1) & mask) {
            uint32_t e = d->hidx[i];
            if (!e) return NULL;
            if (jv_eq(d->k[e - 1], key)) return &d->v[e - 1];
        }
    }
    WORK(d->n);
    for (size_t i = 0; i < d->n; i++)
        if (jv_eq(d->k[i], key)) return &d->v[i];
    return NULL;
}
static jv *dict_find_s(const jv_dict *d, const char *s, size_t n) {
    if (d->hidx) return dict_find(d, mk_str(s, n));
    for (size_t i = 0; i < d->n; i++)
        if (str_eq(d->k[i], s, n)) return &d->v[i];
    return NULL;
}
static void index_put(jv_dict *d, size_t entry, uint64_t h) {
    size_t mask = d->hcap - 1;
    size_t i = h & mask;
    while (d->hidx[i]) i = (i + 1) & mask;
    d->hidx[i] = (uint32_t)entry + 1;
}
static bool dict_reindex(R *r, jv_dict *d) {
    size_t cap = 64;
    while (cap < d->n * 2 + 2) cap *= 2;
    uint32_t *idx = jn_alloc(&r->a, cap * sizeof *idx);
    if (!idx) return nomem(r, NULL);
    d->hidx = idx;
    d->hcap = cap;
    for (size_t i = 0; i < d->n; i++) {
        uint64_t h;
        if (!key_hash(d->k[i], &h, 0)) {
            d->hidx = NULL;
            d->nohash = true;
            return true;
        }
        index_put(d, i, h);
    }
    return true;
}
/* appends a key known not to be present */
static bool dict_append(R *r, jv_dict *d, jv key, jv val) {
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 8;
        if (nc > UINT32_MAX - 1) return fail(r, NULL, "dict too large");
        jv *nk = jn_alloc(&r->a, nc * sizeof *nk), *nv = jn_alloc(&r->a, nc * sizeof *nv);
        if (!nk || !nv) return nomem(r, NULL);
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->k = nk;
        d->v = nv;
        d->cap = nc;
    }
    d->k[d->n] = key;
    d->v[d->n] = val;
    d->n++;
    if (d->nohash) return true;
    if (d->hidx && d->n * 2 < d->hcap) {
        uint64_t h;
        if (!key_hash(key, &h, 0)) {
            d->hidx = NULL;
            d->nohash = true;
            return true;
        }
        index_put(d, d->n - 1, h);
        return true;
    }
    if (d->n >= DICT_INDEX_MIN) return dict_reindex(r, d);
    return true;
}
static bool dict_set(R *r, jv_dict *d, jv key, jv val) {
    jv *slot = dict_find(d, key);
    if (slot) {
        *slot = val;
        return true;
    }
    return dict_append(r, d, key, val);
}
static bool dict_set_s(R *r, jv_dict *d, const char *s, jv val) {
    return dict_set(r, d, mk_str(s, strlen(s)), val);
}

static bool truthy(jv v) {
    switch (v.t) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return v.u.s.n != 0;
    case JV_LIST: return v.u.l->view == JL_GEN || v.u.l->n != 0;
    case JV_DICT: return v.u.d->ns || v.u.d->n != 0;
    default: return true;
    }
}

static bool jv_eq(jv a, jv b) {
    if (is_num(a) && is_num(b)) {
        if (a.t == JV_FLOAT || b.t == JV_FLOAT) return num_f(a) == num_f(b);
        return num_i(a) == num_i(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return a.u.s.n == b.u.s.n && !memcmp(a.u.s.p, b.u.s.p, a.u.s.n);
    case JV_LIST:
        if (a.u.l->tuple != b.u.l->tuple || a.u.l->n != b.u.l->n) return false;
        WORK(a.u.l->n);
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_eq(a.u.l->v[i], b.u.l->v[i])) return false;
        return true;
    case JV_DICT:
        if (a.u.d == b.u.d) return true;
        if (a.u.d->ns || b.u.d->ns || a.u.d->n != b.u.d->n) return false;
        WORK(a.u.d->n);
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv *o = dict_find(b.u.d, a.u.d->k[i]);
            if (!o || !jv_eq(a.u.d->v[i], *o)) return false;
        }
        return true;
    case JV_MACRO:
    case JV_FUNC: return a.u.fn == b.u.fn;
    default: return false;
    }
}

static const char *type_name(jv v) {
    switch (v.t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST:
        switch (v.u.l->view) {
        case JL_KEYS: return "dict_keys";
        case JL_VALUES: return "dict_values";
        case JL_ITEMS: return "dict_items";
        case JL_GEN: return "generator";
        default: return v.u.l->tuple ? "tuple" : "list";
        }
    case JV_DICT: return v.u.d->ns ? "Namespace" : "dict";
    case JV_MACRO: return "Macro";
    default: return "builtin_function_or_method";
    }
}

static bool undef_err(R *r, const jn_node *n, jv v) {
    if (v.uname) return fail(r, n, "'%s' is undefined", v.uname);
    return fail(r, n, "undefined value used in an expression");
}

/* ------------------------------------------------------------ UTF-8 */

static size_t u8_dec(const char *s, size_t n, int32_t *cp) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &c);
    if (k <= 0) {
        *cp = (unsigned char)s[0];
        return 1;
    }
    *cp = c;
    return (size_t)k;
}
static size_t u8_enc(char *o, int32_t cp) {
    return (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)o);
}
static size_t u8_len(const char *s, size_t n) {
    size_t c = 0;
    WORK(n);
    for (size_t i = 0; i < n;) {
        int32_t cp;
        i += u8_dec(s + i, n - i, &cp);
        c++;
    }
    return c;
}
/* byte offsets of each code point (count+1 entries) */
static size_t *u8_offsets(R *r, const char *s, size_t n, size_t *count) {
    WORK(n);
    size_t c = u8_len(s, n);
    size_t *off = jn_alloc(&r->a, (c + 1) * sizeof *off);
    if (!off) return NULL;
    size_t i = 0, k = 0;
    while (i < n) {
        int32_t cp;
        off[k++] = i;
        i += u8_dec(s + i, n - i, &cp);
    }
    off[k] = n;
    *count = c;
    return off;
}

/* ----------------------------------------------------- str() / repr() */

static void float_repr(double f, char *buf, size_t cap) {
    if (isnan(f)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, cap, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        snprintf(buf, cap, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    char e[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, f);
        if (strtod(e, NULL) == f) break;
    }
    /* e = [-]d[.ddd]e[+-]XX */
    char digits[32];
    size_t nd = 0;
    const char *p = e;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    int exp = atoi(p + 1);
    char *o = buf;
    size_t left = cap;
#define OUT(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(o, left, __VA_ARGS__);                                                   \
        if (w_ > 0 && (size_t)w_ < left) {                                                         \
            o += w_;                                                                               \
            left -= (size_t)w_;                                                                    \
        }                                                                                          \
    } while (0)
    if (neg) OUT("-");
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            OUT("0.");
            for (int i = 0; i < -exp - 1; i++) OUT("0");
            OUT("%s", digits);
        } else {
            for (int i = 0; i <= exp; i++) OUT("%c", (size_t)i < nd ? digits[i] : '0');
            OUT(".");
            if ((size_t)exp + 1 < nd)
                OUT("%s", digits + exp + 1);
            else
                OUT("0");
        }
    } else {
        OUT("%c", digits[0]);
        if (nd > 1) OUT(".%s", digits + 1);
        OUT("e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
#undef OUT
}

static bool to_str_sb(R *r, jv v, sbuf *b);

static bool py_printable(int32_t cp) {
    if (cp == ' ') return true;
    if (cp < 0x20 || cp == 0x7f) return false;
    if (cp < 0x7f) return true;
    utf8proc_category_t c = utf8proc_category(cp);
    switch (c) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
    }
}

static bool repr_str(R *r, const char *s, size_t n, sbuf *b) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    if (!sb_putc(r, b, q)) return false;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t k = u8_dec(s + i, n - i, &cp);
        char tmp[16];
        if (cp == q || cp == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)cp;
            if (!sb_put(r, b, tmp, 2)) return false;
        } else if (cp == '\n') {
            if (!sb_puts(r, b, "\\n")) return false;
        } else if (cp == '\r') {
            if (!sb_puts(r, b, "\\r")) return false;
        } else if (cp == '\t') {
            if (!sb_puts(r, b, "\\t")) return false;
        } else if (!py_printable(cp)) {
            if (cp < 0x100)
                snprintf(tmp, sizeof tmp, "\\x%02x", (unsigned)cp);
            else if (cp < 0x10000)
                snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)cp);
            else
                snprintf(tmp, sizeof tmp, "\\U%08x", (unsigned)cp);
            if (!sb_puts(r, b, tmp)) return false;
        } else {
            if (!sb_put(r, b, s + i, k)) return false;
        }
        i += k;
    }
    return sb_putc(r, b, q);
}

static bool repr_sb(R *r, jv v, sbuf *b, int depth) {
    if (depth > 100) return fail(r, NULL, "value nested too deeply to print");
    switch (v.t) {
    case JV_STR:
        if (v.mk)
            return sb_puts(r, b, "Markup(") && repr_str(r, v.u.s.p, v.u.s.n, b) && sb_putc(r, b, ')');
        return repr_str(r, v.u.s.p, v.u.s.n, b);
    case JV_UNDEF: return sb_puts(r, b, "Undefined");
    case JV_LIST: {
        jv_list *l = v.u.l;
        if (l->view == JL_GEN) return sb_puts(r, b, "<generator object>");
        if (l->view && !sb_puts(r, b, type_name(v)) ) return false;
        if (l->view && !sb_putc(r, b, '(')) return false;
        if (!sb_putc(r, b, l->tuple ? '(' : '[')) return false;
        for (size_t i = 0; i < l->n; i++) {
            if (i && !sb_puts(r, b, ", ")) return false;
            if (!repr_sb(r, l->v[i], b, depth + 1)) return false;
        }
        if (l->tuple && l->n == 1 && !sb_putc(r, b, ',')) return false;
        if (!sb_putc(r, b, l->tuple ? ')' : ']')) return false;
        return l->view ? sb_putc(r, b, ')') : true;
    }
    case JV_DICT: {
        jv_dict *d = v.u.d;
        if (d->ns && !sb_puts(r, b, "<Namespace ")) return false;
        if (!sb_putc(r, b, '{')) return false;
        for (size_t i = 0; i < d->n; i++) {
            if (i && !sb_puts(r, b, ", ")) return false;
            if (!repr_sb(r, d->k[i], b, depth + 1) || !sb_puts(r, b, ": ") ||
                !repr_sb(r, d->v[i], b, depth + 1))
                return false;
        }
        if (!sb_putc(r, b, '}')) return false;
        return d->ns ? sb_putc(r, b, '>') : true;
    }
    default: return to_str_sb(r, v, b);
    }
}

static bool to_str_sb(R *r, jv v, sbuf *b) {
    char tmp[64];
    switch (v.t) {
    case JV_UNDEF: return true;
    case JV_NONE: return sb_puts(r, b, "None");
    case JV_BOOL: return sb_puts(r, b, v.u.b ? "True" : "False");
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i); return sb_puts(r, b, tmp);
    case JV_FLOAT: float_repr(v.u.f, tmp, sizeof tmp); return sb_puts(r, b, tmp);
    case JV_STR: return sb_put(r, b, v.u.s.p, v.u.s.n);
    case JV_LIST:
    case JV_DICT: return repr_sb(r, v, b, 0);
    case JV_MACRO: return sb_puts(r, b, "<Macro>");
    case JV_FUNC: return sb_puts(r, b, "<built-in function>");
    }
    return true;
}

/* str(v) as a string value (no copy for strings) */
static bool to_str(R *r, jv v, jv *out) {
    if (v.t == JV_STR) {
        *out = v;
        return true;
    }
    if (v.t == JV_UNDEF) {
        *out = mk_str("", 0);
        return true;
    }
    sbuf b = {0};
    if (!to_str_sb(r, v, &b)) {
        free(b.p);
        return false;
    }
    return sb_finish(r, &b, out);
}

/* ---------------------------------------------------------- tojson */

typedef struct json_opts {
    const char *indent; /* NULL = compact-ish */
    size_t indent_n;
    const char *item_sep, *key_sep;
    bool sort_keys;
    bool ensure_ascii;
} json_opts;

static bool json_str(R *r, const char *s, size_t n, sbuf *b, bool ascii) {
    if (!sb_putc(r, b, '"')) return false;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        char tmp[16];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            if (!sb_put(r, b, tmp, 2)) return false;
            i++;
        } else if (c < 0x20) {
            const char *e = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                          : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
            if (e) {
                if (!sb_puts(r, b, e)) return false;
            } else {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                if (!sb_puts(r, b, tmp)) return false;
            }
            i++;
        } else if (c >= 0x80 && ascii) {
            int32_t cp;
            size_t k = u8_dec(s + i, n - i, &cp);
            if (cp >= 0x10000) {
                int32_t v = cp - 0x10000;
                snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
            } else {
                snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)cp);
            }
            if (!sb_puts(r, b, tmp)) return false;
            i += k;
        } else {
            size_t j = i;
            while (j < n && (unsigned char)s[j] >= 0x20 && s[j] != '"' && s[j] != '\\' &&
                   !(ascii && (unsigned char)s[j] >= 0x80))
                j++;
            if (!sb_put(r, b, s + i, j - i)) return false;
            i = j;
        }
    }
    return sb_putc(r, b, '"');
}

static bool json_newline(R *r, const json_opts *o, sbuf *b, int level) {
    if (!o->indent) return true;
    if (!sb_putc(r, b, '\n')) return false;
    for (int i = 0; i < level; i++)
        if (!sb_put(r, b, o->indent, o->indent_n)) return false;
    return true;
}

static int cmp_values(R *r, jv a, jv b, bool *ok);

static bool json_dump(R *r, const jn_node *n, jv v, const json_opts *o, sbuf *b, int level) {
    if (level > 100) return fail(r, n, "tojson: value nested too deeply");
    char tmp[64];
    switch (v.t) {
    case JV_NONE: return sb_puts(r, b, "null");
    case JV_BOOL: return sb_puts(r, b, v.u.b ? "true" : "false");
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i); return sb_puts(r, b, tmp);
    case JV_FLOAT:
        if (isnan(v.u.f)) return sb_puts(r, b, "NaN");
        if (isinf(v.u.f)) return sb_puts(r, b, v.u.f < 0 ? "-Infinity" : "Infinity");
        float_repr(v.u.f, tmp, sizeof tmp);
        return sb_puts(r, b, tmp);
    case JV_STR: return json_str(r, v.u.s.p, v.u.s.n, b, o->ensure_ascii);
    case JV_LIST: {
        jv_list *l = v.u.l;
        if (l->view) return fail(r, n, "Object of type %s is not JSON serializable", type_name(v));
        if (!l->n) return sb_puts(r, b, "[]");
        if (!sb_putc(r, b, '[')) return false;
        for (size_t i = 0; i < l->n; i++) {
            if (i && !sb_puts(r, b, o->item_sep)) return false;
            if (!json_newline(r, o, b, level + 1)) return false;
            if (!json_dump(r, n, l->v[i], o, b, level + 1)) return false;
        }
        if (!json_newline(r, o, b, level)) return false;
        return sb_putc(r, b, ']');
    }
    case JV_DICT: {
        jv_dict *d = v.u.d;
        if (d->ns) return fail(r, n, "Object of type Namespace is not JSON serializable");
        if (!d->n) return sb_puts(r, b, "{}");
        size_t *order = jn_alloc(&r->a, d->n * sizeof *order);
        if (!order) return nomem(r, n);
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (o->sort_keys) {
            for (size_t i = 1; i < d->n; i++) { /* insertion sort: stable */
                size_t x = order[i], j = i;
                while (j > 0) {
                    bool ok = true;
                    int c = cmp_values(r, d->k[order[j - 1]], d->k[x], &ok);
                    if (!ok) return fail(r, n, "tojson: cannot sort keys of different types");
                    if (c <= 0) break;
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = x;
            }
        }
        if (!sb_putc(r, b, '{')) return false;
        for (size_t k = 0; k < d->n; k++) {
            size_t i = order[k];
            if (k && !sb_puts(r, b, o->item_sep)) return false;
            if (!json_newline(r, o, b, level + 1)) return false;
            jv key = d->k[i];
            if (key.t == JV_STR) {
                if (!json_str(r, key.u.s.p, key.u.s.n, b, o->ensure_ascii)) return false;
            } else if (key.t == JV_INT || key.t == JV_BOOL || key.t == JV_NONE ||
                       key.t == JV_FLOAT) {
                sbuf kb = {0};
                bool okk = key.t == JV_BOOL   ? sb_puts(r, &kb, key.u.b ? "true" : "false")
                           : key.t == JV_NONE ? sb_puts(r, &kb, "null")
                                              : json_dump(r, n, key, o, &kb, level);
                if (okk) okk = json_str(r, kb.p ? kb.p : "", kb.n, b, o->ensure_ascii);
                free(kb.p);
                if (!okk) return false;
            } else {
                return fail(r, n, "keys must be str, int, float, bool or None, not %s",
                            type_name(key));
            }
            if (!sb_puts(r, b, o->key_sep)) return false;
            if (!json_dump(r, n, d->v[i], o, b, level + 1)) return false;
        }
        if (!json_newline(r, o, b, level)) return false;
        return sb_putc(r, b, '}');
    }
    default: return fail(r, n, "Object of type %s is not JSON serializable", type_name(v));
    }
}

/* ----------------------------------------------------- JSON -> value */

static bool from_json(R *r, const json_t *j, jv *out, int depth) {
    if (depth > 200) return fail(r, NULL, "context nested too deeply");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        jv_dict *d = jn_alloc(&r->a, sizeof *d);
        if (!d) return nomem(r, NULL);
        const char *k;
        json_t *v;
        void *it = json_object_iter((json_t *)j);
        for (; it; it = json_object_iter_next((json_t *)j, it)) {
            k = json_object_iter_key(it);
            v = json_object_iter_value(it);
            jv val;
            if (!from_json(r, v, &val, depth + 1)) return false;
            size_t kl = strlen(k);
#if JANSSON_VERSION_HEX >= 0x020e00
            kl = json_object_iter_key_len(it);
#endif
            if (!dict_append(r, d, mk_str(k, kl), val)) return false;
        }
        *out = mk_dict(d);
        return true;
    }
    case JSON_ARRAY: {
        jv_list *l = new_list(r, json_array_size(j));
        if (!l) return nomem(r, NULL);
        for (size_t i = 0; i < json_array_size(j); i++) {
            jv val;
            if (!from_json(r, json_array_get(j, i), &val, depth + 1)) return false;
            l->v[l->n++] = val;
        }
        *out = mk_list(l);
        return true;
    }
    case JSON_STRING: *out = mk_str(json_string_value(j), json_string_length(j)); return true;
    case JSON_INTEGER: *out = mk_int((int64_t)json_integer_value(j)); return true;
    case JSON_REAL: *out = mk_float(json_real_value(j)); return true;
    case JSON_TRUE: *out = mk_bool(true); return true;
    case JSON_FALSE: *out = mk_bool(false); return true;
    default: *out = NONE; return true;
    }
}

/* ---------------------------------------------------------- compare */

/* <0, 0, >0; *ok=false when the types don't order */
static int cmp_values(R *r, jv a, jv b, bool *ok) {
    (void)r;
    if (is_num(a) && is_num(b)) {
        if (a.t == JV_FLOAT || b.t == JV_FLOAT) {
            double x = num_f(a), y = num_f(b);
            return x < y ? -1 : x > y ? 1 : 0;
        }
        int64_t x = num_i(a), y = num_i(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t m = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int c = memcmp(a.u.s.p, b.u.s.p, m);
        if (c) return c;
        return a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n ? 1 : 0;
    }
    if (a.t == JV_LIST && b.t == JV_LIST) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            if (jv_eq(a.u.l->v[i], b.u.l->v[i])) continue;
            return cmp_values(r, a.u.l->v[i], b.u.l->v[i], ok);
        }
        return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n ? 1 : 0;
    }
    *ok = false;
    return 0;
}

/* --------------------------------------------------------- iteration */

/* list(v): the items iterating v yields; strings give characters, dicts keys */
static bool iter_list(R *r, const jn_node *n, jv v, jv_list **out) {
    switch (v.t) {
    case JV_UNDEF: *out = new_list(r, 0); return *out ? true : nomem(r, n);
    case JV_LIST:
        if (v.u.l->lazy_err) return fail(r, n, "%s", v.u.l->lazy_err);
        *out = v.u.l;
        return true;
    case JV_DICT: {
        if (v.u.d->ns) return fail(r, n, "'Namespace' object is not iterable");
        jv_list *l = new_list(r, v.u.d->n);
        if (!l) return nomem(r, n);
        for (size_t i = 0; i < v.u.d->n; i++) l->v[l->n++] = v.u.d->k[i];
        *out = l;
        return true;
    }
    case JV_STR: {
        jv_list *l = new_list(r, 0);
        if (!l) return nomem(r, n);
        for (size_t i = 0; i < v.u.s.n;) {
            int32_t cp;
            size_t k = u8_dec(v.u.s.p + i, v.u.s.n - i, &cp);
            if (!list_push(r, l, mk_str(v.u.s.p + i, k))) return false;
            i += k;
        }
        *out = l;
        return true;
    }
    default: return fail(r, n, "'%s' object is not iterable", type_name(v));
    }
}

/* ------------------------------------------------------------ scopes */

static jv *lookup(frame *f, const char *name, size_t n) {
    for (; f; f = f->parent) {
        jv *v = dict_find_s(&f->vars, name, n);
        if (v) return v;
    }
    return NULL;
}

static frame *new_frame(R *r, frame *parent) {
    frame *f = jn_alloc(&r->a, sizeof *f);
    if (f) f->parent = parent;
    return f;
}

/* ------------------------------------------------------------- eval */

static bool eval(R *r, frame *f, const jn_node *n, jv *out);
static int exec(R *r, frame *f, const jn_node *n);
static bool call_value(R *r, frame *f, const jn_node *n, jv callee, args *a, jv *out);
static bool apply_filter(R *r, frame *f, const jn_node *n, const char *name, jv v, args *a,
                         jv *out);
static bool apply_test(R *r, frame *f, const jn_node *n, const char *name, jv v, args *a,
                       bool *out);

static bool eval_args(R *r, frame *f, const jn_node *n, args *a) {
    memset(a, 0, sizeof *a);
    if (!n->nkids) return true;
    a->pos = jn_alloc(&r->a, n->nkids * sizeof *a->pos);
    a->kv = jn_alloc(&r->a, n->nkids * sizeof *a->kv);
    a->kn = jn_alloc(&r->a, n->nkids * sizeof *a->kn);
    if (!a->pos || !a->kv || !a->kn) return nomem(r, n);
    for (size_t i = 0; i < n->nkids; i++) {
        const jn_node *k = n->kids[i];
        if (k->kind == JN_KWARG) {
            if (!eval(r, f, k->a, &a->kv[a->nk])) return false;
            a->kn[a->nk++] = k->str;
        } else {
            if (!eval(r, f, k, &a->pos[a->np++])) return false;
        }
    }
    return true;
}

/* positional i or keyword name */
static bool get_arg(const args *a, size_t i, const char *name, jv *out) {
    if (a) {
        if (i < a->np) {
            *out = a->pos[i];
            return true;
        }
        for (size_t k = 0; k < a->nk; k++)
            if (name && !strcmp(a->kn[k], name)) {
                *out = a->kv[k];
                return true;
            }
    }
    return false;
}

static const char *cstr(R *r, jv s) {
    /* NUL-terminated copy of a string value */
    char *p = jn_strndup(&r->a, s.u.s.p, s.u.s.n);
    return p;
}

/* attribute lookup (getattr then getitem), as jinja2's Environment.getattr */
static const char *const STR_METHODS[] = {
    "startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "replace", "upper",
    "lower", "title", "capitalize", "find", "rfind", "count", "format", "join", "isdigit",
    "isalpha", "isalnum", "isspace", "isupper", "islower", "splitlines", "index", "zfill",
    "removeprefix", "removesuffix", "casefold", "swapcase", "center", "ljust", "rjust", NULL};
static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", NULL};
static const char *const LIST_METHODS[] = {"index", "count", NULL};

static bool in_names(const char *const *names, const char *s, size_t n) {
    for (int i = 0; names[i]; i++)
        if (strlen(names[i]) == n && !memcmp(names[i], s, n)) return true;
    return false;
}

static bool bind_method(R *r, jv self, const char *name, jv *out) {
    jv_func *fn = jn_alloc(&r->a, sizeof *fn);
    if (!fn) return nomem(r, NULL);
    fn->kind = FN_METHOD;
    fn->name = name;
    fn->self = self;
    out->t = JV_FUNC;
    out->u.fn = fn;
    out->uname = NULL;
    return true;
}

static bool get_index(R *r, const jn_node *n, jv obj, jv key, jv *out);

static bool get_attr(R *r, const jn_node *n, jv obj, const char *name, size_t nl, jv *out) {
    switch (obj.t) {
    case JV_UNDEF: return undef_err(r, n, obj);
    case JV_DICT:
        if (!obj.u.d->ns && in_names(DICT_METHODS, name, nl)) return bind_method(r, obj, name, out);
        {
            jv *v = dict_find_s(obj.u.d, name, nl);
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

static bool get_index(R *r, const jn_node *n, jv obj, jv key, jv *out) {
    switch (obj.t) {
    case JV_UNDEF: return undef_err(r, n, obj);
    case JV_DICT: {
        jv *v = dict_find(obj.u.d, key);
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
            for (size_t i = 0; i < obj.u.s.n && ascii; i++) ascii = !((unsigned char)obj.u.s.p[i] & 0x80);
            if (ascii) {
                int64_t i = num_i(key), len = (int64_t)obj.u.s.n;
                if (i < 0) i += len;
                *out = i >= 0 && i < len ? mk_str(obj.u.s.p + i, 1) : UNDEF;
                return true;
            }
            size_t cnt;
            size_t *off = u8_offsets(r, obj.u.s.p, obj.u.s.n, &cnt);
            if (!off) return nomem(r, n);
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
        const char *nm = cstr(r, key);
        if (!nm) return nomem(r, n);
        if (obj.t == JV_DICT) {
            *out = mk_undef(nm);
            return true;
        }
        return get_attr(r, n, obj, nm, key.u.s.n, out);
    }
    *out = UNDEF;
    return true;
}

static bool slice_indices(R *r, const jn_node *n, int64_t len, jv vs, jv ve, jv vst,
                          int64_t *start, int64_t *stop, int64_t *stepv) {
    int64_t st = 1;
    if (vst.t != JV_NONE && vst.t != JV_UNDEF) {
        if (vst.t != JV_INT) return fail(r, n, "slice indices must be integers");
        st = vst.u.i;
        if (st == 0) return fail(r, n, "slice step cannot be zero");
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
        if (vs.t != JV_INT && vs.t != JV_BOOL) return fail(r, n, "slice indices must be integers");
        s = num_i(vs);
        if (s < 0) {
            s += len;
            if (s < lo) s = lo;
        } else if (s > hi) {
            s = hi;
        }
    }
    if (ve.t != JV_NONE && ve.t != JV_UNDEF) {
        if (ve.t != JV_INT && ve.t != JV_BOOL) return fail(r, n, "slice indices must be integers");
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

static bool do_slice(R *r, const jn_node *n, jv obj, jv vs, jv ve, jv vst, jv *out) {
    if (obj.t == JV_UNDEF) return undef_err(r, n, obj);
    if ((obj.t != JV_LIST && obj.t != JV_STR) || (obj.t == JV_LIST && obj.u.l->view))
        return fail(r, n, "'%s' object is not subscriptable", type_name(obj));
    size_t cnt;
    size_t *off = NULL;
    if (obj.t == JV_STR) {
        off = u8_offsets(r, obj.u.s.p, obj.u.s.n, &cnt);
        if (!off) return nomem(r, n);
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
            if (!sb_put(r, &b, obj.u.s.p + off[i], off[i + 1] - off[i])) {
                free(b.p);
                return false;
            }
        return sb_finish(r, &b, out);
    }
    jv_list *l = new_list(r, 0);
    if (!l) return nomem(r, n);
    l->tuple = obj.u.l->tuple;
    for (int64_t i = s; st > 0 ? i < e : i > e; i += st)
        if (!list_push(r, l, obj.u.l->v[i])) return false;
    *out = mk_list(l);
    return true;
}

static bool concat_str(R *r, jv a, jv b, jv *out) {
    size_t n = a.u.s.n + b.u.s.n;
    if (n > r->lim.max_output) return fail(r, NULL, "string longer than %zu bytes", r->lim.max_output);
    char *p = jn_alloc(&r->a, n + 1);
    if (!p) return nomem(r, NULL);
    memcpy(p, a.u.s.p, a.u.s.n);
    memcpy(p + a.u.s.n, b.u.s.p, b.u.s.n);
    *out = mk_str(p, n);
    return true;
}

static bool html_escape(R *r, jv s, jv *out);

static bool arith(R *r, const jn_node *n, const char *op, jv a, jv b, jv *out) {
    if (a.t == JV_UNDEF) return undef_err(r, n, a);
    if (b.t == JV_UNDEF) return undef_err(r, n, b);
    char c = op[0];
    bool dbl = op[1] != '\0';
    if (c == '+' && a.t == JV_STR && b.t == JV_STR) {
        /* Markup + str escapes the str (markupsafe) */
        if (a.mk != b.mk && !html_escape(r, a.mk ? b : a, a.mk ? &b : &a)) return false;
        if (!concat_str(r, a, b, out)) return false;
        out->mk = a.mk || b.mk;
        return true;
    }
    if (c == '+' && a.t == JV_LIST && b.t == JV_LIST && a.u.l->tuple == b.u.l->tuple &&
        !a.u.l->view && !b.u.l->view) {
        jv_list *l = new_list(r, a.u.l->n + b.u.l->n);
        if (!l) return nomem(r, n);
        l->tuple = a.u.l->tuple;
        for (size_t i = 0; i < a.u.l->n; i++) l->v[l->n++] = a.u.l->v[i];
        for (size_t i = 0; i < b.u.l->n; i++) l->v[l->n++] = b.u.l->v[i];
        *out = mk_list(l);
        return true;
    }
    if (c == '*' && !dbl && ((a.t == JV_STR || (a.t == JV_LIST && !a.u.l->view)) &&
                             (b.t == JV_INT || b.t == JV_BOOL))) {
        int64_t k = num_i(b);
        if (k < 0) k = 0;
        if (a.t == JV_STR) {
            if (a.u.s.n && (uint64_t)k > r->lim.max_output / a.u.s.n)
                return fail(r, n, "string longer than %zu bytes", r->lim.max_output);
            sbuf sb = {0};
            for (int64_t i = 0; i < k; i++)
                if (!sb_put(r, &sb, a.u.s.p, a.u.s.n)) {
                    free(sb.p);
                    return false;
                }
            return sb_finish(r, &sb, out);
        }
        if (a.u.l->n && (uint64_t)k > (r->lim.max_memory / 32) / a.u.l->n)
            return fail(r, n, "list too long");
        jv_list *l = new_list(r, 0);
        if (!l) return nomem(r, n);
        l->tuple = a.u.l->tuple;
        for (int64_t i = 0; i < k; i++)
            for (size_t j = 0; j < a.u.l->n; j++)
                if (!list_push(r, l, a.u.l->v[j])) return false;
        *out = mk_list(l);
        return true;
    }
    if (c == '*' && !dbl && (b.t == JV_STR || (b.t == JV_LIST && !b.u.l->view)) &&
        (a.t == JV_INT || a.t == JV_BOOL))
        return arith(r, n, op, b, a, out);
    if (!is_num(a) || !is_num(b))
        return fail(r, n, "unsupported operand type(s) for %s: '%s' and '%s'", op, type_name(a),
                    type_name(b));
    bool fl = a.t == JV_FLOAT || b.t == JV_FLOAT;
    if (c == '/' && !dbl) {
        if (num_f(b) == 0) return fail(r, n, "division by zero");
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
                if (ovf) return fail(r, n, "integer overflow");
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
            if (y == 0) return fail(r, n, "division by zero");
            z = floor(x / y);
            break;
        case '%':
            if (y == 0) return fail(r, n, "modulo by zero");
            z = fmod(x, y);
            if (z != 0 && ((z < 0) != (y < 0))) z += y;
            break;
        default: return fail(r, n, "bad operator");
        }
        *out = mk_float(z);
        return true;
    }
    int64_t x = num_i(a), y = num_i(b), z;
    switch (c) {
    case '+':
        if (__builtin_add_overflow(x, y, &z)) return fail(r, n, "integer overflow");
        break;
    case '-':
        if (__builtin_sub_overflow(x, y, &z)) return fail(r, n, "integer overflow");
        break;
    case '*':
        if (__builtin_mul_overflow(x, y, &z)) return fail(r, n, "integer overflow");
        break;
    case '/':
    case '%':
        if (y == 0) return fail(r, n, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) return fail(r, n, "integer overflow");
        if (c == '/') {
            z = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) z--;
        } else {
            z = x % y;
            if (z != 0 && ((z < 0) != (y < 0))) z += y;
        }
        break;
    default: return fail(r, n, "bad operator");
    }
    *out = mk_int(z);
    return true;
}

/* "%s" % args (printf-style, the common conversions) */
static bool percent_format(R *r, const jn_node *n, jv fmt, jv argv, jv *out) {
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
            fail(r, n, "incomplete format");
            goto err;
        }
        if (s[i] == '%') {
            if (!sb_putc(r, &b, '%')) goto err;
            continue;
        }
        char spec[32];
        size_t k = 0;
        spec[k++] = '%';
        while (i < len && strchr("-+ 0#.0123456789", s[i]) && k < 20) spec[k++] = s[i++];
        if (i >= len) {
            fail(r, n, "incomplete format");
            goto err;
        }
        char conv = s[i];
        if (ai >= al->n) {
            fail(r, n, "not enough arguments for format string");
            goto err;
        }
        jv a = al->v[ai++];
        char tmp[512];
        if ((conv == 's' || conv == 'r') && fmt.mk) {
            jv sa;
            if (conv == 'r') {
                sbuf rb = {0};
                if (!repr_sb(r, a, &rb, 0) || !sb_finish(r, &rb, &sa)) {
                    free(rb.p);
                    goto err;
                }
            } else if (!to_str(r, a, &sa)) {
                goto err;
            }
            if (!html_escape(r, sa, &sa) || !sb_put(r, &b, sa.u.s.p, sa.u.s.n)) goto err;
        } else if (conv == 's' || conv == 'r') {
            if (conv == 'r' ? !repr_sb(r, a, &b, 0) : !to_str_sb(r, a, &b)) goto err;
        } else if (conv == 'd' || conv == 'i') {
            if (!is_num(a)) {
                fail(r, n, "%%d format: a number is required");
                goto err;
            }
            spec[k++] = 'l';
            spec[k++] = 'l';
            spec[k++] = 'd';
            spec[k] = '\0';
            snprintf(tmp, sizeof tmp, spec, (long long)(a.t == JV_FLOAT ? (int64_t)a.u.f : num_i(a)));
            if (!sb_puts(r, &b, tmp)) goto err;
        } else if (strchr("feEgGxXo", conv)) {
            if (!is_num(a)) {
                fail(r, n, "format: a number is required");
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
            fail(r, n, "unsupported format character '%c'", conv);
            goto err;
        }
    }
    if (ai < al->n && !(argv.t == JV_DICT && !argv.u.d->ns)) {
        fail(r, n, "not all arguments converted during string formatting");
        goto err;
    }
    if (!sb_finish(r, &b, out)) return false;
    out->mk = fmt.mk;
    return true;
err:
    free(b.p);
    return false;
}

static bool eval_cmp(R *r, const jn_node *n, const char *op, jv a, jv b, bool *res) {
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
                return fail(r, n, "'in <string>' requires string as left operand, not %s",
                            type_name(a));
            WORK(b.u.s.n);
            found = a.u.s.n == 0 || (a.u.s.n <= b.u.s.n &&
                                     memmem(b.u.s.p, b.u.s.n, a.u.s.p, a.u.s.n) != NULL);
        } else if (b.t == JV_LIST) {
            WORK(b.u.l->n);
            for (size_t i = 0; i < b.u.l->n && !found; i++) found = jv_eq(a, b.u.l->v[i]);
        } else if (b.t == JV_DICT) {
            found = dict_find(b.u.d, a) != NULL;
        } else if (b.t == JV_UNDEF) {
            found = false;
        } else {
            return fail(r, n, "argument of type '%s' is not iterable", type_name(b));
        }
        *res = op[0] == 'i' ? found : !found;
        return true;
    }
    if (a.t == JV_UNDEF) return undef_err(r, n, a);
    if (b.t == JV_UNDEF) return undef_err(r, n, b);
    bool ok = true;
    int c = cmp_values(r, a, b, &ok);
    if (!ok)
        return fail(r, n, "'%s' not supported between instances of '%s' and '%s'", op,
                    type_name(a), type_name(b));
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

static bool eval(R *r, frame *f, const jn_node *n, jv *out) {
    if (!step(r, n)) return false;
    if (++r->depth > r->lim.max_depth) {
        r->depth--;
        return fail(r, n, "template recursion deeper than %d", r->lim.max_depth);
    }
    bool ok = true;
    switch (n->kind) {
    case JN_CONST:
        switch (n->ck) {
        case JC_NONE: *out = NONE; break;
        case JC_BOOL: *out = mk_bool(n->i != 0); break;
        case JC_INT: *out = mk_int(n->i); break;
        case JC_FLOAT: *out = mk_float(n->f); break;
        case JC_STR: *out = mk_str(n->str, n->slen); break;
        }
        break;
    case JN_NAME: {
        jv *v = lookup(f, n->str, n->slen);
        *out = v ? *v : mk_undef(n->str);
        break;
    }
    case JN_LIST:
    case JN_TUPLE: {
        jv_list *l = new_list(r, n->nkids);
        if (!l) {
            ok = nomem(r, n);
            break;
        }
        l->tuple = n->kind == JN_TUPLE;
        for (size_t i = 0; i < n->nkids && ok; i++) ok = eval(r, f, n->kids[i], &l->v[l->n++]);
        *out = mk_list(l);
        break;
    }
    case JN_DICT: {
        jv_dict *d = jn_alloc(&r->a, sizeof *d);
        if (!d) {
            ok = nomem(r, n);
            break;
        }
        for (size_t i = 0; i + 1 < n->nkids && ok; i += 2) {
            jv k, v;
            ok = eval(r, f, n->kids[i], &k) && eval(r, f, n->kids[i + 1], &v);
            if (ok && (k.t == JV_LIST && !k.u.l->tuple)) ok = fail(r, n, "unhashable type: 'list'");
            if (ok && k.t == JV_DICT) ok = fail(r, n, "unhashable type: 'dict'");
            if (ok) ok = dict_set(r, d, k, v);
        }
        *out = mk_dict(d);
        break;
    }
    case JN_ATTR: {
        jv obj;
        ok = eval(r, f, n->a, &obj) && get_attr(r, n, obj, n->str, n->slen, out);
        break;
    }
    case JN_ITEM: {
        jv obj, key;
        ok = eval(r, f, n->a, &obj) && eval(r, f, n->b, &key) && get_index(r, n, obj, key, out);
        if (ok && obj.t == JV_STR && out->t == JV_STR) out->mk = obj.mk;
        break;
    }
    case JN_SLICE: {
        jv obj, s = NONE, e = NONE, st = NONE;
        ok = eval(r, f, n->a, &obj);
        if (ok && n->b) ok = eval(r, f, n->b, &s);
        if (ok && n->c) ok = eval(r, f, n->c, &e);
        if (ok && n->d) ok = eval(r, f, n->d, &st);
        if (ok && n->a->kind == JN_CONST && obj.t != JV_STR) {
            *out = UNDEF; /* Jinja folds a constant's failed slice to Undefined */
            break;
        }
        if (ok) ok = do_slice(r, n, obj, s, e, st, out);
        if (ok && obj.t == JV_STR && out->t == JV_STR) out->mk = obj.mk;
        break;
    }
    case JN_CALL: {
        jv callee;
        args a;
        ok = eval(r, f, n->a, &callee) && eval_args(r, f, n, &a) &&
             call_value(r, f, n, callee, &a, out);
        break;
    }
    case JN_FILTER: {
        jv v;
        args a;
        ok = eval(r, f, n->a, &v) && eval_args(r, f, n, &a);
        if (ok) {
            const char *name = n->str;
            ok = apply_filter(r, f, n, name, v, &a, out);
        }
        break;
    }
    case JN_TEST: {
        jv v;
        args a;
        bool res = false;
        ok = eval(r, f, n->a, &v) && eval_args(r, f, n, &a) &&
             apply_test(r, f, n, n->str, v, &a, &res);
        *out = mk_bool(n->neg ? !res : res);
        break;
    }
    case JN_UNARY: {
        jv v;
        ok = eval(r, f, n->a, &v);
        if (!ok) break;
        if (v.t == JV_UNDEF) {
            ok = undef_err(r, n, v);
        } else if (!is_num(v)) {
            ok = fail(r, n, "bad operand type for unary %s: '%s'", n->str, type_name(v));
        } else if (n->str[0] == '-') {
            if (v.t == JV_FLOAT)
                *out = mk_float(-v.u.f);
            else if (num_i(v) == INT64_MIN)
                ok = fail(r, n, "integer overflow");
            else
                *out = mk_int(-num_i(v));
        } else {
            *out = v.t == JV_BOOL ? mk_int(v.u.b) : v;
        }
        break;
    }
    case JN_BINARY: {
        jv a, b;
        ok = eval(r, f, n->a, &a) && eval(r, f, n->b, &b);
        if (!ok) break;
        if (n->str[0] == '~') {
            jv sa, sb;
            ok = to_str(r, a, &sa) && to_str(r, b, &sb) && concat_str(r, sa, sb, out);
        } else if (n->str[0] == '%' && a.t == JV_STR) {
            ok = percent_format(r, n, a, b, out);
        } else {
            ok = arith(r, n, n->str, a, b, out);
        }
        break;
    }
    case JN_CMP: {
        jv left;
        ok = eval(r, f, n->a, &left);
        bool res = true;
        for (size_t i = 0; i < n->nkids && ok && res; i++) {
            jv right;
            ok = eval(r, f, n->kids[i]->a, &right) &&
                 eval_cmp(r, n, n->kids[i]->str, left, right, &res);
            left = right;
        }
        *out = mk_bool(res);
        break;
    }
    case JN_AND: {
        jv a;
        ok = eval(r, f, n->a, &a);
        if (ok) {
            if (!truthy(a))
                *out = a;
            else
                ok = eval(r, f, n->b, out);
        }
        break;
    }
    case JN_OR: {
        jv a;
        ok = eval(r, f, n->a, &a);
        if (ok) {
            if (truthy(a))
                *out = a;
            else
                ok = eval(r, f, n->b, out);
        }
        break;
    }
    case JN_NOT: {
        jv a;
        ok = eval(r, f, n->a, &a);
        *out = mk_bool(!truthy(a));
        break;
    }
    case JN_COND: {
        jv c;
        ok = eval(r, f, n->a, &c);
        if (ok) {
            if (truthy(c))
                ok = eval(r, f, n->b, out);
            else if (n->c)
                ok = eval(r, f, n->c, out);
            else
                *out = UNDEF;
        }
        break;
    }
    default: ok = fail(r, n, "cannot evaluate this node as an expression");
    }
    r->depth--;
    return ok && r->err.code == CI_OK;
}

/* --------------------------------------------------------- calls */

static bool render_body_capture(R *r, frame *f, const jn_node *body, jv *out) {
    sbuf cap = {0}, *saved = r->out;
    r->out = &cap;
    int x = exec(r, f, body);
    r->out = saved;
    if (x == X_ERR) {
        free(cap.p);
        return false;
    }
    return sb_finish(r, &cap, out);
}

static bool call_macro(R *r, const jn_node *n, jv_func *fn, args *a, jv *out) {
    const jn_node *m = fn->node;
    if (a->np > m->nkids)
        return fail(r, n, "macro '%s' takes not more than %zu argument(s)", m->str, m->nkids);
    if (r->depth + 8 > r->lim.max_depth)
        return fail(r, n, "template recursion deeper than %d", r->lim.max_depth);
    frame *mf = new_frame(r, fn->closure);
    if (!mf) return nomem(r, n);
    for (size_t k = 0; k < a->nk; k++) {
        bool known = false;
        for (size_t i = 0; i < m->nkids; i++)
            if (!strcmp(m->kids[i]->str, a->kn[k])) known = true;
        if (!known && strcmp(a->kn[k], "caller"))
            return fail(r, n, "macro '%s' has no argument '%s'", m->str, a->kn[k]);
    }
    for (size_t i = 0; i < m->nkids; i++) {
        const jn_node *p = m->kids[i];
        jv v;
        if (i < a->np) {
            v = a->pos[i];
        } else {
            bool found = false;
            for (size_t k = 0; k < a->nk; k++)
                if (!strcmp(a->kn[k], p->str)) {
                    if (found) return fail(r, n, "duplicate argument '%s'", p->str);
                    v = a->kv[k];
                    found = true;
                }
            if (!found) {
                if (p->a) {
                    if (!eval(r, mf, p->a, &v)) return false;
                } else {
                    v = mk_undef(p->str);
                }
            }
        }
        if (!dict_set_s(r, &mf->vars, p->str, v)) return false;
    }
    if (fn->caller) {
        jv_func *c = jn_alloc(&r->a, sizeof *c);
        if (!c) return nomem(r, n);
        c->kind = FN_CALLER;
        c->node = fn->caller;
        c->closure = fn->caller_frame;
        jv cv = {.t = JV_FUNC};
        cv.u.fn = c;
        if (!dict_set_s(r, &mf->vars, "caller", cv)) return false;
    }
    r->depth += 4;
    bool ok = render_body_capture(r, mf, m->b, out);
    r->depth -= 4;
    return ok;
}

static bool call_global(R *r, const jn_node *n, const char *name, jv self, args *a, jv *out);
static bool call_method(R *r, const jn_node *n, jv self, const char *name, args *a, jv *out);

static bool call_value(R *r, frame *f, const jn_node *n, jv callee, args *a, jv *out) {
    (void)f;
    if (callee.t == JV_UNDEF) return undef_err(r, n, callee);
    if (callee.t == JV_MACRO) return call_macro(r, n, callee.u.fn, a, out);
    if (callee.t != JV_FUNC) return fail(r, n, "'%s' object is not callable", type_name(callee));
    jv_func *fn = callee.u.fn;
    switch (fn->kind) {
    case FN_GLOBAL: return call_global(r, n, fn->name, fn->self, a, out);
    case FN_METHOD: return call_method(r, n, fn->self, fn->name, a, out);
    case FN_CALLER: {
        frame *cf = new_frame(r, fn->closure);
        if (!cf) return nomem(r, n);
        if (fn->node->nkids) { /* {% call(x) %} parameters */
            for (size_t i = 0; i < fn->node->nkids; i++) {
                jv v = i < a->np ? a->pos[i] : mk_undef(fn->node->kids[i]->str);
                if (!dict_set_s(r, &cf->vars, fn->node->kids[i]->str, v)) return false;
            }
        }
        r->depth += 4;
        bool ok = render_body_capture(r, cf, fn->node->b, out);
        r->depth -= 4;
        return ok;
    }
    default: return fail(r, n, "object is not callable");
    }
}

static bool need_str(R *r, const jn_node *n, jv v, const char *what) {
    if (v.t != JV_STR) return fail(r, n, "%s: expected a string, got %s", what, type_name(v));
    return true;
}

static bool call_global(R *r, const jn_node *n, const char *name, jv self, args *a, jv *out) {
    if (!strcmp(name, "loop.cycle")) {
        if (!a->np) return fail(r, n, "no items for cycling given");
        *out = a->pos[self.u.i % (int64_t)a->np];
        return true;
    }
    if (!strcmp(name, "raise_exception")) {
        jv msg = mk_str("", 0);
        get_arg(a, 0, "message", &msg);
        jv s;
        if (!to_str(r, msg, &s)) return false;
        if (r->err.code == CI_OK)
            r->err = ci_errorf(CI_ERR_INVALID, "chat template line %d: raise_exception: %.*s",
                               n->line, (int)(s.u.s.n > 200 ? 200 : s.u.s.n), s.u.s.p);
        return false;
    }
    if (!strcmp(name, "range")) {
        int64_t v[3] = {0, 0, 1};
        if (a->np < 1 || a->np > 3) return fail(r, n, "range expected 1 to 3 arguments");
        for (size_t i = 0; i < a->np; i++) {
            if (a->pos[i].t != JV_INT && a->pos[i].t != JV_BOOL)
                return fail(r, n, "range: '%s' object cannot be interpreted as an integer",
                            type_name(a->pos[i]));
        }
        if (a->np == 1) {
            v[1] = num_i(a->pos[0]);
        } else {
            v[0] = num_i(a->pos[0]);
            v[1] = num_i(a->pos[1]);
            if (a->np == 3) v[2] = num_i(a->pos[2]);
        }
        if (v[2] == 0) return fail(r, n, "range() arg 3 must not be zero");
        double cnt = ((double)v[1] - (double)v[0]) / (double)v[2];
        if (cnt > 1000000) return fail(r, n, "range too large (more than 1000000 items)");
        jv_list *l = new_list(r, 0);
        if (!l) return nomem(r, n);
        for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) {
            if (!list_push(r, l, mk_int(i))) return false;
            if (__builtin_add_overflow(i, v[2], &(int64_t){0})) break;
        }
        *out = mk_list(l);
        return true;
    }
    if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
        jv_dict *d = jn_alloc(&r->a, sizeof *d);
        if (!d) return nomem(r, n);
        d->ns = name[0] == 'n';
        for (size_t i = 0; i < a->np; i++) {
            if (a->pos[i].t != JV_DICT) return fail(r, n, "%s: expected a mapping", name);
            for (size_t k = 0; k < a->pos[i].u.d->n; k++)
                if (!dict_set(r, d, a->pos[i].u.d->k[k], a->pos[i].u.d->v[k])) return false;
        }
        for (size_t k = 0; k < a->nk; k++)
            if (!dict_set_s(r, d, a->kn[k], a->kv[k])) return false;
        *out = mk_dict(d);
        return true;
    }
    if (!strcmp(name, "strftime_now")) {
        jv fmt;
        if (!get_arg(a, 0, "format", &fmt) || !need_str(r, n, fmt, "strftime_now")) return false;
        const char *cf = cstr(r, fmt);
        if (!cf) return nomem(r, n);
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char buf[512];
        size_t k = strftime(buf, sizeof buf, cf, &tm);
        return mk_strcpy(r, buf, k, out);
    }
    return fail(r, n, "'%s' is not callable", name);
}

/* ------------------------------------------------------- string helpers */

static bool strip_impl(R *r, jv s, jv chars, bool left, bool right, jv *out) {
    const char *p = s.u.s.p;
    size_t b = 0, e = s.u.s.n;
    if (chars.t == JV_STR) {
        /* strip any of the code points in chars */
        size_t cnt;
        size_t *off = u8_offsets(r, p, e, &cnt);
        if (!off) return nomem(r, NULL);
        size_t lo = 0, hi = cnt;
#define IN_CHARS(i)                                                                                \
    (memmem(chars.u.s.p, chars.u.s.n, p + off[i], off[(i) + 1] - off[i]) != NULL)
        if (left)
            while (lo < hi && IN_CHARS(lo)) lo++;
        if (right)
            while (hi > lo && IN_CHARS(hi - 1)) hi--;
#undef IN_CHARS
        *out = mk_str(p + off[lo], off[hi] - off[lo]);
        return true;
    }
    size_t cl;
    if (left)
        while (b < e && jn_py_isspace(p + b, e - b, &cl)) b += cl;
    if (right)
        while (e > b) {
            size_t st = e - 1;
            while (st > b && ((unsigned char)p[st] & 0xc0) == 0x80 && e - st < 4) st--;
            if (jn_py_isspace(p + st, e - st, &cl) && cl == e - st)
                e = st;
            else
                break;
        }
    *out = mk_str(p + b, e - b);
    return true;
}

static bool map_case(R *r, jv s, int mode, jv *out) {
    /* mode 0 upper, 1 lower, 2 capitalize, 3 title (jinja), 4 str.title, 5 swapcase */
    sbuf b = {0};
    bool start = true;
    size_t i = 0;
    for (size_t k = 0; i < s.u.s.n; k++) {
        int32_t cp;
        size_t w = u8_dec(s.u.s.p + i, s.u.s.n - i, &cp);
        int32_t c2 = cp;
        switch (mode) {
        case 0: c2 = utf8proc_toupper(cp); break;
        case 1: c2 = utf8proc_tolower(cp); break;
        case 2: c2 = k == 0 ? utf8proc_toupper(cp) : utf8proc_tolower(cp); break;
        case 3:
            if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f' || cp == '\v' ||
                cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<') {
                start = true;
            } else {
                c2 = start ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
                start = false;
            }
            break;
        case 4: {
            bool cased = utf8proc_toupper(cp) != cp || utf8proc_tolower(cp) != cp;
            if (cased) {
                c2 = start ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
                start = false;
            } else {
                start = true;
            }
            break;
        }
        default: c2 = utf8proc_toupper(cp) != cp ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
        }
        char tmp[8];
        size_t tl = c2 == cp ? 0 : u8_enc(tmp, c2);
        if (mode == 0) {
            /* SpecialCasing.txt: upper-case expansions Python applies */
            static const struct {
                int32_t cp;
                const char *up;
            } SPECIAL[] = {{0xdf, "SS"},   {0xfb00, "FF"},  {0xfb01, "FI"}, {0xfb02, "FL"},
                           {0xfb03, "FFI"}, {0xfb04, "FFL"}, {0xfb05, "ST"}, {0xfb06, "ST"}};
            for (size_t q = 0; q < sizeof SPECIAL / sizeof SPECIAL[0]; q++)
                if (SPECIAL[q].cp == cp) {
                    tl = strlen(SPECIAL[q].up);
                    memcpy(tmp, SPECIAL[q].up, tl);
                }
        }
        if (!(tl ? sb_put(r, &b, tmp, tl) : sb_put(r, &b, s.u.s.p + i, w))) {
            free(b.p);
            return false;
        }
        i += w;
    }
    return sb_finish(r, &b, out);
}

static bool str_replace(R *r, jv s, jv old, jv neu, int64_t count, jv *out) {
    sbuf b = {0};
    WORK(s.u.s.n);
    size_t i = 0;
    int64_t done = 0;
    if (old.u.s.n == 0) {
        /* Python inserts new between every character */
        for (size_t k = 0; i <= s.u.s.n; k++) {
            if (count < 0 || done < count) {
                if (!sb_put(r, &b, neu.u.s.p, neu.u.s.n)) goto err;
                done++;
            }
            if (i == s.u.s.n) break;
            int32_t cp;
            size_t w = u8_dec(s.u.s.p + i, s.u.s.n - i, &cp);
            if (!sb_put(r, &b, s.u.s.p + i, w)) goto err;
            i += w;
        }
        return sb_finish(r, &b, out);
    }
    while (i < s.u.s.n) {
        const char *hit = (count < 0 || done < count)
                              ? memmem(s.u.s.p + i, s.u.s.n - i, old.u.s.p, old.u.s.n)
                              : NULL;
        if (!hit) break;
        size_t at = (size_t)(hit - s.u.s.p);
        if (!sb_put(r, &b, s.u.s.p + i, at - i) || !sb_put(r, &b, neu.u.s.p, neu.u.s.n)) goto err;
        i = at + old.u.s.n;
        done++;
    }
    if (!sb_put(r, &b, s.u.s.p + i, s.u.s.n - i)) goto err;
    return sb_finish(r, &b, out);
err:
    free(b.p);
    return false;
}

static bool str_split(R *r, const jn_node *n, jv s, jv sep, int64_t maxsplit, bool from_right,
                      jv *out) {
    WORK(s.u.s.n);
    jv_list *l = new_list(r, 0);
    if (!l) return nomem(r, n);
    const char *p = s.u.s.p;
    size_t len = s.u.s.n;
    if (sep.t == JV_STR) {
        if (sep.u.s.n == 0) return fail(r, n, "empty separator");
        if (!from_right) {
            size_t i = 0;
            int64_t k = 0;
            for (;;) {
                const char *hit = (maxsplit < 0 || k < maxsplit)
                                      ? memmem(p + i, len - i, sep.u.s.p, sep.u.s.n)
                                      : NULL;
                if (!hit) {
                    if (!list_push(r, l, mk_str(p + i, len - i))) return false;
                    break;
                }
                if (!list_push(r, l, mk_str(p + i, (size_t)(hit - p) - i))) return false;
                i = (size_t)(hit - p) + sep.u.s.n;
                k++;
            }
        } else {
            /* collect from the right, then reverse */
            size_t e = len;
            int64_t k = 0;
            for (;;) {
                const char *hit = NULL;
                WORK(e * (sep.u.s.n > 64 ? 64 : sep.u.s.n));
                if ((maxsplit < 0 || k < maxsplit) && e >= sep.u.s.n)
                    for (size_t j = e - sep.u.s.n + 1; j-- > 0;)
                        if (!memcmp(p + j, sep.u.s.p, sep.u.s.n)) {
                            hit = p + j;
                            break;
                        }
                if (!hit) {
                    if (!list_push(r, l, mk_str(p, e))) return false;
                    break;
                }
                size_t after = (size_t)(hit - p) + sep.u.s.n;
                if (!list_push(r, l, mk_str(p + after, e - after))) return false;
                e = (size_t)(hit - p);
                k++;
            }
            for (size_t i = 0; i < l->n / 2; i++) {
                jv t = l->v[i];
                l->v[i] = l->v[l->n - 1 - i];
                l->v[l->n - 1 - i] = t;
            }
        }
    } else {
        /* whitespace split */
        size_t cl;
        if (!from_right) {
            size_t i = 0;
            int64_t k = 0;
            while (i < len) {
                while (i < len && jn_py_isspace(p + i, len - i, &cl)) i += cl;
                if (i >= len) break;
                if (maxsplit >= 0 && k >= maxsplit) {
                    if (!list_push(r, l, mk_str(p + i, len - i))) return false;
                    break;
                }
                size_t st = i;
                while (i < len && !jn_py_isspace(p + i, len - i, &cl)) {
                    int32_t cp;
                    i += u8_dec(p + i, len - i, &cp);
                }
                if (!list_push(r, l, mk_str(p + st, i - st))) return false;
                k++;
            }
        } else {
            jv all;
            if (!str_split(r, n, s, NONE, -1, false, &all)) return false;
            if (maxsplit < 0 || (size_t)maxsplit + 1 >= all.u.l->n) {
                *out = all;
                return true;
            }
            /* join the leading part back: keep original text up to the cut */
            size_t keep = all.u.l->n - (size_t)maxsplit;
            jv lastkept = all.u.l->v[keep - 1];
            size_t head_end = (size_t)(lastkept.u.s.p - p) + lastkept.u.s.n;
            if (!list_push(r, l, mk_str(p, head_end))) return false;
            for (size_t i = keep; i < all.u.l->n; i++)
                if (!list_push(r, l, all.u.l->v[i])) return false;
        }
    }
    *out = mk_list(l);
    return true;
}

static bool splitlines(R *r, jv s, bool keepends, jv_list **out) {
    jv_list *l = new_list(r, 0);
    if (!l) return nomem(r, NULL);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, st = 0, i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        size_t w = 0;
        if (c == '\r' && i + 1 < n && p[i + 1] == '\n')
            w = 2;
        else if (c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0x1c || c == 0x1d ||
                 c == 0x1e)
            w = 1;
        else if (c == 0xc2 && i + 1 < n && (unsigned char)p[i + 1] == 0x85)
            w = 2;
        else if (c == 0xe2 && i + 2 < n && (unsigned char)p[i + 1] == 0x80 &&
                 ((unsigned char)p[i + 2] == 0xa8 || (unsigned char)p[i + 2] == 0xa9))
            w = 3;
        if (w) {
            if (!list_push(r, l, mk_str(p + st, (keepends ? i + w : i) - st))) return false;
            i += w;
            st = i;
        } else {
            i++;
        }
    }
    if (st < n && !list_push(r, l, mk_str(p + st, n - st))) return false;
    *out = l;
    return true;
}

static bool str_find(jv s, jv sub, bool rev, int64_t *pos_cp) {
    WORK(s.u.s.n);
    const char *hit = NULL;
    if (!rev) {
        hit = sub.u.s.n == 0 ? s.u.s.p : memmem(s.u.s.p, s.u.s.n, sub.u.s.p, sub.u.s.n);
    } else if (sub.u.s.n <= s.u.s.n) {
        for (size_t j = s.u.s.n - sub.u.s.n + 1; j-- > 0;)
            if (!memcmp(s.u.s.p + j, sub.u.s.p, sub.u.s.n)) {
                hit = s.u.s.p + j;
                break;
            }
    }
    if (!hit) {
        *pos_cp = -1;
        return false;
    }
    *pos_cp = (int64_t)u8_len(s.u.s.p, (size_t)(hit - s.u.s.p));
    return true;
}

static bool affix_match(R *r, const jn_node *n, jv s, jv arg, bool end, bool *res) {
    jv_list one = {.v = &arg, .n = 1};
    jv_list *cands = arg.t == JV_LIST && arg.u.l->tuple ? arg.u.l : &one;
    *res = false;
    for (size_t i = 0; i < cands->n; i++) {
        jv c = cands->v[i];
        if (c.t != JV_STR)
            return fail(r, n, "%s arg must be str or a tuple of str, not %s",
                        end ? "endswith" : "startswith", type_name(c));
        if (c.u.s.n <= s.u.s.n &&
            !memcmp(end ? s.u.s.p + s.u.s.n - c.u.s.n : s.u.s.p, c.u.s.p, c.u.s.n))
            *res = true;
    }
    return true;
}

static bool str_format(R *r, const jn_node *n, jv fmt, args *a, jv *out) {
    sbuf b = {0};
    const char *s = fmt.u.s.p;
    size_t len = fmt.u.s.n, auto_i = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '{' && i + 1 < len && s[i + 1] == '{') {
            if (!sb_putc(r, &b, '{')) goto err;
            i++;
            continue;
        }
        if (c == '}' && i + 1 < len && s[i + 1] == '}') {
            if (!sb_putc(r, &b, '}')) goto err;
            i++;
            continue;
        }
        if (c != '{') {
            if (!sb_putc(r, &b, c)) goto err;
            continue;
        }
        size_t j = i + 1;
        while (j < len && s[j] != '}') j++;
        if (j >= len) {
            fail(r, n, "format: single '{' encountered");
            goto err;
        }
        const char *field = s + i + 1;
        size_t fl = j - i - 1;
        const char *colon = memchr(field, ':', fl);
        if (colon) fl = (size_t)(colon - field);
        jv v = UNDEF;
        bool found = false;
        if (fl == 0) {
            found = auto_i < a->np;
            if (found) v = a->pos[auto_i++];
        } else if (field[0] >= '0' && field[0] <= '9') {
            size_t idx = (size_t)strtoul(field, NULL, 10);
            found = idx < a->np;
            if (found) v = a->pos[idx];
        } else {
            for (size_t k = 0; k < a->nk; k++)
                if (strlen(a->kn[k]) == fl && !memcmp(a->kn[k], field, fl)) {
                    v = a->kv[k];
                    found = true;
                }
        }
        if (!found) {
            fail(r, n, "format: missing argument for '{%.*s}'", (int)fl, field);
            goto err;
        }
        if (!to_str_sb(r, v, &b)) goto err;
        i = j;
    }
    return sb_finish(r, &b, out);
err:
    free(b.p);
    return false;
}

static bool join_items(R *r, const jn_node *n, jv_list *l, jv sep, const char *attr, jv *out) {
    sbuf b = {0};
    for (size_t i = 0; i < l->n; i++) {
        if (i && !sb_put(r, &b, sep.u.s.p, sep.u.s.n)) goto err;
        jv it = l->v[i];
        if (attr && !get_attr(r, n, it, attr, strlen(attr), &it)) goto err;
        if (!to_str_sb(r, it, &b)) goto err;
    }
    return sb_finish(r, &b, out);
err:
    free(b.p);
    return false;
}

static bool call_method_impl(R *r, const jn_node *n, jv self, const char *m, args *a, jv *out);

/* Markup's string methods return Markup */
static bool call_method(R *r, const jn_node *n, jv self, const char *m, args *a, jv *out) {
    if (!call_method_impl(r, n, self, m, a, out)) return false;
    if (self.t == JV_STR && self.mk) {
        if (out->t == JV_STR) out->mk = 1;
        if (out->t == JV_LIST && (!strcmp(m, "split") || !strcmp(m, "rsplit") || !strcmp(m, "splitlines")))
            for (size_t i = 0; i < out->u.l->n; i++) out->u.l->v[i].mk = 1;
    }
    return true;
}

static bool call_method_impl(R *r, const jn_node *n, jv self, const char *m, args *a, jv *out) {
    jv a0 = UNDEF, a1 = UNDEF, a2 = UNDEF;
    bool h0 = get_arg(a, 0, NULL, &a0), h1 = get_arg(a, 1, NULL, &a1);
    (void)get_arg(a, 2, NULL, &a2);
    if (self.t == JV_DICT) {
        jv_dict *d = self.u.d;
        if (!strcmp(m, "get")) {
            if (!h0) return fail(r, n, "get expected at least 1 argument");
            jv *v = dict_find(d, a0);
            *out = v ? *v : (h1 ? a1 : NONE);
            return true;
        }
        jv_list *l = new_list(r, d->n);
        if (!l) return nomem(r, n);
        l->view = !strcmp(m, "keys") ? JL_KEYS : !strcmp(m, "values") ? JL_VALUES : JL_ITEMS;
        for (size_t i = 0; i < d->n; i++) {
            if (!strcmp(m, "keys")) {
                l->v[l->n++] = d->k[i];
            } else if (!strcmp(m, "values")) {
                l->v[l->n++] = d->v[i];
            } else {
                jv_list *t = new_list(r, 2);
                if (!t) return nomem(r, n);
                t->tuple = true;
                t->v[0] = d->k[i];
                t->v[1] = d->v[i];
                t->n = 2;
                l->v[l->n++] = mk_list(t);
            }
        }
        *out = mk_list(l);
        return true;
    }
    if (self.t == JV_LIST) {
        if (!h0) return fail(r, n, "%s expected an argument", m);
        int64_t cnt = 0;
        for (size_t i = 0; i < self.u.l->n; i++)
            if (jv_eq(self.u.l->v[i], a0)) {
                if (!strcmp(m, "index")) {
                    *out = mk_int((int64_t)i);
                    return true;
                }
                cnt++;
            }
        if (!strcmp(m, "index")) return fail(r, n, "list.index(x): x not in list");
        *out = mk_int(cnt);
        return true;
    }
    /* string methods */
    jv s = self;
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        bool res;
        if (!h0) return fail(r, n, "%s expected an argument", m);
        if (!affix_match(r, n, s, a0, m[0] == 'e', &res)) return false;
        *out = mk_bool(res);
        return true;
    }
    if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
        if (h0 && a0.t != JV_STR && a0.t != JV_NONE)
            return fail(r, n, "%s arg must be None or str", m);
        return strip_impl(r, s, a0, m[0] != 'r', m[0] != 'l', out);
    }
    if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        jv sep = NONE, mx = mk_int(-1);
        get_arg(a, 0, "sep", &sep);
        get_arg(a, 1, "maxsplit", &mx);
        if (sep.t != JV_STR && sep.t != JV_NONE) return fail(r, n, "must be str or None");
        if (mx.t != JV_INT) return fail(r, n, "maxsplit must be an integer");
        return str_split(r, n, s, sep, mx.u.i, m[0] == 'r', out);
    }
    if (!strcmp(m, "replace")) {
        if (!h0 || !h1 || a0.t != JV_STR || a1.t != JV_STR)
            return fail(r, n, "replace expected two string arguments");
        int64_t cnt = -1;
        if (a2.t == JV_INT) cnt = a2.u.i;
        return str_replace(r, s, a0, a1, cnt, out);
    }
    if (!strcmp(m, "upper")) return map_case(r, s, 0, out);
    if (!strcmp(m, "lower") || !strcmp(m, "casefold")) return map_case(r, s, 1, out);
    if (!strcmp(m, "capitalize")) return map_case(r, s, 2, out);
    if (!strcmp(m, "title")) return map_case(r, s, 4, out);
    if (!strcmp(m, "swapcase")) return map_case(r, s, 5, out);
    if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "index")) {
        if (!h0 || a0.t != JV_STR) return fail(r, n, "%s expected a string argument", m);
        int64_t pos;
        bool found = str_find(s, a0, m[0] == 'r', &pos);
        if (!found && m[0] == 'i') return fail(r, n, "substring not found");
        *out = mk_int(pos);
        return true;
    }
    if (!strcmp(m, "count")) {
        if (!h0 || a0.t != JV_STR) return fail(r, n, "count expected a string argument");
        if (a0.u.s.n == 0) {
            *out = mk_int((int64_t)u8_len(s.u.s.p, s.u.s.n) + 1);
            return true;
        }
        int64_t c = 0;
        for (size_t i = 0; i + a0.u.s.n <= s.u.s.n;) {
            const char *hit = memmem(s.u.s.p + i, s.u.s.n - i, a0.u.s.p, a0.u.s.n);
            if (!hit) break;
            c++;
            i = (size_t)(hit - s.u.s.p) + a0.u.s.n;
        }
        *out = mk_int(c);
        return true;
    }
    if (!strcmp(m, "format")) return str_format(r, n, s, a, out);
    if (!strcmp(m, "join")) {
        jv_list *l;
        if (!h0 || !iter_list(r, n, a0, &l)) return h0 ? false : fail(r, n, "join expected an argument");
        for (size_t i = 0; i < l->n; i++)
            if (l->v[i].t != JV_STR)
                return fail(r, n, "sequence item %zu: expected str instance, %s found", i,
                            type_name(l->v[i]));
        return join_items(r, n, l, s, NULL, out);
    }
    if (!strcmp(m, "splitlines")) {
        jv_list *l;
        jv ke = mk_bool(false);
        get_arg(a, 0, "keepends", &ke);
        if (!splitlines(r, s, truthy(ke), &l)) return false;
        *out = mk_list(l);
        return true;
    }
    if (!strcmp(m, "removeprefix") || !strcmp(m, "removesuffix")) {
        if (!h0 || a0.t != JV_STR) return fail(r, n, "%s expected a string", m);
        bool res;
        if (!affix_match(r, n, s, a0, m[6] == 's', &res)) return false;
        *out = !res ? s
               : m[6] == 's' ? mk_str(s.u.s.p, s.u.s.n - a0.u.s.n)
                             : mk_str(s.u.s.p + a0.u.s.n, s.u.s.n - a0.u.s.n);
        return true;
    }
    if (!strncmp(m, "is", 2)) {
        bool all = s.u.s.n > 0, any_cased = false, all_lower = true, all_upper = true;
        for (size_t i = 0; i < s.u.s.n;) {
            int32_t cp;
            i += u8_dec(s.u.s.p + i, s.u.s.n - i, &cp);
            utf8proc_category_t c = utf8proc_category(cp);
            bool alpha = c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
            bool digit = c == UTF8PROC_CATEGORY_ND;
            size_t cl;
            char tmp[8];
            size_t tl = u8_enc(tmp, cp);
            bool space = jn_py_isspace(tmp, tl, &cl);
            if (!strcmp(m, "isdigit") && !digit) all = false;
            if (!strcmp(m, "isalpha") && !alpha) all = false;
            if (!strcmp(m, "isalnum") && !alpha && !digit) all = false;
            if (!strcmp(m, "isspace") && !space) all = false;
            if (utf8proc_toupper(cp) != cp) all_upper = false, any_cased = true;
            if (utf8proc_tolower(cp) != cp) all_lower = false, any_cased = true;
        }
        if (!strcmp(m, "isupper")) all = any_cased && all_upper;
        if (!strcmp(m, "islower")) all = any_cased && all_lower;
        *out = mk_bool(all);
        return true;
    }
    if (!strcmp(m, "zfill") || !strcmp(m, "center") || !strcmp(m, "ljust") || !strcmp(m, "rjust")) {
        if (!h0 || a0.t != JV_INT) return fail(r, n, "%s expected an integer width", m);
        int64_t w = a0.u.i, len = (int64_t)u8_len(s.u.s.p, s.u.s.n);
        if (w > (int64_t)r->lim.max_output) return fail(r, n, "width too large");
        if (w <= len) {
            *out = s;
            return true;
        }
        int64_t pad = w - len, left = 0;
        char fill = m[0] == 'z' ? '0' : ' ';
        if (h1 && a1.t == JV_STR && a1.u.s.n == 1) fill = a1.u.s.p[0];
        if (m[0] == 'z' || m[0] == 'r') left = pad;
        if (m[0] == 'c') left = pad / 2 + (pad & w & 1);
        sbuf b = {0};
        bool ok = true;
        size_t sign = 0;
        if (m[0] == 'z' && s.u.s.n && (s.u.s.p[0] == '-' || s.u.s.p[0] == '+')) {
            ok = sb_putc(r, &b, s.u.s.p[0]);
            sign = 1;
        }
        for (int64_t i = 0; i < left && ok; i++) ok = sb_putc(r, &b, fill);
        if (ok) ok = sb_put(r, &b, s.u.s.p + sign, s.u.s.n - sign);
        for (int64_t i = left; i < pad && ok; i++) ok = sb_putc(r, &b, fill);
        if (!ok) {
            free(b.p);
            return false;
        }
        return sb_finish(r, &b, out);
    }
    return fail(r, n, "'str' object has no method '%s'", m);
}

/* ----------------------------------------------------------- tests */

static bool apply_test(R *r, frame *f, const jn_node *n, const char *t, jv v, args *a,
                       bool *out) {
    jv a0 = UNDEF;
    bool h0 = get_arg(a, 0, NULL, &a0);
    if (!strcmp(t, "defined")) *out = v.t != JV_UNDEF;
    else if (!strcmp(t, "undefined")) *out = v.t == JV_UNDEF;
    else if (!strcmp(t, "none")) *out = v.t == JV_NONE;
    else if (!strcmp(t, "string")) *out = v.t == JV_STR;
    else if (!strcmp(t, "mapping")) *out = v.t == JV_DICT && !v.u.d->ns;
    else if (!strcmp(t, "iterable"))
        *out = v.t == JV_STR || v.t == JV_LIST || (v.t == JV_DICT && !v.u.d->ns) || v.t == JV_UNDEF;
    else if (!strcmp(t, "sequence"))
        *out = v.t == JV_STR || (v.t == JV_LIST && !v.u.l->view) || (v.t == JV_DICT && !v.u.d->ns);
    else if (!strcmp(t, "number")) *out = is_num(v);
    else if (!strcmp(t, "integer")) *out = v.t == JV_INT;
    else if (!strcmp(t, "float")) *out = v.t == JV_FLOAT;
    else if (!strcmp(t, "boolean")) *out = v.t == JV_BOOL;
    else if (!strcmp(t, "true")) *out = v.t == JV_BOOL && v.u.b;
    else if (!strcmp(t, "false")) *out = v.t == JV_BOOL && !v.u.b;
    else if (!strcmp(t, "callable")) *out = v.t == JV_FUNC || v.t == JV_MACRO;
    else if (!strcmp(t, "even") || !strcmp(t, "odd") || !strcmp(t, "divisibleby")) {
        if (v.t == JV_UNDEF) return undef_err(r, n, v);
        if (!is_num(v)) return fail(r, n, "test '%s' needs a number", t);
        if (t[0] == 'd') {
            if (!h0 || !is_num(a0)) return fail(r, n, "divisibleby needs a number");
            if (num_f(a0) == 0) return fail(r, n, "division by zero");
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
    } else if (!strcmp(t, "eq") || !strcmp(t, "equalto") || !strcmp(t, "==")) *out = jv_eq(v, a0);
    else if (!strcmp(t, "ne") || !strcmp(t, "!=")) *out = !jv_eq(v, a0);
    else if (!strcmp(t, "lt") || !strcmp(t, "lessthan")) return eval_cmp(r, n, "<", v, a0, out);
    else if (!strcmp(t, "le")) return eval_cmp(r, n, "<=", v, a0, out);
    else if (!strcmp(t, "gt") || !strcmp(t, "greaterthan")) return eval_cmp(r, n, ">", v, a0, out);
    else if (!strcmp(t, "ge")) return eval_cmp(r, n, ">=", v, a0, out);
    else if (!strcmp(t, "in")) return eval_cmp(r, n, "in", v, a0, out);
    else if (!strcmp(t, "sameas"))
        *out = v.t == a0.t && (v.t == JV_NONE || v.t == JV_UNDEF ||
                               (v.t == JV_BOOL && v.u.b == a0.u.b) || (v.t != JV_BOOL && jv_eq(v, a0)));
    else if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        if (v.t != JV_STR) {
            *out = false;
            return true;
        }
        jv res;
        args none = {0};
        if (!call_method(r, n, v, t[0] == 'l' ? "islower" : "isupper", &none, &res)) return false;
        *out = res.u.b;
    } else if (!strcmp(t, "escaped")) *out = false;
    else return fail(r, n, "no test named '%s'", t);
    (void)f;
    (void)h0;
    return true;
}

/* ----------------------------------------------------------- filters */

static int cmp_for_sort(R *r, jv a, jv b, bool case_sensitive, bool *ok) {
    if (!case_sensitive && a.t == JV_STR && b.t == JV_STR) {
        jv la, lb;
        if (!map_case(r, a, 1, &la) || !map_case(r, b, 1, &lb)) {
            *ok = false;
            return 0;
        }
        return cmp_values(r, la, lb, ok);
    }
    return cmp_values(r, a, b, ok);
}

/* attribute path "a.b" or integer index */
static bool get_path(R *r, const jn_node *n, jv v, jv attr, jv *out) {
    if (attr.t == JV_INT) return get_index(r, n, v, attr, out);
    if (attr.t != JV_STR) return fail(r, n, "attribute must be a string");
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
            if (!get_index(r, n, *out, mk_int(strtoll(p, NULL, 10)), out)) return false;
        } else {
            char *nm = jn_strndup(&r->a, p, len);
            if (!nm) return nomem(r, n);
            if (out->t == JV_UNDEF) return undef_err(r, n, *out);
            if (out->t == JV_DICT) {
                jv key = mk_str(nm, len);
                jv *x = dict_find(out->u.d, key);
                *out = x ? *x : mk_undef(nm);
            } else if (!get_attr(r, n, *out, nm, len, out)) {
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
    jv_list *l = new_list(r, cnt);
    jv *keys = jn_alloc(&r->a, (cnt + 1) * sizeof *keys);
    size_t *ord = jn_alloc(&r->a, (cnt + 1) * sizeof *ord), *tmp = jn_alloc(&r->a, (cnt + 1) * sizeof *tmp);
    if (!l || !keys || !ord || !tmp) return nomem(r, n);
    for (size_t i = 0; i < cnt; i++) {
        keys[i] = src->v[i];
        if (by_value_pairs) keys[i] = src->v[i].u.l->v[attr.u.i];
        else if (attr.t != JV_NONE && !get_path(r, n, src->v[i], attr, &keys[i])) return false;
        if (!cs && keys[i].t == JV_STR && !map_case(r, keys[i], 1, &keys[i])) return false;
        ord[i] = i;
    }
    /* stable bottom-up merge sort (Python's sorted is stable, also with reverse) */
    for (size_t w = 1; w < cnt; w *= 2) {
        for (size_t lo = 0; lo < cnt; lo += 2 * w) {
            size_t mid = lo + w < cnt ? lo + w : cnt, hi = lo + 2 * w < cnt ? lo + 2 * w : cnt;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                bool ok = true;
                int c = cmp_values(r, keys[ord[i]], keys[ord[j]], &ok);
                if (!ok)
                    return r->err.code ? false
                                       : fail(r, n,
                                              "'<' not supported between instances of '%s' and '%s'",
                                              type_name(keys[ord[j]]), type_name(keys[ord[i]]));
                tmp[k++] = (reverse ? c >= 0 : c <= 0) ? ord[i++] : ord[j++];
            }
            while (i < mid) tmp[k++] = ord[i++];
            while (j < hi) tmp[k++] = ord[j++];
        }
        size_t *t = ord;
        ord = tmp;
        tmp = t;
        r->steps += cnt / 16;
        if (!step(r, n)) return false;
    }
    for (size_t i = 0; i < cnt; i++) l->v[i] = src->v[ord[i]];
    l->n = cnt;
    *out = l;
    return true;
}

static bool html_escape(R *r, jv s, jv *out) {
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
    if (!sb_finish(r, &b, out)) return false;
    out->mk = 1;
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
    jv_list *l = new_list(r, 0);
    if (!l) return nomem(r, n);
    char msg[96];
    snprintf(msg, sizeof msg, "'%s' object is not iterable", type_name(v));
    l->view = JL_GEN;
    l->lazy_err = jn_strndup(&r->a, msg, strlen(msg));
    if (!l->lazy_err) return nomem(r, n);
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
    if (!iter_list(r, n, v, &src)) return false;
    l = new_list(r, 0);
    if (!l) return nomem(r, n);
    size_t ai = 0;
    jv attr = UNDEF, test = UNDEF;
    if (attr_mode) {
        if (a->np < 1) return fail(r, n, "selectattr/rejectattr need an attribute name");
        attr = a->pos[ai++];
    }
    if (ai < a->np) test = a->pos[ai++];
    if (test.t != JV_UNDEF && test.t != JV_STR) return fail(r, n, "test name must be a string");
    args targs = {.pos = a->pos ? a->pos + ai : NULL, .np = a->np - ai, .kn = a->kn, .kv = a->kv,
                  .nk = a->nk};
    const char *tname = test.t == JV_STR ? cstr(r, test) : NULL;
    for (size_t i = 0; i < src->n; i++) {
        jv item = src->v[i], x = item;
        if (attr_mode && !get_path(r, n, item, attr, &x)) return false;
        bool keep;
        if (tname) {
            if (!apply_test(r, f, n, tname, x, &targs, &keep)) return false;
        } else {
            keep = truthy(x);
        }
        if (keep != reject && !list_push(r, l, item)) return false;
    }
    l->view = JL_GEN;
    *out = mk_list(l);
    return true;
}

static const char *const KNOWN_UNSUPPORTED[] = {
    "batch", "filesizeformat", "groupby", "pprint", "random", "slice", "striptags", "truncate",
    "urlencode", "urlize", "wordwrap", "xmlattr", NULL};

static bool apply_filter_impl(R *r, frame *f, const jn_node *n, const char *name, jv v, args *a,
                              jv *out);

static bool apply_filter(R *r, frame *f, const jn_node *n, const char *name, jv v, args *a,
                         jv *out) {
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
    bool h0 = get_arg(a, 0, NULL, &a0);
    bool h1 = get_arg(a, 1, NULL, &a1);
    (void)h1;
#define IS(s) (!strcmp(name, s))
    if (IS("safe")) {
        if (!to_str(r, v, out)) return false;
        out->mk = 1;
        return true;
    }
    if (IS("trim")) {
        jv s, chars = NONE;
        get_arg(a, 0, "chars", &chars);
        return to_str(r, v, &s) && strip_impl(r, s, chars, true, true, out);
    }
    if (IS("tojson")) {
        json_opts o = {.item_sep = ", ", .key_sep = ": "};
        jv ind = NONE, seps = NONE, sk = mk_bool(false), ea = mk_bool(false);
        get_arg(a, 0, "indent", &ind);
        get_arg(a, 1, "separators", &seps);
        get_arg(a, 2, "sort_keys", &sk);
        for (size_t k = 0; k < a->nk; k++)
            if (!strcmp(a->kn[k], "ensure_ascii")) ea = a->kv[k];
        char *spaces = NULL;
        if (ind.t == JV_INT || ind.t == JV_BOOL) {
            int64_t w = num_i(ind);
            if (w < 0) w = 0;
            if (w > 1024) return fail(r, n, "tojson: indent too large");
            spaces = jn_alloc(&r->a, (size_t)w + 1);
            if (!spaces) return nomem(r, n);
            memset(spaces, ' ', (size_t)w);
            o.indent = spaces;
            o.indent_n = (size_t)w;
        } else if (ind.t == JV_STR) {
            o.indent = ind.u.s.p;
            o.indent_n = ind.u.s.n;
        } else if (ind.t == JV_UNDEF) {
            return undef_err(r, n, ind);
        } else if (ind.t != JV_NONE) {
            return fail(r, n, "tojson: indent must be an int or a string");
        }
        if (o.indent) o.item_sep = ",";
        if (seps.t == JV_LIST && seps.u.l->n == 2 && seps.u.l->v[0].t == JV_STR &&
            seps.u.l->v[1].t == JV_STR) {
            o.item_sep = cstr(r, seps.u.l->v[0]);
            o.key_sep = cstr(r, seps.u.l->v[1]);
            if (!o.item_sep || !o.key_sep) return nomem(r, n);
        } else if (seps.t != JV_NONE && seps.t != JV_UNDEF) {
            return fail(r, n, "tojson: separators must be a pair of strings");
        }
        o.sort_keys = truthy(sk);
        o.ensure_ascii = truthy(ea);
        sbuf b = {0};
        if (!json_dump(r, n, v, &o, &b, 0)) {
            free(b.p);
            return false;
        }
        return sb_finish(r, &b, out);
    }
    if (IS("length") || IS("count")) {
        switch (v.t) {
        case JV_UNDEF: *out = mk_int(0); return true;
        case JV_STR: *out = mk_int((int64_t)u8_len(v.u.s.p, v.u.s.n)); return true;
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
        return fail(r, n, "object of type '%s' has no len()", type_name(v));
    }
    if (IS("items") || IS("keys") || IS("values")) {
        if (v.t == JV_UNDEF) {
            jv_list *l = new_list(r, 0);
            if (!l) return nomem(r, n);
            *out = mk_list(l);
            return true;
        }
        if (v.t != JV_DICT || v.u.d->ns) {
            if (!IS("items"))
                return fail(r, n, "can only get item pairs from a mapping, not %s", type_name(v));
            jv_list *l = new_list(r, 0);
            if (!l) return nomem(r, n);
            l->view = JL_GEN;
            l->lazy_err = "Can only get item pairs from a mapping.";
            *out = mk_list(l);
            return true;
        }
        args none = {0};
        if (!call_method(r, n, v, name, &none, out)) return false;
        if (IS("items")) out->u.l->view = JL_GEN;
        return true;
    }
    if (IS("first") || IS("last")) {
        jv_list *l;
        if (!iter_list(r, n, v, &l)) return false;
        *out = l->n ? l->v[IS("first") ? 0 : l->n - 1] : UNDEF;
        return true;
    }
    if (IS("join")) {
        jv sep = mk_str("", 0), attr = NONE;
        get_arg(a, 0, "d", &sep);
        get_arg(a, 1, "attribute", &attr);
        jv_list *l;
        if (!to_str(r, sep, &sep) || !iter_list(r, n, v, &l)) return false;
        if (attr.t != JV_NONE && attr.t != JV_UNDEF) {
            jv_list *m = new_list(r, l->n);
            if (!m) return nomem(r, n);
            for (size_t i = 0; i < l->n; i++)
                if (!get_path(r, n, l->v[i], attr, &m->v[m->n++])) return false;
            l = m;
        }
        return join_items(r, n, l, sep, NULL, out);
    }
    if (IS("upper") || IS("lower") || IS("capitalize") || IS("title")) {
        jv s;
        if (!to_str(r, v, &s)) return false;
        return map_case(r, s, IS("upper") ? 0 : IS("lower") ? 1 : IS("capitalize") ? 2 : 3, out);
    }
    if (IS("replace")) {
        jv s, cnt = NONE;
        get_arg(a, 2, "count", &cnt);
        if (!to_str(r, v, &s)) return false;
        jv o, nw;
        if (!get_arg(a, 0, "old", &o) || !get_arg(a, 1, "new", &nw))
            return fail(r, n, "replace needs old and new");
        if (!to_str(r, o, &o) || !to_str(r, nw, &nw)) return false;
        return str_replace(r, s, o, nw, cnt.t == JV_INT ? cnt.u.i : -1, out);
    }
    if (IS("default") || IS("d")) {
        jv dv = mk_str("", 0), boolean = mk_bool(false);
        get_arg(a, 0, "default_value", &dv);
        get_arg(a, 1, "boolean", &boolean);
        if (v.t == JV_UNDEF || (truthy(boolean) && !truthy(v)))
            *out = dv;
        else
            *out = v;
        return true;
    }
    if (IS("string")) return to_str(r, v, out);
    if ((IS("int") || IS("float")) && v.t == JV_UNDEF) return undef_err(r, n, v);
    if (IS("int")) {
        jv dflt = mk_int(0);
        get_arg(a, 0, "default", &dflt);
        if (v.t == JV_INT) *out = v;
        else if (v.t == JV_BOOL) *out = mk_int(v.u.b);
        else if (v.t == JV_FLOAT) {
            if (isnan(v.u.f) || isinf(v.u.f) || fabs(v.u.f) > 9.2e18) *out = dflt;
            else *out = mk_int((int64_t)v.u.f);
        } else if (v.t == JV_STR) {
            jv s;
            if (!strip_impl(r, v, NONE, true, true, &s)) return false;
            const char *cs = cstr(r, s);
            if (!cs) return nomem(r, n);
            char *end;
            long long x = strtoll(cs, &end, 10);
            if (strpbrk(cs, "xXpP")) *out = dflt; /* no C hex literals */
            else if (*cs && !*end) *out = mk_int(x);
            else {
                double d = strtod(cs, &end);
                *out = (*cs && !*end && !isnan(d) && !isinf(d) && fabs(d) < 9.2e18)
                           ? mk_int((int64_t)d)
                           : dflt;
            }
        } else *out = dflt;
        return true;
    }
    if (IS("float")) {
        jv dflt = mk_float(0.0);
        get_arg(a, 0, "default", &dflt);
        if (is_num(v)) *out = mk_float(num_f(v));
        else if (v.t == JV_STR) {
            jv s;
            if (!strip_impl(r, v, NONE, true, true, &s)) return false;
            const char *cs = cstr(r, s);
            if (!cs) return nomem(r, n);
            char *end;
            double d = strtod(cs, &end);
            *out = (*cs && !*end && !strpbrk(cs, "xXpP")) ? mk_float(d) : dflt;
        } else *out = dflt;
        return true;
    }
    if (IS("list")) {
        jv_list *l;
        if (!iter_list(r, n, v, &l)) return false;
        jv_list *c = new_list(r, l->n);
        if (!c) return nomem(r, n);
        for (size_t i = 0; i < l->n; i++) c->v[c->n++] = l->v[i];
        *out = mk_list(c);
        return true;
    }
    if (IS("map")) {
        jv_list *l;
        bool done;
        if (!lazy_input(r, n, v, out, &done)) return false;
        if (done) return true;
        if (!iter_list(r, n, v, &l)) return false;
        jv_list *m = new_list(r, l->n);
        if (!m) return nomem(r, n);
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
            if (a->np < 1 || a->pos[0].t != JV_STR) return fail(r, n, "map: expected a filter name");
            const char *fname = cstr(r, a->pos[0]);
            if (!fname) return nomem(r, n);
            args fa = {.pos = a->pos + 1, .np = a->np - 1, .kn = a->kn, .kv = a->kv, .nk = a->nk};
            for (size_t i = 0; i < l->n; i++)
                if (!apply_filter(r, f, n, fname, l->v[i], &fa, &m->v[m->n++])) return false;
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
        get_arg(a, 0, "case_sensitive", &cs);
        get_arg(a, 1, "attribute", &attr);
        jv_list *l, *u;
        bool done;
        if (!lazy_input(r, n, v, out, &done)) return false;
        if (done) return true;
        if (!iter_list(r, n, v, &l)) return false;
        u = new_list(r, 0);
        jv *seen = jn_alloc(&r->a, (l->n + 1) * sizeof *seen);
        if (!u || !seen) return nomem(r, n);
        size_t ns = 0;
        for (size_t i = 0; i < l->n; i++) {
            jv key = l->v[i];
            if (attr.t != JV_NONE && !get_path(r, n, key, attr, &key)) return false;
            if (!truthy(cs) && key.t == JV_STR && !map_case(r, key, 1, &key)) return false;
            bool dup = false;
            WORK(ns);
            for (size_t k = 0; k < ns && !dup; k++) dup = jv_eq(seen[k], key);
            if (!dup) {
                seen[ns++] = key;
                if (!list_push(r, u, l->v[i])) return false;
            }
            if (!step(r, n)) return false;
        }
        u->view = JL_GEN;
        *out = mk_list(u);
        return true;
    }
    if (IS("sort")) {
        jv rev = mk_bool(false), cs = mk_bool(false), attr = NONE;
        get_arg(a, 0, "reverse", &rev);
        get_arg(a, 1, "case_sensitive", &cs);
        get_arg(a, 2, "attribute", &attr);
        jv_list *l, *s;
        if (!iter_list(r, n, v, &l) ||
            !sort_list(r, n, l, truthy(rev), truthy(cs), attr, false, &s))
            return false;
        *out = mk_list(s);
        return true;
    }
    if (IS("dictsort")) {
        jv cs = mk_bool(false), by = mk_str("key", 3), rev = mk_bool(false);
        get_arg(a, 0, "case_sensitive", &cs);
        get_arg(a, 1, "by", &by);
        get_arg(a, 2, "reverse", &rev);
        if (v.t != JV_DICT) return fail(r, n, "dictsort: expected a mapping");
        jv items;
        args none = {0};
        if (!call_method(r, n, v, "items", &none, &items)) return false;
        int64_t idx = str_eq(by, "value", 5) ? 1 : 0;
        jv_list *s;
        if (!sort_list(r, n, items.u.l, truthy(rev), truthy(cs), mk_int(idx), true, &s))
            return false;
        *out = mk_list(s);
        return true;
    }
    if (IS("reverse")) {
        if (v.t == JV_STR) {
            jv st = mk_int(-1);
            return do_slice(r, n, v, NONE, NONE, st, out);
        }
        jv_list *l;
        if (!iter_list(r, n, v, &l)) return false;
        jv_list *c = new_list(r, l->n);
        if (!c) return nomem(r, n);
        for (size_t i = l->n; i-- > 0;) c->v[c->n++] = l->v[i];
        c->view = JL_GEN; /* reversed(): an iterator */
        *out = mk_list(c);
        return true;
    }
    if (IS("indent")) {
        jv width = mk_int(4), first = mk_bool(false), blank = mk_bool(false);
        get_arg(a, 0, "width", &width);
        get_arg(a, 1, "first", &first);
        get_arg(a, 2, "blank", &blank);
        jv s = v, ind;
        if (v.t != JV_STR)
            return fail(r, n, "unsupported operand type(s) for +=: '%s' and 'str'", type_name(v));
        if (width.t == JV_STR) ind = width;
        else {
            int64_t w = is_num(width) ? num_i(width) : 4;
            if (w < 0) w = 0;
            if (w > 1024) return fail(r, n, "indent: width too large");
            char *sp = jn_alloc(&r->a, (size_t)w + 1);
            if (!sp) return nomem(r, n);
            memset(sp, ' ', (size_t)w);
            ind = mk_str(sp, (size_t)w);
        }
        jv withnl;
        jv_list *lines;
        if (!concat_str(r, s, mk_str("\n", 1), &withnl) || !splitlines(r, withnl, false, &lines))
            return false;
        sbuf b = {0};
        bool ok = true;
        if (truthy(first)) ok = sb_put(r, &b, ind.u.s.p, ind.u.s.n);
        for (size_t i = 0; i < lines->n && ok; i++) {
            jv ln = lines->v[i];
            if (i) ok = sb_putc(r, &b, '\n');
            if (ok && i && (truthy(blank) || ln.u.s.n)) ok = sb_put(r, &b, ind.u.s.p, ind.u.s.n);
            if (ok) ok = sb_put(r, &b, ln.u.s.p, ln.u.s.n);
        }
        if (!ok) {
            free(b.p);
            return false;
        }
        return sb_finish(r, &b, out);
    }
    if (IS("escape") || IS("e") || IS("forceescape")) {
        jv s;
        return to_str(r, v, &s) && html_escape(r, s, out);
    }
    if (IS("round")) {
        jv prec = mk_int(0), method = mk_str("common", 6);
        get_arg(a, 0, "precision", &prec);
        get_arg(a, 1, "method", &method);
        if (!is_num(v)) return fail(r, n, "round: expected a number");
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
            return fail(r, n, "method must be common, ceil or floor");
        }
        *out = mk_float(res);
        return true;
    }
    if (IS("abs")) {
        if (!is_num(v)) return fail(r, n, "bad operand type for abs(): '%s'", type_name(v));
        if (v.t == JV_FLOAT) *out = mk_float(fabs(v.u.f));
        else if (num_i(v) == INT64_MIN) return fail(r, n, "integer overflow");
        else *out = mk_int(num_i(v) < 0 ? -num_i(v) : num_i(v));
        return true;
    }
    if (IS("min") || IS("max")) {
        jv cs = mk_bool(false), attr = NONE;
        get_arg(a, 0, "case_sensitive", &cs);
        get_arg(a, 1, "attribute", &attr);
        jv_list *l, *s;
        if (!iter_list(r, n, v, &l)) return false;
        if (!l->n) {
            *out = UNDEF;
            return true;
        }
        if (!sort_list(r, n, l, false, truthy(cs), attr, false, &s)) return false;
        *out = IS("min") ? s->v[0] : s->v[s->n - 1];
        if (IS("max")) { /* first of the maxima, like Python's max */
            for (size_t i = s->n - 1; i-- > 0;) {
                bool ok = true;
                jv ka = s->v[i], kb = s->v[s->n - 1];
                if (attr.t != JV_NONE && (!get_path(r, n, ka, attr, &ka) || !get_path(r, n, kb, attr, &kb)))
                    return false;
                if (cmp_for_sort(r, ka, kb, truthy(cs), &ok) == 0 && ok) *out = s->v[i];
                else break;
            }
        }
        return true;
    }
    if (IS("sum")) {
        jv attr = NONE, start = mk_int(0);
        get_arg(a, 0, "attribute", &attr);
        get_arg(a, 1, "start", &start);
        jv_list *l;
        if (!iter_list(r, n, v, &l)) return false;
        jv acc = start;
        for (size_t i = 0; i < l->n; i++) {
            jv x = l->v[i];
            if (attr.t != JV_NONE && !get_path(r, n, x, attr, &x)) return false;
            if (!arith(r, n, "+", acc, x, &acc)) return false;
        }
        *out = acc;
        return true;
    }
    if (IS("attr")) {
        if (!h0 || a0.t != JV_STR) return fail(r, n, "attr: expected a name");
        const char *nm = cstr(r, a0);
        if (!nm) return nomem(r, n);
        return get_attr(r, n, v, nm, a0.u.s.n, out);
    }
    if (IS("format")) {
        jv s;
        if (!to_str(r, v, &s)) return false;
        jv_list *t = new_list(r, a->np);
        if (!t) return nomem(r, n);
        t->tuple = true;
        for (size_t i = 0; i < a->np; i++) t->v[t->n++] = a->pos[i];
        return percent_format(r, n, s, mk_list(t), out);
    }
    if (IS("wordcount")) { /* len(re.findall(r"\w+", str(v))) */
        jv s;
        if (!to_str(r, v, &s)) return false;
        int64_t words = 0;
        bool in_word = false;
        for (size_t i = 0; i < s.u.s.n;) {
            int32_t cp;
            i += u8_dec(s.u.s.p + i, s.u.s.n - i, &cp);
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
        get_arg(a, 0, "width", &w);
        args ca = {.pos = &w, .np = 1};
        return to_str(r, v, &s) && call_method(r, n, s, "center", &ca, out);
    }
    (void)h0;
    for (size_t i = 0; KNOWN_UNSUPPORTED[i]; i++)
        if (!strcmp(KNOWN_UNSUPPORTED[i], name)) return fail(r, n, "filter '%s' is not supported", name);
    return fail(r, n, "no filter named '%s'", name);
#undef IS
}

/* ---------------------------------------------------------- statements */

static bool emit(R *r, jv v) { return to_str_sb(r, v, r->out); }

static bool assign(R *r, frame *f, const jn_node *t, jv v) {
    if (t->kind == JN_NAME) return dict_set_s(r, &f->vars, t->str, v);
    if (t->kind == JN_ATTR) {
        jv *obj = lookup(f, t->a->str, t->a->slen);
        if (!obj || obj->t != JV_DICT || !obj->u.d->ns)
            return fail(r, t, "cannot assign attribute on non-namespace object");
        return dict_set_s(r, obj->u.d, t->str, v);
    }
    /* tuple unpack */
    jv_list *l;
    if (!iter_list(r, t, v, &l)) return false;
    if (l->n != t->nkids)
        return fail(r, t, "cannot unpack %zu values into %zu names", l->n, t->nkids);
    for (size_t i = 0; i < t->nkids; i++)
        if (!assign(r, f, t->kids[i], l->v[i])) return false;
    return true;
}

static int exec_for(R *r, frame *f, const jn_node *n) {
    jv it;
    if (!eval(r, f, n->a, &it)) return X_ERR;
    jv_list *src;
    if (!iter_list(r, n, it, &src)) return X_ERR;
    jv_list *items = src;
    if (n->d) { /* for x in xs if cond */
        items = new_list(r, 0);
        if (!items) return nomem(r, n), X_ERR;
        for (size_t i = 0; i < src->n; i++) {
            frame *tf = new_frame(r, f);
            if (!tf) return nomem(r, n), X_ERR;
            if (!assign(r, tf, n->t, src->v[i])) return X_ERR;
            jv c;
            if (!eval(r, tf, n->d, &c)) return X_ERR;
            if (truthy(c) && !list_push(r, items, src->v[i])) return X_ERR;
        }
    }
    size_t len = items->n;
    if (len == 0) return n->c ? exec(r, f, n->c) : X_OK;
    for (size_t i = 0; i < len; i++) {
        if (!step(r, n)) return X_ERR;
        frame *lf = new_frame(r, f);
        jv_dict *loop = jn_alloc(&r->a, sizeof *loop);
        if (!lf || !loop) return nomem(r, n), X_ERR;
        bool ok = dict_set_s(r, loop, "index0", mk_int((int64_t)i)) &&
                  dict_set_s(r, loop, "index", mk_int((int64_t)i + 1)) &&
                  dict_set_s(r, loop, "revindex", mk_int((int64_t)(len - i))) &&
                  dict_set_s(r, loop, "revindex0", mk_int((int64_t)(len - i - 1))) &&
                  dict_set_s(r, loop, "first", mk_bool(i == 0)) &&
                  dict_set_s(r, loop, "last", mk_bool(i + 1 == len)) &&
                  dict_set_s(r, loop, "length", mk_int((int64_t)len)) &&
                  dict_set_s(r, loop, "depth", mk_int(1)) &&
                  dict_set_s(r, loop, "depth0", mk_int(0));
        if (ok) {
            jv_func *cyc = jn_alloc(&r->a, sizeof *cyc);
            if (!cyc) return nomem(r, n), X_ERR;
            cyc->kind = FN_GLOBAL;
            cyc->name = "loop.cycle";
            cyc->self = mk_int((int64_t)i);
            jv cv = {.t = JV_FUNC};
            cv.u.fn = cyc;
            ok = dict_set_s(r, loop, "cycle", cv);
        }
        if (ok && i > 0) ok = dict_set_s(r, loop, "previtem", items->v[i - 1]);
        if (ok && i + 1 < len) ok = dict_set_s(r, loop, "nextitem", items->v[i + 1]);
        if (ok) ok = dict_set_s(r, &lf->vars, "loop", mk_dict(loop));
        if (ok) ok = assign(r, lf, n->t, items->v[i]);
        if (!ok) return X_ERR;
        int x = exec(r, lf, n->b);
        if (x == X_ERR) return X_ERR;
        if (x == X_BREAK) break;
    }
    return X_OK;
}

static int exec(R *r, frame *f, const jn_node *n) {
    if (!step(r, n)) return X_ERR;
    switch (n->kind) {
    case JN_BODY:
        for (size_t i = 0; i < n->nkids; i++) {
            int x = exec(r, f, n->kids[i]);
            if (x != X_OK) return x;
        }
        return X_OK;
    case JN_DATA: return sb_put(r, r->out, n->str, n->slen) ? X_OK : X_ERR;
    case JN_OUTPUT: {
        jv v;
        if (!eval(r, f, n->a, &v) || !emit(r, v)) return X_ERR;
        return X_OK;
    }
    case JN_IF: {
        jv c;
        if (!eval(r, f, n->a, &c)) return X_ERR;
        if (truthy(c)) return exec(r, f, n->b);
        return n->c ? exec(r, f, n->c) : X_OK;
    }
    case JN_FOR: return exec_for(r, f, n);
    case JN_SET: {
        jv v;
        if (n->a) {
            if (!eval(r, f, n->a, &v)) return X_ERR;
        } else {
            if (!render_body_capture(r, f, n->b, &v)) return X_ERR;
            for (const jn_node *fl = n->c; fl; fl = NULL) {
                /* filter chain: innermost first */
                const jn_node *chain[32];
                int k = 0;
                for (const jn_node *x = fl; x && k < 32; x = x->a) chain[k++] = x;
                while (k-- > 0) {
                    args a;
                    if (chain[k]->kind != JN_FILTER) return fail(r, n, "bad block set filter"), X_ERR;
                    if (!eval_args(r, f, chain[k], &a) ||
                        !apply_filter(r, f, chain[k], chain[k]->str, v, &a, &v))
                        return X_ERR;
                }
            }
        }
        return assign(r, f, n->t, v) ? X_OK : X_ERR;
    }
    case JN_MACRO: {
        jv_func *fn = jn_alloc(&r->a, sizeof *fn);
        if (!fn) return nomem(r, n), X_ERR;
        fn->kind = FN_MACRO;
        fn->node = n;
        fn->closure = f;
        jv m = {.t = JV_MACRO};
        m.u.fn = fn;
        return dict_set_s(r, &f->vars, n->str, m) ? X_OK : X_ERR;
    }
    case JN_CALLBLOCK: {
        jv callee;
        args a;
        if (!eval(r, f, n->a->a, &callee) || !eval_args(r, f, n->a, &a)) return X_ERR;
        if (callee.t != JV_MACRO) return fail(r, n, "{%% call %%} needs a macro"), X_ERR;
        jv_func fn2 = *callee.u.fn;
        fn2.caller = n;
        fn2.caller_frame = f;
        jv out;
        if (!call_macro(r, n, &fn2, &a, &out) || !emit(r, out)) return X_ERR;
        return X_OK;
    }
    case JN_FILTERBLOCK: {
        jv v;
        if (!render_body_capture(r, f, n->b, &v)) return X_ERR;
        const jn_node *chain[32];
        int k = 0;
        for (const jn_node *x = n->a; x && k < 32; x = x->a) chain[k++] = x;
        while (k-- > 0) {
            args a;
            if (!eval_args(r, f, chain[k], &a) ||
                !apply_filter(r, f, chain[k], chain[k]->str, v, &a, &v))
                return X_ERR;
        }
        return emit(r, v) ? X_OK : X_ERR;
    }
    case JN_WITH: {
        frame *wf = new_frame(r, f);
        if (!wf) return nomem(r, n), X_ERR;
        for (size_t i = 0; i < n->nkids; i++) {
            jv v;
            if (!eval(r, f, n->kids[i]->a, &v) || !assign(r, wf, n->kids[i]->t, v)) return X_ERR;
        }
        return exec(r, wf, n->b);
    }
    case JN_BREAK: return X_BREAK;
    case JN_CONTINUE: return X_CONTINUE;
    default: return fail(r, n, "cannot execute this node"), X_ERR;
    }
}

/* ------------------------------------------------------------ entry */

static bool add_global(R *r, const char *name) {
    jv_func *fn = jn_alloc(&r->a, sizeof *fn);
    if (!fn) return nomem(r, NULL);
    fn->kind = FN_GLOBAL;
    fn->name = name;
    jv v = {.t = JV_FUNC};
    v.u.fn = fn;
    return dict_set_s(r, &r->globals->vars, name, v);
}

ci_status jn_render(const jn_node *root, const json_t *context, const jn_limits *lim, char **out,
                    size_t *len) {
    *out = NULL;
    *len = 0;
    R r;
    memset(&r, 0, sizeof r);
    g_work = 0;
    r.lim = *lim;
    r.a.limit = lim->max_memory;
    r.err = ci_ok();
    sbuf buf = {0};
    r.out = &buf;
    bool ok = (r.globals = new_frame(&r, NULL)) != NULL;
    if (!ok) nomem(&r, NULL);
    static const char *const GLOBALS[] = {"raise_exception", "range", "namespace", "dict",
                                          "strftime_now", NULL};
    for (int i = 0; ok && GLOBALS[i]; i++) ok = add_global(&r, GLOBALS[i]);
    frame *top = ok ? new_frame(&r, r.globals) : NULL;
    if (ok && !top) ok = nomem(&r, NULL);
    if (ok && context) {
        if (!json_is_object(context)) {
            ok = fail(&r, NULL, "context must be a JSON object");
        } else {
            const char *k;
            json_t *v;
            json_object_foreach((json_t *)context, k, v) {
                jv val;
                if (!(ok = from_json(&r, v, &val, 0))) break;
                if (!(ok = dict_set_s(&r, &top->vars, k, val))) break;
            }
        }
    }
    if (ok) ok = exec(&r, top, root) != X_ERR;
    ci_status st = r.err;
    if (!ok && st.code == CI_OK) st = ci_errorf(CI_ERR_INTERNAL, "chat template: render failed");
    if (st.code == CI_OK) {
        if (!buf.p) {
            buf.p = malloc(1);
            if (buf.p) buf.p[0] = '\0';
        }
        if (!buf.p) {
            st = ci_errorf(CI_ERR_NOMEM, "chat template: out of memory");
        } else {
            *out = buf.p;
            *len = buf.n;
            buf.p = NULL;
        }
    }
    free(buf.p);
    jn_arena_free(&r.a);
    return st;
}
