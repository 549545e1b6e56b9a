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
    memset(m, 0, sizeof *m);
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

char *srv_metrics_render(const srv_metrics *m, const cinfer_metrics *eng, const char *model_name,
                         int jobs_in_flight) {
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
    gauge(&b, "cinfer:http_requests_total", "counter", "HTTP requests received.", model,
          (double)m->http_requests);
    gauge(&b, "cinfer:http_errors_total", "counter", "HTTP requests answered with an error status.",
          model, (double)m->http_errors);
    gauge(&b, "cinfer:rejected_overload_total", "counter",
          "Requests refused with 503 (queue full).", model, (double)m->rejected_503);
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
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
