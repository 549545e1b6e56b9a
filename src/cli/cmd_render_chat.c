/* cmd_render_chat.c — `cinfer render-chat`: a chat request (JSON) on stdin
 * -> the prompt text the model's chat template renders, exactly as
 * transformers' apply_chat_template(tokenize=False) would. */
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/common.h"
#include "tokenizer/chat_template.h"

static ci_status render_one(const ci_chat_config *cfg, const char *tmpl, const char *text,
                            size_t len, bool jsonl) {
    json_error_t jerr;
    json_t *req = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
    if (!req)
        return ci_errorf(CI_ERR_INVALID, "invalid JSON at line %d column %d: %s", jerr.line,
                         jerr.column, jerr.text);
    char *out = NULL;
    size_t olen = 0;
    ci_status s = json_is_object(req)
                      ? ci_chat_render_request(cfg, tmpl, req, &out, &olen)
                      : ci_errorf(CI_ERR_INVALID, "expected a JSON object with \"messages\"");
    json_decref(req);
    if (s.code) return s;
    if (jsonl) {
        json_t *js = json_stringn(out, olen);
        char *d = js ? json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        json_decref(js);
        if (!d) {
            free(out);
            return ci_errorf(CI_ERR_INVALID, "rendered text is not valid UTF-8");
        }
        fputs(d, stdout);
        fputc('\n', stdout);
        free(d);
    } else {
        fwrite(out, 1, olen, stdout);
    }
    free(out);
    fflush(stdout);
    return ci_ok();
}

int cmd_render_chat(int argc, char **argv) {
    const char *model = NULL, *tmpl_path = NULL;
    bool jsonl = false;
    const ci_arg args[] = {
        {"--model", "-m", CI_ARG_STR, &model, "DIR", "model directory with tokenizer_config.json"},
        {"--chat-template", NULL, CI_ARG_STR, &tmpl_path, "FILE",
         "use this Jinja template instead of the model's chat_template"},
        {"--jsonl", NULL, CI_ARG_FLAG, &jsonl, "",
         "one request object per stdin line; print one JSON string per line"},
    };
    const char *usage =
        "usage: cinfer render-chat -m DIR [--chat-template FILE] [--jsonl] < request.json\n"
        "Renders {\"messages\", \"add_generation_prompt\", \"tools\", \"template_kwargs\"} from\n"
        "stdin with the model's chat template and prints the prompt text exactly.";
    ci_status err = ci_ok();
    ci_args_result r = ci_args_parse(usage, args, 3, argc, argv, &err);
    if (r == CI_ARGS_HELP) return 0;
    if (r == CI_ARGS_ERROR) return ci_cli_fail(err);
    if (!model && !tmpl_path)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "render-chat: -m DIR is required"));

    ci_chat_config cfg = {0};
    char *tmpl = NULL, *input = NULL;
    size_t len = 0;
    ci_status s = ci_ok();
    if (model) s = ci_chat_config_load(model, &cfg);
    if (!s.code && tmpl_path) s = ci_read_text(tmpl_path, &tmpl);
    if (!s.code) s = ci_read_stream(stdin, "stdin", &input, &len);
    if (!s.code && !jsonl) {
        s = render_one(&cfg, tmpl, input, len, false);
    } else if (!s.code) {
        size_t lineno = 0;
        for (char *line = input; line && *line && !s.code;) {
            char *nl = memchr(line, '\n', len - (size_t)(line - input));
            size_t n = nl ? (size_t)(nl - line) : len - (size_t)(line - input);
            lineno++;
            bool blank = true;
            for (size_t i = 0; i < n; i++)
                if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') blank = false;
            if (!blank) {
                s = render_one(&cfg, tmpl, line, n, true);
                if (s.code) s = ci_status_wrap(s, "stdin line %zu", lineno);
            }
            line = nl ? nl + 1 : NULL;
        }
    }
    free(input);
    free(tmpl);
    ci_chat_config_free(&cfg);
    return s.code ? ci_cli_fail(s) : 0;
}
