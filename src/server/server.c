/* server.c — the engine thread: command queue in, event queue out.
 *
 * Only this thread calls into the cinfer_engine (tokenizer included), so
 * the engine needs no locking of its own. It sleeps on a condition variable
 * while there is neither a command nor an unfinished request. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

typedef struct live_req {
    int64_t rid;
    uint64_t job_id;
    int prompt_index;
    int n, done;
    int token_strings;
    int32_t first_token; /* prompt token 0 (prompt logprobs start at token 1) */
    int want_plp;        /* prompt logprobs asked and not yet sent */
    int num_prompt;
} live_req;

struct srv_engine {
    cinfer_engine *e;
    void (*notify)(void *);
    void *notify_arg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_cmd *cmd_head, *cmd_tail;
    srv_event *ev_head, *ev_tail;
    int stop;
    cinfer_metrics metrics;
    /* engine-thread only */
    live_req *live;
    int num_live, cap_live;
    srv_event *out_head, *out_tail; /* events of this iteration, published at once */
    int early; /* first tokens out before the next plan (CINFER_SERVE_EARLY=0: off) */
};

void srv_cmd_free(srv_cmd *c) {
    if (!c) return;
    for (int i = 0; i < c->num_prompts; i++) {
        free(c->prompts[i].text);
        free(c->prompts[i].ids);
    }
    free(c->prompts);
    for (int i = 0; i < c->num_stop; i++)
        free(c->stop[i]);
    free(c->stop);
    free(c->stop_ids);
    free(c->structured);
    free(c->bias);
    free(c);
}

static void free_lp(srv_lp *lp) {
    free(lp->tok);
    for (int k = 0; k < lp->num_top; k++)
        free(lp->top_tok[k]);
}

void srv_event_free(srv_event *ev) {
    if (!ev) return;
    free(ev->text);
    if (ev->lps)
        for (int i = 0; i < ev->num_ids; i++)
            free_lp(&ev->lps[i]);
    free(ev->lps);
    if (ev->plps)
        for (int i = 0; i < ev->num_plps; i++)
            free_lp(&ev->plps[i]);
    free(ev->plps);
    if (ev->echo)
        for (int i = 0; i < ev->num_ids; i++)
            free(ev->echo[i]);
    free(ev->echo);
    free(ev->strs);
    free(ev->ids);
    free(ev);
}

static srv_event *new_event(srv_engine *s, srv_ev_kind kind, uint64_t job_id) {
    srv_event *ev = calloc(1, sizeof *ev);
    if (!ev) return NULL;
    ev->kind = kind;
    ev->job_id = job_id;
    if (s->out_tail)
        s->out_tail->next = ev;
    else
        s->out_head = ev;
    s->out_tail = ev;
    return ev;
}

static void emit_error(srv_engine *s, uint64_t job_id, int code, const char *msg) {
    srv_event *ev = new_event(s, SRV_EV_ERROR, job_id);
    if (!ev) return;
    ev->err_code = code ? code : CINFER_ERR_INTERNAL;
    snprintf(ev->err_msg, sizeof ev->err_msg, "%s", msg);
}

static char *token_text(srv_engine *s, int32_t id) {
    char *t = NULL;
    cinfer_error err;
    if (cinfer_detokenize(s->e, &id, 1, 0, &t, &err)) return strdup("");
    char *c = strdup(t ? t : "");
    cinfer_free(t);
    return c;
}

static void abort_job(srv_engine *s, uint64_t job_id) {
    for (int i = 0; i < s->num_live; i++)
        if (s->live[i].job_id == job_id) cinfer_abort_request(s->e, s->live[i].rid, NULL);
}

static void do_generate(srv_engine *s, srv_cmd *c) {
    cinfer_error err;
    int32_t *counts = calloc((size_t)c->num_prompts, sizeof *counts);
    char **echo = c->echo ? calloc((size_t)c->num_prompts, sizeof *echo) : NULL;
    int64_t *rids = calloc((size_t)c->num_prompts, sizeof *rids);
    int32_t *first = calloc((size_t)c->num_prompts, sizeof *first);
    int want_plp = c->sp.prompt_logprobs >= 0 && c->token_strings;
    if (!counts || !rids || !first || (c->echo && !echo)) {
        free(first);
        free(counts);
        free(echo);
        free(rids);
        emit_error(s, c->job_id, CINFER_ERR_NOMEM, "out of memory");
        return;
    }
    int added = 0, failed = 0;
    for (int p = 0; p < c->num_prompts && !failed; p++) {
        srv_prompt *pr = &c->prompts[p];
        int32_t *ids = pr->ids;
        size_t n = (size_t)pr->num_ids;
        int32_t *tmp = NULL;
        if (pr->text && !pr->ids) { /* pretok.c did not: tokenize (and report) here */
            if (cinfer_tokenize(s->e, pr->text, 1, &tmp, &n, &err)) {
                emit_error(s, c->job_id, err.code, err.message);
                failed = 1;
                break;
            }
            ids = tmp;
            if (n == 0) {
                cinfer_free(tmp);
                emit_error(s, c->job_id, CINFER_ERR_INVALID, "prompt encodes to no tokens");
                failed = 1;
                break;
            }
        }
        if (echo) {
            if (pr->text) {
                echo[p] = strdup(pr->text);
            } else if (cinfer_detokenize(s->e, ids, n, 0, &echo[p], &err) == 0) {
                char *d = strdup(echo[p] ? echo[p] : "");
                cinfer_free(echo[p]);
                echo[p] = d;
            } else {
                echo[p] = strdup("");
            }
        }
        counts[p] = (int32_t)n;
        first[p] = ids[0];
        cinfer_sampling_params sp = c->sp;
        if (c->max_tokens_auto && c->max_model_len > (int)n)
            sp.max_tokens = c->max_model_len - (int)n;
        if (cinfer_add_request(s->e, NULL, ids, (int)n, &sp, c->priority, &rids[p], &err)) {
            emit_error(s, c->job_id, err.code, err.message);
            failed = 1;
        } else {
            added++;
        }
        cinfer_free(tmp);
    }
    if (failed) {
        for (int p = 0; p < added; p++)
            cinfer_abort_request(s->e, rids[p], NULL);
        /* their abort outputs land on a job id with no live entry: dropped */
        for (int p = 0; p < added; p++) {
            if (s->num_live == s->cap_live) {
                int nc = s->cap_live ? 2 * s->cap_live : 16;
                live_req *l = realloc(s->live, sizeof *l * (size_t)nc);
                if (!l) break;
                s->live = l;
                s->cap_live = nc;
            }
            s->live[s->num_live++] =
                (live_req){rids[p], 0, p, c->sp.n, 0, 0, 0, 0, 0}; /* job 0 = nobody */
        }
        if (echo)
            for (int p = 0; p < c->num_prompts; p++)
                free(echo[p]);
        free(echo);
        free(counts);
        free(rids);
        free(first);
        return;
    }
    for (int p = 0; p < c->num_prompts; p++) {
        if (s->num_live == s->cap_live) {
            int nc = s->cap_live ? 2 * s->cap_live : 16;
            live_req *l = realloc(s->live, sizeof *l * (size_t)nc);
            if (!l) {
                cinfer_abort_request(s->e, rids[p], NULL);
                continue;
            }
            s->live = l;
            s->cap_live = nc;
        }
        s->live[s->num_live++] = (live_req){
            rids[p],  c->job_id, p,        c->sp.n > 0 ? c->sp.n : 1, 0, c->token_strings,
            first[p], want_plp,  counts[p]};
    }
    srv_event *ev = new_event(s, SRV_EV_ACCEPTED, c->job_id);
    if (ev) {
        ev->ids = counts;
        ev->num_ids = c->num_prompts;
        ev->echo = echo;
    } else {
        free(counts);
        if (echo)
            for (int p = 0; p < c->num_prompts; p++)
                free(echo[p]);
        free(echo);
    }
    free(rids);
    free(first);
}

static void do_command(srv_engine *s, srv_cmd *c) {
    cinfer_error err;
    switch (c->kind) {
    case SRV_CMD_GENERATE: do_generate(s, c); break;
    case SRV_CMD_ABORT: abort_job(s, c->job_id); break;
    case SRV_CMD_TOKENIZE: {
        int32_t *ids = NULL;
        size_t n = 0;
        if (cinfer_tokenize(s->e, c->prompts[0].text, c->add_special, &ids, &n, &err)) {
            emit_error(s, c->job_id, err.code, err.message);
            break;
        }
        srv_event *ev = new_event(s, SRV_EV_TOKENS, c->job_id);
        if (ev) {
            ev->ids = malloc(sizeof *ev->ids * (n ? n : 1));
            if (ev->ids) memcpy(ev->ids, ids, sizeof *ids * n);
            ev->num_ids = ev->ids ? (int)n : 0;
            if (c->token_strings && ev->ids) {
                ev->strs = calloc(n ? n : 1, sizeof *ev->strs);
                for (size_t i = 0; ev->strs && i < n; i++)
                    ev->strs[i] = cinfer_token_str(s->e, ids[i]);
            }
        }
        cinfer_free(ids);
        break;
    }
    case SRV_CMD_DETOKENIZE: {
        int vocab = cinfer_vocab_size(s->e);
        for (int i = 0; i < c->prompts[0].num_ids; i++)
            if (c->prompts[0].ids[i] < 0 || c->prompts[0].ids[i] >= vocab) {
                char msg[128];
                snprintf(msg, sizeof msg, "token id %d is outside the vocabulary [0, %d)",
                         c->prompts[0].ids[i], vocab);
                emit_error(s, c->job_id, CINFER_ERR_INVALID, msg);
                return;
            }
        char *text = NULL;
        if (cinfer_detokenize(s->e, c->prompts[0].ids, (size_t)c->prompts[0].num_ids, 1, &text,
                              &err)) {
            emit_error(s, c->job_id, err.code, err.message);
            break;
        }
        srv_event *ev = new_event(s, SRV_EV_TEXT, c->job_id);
        if (ev) {
            ev->text = strdup(text ? text : "");
            ev->text_len = ev->text ? strlen(ev->text) : 0;
        }
        cinfer_free(text);
        break;
    }
    }
}

static void fill_lp(srv_engine *s, const cinfer_logprob *src, srv_lp *d) {
    d->id = src->token;
    d->lp = src->logprob;
    d->tok = token_text(s, src->token);
    d->num_top = src->num_top < CINFER_MAX_LOGPROBS ? src->num_top : CINFER_MAX_LOGPROBS;
    for (int k = 0; k < d->num_top; k++) {
        d->top_id[k] = src->top_ids[k];
        d->top_lp[k] = src->top_logprobs[k];
        d->top_tok[k] = token_text(s, src->top_ids[k]);
    }
}

static live_req *find_live(srv_engine *s, int64_t rid) {
    for (int i = 0; i < s->num_live; i++)
        if (s->live[i].rid == rid) return &s->live[i];
    return NULL;
}

static void do_outputs(srv_engine *s, const cinfer_output *o, int n) {
    for (int i = 0; i < n; i++) {
        live_req *l = find_live(s, o[i].request_id);
        if (!l) continue;
        if (l->job_id && o[i].finish_reason == CINFER_FINISH_ERROR) {
            /* an engine fault ended this request: its job fails with a 500
             * (or an error chunk when streaming); its other requests stop */
            uint64_t job = l->job_id;
            emit_error(s, job, CINFER_ERR_INTERNAL, o[i].error ? o[i].error : "engine fault");
            abort_job(s, job);
            for (int k = 0; k < s->num_live; k++)
                if (s->live[k].job_id == job) s->live[k].job_id = 0;
        }
        if (l->job_id) {
            srv_event *ev = new_event(s, SRV_EV_OUTPUT, l->job_id);
            if (ev) {
                ev->prompt_index = l->prompt_index;
                ev->sample_index = o[i].sample_index;
                ev->finish = o[i].finish_reason;
                ev->text = malloc(o[i].text_len + 1);
                if (ev->text) {
                    memcpy(ev->text, o[i].text, o[i].text_len);
                    ev->text[o[i].text_len] = '\0';
                    ev->text_len = o[i].text_len;
                }
                if (o[i].num_token_ids > 0) {
                    ev->ids = malloc(sizeof *ev->ids * (size_t)o[i].num_token_ids);
                    if (ev->ids) {
                        memcpy(ev->ids, o[i].token_ids,
                               sizeof *ev->ids * (size_t)o[i].num_token_ids);
                        ev->num_ids = o[i].num_token_ids;
                    }
                }
                if (ev->ids && o[i].logprobs && l->token_strings) {
                    ev->lps = calloc((size_t)ev->num_ids, sizeof *ev->lps);
                    for (int t = 0; ev->lps && t < ev->num_ids; t++)
                        fill_lp(s, &o[i].logprobs[t], &ev->lps[t]);
                }
                if (l->want_plp && o[i].sample_index == 0 &&
                    ((o[i].prompt_logprobs && o[i].num_prompt_logprobs > 0) ||
                     l->num_prompt == 1)) {
                    l->want_plp = 0;
                    int np = (o[i].prompt_logprobs ? o[i].num_prompt_logprobs : 0) + 1;
                    ev->plps = calloc((size_t)np, sizeof *ev->plps);
                    if (ev->plps) {
                        ev->num_plps = np;
                        ev->plps[0].id = l->first_token;
                        ev->plps[0].lp = NAN;
                        ev->plps[0].tok = token_text(s, l->first_token);
                        for (int t = 1; t < np; t++)
                            fill_lp(s, &o[i].prompt_logprobs[t - 1], &ev->plps[t]);
                    }
                }
            }
        }
        if (o[i].finish_reason != CINFER_FINISH_NONE && ++l->done >= l->n)
            *l = s->live[--s->num_live];
    }
}

static void publish(srv_engine *s) {
    cinfer_metrics m = cinfer_get_metrics(s->e);
    srv_event *head = s->out_head;
    pthread_mutex_lock(&s->mu);
    s->metrics = m;
    if (head) {
        if (s->ev_tail)
            s->ev_tail->next = head;
        else
            s->ev_head = head;
        s->ev_tail = s->out_tail;
    }
    pthread_mutex_unlock(&s->mu);
    s->out_head = s->out_tail = NULL;
    if (head) s->notify(s->notify_arg);
}

/* The engine is in trouble (a step or its outputs failed): every live job
 * fails with its error, every request is aborted. */
static void fail_live(srv_engine *s, const cinfer_error *err) {
    for (int i = 0; i < s->num_live; i++) {
        if (s->live[i].job_id) emit_error(s, s->live[i].job_id, err->code, err->message);
        for (int j = i + 1; j < s->num_live; j++)
            if (s->live[j].job_id == s->live[i].job_id) s->live[j].job_id = 0;
        cinfer_abort_request(s->e, s->live[i].rid, NULL);
        s->live[i].job_id = 0;
    }
}

static void *engine_main(void *arg) {
    srv_engine *s = arg;
    for (;;) {
        /* async scheduling: take the launched step's tokens in before the
         * commands, so requests that came while it ran make the next plan
         * (else they would wait a step more) */
        (void)cinfer_complete_step(s->e, NULL);
        /* a step that gave requests their first tokens: those go out now,
         * before the next step's plan and launch (time to first token); the
         * step's other outputs come from cinfer_step after the launch */
        const cinfer_output *fo = NULL;
        int fn = 0;
        cinfer_error ferr;
        if (s->early && cinfer_early_outputs(s->e, &fo, &fn, &ferr)) {
            fail_live(s, &ferr); /* as a failed cinfer_step */
            publish(s);
        } else if (fn > 0) {
            do_outputs(s, fo, fn);
            publish(s);
        }
        pthread_mutex_lock(&s->mu);
        while (!s->cmd_head && !s->stop && !cinfer_has_unfinished(s->e))
            pthread_cond_wait(&s->cv, &s->mu);
        srv_cmd *cmds = s->cmd_head;
        s->cmd_head = s->cmd_tail = NULL;
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        while (cmds) {
            srv_cmd *next = cmds->next;
            do_command(s, cmds);
            srv_cmd_free(cmds);
            cmds = next;
        }
        if (stop) {
            for (int i = 0; i < s->num_live; i++)
                cinfer_abort_request(s->e, s->live[i].rid, NULL);
            for (int guard = 0; cinfer_has_unfinished(s->e) && guard < 1000; guard++) {
                const cinfer_output *o;
                int n;
                if (cinfer_step(s->e, &o, &n, NULL)) break;
            }
            s->num_live = 0;
            publish(s);
            break;
        }
        if (cinfer_has_unfinished(s->e)) {
            const cinfer_output *o;
            int n;
            cinfer_error err;
            if (cinfer_step(s->e, &o, &n, &err)) {
                fail_live(s, &err);
            } else {
                do_outputs(s, o, n);
            }
        }
        publish(s);
    }
    return NULL;
}

int srv_engine_start(cinfer_engine *e, void (*notify)(void *), void *arg, srv_engine **out) {
    srv_engine *s = calloc(1, sizeof *s);
    if (!s) return -1;
    s->e = e;
    const char *ev = getenv("CINFER_SERVE_EARLY");
    s->early = !(ev && *ev == '0');
    s->notify = notify;
    s->notify_arg = arg;
    s->metrics = cinfer_get_metrics(e);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, engine_main, s)) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void srv_engine_submit(srv_engine *s, srv_cmd *cmd) {
    cmd->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        srv_cmd_free(cmd);
        return;
    }
    if (s->cmd_tail)
        s->cmd_tail->next = cmd;
    else
        s->cmd_head = cmd;
    s->cmd_tail = cmd;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

srv_event *srv_engine_take_events(srv_engine *s) {
    pthread_mutex_lock(&s->mu);
    srv_event *h = s->ev_head;
    s->ev_head = s->ev_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    return h;
}

cinfer_metrics srv_engine_metrics(srv_engine *s) {
    pthread_mutex_lock(&s->mu);
    cinfer_metrics m = s->metrics;
    pthread_mutex_unlock(&s->mu);
    return m;
}

void srv_engine_stop(srv_engine *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    for (srv_cmd *c = s->cmd_head; c;) {
        srv_cmd *n = c->next;
        srv_cmd_free(c);
        c = n;
    }
    for (srv_event *ev = s->ev_head; ev;) {
        srv_event *n = ev->next;
        srv_event_free(ev);
        ev = n;
    }
    free(s->live);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
