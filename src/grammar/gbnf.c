/* gbnf.c — the GBNF parser (llama.cpp's grammar syntax) into the rule
 * builder: rules `name ::= alternatives`, references, `|`, groups, string
 * literals, character classes ([a-z], [^"], escapes \xNN \uNNNN
 * \UNNNNNNNN), `.`, quantifiers * + ? {m} {m,} {m,n}, `#` comments.
 * A rule's body may span lines; it ends where the next `name ::=` starts.
 * Quantified items are rewritten into helper rules (right-recursive for
 * unbounded repetition, a chain of optional rules for {m,n}). Also owns
 * the public GBNF entry (ci_grammar_from_gbnf) and gr_compile_text. */
#include <stdio.h>
#include <string.h>

#include "grammar/internal.h"

#define GR_MAX_REPEAT 10000u
#define GR_MAX_NEST 256
/* Elements that repetitions may add in all: without them a grammar is at
 * most as large as its text, with them a short text could ask for billions
 * ("(((x{9999}){9999}){9999})" nests rules, not copies, but many
 * quantifiers add up). */
#define GR_MAX_REPEAT_ELEMS (4u << 20)

typedef struct gp {
    gb *b;
    const char *s;
    size_t n, i;
    ci_status err;
    uint32_t lit_class[128]; /* class id + 1 of one ASCII char */
    int depth;
    uint64_t rep_elems; /* elements added by repetitions so far */
} gp;

static bool fail(gp *p, size_t at, const char *msg) {
    if (p->err.code != CI_OK) return false;
    size_t line = 1, col = 1;
    for (size_t k = 0; k < at && k < p->n; k++) {
        if (p->s[k] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    p->err = ci_errorf(CI_ERR_INVALID, "gbnf: line %zu col %zu: %s", line, col, msg);
    return false;
}

static bool oom(gp *p) {
    if (p->err.code == CI_OK) p->err = ci_errorf(CI_ERR_NOMEM, "out of memory");
    return false;
}

static void skip_ws(gp *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == '#') {
            while (p->i < p->n && p->s[p->i] != '\n')
                p->i++;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            p->i++;
        } else {
            break;
        }
    }
}

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static size_t name_len(const gp *p, size_t at) {
    size_t k = at;
    while (k < p->n && name_char(p->s[k]))
        k++;
    return k - at;
}

/* At `name ::=`: the start of the next rule. */
static bool at_rule_start(const gp *p) {
    size_t l = name_len(p, p->i);
    if (!l) return false;
    size_t k = p->i + l;
    while (k < p->n && (p->s[k] == ' ' || p->s[k] == '\t'))
        k++;
    return k + 3 <= p->n && !memcmp(p->s + k, "::=", 3);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One character of a literal or class: an escape or a UTF-8 code point. */
static bool parse_char(gp *p, uint32_t *cp) {
    size_t at = p->i;
    if (p->i >= p->n) return fail(p, at, "unexpected end of input");
    unsigned char c = (unsigned char)p->s[p->i];
    if (c == '\\') {
        if (p->i + 1 >= p->n) return fail(p, at, "unexpected end of input after '\\'");
        char e = p->s[p->i + 1];
        p->i += 2;
        int nhex = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (nhex) {
            uint32_t v = 0;
            for (int k = 0; k < nhex; k++) {
                int h = p->i < p->n ? hexval(p->s[p->i]) : -1;
                if (h < 0) return fail(p, at, "bad hex escape");
                v = v * 16 + (uint32_t)h;
                p->i++;
            }
            if (v > 0x10FFFF) return fail(p, at, "code point out of range");
            *cp = v;
            return true;
        }
        switch (e) {
        case 'n': *cp = '\n'; return true;
        case 't': *cp = '\t'; return true;
        case 'r': *cp = '\r'; return true;
        case '0': *cp = 0; return true;
        default:
            if (e > ' ' && e < 127 && !name_char(e)) {
                *cp = (uint32_t)e;
                return true;
            }
            return fail(p, at, "unknown escape");
        }
    }
    int len = c < 0x80             ? 1
              : (c & 0xE0) == 0xC0 ? 2
              : (c & 0xF0) == 0xE0 ? 3
              : (c & 0xF8) == 0xF0 ? 4
                                   : 0;
    if (!len || p->i + (size_t)len > p->n) return fail(p, at, "invalid UTF-8");
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (int k = 1; k < len; k++) {
        unsigned char d = (unsigned char)p->s[p->i + (size_t)k];
        if ((d & 0xC0) != 0x80) return fail(p, at, "invalid UTF-8");
        v = (v << 6) | (d & 0x3Fu);
    }
    p->i += (size_t)len;
    *cp = v;
    return true;
}

static bool push_char(gp *p, gb_seq *seq, uint32_t cp) {
    uint32_t k;
    if (cp < 128 && p->lit_class[cp]) {
        k = p->lit_class[cp] - 1;
    } else {
        gr_range r = {cp, cp};
        k = gb_class(p->b, &r, 1, false);
        if (k == UINT32_MAX) return oom(p);
        if (cp < 128) p->lit_class[cp] = k + 1;
    }
    return gb_push(seq, GR_CLASS, k) || oom(p);
}

static bool parse_class(gp *p, gb_seq *seq) {
    size_t at = p->i++;
    bool neg = p->i < p->n && p->s[p->i] == '^';
    if (neg) p->i++;
    gr_range rs[256];
    uint32_t nr = 0;
    for (;;) {
        if (p->i >= p->n) return fail(p, at, "unterminated character class");
        if (p->s[p->i] == ']') {
            p->i++;
            break;
        }
        uint32_t lo, hi;
        if (!parse_char(p, &lo)) return false;
        hi = lo;
        if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
            p->i++;
            if (!parse_char(p, &hi)) return false;
            if (hi < lo) return fail(p, at, "character range out of order");
        }
        if (nr == 256) return fail(p, at, "character class too long");
        rs[nr++] = (gr_range){lo, hi};
    }
    if (!nr) return fail(p, at, "empty character class");
    uint32_t k = gb_class(p->b, rs, nr, neg);
    if (k == UINT32_MAX) return oom(p);
    return gb_push(seq, GR_CLASS, k) || oom(p);
}

static bool parse_uint(gp *p, uint32_t *v) {
    size_t at = p->i;
    uint64_t x = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        x = x * 10 + (uint64_t)(p->s[p->i++] - '0');
        if (x > GR_MAX_REPEAT) return fail(p, at, "repetition count too large");
    }
    if (p->i == at) return fail(p, at, "expected a number");
    *v = (uint32_t)x;
    return true;
}

/* Rewrites seq[start..] (one item) as item{min,max}; max UINT32_MAX = unbounded. */
static bool apply_repeat(gp *p, uint32_t rule, gb_seq *seq, uint32_t start, uint32_t min,
                         uint32_t max) {
    gb *b = p->b;
    p->rep_elems += (uint64_t)min + 3u * (max == UINT32_MAX ? 1u : max - min);
    if (p->rep_elems > GR_MAX_REPEAT_ELEMS)
        return fail(p, p->i, "grammar too large (repetition counts)");
    const char *base = b->rules[rule].name;
    gr_elem x;
    if (seq->n - start == 1) {
        x = seq->v[start];
    } else {
        uint32_t r = gb_anon_rule(b, base);
        gb_seq *a = r == UINT32_MAX ? NULL : gb_add_alt(b, r);
        if (!a) return oom(p);
        for (uint32_t k = start; k < seq->n; k++)
            if (!gb_push(a, seq->v[k].type, seq->v[k].val)) return oom(p);
        x = (gr_elem){GR_REF, r};
    }
    /* gb_add_alt may move b->rules, but seq belongs to the caller's rule,
     * whose alts array is not touched here (new rules only). */
    seq->n = start;
    for (uint32_t k = 0; k < min; k++)
        if (!gb_push(seq, x.type, x.val)) return oom(p);
    if (max == UINT32_MAX) {
        uint32_t r = gb_anon_rule(b, base);
        if (r == UINT32_MAX) return oom(p);
        gb_seq *a = gb_add_alt(b, r);
        if (!a || !gb_push(a, x.type, x.val) || !gb_push(a, GR_REF, r) || !gb_add_alt(b, r))
            return oom(p);
        return gb_push(seq, GR_REF, r) || oom(p);
    }
    uint32_t prev = UINT32_MAX;
    for (uint32_t k = min; k < max; k++) {
        uint32_t r = gb_anon_rule(b, base);
        if (r == UINT32_MAX) return oom(p);
        gb_seq *a = gb_add_alt(b, r);
        if (!a || !gb_push(a, x.type, x.val)) return oom(p);
        if (prev != UINT32_MAX && !gb_push(a, GR_REF, prev)) return oom(p);
        if (!gb_add_alt(b, r)) return oom(p);
        prev = r;
    }
    if (prev != UINT32_MAX && !gb_push(seq, GR_REF, prev)) return oom(p);
    return true;
}

static bool parse_alternates(gp *p, uint32_t rule, bool nested);

/* seq is re-fetched through (rule, alt) after anything that may add rules. */
static bool parse_sequence(gp *p, uint32_t rule, uint32_t alt, bool nested) {
#define SEQ (&p->b->rules[rule].alts[alt])
    uint32_t item = UINT32_MAX;
    for (;;) {
        skip_ws(p);
        if (p->i >= p->n) break;
        size_t at = p->i;
        char c = p->s[p->i];
        if (c == '|' || (c == ')' && nested)) break;
        if (!nested && at_rule_start(p)) break;
        if (c == '"') {
            item = SEQ->n;
            p->i++;
            for (;;) {
                if (p->i >= p->n) return fail(p, at, "unterminated string literal");
                if (p->s[p->i] == '"') {
                    p->i++;
                    break;
                }
                uint32_t cp;
                if (!parse_char(p, &cp) || !push_char(p, SEQ, cp)) return false;
            }
        } else if (c == '[') {
            item = SEQ->n;
            if (!parse_class(p, SEQ)) return false;
        } else if (c == '.') {
            p->i++;
            item = SEQ->n;
            gr_range r = {0, 0x10FFFF};
            uint32_t k = gb_class(p->b, &r, 1, false);
            if (k == UINT32_MAX || !gb_push(SEQ, GR_CLASS, k)) return oom(p);
        } else if (c == '(') {
            if (p->depth >= GR_MAX_NEST) return fail(p, at, "groups nested too deep");
            p->i++;
            uint32_t r = gb_anon_rule(p->b, p->b->rules[rule].name);
            if (r == UINT32_MAX) return oom(p);
            p->depth++;
            if (!parse_alternates(p, r, true)) return false;
            p->depth--;
            skip_ws(p);
            if (p->i >= p->n || p->s[p->i] != ')') return fail(p, at, "unclosed '('");
            p->i++;
            item = SEQ->n;
            if (!gb_push(SEQ, GR_REF, r)) return oom(p);
        } else if (name_char(c)) {
            size_t l = name_len(p, p->i);
            uint32_t r = gb_rule_id(p->b, p->s + p->i, l);
            if (r == UINT32_MAX) return oom(p);
            if (p->b->rules[r].ref_pos == UINT32_MAX) p->b->rules[r].ref_pos = (uint32_t)p->i;
            p->i += l;
            item = SEQ->n;
            if (!gb_push(SEQ, GR_REF, r)) return oom(p);
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (item == UINT32_MAX || item == SEQ->n)
                return fail(p, at, "quantifier without an item");
            uint32_t min = 0, max = UINT32_MAX;
            p->i++;
            if (c == '+') {
                min = 1;
            } else if (c == '?') {
                max = 1;
            } else if (c == '{') {
                skip_ws(p);
                if (!parse_uint(p, &min)) return false;
                skip_ws(p);
                max = min;
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    skip_ws(p);
                    max = UINT32_MAX;
                    if (p->i < p->n && p->s[p->i] != '}' && !parse_uint(p, &max)) return false;
                    skip_ws(p);
                }
                if (p->i >= p->n || p->s[p->i] != '}') return fail(p, at, "expected '}'");
                p->i++;
                if (max < min) return fail(p, at, "repetition {m,n} with n < m");
            }
            if (!apply_repeat(p, rule, SEQ, item, min, max)) return false;
            item = UINT32_MAX; /* x** is not meaningful; require a new item */
        } else if (c == ')') {
            return fail(p, at, "unmatched ')'");
        } else if (c == ':') {
            return fail(p, at, "unexpected '::=' (a rule name must start a line's definition)");
        } else {
            char msg[48];
            snprintf(msg, sizeof msg, "unexpected character '%c'", c);
            return fail(p, at, msg);
        }
    }
    return true;
#undef SEQ
}

static bool parse_alternates(gp *p, uint32_t rule, bool nested) {
    for (;;) {
        if (!gb_add_alt(p->b, rule)) return oom(p);
        if (!parse_sequence(p, rule, p->b->rules[rule].n_alts - 1, nested)) return false;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == '|') {
            p->i++;
            continue;
        }
        return true;
    }
}

ci_status gr_parse_gbnf(gb *b, const char *text, size_t len) {
    gp p;
    memset(&p, 0, sizeof p);
    p.b = b;
    p.s = text;
    p.n = len;
    p.err = ci_ok();
    for (;;) {
        skip_ws(&p);
        if (p.i >= p.n) break;
        size_t at = p.i;
        size_t l = name_len(&p, p.i);
        if (!l) {
            fail(&p, at, "expected a rule name");
            break;
        }
        uint32_t r = gb_rule_id(b, p.s + p.i, l);
        if (r == UINT32_MAX) {
            oom(&p);
            break;
        }
        p.i += l;
        skip_ws(&p);
        if (p.i + 3 > p.n || memcmp(p.s + p.i, "::=", 3)) {
            fail(&p, p.i, "expected '::='");
            break;
        }
        p.i += 3;
        if (b->rules[r].defined) {
            char msg[160];
            snprintf(msg, sizeof msg, "rule '%.100s' defined twice", b->rules[r].name);
            fail(&p, at, msg);
            break;
        }
        b->rules[r].defined = true;
        if (!parse_alternates(&p, r, false)) break;
        if (p.i < p.n && p.s[p.i] == ')') {
            fail(&p, p.i, "unmatched ')'");
            break;
        }
    }
    if (p.err.code == CI_OK) {
        for (uint32_t r = 0; r < b->n_rules; r++) {
            if (!b->rules[r].defined) {
                char msg[160];
                snprintf(msg, sizeof msg, "undefined rule '%.100s'", b->rules[r].name);
                fail(&p, b->rules[r].ref_pos == UINT32_MAX ? 0 : b->rules[r].ref_pos, msg);
                break;
            }
        }
    }
    return p.err;
}

/* The GBNF entry points: text -> a fresh builder -> a ci_grammar. They live
 * with the front end, not in builder.c, so the builder depends on no front
 * end (the JSON Schema and regex compilers reach the builder through here). */
ci_status gr_compile_text(const char *text, size_t len, ci_grammar **out, char *err,
                          size_t errlen) {
    *out = NULL;
    gb b;
    gb_init(&b);
    ci_status s = gr_parse_gbnf(&b, text, len);
    if (s.code == CI_OK) s = gr_build(&b, out);
    gb_free(&b);
    return gr_report(s, err, errlen);
}

ci_status ci_grammar_from_gbnf(const char *text, size_t len, ci_grammar **out, char *err,
                               size_t errlen) {
    return gr_compile_text(text, len, out, err, errlen);
}
