/* engine_types.h — the engine's public-facing types: the options, sampling
 * parameters, outputs and metrics are include/cinfer.h's (one definition;
 * api.c only forwards), under the engine's names; the engine handle. */
#ifndef CINFER_ENGINE_ENGINE_TYPES_H
#define CINFER_ENGINE_ENGINE_TYPES_H

#include "cinfer.h"

typedef cinfer_engine_config ci_engine_config;
typedef cinfer_sampling_params ci_engine_sampling;
typedef cinfer_logprob ci_engine_logprob;
typedef cinfer_output ci_engine_output;
typedef cinfer_metrics ci_engine_metrics;
#define CI_MAX_LOGPROBS CINFER_MAX_LOGPROBS

typedef struct ci_engine ci_engine;

#endif
