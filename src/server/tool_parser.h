/* tool_parser.h — tool calls in a model's output text, in the format its
 * chat template teaches: Hermes / Qwen (<tool_call>{...}</tool_call>),
 * Llama 3.1 JSON ({"name", "parameters"}, optionally after <|python_tag|>)
 * and Mistral ([TOOL_CALLS][{...}]). A parser finds the calls and the text
 * around them; malformed calls leave the whole text as content. While
 * streaming, `safe` says how much of the text so far cannot be (the start
 * of) a call and may be sent as content. */
#ifndef CINFER_SERVER_TOOL_PARSER_H
#define CINFER_SERVER_TOOL_PARSER_H

#include <jansson.h>
#include <stddef.h>

typedef enum srv_tool_parser {
    SRV_TOOL_PARSER_HERMES = 0,
    SRV_TOOL_PARSER_LLAMA3_JSON,
    SRV_TOOL_PARSER_MISTRAL,
    SRV_TOOL_PARSER_COUNT
} srv_tool_parser;

typedef struct srv_tool_call {
    char *name;
    char *arguments; /* JSON text of an object */
} srv_tool_call;

typedef struct srv_tool_result {
    char *content; /* the text outside the calls (trimmed), NULL when empty */
    srv_tool_call *calls;
    int num_calls;
} srv_tool_result;

/* -1 for an unknown name. */
int srv_tool_parser_from_name(const char *name);
const char *srv_tool_parser_name(int parser);
/* The parser a chat template's text asks for: [TOOL_CALLS] -> mistral,
 * <|python_tag|> or a Llama 3 "parameters" call -> llama3_json, else hermes
 * (<tool_call>, Qwen 2.5/3 and Hermes, also the default). */
int srv_tool_parser_detect(const char *template_text);

/* Finds the calls in text[0, len). Returns 0 (out filled; no calls = the
 * whole text is content) or -1 (out of memory). */
int srv_tool_parse(int parser, const char *text, size_t len, srv_tool_result *out);
/* Streaming: bytes of text[0, len) that are content whatever follows. */
size_t srv_tool_safe(int parser, const char *text, size_t len);

/* ---- the result and what the parser files share (tool_calls.c) ---- */
void srv_tool_result_free(srv_tool_result *r);
/* Appends a call from a JSON object {"name": str, args_key: object|string}
 * (args_key "arguments" or "parameters"; either is accepted). 0 ok, -1 not
 * a call. */
int srv_tool_add_call(srv_tool_result *r, json_t *obj);
/* Sets r->content to text[0, len) trimmed (NULL when empty). 0 or -1. */
int srv_tool_set_content(srv_tool_result *r, const char *text, size_t len);
/* Appends text[0, len) trimmed to r->content. 0 or -1. */
int srv_tool_add_content(srv_tool_result *r, const char *text, size_t len);
/* Length of the longest suffix of text that is a proper prefix of marker. */
size_t srv_tool_partial_marker(const char *text, size_t len, const char *marker);
/* Parses one JSON value at text[0, len); *used = its length. NULL if none. */
json_t *srv_tool_json_at(const char *text, size_t len, size_t *used);

/* the parsers (tool_parser_<name>.c) */
int srv_tool_parse_hermes(const char *text, size_t len, srv_tool_result *out);
size_t srv_tool_safe_hermes(const char *text, size_t len);
int srv_tool_parse_llama3(const char *text, size_t len, srv_tool_result *out);
size_t srv_tool_safe_llama3(const char *text, size_t len);
int srv_tool_parse_mistral(const char *text, size_t len, srv_tool_result *out);
size_t srv_tool_safe_mistral(const char *text, size_t len);

#endif
