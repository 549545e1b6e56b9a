/* cmd_perplexity.c — `cinfer perplexity`: mean NLL over fixed windows. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "cli/args.h"
#include "cli/common.h"
#include "cli/load.h"
#include "engine/generate.h"

int cmd_perplexity(int argc, char **argv) {
    const char *model_dir = NULL, *file = NULL, *device = "cpu";
    long ctx = 512, threads = 0;
    const ci_arg args[] = {
        {"--model", "-m", CI_ARG_STR, &model_dir, "DIR", "Hugging Face model directory"},
        {"--file", "-f", CI_ARG_STR, &file, "FILE", "UTF-8 text to score"},
        {"--ctx", NULL, CI_ARG_INT, &ctx, "N", "window length in tokens (default 512)"},
        {"--device", NULL, CI_ARG_STR, &device, "NAME", "backend: cpu (default) or cuda"},
        {"--threads", "-t", CI_ARG_INT, &threads, "N", "CPU threads (default: all cores)"},
    };
    const char *usage =
        "usage: cinfer perplexity -m DIR -f FILE [--ctx N]\n"
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
    if (ctx < 2) return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--ctx must be at least 2"));

    ci_loaded L = {0};
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    s = ci_read_path(file, &text, &len);
    if (!s.code) s = ci_load_tokenizer(model_dir, &L);
    if (!s.code) {
        s = ci_tokenizer_encode(L.tok, text, len, false, &ids, &n);
        if (s.code) s = ci_status_wrap(s, "%s", file);
    }
    if (!s.code && n < 2) s = ci_errorf(CI_ERR_INVALID, "%s: fewer than 2 tokens to score", file);
    if (!s.code) s = ci_load_model(model_dir, device, (int)threads, &L);
    if (!s.code && ctx > L.model->cfg.max_position_embeddings)
        s = ci_errorf(CI_ERR_INVALID, "--ctx %ld exceeds the model's context %d", ctx,
                      L.model->cfg.max_position_embeddings);
    double nll = 0;
    long count = 0;
    if (!s.code) s = ci_perplexity(L.model, ids, (int)n, (int)ctx, &nll, &count);
    if (!s.code) printf("mean_nll=%.6f ppl=%.4f tokens=%ld\n", nll, exp(nll), count);
    free(ids);
    free(text);
    ci_loaded_free(&L);
    return s.code ? ci_cli_fail(s) : 0;
}
