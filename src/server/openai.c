/* openai.c — OpenAI request parsing: JSON body -> GENERATE command, with
 * 400s that name the offending field; error bodies; UTF-8-safe strings;
 * chat prompts. Fields parsed elsewhere (refused ones, logit_bias):
 * openai_fields.c; srv_errf, which they all use to fill a 400: srv_err.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

char *srv_error_json(const srv_err *e) {
    json_t *o = json_object(), *in = json_object();
    json_object_set_new(in, "message", srv_json_text(e->message, strlen(e->message)));
    json_object_set_new(in, "type", json_string(e->type ? e->type : "invalid_request_error"));
    json_object_set_new(in, "param", e->param ? json_string(e->param) : json_null());
    json_object_set_new(in, "code", json_integer(e->status));
    json_object_set_new(o, "error", in);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* Length of the valid UTF-8 sequence at s (0 = invalid). */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

json_t *srv_json_text(const char *s, size_t n) {
    if (!s) return json_string("");
    const unsigned char *u = (const unsigned char *)s;
    size_t bad = 0;
    for (size_t i = 0; i < n;) {
        size_t l = u[i] ? utf8_len(u + i, n - i) : 0;
        if (!l) {
            bad++;
            i++;
        } else {
            i += l;
        }
    }
    if (!bad) return json_stringn(s, n);
    char *t = malloc(n + 2 * bad + 1);
    if (!t) return json_string("");
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t l = u[i] ? utf8_len(u + i, n - i) : 0;
        if (!l) {
            memcpy(t + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(t + o, s + i, l);
            o += l;
            i += l;
        }
    }
    json_t *j = json_stringn(t, o);
    free(t);
    return j;
}

/* ---- typed field access: 0 = absent or null, 1 = set, -1 = wrong type ---- */
static int opt_num(json_t *b, const char *k, double *out, srv_err *e) {
    json_t *v = json_object_get(b, k);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return srv_errf(e, 400, k, "'%s' must be a number", k);
    *out = json_number_value(v);
    if (!isfinite(*out)) return srv_errf(e, 400, k, "'%s' must be finite", k);
    return 1;
}

static int opt_int(json_t *b, const char *k, long long *out, srv_err *e) {
    json_t *v = json_object_get(b, k);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return srv_errf(e, 400, k, "'%s' must be an integer", k);
    *out = json_integer_value(v);
    return 1;
}

static int opt_bool(json_t *b, const char *k, int *out, srv_err *e) {
    json_t *v = json_object_get(b, k);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return srv_errf(e, 400, k, "'%s' must be a boolean", k);
    *out = json_is_true(v);
    return 1;
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((x) < 0) goto fail;                                                                    \
    } while (0)

static int parse_ids(json_t *arr, const char *param, srv_prompt *p, srv_err *e) {
    size_t n = json_array_size(arr);
    p->ids = malloc(sizeof *p->ids * (n ? n : 1));
    if (!p->ids) return srv_errf(e, 500, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v))
            return srv_errf(e, 400, param, "'%s' token ids must be integers", param);
        json_int_t x = json_integer_value(v);
        if (x < 0 || x > INT32_MAX)
            return srv_errf(e, 400, param, "token id %lld is out of range", (long long)x);
        p->ids[i] = (int32_t)x;
    }
    p->num_ids = (int)n;
    if (n == 0) return srv_errf(e, 400, param, "'%s' is empty", param);
    return 0;
}

static int parse_prompt(json_t *v, srv_cmd *c, srv_err *e) {
    if (!v || json_is_null(v)) return srv_errf(e, 400, "prompt", "'prompt' is required");
    if (json_is_string(v)) {
        c->prompts = calloc(1, sizeof *c->prompts);
        if (!c->prompts) return srv_errf(e, 500, NULL, "out of memory");
        c->num_prompts = 1;
        if (json_string_length(v) == 0) return srv_errf(e, 400, "prompt", "'prompt' is empty");
        if (strlen(json_string_value(v)) != json_string_length(v))
            return srv_errf(e, 400, "prompt", "'prompt' contains a NUL character");
        c->prompts[0].text = strdup(json_string_value(v));
        return c->prompts[0].text ? 0 : srv_errf(e, 500, NULL, "out of memory");
    }
    if (!json_is_array(v) || json_array_size(v) == 0)
        return srv_errf(e, 400, "prompt",
                        "'prompt' must be a string, a list of strings or a list of token ids");
    json_t *first = json_array_get(v, 0);
    if (json_is_integer(first)) {
        c->prompts = calloc(1, sizeof *c->prompts);
        if (!c->prompts) return srv_errf(e, 500, NULL, "out of memory");
        c->num_prompts = 1;
        return parse_ids(v, "prompt", &c->prompts[0], e);
    }
    size_t n = json_array_size(v);
    if (n > 64) return srv_errf(e, 400, "prompt", "at most 64 prompts per request");
    c->prompts = calloc(n, sizeof *c->prompts);
    if (!c->prompts) return srv_errf(e, 500, NULL, "out of memory");
    c->num_prompts = (int)n;
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(v, i);
        if (json_is_string(p)) {
            if (json_string_length(p) == 0)
                return srv_errf(e, 400, "prompt", "'prompt' %zu is empty", i);
            if (strlen(json_string_value(p)) != json_string_length(p))
                return srv_errf(e, 400, "prompt", "'prompt' contains a NUL character");
            c->prompts[i].text = strdup(json_string_value(p));
            if (!c->prompts[i].text) return srv_errf(e, 500, NULL, "out of memory");
        } else if (json_is_array(p)) {
            if (parse_ids(p, "prompt", &c->prompts[i], e)) return -1;
        } else {
            return srv_errf(e, 400, "prompt",
                            "'prompt' must be a string, a list of strings or a list of token ids");
        }
    }
    return 0;
}

static int parse_stop(json_t *body, srv_cmd *c, srv_err *e) {
    json_t *v = json_object_get(body, "stop");
    if (v && !json_is_null(v)) {
        if (json_is_string(v)) {
            c->stop = calloc(1, sizeof *c->stop);
            if (!c->stop) return srv_errf(e, 500, NULL, "out of memory");
            c->stop[0] = strdup(json_string_value(v));
            c->num_stop = 1;
        } else if (json_is_array(v)) {
            size_t n = json_array_size(v);
            if (n > 16) return srv_errf(e, 400, "stop", "at most 16 stop strings");
            c->stop = calloc(n ? n : 1, sizeof *c->stop);
            if (!c->stop) return srv_errf(e, 500, NULL, "out of memory");
            for (size_t i = 0; i < n; i++) {
                json_t *s = json_array_get(v, i);
                if (!json_is_string(s))
                    return srv_errf(e, 400, "stop", "'stop' must be a string or a list of strings");
                c->stop[c->num_stop++] = strdup(json_string_value(s));
            }
        } else {
            return srv_errf(e, 400, "stop", "'stop' must be a string or a list of strings");
        }
        for (int i = 0; i < c->num_stop; i++) {
            if (!c->stop[i]) return srv_errf(e, 500, NULL, "out of memory");
            if (!c->stop[i][0]) return srv_errf(e, 400, "stop", "stop strings must not be empty");
        }
    }
    v = json_object_get(body, "stop_token_ids");
    if (v && !json_is_null(v)) {
        if (!json_is_array(v))
            return srv_errf(e, 400, "stop_token_ids",
                            "'stop_token_ids' must be a list of integers");
        srv_prompt tmp = {0};
        if (json_array_size(v) > 0) {
            if (parse_ids(v, "stop_token_ids", &tmp, e)) {
                free(tmp.ids);
                return -1;
            }
            c->stop_ids = tmp.ids;
            c->num_stop_ids = tmp.num_ids;
        }
    }
    c->sp.stop = (const char *const *)c->stop;
    c->sp.num_stop = c->num_stop;
    c->sp.stop_token_ids = c->stop_ids;
    c->sp.num_stop_token_ids = c->num_stop_ids;
    return 0;
}

/* Content of a chat message: a string, or a list of {"type": "text", "text"} parts. */
static int message_text(json_t *content, const char **out, char **owned, srv_err *e) {
    *owned = NULL;
    if (!content || json_is_null(content)) {
        *out = "";
        return 0;
    }
    if (json_is_string(content)) {
        *out = json_string_value(content);
        return 0;
    }
    if (!json_is_array(content))
        return srv_errf(e, 400, "messages",
                        "message 'content' must be a string or a list of parts");
    size_t total = 0, i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *t = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(t))
            return srv_errf(e, 400, "messages", "only text content parts are supported");
        total += json_string_length(t);
    }
    char *buf = malloc(total + 1);
    if (!buf) return srv_errf(e, 500, NULL, "out of memory");
    size_t o = 0;
    json_array_foreach(content, i, part) {
        json_t *t = json_object_get(part, "text");
        memcpy(buf + o, json_string_value(t), json_string_length(t));
        o += json_string_length(t);
    }
    buf[o] = '\0';
    *out = *owned = buf;
    return 0;
}

/* An assistant message's tool_calls carry arguments as a JSON string (the
 * OpenAI wire form); templates expect the object (`arguments | tojson`,
 * `arguments.items()`), as vLLM passes it: parsed where it is valid JSON. */
static void args_to_objects(json_t *calls) {
    size_t i;
    json_t *tc;
    json_array_foreach(calls, i, tc) {
        json_t *fn = json_object_get(tc, "function");
        json_t *a = json_object_get(fn, "arguments");
        if (!json_is_string(a)) continue;
        json_t *o = json_loads(json_string_value(a), 0, NULL);
        if (json_is_object(o))
            json_object_set_new(fn, "arguments", o);
        else
            json_decref(o);
    }
}

/* Renders the chat prompt with the model's Jinja template: messages (text
 * parts joined into strings), tools, add_generation_prompt (default true),
 * chat_template_kwargs. */
int srv_render_chat(const srv_chat *chat, json_t *body, char **out, srv_err *e) {
    *out = NULL;
    json_t *messages = json_object_get(body, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return srv_errf(e, 400, "messages", "'messages' must be a non-empty list");
    if (!chat || !chat->tpl)
        return srv_errf(e, 400, "messages", "this model has no chat template; use /v1/completions");
    json_t *norm = json_array(), *req = json_object();
    size_t i;
    json_t *m;
    int rc = 0;
    json_array_foreach(messages, i, m) {
        json_t *role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)) {
            rc = srv_errf(e, 400, "messages", "each message needs a string 'role'");
            break;
        }
        const char *text = "";
        char *owned;
        if (message_text(json_object_get(m, "content"), &text, &owned, e)) {
            rc = -1;
            break;
        }
        json_t *c = json_deep_copy(m);
        json_object_set_new(c, "content", json_string(text));
        args_to_objects(json_object_get(c, "tool_calls"));
        free(owned);
        json_array_append_new(norm, c);
    }
    if (rc) {
        json_decref(norm);
        json_decref(req);
        return rc;
    }
    json_object_set_new(req, "messages", norm);
    json_t *agp = json_object_get(body, "add_generation_prompt");
    if (agp && !json_is_boolean(agp)) {
        json_decref(req);
        return srv_errf(e, 400, "add_generation_prompt",
                        "'add_generation_prompt' must be a boolean");
    }
    json_object_set_new(req, "add_generation_prompt", agp ? json_incref(agp) : json_true());
    json_t *tools = json_object_get(body, "tools");
    if (tools && !json_is_null(tools)) json_object_set(req, "tools", tools);
    json_t *kw = json_object_get(body, "chat_template_kwargs");
    if (json_is_object(kw)) json_object_set(req, "template_kwargs", kw);
    json_t *ctx = NULL;
    ci_status s = ci_chat_build_context(&chat->cfg, req, &ctx);
    json_decref(req);
    if (!s.code) {
        size_t len;
        s = ci_chat_template_render(chat->tpl, ctx, out, &len);
        json_decref(ctx);
    }
    if (s.code) return srv_errf(e, 400, "messages", "chat template: %s", s.msg);
    return 0;
}

int srv_parse_generate(json_t *body, int chat, const srv_chat *tmpl, srv_gen_req *out, srv_err *e) {
    memset(out, 0, sizeof *out);
    out->chat = chat;
    out->logprobs = -1;
    if (!json_is_object(body))
        return srv_errf(e, 400, NULL, "the request body must be a JSON object");
    srv_cmd *c = calloc(1, sizeof *c);
    if (!c) return srv_errf(e, 500, NULL, "out of memory");
    out->cmd = c;
    c->kind = SRV_CMD_GENERATE;
    c->sp = cinfer_sampling_params_default();
    c->sp.max_tokens = 16; /* OpenAI's default for completions; chat fills the context */
    c->max_tokens_auto = chat;

    json_t *model = json_object_get(body, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) return srv_errf(e, 400, "model", "'model' must be a string");
        out->model = json_string_value(model);
    }
    if (chat) {
        char *text;
        if (srv_render_chat(tmpl, body, &text, e)) return -1;
        c->prompts = calloc(1, sizeof *c->prompts);
        if (!c->prompts) {
            free(text);
            return srv_errf(e, 500, NULL, "out of memory");
        }
        c->num_prompts = 1;
        c->prompts[0].text = text;
    } else {
        TRY(parse_prompt(json_object_get(body, "prompt"), c, e));
    }

    double d = 0;
    long long i = 0;
    int b = 0, r;
    TRY(r = opt_int(body, "max_tokens", &i, e));
    if (r) {
        if (i < 1 || i > 1000000)
            return srv_errf(e, 400, "max_tokens", "'max_tokens' must be in [1, 1000000]");
        c->sp.max_tokens = (int)i;
        c->max_tokens_auto = 0;
    }
    TRY(r = opt_int(body, "max_completion_tokens", &i, e));
    if (r) {
        if (i < 1 || i > 1000000)
            return srv_errf(e, 400, "max_completion_tokens",
                            "'max_completion_tokens' must be in [1, 1000000]");
        c->sp.max_tokens = (int)i;
        c->max_tokens_auto = 0;
    }
    TRY(r = opt_int(body, "min_tokens", &i, e));
    if (r) {
        if (i < 0 || (!c->max_tokens_auto && i > c->sp.max_tokens))
            return srv_errf(e, 400, "min_tokens", "'min_tokens' must be in [0, max_tokens]");
        c->sp.min_tokens = (int)i;
    }
    TRY(r = opt_num(body, "temperature", &d, e));
    if (r) {
        if (d < 0 || d > 100)
            return srv_errf(e, 400, "temperature", "'temperature' must be in [0, 100]");
        c->sp.temperature = (float)d;
    }
    TRY(r = opt_num(body, "top_p", &d, e));
    if (r) {
        if (!(d > 0 && d <= 1)) return srv_errf(e, 400, "top_p", "'top_p' must be in (0, 1]");
        c->sp.top_p = (float)d;
    }
    TRY(r = opt_int(body, "top_k", &i, e));
    if (r) {
        if (i < -1 || i > 1000000)
            return srv_errf(e, 400, "top_k", "'top_k' must be -1, 0 or positive");
        c->sp.top_k = i < 0 ? 0 : (int)i;
    }
    TRY(r = opt_num(body, "min_p", &d, e));
    if (r) {
        if (!(d >= 0 && d <= 1)) return srv_errf(e, 400, "min_p", "'min_p' must be in [0, 1]");
        c->sp.min_p = (float)d;
    }
    TRY(r = opt_num(body, "presence_penalty", &d, e));
    if (r) {
        if (!(d >= -2 && d <= 2))
            return srv_errf(e, 400, "presence_penalty", "'presence_penalty' must be in [-2, 2]");
        c->sp.presence_penalty = (float)d;
    }
    TRY(r = opt_num(body, "frequency_penalty", &d, e));
    if (r) {
        if (!(d >= -2 && d <= 2))
            return srv_errf(e, 400, "frequency_penalty", "'frequency_penalty' must be in [-2, 2]");
        c->sp.frequency_penalty = (float)d;
    }
    TRY(r = opt_num(body, "repetition_penalty", &d, e));
    if (r) {
        if (!(d > 0 && d <= 10))
            return srv_errf(e, 400, "repetition_penalty",
                            "'repetition_penalty' must be in (0, 10]");
        c->sp.repetition_penalty = (float)d;
    }
    TRY(r = opt_int(body, "n", &i, e));
    if (r) {
        if (i < 1 || i > 16) return srv_errf(e, 400, "n", "'n' must be in [1, 16]");
        c->sp.n = (int)i;
    }
    TRY(r = opt_int(body, "seed", &i, e));
    if (r) {
        if (i < 0) return srv_errf(e, 400, "seed", "'seed' must be non-negative");
        c->sp.seed = i;
    }
    TRY(r = opt_bool(body, "ignore_eos", &b, e));
    if (r) c->sp.ignore_eos = b;
    TRY(r = opt_bool(body, "skip_special_tokens", &b, e));
    if (r) c->sp.skip_special_tokens = b;
    TRY(r = opt_int(body, "priority", &i, e));
    if (r) {
        if (i < -1000000 || i > 1000000)
            return srv_errf(e, 400, "priority", "'priority' is out of range");
        c->priority = out->priority = (int)i;
    }
    TRY(r = opt_bool(body, "stream", &b, e));
    if (r) out->stream = b;
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return srv_errf(e, 400, "stream_options", "'stream_options' must be an object");
        TRY(r = opt_bool(so, "include_usage", &b, e));
        if (r) out->include_usage = b;
    }
    if (chat) {
        int lp = 0;
        TRY(r = opt_bool(body, "logprobs", &lp, e));
        TRY(r = opt_int(body, "top_logprobs", &i, e));
        if (r) {
            if (i < 0 || i > CINFER_MAX_LOGPROBS)
                return srv_errf(e, 400, "top_logprobs", "'top_logprobs' must be in [0, %d]",
                                CINFER_MAX_LOGPROBS);
            if (!lp)
                return srv_errf(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
        } else {
            i = 0;
        }
        if (lp) out->logprobs = (int)i;
    } else {
        TRY(r = opt_int(body, "logprobs", &i, e));
        if (r) {
            if (i < 0 || i > CINFER_MAX_LOGPROBS)
                return srv_errf(e, 400, "logprobs", "'logprobs' must be in [0, %d]",
                                CINFER_MAX_LOGPROBS);
            out->logprobs = (int)i;
        }
        TRY(r = opt_bool(body, "echo", &b, e));
        if (r) out->echo = c->echo = b;
    }
    c->sp.logprobs = out->logprobs;
    if (out->echo && out->logprobs >= 0) c->sp.prompt_logprobs = out->logprobs;
    c->token_strings = out->logprobs >= 0;
    TRY(parse_stop(body, c, e));
    TRY(srv_parse_logit_bias(body, c, e));
    TRY(srv_check_fields(body, chat, c->sp.n, e));
    TRY(srv_parse_structured(body, c, e));
    if (chat) TRY(srv_parse_tools(body, tmpl, out, e));
    return 0;
fail:
    return -1;
}
