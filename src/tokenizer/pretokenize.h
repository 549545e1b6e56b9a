/* pretokenize.h — the pre-tokenizers of tokenizer.json (pretokenize.c). */
#ifndef CINFER_TOKENIZER_PRETOKENIZE_H
#define CINFER_TOKENIZER_PRETOKENIZE_H

#include <jansson.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>

#include "tokenizer/util.h"

enum {
    TK_PT_SPLIT,
    TK_PT_BYTELEVEL,
    TK_PT_METASPACE,
    TK_PT_SEQ,
    TK_PT_WHITESPACE_SPLIT,
    TK_PT_DIGITS
};
enum {
    TK_SPLIT_REMOVED,
    TK_SPLIT_ISOLATED,
    TK_SPLIT_MERGED_PREV,
    TK_SPLIT_MERGED_NEXT,
    TK_SPLIT_CONTIGUOUS
};
typedef struct tk_pretok {
    int type;
    pcre2_code *re;
    int behavior;
    bool invert;
    bool add_prefix_space, use_regex;
    char rep[8];
    size_t rep_len;
    int prepend_scheme;
    bool split;
    struct tk_pretok *items;
    size_t n_items;
} tk_pretok;
ci_status tk_pretok_parse(json_t *j, const char *path, tk_pretok **out);
void tk_pretok_free(tk_pretok *p);
/* Splits `in` (one item: the normalized piece) into pieces; at_start says
 * whether the piece begins at offset 0 of the original text. */
ci_status tk_pretok_apply(const tk_pretok *p, const char *s, size_t n, bool at_start, tk_list *out,
                          tk_list *scratch);

#endif
