/* admission.h — what the libevent thread checks before a request reaches
 * the engine (admission.c): message framing, admission by sequences and
 * queued prompt tokens, X-Request-Id, the access log and per-request
 * phase metrics. */
#ifndef CINFER_SERVER_ADMISSION_H
#define CINFER_SERVER_ADMISSION_H

#include "server/http_state.h"

struct evhttp_request;

/* Duplicate or conflicting Content-Length, or Content-Length with
 * Transfer-Encoding: fills *e (400) and returns -1. */
int srv_check_framing(struct evhttp_request *req, srv_err *e);
/* Prompt tokens a GENERATE command will queue (ids exact, text bytes / 4). */
long long srv_prompt_estimate(const srv_cmd *c);
/* Sequences (prompts x n) and queued prompt tokens against their caps:
 * 0 = admitted, -1 = answered 503 + Retry-After. */
int srv_admit(srv_ctx *ctx, struct evhttp_request *req, const srv_cmd *c);
/* X-Request-Id: the client's (printable, <= 128 bytes) or a new one, echoed. */
void srv_request_begin(srv_ctx *ctx, struct evhttp_request *req);
/* Access-log line of a request answered at once / of a job. */
void srv_request_log(srv_ctx *ctx, struct evhttp_request *req, const char *path, double t0);
void srv_job_log(const job *j);
/* vLLM's per-request histograms (queue, prefill, decode, inference, tokens). */
void srv_job_phases(job *j, double t_end);

#endif
