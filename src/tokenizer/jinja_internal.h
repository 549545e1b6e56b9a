/* jinja_internal.h — the Jinja2-subset interpreter behind chat_template.c.
 *
 * Pipeline: jinja_lex (source -> tokens, applying whitespace control,
 * trim_blocks and lstrip_blocks as Jinja2's lexer does) -> jinja_parse
 * (tokens -> AST) -> jinja_render (AST + context -> text).
 *
 * Memory: the AST lives in the compile arena; every value made during a
 * render lives in a per-render arena freed in one go, so values need no
 * reference counting. Everything is bounded (parse depth, call depth, steps,
 * output size, arena size) so a hostile template ends with an error. */
#ifndef CINFER_TOKENIZER_JINJA_INTERNAL_H
#define CINFER_TOKENIZER_JINJA_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

/* ---- arena ---- */
typedef struct jn_chunk jn_chunk;
typedef struct jn_arena {
    jn_chunk *head;
    size_t used, limit; /* bytes handed out so far; 0 limit = unbounded */
    bool oom;           /* an allocation failed or went over the limit */
    bool over_limit;    /* ... because of the limit */
} jn_arena;

void *jn_alloc(jn_arena *a, size_t n); /* zeroed; NULL on failure (sets a->oom) */
char *jn_strndup(jn_arena *a, const char *s, size_t n);
void jn_arena_free(jn_arena *a);

/* ---- tokens ---- */
typedef enum jn_tok_kind {
    JT_EOF,
    JT_DATA,        /* raw text */
    JT_VAR_BEGIN,   /* {{ */
    JT_VAR_END,     /* }} */
    JT_BLOCK_BEGIN, /* {% */
    JT_BLOCK_END,   /* %} */
    JT_NAME,
    JT_STRING,
    JT_INT,
    JT_FLOAT,
    JT_OP, /* operator or punctuation; text in s */
} jn_tok_kind;

typedef struct jn_tok {
    jn_tok_kind kind;
    int line;
    const char *s; /* DATA/NAME/STRING/OP text (arena, NUL-terminated) */
    size_t n;
    int64_t i;
    double f;
} jn_tok;

ci_status jn_lex(jn_arena *a, const char *src, size_t len, jn_tok **toks, size_t *ntoks);

/* ---- AST ---- */
typedef enum jn_node_kind {
    /* statements */
    JN_BODY,      /* list of nodes in kids */
    JN_DATA,      /* str */
    JN_OUTPUT,    /* {{ a }} */
    JN_IF,        /* a = cond, b = then body, c = else (IF or BODY or NULL) */
    JN_FOR,       /* target in t, a = iter, b = body, c = else body, d = filter cond */
    JN_SET,       /* target t, a = value (or NULL and b = body for block set) */
    JN_MACRO,     /* str = name, params/defaults in kids (NAME nodes with a = default), b = body */
    JN_CALLBLOCK, /* {% call m(...) %}body{% endcall %}: a = call expr, b = body */
    JN_FILTERBLOCK, /* a = filter chain applied to FILTER_ARG, b = body */
    JN_WITH,        /* kids = SET nodes, b = body */
    JN_BREAK,
    JN_CONTINUE,
    /* expressions */
    JN_CONST, /* val index: consts are made at render time from fields below */
    JN_NAME,  /* str */
    JN_LIST,  /* kids */
    JN_TUPLE, /* kids */
    JN_DICT,  /* kids: alternating key, value */
    JN_ATTR,  /* a.str */
    JN_ITEM,  /* a[b] */
    JN_SLICE, /* a[b:c:d], missing parts NULL */
    JN_CALL,  /* a(kids...), keyword args are JN_KWARG nodes (str = name, a = value) */
    JN_KWARG,
    JN_FILTER, /* a | str(kids); a NULL inside filter blocks */
    JN_TEST,   /* a is str(kids); neg flag */
    JN_UNARY,  /* op a */
    JN_BINARY, /* a op b */
    JN_CMP,    /* a then kids = (op in str of each kid CMPOP node, operand a) */
    JN_CMPOP,
    JN_AND,
    JN_OR,
    JN_NOT,
    JN_COND, /* b if a else c */
} jn_node_kind;

typedef enum jn_const_kind { JC_NONE, JC_BOOL, JC_INT, JC_FLOAT, JC_STR } jn_const_kind;

typedef struct jn_node jn_node;
struct jn_node {
    jn_node_kind kind;
    int line;
    const char *str; /* name / operator / data */
    size_t slen;
    jn_const_kind ck;
    int64_t i;
    double f;
    bool neg;
    jn_node *a, *b, *c, *d, *t;
    jn_node **kids;
    size_t nkids;
};

#define JN_MAX_PARSE_DEPTH 96

ci_status jn_parse(jn_arena *a, const jn_tok *toks, size_t ntoks, jn_node **root);
/* Fails on a filter or test name the interpreter does not know, except where
 * Jinja2 defers that error to render time (jinja_names.c). */
ci_status jn_check_names(const jn_node *root);

/* ---- values ---- */
typedef enum jv_type {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST, /* also tuples (l->tuple) */
    JV_DICT, /* also namespaces (d->ns) and loop objects */
    JV_MACRO,
    JV_FUNC, /* builtin global function or bound method */
} jv_type;

typedef struct jv_list jv_list;
typedef struct jv_dict jv_dict;
typedef struct jv_func jv_func;

typedef struct jv {
    jv_type t;
    uint8_t mk; /* JV_STR: a markupsafe.Markup (from |safe or |escape) */
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        jv_list *l;
        jv_dict *d;
        const jn_node *m;
        jv_func *fn;
    } u;
    const char *uname; /* JV_UNDEF: the name that was missing (for messages), may be NULL */
} jv;

struct jv_list {
    jv *v;
    size_t n, cap;
    bool tuple;
    uint8_t view; /* JL_*: a dict view or a lazy filter result, for printing and truthiness */
    const char *lazy_err; /* JL_GEN whose input was not iterable: fails when iterated */
};

enum { JL_LIST = 0, JL_KEYS, JL_VALUES, JL_ITEMS, JL_GEN };

struct jv_dict {
    jv *k, *v;
    size_t n, cap;
    bool ns;        /* namespace(): attribute assignment allowed */
    uint32_t *hidx; /* open-addressing index (entry+1, 0 = empty) once the dict grows */
    size_t hcap;
    bool nohash; /* a key the index cannot hash: linear lookups only */
};

/* ---- render ---- */
typedef struct jn_limits {
    uint64_t max_steps; /* evaluation steps */
    size_t max_output;  /* bytes of rendered text */
    size_t max_memory;  /* bytes of render arena */
    int max_depth;      /* nested macro calls / evaluation recursion */
} jn_limits;

ci_status jn_render(const jn_node *root, const json_t *context, const jn_limits *lim, char **out,
                    size_t *len);

/* Python-style helpers shared with tests. */
bool jn_py_isspace(const char *p, size_t n, size_t *clen); /* at p: a whitespace char? */

#endif
