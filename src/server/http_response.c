/* http_response.c — replies to HTTP requests and the OpenAI response
 * bodies: error and JSON replies, completion / chat.completion objects
 * with logprobs, and their streamed (SSE) chunks. The envelope, the finish
 * strings and the SSE writes themselves are sse.c's. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server/http_response.h"
#include "server/sse.h"

static const char *reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status >= 500 ? "Internal Server Error" : "Error";
    }
}

void srv_send_body(srv_ctx *ctx, struct evhttp_request *req, int status, const char *ctype,
                   const char *body, size_t len) {
    struct evbuffer *b = evbuffer_new();
    if (b && body) evbuffer_add(b, body, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    if (status == 503)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    if (status >= 400) ctx->m.http_errors++;
    ctx->replied_status = status;
    evhttp_send_reply(req, status, reason_phrase(status), b);
    if (b) evbuffer_free(b);
}

void srv_send_json(srv_ctx *ctx, struct evhttp_request *req, int status, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) {
        static const char oom[] =
            "{\"error\":{\"message\":\"out of memory\",\"type\":\"internal_server_error\","
            "\"param\":null,\"code\":500}}";
        srv_send_body(ctx, req, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    srv_send_body(ctx, req, status, "application/json", s, strlen(s));
    free(s);
}

void srv_send_error(srv_ctx *ctx, struct evhttp_request *req, const srv_err *e) {
    char *s = srv_error_json(e);
    srv_send_body(ctx, req, e->status, "application/json", s ? s : "{}", s ? strlen(s) : 2);
    free(s);
}

void srv_send_errorf(srv_ctx *ctx, struct evhttp_request *req, int status, const char *param,
                     const char *msg) {
    srv_err e;
    srv_errf(&e, status, param, "%s", msg);
    srv_send_error(ctx, req, &e);
}

/* ---- response JSON ---- */
static json_t *bytes_json(const char *s) {
    json_t *a = json_array();
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        json_array_append_new(a, json_integer(*p));
    return a;
}

/* Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]} */
static json_t *chat_logprobs(const srv_lp *lps, int n, int k) {
    json_t *content = json_array();
    for (int i = 0; i < n; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "token", srv_json_text(lps[i].tok, strlen(lps[i].tok)));
        json_object_set_new(e, "logprob", json_real(lps[i].lp));
        json_object_set_new(e, "bytes", bytes_json(lps[i].tok));
        json_t *top = json_array();
        for (int t = 0; t < lps[i].num_top && t < k; t++) {
            json_t *x = json_object();
            json_object_set_new(x, "token",
                                srv_json_text(lps[i].top_tok[t], strlen(lps[i].top_tok[t])));
            json_object_set_new(x, "logprob", json_real(lps[i].top_lp[t]));
            json_object_set_new(x, "bytes", bytes_json(lps[i].top_tok[t]));
            json_array_append_new(top, x);
        }
        json_object_set_new(e, "top_logprobs", top);
        json_array_append_new(content, e);
    }
    json_t *o = json_object();
    json_object_set_new(o, "content", content);
    return o;
}

/* Completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} */
static json_t *completion_logprobs(const srv_lp *lps, const size_t *offsets, int n, int k) {
    json_t *toks = json_array(), *lp = json_array(), *top = json_array(), *off = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(toks, srv_json_text(lps[i].tok, strlen(lps[i].tok)));
        if (isnan(lps[i].lp)) { /* the first prompt token (echo) has none */
            json_array_append_new(lp, json_null());
            json_array_append_new(top, json_null());
            json_array_append_new(off, json_integer((json_int_t)offsets[i]));
            continue;
        }
        json_array_append_new(lp, json_real(lps[i].lp));
        json_t *d = json_object();
        for (int t = 0; t < lps[i].num_top && t < k; t++) {
            json_t *key = srv_json_text(lps[i].top_tok[t], strlen(lps[i].top_tok[t]));
            json_object_set_new(d, json_string_value(key), json_real(lps[i].top_lp[t]));
            json_decref(key);
        }
        if (k > 0) {
            json_t *key = srv_json_text(lps[i].tok, strlen(lps[i].tok));
            if (!json_object_get(d, json_string_value(key)))
                json_object_set_new(d, json_string_value(key), json_real(lps[i].lp));
            json_decref(key);
            json_array_append_new(top, d);
        } else {
            json_decref(d);
            json_array_append_new(top, json_null());
        }
        json_array_append_new(off, json_integer((json_int_t)offsets[i]));
    }
    json_t *o = json_object();
    json_object_set_new(o, "tokens", toks);
    json_object_set_new(o, "token_logprobs", lp);
    json_object_set_new(o, "top_logprobs", top);
    json_object_set_new(o, "text_offset", off);
    return o;
}

static json_t *usage_json(const job *j) {
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(j->prompt_tokens));
    json_object_set_new(u, "completion_tokens", json_integer(j->completion_tokens));
    json_object_set_new(u, "total_tokens", json_integer(j->prompt_tokens + j->completion_tokens));
    return u;
}

json_t *srv_final_response(const job *j) {
    int chat = j->ep == EP_CHAT;
    json_t *o = srv_chunk_envelope(j, chat ? "chat.completion" : "text_completion");
    json_t *choices = json_array();
    for (int i = 0; i < j->num_choices; i++) {
        const choice *c = &j->ch[i];
        json_t *x = json_object();
        json_object_set_new(x, "index", json_integer(i));
        const char *finish = srv_finish_str(c->finish);
        if (chat) {
            json_t *msg = j->tool_mode ? srv_tool_message(j, (choice *)c, &finish) : json_object();
            if (!j->tool_mode) {
                json_object_set_new(msg, "role", json_string("assistant"));
                json_object_set_new(msg, "content", srv_json_text(c->text, c->len));
            }
            json_object_set_new(x, "message", msg);
            json_object_set_new(x, "logprobs",
                                j->logprobs >= 0 ? chat_logprobs(c->lps, c->nlps, j->logprobs)
                                                 : json_null());
        } else {
            json_object_set_new(x, "text", srv_json_text(c->text, c->len));
            json_object_set_new(x, "logprobs",
                                j->logprobs >= 0
                                    ? completion_logprobs(c->lps, c->offsets, c->nlps, j->logprobs)
                                    : json_null());
        }
        json_object_set_new(x, "finish_reason", srv_json_str_or_null(finish));
        json_array_append_new(choices, x);
    }
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", usage_json(j));
    return o;
}

/* One streamed chunk for choice `idx`: text delta, logprobs, finish reason. */
void srv_sse_delta(job *j, int idx, const char *text, size_t len, const srv_lp *lps,
                   const size_t *offsets, int nlps, cinfer_finish_reason finish) {
    int chat = j->ep == EP_CHAT;
    json_t *o = srv_chunk_envelope(j, chat ? "chat.completion.chunk" : "text_completion");
    json_t *x = json_object();
    json_object_set_new(x, "index", json_integer(idx));
    if (chat) {
        json_t *d = json_object();
        if (!j->ch[idx].sent_role) {
            json_object_set_new(d, "role", json_string("assistant"));
            j->ch[idx].sent_role = 1;
        }
        if (len || finish == CINFER_FINISH_NONE)
            json_object_set_new(d, "content", srv_json_text(text, len));
        json_object_set_new(x, "delta", d);
        json_object_set_new(x, "logprobs",
                            j->logprobs >= 0 && nlps ? chat_logprobs(lps, nlps, j->logprobs)
                                                     : json_null());
    } else {
        json_object_set_new(x, "text", srv_json_text(text, len));
        json_object_set_new(x, "logprobs",
                            j->logprobs >= 0 && nlps
                                ? completion_logprobs(lps, offsets, nlps, j->logprobs)
                                : json_null());
    }
    json_object_set_new(x, "finish_reason", srv_json_str_or_null(srv_finish_str(finish)));
    json_t *arr = json_array();
    json_array_append_new(arr, x);
    json_object_set_new(o, "choices", arr);
    if (j->include_usage) json_object_set_new(o, "usage", json_null());
    srv_sse_send(j, o);
}

/* The closing chunk of stream_options.include_usage: no choices, the usage. */
void srv_sse_usage(job *j) {
    json_t *o =
        srv_chunk_envelope(j, j->ep == EP_CHAT ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(o, "choices", json_array());
    json_object_set_new(o, "usage", usage_json(j));
    srv_sse_send(j, o);
}

/* An error inside a stream that has started: one error event, then the end. */
void srv_sse_error(job *j, const srv_err *e) {
    srv_ctx *ctx = j->ctx;
    char *s = srv_error_json(e);
    struct evbuffer *b = evbuffer_new();
    if (b && s) {
        evbuffer_add_printf(b, "data: %s\n\n", s);
        evhttp_send_reply_chunk(j->req, b);
    }
    if (b) evbuffer_free(b);
    free(s);
    ctx->m.http_errors++;
    srv_sse_end(j);
}
