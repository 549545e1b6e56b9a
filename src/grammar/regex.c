/* regex.c — the regex subset of guided_regex / JSON Schema "pattern",
 * translated into a GBNF expression: literals, classes with ranges and
 * negation, \d \w \s and their negations (ASCII, as in JSON Schema's
 * ECMA-262 without the u flag for \d; \w is ASCII word characters), `.`
 * (anything but a newline), groups ( ) (?: ) (?<name> ) (?P<name> ),
 * alternation, quantifiers * + ? {m} {m,} {m,n} (lazy forms are treated as
 * greedy: with full-match semantics they match the same strings), and ^ $
 * only at the two ends. Anything else is an error naming the construct.
 * The result matches the whole output (full-match semantics). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/json_schema.h"

#define RX_MAX_RANGES 256
#define RX_MAX_DEPTH 128

typedef struct rx {
    const char *s;
    size_t n, i;
    gr_str *out;
    ci_status err;
    int depth;
    bool json; /* inside a JSON string: '"', '\\' and controls escaped */
} rx;

typedef struct rx_set {
    gr_range r[RX_MAX_RANGES];
    uint32_t n;
} rx_set;

static bool rx_fail(rx *p, size_t at, const char *fmt, const char *what) {
    if (p->err.code == CI_OK) {
        char msg[160];
        snprintf(msg, sizeof msg, fmt, what);
        p->err = ci_errorf(CI_ERR_INVALID, "regex: %s at offset %zu", msg, at);
    }
    return false;
}

static bool rx_oom(rx *p) {
    if (p->err.code == CI_OK) p->err = ci_errorf(CI_ERR_NOMEM, "out of memory");
    return false;
}

static bool set_add(rx *p, rx_set *s, uint32_t lo, uint32_t hi) {
    if (s->n == RX_MAX_RANGES) return rx_fail(p, p->i, "%s", "character class too long");
    s->r[s->n++] = (gr_range){lo, hi};
    return true;
}

/* Sorts and merges the ranges; with neg, replaces them by their complement. */
static void set_normalize(rx_set *s, bool neg) {
    for (uint32_t i = 1; i < s->n; i++) {
        gr_range x = s->r[i];
        uint32_t j = i;
        while (j > 0 && s->r[j - 1].lo > x.lo) {
            s->r[j] = s->r[j - 1];
            j--;
        }
        s->r[j] = x;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (k && s->r[i].lo <= s->r[k - 1].hi + 1) {
            if (s->r[i].hi > s->r[k - 1].hi) s->r[k - 1].hi = s->r[i].hi;
        } else {
            s->r[k++] = s->r[i];
        }
    }
    s->n = k;
    if (!neg) return;
    rx_set c;
    c.n = 0;
    uint32_t next = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->r[i].lo > next) c.r[c.n++] = (gr_range){next, s->r[i].lo - 1};
        next = s->r[i].hi + 1;
    }
    if (next <= 0x10FFFF) c.r[c.n++] = (gr_range){next, 0x10FFFF};
    *s = c;
}

/* \d \w \s (and upper-case negations) into s; false if e is not one. */
static bool class_escape(rx *p, char e, rx_set *s, bool *handled) {
    rx_set t;
    t.n = 0;
    char lower = (char)(e | 0x20);
    *handled = true;
    if (lower == 'd') {
        t.r[t.n++] = (gr_range){'0', '9'};
    } else if (lower == 'w') {
        t.r[t.n++] = (gr_range){'0', '9'};
        t.r[t.n++] = (gr_range){'A', 'Z'};
        t.r[t.n++] = (gr_range){'_', '_'};
        t.r[t.n++] = (gr_range){'a', 'z'};
    } else if (lower == 's') {
        t.r[t.n++] = (gr_range){'\t', '\r'}; /* \t \n \v \f \r */
        t.r[t.n++] = (gr_range){' ', ' '};
    } else {
        *handled = false;
        return true;
    }
    set_normalize(&t, e != lower);
    for (uint32_t i = 0; i < t.n; i++)
        if (!set_add(p, s, t.r[i].lo, t.r[i].hi)) return false;
    return true;
}

static int hexd(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One literal character (after a backslash when esc): its code point. */
static bool literal_char(rx *p, uint32_t *cp) {
    size_t at = p->i;
    unsigned char c = (unsigned char)p->s[p->i];
    if (c == '\\') {
        if (p->i + 1 >= p->n) return rx_fail(p, at, "%s", "trailing backslash");
        char e = p->s[p->i + 1];
        p->i += 2;
        switch (e) {
        case 'n': *cp = '\n'; return true;
        case 't': *cp = '\t'; return true;
        case 'r': *cp = '\r'; return true;
        case 'f': *cp = '\f'; return true;
        case 'v': *cp = '\v'; return true;
        case '0': *cp = 0; return true;
        case 'x':
        case 'u': {
            int nd = e == 'x' ? 2 : 4;
            uint32_t v = 0;
            if (e == 'u' && p->i < p->n && p->s[p->i] == '{')
                return rx_fail(p, at, "unsupported construct '%s'", "\\u{...}");
            for (int k = 0; k < nd; k++) {
                int h = p->i < p->n ? hexd(p->s[p->i]) : -1;
                if (h < 0) return rx_fail(p, at, "%s", "bad hex escape");
                v = v * 16 + (uint32_t)h;
                p->i++;
            }
            *cp = v;
            return true;
        }
        default:
            if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) {
                char what[4] = {'\\', e, 0, 0};
                return rx_fail(p, at, "unsupported construct '%s'", what);
            }
            *cp = (unsigned char)e; /* an escaped punctuation character */
            if ((unsigned char)e >= 0x80) {
                p->i -= 1; /* re-read it as UTF-8 below */
                break;
            }
            return true;
        }
        c = (unsigned char)p->s[p->i];
    }
    int len = c < 0x80             ? 1
              : (c & 0xE0) == 0xC0 ? 2
              : (c & 0xF0) == 0xE0 ? 3
              : (c & 0xF8) == 0xF0 ? 4
                                   : 0;
    if (!len || p->i + (size_t)len > p->n) return rx_fail(p, at, "%s", "invalid UTF-8");
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (int k = 1; k < len; k++)
        v = (v << 6) | ((unsigned char)p->s[p->i + (size_t)k] & 0x3Fu);
    p->i += (size_t)len;
    *cp = v;
    return true;
}

static bool set_has(const rx_set *s, uint32_t c) {
    for (uint32_t i = 0; i < s->n; i++)
        if (c >= s->r[i].lo && c <= s->r[i].hi) return true;
    return false;
}

/* In JSON mode: the set's characters as they appear inside a JSON string:
 * raw where JSON allows it, else as their escape. */
static bool emit_json_set(rx *p, const rx_set *s) {
    rx_set raw;
    raw.n = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        uint32_t lo = s->r[i].lo < 0x20 ? 0x20 : s->r[i].lo, hi = s->r[i].hi;
        for (uint32_t c = lo; c <= hi && c <= 0x5C; c++) /* split out '"' and '\\' */
            if (c == '"' || c == '\\') {
                if (c > lo) raw.r[raw.n++] = (gr_range){lo, c - 1};
                lo = c + 1;
            }
        if (lo <= hi) raw.r[raw.n++] = (gr_range){lo, hi};
        if (raw.n >= RX_MAX_RANGES - 2) return rx_fail(p, p->i, "%s", "character class too long");
    }
    gr_str *o = p->out;
    bool first = true, ok = gr_str_puts(o, "(");
    if (raw.n) {
        ok = ok && gr_str_puts(o, "[");
        for (uint32_t i = 0; i < raw.n; i++)
            ok = ok && gr_str_printf(o, "\\U%08X-\\U%08X", raw.r[i].lo, raw.r[i].hi);
        ok = ok && gr_str_puts(o, "]");
        first = false;
    }
    static const struct {
        uint32_t c;
        const char *lit; /* the escape as a GBNF literal */
    } esc[] = {{'"', "\"\\\\\\\"\""}, {'\\', "\"\\\\\\\\\""}, {'\n', "\"\\\\n\""},
               {'\t', "\"\\\\t\""},   {'\r', "\"\\\\r\""},    {'\b', "\"\\\\b\""},
               {'\f', "\"\\\\f\""}};
    for (size_t k = 0; k < sizeof esc / sizeof esc[0]; k++) {
        if (!set_has(s, esc[k].c)) continue;
        ok = ok && gr_str_puts(o, first ? "" : " | ") && gr_str_puts(o, esc[k].lit);
        first = false;
    }
    for (uint32_t c = 0; c < 0x20; c++) {
        if (c == '\n' || c == '\t' || c == '\r' || c == '\b' || c == '\f' || !set_has(s, c))
            continue;
        ok = ok && gr_str_printf(o, "%s\"\\\\u%04X\"", first ? "" : " | ", c);
        first = false;
    }
    ok = ok && gr_str_puts(o, ")");
    return ok || rx_oom(p);
}

static bool emit_set(rx *p, const rx_set *s) {
    if (!s->n) return rx_fail(p, p->i, "%s", "empty character class");
    if (p->json) return emit_json_set(p, s);
    if (!gr_str_puts(p->out, "[")) return rx_oom(p);
    for (uint32_t i = 0; i < s->n; i++) {
        bool ok = s->r[i].lo == s->r[i].hi
                      ? gr_str_printf(p->out, "\\U%08X", s->r[i].lo)
                      : gr_str_printf(p->out, "\\U%08X-\\U%08X", s->r[i].lo, s->r[i].hi);
        if (!ok) return rx_oom(p);
    }
    return gr_str_puts(p->out, "]") || rx_oom(p);
}

static bool parse_class(rx *p) {
    size_t at = p->i++;
    bool neg = p->i < p->n && p->s[p->i] == '^';
    if (neg) p->i++;
    rx_set s;
    s.n = 0;
    bool first = true;
    for (;;) {
        if (p->i >= p->n) return rx_fail(p, at, "%s", "unterminated character class");
        char c = p->s[p->i];
        if (c == ']' && !first) {
            p->i++;
            break;
        }
        first = false;
        if (c == '[' && p->i + 1 < p->n && p->s[p->i + 1] == ':')
            return rx_fail(p, p->i, "unsupported construct '%s'", "[:class:]");
        if (c == '\\' && p->i + 1 < p->n) {
            bool handled;
            if (!class_escape(p, p->s[p->i + 1], &s, &handled)) return false;
            if (handled) {
                p->i += 2;
                continue;
            }
            if (p->s[p->i + 1] == 'b') { /* [\b] is a backspace */
                p->i += 2;
                if (!set_add(p, &s, 8, 8)) return false;
                continue;
            }
        }
        uint32_t lo, hi;
        if (!literal_char(p, &lo)) return false;
        hi = lo;
        if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
            p->i++;
            if (!literal_char(p, &hi)) return false;
            if (hi < lo) return rx_fail(p, at, "%s", "character range out of order");
        }
        if (!set_add(p, &s, lo, hi)) return false;
    }
    set_normalize(&s, neg);
    return emit_set(p, &s);
}

static bool parse_alt(rx *p);

/* One atom, written to out; false on error. */
static bool parse_atom(rx *p) {
    size_t at = p->i;
    char c = p->s[p->i];
    if (c == '(') {
        if (++p->depth > RX_MAX_DEPTH) return rx_fail(p, at, "%s", "groups nested too deep");
        p->i++;
        if (p->i < p->n && p->s[p->i] == '?') {
            const char *r = p->s + p->i;
            size_t left = p->n - p->i;
            if (left >= 2 && r[1] == ':') {
                p->i += 2;
            } else if (left >= 3 && (r[1] == '<' || (r[1] == 'P' && r[2] == '<')) && r[2] != '=' &&
                       r[2] != '!') {
                const char *close = memchr(r, '>', left);
                if (!close) return rx_fail(p, at, "%s", "unterminated group name");
                p->i += (size_t)(close - r) + 1;
            } else {
                char what[8];
                snprintf(what, sizeof what, "(?%c", left >= 2 ? r[1] : ' ');
                if (left >= 3 && r[1] == '<') what[3] = r[2], what[4] = 0;
                return rx_fail(p, at, "unsupported construct '%s'", what);
            }
        }
        if (!gr_str_puts(p->out, "(")) return rx_oom(p);
        if (!parse_alt(p)) return false;
        if (p->i >= p->n || p->s[p->i] != ')') return rx_fail(p, at, "%s", "unclosed '('");
        p->i++;
        p->depth--;
        return gr_str_puts(p->out, ")") || rx_oom(p);
    }
    if (c == '[') return parse_class(p);
    if (c == '.') {
        p->i++;
        rx_set dot = {.r = {{'\n', '\n'}}, .n = 1};
        set_normalize(&dot, true);
        return emit_set(p, &dot);
    }
    if (c == '^') return rx_fail(p, at, "%s", "anchor '^' is only supported at the start");
    if (c == '$') return rx_fail(p, at, "%s", "anchor '$' is only supported at the end");
    if (c == '*' || c == '+' || c == '?') return rx_fail(p, at, "%s", "quantifier without an item");
    if (c == '\\' && p->i + 1 < p->n) {
        rx_set s;
        s.n = 0;
        bool handled;
        if (!class_escape(p, p->s[p->i + 1], &s, &handled)) return false;
        if (handled) {
            p->i += 2;
            set_normalize(&s, false);
            return emit_set(p, &s);
        }
    }
    uint32_t cp;
    if (!literal_char(p, &cp)) return false;
    if (p->json) {
        rx_set one = {.r = {{cp, cp}}, .n = 1};
        return emit_set(p, &one);
    }
    return gr_str_printf(p->out, "\"\\U%08X\"", cp) || rx_oom(p);
}

/* {m}, {m,}, {m,n} at p->i: true and the bounds, or false (a literal '{'). */
static bool brace_quant(rx *p, uint32_t *min, uint32_t *max, size_t *end) {
    size_t k = p->i + 1;
    uint64_t a = 0, b = 0;
    size_t d0 = k;
    while (k < p->n && p->s[k] >= '0' && p->s[k] <= '9' && a < 100000)
        a = a * 10 + (uint64_t)(p->s[k++] - '0');
    if (k == d0) return false;
    b = a;
    if (k < p->n && p->s[k] == ',') {
        k++;
        size_t d1 = k;
        b = 0;
        while (k < p->n && p->s[k] >= '0' && p->s[k] <= '9' && b < 100000)
            b = b * 10 + (uint64_t)(p->s[k++] - '0');
        if (k == d1) b = UINT32_MAX;
    }
    if (k >= p->n || p->s[k] != '}') return false;
    *min = (uint32_t)a;
    *max = (uint32_t)b;
    *end = k + 1;
    return true;
}

static bool parse_seq(rx *p) {
    bool any = false;
    if (!gr_str_puts(p->out, "(")) return rx_oom(p);
    while (p->i < p->n && p->s[p->i] != '|' && p->s[p->i] != ')') {
        if (p->s[p->i] == '$' && p->i + 1 == p->n && p->depth == 0) { /* the end anchor */
            p->i++;
            break;
        }
        if (any && !gr_str_puts(p->out, " ")) return rx_oom(p);
        any = true;
        if (p->s[p->i] == '{') {
            uint32_t a, b;
            size_t end;
            if (brace_quant(p, &a, &b, &end))
                return rx_fail(p, p->i, "%s", "quantifier without an item");
            p->i++;
            if (!gr_str_puts(p->out, "\"{\"")) return rx_oom(p);
        } else if (!parse_atom(p)) {
            return false;
        }
        /* quantifiers */
        for (bool quantified = false; p->i < p->n;) {
            char q = p->s[p->i];
            uint32_t a, b;
            size_t end;
            bool ok;
            if (q == '*' || q == '+' || q == '?') {
                if (quantified)
                    return rx_fail(p, p->i, "unsupported construct '%s'", "nested quantifier");
                p->i++;
                ok = gr_str_put(p->out, &q, 1);
            } else if (q == '{' && brace_quant(p, &a, &b, &end)) {
                if (quantified)
                    return rx_fail(p, p->i, "unsupported construct '%s'", "nested quantifier");
                if (b < a) return rx_fail(p, p->i, "%s", "repetition {m,n} with n < m");
                p->i = end;
                ok = b == UINT32_MAX ? gr_str_printf(p->out, "{%u,}", a)
                                     : gr_str_printf(p->out, "{%u,%u}", a, b);
            } else {
                break;
            }
            if (!ok) return rx_oom(p);
            quantified = true;
            if (p->i < p->n && p->s[p->i] == '?') { /* lazy: same language under full match */
                p->i++;
            } else if (p->i < p->n && p->s[p->i] == '+') {
                return rx_fail(p, p->i, "unsupported construct '%s'", "possessive quantifier");
            }
        }
    }
    if (!any && !gr_str_puts(p->out, "\"\"")) return rx_oom(p);
    return gr_str_puts(p->out, ")") || rx_oom(p);
}

static bool parse_alt(rx *p) {
    if (!gr_str_puts(p->out, "(")) return rx_oom(p);
    for (;;) {
        if (!parse_seq(p)) return false;
        if (p->i < p->n && p->s[p->i] == '|') {
            p->i++;
            if (!gr_str_puts(p->out, " | ")) return rx_oom(p);
            continue;
        }
        break;
    }
    return gr_str_puts(p->out, ")") || rx_oom(p);
}

static ci_status translate(const char *pat, size_t len, gr_str *out, bool json) {
    rx p;
    memset(&p, 0, sizeof p);
    p.json = json;
    p.s = pat;
    p.n = len;
    p.out = out;
    p.err = ci_ok();
    if (p.n && p.s[0] == '^') p.i++;
    if (parse_alt(&p) && p.i < p.n) rx_fail(&p, p.i, "%s", "unmatched ')'");
    return p.err;
}

ci_status gr_regex_to_gbnf(const char *pat, size_t len, gr_str *out) {
    return translate(pat, len, out, false);
}

ci_status gr_regex_to_gbnf_json(const char *pat, size_t len, gr_str *out) {
    return translate(pat, len, out, true);
}

ci_status ci_grammar_from_regex(const char *pattern, size_t len, ci_grammar **out, char *err,
                                size_t errlen) {
    *out = NULL;
    gr_str s = {0};
    ci_status st = gr_str_puts(&s, "root ::= ") ? gr_regex_to_gbnf(pattern, len, &s)
                                                : ci_errorf(CI_ERR_NOMEM, "out of memory");
    if (st.code == CI_OK) st = gr_compile_text(s.p, s.n, out, NULL, 0);
    free(s.p);
    return gr_report(st, err, errlen);
}
