/* st_writer.h — test helpers: temp dirs and hand-made safetensors files. */
#ifndef CINFER_TESTS_ST_WRITER_H
#define CINFER_TESTS_ST_WRITER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Makes a fresh temp directory; path written into buf. */
static inline int stw_mkdtemp(char *buf, size_t n) {
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, n, "%s/cinfer_test_XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    return mkdtemp(buf) != NULL;
}

/* rm -r of a flat temp dir. */
static inline void stw_rmdir(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* Writes 8-byte LE header length + header + data. truncate_to (if >= 0)
 * cuts the file to that many bytes. */
static inline int stw_write_raw(const char *path, const char *header, uint64_t hlen_field,
                                const void *data, size_t data_len, long truncate_to) {
    size_t hl = strlen(header);
    size_t total = 8 + hl + data_len;
    unsigned char *buf = malloc(total ? total : 1);
    if (!buf) return 0;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(hlen_field >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (data_len) {
        if (data)
            memcpy(buf + 8 + hl, data, data_len);
        else
            for (size_t i = 0; i < data_len; i++)
                buf[8 + hl + i] = (unsigned char)(i * 7 + 1);
    }
    if (truncate_to >= 0 && (size_t)truncate_to < total) total = (size_t)truncate_to;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(buf);
        return 0;
    }
    size_t w = fwrite(buf, 1, total, f);
    fclose(f);
    free(buf);
    return w == total;
}

static inline int stw_write(const char *path, const char *header, size_t data_len) {
    return stw_write_raw(path, header, strlen(header), NULL, data_len, -1);
}

static inline int stw_write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t n = strlen(text);
    size_t w = fwrite(text, 1, n, f);
    fclose(f);
    return w == n;
}

/* A tensor for stw_build: F32 data is filled with value(name_index, i). */
typedef struct stw_tensor {
    const char *name;
    const char *dtype; /* "F32", "F16", "BF16", "I32", ... */
    int ndim;
    int64_t shape[4];
} stw_tensor;

static inline size_t stw_dsize(const char *dt) {
    return (!strcmp(dt, "F16") || !strcmp(dt, "BF16"))  ? 2
           : (!strcmp(dt, "F64") || !strcmp(dt, "I64")) ? 8
                                                        : 4;
}

/* Value written for element i of tensor k (F32 tensors). */
static inline float stw_value(int k, size_t i) {
    return (float)k + (float)i * 0.001f;
}

/* Writes a consistent safetensors file of the given tensors (contiguous
 * data, F32 values stw_value; other dtypes get bytes of the F32 pattern). */
static inline int stw_build(const char *path, const stw_tensor *ts, int n) {
    size_t cap = 4096 + (size_t)n * 256, hl = 0;
    char *h = malloc(cap);
    size_t off = 0;
    hl += (size_t)snprintf(h + hl, cap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int k = 0; k < n; k++) {
        size_t ne = 1;
        for (int d = 0; d < ts[k].ndim; d++)
            ne *= (size_t)ts[k].shape[d];
        size_t nb = ne * stw_dsize(ts[k].dtype);
        hl += (size_t)snprintf(h + hl, cap - hl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                               ts[k].name, ts[k].dtype);
        for (int d = 0; d < ts[k].ndim; d++)
            hl += (size_t)snprintf(h + hl, cap - hl, "%s%lld", d ? "," : "",
                                   (long long)ts[k].shape[d]);
        hl += (size_t)snprintf(h + hl, cap - hl, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
    }
    snprintf(h + hl, cap - hl, "}");
    unsigned char *data = calloc(off ? off : 1, 1);
    size_t pos = 0;
    for (int k = 0; k < n; k++) {
        size_t ne = 1;
        for (int d = 0; d < ts[k].ndim; d++)
            ne *= (size_t)ts[k].shape[d];
        size_t es = stw_dsize(ts[k].dtype);
        for (size_t i = 0; i < ne; i++) {
            float v = stw_value(k, i);
            if (es == 4)
                memcpy(data + pos, &v, 4);
            else if (es == 2) {
                uint32_t u;
                memcpy(&u, &v, 4);
                uint16_t b = (uint16_t)(u >> 16);
                memcpy(data + pos, &b, 2);
            }
            pos += es;
        }
    }
    int ok = stw_write_raw(path, h, strlen(h), data, off, -1);
    free(h);
    free(data);
    return ok;
}

#endif
