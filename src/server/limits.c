/* limits.c — connection-level limits of `cinfer serve`, below evhttp.
 *
 * evhttp 2.1 tells nothing about a connection until it has read a whole
 * request, so every accepted connection gets its socket bufferevent from us
 * (evhttp_set_bevcb) with a callback on its input buffer: that sees each
 * request's bytes as they arrive, which gives whole-request deadlines that a
 * trickle cannot extend (libevent's own timeout restarts on every byte):
 * --header-timeout from the request's first byte to the end of its headers,
 * --body-timeout from its first byte to its end. A connection beyond
 * --max-connections gets a 503 with Retry-After written straight to its
 * socket and is closed. evhttp frees connections without telling us, so a
 * connection is known by its socket (descriptor + inode) and is counted
 * until a sweep (each second, or at the cap) finds the socket gone.
 * accept() errors (EMFILE) pause the listener for 100 ms instead of
 * spinning, with at most one log line a second. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "server/limits.h"
#include "server/log.h"

enum { CONN_NEW, CONN_IDLE, CONN_HEADERS, CONN_BODY };

struct srv_conn {
    srv_conn *prev, *next;
    srv_ctx *ctx;
    struct bufferevent *bev; /* evhttp's; touched only while the socket lives */
    evutil_socket_t fd;
    dev_t dev;
    ino_t ino;
    struct event *deadline, *setup;
    double start;  /* first byte of the request being read */
    int state;     /* CONN_* */
    int nl;        /* header end matcher: newlines in a row (CR ignored) */
    char line[40]; /* the start of the header line being read (lower case) */
    int linelen;
    int too_big; /* Content-Length over --max-body-bytes */
    int cut;     /* refused or past its deadline: its requests go unanswered */
};

static void tv_of(double s, struct timeval *tv) {
    if (s < 0) s = 0;
    tv->tv_sec = (time_t)s;
    tv->tv_usec = (suseconds_t)((s - (double)tv->tv_sec) * 1e6);
}

/* Writes a whole small JSON error reply straight to the socket (evhttp is
 * reading a request on it, writing nothing) and half-closes it. */
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

static int conn_alive(const srv_conn *c) {
    struct stat st;
    return c->fd >= 0 && !fstat(c->fd, &st) && st.st_ino == c->ino && st.st_dev == c->dev;
}

static void conn_free(srv_conn *c) {
    srv_ctx *ctx = c->ctx;
    if (c->prev)
        c->prev->next = c->next;
    else
        ctx->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->fd >= 0) ctx->num_conns--;
    if (c->deadline) event_free(c->deadline);
    if (c->setup) event_free(c->setup);
    free(c);
}

/* Forgets the connections whose sockets are gone. */
static void sweep(srv_ctx *ctx) {
    for (srv_conn *c = ctx->conns, *next; c; c = next) {
        next = c->next;
        if (c->fd >= 0 && !conn_alive(c)) conn_free(c);
    }
}

static void conn_arm(srv_conn *c, double after) {
    struct timeval tv;
    tv_of(after, &tv);
    if (c->deadline) evtimer_add(c->deadline, &tv);
}

/* The request (or the refused connection) ran out of time: shut the socket
 * under evhttp, which then reads EOF and frees the connection. */
static void on_deadline(evutil_socket_t fd_, short what, void *arg) {
    srv_conn *c = arg;
    if (!conn_alive(c)) {
        conn_free(c);
        return;
    }
    if (!c->cut) {
        c->cut = 1;
        c->ctx->m.deadline_cut++;
        srv_log(c->ctx, SRV_LOG_DEBUG, "fd %d: request not received within its deadline; closed",
                (int)c->fd);
        raw_reply(c->fd, 408, "Request Timeout", "timeout_error",
                  "the request was not received within its deadline", 0);
    }
    shutdown(c->fd, SHUT_RDWR);
}

/* A header line ended: note a Content-Length over the body limit. */
static void header_line(srv_conn *c) {
    static const char cl[] = "content-length:";
    c->line[c->linelen] = '\0';
    if (c->linelen >= (int)sizeof cl - 1 && !memcmp(c->line, cl, sizeof cl - 1)) {
        const char *v = c->line + sizeof cl - 1;
        while (*v == ' ' || *v == '\t')
            v++;
        char *end;
        unsigned long long n = strtoull(v, &end, 10);
        if (end != v && n > (unsigned long long)c->ctx->cfg->max_body_bytes) c->too_big = 1;
    }
    c->linelen = 0;
}

/* Bytes arrived (or were consumed) on a connection's input. */
static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
    srv_conn *c = arg;
    if (!info->n_added || c->cut || c->state == CONN_NEW) return;
    const srv_config *cfg = c->ctx->cfg;
    if (c->state == CONN_IDLE) {
        c->state = CONN_HEADERS;
        c->start = srv_now_s();
        c->nl = c->linelen = c->too_big = 0;
        if (cfg->header_timeout_s > 0) conn_arm(c, cfg->header_timeout_s);
    }
    if (c->state != CONN_HEADERS) return;
    /* find the blank line that ends the headers in the bytes just added */
    size_t len = evbuffer_get_length(buf), n = info->n_added < len ? info->n_added : len;
    struct evbuffer_ptr at;
    if (evbuffer_ptr_set(buf, &at, len - n, EVBUFFER_PTR_SET)) return;
    struct evbuffer_iovec v[16];
    int nv = evbuffer_peek(buf, (ev_ssize_t)n, &at, v, 16);
    for (int i = 0; i < nv && i < 16 && c->state == CONN_HEADERS; i++) {
        const unsigned char *p = v[i].iov_base;
        for (size_t k = 0; k < v[i].iov_len; k++) {
            if (p[k] == '\n') {
                header_line(c);
                if (++c->nl == 2) {
                    c->state = CONN_BODY;
                    break;
                }
            } else if (p[k] != '\r') {
                c->nl = 0;
                if (c->linelen < (int)sizeof c->line - 1)
                    c->line[c->linelen++] = (char)(p[k] >= 'A' && p[k] <= 'Z' ? p[k] + 32 : p[k]);
            }
        }
    }
    if (c->state == CONN_BODY && c->too_big) {
        /* evhttp would answer with an HTML page: a JSON 413 first, then close */
        c->cut = 1;
        raw_reply(c->fd, 413, "Payload Too Large", "invalid_request_error",
                  "the request body exceeds --max-body-bytes", 0);
        shutdown(c->fd, SHUT_RDWR);
        return;
    }
    if (c->state == CONN_BODY) {
        if (cfg->body_timeout_s > 0)
            conn_arm(c, cfg->body_timeout_s - (srv_now_s() - c->start));
        else if (c->deadline)
            evtimer_del(c->deadline);
    }
}

/* Runs right after evhttp has set the socket up (same loop pass, before
 * any I/O on it): learn the socket, count it, refuse it beyond the cap. */
static void on_setup(evutil_socket_t fd_, short what, void *arg) {
    srv_conn *c = arg;
    srv_ctx *ctx = c->ctx;
    event_free(c->setup);
    c->setup = NULL;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        conn_free(c);
        return;
    }
    for (srv_conn *o = ctx->conns, *next; o;
         o = next) { /* a reused descriptor: its old owner is gone */
        next = o->next;
        if (o != c && o->fd == fd) conn_free(o);
    }
    /* streamed tokens are small writes: without TCP_NODELAY, Nagle holds
     * each behind the client's delayed ACK of the previous one (up to 40 ms
     * per token); a unix socket refuses it, harmlessly */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    c->state = CONN_IDLE;
    ctx->num_conns++;
    int cap = ctx->max_conns;
    if (cap > 0 && ctx->num_conns > cap) sweep(ctx);
    if (cap > 0 && ctx->num_conns > cap) {
        ctx->m.rejected_conns++;
        c->cut = 1;
        raw_reply(fd, 503, "Service Unavailable", "server_overloaded",
                  "too many connections (--max-connections); retry later", 1);
        conn_arm(c, 0.1); /* then closed: the descriptor is wanted */
    }
}

static struct bufferevent *on_new_conn(struct event_base *base, void *arg) {
    srv_ctx *ctx = arg;
    srv_conn *c = calloc(1, sizeof *c);
    struct bufferevent *bev = c ? bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (c) {
        c->ctx = ctx;
        c->fd = -1;
        c->bev = bev;
        c->deadline = evtimer_new(base, on_deadline, c);
        c->setup = event_new(base, -1, 0, on_setup, c);
    }
    if (!bev || !c->deadline || !c->setup ||
        !evbuffer_add_cb(bufferevent_get_input(bev), on_input, c)) {
        if (bev) bufferevent_free(bev);
        if (c && c->deadline) event_free(c->deadline);
        if (c && c->setup) event_free(c->setup);
        free(c);
        return NULL; /* evhttp makes its own: this connection goes unwatched */
    }
    c->next = ctx->conns;
    if (ctx->conns) ctx->conns->prev = c;
    ctx->conns = c;
    event_active(c->setup, EV_TIMEOUT, 0);
    return bev;
}

static srv_conn *conn_of(srv_ctx *ctx, struct evhttp_request *req) {
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *b = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    for (srv_conn *c = b ? ctx->conns : NULL; c; c = c->next)
        if (c->bev == b && c->fd >= 0 && conn_alive(c)) return c;
    return NULL;
}

void srv_limits_request(srv_ctx *ctx, struct evhttp_request *req) {
    srv_conn *c = conn_of(ctx, req);
    if (!c) return;
    c->state = CONN_IDLE;
    if (c->deadline) evtimer_del(c->deadline);
}

int srv_limits_refused(srv_ctx *ctx, struct evhttp_request *req) {
    srv_conn *c = conn_of(ctx, req);
    return c && c->cut;
}

evutil_socket_t srv_conn_fd(struct evhttp_connection *evcon) {
    struct bufferevent *b = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    return b ? bufferevent_getfd(b) : -1;
}

/* ---- the listener ---- */
static void on_relisten(evutil_socket_t fd, short what, void *arg) {
    srv_ctx *ctx = arg;
    if (ctx->listener && !ctx->stopping) evconnlistener_enable(ctx->listener);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg) {
    sweep(arg);
}

/* The listener's callback argument is evhttp's: the context comes from here
 * (one server a process). */
static srv_ctx *listener_ctx;

static void on_accept_error(struct evconnlistener *l, void *arg) {
    srv_ctx *ctx = listener_ctx;
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
    /* the cap stays below the descriptor limit (less 32 for the model's
     * files, the engine and libevent), so the refusal comes before EMFILE */
    ctx->max_conns = ctx->cfg->max_connections;
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY) {
        long room = (long)rl.rlim_cur - 32;
        if (room < 1) room = 1;
        if (ctx->max_conns <= 0 || ctx->max_conns > room) {
            srv_log(ctx, SRV_LOG_WARN,
                    "--max-connections %d lowered to %ld (open file limit %llu less 32)",
                    ctx->max_conns, room, (unsigned long long)rl.rlim_cur);
            ctx->max_conns = (int)room;
        }
    }
    evhttp_set_bevcb(ctx->http, on_new_conn, ctx);
    ctx->listener = evhttp_bound_socket_get_listener(bs);
    ctx->relisten = evtimer_new(ctx->base, on_relisten, ctx);
    ctx->sweeper = event_new(ctx->base, -1, EV_PERSIST, on_sweep, ctx);
    struct timeval one = {1, 0};
    if (!ctx->listener || !ctx->relisten || !ctx->sweeper || event_add(ctx->sweeper, &one))
        return -1;
    listener_ctx = ctx;
    evconnlistener_set_error_cb(ctx->listener, on_accept_error);
    return 0;
}

void srv_limits_stop_accepting(srv_ctx *ctx) {
    if (ctx->listener) evconnlistener_disable(ctx->listener);
    if (ctx->relisten) evtimer_del(ctx->relisten);
}

/* After evhttp_free (every connection closed). */
void srv_limits_free(srv_ctx *ctx) {
    if (ctx->relisten) event_free(ctx->relisten);
    if (ctx->sweeper) event_free(ctx->sweeper);
    ctx->relisten = ctx->sweeper = NULL;
    while (ctx->conns)
        conn_free(ctx->conns);
}

size_t srv_limits_pending_output(srv_ctx *ctx) {
    size_t n = 0;
    for (srv_conn *c = ctx->conns; c; c = c->next)
        if (c->fd >= 0 && conn_alive(c)) n += evbuffer_get_length(bufferevent_get_output(c->bev));
    return n;
}
