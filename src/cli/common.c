#include "cli/common.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

int ci_cli_fail(ci_status s) {
    /* one line: flatten any newline a message might carry */
    for (char *p = s.msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fprintf(stderr, "error: %s\n", s.msg);
    return 1;
}

ci_status ci_read_stream(FILE *f, const char *what, char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return ci_errorf(CI_ERR_NOMEM, "reading %s: out of memory", what);
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return ci_errorf(CI_ERR_NOMEM, "reading %s: out of memory", what);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return ci_errorf(CI_ERR_IO, "reading %s: %s", what, strerror(errno));
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return ci_ok();
}

ci_status ci_read_path(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return ci_errorf(CI_ERR_IO, "%s: %s", path, strerror(errno));
    ci_status s = ci_read_stream(f, path, out, len);
    fclose(f);
    return s;
}

ci_status ci_read_text(const char *path, char **out) {
    size_t len = 0;
    *out = NULL;
    bool in = !strcmp(path, "-");
    ci_status s = in ? ci_read_stream(stdin, "stdin", out, &len) : ci_read_path(path, out, &len);
    if (!s.code && memchr(*out, '\0', len)) {
        s = ci_errorf(CI_ERR_INVALID, "%s: contains a NUL byte", in ? "stdin" : path);
        free(*out);
        *out = NULL;
    }
    return s;
}

uint64_t ci_cli_xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

ci_status ci_cli_add_random_requests(ci_engine *e, long n, long input_len, long output_len,
                                     uint64_t *rng, int64_t *ids_out, long *queued) {
    int V = ci_engine_vocab_size(e);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)input_len);
    if (!ids) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    ci_engine_sampling sp = ci_engine_default_sampling();
    sp.temperature = 0.0f;
    sp.ignore_eos = 1;
    sp.max_tokens = (int)output_len;
    ci_status s = ci_ok();
    for (long i = 0; !s.code && i < n; i++) {
        for (long k = 0; k < input_len; k++)
            ids[k] = (int32_t)(ci_cli_xorshift(rng) % (uint64_t)(V > 256 ? V - 256 : V));
        int64_t id;
        s = ci_engine_add_request(e, ids, (int)input_len, &sp, 0, &id);
        if (s.code) break;
        if (ids_out) ids_out[i] = id;
        if (queued) (*queued)++;
    }
    free(ids);
    return s;
}
