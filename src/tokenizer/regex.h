/* regex.h — PCRE2 patterns of tokenizer.json: compile and replace (regex.c). */
#ifndef CINFER_TOKENIZER_REGEX_H
#define CINFER_TOKENIZER_REGEX_H

#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>

#include "tokenizer/util.h"

/* Compiles pat[0..len) (UTF + UCP, or a literal) and JIT-compiles it; `what`
 * names the field in errors. */
ci_status tk_regex_compile(const char *pat, size_t len, bool literal, pcre2_code **out,
                           const char *what);
/* The next match of re in s[0..n) at or after pos (md from
 * pcre2_match_data_create_from_pattern): *found = 1 with [*ms, *me), or 0. */
ci_status tk_regex_next(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n,
                        size_t pos, int *found, size_t *ms, size_t *me);
/* Replaces every match of re in s[0..n) by rep, appending to out; fails
 * once out is longer than limit. */
ci_status tk_regex_replace(const pcre2_code *re, const char *s, size_t n, const char *rep,
                           size_t rep_len, tk_buf *out, size_t limit);

#endif
