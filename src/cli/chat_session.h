/* chat_session.h — a conversation for the CLI (`generate --chat`, `chat`):
 * an optional system message and the turns so far, rendered with the
 * model's chat template (or a --chat-template file) with the generation
 * prompt, as the OpenAI chat endpoint renders a request. */
#ifndef CINFER_CLI_CHAT_SESSION_H
#define CINFER_CLI_CHAT_SESSION_H

#include <jansson.h>
#include <stddef.h>

#include "tokenizer/chat_template.h"
#include "util/status.h"

typedef struct ci_chat_session {
    ci_chat_config cfg;
    char *template_src; /* --chat-template FILE's text, or NULL: the model's */
    char *system;       /* NULL: none */
    json_t *turns;      /* [{"role", "content"}] without the system message */
} ci_chat_session;

/* Loads the model's chat config and, when template_file is not NULL, that
 * template; fails when neither gives a template (or the template does not
 * compile). */
ci_status ci_chat_session_open(ci_chat_session *cs, const char *model_dir,
                               const char *template_file);
void ci_chat_session_close(ci_chat_session *cs);

/* Sets (NULL or "": removes) the system message; the turns stay. */
ci_status ci_chat_session_set_system(ci_chat_session *cs, const char *text);
/* Appends a turn; role "user" or "assistant". */
ci_status ci_chat_session_add(ci_chat_session *cs, const char *role, const char *text, size_t len);
/* Drops the last turn (a reply that failed). */
void ci_chat_session_pop(ci_chat_session *cs);
/* Forgets every turn (the system message stays). */
void ci_chat_session_reset(ci_chat_session *cs);
/* The prompt text: system + turns + the generation prompt (malloc'd). */
ci_status ci_chat_session_render(const ci_chat_session *cs, char **out, size_t *len);

#endif
