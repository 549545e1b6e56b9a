/* drain.c — graceful shutdown of `cinfer serve` on SIGINT/SIGTERM.
 *
 * The listener stops accepting and every new request (on a kept-alive
 * connection) gets 503, /health included, so a load balancer moves away.
 * Requests in flight run on for up to --shutdown-timeout seconds; then the
 * engine stops (aborting the rest and returning their KV blocks), each
 * remaining stream gets a final chunk with finish_reason "abort" per open
 * choice (+ usage when asked) and data: [DONE], and each remaining
 * non-streaming request a 503. The loop exits once the replies are flushed
 * (at most 2 s more). */
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdlib.h>

#include "server/http_response.h"
#include "server/limits.h"
#include "server/log.h"

/* Polls until every connection's output is written (or 2 s), then exits. */
static void on_flush(evutil_socket_t fd, short what, void *arg) {
    srv_ctx *ctx = arg;
    size_t pending = srv_limits_pending_output(ctx);
    if (pending && ++ctx->flush_polls < 100) {
        struct timeval tv = {0, 20000};
        evtimer_add(ctx->flush_timer, &tv);
        return;
    }
    srv_log(ctx, SRV_LOG_INFO, "drained in %.2f s; exiting", srv_now_s() - ctx->drain_t0);
    event_base_loopexit(ctx->base, NULL);
}

static void finish_all(srv_ctx *ctx) {
    srv_pretok_stop(ctx->pretok);
    ctx->pretok = NULL;
    if (ctx->eng) {
        srv_engine_stop(ctx->eng); /* aborts everything: all KV blocks return */
        ctx->eng = NULL;
    }
    int streams = 0, others = 0;
    while (ctx->jobs) {
        job *j = ctx->jobs;
        if (j->req && j->stream && j->headers_sent) {
            for (int i = 0; i < j->num_choices; i++)
                if (!j->ch[i].done) {
                    j->ch[i].done = 1;
                    j->ch[i].finish = CINFER_FINISH_ABORT;
                    ctx->m.finished[CINFER_FINISH_ABORT]++;
                    srv_sse_delta(j, i, NULL, 0, NULL, NULL, 0, CINFER_FINISH_ABORT);
                }
            if (j->include_usage) srv_sse_usage(j);
            j->status = 200;
            srv_sse_end(j);
            streams++;
        } else if (j->req) {
            srv_send_errorf(ctx, j->req, 503, NULL, "the server is shutting down");
            j->status = 503;
            j->req = NULL;
            others++;
        }
        j->finished = 1;
        job_free(j);
    }
    if (streams || others)
        srv_log(ctx, SRV_LOG_WARN,
                "shutdown timeout: ended %d streams with finish_reason \"abort\", answered %d "
                "requests with 503",
                streams, others);
    if (!ctx->flush_timer) ctx->flush_timer = evtimer_new(ctx->base, on_flush, ctx);
    if (ctx->flush_timer) {
        struct timeval tv = {0, 0};
        evtimer_add(ctx->flush_timer, &tv);
    } else {
        event_base_loopexit(ctx->base, NULL);
    }
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg) {
    finish_all(arg);
}

void srv_drain_begin(srv_ctx *ctx, int sig) {
    if (ctx->stopping) {
        if (ctx->eng) finish_all(ctx); /* a second signal: stop waiting */
        return;
    }
    ctx->stopping = 1;
    ctx->drain_t0 = srv_now_s();
    srv_limits_stop_accepting(ctx);
    int n = 0;
    for (job *j = ctx->jobs; j; j = j->next)
        n++;
    srv_log(ctx, SRV_LOG_INFO, "signal %d: draining %d requests (up to %g s)", sig, n,
            ctx->cfg->shutdown_timeout_s);
    if (!ctx->jobs || ctx->cfg->shutdown_timeout_s <= 0) {
        finish_all(ctx);
        return;
    }
    ctx->drain_timer = evtimer_new(ctx->base, on_drain_timeout, ctx);
    double s = ctx->cfg->shutdown_timeout_s;
    struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
    if (!ctx->drain_timer || evtimer_add(ctx->drain_timer, &tv)) finish_all(ctx);
}

/* A job went away: the drain ends with the last one. */
void srv_drain_check(srv_ctx *ctx) {
    if (!ctx->stopping || ctx->jobs || !ctx->eng) return;
    if (ctx->drain_timer) evtimer_del(ctx->drain_timer);
    finish_all(ctx);
}

void srv_drain_free(srv_ctx *ctx) {
    if (ctx->drain_timer) event_free(ctx->drain_timer);
    if (ctx->flush_timer) event_free(ctx->flush_timer);
    ctx->drain_timer = ctx->flush_timer = NULL;
}
