/* tool_calls.c — the result of a tool-call parse and the helpers every
 * format parser (tool_parser_<name>.c) builds it with: a call from a JSON
 * object {"name", "arguments" | "parameters"}, the content around the
 * calls (trimmed), a partial marker at the end of a stream, one JSON value
 * at a position. It calls no parser; the registry and dispatch above them
 * are tool_parser.c's. */
#include <stdlib.h>
#include <string.h>

#include "server/tool_parser.h"

void srv_tool_result_free(srv_tool_result *r) {
    for (int i = 0; i < r->num_calls; i++) {
        free(r->calls[i].name);
        free(r->calls[i].arguments);
    }
    free(r->calls);
    free(r->content);
    memset(r, 0, sizeof *r);
}

int srv_tool_add_call(srv_tool_result *r, json_t *obj) {
    json_t *name = json_object_get(obj, "name");
    json_t *args = json_object_get(obj, "arguments");
    if (!args) args = json_object_get(obj, "parameters");
    if (!json_is_string(name) || json_string_length(name) == 0) return -1;
    char *a = NULL;
    if (!args || json_is_null(args)) {
        a = strdup("{}");
    } else if (json_is_object(args)) {
        a = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER);
    } else if (json_is_string(args)) { /* arguments as a JSON text (OpenAI's own form) */
        json_t *p = json_loads(json_string_value(args), 0, NULL);
        int ok = json_is_object(p);
        json_decref(p);
        if (!ok) return -1;
        a = strdup(json_string_value(args));
    } else {
        return -1;
    }
    srv_tool_call *c = realloc(r->calls, sizeof *c * (size_t)(r->num_calls + 1));
    if (c) r->calls = c;
    char *n = strdup(json_string_value(name));
    if (!c || !a || !n) {
        free(a);
        free(n);
        return -1;
    }
    c[r->num_calls].name = n;
    c[r->num_calls].arguments = a;
    r->num_calls++;
    return 0;
}

static int is_space(char c) {
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

int srv_tool_add_content(srv_tool_result *r, const char *text, size_t len) {
    while (len && is_space(*text))
        text++, len--;
    while (len && is_space(text[len - 1]))
        len--;
    if (!len) return 0;
    size_t old = r->content ? strlen(r->content) : 0;
    char *c = realloc(r->content, old + len + 2);
    if (!c) return -1;
    if (old) c[old++] = '\n';
    memcpy(c + old, text, len);
    c[old + len] = '\0';
    r->content = c;
    return 0;
}

int srv_tool_set_content(srv_tool_result *r, const char *text, size_t len) {
    free(r->content);
    r->content = NULL;
    return srv_tool_add_content(r, text, len);
}

size_t srv_tool_partial_marker(const char *text, size_t len, const char *marker) {
    size_t m = strlen(marker);
    for (size_t k = m - 1; k > 0; k--)
        if (k <= len && !memcmp(text + len - k, marker, k)) return k;
    return 0;
}

json_t *srv_tool_json_at(const char *text, size_t len, size_t *used) {
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je);
    *used = v ? je.position : 0;
    return v;
}
