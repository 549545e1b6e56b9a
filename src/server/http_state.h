/* http_state.h — what the libevent thread keeps (http.c): the server
 * context, and per request a job with one choice per returned sequence;
 * shared with the response builders (http_response.c). */
#ifndef CINFER_SERVER_HTTP_STATE_H
#define CINFER_SERVER_HTTP_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "server/server.h"

typedef enum ep_kind { EP_COMPLETIONS, EP_CHAT, EP_TOKENIZE, EP_DETOKENIZE } ep_kind;

typedef struct choice {
    char *text; /* accumulated text (non-streaming) */
    size_t len, cap;
    int ntokens;
    cinfer_finish_reason finish;
    int done;
    srv_lp *lps; /* accumulated logprobs (non-streaming) */
    int nlps, caplps;
    size_t *offsets;   /* text offset of each logprob token */
    size_t stream_off; /* streaming: bytes sent so far */
    int sent_role;
    int tool_calls; /* calls found in the output (its finish_reason is "tool_calls") */
} choice;

typedef struct srv_ctx srv_ctx;
typedef struct srv_conn srv_conn; /* limits.c */

typedef struct job {
    struct job *prev, *next;
    uint64_t id;
    srv_ctx *ctx;
    struct evhttp_request *req; /* NULL once answered or disconnected */
    struct evhttp_connection *conn;
    ep_kind ep;
    int stream, include_usage, logprobs, echo, n, num_prompts, num_choices;
    int is_gen;
    char idstr[48];
    long long created;
    const char *model;
    choice *ch;
    int finished, accepted, headers_sent, timed_out, aborted;
    int prompt_tokens, completion_tokens;
    double t0, t_first, t_last, t_accept;
    int status;           /* HTTP status answered (access log) */
    long long queued_est; /* prompt tokens counted in ctx->queued_tokens */
    char reqid[130];      /* X-Request-Id (the client's or ours) */
    const char *path;
    struct event *timer;
    struct event *watch; /* EOF on the socket while the reply is pending */
    char **echo_wait;    /* streaming echo with logprobs: each prompt's text, held until its
                            prompt logprobs arrive with the first output */
    int tool_mode;       /* srv_tool_mode */
    int tool_parser;     /* srv_tool_parser */
    char tool_name[128]; /* SRV_TOOLS_NAMED */
} job;

struct srv_ctx {
    const srv_config *cfg;
    struct event_base *base;
    struct evhttp *http;
    cinfer_engine *engine;
    srv_engine *eng;
    srv_pretok *pretok; /* the way commands reach eng */
    struct event *wake, *sig_int, *sig_term;
    job *jobs;
    uint64_t next_id;
    int gen_in_flight, max_in_flight;
    srv_metrics m;
    char *model_name;
    srv_chat chat;
    long long started;
    int max_model_len; /* config.json max_position_embeddings (0 = unknown) */
    int stopping;      /* SIGINT/SIGTERM: draining, then exiting */
    /* limits.c */
    srv_conn *conns;
    int num_conns, max_conns; /* max_conns: --max-connections below the fd limit */
    struct evconnlistener *listener;
    struct event *relisten, *sweeper;
    uint64_t accept_errors;
    double accept_err_logged;
    /* admission (sequences = prompts x n; prompt tokens not yet started) */
    int seqs_in_flight, max_seqs_in_flight;
    long long queued_tokens;
    size_t max_prompt_bytes;
    /* drain.c */
    struct event *drain_timer, *flush_timer;
    double drain_t0;
    int flush_polls;
    /* the request being routed (on_request) */
    char reqid[130];
    int replied_status;
};

/* job.c: unlinks and frees a job (the drain check after it is the caller's) */
void job_free(job *j);
/* drain.c: SIGINT/SIGTERM starts the drain; http.c calls srv_drain_check
 * after each job it frees */
void srv_drain_begin(srv_ctx *ctx, int sig);
void srv_drain_check(srv_ctx *ctx);
void srv_drain_free(srv_ctx *ctx);

#endif
