/* server.h — internals of `cinfer serve`, the OpenAI-compatible HTTP server.
 *
 * Three threads. The tokenizer thread (pretok.c) passes every command on
 * in order, text prompts made token ids. The engine thread owns the
 * cinfer_engine: it takes commands
 * (generate, abort, tokenize, detokenize) from a mutex-protected queue
 * (woken by a condition variable), steps the engine while work exists and
 * pushes events (prompt accepted, token deltas, errors) onto a second queue,
 * waking the libevent thread with event_active(). The libevent thread
 * (http.c) owns every HTTP object and every job; jobs are named across the
 * threads only by a 64-bit id, so a job that goes away (client disconnect)
 * simply makes its later events land nowhere.
 *
 *   server.c  engine thread + the two queues
 *   openai.c  request parsing and response JSON (OpenAI shapes)
 *   openai_fields.c  logit_bias; request fields refused with a 400
 *   models.c  /v1/models, /v1/models/{id}
 *   metrics.c Prometheus text
 *   http.c    evhttp plumbing, jobs, srv_run()
 *   http_response.c  JSON and SSE replies (http_response.h, http_state.h)
 *   pretok.c  tokenizer thread
 *   limits.c  connection cap, request deadlines, accept() errors (limits.h)
 *   admission.c  framing checks, admission, X-Request-Id, access log (admission.h)
 *   drain.c   SIGINT/SIGTERM drain
 *   log.c     log levels, text / JSON lines (log.h)
 */
#ifndef CINFER_SERVER_SERVER_H
#define CINFER_SERVER_SERVER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cinfer.h"
#include "tokenizer/chat_template.h"

/* ---- configuration (cmd_serve.c) ---- */
typedef struct srv_config {
    const char *model_dir;
    const char *host;
    int port;
    const char *api_key;           /* NULL = no auth */
    const char *served_model_name; /* NULL = basename of model_dir */
    const char *chat_template;     /* --chat-template FILE's text: replaces the tokenizer's; NULL */
    const char *chat_template_path; /* its file name, for messages */
    cinfer_engine_config engine;
    int max_waiting;          /* requests beyond max_num_seqs before 503 */
    double request_timeout_s; /* 0 = none */
    size_t max_body_bytes;
    int max_connections;          /* open connections beyond -> 503 + close (0 = no cap) */
    double header_timeout_s;      /* a request's headers within S of its first byte (0 = none) */
    double body_timeout_s;        /* the whole request within S of its first byte (0 = none) */
    double shutdown_timeout_s;    /* SIGTERM: in-flight requests may finish within S */
    long long max_queued_tokens;  /* prompt tokens not yet started beyond -> 503 (0 = no cap) */
    int log_level;                /* SRV_LOG_* (log.h) */
    int log_json;                 /* --log-format json */
    const char *tool_call_parser; /* hermes | llama3_json | mistral; NULL = from the template */
} srv_config;

/* Blocks until SIGINT/SIGTERM; returns the process exit code. */
int srv_run(const srv_config *cfg);

/* ---- engine thread (server.c) ---- */
typedef enum srv_cmd_kind {
    SRV_CMD_GENERATE,
    SRV_CMD_ABORT,
    SRV_CMD_TOKENIZE,
    SRV_CMD_DETOKENIZE
} srv_cmd_kind;

typedef struct srv_prompt {
    char *text; /* or NULL: ids */
    int32_t *ids;
    int num_ids;
} srv_prompt;

typedef struct srv_cmd {
    struct srv_cmd *next;
    srv_cmd_kind kind;
    uint64_t job_id;
    /* GENERATE: prompts; TOKENIZE: prompts[0].text; DETOKENIZE: prompts[0].ids */
    srv_prompt *prompts;
    int num_prompts;
    cinfer_sampling_params sp; /* stop / stop_token_ids point into the arrays below */
    char **stop;
    int num_stop;
    int32_t *stop_ids;
    int num_stop_ids;
    cinfer_logit_bias *bias; /* sp.logit_bias */
    int num_bias;
    int priority;
    int echo;            /* send the prompt text back with the acceptance */
    int token_strings;   /* logprobs wanted: attach token strings; TOKENIZE: return_token_strs */
    int add_special;     /* TOKENIZE */
    int max_tokens_auto; /* no max_tokens given: fill the context (max_model_len - prompt) */
    int max_model_len;   /* 0 = unknown */
    char *structured;    /* sp.structured points here (structured_req.c) */
} srv_cmd;

void srv_cmd_free(srv_cmd *c);

typedef enum srv_ev_kind {
    SRV_EV_ACCEPTED, /* every prompt was queued: prompt token counts (+ echo texts) */
    SRV_EV_OUTPUT,   /* a delta of one choice */
    SRV_EV_ERROR,    /* the job failed (nothing more follows) */
    SRV_EV_TOKENS,   /* TOKENIZE result: ids */
    SRV_EV_TEXT,     /* DETOKENIZE result: text */
} srv_ev_kind;

typedef struct srv_lp {
    int32_t id;
    char *tok;
    float lp;
    int num_top;
    int32_t top_id[CINFER_MAX_LOGPROBS];
    char *top_tok[CINFER_MAX_LOGPROBS];
    float top_lp[CINFER_MAX_LOGPROBS];
} srv_lp;

typedef struct srv_event {
    struct srv_event *next;
    srv_ev_kind kind;
    uint64_t job_id;
    int prompt_index, sample_index;
    char *text; /* OUTPUT delta / TEXT result */
    size_t text_len;
    int32_t *ids; /* OUTPUT new ids / TOKENS result / ACCEPTED prompt token counts */
    int num_ids;
    srv_lp *lps;  /* OUTPUT: num_ids entries or NULL */
    srv_lp *plps; /* OUTPUT (once per prompt): prompt tokens' logprobs, the first with lp NAN */
    int num_plps;
    char **echo;       /* ACCEPTED: num_ids prompt texts or NULL */
    const char **strs; /* TOKENS with return_token_strs: num_ids vocabulary entries (owned by the
                          engine's tokenizer; NULL entries: none) or NULL */
    cinfer_finish_reason finish;
    int err_code; /* ERROR: CINFER_ERR_* */
    char err_msg[256];
} srv_event;

void srv_event_free(srv_event *ev);

typedef struct srv_engine srv_engine;

/* notify(arg) is called from the engine thread after events were queued. */
int srv_engine_start(cinfer_engine *e, void (*notify)(void *), void *arg, srv_engine **out);
void srv_engine_submit(srv_engine *s, srv_cmd *cmd); /* takes ownership */
srv_event *srv_engine_take_events(srv_engine *s);    /* FIFO list; caller frees */
cinfer_metrics srv_engine_metrics(srv_engine *s);    /* snapshot after the last step */
void srv_engine_stop(srv_engine *s);                 /* aborts everything, joins, frees */

/* ---- tokenizer thread (pretok.c): every command passes through it, in
 * order, to srv_engine_submit; text prompts are tokenized on the way ---- */
typedef struct srv_pretok srv_pretok;
int srv_pretok_start(cinfer_engine *e, srv_engine *eng, srv_pretok **out);
void srv_pretok_submit(srv_pretok *p, srv_cmd *cmd); /* takes ownership */
void srv_pretok_stop(srv_pretok *p); /* joins; drops what is queued (before srv_engine_stop) */

/* ---- metrics (metrics.c) ---- */
#define SRV_HIST_MAX_BUCKETS 24
typedef struct srv_hist {
    int num_bounds;
    double bounds[SRV_HIST_MAX_BUCKETS];
    uint64_t counts[SRV_HIST_MAX_BUCKETS + 1];
    double sum;
    uint64_t count;
} srv_hist;

typedef struct srv_metrics {
    uint64_t finished[5]; /* by cinfer_finish_reason (NONE slot: timeout) */
    uint64_t prompt_tokens, generation_tokens;
    uint64_t http_requests, http_errors, rejected_503;
    uint64_t rejected_conns, deadline_cut; /* --max-connections refusals, request deadlines */
    srv_hist ttft, tpot, e2e;
    srv_hist queue, prefill, decode, inference, itl; /* vLLM's request phase histograms */
    srv_hist req_prompt, req_gen, iter_tokens;
} srv_metrics;

void srv_metrics_init(srv_metrics *m);
void srv_hist_observe(srv_hist *h, double v);
/* Prometheus text exposition; malloc'd. */
char *srv_metrics_render(const srv_metrics *m, const cinfer_metrics *eng, const char *model,
                         int jobs_in_flight, const cinfer_engine_config *ec);

/* ---- OpenAI request parsing / response JSON (openai.c) ---- */
typedef struct srv_err {
    int status;       /* HTTP status */
    const char *type; /* invalid_request_error, ... */
    const char *param;
    char message[256];
} srv_err;

/* Fills *e (the type follows the status) and returns -1 (srv_err.c). */
int srv_errf(srv_err *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* {"error": {...}} as a compact string (malloc'd). */
char *srv_error_json(const srv_err *e);

/* Chat template of the model (tpl NULL: none). */
typedef struct srv_chat {
    ci_chat_config cfg;
    ci_chat_template *tpl;
    int tool_parser; /* srv_tool_parser: --tool-call-parser, else detected from the template */
} srv_chat;

/* How a chat request's tools are used (tools_req.c). */
typedef enum srv_tool_mode {
    SRV_TOOLS_NONE = 0, /* no tools, or tool_choice "none": plain content */
    SRV_TOOLS_AUTO,     /* the output is parsed for calls in the parser's format */
    SRV_TOOLS_REQUIRED, /* constrained: a JSON list of {"name", "parameters"} calls */
    SRV_TOOLS_NAMED,    /* constrained: the named function's arguments object */
} srv_tool_mode;

typedef struct srv_gen_req {
    int chat;
    const char *model; /* borrowed from the request JSON */
    int stream, include_usage;
    int echo;
    int logprobs; /* -1 = off; completions: k; chat: top_logprobs */
    int priority;
    int tool_mode;       /* srv_tool_mode */
    int tool_parser;     /* SRV_TOOLS_AUTO: srv_tool_parser */
    char tool_name[128]; /* SRV_TOOLS_NAMED: the function */
    srv_cmd *cmd;        /* GENERATE command, owned until submitted */
} srv_gen_req;

/* Parses a /v1/completions (chat = 0) or /v1/chat/completions body. The
 * chat prompt is rendered with the model's chat template. Returns 0
 * or fills *err. */
int srv_parse_generate(json_t *body, int chat, const srv_chat *tmpl, srv_gen_req *out,
                       srv_err *err);

/* structured_req.c: the request's structured-output constraint, from any of
 * response_format, structured_outputs, guided_json / guided_regex /
 * guided_grammar / guided_choice, or llama.cpp's grammar / json_schema,
 * into c->sp (more than one: 400). Returns 0 or fills *err. */
int srv_parse_structured(json_t *body, srv_cmd *c, srv_err *err);
/* tools_req.c: tools, tool_choice and parallel_tool_calls of a chat request
 * into out (tool_choice required / named: a JSON-schema constraint on
 * out->cmd). Returns 0 or fills *err. */
int srv_parse_tools(json_t *body, const srv_chat *chat, srv_gen_req *out, srv_err *err);
/* Sets c's constraint (kind: cinfer_structured_kind) to a copy of text. */
int srv_set_structured(srv_cmd *c, int kind, const char *text, srv_err *err);
/* openai_fields.c: refuses (400 naming the field) the OpenAI / vLLM request
 * fields cinfer does not implement when set to anything but their default;
 * n is the request's n (best_of must equal it). */
int srv_check_fields(json_t *body, int chat, int n, srv_err *err);
/* Parses "logit_bias" into c->bias and c->sp (token ids are checked against
 * the vocabulary by the engine). */
int srv_parse_logit_bias(json_t *body, srv_cmd *c, srv_err *err);

/* Makes a valid UTF-8 JSON string from bytes (invalid bytes -> U+FFFD). */
json_t *srv_json_text(const char *s, size_t n);

/* Renders body's messages with the chat template to a prompt (malloc'd). */
int srv_render_chat(const srv_chat *chat, json_t *body, char **out, srv_err *err);

#endif
