/* engine_ahead.c — plan-ahead scheduling (async_scheduling 2; vLLM V1's
 * async scheduling, SGLang's overlap scheduler): step N + 1 is planned,
 * built and launched while step N still runs, so the device goes from one
 * step to the next without waiting for the host.
 *
 * One ci_engine_step (P: the step on the device, Q: the next one):
 *   schedule Q   P's sampled tokens are placeholders (ci_sequence
 *                pending_pos): each decode of Q goes on as if P's token
 *                did not end its sequence
 *   launch Q     its batch names P's sample rows (sample_src); the device
 *                reads P's tokens into Q's input (take_samples) and runs Q's
 *                forward right after P; then, in the runner's hook between
 *                Q's forward and Q's sample op:
 *     complete P   wait, write its tokens into their sequences, the stops a
 *                  token makes by itself (a sequence P ends is in Q too: Q's
 *                  token for it is dropped, as for a stop string today)
 *     Q's rows     sample rows, penalties' adjustment lists and grammar
 *                  masks from the tokens as they now stand
 *   apply Q      ci_sched_update with placeholders: the scheduler moves on
 *                as if Q were done (max_tokens ends a sequence here), so the
 *                next call can plan Q + 1
 *   outputs      of P: detokenization, stop strings, emit
 * P completes before Q is planned only when it owes prompt logprobs (their
 * logits, which Q's forward overwrites). The tokens, logprobs and stops
 * are those of the other modes; a sequence that ends at P costs one wasted
 * row in Q. Not with speculative decoding or several ranks. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "util/progress.h"
#include "util/trace.h"

void ci_eng_flight_free(eng_flight *f) {
    free(f->entries);
    free(f->plp_p0);
    free(f->res);
    free(f->srows);
    free(f->sres);
    free(f->row_lp);
    memset(f, 0, sizeof *f);
}

/* The step in flight: wait, its tokens into their sequences, the stops
 * they make (outputs wait in e->pend). A failed step fails the requests
 * of its plan; it was applied already, so nothing is rolled back. */
static void complete_flight(ci_engine *e) {
    eng_flight *f = &e->fl;
    e->inflight = 0;
    e->num_pend = 0;
    e->out_step = f->eng_step;
    ci_status s = ci_runner_wait(e->runner);
    double t0 = ci_now();
    CI_TRACE_PUSH("update");
    /* prompt logprobs: P completes before Q is built, so the batch's
     * logits rows are still P's */
    if (!s.code && f->plp)
        s = ci_eng_collect_plp(e, f->entries, f->num_entries, e->bb.logits_start, f->plp_p0);
    if (!s.code)
        s = ci_eng_grow((void **)&e->pend, &e->pend_cap, f->nres, sizeof *e->pend, 0, NULL, NULL);
    for (int i = 0; i < f->nres; i++) {
        const ci_sched_result *rs = &f->res[i];
        ci_sequence *q = rs->seq;
        const int k = rs->row;
        /* a failed step's requests fail below; 0 keeps their ids valid */
        if (q->pending_pos >= 0) q->tokens[q->pending_pos] = s.code ? 0 : f->sres[k].token;
        q->pending_pos = q->pending_row = -1;
        if (s.code) continue;
        /* ended since it was applied (abort, an error, a stop string): the
         * token is dropped, as the other modes drop a token in flight */
        if (ci_seq_is_finished(q) && !(rs->finished && q->finish_reason == CI_FINISH_LENGTH))
            continue;
        const ci_engine_logprob *lp = NULL;
        if (f->srows[k].top_logprobs >= 0) {
            ci_eng_row_logprob(&f->sres[k], &f->row_lp[k]); /* its output points here */
            lp = &f->row_lp[k];
        }
        eng_pending *p = &e->pend[e->num_pend];
        ci_status st = ci_eng_token_stop(e, q, f->sres[k].token, rs->finished, lp, p);
        if (st.code) ci_eng_fail_request(e, q->user, st);
        if (!st.code && p->r) e->num_pend++;
    }
    if (s.code) {
        e->num_pend = 0;
        s = ci_status_wrap(s, "engine step %lld", (long long)f->sched_step);
        for (int i = 0; i < f->num_entries; i++) {
            eng_request *r = f->entries[i].seq->user;
            if (r) ci_eng_fail_request(e, r, s);
        }
    }
    f->nres = f->num_entries = 0;
    CI_TRACE_POP();
    e->m.time_output_s += ci_now() - t0;
}

/* Whether entry i of the step owes prompt-logprob rows (its logits rows
 * beyond the one it samples). */
static int owes_plp(const ci_sched_output *o, const int32_t *logits_start) {
    for (int i = 0; i < o->num_entries; i++)
        if (logits_start[i + 1] - logits_start[i] > (o->entries[i].samples > 0)) return 1;
    return 0;
}

/* The runner's hook for Q, after Q's forward is enqueued: P completes
 * (the device runs Q's forward meanwhile), then Q's sample rows are built
 * from the tokens as they now stand. */
static ci_status rows_hook(void *user, ci_runner_step *st) {
    ci_engine *e = user;
    if (e->inflight) {
        double t0 = ci_now();
        complete_flight(e);
        e->fl.hook_s += ci_now() - t0;
    }
    const ci_sched_output *o = e->fl.next;
    CI_TRY(ci_eng_build_rows(e, o, e->bb.logits_start, &st->num_rows));
    st->rows = e->srows;
    st->adj = e->adj;
    st->num_adj = e->num_adj;
    st->masks = e->masks;
    st->num_masks = e->num_masks;
    return e->num_masks > 0 ? ci_eng_fill_masks(e, st) : ci_ok();
}

static void swap_ptr(void **a, void **b) {
    void *t = *a;
    *a = *b;
    *b = t;
}

/* Q, launched: the scheduler applies it with placeholder tokens, and the
 * flight keeps what Q's completion needs (its sample arrays too: the next
 * step builds into the other set, the one holding P's outputs' logprobs
 * until the caller's next call). */
static ci_status apply_flight(ci_engine *e, const ci_sched_output *o, int plp) {
    eng_flight *f = &e->fl;
    void **extra[1] = {(void **)&f->plp_p0};
    size_t esz[1] = {sizeof(int)};
    CI_TRY(ci_eng_grow((void **)&f->entries, &f->entries_cap, o->num_entries, sizeof *f->entries, 1,
                       extra, esz));
    memcpy(f->entries, o->entries, sizeof *f->entries * (size_t)o->num_entries);
    f->num_entries = o->num_entries;
    for (int i = 0; i < o->num_entries; i++) { /* the update moves prompt_logprobs_done */
        const ci_sched_entry *en = &o->entries[i];
        ci_seq_plp_rows(en->seq, en->start, en->start + en->num_new_tokens, &f->plp_p0[i]);
    }
    for (int k = 0; k < o->num_samples; k++)
        e->sampled[k] = -1;
    const ci_sched_result *res = NULL;
    int nres = 0;
    CI_TRY(ci_sched_update(e->sched, e->sampled, o->num_samples, &res, &nres));
    CI_TRY(ci_eng_grow((void **)&f->res, &f->res_cap, nres, sizeof *f->res, 0, NULL, NULL));
    for (int i = 0; i < nres; i++) {
        f->res[i] = res[i];
        ci_sequence *q = res[i].seq;
        (void)ci_eng_request_of(res, i); /* a new fork gets its request now */
        q->pending_pos = q->num_tokens - 1;
        q->pending_row = res[i].row;
    }
    f->nres = nres;
    f->plp = plp;
    f->sched_step = o->step;
    f->eng_step = e->m.num_steps;
    swap_ptr((void **)&e->srows, (void **)&f->srows);
    swap_ptr((void **)&e->sres, (void **)&f->sres);
    swap_ptr((void **)&e->row_lp, (void **)&f->row_lp);
    const int cap = e->srows_cap;
    e->srows_cap = f->srows_cap;
    f->srows_cap = cap;
    e->inflight = 1;
    e->fl_sched_step = o->step;
    return ci_ok();
}

ci_status ci_eng_step_ahead(ci_engine *e, const ci_engine_output **outs, int *num_outs) {
    e->num_outs = 0;
    CI_TRACE_PUSH("step");
    ci_eng_bury(e); /* what no step in flight names */
    ci_eng_free_dead(e);
    if (e->inflight && e->fl.plp) complete_flight(e); /* its logits, before Q's forward */
    double t0 = ci_now();
    CI_TRACE_PUSH("schedule");
    const ci_sched_output *o = NULL;
    ci_status ret = ci_sched_schedule(e->sched, &o);
    ci_status ls = ci_ok(); /* the launch's failure, applied after the outputs */
    int launched = 0;
    if (!ret.code && o->num_entries > 0) {
        e->m.num_steps++;
        int used = ci_bm_num_used(ci_sched_block_manager(e->sched));
        if (used > e->m.peak_kv_blocks_used) e->m.peak_kv_blocks_used = used;
        const ci_batch *b = NULL;
        ls = ci_batch_build(&e->bb, o, &b);
        e->m.time_schedule_s += ci_now() - t0;
        CI_TRACE_POP();
        int plp = !ls.code && owes_plp(o, e->bb.logits_start);
        const int ahead = e->inflight;
        e->fl.next = o;
        if (!ls.code) ls = ci_eng_launch_step(e, o, b, rows_hook); /* P completes in the hook */
        if (!ls.code) {
            launched = 1;
            e->last_launched = o->step;
            e->m.ahead_steps += ahead;
            ls = apply_flight(e, o, plp);
            if (ls.code) { /* Q ran but cannot be applied: it fails as a whole */
                (void)ci_runner_wait(e->runner);
                e->inflight = 0;
            }
        }
    } else {
        e->m.time_schedule_s += ci_now() - t0;
        CI_TRACE_POP();
    }
    if (!launched && e->inflight) complete_flight(e);
    return ci_eng_end_call(e, o, ls, ret, outs, num_outs);
}
