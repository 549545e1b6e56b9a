/* json_fast.h — a strict scanner for the vocab and merges of
 * tokenizer.json, read straight from the text (json_fast.c). */
#ifndef CINFER_TOKENIZER_JSON_FAST_H
#define CINFER_TOKENIZER_JSON_FAST_H

#include <stdbool.h>
#include <stddef.h>

#include "tokenizer/util.h"

typedef struct tk_js {
    const char *p, *end;
} tk_js;
typedef struct tk_js_ranges {
    size_t vocab_a, vocab_b, merges_a, merges_b; /* byte ranges of the values; b == 0: absent */
} tk_js_ranges;
/* Strictly scans the whole document; true when it is valid JSON with an
 * object root whose (last) "model" object has an object "vocab" and, if
 * present, an array "merges". */
bool tk_js_find_ranges(const char *s, size_t n, tk_js_ranges *r);
bool tk_js_string(tk_js *j, tk_buf *out); /* out may be NULL; NUL-terminated */
bool tk_js_int(tk_js *j, bool *is_int, long long *v);
bool tk_js_skip(tk_js *j);
void tk_js_ws(tk_js *j);

#endif
