/* backend_registry.c — ci_backend_create: a backend by name. The one file
 * that knows every backend (each one only knows backend.h). */
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"

ci_status ci_cpu_backend_create(const ci_backend_options *opts, ci_backend **out);
#ifdef CINFER_HAVE_CUDA
/* The CUDA libraries are opened here, on first use (cublaslt_lazy.c): a
 * CUDA build runs on the CPU where none is installed. */
ci_status ci_cuda_backend_create(const ci_backend_options *opts, ci_backend **out);
#endif

ci_status ci_backend_create(const char *name, const ci_backend_options *opts, ci_backend **out) {
    *out = NULL;
    ci_backend_options def = {0, 0, CI_ACT_DEFAULT};
    if (!opts) opts = &def;
    if (!name || !strcmp(name, "cpu")) return ci_cpu_backend_create(opts, out);
    if (!strcmp(name, "cuda")) {
#ifdef CINFER_HAVE_CUDA
        const char *why = ci_cuda_libs_load();
        if (why) return ci_errorf(CI_ERR_UNSUPPORTED, "backend 'cuda': %s", why);
        return ci_cuda_backend_create(opts, out);
#else
        return ci_errorf(CI_ERR_UNSUPPORTED, "backend 'cuda': built without CUDA");
#endif
    }
    return ci_errorf(CI_ERR_INVALID, "unknown backend '%s' (expected cpu or cuda)", name);
}

int ci_backend_device_count(const char *name) {
    if (!name || !strcmp(name, "cpu")) return -1; /* ranks are threads: no limit */
#ifdef CINFER_HAVE_CUDA
    if (!strcmp(name, "cuda")) return ci_cuda_device_count();
#endif
    return 0;
}
