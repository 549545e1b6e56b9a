/* jinja_arena.c — bump allocator for the template AST and render values. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

struct jn_chunk {
    jn_chunk *next;
    size_t size, used;
    max_align_t data[];
};

#define CHUNK_MIN ((size_t)64 * 1024)

void *jn_alloc(jn_arena *a, size_t n) {
    if (a->oom) return NULL;
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n || (a->limit && a->used + need > a->limit)) {
        a->oom = true;
        a->over_limit = true;
        return NULL;
    }
    jn_chunk *c = a->head;
    if (!c || c->size - c->used < need) {
        size_t sz = need > CHUNK_MIN ? need : CHUNK_MIN;
        c = malloc(sizeof *c + sz);
        if (!c) {
            a->oom = true;
            return NULL;
        }
        c->next = a->head;
        c->size = sz;
        c->used = 0;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += need;
    a->used += need;
    memset(p, 0, n);
    return p;
}

char *jn_strndup(jn_arena *a, const char *s, size_t n) {
    char *p = jn_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void jn_arena_free(jn_arena *a) {
    jn_chunk *c = a->head;
    while (c) {
        jn_chunk *nx = c->next;
        free(c);
        c = nx;
    }
    a->head = NULL;
    a->used = 0;
    a->oom = a->over_limit = false;
}
