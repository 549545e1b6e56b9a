/* cmd_bench.c — `cinfer bench throughput`: offline throughput in the style
 * of vLLM's benchmark_throughput: all requests queued at once (random token
 * prompts of --input-len, or a JSONL dataset), ignore_eos, greedy... unless
 * the dataset says otherwise; reports requests/s and token rates. */
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

/* Adds the dataset's requests; returns how many were queued. */
static ci_status add_dataset(ci_engine *e, const char *path, long output_len, long *num) {
    char *buf;
    size_t len;
    CI_TRY(ci_read_path(path, &buf, &len));
    ci_status s = ci_ok();
    size_t pos = 0;
    long line = 0;
    while (!s.code && pos < len) {
        size_t end = pos;
        while (end < len && buf[end] != '\n')
            end++;
        line++;
        json_error_t je;
        json_t *o = end > pos ? json_loadb(buf + pos, end - pos, 0, &je) : NULL;
        if (end > pos && !o) {
            int blank = 1;
            for (size_t i = pos; i < end; i++)
                if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\r') blank = 0;
            if (!blank) s = ci_errorf(CI_ERR_FORMAT, "%s:%ld: %s", path, line, je.text);
        }
        if (o) {
            ci_engine_sampling sp = ci_engine_default_sampling();
            sp.temperature = 0.0f;
            sp.ignore_eos = 1;
            sp.max_tokens = (int)output_len;
            json_t *mt = json_object_get(o, "max_tokens");
            if (!mt) mt = json_object_get(o, "output_len");
            if (json_is_integer(mt)) sp.max_tokens = (int)json_integer_value(mt);
            json_t *p = json_object_get(o, "prompt"), *ids = json_object_get(o, "prompt_token_ids");
            int64_t id;
            if (json_is_array(ids)) {
                size_t n = json_array_size(ids);
                int32_t *t = malloc(sizeof(int32_t) * (n ? n : 1));
                for (size_t i = 0; t && i < n; i++)
                    t[i] = (int32_t)json_integer_value(json_array_get(ids, i));
                s = t ? ci_engine_add_request(e, t, (int)n, &sp, 0, &id)
                      : ci_errorf(CI_ERR_NOMEM, "out of memory");
                free(t);
            } else if (json_is_string(p)) {
                s = ci_engine_add_request_text(e, json_string_value(p), &sp, 0, &id);
            } else {
                s = ci_errorf(CI_ERR_FORMAT, "%s:%ld: needs \"prompt\" or \"prompt_token_ids\"",
                              path, line);
            }
            if (s.code)
                s = ci_status_wrap(s, "%s:%ld", path, line);
            else
                (*num)++;
            json_decref(o);
        }
        pos = end + 1;
    }
    free(buf);
    return s;
}

static int bench_throughput(int argc, char **argv) {
    const char *model_dir = NULL, *dataset = NULL;
    long num_prompts = 64, input_len = 128, output_len = 64, seed = 0;
    bool as_json = false;
    ci_engine_flags ef = ci_engine_flags_default();
    const ci_arg args[] = {
        {"--model", "-m", CI_ARG_STR, &model_dir, "DIR", "Hugging Face model directory"},
        {"--num-prompts", NULL, CI_ARG_INT, &num_prompts, "N", "random requests (default 64)"},
        {"--input-len", NULL, CI_ARG_INT, &input_len, "I",
         "prompt tokens per random request (default 128)"},
        {"--output-len", NULL, CI_ARG_INT, &output_len, "O",
         "generated tokens per request (default 64)"},
        {"--dataset", NULL, CI_ARG_STR, &dataset, "F.jsonl",
         "requests from a file instead (prompt or prompt_token_ids)"},
        {"--seed", NULL, CI_ARG_INT, &seed, "S", "random prompt seed (default 0)"},
        {"--json", NULL, CI_ARG_FLAG, &as_json, "", "print one JSON object"},
        CI_ENGINE_FLAG_ARGS(ef),
    };
    const char *usage =
        "usage: cinfer bench throughput -m DIR [--num-prompts N --input-len I --output-len O | "
        "--dataset F.jsonl] [--seed S] [--json] [engine options]\n"
        "Offline throughput: every request queued at once, ignore_eos, greedy.";
    ci_status s = ci_ok();
    ci_args_result r = ci_args_parse(usage, args, sizeof args / sizeof args[0], argc, argv, &s);
    if (r == CI_ARGS_HELP) return 0;
    if (r == CI_ARGS_ERROR) return ci_cli_fail(s);
    if (!model_dir) return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "bench: -m DIR is required"));
    if (num_prompts < 1 || num_prompts > 1000000)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--num-prompts must be in [1, 1000000]"));
    if (input_len < 1 || output_len < 1)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--input-len and --output-len must be >= 1"));
    ci_engine_config ec;
    s = ci_engine_flags_config(&ef, model_dir, &ec);
    if (s.code) return ci_cli_fail(s);
    ci_engine *e = NULL;
    s = ci_cli_engine_create(&ec, &e);
    if (s.code) return ci_cli_fail(s);
    double t0 = ci_now();
    long n = 0;
    if (dataset) {
        s = add_dataset(e, dataset, output_len, &n);
    } else {
        uint64_t st = 0x9E3779B97F4A7C15ull ^ (uint64_t)seed;
        if (!st) st = 1;
        s = ci_cli_add_random_requests(e, num_prompts, input_len, output_len, &st, NULL, &n);
    }
    ci_progress bar;
    ci_progress_init(&bar, "bench");
    long done = 0;
    double peak_usage = 0;
    while (!s.code && ci_engine_has_unfinished(e)) {
        const ci_engine_output *o;
        int k;
        s = ci_engine_step(e, &o, &k);
        for (int i = 0; i < k; i++)
            if (o[i].finish_reason) done++;
        ci_progress_update(&bar, (size_t)done, (size_t)n);
    }
    ci_progress_done(&bar);
    double el = ci_now() - t0;
    ci_engine_metrics m = ci_engine_get_metrics(e);
    ci_engine_destroy(e);
    if (s.code) return ci_cli_fail(s);
    peak_usage = m.num_kv_blocks ? (double)m.peak_kv_blocks_used / m.num_kv_blocks : 0;
    double rps = n / el, in_tps = m.prompt_tokens / el, out_tps = m.generation_tokens / el;
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "num_requests", json_integer(n));
        json_object_set_new(o, "elapsed_s", json_real(el));
        json_object_set_new(o, "requests_per_s", json_real(rps));
        json_object_set_new(o, "input_tokens_per_s", json_real(in_tps));
        json_object_set_new(o, "output_tokens_per_s", json_real(out_tps));
        json_object_set_new(o, "total_tokens_per_s", json_real(in_tps + out_tps));
        json_object_set_new(o, "prompt_tokens", json_integer(m.prompt_tokens));
        json_object_set_new(o, "generated_tokens", json_integer(m.generation_tokens));
        json_object_set_new(o, "peak_kv_usage", json_real(peak_usage));
        json_object_set_new(o, "peak_kv_blocks_used", json_integer(m.peak_kv_blocks_used));
        json_object_set_new(o, "num_kv_blocks", json_integer(m.num_kv_blocks));
        json_object_set_new(o, "num_preemptions", json_integer(m.num_preemptions));
        json_object_set_new(o, "prefix_cache_hit_tokens", json_integer(m.prefix_cache_hit_tokens));
        json_object_set_new(o, "num_steps", json_integer(m.num_steps));
        json_object_set_new(o, "ahead_steps", json_integer(m.ahead_steps));
        json_t *ph = json_object();
        json_object_set_new(ph, "schedule_s", json_real(m.time_schedule_s));
        json_object_set_new(ph, "forward_s", json_real(m.time_forward_s));
        json_object_set_new(ph, "sample_s", json_real(m.time_sample_s));
        json_object_set_new(ph, "output_s", json_real(m.time_output_s));
        json_object_set_new(o, "step_phases", ph);
        char *d = json_dumps(o, JSON_COMPACT);
        puts(d ? d : "null");
        free(d);
        json_decref(o);
    } else {
        printf("%-22s %12ld\n", "requests", n);
        printf("%-22s %12.3f\n", "elapsed (s)", el);
        printf("%-22s %12.2f\n", "requests/s", rps);
        printf("%-22s %12.1f\n", "input tok/s", in_tps);
        printf("%-22s %12.1f\n", "output tok/s", out_tps);
        printf("%-22s %12.1f\n", "total tok/s", in_tps + out_tps);
        printf("%-22s %11.1f%%  (%d of %d blocks)\n", "peak KV usage", 100.0 * peak_usage,
               m.peak_kv_blocks_used, m.num_kv_blocks);
        printf("%-22s %12lld\n", "preemptions", (long long)m.num_preemptions);
        printf("%-22s %12lld\n", "engine steps", (long long)m.num_steps);
        if (m.ahead_steps > 0) /* plan-ahead scheduling */
            printf("%-22s %12lld\n", "launched ahead", (long long)m.ahead_steps);
        printf("%-22s schedule %.2f, forward %.2f, sample %.2f, output %.2f\n", "step phases (s)",
               m.time_schedule_s, m.time_forward_s, m.time_sample_s, m.time_output_s);
    }
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(
            f,
            "usage: cinfer bench throughput|latency|serve [options]   (cinfer bench NAME --help)\n"
            "  throughput  offline: every request queued at once in one engine\n"
            "  latency     one batch of requests: TTFT, time per output token\n"
            "  serve       online: streaming requests against a running server\n");
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "throughput")) return bench_throughput(argc - 1, argv + 1);
    if (!strcmp(argv[1], "latency")) return cmd_bench_latency(argc - 1, argv + 1);
    if (!strcmp(argv[1], "serve")) return cmd_bench_serve(argc - 1, argv + 1);
    return ci_cli_fail(ci_errorf(CI_ERR_INVALID,
                                 "bench: unknown benchmark '%s' (try: throughput, latency, serve)",
                                 argv[1]));
}
