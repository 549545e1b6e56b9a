/* job.c — the end of a job's life: it leaves ctx->jobs, its timers and close
 * callback go, the admission counters it holds are given back, its access
 * log line is written and its choices (text, logprobs) are freed. Both the
 * request plumbing (http.c) and the shutdown drain (drain.c) end jobs, so
 * this sits below both; telling the drain that a job went away
 * (srv_drain_check) is http.c's part, which keeps drain.c from calling back
 * up into http.c. */
#include <event2/event.h>
#include <event2/http.h>
#include <stdlib.h>

#include "server/admission.h"
#include "server/http_state.h"

static void choice_free(choice *c) {
    free(c->text);
    for (int i = 0; i < c->nlps; i++) {
        free(c->lps[i].tok);
        for (int k = 0; k < c->lps[i].num_top; k++)
            free(c->lps[i].top_tok[k]);
    }
    free(c->lps);
    free(c->offsets);
}

void job_free(job *j) {
    srv_ctx *ctx = j->ctx;
    srv_job_log(j);
    if (j->prev)
        j->prev->next = j->next;
    else
        ctx->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    if (j->conn) evhttp_connection_set_closecb(j->conn, NULL, NULL);
    if (j->timer) event_free(j->timer);
    if (j->watch) event_free(j->watch);
    if (j->is_gen) {
        ctx->gen_in_flight--;
        ctx->seqs_in_flight -= j->num_choices;
    }
    ctx->queued_tokens -= j->queued_est;
    for (int i = 0; j->ch && i < j->num_choices; i++)
        choice_free(&j->ch[i]);
    free(j->ch);
    for (int p = 0; j->echo_wait && p < j->num_prompts; p++)
        free(j->echo_wait[p]);
    free(j->echo_wait);
    free(j);
}
