/* tokenizer_internal.h — shared structures of the tokenizer module. */
#ifndef CINFER_TOKENIZER_INTERNAL_H
#define CINFER_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <pcre2.h>

#include "tokenizer/tokenizer.h"

/* ---- growable buffers (util.c) ---- */
typedef struct tk_buf {
    char *p;
    size_t len, cap;
} tk_buf;
ci_status tk_buf_reserve(tk_buf *b, size_t extra);
ci_status tk_buf_put(tk_buf *b, const void *d, size_t n);
void tk_buf_free(tk_buf *b);

/* A list of byte strings stored back to back: item i is
 * data.p[off[i] .. off[i+1]). */
typedef struct tk_list {
    tk_buf data;
    size_t *off; /* n + 1 entries once anything is pushed */
    size_t n, cap;
} tk_list;
ci_status tk_list_push(tk_list *l, const char *s, size_t n);
/* Appends bytes to the last item (which must exist). */
ci_status tk_list_append_last(tk_list *l, const char *s, size_t n);
void tk_list_clear(tk_list *l);
void tk_list_free(tk_list *l);
#define TK_ITEM(l, i) ((l)->data.p + (l)->off[i])
#define TK_LEN(l, i) ((l)->off[(i) + 1] - (l)->off[i])

typedef struct tk_ids {
    int32_t *v;
    size_t n, cap;
} tk_ids;
ci_status tk_ids_push(tk_ids *a, int32_t id);
void tk_ids_free(tk_ids *a);

/* Arena for strings that live as long as the tokenizer. */
typedef struct tk_arena_chunk tk_arena_chunk;
typedef struct tk_arena {
    tk_arena_chunk *head;
    size_t used, cap;
} tk_arena;
/* Copies s[0..n) plus a NUL; NULL when out of memory. */
char *tk_arena_strdup(tk_arena *a, const char *s, size_t n);
void tk_arena_free(tk_arena *a);

/* Open-addressing map: byte string -> int32 (keys are not copied). */
typedef struct tk_sm_entry {
    const char *key;
    uint32_t len;
    int32_t val;
} tk_sm_entry;
typedef struct tk_strmap {
    tk_sm_entry *e;
    size_t cap, n;
} tk_strmap;
ci_status tk_strmap_put(tk_strmap *m, const char *key, size_t len, int32_t val);
ci_status tk_strmap_reserve(tk_strmap *m, size_t n);
int32_t tk_strmap_get(const tk_strmap *m, const char *key, size_t len); /* -1 if absent */
void tk_strmap_free(tk_strmap *m);

/* Open-addressing map: (id, id) -> (rank, new id). */
typedef struct tk_pm_entry {
    uint64_t key; /* UINT64_MAX = empty */
    uint32_t rank;
    int32_t id;
} tk_pm_entry;
typedef struct tk_pairmap {
    tk_pm_entry *e;
    size_t cap, n;
} tk_pairmap;
ci_status tk_pairmap_init(tk_pairmap *m, size_t expected);
void tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id);
const tk_pm_entry *tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b);
void tk_pairmap_free(tk_pairmap *m);

/* ---- UTF-8 helpers (util.c) ---- */
/* Decodes one strictly valid code point at s[0..n); returns its length, 0 if invalid. */
size_t tk_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
size_t tk_utf8_encode(uint32_t cp, char out[4]);
/* Length of the next char (s valid UTF-8). */
size_t tk_utf8_len(unsigned char c);
/* Byte offset of the first invalid sequence, or n if all valid. */
size_t tk_utf8_validate(const char *s, size_t n);
/* Appends s[0..n) with invalid sequences replaced by U+FFFD as Rust's
 * String::from_utf8_lossy does (one per maximal invalid subpart). */
ci_status tk_utf8_lossy_append(tk_buf *out, const char *s, size_t n);
bool tk_is_whitespace(uint32_t cp); /* Rust char::is_whitespace */

/* GPT-2 byte <-> unicode mapping. */
uint32_t tk_byte_cp(unsigned b);
int tk_cp_to_byte(uint32_t cp); /* -1 if not a byte char */

/* ---- fast JSON scanning for vocab/merges (json_fast.c) ---- */
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

/* ---- regex (pretokenize.c) ---- */
ci_status tk_regex_compile(const char *pat, size_t len, bool literal, pcre2_code **out,
                           const char *what);
/* Replaces every match of re in s[0..n) by rep, appending to out. */
ci_status tk_regex_replace(const pcre2_code *re, const char *s, size_t n, const char *rep,
                           size_t rep_len, tk_buf *out, size_t limit);

/* ---- normalizers (normalize.c) ---- */
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

/* ---- pre-tokenizers (pretokenize.c) ---- */
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
enum { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER };
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

/* ---- decoders (decode.c) ---- */
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
    tk_norm *norm;
    tk_pretok *pretok;
    tk_post post;
    tk_dec *dec;
    int32_t bos_id, eos_id;
};

/* ---- added tokens (added_tokens.c) ---- */
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

/* ---- BPE model (bpe.c) ---- */
typedef struct tk_bpe_ws {
    struct tk_sym *sym;
    size_t sym_cap;
    struct tk_merge *heap;
    size_t heap_cap;
    tk_buf key;
} tk_bpe_ws;
ci_status tk_bpe_encode(const ci_tokenizer *t, const char *s, size_t n, tk_ids *out, tk_bpe_ws *ws);
void tk_bpe_ws_free(tk_bpe_ws *ws);

/* JSON helpers (tokenizer.c) */
ci_status tk_json_str(json_t *obj, const char *key, const char *path, bool required, const char **s,
                      size_t *len);
ci_status tk_json_bool(json_t *obj, const char *key, const char *path, bool dflt, bool *out);
/* Metaspace (pre-tokenizer and decoder): the one-character "replacement"
 * into rep[8] / *rep_len and the prepend scheme ("prepend_scheme", or the
 * older "add_prefix_space"). */
ci_status tk_json_metaspace(json_t *j, const char *path, char rep[8], size_t *rep_len,
                            int *prepend_scheme);

#endif
