/* chat_template.c — compile/render API over the Jinja interpreter, and
 * loading the template + special tokens from a model directory. */
#include "tokenizer/chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

struct ci_chat_template {
    jn_arena arena;
    jn_node *root;
    jn_limits lim;
};

static const jn_limits DEFAULT_LIMITS = {
    .max_steps = 20000000,
    .max_output = (size_t)64 << 20,
    .max_memory = (size_t)512 << 20,
    .max_depth = 256,
};

ci_status ci_chat_template_compile_n(const char *src, size_t len, ci_chat_template **out) {
    *out = NULL;
    if (!src) return ci_errorf(CI_ERR_INVALID, "chat template: no source");
    ci_chat_template *t = calloc(1, sizeof *t);
    if (!t) return ci_errorf(CI_ERR_NOMEM, "chat template: out of memory");
    t->lim = DEFAULT_LIMITS;
    t->arena.limit = (size_t)256 << 20;
    /* Jinja normalises newlines (\r\n, \r -> \n) and, without
     * keep_trailing_newline, drops one trailing newline. */
    char *norm = malloc(len + 1);
    ci_status st = ci_ok();
    if (!norm) {
        st = ci_errorf(CI_ERR_NOMEM, "chat template: out of memory");
        goto fail;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            norm[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            norm[n++] = src[i];
        }
    }
    if (n && norm[n - 1] == '\n') n--;
    norm[n] = '\0';
    jn_tok *toks;
    size_t ntoks;
    st = jn_lex(&t->arena, norm, n, &toks, &ntoks);
    if (st.code == CI_OK) st = jn_parse(&t->arena, toks, ntoks, &t->root);
    free(norm);
    if (st.code != CI_OK) goto fail;
    *out = t;
    return ci_ok();
fail:
    ci_chat_template_free(t);
    return st;
}

ci_status ci_chat_template_compile(const char *src, ci_chat_template **out) {
    if (!src) {
        *out = NULL;
        return ci_errorf(CI_ERR_INVALID, "chat template: no source");
    }
    return ci_chat_template_compile_n(src, strlen(src), out);
}

void ci_chat_template_free(ci_chat_template *tpl) {
    if (!tpl) return;
    jn_arena_free(&tpl->arena);
    free(tpl);
}

void ci_chat_template_set_limits(ci_chat_template *tpl, uint64_t max_steps, size_t max_output,
                                 size_t max_memory, int max_depth) {
    tpl->lim.max_steps = max_steps ? max_steps : DEFAULT_LIMITS.max_steps;
    tpl->lim.max_output = max_output ? max_output : DEFAULT_LIMITS.max_output;
    tpl->lim.max_memory = max_memory ? max_memory : DEFAULT_LIMITS.max_memory;
    tpl->lim.max_depth = max_depth > 0 ? max_depth : DEFAULT_LIMITS.max_depth;
}

ci_status ci_chat_template_render(const ci_chat_template *tpl, const json_t *context, char **out,
                                  size_t *len) {
    *out = NULL;
    *len = 0;
    if (!tpl) return ci_errorf(CI_ERR_INVALID, "chat template: not compiled");
    return jn_render(tpl->root, context, &tpl->lim, out, len);
}

/* ---- tokenizer_config.json ---- */

void ci_chat_config_free(ci_chat_config *cfg) {
    if (!cfg) return;
    free(cfg->tmpl_default);
    free(cfg->tmpl_tool_use);
    json_decref(cfg->special);
    memset(cfg, 0, sizeof *cfg);
}

static char *dup_json_str(const json_t *s) {
    size_t n = json_string_length(s);
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, json_string_value(s), n);
        p[n] = '\0';
    }
    return p;
}

ci_status ci_chat_config_parse(const char *text, size_t len, ci_chat_config *out) {
    memset(out, 0, sizeof *out);
    json_error_t err;
    json_t *c = json_loadb(text, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &err);
    if (!c)
        return ci_errorf(CI_ERR_FORMAT, "tokenizer_config.json: invalid JSON at line %d column %d: %s",
                         err.line, err.column, err.text);
    ci_status st = ci_ok();
    if (!json_is_object(c)) {
        st = ci_errorf(CI_ERR_FORMAT, "tokenizer_config.json: expected a JSON object");
        goto out;
    }
    out->special = json_object();
    if (!out->special) {
        st = ci_errorf(CI_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* transformers' SPECIAL_TOKENS_ATTRIBUTES (additional_special_tokens aside) */
    static const char *const KEYS[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                       "pad_token", "cls_token", "mask_token", NULL};
    for (int i = 0; KEYS[i]; i++) {
        json_t *v = json_object_get(c, KEYS[i]);
        if (!v || json_is_null(v)) continue;
        if (json_is_object(v)) v = json_object_get(v, "content");
        if (!json_is_string(v)) {
            st = ci_errorf(CI_ERR_FORMAT,
                           "tokenizer_config.json: %s: expected a string or {\"content\": ...}",
                           KEYS[i]);
            goto out;
        }
        json_object_set(out->special, KEYS[i], v);
    }
    json_t *ct = json_object_get(c, "chat_template");
    if (json_is_string(ct)) {
        out->tmpl_default = dup_json_str(ct);
        if (!out->tmpl_default) st = ci_errorf(CI_ERR_NOMEM, "out of memory");
    } else if (json_is_array(ct)) {
        size_t i;
        json_t *e;
        json_array_foreach(ct, i, e) {
            json_t *nm = json_object_get(e, "name"), *tp = json_object_get(e, "template");
            if (!json_is_string(nm) || !json_is_string(tp)) {
                st = ci_errorf(CI_ERR_FORMAT,
                               "tokenizer_config.json: chat_template[%zu]: expected {\"name\": "
                               "string, \"template\": string}",
                               i);
                goto out;
            }
            char **slot = !strcmp(json_string_value(nm), "default")    ? &out->tmpl_default
                          : !strcmp(json_string_value(nm), "tool_use") ? &out->tmpl_tool_use
                                                                       : NULL;
            if (slot && !*slot) {
                *slot = dup_json_str(tp);
                if (!*slot) {
                    st = ci_errorf(CI_ERR_NOMEM, "out of memory");
                    goto out;
                }
            }
        }
    } else if (ct && !json_is_null(ct)) {
        st = ci_errorf(CI_ERR_FORMAT,
                       "tokenizer_config.json: chat_template: expected a string or a list");
    }
out:
    json_decref(c);
    if (st.code != CI_OK) ci_chat_config_free(out);
    return st;
}

static ci_status slurp(const char *path, char **buf, size_t *len, bool *missing) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (missing) {
            *missing = true;
            return ci_ok();
        }
        return ci_errorf(CI_ERR_IO, "%s: cannot open", path);
    }
    if (missing) *missing = false;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 >= cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - 1 - n, f);
        n += got;
        if (!got) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!b) return ci_errorf(CI_ERR_NOMEM, "%s: out of memory", path);
    if (bad) {
        free(b);
        return ci_errorf(CI_ERR_IO, "%s: read error", path);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return ci_ok();
}

ci_status ci_chat_config_load(const char *model_dir, ci_chat_config *out) {
    memset(out, 0, sizeof *out);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    char *buf;
    size_t len;
    CI_TRY(slurp(path, &buf, &len, NULL));
    ci_status st = ci_chat_config_parse(buf, len, out);
    free(buf);
    if (st.code != CI_OK) return ci_status_wrap(st, "%s", model_dir);
    snprintf(path, sizeof path, "%s/chat_template.jinja", model_dir);
    bool missing;
    st = slurp(path, &buf, &len, &missing);
    if (st.code != CI_OK) {
        ci_chat_config_free(out);
        return st;
    }
    if (!missing) {
        free(out->tmpl_default);
        out->tmpl_default = buf;
    }
    return ci_ok();
}

const char *ci_chat_config_pick(const ci_chat_config *cfg, bool has_tools) {
    if (has_tools && cfg->tmpl_tool_use) return cfg->tmpl_tool_use;
    if (cfg->tmpl_default) return cfg->tmpl_default;
    return NULL;
}

ci_status ci_chat_build_context(const ci_chat_config *cfg, const json_t *request, json_t **ctx) {
    *ctx = NULL;
    if (!json_is_object(request)) return ci_errorf(CI_ERR_INVALID, "request: expected a JSON object");
    json_t *messages = json_object_get(request, "messages");
    if (!json_is_array(messages))
        return ci_errorf(CI_ERR_INVALID, "request: \"messages\" must be a list");
    json_t *kw = json_object_get(request, "template_kwargs");
    if (kw && !json_is_null(kw) && !json_is_object(kw))
        return ci_errorf(CI_ERR_INVALID, "request: \"template_kwargs\" must be an object");
    json_t *c = json_object();
    if (!c) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    if (cfg && cfg->special) json_object_update(c, cfg->special);
    json_object_set(c, "messages", messages);
    json_t *tools = json_object_get(request, "tools");
    json_object_set_new(c, "tools", tools ? json_incref(tools) : json_null());
    json_t *docs = json_object_get(request, "documents");
    json_object_set_new(c, "documents", docs ? json_incref(docs) : json_null());
    json_t *agp = json_object_get(request, "add_generation_prompt");
    json_object_set_new(c, "add_generation_prompt", agp ? json_incref(agp) : json_false());
    if (json_is_object(kw)) json_object_update(c, kw);
    *ctx = c;
    return ci_ok();
}

ci_status ci_chat_render_request(const ci_chat_config *cfg, const char *template_src,
                                 const json_t *request, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    json_t *tools = json_is_object(request) ? json_object_get(request, "tools") : NULL;
    const char *src = template_src;
    if (!src && cfg) src = ci_chat_config_pick(cfg, tools && !json_is_null(tools));
    if (!src)
        return ci_errorf(CI_ERR_INVALID,
                         "no chat template: tokenizer_config.json has no chat_template (use "
                         "--chat-template FILE)");
    json_t *ctx;
    CI_TRY(ci_chat_build_context(cfg, request, &ctx));
    ci_chat_template *tpl;
    ci_status st = ci_chat_template_compile(src, &tpl);
    if (st.code == CI_OK) {
        st = ci_chat_template_render(tpl, ctx, out, len);
        ci_chat_template_free(tpl);
    }
    json_decref(ctx);
    return st;
}
