/* microbatch.c — see microbatch.h. */
#include "engine/microbatch.h"

#include <stdlib.h>
#include <string.h>

void ci_microbatches_free(ci_microbatches *m) {
    free(m->buf);
    memset(m, 0, sizeof *m);
}

/* the batch whole: one part, the arrays as they are */
static void whole(const ci_batch *b, ci_microbatches *out) {
    out->n = 1;
    out->part[0].b = *b;
    out->part[0].logits_row0 = 0;
}

ci_status ci_microbatch_split(const ci_batch *b, int want, ci_microbatches *out) {
    const int S = b->num_seqs, T = b->num_tokens, L = b->num_logits;
    if (want > CI_MAX_MICROBATCHES) want = CI_MAX_MICROBATCHES;
    if (want > S) want = S;
    if (want <= 1) {
        whole(b, out);
        return ci_ok();
    }
    /* each sequence's logits rows together, in sequence order */
    for (int i = 1; i < L; i++)
        if (b->logits_indices[i] < b->logits_indices[i - 1]) {
            whole(b, out);
            return ci_ok();
        }
    const size_t need = (size_t)S + (size_t)want + (size_t)L;
    if (need > out->cap) {
        int32_t *nb = realloc(out->buf, need * sizeof *nb);
        if (!nb) return ci_errorf(CI_ERR_NOMEM, "micro-batches: out of memory");
        out->buf = nb;
        out->cap = need;
    }
    int32_t *qs_out = out->buf, *li_out = out->buf + S + want;
    int n = 0, s0 = 0, row = 0;
    for (int k = 0; k < want && s0 < S; k++) {
        /* sequences up to about (k + 1) / want of the tokens, at least one,
         * leaving one for each part still to come */
        const int64_t goal = (int64_t)T * (k + 1) / want;
        int s1 = s0 + 1;
        while (s1 < S - (want - 1 - k) && b->query_start[s1] < goal)
            s1++;
        if (k == want - 1) s1 = S;
        const int t0 = b->query_start[s0], t1 = b->query_start[s1];
        ci_batch *p = &out->part[n].b;
        *p = *b;
        p->num_seqs = s1 - s0;
        p->num_tokens = t1 - t0;
        p->token_ids = b->token_ids + t0;
        p->positions = b->positions + t0;
        p->slot_mapping = b->slot_mapping + t0;
        p->context_lens = b->context_lens + s0;
        p->block_tables = b->block_tables + (size_t)s0 * (size_t)b->max_blocks_per_seq;
        int32_t *qs = qs_out;
        qs_out += s1 - s0 + 1;
        int maxq = 0, maxc = 0;
        for (int s = s0; s <= s1; s++)
            qs[s - s0] = b->query_start[s] - t0;
        for (int s = s0; s < s1; s++) {
            const int q = b->query_start[s + 1] - b->query_start[s];
            if (q > maxq) maxq = q;
            if (b->context_lens[s] > maxc) maxc = b->context_lens[s];
        }
        p->query_start = qs;
        p->max_query_len = maxq;
        p->max_context_len = maxc;
        /* the parent's leading decodes that fall in this part */
        p->num_decode_seqs =
            b->num_decode_seqs > s0 ? (b->num_decode_seqs < s1 ? b->num_decode_seqs : s1) - s0 : 0;
        int32_t *li = li_out;
        int nl = 0;
        while (row + nl < L && b->logits_indices[row + nl] < t1) {
            li[nl] = b->logits_indices[row + nl] - t0;
            nl++;
        }
        li_out += nl;
        p->logits_indices = li;
        p->num_logits = nl;
        out->part[n].logits_row0 = row;
        row += nl;
        n++;
        s0 = s1;
    }
    out->n = n;
    return ci_ok();
}
