/* limits.h — connection limits below evhttp (limits.c): --max-connections,
 * whole-request header / body deadlines, accept() errors. */
#ifndef CINFER_SERVER_LIMITS_H
#define CINFER_SERVER_LIMITS_H

#include <event2/util.h>
#include <stddef.h>

#include "server/http_state.h"

struct evhttp_bound_socket;
struct evhttp_request;
struct evhttp_connection;

int srv_limits_install(srv_ctx *ctx, struct evhttp_bound_socket *bs);
/* The request was read whole: its connection's deadline ends. */
void srv_limits_request(srv_ctx *ctx, struct evhttp_request *req);
/* The request came on a connection refused or cut (answer nothing). */
int srv_limits_refused(srv_ctx *ctx, struct evhttp_request *req);
/* The socket of a connection (below the filter). */
evutil_socket_t srv_conn_fd(struct evhttp_connection *evcon);
void srv_limits_stop_accepting(srv_ctx *ctx);
/* Bytes not yet written to any connection. */
size_t srv_limits_pending_output(srv_ctx *ctx);
void srv_limits_free(srv_ctx *ctx);

#endif
