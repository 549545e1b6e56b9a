/* sse.c — the bottom of the OpenAI response builders: the envelope every
 * completion object and chunk shares (id, object, created, model), the
 * finish_reason strings, and one server-sent event on a job's stream (a
 * data: line, a chat chunk with a given delta, the closing [DONE]). Both
 * the plain responses (http_response.c) and the tool-call responses
 * (tool_response.c) build on it, and it calls neither. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>

#include "server/sse.h"

const char *srv_finish_str(cinfer_finish_reason f) {
    switch (f) {
    case CINFER_FINISH_STOP: return "stop";
    case CINFER_FINISH_LENGTH: return "length";
    case CINFER_FINISH_ABORT: return "abort";
    case CINFER_FINISH_ERROR: return "error";
    default: return NULL;
    }
}

json_t *srv_json_str_or_null(const char *s) {
    return s ? json_string(s) : json_null();
}

json_t *srv_chunk_envelope(const job *j, const char *object) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(j->idstr));
    json_object_set_new(o, "object", json_string(object));
    json_object_set_new(o, "created", json_integer(j->created));
    json_object_set_new(o, "model", json_string(j->model));
    return o;
}

void srv_sse_send(job *j, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s || !j->req) {
        free(s);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (b) {
        evbuffer_add_printf(b, "data: %s\n\n", s);
        evhttp_send_reply_chunk(j->req, b);
        evbuffer_free(b);
    }
    free(s);
}

void srv_sse_start(job *j) {
    if (j->headers_sent || !j->req) return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(j->req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_send_reply_start(j->req, 200, "OK");
    j->headers_sent = 1;
}

void srv_sse_chat_chunk(job *j, int idx, json_t *delta, const char *finish) {
    json_t *o = srv_chunk_envelope(j, "chat.completion.chunk");
    json_t *x = json_object();
    json_object_set_new(x, "index", json_integer(idx));
    if (!j->ch[idx].sent_role) {
        json_object_set_new(delta, "role", json_string("assistant"));
        j->ch[idx].sent_role = 1;
    }
    json_object_set_new(x, "delta", delta);
    json_object_set_new(x, "logprobs", json_null());
    json_object_set_new(x, "finish_reason", srv_json_str_or_null(finish));
    json_t *arr = json_array();
    json_array_append_new(arr, x);
    json_object_set_new(o, "choices", arr);
    if (j->include_usage) json_object_set_new(o, "usage", json_null());
    srv_sse_send(j, o);
}

void srv_sse_end(job *j) {
    if (!j->req) return;
    struct evbuffer *b = evbuffer_new();
    if (b) {
        evbuffer_add_printf(b, "data: [DONE]\n\n");
        evhttp_send_reply_chunk(j->req, b);
        evbuffer_free(b);
    }
    evhttp_send_reply_end(j->req);
    j->req = NULL;
}
