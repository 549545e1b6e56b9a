/* test_tool_parser.c — the tool-call parsers on recorded outputs of their
 * formats: one and several calls in a message, text around them, a missing
 * closing tag, arguments as an object or a JSON string, malformed JSON (then
 * the whole text is content), the streaming safe prefix, and detection from
 * chat template text. */
#include <string.h>

#include "server/tool_parser.h"
#include "test.h"

typedef struct want {
    const char *content; /* NULL: none */
    int ncalls;
    const char *name[3];
    const char *args[3]; /* compact JSON */
} want;

static void expect(int parser, const char *text, want w) {
    srv_tool_result r;
    CHECK(srv_tool_parse(parser, text, strlen(text), &r) == 0);
    CHECKF(r.num_calls == w.ncalls, "%s: %d calls, want %d in: %s", srv_tool_parser_name(parser),
           r.num_calls, w.ncalls, text);
    if (w.content)
        CHECKF(r.content && !strcmp(r.content, w.content), "content \"%s\", want \"%s\"",
               r.content ? r.content : "(null)", w.content);
    else
        CHECKF(!r.content, "content \"%s\", want none", r.content);
    for (int i = 0; i < r.num_calls && i < w.ncalls; i++) {
        CHECKF(!strcmp(r.calls[i].name, w.name[i]), "call %d name %s", i, r.calls[i].name);
        json_t *a = json_loads(r.calls[i].arguments, 0, NULL), *b = json_loads(w.args[i], 0, NULL);
        CHECKF(a && b && json_equal(a, b), "call %d arguments %s, want %s", i, r.calls[i].arguments,
               w.args[i]);
        json_decref(a);
        json_decref(b);
    }
    srv_tool_result_free(&r);
}

static void test_hermes(void) {
    const int H = SRV_TOOL_PARSER_HERMES;
    /* Qwen2.5-7B-Instruct, one call */
    expect(H,
           "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", "
           "\"unit\": \"celsius\"}}\n</tool_call>",
           (want){NULL, 1, {"get_weather"}, {"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}});
    /* two calls with text before, between and after */
    expect(H,
           "Let me check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
           "{\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", "
           "\"arguments\": {\"tz\": \"Europe/Paris\"}}\n</tool_call>\nDone.",
           (want){"Let me check both.\nDone.",
                  2,
                  {"get_weather", "get_time"},
                  {"{\"city\":\"Paris\"}", "{\"tz\":\"Europe/Paris\"}"}});
    /* the output ended before the closing tag; arguments as a JSON string */
    expect(H, "<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": [1, 2]}\"}",
           (want){NULL, 1, {"f"}, {"{\"x\":[1,2]}"}});
    /* malformed JSON: plain content */
    const char *bad = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": }\n</tool_call>";
    expect(H, bad, (want){bad, 0, {0}, {0}});
    expect(H, "<tool_call>{\"arguments\": {}}</tool_call>",
           (want){"<tool_call>{\"arguments\": {}}</tool_call>", 0, {0}, {0}});
    expect(H, "no tools here", (want){"no tools here", 0, {0}, {0}});
    /* streaming: text before the tag is safe, a partial tag is held */
    CHECK(srv_tool_safe(H, "Hello <tool", 11) == 6);
    CHECK(srv_tool_safe(H, "Hello <tool_call>{", 18) == 6);
    CHECK(srv_tool_safe(H, "Hello there", 11) == 11);
    CHECK(srv_tool_safe(H, "a < b", 5) == 5);
}

static void test_llama3(void) {
    const int L = SRV_TOOL_PARSER_LLAMA3_JSON;
    /* Llama-3.1-8B-Instruct, JSON form */
    expect(L, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
           (want){NULL, 1, {"get_weather"}, {"{\"city\":\"Paris\"}"}});
    /* python_tag form, two calls separated by ';' */
    expect(L,
           "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"x\": 1}}; {\"name\": \"b\", "
           "\"parameters\": {}}",
           (want){NULL, 2, {"a", "b"}, {"{\"x\":1}", "{}"}});
    /* text first: not a call */
    expect(L, "The answer is {\"name\": \"a\"}",
           (want){"The answer is {\"name\": \"a\"}", 0, {0}, {0}});
    expect(L, "{\"name\": \"a\", \"parameters\": {\"x\": }",
           (want){"{\"name\": \"a\", \"parameters\": {\"x\": }", 0, {0}, {0}});
    expect(L, "{\"foo\": 1}", (want){"{\"foo\": 1}", 0, {0}, {0}});
    CHECK(srv_tool_safe(L, "  {\"na", 6) == 0);
    CHECK(srv_tool_safe(L, "<|pyth", 6) == 0);
    CHECK(srv_tool_safe(L, "Sure, ", 6) == 6);
}

static void test_mistral(void) {
    const int M = SRV_TOOL_PARSER_MISTRAL;
    /* Mistral-7B-Instruct-v0.3 */
    expect(M,
           "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, "
           "{\"name\": \"get_time\", \"arguments\": {}}]",
           (want){NULL, 2, {"get_weather", "get_time"}, {"{\"city\":\"Paris\"}", "{}"}});
    expect(M, "Checking. [TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}]",
           (want){"Checking.", 1, {"f"}, {"{\"q\":\"x\"}"}});
    expect(M, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"q\": ]",
           (want){"[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"q\": ]", 0, {0}, {0}});
    expect(M, "plain answer", (want){"plain answer", 0, {0}, {0}});
    CHECK(srv_tool_safe(M, "ok [TOOL", 8) == 3);
}

static void test_names_detect(void) {
    CHECK(srv_tool_parser_from_name("hermes") == SRV_TOOL_PARSER_HERMES);
    CHECK(srv_tool_parser_from_name("llama3_json") == SRV_TOOL_PARSER_LLAMA3_JSON);
    CHECK(srv_tool_parser_from_name("mistral") == SRV_TOOL_PARSER_MISTRAL);
    CHECK(srv_tool_parser_from_name("pythonic") == -1);
    CHECK(srv_tool_parser_detect("{{ '[TOOL_CALLS]' + tools|tojson }}") == SRV_TOOL_PARSER_MISTRAL);
    CHECK(srv_tool_parser_detect("<tool_call>\\n{\"name\": ...") == SRV_TOOL_PARSER_HERMES);
    CHECK(srv_tool_parser_detect("{{- '<|python_tag|>' + tool_call.name }}") ==
          SRV_TOOL_PARSER_LLAMA3_JSON);
    CHECK(srv_tool_parser_detect("{{ message.content }}") == SRV_TOOL_PARSER_HERMES);
}

int main(void) {
    test_hermes();
    test_llama3();
    test_mistral();
    test_names_detect();
    return test_finish("test_tool_parser");
}
