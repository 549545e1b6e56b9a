/* http_response.h — HTTP replies and OpenAI response bodies, plain JSON
 * and server-sent events (http_response.c). All run on the libevent
 * thread; a job whose request is gone (j->req NULL) sends nothing. */
#ifndef CINFER_SERVER_HTTP_RESPONSE_H
#define CINFER_SERVER_HTTP_RESPONSE_H

#include <jansson.h>
#include <stddef.h>

#include "server/http_state.h"
#include "server/sse.h"

struct evhttp_request;

/* Plain replies; a status >= 400 counts in ctx->m.http_errors. send_json
 * takes the reference to o. */
void srv_send_body(srv_ctx *ctx, struct evhttp_request *req, int status, const char *ctype,
                   const char *body, size_t len);
void srv_send_json(srv_ctx *ctx, struct evhttp_request *req, int status, json_t *o);
void srv_send_error(srv_ctx *ctx, struct evhttp_request *req, const srv_err *e);
void srv_send_errorf(srv_ctx *ctx, struct evhttp_request *req, int status, const char *param,
                     const char *msg);
/* The whole non-streamed completion / chat.completion body. */
json_t *srv_final_response(const job *j);

/* GET /v1/models (one = 0) or /v1/models/{id} (one = 1; models.c). */
void srv_handle_models(srv_ctx *ctx, struct evhttp_request *req, int one);

/* Server-sent events (start, chat chunk and end in sse.c): one chunk per
 * delta, the usage chunk, an error event (which ends the reply). */
void srv_sse_delta(job *j, int idx, const char *text, size_t len, const srv_lp *lps,
                   const size_t *offsets, int nlps, cinfer_finish_reason finish);
void srv_sse_usage(job *j);
void srv_sse_error(job *j, const srv_err *e);

/* tool_response.c: a chat choice of a request with tools. The message
 * (content + tool_calls) of the whole output; *finish becomes "tool_calls"
 * when it holds calls. */
json_t *srv_tool_message(const job *j, choice *c, const char **finish);
/* Streaming: after c's text grew by an output (c->text holds it all), sends
 * the content that cannot be a call; at the end (c->done) the calls as
 * tool_calls deltas and the finish chunk. */
void srv_tool_stream(job *j, int idx);

#endif
