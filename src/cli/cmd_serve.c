/* cmd_serve.c — `cinfer serve`: the OpenAI-compatible HTTP server. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/common.h"
#include "cli/engine_flags.h"
#include "server/log.h"
#include "server/server.h"
#include "server/tool_parser.h"
#include "server/webui.h"

int cmd_serve(int argc, char **argv) {
    const char *model_dir = NULL, *host = "127.0.0.1", *api_key = NULL, *served = NULL;
    long port = 8000, max_waiting = 256, max_body = 16L << 20;
    bool no_webui = false;
    double timeout = 0, header_timeout = 10, body_timeout = 60, shutdown_timeout = 30;
    long max_conns = 1024, max_queued = 0;
    const char *log_level = "info", *log_format = "text", *tool_parser = NULL;
    const char *chat_template = NULL;
    ci_engine_flags ef = ci_engine_flags_default();
    const ci_arg args[] = {
        {"--model", "-m", CI_ARG_STR, &model_dir, "DIR", "Hugging Face model directory"},
        {"--host", NULL, CI_ARG_STR, &host, "ADDR", "listen address (default 127.0.0.1)"},
        {"--port", NULL, CI_ARG_INT, &port, "N", "listen port (default 8000; 0 = any free port)"},
        {"--api-key", NULL, CI_ARG_STR, &api_key, "KEY",
         "require Authorization: Bearer KEY on /v1, /tokenize"},
        {"--served-model-name", NULL, CI_ARG_STR, &served, "NAME",
         "model name in the API (default: dir name)"},
        {"--chat-template", NULL, CI_ARG_STR, &chat_template, "FILE",
         "Jinja chat template replacing the tokenizer's (a bad file stops startup)"},
        {"--no-webui", NULL, CI_ARG_FLAG, &no_webui, NULL, "no chat page at GET / (404)"},
        {"--max-waiting", NULL, CI_ARG_INT, &max_waiting, "N",
         "sequences (prompts x n) accepted beyond --max-num-seqs before 503 (default 256)"},
        {"--request-timeout", NULL, CI_ARG_FLOAT, &timeout, "S",
         "per-request time limit in seconds (0 = none)"},
        {"--max-body-bytes", NULL, CI_ARG_INT, &max_body, "B",
         "largest request body (default 16 MiB) -> 413"},
        {"--max-connections", NULL, CI_ARG_INT, &max_conns, "N",
         "open connections beyond N get 503 + Retry-After and are closed (default 1024; 0 = no "
         "cap)"},
        {"--max-queued-tokens", NULL, CI_ARG_INT, &max_queued, "N",
         "prompt tokens waiting for their first token beyond N -> 503 (default 0 = no cap)"},
        {"--header-timeout", NULL, CI_ARG_FLOAT, &header_timeout, "S",
         "a request's headers must arrive within S of its first byte (default 10; 0 = none)"},
        {"--body-timeout", NULL, CI_ARG_FLOAT, &body_timeout, "S",
         "the whole request must arrive within S of its first byte (default 60; 0 = none)"},
        {"--shutdown-timeout", NULL, CI_ARG_FLOAT, &shutdown_timeout, "S",
         "SIGINT/SIGTERM: requests in flight may finish within S (default 30)"},
        {"--log-level", NULL, CI_ARG_STR, &log_level, "L", "debug|info|warn|error (default info)"},
        {"--tool-call-parser", NULL, CI_ARG_STR, &tool_parser, "P",
         "hermes|llama3_json|mistral: the tool-call format parsed from chat outputs (default: "
         "from the chat template, else hermes)"},
        {"--log-format", NULL, CI_ARG_STR, &log_format, "F",
         "text|json: stderr lines, one access-log line per request (default text)"},
        CI_ENGINE_FLAG_ARGS(ef),
    };
    const char *usage =
        "usage: cinfer serve -m DIR [options]\n"
        "Serves the model over an OpenAI-compatible HTTP API: /v1/completions,\n"
        "/v1/chat/completions (streaming with \"stream\": true), /v1/models, /health,\n"
        "/metrics, /tokenize, /detokenize. SIGINT/SIGTERM shut it down.";
    ci_status s = ci_ok();
    ci_args_result r = ci_args_parse(usage, args, sizeof args / sizeof args[0], argc, argv, &s);
    if (r == CI_ARGS_HELP) return 0;
    if (r == CI_ARGS_ERROR) return ci_cli_fail(s);
    if (!model_dir) return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "serve: -m DIR is required"));
    if (port < 0 || port > 65535)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--port must be in [0, 65535]"));
    if (max_waiting < 0 || max_waiting > 1000000)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--max-waiting must be in [0, 1000000]"));
    if (timeout < 0)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--request-timeout must be >= 0"));
    if (max_body < 1)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--max-body-bytes must be >= 1"));
    if (max_conns < 0 || max_conns > 10000000)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--max-connections must be in [0, 1e7]"));
    if (max_queued < 0)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--max-queued-tokens must be >= 0"));
    if (header_timeout < 0 || body_timeout < 0 || shutdown_timeout < 0)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID,
                                     "--header-timeout, --body-timeout and --shutdown-timeout "
                                     "must be >= 0"));
    int level = srv_log_level_parse(log_level);
    if (level < 0)
        return ci_cli_fail(
            ci_errorf(CI_ERR_INVALID, "--log-level must be debug, info, warn or error"));
    if (strcmp(log_format, "text") && strcmp(log_format, "json"))
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--log-format must be text or json"));
    if (tool_parser && srv_tool_parser_from_name(tool_parser) < 0)
        return ci_cli_fail(
            ci_errorf(CI_ERR_INVALID, "--tool-call-parser must be hermes, llama3_json or mistral"));
    if (api_key && !*api_key)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--api-key must not be empty"));
    ci_engine_config ec;
    s = ci_engine_flags_config(&ef, model_dir, &ec);
    if (s.code) return ci_cli_fail(s);

    char *tmpl = NULL;
    if (chat_template) {
        s = ci_read_text(chat_template, &tmpl);
        if (s.code) return ci_cli_fail(ci_status_wrap(s, "--chat-template"));
    }

    srv_config cfg = {0};
    cfg.chat_template = tmpl;
    cfg.chat_template_path = chat_template;
    cfg.model_dir = model_dir;
    cfg.host = host;
    cfg.port = (int)port;
    cfg.api_key = api_key;
    cfg.served_model_name = served;
    cfg.engine = ec; /* every engine option, unchanged */
    cfg.max_waiting = (int)max_waiting;
    cfg.request_timeout_s = timeout;
    cfg.max_body_bytes = (size_t)max_body;
    srv_webui_set_enabled(!no_webui);
    cfg.max_connections = (int)max_conns;
    cfg.max_queued_tokens = max_queued;
    cfg.header_timeout_s = header_timeout;
    cfg.body_timeout_s = body_timeout;
    cfg.shutdown_timeout_s = shutdown_timeout;
    cfg.log_level = level;
    cfg.log_json = !strcmp(log_format, "json");
    cfg.tool_call_parser = tool_parser;
    int rc = srv_run(&cfg);
    free(tmpl);
    return rc;
}
