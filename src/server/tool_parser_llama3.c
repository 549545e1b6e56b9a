/* tool_parser_llama3.c — Llama 3.1 JSON tool calls (vLLM's llama3_json):
 *   {"name": "f", "parameters": {...}}            (the whole output)
 *   <|python_tag|>{"name": ...}; {"name": ...}    (several, ';'-separated)
 * A call starts the output (after white space); anything else is content.
 * Returns 1 (malformed: plain content) when the JSON is not a sequence of
 * {"name", "parameters" | "arguments"} objects. */
#include <string.h>

#include "server/tool_parser.h"

#define TAG "<|python_tag|>"

static size_t skip_space(const char *t, size_t i, size_t len) {
    while (i < len && (t[i] == ' ' || t[i] == '\n' || t[i] == '\t' || t[i] == '\r'))
        i++;
    return i;
}

int srv_tool_parse_llama3(const char *text, size_t len, srv_tool_result *out) {
    size_t i = skip_space(text, 0, len);
    const size_t lt = strlen(TAG);
    if (len - i >= lt && !memcmp(text + i, TAG, lt)) i = skip_space(text, i + lt, len);
    if (i >= len || text[i] != '{') return 1;
    while (i < len) {
        size_t used;
        json_t *v = srv_tool_json_at(text + i, len - i, &used);
        int bad = !json_is_object(v) || srv_tool_add_call(out, v) != 0;
        json_decref(v);
        if (bad) return 1;
        i = skip_space(text, i + used, len);
        if (i < len && text[i] == ';') i = skip_space(text, i + 1, len);
        if (i < len && text[i] != '{') break; /* text after the calls */
    }
    return srv_tool_add_content(out, text + i, len - i);
}

size_t srv_tool_safe_llama3(const char *text, size_t len) {
    size_t i = skip_space(text, 0, len);
    if (i == len) return 0; /* nothing decided yet */
    if (text[i] == '{') return 0;
    const size_t lt = strlen(TAG);
    size_t k = len - i < lt ? len - i : lt;
    if (!memcmp(text + i, TAG, k)) return 0; /* the tag (or its start) */
    return len;
}
