/* engine_types.h — the engine's public-facing types: the options, sampling
 * parameters, outputs and metrics are include/cinfer.h's (one definition;
 * api.c only forwards), under the engine's names; the engine handle. */
#ifndef CINFER_ENGINE_ENGINE_TYPES_H
#define CINFER_ENGINE_ENGINE_TYPES_H

#include <string.h>

#include "cinfer.h"

typedef cinfer_engine_config ci_engine_config;
typedef cinfer_sampling_params ci_engine_sampling;
typedef cinfer_logprob ci_engine_logprob;
typedef cinfer_output ci_engine_output;
typedef cinfer_metrics ci_engine_metrics;
#define CI_MAX_LOGPROBS CINFER_MAX_LOGPROBS

typedef struct ci_engine ci_engine;

/* kv_cache_dtype names the FP8 E4M3 cache ("fp8", "fp8_e4m3": vLLM's names). */
static inline int ci_kv_dtype_is_fp8(const char *kv_cache_dtype) {
    return kv_cache_dtype &&
           (!strcmp(kv_cache_dtype, "fp8") || !strcmp(kv_cache_dtype, "fp8_e4m3"));
}

#endif
