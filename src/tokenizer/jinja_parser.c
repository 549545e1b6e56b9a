/* jinja_parser.c — tokens -> AST, following jinja2/parser.py's grammar:
 * condexpr > or > and > not > compare > +,- > ~ > *,/,//,% > ** > unary >
 * primary with postfix (.attr, [item], (call)) and filters/tests. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

typedef struct parser {
    jn_arena *a;
    const jn_tok *t;
    size_t n, pos;
    int depth;
    ci_status err;
} parser;

static const jn_tok *cur(parser *P) {
    return &P->t[P->pos < P->n ? P->pos : P->n - 1];
}
static const jn_tok *peek(parser *P, size_t k) {
    size_t i = P->pos + k;
    return &P->t[i < P->n ? i : P->n - 1];
}
static void advance(parser *P) {
    if (P->pos + 1 < P->n) P->pos++;
}

static void *perr(parser *P, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void *perr(parser *P, const char *fmt, ...) {
    if (P->err.code == CI_OK) {
        char buf[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        P->err = ci_errorf(CI_ERR_FORMAT, "chat template line %d: %s", cur(P)->line, buf);
    }
    return NULL;
}

static bool is_op(const jn_tok *t, const char *op) {
    return t->kind == JT_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n);
}
static bool is_name(const jn_tok *t, const char *nm) {
    return t->kind == JT_NAME && t->n == strlen(nm) && !memcmp(t->s, nm, t->n);
}
static bool accept_op(parser *P, const char *op) {
    if (is_op(cur(P), op)) {
        advance(P);
        return true;
    }
    return false;
}
static bool accept_name(parser *P, const char *nm) {
    if (is_name(cur(P), nm)) {
        advance(P);
        return true;
    }
    return false;
}
static const char *tok_desc(const jn_tok *t) {
    switch (t->kind) {
    case JT_EOF: return "end of template";
    case JT_DATA: return "template data";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "'}}'";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "'%}'";
    case JT_STRING: return "string";
    case JT_INT:
    case JT_FLOAT: return "number";
    default: return t->s ? t->s : "?";
    }
}
static bool expect_op(parser *P, const char *op) {
    if (accept_op(P, op)) return true;
    perr(P, "expected '%s', got %s", op, tok_desc(cur(P)));
    return false;
}
static bool expect_kind(parser *P, jn_tok_kind k, const char *what) {
    if (cur(P)->kind == k) {
        advance(P);
        return true;
    }
    perr(P, "expected %s, got %s", what, tok_desc(cur(P)));
    return false;
}

static jn_node *mk(parser *P, jn_node_kind k, int line) {
    jn_node *n = jn_alloc(P->a, sizeof *n);
    if (!n) return perr(P, "out of memory");
    n->kind = k;
    n->line = line;
    return n;
}

typedef struct nvec {
    jn_node **v;
    size_t n, cap;
} nvec;

static bool nv_push(parser *P, nvec *v, jn_node *x) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 4;
        jn_node **nn = jn_alloc(P->a, nc * sizeof *nn);
        if (!nn) {
            perr(P, "out of memory");
            return false;
        }
        if (v->n) memcpy(nn, v->v, v->n * sizeof *nn);
        v->v = nn;
        v->cap = nc;
    }
    v->v[v->n++] = x;
    return true;
}

static jn_node *parse_expression(parser *P, bool with_condexpr);
static jn_node *parse_or(parser *P);
static jn_node *parse_unary(parser *P, bool with_filter);
static jn_node *parse_primary(parser *P);
static jn_node *parse_postfix(parser *P, jn_node *n);

static bool enter(parser *P) {
    if (++P->depth > JN_MAX_PARSE_DEPTH) {
        perr(P, "template nested too deeply");
        return false;
    }
    return true;
}

/* tuple: a, b, c (no parens) — returns single expr when no comma */
static jn_node *parse_tuple(parser *P, bool with_condexpr, bool simplified) {
    int line = cur(P)->line;
    nvec v = {0};
    bool comma = false;
    for (;;) {
        if (v.n) {
            if (!accept_op(P, ",")) break;
            comma = true;
        }
        const jn_tok *t = cur(P);
        if (v.n && (t->kind == JT_VAR_END || t->kind == JT_BLOCK_END || is_op(t, ")") ||
                    is_name(t, "in") || is_op(t, "=") || (is_name(t, "if") && !with_condexpr)))
            break;
        jn_node *e = simplified ? parse_primary(P) : parse_expression(P, with_condexpr);
        if (!e || !nv_push(P, &v, e)) return NULL;
    }
    if (!comma) return v.v[0];
    jn_node *n = mk(P, JN_TUPLE, line);
    if (!n) return NULL;
    n->kids = v.v;
    n->nkids = v.n;
    return n;
}

static bool parse_call_args(parser *P, jn_node *call) {
    /* after '(' */
    nvec v = {0};
    bool kw_seen = false;
    while (!is_op(cur(P), ")")) {
        if (v.n && !expect_op(P, ",")) return false;
        if (is_op(cur(P), ")")) break;
        if (is_op(cur(P), "*") || is_op(cur(P), "**")) {
            perr(P, "*args / **kwargs in calls are not supported");
            return false;
        }
        jn_node *arg;
        if (cur(P)->kind == JT_NAME && is_op(peek(P, 1), "=")) {
            arg = mk(P, JN_KWARG, cur(P)->line);
            if (!arg) return false;
            arg->str = cur(P)->s;
            arg->slen = cur(P)->n;
            advance(P);
            advance(P);
            arg->a = parse_expression(P, true);
            if (!arg->a) return false;
            kw_seen = true;
        } else {
            if (kw_seen) {
                perr(P, "positional argument follows keyword argument");
                return false;
            }
            arg = parse_expression(P, true);
            if (!arg) return false;
        }
        if (!nv_push(P, &v, arg)) return false;
    }
    advance(P); /* ')' */
    call->kids = v.v;
    call->nkids = v.n;
    return true;
}

static jn_node *parse_primary(parser *P) {
    const jn_tok *t = cur(P);
    jn_node *n;
    if (t->kind == JT_NAME) {
        n = mk(P, JN_CONST, t->line);
        if (!n) return NULL;
        if (is_name(t, "true") || is_name(t, "True") || is_name(t, "false") ||
            is_name(t, "False")) {
            n->ck = JC_BOOL;
            n->i = t->s[0] == 't' || t->s[0] == 'T';
        } else if (is_name(t, "none") || is_name(t, "None")) {
            n->ck = JC_NONE;
        } else {
            n->kind = JN_NAME;
            n->str = t->s;
            n->slen = t->n;
        }
        advance(P);
        return n;
    }
    if (t->kind == JT_STRING) {
        n = mk(P, JN_CONST, t->line);
        if (!n) return NULL;
        n->ck = JC_STR;
        /* adjacent literals concatenate */
        size_t total = 0, k = P->pos;
        while (k < P->n && P->t[k].kind == JT_STRING)
            total += P->t[k++].n;
        char *s = jn_alloc(P->a, total + 1);
        if (!s) return perr(P, "out of memory");
        size_t off = 0;
        while (cur(P)->kind == JT_STRING) {
            memcpy(s + off, cur(P)->s, cur(P)->n);
            off += cur(P)->n;
            advance(P);
        }
        n->str = s;
        n->slen = total;
        return n;
    }
    if (t->kind == JT_INT || t->kind == JT_FLOAT) {
        n = mk(P, JN_CONST, t->line);
        if (!n) return NULL;
        n->ck = t->kind == JT_INT ? JC_INT : JC_FLOAT;
        n->i = t->i;
        n->f = t->f;
        advance(P);
        return n;
    }
    if (is_op(t, "(")) {
        int line = t->line;
        advance(P);
        if (!enter(P)) return NULL;
        if (accept_op(P, ")")) {
            P->depth--;
            n = mk(P, JN_TUPLE, line);
            return n;
        }
        n = parse_expression(P, true);
        if (!n) return NULL;
        if (is_op(cur(P), ",")) {
            nvec v = {0};
            if (!nv_push(P, &v, n)) return NULL;
            while (accept_op(P, ",")) {
                if (is_op(cur(P), ")")) break;
                jn_node *e = parse_expression(P, true);
                if (!e || !nv_push(P, &v, e)) return NULL;
            }
            n = mk(P, JN_TUPLE, line);
            if (!n) return NULL;
            n->kids = v.v;
            n->nkids = v.n;
        }
        if (!expect_op(P, ")")) return NULL;
        P->depth--;
        return n;
    }
    if (is_op(t, "[")) {
        int line = t->line;
        advance(P);
        if (!enter(P)) return NULL;
        nvec v = {0};
        while (!is_op(cur(P), "]")) {
            if (v.n && !expect_op(P, ",")) return NULL;
            if (is_op(cur(P), "]")) break;
            jn_node *e = parse_expression(P, true);
            if (!e || !nv_push(P, &v, e)) return NULL;
        }
        advance(P);
        P->depth--;
        n = mk(P, JN_LIST, line);
        if (!n) return NULL;
        n->kids = v.v;
        n->nkids = v.n;
        return n;
    }
    if (is_op(t, "{")) {
        int line = t->line;
        advance(P);
        if (!enter(P)) return NULL;
        nvec v = {0};
        while (!is_op(cur(P), "}")) {
            if (v.n && !expect_op(P, ",")) return NULL;
            if (is_op(cur(P), "}")) break;
            jn_node *k = parse_expression(P, true);
            if (!k || !expect_op(P, ":")) return NULL;
            jn_node *e = parse_expression(P, true);
            if (!e || !nv_push(P, &v, k) || !nv_push(P, &v, e)) return NULL;
        }
        advance(P);
        P->depth--;
        n = mk(P, JN_DICT, line);
        if (!n) return NULL;
        n->kids = v.v;
        n->nkids = v.n;
        return n;
    }
    return perr(P, "unexpected %s", tok_desc(t));
}

static jn_node *parse_subscript(parser *P, jn_node *obj) {
    /* after '[' */
    int line = cur(P)->line;
    jn_node *parts[3] = {NULL, NULL, NULL};
    bool is_slice = false;
    int k = 0;
    for (;;) {
        if (is_op(cur(P), ":")) {
            is_slice = true;
            if (++k > 2) return perr(P, "invalid slice");
            advance(P);
            continue;
        }
        if (is_op(cur(P), "]")) break;
        if (parts[k]) return perr(P, "expected ']'");
        parts[k] = parse_expression(P, true);
        if (!parts[k]) return NULL;
    }
    advance(P);
    jn_node *n = mk(P, is_slice ? JN_SLICE : JN_ITEM, line);
    if (!n) return NULL;
    n->a = obj;
    if (is_slice) {
        n->b = parts[0];
        n->c = parts[1];
        n->d = parts[2];
    } else {
        if (!parts[0]) return perr(P, "empty subscript");
        n->b = parts[0];
    }
    return n;
}

static jn_node *parse_postfix(parser *P, jn_node *n) {
    for (;;) {
        const jn_tok *t = cur(P);
        if (is_op(t, ".")) {
            advance(P);
            const jn_tok *nm = cur(P);
            if (nm->kind == JT_NAME) {
                jn_node *a = mk(P, JN_ATTR, nm->line);
                if (!a) return NULL;
                a->a = n;
                a->str = nm->s;
                a->slen = nm->n;
                advance(P);
                n = a;
            } else if (nm->kind == JT_INT) {
                jn_node *a = mk(P, JN_ITEM, nm->line), *c = mk(P, JN_CONST, nm->line);
                if (!a || !c) return NULL;
                c->ck = JC_INT;
                c->i = nm->i;
                a->a = n;
                a->b = c;
                advance(P);
                n = a;
            } else {
                return perr(P, "expected a name after '.'");
            }
        } else if (is_op(t, "[")) {
            advance(P);
            n = parse_subscript(P, n);
            if (!n) return NULL;
        } else if (is_op(t, "(")) {
            jn_node *c = mk(P, JN_CALL, t->line);
            if (!c) return NULL;
            advance(P);
            c->a = n;
            if (!parse_call_args(P, c)) return NULL;
            n = c;
        } else {
            return n;
        }
    }
}

static jn_node *parse_filter_expr(parser *P, jn_node *n) {
    for (;;) {
        const jn_tok *t = cur(P);
        if (is_op(t, "|")) {
            advance(P);
            if (cur(P)->kind != JT_NAME) return perr(P, "expected a filter name after '|'");
            jn_node *f = mk(P, JN_FILTER, cur(P)->line);
            if (!f) return NULL;
            f->str = cur(P)->s;
            f->slen = cur(P)->n;
            advance(P);
            while (is_op(cur(P), ".") && peek(P, 1)->kind == JT_NAME) { /* dotted filter name */
                size_t l2 = f->slen + 1 + peek(P, 1)->n;
                char *nm = jn_alloc(P->a, l2 + 1);
                if (!nm) return perr(P, "out of memory");
                memcpy(nm, f->str, f->slen);
                nm[f->slen] = '.';
                memcpy(nm + f->slen + 1, peek(P, 1)->s, peek(P, 1)->n);
                f->str = nm;
                f->slen = l2;
                advance(P);
                advance(P);
            }
            f->a = n;
            if (accept_op(P, "(") && !parse_call_args(P, f)) return NULL;
            n = f;
        } else if (is_name(t, "is")) {
            advance(P);
            jn_node *f = mk(P, JN_TEST, cur(P)->line);
            if (!f) return NULL;
            if (accept_name(P, "not")) f->neg = true;
            if (cur(P)->kind != JT_NAME) return perr(P, "expected a test name after 'is'");
            f->str = cur(P)->s;
            f->slen = cur(P)->n;
            advance(P);
            f->a = n;
            const jn_tok *c = cur(P);
            if (is_op(c, "(")) {
                advance(P);
                if (!parse_call_args(P, f)) return NULL;
            } else if ((c->kind == JT_NAME || c->kind == JT_STRING || c->kind == JT_INT ||
                        c->kind == JT_FLOAT || is_op(c, "[") || is_op(c, "{")) &&
                       !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
                if (is_name(c, "is")) return perr(P, "you cannot chain multiple tests with is");
                jn_node *arg = parse_primary(P);
                if (!arg) return NULL;
                arg = parse_postfix(P, arg);
                if (!arg) return NULL;
                f->kids = jn_alloc(P->a, sizeof *f->kids);
                if (!f->kids) return perr(P, "out of memory");
                f->kids[0] = arg;
                f->nkids = 1;
            }
            n = f;
        } else if (is_op(t, "(")) {
            jn_node *c = mk(P, JN_CALL, t->line);
            if (!c) return NULL;
            advance(P);
            c->a = n;
            if (!parse_call_args(P, c)) return NULL;
            n = c;
        } else {
            return n;
        }
    }
}

static jn_node *parse_unary(parser *P, bool with_filter) {
    const jn_tok *t = cur(P);
    jn_node *n;
    if (!enter(P)) return NULL;
    if (is_op(t, "-") || is_op(t, "+")) {
        n = mk(P, JN_UNARY, t->line);
        if (!n) return NULL;
        n->str = t->s;
        advance(P);
        n->a = parse_unary(P, false);
        if (!n->a) return NULL;
    } else {
        n = parse_primary(P);
        if (!n) return NULL;
    }
    n = parse_postfix(P, n);
    if (n && with_filter) n = parse_filter_expr(P, n);
    P->depth--;
    return n;
}

static jn_node *binary(parser *P, const jn_tok *op, jn_node *l, jn_node *r) {
    if (!l || !r) return NULL;
    jn_node *n = mk(P, JN_BINARY, op->line);
    if (!n) return NULL;
    n->str = op->s;
    n->a = l;
    n->b = r;
    return n;
}

static jn_node *parse_pow(parser *P) {
    jn_node *l = parse_unary(P, true);
    while (l && is_op(cur(P), "**")) {
        const jn_tok *op = cur(P);
        advance(P);
        l = binary(P, op, l, parse_unary(P, true));
    }
    return l;
}

static jn_node *parse_math2(parser *P) {
    jn_node *l = parse_pow(P);
    while (l && (is_op(cur(P), "*") || is_op(cur(P), "/") || is_op(cur(P), "//") ||
                 is_op(cur(P), "%"))) {
        const jn_tok *op = cur(P);
        advance(P);
        l = binary(P, op, l, parse_pow(P));
    }
    return l;
}

static jn_node *parse_concat(parser *P) {
    jn_node *l = parse_math2(P);
    while (l && is_op(cur(P), "~")) {
        const jn_tok *op = cur(P);
        advance(P);
        l = binary(P, op, l, parse_math2(P));
    }
    return l;
}

static jn_node *parse_math1(parser *P) {
    jn_node *l = parse_concat(P);
    while (l && (is_op(cur(P), "+") || is_op(cur(P), "-"))) {
        const jn_tok *op = cur(P);
        advance(P);
        l = binary(P, op, l, parse_concat(P));
    }
    return l;
}

static jn_node *parse_compare(parser *P) {
    int line = cur(P)->line;
    jn_node *e = parse_math1(P);
    if (!e) return NULL;
    nvec ops = {0};
    for (;;) {
        const jn_tok *t = cur(P);
        const char *op = NULL;
        if (is_op(t, "==") || is_op(t, "!=") || is_op(t, "<") || is_op(t, "<=") || is_op(t, ">") ||
            is_op(t, ">=")) {
            op = t->s;
            advance(P);
        } else if (is_name(t, "in")) {
            op = "in";
            advance(P);
        } else if (is_name(t, "not") && is_name(peek(P, 1), "in")) {
            op = "notin";
            advance(P);
            advance(P);
        } else {
            break;
        }
        jn_node *c = mk(P, JN_CMPOP, t->line);
        if (!c) return NULL;
        c->str = op;
        c->a = parse_math1(P);
        if (!c->a || !nv_push(P, &ops, c)) return NULL;
    }
    if (!ops.n) return e;
    jn_node *n = mk(P, JN_CMP, line);
    if (!n) return NULL;
    n->a = e;
    n->kids = ops.v;
    n->nkids = ops.n;
    return n;
}

static jn_node *parse_not(parser *P) {
    if (is_name(cur(P), "not")) {
        jn_node *n = mk(P, JN_NOT, cur(P)->line);
        if (!n) return NULL;
        advance(P);
        if (!enter(P)) return NULL;
        n->a = parse_not(P);
        P->depth--;
        return n->a ? n : NULL;
    }
    return parse_compare(P);
}

static jn_node *parse_and(parser *P) {
    jn_node *l = parse_not(P);
    while (l && is_name(cur(P), "and")) {
        jn_node *n = mk(P, JN_AND, cur(P)->line);
        if (!n) return NULL;
        advance(P);
        n->a = l;
        n->b = parse_not(P);
        l = n->b ? n : NULL;
    }
    return l;
}

static jn_node *parse_or(parser *P) {
    jn_node *l = parse_and(P);
    while (l && is_name(cur(P), "or")) {
        jn_node *n = mk(P, JN_OR, cur(P)->line);
        if (!n) return NULL;
        advance(P);
        n->a = l;
        n->b = parse_and(P);
        l = n->b ? n : NULL;
    }
    return l;
}

static jn_node *parse_expression(parser *P, bool with_condexpr) {
    if (!enter(P)) return NULL;
    jn_node *e = parse_or(P);
    while (with_condexpr && e && is_name(cur(P), "if")) {
        jn_node *n = mk(P, JN_COND, cur(P)->line);
        if (!n) return NULL;
        advance(P);
        n->b = e;
        n->a = parse_or(P);
        if (!n->a) return NULL;
        if (accept_name(P, "else")) {
            n->c = parse_expression(P, true);
            if (!n->c) return NULL;
        }
        e = n;
    }
    P->depth--;
    return e;
}

/* ---- statements ---- */
static jn_node *parse_body(parser *P, const char *const *ends);

static bool end_block(parser *P) {
    return expect_kind(P, JT_BLOCK_END, "'%}'");
}

/* assignment target: name, name.attr, or tuple of names */
static jn_node *parse_target(parser *P, bool allow_attr) {
    int line = cur(P)->line;
    nvec v = {0};
    do {
        if (cur(P)->kind != JT_NAME) return perr(P, "expected a name to assign to");
        jn_node *n = mk(P, JN_NAME, cur(P)->line);
        if (!n) return NULL;
        n->str = cur(P)->s;
        n->slen = cur(P)->n;
        advance(P);
        if (allow_attr && is_op(cur(P), ".") && v.n == 0) {
            advance(P);
            if (cur(P)->kind != JT_NAME) return perr(P, "expected an attribute name");
            jn_node *a = mk(P, JN_ATTR, cur(P)->line);
            if (!a) return NULL;
            a->a = n;
            a->str = cur(P)->s;
            a->slen = cur(P)->n;
            advance(P);
            return a;
        }
        if (!nv_push(P, &v, n)) return NULL;
    } while (accept_op(P, ","));
    if (v.n == 1) return v.v[0];
    jn_node *t = mk(P, JN_TUPLE, line);
    if (!t) return NULL;
    t->kids = v.v;
    t->nkids = v.n;
    return t;
}

static jn_node *parse_for(parser *P, int line) {
    jn_node *n = mk(P, JN_FOR, line);
    if (!n) return NULL;
    n->t = parse_target(P, false);
    if (!n->t) return NULL;
    if (!accept_name(P, "in")) return perr(P, "expected 'in' in for loop");
    n->a = parse_tuple(P, false, false);
    if (!n->a) return NULL;
    if (accept_name(P, "if")) {
        n->d = parse_expression(P, true);
        if (!n->d) return NULL;
    }
    if (accept_name(P, "recursive")) return perr(P, "recursive for loops are not supported");
    if (!end_block(P)) return NULL;
    static const char *const ends[] = {"endfor", "else", NULL};
    n->b = parse_body(P, ends);
    if (!n->b) return NULL;
    if (accept_name(P, "else")) {
        if (!end_block(P)) return NULL;
        static const char *const ends2[] = {"endfor", NULL};
        n->c = parse_body(P, ends2);
        if (!n->c) return NULL;
    }
    advance(P); /* endfor */
    return end_block(P) ? n : NULL;
}

static jn_node *parse_if(parser *P, int line) {
    jn_node *n = mk(P, JN_IF, line);
    if (!n) return NULL;
    n->a = parse_tuple(P, true, false);
    if (!n->a || !end_block(P)) return NULL;
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    n->b = parse_body(P, ends);
    if (!n->b) return NULL;
    if (is_name(cur(P), "elif")) {
        int l2 = cur(P)->line;
        advance(P);
        n->c = parse_if(P, l2); /* consumes through endif */
        return n->c ? n : NULL;
    }
    if (accept_name(P, "else")) {
        if (!end_block(P)) return NULL;
        static const char *const ends2[] = {"endif", NULL};
        n->c = parse_body(P, ends2);
        if (!n->c) return NULL;
    }
    advance(P); /* endif */
    return end_block(P) ? n : NULL;
}

static jn_node *parse_set(parser *P, int line) {
    jn_node *n = mk(P, JN_SET, line);
    if (!n) return NULL;
    n->t = parse_target(P, true);
    if (!n->t) return NULL;
    if (accept_op(P, "=")) {
        n->a = parse_tuple(P, true, false);
        if (!n->a || !end_block(P)) return NULL;
        return n;
    }
    if (n->t->kind != JN_NAME && n->t->kind != JN_ATTR)
        return perr(P, "block set needs a single name");
    if (is_op(cur(P), "|")) {
        /* {% set x | filter %}: filters applied to the body */
        jn_node *f = parse_filter_expr(P, NULL);
        if (!f) return NULL;
        n->c = f;
    }
    if (!end_block(P)) return NULL;
    static const char *const ends[] = {"endset", NULL};
    n->b = parse_body(P, ends);
    if (!n->b) return NULL;
    advance(P);
    return end_block(P) ? n : NULL;
}

static bool parse_signature(parser *P, jn_node *n) {
    /* after '(' : name [= default], ... ')' */
    nvec v = {0};
    while (!is_op(cur(P), ")")) {
        if (v.n && !expect_op(P, ",")) return false;
        if (is_op(cur(P), ")")) break;
        if (cur(P)->kind != JT_NAME) {
            perr(P, "expected a parameter name");
            return false;
        }
        jn_node *p = mk(P, JN_NAME, cur(P)->line);
        if (!p) return false;
        p->str = cur(P)->s;
        p->slen = cur(P)->n;
        advance(P);
        if (accept_op(P, "=")) {
            p->a = parse_expression(P, true);
            if (!p->a) return false;
        }
        if (!nv_push(P, &v, p)) return false;
    }
    advance(P);
    n->kids = v.v;
    n->nkids = v.n;
    return true;
}

static jn_node *parse_macro(parser *P, int line) {
    jn_node *n = mk(P, JN_MACRO, line);
    if (!n) return NULL;
    if (cur(P)->kind != JT_NAME) return perr(P, "expected a macro name");
    n->str = cur(P)->s;
    n->slen = cur(P)->n;
    advance(P);
    if (!expect_op(P, "(")) return NULL;
    if (!parse_signature(P, n) || !end_block(P)) return NULL;
    static const char *const ends[] = {"endmacro", NULL};
    n->b = parse_body(P, ends);
    if (!n->b) return NULL;
    advance(P);
    if (cur(P)->kind == JT_NAME) advance(P);
    return end_block(P) ? n : NULL;
}

static jn_node *parse_statement(parser *P) {
    const jn_tok *t = cur(P);
    int line = t->line;
    if (t->kind != JT_NAME) return perr(P, "expected a statement name after '{%%'");
    if (!enter(P)) return NULL;
    jn_node *n = NULL;
    if (accept_name(P, "for")) {
        n = parse_for(P, line);
    } else if (accept_name(P, "if")) {
        n = parse_if(P, line);
    } else if (accept_name(P, "set")) {
        n = parse_set(P, line);
    } else if (accept_name(P, "macro")) {
        n = parse_macro(P, line);
    } else if (accept_name(P, "break") || accept_name(P, "continue")) {
        n = mk(P, is_name(t, "break") ? JN_BREAK : JN_CONTINUE, line);
        if (n && !end_block(P)) n = NULL;
    } else if (accept_name(P, "generation")) {
        if (!end_block(P)) return NULL;
        static const char *const ends[] = {"endgeneration", NULL};
        n = parse_body(P, ends);
        if (n) {
            advance(P);
            if (!end_block(P)) n = NULL;
        }
    } else if (accept_name(P, "call")) {
        n = mk(P, JN_CALLBLOCK, line);
        if (!n) return NULL;
        if (accept_op(P, "(")) {
            if (!parse_signature(P, n)) return NULL;
        }
        n->a = parse_expression(P, true);
        if (!n->a) return NULL;
        if (n->a->kind != JN_CALL) return perr(P, "expected a call after 'call'");
        if (!end_block(P)) return NULL;
        static const char *const ends[] = {"endcall", NULL};
        n->b = parse_body(P, ends);
        if (!n->b) return NULL;
        advance(P);
        if (!end_block(P)) n = NULL;
    } else if (accept_name(P, "filter")) {
        n = mk(P, JN_FILTERBLOCK, line);
        if (!n) return NULL;
        /* parse "name(args) | name2" as a filter chain on a NULL operand */
        jn_node *dummy = NULL, *f = NULL;
        for (;;) {
            if (cur(P)->kind != JT_NAME) return perr(P, "expected a filter name");
            f = mk(P, JN_FILTER, cur(P)->line);
            if (!f) return NULL;
            f->str = cur(P)->s;
            f->slen = cur(P)->n;
            advance(P);
            f->a = dummy;
            if (accept_op(P, "(") && !parse_call_args(P, f)) return NULL;
            dummy = f;
            if (!accept_op(P, "|")) break;
        }
        n->a = f;
        if (!end_block(P)) return NULL;
        static const char *const ends[] = {"endfilter", NULL};
        n->b = parse_body(P, ends);
        if (!n->b) return NULL;
        advance(P);
        if (!end_block(P)) n = NULL;
    } else if (accept_name(P, "with")) {
        n = mk(P, JN_WITH, line);
        if (!n) return NULL;
        nvec v = {0};
        while (cur(P)->kind != JT_BLOCK_END) {
            if (v.n && !expect_op(P, ",")) return NULL;
            jn_node *s = mk(P, JN_SET, cur(P)->line);
            if (!s) return NULL;
            s->t = parse_target(P, false);
            if (!s->t || !expect_op(P, "=")) return NULL;
            s->a = parse_expression(P, true);
            if (!s->a || !nv_push(P, &v, s)) return NULL;
        }
        n->kids = v.v;
        n->nkids = v.n;
        if (!end_block(P)) return NULL;
        static const char *const ends[] = {"endwith", NULL};
        n->b = parse_body(P, ends);
        if (!n->b) return NULL;
        advance(P);
        if (!end_block(P)) n = NULL;
    } else {
        return perr(P, "unknown or unsupported tag '%s'", t->s);
    }
    P->depth--;
    return n;
}

/* Parses until EOF (ends == NULL) or a "{% <end> " tag, leaving the end
 * name as the current token. */
static jn_node *parse_body(parser *P, const char *const *ends) {
    int line = cur(P)->line;
    nvec v = {0};
    for (;;) {
        const jn_tok *t = cur(P);
        if (t->kind == JT_EOF) {
            if (ends) return perr(P, "unexpected end of template, expected '%s'", ends[0]);
            break;
        }
        if (t->kind == JT_DATA) {
            jn_node *d = mk(P, JN_DATA, t->line);
            if (!d) return NULL;
            d->str = t->s;
            d->slen = t->n;
            advance(P);
            if (!nv_push(P, &v, d)) return NULL;
        } else if (t->kind == JT_VAR_BEGIN) {
            advance(P);
            jn_node *o = mk(P, JN_OUTPUT, t->line);
            if (!o) return NULL;
            o->a = parse_tuple(P, true, false);
            if (!o->a || !expect_kind(P, JT_VAR_END, "'}}'")) return NULL;
            if (!nv_push(P, &v, o)) return NULL;
        } else if (t->kind == JT_BLOCK_BEGIN) {
            advance(P);
            const jn_tok *nm = cur(P);
            if (ends && nm->kind == JT_NAME)
                for (int i = 0; ends[i]; i++)
                    if (is_name(nm, ends[i])) goto done;
            if (nm->kind == JT_NAME &&
                (is_name(nm, "endfor") || is_name(nm, "endif") || is_name(nm, "else") ||
                 is_name(nm, "elif") || is_name(nm, "endmacro") || is_name(nm, "endset") ||
                 is_name(nm, "endcall") || is_name(nm, "endfilter") || is_name(nm, "endwith") ||
                 is_name(nm, "endgeneration")))
                return perr(P, "unexpected '%s'", nm->s);
            jn_node *s = parse_statement(P);
            if (!s || !nv_push(P, &v, s)) return NULL;
        } else {
            return perr(P, "unexpected %s", tok_desc(t));
        }
    }
done:;
    jn_node *b = mk(P, JN_BODY, line);
    if (!b) return NULL;
    b->kids = v.v;
    b->nkids = v.n;
    return b;
}

ci_status jn_parse(jn_arena *a, const jn_tok *toks, size_t ntoks, jn_node **root) {
    parser P = {.a = a, .t = toks, .n = ntoks, .err = ci_ok()};
    jn_node *r = parse_body(&P, NULL);
    if (!r) {
        if (P.err.code == CI_OK) P.err = ci_errorf(CI_ERR_INTERNAL, "chat template: parse failed");
        return P.err;
    }
    CI_TRY(jn_check_names(r));
    *root = r;
    return ci_ok();
}
