/* admission.c — request checks before the engine, X-Request-Id, access log
 * and per-request phase metrics (see admission.h). */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/admission.h"
#include "server/http_response.h"
#include "server/log.h"

int srv_check_framing(struct evhttp_request *req, srv_err *e) {
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evkeyval *kv;
    int ncl = 0, te = 0;
    const char *first = NULL;
    int differ = 0;
    for (kv = h->tqh_first; kv; kv = kv->next.tqe_next) {
        if (!strcasecmp(kv->key, "Content-Length")) {
            if (first && strcmp(first, kv->value)) differ = 1;
            if (!first) first = kv->value;
            ncl++;
        } else if (!strcasecmp(kv->key, "Transfer-Encoding")) {
            te = 1;
        }
    }
    if (ncl > 1) {
        srv_errf(e, 400, NULL, "%s Content-Length headers", differ ? "conflicting" : "duplicate");
        return -1;
    }
    if (ncl && te) {
        srv_errf(e, 400, NULL, "Content-Length together with Transfer-Encoding");
        return -1;
    }
    return 0;
}

long long srv_prompt_estimate(const srv_cmd *c) {
    long long t = 0;
    for (int i = 0; i < c->num_prompts; i++)
        t += c->prompts[i].text ? (long long)(strlen(c->prompts[i].text) / 4 + 1)
                                : c->prompts[i].num_ids;
    return t;
}

static void overloaded(srv_ctx *ctx, struct evhttp_request *req, const char *msg) {
    ctx->m.rejected_503++;
    srv_send_errorf(ctx, req, 503, NULL, msg); /* with Retry-After (http_response.c) */
}

int srv_admit(srv_ctx *ctx, struct evhttp_request *req, const srv_cmd *c) {
    int seqs = (c->sp.n > 0 ? c->sp.n : 1) * c->num_prompts;
    /* a request larger than the whole cap still runs alone */
    if (ctx->gen_in_flight >= ctx->max_in_flight ||
        (ctx->seqs_in_flight > 0 && ctx->seqs_in_flight + seqs > ctx->max_seqs_in_flight)) {
        overloaded(ctx, req,
                   "the server is overloaded (sequences in flight at --max-num-seqs + "
                   "--max-waiting); retry later");
        return -1;
    }
    long long cap = ctx->cfg->max_queued_tokens;
    if (cap > 0 && ctx->queued_tokens > 0 && ctx->queued_tokens + srv_prompt_estimate(c) > cap) {
        overloaded(ctx, req,
                   "the server is overloaded (queued prompt tokens at --max-queued-tokens); "
                   "retry later");
        return -1;
    }
    return 0;
}

void srv_request_begin(srv_ctx *ctx, struct evhttp_request *req) {
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
    size_t n = h ? strlen(h) : 0;
    int ok = n > 0 && n <= 128;
    for (size_t i = 0; ok && i < n; i++)
        ok = h[i] > 0x20 && h[i] < 0x7f;
    if (ok) {
        memcpy(ctx->reqid, h, n + 1);
    } else {
        static unsigned long long seq;
        unsigned long long r = (unsigned long long)(srv_now_s() * 1e6) ^ (++seq << 40);
        snprintf(ctx->reqid, sizeof ctx->reqid, "req-%016llx", r * 0x9E3779B97F4A7C15ull);
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Request-Id", ctx->reqid);
}

static const char *method_str(struct evhttp_request *req) {
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    default: return "OTHER";
    }
}

void srv_request_log(srv_ctx *ctx, struct evhttp_request *req, const char *path, double t0) {
    srv_access a = {0};
    a.request_id = ctx->reqid;
    a.method = method_str(req);
    a.path = path;
    a.status = ctx->replied_status;
    a.ttft_s = -1;
    a.e2e_s = srv_now_s() - t0;
    srv_log_access(ctx, &a);
}

void srv_job_log(const job *j) {
    static const char *const reasons[] = {NULL, "stop", "length", "abort", "error"};
    srv_access a = {0};
    a.request_id = j->reqid;
    a.method = "POST";
    a.path = j->path;
    a.status = j->status ? j->status : 499; /* the client went away first */
    a.prompt_tokens = j->prompt_tokens;
    a.generated_tokens = j->completion_tokens;
    a.ttft_s = j->t_first > 0 ? j->t_first - j->t0 : -1;
    a.e2e_s = srv_now_s() - j->t0;
    if (j->is_gen) {
        if (j->timed_out)
            a.finish = "timeout";
        else if (!j->status || j->aborted)
            a.finish = "abort";
        else if (j->num_choices > 0 && (int)j->ch[0].finish > 0 && (int)j->ch[0].finish < 5)
            a.finish = reasons[j->ch[0].finish];
        else if (j->status >= 400)
            a.finish = "error";
    }
    srv_log_access(j->ctx, &a);
}

void srv_job_phases(job *j, double t_end) {
    srv_metrics *m = &j->ctx->m;
    double acc = j->t_accept > 0 ? j->t_accept : j->t0;
    srv_hist_observe(&m->queue, acc - j->t0);
    if (j->t_first > 0) {
        srv_hist_observe(&m->prefill, j->t_first - acc);
        srv_hist_observe(&m->decode,
                         (j->t_last > j->t_first ? j->t_last : j->t_first) - j->t_first);
    }
    srv_hist_observe(&m->inference, t_end - acc);
    srv_hist_observe(&m->req_prompt, j->prompt_tokens);
    srv_hist_observe(&m->req_gen, j->completion_tokens);
}
