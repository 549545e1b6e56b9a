/* limits.c — connection-level limits of `cinfer serve`, below evhttp.
 *
 * Every accepted connection gets a filter bufferevent over its socket
 * bufferevent (evhttp_set_bevcb), which gives us what evhttp 2.1 does not:
 * a count of open connections (the filter's free callback), the bytes of
 * each request as they arrive (whole-request deadlines that a trickle cannot
 * extend: libevent's own timeout restarts on every byte) and the socket to
 * refuse a connection beyond --max-connections with a 503. accept() errors
 * (EMFILE) pause the listener for a moment instead of spinning, and their
 * log line is rate-limited. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "server/limits.h"
#include "server/log.h"

enum { CONN_IDLE, CONN_HEADERS, CONN_BODY };

struct srv_conn {
    srv_conn *prev, *next;
    srv_ctx *ctx;
    struct bufferevent *bev, *under;
    struct event *deadline, *refuse;
    double start; /* first byte of the request being read */
    int state;    /* CONN_* */
    int last, nl; /* header end matcher: last byte, newlines in a row */
    int cut;      /* the deadline or the cap closed it */
};

static void tv_of(double s, struct timeval *tv) {
    if (s < 0) s = 0;
    tv->tv_sec = (time_t)s;
    tv->tv_usec = (suseconds_t)((s - (double)tv->tv_sec) * 1e6);
}

/* Writes a whole small HTTP reply straight to the socket (nothing else is
 * being written on it: no request was handed to evhttp yet) and half-closes. */
static void raw_reply(evutil_socket_t fd, int status, const char *reason, const char *type,
                      const char *msg, int retry_after) {
    char body[384], head[384];
    int bl = snprintf(body, sizeof body,
                      "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":%d}}",
                      msg, type, status);
    char ra[40] = "";
    if (retry_after > 0) snprintf(ra, sizeof ra, "Retry-After: %d\r\n", retry_after);
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: "
                      "%d\r\n%sConnection: close\r\n\r\n",
                      status, reason, bl, ra);
    if (send(fd, head, (size_t)hl, MSG_NOSIGNAL | MSG_DONTWAIT) == hl)
        (void)!send(fd, body, (size_t)bl, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
}

static void conn_arm(srv_conn *c, double after) {
    struct timeval tv;
    tv_of(after, &tv);
    if (c->deadline) evtimer_add(c->deadline, &tv);
}

/* The request (or the refused connection) ran out of time: close the socket
 * under evhttp, which then sees EOF and frees the connection. */
static void on_deadline(evutil_socket_t fd_, short what, void *arg) {
    srv_conn *c = arg;
    evutil_socket_t fd = bufferevent_getfd(c->under);
    if (fd < 0) return;
    if (!c->cut) {
        c->cut = 1;
        c->ctx->m.deadline_cut++;
        srv_log(c->ctx, SRV_LOG_DEBUG, "connection cut: request not read within its deadline");
        raw_reply(fd, 408, "Request Timeout", "timeout_error",
                  "the request was not received within its deadline", 0);
    }
    shutdown(fd, SHUT_RDWR);
}

static void on_refuse(evutil_socket_t fd_, short what, void *arg) {
    srv_conn *c = arg;
    evutil_socket_t fd = bufferevent_getfd(c->under);
    if (fd < 0) return;
    c->cut = 1;
    raw_reply(fd, 503, "Service Unavailable", "server_overloaded",
              "too many connections; retry later", 1);
    conn_arm(c, 1.0); /* a client that does not hang up is cut after 1 s */
}

static enum bufferevent_filter_result in_filter(struct evbuffer *src, struct evbuffer *dst,
                                                ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                void *arg) {
    srv_conn *c = arg;
    const srv_config *cfg = c->ctx->cfg;
    size_t n = evbuffer_get_length(src);
    if (limit >= 0 && (size_t)limit < n) n = (size_t)limit;
    if (n && c->state == CONN_IDLE && !c->cut) {
        c->state = CONN_HEADERS;
        c->start = srv_now_s();
        c->last = c->nl = 0;
        if (cfg->header_timeout_s > 0) conn_arm(c, cfg->header_timeout_s);
    }
    if (c->state == CONN_HEADERS) {
        /* find the blank line that ends the headers (CRLF CRLF or LF LF) */
        struct evbuffer_iovec v[8];
        int nv = evbuffer_peek(src, (ev_ssize_t)n, NULL, v, 8);
        size_t seen = 0;
        for (int i = 0; i < nv && i < 8 && c->state == CONN_HEADERS && seen < n; i++) {
            const unsigned char *p = v[i].iov_base;
            for (size_t k = 0; k < v[i].iov_len && seen < n; k++, seen++) {
                if (p[k] == '\n') {
                    if (++c->nl == 2) {
                        c->state = CONN_BODY;
                        break;
                    }
                } else if (p[k] != '\r') {
                    c->nl = 0;
                }
            }
        }
        if (c->state == CONN_BODY && cfg->body_timeout_s > 0)
            conn_arm(c, cfg->body_timeout_s - (srv_now_s() - c->start));
        else if (c->state == CONN_BODY && c->deadline)
            evtimer_del(c->deadline);
    }
    evbuffer_remove_buffer(src, dst, n);
    return BEV_OK;
}

static void conn_free(void *arg) {
    srv_conn *c = arg;
    srv_ctx *ctx = c->ctx;
    if (c->prev)
        c->prev->next = c->next;
    else
        ctx->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    ctx->num_conns--;
    if (c->deadline) event_free(c->deadline);
    if (c->refuse) event_free(c->refuse);
    free(c);
}

static struct bufferevent *on_new_conn(struct event_base *base, void *arg) {
    srv_ctx *ctx = arg;
    srv_conn *c = calloc(1, sizeof *c);
    struct bufferevent *under = c ? bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE) : NULL;
    struct bufferevent *f =
        under ? bufferevent_filter_new(under, in_filter, NULL, BEV_OPT_CLOSE_ON_FREE, conn_free, c)
              : NULL;
    if (!f) {
        if (under) bufferevent_free(under);
        free(c);
        return NULL; /* evhttp makes a plain one */
    }
    c->ctx = ctx;
    c->bev = f;
    c->under = under;
    c->deadline = evtimer_new(base, on_deadline, c);
    c->next = ctx->conns;
    if (ctx->conns) ctx->conns->prev = c;
    ctx->conns = c;
    ctx->num_conns++;
    if (ctx->cfg->max_connections > 0 && ctx->num_conns > ctx->cfg->max_connections) {
        /* evhttp sets the socket after this returns: refuse from the loop */
        ctx->m.rejected_conns++;
        c->refuse = event_new(base, -1, 0, on_refuse, c);
        if (c->refuse) event_active(c->refuse, EV_TIMEOUT, 0);
    }
    return f;
}

static srv_conn *conn_of(srv_ctx *ctx, struct evhttp_connection *evcon) {
    struct bufferevent *b = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    for (srv_conn *c = b ? ctx->conns : NULL; c; c = c->next)
        if (c->bev == b) return c;
    return NULL;
}

void srv_limits_request(srv_ctx *ctx, struct evhttp_request *req) {
    srv_conn *c = conn_of(ctx, evhttp_request_get_connection(req));
    if (!c) return;
    c->state = CONN_IDLE;
    if (c->deadline) evtimer_del(c->deadline);
}

int srv_limits_refused(srv_ctx *ctx, struct evhttp_request *req) {
    srv_conn *c = conn_of(ctx, evhttp_request_get_connection(req));
    return c && c->cut;
}

evutil_socket_t srv_conn_fd(struct evhttp_connection *evcon) {
    struct bufferevent *b = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    if (!b) return -1;
    struct bufferevent *u = bufferevent_get_underlying(b);
    return bufferevent_getfd(u ? u : b);
}

/* ---- the listener ---- */
static void on_relisten(evutil_socket_t fd, short what, void *arg) {
    srv_ctx *ctx = arg;
    if (ctx->listener && !ctx->stopping) evconnlistener_enable(ctx->listener);
}

static void on_accept_error(struct evconnlistener *l, void *arg) {
    srv_ctx *ctx = arg;
    int err = EVUTIL_SOCKET_ERROR();
    double t = srv_now_s();
    ctx->accept_errors++;
    if (t - ctx->accept_err_logged >= 1.0) {
        srv_log(ctx, SRV_LOG_WARN, "accept: %s (%llu errors so far); pausing the listener 100 ms",
                strerror(err), (unsigned long long)ctx->accept_errors);
        ctx->accept_err_logged = t;
    }
    /* out of descriptors (or memory): the pending connection stays in the
     * backlog and would make accept() fail again at once, so wait */
    evconnlistener_disable(l);
    struct timeval tv = {0, 100000};
    if (ctx->relisten) evtimer_add(ctx->relisten, &tv);
}

int srv_limits_install(srv_ctx *ctx, struct evhttp_bound_socket *bs) {
    (void)on_new_conn; /* the filter stalls replies (see the note above on_new_conn) */
    ctx->listener = evhttp_bound_socket_get_listener(bs);
    ctx->relisten = evtimer_new(ctx->base, on_relisten, ctx);
    if (!ctx->listener || !ctx->relisten) return -1;
    evconnlistener_set_error_cb(ctx->listener, on_accept_error);
    return 0;
}

void srv_limits_stop_accepting(srv_ctx *ctx) {
    if (ctx->listener) evconnlistener_disable(ctx->listener);
    if (ctx->relisten) evtimer_del(ctx->relisten);
}

void srv_limits_free(srv_ctx *ctx) {
    if (ctx->relisten) event_free(ctx->relisten);
    ctx->relisten = NULL;
}

size_t srv_limits_pending_output(srv_ctx *ctx) {
    size_t n = 0;
    for (srv_conn *c = ctx->conns; c; c = c->next)
        n += evbuffer_get_length(bufferevent_get_output(c->bev)) +
             evbuffer_get_length(bufferevent_get_output(c->under));
    return n;
}
