/* budget.c — how far a match is from its end, in bytes. Per element
 * position: the fewest bytes that finish the rest of its alternative (a
 * class costs the UTF-8 length of its smallest code point, a reference its
 * rule's cheapest alternative: a fixpoint over the rules, computed once per
 * grammar). Per state: the fewest bytes to an accepting state, the cheapest
 * stack's frames summed. The engine keeps a constrained request able to end
 * within max_tokens with it (ci_grammar_matcher_fill_mask_budget). */
#include <stdlib.h>
#include <string.h>

#include "grammar/internal.h"

static uint32_t utf8_len(uint32_t cp) {
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

static uint32_t skip_surrogates(uint32_t cp) {
    return cp >= 0xD800 && cp <= 0xDFFF ? 0xE000 : cp;
}

uint32_t gr_class_first(const ci_grammar *g, uint32_t k, uint32_t lo, uint32_t hi) {
    const gr_class *c = &g->classes[k];
    const gr_range *r = g->ranges + c->first;
    if (hi > 0x10FFFF) hi = 0x10FFFF;
    uint32_t best = UINT32_MAX;
    if (!c->neg) {
        for (uint32_t i = 0; i < c->n; i++) {
            uint32_t a = skip_surrogates(r[i].lo > lo ? r[i].lo : lo);
            uint32_t b = r[i].hi < hi ? r[i].hi : hi;
            if (a <= b && a < best) best = a;
        }
        return best;
    }
    /* negated: the first code point from lo that no range covers; x only
     * grows, so this ends */
    for (uint32_t x = skip_surrogates(lo); x <= hi;) {
        bool moved = false;
        for (uint32_t i = 0; i < c->n && x <= hi; i++)
            if (x >= r[i].lo && x <= r[i].hi) {
                if (r[i].hi >= hi) return UINT32_MAX;
                x = skip_surrogates(r[i].hi + 1);
                moved = true;
            }
        if (!moved) return x <= hi ? x : UINT32_MAX;
    }
    return UINT32_MAX;
}

/* A binary min-heap of (bytes << 32 | rule) for the fixpoint below. */
static void heap_push(uint64_t *h, uint32_t *n, uint64_t x) {
    uint32_t i = (*n)++;
    for (; i && h[(i - 1) / 2] > x; i = (i - 1) / 2)
        h[i] = h[(i - 1) / 2];
    h[i] = x;
}

static uint64_t heap_pop(uint64_t *h, uint32_t *n) {
    uint64_t top = h[0], x = h[--*n];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= x) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}

/* Each rule's cheapest alternative by Knuth's generalization of Dijkstra: an
 * alternative's cost is known once every rule it references is, and the
 * cheapest known alternative settles its rule. O(elements log alternatives),
 * whatever the rule order (a repetition's chain of rules included). */
static ci_status rule_mins(const ci_grammar *g, uint32_t *rule_min) {
    uint32_t n_alts = g->n_alts;
    uint32_t *pending = calloc(n_alts + 1, sizeof *pending);
    uint32_t *sum = calloc(n_alts + 1, sizeof *sum);
    uint32_t *alt_rule = malloc((n_alts + 1) * sizeof *alt_rule);
    uint32_t *occ0 = calloc(g->n_rules + 1, sizeof *occ0);
    uint64_t *heap = malloc((n_alts + 1) * sizeof *heap);
    uint32_t *occ = NULL;
    ci_status s = ci_ok();
    if (!pending || !sum || !alt_rule || !occ0 || !heap) goto oom;
    uint32_t n_occ = 0;
    for (uint32_t r = 0; r < g->n_rules; r++)
        for (uint32_t a = g->rule_alt0[r]; a < g->rule_alt0[r] + g->rule_nalt[r]; a++) {
            alt_rule[a] = r;
            for (uint32_t p = g->alts[a]; g->elems[p].type != GR_END; p++)
                if (g->elems[p].type == GR_REF) {
                    pending[a]++;
                    occ0[g->elems[p].val + 1]++;
                    n_occ++;
                } else {
                    uint32_t cp = gr_class_first(g, g->elems[p].val, 0, 0x10FFFF);
                    sum[a] = gr_sat_add(sum[a], cp == UINT32_MAX ? GR_INF : utf8_len(cp));
                }
        }
    for (uint32_t r = 0; r < g->n_rules; r++)
        occ0[r + 1] += occ0[r];
    occ = malloc((n_occ + 1) * sizeof *occ);
    if (!occ) goto oom;
    uint32_t hn = 0;
    for (uint32_t a = 0; a < n_alts; a++) {
        for (uint32_t p = g->alts[a]; g->elems[p].type != GR_END; p++)
            if (g->elems[p].type == GR_REF) occ[occ0[g->elems[p].val]++] = a;
        if (!pending[a] && sum[a] < GR_INF)
            heap_push(heap, &hn, (uint64_t)sum[a] << 32 | alt_rule[a]);
    }
    for (uint32_t r = g->n_rules; r > 0; r--) /* occ0[r] was advanced to the end of r's list */
        occ0[r] = occ0[r - 1];
    occ0[0] = 0;
    for (uint32_t r = 0; r < g->n_rules; r++)
        rule_min[r] = GR_INF;
    while (hn) {
        uint64_t x = heap_pop(heap, &hn);
        uint32_t r = (uint32_t)x, val = (uint32_t)(x >> 32);
        if (rule_min[r] != GR_INF) continue; /* settled by a cheaper alternative */
        rule_min[r] = val;
        for (uint32_t i = occ0[r]; i < occ0[r + 1]; i++) {
            uint32_t a = occ[i];
            sum[a] = gr_sat_add(sum[a], val);
            if (!--pending[a] && sum[a] < GR_INF)
                heap_push(heap, &hn, (uint64_t)sum[a] << 32 | alt_rule[a]);
        }
    }
    goto done;
oom:
    s = ci_errorf(CI_ERR_NOMEM, "out of memory");
done:
    free(pending);
    free(sum);
    free(alt_rule);
    free(occ0);
    free(heap);
    free(occ);
    return s;
}

ci_status gr_make_min_left(ci_grammar *g) {
    uint32_t *rule_min = malloc((g->n_rules + 1) * sizeof *rule_min);
    g->min_left = malloc((g->n_elems + 1) * sizeof *g->min_left);
    if (!rule_min || !g->min_left) {
        free(rule_min);
        return ci_errorf(CI_ERR_NOMEM, "out of memory");
    }
    ci_status s = rule_mins(g, rule_min);
    if (s.code == CI_OK)
        for (uint32_t a = 0; a < g->n_alts; a++) { /* each alternative back to front */
            uint32_t end = g->alts[a];
            while (g->elems[end].type != GR_END)
                end++;
            g->min_left[end] = 0;
            for (uint32_t p = end; p-- > g->alts[a];) {
                const gr_elem *e = &g->elems[p];
                uint32_t c;
                if (e->type == GR_CLASS) {
                    uint32_t cp = gr_class_first(g, e->val, 0, 0x10FFFF);
                    c = cp == UINT32_MAX ? GR_INF : utf8_len(cp);
                } else {
                    c = rule_min[e->val];
                }
                g->min_left[p] = gr_sat_add(c, g->min_left[p + 1]);
            }
        }
    free(rule_min);
    return s;
}

uint32_t gr_frames_cost(const ci_grammar *g, const uint32_t *pos, uint32_t n) {
    uint32_t sum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum = gr_sat_add(sum, g->min_left[pos[i]]);
    return sum;
}

uint32_t gr_state_dist(const ci_grammar *g, const uint32_t *st) {
    uint32_t rem = st[GS_REM], lo = 0, hi = 0;
    if (rem) { /* the code points the pending bytes can still become (as gr_step_byte) */
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        lo = st[GS_CP] << (6 * rem);
        hi = lo | ((1u << (6 * rem)) - 1);
        if (lo < min_cp[st[GS_ULEN]]) lo = min_cp[st[GS_ULEN]];
    }
    uint32_t best = GR_INF;
    const uint32_t *p = st + GS_HDR;
    for (uint32_t s = 0; s < st[GS_NSTACK]; s++, p += 1 + p[0]) {
        uint32_t len = p[0];
        if (!len) {
            if (!rem) return 0;
            continue;
        }
        uint32_t top = p[len], c = gr_frames_cost(g, p + 1, len - 1);
        if (!rem) {
            c = gr_sat_add(c, g->min_left[top]);
        } else { /* the pending character finishes this stack's class, or nothing */
            if (gr_class_first(g, g->elems[top].val, lo, hi) == UINT32_MAX) continue;
            c = gr_sat_add(c, gr_sat_add(rem, g->min_left[top + 1]));
        }
        if (c < best) best = c;
    }
    return best;
}

uint32_t gr_state_need(const ci_grammar *g, const uint32_t *st) {
    return gr_state_done(st) ? 0 : gr_sat_add(gr_state_dist(g, st), 1);
}
