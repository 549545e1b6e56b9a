/* jinja_methods.h — global functions and str/dict/list methods (jinja_methods.c). */
#ifndef CINFER_TOKENIZER_JINJA_METHODS_H
#define CINFER_TOKENIZER_JINJA_METHODS_H

#include "tokenizer/jinja_value.h"

/* range, namespace, dict, raise_exception, strftime_now and loop.cycle
 * (self: the loop index). */
bool jn_call_global(R *r, const jn_node *n, const char *name, jv self, args *a, jv *out);
/* str helpers the filters share: strip (chars or whitespace), case mapping
 * (mode 0 upper, 1 lower, 2 capitalize, 3 jinja title, 4 str.title,
 * 5 swapcase), replace, splitlines, join (of attr when not NULL). */
bool jn_strip_impl(R *r, jv s, jv chars, bool left, bool right, jv *out);
bool jn_map_case(R *r, jv s, int mode, jv *out);
bool jn_str_replace(R *r, jv s, jv old, jv neu, int64_t count, jv *out);
bool jn_splitlines(R *r, jv s, bool keepends, jv_list **out);
bool jn_join_items(R *r, const jn_node *n, jv_list *l, jv sep, const char *attr, jv *out);
/* self.m(args) for str, dict and list values; Markup in, Markup out. */
bool jn_call_method(R *r, const jn_node *n, jv self, const char *m, args *a, jv *out);

#endif
