/* Scheduler: token budget, decodes first, chunked prefill, mixed steps,
 * prefill-first steps, preemption by recompute, priorities + aging,
 * rejection, abort, n > 1. */
#include "engine/scheduler.h"
#include "test.h"

static ci_sched_config cfg_of(int num_blocks, int bs, int budget, int max_seqs) {
    ci_sched_config c = ci_sched_default_config();
    c.block.num_blocks = num_blocks;
    c.block.block_size = bs;
    c.block.watermark = 0.0f;
    c.max_num_batched_tokens = budget;
    c.max_num_seqs = max_seqs;
    return c;
}

static ci_scheduler *mk(const ci_sched_config *c) {
    ci_scheduler *s = NULL;
    CHECK_OK(ci_sched_create(c, &s));
    return s;
}

static int32_t prompt_buf[8192];

static int prompt_base = 0; /* distinct prompts unless a test repeats one */

static int64_t add_req(ci_scheduler *s, int prompt_len, int max_tokens, int n, int priority) {
    prompt_base += 100000;
    for (int i = 0; i < prompt_len; i++)
        prompt_buf[i] = prompt_base + i;
    ci_request_params p = {prompt_buf, prompt_len, max_tokens, n, priority, 0, NULL};
    int64_t id = -1;
    CHECK_OK(ci_sched_add(s, &p, &id));
    return id;
}

static int32_t next_tok = 1;

/* schedule + fake model + update + invariants; returns the output */
/* One step: schedule, check, (seen: look at the plan before its tokens
 * land), then a token for every sample. */
static const ci_sched_output *step_seen(ci_scheduler *s, void (*seen)(const ci_sched_output *)) {
    const ci_sched_output *o = NULL;
    ci_status st = ci_sched_schedule(s, &o);
    CHECK_OK(st);
    if (st.code != CI_OK) return NULL;
    CHECKF(o->num_tokens <= ci_sched_get_config(s)->max_num_batched_tokens, "step %lld: %d tokens",
           (long long)o->step, o->num_tokens);
    CHECK_OK(ci_sched_check(s));
    if (seen) seen(o);
    int32_t toks[1024];
    for (int i = 0; i < o->num_samples; i++)
        toks[i] = next_tok++;
    const ci_sched_result *r;
    int nr;
    CHECK_OK(ci_sched_update(s, toks, o->num_samples, &r, &nr));
    CHECK(nr == o->num_samples);
    CHECK_OK(ci_sched_check(s));
    return o;
}

static const ci_sched_output *step(ci_scheduler *s) {
    return step_seen(s, NULL);
}

static void drain_finished(ci_scheduler *s, int *count, ci_finish_reason want) {
    ci_sequence *q;
    while ((q = ci_sched_pop_finished(s))) {
        if (want != CI_FINISH_NONE) CHECK(q->finish_reason == want);
        if (q->finish_reason == CI_FINISH_LENGTH) CHECK(ci_seq_num_output(q) == q->max_tokens);
        (*count)++;
        ci_seq_destroy(q);
    }
}

static void check_idle(ci_scheduler *s) {
    ci_block_manager *bm = ci_sched_block_manager(s);
    CHECK(!ci_sched_has_unfinished(s));
    CHECK(ci_bm_num_used(bm) == 0 && ci_bm_num_available(bm) == ci_bm_num_blocks(bm));
    CHECK_OK(ci_sched_check(s));
}

static void test_chunked(void) {
    ci_sched_config c = cfg_of(400, 16, 512, 16);
    ci_scheduler *s = mk(&c);
    add_req(s, 5000, 4, 1, 0);
    int prefill_steps = 0, total = 0;
    for (int i = 0; i < 10; i++) {
        const ci_sched_output *o = step(s);
        CHECK(o->num_entries == 1 &&
              o->entries[0].num_new_tokens == (i < 9 ? 512 : 5000 - 9 * 512));
        CHECK(o->entries[0].start == i * 512);
        CHECK(o->entries[0].samples == (i == 9));
        prefill_steps++;
        total += o->num_tokens;
    }
    CHECK(total == 5000 && prefill_steps == 10);
    int steps = 0, done = 0;
    while (ci_sched_has_unfinished(s) && steps++ < 10) {
        const ci_sched_output *o = step(s);
        CHECK(o->num_entries == 1 && o->num_decode_tokens == 1);
    }
    CHECK(steps == 3); /* 4 tokens: 1 from the prefill, 3 decodes */
    drain_finished(s, &done, CI_FINISH_LENGTH);
    CHECK(done == 1);
    check_idle(s);
    ci_sched_destroy(s);
}

static void test_mixed_and_order(void) {
    ci_sched_config c = cfg_of(200, 16, 512, 16);
    ci_scheduler *s = mk(&c);
    add_req(s, 10, 20, 1, 0);
    add_req(s, 20, 20, 1, 0);
    const ci_sched_output *o = step(s);
    CHECK(o->num_entries == 2 && o->num_samples == 2 && o->num_admitted == 2);
    add_req(s, 1000, 5, 1, -5); /* urgent, but decodes still go first */
    o = step(s);
    CHECK(o->num_entries == 3);
    CHECK(o->entries[0].num_new_tokens == 1 && o->entries[1].num_new_tokens == 1);
    CHECK(o->entries[2].num_new_tokens == 510 && o->entries[2].samples == 0);
    CHECK(o->num_decode_tokens == 2 && o->num_prefill_tokens == 510 && o->num_tokens == 512);
    o = step(s); /* the running chunk continues after the decodes */
    CHECK(o->num_entries == 3 && o->entries[2].start == 510 && o->entries[2].num_new_tokens == 490);
    CHECK(o->entries[2].samples == 1);
    /* a tight budget: decodes take it all, the waiting prefill waits */
    ci_sched_destroy(s);
    c = cfg_of(200, 16, 3, 16);
    s = mk(&c);
    for (int i = 0; i < 3; i++)
        add_req(s, 1, 10, 1, 0);
    o = step(s);
    CHECK(o->num_entries == 3);
    add_req(s, 50, 10, 1, -100);
    for (int i = 0; i < 3; i++) {
        o = step(s);
        CHECK(o->num_entries == 3 && o->num_decode_tokens == 3 && o->num_admitted == 0);
    }
    int done = 0;
    while (ci_sched_has_unfinished(s)) {
        o = step(s);
        CHECK(o->num_tokens <= 3);
        drain_finished(s, &done, CI_FINISH_LENGTH);
    }
    CHECK(done == 4);
    check_idle(s);
    ci_sched_destroy(s);
}

static void test_preemption(void) {
    /* 10 blocks of 4 tokens; each request needs 7 blocks at the end */
    ci_sched_config c = cfg_of(10, 4, 64, 8);
    ci_scheduler *s = mk(&c);
    int64_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = add_req(s, 8, 20, 1, 0);
    int first_victim = -1, steps = 0, done = 0;
    while (ci_sched_has_unfinished(s) && steps++ < 500) {
        const ci_sched_output *o = step(s);
        if (o->num_preempted && first_victim < 0) first_victim = (int)o->preempted[0];
        ci_sequence *q;
        while ((q = ci_sched_pop_finished(s))) {
            CHECK(q->finish_reason == CI_FINISH_LENGTH && ci_seq_num_output(q) == 20);
            CHECK(q->num_tokens == 28);
            done++;
            ci_seq_destroy(q);
        }
    }
    ci_sched_stats st = ci_sched_get_stats(s);
    CHECK(done == 3 && st.preemptions > 0);
    CHECK(first_victim == ids[2]);    /* same priority: latest arrival first */
    CHECK(st.prefill_tokens > 3 * 8); /* preempted work was recomputed */
    check_idle(s);
    ci_sched_destroy(s);

    /* priority beats arrival when picking the victim */
    s = mk(&c);
    add_req(s, 8, 20, 1, 1);
    int64_t low = add_req(s, 8, 20, 1, 9);
    add_req(s, 8, 20, 1, 1);
    first_victim = -1;
    steps = 0;
    while (ci_sched_has_unfinished(s) && steps++ < 500) {
        const ci_sched_output *o = step(s);
        if (o->num_preempted && first_victim < 0) first_victim = (int)o->preempted[0];
        drain_finished(s, &done, CI_FINISH_LENGTH);
    }
    CHECK(first_victim == low);
    check_idle(s);
    ci_sched_destroy(s);
}

static void test_priority_aging(void) {
    for (int aging = 0; aging <= 1; aging++) {
        ci_sched_config c = cfg_of(100, 4, 64, 1);
        c.aging_steps = aging ? 10 : 0;
        ci_scheduler *s = mk(&c);
        int64_t low = add_req(s, 4, 1, 1, 5);
        int64_t high = add_req(s, 4, 1, 1, 0);
        const ci_sched_output *o = step(s);
        CHECK(o->num_entries == 1 && o->entries[0].seq->group_id == high);
        int admitted_at = -1;
        for (int i = 0; i < 100 && admitted_at < 0; i++) {
            add_req(s, 4, 1, 1, 0); /* a steady stream of urgent work */
            o = step(s);
            CHECK(o->num_entries == 1);
            if (o->entries[0].seq->group_id == low) admitted_at = (int)o->step;
            int done = 0;
            drain_finished(s, &done, CI_FINISH_LENGTH);
        }
        if (aging) /* priority 5 - step/10 reaches 0 at step 50; ties go by arrival */
            CHECKF(admitted_at == 50, "admitted at %d", admitted_at);
        else
            CHECK(admitted_at < 0);
        ci_sched_destroy(s);
    }
}

static void test_reject(void) {
    ci_sched_config c = cfg_of(10, 4, 64, 4);
    ci_scheduler *s = mk(&c);
    int32_t p[64] = {0};
    ci_request_params rp = {p, 30, 20, 1, 0, 0, NULL};
    int64_t id;
    ci_status st = ci_sched_add(s, &rp, &id);
    CHECK(st.code == CI_ERR_CAPACITY && id == -1 && strstr(st.msg, "13 KV blocks") &&
          strstr(st.msg, "only 10"));
    rp.num_prompt = 20;
    CHECK_OK(ci_sched_add(s, &rp, &id)); /* exactly the whole cache */
    rp.num_prompt = 0;
    CHECK(ci_sched_add(s, &rp, &id).code == CI_ERR_INVALID);
    rp.num_prompt = 4;
    rp.max_tokens = 0;
    CHECK(ci_sched_add(s, &rp, &id).code == CI_ERR_INVALID);
    rp.max_tokens = 4;
    rp.n = 5;
    CHECK(ci_sched_add(s, &rp, &id).code == CI_ERR_INVALID);
    rp.n = 1;
    rp.prompt = NULL;
    CHECK(ci_sched_add(s, &rp, &id).code == CI_ERR_INVALID);
    CHECK(ci_sched_get_stats(s).rejected == 1);
    /* the whole-cache request completes alone */
    int done = 0, steps = 0;
    while (ci_sched_has_unfinished(s) && steps++ < 100) {
        step(s);
        drain_finished(s, &done, CI_FINISH_LENGTH);
    }
    CHECK(done == 1);
    check_idle(s);
    ci_sched_destroy(s);
    c.max_model_len = 16;
    s = mk(&c);
    rp.prompt = p;
    rp.num_prompt = 12;
    rp.max_tokens = 5;
    st = ci_sched_add(s, &rp, &id);
    CHECK(st.code == CI_ERR_CAPACITY && strstr(st.msg, "max_model_len 16"));
    CHECK(ci_sched_max_blocks_per_seq(s) == 4);
    ci_sched_destroy(s);
}

static void test_abort(void) {
    ci_sched_config c = cfg_of(64, 4, 32, 8);
    ci_scheduler *s = mk(&c);
    int64_t ids[6];
    for (int i = 0; i < 6; i++)
        ids[i] = add_req(s, 10 + 7 * i, 30, 1 + i % 3, i % 2);
    for (int i = 0; i < 5; i++)
        step(s);
    CHECK(ci_bm_num_used(ci_sched_block_manager(s)) > 0);
    int n = 0, total = 0;
    for (int i = 0; i < 6; i++) {
        CHECK_OK(ci_sched_abort(s, ids[i], &n));
        CHECK(n >= 1);
        total += n;
        CHECK_OK(ci_sched_check(s));
    }
    CHECK(total > 6); /* n > 1 groups forked siblings */
    CHECK(ci_sched_abort(s, 999, &n).code == CI_ERR_INVALID);
    CHECK_OK(ci_sched_abort(s, ids[0], &n)); /* already gone: nothing to do */
    CHECK(n == 0);
    int done = 0;
    drain_finished(s, &done, CI_FINISH_ABORT);
    CHECK(done == total);
    check_idle(s);
    const ci_sched_output *o = step(s);
    CHECK(o->num_entries == 0);
    ci_sched_destroy(s);
}

static void test_n_samples(void) {
    ci_sched_config c = cfg_of(32, 4, 64, 8);
    ci_scheduler *s = mk(&c);
    int64_t g = add_req(s, 10, 5, 3, 0);
    const ci_sched_output *o = NULL;
    CHECK_OK(ci_sched_schedule(s, &o));
    CHECK(o->num_entries == 1 && o->entries[0].samples == 3 && o->num_samples == 3);
    const ci_sched_output *o2 = NULL;
    CHECK(ci_sched_schedule(s, &o2).code == CI_ERR_INVALID); /* update first */
    const ci_sched_result *r;
    int nr;
    CHECK(ci_sched_update(s, (int32_t[]){7, 8}, 2, &r, &nr).code == CI_ERR_INVALID);
    CHECK_OK(ci_sched_update(s, (int32_t[]){7, 8, 9}, 3, &r, &nr));
    CHECK(nr == 3 && ci_sched_num_running(s) == 3);
    for (int i = 0; i < 3; i++) {
        CHECK(r[i].token == 7 + i && r[i].seq->group_id == g && r[i].seq->sample_index == i);
        CHECK(r[i].seq->num_tokens == 11 && r[i].seq->tokens[10] == 7 + i);
        CHECK(r[i].seq->block_table[2] == r[0].seq->block_table[2]);
    }
    CHECK(r[1].seq->parent_id == r[0].seq->id);
    CHECK(ci_sched_update(s, (int32_t[]){1}, 1, &r, &nr).code ==
          CI_ERR_INVALID); /* no output pending */
    CHECK_OK(ci_sched_check(s));
    o = step(s); /* writing position 10 into the shared block: two copies */
    CHECK(o->num_entries == 3 && o->num_copies == 2);
    CHECK(o->copies[0].src == o->copies[1].src && o->copies[0].dst != o->copies[1].dst);
    /* the engine stops one sample early */
    ci_sequence *q = ci_sched_find(s, g);
    CHECK(q != NULL);
    CHECK_OK(ci_sched_finish(s, q, CI_FINISH_STOP));
    CHECK(ci_sched_finish(s, q, CI_FINISH_NONE).code == CI_ERR_INVALID);
    ci_sequence *stray = NULL;
    CHECK_OK(ci_seq_create(999, (int32_t[]){1}, 1, 1, 4, &stray));
    CHECK(ci_sched_finish(s, stray, CI_FINISH_ABORT).code == CI_ERR_INVALID);
    ci_seq_destroy(stray);
    CHECK_OK(ci_sched_check(s));
    int done = 0, steps = 0;
    while (ci_sched_has_unfinished(s) && steps++ < 20)
        step(s);
    ci_sequence *f;
    int stops = 0, lengths = 0;
    while ((f = ci_sched_pop_finished(s))) {
        stops += f->finish_reason == CI_FINISH_STOP;
        lengths += f->finish_reason == CI_FINISH_LENGTH && ci_seq_num_output(f) == 5;
        done++;
        ci_seq_destroy(f);
    }
    CHECK(done == 3 && stops == 1 && lengths == 2);
    check_idle(s);
    /* the prompt's full blocks stayed cached: a repeat hits them */
    prompt_base -= 100000;
    add_req(s, 10, 2, 1, 0);
    o = step(s);
    CHECK(o->entries[0].seq->num_cached_tokens == 8 && o->entries[0].num_new_tokens == 2);
    ci_sched_destroy(s); /* destroys live sequences too */
}

/* max_logits_rows: prompt-logprob chunks are cut to the step's logits rows
 * (sampled rows first), every prompt position gets its row once, and the
 * plain requests beside them keep going. */
static int lr_plp_rows, lr_steps;

static void lr_seen(const ci_sched_output *o) {
    int rows = 0;
    for (int i = 0; i < o->num_entries; i++) {
        const ci_sched_entry *e = &o->entries[i];
        const ci_sequence *q = e->seq;
        int r = e->samples > 0;
        if (q->want_prompt_logprobs) { /* restated here, not the engine's helper */
            int lo = e->start > q->prompt_logprobs_done ? e->start : q->prompt_logprobs_done;
            int hi = e->start + e->num_new_tokens;
            if (hi > q->num_prompt_tokens - 1) hi = q->num_prompt_tokens - 1;
            if (hi > lo) r += hi - lo, lr_plp_rows += hi - lo;
        }
        if (lr_steps == 1 && !q->want_prompt_logprobs) CHECK(e->num_new_tokens == 40);
        rows += r;
    }
    CHECKF(rows <= 8, "step %lld: %d logits rows", (long long)o->step, rows);
}

static void test_logits_rows(void) {
    ci_sched_config c = cfg_of(400, 16, 256, 16);
    c.max_logits_rows = 8;
    ci_scheduler *s = mk(&c);
    prompt_base += 100000;
    for (int i = 0; i < 30; i++)
        prompt_buf[i] = prompt_base + i;
    ci_request_params p = {prompt_buf, 30, 3, 1, 0, 1, NULL};
    int64_t id = -1;
    CHECK_OK(ci_sched_add(s, &p, &id));
    add_req(s, 40, 3, 1, 0); /* no prompt logprobs: not cut by the rows */
    int done = 0;
    lr_plp_rows = lr_steps = 0;
    while (ci_sched_has_unfinished(s) && lr_steps++ < 20) {
        step_seen(s, lr_seen);
        drain_finished(s, &done, CI_FINISH_LENGTH);
    }
    CHECKF(lr_plp_rows == 29, "%d prompt-logprob rows, want 29", lr_plp_rows);
    CHECK(done == 2);
    check_idle(s);
    ci_sched_destroy(s);
}

/* prefill_first: a step with prompt work leaves the running decodes for
 * the next step, never two such steps in a row; without prompt work, or
 * when no prompt can be admitted, the decodes run as usual */
static void test_prefill_first(void) {
    ci_sched_config c = cfg_of(200, 16, 512, 4);
    c.prefill_first = 1;
    ci_scheduler *s = mk(&c);
    add_req(s, 10, 30, 1, 0);
    add_req(s, 20, 30, 1, 0);
    const ci_sched_output *o = step(s); /* nothing running: both prompts */
    CHECK(o->num_entries == 2 && o->num_admitted == 2 && o->num_decode_tokens == 0);
    o = step(s); /* no prompt work: decodes */
    CHECK(o->num_entries == 2 && o->num_decode_tokens == 2);
    add_req(s, 100, 30, 1, 0);
    o = step(s); /* the prompt alone */
    CHECK(o->num_entries == 1 && o->num_admitted == 1 && o->num_decode_tokens == 0 &&
          o->num_prefill_tokens == 100 && o->entries[0].samples == 1);
    add_req(s, 40, 30, 1, 0);
    o = step(s); /* not twice in a row: decodes first, then the prompt */
    CHECK(o->num_entries == 4 && o->num_decode_tokens == 3 && o->num_prefill_tokens == 40);
    CHECK(o->entries[3].num_new_tokens == 40);
    o = step(s);
    CHECK(o->num_entries == 4 && o->num_decode_tokens == 4);
    /* max_num_seqs (4) reached: the waiting prompt cannot be admitted, so
     * the decodes run */
    add_req(s, 30, 30, 1, 0);
    o = step(s);
    CHECK(o->num_entries == 4 && o->num_decode_tokens == 4 && o->num_admitted == 0);
    int done = 0;
    while (ci_sched_has_unfinished(s)) {
        o = step(s);
        drain_finished(s, &done, CI_FINISH_LENGTH);
    }
    CHECK(done == 5);
    check_idle(s);
    ci_sched_destroy(s);
    /* a chunked prompt: its chunks alternate between steps of their own and
     * steps with the decodes */
    c = cfg_of(400, 16, 256, 8);
    c.prefill_first = 1;
    s = mk(&c);
    add_req(s, 8, 40, 1, 0);
    step(s);
    add_req(s, 1000, 4, 1, 0);
    int alone = 0, mixed = 0, prompt = 0;
    for (int i = 0; i < 6 && prompt < 1000; i++) {
        o = step(s);
        const int pt = o->num_prefill_tokens;
        prompt += pt;
        if (pt > 0 && o->num_decode_tokens == 0) alone++;
        if (pt > 0 && o->num_decode_tokens == 1) mixed++;
        CHECK(pt > 0 && (i % 2 == 0) == (o->num_decode_tokens == 0));
    }
    CHECKF(prompt == 1000 && alone == 2 && mixed == 2, "chunks: %d tokens, %d alone, %d mixed",
           prompt, alone, mixed);
    while (ci_sched_has_unfinished(s)) {
        step(s);
        drain_finished(s, &done, CI_FINISH_LENGTH);
    }
    check_idle(s);
    ci_sched_destroy(s);
    /* a prompt-only step keeps the blocks the decodes need next: 10 blocks
     * of 4; A holds 2 and its next token needs a third, B's prompt needs 8
     * of the 8 free, so B is not admitted before A's decode, and nothing
     * is preempted */
    c = cfg_of(10, 4, 64, 4);
    c.prefill_first = 1;
    s = mk(&c);
    add_req(s, 7, 10, 1, 0);
    o = step(s);
    CHECK(o->num_admitted == 1 && o->num_prefill_tokens == 7);
    o = step(s);
    CHECK(o->num_decode_tokens == 1 && o->num_entries == 1);
    add_req(s, 32, 4, 1, 0);
    o = step(s);
    CHECKF(o->num_decode_tokens == 1 && o->num_admitted == 0 && o->num_preempted == 0,
           "kept blocks: %d decodes, %d admitted, %d preempted", o->num_decode_tokens,
           o->num_admitted, o->num_preempted);
    int pre = 0;
    while (ci_sched_has_unfinished(s)) {
        o = step(s);
        pre += o->num_preempted;
        drain_finished(s, &done, CI_FINISH_LENGTH);
    }
    CHECKF(pre == 0, "%d preemptions", pre);
    check_idle(s);
    ci_sched_destroy(s);
}

int main(void) {
    test_chunked();
    test_prefill_first();
    test_mixed_and_order();
    test_preemption();
    test_priority_aging();
    test_reject();
    test_abort();
    test_n_samples();
    test_logits_rows();
    return test_finish("test_scheduler");
}
