#include "engine/scheduler.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct ci_scheduler {
    ci_sched_config cfg;
    ci_block_manager *bm;
    int max_model_len;
    ci_sequence **running; /* capacity max_num_seqs */
    int num_running;
    int running_slots; /* sum over running of 1 + num_forks_pending */
    ci_sequence **waiting;
    int num_waiting, waiting_cap;
    int live_reserved; /* sum over live sequences of 1 + num_forks_pending */
    ci_sequence *fin_head, *fin_tail;
    ci_sequence **scratch; /* waiting_cap + max_num_seqs, for checks */
    int64_t next_id;
    uint64_t next_arrival;
    int64_t step;
    int updated;           /* update() already consumed the current output */
    int lrows;             /* logits rows left in the step being planned */
    int prefill_only_last; /* the last step left running decodes out (prefill_first) */
    ci_sched_output out;
    ci_sched_result *results;
    ci_sched_stats stats;
};

ci_sched_config ci_sched_default_config(void) {
    ci_sched_config c = {0};
    c.max_num_batched_tokens = 2048;
    c.max_num_seqs = 256;
    c.aging_steps = 100;
    c.block = ci_bm_default_config();
    return c;
}

ci_status ci_sched_create(const ci_sched_config *cfg, ci_scheduler **out) {
    *out = NULL;
    if (cfg->max_num_batched_tokens < 1 || cfg->max_num_seqs < 1 || cfg->aging_steps < 0 ||
        cfg->max_model_len < 0)
        return ci_errorf(CI_ERR_INVALID,
                         "scheduler: max_num_batched_tokens %d, max_num_seqs %d must be >= 1, "
                         "aging_steps %d and max_model_len %d >= 0",
                         cfg->max_num_batched_tokens, cfg->max_num_seqs, cfg->aging_steps,
                         cfg->max_model_len);
    ci_scheduler *s = calloc(1, sizeof *s);
    if (!s) return ci_errorf(CI_ERR_NOMEM, "scheduler: out of memory");
    s->cfg = *cfg;
    ci_status st = ci_bm_create(&cfg->block, &s->bm);
    if (st.code != CI_OK) {
        free(s);
        return ci_status_wrap(st, "scheduler");
    }
    int64_t cache_tokens = (int64_t)cfg->block.num_blocks * cfg->block.block_size;
    s->max_model_len = cfg->max_model_len > 0 && cfg->max_model_len < cache_tokens
                           ? cfg->max_model_len
                           : (int)cache_tokens;
    int m = cfg->max_num_seqs;
    s->running = malloc((size_t)m * sizeof *s->running);
    s->out.entries = malloc((size_t)m * sizeof *s->out.entries);
    s->out.copies = malloc((size_t)m * sizeof *s->out.copies);
    s->out.preempted = malloc((size_t)m * sizeof *s->out.preempted);
    /* a result per sampled token: n per fork, 1 + CI_SPEC_MAX per verified decode */
    s->results = malloc((size_t)m * (1 + CI_SPEC_MAX) * sizeof *s->results);
    s->scratch = malloc((size_t)m * sizeof *s->scratch);
    if (!s->running || !s->out.entries || !s->out.copies || !s->out.preempted || !s->results ||
        !s->scratch) {
        ci_sched_destroy(s);
        return ci_errorf(CI_ERR_NOMEM, "scheduler: out of memory for %d sequences", m);
    }
    s->updated = 1;
    *out = s;
    return ci_ok();
}

void ci_sched_destroy(ci_scheduler *s) {
    if (!s) return;
    if (s->running)
        for (int i = 0; i < s->num_running; i++)
            ci_seq_destroy(s->running[i]);
    for (int i = 0; i < s->num_waiting; i++)
        ci_seq_destroy(s->waiting[i]);
    for (ci_sequence *q = s->fin_head, *nx; q; q = nx) {
        nx = q->next_finished;
        ci_seq_destroy(q);
    }
    ci_bm_destroy(s->bm);
    free(s->running);
    free(s->waiting);
    free(s->scratch);
    free(s->out.entries);
    free(s->out.copies);
    free(s->out.preempted);
    free(s->results);
    free(s);
}

int ci_sched_num_waiting(const ci_scheduler *s) {
    return s->num_waiting;
}
int ci_sched_num_running(const ci_scheduler *s) {
    return s->num_running;
}
int ci_sched_has_unfinished(const ci_scheduler *s) {
    return s->num_waiting + s->num_running > 0;
}
ci_block_manager *ci_sched_block_manager(ci_scheduler *s) {
    return s->bm;
}
const ci_sched_config *ci_sched_get_config(const ci_scheduler *s) {
    return &s->cfg;
}
ci_sched_stats ci_sched_get_stats(const ci_scheduler *s) {
    return s->stats;
}

int ci_sched_max_blocks_per_seq(const ci_scheduler *s) {
    return ci_blocks_for_tokens(s->max_model_len, s->cfg.block.block_size);
}

ci_sequence *ci_sched_find(const ci_scheduler *s, int64_t seq_id) {
    for (int i = 0; i < s->num_running; i++)
        if (s->running[i]->id == seq_id) return s->running[i];
    for (int i = 0; i < s->num_waiting; i++)
        if (s->waiting[i]->id == seq_id) return s->waiting[i];
    return NULL;
}

static ci_status reserve_waiting(ci_scheduler *s, int need) {
    if (need <= s->waiting_cap) return ci_ok();
    int cap = s->waiting_cap ? s->waiting_cap : 64;
    while (cap < need)
        cap *= 2;
    ci_sequence **w = realloc(s->waiting, (size_t)cap * sizeof *w);
    if (!w) return ci_errorf(CI_ERR_NOMEM, "scheduler: out of memory for %d queued sequences", cap);
    s->waiting = w;
    ci_sequence **sc =
        realloc(s->scratch, ((size_t)cap + (size_t)s->cfg.max_num_seqs) * sizeof *sc);
    if (!sc)
        return ci_errorf(CI_ERR_NOMEM, "scheduler: out of memory for %d queued sequences", cap);
    s->scratch = sc;
    s->waiting_cap = cap;
    return ci_ok();
}

ci_status ci_sched_add(ci_scheduler *s, const ci_request_params *p, int64_t *group_id) {
    if (group_id) *group_id = -1;
    if (!p->prompt || p->num_prompt < 1) return ci_errorf(CI_ERR_INVALID, "request: empty prompt");
    if (p->max_tokens < 1)
        return ci_errorf(CI_ERR_INVALID, "request: max_tokens %d < 1", p->max_tokens);
    if (p->n < 1 || p->n > s->cfg.max_num_seqs)
        return ci_errorf(CI_ERR_INVALID, "request: n = %d not in [1, max_num_seqs = %d]", p->n,
                         s->cfg.max_num_seqs);
    int bs = s->cfg.block.block_size;
    int64_t total = (int64_t)p->num_prompt + p->max_tokens;
    if (total > s->max_model_len) {
        s->stats.rejected++;
        int64_t need = (total + bs - 1) / bs;
        if (need > s->cfg.block.num_blocks)
            return ci_errorf(
                CI_ERR_CAPACITY,
                "request: prompt %d + max_tokens %d tokens need %lld KV blocks of %d tokens, "
                "but the cache has only %d blocks",
                p->num_prompt, p->max_tokens, (long long)need, bs, s->cfg.block.num_blocks);
        return ci_errorf(CI_ERR_CAPACITY,
                         "request: prompt %d + max_tokens %d tokens exceed max_model_len %d",
                         p->num_prompt, p->max_tokens, s->max_model_len);
    }
    CI_TRY(reserve_waiting(s, s->live_reserved + p->n));
    ci_sequence *q;
    CI_TRY(ci_seq_create(s->next_id, p->prompt, p->num_prompt, p->max_tokens, bs, &q));
    s->next_id++;
    q->num_forks_pending = p->n - 1;
    q->priority = p->priority;
    q->arrival = s->next_arrival++;
    q->arrival_step = s->step;
    q->want_prompt_logprobs = p->prompt_logprobs;
    q->user = p->user;
    s->waiting[s->num_waiting++] = q;
    s->live_reserved += p->n;
    if (group_id) *group_id = q->group_id;
    return ci_ok();
}

/* ---- ordering ---- */

static void refresh_priority(const ci_scheduler *s, ci_sequence *q) {
    int64_t boost = s->cfg.aging_steps > 0 ? (s->step - q->arrival_step) / s->cfg.aging_steps : 0;
    int64_t e = (int64_t)q->priority - boost;
    q->effective_priority = e < INT_MIN ? INT_MIN : (int)e;
}

static int seq_cmp(const ci_sequence *a, const ci_sequence *b) {
    if (a->effective_priority != b->effective_priority)
        return a->effective_priority < b->effective_priority ? -1 : 1;
    if (a->arrival != b->arrival) return a->arrival < b->arrival ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int seq_cmp_qsort(const void *a, const void *b) {
    return seq_cmp(*(ci_sequence *const *)a, *(ci_sequence *const *)b);
}

/* ---- scheduling ---- */

/* Logits rows of an entry computing tokens [start, start + n) of q: its
 * prompt positions whose logprobs are not yet returned, and the sampled
 * row when the entry reaches the end of the known tokens. */
static int entry_rows(const ci_sequence *q, int start, int n) {
    int lo;
    return (start + n == q->num_tokens) + ci_seq_plp_rows(q, start, start + n, &lo);
}

/* n cut so that the entry's logits rows fit the `left` rows of the step
 * (0: not even one token fits). */
static int fit_rows(const ci_sequence *q, int n, int left) {
    const int start = q->num_computed_tokens;
    if (entry_rows(q, start, n) <= left) return n;
    int lo;
    ci_seq_plp_rows(q, start, start + n, &lo);
    int m = lo - start + left; /* prompt-logprob rows = left at most */
    if (m > n) m = n;
    while (m > 0 && entry_rows(q, start, m) > left) /* the sampled row: one more step */
        m--;
    return m;
}

/* q's next n tokens join the step, with their logits rows */
static void add_entry(ci_scheduler *s, ci_sequence *q, int n) {
    ci_sched_output *o = &s->out;
    s->lrows -= entry_rows(q, q->num_computed_tokens, n);
    ci_sched_entry *e = &o->entries[o->num_entries++];
    e->seq = q;
    e->start = q->num_computed_tokens;
    e->num_new_tokens = n;
    e->samples = e->start + n == q->num_tokens ? 1 + q->num_forks_pending : 0;
    e->num_spec = 0;
    q->num_spec = 0;
    o->num_tokens += n;
    o->num_samples += e->samples;
    if (q->num_tokens - q->num_computed_tokens == 1)
        o->num_decode_tokens += n;
    else
        o->num_prefill_tokens += n;
    q->scheduled_step = s->step;
}

static ci_status preempt(ci_scheduler *s, ci_sequence *q) {
    CI_TRY(ci_seq_transition(q, CI_SEQ_PREEMPTED));
    ci_bm_free(s->bm, q);
    q->num_spec = 0;
    q->num_computed_tokens = 0;
    q->num_cached_tokens = 0;
    q->num_preemptions++;
    s->running_slots -= 1 + q->num_forks_pending;
    s->waiting[s->num_waiting++] = q; /* capacity reserved at add */
    s->out.preempted[s->out.num_preempted++] = q->id;
    s->stats.preemptions++;
    return ci_ok();
}

/* Worst running sequence not yet scheduled this step, or cur. */
static ci_sequence *pick_victim(ci_scheduler *s, ci_sequence *cur) {
    ci_sequence *v = cur;
    for (int i = 0; i < s->num_running; i++) {
        ci_sequence *r = s->running[i];
        if (r == cur || r->state != CI_SEQ_RUNNING || r->scheduled_step == s->step) continue;
        if (seq_cmp(r, v) > 0) v = r;
    }
    return v;
}

/* One pass over the running sequences not yet scheduled this step: pass 0
 * their decodes (1 new token), pass 1 their prefill chunks; a sequence that
 * cannot get blocks preempts the worst one (possibly itself), or with
 * may_preempt 0 waits for a later step. */
static ci_status schedule_running(ci_scheduler *s, int pass, int *budget, int may_preempt) {
    ci_sched_output *o = &s->out;
    for (int i = 0; i<s->num_running && * budget> 0; i++) {
        ci_sequence *q = s->running[i];
        if (q->state != CI_SEQ_RUNNING || q->scheduled_step == s->step) continue;
        int rem = q->num_tokens - q->num_computed_tokens;
        if (rem < 1)
            return ci_errorf(CI_ERR_INTERNAL, "sequence %lld: running with nothing to compute",
                             (long long)q->id);
        if ((rem == 1) != (pass == 0)) continue;
        int n = fit_rows(q, rem < *budget ? rem : *budget, s->lrows);
        if (n == 0) continue; /* its logits rows wait for the next step */
        for (;;) {
            ci_status st = ci_bm_allocate(s->bm, q, n, 0, o->copies, &o->num_copies);
            if (st.code == CI_OK) {
                add_entry(s, q, n);
                *budget -= n;
                break;
            }
            if (st.code != CI_ERR_CAPACITY) return st;
            if (!may_preempt) break;
            ci_sequence *v = pick_victim(s, q);
            CI_TRY(preempt(s, v));
            if (v == q) break;
        }
    }
    /* drop preempted sequences from the running list */
    int k = 0;
    for (int i = 0; i < s->num_running; i++)
        if (s->running[i]->state == CI_SEQ_RUNNING) s->running[k++] = s->running[i];
    s->num_running = k;
    return ci_ok();
}

/* Admissions, only when nothing had to be preempted. Few are admitted per
 * step, so pick the best waiting sequence by a linear scan each time
 * instead of sorting the whole queue. keep: blocks left free beyond the
 * watermark (a prompt-only step keeps the decodes' next blocks). */
static ci_status schedule_waiting(ci_scheduler *s, int *budget, int keep) {
    ci_sched_output *o = &s->out;
    if (o->num_preempted != 0 || s->num_waiting == 0 || *budget <= 0) return ci_ok();
    int admitted = 0;
    while (*budget > 0) {
        int best = -1;
        for (int j = 0; j < s->num_waiting; j++) {
            ci_sequence *w = s->waiting[j];
            if (w->state == CI_SEQ_RUNNING) continue; /* admitted this step */
            if (best < 0 || seq_cmp(w, s->waiting[best]) < 0) best = j;
        }
        if (best < 0) break;
        ci_sequence *q = s->waiting[best];
        int slots = 1 + q->num_forks_pending;
        if (s->running_slots + slots > s->cfg.max_num_seqs) break;
        int hit = ci_bm_match_prefix(s->bm, q);
        int rem = q->num_tokens - q->num_computed_tokens;
        int n = fit_rows(q, rem < *budget ? rem : *budget, s->lrows);
        /* the blocks it needs would eat into those kept */
        const int short_of = n > 0 && keep > 0 &&
                             ci_bm_num_available(s->bm) <
                                 ci_bm_blocks_needed(s->bm, q, n) + keep +
                                     (s->num_running > 0 ? ci_bm_watermark_blocks(s->bm) : 0);
        ci_status st = ci_ok();
        if (n > 0 && !short_of)
            st = ci_bm_allocate(s->bm, q, n, s->num_running > 0, o->copies, &o->num_copies);
        if (n == 0 || short_of || st.code != CI_OK) { /* no logits rows or blocks left: next step */
            ci_bm_free(s->bm, q);
            q->num_cached_tokens = 0;
            if (n == 0 || short_of || st.code == CI_ERR_CAPACITY) break;
            return st;
        }
        ci_bm_count_prefix_query(s->bm, q->num_tokens, hit);
        CI_TRY(ci_seq_transition(q, CI_SEQ_RUNNING));
        s->running[s->num_running++] = q;
        s->running_slots += slots;
        add_entry(s, q, n);
        *budget -= n;
        admitted++;
        o->num_admitted++;
        s->stats.admitted++;
    }
    if (admitted) {
        int w = 0;
        for (int j = 0; j < s->num_waiting; j++)
            if (s->waiting[j]->state != CI_SEQ_RUNNING) s->waiting[w++] = s->waiting[j];
        s->num_waiting = w;
    }
    return ci_ok();
}

ci_status ci_sched_schedule(ci_scheduler *s, const ci_sched_output **out) {
    ci_sched_output *o = &s->out;
    *out = o;
    if (!s->updated && o->num_entries > 0)
        return ci_errorf(CI_ERR_INVALID, "schedule: step %lld was never passed to update()",
                         (long long)o->step);
    s->step++;
    s->updated = 0;
    o->step = s->step;
    o->num_entries = o->num_tokens = o->num_samples = o->num_copies = o->num_preempted = 0;
    o->num_decode_tokens = o->num_prefill_tokens = o->num_admitted = 0;
    *out = o;
    for (int i = 0; i < s->num_running; i++)
        refresh_priority(s, s->running[i]);
    for (int i = 0; i < s->num_waiting; i++)
        refresh_priority(s, s->waiting[i]);
    qsort(s->running, (size_t)s->num_running, sizeof *s->running, seq_cmp_qsort);

    int budget = s->cfg.max_num_batched_tokens;
    s->lrows = s->cfg.max_logits_rows > 0 ? s->cfg.max_logits_rows : budget;
    /* prefill first: a step with prompt work runs it without the decodes,
     * which wait for the next step; never two such steps in a row, so a
     * running sequence waits at most one step for its next token */
    int pf = s->cfg.prefill_first && !s->prefill_only_last;
    s->prefill_only_last = 0;
    if (pf) {
        /* the prompt work a mixed step would have had (the budget less one
         * token per decode), without the decodes; the blocks those decodes
         * need next step are kept free, and a chunk short of blocks waits
         * for the next step's usual rules instead of preempting */
        int ndec = 0, keep = 0;
        for (int i = 0; i < s->num_running; i++) {
            const ci_sequence *q = s->running[i];
            if (q->state == CI_SEQ_RUNNING && q->num_tokens - q->num_computed_tokens == 1) {
                ndec++;
                keep += ci_bm_blocks_needed(s->bm, q, 1);
            }
        }
        int pbudget = budget - ndec;
        if (pbudget > 0) {
            CI_TRY(schedule_running(s, 1, &pbudget, 0));
            CI_TRY(schedule_waiting(s, &pbudget, keep));
        }
        pf = o->num_entries > 0; /* no prompt work could run: the usual step */
        s->prefill_only_last = pf && ndec > 0;
    }
    if (!pf) {
        /* decodes, then running prefill chunks, then admissions */
        CI_TRY(schedule_running(s, 0, &budget, 1));
        CI_TRY(schedule_running(s, 1, &budget, 1));
        CI_TRY(schedule_waiting(s, &budget, 0));
    }
    s->stats.steps++;
    s->stats.prefill_tokens += o->num_prefill_tokens;
    s->stats.decode_tokens += o->num_decode_tokens;
    if (o->num_tokens > s->stats.max_tokens_in_step) s->stats.max_tokens_in_step = o->num_tokens;
    return ci_ok();
}

/* ---- finishing ---- */

static int remove_from(ci_sequence **list, int *n, ci_sequence *q) {
    for (int i = 0; i < *n; i++)
        if (list[i] == q) {
            memmove(list + i, list + i + 1, (size_t)(*n - i - 1) * sizeof *list);
            (*n)--;
            return 1;
        }
    return 0;
}

ci_status ci_sched_finish(ci_scheduler *s, ci_sequence *q, ci_finish_reason reason) {
    if (reason == CI_FINISH_NONE)
        return ci_errorf(CI_ERR_INVALID, "sequence %lld: finish needs a reason", (long long)q->id);
    if (q->state == CI_SEQ_FINISHED) {
        q->finish_reason = reason;
        return ci_ok();
    }
    if (q->state == CI_SEQ_RUNNING) {
        if (!remove_from(s->running, &s->num_running, q))
            return ci_errorf(CI_ERR_INVALID, "finish: sequence %lld is not running here",
                             (long long)q->id);
        s->running_slots -= 1 + q->num_forks_pending;
    } else if (!remove_from(s->waiting, &s->num_waiting, q)) {
        return ci_errorf(CI_ERR_INVALID, "finish: sequence %lld is not queued here",
                         (long long)q->id);
    }
    s->live_reserved -= 1 + q->num_forks_pending;
    q->num_forks_pending = 0;
    ci_bm_free(s->bm, q);
    CI_TRY(ci_seq_transition(q, CI_SEQ_FINISHED));
    q->finish_reason = reason;
    q->next_finished = NULL;
    if (s->fin_tail)
        s->fin_tail->next_finished = q;
    else
        s->fin_head = q;
    s->fin_tail = q;
    s->stats.finished++;
    return ci_ok();
}

ci_status ci_sched_abort(ci_scheduler *s, int64_t group_id, int *num) {
    return ci_sched_finish_group(s, group_id, CI_FINISH_ABORT, num);
}

ci_status ci_sched_finish_group(ci_scheduler *s, int64_t group_id, ci_finish_reason reason,
                                int *num) {
    if (num) *num = 0;
    if (group_id < 0 || group_id >= s->next_id)
        return ci_errorf(CI_ERR_INVALID, "abort: no request %lld", (long long)group_id);
    int count = 0;
    for (int i = s->num_running - 1; i >= 0; i--) {
        if (i >= s->num_running || s->running[i]->group_id != group_id) continue;
        CI_TRY(ci_sched_finish(s, s->running[i], reason));
        count++;
    }
    for (int i = s->num_waiting - 1; i >= 0; i--) {
        if (i >= s->num_waiting || s->waiting[i]->group_id != group_id) continue;
        CI_TRY(ci_sched_finish(s, s->waiting[i], reason));
        count++;
    }
    if (num) *num = count;
    return ci_ok();
}

ci_sequence *ci_sched_pop_finished(ci_scheduler *s) {
    /* a sequence whose last token is still on the device (pending_pos,
     * plan-ahead scheduling) stays until that token is known */
    ci_sequence *prev = NULL, *q = s->fin_head;
    while (q && q->pending_pos >= 0) {
        prev = q;
        q = q->next_finished;
    }
    if (!q) return NULL;
    if (prev)
        prev->next_finished = q->next_finished;
    else
        s->fin_head = q->next_finished;
    if (s->fin_tail == q) s->fin_tail = prev;
    q->next_finished = NULL;
    return q;
}

ci_status ci_sched_abandon(ci_scheduler *s) {
    if (s->updated) return ci_errorf(CI_ERR_INVALID, "abandon: no schedule() output to abandon");
    /* Nothing advanced: every entry is still at num_computed_tokens = start
     * and its blocks past that hold no cached (hashed) content, so running
     * the entry again, or finishing it, is consistent. */
    s->updated = 1;
    return ci_ok();
}

/* ---- speculative decoding ---- */

ci_status ci_sched_add_spec(ci_scheduler *s, int i, const int32_t *draft, int k, int *granted) {
    ci_sched_output *o = &s->out;
    *granted = 0;
    if (s->updated || i < 0 || i >= o->num_entries)
        return ci_errorf(CI_ERR_INVALID, "add_spec: no planned entry %d", i);
    ci_sched_entry *e = &o->entries[i];
    ci_sequence *q = e->seq;
    if (e->num_new_tokens != 1 || e->samples != 1 || e->num_spec || q->num_forks_pending ||
        q->num_tokens - q->num_computed_tokens != 1 || k <= 0)
        return ci_ok(); /* not a plain decode: nothing to verify */
    if (k > CI_SPEC_MAX) k = CI_SPEC_MAX;
    int room = s->cfg.max_num_batched_tokens - o->num_tokens; /* budget */
    if (k > room) k = room;
    if (k > s->lrows) k = s->lrows;                      /* one logits row per draft */
    int left = q->max_tokens - ci_seq_num_output(q) - 1; /* the bonus token needs one */
    if (k > left) k = left;
    int ctx = s->max_model_len - q->num_tokens;
    if (k > ctx) k = ctx;
    if (k <= 0) return ci_ok();
    memcpy(q->spec, draft, sizeof(int32_t) * (size_t)k);
    q->num_spec = k;
    int nc = o->num_copies;
    ci_status st = ci_bm_allocate(s->bm, q, 1 + k, 0, o->copies, &o->num_copies);
    if (st.code == CI_ERR_CAPACITY || o->num_copies != nc) { /* no room: plain decode */
        q->num_spec = 0;
        return st.code == CI_ERR_CAPACITY ? ci_ok() : ci_errorf(CI_ERR_INTERNAL, "add_spec: copy");
    }
    if (st.code) {
        q->num_spec = 0;
        return st;
    }
    e->num_new_tokens = 1 + k;
    e->samples = 1 + k;
    e->num_spec = k;
    s->lrows -= k;
    o->num_tokens += k;
    o->num_samples += k;
    o->num_decode_tokens += k;
    s->stats.decode_tokens += k;
    if (o->num_tokens > s->stats.max_tokens_in_step) s->stats.max_tokens_in_step = o->num_tokens;
    *granted = k;
    return ci_ok();
}

/* Verified entry e: keeps the drafts the samples confirm plus one sample,
 * rolls back the rest; a result per appended token. */
static ci_status accept_spec(ci_scheduler *s, const ci_sched_entry *e, const int32_t *tokens, int k,
                             int *nres) {
    ci_sequence *q = e->seq;
    int ns = e->num_spec, a = 0;
    while (a < ns && tokens[k + a] == q->spec[a])
        a++;
    s->stats.spec_verify_steps++;
    s->stats.spec_drafted += ns;
    s->stats.spec_accepted += a;
    for (int j = 0; j < a; j++)
        s->stats.spec_accepted_at[j]++;
    /* K/V is valid for the last token and the a confirmed drafts */
    q->num_computed_tokens = e->start + 1 + a;
    q->num_spec = 0;
    ci_bm_cache_computed(s->bm, q);
    ci_bm_trim(s->bm, q, q->num_computed_tokens + 1);
    for (int j = 0; j <= a; j++) {
        CI_TRY(ci_seq_append(q, tokens[k + j]));
        s->results[(*nres)++] = (ci_sched_result){q, tokens[k + j], 0, k + j};
    }
    return ci_ok();
}

/* ---- update ---- */

ci_status ci_sched_update(ci_scheduler *s, const int32_t *tokens, int num_tokens,
                          const ci_sched_result **results, int *num_results) {
    const ci_sched_output *o = &s->out;
    *results = s->results;
    *num_results = 0;
    if (s->updated) return ci_errorf(CI_ERR_INVALID, "update: no schedule() output to update");
    if (num_tokens != o->num_samples || (num_tokens > 0 && !tokens))
        return ci_errorf(CI_ERR_INVALID, "update: %d sampled tokens given, step %lld expects %d",
                         num_tokens, (long long)o->step, o->num_samples);
    s->updated = 1;
    int nres = 0, k = 0;
    for (int i = 0; i < o->num_entries; i++) {
        const ci_sched_entry *e = &o->entries[i];
        ci_sequence *q = e->seq;
        int samples = e->samples;
        if (q->state != CI_SEQ_RUNNING || q->scheduled_step != o->step) {
            k += samples;
            continue;
        }
        if (q->num_computed_tokens != e->start)
            return ci_errorf(CI_ERR_INTERNAL, "sequence %lld: computed %d, scheduled from %d",
                             (long long)q->id, q->num_computed_tokens, e->start);
        if (e->num_spec > 0) {
            CI_TRY(accept_spec(s, e, tokens, k, &nres));
            k += samples;
            if (ci_seq_num_output(q) >= q->max_tokens) {
                CI_TRY(ci_sched_finish(s, q, CI_FINISH_LENGTH));
                s->results[nres - 1].finished = 1;
            }
            continue;
        }
        q->num_computed_tokens += e->num_new_tokens;
        ci_bm_cache_computed(s->bm, q);
        if (q->want_prompt_logprobs) {
            int lim = q->num_computed_tokens < q->num_prompt_tokens - 1 ? q->num_computed_tokens
                                                                        : q->num_prompt_tokens - 1;
            if (lim > q->prompt_logprobs_done) q->prompt_logprobs_done = lim;
        }
        if (samples == 0) continue;
        /* n > 1: siblings clone the prompt before the parent's token lands. */
        int first = nres;
        s->results[nres++] = (ci_sched_result){q, tokens[k], 0, k};
        for (int j = 1; j < samples; j++) {
            ci_sequence *c;
            CI_TRY(ci_seq_clone(q, s->next_id, &c));
            s->next_id++;
            c->sample_index = j;
            c->num_forks_pending = 0;
            c->num_preemptions = 0;
            c->scheduled_step = o->step;
            ci_status st = ci_bm_fork(s->bm, q, c);
            if (st.code == CI_OK) st = ci_seq_append(c, tokens[k + j]);
            if (st.code != CI_OK) {
                ci_bm_free(s->bm, c);
                ci_seq_destroy(c);
                return st;
            }
            /* the slot was reserved at admission: move it to the sibling */
            q->num_forks_pending--;
            s->running[s->num_running++] = c;
            s->results[nres++] = (ci_sched_result){c, tokens[k + j], 0, k + j};
            s->stats.forks++;
        }
        CI_TRY(ci_seq_append(q, tokens[k]));
        k += samples;
        for (int r = first; r < nres; r++) {
            ci_sequence *c = s->results[r].seq;
            if (ci_seq_num_output(c) >= c->max_tokens) {
                CI_TRY(ci_sched_finish(s, c, CI_FINISH_LENGTH));
                s->results[r].finished = 1;
            }
        }
    }
    *num_results = nres;
    return ci_ok();
}

/* ---- invariants ---- */

ci_status ci_sched_check(ci_scheduler *s) {
    int n = 0, slots = 0, reserved = 0;
    if (s->num_running > s->cfg.max_num_seqs)
        return ci_errorf(CI_ERR_INTERNAL, "%d running > max_num_seqs %d", s->num_running,
                         s->cfg.max_num_seqs);
    for (int i = 0; i < s->num_running; i++) {
        ci_sequence *q = s->running[i];
        if (q->state != CI_SEQ_RUNNING)
            return ci_errorf(CI_ERR_INTERNAL, "sequence %lld: %s in the running list",
                             (long long)q->id, ci_seq_state_name(q->state));
        slots += 1 + q->num_forks_pending;
        s->scratch[n++] = q;
    }
    for (int i = 0; i < s->num_waiting; i++) {
        ci_sequence *q = s->waiting[i];
        if (q->state != CI_SEQ_WAITING && q->state != CI_SEQ_PREEMPTED)
            return ci_errorf(CI_ERR_INTERNAL, "sequence %lld: %s in the waiting list",
                             (long long)q->id, ci_seq_state_name(q->state));
        if (q->num_blocks != 0 || q->num_computed_tokens != 0)
            return ci_errorf(CI_ERR_INTERNAL, "sequence %lld: waiting with %d blocks, %d computed",
                             (long long)q->id, q->num_blocks, q->num_computed_tokens);
        reserved += 1 + q->num_forks_pending;
        s->scratch[n++] = q;
    }
    reserved += slots;
    if (slots != s->running_slots || slots > s->cfg.max_num_seqs)
        return ci_errorf(CI_ERR_INTERNAL, "running slots %d, counted %d (max %d)", s->running_slots,
                         slots, s->cfg.max_num_seqs);
    if (reserved != s->live_reserved || reserved > s->waiting_cap)
        return ci_errorf(CI_ERR_INTERNAL, "live reservation %d, counted %d (queue capacity %d)",
                         s->live_reserved, reserved, s->waiting_cap);
    for (int i = 0; i < n; i++) {
        ci_sequence *q = s->scratch[i];
        if (q->num_computed_tokens < 0 || q->num_computed_tokens > q->num_tokens ||
            q->num_tokens > q->token_capacity || ci_seq_num_output(q) > q->max_tokens)
            return ci_errorf(
                CI_ERR_INTERNAL, "sequence %lld: computed %d of %d tokens (capacity %d)",
                (long long)q->id, q->num_computed_tokens, q->num_tokens, q->token_capacity);
    }
    for (ci_sequence *q = s->fin_head; q; q = q->next_finished)
        if (q->state != CI_SEQ_FINISHED || q->num_blocks != 0)
            return ci_errorf(CI_ERR_INTERNAL,
                             "sequence %lld: finished list holds %s with %d blocks",
                             (long long)q->id, ci_seq_state_name(q->state), q->num_blocks);
    return ci_bm_check(s->bm, s->scratch, n);
}
