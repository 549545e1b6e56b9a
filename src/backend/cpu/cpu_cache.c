/* cpu_cache.c — KV cache block copies (copy-on-write of shared blocks). */
#include <string.h>

#include "backend/cpu/cpu_internal.h"

ci_status ci_cpu_copy_blocks(ci_backend *be, ci_kv_cache *kv, const int32_t *src,
                             const int32_t *dst, int n) {
    (void)be;
    if (n <= 0) return ci_ok();
    size_t block_bytes = (size_t)kv->num_kv_heads * (size_t)kv->block_size * (size_t)kv->head_dim *
                         ci_dtype_size(kv->dtype);
    for (int i = 0; i < n; i++)
        if (src[i] < 0 || src[i] >= kv->num_blocks || dst[i] < 0 || dst[i] >= kv->num_blocks)
            return ci_errorf(CI_ERR_INVALID, "copy_blocks: pair %d (%d -> %d) outside [0, %d)", i,
                             src[i], dst[i], kv->num_blocks);
    /* Layout per layer: [num_blocks][kv_heads][block_size][head_dim], so a
     * block is one contiguous run per layer for K and for V. */
    for (int l = 0; l < kv->num_layers; l++) {
        char *k = kv->k[l], *v = kv->v[l];
        for (int i = 0; i < n; i++) {
            if (src[i] == dst[i]) continue;
            memcpy(k + (size_t)dst[i] * block_bytes, k + (size_t)src[i] * block_bytes, block_bytes);
            memcpy(v + (size_t)dst[i] * block_bytes, v + (size_t)src[i] * block_bytes, block_bytes);
        }
    }
    return ci_ok();
}
