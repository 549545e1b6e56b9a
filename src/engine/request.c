/* request.c — per-request state: validation at add time, stop ids and stop
 * strings matched across token boundaries (the text that could still start
 * a stop string is held back), outputs, and ending a request with an error
 * when an engine fault hits it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

ci_status ci_eng_grow(void **p, int *cap, int need, size_t elem, int nptr, void **extra[],
                      size_t extra_elem[]) {
    if (need <= *cap) return ci_ok();
    int nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, elem * (size_t)nc);
    if (!np) return ci_errorf(CI_ERR_NOMEM, "engine: out of memory");
    *p = np;
    for (int i = 0; i < nptr; i++) {
        void *q = realloc(*extra[i], extra_elem[i] * (size_t)nc);
        if (!q) return ci_errorf(CI_ERR_NOMEM, "engine: out of memory");
        *extra[i] = q;
    }
    *cap = nc;
    return ci_ok();
}

int ci_eng_is_eos(const ci_engine *e, int32_t t) {
    for (int i = 0; i < e->num_eos; i++)
        if (e->eos_ids[i] == t) return 1;
    return 0;
}

ci_status ci_eng_validate(const ci_engine *e, const int32_t *prompt, int np,
                          const ci_engine_sampling *p) {
    if (np < 1 || !prompt) return ci_errorf(CI_ERR_INVALID, "request: empty prompt");
    for (int i = 0; i < np; i++)
        if (prompt[i] < 0 || prompt[i] >= e->V)
            return ci_errorf(CI_ERR_INVALID,
                             "request: prompt token %d = %d outside the vocabulary [0, %d)", i,
                             prompt[i], e->V);
    if (p->max_tokens < 1)
        return ci_errorf(CI_ERR_INVALID, "request: max_tokens must be >= 1 (got %d)",
                         p->max_tokens);
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return ci_errorf(CI_ERR_INVALID, "request: temperature must be >= 0 (got %g)",
                         (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ci_errorf(CI_ERR_INVALID, "request: top_p must be in (0, 1] (got %g)",
                         (double)p->top_p);
    if (p->top_k < -1)
        return ci_errorf(CI_ERR_INVALID, "request: top_k must be >= -1 (got %d)", p->top_k);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return ci_errorf(CI_ERR_INVALID, "request: min_p must be in [0, 1] (got %g)",
                         (double)p->min_p);
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        return ci_errorf(CI_ERR_INVALID, "request: repetition_penalty must be > 0 (got %g)",
                         (double)p->repetition_penalty);
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
        return ci_errorf(CI_ERR_INVALID, "request: presence_penalty must be in [-2, 2] (got %g)",
                         (double)p->presence_penalty);
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
        return ci_errorf(CI_ERR_INVALID, "request: frequency_penalty must be in [-2, 2] (got %g)",
                         (double)p->frequency_penalty);
    if (p->min_tokens < 0 || p->min_tokens > p->max_tokens)
        return ci_errorf(CI_ERR_INVALID, "request: min_tokens must be in [0, max_tokens] (got %d)",
                         p->min_tokens);
    if (p->n < 1 || p->n > e->cfg.max_num_seqs)
        return ci_errorf(CI_ERR_INVALID, "request: n must be in [1, max_num_seqs %d] (got %d)",
                         e->cfg.max_num_seqs, p->n);
    if (p->logprobs > CI_MAX_LOGPROBS || p->prompt_logprobs > CI_MAX_LOGPROBS)
        return ci_errorf(CI_ERR_INVALID, "request: at most %d logprobs", CI_MAX_LOGPROBS);
    if (p->num_stop < 0 || p->num_stop_token_ids < 0 || (p->num_stop && !p->stop) ||
        (p->num_stop_token_ids && !p->stop_token_ids))
        return ci_errorf(CI_ERR_INVALID, "request: bad stop lists");
    for (int i = 0; i < p->num_stop; i++)
        if (!p->stop[i] || !p->stop[i][0])
            return ci_errorf(CI_ERR_INVALID, "request: empty stop string");
    for (int i = 0; i < p->num_stop_token_ids; i++)
        if (p->stop_token_ids[i] < 0 || p->stop_token_ids[i] >= e->V)
            return ci_errorf(CI_ERR_INVALID, "request: stop token id %d outside [0, %d)",
                             p->stop_token_ids[i], e->V);
    if (p->num_logit_bias < 0 || (p->num_logit_bias && !p->logit_bias))
        return ci_errorf(CI_ERR_INVALID, "request: bad logit_bias list");
    for (int i = 0; i < p->num_logit_bias; i++) {
        const cinfer_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= e->V)
            return ci_errorf(CI_ERR_INVALID, "request: logit_bias token %d outside [0, %d)",
                             b->token, e->V);
        if (!(b->bias >= -100.0f && b->bias <= 100.0f))
            return ci_errorf(CI_ERR_INVALID,
                             "request: logit_bias of token %d must be in [-100, 100] (got %g)",
                             b->token, (double)b->bias);
    }
    if (np >= e->max_model_len)
        return ci_errorf(CI_ERR_CAPACITY,
                         "request: prompt has %d tokens; the context (max_model_len) is %d", np,
                         e->max_model_len);
    if ((int64_t)np + p->max_tokens > e->max_model_len)
        return ci_errorf(
            CI_ERR_CAPACITY,
            "request: prompt (%d) + max_tokens (%d) exceeds the context (max_model_len) %d", np,
            p->max_tokens, e->max_model_len);
    return ci_ok();
}

/* A request's own copy of what it was given (the caller's stop lists may
 * not outlive the call) and one detokenizer per sample. */
ci_status ci_eng_request_new(ci_engine *e, const ci_engine_sampling *sp_in, int num_prompt,
                             eng_request **out) {
    *out = NULL;
    ci_engine_sampling sp = *sp_in;
    eng_request *r = calloc(1, sizeof *r);
    if (!r) return ci_errorf(CI_ERR_NOMEM, "request: out of memory");
    r->n = sp.n;
    r->num_prompt = num_prompt;
    ci_status s = ci_ok();
    r->samples = calloc((size_t)sp.n, sizeof *r->samples);
    if (!r->samples) {
        free(r);
        return ci_errorf(CI_ERR_NOMEM, "request: out of memory");
    }
    if (sp.num_stop > 0) {
        r->stop = calloc((size_t)sp.num_stop, sizeof *r->stop);
        r->stop_len = calloc((size_t)sp.num_stop, sizeof *r->stop_len);
        if (!r->stop || !r->stop_len) s = ci_errorf(CI_ERR_NOMEM, "request: out of memory");
        for (int i = 0; !s.code && i < sp.num_stop; i++) {
            r->stop[i] = strdup(sp.stop[i]);
            if (!r->stop[i]) {
                s = ci_errorf(CI_ERR_NOMEM, "request: out of memory");
                break;
            }
            r->stop_len[i] = strlen(r->stop[i]);
            if (r->stop_len[i] > r->max_stop_len) r->max_stop_len = r->stop_len[i];
        }
    }
    int nstop = sp.num_stop;
    sp.num_stop = 0; /* until copied: free_request frees num_stop strings */
    if (!s.code)
        sp.num_stop = nstop;
    else {
        /* free the partial copy */
        for (int i = 0; r->stop && i < nstop; i++)
            free(r->stop[i]);
        free(r->stop);
        r->stop = NULL;
    }
    if (!s.code && sp.num_stop_token_ids > 0) {
        r->stop_ids = malloc(sizeof(int32_t) * (size_t)sp.num_stop_token_ids);
        if (!r->stop_ids)
            s = ci_errorf(CI_ERR_NOMEM, "request: out of memory");
        else
            memcpy(r->stop_ids, sp.stop_token_ids, sizeof(int32_t) * (size_t)sp.num_stop_token_ids);
    }
    if (!s.code && sp.num_logit_bias > 0) {
        r->bias = malloc(sizeof *r->bias * (size_t)sp.num_logit_bias);
        if (!r->bias)
            s = ci_errorf(CI_ERR_NOMEM, "request: out of memory");
        else
            memcpy(r->bias, sp.logit_bias, sizeof *r->bias * (size_t)sp.num_logit_bias);
    }
    sp.stop = NULL;
    sp.stop_token_ids = NULL;
    sp.logit_bias = NULL;
    r->sp = sp;
    if (!s.code && sp.prompt_logprobs >= 0 && num_prompt > 1) {
        r->plp = calloc((size_t)(num_prompt - 1), sizeof *r->plp);
        if (!r->plp) s = ci_errorf(CI_ERR_NOMEM, "request: out of memory");
    }
    for (int i = 0; !s.code && i < sp.n; i++)
        if (e->tok)
            s = ci_detok_stream_create(e->tok, sp.skip_special_tokens != 0, &r->samples[i].detok);
    if (s.code) {
        ci_eng_request_free(r);
        return s;
    }
    *out = r;
    return ci_ok();
}

void ci_eng_request_free(eng_request *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) {
        ci_detok_stream_free(r->samples[i].detok);
        free(r->samples[i].text);
    }
    free(r->samples);
    for (int i = 0; i < r->sp.num_stop; i++)
        free(r->stop[i]);
    free(r->stop);
    free(r->stop_len);
    free(r->stop_ids);
    free(r->bias);
    free(r->plp);
    free(r->error);
    ci_eng_structured_free(r->st);
    free(r);
}

int64_t ci_eng_busy_since(const ci_engine *e) {
    return e->inflight ? e->fl_sched_step : INT64_MAX;
}

void ci_eng_free_dead(ci_engine *e) {
    const int64_t busy = ci_eng_busy_since(e);
    eng_request **pp = &e->dead;
    while (*pp) {
        eng_request *r = *pp;
        if (r->dead_after < busy) {
            *pp = r->next;
            ci_eng_request_free(r);
        } else {
            pp = &r->next;
        }
    }
}

static int is_stop_id(const eng_request *r, int32_t t) {
    for (int i = 0; i < r->sp.num_stop_token_ids; i++)
        if (r->stop_ids[i] == t) return 1;
    return 0;
}

static ci_status text_append(eng_sample *smp, const char *t, size_t n) {
    if (n == 0) return ci_ok();
    if (smp->len + n + 1 > smp->cap) {
        size_t nc = smp->cap ? smp->cap : 64;
        while (nc < smp->len + n + 1)
            nc *= 2;
        char *p = realloc(smp->text, nc);
        if (!p) return ci_errorf(CI_ERR_NOMEM, "engine: out of memory (text)");
        smp->text = p;
        smp->cap = nc;
    }
    memcpy(smp->text + smp->len, t, n);
    smp->len += n;
    smp->text[smp->len] = '\0';
    return ci_ok();
}

/* Searches stop strings in smp->text starting near `from`; cuts the text at
 * the earliest match. Returns 1 on a match. */
static int find_stop(const eng_request *r, eng_sample *smp, size_t from) {
    if (r->sp.num_stop == 0) return 0;
    size_t start = from + 1 > r->max_stop_len ? from + 1 - r->max_stop_len : 0;
    size_t best = (size_t)-1;
    for (int i = 0; i < r->sp.num_stop; i++) {
        size_t L = r->stop_len[i];
        if (smp->len < L) continue;
        for (size_t p = start; p + L <= smp->len; p++) {
            if (p >= best) break;
            if (memcmp(smp->text + p, r->stop[i], L) == 0) {
                best = p;
                break;
            }
        }
    }
    if (best == (size_t)-1) return 0;
    smp->len = best;
    if (smp->text) smp->text[best] = '\0';
    return 1;
}

/* Bytes at the end of the text that could begin a stop string. */
static size_t holdback(const eng_request *r, const eng_sample *smp) {
    size_t hold = 0;
    for (int i = 0; i < r->sp.num_stop; i++) {
        size_t L = r->stop_len[i];
        for (size_t k = L - 1; k > hold; k--) {
            if (k > smp->len) continue;
            if (memcmp(smp->text + smp->len - k, r->stop[i], k) == 0) {
                hold = k;
                break;
            }
        }
    }
    return hold;
}

static ci_status push_output(ci_engine *e, eng_request *r, int idx, int has_token, int32_t token,
                             ci_finish_reason fr, const ci_engine_logprob *lp) {
    eng_sample *smp = &r->samples[idx];
    void **extra[4] = {(void **)&e->out_tokens, (void **)&e->out_lp, (void **)&e->out_smp,
                       (void **)&e->out_off};
    size_t esz[4] = {sizeof(int32_t), sizeof(ci_engine_logprob *), sizeof(eng_sample *),
                     sizeof(size_t)};
    if (e->fault && has_token)
        CI_TRY(e->fault(e->fault_user, CI_FAULT_OUTPUT, e->out_step, r->id, r->sp.seed));
    CI_TRY(ci_eng_grow((void **)&e->outs, &e->outs_cap, e->num_outs + 1, sizeof(ci_engine_output),
                       4, extra, esz));
    ci_engine_output *o = &e->outs[e->num_outs];
    memset(o, 0, sizeof *o);
    o->request_id = r->id;
    o->sample_index = idx;
    e->out_tokens[e->num_outs] = token;
    o->num_token_ids = has_token;
    e->out_lp[e->num_outs] = (ci_engine_logprob *)lp;
    size_t lim = smp->len;
    if (fr == CI_FINISH_NONE) {
        size_t h = holdback(r, smp);
        lim = smp->len - h;
    }
    if (lim < smp->emitted) lim = smp->emitted;
    /* the text pointer is set when the step ends (ci_engine_step): a later
     * token of the same sample in this step may move smp->text */
    e->out_smp[e->num_outs] = smp;
    e->out_off[e->num_outs] = smp->emitted;
    o->text_len = lim - smp->emitted;
    smp->emitted = lim;
    o->finish_reason = fr;
    if (fr == CI_FINISH_ERROR) {
        o->error = r->error ? r->error : "engine fault";
        e->m.num_errors++;
    }
    if (r->plp && !r->plp_reported && idx == 0 && (has_token || fr != CI_FINISH_NONE)) {
        o->prompt_logprobs = r->plp;
        o->num_prompt_logprobs = r->num_plp;
        r->plp_reported = 1;
    }
    e->num_outs++;
    if (fr != CI_FINISH_NONE && !smp->done) {
        smp->done = 1;
        r->samples_done++;
    }
    return ci_ok();
}

/* A sampled token for sequence q (already appended by update), first pass:
 * what ends the sequence by the token alone (EOS, stop ids, its grammar,
 * max_tokens), so the next step is planned without it. */
ci_status ci_eng_token_stop(ci_engine *e, ci_sequence *q, int32_t t, int finished_length,
                            const ci_engine_logprob *lp, eng_pending *p) {
    eng_request *r = q->user;
    int idx = q->sample_index;
    eng_sample *smp = &r->samples[idx];
    r->forked = 1;
    p->r = NULL;
    if (smp->done || r->error) return ci_ok(); /* r failed earlier in this step */
    ci_finish_reason fr = finished_length ? CI_FINISH_LENGTH : CI_FINISH_NONE;
    int stop_tok = (!r->sp.ignore_eos && ci_eng_is_eos(e, t)) || is_stop_id(r, t);
    if (r->st) { /* the grammar advances; a complete one ends the sample */
        if (ci_grammar_matcher_accept(r->st->m[idx], t) != 0)
            return ci_errorf(CI_ERR_INTERNAL, "engine: token %d outside the request's grammar", t);
        if (!stop_tok && ci_grammar_matcher_is_done(r->st->m[idx])) fr = CI_FINISH_STOP;
    }
    if (stop_tok) fr = CI_FINISH_STOP;
    if (fr == CI_FINISH_STOP) CI_TRY(ci_sched_finish(e->sched, q, CI_FINISH_STOP));
    e->m.generation_tokens++;
    *p = (eng_pending){.q = q,
                       .r = r,
                       .token = t,
                       .idx = idx,
                       .fr = fr,
                       .stop_tok = stop_tok,
                       .nout = ci_seq_num_output(q),
                       .lp = lp};
    return ci_ok();
}

/* Second pass (may run while the next step is on the device):
 * detokenization, stop strings (a sequence they end may be in that step:
 * the scheduler drops its token there), the output. */
ci_status ci_eng_token_output(ci_engine *e, const eng_pending *p) {
    eng_request *r = p->r;
    ci_sequence *q = p->q;
    eng_sample *smp = &r->samples[p->idx];
    if (smp->done || r->error) return ci_ok(); /* failed since the first pass */
    const int32_t t = p->token;
    ci_finish_reason fr = p->fr;
    int by_string = 0;
    if (!p->stop_tok && smp->detok) {
        const char *txt;
        size_t n;
        size_t before = smp->len;
        if (e->fault)
            CI_TRY(e->fault(e->fault_user, CI_FAULT_DETOK, e->out_step, r->id, r->sp.seed));
        CI_TRY(ci_detok_stream_put(smp->detok, t, &txt, &n));
        CI_TRY(text_append(smp, txt, n));
        if (p->nout >= r->sp.min_tokens && find_stop(r, smp, before)) {
            fr = CI_FINISH_STOP;
            by_string = 1;
        }
    }
    if (fr != CI_FINISH_NONE && !by_string && smp->detok) {
        const char *txt;
        size_t n;
        size_t before = smp->len;
        CI_TRY(ci_detok_stream_finish(smp->detok, &txt, &n));
        CI_TRY(text_append(smp, txt, n));
        if (find_stop(r, smp, before)) fr = CI_FINISH_STOP, by_string = 1;
    }
    if (by_string) CI_TRY(ci_sched_finish(e->sched, q, CI_FINISH_STOP));
    return push_output(e, r, p->idx, 1, t, fr, r->sp.logprobs >= 0 ? p->lp : NULL);
}

static void retire_request(ci_engine *e, eng_request *r) {
    if (r->retired) return;
    r->retired = 1;
    r->dead_after = e->last_launched;
    if (r->lprev)
        r->lprev->lnext = r->lnext;
    else
        e->live = r->lnext;
    if (r->lnext) r->lnext->lprev = r->lprev;
    r->next = e->dead;
    e->dead = r;
    e->num_live_requests--;
    e->m.num_finished++;
}

void ci_eng_fail_request(ci_engine *e, eng_request *r, ci_status s) {
    if (r->error) return;
    for (char *p = s.msg; *p; p++) /* one line */
        if (*p == '\n' || *p == '\r') *p = ' ';
    r->error = strdup(s.msg);
    /* every live sequence of the request ends with reason error; their
     * outputs (carrying r->error) come from ci_eng_pop_finished */
    ci_sched_finish_group(e->sched, r->id, CI_FINISH_ERROR, NULL);
}

ci_status ci_eng_pop_finished(ci_engine *e) {
    ci_status first = ci_ok();
    ci_sequence *q;
    while ((q = ci_sched_pop_finished(e->sched)) != NULL) {
        eng_request *r = q->user;
        if (r) {
            int idx = q->sample_index;
            ci_finish_reason fr =
                q->finish_reason != CI_FINISH_NONE ? q->finish_reason : CI_FINISH_ABORT;
            /* a request that ended before its fork: its other samples too */
            int last = q->parent_id < 0 && !r->forked ? r->n - 1 : idx;
            for (int j = idx; j <= last; j++) {
                eng_sample *smp = &r->samples[j];
                if (smp->done) continue;
                ci_status s = push_output(e, r, j, 0, 0, fr, NULL);
                if (s.code && !smp->done) { /* out of memory: end it without an output */
                    smp->done = 1;
                    r->samples_done++;
                    if (!first.code) first = s;
                }
            }
            if (r->samples_done >= r->n) retire_request(e, r);
        }
        if (q->scheduled_step >= ci_eng_busy_since(e)) { /* a step in flight names it */
            q->next_finished = e->grave;
            e->grave = q;
        } else {
            ci_seq_destroy(q);
        }
    }
    return first;
}

void ci_eng_bury(ci_engine *e) {
    const int64_t busy = ci_eng_busy_since(e);
    ci_sequence **pp = &e->grave;
    while (*pp) {
        ci_sequence *q = *pp;
        if (q->scheduled_step < busy) {
            *pp = q->next_finished;
            ci_seq_destroy(q);
        } else {
            pp = &q->next_finished;
        }
    }
}
