/* test_tool_requests.c — request parsing for structured outputs and tools
 * (no server): each field maps to the engine's constraint kind and text;
 * more than one constraint, bad values, tool_choice without tools or with an
 * unknown function are 400s naming the field; tool_choice required / named
 * build JSON schemas (one item without parallel calls); auto keeps special
 * tokens for llama3_json. */
#include <string.h>

#include "server/server.h"
#include "server/tool_parser.h"
#include "test.h"

static srv_chat chat_of(int parser) {
    srv_chat c;
    memset(&c, 0, sizeof c);
    c.tool_parser = parser;
    return c;
}

/* Parses body as completions (chat = 0): with no template the chat path
 * would refuse, and the constraint fields are the same on both. */
static int parse(const char *body, int chat, srv_gen_req *g, srv_err *e) {
    json_t *b = json_loads(body, 0, NULL);
    CHECKF(b != NULL, "bad test JSON: %s", body);
    srv_chat c = chat_of(SRV_TOOL_PARSER_HERMES);
    int rc = chat ? -1 : srv_parse_generate(b, 0, &c, g, e);
    if (chat) { /* the tool fields alone (the prompt needs a template) */
        memset(g, 0, sizeof *g);
        g->cmd = calloc(1, sizeof *g->cmd);
        g->cmd->sp = cinfer_sampling_params_default();
        rc = srv_parse_structured(b, g->cmd, e);
        if (!rc) rc = srv_parse_tools(b, &c, g, e);
    }
    json_decref(b);
    return rc;
}

static void ok_kind(const char *body, int kind, const char *needle) {
    srv_gen_req g;
    srv_err e;
    int rc = parse(body, 0, &g, &e);
    CHECKF(rc == 0, "%s: %s", body, e.message);
    if (!rc) {
        CHECKF(g.cmd->sp.structured_kind == kind, "%s: kind %d", body, g.cmd->sp.structured_kind);
        CHECKF(!needle || (g.cmd->sp.structured && strstr(g.cmd->sp.structured, needle)),
               "%s: text %s", body, g.cmd->sp.structured);
    }
    srv_cmd_free(g.cmd);
}

static void bad(const char *body, int chat, const char *msg) {
    srv_gen_req g;
    srv_err e;
    int rc = parse(body, chat, &g, &e);
    CHECKF(rc != 0 && e.status == 400 && strstr(e.message, msg), "%s: rc %d %d %s", body, rc,
           e.status, rc ? e.message : "");
    srv_cmd_free(g.cmd);
}

#define P "\"prompt\": \"x\", "
#define TOOLS                                                                                      \
    "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": "        \
    "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}}}}, {\"type\": "      \
    "\"function\", \"function\": {\"name\": \"g\"}}]"

int main(void) {
    ok_kind("{" P "\"response_format\": {\"type\": \"json_object\"}}",
            CINFER_STRUCTURED_JSON_OBJECT, NULL);
    ok_kind("{" P "\"response_format\": {\"type\": \"text\"}}", CINFER_STRUCTURED_NONE, NULL);
    ok_kind("{" P "\"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": "
            "\"n\", \"schema\": {\"type\": \"integer\"}, \"strict\": true}}}",
            CINFER_STRUCTURED_JSON_SCHEMA, "\"integer\"");
    ok_kind("{" P "\"structured_outputs\": {\"regex\": \"[0-9]+\"}}", CINFER_STRUCTURED_REGEX,
            "[0-9]+");
    ok_kind("{" P "\"structured_outputs\": {\"json_object\": true}}", CINFER_STRUCTURED_JSON_OBJECT,
            NULL);
    ok_kind("{" P "\"guided_json\": \"{\\\"type\\\": \\\"boolean\\\"}\"}",
            CINFER_STRUCTURED_JSON_SCHEMA, "boolean");
    ok_kind("{" P "\"guided_grammar\": \"root ::= \\\"a\\\"\"}", CINFER_STRUCTURED_GRAMMAR,
            "root ::=");
    ok_kind("{" P "\"guided_choice\": [\"yes\", \"say \\\"no\\\"\"]}", CINFER_STRUCTURED_GRAMMAR,
            "root ::= \"yes\" | \"say \\\"no\\\"\"");
    ok_kind("{" P "\"grammar\": \"root ::= [a-z]+\"}", CINFER_STRUCTURED_GRAMMAR, "[a-z]+");
    ok_kind("{" P "\"json_schema\": {\"type\": \"array\"}}", CINFER_STRUCTURED_JSON_SCHEMA,
            "array");
    bad("{" P "\"guided_regex\": \"a\", \"grammar\": \"root ::= \\\"a\\\"\"}", 0,
        "only one structured output constraint");
    bad("{" P "\"response_format\": {\"type\": \"json_object\"}, \"guided_choice\": [\"a\"]}", 0,
        "'response_format' and 'guided_choice'");
    bad("{" P "\"response_format\": {\"type\": \"xml\"}}", 0, "must be text, json_object");
    bad("{" P "\"guided_regex\": 5}", 0, "'guided_regex' must be a non-empty string");
    bad("{" P "\"guided_choice\": []}", 0, "non-empty list");
    bad("{" P "\"guided_json\": \"not json\"}", 0, "not a JSON schema");

    /* tools */
    srv_gen_req g;
    srv_err e;
    CHECK(parse("{" TOOLS "}", 1, &g, &e) == 0 && g.tool_mode == SRV_TOOLS_AUTO &&
          g.cmd->sp.structured_kind == CINFER_STRUCTURED_NONE);
    srv_cmd_free(g.cmd);
    CHECK(parse("{" TOOLS ", \"tool_choice\": \"none\"}", 1, &g, &e) == 0 &&
          g.tool_mode == SRV_TOOLS_NONE);
    srv_cmd_free(g.cmd);
    CHECK(parse("{" TOOLS ", \"tool_choice\": \"required\", \"parallel_tool_calls\": false}", 1, &g,
                &e) == 0);
    CHECK(g.tool_mode == SRV_TOOLS_REQUIRED &&
          g.cmd->sp.structured_kind == CINFER_STRUCTURED_JSON_SCHEMA);
    json_t *s = json_loads(g.cmd->sp.structured ? g.cmd->sp.structured : "", 0, NULL);
    json_t *any = json_object_get(json_object_get(s, "items"), "anyOf");
    CHECKF(
        json_integer_value(json_object_get(s, "maxItems")) == 1 &&
            json_integer_value(json_object_get(s, "minItems")) == 1 && json_array_size(any) == 2 &&
            !strcmp(
                json_string_value(json_object_get(
                    json_object_get(json_object_get(json_array_get(any, 1), "properties"), "name"),
                    "const")),
                "g"),
        "%s", g.cmd->sp.structured);
    json_decref(s);
    srv_cmd_free(g.cmd);
    CHECK(parse("{" TOOLS ", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": "
                "\"f\"}}}",
                1, &g, &e) == 0);
    CHECK(g.tool_mode == SRV_TOOLS_NAMED && !strcmp(g.tool_name, "f") && g.cmd->sp.structured &&
          strstr(g.cmd->sp.structured, "\"properties\""));
    srv_cmd_free(g.cmd);
    bad("{\"tool_choice\": \"required\"}", 1, "needs 'tools'");
    bad("{" TOOLS ", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"h\"}}}",
        1, "names 'h', not in 'tools'");
    bad("{" TOOLS ", \"tool_choice\": \"sometimes\"}", 1, "'tool_choice' must be");
    bad("{\"tools\": [{\"type\": \"retrieval\"}]}", 1, "tool 0 must be");
    bad("{" TOOLS ", \"tool_choice\": \"required\", \"guided_regex\": \"a\"}", 1,
        "cannot be combined");
    bad("{" TOOLS ", \"parallel_tool_calls\": 1}", 1, "must be a boolean");
    return test_finish("test_tool_requests");
}
