#include "cli/load.h"

#include <stdio.h>

#include "util/progress.h"

ci_status ci_load_tokenizer(const char *dir, ci_loaded *L) {
    return ci_tokenizer_load(dir, &L->tok);
}

static void on_progress(size_t done, size_t total, void *user) {
    ci_progress_update(user, done, total);
}

ci_status ci_load_model(const char *dir, const char *device, int threads, ci_loaded *L) {
    double t0 = ci_now();
    ci_backend_options bo = {.num_threads = threads};
    CI_TRY(ci_backend_create(device, &bo, &L->be));
    ci_progress bar;
    ci_progress_init(&bar, "loading");
    ci_model_options mo = {
        .max_batch_tokens = 2048, .progress = on_progress, .progress_user = &bar};
    ci_status s = ci_model_load(dir, L->be, &mo, &L->model);
    ci_progress_done(&bar);
    if (s.code) return s;
    L->load_s = ci_now() - t0;
    return ci_ok();
}

void ci_loaded_free(ci_loaded *L) {
    ci_model_free(L->model);
    ci_backend_destroy(L->be);
    ci_tokenizer_free(L->tok);
}
