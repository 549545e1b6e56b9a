/* cmd_perplexity.c — `cinfer perplexity`: mean NLL over fixed windows, run
 * through the batching engine (every window is one request whose prompt
 * logprobs are the per-token log-likelihoods), so the engine options —
 * device, dtype, batching, KV sizing — apply as in generate and serve. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "cli/args.h"
#include "cli/common.h"
#include "cli/engine_flags.h"
#include "engine/engine.h"

/* Queues window w of ids (prompt logprobs only: one greedy token). */
static ci_status add_window(ci_engine *e, const int32_t *ids, int len, int64_t *id) {
    ci_engine_sampling sp = ci_engine_default_sampling();
    sp.temperature = 0.0f;
    sp.max_tokens = 1;
    sp.ignore_eos = 1;
    sp.prompt_logprobs = 0;
    return ci_engine_add_request(e, ids, len, &sp, 0, id);
}

int cmd_perplexity(int argc, char **argv) {
    const char *model_dir = NULL, *file = NULL;
    long ctx = 512;
    ci_engine_flags ef = ci_engine_flags_default();
    const ci_arg args[] = {
        {"--model", "-m", CI_ARG_STR, &model_dir, "DIR", "Hugging Face model directory"},
        {"--file", "-f", CI_ARG_STR, &file, "FILE", "UTF-8 text to score"},
        {"--ctx", NULL, CI_ARG_INT, &ctx, "N", "window length in tokens (default 512)"},
        CI_ENGINE_FLAG_ARGS(ef),
    };
    const char *usage =
        "usage: cinfer perplexity -m DIR -f FILE [--ctx N] [engine options]\n"
        "Encodes FILE without special tokens, cuts the ids into consecutive non-overlapping\n"
        "windows of N tokens (the last may be shorter), runs each from an empty cache and\n"
        "prints the mean negative log-likelihood of every token predicted inside a window.";
    ci_status s = ci_ok();
    ci_args_result r = ci_args_parse(usage, args, sizeof args / sizeof args[0], argc, argv, &s);
    if (r == CI_ARGS_HELP) return 0;
    if (r == CI_ARGS_ERROR) return ci_cli_fail(s);
    if (!model_dir || !file)
        return ci_cli_fail(
            ci_errorf(CI_ERR_INVALID, "perplexity: -m DIR and -f FILE are required"));
    if (ctx < 2 || ctx > (1 << 24))
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--ctx must be in [2, 16777216]"));
    /* windows are independent: no prefix to share */
    ef.no_prefix_caching = true;
    ci_engine_config ec;
    s = ci_engine_flags_config(&ef, model_dir, &ec);
    if (s.code) return ci_cli_fail(s);

    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    ci_engine *e = NULL;
    s = ci_read_path(file, &text, &len);
    if (!s.code) s = ci_cli_engine_create(&ec, &e);
    if (!s.code && !ci_engine_tokenizer(e))
        s = ci_errorf(CI_ERR_INVALID, "perplexity: the model has no tokenizer");
    if (!s.code) {
        s = ci_tokenizer_encode(ci_engine_tokenizer(e), text, len, false, &ids, &n);
        if (s.code) s = ci_status_wrap(s, "%s", file);
    }
    if (!s.code && n < 2) s = ci_errorf(CI_ERR_INVALID, "%s: fewer than 2 tokens to score", file);
    /* a window of ctx tokens plus the one token each request samples */
    if (!s.code && ctx + 1 > ci_engine_max_model_len(e))
        s = ci_errorf(CI_ERR_INVALID, "--ctx %ld: the context is %d tokens (at most %d)", ctx,
                      ci_engine_max_model_len(e), ci_engine_max_model_len(e) - 1);
    double nll = 0;
    long count = 0, queued = 0, done = 0;
    for (size_t off = 0; !s.code && off < n; off += (size_t)ctx) {
        int w = n - off < (size_t)ctx ? (int)(n - off) : (int)ctx;
        if (w < 2) break; /* a lone last token predicts nothing */
        int64_t id;
        s = add_window(e, ids + off, w, &id);
        queued++;
    }
    while (!s.code && ci_engine_has_unfinished(e)) {
        const ci_engine_output *o;
        int no;
        s = ci_engine_step(e, &o, &no);
        for (int i = 0; !s.code && i < no; i++) {
            for (int j = 0; j < o[i].num_prompt_logprobs; j++) {
                nll -= (double)o[i].prompt_logprobs[j].logprob;
                count++;
            }
            if (o[i].finish_reason == CI_FINISH_ERROR)
                s = ci_errorf(CI_ERR_INTERNAL, "perplexity: %s", o[i].error);
            else if (o[i].finish_reason)
                done++;
        }
    }
    if (!s.code && done != queued)
        s = ci_errorf(CI_ERR_INTERNAL, "perplexity: %ld of %ld windows finished", done, queued);
    if (!s.code) {
        nll /= (double)count;
        printf("mean_nll=%.6f ppl=%.4f tokens=%ld\n", nll, exp(nll), count);
    }
    free(ids);
    free(text);
    ci_engine_destroy(e);
    return s.code ? ci_cli_fail(s) : 0;
}
