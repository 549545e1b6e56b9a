/* jinja_value.h — the render state and the values of a render
 * (jinja_value.c), shared by the evaluator's files. */
#ifndef CINFER_TOKENIZER_JINJA_VALUE_H
#define CINFER_TOKENIZER_JINJA_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

/* A scope: its variables and the enclosing scope. */
typedef struct frame frame;
struct frame {
    jv_dict vars;
    frame *parent;
};

/* A callable value: a global function, a bound method or a macro. */
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

/* The state of one render: arena, limits, budget counters, first error,
 * output and the global scope. */
typedef struct R {
    jn_arena a;
    jn_limits lim;
    uint64_t steps;
    int depth;
    ci_status err;
    sbuf *out;
    frame *globals;
} R;

/* Evaluated call arguments: positional, then keyword. */
typedef struct args {
    jv *pos;
    size_t np;
    const char **kn;
    jv *kv;
    size_t nk;
} args;

static const jv UNDEF = {.t = JV_UNDEF};
static const jv NONE = {.t = JV_NONE};

/* The tojson filter's options. */
typedef struct json_opts {
    const char *indent; /* NULL = compact-ish */
    size_t indent_n;
    const char *item_sep, *key_sep;
    bool sort_keys;
    bool ensure_ascii;
} json_opts;

/* Work done inside one step that grows with data size (scans, compares,
 * code-point offsets) is charged to the step budget too, so no single
 * expression can run unbounded. */
extern _Thread_local uint64_t jn_work;
#define WORK(n) (jn_work += (uint64_t)(n))

/* Errors: the first one is kept in r->err; all return false. */
bool jn_fail(R *r, const jn_node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool jn_nomem(R *r, const jn_node *n);
/* One evaluation step against the step budget (and the memory limit). */
bool jn_step(R *r, const jn_node *n);
/* The output buffer, bounded by max_output; sb_finish moves it into the arena. */
bool jn_sb_put(R *r, sbuf *b, const char *p, size_t n);
bool jn_sb_finish(R *r, sbuf *b, jv *out);
/* Values, lists and dicts, allocated in the render arena. */
bool jn_mk_strcpy(R *r, const char *p, size_t n, jv *out);
jv_list *jn_new_list(R *r, size_t cap);
bool jn_list_push(R *r, jv_list *l, jv v);
jv *jn_dict_find(const jv_dict *d, jv key);
jv *jn_dict_find_s(const jv_dict *d, const char *s, size_t n);
bool jn_dict_set(R *r, jv_dict *d, jv key, jv val);
bool jn_dict_set_s(R *r, jv_dict *d, const char *s, jv val);
bool jn_truthy(jv v);
bool jv_eq(jv a, jv b);
const char *jn_type_name(jv v);
bool jn_undef_err(R *r, const jn_node *n, jv v);
/* UTF-8 */
size_t jn_u8_dec(const char *s, size_t n, int32_t *cp);
size_t jn_u8_enc(char *o, int32_t cp);
size_t jn_u8_len(const char *s, size_t n);
size_t *jn_u8_offsets(R *r, const char *s, size_t n, size_t *count);
/* str(), repr(), json.dumps() and JSON -> value */
bool jn_repr_sb(R *r, jv v, sbuf *b, int depth);
bool jn_to_str_sb(R *r, jv v, sbuf *b);
bool jn_to_str(R *r, jv v, jv *out);
bool jn_json_dump(R *r, const jn_node *n, jv v, const json_opts *o, sbuf *b, int level);
bool jn_from_json(R *r, const json_t *j, jv *out, int depth);
/* Ordering, iteration, call arguments */
int jn_cmp_values(R *r, jv a, jv b, bool *ok);
bool jn_iter_list(R *r, const jn_node *n, jv v, jv_list **out);
bool jn_get_arg(const args *a, size_t i, const char *name, jv *out);
const char *jn_cstr(R *r, jv s);

static inline bool sb_puts(R *r, sbuf *b, const char *s) {
    return jn_sb_put(r, b, s, strlen(s));
}

static inline bool sb_putc(R *r, sbuf *b, char c) {
    return jn_sb_put(r, b, &c, 1);
}

/* ---- small value constructors and accessors, inline for every file ---- */

static inline jv mk_bool(bool b) {
    jv v = {.t = JV_BOOL};
    v.u.b = b;
    return v;
}

static inline jv mk_int(int64_t i) {
    jv v = {.t = JV_INT};
    v.u.i = i;
    return v;
}

static inline jv mk_float(double f) {
    jv v = {.t = JV_FLOAT};
    v.u.f = f;
    return v;
}

static inline jv mk_str(const char *p, size_t n) {
    jv v = {.t = JV_STR};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}

static inline jv mk_undef(const char *name) {
    jv v = {.t = JV_UNDEF};
    v.uname = name;
    return v;
}

static inline jv mk_list(jv_list *l) {
    jv v = {.t = JV_LIST};
    v.u.l = l;
    return v;
}

static inline jv mk_dict(jv_dict *d) {
    jv v = {.t = JV_DICT};
    v.u.d = d;
    return v;
}

static inline bool is_num(jv v) {
    return v.t == JV_BOOL || v.t == JV_INT || v.t == JV_FLOAT;
}

static inline double num_f(jv v) {
    return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b;
}

static inline int64_t num_i(jv v) {
    return v.t == JV_INT ? v.u.i : v.t == JV_BOOL ? v.u.b : 0;
}

static inline bool str_eq(jv a, const char *s, size_t n) {
    return a.t == JV_STR && a.u.s.n == n && !memcmp(a.u.s.p, s, n);
}

#endif
