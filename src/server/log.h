/* log.h — stderr logging of `cinfer serve` (log.c): levels, text or JSON
 * lines, one access-log line per request. */
#ifndef CINFER_SERVER_LOG_H
#define CINFER_SERVER_LOG_H

#include "server/http_state.h"

enum { SRV_LOG_DEBUG, SRV_LOG_INFO, SRV_LOG_WARN, SRV_LOG_ERROR };

double srv_now_s(void); /* CLOCK_MONOTONIC seconds */
/* "debug" | "info" | "warn" | "error" -> SRV_LOG_*, -1 if unknown */
int srv_log_level_parse(const char *s);
void srv_log(const srv_ctx *ctx, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An info line whatever --log-level says (the startup summary). */
void srv_log_always(const srv_ctx *ctx, const char *msg);

/* The access-log line of a request (info level). */
typedef struct srv_access {
    const char *request_id, *method, *path, *finish;
    int status;
    int prompt_tokens, generated_tokens;
    double ttft_s, e2e_s; /* ttft < 0: none */
} srv_access;
void srv_log_access(const srv_ctx *ctx, const srv_access *a);

#endif
