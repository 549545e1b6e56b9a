/* state.c — the pushdown state of a grammar match: a set of stacks of
 * element positions, advanced one byte at a time. Bytes are gathered into
 * UTF-8 code points; while a code point is incomplete the stacks stay as
 * they are and only the pending bytes are kept, after checking that some
 * stack top can still take a code point that starts with them (so a token
 * ending mid-character is allowed only when the character can finish). */
#include <stdlib.h>
#include <string.h>

#include "grammar/internal.h"

/* Words of stacks one step may produce (before removing duplicates). */
#define GR_MAX_STATE_WORDS (1u << 20)
/* Expansions per step, and their nesting: a repetition of something that
 * can be empty ("(x?){999}") has exponentially many ways to expand; such a
 * step is refused instead of running away (or off the C stack). */
#define GR_MAX_EXPANSIONS 200000u
#define GR_MAX_EXPAND_DEPTH 512

bool gr_buf_reserve(gr_buf *b, size_t n) {
    if (n <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < n)
        cap *= 2;
    uint32_t *v = realloc(b->v, cap * sizeof *v);
    if (!v) return false;
    b->v = v;
    b->cap = cap;
    return true;
}

void gr_buf_free(gr_buf *b) {
    free(b->v);
    memset(b, 0, sizeof *b);
}

void gr_work_free(gr_work *w) {
    gr_buf_free(&w->scratch);
    gr_buf_free(&w->emit);
    gr_buf_free(&w->idx);
}

bool gr_state_copy(gr_buf *dst, const uint32_t *st) {
    if (!gr_buf_reserve(dst, st[GS_WORDS])) return false;
    memcpy(dst->v, st, st[GS_WORDS] * sizeof *st);
    dst->n = st[GS_WORDS];
    return true;
}

bool gr_state_can_end(const uint32_t *st) {
    if (st[GS_REM]) return false;
    const uint32_t *p = st + GS_HDR;
    for (uint32_t s = 0; s < st[GS_NSTACK]; s++) {
        if (!p[0]) return true;
        p += 1 + p[0];
    }
    return false;
}

bool gr_state_done(const uint32_t *st) {
    return !st[GS_REM] && st[GS_NSTACK] == 1 && st[GS_HDR] == 0;
}

/* Expands the stack in w->scratch at [off, off+len) until its top is a
 * character class (or it is empty), appending each result to w->emit as
 * [len, positions]. Each level copies the stack it changes, so sibling
 * alternatives see the stack as it was. Terminates: no left recursion. */
static bool expand(const ci_grammar *g, gr_work *w, size_t off, uint32_t len, int depth) {
    if (!w->budget || depth > GR_MAX_EXPAND_DEPTH || (w->total_cap && w->total >= w->total_cap)) {
        w->exhausted = true;
        w->gave_up |= w->total_cap && w->total >= w->total_cap;
        return false;
    }
    w->budget--;
    w->total++;
    for (;;) {
        if (len == 0) break;
        uint32_t p = w->scratch.v[off + len - 1];
        const gr_elem *e = &g->elems[p];
        if (e->type == GR_CLASS) break;
        if (e->type == GR_END) {
            len--;
            continue;
        }
        /* a reference: the return position (unless it is the end of the
         * alternative: a tail call) and then each alternative's start */
        uint32_t base = len - 1;
        bool ret = g->elems[p + 1].type != GR_END;
        uint32_t r = e->val;
        for (uint32_t a = 0; a < g->rule_nalt[r]; a++) {
            size_t noff = w->scratch.n;
            uint32_t nlen = base + ret + 1;
            if (!gr_buf_reserve(&w->scratch, noff + nlen)) return false;
            memcpy(w->scratch.v + noff, w->scratch.v + off, base * sizeof(uint32_t));
            if (ret) w->scratch.v[noff + base] = p + 1;
            w->scratch.v[noff + nlen - 1] = g->alts[g->rule_alt0[r] + a];
            w->scratch.n += nlen;
            if (!expand(g, w, noff, nlen, depth + 1)) return false;
            w->scratch.n = noff;
        }
        return true;
    }
    /* a pathologically ambiguous grammar: refuse rather than grow without bound */
    if (w->emit.n > GR_MAX_STATE_WORDS || !gr_buf_reserve(&w->emit, w->emit.n + 1 + len)) {
        w->exhausted = true;
        return false;
    }
    w->emit.v[w->emit.n++] = len;
    memcpy(w->emit.v + w->emit.n, w->scratch.v + off, len * sizeof(uint32_t));
    w->emit.n += len;
    return true;
}

static int stack_cmp(const uint32_t *a, const uint32_t *b) {
    if (a[0] != b[0]) return a[0] < b[0] ? -1 : 1;
    for (uint32_t i = 1; i <= a[0]; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

/* w->emit -> out as a canonical state (sorted, unique stacks). */
static bool finish(gr_work *w, uint32_t cp, uint32_t rem, uint32_t ulen, gr_buf *out) {
    size_t ns = 0;
    for (size_t i = 0; i < w->emit.n; i += 1 + w->emit.v[i])
        ns++;
    if (!ns) return false;
    if (!gr_buf_reserve(&w->idx, ns) || !gr_buf_reserve(out, GS_HDR + w->emit.n)) return false;
    uint32_t *idx = w->idx.v;
    size_t k = 0;
    for (size_t i = 0; i < w->emit.n; i += 1 + w->emit.v[i]) {
        /* insertion sort: sets are small */
        size_t j = k++;
        while (j > 0 && stack_cmp(w->emit.v + idx[j - 1], w->emit.v + i) > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = (uint32_t)i;
    }
    uint32_t *o = out->v;
    size_t n = GS_HDR;
    uint32_t kept = 0;
    for (size_t s = 0; s < ns; s++) {
        const uint32_t *st = w->emit.v + idx[s];
        if (s && !stack_cmp(st, w->emit.v + idx[s - 1])) continue;
        memcpy(o + n, st, (1 + st[0]) * sizeof *st);
        n += 1 + st[0];
        kept++;
    }
    o[GS_WORDS] = (uint32_t)n;
    o[GS_CP] = cp;
    o[GS_REM] = rem;
    o[GS_ULEN] = ulen;
    o[GS_NSTACK] = kept;
    out->n = n;
    return true;
}

/* Some stack top may take a code point in [lo, hi]. For a negated class
 * this is approximate (true unless one excluded range covers [lo, hi]);
 * the full code point is checked exactly when it completes. */
static bool partial_ok(const ci_grammar *g, const uint32_t *st, uint32_t lo, uint32_t hi) {
    const uint32_t *p = st + GS_HDR;
    for (uint32_t s = 0; s < st[GS_NSTACK]; s++, p += 1 + p[0]) {
        if (!p[0]) continue;
        const gr_class *c = &g->classes[g->elems[p[p[0]]].val];
        const gr_range *r = g->ranges + c->first;
        bool covered = false;
        for (uint32_t i = 0; i < c->n; i++) {
            if (!c->neg && r[i].lo <= hi && r[i].hi >= lo) return true;
            if (c->neg && r[i].lo <= lo && r[i].hi >= hi) covered = true;
        }
        if (c->neg && !covered) return true;
    }
    return false;
}

static bool step_cp(const ci_grammar *g, gr_work *w, const uint32_t *in, uint32_t c, gr_buf *out) {
    w->emit.n = 0;
    w->budget = GR_MAX_EXPANSIONS;
    const uint32_t *p = in + GS_HDR;
    for (uint32_t s = 0; s < in[GS_NSTACK]; s++, p += 1 + p[0]) {
        uint32_t len = p[0];
        if (!len || !gr_class_match(g, g->elems[p[len]].val, c)) continue;
        w->scratch.n = 0;
        if (!gr_buf_reserve(&w->scratch, len)) return false;
        memcpy(w->scratch.v, p + 1, len * sizeof *p);
        w->scratch.v[len - 1]++; /* past the class */
        w->scratch.n = len;
        if (!expand(g, w, 0, len, 0)) return false;
    }
    return finish(w, 0, 0, 0, out);
}

bool gr_step_byte(const ci_grammar *g, gr_work *w, const uint32_t *in, uint8_t b, gr_buf *out) {
    uint32_t cp = in[GS_CP], rem = in[GS_REM], ulen = in[GS_ULEN];
    if (!rem) {
        if (b < 0x80) return step_cp(g, w, in, b, out);
        if (b >= 0xC2 && b <= 0xDF) {
            cp = b & 0x1Fu, rem = 1, ulen = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            cp = b & 0x0Fu, rem = 2, ulen = 3;
        } else if (b >= 0xF0 && b <= 0xF4) {
            cp = b & 0x07u, rem = 3, ulen = 4;
        } else {
            return false;
        }
    } else {
        if ((b & 0xC0) != 0x80) return false;
        cp = (cp << 6) | (b & 0x3Fu);
        rem--;
        if (!rem) {
            static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
            if (cp < min_cp[ulen] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
            return step_cp(g, w, in, cp, out);
        }
    }
    /* the code points this prefix can still become, less overlong forms,
     * surrogates and values past U+10FFFF */
    static const uint32_t min_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t lo = cp << (6 * rem), hi = lo | ((1u << (6 * rem)) - 1);
    if (lo < min_len[ulen]) lo = min_len[ulen];
    if (hi > 0x10FFFF) hi = 0x10FFFF;
    if (lo > hi || (lo >= 0xD800 && hi <= 0xDFFF)) return false;
    if (!partial_ok(g, in, lo, hi)) return false;
    if (!gr_state_copy(out, in)) return false;
    out->v[GS_CP] = cp;
    out->v[GS_REM] = rem;
    out->v[GS_ULEN] = ulen;
    return true;
}

bool gr_state_from_stack(const ci_grammar *g, gr_work *w, const uint32_t *stk, uint32_t len,
                         gr_buf *out) {
    w->emit.n = 0;
    w->scratch.n = 0;
    if (!gr_buf_reserve(&w->scratch, len + 1)) return false;
    memcpy(w->scratch.v, stk, len * sizeof *stk);
    w->scratch.n = len;
    w->budget = GR_MAX_EXPANSIONS;
    return expand(g, w, 0, len, 0) && finish(w, 0, 0, 0, out);
}

ci_status gr_make_init(ci_grammar *g) {
    gr_work w;
    memset(&w, 0, sizeof w);
    w.budget = GR_MAX_EXPANSIONS;
    gr_buf out = {0};
    ci_status s = ci_ok();
    /* the root rule's alternatives, as if referenced by a one-element stack */
    for (uint32_t a = 0; a < g->rule_nalt[g->root] && s.code == CI_OK; a++) {
        if (!gr_buf_reserve(&w.scratch, 1)) {
            s = ci_errorf(CI_ERR_NOMEM, "out of memory");
            break;
        }
        w.scratch.v[0] = g->alts[g->rule_alt0[g->root] + a];
        w.scratch.n = 1;
        if (!expand(g, &w, 0, 1, 0))
            s = w.exhausted ? ci_errorf(CI_ERR_INVALID,
                                        "grammar too ambiguous: expanding the start takes too long "
                                        "(a repetition of something that can be empty?)")
                            : ci_errorf(CI_ERR_NOMEM, "out of memory");
    }
    if (s.code == CI_OK && !finish(&w, 0, 0, 0, &out)) s = ci_errorf(CI_ERR_NOMEM, "out of memory");
    gr_work_free(&w);
    if (s.code != CI_OK) {
        gr_buf_free(&out);
        return s;
    }
    g->init = out.v;
    g->init_len = (uint32_t)out.n;
    return ci_ok();
}
