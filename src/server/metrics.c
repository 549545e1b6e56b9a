/* metrics.c — Prometheus text exposition for GET /metrics. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

static void hist_init(srv_hist *h, const double *b, int n) {
    memset(h, 0, sizeof *h);
    h->num_bounds = n < SRV_HIST_MAX_BUCKETS ? n : SRV_HIST_MAX_BUCKETS;
    memcpy(h->bounds, b, sizeof *b * (size_t)h->num_bounds);
}

void srv_metrics_init(srv_metrics *m) {
    static const double ttft[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,
                                  0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
    static const double tpot[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                  0.3,   0.4,   0.5,  0.75,  1.0,  2.5,   5.0, 7.5,  10.0};
    static const double e2e[] = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,  2.5,  5.0,
                                 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0};
    static const double phase[] = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,  2.5,  5.0,
                                   10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0};
    static const double itl[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                                 0.4,  0.5,   0.75, 1.0,   2.5, 5.0,  7.5, 10.0};
    static const double toks[] = {1,    2,    5,    10,    20,    50,    100,    200,   500,
                                  1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000};
    memset(m, 0, sizeof *m);
    hist_init(&m->queue, phase, (int)(sizeof phase / sizeof *phase));
    hist_init(&m->prefill, phase, (int)(sizeof phase / sizeof *phase));
    hist_init(&m->decode, phase, (int)(sizeof phase / sizeof *phase));
    hist_init(&m->inference, phase, (int)(sizeof phase / sizeof *phase));
    hist_init(&m->itl, itl, (int)(sizeof itl / sizeof *itl));
    hist_init(&m->req_prompt, toks, (int)(sizeof toks / sizeof *toks));
    hist_init(&m->req_gen, toks, (int)(sizeof toks / sizeof *toks));
    hist_init(&m->iter_tokens, toks, (int)(sizeof toks / sizeof *toks));
    hist_init(&m->ttft, ttft, (int)(sizeof ttft / sizeof *ttft));
    hist_init(&m->tpot, tpot, (int)(sizeof tpot / sizeof *tpot));
    hist_init(&m->e2e, e2e, (int)(sizeof e2e / sizeof *e2e));
}

void srv_hist_observe(srv_hist *h, double v) {
    int i = 0;
    while (i < h->num_bounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->len + (size_t)n + 1)
            nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = nc;
    }
}

static void hist_render(sbuf *b, const char *name, const char *help, const srv_hist *h,
                        const char *model) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->num_bounds; i++) {
        cum += h->counts[i];
        sb_printf(b, "%s_bucket{model_name=\"%s\",le=\"%g\"} %llu\n", name, model, h->bounds[i],
                  (unsigned long long)cum);
    }
    cum += h->counts[h->num_bounds];
    sb_printf(b, "%s_bucket{model_name=\"%s\",le=\"+Inf\"} %llu\n", name, model,
              (unsigned long long)cum);
    sb_printf(b, "%s_sum{model_name=\"%s\"} %.9g\n", name, model, h->sum);
    sb_printf(b, "%s_count{model_name=\"%s\"} %llu\n", name, model, (unsigned long long)h->count);
}

static void gauge(sbuf *b, const char *name, const char *type, const char *help, const char *model,
                  double v) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s{model_name=\"%s\"} %.17g\n", name, help, name,
              type, name, model, v);
}

/* The same figures under vLLM's names (vllm/v1/metrics/loggers.py), so
 * that its Grafana dashboards work unchanged. */
static void render_vllm(sbuf *b, const srv_metrics *m, const cinfer_metrics *eng, const char *model,
                        const cinfer_engine_config *ec) {
    gauge(b, "vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
          model, eng->num_running);
    gauge(b, "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
          model, eng->num_waiting);
    gauge(b, "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
          model, eng->kv_usage);
    gauge(b, "vllm:gpu_cache_usage_perc", "gauge",
          "GPU KV-cache usage. 1 means 100 percent usage (old name).", model, eng->kv_usage);
    gauge(b, "vllm:prefix_cache_queries_total", "counter",
          "Prefix cache queries, in terms of number of queried tokens.", model,
          (double)eng->prefix_cache_queried_tokens);
    gauge(b, "vllm:prefix_cache_hits_total", "counter",
          "Prefix cache hits, in terms of number of cached tokens.", model,
          (double)eng->prefix_cache_hit_tokens);
    gauge(b, "vllm:num_preemptions_total", "counter",
          "Cumulative number of preemption from the engine.", model, (double)eng->num_preemptions);
    gauge(b, "vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", model,
          (double)m->prompt_tokens);
    gauge(b, "vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
          model, (double)m->generation_tokens);
    static const char *reasons[5] = {"timeout", "stop", "length", "abort", "error"};
    sb_printf(b, "# HELP vllm:request_success_total Count of successfully processed requests.\n"
                 "# TYPE vllm:request_success_total counter\n");
    for (int i = 0; i < 5; i++)
        sb_printf(b, "vllm:request_success_total{model_name=\"%s\",finished_reason=\"%s\"} %llu\n",
                  model, reasons[i], (unsigned long long)m->finished[i]);
    sb_printf(b,
              "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
              "# TYPE vllm:cache_config_info gauge\n"
              "vllm:cache_config_info{model_name=\"%s\",block_size=\"%d\",num_gpu_blocks=\"%lld\","
              "enable_prefix_caching=\"%s\",cache_dtype=\"auto\"} 1\n",
              model, eng->block_size, (long long)eng->num_kv_blocks,
              ec && !ec->enable_prefix_caching ? "False" : "True");
    hist_render(b, "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.", &m->ttft, model);
    hist_render(b, "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds.", &m->tpot, model);
    hist_render(b, "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.", &m->itl, model);
    hist_render(b, "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.", &m->e2e, model);
    hist_render(b, "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.", &m->queue, model);
    hist_render(b, "vllm:request_prefill_time_seconds",
                "Histogram of time spent in PREFILL phase for request.", &m->prefill, model);
    hist_render(b, "vllm:request_decode_time_seconds",
                "Histogram of time spent in DECODE phase for request.", &m->decode, model);
    hist_render(b, "vllm:request_inference_time_seconds",
                "Histogram of time spent in RUNNING phase for request.", &m->inference, model);
    hist_render(b, "vllm:request_prompt_tokens", "Number of prefill tokens processed.",
                &m->req_prompt, model);
    hist_render(b, "vllm:request_generation_tokens", "Number of generation tokens processed.",
                &m->req_gen, model);
    hist_render(b, "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.",
                &m->iter_tokens, model);
    /* speculative decoding (vLLM v1's spec_decode counters) */
    gauge(b, "vllm:spec_decode_num_drafts", "counter", "Number of spec decoding drafts.", model,
          (double)eng->spec_verify_steps);
    gauge(b, "vllm:spec_decode_num_draft_tokens", "counter", "Number of draft tokens.", model,
          (double)eng->spec_draft_tokens);
    gauge(b, "vllm:spec_decode_num_accepted_tokens", "counter", "Number of accepted tokens.", model,
          (double)eng->spec_accepted_tokens);
    sb_printf(b, "# HELP vllm:spec_decode_num_accepted_tokens_per_pos Accepted tokens per draft "
                 "position.\n# TYPE vllm:spec_decode_num_accepted_tokens_per_pos counter\n");
    int npos = ec && ec->num_speculative_tokens > 0 ? ec->num_speculative_tokens : 0;
    for (int i = 0; i < npos && i < 16; i++)
        sb_printf(b,
                  "vllm:spec_decode_num_accepted_tokens_per_pos{model_name=\"%s\",position=\"%d\"} "
                  "%lld\n",
                  model, i, (long long)eng->spec_accepted_at[i]);
}

char *srv_metrics_render(const srv_metrics *m, const cinfer_metrics *eng, const char *model_name,
                         int jobs_in_flight, const cinfer_engine_config *ec) {
    sbuf b = {0};
    /* label value escaping: backslash, double quote, newline */
    char model[256];
    size_t o = 0;
    for (const char *p = model_name; *p && o + 3 < sizeof model; p++) {
        if (*p == '\\' || *p == '"') model[o++] = '\\';
        if (*p == '\n') {
            model[o++] = '\\';
            model[o++] = 'n';
            continue;
        }
        model[o++] = *p;
    }
    model[o] = '\0';
    gauge(&b, "cinfer:num_requests_running", "gauge", "Sequences in the running batch.", model,
          eng->num_running);
    gauge(&b, "cinfer:num_requests_waiting", "gauge", "Sequences waiting to be scheduled.", model,
          eng->num_waiting);
    gauge(&b, "cinfer:http_requests_in_flight", "gauge", "Generation requests being served.", model,
          jobs_in_flight);
    gauge(&b, "cinfer:kv_cache_usage_perc", "gauge", "Fraction of KV cache blocks in use (0..1).",
          model, eng->kv_usage);
    gauge(&b, "cinfer:num_kv_blocks", "gauge", "KV cache blocks in total.", model,
          eng->num_kv_blocks);
    double hit = eng->prefix_cache_queried_tokens > 0 ? (double)eng->prefix_cache_hit_tokens /
                                                            (double)eng->prefix_cache_queried_tokens
                                                      : 0.0;
    gauge(&b, "cinfer:prefix_cache_hit_rate", "gauge", "Prefix cache hit tokens / queried tokens.",
          model, hit);
    gauge(&b, "cinfer:prefix_cache_queries_total", "counter",
          "Prompt tokens looked up in the prefix cache.", model,
          (double)eng->prefix_cache_queried_tokens);
    gauge(&b, "cinfer:prefix_cache_hits_total", "counter",
          "Prompt tokens found in the prefix cache.", model, (double)eng->prefix_cache_hit_tokens);
    gauge(&b, "cinfer:num_preemptions_total", "counter",
          "Sequences preempted for lack of KV blocks.", model, (double)eng->num_preemptions);
    gauge(&b, "cinfer:prompt_tokens_total", "counter", "Prompt tokens of accepted requests.", model,
          (double)m->prompt_tokens);
    gauge(&b, "cinfer:generation_tokens_total", "counter", "Generated tokens sent to clients.",
          model, (double)m->generation_tokens);
    gauge(&b, "cinfer:engine_steps_total", "counter", "Engine steps.", model,
          (double)eng->num_steps);
    gauge(&b, "cinfer:graph_steps_total", "counter", "Model forwards that replayed a CUDA graph.",
          model, (double)eng->graph_steps);
    gauge(&b, "cinfer:eager_steps_total", "counter", "Model forwards that ran eagerly.", model,
          (double)eng->eager_steps);
    gauge(&b, "cinfer:ahead_steps_total", "counter",
          "Steps launched while the one before them ran (plan-ahead scheduling).", model,
          (double)eng->ahead_steps);
    /* where the engine thread's time goes (cinfer_metrics' phases): with
     * async scheduling, forward is the wait for the device */
    sb_printf(&b, "# HELP cinfer:engine_time_seconds_total Engine thread time by step phase.\n"
                  "# TYPE cinfer:engine_time_seconds_total counter\n");
    const struct {
        const char *phase;
        double s;
    } ph[] = {{"schedule", eng->time_schedule_s},
              {"forward_graph", eng->time_forward_s - eng->time_forward_eager_s},
              {"forward_eager", eng->time_forward_eager_s},
              {"sample", eng->time_sample_s},
              {"output", eng->time_output_s},
              {"masks", eng->time_masks_s},
              {"draft", eng->time_draft_s}};
    for (size_t i = 0; i < sizeof ph / sizeof *ph; i++)
        sb_printf(&b, "cinfer:engine_time_seconds_total{model_name=\"%s\",phase=\"%s\"} %.17g\n",
                  model, ph[i].phase, ph[i].s);
    gauge(&b, "cinfer:http_requests_total", "counter", "HTTP requests received.", model,
          (double)m->http_requests);
    gauge(&b, "cinfer:http_errors_total", "counter", "HTTP requests answered with an error status.",
          model, (double)m->http_errors);
    gauge(&b, "cinfer:rejected_overload_total", "counter",
          "Requests refused with 503 (queue full).", model, (double)m->rejected_503);
    gauge(&b, "cinfer:rejected_connections_total", "counter",
          "Connections refused beyond --max-connections.", model, (double)m->rejected_conns);
    gauge(&b, "cinfer:request_deadline_cut_total", "counter",
          "Connections cut for not sending a request within its deadline.", model,
          (double)m->deadline_cut);
    static const char *reasons[5] = {"timeout", "stop", "length", "abort", "error"};
    sb_printf(&b, "# HELP cinfer:request_success_total Finished choices by finish reason.\n"
                  "# TYPE cinfer:request_success_total counter\n");
    for (int i = 0; i < 5; i++)
        sb_printf(&b,
                  "cinfer:request_success_total{model_name=\"%s\",finished_reason=\"%s\"} %llu\n",
                  model, reasons[i], (unsigned long long)m->finished[i]);
    hist_render(&b, "cinfer:time_to_first_token_seconds", "Time to first token.", &m->ttft, model);
    hist_render(&b, "cinfer:time_per_output_token_seconds",
                "Time per output token after the first.", &m->tpot, model);
    hist_render(&b, "cinfer:e2e_request_latency_seconds", "End-to-end request latency.", &m->e2e,
                model);
    render_vllm(&b, m, eng, model, ec);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
