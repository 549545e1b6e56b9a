/* openai_fields.c — the request fields of /v1/completions and
 * /v1/chat/completions that openai.c does not parse: which are accepted
 * and ignored (they change nothing OpenAI itself would return), which are
 * refused with a 400 naming the field when set to anything but their
 * default (a feature cinfer does not have: silently ignoring it would
 * return something other than what was asked for), and logit_bias.
 * docs/server.md lists the same table. Everything else is ignored, as vLLM
 * does with unknown fields: OpenAI's bookkeeping fields (user, metadata,
 * store, service_tier, safety_identifier, prompt_cache_key) change nothing
 * in a reply. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

/* When a refused field is still fine: null is always fine. */
typedef enum {
    OK_NONE,   /* any non-null value is refused */
    OK_FALSE,  /* false is fine (a boolean feature switch) */
    OK_TRUE,   /* true is fine (the default is on) */
    OK_EMPTY,  /* "" / [] / {} is fine */
    OK_ONE,    /* the number 1 is fine (length_penalty) */
    OK_MODAL,  /* ["text"] is fine (modalities) */
    OK_DEFAULT /* true on completions, false on chat (add_special_tokens) */
} ok_when;

enum { BOTH = 3, COMPL = 1, CHAT = 2 };

typedef struct {
    const char *name;
    int where; /* COMPL | CHAT */
    ok_when ok;
    const char *why;
} refused_field;

static const refused_field k_refused[] = {
    {"suffix", COMPL, OK_EMPTY, "insertion (suffix) is not supported"},
    {"echo", CHAT, OK_FALSE, "'echo' is only supported on /v1/completions"},
    {"functions", CHAT, OK_NONE, "legacy 'functions' are not supported; use 'tools'"},
    {"function_call", CHAT, OK_NONE, "legacy 'function_call' is not supported; use 'tool_choice'"},
    {"use_beam_search", BOTH, OK_FALSE, "beam search is not supported"},
    {"length_penalty", BOTH, OK_ONE, "'length_penalty' needs beam search (not supported)"},
    {"include_stop_str_in_output", BOTH, OK_FALSE, "'include_stop_str_in_output' is not supported"},
    {"allowed_token_ids", BOTH, OK_NONE, "'allowed_token_ids' is not supported"},
    {"bad_words", BOTH, OK_EMPTY, "'bad_words' is not supported"},
    {"prompt_logprobs", BOTH, OK_NONE, "'prompt_logprobs' is not supported; use echo + logprobs"},
    {"truncate_prompt_tokens", BOTH, OK_NONE, "'truncate_prompt_tokens' is not supported"},
    {"spaces_between_special_tokens", BOTH, OK_TRUE,
     "'spaces_between_special_tokens': false is not supported"},
    {"add_special_tokens", BOTH, OK_DEFAULT, "'add_special_tokens' other than the default"},
    {"continue_final_message", CHAT, OK_FALSE, "'continue_final_message' is not supported"},
    {"documents", CHAT, OK_NONE, "'documents' are not supported"},
    {"chat_template", CHAT, OK_NONE,
     "a per-request 'chat_template' is not supported (serve --chat-template FILE)"},
    {"mm_processor_kwargs", BOTH, OK_NONE, "multimodal inputs are not supported"},
    {"audio", CHAT, OK_NONE, "audio output is not supported"},
    {"modalities", CHAT, OK_MODAL, "only the \"text\" modality is supported"},
    {"prediction", CHAT, OK_NONE, "predicted outputs are not supported"},
    {"web_search_options", CHAT, OK_NONE, "web search is not supported"},
    {"reasoning_effort", CHAT, OK_NONE, "'reasoning_effort' is not supported"},
    {"verbosity", CHAT, OK_NONE, "'verbosity' is not supported"},
    {"logits_processors", BOTH, OK_NONE, "custom 'logits_processors' are not supported"},
    {"return_tokens_as_token_ids", BOTH, OK_FALSE, "'return_tokens_as_token_ids' is not supported"},
    {"return_token_ids", BOTH, OK_FALSE, "'return_token_ids' is not supported"},
    {"cache_salt", BOTH, OK_NONE, "'cache_salt' (prefix cache isolation) is not supported"},
    {"kv_transfer_params", BOTH, OK_NONE, "KV transfer is not supported"},
    {"vllm_xargs", BOTH, OK_NONE, "'vllm_xargs' are not supported"},
    {"prompt_embeds", COMPL, OK_NONE, "'prompt_embeds' are not supported"},
};

static int value_ok(const refused_field *f, json_t *v, int chat) {
    switch (f->ok) {
    case OK_NONE: return 0;
    case OK_FALSE: return json_is_false(v);
    case OK_TRUE: return json_is_true(v);
    case OK_EMPTY:
        return (json_is_string(v) && json_string_length(v) == 0) ||
               (json_is_array(v) && json_array_size(v) == 0) ||
               (json_is_object(v) && json_object_size(v) == 0);
    case OK_ONE: return json_is_number(v) && json_number_value(v) == 1.0;
    case OK_MODAL: {
        json_t *m = json_array_get(v, 0);
        return json_is_array(v) && json_array_size(v) == 1 && json_is_string(m) &&
               !strcmp(json_string_value(m), "text");
    }
    case OK_DEFAULT: return chat ? json_is_false(v) : json_is_true(v);
    }
    return 0;
}

int srv_check_fields(json_t *body, int chat, int n, srv_err *e) {
    int where = chat ? CHAT : COMPL;
    for (size_t i = 0; i < sizeof k_refused / sizeof *k_refused; i++) {
        const refused_field *f = &k_refused[i];
        json_t *v = json_object_get(body, f->name);
        if (!(f->where & where) || !v || json_is_null(v) || value_ok(f, v, chat)) continue;
        return srv_errf(e, 400, f->name, "%s", f->why);
    }
    /* best_of = n draws n and returns them all, as no best_of does */
    json_t *bo = json_object_get(body, "best_of");
    if (bo && !json_is_null(bo)) {
        if (!json_is_integer(bo))
            return srv_errf(e, 400, "best_of", "'best_of' must be an integer");
        if (json_integer_value(bo) != n)
            return srv_errf(e, 400, "best_of", "'best_of' other than n (%d) is not supported", n);
    }
    return 0;
}

int srv_parse_logit_bias(json_t *body, srv_cmd *c, srv_err *e) {
    json_t *v = json_object_get(body, "logit_bias");
    if (!v || json_is_null(v)) return 0;
    if (!json_is_object(v))
        return srv_errf(e, 400, "logit_bias",
                        "'logit_bias' must be an object of token id -> bias in [-100, 100]");
    size_t n = json_object_size(v);
    if (n > 1024) return srv_errf(e, 400, "logit_bias", "at most 1024 'logit_bias' entries");
    if (n == 0) return 0;
    c->bias = calloc(n, sizeof *c->bias);
    if (!c->bias) return srv_errf(e, 500, NULL, "out of memory");
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        char *end;
        errno = 0;
        long id = strtol(key, &end, 10);
        if (!key[0] || *end || errno || id < 0 || id > INT32_MAX)
            return srv_errf(e, 400, "logit_bias", "'logit_bias' key '%.64s' is not a token id",
                            key);
        if (!json_is_number(val))
            return srv_errf(e, 400, "logit_bias", "'logit_bias' of token %ld must be a number", id);
        double b = json_number_value(val);
        if (!(b >= -100.0 && b <= 100.0))
            return srv_errf(e, 400, "logit_bias",
                            "'logit_bias' of token %ld must be in [-100, 100] (got %g)", id, b);
        c->bias[c->num_bias].token = (int32_t)id;
        c->bias[c->num_bias++].bias = (float)b;
    }
    c->sp.logit_bias = c->bias;
    c->sp.num_logit_bias = c->num_bias;
    return 0;
}
