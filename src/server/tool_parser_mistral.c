/* tool_parser_mistral.c — Mistral tool calls:
 *   text [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]
 * The text before the marker is content; after it one JSON array of calls
 * (a single object is accepted too). Returns 1 (malformed: plain content)
 * when that is not a list of {"name", "arguments"} objects. */
#include <string.h>

#include "server/tool_parser.h"

#define MARK "[TOOL_CALLS]"

int srv_tool_parse_mistral(const char *text, size_t len, srv_tool_result *out) {
    const char *m = memmem(text, len, MARK, strlen(MARK));
    if (!m) return 1;
    if (srv_tool_add_content(out, text, (size_t)(m - text))) return -1;
    const char *b = m + strlen(MARK), *end = text + len;
    size_t used;
    json_t *v = srv_tool_json_at(b, (size_t)(end - b), &used);
    int bad = !json_is_array(v) && !json_is_object(v);
    if (json_is_object(v)) {
        bad = srv_tool_add_call(out, v) != 0;
    } else if (!bad) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            if (!json_is_object(x) || srv_tool_add_call(out, x)) bad = 1;
        }
    }
    json_decref(v);
    if (bad || out->num_calls == 0) return 1;
    return srv_tool_add_content(out, b + used, (size_t)(end - b - used));
}

size_t srv_tool_safe_mistral(const char *text, size_t len) {
    const char *m = memmem(text, len, MARK, strlen(MARK));
    if (m) return (size_t)(m - text);
    return len - srv_tool_partial_marker(text, len, MARK);
}
