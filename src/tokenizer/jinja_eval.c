/* jinja_eval.c — renders a parsed template: scopes, expressions,
 * statements, macro and function calls. Values live in jinja_value.c,
 * operators in jinja_ops.c, methods and globals in jinja_methods.c, tests
 * and filters in jinja_filters.c. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_filters.h"
#include "tokenizer/jinja_methods.h"
#include "tokenizer/jinja_ops.h"
#include "tokenizer/jinja_value.h"

enum { X_OK = 0, X_BREAK, X_CONTINUE, X_ERR };

/* ------------------------------------------------------------ scopes */

static jv *lookup(frame *f, const char *name, size_t n) {
    for (; f; f = f->parent) {
        jv *v = jn_dict_find_s(&f->vars, name, n);
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

static bool eval_args(R *r, frame *f, const jn_node *n, args *a) {
    memset(a, 0, sizeof *a);
    if (!n->nkids) return true;
    a->pos = jn_alloc(&r->a, n->nkids * sizeof *a->pos);
    a->kv = jn_alloc(&r->a, n->nkids * sizeof *a->kv);
    a->kn = jn_alloc(&r->a, n->nkids * sizeof *a->kn);
    if (!a->pos || !a->kv || !a->kn) return jn_nomem(r, n);
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

static bool eval(R *r, frame *f, const jn_node *n, jv *out) {
    if (!jn_step(r, n)) return false;
    if (++r->depth > r->lim.max_depth) {
        r->depth--;
        return jn_fail(r, n, "template recursion deeper than %d", r->lim.max_depth);
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
        jv_list *l = jn_new_list(r, n->nkids);
        if (!l) {
            ok = jn_nomem(r, n);
            break;
        }
        l->tuple = n->kind == JN_TUPLE;
        for (size_t i = 0; i < n->nkids && ok; i++)
            ok = eval(r, f, n->kids[i], &l->v[l->n++]);
        *out = mk_list(l);
        break;
    }
    case JN_DICT: {
        jv_dict *d = jn_alloc(&r->a, sizeof *d);
        if (!d) {
            ok = jn_nomem(r, n);
            break;
        }
        for (size_t i = 0; i + 1 < n->nkids && ok; i += 2) {
            jv k, v;
            ok = eval(r, f, n->kids[i], &k) && eval(r, f, n->kids[i + 1], &v);
            if (ok && (k.t == JV_LIST && !k.u.l->tuple))
                ok = jn_fail(r, n, "unhashable type: 'list'");
            if (ok && k.t == JV_DICT) ok = jn_fail(r, n, "unhashable type: 'dict'");
            if (ok) ok = jn_dict_set(r, d, k, v);
        }
        *out = mk_dict(d);
        break;
    }
    case JN_ATTR: {
        jv obj;
        ok = eval(r, f, n->a, &obj) && jn_get_attr(r, n, obj, n->str, n->slen, out);
        break;
    }
    case JN_ITEM: {
        jv obj, key;
        ok = eval(r, f, n->a, &obj) && eval(r, f, n->b, &key) && jn_get_index(r, n, obj, key, out);
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
        if (ok) ok = jn_do_slice(r, n, obj, s, e, st, out);
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
            ok = jn_apply_filter(r, f, n, name, v, &a, out);
        }
        break;
    }
    case JN_TEST: {
        jv v;
        args a;
        bool res = false;
        ok = eval(r, f, n->a, &v) && eval_args(r, f, n, &a) &&
             jn_apply_test(r, f, n, n->str, v, &a, &res);
        *out = mk_bool(n->neg ? !res : res);
        break;
    }
    case JN_UNARY: {
        jv v;
        ok = eval(r, f, n->a, &v);
        if (!ok) break;
        if (v.t == JV_UNDEF) {
            ok = jn_undef_err(r, n, v);
        } else if (!is_num(v)) {
            ok = jn_fail(r, n, "bad operand type for unary %s: '%s'", n->str, jn_type_name(v));
        } else if (n->str[0] == '-') {
            if (v.t == JV_FLOAT)
                *out = mk_float(-v.u.f);
            else if (num_i(v) == INT64_MIN)
                ok = jn_fail(r, n, "integer overflow");
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
            ok = jn_to_str(r, a, &sa) && jn_to_str(r, b, &sb) && jn_concat_str(r, sa, sb, out);
        } else if (n->str[0] == '%' && a.t == JV_STR) {
            ok = jn_percent_format(r, n, a, b, out);
        } else {
            ok = jn_arith(r, n, n->str, a, b, out);
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
                 jn_eval_cmp(r, n, n->kids[i]->str, left, right, &res);
            left = right;
        }
        *out = mk_bool(res);
        break;
    }
    case JN_AND: {
        jv a;
        ok = eval(r, f, n->a, &a);
        if (ok) {
            if (!jn_truthy(a))
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
            if (jn_truthy(a))
                *out = a;
            else
                ok = eval(r, f, n->b, out);
        }
        break;
    }
    case JN_NOT: {
        jv a;
        ok = eval(r, f, n->a, &a);
        *out = mk_bool(!jn_truthy(a));
        break;
    }
    case JN_COND: {
        jv c;
        ok = eval(r, f, n->a, &c);
        if (ok) {
            if (jn_truthy(c))
                ok = eval(r, f, n->b, out);
            else if (n->c)
                ok = eval(r, f, n->c, out);
            else
                *out = UNDEF;
        }
        break;
    }
    default: ok = jn_fail(r, n, "cannot evaluate this node as an expression");
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
    return jn_sb_finish(r, &cap, out);
}

static bool call_macro(R *r, const jn_node *n, jv_func *fn, args *a, jv *out) {
    const jn_node *m = fn->node;
    if (a->np > m->nkids)
        return jn_fail(r, n, "macro '%s' takes not more than %zu argument(s)", m->str, m->nkids);
    if (r->depth + 8 > r->lim.max_depth)
        return jn_fail(r, n, "template recursion deeper than %d", r->lim.max_depth);
    frame *mf = new_frame(r, fn->closure);
    if (!mf) return jn_nomem(r, n);
    for (size_t k = 0; k < a->nk; k++) {
        bool known = false;
        for (size_t i = 0; i < m->nkids; i++)
            if (!strcmp(m->kids[i]->str, a->kn[k])) known = true;
        if (!known && strcmp(a->kn[k], "caller"))
            return jn_fail(r, n, "macro '%s' has no argument '%s'", m->str, a->kn[k]);
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
                    if (found) return jn_fail(r, n, "duplicate argument '%s'", p->str);
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
        if (!jn_dict_set_s(r, &mf->vars, p->str, v)) return false;
    }
    if (fn->caller) {
        jv_func *c = jn_alloc(&r->a, sizeof *c);
        if (!c) return jn_nomem(r, n);
        c->kind = FN_CALLER;
        c->node = fn->caller;
        c->closure = fn->caller_frame;
        jv cv = {.t = JV_FUNC};
        cv.u.fn = c;
        if (!jn_dict_set_s(r, &mf->vars, "caller", cv)) return false;
    }
    r->depth += 4;
    bool ok = render_body_capture(r, mf, m->b, out);
    r->depth -= 4;
    return ok;
}

static bool call_value(R *r, frame *f, const jn_node *n, jv callee, args *a, jv *out) {
    (void)f;
    if (callee.t == JV_UNDEF) return jn_undef_err(r, n, callee);
    if (callee.t == JV_MACRO) return call_macro(r, n, callee.u.fn, a, out);
    if (callee.t != JV_FUNC)
        return jn_fail(r, n, "'%s' object is not callable", jn_type_name(callee));
    jv_func *fn = callee.u.fn;
    switch (fn->kind) {
    case FN_GLOBAL: return jn_call_global(r, n, fn->name, fn->self, a, out);
    case FN_METHOD: return jn_call_method(r, n, fn->self, fn->name, a, out);
    case FN_CALLER: {
        frame *cf = new_frame(r, fn->closure);
        if (!cf) return jn_nomem(r, n);
        if (fn->node->nkids) { /* {% call(x) %} parameters */
            for (size_t i = 0; i < fn->node->nkids; i++) {
                jv v = i < a->np ? a->pos[i] : mk_undef(fn->node->kids[i]->str);
                if (!jn_dict_set_s(r, &cf->vars, fn->node->kids[i]->str, v)) return false;
            }
        }
        r->depth += 4;
        bool ok = render_body_capture(r, cf, fn->node->b, out);
        r->depth -= 4;
        return ok;
    }
    default: return jn_fail(r, n, "object is not callable");
    }
}

/* ---------------------------------------------------------- statements */

static bool emit(R *r, jv v) {
    return jn_to_str_sb(r, v, r->out);
}

static bool assign(R *r, frame *f, const jn_node *t, jv v) {
    if (t->kind == JN_NAME) return jn_dict_set_s(r, &f->vars, t->str, v);
    if (t->kind == JN_ATTR) {
        jv *obj = lookup(f, t->a->str, t->a->slen);
        if (!obj || obj->t != JV_DICT || !obj->u.d->ns)
            return jn_fail(r, t, "cannot assign attribute on non-namespace object");
        return jn_dict_set_s(r, obj->u.d, t->str, v);
    }
    /* tuple unpack */
    jv_list *l;
    if (!jn_iter_list(r, t, v, &l)) return false;
    if (l->n != t->nkids)
        return jn_fail(r, t, "cannot unpack %zu values into %zu names", l->n, t->nkids);
    for (size_t i = 0; i < t->nkids; i++)
        if (!assign(r, f, t->kids[i], l->v[i])) return false;
    return true;
}

static int exec_for(R *r, frame *f, const jn_node *n) {
    jv it;
    if (!eval(r, f, n->a, &it)) return X_ERR;
    jv_list *src;
    if (!jn_iter_list(r, n, it, &src)) return X_ERR;
    jv_list *items = src;
    if (n->d) { /* for x in xs if cond */
        items = jn_new_list(r, 0);
        if (!items) return jn_nomem(r, n), X_ERR;
        for (size_t i = 0; i < src->n; i++) {
            frame *tf = new_frame(r, f);
            if (!tf) return jn_nomem(r, n), X_ERR;
            if (!assign(r, tf, n->t, src->v[i])) return X_ERR;
            jv c;
            if (!eval(r, tf, n->d, &c)) return X_ERR;
            if (jn_truthy(c) && !jn_list_push(r, items, src->v[i])) return X_ERR;
        }
    }
    size_t len = items->n;
    if (len == 0) return n->c ? exec(r, f, n->c) : X_OK;
    for (size_t i = 0; i < len; i++) {
        if (!jn_step(r, n)) return X_ERR;
        frame *lf = new_frame(r, f);
        jv_dict *loop = jn_alloc(&r->a, sizeof *loop);
        if (!lf || !loop) return jn_nomem(r, n), X_ERR;
        bool ok = jn_dict_set_s(r, loop, "index0", mk_int((int64_t)i)) &&
                  jn_dict_set_s(r, loop, "index", mk_int((int64_t)i + 1)) &&
                  jn_dict_set_s(r, loop, "revindex", mk_int((int64_t)(len - i))) &&
                  jn_dict_set_s(r, loop, "revindex0", mk_int((int64_t)(len - i - 1))) &&
                  jn_dict_set_s(r, loop, "first", mk_bool(i == 0)) &&
                  jn_dict_set_s(r, loop, "last", mk_bool(i + 1 == len)) &&
                  jn_dict_set_s(r, loop, "length", mk_int((int64_t)len)) &&
                  jn_dict_set_s(r, loop, "depth", mk_int(1)) &&
                  jn_dict_set_s(r, loop, "depth0", mk_int(0));
        if (ok) {
            jv_func *cyc = jn_alloc(&r->a, sizeof *cyc);
            if (!cyc) return jn_nomem(r, n), X_ERR;
            cyc->kind = FN_GLOBAL;
            cyc->name = "loop.cycle";
            cyc->self = mk_int((int64_t)i);
            jv cv = {.t = JV_FUNC};
            cv.u.fn = cyc;
            ok = jn_dict_set_s(r, loop, "cycle", cv);
        }
        if (ok && i > 0) ok = jn_dict_set_s(r, loop, "previtem", items->v[i - 1]);
        if (ok && i + 1 < len) ok = jn_dict_set_s(r, loop, "nextitem", items->v[i + 1]);
        if (ok) ok = jn_dict_set_s(r, &lf->vars, "loop", mk_dict(loop));
        if (ok) ok = assign(r, lf, n->t, items->v[i]);
        if (!ok) return X_ERR;
        int x = exec(r, lf, n->b);
        if (x == X_ERR) return X_ERR;
        if (x == X_BREAK) break;
    }
    return X_OK;
}

static int exec(R *r, frame *f, const jn_node *n) {
    if (!jn_step(r, n)) return X_ERR;
    switch (n->kind) {
    case JN_BODY:
        for (size_t i = 0; i < n->nkids; i++) {
            int x = exec(r, f, n->kids[i]);
            if (x != X_OK) return x;
        }
        return X_OK;
    case JN_DATA: return jn_sb_put(r, r->out, n->str, n->slen) ? X_OK : X_ERR;
    case JN_OUTPUT: {
        jv v;
        if (!eval(r, f, n->a, &v) || !emit(r, v)) return X_ERR;
        return X_OK;
    }
    case JN_IF: {
        jv c;
        if (!eval(r, f, n->a, &c)) return X_ERR;
        if (jn_truthy(c)) return exec(r, f, n->b);
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
                for (const jn_node *x = fl; x && k < 32; x = x->a)
                    chain[k++] = x;
                while (k-- > 0) {
                    args a;
                    if (chain[k]->kind != JN_FILTER)
                        return jn_fail(r, n, "bad block set filter"), X_ERR;
                    if (!eval_args(r, f, chain[k], &a) ||
                        !jn_apply_filter(r, f, chain[k], chain[k]->str, v, &a, &v))
                        return X_ERR;
                }
            }
        }
        return assign(r, f, n->t, v) ? X_OK : X_ERR;
    }
    case JN_MACRO: {
        jv_func *fn = jn_alloc(&r->a, sizeof *fn);
        if (!fn) return jn_nomem(r, n), X_ERR;
        fn->kind = FN_MACRO;
        fn->node = n;
        fn->closure = f;
        jv m = {.t = JV_MACRO};
        m.u.fn = fn;
        return jn_dict_set_s(r, &f->vars, n->str, m) ? X_OK : X_ERR;
    }
    case JN_CALLBLOCK: {
        jv callee;
        args a;
        if (!eval(r, f, n->a->a, &callee) || !eval_args(r, f, n->a, &a)) return X_ERR;
        if (callee.t != JV_MACRO) return jn_fail(r, n, "{%% call %%} needs a macro"), X_ERR;
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
        for (const jn_node *x = n->a; x && k < 32; x = x->a)
            chain[k++] = x;
        while (k-- > 0) {
            args a;
            if (!eval_args(r, f, chain[k], &a) ||
                !jn_apply_filter(r, f, chain[k], chain[k]->str, v, &a, &v))
                return X_ERR;
        }
        return emit(r, v) ? X_OK : X_ERR;
    }
    case JN_WITH: {
        frame *wf = new_frame(r, f);
        if (!wf) return jn_nomem(r, n), X_ERR;
        for (size_t i = 0; i < n->nkids; i++) {
            jv v;
            if (!eval(r, f, n->kids[i]->a, &v) || !assign(r, wf, n->kids[i]->t, v)) return X_ERR;
        }
        return exec(r, wf, n->b);
    }
    case JN_BREAK: return X_BREAK;
    case JN_CONTINUE: return X_CONTINUE;
    default: return jn_fail(r, n, "cannot execute this node"), X_ERR;
    }
}

/* ------------------------------------------------------------ entry */

static bool add_global(R *r, const char *name) {
    jv_func *fn = jn_alloc(&r->a, sizeof *fn);
    if (!fn) return jn_nomem(r, NULL);
    fn->kind = FN_GLOBAL;
    fn->name = name;
    jv v = {.t = JV_FUNC};
    v.u.fn = fn;
    return jn_dict_set_s(r, &r->globals->vars, name, v);
}

ci_status jn_render(const jn_node *root, const json_t *context, const jn_limits *lim, char **out,
                    size_t *len) {
    *out = NULL;
    *len = 0;
    R r;
    memset(&r, 0, sizeof r);
    jn_work = 0;
    r.lim = *lim;
    r.a.limit = lim->max_memory;
    r.err = ci_ok();
    sbuf buf = {0};
    r.out = &buf;
    bool ok = (r.globals = new_frame(&r, NULL)) != NULL;
    if (!ok) jn_nomem(&r, NULL);
    static const char *const GLOBALS[] = {"raise_exception", "range", "namespace", "dict",
                                          "strftime_now",    NULL};
    for (int i = 0; ok && GLOBALS[i]; i++)
        ok = add_global(&r, GLOBALS[i]);
    frame *top = ok ? new_frame(&r, r.globals) : NULL;
    if (ok && !top) ok = jn_nomem(&r, NULL);
    if (ok && context) {
        if (!json_is_object(context)) {
            ok = jn_fail(&r, NULL, "context must be a JSON object");
        } else {
            const char *k;
            json_t *v;
            json_object_foreach((json_t *)context, k, v) {
                jv val;
                if (!(ok = jn_from_json(&r, v, &val, 0))) break;
                if (!(ok = jn_dict_set_s(&r, &top->vars, k, val))) break;
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
