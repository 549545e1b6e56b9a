#include "util/status.h"

#include <stdio.h>
#include <string.h>

ci_status ci_errorf(ci_code code, const char *fmt, ...) {
    ci_status s;
    s.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s.msg, sizeof s.msg, fmt, ap);
    va_end(ap);
    return s;
}

ci_status ci_status_wrap(ci_status s, const char *fmt, ...) {
    if (s.code == CI_OK) return s;
    char prefix[sizeof s.msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Assemble "prefix: old" by hand, truncating at the buffer's end. */
    char out[sizeof s.msg];
    size_t n = strlen(prefix);
    memcpy(out, prefix, n);
    const char *rest[2] = {": ", s.msg};
    for (int i = 0; i < 2; i++) {
        size_t m = strlen(rest[i]);
        if (m > sizeof out - 1 - n) m = sizeof out - 1 - n;
        memcpy(out + n, rest[i], m);
        n += m;
    }
    out[n] = '\0';
    memcpy(s.msg, out, sizeof out);
    return s;
}

const char *ci_code_name(ci_code code) {
    switch (code) {
    case CI_OK: return "ok";
    case CI_ERR_IO: return "io";
    case CI_ERR_FORMAT: return "format";
    case CI_ERR_INVALID: return "invalid";
    case CI_ERR_UNSUPPORTED: return "unsupported";
    case CI_ERR_NOMEM: return "nomem";
    case CI_ERR_CAPACITY: return "capacity";
    case CI_ERR_BACKEND: return "backend";
    case CI_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}
