/* chat_session.c — see chat_session.h. */
#include "cli/chat_session.h"

#include <stdlib.h>
#include <string.h>

#include "cli/common.h"

ci_status ci_chat_session_open(ci_chat_session *cs, const char *model_dir,
                               const char *template_file) {
    memset(cs, 0, sizeof *cs);
    cs->turns = json_array();
    if (!cs->turns) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    ci_status s = ci_chat_config_load(model_dir, &cs->cfg);
    if (!s.code && template_file) {
        s = ci_read_text(template_file, &cs->template_src);
        if (s.code) s = ci_status_wrap(s, "--chat-template");
    }
    const char *src = cs->template_src ? cs->template_src : ci_chat_config_pick(&cs->cfg, false);
    if (!s.code && !src)
        s = ci_errorf(CI_ERR_INVALID, "%s has no chat template (use --chat-template FILE)",
                      model_dir);
    if (!s.code) { /* a template that does not compile fails here, not at the first turn */
        ci_chat_template *tpl = NULL;
        s = ci_chat_template_compile(src, &tpl);
        ci_chat_template_free(tpl);
        if (s.code) s = ci_status_wrap(s, "chat template");
    }
    if (s.code) ci_chat_session_close(cs);
    return s;
}

void ci_chat_session_close(ci_chat_session *cs) {
    ci_chat_config_free(&cs->cfg);
    free(cs->template_src);
    free(cs->system);
    json_decref(cs->turns);
    memset(cs, 0, sizeof *cs);
}

ci_status ci_chat_session_set_system(ci_chat_session *cs, const char *text) {
    free(cs->system);
    cs->system = NULL;
    if (!text || !*text) return ci_ok();
    json_t *t = json_string(text);
    if (!t) return ci_errorf(CI_ERR_INVALID, "the system message is not valid UTF-8");
    json_decref(t);
    cs->system = strdup(text);
    return cs->system ? ci_ok() : ci_errorf(CI_ERR_NOMEM, "out of memory");
}

static json_t *message(const char *role, const char *text, size_t len) {
    json_t *m = json_object();
    if (!m) return NULL;
    json_t *c = json_stringn(text, len);
    if (!c) { /* not UTF-8 */
        json_decref(m);
        return NULL;
    }
    json_object_set_new(m, "role", json_string(role));
    json_object_set_new(m, "content", c);
    return m;
}

ci_status ci_chat_session_add(ci_chat_session *cs, const char *role, const char *text, size_t len) {
    json_t *m = message(role, text, len);
    if (!m) return ci_errorf(CI_ERR_INVALID, "%s message is not valid UTF-8", role);
    json_array_append_new(cs->turns, m);
    return ci_ok();
}

void ci_chat_session_pop(ci_chat_session *cs) {
    size_t n = json_array_size(cs->turns);
    if (n) json_array_remove(cs->turns, n - 1);
}

void ci_chat_session_reset(ci_chat_session *cs) {
    json_array_clear(cs->turns);
}

ci_status ci_chat_session_render(const ci_chat_session *cs, char **out, size_t *len) {
    json_t *msgs = json_array(), *req = json_object();
    if (!msgs || !req) {
        json_decref(msgs);
        json_decref(req);
        return ci_errorf(CI_ERR_NOMEM, "out of memory");
    }
    if (cs->system) json_array_append_new(msgs, message("system", cs->system, strlen(cs->system)));
    json_array_extend(msgs, cs->turns);
    json_object_set_new(req, "messages", msgs);
    json_object_set_new(req, "add_generation_prompt", json_true());
    ci_status s = ci_chat_render_request(&cs->cfg, cs->template_src, req, out, len);
    json_decref(req);
    return s;
}
