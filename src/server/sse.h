/* sse.h — the envelope of OpenAI response objects, the finish_reason
 * strings and server-sent events on a job's stream (sse.c). All run on the
 * libevent thread; a job whose request is gone (j->req NULL) sends nothing. */
#ifndef CINFER_SERVER_SSE_H
#define CINFER_SERVER_SSE_H

#include <jansson.h>

#include "server/http_state.h"

/* "stop", "length", "abort", "error"; NULL while unfinished. */
const char *srv_finish_str(cinfer_finish_reason f);
/* A JSON string of s, or null when s is NULL. */
json_t *srv_json_str_or_null(const char *s);
/* {"id", "object", "created", "model"} of the job's responses. */
json_t *srv_chunk_envelope(const job *j, const char *object);

/* Headers of the event stream (once). */
void srv_sse_start(job *j);
/* One "data: <o>" event (takes the reference to o). */
void srv_sse_send(job *j, json_t *o);
/* One chat chunk for choice idx with the given delta (taken) and finish
 * reason (NULL: none yet). */
void srv_sse_chat_chunk(job *j, int idx, json_t *delta, const char *finish);
/* "data: [DONE]" and the end of the reply. */
void srv_sse_end(job *j);

#endif
