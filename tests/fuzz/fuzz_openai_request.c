/* fuzz_openai_request.c — libFuzzer harness for the server's request
 * parsing (src/server/openai.c): the first byte picks /v1/completions or
 * /v1/chat/completions, the rest is the request body. Any outcome is fine
 * except a crash or a sanitizer report; an accepted request must produce a
 * well-formed GENERATE command, a rejected one a 4xx/5xx error with a
 * message and a JSON error body. Raw bytes also go through the UTF-8
 * sanitizer, whose output must be a valid JSON string. Seed corpus:
 * tests/fuzz/corpus/openai_request. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

static const char *TEMPLATE = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + "
                              "'\\n' + message['content'] + "
                              "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ "
                              "'<|im_start|>assistant\\n' }}{% endif %}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static srv_chat chat;
    if (!chat.tpl) {
        if (ci_chat_template_compile(TEMPLATE, &chat.tpl).code) abort();
        ci_chat_template_set_limits(chat.tpl, 100000, 1 << 20, 16 << 20, 64);
    }
    if (size < 1 || size > 1 << 16) return 0;
    json_t *s = srv_json_text((const char *)data + 1, size - 1);
    if (!s || !json_is_string(s)) abort();
    char *dump = json_dumps(s, JSON_ENCODE_ANY);
    if (!dump) abort();
    free(dump);
    json_decref(s);

    json_error_t je;
    json_t *body = json_loadb((const char *)data + 1, size - 1, 0, &je);
    if (!body) return 0;
    srv_gen_req g;
    srv_err e = {0};
    int chatmode = data[0] & 1;
    if (srv_parse_generate(body, chatmode, &chat, &g, &e) == 0) {
        srv_cmd *c = g.cmd;
        if (!c || c->num_prompts < 1 || c->sp.max_tokens < 1 || c->sp.n < 1) abort();
        for (int i = 0; i < c->num_prompts; i++)
            if (!c->prompts[i].text && c->prompts[i].num_ids < 1) abort();
    } else {
        if (e.status < 400 || e.status > 599 || !e.message[0]) abort();
        char *ej = srv_error_json(&e);
        if (!ej) abort();
        free(ej);
    }
    srv_cmd_free(g.cmd);
    json_decref(body);
    return 0;
}
