/* tok_struct.h — struct ci_tokenizer, what a loaded tokenizer holds, for
 * the files that read it; the pipeline stages it points to are declared
 * in their own headers. */
#ifndef CINFER_TOKENIZER_TOK_STRUCT_H
#define CINFER_TOKENIZER_TOK_STRUCT_H

#include <stdbool.h>
#include <stdint.h>

#include "tokenizer/util.h"

typedef struct ci_tokenizer ci_tokenizer;
struct tk_norm;
struct tk_pretok;
struct tk_dec;

/* ---- post-processors ---- */
typedef struct tk_post {
    bool any;      /* false: adds nothing */
    int32_t *tmpl; /* -1 = the sequence */
    size_t n_tmpl;
} tk_post;

/* ---- added tokens ---- */
typedef struct tk_added {
    const char *content; /* as matched (normalized when `normalized`) */
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} tk_added;

typedef struct tk_added_set {
    int32_t *idx; /* indices into tok->added, sorted by (first byte, len desc) */
    size_t n;
    uint32_t first[257]; /* idx range per first byte */
} tk_added_set;

struct ci_tokenizer {
    tk_arena arena;
    /* model */
    tk_strmap vocab;
    tk_pairmap merges;
    int32_t n_ids;       /* id table size (max id + 1) */
    const char **id_str; /* NULL where no token */
    uint32_t *id_len;
    uint8_t *id_special;
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;
    const char *cont_prefix, *eow_suffix;
    size_t cont_prefix_len, eow_suffix_len;
    int32_t byte_tok[256];
    /* pipeline */
    tk_added *added;
    size_t n_added;
    tk_added_set raw_set, norm_set;
    tk_strmap added_map; /* content -> id */
    struct tk_norm *norm;
    struct tk_pretok *pretok;
    tk_post post;
    struct tk_dec *dec;
    int32_t bos_id, eos_id;
};

#endif
