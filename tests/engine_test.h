/* engine_test.h — creating an engine in the engine tests: CINFER_TEST_DEVICE
 * (e.g. cuda) moves it to that device, in gpu_dtype (float32, the parity
 * mode, unless the test asks otherwise); CINFER_TEST_ASYNC=1 / 0 turns
 * async scheduling on / off where the test left the device's default, 2
 * plans ahead too where the engine can (the suites run all three ways); a
 * failure is a CHECK failure and NULL. */
#ifndef CINFER_TESTS_ENGINE_TEST_H
#define CINFER_TESTS_ENGINE_TEST_H

#include "engine/engine.h"
#include "test.h"

static inline ci_engine *test_engine_create(ci_engine_config *c, const char *gpu_dtype) {
    const char *dev = getenv("CINFER_TEST_DEVICE");
    if (dev && *dev) {
        c->device = dev;
        c->dtype = gpu_dtype && *gpu_dtype ? gpu_dtype : "float32";
    }
    const char *as = getenv("CINFER_TEST_ASYNC");
    if (as && *as && c->async_scheduling == 0) {
        const int a = atoi(as);
        c->async_scheduling = a == 2 ? 2 : a ? 1 : -1;
        /* plan ahead where the engine can: not with a draft or several ranks */
        if (a == 2 && (c->num_speculative_tokens > 0 || c->tensor_parallel_size > 1 ||
                       c->pipeline_parallel_size > 1))
            c->async_scheduling = 1;
    }
    ci_engine *e = NULL;
    ci_status s = ci_engine_create(c, &e);
    CHECKF(s.code == CI_OK, "%s", s.msg);
    return e;
}

#endif
