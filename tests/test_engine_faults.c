/* test_engine_faults.c — all-or-nothing engine steps under injected faults
 * (tinyqwen2-code on the CPU, or CINFER_TEST_DEVICE): a fault in the
 * forward or the sample op ends every request of that step with reason
 * error and a message, and nothing else; a fault in one request's
 * detokenization or output ends that request alone while the others produce
 * the tokens they produce without any fault; after each fault the next 200
 * requests on the same engine all finish normally, the block pool is back
 * to empty and the scheduler's invariants hold. Also the CINFER_FAULT_INJECT
 * parser. */
#include <stdint.h>

#include "engine/engine.h"
#include "engine/fault.h"
#include "engine_test.h"
#include "test.h"

static char model_dir[4096];

typedef struct fault {
    ci_fault_site site;
    int64_t step;       /* -1: any */
    int64_t request_id; /* -1: any */
    int fired;
} fault;

static ci_status hook(void *user, ci_fault_site site, int64_t step, int64_t rid, int64_t seed) {
    (void)seed;
    fault *f = user;
    if (site != f->site || (f->step >= 0 && step != f->step) ||
        (f->request_id >= 0 && rid != f->request_id))
        return ci_ok();
    f->fired++;
    return ci_errorf(CI_ERR_INTERNAL, "test fault at step %lld", (long long)step);
}

#define NREQ 6
#define NTOK 12

typedef struct outcome {
    int64_t id;
    int32_t toks[NTOK];
    int n, fr;
    char err[256];
} outcome;

static ci_engine *mk_engine(void) {
    ci_engine_config c = ci_engine_default_config();
    c.model_dir = model_dir;
    c.max_num_seqs = 16;
    c.max_num_batched_tokens = 64; /* several steps of prefill, mixed batches */
    c.block_size = 4;
    c.kv_cache_tokens = 4096;
    c.num_threads = 1;
    return test_engine_create(&c, NULL);
}

/* Queues NREQ requests (different prompt lengths, one with n = 2, one with
 * prompt logprobs) and runs the engine until none is left. */
static void run(ci_engine *e, outcome *out) {
    for (int i = 0; i < NREQ; i++) {
        int32_t prompt[40];
        int np = 5 + 7 * i;
        for (int k = 0; k < np; k++)
            prompt[k] = (int32_t)((k * 131 + i * 17 + 3) % 8000);
        ci_engine_sampling sp = ci_engine_default_sampling();
        sp.max_tokens = NTOK;
        sp.ignore_eos = 1;
        sp.temperature = i % 2 ? 0.8f : 0.0f;
        sp.seed = 100 + i;
        if (i == 2) sp.prompt_logprobs = 2;
        if (i == 4) sp.logprobs = 3;
        memset(&out[i], 0, sizeof out[i]);
        CHECK_OK(ci_engine_add_request(e, prompt, np, &sp, 0, &out[i].id));
    }
    for (int guard = 0; ci_engine_has_unfinished(e) && guard < 1000; guard++) {
        const ci_engine_output *o;
        int n;
        CHECK_OK(ci_engine_step(e, &o, &n));
        for (int k = 0; k < n; k++) {
            outcome *r = NULL;
            for (int i = 0; i < NREQ; i++)
                if (out[i].id == o[k].request_id) r = &out[i];
            if (!r) continue;
            for (int t = 0; t < o[k].num_token_ids && r->n < NTOK; t++)
                r->toks[r->n++] = o[k].token_ids[t];
            if (o[k].finish_reason) r->fr = o[k].finish_reason;
            if (o[k].finish_reason == CINFER_FINISH_ERROR) {
                CHECK(o[k].error != NULL);
                snprintf(r->err, sizeof r->err, "%s", o[k].error ? o[k].error : "");
            } else {
                CHECK(o[k].error == NULL);
            }
        }
    }
}

/* The engine serves normally: 200 requests, all finish with length. */
static void then_200_succeed(ci_engine *e, const char *what) {
    int ok = 0;
    for (int round = 0; round < 200 / 20; round++) {
        int64_t ids[20];
        for (int i = 0; i < 20; i++) {
            int32_t prompt[3] = {(int32_t)(round * 20 + i), 42, 7};
            ci_engine_sampling sp = ci_engine_default_sampling();
            sp.max_tokens = 3;
            sp.ignore_eos = 1;
            CHECK_OK(ci_engine_add_request(e, prompt, 3, &sp, 0, &ids[i]));
        }
        while (ci_engine_has_unfinished(e)) {
            const ci_engine_output *o;
            int n;
            if (ci_engine_step(e, &o, &n).code) break;
            for (int k = 0; k < n; k++)
                ok += o[k].finish_reason == CINFER_FINISH_LENGTH;
        }
    }
    CHECKF(ok == 200, "%s: %d of the next 200 requests finished normally", what, ok);
    ci_scheduler *s = ci_engine_scheduler(e);
    CHECKF(ci_bm_num_used(ci_sched_block_manager(s)) == 0, "%s: %d blocks still used", what,
           ci_bm_num_used(ci_sched_block_manager(s)));
    CHECK_OK(ci_sched_check(s));
}

/* A step-wide fault (forward or sample) in step 1: the requests scheduled
 * in it end with error; the rest finish as without the fault. */
static void step_fault(ci_fault_site site, const outcome *ref) {
    ci_engine *e = mk_engine();
    if (!e) return;
    fault f = {site, 1, -1, 0}; /* step 1 admits requests 0-4, not 5 */
    ci_engine_set_fault_hook(e, hook, &f);
    outcome out[NREQ];
    run(e, out);
    CHECK(f.fired == 1);
    int errors = 0;
    for (int i = 0; i < NREQ; i++) {
        if (out[i].fr == CINFER_FINISH_ERROR) {
            errors++;
            CHECKF(strstr(out[i].err, "test fault at step 1") != NULL, "'%s'", out[i].err);
        } else {
            CHECKF(out[i].fr == CINFER_FINISH_LENGTH && out[i].n == NTOK &&
                       !memcmp(out[i].toks, ref[i].toks, sizeof ref[i].toks),
                   "site %d: request %d not in the failed step changed", (int)site, i);
        }
    }
    CHECKF(errors >= 1 && errors < NREQ, "site %d: %d requests failed", (int)site, errors);
    ci_engine_set_fault_hook(e, NULL, NULL);
    then_200_succeed(e, site == CI_FAULT_FORWARD ? "forward fault" : "sample fault");
    ci_engine_destroy(e);
}

/* A fault of one request (detokenization or output) at its 4th token. */
static void request_fault(ci_fault_site site, int victim, const outcome *ref) {
    ci_engine *e = mk_engine();
    if (!e) return;
    /* request ids are given in order from 0 on a fresh engine */
    fault f = {site, -1, ref[victim].id, 0};
    ci_engine_set_fault_hook(e, hook, &f);
    outcome out[NREQ];
    run(e, out);
    CHECK(f.fired == 1);
    for (int i = 0; i < NREQ; i++) {
        if (i == victim) {
            CHECKF(out[i].fr == CINFER_FINISH_ERROR && strstr(out[i].err, "test fault"),
                   "victim finished with %d '%s'", out[i].fr, out[i].err);
        } else {
            CHECKF(out[i].fr == CINFER_FINISH_LENGTH && out[i].n == NTOK &&
                       !memcmp(out[i].toks, ref[i].toks, sizeof ref[i].toks),
                   "site %d: bystander %d changed", (int)site, i);
        }
    }
    ci_engine_set_fault_hook(e, NULL, NULL);
    then_200_succeed(e, site == CI_FAULT_DETOK ? "detok fault" : "output fault");
    ci_engine_destroy(e);
}

static void test_spec_parser(void) {
    ci_fault_spec *f = NULL;
    CHECK_OK(ci_fault_spec_parse("detok:seed=77,forward:step=3:count=1", &f));
    CHECK(f != NULL);
    CHECK(ci_fault_spec_check(f, CI_FAULT_DETOK, 9, 4, 76).code == CI_OK);
    CHECK(ci_fault_spec_check(f, CI_FAULT_DETOK, 9, 4, 77).code == CI_ERR_INTERNAL);
    CHECK(ci_fault_spec_check(f, CI_FAULT_FORWARD, 2, -1, -1).code == CI_OK);
    CHECK(ci_fault_spec_check(f, CI_FAULT_FORWARD, 3, -1, -1).code == CI_ERR_INTERNAL);
    CHECK(ci_fault_spec_check(f, CI_FAULT_FORWARD, 3, -1, -1).code == CI_OK); /* count=1 */
    ci_fault_spec_free(f);
    const char *bad[] = {"explode", "detok:seed", "detok:color=3", "sample:step=-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = NULL;
        ci_status s = ci_fault_spec_parse(bad[i], &f);
        CHECKF(s.code == CI_ERR_INVALID && f == NULL, "'%s' accepted", bad[i]);
    }
}

int main(void) {
    snprintf(model_dir, sizeof model_dir, "%s/models/tinyqwen2-code", test_source_dir());
    test_spec_parser();
    ci_engine *e = mk_engine();
    if (!e) return test_finish("test_engine_faults");
    outcome ref[NREQ];
    run(e, ref); /* without faults */
    for (int i = 0; i < NREQ; i++)
        CHECK(ref[i].fr == CINFER_FINISH_LENGTH && ref[i].n == NTOK);
    ci_engine_destroy(e);
    step_fault(CI_FAULT_FORWARD, ref);
    step_fault(CI_FAULT_SAMPLE, ref);
    request_fault(CI_FAULT_DETOK, 3, ref);
    request_fault(CI_FAULT_OUTPUT, 4, ref);
    return test_finish("test_engine_faults");
}
