/* cmd_generate.c — `cinfer generate`: one prompt, streamed continuation, through
 * the batching engine (or a JSONL file of requests: generate_batch.c). */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/chat_session.h"
#include "cli/common.h"
#include "cli/engine_flags.h"
#include "cli/generate_batch.h"
#include "cli/sampling_flags.h"
#include "engine/generate.h"
#include "tokenizer/tokenizer.h"

static json_t *ids_json(const int32_t *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

/* The prompt text: -p TEXT, -p - (stdin) or -f FILE; with --chat, rendered
 * as one user message (after --system) with the chat template. *add_special:
 * whether BOS etc. are added when encoding (not for a rendered chat, whose
 * template writes them, as transformers' apply_chat_template does). */
static ci_status read_prompt(const char *prompt, const char *file, bool chat, const char *system,
                             const char *model_dir, const char *tmpl, char **out,
                             bool *add_special) {
    *out = NULL;
    *add_special = !chat;
    size_t len = 0;
    ci_status s;
    if (prompt && file) return ci_errorf(CI_ERR_INVALID, "generate: give -p or -f, not both");
    if (file || (prompt && !strcmp(prompt, "-")))
        s = ci_read_text(file ? file : "-", out);
    else if (prompt)
        s = (*out = strdup(prompt)) ? ci_ok() : ci_errorf(CI_ERR_NOMEM, "out of memory");
    else
        return ci_errorf(CI_ERR_INVALID, "generate: -p TEXT (or -p - / -f FILE) is required");
    if (!s.code && !**out) s = ci_errorf(CI_ERR_INVALID, "prompt is empty");
    if (s.code) {
        free(*out); /* the prompt text read before the error */
        *out = NULL;
        return s;
    }
    if (!chat) return s;
    ci_chat_session cs;
    s = ci_chat_session_open(&cs, model_dir, tmpl);
    if (s.code) return s;
    s = ci_chat_session_set_system(&cs, system);
    if (!s.code) s = ci_chat_session_add(&cs, "user", *out, strlen(*out));
    free(*out);
    *out = NULL;
    if (!s.code) s = ci_chat_session_render(&cs, out, &len);
    ci_chat_session_close(&cs);
    return s;
}

int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL, *prompts_file = NULL, *prompt_file = NULL,
               *system = NULL, *tmpl = NULL;
    bool as_json = false, stats = false, chat = false;
    ci_sampling_flags sf = ci_sampling_flags_default(128);
    ci_engine_flags ef = ci_engine_flags_default();
    const ci_arg args[] = {
        {"--model", "-m", CI_ARG_STR, &model_dir, "DIR", "Hugging Face model directory"},
        {"--prompt", "-p", CI_ARG_STR, &prompt, "TEXT", "prompt text (UTF-8; - reads stdin)"},
        {"--file", "-f", CI_ARG_STR, &prompt_file, "FILE", "read the prompt from FILE"},
        {"--chat", NULL, CI_ARG_FLAG, &chat, "",
         "the prompt is a user message: render it with the chat template"},
        {"--system", NULL, CI_ARG_STR, &system, "TEXT", "--chat: a system message first"},
        {"--chat-template", NULL, CI_ARG_STR, &tmpl, "FILE",
         "--chat: this Jinja template instead of the model's"},
        CI_SAMPLING_FLAG_ARGS(sf),
        {"--json", NULL, CI_ARG_FLAG, &as_json, "",
         "print one JSON object with ids, text, timings"},
        {"--prompts-file", NULL, CI_ARG_STR, &prompts_file, "F.jsonl",
         "batch mode: one JSON request per line -> one JSON result per line"},
        {"--stats", NULL, CI_ARG_FLAG, &stats, "",
         "batch mode: engine statistics (JSON) on stderr"},
        CI_ENGINE_FLAG_ARGS(ef),
    };
    const char *usage =
        "usage: cinfer generate -m DIR (-p TEXT | -p - | -f FILE) [--chat [--system TEXT]] "
        "[options]\n"
        "       cinfer generate -m DIR --prompts-file F.jsonl [options] [--stats]\n"
        "Generates a continuation of the prompt and streams it to stdout. With\n"
        "--prompts-file, runs every line ({\"prompt\": ...} or {\"prompt_token_ids\": [...]},\n"
        "optional max_tokens, temperature, top_p, top_k, min_p, seed, stop, n, ignore_eos,\n"
        "logprobs, presence_penalty, frequency_penalty, repetition_penalty, min_tokens,\n"
        "priority) through the batching engine and prints one JSON line per input line.";
    ci_status s = ci_ok();
    ci_args_result r = ci_args_parse(usage, args, sizeof args / sizeof args[0], argc, argv, &s);
    if (r == CI_ARGS_HELP) return 0;
    if (r == CI_ARGS_ERROR) return ci_cli_fail(s);
    if (!model_dir) return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "generate: -m DIR is required"));
    if ((system || tmpl) && !chat)
        return ci_cli_fail(
            ci_errorf(CI_ERR_INVALID, "generate: --system and --chat-template need --chat"));
    ci_engine_sampling sp;
    s = ci_sampling_flags_params(&sf, &sp);
    if (s.code) return ci_cli_fail(s);
    if (prompts_file) {
        if (prompt || prompt_file || chat)
            return ci_cli_fail(
                ci_errorf(CI_ERR_INVALID, "generate: --prompts-file takes no -p, -f or --chat"));
        ci_engine_config ec;
        s = ci_engine_flags_config(&ef, model_dir, &ec);
        if (s.code) return ci_cli_fail(s);
        return ci_generate_prompts_file(&ec, prompts_file, &sp, stats);
    }
    if (sp.seed < 0) sp.seed = (int64_t)time(NULL);
    long n = sf.max_tokens;
    ci_engine_config ec;
    s = ci_engine_flags_config(&ef, model_dir, &ec);
    if (s.code) return ci_cli_fail(s);
    char *prompt_text = NULL;
    bool add_special = true;
    s = read_prompt(prompt, prompt_file, chat, system, model_dir, tmpl, &prompt_text, &add_special);
    if (s.code) return ci_cli_fail(s);

    double t_load = ci_now();
    ci_tokenizer *tok = NULL;
    ci_engine *e = NULL;
    int32_t *prompt_ids = NULL, *out = NULL;
    size_t n_prompt = 0;
    char *text = NULL;
    size_t text_len = 0, text_cap = 0;
    int n_gen = 0;
    ci_finish_reason fr = CI_FINISH_NONE;
    double load_s = 0, prefill_s = 0, decode_s = 0;

    s = ci_tokenizer_load(model_dir, &tok);
    if (!s.code) {
        s = ci_tokenizer_encode(tok, prompt_text, strlen(prompt_text), add_special, &prompt_ids,
                                &n_prompt);
        if (s.code) s = ci_status_wrap(s, "prompt");
    }
    if (!s.code && n_prompt == 0) s = ci_errorf(CI_ERR_INVALID, "prompt encodes to no tokens");
    if (!s.code) {
        /* one request: without a size given, the cache holds just it */
        if (ec.kv_cache_tokens == 0 && ec.kv_cache_memory == 0)
            ec.kv_cache_tokens = (int64_t)n_prompt + n;
        if (ec.max_num_batched_tokens < (int)n_prompt &&
            ef.max_num_batched_tokens == CI_FLAG_DEVICE_DEFAULT)
            ec.max_num_batched_tokens = (int)n_prompt;
        s = ci_cli_engine_create(&ec, &e);
    }
    if (!s.code) {
        int ctx = ci_engine_max_model_len(e);
        if ((long)n_prompt >= ctx)
            s = ci_errorf(CI_ERR_INVALID, "prompt has %zu tokens; the model's context is %d",
                          n_prompt, ctx);
        else if ((long)n_prompt + n > ctx)
            n = ctx - (long)n_prompt; /* the context bounds generation: finish_reason=length */
    }
    load_s = ci_now() - t_load;
    if (!s.code) {
        out = malloc(sizeof(int32_t) * (size_t)n);
        if (!out) s = ci_errorf(CI_ERR_NOMEM, "out of memory");
    }
    if (!s.code) {
        sp.max_tokens = (int)n;
        int64_t id;
        double t0 = ci_now(), t1 = 0;
        s = ci_engine_add_request(e, prompt_ids, (int)n_prompt, &sp, 0, &id);
        while (!s.code && ci_engine_has_unfinished(e)) {
            const ci_engine_output *o;
            int k;
            s = ci_engine_step(e, &o, &k);
            for (int i = 0; !s.code && i < k; i++) {
                for (int t = 0; t < o[i].num_token_ids && n_gen < n; t++) {
                    if (n_gen == 0) t1 = ci_now();
                    out[n_gen++] = o[i].token_ids[t];
                }
                if (o[i].text_len) {
                    if (!as_json) {
                        fwrite(o[i].text, 1, o[i].text_len, stdout);
                        fflush(stdout);
                    }
                    if (text_len + o[i].text_len + 1 > text_cap) {
                        size_t nc = text_cap ? text_cap * 2 : 256;
                        while (nc < text_len + o[i].text_len + 1)
                            nc *= 2;
                        char *p = realloc(text, nc);
                        if (!p) {
                            s = ci_errorf(CI_ERR_NOMEM, "out of memory");
                            break;
                        }
                        text = p;
                        text_cap = nc;
                    }
                    memcpy(text + text_len, o[i].text, o[i].text_len);
                    text_len += o[i].text_len;
                }
                if (o[i].finish_reason) fr = o[i].finish_reason;
            }
        }
        double t2 = ci_now();
        if (t1 == 0) t1 = t2;
        prefill_s = t1 - t0;
        decode_s = t2 - t1;
        if (!s.code && !as_json) fputc('\n', stdout);
    }
    double prefill_tps = prefill_s > 0 ? (double)n_prompt / prefill_s : 0;
    double decode_tps = decode_s > 0 && n_gen > 1 ? (n_gen - 1) / decode_s : 0;
    if (!s.code && as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "prompt_tokens", ids_json(prompt_ids, (int)n_prompt));
        json_object_set_new(o, "tokens", ids_json(out, n_gen));
        json_object_set_new(o, "text", json_stringn(text ? text : "", text_len));
        json_object_set_new(o, "finish_reason",
                            json_string(fr == CI_FINISH_STOP ? "stop" : "length"));
        json_t *t = json_object();
        json_object_set_new(t, "load_s", json_real(load_s));
        json_object_set_new(t, "prefill_s", json_real(prefill_s));
        json_object_set_new(t, "decode_s", json_real(decode_s));
        json_object_set_new(t, "prefill_tokens_per_s", json_real(prefill_tps));
        json_object_set_new(t, "decode_tokens_per_s", json_real(decode_tps));
        json_object_set_new(o, "timings", t);
        char *dump = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        puts(dump ? dump : "null");
        free(dump);
        json_decref(o);
    } else if (!s.code) {
        fprintf(stderr,
                "[%zu prompt tokens: %.1f tok/s prefill | %d generated: %.1f tok/s decode]\n",
                n_prompt, prefill_tps, n_gen, decode_tps);
    }
    free(text);
    free(out);
    free(prompt_ids);
    free(prompt_text);
    ci_engine_destroy(e);
    ci_tokenizer_free(tok);
    return s.code ? ci_cli_fail(s) : 0;
}
