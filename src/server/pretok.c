/* pretok.c — tokenization off the engine thread.
 *
 * Every command from the libevent thread passes through this thread's FIFO
 * on its way to the engine thread (so an abort never overtakes the request
 * it aborts). Text prompts of GENERATE commands are tokenized here, with
 * the engine's tokenizer (encoding only reads it: the engine thread may
 * decode at the same time), so a long prompt no longer stops the engine
 * stepping every running request while it is encoded. A prompt that fails
 * here is left as text: the engine thread tokenizes it again and reports
 * the error as before. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

struct srv_pretok {
    cinfer_engine *e;
    srv_engine *eng;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_cmd *head, *tail;
    int stop;
};

static void tokenize_prompts(srv_pretok *p, srv_cmd *c) {
    for (int i = 0; i < c->num_prompts; i++) {
        srv_prompt *pr = &c->prompts[i];
        if (!pr->text || pr->ids) continue;
        int32_t *ids = NULL;
        size_t n = 0;
        cinfer_error err;
        if (cinfer_tokenize(p->e, pr->text, 1, &ids, &n, &err) == 0 && n > 0) {
            pr->ids = malloc(sizeof *pr->ids * n);
            if (pr->ids) {
                memcpy(pr->ids, ids, sizeof *pr->ids * n);
                pr->num_ids = (int)n;
            }
        }
        cinfer_free(ids);
    }
}

static void *pretok_main(void *arg) {
    srv_pretok *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) break;
        srv_cmd *c = p->head;
        p->head = c->next;
        if (!p->head) p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        if (c->kind == SRV_CMD_GENERATE) tokenize_prompts(p, c);
        srv_engine_submit(p->eng, c);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int srv_pretok_start(cinfer_engine *e, srv_engine *eng, srv_pretok **out) {
    srv_pretok *p = calloc(1, sizeof *p);
    if (!p) return -1;
    p->e = e;
    p->eng = eng;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->thread, NULL, pretok_main, p)) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
        return -1;
    }
    *out = p;
    return 0;
}

void srv_pretok_submit(srv_pretok *p, srv_cmd *c) {
    c->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = c;
    else
        p->head = c;
    p->tail = c;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void srv_pretok_stop(srv_pretok *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    for (srv_cmd *c = p->head, *next; c; c = next) {
        next = c->next;
        srv_cmd_free(c);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
