/* generate_batch.c — the JSONL front end of the engine. A malformed line or
 * an invalid request gives {"error": ...} for that line only. */
#include "cli/generate_batch.h"
#include "cli/engine_flags.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/common.h"
#include "util/progress.h"

typedef struct samp {
    int32_t *toks;
    int ntok, cap;
    char *text;
    size_t len, tcap;
    int fr;
    json_t *lps; /* logprobs list or NULL */
} samp;

typedef struct line_res {
    char *error;
    int64_t id;
    int n, want_lp;
    samp *s;
} line_res;

static const char *reason_name(int fr) {
    switch (fr) {
    case CI_FINISH_STOP: return "stop";
    case CI_FINISH_LENGTH: return "length";
    case CI_FINISH_ABORT: return "abort";
    case CI_FINISH_ERROR: return "error";
    default: return NULL;
    }
}

static int set_error(line_res *L, const char *msg) {
    free(L->error);
    L->error = strdup(msg);
    return 1;
}

/* Reads an optional number field. Returns 0 ok, 1 on a type error. */
static int get_num(json_t *o, const char *key, double *out, int *present, char *err,
                   size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (present) *present = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) {
        snprintf(err, errlen, "%s must be a number", key);
        return 1;
    }
    *out = json_number_value(v);
    if (present) *present = 1;
    return 0;
}

static int get_int(json_t *o, const char *key, long *out, char *err, size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) {
        snprintf(err, errlen, "%s must be an integer", key);
        return 1;
    }
    json_int_t x = json_integer_value(v);
    if (x < -2147483647 || x > 2147483647) {
        snprintf(err, errlen, "%s out of range", key);
        return 1;
    }
    *out = (long)x;
    return 0;
}

static int get_bool(json_t *o, const char *key, int *out, char *err, size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) {
        snprintf(err, errlen, "%s must be true or false", key);
        return 1;
    }
    *out = json_is_true(v);
    return 0;
}

/* Parses one line and adds its request. On failure sets L->error. */
static void add_line(ci_engine *e, const char *text, size_t len, const ci_engine_sampling *d,
                     line_res *L) {
    char err[256] = {0};
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    int32_t *ids = NULL, *stop_ids = NULL;
    const char **stops = NULL;
    char *schema_text = NULL; /* a json_schema object, dumped */
    if (!o) {
        snprintf(err, sizeof err, "malformed JSON: %s", je.text);
        goto done;
    }
    if (!json_is_object(o)) {
        snprintf(err, sizeof err, "each line must be a JSON object");
        goto done;
    }
    ci_engine_sampling sp = *d;
    double x;
    long li;
    int pr;
    if (get_num(o, "temperature", &x, &pr, err, sizeof err)) goto done;
    if (pr) sp.temperature = (float)x;
    if (get_num(o, "top_p", &x, &pr, err, sizeof err)) goto done;
    if (pr) sp.top_p = (float)x;
    if (get_num(o, "min_p", &x, &pr, err, sizeof err)) goto done;
    if (pr) sp.min_p = (float)x;
    if (get_num(o, "presence_penalty", &x, &pr, err, sizeof err)) goto done;
    if (pr) sp.presence_penalty = (float)x;
    if (get_num(o, "frequency_penalty", &x, &pr, err, sizeof err)) goto done;
    if (pr) sp.frequency_penalty = (float)x;
    if (get_num(o, "repetition_penalty", &x, &pr, err, sizeof err)) goto done;
    if (pr) sp.repetition_penalty = (float)x;
    li = sp.max_tokens;
    if (get_int(o, "max_tokens", &li, err, sizeof err)) goto done;
    sp.max_tokens = (int)li;
    li = sp.top_k;
    if (get_int(o, "top_k", &li, err, sizeof err)) goto done;
    sp.top_k = (int)li;
    li = 0;
    if (get_int(o, "min_tokens", &li, err, sizeof err)) goto done;
    sp.min_tokens = (int)li;
    li = 1;
    if (get_int(o, "n", &li, err, sizeof err)) goto done;
    sp.n = (int)li;
    li = -1;
    if (get_int(o, "logprobs", &li, err, sizeof err)) goto done;
    sp.logprobs = (int)li;
    li = -1;
    if (get_int(o, "prompt_logprobs", &li, err, sizeof err)) goto done;
    sp.prompt_logprobs = (int)li;
    json_t *seed = json_object_get(o, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed) || json_integer_value(seed) < 0) {
            snprintf(err, sizeof err, "seed must be a non-negative integer");
            goto done;
        }
        sp.seed = (int64_t)json_integer_value(seed);
    }
    if (get_bool(o, "ignore_eos", &sp.ignore_eos, err, sizeof err)) goto done;
    long priority = 0;
    if (get_int(o, "priority", &priority, err, sizeof err)) goto done;
    json_t *st = json_object_get(o, "stop");
    if (json_is_string(st)) {
        stops = malloc(sizeof *stops);
        stops[0] = json_string_value(st);
        sp.stop = stops;
        sp.num_stop = 1;
    } else if (json_is_array(st)) {
        size_t ns = json_array_size(st);
        stops = malloc(sizeof *stops * (ns ? ns : 1));
        for (size_t i = 0; i < ns; i++) {
            json_t *v = json_array_get(st, i);
            if (!json_is_string(v)) {
                snprintf(err, sizeof err, "stop must be a string or a list of strings");
                goto done;
            }
            stops[i] = json_string_value(v);
        }
        sp.stop = stops;
        sp.num_stop = (int)ns;
    } else if (st && !json_is_null(st)) {
        snprintf(err, sizeof err, "stop must be a string or a list of strings");
        goto done;
    }
    json_t *sti = json_object_get(o, "stop_token_ids");
    if (sti && !json_is_null(sti)) {
        if (!json_is_array(sti)) {
            snprintf(err, sizeof err, "stop_token_ids must be a list of integers");
            goto done;
        }
        size_t ns = json_array_size(sti);
        stop_ids = malloc(sizeof(int32_t) * (ns ? ns : 1));
        for (size_t i = 0; i < ns; i++) {
            json_t *v = json_array_get(sti, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > 2147483647) {
                snprintf(err, sizeof err, "stop_token_ids must be a list of token ids");
                goto done;
            }
            stop_ids[i] = (int32_t)json_integer_value(v);
        }
        sp.stop_token_ids = stop_ids;
        sp.num_stop_token_ids = (int)ns;
    }
    if (sp.n < 1 || sp.n > 1024) {
        snprintf(err, sizeof err, "n must be in [1, 1024] (got %d)", sp.n);
        goto done;
    }
    /* structured output (docs/structured_outputs.md): at most one of
     * "json_schema" (an object or its text), "regex", "grammar" (GBNF) or
     * "json_object": true */
    {
        json_t *js = json_object_get(o, "json_schema"), *rx = json_object_get(o, "regex"),
               *gr = json_object_get(o, "grammar"), *jo = json_object_get(o, "json_object");
        int nset = (js && !json_is_null(js)) + (rx && !json_is_null(rx)) +
                   (gr && !json_is_null(gr)) + json_is_true(jo);
        if (nset > 1) {
            snprintf(err, sizeof err, "at most one of json_schema, regex, grammar, json_object");
            goto done;
        }
        if (js && json_is_object(js)) {
            schema_text = json_dumps(js, JSON_COMPACT);
            sp.structured_kind = CINFER_STRUCTURED_JSON_SCHEMA;
            sp.structured = schema_text;
        } else if (js && json_is_string(js)) {
            sp.structured_kind = CINFER_STRUCTURED_JSON_SCHEMA;
            sp.structured = json_string_value(js);
        } else if (json_is_string(rx)) {
            sp.structured_kind = CINFER_STRUCTURED_REGEX;
            sp.structured = json_string_value(rx);
        } else if (json_is_string(gr)) {
            sp.structured_kind = CINFER_STRUCTURED_GRAMMAR;
            sp.structured = json_string_value(gr);
        } else if (json_is_true(jo)) {
            sp.structured_kind = CINFER_STRUCTURED_JSON_OBJECT;
        } else if (nset) {
            snprintf(err, sizeof err,
                     "json_schema must be an object or a string; regex and "
                     "grammar strings; json_object a boolean");
            goto done;
        }
    }
    json_t *pt = json_object_get(o, "prompt"), *pids = json_object_get(o, "prompt_token_ids");
    ci_status s;
    int64_t id = -1;
    if (pids && !json_is_null(pids)) {
        if (!json_is_array(pids)) {
            snprintf(err, sizeof err, "prompt_token_ids must be a list of integers");
            goto done;
        }
        size_t np = json_array_size(pids);
        ids = malloc(sizeof(int32_t) * (np ? np : 1));
        for (size_t i = 0; i < np; i++) {
            json_t *v = json_array_get(pids, i);
            if (!json_is_integer(v) || json_integer_value(v) < -2147483647 ||
                json_integer_value(v) > 2147483647) {
                snprintf(err, sizeof err, "prompt_token_ids must be a list of integers");
                goto done;
            }
            ids[i] = (int32_t)json_integer_value(v);
        }
        s = ci_engine_add_request(e, ids, (int)np, &sp, (int)priority, &id);
    } else if (json_is_string(pt)) {
        s = ci_engine_add_request_text(e, json_string_value(pt), &sp, (int)priority, &id);
    } else {
        snprintf(err, sizeof err, "each line needs \"prompt\" (a string) or \"prompt_token_ids\"");
        goto done;
    }
    if (s.code) {
        snprintf(err, sizeof err, "%s", s.msg);
        goto done;
    }
    L->id = id;
    L->n = sp.n;
    L->want_lp = sp.logprobs >= 0;
    L->s = calloc((size_t)sp.n, sizeof *L->s);
    if (!L->s) snprintf(err, sizeof err, "out of memory");
done:
    if (err[0]) set_error(L, err);
    free(schema_text);
    free(ids);
    free(stop_ids);
    free(stops);
    json_decref(o);
}

static int samp_add(samp *s, const ci_engine_output *o) {
    if (o->num_token_ids > 0) {
        if (s->ntok + o->num_token_ids > s->cap) {
            int nc = s->cap ? s->cap * 2 : 32;
            while (nc < s->ntok + o->num_token_ids)
                nc *= 2;
            int32_t *p = realloc(s->toks, sizeof(int32_t) * (size_t)nc);
            if (!p) return 1;
            s->toks = p;
            s->cap = nc;
        }
        memcpy(s->toks + s->ntok, o->token_ids, sizeof(int32_t) * (size_t)o->num_token_ids);
        s->ntok += o->num_token_ids;
    }
    if (o->text_len > 0) {
        if (s->len + o->text_len + 1 > s->tcap) {
            size_t nc = s->tcap ? s->tcap * 2 : 128;
            while (nc < s->len + o->text_len + 1)
                nc *= 2;
            char *p = realloc(s->text, nc);
            if (!p) return 1;
            s->text = p;
            s->tcap = nc;
        }
        memcpy(s->text + s->len, o->text, o->text_len);
        s->len += o->text_len;
    }
    if (o->logprobs) {
        if (!s->lps) s->lps = json_array();
        for (int t = 0; t < o->num_token_ids; t++) {
            const ci_engine_logprob *lp = &o->logprobs[t];
            json_t *top = json_array();
            for (int k = 0; k < lp->num_top; k++)
                json_array_append_new(
                    top, json_pack("[if]", (int)lp->top_ids[k], (double)lp->top_logprobs[k]));
            json_array_append_new(s->lps, json_pack("{s:i,s:f,s:o}", "token", (int)lp->token,
                                                    "logprob", (double)lp->logprob, "top", top));
        }
    }
    if (o->finish_reason) s->fr = o->finish_reason;
    return 0;
}

static json_t *samp_json(const samp *s) {
    json_t *o = json_object();
    json_t *a = json_array();
    for (int i = 0; i < s->ntok; i++)
        json_array_append_new(a, json_integer(s->toks[i]));
    json_object_set_new(o, "tokens", a);
    json_object_set_new(o, "text", json_stringn(s->text ? s->text : "", s->len));
    const char *fr = reason_name(s->fr);
    json_object_set_new(o, "finish_reason", fr ? json_string(fr) : json_null());
    if (s->lps) json_object_set(o, "logprobs", s->lps);
    return o;
}

static int cmp_id(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int ci_generate_prompts_file(const ci_engine_config *ec, const char *path,
                             const ci_engine_sampling *d, bool stats) {
    char *buf = NULL;
    size_t blen = 0;
    ci_status s = ci_read_path(path, &buf, &blen);
    if (s.code) return ci_cli_fail(s);
    ci_engine *e = NULL;
    s = ci_cli_engine_create(ec, &e);
    if (s.code) {
        free(buf);
        return ci_cli_fail(s);
    }
    /* split lines (blank lines are skipped) */
    int nl = 0, cap = 0;
    line_res *L = NULL;
    int64_t(*map)[2] = NULL; /* (request id, line) sorted by id */
    int nmap = 0;
    size_t pos = 0;
    while (pos < blen) {
        size_t end = pos;
        while (end < blen && buf[end] != '\n')
            end++;
        size_t a = pos, b = end;
        while (a < b && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r'))
            a++;
        while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t' || buf[b - 1] == '\r'))
            b--;
        if (b > a) {
            if (nl == cap) {
                cap = cap ? cap * 2 : 64;
                L = realloc(L, sizeof *L * (size_t)cap);
                map = realloc(map, sizeof *map * (size_t)cap);
                if (!L || !map) {
                    free(buf);
                    ci_engine_destroy(e);
                    return ci_cli_fail(ci_errorf(CI_ERR_NOMEM, "out of memory"));
                }
            }
            memset(&L[nl], 0, sizeof L[nl]);
            L[nl].id = -1;
            add_line(e, buf + a, b - a, d, &L[nl]);
            if (!L[nl].error) {
                map[nmap][0] = L[nl].id;
                map[nmap][1] = nl;
                nmap++;
            }
            nl++;
        }
        pos = end + 1;
    }
    free(buf);
    qsort(map, (size_t)nmap, sizeof *map, cmp_id);
    ci_progress bar;
    ci_progress_init(&bar, "generate");
    int done = 0;
    double t_run = ci_now();
    while (!s.code && ci_engine_has_unfinished(e)) {
        const ci_engine_output *o;
        int n;
        s = ci_engine_step(e, &o, &n);
        for (int i = 0; !s.code && i < n; i++) {
            int64_t key[2] = {o[i].request_id, 0};
            int64_t(*hit)[2] = bsearch(key, map, (size_t)nmap, sizeof *map, cmp_id);
            if (!hit) continue;
            line_res *r = &L[(*hit)[1]];
            if (o[i].sample_index < 0 || o[i].sample_index >= r->n) continue;
            if (samp_add(&r->s[o[i].sample_index], &o[i]))
                s = ci_errorf(CI_ERR_NOMEM, "out of memory");
            if (o[i].finish_reason) done++;
        }
        ci_progress_update(&bar, (size_t)done, (size_t)nmap);
    }
    ci_progress_done(&bar);
    t_run = ci_now() - t_run;
    for (int i = 0; i < nl; i++) {
        json_t *o;
        if (L[i].error || s.code) {
            o = json_object();
            json_object_set_new(o, "error", json_string(L[i].error ? L[i].error : s.msg));
        } else {
            o = samp_json(&L[i].s[0]);
            if (L[i].n > 1) {
                json_t *a = json_array();
                for (int k = 0; k < L[i].n; k++)
                    json_array_append_new(a, samp_json(&L[i].s[k]));
                json_object_set_new(o, "samples", a);
            }
        }
        char *dump = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        puts(dump ? dump : "null");
        free(dump);
        json_decref(o);
    }
    fflush(stdout);
    if (stats) {
        ci_engine_metrics m = ci_engine_get_metrics(e);
        json_t *o = json_object();
        json_object_set_new(o, "num_requests", json_integer(m.num_requests));
        json_object_set_new(o, "num_preemptions", json_integer(m.num_preemptions));
        json_object_set_new(o, "prefix_cache_queried_tokens",
                            json_integer(m.prefix_cache_queried_tokens));
        json_object_set_new(o, "prefix_cache_hit_tokens", json_integer(m.prefix_cache_hit_tokens));
        json_object_set_new(o, "peak_kv_blocks_used", json_integer(m.peak_kv_blocks_used));
        json_object_set_new(o, "num_kv_blocks", json_integer(m.num_kv_blocks));
        json_object_set_new(o, "block_size", json_integer(m.block_size));
        json_object_set_new(o, "kv_cache_bytes", json_integer(m.kv_cache_bytes));
        json_object_set_new(o, "prompt_tokens", json_integer(m.prompt_tokens));
        json_object_set_new(o, "generation_tokens", json_integer(m.generation_tokens));
        json_object_set_new(o, "num_steps", json_integer(m.num_steps));
        /* the run after loading: every step of every line */
        json_object_set_new(o, "elapsed_s", json_real(t_run));
        json_object_set_new(o, "output_tokens_per_s",
                            json_real(t_run > 0 ? (double)m.generation_tokens / t_run : 0));
        /* where the time went (s): scheduling + batch building + proposals
         * of n-gram drafts, the forward (with the draft's K/V mirror), the
         * draft model's proposals, sampling, token output */
        json_object_set_new(o, "time_schedule_s", json_real(m.time_schedule_s));
        json_object_set_new(o, "time_forward_s", json_real(m.time_forward_s));
        json_object_set_new(o, "time_draft_s", json_real(m.time_draft_s));
        json_object_set_new(o, "time_sample_s", json_real(m.time_sample_s));
        json_object_set_new(o, "time_masks_s", json_real(m.time_masks_s));
        json_object_set_new(o, "time_output_s", json_real(m.time_output_s));
        if (m.spec_verify_steps > 0) { /* speculative decoding */
            json_object_set_new(o, "spec_verify_steps", json_integer(m.spec_verify_steps));
            json_object_set_new(o, "spec_draft_tokens", json_integer(m.spec_draft_tokens));
            json_object_set_new(o, "spec_accepted_tokens", json_integer(m.spec_accepted_tokens));
            json_t *at = json_array();
            for (int k = 0; k < 16 && m.spec_accepted_at[k] > 0; k++)
                json_array_append_new(at, json_integer(m.spec_accepted_at[k]));
            json_object_set_new(o, "spec_accepted_by_position", at);
        }
        char *dump = json_dumps(o, JSON_COMPACT);
        fprintf(stderr, "%s\n", dump ? dump : "null");
        free(dump);
        json_decref(o);
    }
    for (int i = 0; i < nl; i++) {
        free(L[i].error);
        for (int k = 0; L[i].s && k < L[i].n; k++) {
            free(L[i].s[k].toks);
            free(L[i].s[k].text);
            json_decref(L[i].s[k].lps);
        }
        free(L[i].s);
    }
    free(L);
    free(map);
    ci_engine_destroy(e);
    if (s.code) return ci_cli_fail(s);
    return 0;
}
