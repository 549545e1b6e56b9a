/* engine.c — the engine: create (tokenizer, runner, scheduler), requests
 * in, and the step loop: schedule -> runner (copies, forward, sample) ->
 * update -> per-token output handling (request.c). A step is all or
 * nothing: a fault in the forward or sampling ends the step's requests with
 * reason error and leaves the scheduler as if the step had not been planned;
 * a fault of one request (detokenization, its output) ends only that
 * request. See engine.h and docs/engine.md. */
#include "engine/engine.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/engine_internal.h"
#include "engine/fault.h"
#include "engine/proposer.h"
#include "util/progress.h"
#include "util/trace.h"

static void add_eos(ci_engine *e, int64_t id) {
    if (id < 0 || id >= e->V || e->num_eos >= (int)(sizeof e->eos_ids / sizeof e->eos_ids[0]))
        return;
    for (int i = 0; i < e->num_eos; i++)
        if (e->eos_ids[i] == id) return;
    e->eos_ids[e->num_eos++] = (int32_t)id;
}

static void load_generation_config_eos(ci_engine *e, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    json_t *g = json_load_file(path, 0, NULL);
    json_t *v = json_object_get(g, "eos_token_id");
    if (json_is_integer(v)) add_eos(e, json_integer_value(v));
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (json_is_integer(x)) add_eos(e, json_integer_value(x));
    }
    json_decref(g);
}

void ci_engine_destroy(ci_engine *e) {
    if (!e) return;
    if (e->inflight && e->runner) (void)ci_runner_wait(e->runner);
    e->inflight = 0;
    ci_eng_bury(e);
    ci_eng_free_dead(e);
    while (e->live) {
        eng_request *r = e->live;
        e->live = r->lnext;
        ci_eng_request_free(r);
    }
    if (e->sched) ci_sched_destroy(e->sched);
    ci_batch_builder_free(&e->bb);
    ci_runner_destroy(e->runner);
    ci_eng_grammar_cache_free(e->gcache);
    ci_grammar_vocab_free(e->gvocab);
    free(e->masks);
    free(e->mask_jobs);
    ci_tokenizer_free(e->tok);
    if (e->fault == ci_fault_spec_check) ci_fault_spec_free(e->fault_user);
    free(e->plp_logits);
    free(e->lsm);
    free(e->stamp);
    free(e->slot);
    free(e->srows);
    free(e->sres);
    free(e->row_lp);
    free(e->dseqs);
    free(e->dseq_of);
    free(e->dout);
    free(e->adj);
    free(e->copy_src);
    free(e->copy_dst);
    free(e->sampled);
    free(e->outs);
    free(e->out_tokens);
    free(e->out_lp);
    free(e->out_smp);
    free(e->out_off);
    free(e->pend);
    ci_eng_flight_free(&e->fl);
    free(e);
}

static ci_status fault_hook(void *user, ci_fault_site site, int64_t step, int64_t request_id,
                            int64_t seed);

ci_status ci_engine_create(const ci_engine_config *cfg_in, ci_engine **out) {
    *out = NULL;
    ci_engine_config cfg = cfg_in ? *cfg_in : ci_engine_default_config();
    CI_TRY(ci_engine_config_check(&cfg));
    ci_engine *e = calloc(1, sizeof *e);
    if (!e) return ci_errorf(CI_ERR_NOMEM, "engine: out of memory");
    e->cfg = cfg;
    e->async = cfg.async_scheduling > 0;
    e->ahead = cfg.async_scheduling == 2;
    e->last_launched = -1;
    ci_fault_spec *fs = NULL;
    ci_status s = ci_fault_spec_from_env(&fs);
    if (s.code) goto fail;
    if (fs) {
        e->fault = ci_fault_spec_check;
        e->fault_user = fs;
    }
    {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/tokenizer.json", cfg.model_dir);
        if (stat(path, &st) == 0) {
            s = ci_tokenizer_load(cfg.model_dir, &e->tok);
            if (s.code) goto fail;
        }
    }
    s = ci_runner_create(&cfg, &e->runner);
    if (s.code) goto fail;
    ci_runner_set_fault_hook(e->runner, fault_hook, e);
    if (e->ahead && (!ci_runner_can_plan_ahead(e->runner) || cfg.num_speculative_tokens > 0)) {
        s = ci_errorf(CI_ERR_UNSUPPORTED,
                      "plan-ahead scheduling: not with speculative decoding or tensor / pipeline "
                      "parallelism (use --async-scheduling)");
        goto fail;
    }
    ci_model *model = ci_runner_model(e->runner);
    e->V = model->cfg.vocab_size;
    e->max_model_len = ci_runner_max_model_len(e->runner);
    /* a padded embedding (Qwen2.5: 152064 rows, 151665 tokens): the rows the
     * tokenizer does not know are never sampled */
    if (e->tok && ci_tokenizer_vocab_size(e->tok) < e->V)
        e->vocab_limit = ci_tokenizer_vocab_size(e->tok);
    for (int i = 0; i < model->cfg.num_eos_token_ids; i++)
        add_eos(e, model->cfg.eos_token_ids[i]);
    load_generation_config_eos(e, cfg.model_dir);
    if (e->tok) add_eos(e, ci_tokenizer_eos_id(e->tok));

    ci_runner_stats rs = ci_runner_get_stats(e->runner);
    ci_sched_config sc = ci_sched_default_config();
    sc.max_num_batched_tokens = cfg.max_num_batched_tokens;
    sc.max_num_seqs = cfg.max_num_seqs;
    sc.max_model_len = e->max_model_len;
    sc.aging_steps = cfg.aging_steps;
    sc.prefill_first = cfg.prefill_first;
    sc.max_logits_rows = ci_runner_max_logits_rows(&cfg);
    sc.block.num_blocks = rs.num_kv_blocks;
    sc.block.block_size = cfg.block_size;
    sc.block.enable_prefix_caching = cfg.enable_prefix_caching;
    s = ci_sched_create(&sc, &e->sched);
    if (s.code) goto fail;
    s = ci_batch_builder_init_for(&e->bb, e->sched);
    if (s.code) goto fail;
    size_t V = (size_t)e->V;
    e->lsm = malloc(sizeof(float) * V);
    e->stamp = calloc(V, sizeof(uint32_t));
    e->slot = calloc(V, sizeof(int32_t));
    if (!e->lsm || !e->stamp || !e->slot) {
        s = ci_errorf(CI_ERR_NOMEM, "engine: out of memory (vocabulary scratch)");
        goto fail;
    }
    for (int j = 0; j < CI_SPEC_MAX; j++)
        e->acc_rate[j] = 1.0;             /* optimistic until measured */
    if (cfg.num_speculative_tokens > 0) { /* draft-model proposal scratch */
        e->dseqs = calloc((size_t)cfg.max_num_seqs, sizeof *e->dseqs);
        e->dseq_of = calloc((size_t)cfg.max_num_seqs, sizeof *e->dseq_of);
        e->dout = calloc((size_t)cfg.max_num_seqs * 16, sizeof *e->dout);
        if (!e->dseqs || !e->dseq_of || !e->dout) {
            s = ci_errorf(CI_ERR_NOMEM, "engine: out of memory (drafts)");
            goto fail;
        }
    }
    e->m.num_kv_blocks = rs.num_kv_blocks;
    e->m.block_size = cfg.block_size;
    e->m.max_model_len = e->max_model_len;
    *out = e;
    return ci_ok();
fail:
    ci_engine_destroy(e);
    return s;
}

void ci_engine_set_fault_hook(ci_engine *e, ci_fault_fn fn, void *user) {
    if (e->fault == ci_fault_spec_check) ci_fault_spec_free(e->fault_user);
    e->fault = fn;
    e->fault_user = user;
}

/* The runner's sites (forward, sample) go through the engine's hook. */
static ci_status fault_hook(void *user, ci_fault_site site, int64_t step, int64_t request_id,
                            int64_t seed) {
    ci_engine *e = user;
    return e->fault ? e->fault(e->fault_user, site, step, request_id, seed) : ci_ok();
}

ci_model *ci_engine_model(ci_engine *e) {
    return ci_runner_model(e->runner);
}
ci_tokenizer *ci_engine_tokenizer(ci_engine *e) {
    return e->tok;
}
ci_scheduler *ci_engine_scheduler(ci_engine *e) {
    return e->sched;
}
int ci_engine_vocab_size(const ci_engine *e) {
    return e->V;
}
int ci_engine_max_model_len(const ci_engine *e) {
    return e->max_model_len;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* ---- add / abort ---- */

ci_status ci_engine_add_request(ci_engine *e, const int32_t *prompt, int num_prompt,
                                const ci_engine_sampling *sp_in, int priority,
                                int64_t *request_id) {
    if (request_id) *request_id = -1;
    ci_engine_sampling sp = sp_in ? *sp_in : ci_engine_default_sampling();
    CI_TRY(ci_eng_validate(e, prompt, num_prompt, &sp));
    if (sp.top_k < 0) sp.top_k = 0;
    eng_request *r;
    CI_TRY(ci_eng_request_new(e, &sp, num_prompt, &r));
    ci_status cs = ci_eng_structured_new(e, sp.structured_kind, sp.structured, sp.n, &r->st);
    if (cs.code) {
        ci_eng_request_free(r);
        return cs;
    }
    ci_request_params rp = {0};
    rp.prompt = prompt;
    rp.num_prompt = num_prompt;
    rp.max_tokens = sp.max_tokens;
    rp.n = sp.n;
    rp.priority = priority;
    rp.prompt_logprobs = sp.prompt_logprobs >= 0;
    rp.user = r;
    int64_t gid;
    ci_status s = ci_sched_add(e->sched, &rp, &gid);
    if (s.code) {
        ci_eng_request_free(r);
        return s;
    }
    r->id = gid;
    r->lnext = e->live;
    if (e->live) e->live->lprev = r;
    e->live = r;
    r->seed = sp.seed >= 0 ? (uint64_t)sp.seed : splitmix64((uint64_t)gid ^ 0x636966657221ull);
    e->num_live_requests++;
    e->m.num_requests++;
    e->m.prompt_tokens += num_prompt;
    if (request_id) *request_id = gid;
    return ci_ok();
}

ci_status ci_engine_add_request_text(ci_engine *e, const char *text, const ci_engine_sampling *sp,
                                     int priority, int64_t *request_id) {
    if (request_id) *request_id = -1;
    if (!e->tok)
        return ci_errorf(CI_ERR_INVALID, "request: the model has no tokenizer; give token ids");
    if (!text) return ci_errorf(CI_ERR_INVALID, "request: no prompt");
    int32_t *ids = NULL;
    size_t n = 0;
    CI_TRY(ci_tokenizer_encode(e->tok, text, strlen(text), true, &ids, &n));
    ci_status s = n == 0 ? ci_errorf(CI_ERR_INVALID, "request: prompt encodes to no tokens")
                         : ci_engine_add_request(e, ids, (int)n, sp, priority, request_id);
    free(ids);
    return s;
}

ci_status ci_engine_abort(ci_engine *e, int64_t request_id) {
    int num = 0;
    ci_status s = ci_sched_abort(e->sched, request_id, &num);
    if (s.code)
        return ci_errorf(CI_ERR_INVALID, "abort: unknown or finished request %lld",
                         (long long)request_id);
    return ci_ok();
}

int ci_engine_has_unfinished(const ci_engine *e) {
    return e->num_live_requests > 0;
}

ci_engine_metrics ci_engine_get_metrics(const ci_engine *e) {
    ci_engine_metrics m = e->m;
    ci_scheduler *s = e->sched;
    ci_block_manager *bm = ci_sched_block_manager(s);
    m.num_running = ci_sched_num_running(s);
    m.num_waiting = ci_sched_num_waiting(s);
    ci_sched_stats st = ci_sched_get_stats(s);
    m.num_preemptions = st.preemptions;
    m.kv_blocks_used = ci_bm_num_used(bm);
    m.kv_usage = m.num_kv_blocks ? (double)m.kv_blocks_used / m.num_kv_blocks : 0.0;
    ci_bm_stats bs = ci_bm_get_stats(bm);
    m.prefix_cache_queried_tokens = bs.prefix_queried_tokens;
    m.prefix_cache_hit_tokens = bs.prefix_hit_tokens;
    ci_runner_stats rs = ci_runner_get_stats(e->runner);
    m.graph_steps = rs.graph_steps;
    m.eager_steps = rs.eager_steps;
    m.time_forward_s = rs.time_forward_s;
    m.time_forward_eager_s = rs.time_forward_eager_s;
    m.time_sample_s = rs.time_sample_s;
    m.time_masks_s = rs.time_host_overlap_s - e->fl.hook_s; /* plan-ahead: completions there */
    m.time_draft_s = rs.time_draft_s;
    m.time_schedule_s -= rs.time_draft_s; /* proposals run inside the scheduling phase */
    m.load_s = rs.load_s;
    m.profile_s = rs.profile_s;
    m.capture_s = rs.capture_s;
    m.kv_cache_bytes = rs.kv_cache_bytes;
    m.num_graphs = ci_runner_num_graphs(e->runner);
    m.spec_verify_steps = st.spec_verify_steps;
    m.spec_draft_tokens = st.spec_drafted;
    m.spec_accepted_tokens = st.spec_accepted;
    for (int i = 0; i < CI_SPEC_MAX && i < 16; i++)
        m.spec_accepted_at[i] = st.spec_accepted_at[i];
    return m;
}

/* Speculative decoding: a draft for every plain decode of the step (unless
 * more than speculative_disable_by_batch_size decodes run), added to the plan
 * as far as budget and blocks allow. n-gram drafts come first and are
 * granted as they are; a draft model first has its slots granted (the plan
 * reserves K/V room for k guesses), then guesses them in the slots. */
static ci_status propose_drafts(ci_engine *e, const ci_sched_output *o) {
    const ci_engine_config *c = &e->cfg;
    int K = c->num_speculative_tokens, ndraft = 0;
    if (c->speculative_disable_by_batch_size > 0) {
        int decodes = 0;
        for (int i = 0; i < o->num_entries; i++)
            decodes += o->entries[i].samples == 1 && o->entries[i].num_new_tokens == 1;
        if (decodes > c->speculative_disable_by_batch_size) return ci_ok();
    }
    int model = ci_runner_has_draft(e->runner);
    /* adaptive K: draft up to the first position whose measured acceptance is
     * below 15%, plus one more to keep measuring it */
    int kfit = 0;
    while (kfit < K && e->acc_rate[kfit] >= 0.15)
        kfit++;
    if (kfit + 1 < K) K = kfit + 1;
    for (int i = 0; i < o->num_entries; i++) {
        const ci_sched_entry *en = &o->entries[i];
        if (en->samples != 1 || en->num_new_tokens != 1) continue;
        ci_sequence *q = en->seq;
        /* a constrained sample gets no drafts: verifying them would need the
         * grammar mask of every draft position (matcher look-ahead) */
        if (((eng_request *)q->user)->st) continue;
        int k = K, granted = 0;
        if (!model) {
            k = ci_ngram_propose(q->tokens, q->num_tokens, c->ngram_min, c->ngram_max, k, e->draft);
        } else {
            memset(e->draft, 0, sizeof e->draft); /* placeholders until the model guesses */
        }
        if (k > 0) CI_TRY(ci_sched_add_spec(e->sched, i, e->draft, k, &granted));
        if (model && granted > 0) {
            ci_draft_seq *d = &e->dseqs[ndraft];
            d->block_table = q->block_table;
            d->num_blocks = q->num_blocks;
            d->pos = q->num_computed_tokens;
            d->k = granted;
            d->last_token = q->tokens[q->num_tokens - 1];
            e->dseq_of[ndraft++] = q;
        }
    }
    if (ndraft == 0) return ci_ok();
    CI_TRY(ci_runner_propose(e->runner, e->dseqs, ndraft, e->dout));
    for (int i = 0; i < ndraft; i++)
        memcpy(e->dseq_of[i]->spec, e->dout + (size_t)i * 16,
               sizeof(int32_t) * (size_t)e->dseqs[i].k);
    return ci_ok();
}

/* Folds this step's verification counters into the decayed acceptance
 * rate per draft position (adaptive K). */
static void track_acceptance(ci_engine *e) {
    ci_sched_stats st = ci_sched_get_stats(e->sched);
    int64_t v = st.spec_verify_steps - e->seen_verify;
    if (v <= 0) return;
    for (int j = 0; j < CI_SPEC_MAX; j++) {
        double r = (double)(st.spec_accepted_at[j] - e->seen_at[j]) / (double)v;
        if (j < e->cfg.num_speculative_tokens) e->acc_rate[j] = 0.9 * e->acc_rate[j] + 0.1 * r;
        e->seen_at[j] = st.spec_accepted_at[j];
    }
    e->seen_verify = st.spec_verify_steps;
}

/* The launched step: wait for the device, read its tokens (and prompt
 * logprobs), update the scheduler, and the tokens' first pass (what ends a
 * sequence by the token alone); their outputs wait in e->pend. */
static void complete_step(ci_engine *e) {
    const ci_sched_output *o = e->fl_o;
    e->inflight = 0;
    e->num_pend = 0;
    e->out_step = e->fl_step;
    ci_status s = ci_runner_wait(e->runner);
    double t0 = ci_now();
    CI_TRACE_PUSH("update");
    if (!s.code) s = ci_eng_collect(e, o, e->bb.logits_start);
    const ci_sched_result *res = NULL;
    int nres = 0;
    if (!s.code) s = ci_sched_update(e->sched, e->sampled, o->num_samples, &res, &nres);
    if (!s.code)
        s = ci_eng_grow((void **)&e->pend, &e->pend_cap, nres, sizeof *e->pend, 0, NULL, NULL);
    if (s.code) {
        ci_eng_fail_step(e, o, s);
        nres = 0;
    } else if (e->cfg.num_speculative_tokens > 0) {
        track_acceptance(e);
    }
    for (int i = 0; i < nres; i++) {
        eng_request *r = ci_eng_request_of(res, i);
        const ci_engine_logprob *lp =
            e->srows[res[i].row].top_logprobs >= 0 ? &e->row_lp[res[i].row] : NULL;
        eng_pending *p = &e->pend[e->num_pend];
        ci_status st = r ? ci_eng_token_stop(e, res[i].seq, res[i].token, res[i].finished, lp, p)
                         : ci_errorf(CI_ERR_INTERNAL, "engine: sequence %lld has no request",
                                     (long long)res[i].seq->id);
        if (st.code && r) ci_eng_fail_request(e, r, st);
        if (!st.code && p->r) e->num_pend++;
    }
    CI_TRACE_POP();
    e->m.time_output_s += ci_now() - t0;
}

ci_status ci_engine_complete_step(ci_engine *e) {
    /* plan-ahead: the next plan is made before the step in flight completes,
     * so requests added now make it anyway; completing here would stall the
     * device. Where the forward marks its last layers (CINFER_AHEAD_READY),
     * wait for that mark: requests added then make the next plan, which is
     * launched while the step's tail runs. */
    if (e->inflight && e->ahead) return ci_runner_wait_ready(e->runner);
    if (e->inflight) complete_step(e);
    return ci_ok();
}

/* Only the first tokens leave here: the other outputs of the step (a
 * mixed step's ~50 decode tokens) would be detokenized before the launch
 * and, in the server, written ahead of the first token in the same burst
 * (its client reads them all before it). They stay pending, in order, for
 * the next call's output pass, as do the finished sequences' pops (a
 * sequence that ended at this step may still owe its last token). */
ci_status ci_engine_early_outputs(ci_engine *e, const ci_engine_output **outs, int *num_outs) {
    *outs = NULL;
    *num_outs = 0;
    /* plan-ahead: a call's outputs all leave from it (complete_flight
     * starts the pending list afresh) */
    if (e->ahead) return ci_ok();
    int first = 0;
    for (int i = 0; i < e->num_pend && !first; i++)
        first = e->pend[i].r && e->pend[i].nout == 1;
    if (!first) return ci_ok();
    e->num_outs = 0;
    double t0 = ci_now();
    CI_TRACE_PUSH("output");
    int kept = 0;
    for (int i = 0; i < e->num_pend; i++) {
        eng_pending *p = &e->pend[i];
        if (p->nout != 1) {
            e->pend[kept++] = *p;
            continue;
        }
        ci_status st = ci_eng_token_output(e, p);
        if (st.code) ci_eng_fail_request(e, p->r, st);
    }
    e->num_pend = kept;
    CI_TRACE_POP();
    e->m.time_output_s += ci_now() - t0;
    ci_eng_publish_outs(e, outs, num_outs);
    return ci_ok();
}

/* One call: complete the step on the device (async scheduling: the one the
 * previous call launched), plan and launch the next, then the completed
 * step's outputs while the device runs it (sync: after completing it). */
ci_status ci_engine_step(ci_engine *e, const ci_engine_output **outs, int *num_outs) {
    *outs = NULL;
    *num_outs = 0;
    if (e->ahead) return ci_eng_step_ahead(e, outs, num_outs);
    e->num_outs = 0;
    CI_TRACE_PUSH("step");
    if (e->inflight) complete_step(e);
    ci_eng_bury(e); /* nothing on the device names them now */
    ci_eng_free_dead(e);
    double t0 = ci_now();
    CI_TRACE_PUSH("schedule");
    const ci_sched_output *o = NULL;
    ci_status ret = ci_sched_schedule(e->sched, &o);
    ci_status ls = ci_ok(); /* the launch's failure, applied after the outputs */
    if (!ret.code && o->num_entries > 0) {
        e->m.num_steps++;
        int used = ci_bm_num_used(ci_sched_block_manager(e->sched));
        if (used > e->m.peak_kv_blocks_used) e->m.peak_kv_blocks_used = used;
        ls = e->cfg.num_speculative_tokens > 0 ? propose_drafts(e, o) : ci_ok();
        const ci_batch *b;
        if (!ls.code) ls = ci_batch_build(&e->bb, o, &b);
        e->m.time_schedule_s += ci_now() - t0;
        CI_TRACE_POP();
        if (!ls.code) ls = ci_eng_launch_step(e, o, b, NULL);
        if (!ls.code) {
            e->inflight = 1;
            e->fl_o = o;
            e->fl_step = e->m.num_steps;
            e->fl_sched_step = e->last_launched = o->step;
            if (!e->async) complete_step(e);
        }
    } else {
        e->m.time_schedule_s += ci_now() - t0;
        CI_TRACE_POP();
    }
    return ci_eng_end_call(e, o, ls, ret, outs, num_outs);
}
