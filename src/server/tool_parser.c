/* tool_parser.c — the tool-call parsers' registry (names, detection from the
 * chat template) and the dispatch to the format parsers
 * (tool_parser_<name>.c). What those parsers share is tool_calls.c's, so
 * the dependencies run one way: here -> the parsers -> tool_calls.c. */
#include "server/tool_parser.h"

#include <string.h>

static const char *const k_names[SRV_TOOL_PARSER_COUNT] = {"hermes", "llama3_json", "mistral"};

int srv_tool_parser_from_name(const char *name) {
    for (int i = 0; name && i < SRV_TOOL_PARSER_COUNT; i++)
        if (!strcmp(name, k_names[i])) return i;
    return -1;
}

const char *srv_tool_parser_name(int parser) {
    return parser >= 0 && parser < SRV_TOOL_PARSER_COUNT ? k_names[parser] : "none";
}

int srv_tool_parser_detect(const char *t) {
    if (!t) return SRV_TOOL_PARSER_HERMES;
    if (strstr(t, "[TOOL_CALLS]")) return SRV_TOOL_PARSER_MISTRAL;
    if (strstr(t, "<tool_call>")) return SRV_TOOL_PARSER_HERMES;
    if (strstr(t, "<|python_tag|>") || (strstr(t, "<|eot_id|>") && strstr(t, "\"parameters\"")))
        return SRV_TOOL_PARSER_LLAMA3_JSON;
    return SRV_TOOL_PARSER_HERMES;
}

int srv_tool_parse(int parser, const char *text, size_t len, srv_tool_result *out) {
    memset(out, 0, sizeof *out);
    int rc = parser == SRV_TOOL_PARSER_LLAMA3_JSON ? srv_tool_parse_llama3(text, len, out)
             : parser == SRV_TOOL_PARSER_MISTRAL   ? srv_tool_parse_mistral(text, len, out)
                                                   : srv_tool_parse_hermes(text, len, out);
    if (rc == 1) { /* malformed: no calls, the text as it is */
        srv_tool_result_free(out);
        return srv_tool_set_content(out, text, len);
    }
    return rc;
}

size_t srv_tool_safe(int parser, const char *text, size_t len) {
    return parser == SRV_TOOL_PARSER_LLAMA3_JSON ? srv_tool_safe_llama3(text, len)
           : parser == SRV_TOOL_PARSER_MISTRAL   ? srv_tool_safe_mistral(text, len)
                                                 : srv_tool_safe_hermes(text, len);
}
