/* bpe.h — the BPE model: merges by rank over one pre-tokenized piece (bpe.c). */
#ifndef CINFER_TOKENIZER_BPE_H
#define CINFER_TOKENIZER_BPE_H

#include <stddef.h>

#include "tokenizer/tok_struct.h"
#include "tokenizer/util.h"

/* Reusable work space: no allocation per word once grown. */
typedef struct tk_bpe_ws {
    struct tk_sym *sym;
    size_t sym_cap;
    struct tk_merge *heap;
    size_t heap_cap;
    tk_buf key;
} tk_bpe_ws;
ci_status tk_bpe_encode(const ci_tokenizer *t, const char *s, size_t n, tk_ids *out, tk_bpe_ws *ws);
void tk_bpe_ws_free(tk_bpe_ws *ws);

#endif
