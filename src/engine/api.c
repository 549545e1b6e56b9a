/* api.c — include/cinfer.h over engine.c. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cinfer.h"
#include "engine/engine.h"

_Static_assert((int)CINFER_ERR_INTERNAL == (int)CI_ERR_INTERNAL &&
                   (int)CINFER_ERR_CAPACITY == (int)CI_ERR_CAPACITY,
               "error codes");

/* The public handle is the engine itself: cinfer.h's types are the
 * engine's (engine.h typedefs them), so nothing is copied field by field. */
struct cinfer_engine {
    ci_engine *e;
};

static int set_err(cinfer_error *err, ci_status s) {
    if (err) {
        err->code = (int)s.code;
        memcpy(err->message, s.msg, sizeof err->message);
        err->message[sizeof err->message - 1] = '\0';
    }
    return (int)s.code;
}

cinfer_engine_config cinfer_engine_config_default(void) {
    return ci_engine_default_config();
}

cinfer_sampling_params cinfer_sampling_params_default(void) {
    return ci_engine_default_sampling();
}

int cinfer_engine_create(const cinfer_engine_config *cfg, cinfer_engine **out, cinfer_error *err) {
    *out = NULL;
    if (!cfg) return set_err(err, ci_errorf(CI_ERR_INVALID, "cinfer_engine_create: no config"));
    cinfer_engine *h = calloc(1, sizeof *h);
    if (!h) return set_err(err, ci_errorf(CI_ERR_NOMEM, "cinfer_engine_create: out of memory"));
    ci_status s = ci_engine_create(cfg, &h->e);
    if (s.code) {
        free(h);
        return set_err(err, s);
    }
    *out = h;
    return set_err(err, ci_ok());
}

void cinfer_engine_destroy(cinfer_engine *e) {
    if (!e) return;
    ci_engine_destroy(e->e);
    free(e);
}

int cinfer_add_request(cinfer_engine *e, const char *text, const int32_t *token_ids,
                       int num_token_ids, const cinfer_sampling_params *params, int priority,
                       int64_t *request_id, cinfer_error *err) {
    if (request_id) *request_id = -1;
    ci_status s =
        text ? ci_engine_add_request_text(e->e, text, params, priority, request_id)
             : ci_engine_add_request(e->e, token_ids, num_token_ids, params, priority, request_id);
    return set_err(err, s);
}

int cinfer_abort_request(cinfer_engine *e, int64_t request_id, cinfer_error *err) {
    return set_err(err, ci_engine_abort(e->e, request_id));
}

int cinfer_step(cinfer_engine *e, const cinfer_output **outputs, int *num_outputs,
                cinfer_error *err) {
    return set_err(err, ci_engine_step(e->e, outputs, num_outputs));
}

int cinfer_complete_step(cinfer_engine *e, cinfer_error *err) {
    return set_err(err, ci_engine_complete_step(e->e));
}

int cinfer_early_outputs(cinfer_engine *e, const cinfer_output **outputs, int *num_outputs,
                         cinfer_error *err) {
    return set_err(err, ci_engine_early_outputs(e->e, outputs, num_outputs));
}

int cinfer_has_unfinished(const cinfer_engine *e) {
    return ci_engine_has_unfinished(e->e);
}

cinfer_metrics cinfer_get_metrics(const cinfer_engine *e) {
    return ci_engine_get_metrics(e->e);
}

int cinfer_tokenize(cinfer_engine *e, const char *text, int add_special_tokens, int32_t **ids,
                    size_t *num_ids, cinfer_error *err) {
    *ids = NULL;
    *num_ids = 0;
    ci_tokenizer *tok = ci_engine_tokenizer(e->e);
    if (!tok)
        return set_err(err, ci_errorf(CI_ERR_INVALID, "tokenize: the model has no tokenizer"));
    if (!text) return set_err(err, ci_errorf(CI_ERR_INVALID, "tokenize: no text"));
    return set_err(
        err, ci_tokenizer_encode(tok, text, strlen(text), add_special_tokens != 0, ids, num_ids));
}

int cinfer_detokenize(cinfer_engine *e, const int32_t *ids, size_t num_ids, int skip_special_tokens,
                      char **text, cinfer_error *err) {
    *text = NULL;
    ci_tokenizer *tok = ci_engine_tokenizer(e->e);
    if (!tok)
        return set_err(err, ci_errorf(CI_ERR_INVALID, "detokenize: the model has no tokenizer"));
    int V = ci_engine_vocab_size(e->e);
    for (size_t i = 0; i < num_ids; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return set_err(err, ci_errorf(CI_ERR_INVALID,
                                          "detokenize: token id %d outside the vocabulary [0, %d)",
                                          (int)ids[i], V));
    size_t len;
    return set_err(err,
                   ci_tokenizer_decode(tok, ids, num_ids, skip_special_tokens != 0, text, &len));
}

void cinfer_free(void *p) {
    free(p);
}

int cinfer_vocab_size(const cinfer_engine *e) {
    return ci_engine_vocab_size(e->e);
}

const char *cinfer_token_str(const cinfer_engine *e, int32_t id) {
    ci_tokenizer *tok = ci_engine_tokenizer(e->e);
    return tok ? ci_tokenizer_id_to_token(tok, id) : NULL;
}
