/* fuzz_chat_template.c — libFuzzer harness for the Jinja chat-template
 * interpreter: arbitrary bytes are compiled as a template and, when they
 * compile, rendered against a fixed chat context. Any outcome is fine
 * except a crash, a sanitizer report, a hang, or an error without a
 * message. Limits are tightened so each input stays fast. Seed corpus:
 * tests/fuzz/corpus/chat_template. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat_template.h"

static const char *CONTEXT =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"You are helpful.\"},"
    " {\"role\": \"user\", \"content\": \"Hi <b> \\u00e9 \\ud83d\\ude00\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>\\nr\\n</think>\\n\\nok\", \"tool_calls\":"
    " [{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": [1.5, null, true]}}}]},"
    " {\"role\": \"tool\", \"content\": \"42\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\","
    " \"documents\": null, \"n\": 3, \"x\": 2.5}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static json_t *ctx;
    if (!ctx) {
        json_error_t e;
        ctx = json_loads(CONTEXT, 0, &e);
        if (!ctx) abort();
    }
    if (size > 1 << 16) return 0;
    ci_chat_template *t = NULL;
    ci_status s = ci_chat_template_compile_n((const char *)data, size, &t);
    if (s.code != CI_OK) {
        if (!s.msg[0] || t) abort();
        return 0;
    }
    ci_chat_template_set_limits(t, 200000, 1 << 20, 64 << 20, 0);
    char *out = NULL;
    size_t len = 0;
    s = ci_chat_template_render(t, ctx, &out, &len);
    if (s.code == CI_OK) {
        if (!out || strlen(out) > len) abort();
    } else if (!s.msg[0] || out) {
        abort();
    }
    free(out);
    ci_chat_template_free(t);
    return 0;
}
