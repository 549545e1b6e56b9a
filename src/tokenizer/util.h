/* util.h — the tokenizer's buffers, lists, arena, hash maps and UTF-8
 * helpers (util.c). */
#ifndef CINFER_TOKENIZER_UTIL_H
#define CINFER_TOKENIZER_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

/* ---- growable buffers ---- */
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

/* ---- UTF-8 helpers ---- */
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

#endif
