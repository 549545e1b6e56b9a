/* cmd_bench_latency.c — `cinfer bench latency`, in the manner of vLLM's
 * benchmark_latency: one batch of --batch-size random prompts of
 * --input-len tokens, each generating exactly --output-len tokens (greedy,
 * ignore_eos), run --num-iters times after --num-iters-warmup. Reports the
 * batch's time to first token (the step that produced every first token),
 * the time per decode step, output tok/s, and end-to-end latency
 * percentiles over the iterations. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/common.h"
#include "cli/engine_flags.h"
#include "engine/engine.h"
#include "util/progress.h"

typedef struct iter_result {
    double e2e, ttft; /* seconds */
} iter_result;

/* One batch: B requests queued at once, stepped until all finish. */
static ci_status run_batch(ci_engine *e, long B, long I, long O, uint64_t *rng, iter_result *r) {
    int64_t *rid = malloc(sizeof(int64_t) * (size_t)B);
    char *got = calloc((size_t)B, 1);
    ci_status s = rid && got ? ci_ok() : ci_errorf(CI_ERR_NOMEM, "out of memory");
    double t0 = ci_now();
    if (!s.code) s = ci_cli_add_random_requests(e, B, I, O, rng, rid, NULL);
    long firsts = 0;
    r->ttft = 0;
    while (!s.code && ci_engine_has_unfinished(e)) {
        const ci_engine_output *o;
        int k;
        s = ci_engine_step(e, &o, &k);
        for (int i = 0; !s.code && i < k && firsts < B; i++) {
            if (o[i].num_token_ids == 0) continue;
            long j = 0; /* ids are usually consecutive: try the offset first */
            int64_t d = o[i].request_id - rid[0];
            if (d >= 0 && d < B && rid[d] == o[i].request_id)
                j = (long)d;
            else
                while (j < B && rid[j] != o[i].request_id)
                    j++;
            if (j < B && !got[j]) {
                got[j] = 1;
                if (++firsts == B) r->ttft = ci_now() - t0;
            }
        }
    }
    r->e2e = ci_now() - t0;
    free(rid);
    free(got);
    return s;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int n, double p) {
    double idx = p / 100.0 * (n - 1);
    int lo = (int)idx, hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - lo);
}

int cmd_bench_latency(int argc, char **argv) {
    const char *model_dir = NULL;
    long batch = 1, input_len = 128, output_len = 256, iters = 3, warmup = 1;
    bool as_json = false;
    ci_engine_flags ef = ci_engine_flags_default();
    const ci_arg args[] = {
        {"--model", "-m", CI_ARG_STR, &model_dir, "DIR", "Hugging Face model directory"},
        {"--batch-size", NULL, CI_ARG_INT, &batch, "B", "requests in the batch (default 1)"},
        {"--input-len", NULL, CI_ARG_INT, &input_len, "I", "prompt tokens (default 128)"},
        {"--output-len", NULL, CI_ARG_INT, &output_len, "O", "generated tokens (default 256)"},
        {"--num-iters", NULL, CI_ARG_INT, &iters, "N", "timed batches (default 3)"},
        {"--num-iters-warmup", NULL, CI_ARG_INT, &warmup, "N", "untimed batches first (default 1)"},
        {"--json", NULL, CI_ARG_FLAG, &as_json, "", "print one JSON object"},
        CI_ENGINE_FLAG_ARGS(ef),
    };
    const char *usage =
        "usage: cinfer bench latency -m DIR [--batch-size B] [--input-len I] [--output-len O]\n"
        "       [--num-iters N] [--num-iters-warmup W] [--json] [engine options]\n"
        "Latency of one batch of random prompts (greedy, ignore_eos): TTFT, time per output\n"
        "token, tok/s and end-to-end percentiles over the iterations.";
    ci_status s = ci_ok();
    ci_args_result r = ci_args_parse(usage, args, sizeof args / sizeof args[0], argc, argv, &s);
    if (r == CI_ARGS_HELP) return 0;
    if (r == CI_ARGS_ERROR) return ci_cli_fail(s);
    if (!model_dir) return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "bench: -m DIR is required"));
    if (batch < 1 || batch > 65536 || input_len < 1 || output_len < 1 || iters < 1 || warmup < 0)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID,
                                     "--batch-size, --input-len, --output-len and --num-iters "
                                     "must be >= 1, --num-iters-warmup >= 0"));
    ci_engine_config ec;
    s = ci_engine_flags_config(&ef, model_dir, &ec);
    if (s.code) return ci_cli_fail(s);
    if (ec.max_num_seqs < batch) ec.max_num_seqs = (int)batch;
    ci_engine *e = NULL;
    s = ci_cli_engine_create(&ec, &e);
    if (s.code) return ci_cli_fail(s);
    if (input_len + output_len > ci_engine_max_model_len(e)) {
        ci_engine_destroy(e);
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "input + output length %ld exceeds %d",
                                     input_len + output_len, ci_engine_max_model_len(e)));
    }
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    iter_result *res = calloc((size_t)iters, sizeof *res);
    double *e2e = calloc((size_t)iters, sizeof *e2e);
    if (!res || !e2e) s = ci_errorf(CI_ERR_NOMEM, "out of memory");
    for (long i = 0; !s.code && i < warmup; i++) {
        iter_result w;
        s = run_batch(e, batch, input_len, output_len, &rng, &w);
    }
    double ttft = 0, tpot = 0;
    for (long i = 0; !s.code && i < iters; i++) {
        s = run_batch(e, batch, input_len, output_len, &rng, &res[i]);
        e2e[i] = res[i].e2e;
        ttft += res[i].ttft / iters;
        if (output_len > 1) tpot += (res[i].e2e - res[i].ttft) / (output_len - 1) / iters;
    }
    ci_engine_metrics m = ci_engine_get_metrics(e);
    ci_engine_destroy(e);
    double ns = m.num_steps > 0 ? (double)m.num_steps : 1.0;
    if (s.code) {
        free(res);
        free(e2e);
        return ci_cli_fail(s);
    }
    qsort(e2e, (size_t)iters, sizeof *e2e, cmp_double);
    double mean = 0;
    for (long i = 0; i < iters; i++)
        mean += e2e[i] / iters;
    double out_tps = batch * output_len / mean;
    double decode_tps = tpot > 0 ? batch / tpot : 0;
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "batch_size", json_integer(batch));
        json_object_set_new(o, "input_len", json_integer(input_len));
        json_object_set_new(o, "output_len", json_integer(output_len));
        json_object_set_new(o, "num_iters", json_integer(iters));
        json_object_set_new(o, "ttft_ms", json_real(1000 * ttft));
        json_object_set_new(o, "tpot_ms", json_real(1000 * tpot));
        json_object_set_new(o, "decode_tokens_per_s", json_real(decode_tps));
        json_object_set_new(o, "output_tokens_per_s", json_real(out_tps));
        json_object_set_new(o, "e2e_mean_s", json_real(mean));
        json_object_set_new(o, "e2e_p50_s", json_real(pct(e2e, (int)iters, 50)));
        json_object_set_new(o, "e2e_p90_s", json_real(pct(e2e, (int)iters, 90)));
        json_object_set_new(o, "e2e_p99_s", json_real(pct(e2e, (int)iters, 99)));
        json_t *ph = json_object();
        json_object_set_new(ph, "schedule_ms", json_real(1000 * m.time_schedule_s / ns));
        json_object_set_new(ph, "forward_ms", json_real(1000 * m.time_forward_s / ns));
        json_object_set_new(ph, "sample_ms", json_real(1000 * m.time_sample_s / ns));
        json_object_set_new(ph, "output_ms", json_real(1000 * m.time_output_s / ns));
        json_object_set_new(o, "step_phases_per_step", ph);
        json_object_set_new(o, "graph_steps", json_integer(m.graph_steps));
        json_object_set_new(o, "ahead_steps", json_integer(m.ahead_steps));
        json_object_set_new(o, "spec_verify_steps", json_integer(m.spec_verify_steps));
        json_object_set_new(o, "spec_draft_tokens", json_integer(m.spec_draft_tokens));
        json_object_set_new(o, "spec_accepted_tokens", json_integer(m.spec_accepted_tokens));
        json_object_set_new(o, "draft_ms_per_step", json_real(1000 * m.time_draft_s / ns));
        json_object_set_new(o, "eager_steps", json_integer(m.eager_steps));
        json_object_set_new(o, "max_model_len", json_integer(m.max_model_len));
        char *d = json_dumps(o, JSON_COMPACT);
        puts(d ? d : "null");
        free(d);
        json_decref(o);
    } else {
        printf("batch %ld, %ld in / %ld out, %ld iterations (+%ld warm-up)\n", batch, input_len,
               output_len, iters, warmup);
        printf("%-26s %10.2f\n", "TTFT (ms)", 1000 * ttft);
        printf("%-26s %10.3f\n", "time per output token (ms)", 1000 * tpot);
        printf("%-26s %10.1f\n", "decode tok/s", decode_tps);
        printf("%-26s %10.1f\n", "output tok/s (e2e)", out_tps);
        printf("%-26s %10.3f / %.3f / %.3f / %.3f\n", "e2e s mean/p50/p90/p99", mean,
               pct(e2e, (int)iters, 50), pct(e2e, (int)iters, 90), pct(e2e, (int)iters, 99));
        printf("%-26s schedule %.3f, forward %.3f, sample %.3f, output %.3f\n", "per step (ms)",
               1000 * m.time_schedule_s / ns, 1000 * m.time_forward_s / ns,
               1000 * m.time_sample_s / ns, 1000 * m.time_output_s / ns);
        if (m.spec_verify_steps > 0) {
            printf("%-26s %lld drafted, %lld accepted (%.1f%%), %.2f tokens per verify step; "
                   "draft model %.3f ms per step\n",
                   "speculative", (long long)m.spec_draft_tokens, (long long)m.spec_accepted_tokens,
                   100.0 * (double)m.spec_accepted_tokens / (double)m.spec_draft_tokens,
                   1.0 + (double)m.spec_accepted_tokens / (double)m.spec_verify_steps,
                   1000 * m.time_draft_s / ns);
            printf("%-26s", "accepted by position");
            for (int k = 0; k < 16 && m.spec_accepted_at[k] > 0; k++)
                printf(" %.2f", (double)m.spec_accepted_at[k] / (double)m.spec_verify_steps);
            printf("\n");
        }
        printf("%-26s %lld graph replays, %lld eager (%d graphs captured; context %d)\n",
               "forwards", (long long)m.graph_steps, (long long)m.eager_steps, m.num_graphs,
               m.max_model_len);
        if (m.ahead_steps > 0)
            printf("%-26s %lld of %lld steps launched while the one before ran\n", "plan-ahead",
                   (long long)m.ahead_steps, (long long)m.num_steps);
    }
    free(res);
    free(e2e);
    return 0;
}
