/* tools_req.c — a chat request's tools (OpenAI function tools), tool_choice
 * and parallel_tool_calls. The tools always reach the chat template (as in
 * vLLM, "none" too); "auto" parses the output for calls afterwards;
 * "required" and a named function constrain the output with a JSON schema
 * built here (vLLM's way): a list of {"name", "parameters"} objects, one of
 * each function with its own parameters schema (at most one item without
 * parallel_tool_calls), or the named function's parameters object. */
#include <stdlib.h>
#include <string.h>

#include "server/server.h"
#include "server/tool_parser.h"

/* {"type": "object"} when a function has no parameters schema. */
static json_t *params_of(json_t *fn) {
    json_t *p = json_object_get(fn, "parameters");
    if (json_is_object(p)) return json_incref(p);
    return json_pack("{s:s}", "type", "object");
}

static int check_tools(json_t *tools, srv_err *e) {
    if (!json_is_array(tools))
        return srv_errf(e, 400, "tools", "'tools' must be a list of function tools");
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *type = json_object_get(t, "type"), *fn = json_object_get(t, "function");
        if (!json_is_object(t) || !json_is_string(type) ||
            strcmp(json_string_value(type), "function") || !json_is_object(fn))
            return srv_errf(e, 400, "tools",
                            "tool %zu must be {\"type\": \"function\", \"function\": {...}}", i);
        json_t *name = json_object_get(fn, "name"), *p = json_object_get(fn, "parameters");
        if (!json_is_string(name) || json_string_length(name) == 0 ||
            json_string_length(name) >= 128)
            return srv_errf(e, 400, "tools", "tool %zu needs a 'function.name' (1-127 chars)", i);
        if (p && !json_is_null(p) && !json_is_object(p))
            return srv_errf(e, 400, "tools", "tool %zu: 'function.parameters' must be an object",
                            i);
    }
    return 0;
}

static json_t *find_tool(json_t *tools, const char *name) {
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        if (!strcmp(json_string_value(json_object_get(fn, "name")), name)) return fn;
    }
    return NULL;
}

/* tool_choice "required": [{"name": <one of the tools>, "parameters": {...}}, ...] */
static json_t *required_schema(json_t *tools, int parallel) {
    json_t *any = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        json_t *item =
            json_pack("{s:s, s:{s:{s:O}, s:o}, s:[s,s], s:b}", "type", "object", "properties",
                      "name", "const", json_object_get(fn, "name"), "parameters", params_of(fn),
                      "required", "name", "parameters", "additionalProperties", 0);
        json_array_append_new(any, item);
    }
    json_t *s =
        json_pack("{s:s, s:i, s:{s:o}}", "type", "array", "minItems", 1, "items", "anyOf", any);
    if (!parallel) json_object_set_new(s, "maxItems", json_integer(1));
    return s;
}

static int set_schema(srv_cmd *c, json_t *schema, srv_err *e) {
    char *text = schema ? json_dumps(schema, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(schema);
    if (!text) return srv_errf(e, 500, NULL, "out of memory");
    int rc = srv_set_structured(c, CINFER_STRUCTURED_JSON_SCHEMA, text, e);
    free(text);
    return rc;
}

int srv_parse_tools(json_t *body, const srv_chat *chat, srv_gen_req *out, srv_err *e) {
    json_t *tools = json_object_get(body, "tools"), *choice = json_object_get(body, "tool_choice");
    json_t *par = json_object_get(body, "parallel_tool_calls");
    int have = tools && !json_is_null(tools);
    if (have && check_tools(tools, e)) return -1;
    if (have && json_array_size(tools) == 0) have = 0;
    if (par && !json_is_null(par) && !json_is_boolean(par))
        return srv_errf(e, 400, "parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
    int parallel = !json_is_false(par);
    out->tool_mode = have ? SRV_TOOLS_AUTO : SRV_TOOLS_NONE;
    out->tool_parser = chat ? chat->tool_parser : SRV_TOOL_PARSER_HERMES;
    if (choice && !json_is_null(choice)) {
        const char *s = json_string_value(choice);
        if (s && !strcmp(s, "none")) {
            out->tool_mode = SRV_TOOLS_NONE;
        } else if (s && !strcmp(s, "auto")) {
            /* the default when tools are given */
        } else if (s && !strcmp(s, "required")) {
            if (!have)
                return srv_errf(e, 400, "tool_choice", "tool_choice 'required' needs 'tools'");
            out->tool_mode = SRV_TOOLS_REQUIRED;
        } else if (json_is_object(choice)) {
            json_t *fn = json_object_get(choice, "function");
            const char *type = json_string_value(json_object_get(choice, "type"));
            const char *name = json_string_value(json_object_get(fn, "name"));
            if (!type || strcmp(type, "function") || !name)
                return srv_errf(e, 400, "tool_choice",
                                "'tool_choice' must be none, auto, required or {\"type\": "
                                "\"function\", \"function\": {\"name\": ...}}");
            if (!have || !find_tool(tools, name))
                return srv_errf(e, 400, "tool_choice", "tool_choice names '%s', not in 'tools'",
                                name);
            out->tool_mode = SRV_TOOLS_NAMED;
            snprintf(out->tool_name, sizeof out->tool_name, "%s", name);
        } else {
            return srv_errf(e, 400, "tool_choice",
                            "'tool_choice' must be none, auto, required or a named function");
        }
    }
    srv_cmd *c = out->cmd;
    if (out->tool_mode >= SRV_TOOLS_REQUIRED && c->sp.structured_kind != CINFER_STRUCTURED_NONE)
        return srv_errf(e, 400, "tool_choice",
                        "tool_choice required or named cannot be combined with another "
                        "structured output constraint");
    if (out->tool_mode == SRV_TOOLS_REQUIRED)
        return set_schema(c, required_schema(tools, parallel), e);
    if (out->tool_mode == SRV_TOOLS_NAMED)
        return set_schema(c, params_of(find_tool(tools, out->tool_name)), e);
    /* auto: the call markers of llama3_json / mistral are special tokens: keep them in the text
     * unless the request says otherwise */
    if (out->tool_mode == SRV_TOOLS_AUTO && out->tool_parser != SRV_TOOL_PARSER_HERMES &&
        !json_object_get(body, "skip_special_tokens"))
        c->sp.skip_special_tokens = 0;
    return 0;
}
