/* jinja_methods.c — global functions (range, namespace, dict,
 * raise_exception, strftime_now, loop.cycle) and the methods of str, dict
 * and list values, with Python semantics. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "tokenizer/jinja_methods.h"
#include "tokenizer/jinja_ops.h"
#include "tokenizer/jinja_value.h"

static bool need_str(R *r, const jn_node *n, jv v, const char *what) {
    if (v.t != JV_STR) return jn_fail(r, n, "%s: expected a string, got %s", what, jn_type_name(v));
    return true;
}

bool jn_call_global(R *r, const jn_node *n, const char *name, jv self, args *a, jv *out) {
    if (!strcmp(name, "loop.cycle")) {
        if (!a->np) return jn_fail(r, n, "no items for cycling given");
        *out = a->pos[self.u.i % (int64_t)a->np];
        return true;
    }
    if (!strcmp(name, "raise_exception")) {
        jv msg = mk_str("", 0);
        jn_get_arg(a, 0, "message", &msg);
        jv s;
        if (!jn_to_str(r, msg, &s)) return false;
        if (r->err.code == CI_OK)
            r->err = ci_errorf(CI_ERR_INVALID, "chat template line %d: raise_exception: %.*s",
                               n->line, (int)(s.u.s.n > 200 ? 200 : s.u.s.n), s.u.s.p);
        return false;
    }
    if (!strcmp(name, "range")) {
        int64_t v[3] = {0, 0, 1};
        if (a->np < 1 || a->np > 3) return jn_fail(r, n, "range expected 1 to 3 arguments");
        for (size_t i = 0; i < a->np; i++) {
            if (a->pos[i].t != JV_INT && a->pos[i].t != JV_BOOL)
                return jn_fail(r, n, "range: '%s' object cannot be interpreted as an integer",
                               jn_type_name(a->pos[i]));
        }
        if (a->np == 1) {
            v[1] = num_i(a->pos[0]);
        } else {
            v[0] = num_i(a->pos[0]);
            v[1] = num_i(a->pos[1]);
            if (a->np == 3) v[2] = num_i(a->pos[2]);
        }
        if (v[2] == 0) return jn_fail(r, n, "range() arg 3 must not be zero");
        double cnt = ((double)v[1] - (double)v[0]) / (double)v[2];
        if (cnt > 1000000) return jn_fail(r, n, "range too large (more than 1000000 items)");
        jv_list *l = jn_new_list(r, 0);
        if (!l) return jn_nomem(r, n);
        for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) {
            if (!jn_list_push(r, l, mk_int(i))) return false;
            if (__builtin_add_overflow(i, v[2], &(int64_t){0})) break;
        }
        *out = mk_list(l);
        return true;
    }
    if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
        jv_dict *d = jn_alloc(&r->a, sizeof *d);
        if (!d) return jn_nomem(r, n);
        d->ns = name[0] == 'n';
        for (size_t i = 0; i < a->np; i++) {
            if (a->pos[i].t != JV_DICT) return jn_fail(r, n, "%s: expected a mapping", name);
            for (size_t k = 0; k < a->pos[i].u.d->n; k++)
                if (!jn_dict_set(r, d, a->pos[i].u.d->k[k], a->pos[i].u.d->v[k])) return false;
        }
        for (size_t k = 0; k < a->nk; k++)
            if (!jn_dict_set_s(r, d, a->kn[k], a->kv[k])) return false;
        *out = mk_dict(d);
        return true;
    }
    if (!strcmp(name, "strftime_now")) {
        jv fmt;
        if (!jn_get_arg(a, 0, "format", &fmt) || !need_str(r, n, fmt, "strftime_now")) return false;
        const char *cf = jn_cstr(r, fmt);
        if (!cf) return jn_nomem(r, n);
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char buf[512];
        size_t k = strftime(buf, sizeof buf, cf, &tm);
        return jn_mk_strcpy(r, buf, k, out);
    }
    return jn_fail(r, n, "'%s' is not callable", name);
}

/* ------------------------------------------------------- string helpers */

bool jn_strip_impl(R *r, jv s, jv chars, bool left, bool right, jv *out) {
    const char *p = s.u.s.p;
    size_t b = 0, e = s.u.s.n;
    if (chars.t == JV_STR) {
        /* strip any of the code points in chars */
        size_t cnt;
        size_t *off = jn_u8_offsets(r, p, e, &cnt);
        if (!off) return jn_nomem(r, NULL);
        size_t lo = 0, hi = cnt;
#define IN_CHARS(i) (memmem(chars.u.s.p, chars.u.s.n, p + off[i], off[(i) + 1] - off[i]) != NULL)
        if (left)
            while (lo < hi && IN_CHARS(lo))
                lo++;
        if (right)
            while (hi > lo && IN_CHARS(hi - 1))
                hi--;
#undef IN_CHARS
        *out = mk_str(p + off[lo], off[hi] - off[lo]);
        return true;
    }
    size_t cl;
    if (left)
        while (b < e && jn_py_isspace(p + b, e - b, &cl))
            b += cl;
    if (right)
        while (e > b) {
            size_t st = e - 1;
            while (st > b && ((unsigned char)p[st] & 0xc0) == 0x80 && e - st < 4)
                st--;
            if (jn_py_isspace(p + st, e - st, &cl) && cl == e - st)
                e = st;
            else
                break;
        }
    *out = mk_str(p + b, e - b);
    return true;
}

bool jn_map_case(R *r, jv s, int mode, jv *out) {
    /* mode 0 upper, 1 lower, 2 capitalize, 3 title (jinja), 4 str.title, 5 swapcase */
    sbuf b = {0};
    bool start = true;
    size_t i = 0;
    for (size_t k = 0; i < s.u.s.n; k++) {
        int32_t cp;
        size_t w = jn_u8_dec(s.u.s.p + i, s.u.s.n - i, &cp);
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
        size_t tl = c2 == cp ? 0 : jn_u8_enc(tmp, c2);
        if (mode == 0) {
            /* SpecialCasing.txt: upper-case expansions Python applies */
            static const struct {
                int32_t cp;
                const char *up;
            } SPECIAL[] = {{0xdf, "SS"},    {0xfb00, "FF"},  {0xfb01, "FI"}, {0xfb02, "FL"},
                           {0xfb03, "FFI"}, {0xfb04, "FFL"}, {0xfb05, "ST"}, {0xfb06, "ST"}};
            for (size_t q = 0; q < sizeof SPECIAL / sizeof SPECIAL[0]; q++)
                if (SPECIAL[q].cp == cp) {
                    tl = strlen(SPECIAL[q].up);
                    memcpy(tmp, SPECIAL[q].up, tl);
                }
        }
        if (!(tl ? jn_sb_put(r, &b, tmp, tl) : jn_sb_put(r, &b, s.u.s.p + i, w))) {
            free(b.p);
            return false;
        }
        i += w;
    }
    return jn_sb_finish(r, &b, out);
}

bool jn_str_replace(R *r, jv s, jv old, jv neu, int64_t count, jv *out) {
    sbuf b = {0};
    WORK(s.u.s.n);
    size_t i = 0;
    int64_t done = 0;
    if (old.u.s.n == 0) {
        /* Python inserts new between every character */
        for (size_t k = 0; i <= s.u.s.n; k++) {
            if (count < 0 || done < count) {
                if (!jn_sb_put(r, &b, neu.u.s.p, neu.u.s.n)) goto err;
                done++;
            }
            if (i == s.u.s.n) break;
            int32_t cp;
            size_t w = jn_u8_dec(s.u.s.p + i, s.u.s.n - i, &cp);
            if (!jn_sb_put(r, &b, s.u.s.p + i, w)) goto err;
            i += w;
        }
        return jn_sb_finish(r, &b, out);
    }
    while (i < s.u.s.n) {
        const char *hit = (count < 0 || done < count)
                              ? memmem(s.u.s.p + i, s.u.s.n - i, old.u.s.p, old.u.s.n)
                              : NULL;
        if (!hit) break;
        size_t at = (size_t)(hit - s.u.s.p);
        if (!jn_sb_put(r, &b, s.u.s.p + i, at - i) || !jn_sb_put(r, &b, neu.u.s.p, neu.u.s.n))
            goto err;
        i = at + old.u.s.n;
        done++;
    }
    if (!jn_sb_put(r, &b, s.u.s.p + i, s.u.s.n - i)) goto err;
    return jn_sb_finish(r, &b, out);
err:
    free(b.p);
    return false;
}

static bool str_split(R *r, const jn_node *n, jv s, jv sep, int64_t maxsplit, bool from_right,
                      jv *out) {
    WORK(s.u.s.n);
    jv_list *l = jn_new_list(r, 0);
    if (!l) return jn_nomem(r, n);
    const char *p = s.u.s.p;
    size_t len = s.u.s.n;
    if (sep.t == JV_STR) {
        if (sep.u.s.n == 0) return jn_fail(r, n, "empty separator");
        if (!from_right) {
            size_t i = 0;
            int64_t k = 0;
            for (;;) {
                const char *hit = (maxsplit < 0 || k < maxsplit)
                                      ? memmem(p + i, len - i, sep.u.s.p, sep.u.s.n)
                                      : NULL;
                if (!hit) {
                    if (!jn_list_push(r, l, mk_str(p + i, len - i))) return false;
                    break;
                }
                if (!jn_list_push(r, l, mk_str(p + i, (size_t)(hit - p) - i))) return false;
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
                    if (!jn_list_push(r, l, mk_str(p, e))) return false;
                    break;
                }
                size_t after = (size_t)(hit - p) + sep.u.s.n;
                if (!jn_list_push(r, l, mk_str(p + after, e - after))) return false;
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
                while (i < len && jn_py_isspace(p + i, len - i, &cl))
                    i += cl;
                if (i >= len) break;
                if (maxsplit >= 0 && k >= maxsplit) {
                    if (!jn_list_push(r, l, mk_str(p + i, len - i))) return false;
                    break;
                }
                size_t st = i;
                while (i < len && !jn_py_isspace(p + i, len - i, &cl)) {
                    int32_t cp;
                    i += jn_u8_dec(p + i, len - i, &cp);
                }
                if (!jn_list_push(r, l, mk_str(p + st, i - st))) return false;
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
            if (!jn_list_push(r, l, mk_str(p, head_end))) return false;
            for (size_t i = keep; i < all.u.l->n; i++)
                if (!jn_list_push(r, l, all.u.l->v[i])) return false;
        }
    }
    *out = mk_list(l);
    return true;
}

bool jn_splitlines(R *r, jv s, bool keepends, jv_list **out) {
    jv_list *l = jn_new_list(r, 0);
    if (!l) return jn_nomem(r, NULL);
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
            if (!jn_list_push(r, l, mk_str(p + st, (keepends ? i + w : i) - st))) return false;
            i += w;
            st = i;
        } else {
            i++;
        }
    }
    if (st < n && !jn_list_push(r, l, mk_str(p + st, n - st))) return false;
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
    *pos_cp = (int64_t)jn_u8_len(s.u.s.p, (size_t)(hit - s.u.s.p));
    return true;
}

static bool affix_match(R *r, const jn_node *n, jv s, jv arg, bool end, bool *res) {
    jv_list one = {.v = &arg, .n = 1};
    jv_list *cands = arg.t == JV_LIST && arg.u.l->tuple ? arg.u.l : &one;
    *res = false;
    for (size_t i = 0; i < cands->n; i++) {
        jv c = cands->v[i];
        if (c.t != JV_STR)
            return jn_fail(r, n, "%s arg must be str or a tuple of str, not %s",
                           end ? "endswith" : "startswith", jn_type_name(c));
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
        while (j < len && s[j] != '}')
            j++;
        if (j >= len) {
            jn_fail(r, n, "format: single '{' encountered");
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
            jn_fail(r, n, "format: missing argument for '{%.*s}'", (int)fl, field);
            goto err;
        }
        if (!jn_to_str_sb(r, v, &b)) goto err;
        i = j;
    }
    return jn_sb_finish(r, &b, out);
err:
    free(b.p);
    return false;
}

bool jn_join_items(R *r, const jn_node *n, jv_list *l, jv sep, const char *attr, jv *out) {
    sbuf b = {0};
    for (size_t i = 0; i < l->n; i++) {
        if (i && !jn_sb_put(r, &b, sep.u.s.p, sep.u.s.n)) goto err;
        jv it = l->v[i];
        if (attr && !jn_get_attr(r, n, it, attr, strlen(attr), &it)) goto err;
        if (!jn_to_str_sb(r, it, &b)) goto err;
    }
    return jn_sb_finish(r, &b, out);
err:
    free(b.p);
    return false;
}

static bool call_method_impl(R *r, const jn_node *n, jv self, const char *m, args *a, jv *out);

/* Markup's string methods return Markup */
bool jn_call_method(R *r, const jn_node *n, jv self, const char *m, args *a, jv *out) {
    if (!call_method_impl(r, n, self, m, a, out)) return false;
    if (self.t == JV_STR && self.mk) {
        if (out->t == JV_STR) out->mk = 1;
        if (out->t == JV_LIST &&
            (!strcmp(m, "split") || !strcmp(m, "rsplit") || !strcmp(m, "splitlines")))
            for (size_t i = 0; i < out->u.l->n; i++)
                out->u.l->v[i].mk = 1;
    }
    return true;
}

static bool call_method_impl(R *r, const jn_node *n, jv self, const char *m, args *a, jv *out) {
    jv a0 = UNDEF, a1 = UNDEF, a2 = UNDEF;
    bool h0 = jn_get_arg(a, 0, NULL, &a0), h1 = jn_get_arg(a, 1, NULL, &a1);
    (void)jn_get_arg(a, 2, NULL, &a2);
    if (self.t == JV_DICT) {
        jv_dict *d = self.u.d;
        if (!strcmp(m, "get")) {
            if (!h0) return jn_fail(r, n, "get expected at least 1 argument");
            jv *v = jn_dict_find(d, a0);
            *out = v ? *v : (h1 ? a1 : NONE);
            return true;
        }
        jv_list *l = jn_new_list(r, d->n);
        if (!l) return jn_nomem(r, n);
        l->view = !strcmp(m, "keys") ? JL_KEYS : !strcmp(m, "values") ? JL_VALUES : JL_ITEMS;
        for (size_t i = 0; i < d->n; i++) {
            if (!strcmp(m, "keys")) {
                l->v[l->n++] = d->k[i];
            } else if (!strcmp(m, "values")) {
                l->v[l->n++] = d->v[i];
            } else {
                jv_list *t = jn_new_list(r, 2);
                if (!t) return jn_nomem(r, n);
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
        if (!h0) return jn_fail(r, n, "%s expected an argument", m);
        int64_t cnt = 0;
        for (size_t i = 0; i < self.u.l->n; i++)
            if (jv_eq(self.u.l->v[i], a0)) {
                if (!strcmp(m, "index")) {
                    *out = mk_int((int64_t)i);
                    return true;
                }
                cnt++;
            }
        if (!strcmp(m, "index")) return jn_fail(r, n, "list.index(x): x not in list");
        *out = mk_int(cnt);
        return true;
    }
    /* string methods */
    jv s = self;
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        bool res;
        if (!h0) return jn_fail(r, n, "%s expected an argument", m);
        if (!affix_match(r, n, s, a0, m[0] == 'e', &res)) return false;
        *out = mk_bool(res);
        return true;
    }
    if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
        if (h0 && a0.t != JV_STR && a0.t != JV_NONE)
            return jn_fail(r, n, "%s arg must be None or str", m);
        return jn_strip_impl(r, s, a0, m[0] != 'r', m[0] != 'l', out);
    }
    if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        jv sep = NONE, mx = mk_int(-1);
        jn_get_arg(a, 0, "sep", &sep);
        jn_get_arg(a, 1, "maxsplit", &mx);
        if (sep.t != JV_STR && sep.t != JV_NONE) return jn_fail(r, n, "must be str or None");
        if (mx.t != JV_INT) return jn_fail(r, n, "maxsplit must be an integer");
        return str_split(r, n, s, sep, mx.u.i, m[0] == 'r', out);
    }
    if (!strcmp(m, "replace")) {
        if (!h0 || !h1 || a0.t != JV_STR || a1.t != JV_STR)
            return jn_fail(r, n, "replace expected two string arguments");
        int64_t cnt = -1;
        if (a2.t == JV_INT) cnt = a2.u.i;
        return jn_str_replace(r, s, a0, a1, cnt, out);
    }
    if (!strcmp(m, "upper")) return jn_map_case(r, s, 0, out);
    if (!strcmp(m, "lower") || !strcmp(m, "casefold")) return jn_map_case(r, s, 1, out);
    if (!strcmp(m, "capitalize")) return jn_map_case(r, s, 2, out);
    if (!strcmp(m, "title")) return jn_map_case(r, s, 4, out);
    if (!strcmp(m, "swapcase")) return jn_map_case(r, s, 5, out);
    if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "index")) {
        if (!h0 || a0.t != JV_STR) return jn_fail(r, n, "%s expected a string argument", m);
        int64_t pos;
        bool found = str_find(s, a0, m[0] == 'r', &pos);
        if (!found && m[0] == 'i') return jn_fail(r, n, "substring not found");
        *out = mk_int(pos);
        return true;
    }
    if (!strcmp(m, "count")) {
        if (!h0 || a0.t != JV_STR) return jn_fail(r, n, "count expected a string argument");
        if (a0.u.s.n == 0) {
            *out = mk_int((int64_t)jn_u8_len(s.u.s.p, s.u.s.n) + 1);
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
        if (!h0 || !jn_iter_list(r, n, a0, &l))
            return h0 ? false : jn_fail(r, n, "join expected an argument");
        for (size_t i = 0; i < l->n; i++)
            if (l->v[i].t != JV_STR)
                return jn_fail(r, n, "sequence item %zu: expected str instance, %s found", i,
                               jn_type_name(l->v[i]));
        return jn_join_items(r, n, l, s, NULL, out);
    }
    if (!strcmp(m, "splitlines")) {
        jv_list *l;
        jv ke = mk_bool(false);
        jn_get_arg(a, 0, "keepends", &ke);
        if (!jn_splitlines(r, s, jn_truthy(ke), &l)) return false;
        *out = mk_list(l);
        return true;
    }
    if (!strcmp(m, "removeprefix") || !strcmp(m, "removesuffix")) {
        if (!h0 || a0.t != JV_STR) return jn_fail(r, n, "%s expected a string", m);
        bool res;
        if (!affix_match(r, n, s, a0, m[6] == 's', &res)) return false;
        *out = !res          ? s
               : m[6] == 's' ? mk_str(s.u.s.p, s.u.s.n - a0.u.s.n)
                             : mk_str(s.u.s.p + a0.u.s.n, s.u.s.n - a0.u.s.n);
        return true;
    }
    if (!strncmp(m, "is", 2)) {
        bool all = s.u.s.n > 0, any_cased = false, all_lower = true, all_upper = true;
        for (size_t i = 0; i < s.u.s.n;) {
            int32_t cp;
            i += jn_u8_dec(s.u.s.p + i, s.u.s.n - i, &cp);
            utf8proc_category_t c = utf8proc_category(cp);
            bool alpha = c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
            bool digit = c == UTF8PROC_CATEGORY_ND;
            size_t cl;
            char tmp[8];
            size_t tl = jn_u8_enc(tmp, cp);
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
        if (!h0 || a0.t != JV_INT) return jn_fail(r, n, "%s expected an integer width", m);
        int64_t w = a0.u.i, len = (int64_t)jn_u8_len(s.u.s.p, s.u.s.n);
        if (w > (int64_t)r->lim.max_output) return jn_fail(r, n, "width too large");
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
        for (int64_t i = 0; i < left && ok; i++)
            ok = sb_putc(r, &b, fill);
        if (ok) ok = jn_sb_put(r, &b, s.u.s.p + sign, s.u.s.n - sign);
        for (int64_t i = left; i < pad && ok; i++)
            ok = sb_putc(r, &b, fill);
        if (!ok) {
            free(b.p);
            return false;
        }
        return jn_sb_finish(r, &b, out);
    }
    return jn_fail(r, n, "'str' object has no method '%s'", m);
}
