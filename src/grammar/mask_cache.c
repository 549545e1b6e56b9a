/* mask_cache.c — per-grammar cache keyed by word arrays (a matcher state,
 * or a grammar position's marker) and the vocabulary, holding word arrays
 * (a token mask, or a position's context-independent tokens), bounded in
 * bytes and entries, least recently used out first. Recurring states
 * (inside a string, between the digits of a number) then cost a hash and a
 * copy instead of a trie walk. A mutex guards it, so matchers on several
 * threads may share a grammar. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "grammar/internal.h"

#define GR_CACHE_BUCKETS 4096u
#define GR_CACHE_MAX_ENTRIES 16384u

typedef struct gr_centry {
    struct gr_centry *next_b;      /* bucket chain */
    struct gr_centry *prev, *next; /* LRU list, most recent first */
    uint64_t hash, vocab;
    uint32_t klen;
    size_t nw;
    uint32_t *key, *mask; /* one allocation: key then value */
} gr_centry;

struct gr_cache {
    pthread_mutex_t mu;
    gr_centry *buckets[GR_CACHE_BUCKETS];
    gr_centry *head, *tail;
    size_t bytes, max_bytes, n;
    uint64_t hits, misses;
};

gr_cache *gr_cache_new(size_t max_bytes) {
    gr_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->max_bytes = max_bytes;
    return c;
}

void gr_cache_free(gr_cache *c) {
    if (!c) return;
    for (gr_centry *e = c->head, *n; e; e = n) {
        n = e->next;
        free(e->key);
        free(e);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static uint64_t key_hash(uint64_t vocab, const uint32_t *st, uint32_t len) {
    return XXH3_64bits_withSeed(st, len * sizeof *st, vocab);
}

static void lru_unlink(gr_cache *c, gr_centry *e) {
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(gr_cache *c, gr_centry *e) {
    e->next = c->head;
    e->prev = NULL;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

static gr_centry *find(gr_cache *c, uint64_t h, uint64_t vocab, const uint32_t *st, uint32_t len) {
    for (gr_centry *e = c->buckets[h % GR_CACHE_BUCKETS]; e; e = e->next_b)
        if (e->hash == h && e->vocab == vocab && e->klen == len &&
            !memcmp(e->key, st, len * sizeof *st))
            return e;
    return NULL;
}

size_t gr_cache_get(gr_cache *c, uint64_t vocab, const uint32_t *st, uint32_t len, uint32_t *val,
                    size_t cap, uint32_t *tail, size_t ntail) {
    uint64_t h = key_hash(vocab, st, len);
    pthread_mutex_lock(&c->mu);
    gr_centry *e = find(c, h, vocab, st, len);
    size_t n = e ? e->nw : 0;
    if (e && n >= ntail && n - ntail <= cap) {
        memcpy(val, e->mask, (n - ntail) * sizeof *val);
        if (ntail) memcpy(tail, e->mask + n - ntail, ntail * sizeof *tail);
        lru_unlink(c, e);
        lru_front(c, e);
    }
    if (e)
        c->hits++;
    else
        c->misses++;
    pthread_mutex_unlock(&c->mu);
    return n;
}

void gr_cache_stats(gr_cache *c, uint64_t *hits, uint64_t *misses, size_t *bytes) {
    pthread_mutex_lock(&c->mu);
    if (hits) *hits = c->hits;
    if (misses) *misses = c->misses;
    if (bytes) *bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}

static void evict_one(gr_cache *c) {
    gr_centry *e = c->tail;
    lru_unlink(c, e);
    gr_centry **pp = &c->buckets[e->hash % GR_CACHE_BUCKETS];
    while (*pp != e)
        pp = &(*pp)->next_b;
    *pp = e->next_b;
    c->bytes -= ((size_t)e->klen + e->nw) * sizeof(uint32_t);
    c->n--;
    free(e->key);
    free(e);
}

void gr_cache_put(gr_cache *c, uint64_t vocab, const uint32_t *st, uint32_t len,
                  const uint32_t *mask, size_t n, const uint32_t *tail, size_t ntail) {
    size_t nw = n + ntail;
    size_t sz = ((size_t)len + nw) * sizeof(uint32_t);
    if (sz > c->max_bytes) return;
    uint64_t h = key_hash(vocab, st, len);
    gr_centry *e = calloc(1, sizeof *e);
    uint32_t *kb = malloc(sz);
    if (!e || !kb) {
        free(e);
        free(kb);
        return; /* no memory: the mask is simply not cached */
    }
    memcpy(kb, st, len * sizeof *st);
    memcpy(kb + len, mask, n * sizeof *mask);
    if (ntail) memcpy(kb + len + n, tail, ntail * sizeof *tail);
    e->hash = h;
    e->vocab = vocab;
    e->klen = len;
    e->nw = nw;
    e->key = kb;
    e->mask = kb + len;
    pthread_mutex_lock(&c->mu);
    if (find(c, h, vocab, st, len)) { /* another thread got here first */
        pthread_mutex_unlock(&c->mu);
        free(kb);
        free(e);
        return;
    }
    while (c->head && (c->bytes + sz > c->max_bytes || c->n >= GR_CACHE_MAX_ENTRIES))
        evict_one(c);
    e->next_b = c->buckets[h % GR_CACHE_BUCKETS];
    c->buckets[h % GR_CACHE_BUCKETS] = e;
    lru_front(c, e);
    c->bytes += sz;
    c->n++;
    pthread_mutex_unlock(&c->mu);
}
