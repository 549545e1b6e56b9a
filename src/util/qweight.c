/* qweight.c — act order undone by a column sort, for the backends'
 * qweight_create (util/qweight.h says when it applies). */
#include "util/qweight.h"

#include <stdlib.h>
#include <string.h>

/* perm [cols]: the columns stably sorted by group, or 0 when the act order
 * is not one a sort undoes */
static int sort_perm(const ci_qweight *h, int32_t *perm) {
    const int64_t K = h->cols, gs = h->group_size, ng = h->ngroups;
    if (!h->g_idx || (h->act_group && h->act_group != K) || ng * gs < K) return 0;
    for (int p = 1; p < h->nparts; p++)
        if (memcmp(h->g_idx, h->g_idx + p * K, (size_t)K * sizeof(int32_t))) return 0;
    int64_t *next = calloc((size_t)ng, sizeof(int64_t));
    if (!next) return 0;
    int ok = 1;
    for (int64_t c = 0; c < K && ok; c++) {
        const int32_t g = h->g_idx[c];
        ok = g >= 0 && g < ng && next[g] < gs;
        if (ok) next[g]++;
    }
    for (int64_t g = 0; g < ng && ok; g++)
        ok = next[g] == (g == ng - 1 ? K - g * gs : gs);
    for (int64_t g = 0; g < ng; g++)
        next[g] = g * gs;
    for (int64_t c = 0; c < K && ok; c++)
        perm[next[h->g_idx[c]]++] = (int32_t)c;
    free(next);
    return ok;
}

/* row r's codes with its columns in perm's order: dst holds one row */
static void permute_row(const ci_qweight *h, int64_t r, const int32_t *perm, uint8_t *dst) {
    const int64_t K = h->cols;
    if (h->format == CI_QW_INT4) {
        const uint8_t *src = h->q + r * (K / 2);
        memset(dst, 0, (size_t)(K / 2));
        for (int64_t c = 0; c < K; c++) {
            const int64_t i = perm[c];
            const unsigned v = (src[i >> 1] >> ((i & 1) * 4)) & 0xF;
            dst[c >> 1] |= (uint8_t)(v << ((c & 1) * 4));
        }
        return;
    }
    const uint8_t *src = h->q + r * K;
    for (int64_t c = 0; c < K; c++)
        dst[c] = src[perm[c]];
}

int ci_qweight_act_sort(const ci_qweight *h, ci_qweight *sorted) {
    if (!h->g_idx || h->rows <= 0 || h->cols <= 0 || h->nparts < 1 ||
        (h->format == CI_QW_INT4 && h->cols % 2))
        return 0;
    const size_t rb = (size_t)(h->format == CI_QW_INT4 ? h->cols / 2 : h->cols);
    int32_t *perm = malloc((size_t)h->cols * sizeof(int32_t));
    uint8_t *q = malloc((size_t)h->rows * rb);
    if (!perm || !q || !sort_perm(h, perm)) {
        free(perm);
        free(q);
        return 0;
    }
    for (int64_t r = 0; r < h->rows; r++)
        permute_row(h, r, perm, q + (size_t)r * rb);
    *sorted = *h;
    sorted->q = q;
    sorted->perm = perm;
    sorted->g_idx = NULL;
    return 1;
}

void ci_qweight_act_sort_free(ci_qweight *sorted) {
    free(sorted->q);
    free(sorted->perm);
    sorted->q = NULL;
    sorted->perm = NULL;
}
