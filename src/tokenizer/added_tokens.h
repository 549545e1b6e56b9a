/* added_tokens.h — the added tokens of tokenizer.json: loading and
 * splitting text on them (added_tokens.c). */
#ifndef CINFER_TOKENIZER_ADDED_TOKENS_H
#define CINFER_TOKENIZER_ADDED_TOKENS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tok_struct.h"
#include "util/status.h"

typedef struct tk_seg {
    size_t a, b;
    int32_t id; /* -1: text */
} tk_seg;

typedef struct tk_segs {
    tk_seg *v;
    size_t n, cap;
} tk_segs;

ci_status tk_segs_push(tk_segs *s, size_t a, size_t b, int32_t id);
/* Reads added_tokens (after the normalizer is parsed) and builds the match sets. */
ci_status tk_added_load(ci_tokenizer *t, json_t *root);
/* Splits s on the added tokens of `set` (leftmost-longest, as HF's
 * AddedVocabulary), honouring lstrip/rstrip/single_word. */
ci_status tk_added_split(const ci_tokenizer *t, const tk_added_set *set, const char *s, size_t n,
                         tk_segs *out);

#endif
