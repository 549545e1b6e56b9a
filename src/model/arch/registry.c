/* registry.c — the table of model families. A new family is one line here. */
#include <stdio.h>
#include <string.h>

#include "model/arch/arch.h"

static const ci_arch *const k_archs[] = {
    &ci_arch_llama,
    &ci_arch_mistral,
    &ci_arch_qwen2,
    &ci_arch_qwen3,
};
#define N_ARCHS (sizeof k_archs / sizeof k_archs[0])

static const ci_arch *find(const char *name, bool model_types) {
    for (size_t i = 0; i < N_ARCHS; i++) {
        const char *const *names =
            model_types ? k_archs[i]->model_types : k_archs[i]->architectures;
        for (int j = 0; j < CI_ARCH_MAX_NAMES && names[j]; j++)
            if (!strcmp(name, names[j])) return k_archs[i];
    }
    return NULL;
}

const ci_arch *ci_arch_by_architecture(const char *name) {
    return find(name, false);
}

const ci_arch *ci_arch_by_model_type(const char *model_type) {
    return find(model_type, true);
}

void ci_arch_list(char *buf, size_t n, bool model_types) {
    size_t used = 0;
    if (n) buf[0] = '\0';
    for (size_t i = 0; i < N_ARCHS; i++) {
        const char *const *names =
            model_types ? k_archs[i]->model_types : k_archs[i]->architectures;
        for (int j = 0; j < CI_ARCH_MAX_NAMES && names[j] && used < n; j++)
            used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", names[j]);
    }
}
