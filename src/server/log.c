/* log.c — stderr log lines of `cinfer serve`: "cinfer serve: LEVEL msg"
 * (--log-format text) or one JSON object a line (--log-format json), below
 * --log-level dropped; and the access log, one line per request. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/log.h"

double srv_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *const LEVELS[] = {"debug", "info", "warn", "error"};

int srv_log_level_parse(const char *s) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, LEVELS[i])) return i;
    return -1;
}

static void wall_time(char *buf, size_t n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t o = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + o, n - o, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

static int json_format(const srv_ctx *ctx) {
    return ctx && ctx->cfg->log_json;
}

static void emit(const srv_ctx *ctx, int level, json_t *fields, const char *msg) {
    char ts[40];
    wall_time(ts, sizeof ts);
    if (json_format(ctx)) {
        json_t *o = json_object();
        json_object_set_new(o, "ts", json_string(ts));
        json_object_set_new(o, "level", json_string(LEVELS[level]));
        json_object_set_new(o, "msg", json_string(msg));
        if (fields) json_object_update(o, fields);
        char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (s) fprintf(stderr, "%s\n", s);
        free(s);
        json_decref(o);
    } else {
        fprintf(stderr, "cinfer serve: %s %s %s\n", ts, LEVELS[level], msg);
    }
}

void srv_log(const srv_ctx *ctx, int level, const char *fmt, ...) {
    if (ctx && level < ctx->cfg->log_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(ctx, level, NULL, msg);
}

void srv_log_always(const srv_ctx *ctx, const char *msg) {
    emit(ctx, SRV_LOG_INFO, NULL, msg);
}

void srv_log_access(const srv_ctx *ctx, const srv_access *a) {
    if (SRV_LOG_INFO < ctx->cfg->log_level) return;
    if (json_format(ctx)) {
        json_t *f = json_object();
        json_object_set_new(f, "request_id", json_string(a->request_id ? a->request_id : ""));
        json_object_set_new(f, "method", json_string(a->method ? a->method : ""));
        json_object_set_new(f, "path", json_string(a->path ? a->path : ""));
        json_object_set_new(f, "status", json_integer(a->status));
        json_object_set_new(f, "prompt_tokens", json_integer(a->prompt_tokens));
        json_object_set_new(f, "generated_tokens", json_integer(a->generated_tokens));
        json_object_set_new(f, "ttft_ms",
                            a->ttft_s >= 0 ? json_real(a->ttft_s * 1e3) : json_null());
        json_object_set_new(f, "e2e_ms", json_real(a->e2e_s * 1e3));
        json_object_set_new(f, "finish_reason", a->finish ? json_string(a->finish) : json_null());
        emit(ctx, SRV_LOG_INFO, f, "request");
        json_decref(f);
        return;
    }
    char msg[768], ttft[32] = "-";
    if (a->ttft_s >= 0) snprintf(ttft, sizeof ttft, "%.1fms", a->ttft_s * 1e3);
    snprintf(msg, sizeof msg,
             "request id=%.128s %s %.128s status=%d prompt_tokens=%d generated_tokens=%d ttft=%s "
             "e2e=%.1fms finish=%s",
             a->request_id ? a->request_id : "-", a->method ? a->method : "-",
             a->path ? a->path : "-", a->status, a->prompt_tokens, a->generated_tokens, ttft,
             a->e2e_s * 1e3, a->finish ? a->finish : "-");
    emit(ctx, SRV_LOG_INFO, NULL, msg);
}
