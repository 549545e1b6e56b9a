/* cmd_bench_serve.c — `cinfer bench serve`: an online serving benchmark in
 * the style of vLLM's benchmark_serving. Streaming requests arrive as a
 * seeded Poisson process (or all at once), optionally capped at
 * --max-concurrency in flight, against any OpenAI-compatible server; it
 * reports throughput and TTFT / TPOT / ITL / e2e latency percentiles.
 *
 * One libevent loop drives every connection (evhttp client, one keep-alive
 * connection per in-flight slot, reused). SSE chunks are scanned in place
 * for content / usage / errors; only the rare usage and error chunks go
 * through jansson, so the per-token path allocates nothing beyond the
 * amortized growth of per-slot buffers. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/args.h"
#include "cli/common.h"
#include "util/progress.h"

#define BS_MAX_ERRS 16

/* A growable array of doubles (latency samples). */
typedef struct {
    double *v;
    size_t n, cap;
} bs_vec;

static int vec_push(bs_vec *a, double x) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 256;
        double *p = realloc(a->v, nc * sizeof *p);
        if (!p) return -1;
        a->v = p;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return 0;
}

typedef struct bs_bench bs_bench;

/* One in-flight slot: a keep-alive connection, the SSE line buffer and the
 * timings of the request it carries. Slots are reused, so their buffers
 * only grow to the largest response seen. */
typedef struct bs_slot {
    bs_bench *b;
    struct evhttp_connection *conn;
    struct bs_slot *next_free;
    char *buf; /* unparsed SSE bytes (error body when status != 200) */
    size_t len, cap;
    bs_vec itl; /* this request's inter-chunk gaps, kept only on success */
    double t0, t_first, t_last;
    long content_chunks, prompt_tokens, completion_tokens;
    int saw_done, ev_err, has_ev_err;
    char err[160]; /* first error seen in the stream */
} bs_slot;

typedef struct {
    char *body;
    size_t len;
} bs_body;

struct bs_bench {
    struct event_base *base;
    struct event *timer;
    const char *host, *path_prefix, *endpoint, *api_key;
    int port;
    double timeout_s;
    /* workload */
    bs_body *bodies;
    long num_bodies;
    /* schedule */
    double rate;          /* req/s; INFINITY = all at once */
    long max_concurrency; /* 0 = unbounded */
    double duration;      /* 0 = issue exactly num_bodies requests */
    long total;           /* requests to issue (LONG_MAX-like in duration mode) */
    uint64_t rng;
    double t_start, next_arrival;
    long arrived, issued, inflight, done_count;
    bool stop_issuing;
    bs_slot *free_slots;
    bs_slot **all_slots;
    size_t num_slots, cap_slots;
    /* results */
    long completed, failed, in_tokens, out_tokens;
    bs_vec ttft, tpot, itl, e2e;
    double t_end;
    struct {
        char msg[120];
        long count;
    } errs[BS_MAX_ERRS];
    int num_errs;
    long errs_other;
    ci_status fatal;
};

/* Uniform in (0, 1]: never 0, so -log(u) stays finite. */
static double uniform01(uint64_t *s) {
    return ((ci_cli_xorshift(s) >> 11) + 1.0) / 9007199254740992.0;
}

static void record_error(bs_bench *b, const char *msg) {
    for (int i = 0; i < b->num_errs; i++)
        if (!strcmp(b->errs[i].msg, msg)) {
            b->errs[i].count++;
            return;
        }
    if (b->num_errs < BS_MAX_ERRS) {
        snprintf(b->errs[b->num_errs].msg, sizeof b->errs[0].msg, "%s", msg);
        b->errs[b->num_errs++].count = 1;
    } else {
        b->errs_other++;
    }
}

static int buf_append(bs_slot *s, struct evbuffer *in) {
    size_t n = evbuffer_get_length(in);
    if (s->len + n + 1 > s->cap) {
        size_t nc = s->cap ? s->cap : 4096;
        while (nc < s->len + n + 1)
            nc *= 2;
        char *p = realloc(s->buf, nc);
        if (!p) return -1;
        s->buf = p;
        s->cap = nc;
    }
    evbuffer_remove(in, s->buf + s->len, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return 0;
}

/* Whether a JSON string value right after `key` (e.g. "\"text\":") is
 * non-empty; the servers we talk to write compact JSON, but a space after the
 * colon is tolerated. Returns 0 when the key is absent. */
static int nonempty_string_after(const char *p, const char *key) {
    const char *k = strstr(p, key);
    if (!k) return 0;
    k += strlen(key);
    while (*k == ' ')
        k++;
    return k[0] == '"' && k[1] != '"';
}

/* Handles one `data:` payload (NUL-terminated) that arrived at time t. */
static void on_event(bs_slot *s, char *p, double t) {
    if (!strcmp(p, "[DONE]")) {
        s->saw_done = 1;
        return;
    }
    if (nonempty_string_after(p, "\"text\":") || nonempty_string_after(p, "\"content\":")) {
        if (s->content_chunks == 0)
            s->t_first = t;
        else if (vec_push(&s->itl, t - s->t_last))
            snprintf(s->err, sizeof s->err, "out of memory");
        s->t_last = t;
        s->content_chunks++;
    }
    /* Rare chunks: the final usage and errors are parsed properly. */
    if (strstr(p, "\"usage\":{") || strstr(p, "\"error\":")) {
        json_t *o = json_loads(p, 0, NULL);
        json_t *u = json_object_get(o, "usage"), *e = json_object_get(o, "error");
        if (json_is_object(u)) {
            json_t *pt = json_object_get(u, "prompt_tokens");
            json_t *ct = json_object_get(u, "completion_tokens");
            if (json_is_integer(pt)) s->prompt_tokens = (long)json_integer_value(pt);
            if (json_is_integer(ct)) s->completion_tokens = (long)json_integer_value(ct);
        }
        if (e && !s->err[0]) {
            json_t *m = json_is_object(e) ? json_object_get(e, "message") : e;
            snprintf(s->err, sizeof s->err, "stream error: %.120s",
                     json_is_string(m) ? json_string_value(m) : "(no message)");
        }
        if (!o && !s->err[0]) snprintf(s->err, sizeof s->err, "malformed SSE chunk");
        json_decref(o);
    }
}

/* Consumes the complete lines of the slot's buffer. */
static void parse_lines(bs_slot *s, double t) {
    size_t pos = 0;
    for (;;) {
        char *nl = memchr(s->buf + pos, '\n', s->len - pos);
        if (!nl) break;
        char *line = s->buf + pos;
        size_t n = (size_t)(nl - line);
        pos += n + 1;
        if (n && line[n - 1] == '\r') n--;
        line[n] = '\0';
        if (!strncmp(line, "data:", 5)) on_event(s, line + 5 + (line[5] == ' '), t);
    }
    if (pos) {
        memmove(s->buf, s->buf + pos, s->len - pos);
        s->len -= pos;
        s->buf[s->len] = '\0';
    }
}

static void on_chunk(struct evhttp_request *req, void *arg) {
    bs_slot *s = arg;
    double t = ci_now();
    if (buf_append(s, evhttp_request_get_input_buffer(req))) {
        snprintf(s->err, sizeof s->err, "out of memory");
        return;
    }
    if (evhttp_request_get_response_code(req) == 200) parse_lines(s, t);
}

static void on_error(enum evhttp_request_error e, void *arg) {
    bs_slot *s = arg;
    s->ev_err = (int)e;
    s->has_ev_err = 1;
}

static const char *ev_err_name(int e) {
    switch (e) {
    case EVREQ_HTTP_TIMEOUT: return "timeout";
    case EVREQ_HTTP_EOF: return "connection closed";
    case EVREQ_HTTP_INVALID_HEADER: return "invalid header";
    case EVREQ_HTTP_BUFFER_ERROR: return "buffer error";
    case EVREQ_HTTP_REQUEST_CANCEL: return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG: return "response too long";
    default: return "error";
    }
}

static void pump(bs_bench *b);

/* Classifies the finished request, records it, and frees its slot. */
static void on_done(struct evhttp_request *req, void *arg) {
    bs_slot *s = arg;
    bs_bench *b = s->b;
    double t = ci_now();
    int code = req ? evhttp_request_get_response_code(req) : 0;
    char msg[200];
    msg[0] = '\0';
    if (req && code == 200) {
        if (evbuffer_get_length(evhttp_request_get_input_buffer(req))) on_chunk(req, s);
        if (s->len) { /* a last line without its newline */
            s->buf[s->len++] = '\n';
            parse_lines(s, t);
        }
    }
    if (code == 0) {
        snprintf(msg, sizeof msg, "%s%s%s",
                 s->content_chunks ? "truncated stream" : "connection failed",
                 s->has_ev_err ? ": " : "", s->has_ev_err ? ev_err_name(s->ev_err) : "");
    } else if (code != 200) {
        const char *m = "";
        json_t *o = s->len ? json_loadb(s->buf, s->len, 0, NULL) : NULL;
        json_t *e = json_object_get(o, "error");
        if (json_is_object(e)) e = json_object_get(e, "message");
        if (json_is_string(e)) m = json_string_value(e);
        snprintf(msg, sizeof msg, "HTTP %d%s%.150s", code, *m ? ": " : "", m);
        json_decref(o);
    } else if (s->err[0]) {
        snprintf(msg, sizeof msg, "%s", s->err);
    } else if (!s->saw_done) {
        snprintf(msg, sizeof msg, "truncated stream (no [DONE])");
    }
    if (msg[0]) {
        b->failed++;
        record_error(b, msg);
    } else {
        double e2e = t - s->t0;
        long out = s->completion_tokens >= 0 ? s->completion_tokens : s->content_chunks;
        double ttft = s->content_chunks ? s->t_first - s->t0 : e2e;
        int oom = vec_push(&b->ttft, ttft) | vec_push(&b->e2e, e2e);
        if (out > 1) oom |= vec_push(&b->tpot, (e2e - ttft) / (double)(out - 1));
        for (size_t i = 0; i < s->itl.n; i++)
            oom |= vec_push(&b->itl, s->itl.v[i]);
        if (oom) b->fatal = ci_errorf(CI_ERR_NOMEM, "out of memory");
        b->completed++;
        b->out_tokens += out;
        if (s->prompt_tokens > 0) b->in_tokens += s->prompt_tokens;
    }
    b->inflight--;
    b->done_count++;
    b->t_end = t;
    s->next_free = b->free_slots;
    b->free_slots = s;
    pump(b);
}

static bs_slot *take_slot(bs_bench *b) {
    bs_slot *s = b->free_slots;
    if (s) {
        b->free_slots = s->next_free;
    } else {
        if (b->num_slots == b->cap_slots) {
            size_t nc = b->cap_slots ? b->cap_slots * 2 : 64;
            bs_slot **p = realloc(b->all_slots, nc * sizeof *p);
            if (!p) return NULL;
            b->all_slots = p;
            b->cap_slots = nc;
        }
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        s->b = b;
        s->conn = evhttp_connection_base_new(b->base, NULL, b->host, (unsigned short)b->port);
        if (!s->conn) {
            free(s);
            return NULL;
        }
        if (b->timeout_s > 0) {
            struct timeval tv = {(time_t)b->timeout_s,
                                 (suseconds_t)((b->timeout_s - (time_t)b->timeout_s) * 1e6)};
            evhttp_connection_set_timeout_tv(s->conn, &tv);
        }
        b->all_slots[b->num_slots++] = s;
    }
    s->len = 0;
    s->itl.n = 0;
    s->content_chunks = 0;
    s->prompt_tokens = s->completion_tokens = -1;
    s->saw_done = s->has_ev_err = 0;
    s->err[0] = '\0';
    return s;
}

/* Starts request number b->issued on a free slot. */
static void issue(bs_bench *b) {
    long i = b->issued++;
    const bs_body *body = &b->bodies[i % b->num_bodies];
    bs_slot *s = take_slot(b);
    if (!s) {
        b->fatal = ci_errorf(CI_ERR_NOMEM, "out of memory (or too many connections)");
        return;
    }
    b->inflight++;
    s->t0 = ci_now();
    struct evhttp_request *r = evhttp_request_new(on_done, s);
    if (!r) {
        b->fatal = ci_errorf(CI_ERR_NOMEM, "out of memory");
        return;
    }
    evhttp_request_set_chunked_cb(r, on_chunk);
    evhttp_request_set_error_cb(r, on_error);
    struct evkeyvalq *h = evhttp_request_get_output_headers(r);
    char hostport[300], path[512];
    snprintf(hostport, sizeof hostport, "%s:%d", b->host, b->port);
    snprintf(path, sizeof path, "%s%s", b->path_prefix, b->endpoint);
    evhttp_add_header(h, "Host", hostport);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Accept", "text/event-stream");
    if (b->api_key) {
        char auth[600];
        snprintf(auth, sizeof auth, "Bearer %s", b->api_key);
        evhttp_add_header(h, "Authorization", auth);
    }
    /* The body is shared by every request of this prompt: no copy. */
    evbuffer_add_reference(evhttp_request_get_output_buffer(r), body->body, body->len, NULL, NULL);
    if (evhttp_make_request(s->conn, r, EVHTTP_REQ_POST, path)) {
        /* libevent frees the request; account for it as a failure. */
        b->failed++;
        b->inflight--;
        b->done_count++;
        record_error(b, "could not send the request");
        s->next_free = b->free_slots;
        b->free_slots = s;
    }
}

static bool may_issue(bs_bench *b) {
    if (b->fatal.code || b->stop_issuing || b->issued >= b->total) return false;
    if (b->duration > 0 && ci_now() - b->t_start >= b->duration) {
        b->stop_issuing = true;
        return false;
    }
    return true;
}

/* Issues every arrived request that the concurrency cap allows; ends the
 * loop when nothing is in flight and nothing more will be issued. */
static void pump(bs_bench *b) {
    while (may_issue(b) && (isinf(b->rate) || b->issued < b->arrived) &&
           (!b->max_concurrency || b->inflight < b->max_concurrency))
        issue(b);
    bool more = may_issue(b);
    if (b->fatal.code || (!more && b->inflight == 0)) event_base_loopbreak(b->base);
}

static void arm_timer(bs_bench *b) {
    double dt = b->next_arrival - (ci_now() - b->t_start);
    if (dt < 0) dt = 0;
    struct timeval tv = {(time_t)dt, (suseconds_t)((dt - (time_t)dt) * 1e6)};
    evtimer_add(b->timer, &tv);
}

/* A Poisson arrival: count it, schedule the next, issue what can go. */
static void on_arrival(evutil_socket_t fd, short ev, void *arg) {
    (void)fd;
    (void)ev;
    bs_bench *b = arg;
    double now = ci_now() - b->t_start;
    while (b->arrived < b->total && b->next_arrival <= now) {
        b->arrived++;
        b->next_arrival += -log(uniform01(&b->rng)) / b->rate;
    }
    if (b->arrived < b->total && !(b->duration > 0 && b->next_arrival >= b->duration))
        arm_timer(b);
    else if (b->arrived < b->total)
        b->total = b->arrived; /* duration mode: no more arrivals fit */
    pump(b);
}

/* ---- workload -------------------------------------------------------- */

typedef struct {
    bool chat, ignore_eos;
    const char *model;
    double temperature;
    long seed;
} bs_req_opts;

/* Serializes one request body; takes ownership of `prompt` (a string, an
 * array of token ids, or a messages array when chat). */
static ci_status make_body(const bs_req_opts *o, json_t *prompt, long max_tokens, long idx,
                           bs_body *out) {
    json_t *r = json_object();
    if (!r) {
        json_decref(prompt);
        return ci_errorf(CI_ERR_NOMEM, "out of memory");
    }
    if (o->model) json_object_set_new(r, "model", json_string(o->model));
    if (o->chat) {
        if (json_is_array(prompt) && json_array_size(prompt) &&
            json_is_object(json_array_get(prompt, 0))) {
            json_object_set_new(r, "messages", prompt);
        } else {
            json_t *m = json_object(), *msgs = json_array();
            json_object_set_new(m, "role", json_string("user"));
            json_object_set_new(m, "content", prompt);
            json_array_append_new(msgs, m);
            json_object_set_new(r, "messages", msgs);
        }
        json_object_set_new(r, "max_completion_tokens", json_integer(max_tokens));
    } else {
        json_object_set_new(r, "prompt", prompt);
        json_object_set_new(r, "max_tokens", json_integer(max_tokens));
    }
    json_object_set_new(r, "temperature", json_real(o->temperature));
    json_object_set_new(r, "seed", json_integer(o->seed + idx));
    if (o->ignore_eos) json_object_set_new(r, "ignore_eos", json_true());
    json_object_set_new(r, "stream", json_true());
    json_t *so = json_object();
    json_object_set_new(so, "include_usage", json_true());
    json_object_set_new(r, "stream_options", so);
    out->body = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    if (!out->body) return ci_errorf(CI_ERR_NOMEM, "out of memory");
    out->len = strlen(out->body);
    return ci_ok();
}

/* A length drawn uniformly from [len * (1 - r), len * (1 + r)], at least 1. */
static long draw_len(long len, double r, uint64_t *rng) {
    long lo = (long)floor(len * (1 - r)), hi = (long)ceil(len * (1 + r));
    if (lo < 1) lo = 1;
    if (hi < lo) hi = lo;
    return lo + (long)(ci_cli_xorshift(rng) % (uint64_t)(hi - lo + 1));
}

static const char *const WORDS[] = {"def", "return", "self",  "import", "for",   "in",
                                    "if",  "else",   "while", "class",  "print", "range",
                                    "len", "list",   "dict",  "x",      "y",     "value"};

/* Random prompts: exactly `input_len` token ids for completions (ids below
 * the vocabulary's last 256, where special tokens live); for chat, which
 * needs text, that many random words. */
static ci_status random_workload(const bs_req_opts *o, long n, long input_len, long output_len,
                                 double range, long vocab, bs_body *bodies) {
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)o->seed;
    if (!rng) rng = 1;
    long id_range = vocab > 512 ? vocab - 256 : vocab;
    size_t wcap = 0;
    char *words = NULL;
    for (long i = 0; i < n; i++) {
        long il = draw_len(input_len, range, &rng), ol = draw_len(output_len, range, &rng);
        json_t *p;
        if (o->chat) {
            size_t need = (size_t)il * 8 + 1, len = 0;
            if (need > wcap) {
                char *q = realloc(words, need);
                if (!q) {
                    free(words);
                    return ci_errorf(CI_ERR_NOMEM, "out of memory");
                }
                words = q;
                wcap = need;
            }
            for (long k = 0; k < il; k++) {
                const char *w = WORDS[ci_cli_xorshift(&rng) % (sizeof WORDS / sizeof WORDS[0])];
                len += (size_t)sprintf(words + len, "%s%s", k ? " " : "", w);
            }
            words[len] = '\0';
            p = json_string(words);
        } else {
            p = json_array();
            for (long k = 0; p && k < il; k++)
                json_array_append_new(
                    p, json_integer((json_int_t)(ci_cli_xorshift(&rng) % (uint64_t)id_range)));
        }
        if (!p) {
            free(words);
            return ci_errorf(CI_ERR_NOMEM, "out of memory");
        }
        ci_status s = make_body(o, p, ol, i, &bodies[i]);
        if (s.code) {
            free(words);
            return s;
        }
    }
    free(words);
    return ci_ok();
}

/* JSONL: each line has "prompt" (string or token ids), "prompt_token_ids" or
 * (chat) "messages", and optionally "max_tokens" / "output_len". */
static ci_status file_workload(const bs_req_opts *o, const char *path, long output_len,
                               bs_body **bodies, long *n) {
    char *buf;
    size_t len;
    CI_TRY(ci_read_path(path, &buf, &len));
    long cap = 0, line = 0;
    ci_status s = ci_ok();
    for (size_t pos = 0; !s.code && pos < len;) {
        size_t end = pos;
        while (end < len && buf[end] != '\n')
            end++;
        line++;
        size_t a = pos;
        while (a < end && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r'))
            a++;
        if (a < end) {
            json_error_t je;
            json_t *obj = json_loadb(buf + a, end - a, 0, &je);
            json_t *p = NULL, *mt = NULL;
            if (!obj) {
                s = ci_errorf(CI_ERR_FORMAT, "%s:%ld: %s", path, line, je.text);
            } else {
                p = json_object_get(obj, o->chat ? "messages" : "prompt_token_ids");
                if (!p) p = json_object_get(obj, "prompt");
                if (!p && o->chat) p = json_object_get(obj, "prompt_token_ids");
                mt = json_object_get(obj, "max_tokens");
                if (!mt) mt = json_object_get(obj, "output_len");
                if (!p || (!json_is_string(p) && !json_is_array(p)))
                    s = ci_errorf(CI_ERR_FORMAT, "%s:%ld: needs \"prompt\"%s", path, line,
                                  o->chat ? " or \"messages\"" : " or \"prompt_token_ids\"");
            }
            if (!s.code && *n == cap) {
                cap = cap ? cap * 2 : 64;
                bs_body *q = realloc(*bodies, (size_t)cap * sizeof *q);
                if (!q)
                    s = ci_errorf(CI_ERR_NOMEM, "out of memory");
                else
                    *bodies = q;
            }
            if (!s.code) {
                long ol = json_is_integer(mt) ? (long)json_integer_value(mt) : output_len;
                s = make_body(o, json_incref(p), ol, *n, &(*bodies)[*n]);
                if (!s.code) (*n)++;
            }
            json_decref(obj);
        }
        pos = end + 1;
    }
    free(buf);
    if (!s.code && *n == 0) s = ci_errorf(CI_ERR_FORMAT, "%s: no requests", path);
    return s;
}

/* vocab_size from DIR/config.json (0 when absent). */
static long read_vocab(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *c = json_load_file(path, 0, NULL);
    json_t *v = json_object_get(c, "vocab_size");
    if (!v) v = json_object_get(json_object_get(c, "text_config"), "vocab_size");
    long n = json_is_integer(v) ? (long)json_integer_value(v) : 0;
    json_decref(c);
    return n;
}

/* ---- report ---------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double mean, std, median, p90, p99, max;
} bs_stats;

/* Percentiles with linear interpolation between order statistics (as
 * numpy.percentile does), in ms. */
static bs_stats stats_ms(bs_vec *v) {
    bs_stats st = {0};
    if (!v->n) return st;
    qsort(v->v, v->n, sizeof(double), cmp_double);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < v->n; i++)
        sum += v->v[i];
    st.mean = sum / (double)v->n;
    for (size_t i = 0; i < v->n; i++)
        sq += (v->v[i] - st.mean) * (v->v[i] - st.mean);
    st.std = sqrt(sq / (double)v->n);
    double q[3] = {50, 90, 99}, *dst[3] = {&st.median, &st.p90, &st.p99};
    for (int k = 0; k < 3; k++) {
        double x = q[k] / 100.0 * (double)(v->n - 1);
        size_t lo = (size_t)x, hi = lo + 1 < v->n ? lo + 1 : lo;
        *dst[k] = v->v[lo] + (x - (double)lo) * (v->v[hi] - v->v[lo]);
    }
    st.max = v->v[v->n - 1];
    st.mean *= 1e3;
    st.std *= 1e3;
    st.median *= 1e3;
    st.p90 *= 1e3;
    st.p99 *= 1e3;
    st.max *= 1e3;
    return st;
}

static void set_stats(json_t *o, const char *name, const bs_stats *st) {
    const char *k[6] = {"mean", "std", "median", "p90", "p99", "max"};
    const double v[6] = {st->mean, st->std, st->median, st->p90, st->p99, st->max};
    for (int i = 0; i < 6; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s_%s_ms", k[i], name);
        json_object_set_new(o, key, json_real(v[i]));
    }
}

int cmd_bench_serve(int argc, char **argv) {
    const char *host = "127.0.0.1", *base_url = NULL, *endpoint = "/v1/completions";
    const char *model = NULL, *api_key = NULL, *dataset = "random", *tok_dir = NULL;
    const char *json_path = NULL, *rate_str = "inf";
    long port = 8000, num_prompts = 100, max_conc = 0, input_len = 128, output_len = 64, seed = 0;
    double duration = 0, range = 0, temperature = 0, timeout_s = 600;
    bool ignore_eos = false;
    const ci_arg args[] = {
        {"--host", NULL, CI_ARG_STR, &host, "ADDR", "server address (default 127.0.0.1)"},
        {"--port", NULL, CI_ARG_INT, &port, "N", "server port (default 8000)"},
        {"--base-url", NULL, CI_ARG_STR, &base_url, "URL",
         "http://HOST:PORT[/prefix] instead of --host/--port"},
        {"--endpoint", NULL, CI_ARG_STR, &endpoint, "PATH",
         "/v1/completions (default) or /v1/chat/completions"},
        {"--model", NULL, CI_ARG_STR, &model, "NAME", "\"model\" field of the requests"},
        {"--api-key", NULL, CI_ARG_STR, &api_key, "KEY", "sent as Authorization: Bearer KEY"},
        {"--num-prompts", NULL, CI_ARG_INT, &num_prompts, "N",
         "requests (default 100; with --duration: the prompt pool)"},
        {"--request-rate", NULL, CI_ARG_STR, &rate_str, "R",
         "Poisson arrivals, R req/s; inf = all at once (default)"},
        {"--max-concurrency", NULL, CI_ARG_INT, &max_conc, "C",
         "at most C requests in flight (default: no limit)"},
        {"--duration", NULL, CI_ARG_FLOAT, &duration, "S",
         "keep issuing requests for S seconds (cycling the prompts)"},
        {"--dataset", NULL, CI_ARG_STR, &dataset, "random|F.jsonl",
         "random prompts (default) or a JSONL file of prompts"},
        {"--input-len", NULL, CI_ARG_INT, &input_len, "I", "random prompt tokens (default 128)"},
        {"--output-len", NULL, CI_ARG_INT, &output_len, "O", "max_tokens per request (default 64)"},
        {"--range-ratio", NULL, CI_ARG_FLOAT, &range, "R",
         "random lengths uniform in [L(1-R), L(1+R)] (default 0)"},
        {"--tokenizer", "-m", CI_ARG_STR, &tok_dir, "DIR",
         "model directory: random token ids below its vocab_size"},
        {"--seed", NULL, CI_ARG_INT, &seed, "S", "seed of prompts and arrivals (default 0)"},
        {"--ignore-eos", NULL, CI_ARG_FLAG, &ignore_eos, "", "send ignore_eos: true"},
        {"--temperature", NULL, CI_ARG_FLOAT, &temperature, "T",
         "sampling temperature (default 0)"},
        {"--timeout", NULL, CI_ARG_FLOAT, &timeout_s, "S",
         "per-request socket timeout (default 600)"},
        {"--json", NULL, CI_ARG_STR, &json_path, "FILE",
         "also write the result as one JSON object (- = stdout)"},
    };
    const char *usage =
        "usage: cinfer bench serve [--host H --port P | --base-url URL] [--endpoint PATH]\n"
        "                          --num-prompts N [--request-rate R] [--max-concurrency C]\n"
        "                          [--duration S] [--dataset random|F.jsonl] [options]\n"
        "Online serving benchmark against an OpenAI-compatible server (streaming requests).\n"
        "Exit status 0 when every request succeeded, 1 otherwise.";
    ci_status s = ci_ok();
    ci_args_result r = ci_args_parse(usage, args, sizeof args / sizeof args[0], argc, argv, &s);
    if (r == CI_ARGS_HELP) return 0;
    if (r == CI_ARGS_ERROR) return ci_cli_fail(s);

    double rate;
    if (!strcmp(rate_str, "inf")) {
        rate = INFINITY;
    } else {
        char *end;
        errno = 0;
        rate = strtod(rate_str, &end);
        if (errno || end == rate_str || *end || !(rate > 0) || isinf(rate))
            return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--request-rate must be > 0 or inf"));
    }
    if (num_prompts < 1 || num_prompts > 10000000)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--num-prompts must be in [1, 10000000]"));
    if (input_len < 1 || output_len < 1)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--input-len and --output-len must be >= 1"));
    if (range < 0 || range >= 1)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--range-ratio must be in [0, 1)"));
    if (max_conc < 0 || duration < 0)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "negative --max-concurrency or --duration"));
    if (duration > 0 && isinf(rate) && !max_conc)
        return ci_cli_fail(ci_errorf(
            CI_ERR_INVALID, "--duration needs a finite --request-rate or --max-concurrency"));
    bool chat = !!strstr(endpoint, "chat");

    /* Target. */
    char url_host[256] = "", url_prefix[256] = "";
    if (base_url) {
        struct evhttp_uri *u = evhttp_uri_parse(base_url);
        const char *sc = u ? evhttp_uri_get_scheme(u) : NULL;
        if (!u || !sc || strcmp(sc, "http") || !evhttp_uri_get_host(u)) {
            if (u) evhttp_uri_free(u);
            return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--base-url: want http://HOST:PORT"));
        }
        snprintf(url_host, sizeof url_host, "%s", evhttp_uri_get_host(u));
        int p = evhttp_uri_get_port(u);
        port = p > 0 ? p : 80;
        const char *pp = evhttp_uri_get_path(u);
        snprintf(url_prefix, sizeof url_prefix, "%s", pp ? pp : "");
        size_t pl = strlen(url_prefix);
        if (pl && url_prefix[pl - 1] == '/') url_prefix[pl - 1] = '\0';
        evhttp_uri_free(u);
        host = url_host;
    }
    if (port < 1 || port > 65535)
        return ci_cli_fail(ci_errorf(CI_ERR_INVALID, "--port must be in [1, 65535]"));

    /* Workload. */
    bs_req_opts ro = {chat, ignore_eos, model, temperature, seed};
    bs_body *bodies = NULL;
    long nb = 0;
    if (!strcmp(dataset, "random")) {
        bodies = calloc((size_t)num_prompts, sizeof *bodies);
        long vocab = tok_dir ? read_vocab(tok_dir) : 0;
        if (tok_dir && !vocab)
            return ci_cli_fail(ci_errorf(CI_ERR_FORMAT, "%s/config.json: no vocab_size", tok_dir));
        s = bodies ? random_workload(&ro, num_prompts, input_len, output_len, range,
                                     vocab ? vocab : 1000 + 256, bodies)
                   : ci_errorf(CI_ERR_NOMEM, "out of memory");
        nb = num_prompts;
    } else {
        s = file_workload(&ro, dataset, output_len, &bodies, &nb);
        for (; nb > num_prompts; nb--) /* only the first N lines are used */
            free(bodies[nb - 1].body);
    }

    bs_bench *b = calloc(1, sizeof *b);
    struct rlimit rl;
    /* Thousands of simultaneous connections need file descriptors. */
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (!s.code && !b) s = ci_errorf(CI_ERR_NOMEM, "out of memory");
    if (!s.code) {
        b->host = host;
        b->port = (int)port;
        b->path_prefix = url_prefix;
        b->endpoint = endpoint;
        b->api_key = api_key;
        b->timeout_s = timeout_s;
        b->bodies = bodies;
        b->num_bodies = nb;
        b->rate = rate;
        b->max_concurrency = max_conc;
        b->duration = duration;
        b->total = duration > 0 ? 1000000000L : num_prompts; /* prompts are cycled */
        b->rng = 0xD1B54A32D192ED03ull ^ (uint64_t)seed;
        if (!b->rng) b->rng = 1;
        b->base = event_base_new();
        b->timer = b->base ? evtimer_new(b->base, on_arrival, b) : NULL;
        if (!b->timer) s = ci_errorf(CI_ERR_NOMEM, "libevent: cannot create the event loop");
    }
    if (!s.code) {
        fprintf(
            stderr, "bench serve: %ld %s to http://%s:%ld%s%s, rate %s, max concurrency %ld%s\n",
            duration > 0 ? nb : b->total, duration > 0 ? "prompts (cycled)" : "requests", host,
            port, url_prefix, endpoint, rate_str, max_conc, duration > 0 ? " (time-limited)" : "");
        b->t_start = ci_now();
        b->t_end = b->t_start;
        if (isinf(rate)) {
            b->arrived = b->total;
            pump(b);
        } else {
            /* The first request goes at t = 0; gaps after it are exponential. */
            b->next_arrival = 0;
            on_arrival(-1, 0, b);
        }
        if (b->inflight || may_issue(b)) event_base_dispatch(b->base);
        s = b->fatal;
    }

    int rc = 1;
    if (!s.code) {
        double el = b->t_end - b->t_start;
        if (el <= 0) el = 1e-9;
        bs_stats st[4] = {stats_ms(&b->ttft), stats_ms(&b->tpot), stats_ms(&b->itl),
                          stats_ms(&b->e2e)};
        const char *names[4] = {"ttft", "tpot", "itl", "e2el"};
        const char *labels[4] = {"TTFT (ms)", "TPOT (ms)", "ITL (ms)", "E2E (ms)"};
        FILE *tf = json_path && !strcmp(json_path, "-") ? stderr : stdout;
        fprintf(tf, "============ Serving Benchmark Result ============\n");
        fprintf(tf, "%-40s %ld\n", "Successful requests:", b->completed);
        fprintf(tf, "%-40s %ld\n", "Failed requests:", b->failed);
        fprintf(tf, "%-40s %s\n", "Request rate (req/s):", rate_str);
        if (max_conc)
            fprintf(tf, "%-40s %ld\n", "Max concurrency:", max_conc);
        else
            fprintf(tf, "%-40s %s\n", "Max concurrency:", "none");
        fprintf(tf, "%-40s %.2f\n", "Benchmark duration (s):", el);
        fprintf(tf, "%-40s %ld\n", "Total input tokens:", b->in_tokens);
        fprintf(tf, "%-40s %ld\n", "Total generated tokens:", b->out_tokens);
        fprintf(tf, "%-40s %.2f\n", "Request throughput (req/s):", b->completed / el);
        fprintf(tf, "%-40s %.2f\n", "Output token throughput (tok/s):", b->out_tokens / el);
        fprintf(tf, "%-40s %.2f\n",
                "Total token throughput (tok/s):", (b->in_tokens + b->out_tokens) / el);
        fprintf(tf, "--------------------------------------------------\n");
        fprintf(tf, "%-10s %9s %9s %9s %9s %9s\n", "", "mean", "median", "p90", "p99", "max");
        for (int i = 0; i < 4; i++)
            fprintf(tf, "%-10s %9.2f %9.2f %9.2f %9.2f %9.2f\n", labels[i], st[i].mean,
                    st[i].median, st[i].p90, st[i].p99, st[i].max);
        fprintf(tf, "==================================================\n");
        for (int i = 0; i < b->num_errs; i++)
            fprintf(stderr, "error (%ld x): %s\n", b->errs[i].count, b->errs[i].msg);
        if (b->errs_other) fprintf(stderr, "error (%ld x): other errors\n", b->errs_other);
        rc = b->failed || !b->completed ? 1 : 0;
        if (json_path) {
            json_t *o = json_object();
            json_object_set_new(o, "endpoint", json_string(endpoint));
            json_object_set_new(o, "model", model ? json_string(model) : json_null());
            json_object_set_new(o, "request_rate",
                                isinf(rate) ? json_string("inf") : json_real(rate));
            json_object_set_new(o, "max_concurrency",
                                max_conc ? json_integer(max_conc) : json_null());
            json_object_set_new(o, "duration_limit_s",
                                duration > 0 ? json_real(duration) : json_null());
            json_object_set_new(o, "num_prompts", json_integer(nb));
            json_object_set_new(o, "num_requests", json_integer(b->issued));
            json_object_set_new(o, "completed", json_integer(b->completed));
            json_object_set_new(o, "failed", json_integer(b->failed));
            json_object_set_new(o, "duration", json_real(el));
            json_object_set_new(o, "total_input_tokens", json_integer(b->in_tokens));
            json_object_set_new(o, "total_output_tokens", json_integer(b->out_tokens));
            json_object_set_new(o, "request_throughput", json_real(b->completed / el));
            json_object_set_new(o, "input_throughput", json_real(b->in_tokens / el));
            json_object_set_new(o, "output_throughput", json_real(b->out_tokens / el));
            json_object_set_new(o, "total_token_throughput",
                                json_real((b->in_tokens + b->out_tokens) / el));
            for (int i = 0; i < 4; i++)
                set_stats(o, names[i], &st[i]);
            json_t *errs = json_array();
            for (int i = 0; i < b->num_errs; i++) {
                json_t *e = json_object();
                json_object_set_new(e, "message", json_string(b->errs[i].msg));
                json_object_set_new(e, "count", json_integer(b->errs[i].count));
                json_array_append_new(errs, e);
            }
            if (b->errs_other) {
                json_t *e = json_object();
                json_object_set_new(e, "message", json_string("other errors"));
                json_object_set_new(e, "count", json_integer(b->errs_other));
                json_array_append_new(errs, e);
            }
            json_object_set_new(o, "errors", errs);
            int jr = !strcmp(json_path, "-") ? json_dumpf(o, stdout, JSON_INDENT(2))
                                             : json_dump_file(o, json_path, JSON_INDENT(2));
            if (!strcmp(json_path, "-")) putchar('\n');
            json_decref(o);
            if (jr) {
                s = ci_errorf(CI_ERR_IO, "cannot write %s", json_path);
                rc = ci_cli_fail(s);
            }
        }
    } else {
        rc = ci_cli_fail(s);
    }

    if (b) {
        for (size_t i = 0; i < b->num_slots; i++) {
            evhttp_connection_free(b->all_slots[i]->conn);
            free(b->all_slots[i]->buf);
            free(b->all_slots[i]->itl.v);
            free(b->all_slots[i]);
        }
        free(b->all_slots);
        free(b->ttft.v);
        free(b->tpot.v);
        free(b->itl.v);
        free(b->e2e.v);
        if (b->timer) event_free(b->timer);
        if (b->base) event_base_free(b->base);
        free(b);
    }
    for (long i = 0; i < nb; i++)
        free(bodies[i].body);
    free(bodies);
    return rc;
}
