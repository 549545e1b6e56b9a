/* http.c — evhttp plumbing: routing, auth, jobs, timeouts, disconnects and
 * graceful shutdown; the replies themselves (plain JSON and SSE) are built
 * by http_response.c.
 *
 * Everything here runs on the libevent thread. A job is one HTTP request
 * that waits on the engine thread (generation, tokenize, detokenize); it
 * lives in ctx->jobs until it is answered or its client goes away, and it
 * is named to the engine thread only by its id. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "model/config.h"
#include "server/admission.h"
#include "server/http_response.h"
#include "server/limits.h"
#include "server/log.h"
#include "server/server.h"
#include "server/tool_parser.h"
#include "server/webui.h"

#define now_s srv_now_s

/* ---- jobs ---- */
static void on_close(struct evhttp_connection *conn, void *arg);

/* Frees a job (job.c) and lets a drain in progress end with the last one. */
static void job_done(job *j) {
    srv_ctx *ctx = j->ctx;
    job_free(j);
    srv_drain_check(ctx);
}

static job *job_new(srv_ctx *ctx, struct evhttp_request *req, ep_kind ep) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->id = ++ctx->next_id;
    j->ctx = ctx;
    j->req = req;
    j->ep = ep;
    j->t0 = now_s();
    j->created = (long long)time(NULL);
    j->logprobs = -1;
    snprintf(j->reqid, sizeof j->reqid, "%s", ctx->reqid);
    static const char *const paths[] = {"/v1/completions", "/v1/chat/completions", "/tokenize",
                                        "/detokenize"};
    j->path = paths[ep];
    j->conn = evhttp_request_get_connection(req);
    if (j->conn) evhttp_connection_set_closecb(j->conn, on_close, j);
    j->next = ctx->jobs;
    if (ctx->jobs) ctx->jobs->prev = j;
    ctx->jobs = j;
    return j;
}

static job *job_find(srv_ctx *ctx, uint64_t id) {
    for (job *j = ctx->jobs; j; j = j->next)
        if (j->id == id) return j;
    return NULL;
}

static void job_abort(job *j) {
    if (j->aborted || !j->ctx->eng) return;
    j->aborted = 1;
    srv_cmd *c = calloc(1, sizeof *c);
    if (!c) return;
    c->kind = SRV_CMD_ABORT;
    c->job_id = j->id;
    srv_pretok_submit(j->ctx->pretok, c);
}

/* The client went away: abort its work (freeing its KV blocks) and forget it. */
static void on_close(struct evhttp_connection *conn, void *arg) {
    job *j = arg;
    /* A request still being answered when its connection fails is detached
     * from it (evhttp_connection_incoming_fail) and left to us to free. */
    if (j->req && !evhttp_request_get_connection(j->req)) evhttp_request_free(j->req);
    j->req = NULL;
    j->conn = NULL;
    if (j->is_gen && !j->finished) {
        job_abort(j);
        for (int i = 0; i < j->num_choices; i++)
            if (!j->ch[i].done) j->ctx->m.finished[CINFER_FINISH_ABORT]++;
    }
    job_done(j);
}

/* The job is about to be answered: its connection may be reused or closed
 * from now on without concerning it. */
static void job_detach(job *j) {
    if (j->watch) {
        event_free(j->watch);
        j->watch = NULL;
    }
    if (j->conn) evhttp_connection_set_closecb(j->conn, NULL, NULL);
    j->conn = NULL;
}

/* evhttp does not read an incoming connection while its reply is pending,
 * so a client that hangs up would go unnoticed until the reply is written:
 * watch the socket for EOF ourselves and abort the work at once. */
static void on_watch(evutil_socket_t fd, short what, void *arg) {
    job *j = arg;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    event_del(j->watch); /* level-triggered: pipelined data or EOF would fire again */
    if (n > 0 && !(what & EV_CLOSED)) {
        /* pipelined bytes: from now on wait for the hang-up alone */
        event_assign(j->watch, j->ctx->base, fd, EV_CLOSED | EV_PERSIST, on_watch, j);
        event_add(j->watch, NULL);
        return;
    }
    if (j->is_gen && !j->finished) job_abort(j);
}

static void job_watch(job *j) {
    evutil_socket_t fd = srv_conn_fd(j->conn);
    if (fd < 0) return;
    j->watch = event_new(j->ctx->base, fd, EV_READ | EV_PERSIST, on_watch, j);
    if (j->watch) event_add(j->watch, NULL);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg) {
    job *j = arg;
    j->timed_out = 1;
    job_abort(j);
}

/* Answers a job that ended in an error (status before the stream started,
 * an error event inside it otherwise), and frees it. */
static void job_fail(job *j, const srv_err *e) {
    srv_ctx *ctx = j->ctx;
    job_detach(j);
    j->status = j->headers_sent ? 200 : e->status;
    if (j->req) {
        if (j->headers_sent) {
            srv_sse_error(j, e);
        } else {
            srv_send_error(ctx, j->req, e);
            j->req = NULL;
        }
    }
    job_done(j);
}

static void job_complete(job *j) {
    srv_ctx *ctx = j->ctx;
    double t = now_s();
    j->finished = 1;
    for (int i = 0; i < j->num_choices; i++)
        ctx->m.finished[j->timed_out ? 0 : (int)j->ch[i].finish < 5 ? (int)j->ch[i].finish : 4]++;
    srv_hist_observe(&ctx->m.e2e, t - j->t0);
    srv_job_phases(j, t);
    if (j->completion_tokens > 1 && j->t_first > 0)
        srv_hist_observe(&ctx->m.tpot,
                         (j->t_last - j->t_first) / (double)(j->completion_tokens - 1));
    if (j->timed_out) {
        srv_err e;
        srv_errf(&e, 504, NULL, "request timed out after %g s", ctx->cfg->request_timeout_s);
        e.type = "timeout_error";
        job_fail(j, &e);
        return;
    }
    job_detach(j);
    j->status = 200;
    if (j->req) {
        if (j->stream) {
            if (j->include_usage) srv_sse_usage(j);
            srv_sse_end(j);
        } else {
            srv_send_json(ctx, j->req, 200, srv_final_response(j));
            j->req = NULL;
        }
    }
    job_done(j);
}

static int choice_append(choice *c, const char *s, size_t n) {
    if (c->len + n + 1 > c->cap) {
        size_t nc = c->cap ? c->cap : 64;
        while (nc < c->len + n + 1)
            nc *= 2;
        char *p = realloc(c->text, nc);
        if (!p) return -1;
        c->text = p;
        c->cap = nc;
    }
    memcpy(c->text + c->len, s, n);
    c->len += n;
    c->text[c->len] = '\0';
    return 0;
}

static void on_accepted(job *j, srv_event *ev) {
    j->accepted = 1;
    j->t_accept = now_s();
    for (int p = 0; p < ev->num_ids; p++)
        j->prompt_tokens += ev->ids[p];
    j->ctx->queued_tokens += j->prompt_tokens - j->queued_est; /* the estimate made exact */
    j->queued_est = j->prompt_tokens;
    j->ctx->m.prompt_tokens += (uint64_t)j->prompt_tokens;
    if (j->stream) srv_sse_start(j);
    if (j->echo && ev->echo && j->stream && j->logprobs >= 0) {
        /* the prompt's logprobs come with its first output: the echo waits
         * for them so one chunk carries the prompt text and its logprobs */
        j->echo_wait = calloc((size_t)j->num_prompts, sizeof *j->echo_wait);
        for (int p = 0; j->echo_wait && p < ev->num_ids && p < j->num_prompts; p++) {
            j->echo_wait[p] = ev->echo[p];
            ev->echo[p] = NULL;
        }
        if (j->echo_wait) return;
    }
    if (j->echo && ev->echo) {
        for (int p = 0; p < ev->num_ids && p < j->num_prompts; p++)
            for (int s = 0; s < j->n; s++) {
                int idx = p * j->n + s;
                size_t len = strlen(ev->echo[p]);
                if (j->stream) {
                    srv_sse_delta(j, idx, ev->echo[p], len, NULL, NULL, 0, CINFER_FINISH_NONE);
                    j->ch[idx].stream_off += len;
                } else {
                    choice_append(&j->ch[idx], ev->echo[p], len);
                }
            }
    }
}

/* Streaming echo with logprobs: sends prompt p's held text to each of its
 * samples, with the prompt logprobs when this output carries them. */
static void flush_echo(job *j, int p, const srv_event *ev) {
    char *text = j->echo_wait[p];
    j->echo_wait[p] = NULL;
    size_t len = strlen(text);
    int n = ev->plps ? ev->num_plps : 0;
    size_t *offs = n ? malloc(sizeof *offs * (size_t)n) : NULL;
    size_t o = 0;
    for (int i = 0; offs && i < n; i++) {
        offs[i] = o;
        o += ev->plps[i].tok ? strlen(ev->plps[i].tok) : 0;
    }
    for (int s = 0; s < j->n; s++) {
        int idx = p * j->n + s;
        srv_sse_delta(j, idx, text, len, offs ? ev->plps : NULL, offs, offs ? n : 0,
                      CINFER_FINISH_NONE);
        j->ch[idx].stream_off += len;
    }
    free(offs);
    free(text);
}

/* Inserts logprob entries (deep copies) at the front of choice c, text
 * offsets counted from 0: the echoed prompt's tokens. */
static void choice_prepend_lps(choice *c, const srv_lp *lps, int n) {
    size_t off = 0;
    if (c->nlps + n > c->caplps) {
        int nc = c->caplps ? c->caplps : 16;
        while (nc < c->nlps + n)
            nc *= 2;
        srv_lp *l = realloc(c->lps, sizeof *l * (size_t)nc);
        if (l) c->lps = l;
        size_t *o = l ? realloc(c->offsets, sizeof *o * (size_t)nc) : NULL;
        if (o) c->offsets = o;
        if (!l || !o) return;
        c->caplps = nc;
    }
    memmove(c->lps + n, c->lps, sizeof *c->lps * (size_t)c->nlps);
    memmove(c->offsets + n, c->offsets, sizeof *c->offsets * (size_t)c->nlps);
    c->nlps += n;
    for (int i = 0; i < n; i++) {
        srv_lp *d = &c->lps[i];
        *d = lps[i];
        d->tok = strdup(lps[i].tok ? lps[i].tok : "");
        for (int k = 0; k < d->num_top; k++)
            d->top_tok[k] = strdup(lps[i].top_tok[k] ? lps[i].top_tok[k] : "");
        c->offsets[i] = off;
        off += d->tok ? strlen(d->tok) : 0;
    }
}

static void on_output(job *j, srv_event *ev) {
    int idx = ev->prompt_index * j->n + ev->sample_index;
    if (idx < 0 || idx >= j->num_choices) return;
    if (ev->plps && !j->stream && j->echo)
        for (int s = 0; s < j->n;
             s++) /* echo: the prompt's logprobs lead every sample of that prompt */
            choice_prepend_lps(&j->ch[ev->prompt_index * j->n + s], ev->plps, ev->num_plps);
    if (j->echo_wait && ev->prompt_index < j->num_prompts && j->echo_wait[ev->prompt_index])
        flush_echo(j, ev->prompt_index, ev);
    choice *c = &j->ch[idx];
    if (c->done) return;
    double t = now_s();
    if (ev->num_ids > 0) {
        if (j->t_first == 0) {
            j->t_first = t;
            srv_hist_observe(&j->ctx->m.ttft, t - j->t0);
            j->ctx->queued_tokens -= j->queued_est; /* its prefill is done */
            j->queued_est = 0;
        } else if (ev->num_ids > 0) {
            srv_hist_observe(&j->ctx->m.itl, (t - j->t_last) / (double)ev->num_ids);
        }
        j->t_last = t;
        c->ntokens += ev->num_ids;
        j->completion_tokens += ev->num_ids;
        j->ctx->m.generation_tokens += (uint64_t)ev->num_ids;
    }
    size_t *offs = NULL;
    if (ev->lps && ev->num_ids) {
        offs = malloc(sizeof *offs * (size_t)ev->num_ids);
        size_t o = j->stream ? c->stream_off : c->len;
        for (int i = 0; offs && i < ev->num_ids; i++) {
            offs[i] = o;
            o += strlen(ev->lps[i].tok);
        }
    }
    if (ev->finish != CINFER_FINISH_NONE) {
        c->done = 1;
        c->finish = ev->finish;
        j->finished++;
    }
    if (j->stream && j->tool_mode) { /* calls are found in the whole text: keep it */
        choice_append(c, ev->text ? ev->text : "", ev->text_len);
        srv_tool_stream(j, idx);
        free(offs);
    } else if (j->stream) {
        if (ev->text_len || ev->num_ids || ev->finish != CINFER_FINISH_NONE)
            srv_sse_delta(j, idx, ev->text, ev->text_len, ev->lps, offs, ev->lps ? ev->num_ids : 0,
                          ev->finish);
        c->stream_off += ev->text_len;
        free(offs);
    } else {
        choice_append(c, ev->text ? ev->text : "", ev->text_len);
        if (ev->lps && offs) {
            if (c->nlps + ev->num_ids > c->caplps) {
                int nc = c->caplps ? c->caplps : 16;
                while (nc < c->nlps + ev->num_ids)
                    nc *= 2;
                srv_lp *l = realloc(c->lps, sizeof *l * (size_t)nc);
                size_t *o = l ? realloc(c->offsets, sizeof *o * (size_t)nc) : NULL;
                if (l) c->lps = l;
                if (o) c->offsets = o;
                if (l && o) c->caplps = nc;
            }
            if (c->nlps + ev->num_ids <= c->caplps) {
                memcpy(c->lps + c->nlps, ev->lps, sizeof *ev->lps * (size_t)ev->num_ids);
                memcpy(c->offsets + c->nlps, offs, sizeof *offs * (size_t)ev->num_ids);
                c->nlps += ev->num_ids;
                free(ev->lps); /* strings now owned by the choice */
                ev->lps = NULL;
            }
        }
        free(offs);
    }
}

static void handle_event(srv_ctx *ctx, srv_event *ev) {
    job *j = job_find(ctx, ev->job_id);
    if (!j) return;
    switch (ev->kind) {
    case SRV_EV_ACCEPTED: on_accepted(j, ev); break;
    case SRV_EV_OUTPUT:
        on_output(j, ev);
        if (j->finished >= j->num_choices) job_complete(j);
        break;
    case SRV_EV_ERROR: {
        srv_err e;
        int status =
            ev->err_code == CINFER_ERR_INVALID || ev->err_code == CINFER_ERR_CAPACITY ? 400 : 500;
        srv_errf(&e, status, NULL, "%s", ev->err_msg);
        if (j->is_gen) {
            if (status == 500) /* an engine fault: its choices finished with error */
                for (int i = 0; i < j->num_choices; i++)
                    if (!j->ch[i].done) ctx->m.finished[CINFER_FINISH_ERROR]++;
            j->finished = 1;
            job_abort(j);
        }
        job_fail(j, &e);
        break;
    }
    case SRV_EV_TOKENS: {
        j->status = 200;
        json_t *o = json_object(), *a = json_array();
        for (int i = 0; i < ev->num_ids; i++)
            json_array_append_new(a, json_integer(ev->ids[i]));
        json_object_set_new(o, "count", json_integer(ev->num_ids));
        if (ctx->max_model_len > 0)
            json_object_set_new(o, "max_model_len", json_integer(ctx->max_model_len));
        json_object_set_new(o, "tokens", a);
        if (ev->strs) { /* vLLM's return_token_strs: convert_ids_to_tokens */
            json_t *ts = json_array();
            for (int i = 0; i < ev->num_ids; i++)
                json_array_append_new(ts, ev->strs[i]
                                              ? srv_json_text(ev->strs[i], strlen(ev->strs[i]))
                                              : json_null());
            json_object_set_new(o, "token_strs", ts);
        }
        job_detach(j);
        if (j->req)
            srv_send_json(ctx, j->req, 200, o);
        else
            json_decref(o);
        j->req = NULL;
        job_done(j);
        break;
    }
    case SRV_EV_TEXT: {
        j->status = 200;
        json_t *o = json_object();
        json_object_set_new(o, "prompt", srv_json_text(ev->text, ev->text_len));
        job_detach(j);
        if (j->req)
            srv_send_json(ctx, j->req, 200, o);
        else
            json_decref(o);
        j->req = NULL;
        job_done(j);
        break;
    }
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg) {
    srv_ctx *ctx = arg;
    if (!ctx->eng) return;
    srv_event *ev = srv_engine_take_events(ctx->eng);
    long long toks = 0;
    for (srv_event *e = ev; e; e = e->next)
        if (e->kind == SRV_EV_OUTPUT) toks += e->num_ids;
    if (toks > 0) srv_hist_observe(&ctx->m.iter_tokens, (double)toks);
    while (ev) {
        srv_event *next = ev->next;
        handle_event(ctx, ev);
        srv_event_free(ev);
        ev = next;
    }
}

static void notify(void *arg) {
    srv_ctx *ctx = arg;
    event_active(ctx->wake, EV_READ, 0);
}

/* ---- request handling ---- */
static int auth_ok(srv_ctx *ctx, struct evhttp_request *req) {
    const char *key = ctx->cfg->api_key;
    if (!key) return 1;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t hn = strlen(h), kn = strlen(key);
    unsigned char d = hn != kn;
    for (size_t i = 0; i < kn; i++)
        d |= (unsigned char)((i < hn ? (unsigned char)h[i] : 0) ^ (unsigned char)key[i]);
    return d == 0;
}

static json_t *read_body(srv_ctx *ctx, struct evhttp_request *req) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    unsigned char *p = evbuffer_pullup(in, -1);
    json_error_t je;
    json_t *o = json_loadb(n ? (const char *)p : "", n, 0, &je);
    if (!o) {
        srv_err e;
        srv_errf(&e, 400, NULL, "malformed JSON body: %s (line %d, column %d)", je.text, je.line,
                 je.column);
        srv_send_error(ctx, req, &e);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        srv_send_errorf(ctx, req, 400, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return o;
}

static int model_ok(srv_ctx *ctx, struct evhttp_request *req, const char *model) {
    if (!model || !strcmp(model, ctx->model_name) || !strcmp(model, ctx->cfg->model_dir)) return 1;
    srv_err e;
    srv_errf(&e, 404, "model", "The model '%.100s' does not exist.", model);
    srv_send_error(ctx, req, &e);
    return 0;
}

static void handle_generate(srv_ctx *ctx, struct evhttp_request *req, int chat) {
    /* a body far beyond what the context can hold is refused unparsed */
    size_t blen = evbuffer_get_length(evhttp_request_get_input_buffer(req));
    if (ctx->max_prompt_bytes && blen > ctx->max_prompt_bytes + 65536) {
        srv_err e;
        srv_errf(&e, 400, chat ? "messages" : "prompt",
                 "the request (%zu bytes) exceeds the prompt size limit of %zu bytes "
                 "(8 x max_model_len x 4)",
                 blen, ctx->max_prompt_bytes);
        srv_send_error(ctx, req, &e);
        return;
    }
    json_t *body = read_body(ctx, req);
    if (!body) return;
    srv_gen_req g;
    srv_err e;
    if (srv_parse_generate(body, chat, &ctx->chat, &g, &e)) {
        srv_cmd_free(g.cmd);
        json_decref(body);
        srv_send_error(ctx, req, &e);
        return;
    }
    if (!model_ok(ctx, req, g.model)) {
        srv_cmd_free(g.cmd);
        json_decref(body);
        return;
    }
    if (srv_admit(ctx, req, g.cmd)) {
        srv_cmd_free(g.cmd);
        json_decref(body);
        return;
    }
    job *j = job_new(ctx, req, chat ? EP_CHAT : EP_COMPLETIONS);
    if (!j) {
        srv_cmd_free(g.cmd);
        json_decref(body);
        srv_send_errorf(ctx, req, 500, NULL, "out of memory");
        return;
    }
    j->is_gen = 1;
    ctx->gen_in_flight++;
    ctx->seqs_in_flight += (g.cmd->sp.n > 0 ? g.cmd->sp.n : 1) * g.cmd->num_prompts;
    j->queued_est = srv_prompt_estimate(g.cmd);
    ctx->queued_tokens += j->queued_est;
    j->stream = g.stream;
    j->include_usage = g.stream && g.include_usage;
    j->logprobs = g.logprobs;
    j->echo = g.echo;
    j->tool_mode = g.tool_mode;
    j->tool_parser = g.tool_parser;
    memcpy(j->tool_name, g.tool_name, sizeof j->tool_name);
    j->n = g.cmd->sp.n > 0 ? g.cmd->sp.n : 1;
    j->num_prompts = g.cmd->num_prompts;
    j->num_choices = j->n * j->num_prompts;
    j->model = ctx->model_name;
    static const char hex[] = "0123456789abcdef";
    unsigned long long r =
        (unsigned long long)j->id * 0x9E3779B97F4A7C15ull ^ (unsigned long long)(j->t0 * 1e9);
    int off = snprintf(j->idstr, sizeof j->idstr, "%s", chat ? "chatcmpl-" : "cmpl-");
    for (int i = 0; i < 24 && off < (int)sizeof j->idstr - 1; i++) {
        j->idstr[off++] = hex[r & 15];
        r = r >> 4 | (r << 60);
        if ((i & 7) == 7) r *= 0xBF58476D1CE4E5B9ull;
    }
    j->idstr[off] = '\0';
    j->ch = calloc((size_t)j->num_choices, sizeof *j->ch);
    json_decref(body);
    if (!j->ch) {
        srv_cmd_free(g.cmd);
        srv_send_errorf(ctx, req, 500, NULL, "out of memory");
        j->req = NULL;
        job_done(j);
        return;
    }
    if (ctx->cfg->request_timeout_s > 0) {
        j->timer = evtimer_new(ctx->base, on_timeout, j);
        double s = ctx->cfg->request_timeout_s;
        struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
        if (j->timer) evtimer_add(j->timer, &tv);
    }
    job_watch(j);
    g.cmd->job_id = j->id;
    g.cmd->max_model_len = ctx->max_model_len;
    srv_pretok_submit(ctx->pretok, g.cmd);
}

static void handle_tokenize(srv_ctx *ctx, struct evhttp_request *req, int detok) {
    json_t *body = read_body(ctx, req);
    if (!body) return;
    srv_err e = {0};
    srv_cmd *c = calloc(1, sizeof *c);
    if (c) c->prompts = calloc(1, sizeof *c->prompts);
    if (!c || !c->prompts) {
        srv_cmd_free(c);
        json_decref(body);
        srv_send_errorf(ctx, req, 500, NULL, "out of memory");
        return;
    }
    c->num_prompts = 1;
    json_t *model = json_object_get(body, "model");
    if (model && !json_is_null(model) && !json_is_string(model)) {
        srv_errf(&e, 400, "model", "'model' must be a string");
    } else if (model && json_is_string(model) && !model_ok(ctx, req, json_string_value(model))) {
        srv_cmd_free(c);
        json_decref(body);
        return;
    } else if (detok) {
        c->kind = SRV_CMD_DETOKENIZE;
        json_t *t = json_object_get(body, "tokens");
        if (!json_is_array(t)) {
            srv_errf(&e, 400, "tokens", "'tokens' must be a list of token ids");
        } else {
            size_t n = json_array_size(t);
            c->prompts[0].ids = malloc(sizeof(int32_t) * (n ? n : 1));
            for (size_t i = 0; c->prompts[0].ids && i < n; i++) {
                json_t *v = json_array_get(t, i);
                if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                    json_integer_value(v) > INT32_MAX) {
                    srv_errf(&e, 400, "tokens", "'tokens' must be a list of non-negative integers");
                    break;
                }
                c->prompts[0].ids[i] = (int32_t)json_integer_value(v);
            }
            c->prompts[0].num_ids = (int)n;
        }
    } else {
        c->kind = SRV_CMD_TOKENIZE;
        c->add_special = 1;
        c->token_strings = json_is_true(json_object_get(body, "return_token_strs"));
        json_t *p = json_object_get(body, "prompt"),
               *as = json_object_get(body, "add_special_tokens"),
               *rs = json_object_get(body, "return_token_strs");
        if (rs && !json_is_null(rs) && !json_is_boolean(rs)) {
            srv_errf(&e, 400, "return_token_strs", "'return_token_strs' must be a boolean");
        } else if (as && !json_is_boolean(as)) {
            srv_errf(&e, 400, "add_special_tokens", "'add_special_tokens' must be a boolean");
        } else if (json_object_get(body, "messages")) {
            if (as)
                c->add_special = json_is_true(as);
            else
                c->add_special = 0;
            srv_render_chat(&ctx->chat, body, &c->prompts[0].text, &e);
        } else if (!json_is_string(p)) {
            srv_errf(&e, 400, "prompt", "'prompt' must be a string");
        } else {
            if (as) c->add_special = json_is_true(as);
            c->prompts[0].text = strdup(json_string_value(p));
        }
    }
    json_decref(body);
    if (e.status) {
        srv_cmd_free(c);
        srv_send_error(ctx, req, &e);
        return;
    }
    job *j = job_new(ctx, req, detok ? EP_DETOKENIZE : EP_TOKENIZE);
    if (!j) {
        srv_cmd_free(c);
        srv_send_errorf(ctx, req, 500, NULL, "out of memory");
        return;
    }
    c->job_id = j->id;
    srv_pretok_submit(ctx->pretok, c);
}

static void handle_metrics(srv_ctx *ctx, struct evhttp_request *req) {
    cinfer_metrics em = srv_engine_metrics(ctx->eng);
    char *s =
        srv_metrics_render(&ctx->m, &em, ctx->model_name, ctx->gen_in_flight, &ctx->cfg->engine);
    if (!s) {
        srv_send_errorf(ctx, req, 500, NULL, "out of memory");
        return;
    }
    srv_send_body(ctx, req, 200, "text/plain; version=0.0.4; charset=utf-8", s, strlen(s));
    free(s);
}

typedef struct route {
    const char *path;
    enum evhttp_cmd_type method;
    int auth;
    int arg;
    void (*fn)(srv_ctx *, struct evhttp_request *, int);
    int prefix; /* 1: path is a prefix followed by at least one character */
} route;

static void h_generate(srv_ctx *c, struct evhttp_request *r, int chat) {
    handle_generate(c, r, chat);
}
static void h_tokenize(srv_ctx *c, struct evhttp_request *r, int detok) {
    handle_tokenize(c, r, detok);
}
static void h_models(srv_ctx *c, struct evhttp_request *r, int one) {
    srv_handle_models(c, r, one); /* models.c */
}
static void h_metrics(srv_ctx *c, struct evhttp_request *r, int a) {
    handle_metrics(c, r);
}
static void h_health(srv_ctx *c, struct evhttp_request *r, int a) {
    srv_send_body(c, r, 200, "application/json", "{}", 2); /* 503 while draining: on_request */
}

static const route ROUTES[] = {
    {"/v1/completions", EVHTTP_REQ_POST, 1, 0, h_generate, 0},
    {"/v1/chat/completions", EVHTTP_REQ_POST, 1, 1, h_generate, 0},
    {"/v1/models", EVHTTP_REQ_GET, 1, 0, h_models, 0},
    {"/v1/models/", EVHTTP_REQ_GET, 1, 1, h_models, 1},
    {"/tokenize", EVHTTP_REQ_POST, 1, 0, h_tokenize, 0},
    {"/detokenize", EVHTTP_REQ_POST, 1, 1, h_tokenize, 0},
    {"/health", EVHTTP_REQ_GET, 0, 0, h_health, 0},
    {"/metrics", EVHTTP_REQ_GET, 0, 0, h_metrics, 0},
};

static void route_request(srv_ctx *ctx, struct evhttp_request *req, const char *path);

static void on_request(struct evhttp_request *req, void *arg) {
    srv_ctx *ctx = arg;
    srv_limits_request(ctx, req);
    if (srv_limits_refused(ctx, req)) { /* answered already: this write fails, evhttp frees all */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        srv_send_errorf(ctx, req, 503, NULL, "connection refused");
        return;
    }
    ctx->m.http_requests++;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path) path = "/";
    double t0 = now_s();
    job *before = ctx->jobs;
    srv_request_begin(ctx, req);
    ctx->replied_status = 0;
    srv_err e;
    if (srv_check_framing(req, &e)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        srv_send_error(ctx, req, &e);
    } else if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) >
               ctx->cfg->max_body_bytes) {
        srv_send_errorf(ctx, req, 413, NULL, "the request body exceeds --max-body-bytes");
    } else if (ctx->stopping) {
        srv_send_errorf(ctx, req, 503, NULL, "the server is shutting down");
    } else {
        route_request(ctx, req, path);
    }
    if (ctx->jobs == before || !ctx->jobs || ctx->jobs->req != req) /* answered at once */
        srv_request_log(ctx, req, path, t0);
}

static int route_match(const route *r, const char *path) {
    if (!r->prefix) return !strcmp(path, r->path);
    size_t n = strlen(r->path);
    return !strncmp(path, r->path, n) && path[n];
}

static void route_request(srv_ctx *ctx, struct evhttp_request *req, const char *path) {
    if (srv_webui_handle(ctx, req, path)) return; /* GET /: the chat page */
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    int path_known = 0;
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++) {
        const route *r = &ROUTES[i];
        if (!route_match(r, path)) continue;
        path_known = 1;
        if (m != r->method && !(m == EVHTTP_REQ_HEAD && r->method == EVHTTP_REQ_GET)) continue;
        if (r->auth && !auth_ok(ctx, req)) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
            srv_send_errorf(ctx, req, 401, NULL,
                            "invalid or missing API key (Authorization: Bearer ...)");
            return;
        }
        r->fn(ctx, req, r->arg);
        return;
    }
    if (path_known) {
        for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++)
            if (route_match(&ROUTES[i], path))
                evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                                  ROUTES[i].method == EVHTTP_REQ_GET ? "GET, HEAD" : "POST");
        srv_send_errorf(ctx, req, 405, NULL, "method not allowed for this path");
        return;
    }
    srv_err e;
    srv_errf(&e, 404, NULL, "no route for %.100s", path);
    srv_send_error(ctx, req, &e);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    srv_drain_begin(arg, (int)sig); /* drain.c */
}

int srv_run(const srv_config *cfg) {
    srv_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return 1;
    int rc = 1;
    ctx->cfg = cfg;
    ctx->started = (long long)time(NULL);
    srv_metrics_init(&ctx->m);
    if (cfg->served_model_name) {
        ctx->model_name = strdup(cfg->served_model_name);
    } else {
        const char *d = cfg->model_dir;
        size_t n = strlen(d);
        while (n > 1 && d[n - 1] == '/')
            n--;
        size_t b = n;
        while (b > 0 && d[b - 1] != '/')
            b--;
        ctx->model_name = strndup(d + b, n - b);
    }
    int max_seqs = cfg->engine.max_num_seqs > 0 ? cfg->engine.max_num_seqs : 256;
    ctx->max_in_flight = max_seqs + (cfg->max_waiting >= 0 ? cfg->max_waiting : 0);
    ctx->max_seqs_in_flight = ctx->max_in_flight;

    ci_model_config mc;
    if (!ci_config_load(cfg->model_dir, &mc).code) ctx->max_model_len = mc.max_position_embeddings;
    if (cfg->engine.max_model_len > 0 &&
        (ctx->max_model_len <= 0 || cfg->engine.max_model_len < ctx->max_model_len))
        ctx->max_model_len = cfg->engine.max_model_len;
    ctx->max_prompt_bytes = ctx->max_model_len > 0 ? (size_t)ctx->max_model_len * 32 : 0;
    ci_status cs = ci_chat_config_load(cfg->model_dir, &ctx->chat.cfg);
    if (cs.code) memset(&ctx->chat.cfg, 0, sizeof ctx->chat.cfg);
    if (cfg->chat_template) { /* a bad template stops the server before the model loads */
        cs = ci_chat_template_compile(cfg->chat_template, &ctx->chat.tpl);
        if (cs.code) {
            fprintf(stderr, "error: --chat-template %s: %s\n", cfg->chat_template_path, cs.msg);
            goto out;
        }
    } else if (!cs.code) {
        const char *src = ci_chat_config_pick(&ctx->chat.cfg, false);
        if (src) {
            cs = ci_chat_template_compile(src, &ctx->chat.tpl);
            if (cs.code) {
                fprintf(stderr, "cinfer serve: warning: chat template: %s\n", cs.msg);
                ctx->chat.tpl = NULL;
            }
        }
    }

    /* the tool-call format: --tool-call-parser, else the one the template writes */
    ctx->chat.tool_parser = cfg->tool_call_parser
                                ? srv_tool_parser_from_name(cfg->tool_call_parser)
                                : srv_tool_parser_detect(ci_chat_config_pick(&ctx->chat.cfg, true));
    if (ctx->chat.tool_parser < 0) ctx->chat.tool_parser = SRV_TOOL_PARSER_HERMES;

    cinfer_error err;
    cinfer_engine_config ec = cfg->engine;
    ec.model_dir = cfg->model_dir;
    if (cinfer_engine_create(&ec, &ctx->engine, &err)) {
        fprintf(stderr, "error: %s\n", err.message);
        goto out;
    }
    if (evthread_use_pthreads()) {
        fprintf(stderr, "error: libevent: no pthreads support\n");
        goto out;
    }
    ctx->base = event_base_new();
    ctx->http = ctx->base ? evhttp_new(ctx->base) : NULL;
    ctx->wake = ctx->base ? event_new(ctx->base, -1, 0, on_wake, ctx) : NULL;
    ctx->sig_int = ctx->base ? evsignal_new(ctx->base, SIGINT, on_signal, ctx) : NULL;
    ctx->sig_term = ctx->base ? evsignal_new(ctx->base, SIGTERM, on_signal, ctx) : NULL;
    if (!ctx->http || !ctx->wake || !ctx->sig_int || !ctx->sig_term) {
        fprintf(stderr, "error: libevent setup failed\n");
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    evsignal_add(ctx->sig_int, NULL);
    evsignal_add(ctx->sig_term, NULL);
    evhttp_set_allowed_methods(ctx->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    /* a Content-Length over the limit gets a JSON 413 from limits.c, a chunked
     * body from on_request; evhttp's HTML 413 only beyond twice the limit */
    evhttp_set_max_body_size(ctx->http, (ev_ssize_t)cfg->max_body_bytes * 2);
    evhttp_set_max_headers_size(ctx->http, 64 * 1024);
    evhttp_set_timeout(ctx->http, 60); /* idle keep-alive; request deadlines: limits.c */
    evhttp_set_gencb(ctx->http, on_request, ctx);
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(ctx->http, cfg->host, (ev_uint16_t)cfg->port);
    if (!bs) {
        fprintf(stderr, "error: cannot listen on %s:%d\n", cfg->host, cfg->port);
        goto out;
    }
    if (srv_limits_install(ctx, bs)) {
        fprintf(stderr, "error: libevent listener setup failed\n");
        goto out;
    }
    int port = cfg->port;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (!getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl)) {
        if (ss.ss_family == AF_INET) port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        if (ss.ss_family == AF_INET6) port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    if (srv_engine_start(ctx->engine, notify, ctx, &ctx->eng) ||
        srv_pretok_start(ctx->engine, ctx->eng, &ctx->pretok)) {
        fprintf(stderr, "error: cannot start the engine threads\n");
        goto out;
    }
    {
        char desc[512];
        cinfer_metrics m = cinfer_get_metrics(ctx->engine);
        char line[1024];
        snprintf(line, sizeof line,
                 "%s; context %d tokens; KV cache %lld tokens (%.2f GiB), %d CUDA graphs",
                 cinfer_engine_config_describe(&ec, desc, sizeof desc), m.max_model_len,
                 (long long)m.num_kv_blocks * m.block_size, (double)m.kv_cache_bytes / (1 << 30),
                 m.num_graphs);
        if (cfg->log_json) { /* the same two lines as JSON objects */
            srv_log_always(ctx, line);
            snprintf(line, sizeof line, "model '%s' listening on http://%s:%d", ctx->model_name,
                     cfg->host, port);
            srv_log_always(ctx, line);
        } else {
            fprintf(stderr,
                    "cinfer serve: %s\ncinfer serve: model '%s' listening on http://%s:%d\n", line,
                    ctx->model_name, cfg->host, port);
        }
    }
    event_base_dispatch(ctx->base);
    rc = ctx->stopping ? 0 : 1;
out:
    srv_pretok_stop(ctx->pretok);
    if (ctx->eng) srv_engine_stop(ctx->eng);
    while (ctx->jobs) {
        ctx->jobs->req = NULL;
        job_done(ctx->jobs);
    }
    if (ctx->http) evhttp_free(ctx->http);
    srv_limits_free(ctx);
    srv_drain_free(ctx);
    if (ctx->wake) event_free(ctx->wake);
    if (ctx->sig_int) event_free(ctx->sig_int);
    if (ctx->sig_term) event_free(ctx->sig_term);
    if (ctx->base) event_base_free(ctx->base);
    cinfer_engine_destroy(ctx->engine);
    ci_chat_template_free(ctx->chat.tpl);
    ci_chat_config_free(&ctx->chat.cfg);
    free(ctx->model_name);
    free(ctx);
    libevent_global_shutdown();
    return rc;
}
