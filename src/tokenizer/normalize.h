/* normalize.h — the normalizers of tokenizer.json (normalize.c). */
#ifndef CINFER_TOKENIZER_NORMALIZE_H
#define CINFER_TOKENIZER_NORMALIZE_H

#include <jansson.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>

#include "tokenizer/util.h"

enum {
    TK_NORM_NFC,
    TK_NORM_NFD,
    TK_NORM_NFKC,
    TK_NORM_NFKD,
    TK_NORM_LOWER,
    TK_NORM_PREPEND,
    TK_NORM_REPLACE,
    TK_NORM_STRIP,
    TK_NORM_SEQ
};
typedef struct tk_norm {
    int type;
    char *s1, *s2; /* prepend text / replace content */
    size_t l1, l2;
    pcre2_code *re;
    bool left, right;
    struct tk_norm *items;
    size_t n_items;
} tk_norm;
ci_status tk_norm_parse(json_t *j, const char *path, tk_norm **out);
void tk_norm_free(tk_norm *n);
/* Normalizes s[0..n) into out (cleared first). */
ci_status tk_norm_apply(const tk_norm *nm, const char *s, size_t n, tk_buf *out);

#endif
