/* util.c — buffers, hash maps and UTF-8 helpers for the tokenizer. */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "tokenizer/util.h"

static ci_status nomem(void) {
    return ci_errorf(CI_ERR_NOMEM, "tokenizer: out of memory");
}

ci_status tk_buf_reserve(tk_buf *b, size_t extra) {
    if (extra > SIZE_MAX / 2 - b->len) return nomem();
    size_t need = b->len + extra + 1; /* room for a NUL */
    if (need <= b->cap) return ci_ok();
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return nomem();
    b->p = p;
    b->cap = cap;
    return ci_ok();
}

ci_status tk_buf_put(tk_buf *b, const void *d, size_t n) {
    CI_TRY(tk_buf_reserve(b, n));
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
    return ci_ok();
}

void tk_buf_free(tk_buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

ci_status tk_list_push(tk_list *l, const char *s, size_t n) {
    if (l->n + 2 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        size_t *o = realloc(l->off, cap * sizeof *o);
        if (!o) return nomem();
        l->off = o;
        l->cap = cap;
    }
    if (l->n == 0) {
        l->off[0] = 0;
        l->data.len = 0;
    }
    CI_TRY(tk_buf_put(&l->data, s, n));
    l->n++;
    l->off[l->n] = l->data.len;
    return ci_ok();
}

ci_status tk_list_append_last(tk_list *l, const char *s, size_t n) {
    CI_TRY(tk_buf_put(&l->data, s, n));
    l->off[l->n] = l->data.len;
    return ci_ok();
}

void tk_list_clear(tk_list *l) {
    l->n = 0;
    l->data.len = 0;
}

void tk_list_free(tk_list *l) {
    tk_buf_free(&l->data);
    free(l->off);
    memset(l, 0, sizeof *l);
}

ci_status tk_ids_push(tk_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return nomem();
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return ci_ok();
}

void tk_ids_free(tk_ids *a) {
    free(a->v);
    memset(a, 0, sizeof *a);
}

struct tk_arena_chunk {
    tk_arena_chunk *next;
    char data[];
};

char *tk_arena_strdup(tk_arena *a, const char *s, size_t n) {
    if (!a->head || a->cap - a->used < n + 1) {
        size_t cap = n + 1 > (1u << 20) ? n + 1 : (1u << 20);
        tk_arena_chunk *c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head;
        a->head = c;
        a->used = 0;
        a->cap = cap;
    }
    char *p = a->head->data + a->used;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    a->used += n + 1;
    return p;
}

void tk_arena_free(tk_arena *a) {
    tk_arena_chunk *c = a->head;
    while (c) {
        tk_arena_chunk *nx = c->next;
        free(c);
        c = nx;
    }
    memset(a, 0, sizeof *a);
}

/* ---- string map ---- */
static uint64_t str_hash(const char *s, size_t n) {
    return XXH3_64bits(s, n);
}

static ci_status strmap_grow(tk_strmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    tk_sm_entry *e = calloc(cap, sizeof *e);
    if (!e) return nomem();
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->e[i].key) continue;
        size_t h = (size_t)str_hash(m->e[i].key, m->e[i].len) & (cap - 1);
        while (e[h].key)
            h = (h + 1) & (cap - 1);
        e[h] = m->e[i];
    }
    free(m->e);
    m->e = e;
    m->cap = cap;
    return ci_ok();
}

ci_status tk_strmap_reserve(tk_strmap *m, size_t n) {
    while (n * 2 > m->cap)
        CI_TRY(strmap_grow(m));
    return ci_ok();
}

ci_status tk_strmap_put(tk_strmap *m, const char *key, size_t len, int32_t val) {
    if ((m->n + 1) * 2 > m->cap) CI_TRY(strmap_grow(m));
    size_t h = (size_t)str_hash(key, len) & (m->cap - 1);
    while (m->e[h].key) {
        if (m->e[h].len == len && memcmp(m->e[h].key, key, len) == 0) {
            m->e[h].val = val;
            return ci_ok();
        }
        h = (h + 1) & (m->cap - 1);
    }
    m->e[h].key = key;
    m->e[h].len = (uint32_t)len;
    m->e[h].val = val;
    m->n++;
    return ci_ok();
}

int32_t tk_strmap_get(const tk_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    size_t h = (size_t)str_hash(key, len) & (m->cap - 1);
    while (m->e[h].key) {
        if (m->e[h].len == len && memcmp(m->e[h].key, key, len) == 0) return m->e[h].val;
        h = (h + 1) & (m->cap - 1);
    }
    return -1;
}

void tk_strmap_free(tk_strmap *m) {
    free(m->e);
    memset(m, 0, sizeof *m);
}

/* ---- pair map ---- */
static size_t pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return (size_t)k;
}

ci_status tk_pairmap_init(tk_pairmap *m, size_t expected) {
    size_t cap = 64;
    while (cap < expected * 2 + 2)
        cap *= 2;
    m->e = malloc(cap * sizeof *m->e);
    if (!m->e) return nomem();
    for (size_t i = 0; i < cap; i++)
        m->e[i].key = UINT64_MAX;
    m->cap = cap;
    m->n = 0;
    return ci_ok();
}

void tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t h = pair_hash(k) & (m->cap - 1);
    while (m->e[h].key != UINT64_MAX && m->e[h].key != k)
        h = (h + 1) & (m->cap - 1);
    if (m->e[h].key == UINT64_MAX) m->n++;
    m->e[h].key = k;
    m->e[h].rank = rank;
    m->e[h].id = id;
}

const tk_pm_entry *tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b) {
    if (!m->cap) return NULL;
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t h = pair_hash(k) & (m->cap - 1);
    while (m->e[h].key != UINT64_MAX) {
        if (m->e[h].key == k) return &m->e[h];
        h = (h + 1) & (m->cap - 1);
    }
    return NULL;
}

void tk_pairmap_free(tk_pairmap *m) {
    free(m->e);
    memset(m, 0, sizeof *m);
}

/* ---- UTF-8 ---- */
size_t tk_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len = 0;
    uint32_t v;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < 2 || s[1] < lo || s[1] > hi) return 0;
    v = (v << 6) | (s[1] & 0x3F);
    for (size_t i = 2; i < len; i++) {
        if (i >= n || s[i] < 0x80 || s[i] > 0xBF) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cp = v;
    return len;
}

/* Length of the maximal prefix of a valid sequence at s (>= 1), for
 * replacement-character accounting of invalid input. */
static size_t utf8_invalid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 1;
    if (n < 2 || s[1] < lo || s[1] > hi) return 1;
    size_t i = 2;
    while (i < len && i < n && s[i] >= 0x80 && s[i] <= 0xBF)
        i++;
    return i;
}

size_t tk_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t tk_utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c < 0xE0) return 2;
    if (c < 0xF0) return 3;
    return 4;
}

size_t tk_utf8_validate(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp = 0;
        size_t l = tk_utf8_decode(u + i, n - i, &cp);
        if (!l) return i;
        i += l;
    }
    return n;
}

ci_status tk_utf8_lossy_append(tk_buf *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        while (i < n) {
            if (u[i] < 0x80) {
                i++;
                continue;
            }
            uint32_t cp = 0;
            size_t l = tk_utf8_decode(u + i, n - i, &cp);
            if (!l) break;
            i += l;
        }
        CI_TRY(tk_buf_put(out, s + start, i - start));
        if (i < n) {
            i += utf8_invalid_len(u + i, n - i);
            CI_TRY(tk_buf_put(out, "\xEF\xBF\xBD", 3));
        }
    }
    return ci_ok();
}

bool tk_is_whitespace(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/* GPT-2 bytes_to_unicode: printable bytes map to themselves; the others,
 * in order, to U+0100.. (0..32 -> 256..288, 127..160 -> 289..322, 173 -> 323). */
uint32_t tk_byte_cp(unsigned b) {
    if (b <= 32) return 256 + b;
    if (b >= 127 && b <= 160) return 289 + (b - 127);
    if (b == 173) return 323;
    return b;
}

int tk_cp_to_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 255 && cp != 173)) return (int)cp;
    if (cp >= 256 && cp <= 288) return (int)(cp - 256);
    if (cp >= 289 && cp <= 322) return (int)(cp - 289 + 127);
    if (cp == 323) return 173;
    return -1;
}
