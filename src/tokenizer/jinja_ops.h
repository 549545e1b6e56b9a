/* jinja_ops.h — the operators of expressions (jinja_ops.c). */
#ifndef CINFER_TOKENIZER_JINJA_OPS_H
#define CINFER_TOKENIZER_JINJA_OPS_H

#include "tokenizer/jinja_value.h"

/* obj.name: attribute (bound str/dict/list methods) then item, as jinja2 does;
 * obj[key]; obj[start:stop:step]. A missing name or key gives an undefined
 * value; an undefined obj is an error. */
bool jn_get_attr(R *r, const jn_node *n, jv obj, const char *name, size_t nl, jv *out);
bool jn_get_index(R *r, const jn_node *n, jv obj, jv key, jv *out);
bool jn_do_slice(R *r, const jn_node *n, jv obj, jv vs, jv ve, jv vst, jv *out);
/* Binary operators: a ~ b; + - * / // % ** (op is the operator's text);
 * fmt % argv; comparisons and membership (op "==", "<", "in", "notin", ...). */
bool jn_concat_str(R *r, jv a, jv b, jv *out);
bool jn_arith(R *r, const jn_node *n, const char *op, jv a, jv b, jv *out);
bool jn_percent_format(R *r, const jn_node *n, jv fmt, jv argv, jv *out);
bool jn_eval_cmp(R *r, const jn_node *n, const char *op, jv a, jv b, bool *res);
/* |escape: & < > " ' as entities; the result is Markup. */
bool jn_html_escape(R *r, jv s, jv *out);

#endif
