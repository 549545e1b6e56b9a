/* api.c — include/cinfer.h over engine.c. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cinfer.h"
#include "engine/engine.h"

_Static_assert(sizeof(cinfer_logprob) == sizeof(ci_engine_logprob), "logprob layout");
_Static_assert(offsetof(cinfer_logprob, top_logprobs) == offsetof(ci_engine_logprob, top_logprobs),
               "logprob layout");
_Static_assert(CINFER_MAX_LOGPROBS == CI_MAX_LOGPROBS, "logprob count");
_Static_assert((int)CINFER_FINISH_LENGTH == (int)CI_FINISH_LENGTH &&
                   (int)CINFER_FINISH_ERROR == (int)CI_FINISH_ERROR,
               "finish reasons");
_Static_assert((int)CINFER_ERR_INTERNAL == (int)CI_ERR_INTERNAL &&
                   (int)CINFER_ERR_CAPACITY == (int)CI_ERR_CAPACITY,
               "error codes");

struct cinfer_engine {
    ci_engine *e;
    cinfer_output *outs;
    int cap;
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
    ci_engine_config c = ci_engine_default_config();
    cinfer_engine_config o;
    memset(&o, 0, sizeof o);
    o.device = c.device;
    o.block_size = c.block_size;
    o.max_num_batched_tokens = c.max_num_batched_tokens;
    o.max_num_seqs = c.max_num_seqs;
    o.enable_prefix_caching = c.enable_prefix_caching;
    return o;
}

cinfer_sampling_params cinfer_sampling_params_default(void) {
    ci_engine_sampling s = ci_engine_default_sampling();
    cinfer_sampling_params p;
    memset(&p, 0, sizeof p);
    p.temperature = s.temperature;
    p.top_p = s.top_p;
    p.repetition_penalty = s.repetition_penalty;
    p.seed = s.seed;
    p.max_tokens = s.max_tokens;
    p.n = s.n;
    p.logprobs = s.logprobs;
    p.prompt_logprobs = s.prompt_logprobs;
    p.skip_special_tokens = s.skip_special_tokens;
    return p;
}

int cinfer_engine_create(const cinfer_engine_config *cfg, cinfer_engine **out, cinfer_error *err) {
    *out = NULL;
    if (!cfg) return set_err(err, ci_errorf(CI_ERR_INVALID, "cinfer_engine_create: no config"));
    ci_engine_config c = ci_engine_default_config();
    c.model_dir = cfg->model_dir;
    if (cfg->device) c.device = cfg->device;
    c.num_threads = cfg->num_threads;
    if (cfg->block_size) c.block_size = cfg->block_size;
    if (cfg->max_num_batched_tokens) c.max_num_batched_tokens = cfg->max_num_batched_tokens;
    if (cfg->max_num_seqs) c.max_num_seqs = cfg->max_num_seqs;
    c.kv_cache_tokens = cfg->kv_cache_tokens;
    c.kv_cache_memory = cfg->kv_cache_memory;
    c.enable_prefix_caching = cfg->enable_prefix_caching;
    cinfer_engine *h = calloc(1, sizeof *h);
    if (!h) return set_err(err, ci_errorf(CI_ERR_NOMEM, "cinfer_engine_create: out of memory"));
    ci_status s = ci_engine_create(&c, &h->e);
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
    free(e->outs);
    free(e);
}

int cinfer_add_request(cinfer_engine *e, const char *text, const int32_t *token_ids,
                       int num_token_ids, const cinfer_sampling_params *params, int priority,
                       int64_t *request_id, cinfer_error *err) {
    if (request_id) *request_id = -1;
    ci_engine_sampling sp = ci_engine_default_sampling();
    if (params) {
        sp.temperature = params->temperature;
        sp.top_k = params->top_k;
        sp.top_p = params->top_p;
        sp.min_p = params->min_p;
        sp.repetition_penalty = params->repetition_penalty;
        sp.presence_penalty = params->presence_penalty;
        sp.frequency_penalty = params->frequency_penalty;
        sp.seed = params->seed;
        sp.max_tokens = params->max_tokens;
        sp.min_tokens = params->min_tokens;
        sp.stop_token_ids = params->stop_token_ids;
        sp.num_stop_token_ids = params->num_stop_token_ids;
        sp.stop = params->stop;
        sp.num_stop = params->num_stop;
        sp.ignore_eos = params->ignore_eos;
        sp.n = params->n;
        sp.logprobs = params->logprobs;
        sp.prompt_logprobs = params->prompt_logprobs;
        sp.skip_special_tokens = params->skip_special_tokens;
    }
    ci_status s =
        text ? ci_engine_add_request_text(e->e, text, &sp, priority, request_id)
             : ci_engine_add_request(e->e, token_ids, num_token_ids, &sp, priority, request_id);
    return set_err(err, s);
}

int cinfer_abort_request(cinfer_engine *e, int64_t request_id, cinfer_error *err) {
    return set_err(err, ci_engine_abort(e->e, request_id));
}

int cinfer_step(cinfer_engine *e, const cinfer_output **outputs, int *num_outputs,
                cinfer_error *err) {
    *outputs = NULL;
    *num_outputs = 0;
    const ci_engine_output *o;
    int n;
    ci_status s = ci_engine_step(e->e, &o, &n);
    if (s.code) return set_err(err, s);
    if (n > e->cap) {
        int nc = e->cap ? e->cap : 16;
        while (nc < n)
            nc *= 2;
        cinfer_output *p = realloc(e->outs, sizeof *p * (size_t)nc);
        if (!p) return set_err(err, ci_errorf(CI_ERR_NOMEM, "cinfer_step: out of memory"));
        e->outs = p;
        e->cap = nc;
    }
    for (int i = 0; i < n; i++) {
        cinfer_output *d = &e->outs[i];
        d->request_id = o[i].request_id;
        d->sample_index = o[i].sample_index;
        d->token_ids = o[i].token_ids;
        d->num_token_ids = o[i].num_token_ids;
        d->text = o[i].text;
        d->text_len = o[i].text_len;
        d->finish_reason = (cinfer_finish_reason)o[i].finish_reason;
        d->logprobs = (const cinfer_logprob *)o[i].logprobs;
        d->prompt_logprobs = (const cinfer_logprob *)o[i].prompt_logprobs;
        d->num_prompt_logprobs = o[i].num_prompt_logprobs;
    }
    *outputs = e->outs;
    *num_outputs = n;
    return set_err(err, ci_ok());
}

int cinfer_has_unfinished(const cinfer_engine *e) {
    return ci_engine_has_unfinished(e->e);
}

cinfer_metrics cinfer_get_metrics(const cinfer_engine *e) {
    ci_engine_metrics m = ci_engine_get_metrics(e->e);
    cinfer_metrics o;
    memset(&o, 0, sizeof o);
    o.num_running = m.num_running;
    o.num_waiting = m.num_waiting;
    o.num_preemptions = m.num_preemptions;
    o.kv_cache_usage = m.kv_usage;
    o.num_kv_blocks = m.num_kv_blocks;
    o.kv_blocks_used = m.kv_blocks_used;
    o.peak_kv_blocks_used = m.peak_kv_blocks_used;
    o.block_size = m.block_size;
    o.prefix_cache_queried_tokens = m.prefix_cache_queried_tokens;
    o.prefix_cache_hit_tokens = m.prefix_cache_hit_tokens;
    o.prompt_tokens = m.prompt_tokens;
    o.generation_tokens = m.generation_tokens;
    o.num_steps = m.num_steps;
    o.num_requests = m.num_requests;
    o.num_finished = m.num_finished;
    return o;
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
