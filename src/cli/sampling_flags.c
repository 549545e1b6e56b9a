/* sampling_flags.c — see sampling_flags.h. */
#include "cli/sampling_flags.h"

ci_sampling_flags ci_sampling_flags_default(long max_tokens) {
    ci_sampling_flags f = {0};
    f.max_tokens = max_tokens;
    f.seed = -1;
    f.temperature = 1.0;
    f.top_p = 1.0;
    f.repetition_penalty = 1.0;
    return f;
}

ci_status ci_sampling_flags_params(const ci_sampling_flags *f, ci_engine_sampling *sp) {
    if (f->max_tokens < 1 || f->max_tokens > 1000000)
        return ci_errorf(CI_ERR_INVALID, "-n/--max-tokens must be in [1, 1000000] (got %ld)",
                         f->max_tokens);
    if (f->temperature < 0)
        return ci_errorf(CI_ERR_INVALID, "--temperature must be >= 0 (got %g)", f->temperature);
    if (f->top_k < 0) return ci_errorf(CI_ERR_INVALID, "--top-k must be >= 0 (got %ld)", f->top_k);
    if (!(f->top_p > 0 && f->top_p <= 1))
        return ci_errorf(CI_ERR_INVALID, "--top-p must be in (0, 1] (got %g)", f->top_p);
    if (!(f->min_p >= 0 && f->min_p <= 1))
        return ci_errorf(CI_ERR_INVALID, "--min-p must be in [0, 1] (got %g)", f->min_p);
    if (!(f->repetition_penalty > 0))
        return ci_errorf(CI_ERR_INVALID, "--repetition-penalty must be > 0 (got %g)",
                         f->repetition_penalty);
    if (!(f->presence_penalty >= -2 && f->presence_penalty <= 2))
        return ci_errorf(CI_ERR_INVALID, "--presence-penalty must be in [-2, 2] (got %g)",
                         f->presence_penalty);
    if (!(f->frequency_penalty >= -2 && f->frequency_penalty <= 2))
        return ci_errorf(CI_ERR_INVALID, "--frequency-penalty must be in [-2, 2] (got %g)",
                         f->frequency_penalty);
    for (int i = 0; i < f->stop.n; i++)
        if (!f->stop.v[i][0]) return ci_errorf(CI_ERR_INVALID, "--stop must not be empty");
    *sp = ci_engine_default_sampling();
    sp->max_tokens = (int)f->max_tokens;
    sp->temperature = (float)f->temperature;
    sp->top_k = (int)f->top_k;
    sp->top_p = (float)f->top_p;
    sp->min_p = (float)f->min_p;
    sp->repetition_penalty = (float)f->repetition_penalty;
    sp->presence_penalty = (float)f->presence_penalty;
    sp->frequency_penalty = (float)f->frequency_penalty;
    sp->seed = f->seed;
    sp->ignore_eos = f->ignore_eos;
    sp->stop = f->stop.n ? f->stop.v : NULL;
    sp->num_stop = f->stop.n;
    return ci_ok();
}
