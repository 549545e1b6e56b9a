/* logit_bias_cases.h — logit_bias (CI_ADJ_BIAS) through a backend's sample
 * op, shared by test_sampling.c (the CPU backend) and test_cuda_sampling.c:
 * under greedy, temperature, top-p and top-k rows, +100 on the row's
 * least likely token always draws it, -100 on its most likely token never
 * does (which it does often without the bias: the case can fail), a mixed
 * list of small biases with repetition / presence / frequency penalties
 * draws what the CPU reference (ci_logit_adjust_apply + ci_sampler_draw)
 * draws, and logprobs stay those of the raw logits. */
#ifndef CINFER_TESTS_LOGIT_BIAS_CASES_H
#define CINFER_TESTS_LOGIT_BIAS_CASES_H

#include <math.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "backend/sample_ref.h"
#include "test.h"

enum { LB_V = 257, LB_SEEDS = 200, LB_MODES = 4 };

static const struct {
    float temperature, top_p;
    int top_k;
} lb_modes[LB_MODES] = {{0.0f, 1.0f, 0}, {1.0f, 1.0f, 0}, {0.8f, 0.9f, 0}, {1.5f, 1.0f, 50}};

/* The row every case samples: values in [-2, 2], token 200 well above them
 * (drawn often), token 10 far below (never drawn without a bias). */
static void lb_fill(float *x) {
    for (int i = 0; i < LB_V; i++)
        x[i] = 2.0f * sinf(1.7f * (float)i);
    x[200] = 5.0f;
    x[10] = -6.0f;
}

static void lb_row(ci_sample_row *r, int mode, uint64_t seed) {
    memset(r, 0, sizeof *r);
    r->top_logprobs = -1;
    r->mask_row = -1;
    r->temperature = lb_modes[mode].temperature;
    r->top_p = lb_modes[mode].top_p;
    r->top_k = lb_modes[mode].top_k;
    r->repetition_penalty = 1.0f;
    r->seed = seed;
    r->step = 3;
}

/* Draws LB_SEEDS rows of `mode` over row x with adjustments adj; returns how
 * many drew token t (res holds the last call's results). */
static int lb_draw(ci_backend *be, const ci_tensor *lg, int mode, const ci_logit_adjust *adj,
                   int nadj, ci_sample_row *rows, ci_sample_result *res, int32_t t) {
    for (int i = 0; i < LB_SEEDS; i++) {
        lb_row(&rows[i], mode, 77u + (uint64_t)i);
        rows[i].adj_count = nadj;
    }
    CHECK_OK(be->ops->sample(be, lg, rows, LB_SEEDS, adj, nadj, NULL, 0, res));
    int hits = 0;
    for (int i = 0; i < LB_SEEDS; i++)
        hits += res[i].token == t;
    return hits;
}

/* `lg` is one F32 row of LB_V logits (lb_fill) in be's memory, `x` the same on the
 * host; exact: every draw must equal the reference's (the CPU backend),
 * else at most 2% may differ (GPU rounding at a CDF boundary). */
static void logit_bias_cases(ci_backend *be, const ci_tensor *lg, const float *x, int exact) {
    int32_t lo = 0, hi = 0;
    for (int i = 1; i < LB_V; i++) {
        if (x[i] < x[lo]) lo = i;
        if (x[i] > x[hi]) hi = i;
    }
    ci_sample_row *rows = malloc(sizeof *rows * LB_SEEDS);
    ci_sample_result *res = malloc(sizeof *res * LB_SEEDS);
    for (int m = 0; m < LB_MODES; m++) {
        ci_logit_adjust up = {lo, CI_ADJ_BIAS, 0, 100.0f};
        int got = lb_draw(be, lg, m, &up, 1, rows, res, lo);
        CHECKF(got == LB_SEEDS, "mode %d: +100 on token %d drew it %d/%d times", m, lo, got,
               LB_SEEDS);
        int before = lb_draw(be, lg, m, NULL, 0, rows, res, hi);
        ci_logit_adjust down = {hi, CI_ADJ_BIAS, 0, -100.0f};
        int after = lb_draw(be, lg, m, &down, 1, rows, res, hi);
        CHECKF(before > LB_SEEDS / 10 && after == 0,
               "mode %d: token %d drawn %d/%d times, %d with -100", m, hi, before, LB_SEEDS, after);
    }
    /* small biases mixed with penalties: the order (bias before the penalties) and the values
     * must match the reference */
    ci_sampler *s = NULL;
    CHECK_OK(ci_sampler_create(LB_V, &s));
    float *row = malloc(sizeof(float) * LB_V);
    ci_logit_adjust mix[6] = {{hi, CI_ADJ_BIAS | CI_ADJ_REPEAT, 2, -1.5f},
                              {lo, CI_ADJ_BIAS, 0, 9.0f},
                              {(hi + 1) % LB_V, CI_ADJ_BIAS, 1, 2.5f},
                              {(hi + 2) % LB_V, CI_ADJ_REPEAT, 1, 0.0f},
                              {(lo + 3) % LB_V, CI_ADJ_BIAS | CI_ADJ_REPEAT, 0, -0.5f},
                              {(lo + 5) % LB_V, CI_ADJ_BIAS | CI_ADJ_MASK, 0, 100.0f}};
    for (int m = 0; m < LB_MODES; m++) {
        for (int i = 0; i < LB_SEEDS; i++) {
            lb_row(&rows[i], m, 500u + (uint64_t)i);
            rows[i].adj_count = 6;
            rows[i].repetition_penalty = 1.3f;
            rows[i].presence_penalty = 0.4f;
            rows[i].frequency_penalty = 0.7f;
            rows[i].top_logprobs = i == 0 ? 1 : -1;
        }
        CHECK_OK(be->ops->sample(be, lg, rows, LB_SEEDS, mix, 6, NULL, 0, res));
        memcpy(row, x, sizeof(float) * LB_V);
        ci_logit_adjust_apply(row, mix, 6, 1.3f, 0.4f, 0.7f);
        int differ = 0;
        for (int i = 0; i < LB_SEEDS; i++) {
            ci_sampling_params p = {lb_modes[m].temperature, lb_modes[m].top_k, lb_modes[m].top_p,
                                    0.0f, rows[i].seed};
            int32_t want = ci_sampler_draw(s, row, &p, 0, rows[i].step, NULL);
            differ += res[i].token != want;
            CHECK(res[i].token != (lo + 5) % LB_V); /* the mask wins over +100 */
        }
        CHECKF(exact ? differ == 0 : differ <= LB_SEEDS / 50, "mode %d: %d/%d draws differ", m,
               differ, LB_SEEDS);
        /* logprobs are of the raw row, whatever the bias did */
        double lse = ci_log_softmax(x, LB_V, NULL);
        CHECKF(fabs(res[0].logprob - (x[res[0].token] - lse)) < 1e-4, "logprob %g want %g",
               (double)res[0].logprob, x[res[0].token] - lse);
    }
    ci_sampler_free(s);
    free(row), free(rows), free(res);
}

#endif
