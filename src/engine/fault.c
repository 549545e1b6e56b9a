/* fault.c — CINFER_FAULT_INJECT rules (see fault.h). */
#include "engine/fault.h"

#include <stdlib.h>
#include <string.h>

#define MAX_RULES 8

typedef struct rule {
    ci_fault_site site;
    int64_t step, seed; /* -1: any */
    int64_t count;      /* -1: unlimited */
} rule;

struct ci_fault_spec {
    rule r[MAX_RULES];
    int n;
};

static const char *const site_names[] = {"forward", "sample", "detok", "output", "rank"};

static ci_status parse_int(const char *v, const char *key, int64_t *out) {
    char *end;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || x < 0)
        return ci_errorf(CI_ERR_INVALID, "CINFER_FAULT_INJECT: %s=%s is not a count", key, v);
    *out = x;
    return ci_ok();
}

static ci_status parse_rule(char *text, rule *r) {
    r->step = r->seed = r->count = -1;
    char *save = NULL, *tok = strtok_r(text, ":", &save);
    int found = 0;
    for (int i = 0; tok && i < (int)(sizeof site_names / sizeof site_names[0]); i++)
        if (!strcmp(tok, site_names[i])) {
            r->site = (ci_fault_site)i;
            found = 1;
        }
    if (!found)
        return ci_errorf(CI_ERR_INVALID,
                         "CINFER_FAULT_INJECT: site '%s' (use forward, sample, detok, output or "
                         "rank)",
                         tok ? tok : "");
    while ((tok = strtok_r(NULL, ":", &save)) != NULL) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return ci_errorf(CI_ERR_INVALID, "CINFER_FAULT_INJECT: '%s' is not KEY=VALUE", tok);
        *eq = '\0';
        int64_t *dst = !strcmp(tok, "step")    ? &r->step
                       : !strcmp(tok, "seed")  ? &r->seed
                       : !strcmp(tok, "count") ? &r->count
                                               : NULL;
        if (!dst)
            return ci_errorf(CI_ERR_INVALID, "CINFER_FAULT_INJECT: key '%s' (step, seed, count)",
                             tok);
        CI_TRY(parse_int(eq + 1, tok, dst));
    }
    return ci_ok();
}

ci_status ci_fault_spec_parse(const char *text, ci_fault_spec **out) {
    *out = NULL;
    char *copy = strdup(text);
    ci_fault_spec *f = calloc(1, sizeof *f);
    ci_status s = copy && f ? ci_ok() : ci_errorf(CI_ERR_NOMEM, "fault spec: out of memory");
    char *save = NULL;
    for (char *tok = s.code ? NULL : strtok_r(copy, ",", &save); tok && !s.code;
         tok = strtok_r(NULL, ",", &save)) {
        if (f->n == MAX_RULES) {
            s = ci_errorf(CI_ERR_INVALID, "CINFER_FAULT_INJECT: more than %d rules", MAX_RULES);
            break;
        }
        s = parse_rule(tok, &f->r[f->n++]);
    }
    free(copy);
    if (s.code || f->n == 0) {
        free(f);
        return s;
    }
    *out = f;
    return ci_ok();
}

ci_status ci_fault_spec_from_env(ci_fault_spec **out) {
    *out = NULL;
    const char *v = getenv("CINFER_FAULT_INJECT");
    if (!v || !*v) return ci_ok();
    return ci_fault_spec_parse(v, out);
}

void ci_fault_spec_free(void *spec) {
    free(spec);
}

ci_status ci_fault_spec_check(void *spec, ci_fault_site site, int64_t step, int64_t request_id,
                              int64_t seed) {
    ci_fault_spec *f = spec;
    for (int i = 0; i < f->n; i++) {
        rule *r = &f->r[i];
        if (r->site != site || r->count == 0 || (r->step >= 0 && r->step != step) ||
            (r->seed >= 0 && r->seed != seed))
            continue;
        if (r->count > 0) r->count--;
        return ci_errorf(CI_ERR_INTERNAL, "injected %s fault (step %lld, request %lld)",
                         site_names[site], (long long)step, (long long)request_id);
    }
    return ci_ok();
}
