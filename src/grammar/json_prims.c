/* json_prims.c — the fixed pieces of JSON grammars the JSON Schema compiler
 * assembles: the common value rules, integer ranges (exact: decimal digit
 * patterns per digit count), string formats, and JSON literals as GBNF
 * string literals.
 *
 * Whitespace policy: compact with a little optional whitespace, bounded so
 * that a sampling model cannot run on in whitespace: between tokens of an
 * object or array at most one space, or a newline and up to 16 spaces; none
 * before the first or after the last value of the document. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "grammar/json_schema.h"

const char gr_json_common[] =
    "ws ::= \"\" | \" \" | \"\\n\" \" \"{0,16}\n"
    "json-char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n"
    "json-string ::= \"\\\"\" json-char* \"\\\"\"\n"
    "json-int ::= \"-\"? (\"0\" | [1-9] [0-9]{0,17})\n"
    "json-number ::= json-int (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?\n"
    "json-boolean ::= \"true\" | \"false\"\n"
    "json-null ::= \"null\"\n"
    "json-value ::= json-object | json-array | json-string | json-number | json-boolean | "
    "json-null\n"
    "json-member ::= json-string ws \":\" ws json-value\n"
    "json-object ::= \"{\" ws (json-member (ws \",\" ws json-member)* ws)? \"}\"\n"
    "json-array ::= \"[\" ws (json-value (ws \",\" ws json-value)* ws)? \"]\"\n";

bool gr_gbnf_literal(gr_str *o, const char *s, size_t n) {
    if (!gr_str_puts(o, "\"")) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            ok = gr_str_put(o, e, 2);
        } else if (c < 0x20 || c == 0x7F) {
            ok = gr_str_printf(o, "\\x%02X", c);
        } else {
            ok = gr_str_put(o, (const char *)&c, 1);
        }
        if (!ok) return false;
    }
    return gr_str_puts(o, "\"");
}

bool gr_json_literal(gr_str *o, const json_t *v) {
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!s) return false;
    bool ok = gr_gbnf_literal(o, s, strlen(s));
    free(s);
    return ok;
}

/* Fixed-length digit strings in [x, y] (same length, leading zeros allowed). */
static bool fixed_range(gr_str *o, const char *x, const char *y, size_t len) {
    if (!len) return gr_str_puts(o, "\"\"");
    if (x[0] == y[0]) {
        if (!gr_str_printf(o, "\"%c\" (", x[0]) || !fixed_range(o, x + 1, y + 1, len - 1))
            return false;
        return gr_str_puts(o, ")");
    }
    bool x_low = true, y_high = true; /* rest of x all '0', rest of y all '9' */
    for (size_t i = 1; i < len; i++) {
        x_low &= x[i] == '0';
        y_high &= y[i] == '9';
    }
    if (!gr_str_puts(o, "(")) return false;
    char lo = x[0], hi = y[0];
    bool first = true;
    if (!x_low) {
        char nines[24];
        memset(nines, '9', len - 1);
        if (!gr_str_printf(o, "\"%c\" (", x[0]) || !fixed_range(o, x + 1, nines, len - 1) ||
            !gr_str_puts(o, ")"))
            return false;
        lo++;
        first = false;
    }
    char top = y_high ? hi : (char)(hi - 1);
    if (lo <= top) {
        if (!first && !gr_str_puts(o, " | ")) return false;
        if (!gr_str_printf(o, "[%c-%c]", lo, top)) return false;
        if (len > 1 && !gr_str_printf(o, " [0-9]{%zu}", len - 1)) return false;
        first = false;
    }
    if (!y_high) {
        char zeros[24];
        memset(zeros, '0', len - 1);
        if (!first && !gr_str_puts(o, " | ")) return false;
        if (!gr_str_printf(o, "\"%c\" (", y[0]) || !fixed_range(o, zeros, y + 1, len - 1) ||
            !gr_str_puts(o, ")"))
            return false;
    }
    return gr_str_puts(o, ")");
}

#define GR_INT_MAX_DIGITS 18

/* Natural numbers in [a, b] without leading zeros; b < 0: unbounded (up to
 * GR_INT_MAX_DIGITS digits). a <= b when b >= 0. */
static bool nat_range(gr_str *o, long long a, long long b) {
    if (!gr_str_puts(o, "(")) return false;
    bool first = true;
    if (a == 0) {
        if (!gr_str_puts(o, "\"0\"")) return false;
        first = false;
        a = 1;
        if (b == 0) return gr_str_puts(o, ")");
    }
    char xs[24], ys[24];
    int la = snprintf(xs, sizeof xs, "%lld", a);
    int lb = b < 0 ? GR_INT_MAX_DIGITS : snprintf(ys, sizeof ys, "%lld", b);
    for (int L = la; L <= lb; L++) {
        char lo[24], hi[24];
        if (L == la)
            memcpy(lo, xs, (size_t)L);
        else {
            lo[0] = '1';
            memset(lo + 1, '0', (size_t)L - 1);
        }
        if (L == lb && b >= 0)
            memcpy(hi, ys, (size_t)L);
        else
            memset(hi, '9', (size_t)L);
        if (!first && !gr_str_puts(o, " | ")) return false;
        first = false;
        if (!fixed_range(o, lo, hi, (size_t)L)) return false;
    }
    return gr_str_puts(o, ")");
}

bool gr_int_range(gr_str *o, bool has_lo, long long lo, bool has_hi, long long hi) {
    const long long cap = 999999999999999999LL; /* 18 digits */
    if (has_lo && lo < -cap) lo = -cap;
    if (has_hi && hi > cap) hi = cap;
    if (!has_lo && !has_hi) return gr_str_puts(o, "json-int");
    if (!gr_str_puts(o, "(")) return false;
    bool first = true;
    /* negative part: -[max(1,-hi), -lo] */
    if (!has_lo || lo < 0) {
        long long nlo = has_hi && hi < 0 ? -hi : 1, nhi = has_lo ? -lo : -1;
        if (!gr_str_puts(o, "\"-\" ") || !nat_range(o, nlo, nhi)) return false;
        first = false;
    }
    if (!has_hi || hi >= 0) {
        long long plo = has_lo && lo > 0 ? lo : 0, phi = has_hi ? hi : -1;
        if (!first && !gr_str_puts(o, " | ")) return false;
        if (!nat_range(o, plo, phi)) return false;
    }
    return gr_str_puts(o, ")");
}

/* Magnitudes in [a, b] (b < 0: unbounded) with an optional fraction:
 * integer part in [a, b-1] and any fraction, or exactly b with a zero one. */
static bool magnitude(gr_str *o, long long a, long long b) {
    static const char frac[] = " (\".\" [0-9]{1,16})?";
    if (b < 0)
        return gr_str_puts(o, "(") && nat_range(o, a, -1) && gr_str_puts(o, frac) &&
               gr_str_puts(o, ")");
    bool ok = gr_str_puts(o, "(");
    if (a < b) ok = ok && nat_range(o, a, b - 1) && gr_str_puts(o, frac) && gr_str_puts(o, " | ");
    ok = ok && gr_str_printf(o, "\"%lld\" (\".\" \"0\"{1,16})?", b);
    return ok && gr_str_puts(o, ")");
}

bool gr_num_range(gr_str *o, bool has_lo, long long lo, bool has_hi, long long hi) {
    const long long cap = 999999999999999999LL;
    if (has_lo && lo < -cap) lo = -cap;
    if (has_hi && hi > cap) hi = cap;
    if (!gr_str_puts(o, "(")) return false;
    bool first = true;
    if (!has_lo || lo < 0) { /* x = -m, m in [max(0, -hi), -lo] */
        long long ma = has_hi && hi < 0 ? -hi : 0, mb = has_lo ? -lo : -1;
        if (!gr_str_puts(o, "\"-\" ") || !magnitude(o, ma, mb)) return false;
        first = false;
    }
    if (!has_hi || hi >= 0) {
        if (!first && !gr_str_puts(o, " | ")) return false;
        if (!magnitude(o, has_lo && lo > 0 ? lo : 0, has_hi ? hi : -1)) return false;
    }
    return gr_str_puts(o, ")");
}

const char *gr_json_format(const char *name) {
    static const struct {
        const char *name, *gbnf;
    } f[] = {
        {"date", "[0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | "
                 "\"3\" [01])"},
        {"time",
         "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? "
         "(\"Z\" | [-+] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])"},
        {"date-time",
         "[0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01]) "
         "\"T\" ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? "
         "(\"Z\" | [-+] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])"},
        {"uuid",
         "[0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{12}"},
        {"email", "[a-zA-Z0-9_%+-] ([a-zA-Z0-9._%+-]{0,62} [a-zA-Z0-9_%+-])? \"@\" "
                  "[a-zA-Z0-9] [a-zA-Z0-9-]{0,61} [a-zA-Z0-9]? (\".\" [a-zA-Z0-9] "
                  "[a-zA-Z0-9-]{0,61} [a-zA-Z0-9]?){0,3} "
                  "\".\" [a-zA-Z]{2,12}"},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!strcmp(f[i].name, name)) return f[i].gbnf;
    return NULL;
}
