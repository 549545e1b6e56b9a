/* internal.h — the compiled grammar form shared by the grammar sources
 * (GBNF parser, regex and JSON Schema front ends), the matcher and the mask
 * cache. Not part of the public API.
 *
 * A grammar is a set of rules over Unicode code points. Every rule is a list
 * of alternatives; an alternative is a run of elements in one flat array,
 * ended by a GR_END element. An element is a character class (GR_CLASS) or
 * a reference to a rule (GR_REF). A matcher state is a set of stacks of
 * element positions (llama.cpp style): the top of each stack is always a
 * GR_CLASS, the next code point the stack can take. */
#ifndef CINFER_GRAMMAR_INTERNAL_H
#define CINFER_GRAMMAR_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "grammar/grammar.h"

enum { GR_END = 0, GR_REF = 1, GR_CLASS = 2 };

typedef struct gr_elem {
    uint32_t type; /* GR_END, GR_REF, GR_CLASS */
    uint32_t val;  /* rule id or class id */
} gr_elem;

typedef struct gr_range {
    uint32_t lo, hi; /* inclusive code points */
} gr_range;

typedef struct gr_class {
    uint32_t first, n; /* ranges[first .. first+n) */
    bool neg;
    uint64_t ascii[2]; /* code points 0..127 that match, after negation */
} gr_class;

typedef struct gr_cache gr_cache;

struct ci_grammar {
    gr_elem *elems;
    uint32_t n_elems;
    uint32_t *alts; /* start positions of all alternatives, rule by rule */
    uint32_t *rule_alt0, *rule_nalt;
    uint32_t n_rules, n_alts;
    gr_class *classes;
    uint32_t n_classes;
    gr_range *ranges;
    uint32_t root;
    /* The start state, serialized (see matcher.c). */
    uint32_t *init;
    uint32_t init_len;
    /* Per element position: the fewest bytes that finish the rest of its
     * alternative (GR_INF: none), see budget.c. */
    uint32_t *min_left;
    gr_cache *cache;                         /* mask cache, guarded by its own mutex */
    _Atomic uint64_t mask_hits, mask_misses; /* fill_mask calls by cache outcome */
};

/* Code point c matches class k. */
static inline bool gr_class_match(const ci_grammar *g, uint32_t k, uint32_t c) {
    const gr_class *cl = &g->classes[k];
    if (c < 128) return (cl->ascii[c >> 6] >> (c & 63)) & 1;
    const gr_range *r = g->ranges + cl->first;
    for (uint32_t i = 0; i < cl->n; i++)
        if (c >= r[i].lo && c <= r[i].hi) return !cl->neg;
    return cl->neg;
}

/* ---- builder: what the front ends produce, then gr_build() lays out ---- */
typedef struct gb_seq {
    gr_elem *v;
    uint32_t n, cap;
} gb_seq;

typedef struct gb_rule {
    char *name;
    gb_seq *alts;
    uint32_t n_alts, cap_alts;
    bool defined;
    uint32_t ref_pos; /* byte offset of the first reference, for "undefined rule" */
} gb_rule;

typedef struct gb {
    gb_rule *rules;
    uint32_t n_rules, cap_rules;
    uint32_t *map; /* name hash table: rule id + 1, 0 = empty */
    uint32_t map_cap;
    gr_range *ranges;
    uint32_t n_ranges, cap_ranges;
    gr_class *classes;
    uint32_t n_classes, cap_classes;
    uint32_t n_anon;
} gb;

void gb_init(gb *b);
void gb_free(gb *b);
/* Rule id for name (created undefined when absent); UINT32_MAX: no memory. */
uint32_t gb_rule_id(gb *b, const char *name, size_t len);
/* A fresh rule named after base ("base-N"). */
uint32_t gb_anon_rule(gb *b, const char *base);
/* Appends an empty alternative to rule r; returns it or NULL. */
gb_seq *gb_add_alt(gb *b, uint32_t r);
bool gb_push(gb_seq *s, uint32_t type, uint32_t val);
/* A class from ranges (copied); returns class id or UINT32_MAX. */
uint32_t gb_class(gb *b, const gr_range *r, uint32_t n, bool neg);
/* Lays the rules out as a ci_grammar rooted at rule "root": checks that every
 * rule is defined and that no rule is left-recursive. */
ci_status gr_build(gb *b, ci_grammar **out);

/* Computes g->init, the start state (matcher.c). */
ci_status gr_make_init(ci_grammar *g);

/* The GBNF front end into an existing builder (the JSON Schema and regex
 * compilers emit GBNF text and parse it with this). */
ci_status gr_parse_gbnf(gb *b, const char *text, size_t len);

/* Regex -> a GBNF expression (one parenthesized group), appended to *out
 * (malloc'd, grown). */
typedef struct gr_str {
    char *p;
    size_t n, cap;
} gr_str;
bool gr_str_put(gr_str *s, const char *d, size_t n);
bool gr_str_puts(gr_str *s, const char *d);
bool gr_str_printf(gr_str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
ci_status gr_regex_to_gbnf(const char *pat, size_t len, gr_str *out);

/* Compiles GBNF text into *out, copying the message into err (gbnf.c). */
ci_status gr_compile_text(const char *text, size_t len, ci_grammar **out, char *err, size_t errlen);
/* Copies s.msg into err (when given) and returns s (builder.c). */
ci_status gr_report(ci_status s, char *err, size_t errlen);

/* ---- matcher states (state.c) ----
 * A state is a flat uint32 array: [words, partial code point, bytes still
 * expected, length of the pending UTF-8 sequence, number of stacks], then
 * each stack as [len, positions bottom..top]. Stacks are sorted and unique,
 * so equal states are equal arrays (the mask cache key). */
enum { GS_WORDS, GS_CP, GS_REM, GS_ULEN, GS_NSTACK, GS_HDR };

typedef struct gr_buf {
    uint32_t *v;
    size_t n, cap;
} gr_buf;
bool gr_buf_reserve(gr_buf *b, size_t n); /* capacity for n words in total */
void gr_buf_free(gr_buf *b);

typedef struct gr_work {
    gr_buf scratch, emit, idx;
    uint32_t budget;    /* expansions left in this step */
    uint64_t total;     /* expansions since the caller last reset it (a mask's work) */
    uint64_t total_cap; /* 0: unlimited; else past it every step fails, and gave_up */
    bool exhausted;     /* a step ran out of budget or depth */
    bool gave_up;       /* total_cap was reached */
} gr_work;
void gr_work_free(gr_work *w);

/* out = in after one byte; false when the byte is rejected (or on OOM). */
bool gr_step_byte(const ci_grammar *g, gr_work *w, const uint32_t *in, uint8_t byte, gr_buf *out);
bool gr_state_can_end(const uint32_t *st);
bool gr_state_done(const uint32_t *st);
bool gr_state_copy(gr_buf *dst, const uint32_t *st);
/* out = the state of one stack (positions bottom..top), expanded: what the
 * matcher continues with after the rule above it ends. false: OOM. */
bool gr_state_from_stack(const ci_grammar *g, gr_work *w, const uint32_t *stk, uint32_t len,
                         gr_buf *out);

/* ---- distances to the end (budget.c) ---- */
#define GR_INF UINT32_MAX /* no way to finish */
/* a + b in byte counts, GR_INF when it would not fit (or either is GR_INF) */
static inline uint32_t gr_sat_add(uint32_t a, uint32_t b) {
    return a >= GR_INF - b ? GR_INF : a + b;
}
/* Fills g->min_left (after the rules are laid out). */
ci_status gr_make_min_left(ci_grammar *g);
/* The smallest valid code point in [lo, hi] that class k matches, or UINT32_MAX. */
uint32_t gr_class_first(const ci_grammar *g, uint32_t k, uint32_t lo, uint32_t hi);
/* The bytes that finish stack frames pos[0..n) (positions of a stack). */
uint32_t gr_frames_cost(const ci_grammar *g, const uint32_t *pos, uint32_t n);
/* The fewest bytes from st to an accepting state (0: st can end; GR_INF: never). */
uint32_t gr_state_dist(const ci_grammar *g, const uint32_t *st);
/* Tokens enough to end from st when every byte is a token: 0 when st is done
 * (the engine ends the request without an EOS), else dist + 1 (the EOS). */
uint32_t gr_state_need(const ci_grammar *g, const uint32_t *st);

/* Cache (mask_cache.c): word-array keys and values per vocabulary. */
gr_cache *gr_cache_new(size_t max_bytes);
void gr_cache_free(gr_cache *c);
/* The value's length in words, 0 on a miss. A value of n >= ntail words is
 * copied when n - ntail <= cap: its first n - ntail words into val, its last
 * ntail into tail (a mask and what goes with it). */
size_t gr_cache_get(gr_cache *c, uint64_t vocab_id, const uint32_t *key, uint32_t klen,
                    uint32_t *val, size_t cap, uint32_t *tail, size_t ntail);
/* Stores val[0..n) then tail[0..ntail) as one value. */
void gr_cache_put(gr_cache *c, uint64_t vocab_id, const uint32_t *key, uint32_t klen,
                  const uint32_t *val, size_t n, const uint32_t *tail, size_t ntail);
void gr_cache_stats(gr_cache *c, uint64_t *hits, uint64_t *misses, size_t *bytes);

#endif
