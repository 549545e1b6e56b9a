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
    CI_I64,     /* checkpoint metadata tensors (compressed-tensors weight_shape) */
    CI_F8_E4M3, /* checkpoint FP8 weights (compressed-tensors, FineGrainedFP8) */
    CI_I8,      /* checkpoint INT8 weights (compressed-tensors int-quantized) */
    CI_QW,      /* backend storage of a quantized weight: the tensor's data is the
                   backend's copy of a ci_qweight (util/qweight.h), rows x cols logical */
} ci_dtype;

static inline size_t ci_dtype_size(ci_dtype t) {
    if (t == CI_F8_E4M3 || t == CI_I8 || t == CI_QW) return 1;
    if (t == CI_I64) return 8;
    return t == CI_F16 || t == CI_BF16 ? 2 : 4;
}

static inline const char *ci_dtype_name(ci_dtype t) {
    switch (t) {
    case CI_F32: return "F32";
    case CI_F16: return "F16";
    case CI_BF16: return "BF16";
    case CI_I32: return "I32";
    case CI_I64: return "I64";
    case CI_F8_E4M3: return "F8_E4M3";
    case CI_I8: return "I8";
    case CI_QW: return "quantized";
    }
    return "?";
}

#endif
