/* tool_response.c — the answer to a chat request with tools: the calls in
 * a choice's output (the parser's format for tool_choice auto; the JSON the
 * constraint produced for required / named), as message.tool_calls with
 * finish_reason "tool_calls", or streamed: content that cannot be a call
 * goes out as it comes, each call as two tool_calls deltas (index, id,
 * type and function.name with empty arguments, then the arguments; with a
 * named function the arguments stream as they are generated). Output that
 * holds no well-formed call is plain content. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/http_response.h"
#include "server/sse.h"
#include "server/tool_parser.h"

/* required: [{"name", "parameters"}, ...]; named: the arguments object */
static int constrained_calls(const job *j, const char *text, size_t len, srv_tool_result *r) {
    memset(r, 0, sizeof *r);
    json_t *v = json_loadb(text, len, 0, NULL);
    int bad = 0;
    if (j->tool_mode == SRV_TOOLS_NAMED) {
        /* the arguments as generated (what streaming sends), once they parse */
        json_t *call = json_is_object(v) ? json_pack("{s:s, s:s#}", "name", j->tool_name,
                                                     "arguments", text, (int)len)
                                         : NULL;
        bad = !call || srv_tool_add_call(r, call);
        json_decref(call);
    } else {
        size_t i;
        json_t *x;
        bad = !json_is_array(v) || json_array_size(v) == 0;
        json_array_foreach(v, i, x) {
            if (!bad && srv_tool_add_call(r, x)) bad = 1;
        }
    }
    json_decref(v);
    if (bad) { /* cut short (length): the text as it is */
        srv_tool_result_free(r);
        return srv_tool_set_content(r, text, len);
    }
    return 0;
}

static int calls_of(const job *j, const choice *c, srv_tool_result *r) {
    const char *t = c->text ? c->text : "";
    if (j->tool_mode == SRV_TOOLS_AUTO) return srv_tool_parse(j->tool_parser, t, c->len, r);
    return constrained_calls(j, t, c->len, r);
}

/* "call_" + 24 hex digits from the job, the choice and the call */
static void call_id(const job *j, int idx, int k, char *out, size_t size) {
    unsigned long long h = 1469598103934665603ull;
    for (const char *p = j->idstr; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h ^= (unsigned long long)(idx * 131 + k) * 0x9E3779B97F4A7C15ull;
    unsigned long long g = h * 0xBF58476D1CE4E5B9ull ^ (h >> 29);
    snprintf(out, size, "call_%016llx%08llx", h, g & 0xffffffffull);
}

static json_t *call_json(const job *j, int idx, int k, const srv_tool_call *tc, int with_index) {
    char id[48];
    call_id(j, idx, k, id, sizeof id);
    json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function",
                          "name", tc->name, "arguments", tc->arguments);
    if (with_index && o) json_object_set_new(o, "index", json_integer(k));
    return o;
}

json_t *srv_tool_message(const job *j, choice *c, const char **finish) {
    json_t *msg = json_object();
    json_object_set_new(msg, "role", json_string("assistant"));
    srv_tool_result r;
    if (calls_of(j, c, &r)) {
        json_object_set_new(msg, "content", srv_json_text(c->text, c->len));
        return msg;
    }
    int idx = (int)(c - j->ch);
    if (r.num_calls == 0) /* no call: the text as generated */
        json_object_set_new(msg, "content", srv_json_text(c->text, c->len));
    else
        json_object_set_new(msg, "content",
                            r.content ? srv_json_text(r.content, strlen(r.content)) : json_null());
    if (r.num_calls > 0) {
        json_t *arr = json_array();
        for (int k = 0; k < r.num_calls; k++)
            json_array_append_new(arr, call_json(j, idx, k, &r.calls[k], 0));
        json_object_set_new(msg, "tool_calls", arr);
        *finish = "tool_calls";
        c->tool_calls = r.num_calls;
    }
    srv_tool_result_free(&r);
    return msg;
}

static void send_content(job *j, int idx, const char *t, size_t n) {
    if (n) srv_sse_chat_chunk(j, idx, json_pack("{s:o}", "content", srv_json_text(t, n)), NULL);
}

/* tool_choice named: the output is the call's arguments, so they stream as
 * they come: the header delta first, then each piece of text. */
static void stream_named(job *j, int idx) {
    choice *c = &j->ch[idx];
    if (!c->tool_calls) {
        srv_tool_call tc = {j->tool_name, ""};
        json_t *first = call_json(j, idx, 0, &tc, 1);
        srv_sse_chat_chunk(j, idx, json_pack("{s:[o]}", "tool_calls", first), NULL);
        c->tool_calls = 1;
    }
    if (c->len > c->stream_off) {
        json_t *args = json_pack("{s:i, s:{s:o}}", "index", 0, "function", "arguments",
                                 srv_json_text(c->text + c->stream_off, c->len - c->stream_off));
        srv_sse_chat_chunk(j, idx, json_pack("{s:[o]}", "tool_calls", args), NULL);
        c->stream_off = c->len;
    }
    if (c->done)
        srv_sse_chat_chunk(j, idx, json_object(),
                           c->finish == CINFER_FINISH_STOP ? "tool_calls"
                                                           : srv_finish_str(c->finish));
}

void srv_tool_stream(job *j, int idx) {
    choice *c = &j->ch[idx];
    if (j->tool_mode == SRV_TOOLS_NAMED) {
        stream_named(j, idx);
        return;
    }
    const char *t = c->text ? c->text : "";
    if (j->tool_mode == SRV_TOOLS_AUTO) { /* what precedes a (possible) call streams now */
        size_t safe = srv_tool_safe(j->tool_parser, t, c->len);
        if (safe > c->stream_off) {
            send_content(j, idx, t + c->stream_off, safe - c->stream_off);
            c->stream_off = safe;
        }
    }
    if (!c->done) return;
    srv_tool_result r;
    const char *finish = srv_finish_str(c->finish);
    if (!calls_of(j, c, &r) && r.num_calls > 0) {
        for (int k = 0; k < r.num_calls; k++) {
            json_t *first = call_json(j, idx, k, &r.calls[k], 1);
            json_object_set_new(json_object_get(first, "function"), "arguments", json_string(""));
            srv_sse_chat_chunk(j, idx, json_pack("{s:[o]}", "tool_calls", first), NULL);
            json_t *args = json_pack("{s:i, s:{s:s}}", "index", k, "function", "arguments",
                                     r.calls[k].arguments);
            srv_sse_chat_chunk(j, idx, json_pack("{s:[o]}", "tool_calls", args), NULL);
        }
        finish = "tool_calls";
        c->tool_calls = r.num_calls;
    } else if (c->len > c->stream_off) { /* no call: the rest is content */
        send_content(j, idx, t + c->stream_off, c->len - c->stream_off);
    }
    c->stream_off = c->len;
    srv_tool_result_free(&r);
    srv_sse_chat_chunk(j, idx, json_object(), finish);
}
