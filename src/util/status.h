/* status.h — errors are values.
 *
 * Every fallible function returns a ci_status. code == CI_OK means success;
 * anything else carries a one-line, human-readable message that names the
 * problem (the file, tensor or field). Callers propagate with CI_TRY. */
#ifndef CINFER_UTIL_STATUS_H
#define CINFER_UTIL_STATUS_H

#include <stdarg.h>

typedef enum ci_code {
    CI_OK = 0,
    CI_ERR_IO,          /* file missing, unreadable, truncated */
    CI_ERR_FORMAT,      /* malformed file contents (JSON, safetensors header) */
    CI_ERR_INVALID,     /* bad argument or request */
    CI_ERR_UNSUPPORTED, /* valid but not implemented (architecture, dtype) */
    CI_ERR_NOMEM,       /* allocation failed */
    CI_ERR_CAPACITY,    /* KV cache or context exhausted */
    CI_ERR_BACKEND,     /* device/library call failed */
    CI_ERR_INTERNAL,    /* invariant broken: a bug */
} ci_code;

typedef struct ci_status {
    ci_code code;
    char msg[256];
} ci_status;

static inline ci_status ci_ok(void) {
    ci_status s;
    s.code = CI_OK;
    s.msg[0] = '\0';
    return s;
}

/* Builds an error status with a printf-style message (truncated to fit). */
ci_status ci_errorf(ci_code code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing error's message with more context ("loading X: ..."). */
ci_status ci_status_wrap(ci_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *ci_code_name(ci_code code);

#define CI_TRY(expr)                                                                               \
    do {                                                                                           \
        ci_status ci_try_s_ = (expr);                                                              \
        if (ci_try_s_.code != CI_OK) return ci_try_s_;                                             \
    } while (0)

#endif
