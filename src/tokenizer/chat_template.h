/* chat_template.h — renders a model's Jinja chat template the way Python
 * transformers' apply_chat_template does (sandboxed Jinja2 with
 * trim_blocks, lstrip_blocks, loopcontrols, json.dumps-style tojson,
 * raise_exception and strftime_now), via a small Jinja2-subset interpreter.
 *
 * Rendering is bounded: steps, output size, memory and recursion depth are
 * capped, so a hostile template ends with an error, never a hang. */
#ifndef CINFER_TOKENIZER_CHAT_TEMPLATE_H
#define CINFER_TOKENIZER_CHAT_TEMPLATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

typedef struct ci_chat_template ci_chat_template;

/* Compiles template source (NUL-terminated). Syntax errors name the line. */
ci_status ci_chat_template_compile(const char *src, ci_chat_template **out);
/* Same, for a buffer that may hold NULs. */
ci_status ci_chat_template_compile_n(const char *src, size_t len, ci_chat_template **out);
void ci_chat_template_free(ci_chat_template *tpl);

/* Caps for one render (0 leaves a cap at its default). Defaults: 20M steps,
 * 64 MiB output, 512 MiB memory, depth 256. */
void ci_chat_template_set_limits(ci_chat_template *tpl, uint64_t max_steps, size_t max_output,
                                 size_t max_memory, int max_depth);

/* Renders with context: a JSON object whose keys become template variables
 * (messages, tools, add_generation_prompt, bos_token, ... and template
 * kwargs). *out is malloc'd and NUL-terminated; *len excludes the NUL. */
ci_status ci_chat_template_render(const ci_chat_template *tpl, const json_t *context, char **out,
                                  size_t *len);

/* What a model directory says about chat formatting. */
typedef struct ci_chat_config {
    char *tmpl_default;  /* the default template (or NULL) */
    char *tmpl_tool_use; /* the "tool_use" named template (or NULL) */
    json_t *special;     /* object: bos/eos/unk/sep/pad/cls/mask_token that are set */
} ci_chat_config;

/* Parses tokenizer_config.json text. chat_template may be a string or a list
 * of {"name", "template"}; special tokens may be strings or {"content"}. */
ci_status ci_chat_config_parse(const char *json, size_t len, ci_chat_config *out);
/* Loads DIR/tokenizer_config.json (and DIR/chat_template.jinja if present,
 * which then is the default template). */
ci_status ci_chat_config_load(const char *model_dir, ci_chat_config *out);
void ci_chat_config_free(ci_chat_config *cfg);

/* Template transformers would pick: tool_use when tools are given and it
 * exists, else default. NULL when there is none. */
const char *ci_chat_config_pick(const ci_chat_config *cfg, bool has_tools);

/* Builds the render context from a request object {"messages", "tools",
 * "add_generation_prompt", "template_kwargs", "documents"}: special tokens,
 * then messages/tools/documents/add_generation_prompt, then template_kwargs
 * (which override). *ctx is a new reference. */
ci_status ci_chat_build_context(const ci_chat_config *cfg, const json_t *request, json_t **ctx);

/* One call: picks the template (or uses template_src when not NULL),
 * compiles, builds the context and renders. */
ci_status ci_chat_render_request(const ci_chat_config *cfg, const char *template_src,
                                 const json_t *request, char **out, size_t *len);

#endif
