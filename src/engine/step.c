/* step.c — what every engine step does, whichever loop runs it (engine.c:
 * synchronous and async scheduling; engine_ahead.c: plan-ahead): the launch
 * (copy-on-write pairs, sample rows, the runner), a failed step's requests,
 * the completed step's outputs and the end of a call. */
#include "engine/engine_internal.h"
#include "util/progress.h"
#include "util/trace.h"

/* Copy-on-write pairs, sample rows (or, given a hook, rows the hook builds
 * while the forward runs), then the runner's launch. */
ci_status ci_eng_launch_step(ci_engine *e, const ci_sched_output *o, const ci_batch *b,
                             ci_status (*rows_hook)(void *, ci_runner_step *)) {
    if (o->num_copies > 0) {
        void **extra[1] = {(void **)&e->copy_dst};
        size_t esz[1] = {sizeof(int32_t)};
        CI_TRY(ci_eng_grow((void **)&e->copy_src, &e->copy_cap, o->num_copies, sizeof(int32_t), 1,
                           extra, esz));
        for (int i = 0; i < o->num_copies; i++) {
            e->copy_src[i] = o->copies[i].src;
            e->copy_dst[i] = o->copies[i].dst;
        }
    }
    ci_runner_step st = {.batch = b,
                         .copy_src = e->copy_src,
                         .copy_dst = e->copy_dst,
                         .num_copies = o->num_copies,
                         .before_sample = rows_hook,
                         .before_sample_user = e};
    if (rows_hook) {
        CI_TRY(ci_eng_reserve_rows(e, o->num_samples)); /* the results' array stays put */
    } else {
        CI_TRY(ci_eng_build_rows(e, o, e->bb.logits_start, &st.num_rows));
        st.rows = e->srows;
        st.adj = e->adj;
        st.num_adj = e->num_adj;
        st.masks = e->masks;
        st.num_masks = e->num_masks;
        if (e->num_masks > 0) st.before_sample = ci_eng_fill_masks;
    }
    ci_runner_set_step(e->runner, e->m.num_steps);
    return ci_runner_launch(e->runner, &st, e->sres);
}

/* The step's forward or sampling failed: nothing advances, and every
 * request with a sequence in the step ends with reason error. */
void ci_eng_fail_step(ci_engine *e, const ci_sched_output *o, ci_status s) {
    ci_sched_abandon(e->sched);
    s = ci_status_wrap(s, "engine step %lld", (long long)o->step);
    for (int i = 0; i < o->num_entries; i++) {
        eng_request *r = o->entries[i].seq->user;
        if (r) ci_eng_fail_request(e, r, s);
    }
}

/* Forked siblings (ci_seq_clone clears user) get their request from the
 * parent, whose result comes first in the same step. */
eng_request *ci_eng_request_of(const ci_sched_result *res, int i) {
    ci_sequence *q = res[i].seq;
    for (int j = i - 1; !q->user && j >= 0; j--)
        if (res[j].seq->id == q->parent_id) q->user = res[j].seq->user;
    return q->user;
}

/* The completed step's pending outputs: detokenized, stop strings applied,
 * into e->outs (outputs phase of a call) */
void ci_eng_emit_pending(ci_engine *e) {
    for (int i = 0; i < e->num_pend; i++) {
        ci_status st = ci_eng_token_output(e, &e->pend[i]);
        if (st.code) ci_eng_fail_request(e, e->pend[i].r, st);
    }
    e->num_pend = 0;
}

/* e->outs as the caller reads them (their pointers into the engine's
 * arrays), after the finished requests were popped */
void ci_eng_publish_outs(ci_engine *e, const ci_engine_output **outs, int *num_outs) {
    for (int i = 0; i < e->num_outs; i++) {
        e->outs[i].token_ids = e->outs[i].num_token_ids ? &e->out_tokens[i] : NULL;
        e->outs[i].logprobs = e->outs[i].num_token_ids ? e->out_lp[i] : NULL;
        const eng_sample *smp = e->out_smp[i];
        e->outs[i].text = smp->text ? smp->text + e->out_off[i] : "";
    }
    *outs = e->outs;
    *num_outs = e->num_outs;
}

ci_status ci_eng_end_call(ci_engine *e, const ci_sched_output *o, ci_status ls, ci_status ret,
                          const ci_engine_output **outs, int *num_outs) {
    double t0 = ci_now();
    CI_TRACE_PUSH("output");
    ci_eng_emit_pending(e);
    if (ls.code) ci_eng_fail_step(e, o, ls);
    ci_status s = ci_eng_pop_finished(e);
    if (!ret.code) ret = s;
    e->m.time_output_s += ci_now() - t0;
    CI_TRACE_POP(); /* output */
    CI_TRACE_POP(); /* step */
    ci_eng_publish_outs(e, outs, num_outs);
    return ret;
}
