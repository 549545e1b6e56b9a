/* mock_backend.h — test-only backend: host memory, weights stored as F32.
 * Only the memory and weight ops exist; tracks live allocations so tests can
 * check that everything was freed. */
#ifndef CINFER_TESTS_MOCK_BACKEND_H
#define CINFER_TESTS_MOCK_BACKEND_H

#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "util/half.h"

typedef struct mock_state {
    int live;       /* allocations not yet freed */
    int fail_after; /* fail the Nth weight_alloc (0 = never) */
    int allocs;
} mock_state;

static ci_status mock_alloc(ci_backend *be, size_t bytes, void **out) {
    mock_state *st = be->impl;
    *out = malloc(bytes ? bytes : 1);
    if (!*out) return ci_errorf(CI_ERR_NOMEM, "mock: out of memory");
    st->live++;
    return ci_ok();
}
static void mock_free(ci_backend *be, void *p) {
    mock_state *st = be->impl;
    if (p) st->live--;
    free(p);
}
static ci_status mock_copy(ci_backend *be, void *dst, const void *src, size_t n) {
    (void)be;
    memcpy(dst, src, n);
    return ci_ok();
}
static ci_status mock_weight_alloc(ci_backend *be, ci_dtype src_dtype, int64_t rows, int64_t cols,
                                   ci_tensor *out) {
    mock_state *st = be->impl;
    (void)src_dtype;
    if (st->fail_after && ++st->allocs >= st->fail_after)
        return ci_errorf(CI_ERR_BACKEND, "mock: injected weight_alloc failure");
    out->dtype = CI_F32;
    out->rows = rows;
    out->cols = cols;
    return mock_alloc(be, (size_t)(rows * cols) * sizeof(float), &out->data);
}
static ci_status mock_weight_write(ci_backend *be, ci_tensor *w, int64_t row0, const void *src,
                                   ci_dtype src_dtype, int64_t nrows) {
    (void)be;
    if (row0 < 0 || nrows < 0 || row0 + nrows > w->rows)
        return ci_errorf(CI_ERR_INTERNAL, "mock: weight_write rows out of range");
    float *dst = (float *)w->data + row0 * w->cols;
    const unsigned char *s = src;
    size_t n = (size_t)(nrows * w->cols);
    for (size_t i = 0; i < n; i++) {
        if (src_dtype == CI_F32) {
            memcpy(&dst[i], s + 4 * i, 4); /* unaligned-safe */
        } else if (src_dtype == CI_BF16 || src_dtype == CI_F16) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = src_dtype == CI_BF16 ? ci_bf16_to_f32(h) : ci_f16_to_f32(h);
        } else {
            return ci_errorf(CI_ERR_INTERNAL, "mock: weight_write dtype");
        }
    }
    return ci_ok();
}

static const ci_backend_ops mock_ops = {
    .alloc = mock_alloc,
    .free = mock_free,
    .to_device = mock_copy,
    .to_host = mock_copy,
    .weight_alloc = mock_weight_alloc,
    .weight_write = mock_weight_write,
};

static inline void mock_backend_init(ci_backend *be, mock_state *st) {
    memset(st, 0, sizeof *st);
    memset(be, 0, sizeof *be);
    be->ops = &mock_ops;
    be->name = "mock";
    be->act_dtype = CI_F32;
    be->impl = st;
}

#endif
