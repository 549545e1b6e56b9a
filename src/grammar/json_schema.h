/* json_schema.h — the pieces json_schema.c assembles (json_prims.c). */
#ifndef CINFER_GRAMMAR_JSON_SCHEMA_H
#define CINFER_GRAMMAR_JSON_SCHEMA_H

#include <jansson.h>

#include "grammar/internal.h"

/* Rules every JSON grammar includes: ws, json-char, json-string, json-int,
 * json-number, json-boolean, json-null, json-value, json-object, json-array. */
extern const char gr_json_common[];
/* s[0..n) as a GBNF string literal. */
bool gr_gbnf_literal(gr_str *o, const char *s, size_t n);
/* v's compact JSON text as a GBNF string literal. */
bool gr_json_literal(gr_str *o, const json_t *v);
/* A GBNF expression for the integers in [lo, hi] (each bound optional). */
bool gr_int_range(gr_str *o, bool has_lo, long long lo, bool has_hi, long long hi);
/* Numbers in [lo, hi] (integer bounds, each optional), without exponent. */
bool gr_num_range(gr_str *o, bool has_lo, long long lo, bool has_hi, long long hi);
/* The GBNF expression for a string format's content, or NULL if unknown. */
const char *gr_json_format(const char *name);
/* regex -> GBNF for the inside of a JSON string: '"', '\' and control
 * characters appear escaped (regex.c). */
ci_status gr_regex_to_gbnf_json(const char *pat, size_t len, gr_str *out);

#endif
