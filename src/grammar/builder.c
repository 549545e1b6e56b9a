/* builder.c — the rule builder the grammar front ends fill in, and its
 * layout into the flat ci_grammar form (with the checks that make the
 * matcher's stack expansion terminate: every rule defined, none
 * left-recursive). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/internal.h"

void gb_init(gb *b) {
    memset(b, 0, sizeof *b);
}

void gb_free(gb *b) {
    for (uint32_t i = 0; i < b->n_rules; i++) {
        gb_rule *r = &b->rules[i];
        for (uint32_t a = 0; a < r->n_alts; a++)
            free(r->alts[a].v);
        free(r->alts);
        free(r->name);
    }
    free(b->rules);
    free(b->map);
    free(b->ranges);
    free(b->classes);
    memset(b, 0, sizeof *b);
}

static uint32_t name_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static bool map_grow(gb *b) {
    uint32_t cap = b->map_cap ? b->map_cap * 2 : 256;
    uint32_t *m = calloc(cap, sizeof *m);
    if (!m) return false;
    for (uint32_t i = 0; i < b->n_rules; i++) {
        const char *nm = b->rules[i].name;
        uint32_t h = name_hash(nm, strlen(nm)) & (cap - 1);
        while (m[h])
            h = (h + 1) & (cap - 1);
        m[h] = i + 1;
    }
    free(b->map);
    b->map = m;
    b->map_cap = cap;
    return true;
}

static uint32_t new_rule(gb *b, char *name) {
    if (b->n_rules == b->cap_rules) {
        uint32_t cap = b->cap_rules ? b->cap_rules * 2 : 64;
        gb_rule *r = realloc(b->rules, cap * sizeof *r);
        if (!r) return UINT32_MAX;
        b->rules = r;
        b->cap_rules = cap;
    }
    if ((b->n_rules + 1) * 2 > b->map_cap && !map_grow(b)) return UINT32_MAX;
    uint32_t id = b->n_rules++;
    memset(&b->rules[id], 0, sizeof b->rules[id]);
    b->rules[id].name = name;
    b->rules[id].ref_pos = UINT32_MAX;
    uint32_t h = name_hash(name, strlen(name)) & (b->map_cap - 1);
    while (b->map[h])
        h = (h + 1) & (b->map_cap - 1);
    b->map[h] = id + 1;
    return id;
}

uint32_t gb_rule_id(gb *b, const char *name, size_t len) {
    if (b->map_cap) {
        uint32_t h = name_hash(name, len) & (b->map_cap - 1);
        for (; b->map[h]; h = (h + 1) & (b->map_cap - 1)) {
            const char *nm = b->rules[b->map[h] - 1].name;
            if (strlen(nm) == len && !memcmp(nm, name, len)) return b->map[h] - 1;
        }
    }
    char *nm = malloc(len + 1);
    if (!nm) return UINT32_MAX;
    memcpy(nm, name, len);
    nm[len] = '\0';
    uint32_t id = new_rule(b, nm);
    if (id == UINT32_MAX) free(nm);
    return id;
}

uint32_t gb_anon_rule(gb *b, const char *base) {
    char buf[96];
    /* "#N" suffixes cannot clash with GBNF names, which never contain '#'. */
    int n = snprintf(buf, sizeof buf, "%.60s#%u", base, b->n_anon++);
    uint32_t id = gb_rule_id(b, buf, (size_t)n);
    if (id != UINT32_MAX) b->rules[id].defined = true;
    return id;
}

gb_seq *gb_add_alt(gb *b, uint32_t r) {
    gb_rule *ru = &b->rules[r];
    if (ru->n_alts == ru->cap_alts) {
        uint32_t cap = ru->cap_alts ? ru->cap_alts * 2 : 2;
        gb_seq *a = realloc(ru->alts, cap * sizeof *a);
        if (!a) return NULL;
        ru->alts = a;
        ru->cap_alts = cap;
    }
    gb_seq *s = &ru->alts[ru->n_alts++];
    memset(s, 0, sizeof *s);
    return s;
}

bool gb_push(gb_seq *s, uint32_t type, uint32_t val) {
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 8;
        gr_elem *v = realloc(s->v, cap * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (gr_elem){type, val};
    return true;
}

uint32_t gb_class(gb *b, const gr_range *r, uint32_t n, bool neg) {
    if (b->n_ranges + n > b->cap_ranges) {
        uint32_t cap = b->cap_ranges ? b->cap_ranges : 64;
        while (cap < b->n_ranges + n)
            cap *= 2;
        gr_range *p = realloc(b->ranges, cap * sizeof *p);
        if (!p) return UINT32_MAX;
        b->ranges = p;
        b->cap_ranges = cap;
    }
    if (b->n_classes == b->cap_classes) {
        uint32_t cap = b->cap_classes ? b->cap_classes * 2 : 64;
        gr_class *p = realloc(b->classes, cap * sizeof *p);
        if (!p) return UINT32_MAX;
        b->classes = p;
        b->cap_classes = cap;
    }
    gr_class *c = &b->classes[b->n_classes];
    memset(c, 0, sizeof *c);
    c->first = b->n_ranges;
    c->n = n;
    c->neg = neg;
    memcpy(b->ranges + b->n_ranges, r, n * sizeof *r);
    b->n_ranges += n;
    for (uint32_t ch = 0; ch < 128; ch++) {
        bool in = false;
        for (uint32_t i = 0; i < n; i++)
            in |= ch >= r[i].lo && ch <= r[i].hi;
        if (in != neg) c->ascii[ch >> 6] |= 1ull << (ch & 63);
    }
    return b->n_classes++;
}

/* Left recursion makes stack expansion loop: reject it. A rule r reaches s
 * on the left when an alternative of r is a run of nullable elements and
 * then a reference to s. */
static ci_status check_left_recursion(const gb *b) {
    uint32_t n = b->n_rules;
    bool *nullable = calloc(n, 1);
    uint8_t *color = calloc(n, 1);
    uint32_t *stk = malloc((n + 1) * 2 * sizeof *stk);
    if (!nullable || !color || !stk) {
        free(nullable);
        free(color);
        free(stk);
        return ci_errorf(CI_ERR_NOMEM, "out of memory");
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (uint32_t r = 0; r < n; r++) {
            if (nullable[r]) continue;
            for (uint32_t a = 0; a < b->rules[r].n_alts && !nullable[r]; a++) {
                const gb_seq *s = &b->rules[r].alts[a];
                bool all = true;
                for (uint32_t i = 0; i < s->n && all; i++)
                    all = s->v[i].type == GR_REF && nullable[s->v[i].val];
                if (all) nullable[r] = changed = true;
            }
        }
    }
    ci_status st = ci_ok();
    /* Iterative DFS; stk holds (rule, next alt*2^16+elem cursor) pairs
     * expressed as a rule and an edge index over its left-reachable refs. */
    for (uint32_t root = 0; root < n && st.code == CI_OK; root++) {
        if (color[root]) continue;
        uint32_t sp = 0;
        stk[sp++] = root;
        stk[sp++] = 0;
        color[root] = 1;
        while (sp && st.code == CI_OK) {
            uint32_t r = stk[sp - 2], k = stk[sp - 1];
            /* the k-th left-reachable reference of r */
            uint32_t found = UINT32_MAX, idx = 0;
            for (uint32_t a = 0; a < b->rules[r].n_alts && found == UINT32_MAX; a++) {
                const gb_seq *s = &b->rules[r].alts[a];
                for (uint32_t i = 0; i < s->n; i++) {
                    if (s->v[i].type != GR_REF) break;
                    if (idx++ == k) {
                        found = s->v[i].val;
                        break;
                    }
                    if (!nullable[s->v[i].val]) break;
                }
            }
            if (found == UINT32_MAX) {
                color[r] = 2;
                sp -= 2;
                continue;
            }
            stk[sp - 1] = k + 1;
            if (color[found] == 1) {
                st = ci_errorf(CI_ERR_INVALID, "left recursion in rule '%s'", b->rules[found].name);
            } else if (!color[found]) {
                color[found] = 1;
                stk[sp++] = found;
                stk[sp++] = 0;
            }
        }
    }
    free(nullable);
    free(color);
    free(stk);
    return st;
}

ci_status gr_build(gb *b, ci_grammar **out) {
    *out = NULL;
    uint32_t root = UINT32_MAX;
    for (uint32_t r = 0; r < b->n_rules; r++) {
        if (!strcmp(b->rules[r].name, "root")) root = r;
        if (!b->rules[r].defined || !b->rules[r].n_alts)
            return ci_errorf(CI_ERR_INVALID, "undefined rule '%s'", b->rules[r].name);
    }
    if (root == UINT32_MAX) return ci_errorf(CI_ERR_INVALID, "no 'root' rule");
    CI_TRY(check_left_recursion(b));
    ci_grammar *g = calloc(1, sizeof *g);
    if (!g) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    uint32_t n_el = 0, n_alts = 0;
    for (uint32_t r = 0; r < b->n_rules; r++) {
        n_alts += b->rules[r].n_alts;
        for (uint32_t a = 0; a < b->rules[r].n_alts; a++)
            n_el += b->rules[r].alts[a].n + 1;
    }
    g->elems = malloc((n_el + 1) * sizeof *g->elems);
    g->alts = malloc((n_alts + 1) * sizeof *g->alts);
    g->rule_alt0 = malloc(b->n_rules * sizeof *g->rule_alt0);
    g->rule_nalt = malloc(b->n_rules * sizeof *g->rule_nalt);
    g->classes = malloc((b->n_classes + 1) * sizeof *g->classes);
    g->ranges = malloc((b->n_ranges + 1) * sizeof *g->ranges);
    if (!g->elems || !g->alts || !g->rule_alt0 || !g->rule_nalt || !g->classes || !g->ranges) {
        ci_grammar_free(g);
        return ci_errorf(CI_ERR_NOMEM, "out of memory");
    }
    uint32_t pe = 0, pa = 0;
    for (uint32_t r = 0; r < b->n_rules; r++) {
        g->rule_alt0[r] = pa;
        g->rule_nalt[r] = b->rules[r].n_alts;
        for (uint32_t a = 0; a < b->rules[r].n_alts; a++) {
            const gb_seq *s = &b->rules[r].alts[a];
            g->alts[pa++] = pe;
            if (s->n) memcpy(g->elems + pe, s->v, s->n * sizeof *s->v);
            pe += s->n;
            g->elems[pe++] = (gr_elem){GR_END, 0};
        }
    }
    g->n_elems = pe;
    g->n_rules = b->n_rules;
    g->n_alts = pa;
    if (b->n_classes) memcpy(g->classes, b->classes, b->n_classes * sizeof *g->classes);
    g->n_classes = b->n_classes;
    if (b->n_ranges) memcpy(g->ranges, b->ranges, b->n_ranges * sizeof *g->ranges);
    g->root = root;
    ci_status st = gr_make_init(g);
    if (st.code == CI_OK) st = gr_make_min_left(g);
    if (st.code == CI_OK) {
        g->cache = gr_cache_new((size_t)64 << 20);
        if (!g->cache) st = ci_errorf(CI_ERR_NOMEM, "out of memory");
    }
    if (st.code != CI_OK) {
        ci_grammar_free(g);
        return st;
    }
    *out = g;
    return ci_ok();
}

void ci_grammar_free(ci_grammar *g) {
    if (!g) return;
    free(g->elems);
    free(g->alts);
    free(g->rule_alt0);
    free(g->rule_nalt);
    free(g->classes);
    free(g->ranges);
    free(g->init);
    free(g->min_left);
    gr_cache_free(g->cache);
    free(g);
}

ci_status gr_report(ci_status s, char *err, size_t errlen) {
    if (err && errlen) snprintf(err, errlen, "%s", s.code == CI_OK ? "" : s.msg);
    return s;
}

bool gr_str_put(gr_str *s, const char *d, size_t n) {
    if (s->n + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->n + n + 1)
            cap *= 2;
        char *p = realloc(s->p, cap);
        if (!p) return false;
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->n, d, n);
    s->n += n;
    s->p[s->n] = '\0';
    return true;
}

bool gr_str_puts(gr_str *s, const char *d) {
    return gr_str_put(s, d, strlen(d));
}

bool gr_str_printf(gr_str *s, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) return false;
    return gr_str_put(s, buf, (size_t)n);
}
