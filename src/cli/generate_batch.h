/* generate_batch.h — `cinfer generate --prompts-file`: JSONL in, JSONL out
 * (input order), through the batching engine. */
#ifndef CINFER_CLI_GENERATE_BATCH_H
#define CINFER_CLI_GENERATE_BATCH_H

#include <stdbool.h>

#include "engine/engine.h"

typedef struct ci_batch_defaults {
    int max_tokens;
    double temperature;
    int top_k;
    double top_p, min_p;
    long seed; /* -1: none */
    bool ignore_eos;
} ci_batch_defaults;

/* Returns the process exit code. */
int ci_generate_prompts_file(const ci_engine_config *ec, const char *path,
                             const ci_batch_defaults *d, bool stats);

#endif
