/* proposer.c — n-gram prompt lookup (see proposer.h). */
#include "engine/proposer.h"

#include <string.h>

int ci_ngram_propose(const int32_t *tokens, int n, int ngram_min, int ngram_max, int k,
                     int32_t *out) {
    if (k <= 0) return 0;
    for (int g = ngram_max; g >= ngram_min; g--) {
        if (g >= n) continue;
        const int32_t *suffix = tokens + n - g;
        /* most recent earlier occurrence: start positions n-g-1 down to 0 */
        for (int p = n - g - 1; p >= 0; p--) {
            if (tokens[p] != suffix[0] || memcmp(tokens + p, suffix, sizeof(int32_t) * (size_t)g))
                continue;
            int avail = n - (p + g); /* tokens that followed it */
            int m = avail < k ? avail : k;
            memcpy(out, tokens + p + g, sizeof(int32_t) * (size_t)m);
            return m;
        }
    }
    return 0;
}
