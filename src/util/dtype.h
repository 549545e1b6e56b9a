/* dtype.h — element types of tensors in checkpoints and on backends (below both:
 * src/backend and src/model include it). */
#ifndef CINFER_UTIL_DTYPE_H
#define CINFER_UTIL_DTYPE_H

#include <stddef.h>

typedef enum ci_dtype {
    CI_F32 = 0,
    CI_F16,
    CI_BF16,
    CI_I32,
} ci_dtype;

static inline size_t ci_dtype_size(ci_dtype t) {
    return t == CI_F16 || t == CI_BF16 ? 2 : 4;
}

static inline const char *ci_dtype_name(ci_dtype t) {
    switch (t) {
    case CI_F32: return "F32";
    case CI_F16: return "F16";
    case CI_BF16: return "BF16";
    case CI_I32: return "I32";
    }
    return "?";
}

#endif
