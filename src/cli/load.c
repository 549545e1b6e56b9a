#include "cli/load.h"

#include <jansson.h>
#include <stdio.h>

#include "util/progress.h"

ci_status ci_load_tokenizer(const char *dir, ci_loaded *L) {
    return ci_tokenizer_load(dir, &L->tok);
}

static void on_progress(size_t done, size_t total, void *user) {
    ci_progress_update(user, done, total);
}

static void add_stop(ci_loaded *L, json_int_t id) {
    if (id < 0 || L->num_stop_ids >= (int)(sizeof L->stop_ids / sizeof L->stop_ids[0])) return;
    for (int i = 0; i < L->num_stop_ids; i++)
        if (L->stop_ids[i] == id) return;
    L->stop_ids[L->num_stop_ids++] = (int32_t)id;
}

/* generation_config.json's eos_token_id (an int or a list) also ends
 * generation, as in transformers' generate(). Optional file. */
static void add_generation_config_stops(const char *dir, ci_loaded *L) {
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    json_t *g = json_load_file(path, 0, NULL);
    json_t *e = json_object_get(g, "eos_token_id");
    if (json_is_integer(e)) add_stop(L, json_integer_value(e));
    size_t i;
    json_t *v;
    json_array_foreach(e, i, v) {
        if (json_is_integer(v)) add_stop(L, json_integer_value(v));
    }
    json_decref(g);
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
    for (int i = 0; i < L->model->cfg.num_eos_token_ids; i++)
        add_stop(L, L->model->cfg.eos_token_ids[i]);
    add_generation_config_stops(dir, L);
    if (L->tok) add_stop(L, ci_tokenizer_eos_id(L->tok));
    L->load_s = ci_now() - t0;
    return ci_ok();
}

void ci_loaded_free(ci_loaded *L) {
    ci_model_free(L->model);
    ci_backend_destroy(L->be);
    ci_tokenizer_free(L->tok);
}
