/* generate_batch.h — `cinfer generate --prompts-file`: JSONL in, JSONL out
 * (input order), through the batching engine. */
#ifndef CINFER_CLI_GENERATE_BATCH_H
#define CINFER_CLI_GENERATE_BATCH_H

#include <stdbool.h>

#include "engine/engine.h"

/* d: every line's sampling parameters (the command's flags) before the
 * line's own fields replace them. Returns the process exit code. */
int ci_generate_prompts_file(const ci_engine_config *ec, const char *path,
                             const ci_engine_sampling *d, bool stats);

#endif
