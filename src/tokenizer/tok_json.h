/* tok_json.h — reading typed members of tokenizer.json objects (tok_json.c). */
#ifndef CINFER_TOKENIZER_TOK_JSON_H
#define CINFER_TOKENIZER_TOK_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/status.h"

/* Metaspace prepend schemes. */
enum { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER };

/* A string / boolean member of obj; a missing or null member is NULL / dflt,
 * or an error naming path.key when required. */
ci_status tk_json_str(json_t *obj, const char *key, const char *path, bool required, const char **s,
                      size_t *len);
ci_status tk_json_bool(json_t *obj, const char *key, const char *path, bool dflt, bool *out);
/* Metaspace (pre-tokenizer and decoder): the one-character "replacement"
 * into rep[8] / *rep_len and the prepend scheme ("prepend_scheme", or the
 * older "add_prefix_space"). */
ci_status tk_json_metaspace(json_t *j, const char *path, char rep[8], size_t *rep_len,
                            int *prepend_scheme);

#endif
