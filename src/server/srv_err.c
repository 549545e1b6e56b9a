/* srv_err.c — srv_errf, the one way a request error is filled in: the
 * HTTP status, the OpenAI error type that goes with it, the offending
 * field and the message. The request parsers (openai.c, openai_fields.c,
 * structured_req.c, tools_req.c) and the HTTP plumbing all fill their
 * errors with it, so it sits below all of them and calls none. */
#include <stdarg.h>
#include <stdio.h>

#include "server/server.h"

int srv_errf(srv_err *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    e->param = param;
    e->type = status == 401   ? "authentication_error"
              : status == 404 ? "not_found_error"
              : status == 503 ? "service_unavailable"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}
