/* jinja_lexer.c — Jinja2's lexer for the subset cinfer renders.
 *
 * Mirrors jinja2/lexer.py with trim_blocks=True, lstrip_blocks=True:
 *  - "{%-" / "{{-" / "{#-" strip all whitespace before the tag; "-%}" etc.
 *    strip all whitespace after it;
 *  - "%}" and "#}" swallow one following newline (trim_blocks) unless "+%}";
 *  - spaces/tabs between a line start and "{%" or "{#" are dropped
 *    (lstrip_blocks) unless "{%+";
 *  - inside a tag, "}}"/"%}" only close it when brackets are balanced;
 *  - {% raw %}...{% endraw %} is data; comments vanish.
 * The caller has already normalised newlines and dropped one trailing '\n'. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

typedef struct lexer {
    jn_arena *a;
    const char *src;
    size_t len, pos;
    int line;
    jn_tok *toks;
    size_t n, cap;
} lexer;

static ci_status lex_err(const lexer *L, const char *msg) {
    return ci_errorf(CI_ERR_FORMAT, "chat template line %d: %s", L->line, msg);
}

static ci_status push(lexer *L, jn_tok t) {
    if (L->n == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 256;
        jn_tok *nt = realloc(L->toks, nc * sizeof *nt);
        if (!nt) return ci_errorf(CI_ERR_NOMEM, "chat template: out of memory");
        L->toks = nt;
        L->cap = nc;
    }
    L->toks[L->n++] = t;
    return ci_ok();
}

/* Python str.isspace() for the UTF-8 character at p. */
bool jn_py_isspace(const char *p, size_t n, size_t *clen) {
    const unsigned char *u = (const unsigned char *)p;
    if (n == 0) return false;
    if (u[0] < 0x80) {
        *clen = 1;
        return u[0] == ' ' || (u[0] >= 0x09 && u[0] <= 0x0d) || (u[0] >= 0x1c && u[0] <= 0x1f);
    }
    if (n >= 2 && u[0] == 0xc2 && (u[1] == 0x85 || u[1] == 0xa0)) {
        *clen = 2;
        return true;
    }
    if (n >= 3 && u[0] == 0xe1 && u[1] == 0x9a && u[2] == 0x80) { /* U+1680 */
        *clen = 3;
        return true;
    }
    if (n >= 3 && u[0] == 0xe2 && u[1] == 0x80 &&
        ((u[2] >= 0x80 && u[2] <= 0x8a) || u[2] == 0xa8 || u[2] == 0xa9 || u[2] == 0xaf)) {
        *clen = 3;
        return true;
    }
    if (n >= 3 && u[0] == 0xe2 && u[1] == 0x81 && u[2] == 0x9f) { /* U+205F */
        *clen = 3;
        return true;
    }
    if (n >= 3 && u[0] == 0xe3 && u[1] == 0x80 && u[2] == 0x80) { /* U+3000 */
        *clen = 3;
        return true;
    }
    return false;
}

/* Length of the whitespace run starting at p (Python \s*). */
static size_t ws_span(const char *p, size_t n) {
    size_t i = 0, cl;
    while (i < n && jn_py_isspace(p + i, n - i, &cl)) i += cl;
    return i;
}

/* Length of text with trailing whitespace removed (Python str.rstrip()). */
static size_t rstrip_len(const char *p, size_t n) {
    size_t end = n;
    while (end > 0) {
        /* step back one UTF-8 character */
        size_t s = end - 1;
        while (s > 0 && ((unsigned char)p[s] & 0xc0) == 0x80 && end - s < 4) s--;
        size_t cl;
        if (jn_py_isspace(p + s, end - s, &cl) && cl == end - s)
            end = s;
        else
            break;
    }
    return end;
}

static void count_lines(lexer *L, size_t from, size_t to) {
    for (size_t i = from; i < to; i++)
        if (L->src[i] == '\n') L->line++;
}

static ci_status emit_data(lexer *L, const char *p, size_t n, int line) {
    if (n == 0) return ci_ok();
    jn_tok t = {.kind = JT_DATA, .line = line, .n = n};
    t.s = jn_strndup(L->a, p, n);
    if (!t.s) return ci_errorf(CI_ERR_NOMEM, "chat template: out of memory");
    return push(L, t);
}

/* Finds the next tag opener at or after pos: returns its offset or len. */
static size_t find_open(const lexer *L, size_t pos) {
    for (size_t i = pos; i + 1 < L->len; i++)
        if (L->src[i] == '{' && (L->src[i + 1] == '{' || L->src[i + 1] == '%' || L->src[i + 1] == '#'))
            return i;
    return L->len;
}

/* Applies the opener's whitespace control to the text before a tag. */
static size_t text_keep(const lexer *L, const char *text, size_t n, char sign, bool is_var,
                        bool line_starting) {
    if (sign == '-') return rstrip_len(text, n);
    if (sign != '+' && !is_var) {
        size_t l_pos = 0;
        for (size_t i = n; i > 0; i--)
            if (text[i - 1] == '\n') {
                l_pos = i;
                break;
            }
        if (l_pos > 0 || line_starting) {
            if (l_pos < n && ws_span(text + l_pos, n - l_pos) == n - l_pos) return l_pos;
        }
    }
    return n;
}

/* After a closing "%}" / "#}" / "}}" at L->pos (already past it), applies
 * the closer's whitespace handling. sign is the char before the closer. */
static bool after_close(lexer *L, char sign, bool block) {
    /* returns line_starting */
    size_t start = L->pos;
    if (sign == '-') {
        L->pos += ws_span(L->src + L->pos, L->len - L->pos);
    } else if (sign != '+' && block) {
        if (L->pos < L->len && L->src[L->pos] == '\n') L->pos++;
    }
    count_lines(L, start, L->pos);
    return L->pos > 0 && L->pos > start ? L->src[L->pos - 1] == '\n' : false;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Python "unicode-escape" decoding of a string literal's body. */
static ci_status unescape(lexer *L, const char *p, size_t n, jn_tok *t) {
    char *o = jn_alloc(L->a, n + 1);
    if (!o) return ci_errorf(CI_ERR_NOMEM, "chat template: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\\' || i + 1 >= n) {
            o[k++] = p[i];
            continue;
        }
        char c = p[++i];
        switch (c) {
        case '\n': break;
        case '\\': o[k++] = '\\'; break;
        case '\'': o[k++] = '\''; break;
        case '"': o[k++] = '"'; break;
        case 'a': o[k++] = '\a'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'v': o[k++] = '\v'; break;
        case 'x':
        case 'u':
        case 'U': {
            int nd = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int d = 0; d < nd; d++) {
                int h = i + 1 + (size_t)d < n ? hexval(p[i + 1 + d]) : -1;
                if (h < 0) return lex_err(L, "invalid \\x, \\u or \\U escape in a string");
                cp = cp * 16 + (uint32_t)h;
            }
            i += (size_t)nd;
            if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return lex_err(L, "invalid code point escape in a string");
            k += put_utf8(o + k, cp);
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                uint32_t cp = (uint32_t)(c - '0');
                for (int d = 0; d < 2 && i + 1 < n && p[i + 1] >= '0' && p[i + 1] <= '7'; d++)
                    cp = cp * 8 + (uint32_t)(p[++i] - '0');
                k += put_utf8(o + k, cp);
            } else {
                o[k++] = '\\';
                o[k++] = c;
            }
        }
    }
    o[k] = '\0';
    t->s = o;
    t->n = k;
    return ci_ok();
}

static bool is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* digits with single '_' separators; returns length (0 if none) */
static size_t digits_us(const char *p, size_t n) {
    size_t i = 0;
    if (i >= n || !is_digit(p[i])) return 0;
    while (i < n) {
        if (is_digit(p[i]))
            i++;
        else if (p[i] == '_' && i + 1 < n && is_digit(p[i + 1]))
            i++;
        else
            break;
    }
    return i;
}

static ci_status lex_number(lexer *L, jn_tok *t) {
    const char *p = L->src + L->pos;
    size_t n = L->len - L->pos;
    size_t i = digits_us(p, n);
    bool is_float = false;
    if (i < n && p[i] == '.' && i + 1 < n && is_digit(p[i + 1])) {
        is_float = true;
        i++;
        i += digits_us(p + i, n - i);
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        size_t j = i + 1;
        if (j < n && (p[j] == '+' || p[j] == '-')) j++;
        size_t d = digits_us(p + j, n - j);
        if (d) {
            is_float = true;
            i = j + d;
        }
    }
    char buf[128];
    size_t k = 0;
    for (size_t j = 0; j < i && k + 1 < sizeof buf; j++)
        if (p[j] != '_') buf[k++] = p[j];
    buf[k] = '\0';
    if (i >= sizeof buf) return lex_err(L, "number literal too long");
    t->line = L->line;
    if (is_float) {
        t->kind = JT_FLOAT;
        t->f = strtod(buf, NULL);
    } else {
        t->kind = JT_INT;
        if (buf[0] == '0' && k > 1) {
            for (size_t j = 1; j < k; j++)
                if (buf[j] != '0') return lex_err(L, "invalid integer literal");
        }
        char *end;
        unsigned long long v = strtoull(buf, &end, 10);
        if (v > (unsigned long long)INT64_MAX || k > 19)
            return lex_err(L, "integer literal too large");
        t->i = (int64_t)v;
    }
    L->pos += i;
    return ci_ok();
}

static const char *const OPS2[] = {"//", "**", "==", "!=", "<=", ">=", NULL};
static const char OPS1[] = "+-/*%~[](){}<>=.:|,;!";

/* Lexes the inside of a tag until its closer. kind: JT_VAR_END or JT_BLOCK_END.
 * Returns line_starting for the text that follows. */
static ci_status lex_tag(lexer *L, jn_tok_kind end_kind, bool *line_starting) {
    int depth = 0;
    for (;;) {
        if (L->pos >= L->len)
            return lex_err(L, end_kind == JT_VAR_END ? "unexpected end of template, expected '}}'"
                                                    : "unexpected end of template, expected '%}'");
        const char *p = L->src + L->pos;
        size_t n = L->len - L->pos;
        char close = end_kind == JT_VAR_END ? '}' : '%';
        if (depth == 0) {
            char sign = 0;
            size_t skip = 0;
            if (n >= 3 && (p[0] == '-' || p[0] == '+') && p[1] == close && p[2] == '}') {
                sign = p[0];
                skip = 3;
            } else if (n >= 2 && p[0] == close && p[1] == '}') {
                skip = 2;
            }
            if (skip && !(sign == '+' && end_kind == JT_VAR_END)) {
                jn_tok t = {.kind = end_kind, .line = L->line};
                CI_TRY(push(L, t));
                L->pos += skip;
                *line_starting = after_close(L, sign, end_kind == JT_BLOCK_END);
                return ci_ok();
            }
        }
        size_t ws = ws_span(p, n);
        if (ws) {
            count_lines(L, L->pos, L->pos + ws);
            L->pos += ws;
            continue;
        }
        jn_tok t = {.line = L->line};
        if (is_digit(p[0])) {
            CI_TRY(lex_number(L, &t));
            CI_TRY(push(L, t));
            continue;
        }
        if (is_name_start(p[0])) {
            size_t i = 1;
            while (i < n && (is_name_start(p[i]) || is_digit(p[i]))) i++;
            t.kind = JT_NAME;
            t.s = jn_strndup(L->a, p, i);
            t.n = i;
            if (!t.s) return ci_errorf(CI_ERR_NOMEM, "chat template: out of memory");
            L->pos += i;
            CI_TRY(push(L, t));
            continue;
        }
        if (p[0] == '\'' || p[0] == '"') {
            size_t i = 1;
            while (i < n && p[i] != p[0]) i += (p[i] == '\\' && i + 1 < n) ? 2 : 1;
            if (i >= n) return lex_err(L, "unterminated string literal");
            t.kind = JT_STRING;
            CI_TRY(unescape(L, p + 1, i - 1, &t));
            count_lines(L, L->pos, L->pos + i + 1);
            L->pos += i + 1;
            CI_TRY(push(L, t));
            continue;
        }
        size_t oplen = 0;
        for (int k = 0; OPS2[k]; k++)
            if (n >= 2 && p[0] == OPS2[k][0] && p[1] == OPS2[k][1]) oplen = 2;
        if (!oplen && p[0] && strchr(OPS1, p[0])) oplen = 1;
        if (!oplen || (oplen == 1 && p[0] == '!'))
            return ci_errorf(CI_ERR_FORMAT, "chat template line %d: unexpected char '%c'", L->line,
                             p[0]);
        if (oplen == 1) {
            if (p[0] == '(' || p[0] == '[' || p[0] == '{') depth++;
            if (p[0] == ')' || p[0] == ']' || p[0] == '}') {
                if (depth == 0) return lex_err(L, "unbalanced closing bracket");
                depth--;
            }
        }
        t.kind = JT_OP;
        t.s = jn_strndup(L->a, p, oplen);
        t.n = oplen;
        if (!t.s) return ci_errorf(CI_ERR_NOMEM, "chat template: out of memory");
        L->pos += oplen;
        CI_TRY(push(L, t));
    }
}

/* Is there "{%[-+]? raw [-+]?%}" at pos? Sets *end past it, *sign_open, *sign_close. */
static bool match_block_word(const lexer *L, size_t pos, const char *word, size_t *end,
                             char *sign_open, char *sign_close) {
    const char *p = L->src;
    size_t n = L->len, i = pos;
    if (i + 2 > n || p[i] != '{' || p[i + 1] != '%') return false;
    i += 2;
    *sign_open = 0;
    if (i < n && (p[i] == '-' || p[i] == '+')) *sign_open = p[i++];
    i += ws_span(p + i, n - i);
    size_t wl = strlen(word);
    if (i + wl > n || memcmp(p + i, word, wl)) return false;
    i += wl;
    if (i < n && (is_name_start(p[i]) || is_digit(p[i]))) return false;
    i += ws_span(p + i, n - i);
    *sign_close = 0;
    if (i < n && (p[i] == '-' || p[i] == '+')) *sign_close = p[i++];
    if (i + 2 > n || p[i] != '%' || p[i + 1] != '}') return false;
    *end = i + 2;
    return true;
}

ci_status jn_lex(jn_arena *a, const char *src, size_t len, jn_tok **toks, size_t *ntoks) {
    lexer L = {.a = a, .src = src, .len = len, .line = 1};
    ci_status st = ci_ok();
    bool line_starting = true;
    while (L.pos < L.len) {
        size_t open = find_open(&L, L.pos);
        const char *text = src + L.pos;
        size_t tn = open - L.pos;
        int text_line = L.line;
        if (open >= L.len) {
            if ((st = emit_data(&L, text, tn, text_line)).code) goto fail;
            count_lines(&L, L.pos, L.len);
            L.pos = L.len;
            break;
        }
        char kind = src[open + 1];
        char sign = open + 2 < len && (src[open + 2] == '-' || src[open + 2] == '+') ? src[open + 2]
                                                                                    : 0;
        size_t keep = text_keep(&L, text, tn, sign, kind == '{', line_starting);
        if ((st = emit_data(&L, text, keep, text_line)).code) goto fail;
        count_lines(&L, L.pos, open);
        size_t raw_end;
        char so, sc;
        if (kind == '%' && match_block_word(&L, open, "raw", &raw_end, &so, &sc)) {
            L.pos = raw_end;
            if (sc == '-') {
                size_t w = ws_span(src + L.pos, len - L.pos);
                count_lines(&L, L.pos, L.pos + w);
                L.pos += w;
            }
            /* find {% endraw %} */
            size_t j = L.pos, eend = 0;
            char eo = 0, ec = 0;
            for (; j < len; j++)
                if (src[j] == '{' && match_block_word(&L, j, "endraw", &eend, &eo, &ec)) break;
            if (j >= len) {
                st = lex_err(&L, "missing end of raw directive");
                goto fail;
            }
            const char *rt = src + L.pos;
            size_t rn = j - L.pos;
            bool ls = L.pos > 0 && src[L.pos - 1] == '\n';
            size_t rkeep = text_keep(&L, rt, rn, eo, false, ls);
            if ((st = emit_data(&L, rt, rkeep, L.line)).code) goto fail;
            count_lines(&L, L.pos, eend);
            L.pos = eend;
            line_starting = after_close(&L, ec, true);
            continue;
        }
        L.pos = open + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            /* comment: find "#}" */
            size_t j = L.pos;
            while (j + 1 < len && !(src[j] == '#' && src[j + 1] == '}')) j++;
            if (j + 1 >= len) {
                st = lex_err(&L, "missing end of comment tag");
                goto fail;
            }
            char csign = j > L.pos && (src[j - 1] == '-' || src[j - 1] == '+') ? src[j - 1] : 0;
            count_lines(&L, L.pos, j + 2);
            L.pos = j + 2;
            line_starting = after_close(&L, csign, true);
            continue;
        }
        jn_tok t = {.kind = kind == '{' ? JT_VAR_BEGIN : JT_BLOCK_BEGIN, .line = L.line};
        if ((st = push(&L, t)).code) goto fail;
        if ((st = lex_tag(&L, kind == '{' ? JT_VAR_END : JT_BLOCK_END, &line_starting)).code)
            goto fail;
    }
    jn_tok eof = {.kind = JT_EOF, .line = L.line};
    if ((st = push(&L, eof)).code) goto fail;
    /* move tokens into the arena so the caller frees nothing */
    jn_tok *at = jn_alloc(a, L.n * sizeof *at);
    if (!at) {
        st = ci_errorf(CI_ERR_NOMEM, "chat template: out of memory");
        goto fail;
    }
    memcpy(at, L.toks, L.n * sizeof *at);
    *toks = at;
    *ntoks = L.n;
    free(L.toks);
    return ci_ok();
fail:
    free(L.toks);
    return st;
}
