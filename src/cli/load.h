/* load.h — what the subcommands load from a model directory: tokenizer,
 * backend and model. */
#ifndef CINFER_CLI_LOAD_H
#define CINFER_CLI_LOAD_H

#include "backend/backend.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

typedef struct ci_loaded {
    ci_tokenizer *tok;
    ci_backend *be;
    ci_model *model;
    double load_s;
} ci_loaded;

ci_status ci_load_tokenizer(const char *dir, ci_loaded *L);
/* Loads the weights onto `device` with a progress bar (after one second). */
ci_status ci_load_model(const char *dir, const char *device, int threads, ci_loaded *L);
void ci_loaded_free(ci_loaded *L);

#endif
