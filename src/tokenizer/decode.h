/* decode.h — the decoders of tokenizer.json and ids -> text (decode.c). */
#ifndef CINFER_TOKENIZER_DECODE_H
#define CINFER_TOKENIZER_DECODE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tok_struct.h"
#include "tokenizer/util.h"

enum {
    TK_DEC_BYTELEVEL,
    TK_DEC_REPLACE,
    TK_DEC_BYTEFALLBACK,
    TK_DEC_FUSE,
    TK_DEC_STRIP,
    TK_DEC_METASPACE,
    TK_DEC_SEQ
};
typedef struct tk_dec {
    int type;
    char *pat, *content;
    size_t pat_len, content_len;
    size_t start, stop;
    char rep[8];
    size_t rep_len;
    int prepend_scheme;
    struct tk_dec *items;
    size_t n_items;
} tk_dec;
ci_status tk_dec_parse(json_t *j, const char *path, tk_dec **out);
void tk_dec_free(tk_dec *d);

/* Reusable decode buffers: no allocation once grown. */
typedef struct tk_decode_ws {
    tk_list a, b;
    tk_buf out;
} tk_decode_ws;
void tk_decode_ws_free(tk_decode_ws *ws);
/* Decodes into ws->out (NUL-terminated, ws->out.len bytes). */
ci_status tk_decode_into(const ci_tokenizer *t, const int32_t *ids, size_t n, bool skip,
                         tk_decode_ws *ws);

#endif
