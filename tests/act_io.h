/* act_io.h — activation tensors to and from a backend as f32 host values
 * (stored BF16 or F32 on it), for the CUDA op tests. */
#ifndef CINFER_TESTS_ACT_IO_H
#define CINFER_TESTS_ACT_IO_H

#include <stdint.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "test.h"
#include "util/half.h"

/* the first n values of t from src (converted to t's dtype) */
static inline void act_upload(ci_backend *be, ci_tensor *t, const float *src, int64_t n) {
    size_t esz = ci_dtype_size(t->dtype);
    void *buf = malloc(esz * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        if (t->dtype == CI_BF16)
            ((uint16_t *)buf)[i] = ci_f32_to_bf16(src[i]);
        else
            ((float *)buf)[i] = src[i];
    }
    CHECK_OK(be->ops->to_device(be, t->data, buf, esz * (size_t)n));
    free(buf);
}

/* n values of dtype dt at data, as a malloc'd f32 array */
static inline float *act_download(ci_backend *be, const void *data, ci_dtype dt, int64_t n) {
    size_t esz = ci_dtype_size(dt);
    void *buf = malloc(esz * (size_t)(n > 0 ? n : 1));
    CHECK_OK(be->ops->to_host(be, buf, data, esz * (size_t)n));
    float *f = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        f[i] = dt == CI_BF16 ? ci_bf16_to_f32(((uint16_t *)buf)[i]) : ((float *)buf)[i];
    free(buf);
    return f;
}

#endif
