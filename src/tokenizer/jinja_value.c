/* jinja_value.c — the values of a render: construction in the render
 * arena, dicts, truthiness and equality, str()/repr()/tojson printing,
 * JSON context -> values, ordering and iteration; plus the render state's
 * error, step and output-buffer helpers every other jinja_*.c file uses. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/jinja_value.h"

/* --------------------------------------------------------------- errors */

bool jn_fail(R *r, const jn_node *n, const char *fmt, ...) {
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

bool jn_nomem(R *r, const jn_node *n) {
    if (r->a.over_limit)
        return jn_fail(r, n, "template used more than %zu bytes of memory", r->lim.max_memory);
    return jn_fail(r, n, "out of memory");
}

/* the step budget's work counter (WORK() in jinja_value.h) */
_Thread_local uint64_t jn_work;

bool jn_step(R *r, const jn_node *n) {
    if (r->err.code) return false;
    r->steps += jn_work / 4;
    jn_work %= 4;
    if (++r->steps > r->lim.max_steps)
        return jn_fail(r, n, "template ran more than %llu steps",
                       (unsigned long long)r->lim.max_steps);
    if (r->a.oom) return jn_nomem(r, n);
    return true;
}

/* -------------------------------------------------------------- sbuf */

bool jn_sb_put(R *r, sbuf *b, const char *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        if (b->n + n > r->lim.max_output)
            return jn_fail(r, NULL, "template output exceeded %zu bytes", r->lim.max_output);
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) return jn_fail(r, NULL, "out of memory");
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

/* moves the buffer's bytes into the arena as a string value */
bool jn_sb_finish(R *r, sbuf *b, jv *out) {
    char *s = jn_strndup(&r->a, b->p ? b->p : "", b->n);
    size_t n = b->n;
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    if (!s) return jn_nomem(r, NULL);
    out->t = JV_STR;
    out->u.s.p = s;
    out->u.s.n = n;
    return true;
}

/* ------------------------------------------------------------ values */

bool jn_mk_strcpy(R *r, const char *p, size_t n, jv *out) {
    char *s = jn_strndup(&r->a, p, n);
    if (!s) return jn_nomem(r, NULL);
    *out = mk_str(s, n);
    return true;
}

jv_list *jn_new_list(R *r, size_t cap) {
    jv_list *l = jn_alloc(&r->a, sizeof *l);
    if (!l) return NULL;
    if (cap) {
        l->v = jn_alloc(&r->a, cap * sizeof *l->v);
        if (!l->v) return NULL;
        l->cap = cap;
    }
    return l;
}
bool jn_list_push(R *r, jv_list *l, jv v) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        jv *nv = jn_alloc(&r->a, nc * sizeof *nv);
        if (!nv) return jn_nomem(r, NULL);
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = v;
    return true;
}

/* Hash consistent with jv_eq for hashable keys (1 == 1.0 == True). */
static bool key_hash(jv k, uint64_t *h, int depth) {
    uint64_t x = 1469598103934665603ull;
    switch (k.t) {
    case JV_STR:
        for (size_t i = 0; i < k.u.s.n; i++)
            x = (x ^ (unsigned char)k.u.s.p[i]) * 1099511628211ull;
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

jv *jn_dict_find(const jv_dict *d, jv key) {
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
jv *jn_dict_find_s(const jv_dict *d, const char *s, size_t n) {
    if (d->hidx) return jn_dict_find(d, mk_str(s, n));
    for (size_t i = 0; i < d->n; i++)
        if (str_eq(d->k[i], s, n)) return &d->v[i];
    return NULL;
}
static void index_put(jv_dict *d, size_t entry, uint64_t h) {
    size_t mask = d->hcap - 1;
    size_t i = h & mask;
    while (d->hidx[i])
        i = (i + 1) & mask;
    d->hidx[i] = (uint32_t)entry + 1;
}
static bool dict_reindex(R *r, jv_dict *d) {
    size_t cap = 64;
    while (cap < d->n * 2 + 2)
        cap *= 2;
    uint32_t *idx = jn_alloc(&r->a, cap * sizeof *idx);
    if (!idx) return jn_nomem(r, NULL);
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
        if (nc > UINT32_MAX - 1) return jn_fail(r, NULL, "dict too large");
        jv *nk = jn_alloc(&r->a, nc * sizeof *nk), *nv = jn_alloc(&r->a, nc * sizeof *nv);
        if (!nk || !nv) return jn_nomem(r, NULL);
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
bool jn_dict_set(R *r, jv_dict *d, jv key, jv val) {
    jv *slot = jn_dict_find(d, key);
    if (slot) {
        *slot = val;
        return true;
    }
    return dict_append(r, d, key, val);
}
bool jn_dict_set_s(R *r, jv_dict *d, const char *s, jv val) {
    return jn_dict_set(r, d, mk_str(s, strlen(s)), val);
}

bool jn_truthy(jv v) {
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

bool jv_eq(jv a, jv b) {
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
            jv *o = jn_dict_find(b.u.d, a.u.d->k[i]);
            if (!o || !jv_eq(a.u.d->v[i], *o)) return false;
        }
        return true;
    case JV_MACRO:
    case JV_FUNC: return a.u.fn == b.u.fn;
    default: return false;
    }
}

const char *jn_type_name(jv v) {
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

bool jn_undef_err(R *r, const jn_node *n, jv v) {
    if (v.uname) return jn_fail(r, n, "'%s' is undefined", v.uname);
    return jn_fail(r, n, "undefined value used in an expression");
}

/* ------------------------------------------------------------ UTF-8 */

size_t jn_u8_dec(const char *s, size_t n, int32_t *cp) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &c);
    if (k <= 0) {
        *cp = (unsigned char)s[0];
        return 1;
    }
    *cp = c;
    return (size_t)k;
}
size_t jn_u8_enc(char *o, int32_t cp) {
    return (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)o);
}
size_t jn_u8_len(const char *s, size_t n) {
    size_t c = 0;
    WORK(n);
    for (size_t i = 0; i < n;) {
        int32_t cp;
        i += jn_u8_dec(s + i, n - i, &cp);
        c++;
    }
    return c;
}
/* byte offsets of each code point (count+1 entries) */
size_t *jn_u8_offsets(R *r, const char *s, size_t n, size_t *count) {
    WORK(n);
    size_t c = jn_u8_len(s, n);
    size_t *off = jn_alloc(&r->a, (c + 1) * sizeof *off);
    if (!off) return NULL;
    size_t i = 0, k = 0;
    while (i < n) {
        int32_t cp;
        off[k++] = i;
        i += jn_u8_dec(s + i, n - i, &cp);
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
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
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
            for (int i = 0; i < -exp - 1; i++)
                OUT("0");
            OUT("%s", digits);
        } else {
            for (int i = 0; i <= exp; i++)
                OUT("%c", (size_t)i < nd ? digits[i] : '0');
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
        size_t k = jn_u8_dec(s + i, n - i, &cp);
        char tmp[16];
        if (cp == q || cp == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)cp;
            if (!jn_sb_put(r, b, tmp, 2)) return false;
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
            if (!jn_sb_put(r, b, s + i, k)) return false;
        }
        i += k;
    }
    return sb_putc(r, b, q);
}

bool jn_repr_sb(R *r, jv v, sbuf *b, int depth) {
    if (depth > 100) return jn_fail(r, NULL, "value nested too deeply to print");
    switch (v.t) {
    case JV_STR:
        if (v.mk)
            return sb_puts(r, b, "Markup(") && repr_str(r, v.u.s.p, v.u.s.n, b) &&
                   sb_putc(r, b, ')');
        return repr_str(r, v.u.s.p, v.u.s.n, b);
    case JV_UNDEF: return sb_puts(r, b, "Undefined");
    case JV_LIST: {
        jv_list *l = v.u.l;
        if (l->view == JL_GEN) return sb_puts(r, b, "<generator object>");
        if (l->view && !sb_puts(r, b, jn_type_name(v))) return false;
        if (l->view && !sb_putc(r, b, '(')) return false;
        if (!sb_putc(r, b, l->tuple ? '(' : '[')) return false;
        for (size_t i = 0; i < l->n; i++) {
            if (i && !sb_puts(r, b, ", ")) return false;
            if (!jn_repr_sb(r, l->v[i], b, depth + 1)) return false;
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
            if (!jn_repr_sb(r, d->k[i], b, depth + 1) || !sb_puts(r, b, ": ") ||
                !jn_repr_sb(r, d->v[i], b, depth + 1))
                return false;
        }
        if (!sb_putc(r, b, '}')) return false;
        return d->ns ? sb_putc(r, b, '>') : true;
    }
    default: return jn_to_str_sb(r, v, b);
    }
}

bool jn_to_str_sb(R *r, jv v, sbuf *b) {
    char tmp[64];
    switch (v.t) {
    case JV_UNDEF: return true;
    case JV_NONE: return sb_puts(r, b, "None");
    case JV_BOOL: return sb_puts(r, b, v.u.b ? "True" : "False");
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i); return sb_puts(r, b, tmp);
    case JV_FLOAT: float_repr(v.u.f, tmp, sizeof tmp); return sb_puts(r, b, tmp);
    case JV_STR: return jn_sb_put(r, b, v.u.s.p, v.u.s.n);
    case JV_LIST:
    case JV_DICT: return jn_repr_sb(r, v, b, 0);
    case JV_MACRO: return sb_puts(r, b, "<Macro>");
    case JV_FUNC: return sb_puts(r, b, "<built-in function>");
    }
    return true;
}

/* str(v) as a string value (no copy for strings) */
bool jn_to_str(R *r, jv v, jv *out) {
    if (v.t == JV_STR) {
        *out = v;
        return true;
    }
    if (v.t == JV_UNDEF) {
        *out = mk_str("", 0);
        return true;
    }
    sbuf b = {0};
    if (!jn_to_str_sb(r, v, &b)) {
        free(b.p);
        return false;
    }
    return jn_sb_finish(r, &b, out);
}

/* ---------------------------------------------------------- tojson */

static bool json_str(R *r, const char *s, size_t n, sbuf *b, bool ascii) {
    if (!sb_putc(r, b, '"')) return false;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        char tmp[16];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            if (!jn_sb_put(r, b, tmp, 2)) return false;
            i++;
        } else if (c < 0x20) {
            const char *e = c == '\n'   ? "\\n"
                            : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t"
                            : c == '\b' ? "\\b"
                            : c == '\f' ? "\\f"
                                        : NULL;
            if (e) {
                if (!sb_puts(r, b, e)) return false;
            } else {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                if (!sb_puts(r, b, tmp)) return false;
            }
            i++;
        } else if (c >= 0x80 && ascii) {
            int32_t cp;
            size_t k = jn_u8_dec(s + i, n - i, &cp);
            if (cp >= 0x10000) {
                int32_t v = cp - 0x10000;
                snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xd800 + (v >> 10),
                         0xdc00 + (v & 0x3ff));
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
            if (!jn_sb_put(r, b, s + i, j - i)) return false;
            i = j;
        }
    }
    return sb_putc(r, b, '"');
}

static bool json_newline(R *r, const json_opts *o, sbuf *b, int level) {
    if (!o->indent) return true;
    if (!sb_putc(r, b, '\n')) return false;
    for (int i = 0; i < level; i++)
        if (!jn_sb_put(r, b, o->indent, o->indent_n)) return false;
    return true;
}

bool jn_json_dump(R *r, const jn_node *n, jv v, const json_opts *o, sbuf *b, int level) {
    if (level > 100) return jn_fail(r, n, "tojson: value nested too deeply");
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
        if (l->view)
            return jn_fail(r, n, "Object of type %s is not JSON serializable", jn_type_name(v));
        if (!l->n) return sb_puts(r, b, "[]");
        if (!sb_putc(r, b, '[')) return false;
        for (size_t i = 0; i < l->n; i++) {
            if (i && !sb_puts(r, b, o->item_sep)) return false;
            if (!json_newline(r, o, b, level + 1)) return false;
            if (!jn_json_dump(r, n, l->v[i], o, b, level + 1)) return false;
        }
        if (!json_newline(r, o, b, level)) return false;
        return sb_putc(r, b, ']');
    }
    case JV_DICT: {
        jv_dict *d = v.u.d;
        if (d->ns) return jn_fail(r, n, "Object of type Namespace is not JSON serializable");
        if (!d->n) return sb_puts(r, b, "{}");
        size_t *order = jn_alloc(&r->a, d->n * sizeof *order);
        if (!order) return jn_nomem(r, n);
        for (size_t i = 0; i < d->n; i++)
            order[i] = i;
        if (o->sort_keys) {
            for (size_t i = 1; i < d->n; i++) { /* insertion sort: stable */
                size_t x = order[i], j = i;
                while (j > 0) {
                    bool ok = true;
                    int c = jn_cmp_values(r, d->k[order[j - 1]], d->k[x], &ok);
                    if (!ok) return jn_fail(r, n, "tojson: cannot sort keys of different types");
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
                                              : jn_json_dump(r, n, key, o, &kb, level);
                if (okk) okk = json_str(r, kb.p ? kb.p : "", kb.n, b, o->ensure_ascii);
                free(kb.p);
                if (!okk) return false;
            } else {
                return jn_fail(r, n, "keys must be str, int, float, bool or None, not %s",
                               jn_type_name(key));
            }
            if (!sb_puts(r, b, o->key_sep)) return false;
            if (!jn_json_dump(r, n, d->v[i], o, b, level + 1)) return false;
        }
        if (!json_newline(r, o, b, level)) return false;
        return sb_putc(r, b, '}');
    }
    default: return jn_fail(r, n, "Object of type %s is not JSON serializable", jn_type_name(v));
    }
}

/* ----------------------------------------------------- JSON -> value */

bool jn_from_json(R *r, const json_t *j, jv *out, int depth) {
    if (depth > 200) return jn_fail(r, NULL, "context nested too deeply");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        jv_dict *d = jn_alloc(&r->a, sizeof *d);
        if (!d) return jn_nomem(r, NULL);
        const char *k;
        json_t *v;
        void *it = json_object_iter((json_t *)j);
        for (; it; it = json_object_iter_next((json_t *)j, it)) {
            k = json_object_iter_key(it);
            v = json_object_iter_value(it);
            jv val;
            if (!jn_from_json(r, v, &val, depth + 1)) return false;
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
        jv_list *l = jn_new_list(r, json_array_size(j));
        if (!l) return jn_nomem(r, NULL);
        for (size_t i = 0; i < json_array_size(j); i++) {
            jv val;
            if (!jn_from_json(r, json_array_get(j, i), &val, depth + 1)) return false;
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
int jn_cmp_values(R *r, jv a, jv b, bool *ok) {
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
            return jn_cmp_values(r, a.u.l->v[i], b.u.l->v[i], ok);
        }
        return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n ? 1 : 0;
    }
    *ok = false;
    return 0;
}

/* --------------------------------------------------------- iteration */

/* list(v): the items iterating v yields; strings give characters, dicts keys */
bool jn_iter_list(R *r, const jn_node *n, jv v, jv_list **out) {
    switch (v.t) {
    case JV_UNDEF: *out = jn_new_list(r, 0); return *out ? true : jn_nomem(r, n);
    case JV_LIST:
        if (v.u.l->lazy_err) return jn_fail(r, n, "%s", v.u.l->lazy_err);
        *out = v.u.l;
        return true;
    case JV_DICT: {
        if (v.u.d->ns) return jn_fail(r, n, "'Namespace' object is not iterable");
        jv_list *l = jn_new_list(r, v.u.d->n);
        if (!l) return jn_nomem(r, n);
        for (size_t i = 0; i < v.u.d->n; i++)
            l->v[l->n++] = v.u.d->k[i];
        *out = l;
        return true;
    }
    case JV_STR: {
        jv_list *l = jn_new_list(r, 0);
        if (!l) return jn_nomem(r, n);
        for (size_t i = 0; i < v.u.s.n;) {
            int32_t cp;
            size_t k = jn_u8_dec(v.u.s.p + i, v.u.s.n - i, &cp);
            if (!jn_list_push(r, l, mk_str(v.u.s.p + i, k))) return false;
            i += k;
        }
        *out = l;
        return true;
    }
    default: return jn_fail(r, n, "'%s' object is not iterable", jn_type_name(v));
    }
}

/* positional i or keyword name */
bool jn_get_arg(const args *a, size_t i, const char *name, jv *out) {
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

const char *jn_cstr(R *r, jv s) {
    /* NUL-terminated copy of a string value */
    char *p = jn_strndup(&r->a, s.u.s.p, s.u.s.n);
    return p;
}
