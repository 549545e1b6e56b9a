/* tool_parser_hermes.c — Hermes / Qwen tool calls:
 *   text <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call> text ...
 * Any number of calls; the closing tag of the last one may be missing (the
 * output ended). Returns 1 (malformed: plain content) when a call's body is
 * not a {"name", "arguments"} object. */
#include <string.h>

#include "server/tool_parser.h"

#define OPEN "<tool_call>"
#define CLOSE "</tool_call>"

int srv_tool_parse_hermes(const char *text, size_t len, srv_tool_result *out) {
    const char *end = text + len, *p = text;
    const size_t lo = strlen(OPEN), lc = strlen(CLOSE);
    for (;;) {
        const char *o = memmem(p, (size_t)(end - p), OPEN, lo);
        if (!o) break;
        if (srv_tool_add_content(out, p, (size_t)(o - p))) return -1;
        const char *b = o + lo;
        const char *c = memmem(b, (size_t)(end - b), CLOSE, lc);
        const char *be = c ? c : end;
        size_t used;
        while (b < be && (*b == ' ' || *b == '\n' || *b == '\t' || *b == '\r'))
            b++;
        json_t *v = srv_tool_json_at(b, (size_t)(be - b), &used);
        int bad = !json_is_object(v);
        for (const char *t = b + used; !bad && t < be; t++) /* only space after the object */
            bad = !(*t == ' ' || *t == '\n' || *t == '\t' || *t == '\r');
        if (!bad) bad = srv_tool_add_call(out, v) != 0;
        json_decref(v);
        if (bad) return 1;
        p = c ? c + lc : end;
    }
    if (out->num_calls == 0) return 1;
    return srv_tool_add_content(out, p, (size_t)(end - p));
}

size_t srv_tool_safe_hermes(const char *text, size_t len) {
    const char *o = memmem(text, len, OPEN, strlen(OPEN));
    if (o) return (size_t)(o - text);
    return len - srv_tool_partial_marker(text, len, OPEN);
}
