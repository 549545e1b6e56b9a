/* quant_shard.c — a tensor-parallel share of a canonical quantized weight
 * (util/qweight.h), cut on the host after the checkpoint's layout was
 * repacked (quant_load.c) and before the backend takes it: rows of each
 * fused part (column-parallel q|k|v and gate|up; scales and zero points
 * belong to rows and follow them) or a range of input columns
 * (row-parallel o and down). Columns keep their scale groups as they are
 * when the range starts on a group and ends on one (or at the last column);
 * otherwise (a group split between ranks, or act order) the share gets a
 * g_idx naming each column's group, renumbered from the first group it
 * uses, so every share dequantizes to exactly the full weight's values. */
#include <stdlib.h>
#include <string.h>

#include "model/quant.h"

void ci_qweight_host_free(ci_qweight *w) {
    free(w->q);
    free(w->scales);
    free(w->zeros);
    free(w->g_idx);
    memset(w, 0, sizeof *w);
}

/* group of column c of part p */
static int64_t group_of(const ci_qweight *w, int p, int64_t c) {
    return w->g_idx ? w->g_idx[(int64_t)p * w->cols + c] : c / w->group_size;
}

ci_status ci_qweight_shard(const ci_qweight *w, const ci_qshard *sh, ci_qweight *o) {
    memset(o, 0, sizeof *o);
    const int int4 = w->format == CI_QW_INT4;
    const int64_t c0 = sh->nc > 0 ? sh->c0 : 0, nc = sh->nc > 0 ? sh->nc : w->cols;
    if (c0 < 0 || c0 + nc > w->cols || (int4 && ((c0 | nc) & 1)))
        return ci_errorf(CI_ERR_INVALID,
                         "tensor parallelism: columns [%lld, %lld) of a [%lld][%lld] quantized "
                         "weight%s",
                         (long long)c0, (long long)(c0 + nc), (long long)w->rows,
                         (long long)w->cols, int4 ? " (INT4 shares need even bounds)" : "");
    int64_t r0[CI_QW_MAX_PARTS], nr[CI_QW_MAX_PARTS];
    o->format = w->format;
    o->cols = nc;
    o->nparts = w->nparts;
    for (int p = 0; p < w->nparts; p++) {
        const int64_t size = w->part_row0[p + 1] - w->part_row0[p];
        r0[p] = sh->nr[0] > 0 ? sh->r0[p] : 0;
        nr[p] = sh->nr[0] > 0 ? sh->nr[p] : size;
        if (r0[p] < 0 || nr[p] <= 0 || r0[p] + nr[p] > size)
            return ci_errorf(CI_ERR_INVALID,
                             "tensor parallelism: rows [%lld, %lld) of part %d (%lld rows) of a "
                             "quantized weight",
                             (long long)r0[p], (long long)(r0[p] + nr[p]), p, (long long)size);
        o->part_row0[p] = o->rows;
        o->rows += nr[p];
    }
    o->part_row0[w->nparts] = o->rows;

    /* the share's scale groups: [gk0, gk0 + ngroups) of the full weight's */
    const int64_t gs = w->group_size;
    int64_t gk0 = 0;
    int want_g = w->g_idx != NULL; /* the share has a g_idx */
    o->group_size = gs;
    if (c0 == 0 && nc == w->cols) {
        o->ngroups = w->ngroups;
        if (w->g_idx) {
            o->g_idx = malloc((size_t)(w->nparts * nc) * sizeof(int32_t));
            if (o->g_idx) memcpy(o->g_idx, w->g_idx, (size_t)(w->nparts * nc) * sizeof(int32_t));
        }
    } else if (!w->g_idx && w->ngroups == 1) {
        o->group_size = nc;
        o->ngroups = 1;
    } else if (!w->g_idx && c0 % gs == 0 && (nc % gs == 0 || c0 + nc == w->cols)) {
        gk0 = c0 / gs;
        o->ngroups = (nc + gs - 1) / gs;
    } else {
        int64_t gmin = INT64_MAX, gmax = -1;
        for (int p = 0; p < w->nparts; p++)
            for (int64_t c = c0; c < c0 + nc; c++) {
                const int64_t g = group_of(w, p, c);
                gmin = g < gmin ? g : gmin;
                gmax = g > gmax ? g : gmax;
            }
        gk0 = gmin;
        o->ngroups = gmax - gmin + 1;
        want_g = 1;
        o->g_idx = malloc((size_t)(w->nparts * nc) * sizeof(int32_t));
        if (o->g_idx)
            for (int p = 0; p < w->nparts; p++)
                for (int64_t c = 0; c < nc; c++)
                    o->g_idx[(int64_t)p * nc + c] = (int32_t)(group_of(w, p, c0 + c) - gmin);
    }
    const int64_t rb = int4 ? nc / 2 : nc, srb = int4 ? w->cols / 2 : w->cols,
                  sc0 = int4 ? c0 / 2 : c0;
    o->q = malloc((size_t)(o->rows * rb));
    o->scales = malloc((size_t)(o->rows * o->ngroups) * sizeof(float));
    if (int4) o->zeros = malloc((size_t)(o->rows * o->ngroups));
    if (!o->q || !o->scales || (int4 && !o->zeros) || (want_g && !o->g_idx)) {
        ci_qweight_host_free(o);
        return ci_errorf(CI_ERR_NOMEM,
                         "tensor parallelism: quantized share [%lld][%lld]: out of "
                         "memory",
                         (long long)o->rows, (long long)nc);
    }
    int64_t orow = 0;
    for (int p = 0; p < w->nparts; p++)
        for (int64_t i = 0; i < nr[p]; i++, orow++) {
            const int64_t r = w->part_row0[p] + r0[p] + i;
            memcpy(o->q + orow * rb, w->q + r * srb + sc0, (size_t)rb);
            memcpy(o->scales + orow * o->ngroups, w->scales + r * w->ngroups + gk0,
                   (size_t)o->ngroups * sizeof(float));
            if (int4)
                memcpy(o->zeros + orow * o->ngroups, w->zeros + r * w->ngroups + gk0,
                       (size_t)o->ngroups);
        }
    return ci_ok();
}
