/* fault.h — fault injection for tests: CINFER_FAULT_INJECT fails chosen
 * engine sites so the all-or-nothing step can be exercised end to end
 * (tests/cli/serve_faults.sh drives `serve` with it).
 *
 *   CINFER_FAULT_INJECT="RULE[,RULE...]"   RULE = SITE[:KEY=VALUE...]
 *   SITE: forward | sample | detok | output | rank (a worker rank's forward:
 *         tensor / pipeline parallelism)
 *   KEY:  step=N  (engine step number, 1-based), seed=S (the request's
 *         sampling seed; detok and output only), count=N (fire at most N
 *         times; default: every match)
 *
 * e.g. "detok:seed=77" fails every request sampled with seed 77 at its
 * first token; "forward:step=3" fails the third step's forward. */
#ifndef CINFER_ENGINE_FAULT_H
#define CINFER_ENGINE_FAULT_H

#include "engine/runner.h"

typedef struct ci_fault_spec ci_fault_spec;

/* *out = NULL when the variable is unset or empty; a malformed value is an
 * error (CI_ERR_INVALID). */
ci_status ci_fault_spec_from_env(ci_fault_spec **out);
ci_status ci_fault_spec_parse(const char *text, ci_fault_spec **out);
void ci_fault_spec_free(void *spec);
/* A ci_fault_fn over a spec. */
ci_status ci_fault_spec_check(void *spec, ci_fault_site site, int64_t step, int64_t request_id,
                              int64_t seed);

#endif
