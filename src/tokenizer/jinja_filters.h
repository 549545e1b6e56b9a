/* jinja_filters.h — tests and filters (jinja_filters.c). */
#ifndef CINFER_TOKENIZER_JINJA_FILTERS_H
#define CINFER_TOKENIZER_JINJA_FILTERS_H

#include "tokenizer/jinja_value.h"

/* `v is t(args)` into *out. */
bool jn_apply_test(R *r, frame *f, const jn_node *n, const char *t, jv v, args *a, bool *out);
/* `v | name(args)` into *out; f is the scope the filter runs in. */
bool jn_apply_filter(R *r, frame *f, const jn_node *n, const char *name, jv v, args *a, jv *out);

#endif
