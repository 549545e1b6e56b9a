/* cmd_generate.c — `cinfer generate`: one prompt, streamed continuation. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/common.h"
#include "cli/engine_flags.h"
#include "cli/generate_batch.h"
#include "cli/load.h"
#include "engine/generate.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    ci_detok_stream *stream;
    bool print;
    ci_status err;
} stream_ctx;

static int on_token(int32_t token, int index, void *user) {
    stream_ctx *c = user;
    if (!c->print) return 0;
    const char *text;
    size_t len;
    c->err = ci_detok_stream_put(c->stream, token, &text, &len);
    if (c->err.code) return 1;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static json_t *ids_json(const int32_t *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static ci_status validate(long n, double temperature, long top_k, double top_p, double min_p) {
    if (n < 1) return ci_errorf(CI_ERR_INVALID, "-n must be at least 1 (got %ld)", n);
    if (temperature < 0)
        return ci_errorf(CI_ERR_INVALID, "--temperature must be >= 0 (got %g)", temperature);
    if (top_k < 0) return ci_errorf(CI_ERR_INVALID, "--top-k must be >= 0 (got %ld)", top_k);
    if (!(top_p > 0 && top_p <= 1))
        return ci_errorf(CI_ERR_INVALID, "--top-p must be in (0, 1] (got %g)", top_p);
    if (!(min_p >= 0 && min_p <= 1))
        return ci_errorf(CI_ERR_INVALID, "--min-p must be in [0, 1] (got %g)", min_p);
    return ci_ok();
}

int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL, *prompts_file = NULL;
    long n = 128, top_k = 0, seed = -1;
    double temperature = 1.0, top_p = 1.0, min_p = 0.0;
    bool as_json = false, ignore_eos = false, stats = false;
    ci_engine_flags ef = ci_engine_flags_default();
    const ci_arg args[] = {
        {"--model", "-m", CI_ARG_STR, &model_dir, "DIR", "Hugging Face model directory"},
        {"--prompt", "-p", CI_ARG_STR, &prompt, "TEXT", "prompt text (UTF-8)"},
        {"--max-tokens", "-n", CI_ARG_INT, &n, "N", "tokens to generate (default 128)"},
        {"--temperature", NULL, CI_ARG_FLOAT, &temperature, "T", "0 = greedy (default 1.0)"},
        {"--top-k", NULL, CI_ARG_INT, &top_k, "K", "keep the K most likely tokens (0 = off)"},
        {"--top-p", NULL, CI_ARG_FLOAT, &top_p, "P", "nucleus sampling mass (default 1 = off)"},
        {"--min-p", NULL, CI_ARG_FLOAT, &min_p, "P", "drop tokens below P * max prob (0 = off)"},
        {"--seed", NULL, CI_ARG_INT, &seed, "S", "sampling seed (default: from the clock)"},
        {"--ignore-eos", NULL, CI_ARG_FLAG, &ignore_eos, "", "do not stop at EOS"},
        {"--json", NULL, CI_ARG_FLAG, &as_json, "", "print one JSON object with ids, text, timings"},
        {"--prompts-file", NULL, CI_ARG_STR, &prompts_file, "F.jsonl",
         "batch mode: one JSON request per line -> one JSON result per line"},
        {"--stats", NULL, CI_ARG_FLAG, &stats, "", "batch mode: engine statistics (JSON) on stderr"},
        CI_ENGINE_FLAG_ARGS(ef),
    };
    const char *usage =
        "usage: cinfer generate -m DIR -p TEXT [options]\n"
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
    if (prompts_file) {
        if (prompt)
            return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "generate: give -p or --prompts-file, not both"));
        s = validate(n, temperature, top_k, top_p, min_p);
        if (s.code) return ci_cli_fail(s);
        ci_engine_config ec;
        s = ci_engine_flags_config(&ef, model_dir, &ec);
        if (s.code) return ci_cli_fail(s);
        ci_batch_defaults d = {.max_tokens = (int)n, .temperature = temperature, .top_k = (int)top_k,
                               .top_p = top_p, .min_p = min_p, .seed = seed, .ignore_eos = ignore_eos};
        return ci_generate_prompts_file(&ec, prompts_file, &d, stats);
    }
    long block_size = ef.block_size, threads = ef.threads;
    const char *device = ef.device;
    if (!prompt) return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "generate: -p TEXT is required"));
    if (!*prompt) return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "prompt is empty"));
    if (block_size < 1 || block_size > 1024)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--block-size must be in [1, 1024]"));
    s = validate(n, temperature, top_k, top_p, min_p);
    if (s.code) return ci_cli_fail(s);

    ci_loaded L = {0};
    int32_t *prompt_ids = NULL, *out = NULL;
    size_t n_prompt = 0;
    char *text = NULL;
    size_t text_len = 0;
    stream_ctx sc = {.print = !as_json, .err = ci_ok()};
    ci_generate_stats st = {0};

    s = ci_load_tokenizer(model_dir, &L);
    if (!s.code) {
        s = ci_tokenizer_encode(L.tok, prompt, strlen(prompt), true, &prompt_ids, &n_prompt);
        if (s.code) s = ci_status_wrap(s, "prompt");
    }
    if (!s.code && n_prompt == 0) s = ci_errorf(CI_ERR_INVALID, "prompt encodes to no tokens");
    if (!s.code) s = ci_load_model(model_dir, device, (int)threads, &L);
    if (!s.code) {
        int ctx = L.model->cfg.max_position_embeddings;
        if ((long)n_prompt >= ctx)
            s = ci_errorf(CI_ERR_INVALID, "prompt has %zu tokens; the model's context is %d",
                          n_prompt, ctx);
        else if ((long)n_prompt + n > ctx)
            n = ctx - (long)n_prompt; /* the context bounds generation: finish_reason=length */
    }
    if (!s.code) s = ci_detok_stream_create(L.tok, true, &sc.stream);
    if (!s.code) {
        out = malloc(sizeof(int32_t) * (size_t)n);
        ci_generate_params gp = {0};
        gp.max_new_tokens = (int)n;
        gp.block_size = (int)block_size;
        gp.sampling.temperature = (float)temperature;
        gp.sampling.top_k = (int)top_k;
        gp.sampling.top_p = (float)top_p;
        gp.sampling.min_p = (float)min_p;
        gp.sampling.seed = seed >= 0 ? (uint64_t)seed : (uint64_t)time(NULL);
        gp.stop_ids = ignore_eos ? NULL : L.stop_ids;
        gp.num_stop_ids = ignore_eos ? 0 : L.num_stop_ids;
        gp.on_token = on_token;
        gp.user = &sc;
        s = ci_generate(L.model, prompt_ids, (int)n_prompt, &gp, out, &st);
        if (!s.code && sc.err.code) s = sc.err;
    }
    if (!s.code && !as_json) {
        const char *tail;
        size_t tail_len;
        s = ci_detok_stream_finish(sc.stream, &tail, &tail_len);
        if (!s.code) {
            fwrite(tail, 1, tail_len, stdout);
            fputc('\n', stdout);
        }
    }
    /* the reported text leaves out the stop token and special tokens */
    int n_gen = st.generated_tokens;
    int n_text = st.stopped == 1 ? n_gen - 1 : n_gen;
    if (!s.code) s = ci_tokenizer_decode(L.tok, out, (size_t)n_text, true, &text, &text_len);
    double prefill_tps = st.prefill_s > 0 ? st.prompt_tokens / st.prefill_s : 0;
    double decode_tps = st.decode_s > 0 && n_gen > 1 ? (n_gen - 1) / st.decode_s : 0;
    if (!s.code && as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "prompt_tokens", ids_json(prompt_ids, (int)n_prompt));
        json_object_set_new(o, "tokens", ids_json(out, n_gen));
        json_object_set_new(o, "text", json_stringn(text, text_len));
        json_object_set_new(o, "finish_reason", json_string(st.stopped == 1 ? "stop" : "length"));
        json_t *t = json_object();
        json_object_set_new(t, "load_s", json_real(L.load_s));
        json_object_set_new(t, "prefill_s", json_real(st.prefill_s));
        json_object_set_new(t, "decode_s", json_real(st.decode_s));
        json_object_set_new(t, "prefill_tokens_per_s", json_real(prefill_tps));
        json_object_set_new(t, "decode_tokens_per_s", json_real(decode_tps));
        json_object_set_new(o, "timings", t);
        char *dump = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        puts(dump ? dump : "null");
        free(dump);
        json_decref(o);
    } else if (!s.code) {
        fprintf(stderr, "[%d prompt tokens: %.1f tok/s prefill | %d generated: %.1f tok/s decode]\n",
                st.prompt_tokens, prefill_tps, n_gen, decode_tps);
    }
    free(text);
    free(out);
    free(prompt_ids);
    ci_detok_stream_free(sc.stream);
    ci_loaded_free(&L);
    return s.code ? ci_cli_fail(s) : 0;
}
