/* quant_load.c — one linear's checkpoint tensors, in its published layout,
 * -> the canonical ci_qweight (util/qweight.h) -> the backend.
 *
 * Layouts (per module prefix P, weight [out][in]):
 *  compressed-tensors FP8: P.weight F8_E4M3 [out][in]; P.weight_scale F32/BF16/F16:
 *      [1] or [] (tensor), [out][1] (channel), [ceil(out/bn)][ceil(in/bk)] (block)
 *  compressed-tensors INT8 (int-quantized): P.weight I8 [out][in]; P.weight_scale as FP8's
 *      tensor / channel; w = q * s
 *  FineGrainedFP8: P.weight F8_E4M3; P.weight_scale_inv [ceil(out/bn)][ceil(in/bk)]
 *      (multiplied, despite the name: w = q * weight_scale_inv)
 *  fp8 per tensor (AutoFP8): P.weight F8_E4M3; P.weight_scale F32 [] or [1]; a static
 *      scheme's P.input_scale F32 [] or [1] (compressed-tensors static tensor activations too)
 *  GPTQ: P.qweight I32 [in/8][out] (input i at bits 4*(i%8) of row i/8); P.qzeros I32
 *      [G][out/8] (output o at bits 4*(o%8)); P.scales F16 [G][out]; P.g_idx I32 [in]
 *      (group of each input column; act order permutes it). v1 stores zero-1.
 *  GPTQ 8-bit: P.qweight I32 [in/4][out] (input i at bits 8*(i%4) of row i/4); P.qzeros I32
 *      [G][out/4] (output o at bits 8*(o%4)); scales, g_idx as above; symmetric: every zero
 *      point 128, so w = (q - 128) * s is INT8 (q - 128) with group scales.
 *  compressed-tensors W4A16 (pack-quantized): P.weight_packed I32 [out][in/8] (input 8c+j at
 *      bits 4j, signed value + 8); P.weight_scale [out][G]; P.weight_shape I64 [2]; optional
 *      P.weight_g_idx I32 [in]; symmetric: w = (q - 8) * s; asymmetric:
 *      P.weight_zero_point I32 [out/8][G] (output 8r+j at bits 4j, stored + 8
 *      like the weights), w = (q - zp) * s with both as stored.
 *  AWQ GEMM: P.qweight I32 [in][out/8], nibble j of word c = output 8c + [0,2,4,6,1,3,5,7][j];
 *      P.qzeros I32 [G][out/8] the same way; P.scales F16 [G][out]; w = (q - z) * s.
 * Scales and zero points belong to output rows, so fused q|k|v and gate|up
 * concatenate them along the output dim; act-order g_idx stay per part. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/quant.h"
#include "util/qweight.h"
#include "util/threadpool.h"

enum { DT_DENSE = 1 << CI_F32 | 1 << CI_F16 | 1 << CI_BF16 };

/* P.suffix with dtype in `dtypes` (a mask) and shape [d0] (d1 < 0) or [d0][d1]. */
static ci_status need(const ci_checkpoint *ck, const char *prefix, const char *suffix,
                      unsigned dtypes, int64_t d0, int64_t d1, const ci_st_tensor **out) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    const ci_st_tensor *t = ci_checkpoint_find(ck, name);
    if (!t)
        return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%s' is missing",
                         ci_checkpoint_file_name(ck, -1), name);
    const char *file = ci_checkpoint_file_name(ck, t->file_index);
    if (!(dtypes & (1u << t->dtype)))
        return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%s' has dtype %s, unexpected here", file, name,
                         ci_dtype_name(t->dtype));
    int nd = d1 < 0 ? 1 : 2;
    if (t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
        if (nd == 1)
            return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%s' must have shape [%lld]", file, name,
                             (long long)d0);
        return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%s' must have shape [%lld, %lld]", file, name,
                         (long long)d0, (long long)d1);
    }
    *out = t;
    return ci_ok();
}

static int64_t num_groups(const ci_quant_config *q, int64_t in) {
    return q->group_size == -1 ? 1 : in / q->group_size;
}

/* FP8 or INT8 weights (one byte per weight) and their scales */
/* P.suffix holding one F32/F16/BF16 value: shape [], [1] or [1][1] */
static ci_status need_scalar(const ci_checkpoint *ck, const char *prefix, const char *suffix,
                             const ci_st_tensor **out) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    const ci_st_tensor *t = ci_checkpoint_find(ck, name);
    if (t && (t->ndim == 0 || (t->ndim == 1 && t->shape[0] == 1) ||
              (t->ndim == 2 && t->shape[0] == 1 && t->shape[1] == 1))) {
        if (!(DT_DENSE & (1u << t->dtype)))
            return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%s' has dtype %s, unexpected here",
                             ci_checkpoint_file_name(ck, t->file_index), name,
                             ci_dtype_name(t->dtype));
        *out = t;
        return ci_ok();
    }
    return need(ck, prefix, suffix, DT_DENSE, 1, -1, out); /* the message */
}

static ci_status find_fp8(const ci_checkpoint *ck, const ci_quant_config *q, const char *prefix,
                          ci_qlinear_src *s) {
    const unsigned wdt = 1u << (q->method == CI_QUANT_CT_INT8 ? CI_I8 : CI_F8_E4M3);
    CI_TRY(need(ck, prefix, "weight", wdt, s->out, s->in, &s->weight));
    if (q->act_static) CI_TRY(need_scalar(ck, prefix, "input_scale", &s->input_scale));
    const unsigned sdt = DT_DENSE;
    int block = q->method == CI_QUANT_FP8_BLOCK || q->ct_strategy == CI_CT_BLOCK;
    const char *sname = q->method == CI_QUANT_FP8_BLOCK ? "weight_scale_inv" : "weight_scale";
    if (block)
        return need(ck, prefix, sname, sdt, (s->out + q->block_n - 1) / q->block_n,
                    (s->in + q->block_k - 1) / q->block_k, &s->scale);
    if (q->ct_strategy == CI_CT_CHANNEL) {
        char name[256];
        snprintf(name, sizeof name, "%s.%s", prefix, sname);
        const ci_st_tensor *t = ci_checkpoint_find(ck, name);
        if (t && t->ndim == 1) return need(ck, prefix, sname, sdt, s->out, -1, &s->scale);
        return need(ck, prefix, sname, sdt, s->out, 1, &s->scale);
    }
    return need_scalar(ck, prefix, sname, &s->scale);
}

/* 32-bit packing needs whole words along both dims (8 codes of 4 bits, or
 * 4 of 8) and whole groups. */
static ci_status check_packed_shape(const ci_quant_config *q, const char *prefix,
                                    const ci_qlinear_src *s, int per) {
    int64_t gs = q->group_size == -1 ? s->in : q->group_size;
    if (s->in % per || s->out % per || s->in % gs)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "%s: [%lld][%lld] does not fit %d-bit packing by %d and group size %lld",
                         prefix, (long long)s->out, (long long)s->in, 32 / per, per, (long long)gs);
    return ci_ok();
}

/* GPTQ (4 or 8 bits) and AWQ */
static ci_status find_int4(const ci_checkpoint *ck, const ci_quant_config *q, const char *prefix,
                           ci_qlinear_src *s) {
    const int gptq = q->method == CI_QUANT_GPTQ || q->method == CI_QUANT_GPTQ_INT8;
    const int per = q->method == CI_QUANT_GPTQ_INT8 ? 4 : 8; /* codes per 32-bit word */
    CI_TRY(check_packed_shape(q, prefix, s, per));
    int64_t g = num_groups(q, s->in);
    if (gptq)
        CI_TRY(need(ck, prefix, "qweight", 1u << CI_I32, s->in / per, s->out, &s->qweight));
    else
        CI_TRY(need(ck, prefix, "qweight", 1u << CI_I32, s->in, s->out / 8, &s->qweight));
    CI_TRY(need(ck, prefix, "qzeros", 1u << CI_I32, g, s->out / per, &s->qzeros));
    CI_TRY(need(ck, prefix, "scales", DT_DENSE, g, s->out, &s->scales));
    if (gptq) {
        char name[256];
        snprintf(name, sizeof name, "%s.g_idx", prefix);
        /* GPTQModel omits g_idx without act order: then it is i / group_size */
        if (q->desc_act || ci_checkpoint_find(ck, name))
            CI_TRY(need(ck, prefix, "g_idx", 1u << CI_I32, s->in, -1, &s->g_idx));
    }
    return ci_ok();
}

/* compressed-tensors pack-quantized: P.weight_packed I32 [out][in/8] (input
 * 8c+j at bits 4j, stored + 8), P.weight_scale [out][G], P.weight_shape I64
 * [2] = [out, in] (checked when present), P.weight_g_idx I32 [in] (act order). */
static ci_status find_ct_int4(const ci_checkpoint *ck, const ci_quant_config *q, const char *prefix,
                              ci_qlinear_src *s) {
    CI_TRY(check_packed_shape(q, prefix, s, 8));
    CI_TRY(need(ck, prefix, "weight_packed", 1u << CI_I32, s->out, s->in / 8, &s->qweight));
    CI_TRY(need(ck, prefix, "weight_scale", DT_DENSE, s->out, num_groups(q, s->in), &s->scales));
    char name[256];
    snprintf(name, sizeof name, "%s.weight_shape", prefix);
    const ci_st_tensor *shape = ci_checkpoint_find(ck, name);
    if (shape) {
        int64_t d[2] = {0, 0};
        if (shape->dtype == CI_I64 && shape->ndim == 1 && shape->shape[0] == 2)
            memcpy(d, shape->data, sizeof d);
        if (d[0] != s->out || d[1] != s->in)
            return ci_errorf(CI_ERR_FORMAT, "%s: tensor '%s' must be I64 [%lld, %lld]",
                             ci_checkpoint_file_name(ck, shape->file_index), name,
                             (long long)s->out, (long long)s->in);
    }
    snprintf(name, sizeof name, "%s.weight_g_idx", prefix);
    if (q->desc_act || ci_checkpoint_find(ck, name))
        CI_TRY(need(ck, prefix, "weight_g_idx", 1u << CI_I32, s->in, -1, &s->g_idx));
    if (!q->sym) { /* zero points packed along the output dim (pack_to_int32, dim 0) */
        if (s->out % 8)
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             "%s: %lld output rows: packed zero points need a multiple of 8",
                             prefix, (long long)s->out);
        CI_TRY(need(ck, prefix, "weight_zero_point", 1u << CI_I32, s->out / 8, num_groups(q, s->in),
                    &s->qzeros));
    }
    return ci_ok();
}

ci_status ci_qlinear_find(const ci_checkpoint *ck, const ci_quant_config *q, const char *prefix,
                          int64_t out, int64_t in, ci_qlinear_src *s) {
    memset(s, 0, sizeof *s);
    s->out = out;
    s->in = in;
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const ci_st_tensor *w = ci_checkpoint_find(ck, name);
    int fp8 = q->method == CI_QUANT_CT_FP8 || q->method == CI_QUANT_FP8_BLOCK ||
              q->method == CI_QUANT_FP8_TENSOR ||
              q->method == CI_QUANT_CT_INT8; /* a byte per weight and a scale */
    if ((w && w->dtype != CI_F8_E4M3 && w->dtype != CI_I8) || q->method == CI_QUANT_NONE ||
        q->method == CI_QUANT_ONLINE_FP8 || (!w && fp8)) {
        s->dense = true;
        return need(ck, prefix, "weight", DT_DENSE, out, in, &s->weight);
    }
    if (fp8) return find_fp8(ck, q, prefix, s);
    if (q->method == CI_QUANT_CT_INT4) return find_ct_int4(ck, q, prefix, s);
    return find_int4(ck, q, prefix, s);
}

size_t ci_qlinear_bytes(const ci_qlinear_src *s) {
    const ci_st_tensor *all[] = {s->weight, s->scale, s->qweight, s->qzeros, s->scales, s->g_idx};
    size_t n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]) n += all[i]->nbytes;
    return n;
}

static uint32_t u32_at(const ci_st_tensor *t, size_t i) {
    uint32_t v;
    memcpy(&v, (const char *)t->data + 4 * i, 4);
    return v;
}

/* ---- filling the canonical layout, one part at a time ---------------------- */

static void put4(ci_qweight *w, int64_t r, int64_t c, unsigned v) {
    uint8_t *b = &w->q[r * (w->cols / 2) + c / 2];
    *b = (uint8_t)(c & 1 ? (*b & 0x0F) | (v << 4) : (*b & 0xF0) | v);
}

static void fill_gptq(ci_qweight *w, const ci_quant_config *q, const ci_qlinear_src *s,
                      int64_t r0) {
    for (int64_t i8 = 0; i8 < s->in / 8; i8++)
        for (int64_t o = 0; o < s->out; o++) {
            uint32_t word = u32_at(s->qweight, (size_t)(i8 * s->out + o));
            for (int j = 0; j < 8; j++)
                put4(w, r0 + o, i8 * 8 + j, (word >> (4 * j)) & 0xF);
        }
    for (int64_t g = 0; g < w->ngroups; g++)
        for (int64_t o = 0; o < s->out; o++) {
            unsigned z =
                (u32_at(s->qzeros, (size_t)(g * (s->out / 8) + o / 8)) >> (4 * (o % 8))) & 0xF;
            w->zeros[(r0 + o) * w->ngroups + g] = (uint8_t)(q->gptq_v2 ? z : z + 1);
            w->scales[(r0 + o) * w->ngroups + g] =
                ci_st_elem_f32(s->scales, (size_t)(g * s->out + o));
        }
}

/* 8-bit GPTQ: byte j of qweight word [i/4][o] is input 4 (i/4) + j; each
 * zero point must be 128 (v1 stores 127), as the config's sym promised. */
static ci_status fill_gptq8(ci_qweight *w, const ci_quant_config *q, const ci_qlinear_src *s,
                            int64_t r0) {
    for (int64_t g = 0; g < w->ngroups; g++)
        for (int64_t o = 0; o < s->out; o++) {
            unsigned z =
                (u32_at(s->qzeros, (size_t)(g * (s->out / 4) + o / 4)) >> (8 * (o % 4))) & 0xFF;
            if (!q->gptq_v2) z += 1;
            if (z != 128)
                return ci_errorf(CI_ERR_UNSUPPORTED,
                                 "tensor '%s': zero point %u (group %lld, output %lld); 8-bit "
                                 "GPTQ is supported symmetric only (zero point 128)",
                                 s->qzeros->name, z, (long long)g, (long long)o);
            w->scales[(r0 + o) * w->ngroups + g] =
                ci_st_elem_f32(s->scales, (size_t)(g * s->out + o));
        }
    for (int64_t i4 = 0; i4 < s->in / 4; i4++)
        for (int64_t o = 0; o < s->out; o++) {
            uint32_t word = u32_at(s->qweight, (size_t)(i4 * s->out + o));
            int8_t *row = (int8_t *)w->q + (r0 + o) * w->cols + i4 * 4;
            for (int j = 0; j < 4; j++)
                row[j] = (int8_t)((int)((word >> (8 * j)) & 0xFF) - 128);
        }
    return ci_ok();
}

/* compressed-tensors: the zero point is the +8 offset (symmetric) or the
 * stored nibble of weight_zero_point (both carry the same + 8). */
static void fill_ct_int4(ci_qweight *w, const ci_qlinear_src *s, int64_t r0) {
    int64_t wc = s->in / 8;
    for (int64_t o = 0; o < s->out; o++) {
        for (int64_t c = 0; c < wc; c++) {
            uint32_t word = u32_at(s->qweight, (size_t)(o * wc + c));
            for (int j = 0; j < 8; j++)
                put4(w, r0 + o, c * 8 + j, (word >> (4 * j)) & 0xF);
        }
        for (int64_t g = 0; g < w->ngroups; g++) {
            w->zeros[(r0 + o) * w->ngroups + g] =
                s->qzeros ? (uint8_t)((u32_at(s->qzeros, (size_t)((o / 8) * w->ngroups + g)) >>
                                       (4 * (o % 8))) &
                                      0xF)
                          : 8;
            w->scales[(r0 + o) * w->ngroups + g] =
                ci_st_elem_f32(s->scales, (size_t)(o * w->ngroups + g));
        }
    }
}

static const int k_awq_order[8] = {0, 2, 4, 6, 1, 3, 5, 7};

static void fill_awq(ci_qweight *w, const ci_qlinear_src *s, int64_t r0) {
    int64_t oc = s->out / 8;
    for (int64_t i = 0; i < s->in; i++)
        for (int64_t c = 0; c < oc; c++) {
            uint32_t word = u32_at(s->qweight, (size_t)(i * oc + c));
            for (int j = 0; j < 8; j++)
                put4(w, r0 + c * 8 + k_awq_order[j], i, (word >> (4 * j)) & 0xF);
        }
    for (int64_t g = 0; g < w->ngroups; g++)
        for (int64_t c = 0; c < oc; c++) {
            uint32_t word = u32_at(s->qzeros, (size_t)(g * oc + c));
            for (int j = 0; j < 8; j++) {
                int64_t o = c * 8 + k_awq_order[j];
                w->zeros[(r0 + o) * w->ngroups + g] = (uint8_t)((word >> (4 * j)) & 0xF);
            }
        }
    for (int64_t g = 0; g < w->ngroups; g++)
        for (int64_t o = 0; o < s->out; o++)
            w->scales[(r0 + o) * w->ngroups + g] =
                ci_st_elem_f32(s->scales, (size_t)(g * s->out + o));
}

/* FP8 / INT8 checkpoint weight: bytes as stored, scales expanded to [row][group]. */
static void fill_fp8(ci_qweight *w, const ci_quant_config *q, const ci_qlinear_src *s, int64_t r0) {
    memcpy(w->q + r0 * w->cols, s->weight->data, (size_t)(s->out * s->in));
    int block = q->method == CI_QUANT_FP8_BLOCK || q->ct_strategy == CI_CT_BLOCK;
    for (int64_t o = 0; o < s->out; o++)
        for (int64_t g = 0; g < w->ngroups; g++) {
            size_t i = block ? (size_t)((o / q->block_n) * s->scale->shape[1] + g)
                       : q->ct_strategy == CI_CT_CHANNEL ? (size_t)o
                                                         : 0;
            w->scales[(r0 + o) * w->ngroups + g] = ci_st_elem_f32(s->scale, i);
        }
}

/* --quantization fp8: per output channel, scale = amax / 448. Rows are
 * independent: a large weight is cut over a thread pool (an 8B model's
 * 7e9 weights took about a minute on one core). */
typedef struct {
    ci_qweight *w;
    const ci_qlinear_src *s;
    int64_t r0;
} online_fp8_job;

static void online_fp8_rows(void *ctx, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const online_fp8_job *j = ctx;
    ci_qweight *w = j->w;
    const ci_qlinear_src *s = j->s;
    const int64_t r0 = j->r0;
    for (int64_t o = begin; o < end; o++) {
        float amax = 0;
        for (int64_t i = 0; i < s->in; i++) {
            float v = fabsf(ci_st_elem_f32(s->weight, (size_t)(o * s->in + i)));
            if (v > amax) amax = v;
        }
        float sc = amax > 0 ? amax / 448.0f : 1.0f;
        uint8_t *dst = w->q + (r0 + o) * w->cols;
        for (int64_t i = 0; i < s->in; i++)
            dst[i] = ci_f32_to_fp8_e4m3(ci_st_elem_f32(s->weight, (size_t)(o * s->in + i)) / sc);
        w->scales[(r0 + o) * w->ngroups] = sc;
    }
}

static void fill_online_fp8(ci_qweight *w, const ci_qlinear_src *s, int64_t r0) {
    online_fp8_job j = {w, s, r0};
    ci_threadpool *tp = NULL;
    if (s->out * s->in >= ((int64_t)1 << 22) && s->out >= 64 &&
        ci_threadpool_create(0, &tp).code == CI_OK) {
        ci_threadpool_run(tp, s->out, 16, online_fp8_rows, &j);
        ci_threadpool_destroy(tp);
    } else {
        online_fp8_rows(&j, 0, s->out, 0);
    }
}

/* Copies part p's g_idx (or i / group_size) and checks every group index. */
static ci_status fill_gidx(ci_qweight *w, const ci_qlinear_src *s, int p) {
    int32_t *dst = w->g_idx + (int64_t)p * w->cols;
    for (int64_t i = 0; i < w->cols; i++) {
        int32_t g = s->g_idx ? (int32_t)u32_at(s->g_idx, (size_t)i) : (int32_t)(i / w->group_size);
        if (g < 0 || g >= w->ngroups)
            return ci_errorf(CI_ERR_FORMAT, "tensor '%s': g_idx[%lld] = %d outside [0, %lld)",
                             s->g_idx->name, (long long)i, g, (long long)w->ngroups);
        dst[i] = g;
    }
    return ci_ok();
}

/* g_idx equal to i / group_size for every part needs no table. */
static int gidx_trivial(const ci_qlinear_src *const *parts, int n, int64_t gs) {
    for (int p = 0; p < n; p++) {
        if (!parts[p]->g_idx) continue;
        for (int64_t i = 0; i < parts[p]->in; i++)
            if ((int64_t)u32_at(parts[p]->g_idx, (size_t)i) != i / gs) return 0;
    }
    return 1;
}

ci_status ci_qlinear_upload(ci_backend *be, const ci_quant_config *q,
                            const ci_qlinear_src *const *parts, int n, ci_tensor *out) {
    return ci_qlinear_upload_shard(be, q, parts, n, NULL, out);
}

ci_status ci_qlinear_upload_shard(ci_backend *be, const ci_quant_config *q,
                                  const ci_qlinear_src *const *parts, int n, const ci_qshard *sh,
                                  ci_tensor *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || n > CI_QW_MAX_PARTS)
        return ci_errorf(CI_ERR_INVALID, "ci_qlinear_upload: %d parts", n);
    for (int p = 1; p < n; p++)
        if (parts[p]->dense != parts[0]->dense) {
            const ci_qlinear_src *d = parts[p]->dense ? parts[p] : parts[0];
            const ci_qlinear_src *k = parts[p]->dense ? parts[0] : parts[p];
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             "tensor '%s' is unquantized but '%s' (fused with it) is quantized; "
                             "fused q|k|v and gate|up must be quantized alike",
                             d->weight->name, (k->qweight ? k->qweight : k->weight)->name);
        }
    if (parts[0]->dense && q->method != CI_QUANT_ONLINE_FP8)
        return ci_errorf(CI_ERR_INVALID, "ci_qlinear_upload: '%s' is not quantized",
                         parts[0]->weight->name);
    if (!be->ops->qweight_create || !be->ops->qweight_free)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "backend '%s' does not run quantized weights (%s) yet; use --device cpu",
                         be->name, ci_quant_method_name(q->method));
    ci_qweight w = {0};
    int int4 =
        q->method == CI_QUANT_GPTQ || q->method == CI_QUANT_AWQ || q->method == CI_QUANT_CT_INT4;
    int gptq8 = q->method == CI_QUANT_GPTQ_INT8;
    w.format = int4 ? CI_QW_INT4 : q->method == CI_QUANT_CT_INT8 || gptq8 ? CI_QW_INT8 : CI_QW_FP8;
    w.cols = parts[0]->in;
    w.nparts = n;
    for (int p = 0; p < n; p++) {
        w.part_row0[p] = w.rows;
        w.rows += parts[p]->out;
    }
    w.part_row0[n] = w.rows;
    int block = q->method == CI_QUANT_FP8_BLOCK ||
                (q->method == CI_QUANT_CT_FP8 && q->ct_strategy == CI_CT_BLOCK);
    if (int4 || gptq8)
        w.group_size = q->group_size == -1 ? w.cols : q->group_size;
    else
        w.group_size = block ? q->block_k : w.cols;
    w.ngroups = (w.cols + w.group_size - 1) / w.group_size;
    size_t qbytes = (size_t)(w.rows * (int4 ? w.cols / 2 : w.cols));
    w.q = calloc(qbytes, 1);
    w.scales = malloc((size_t)(w.rows * w.ngroups) * sizeof(float));
    if (int4) w.zeros = malloc((size_t)(w.rows * w.ngroups));
    int need_gidx = (q->method == CI_QUANT_GPTQ || gptq8 || q->method == CI_QUANT_CT_INT4) &&
                    !gidx_trivial(parts, n, w.group_size);
    if (need_gidx) w.g_idx = malloc((size_t)(n * w.cols) * sizeof(int32_t));
    ci_status s = ci_ok();
    if (!w.q || !w.scales || (int4 && !w.zeros) || (need_gidx && !w.g_idx)) {
        s = ci_errorf(CI_ERR_NOMEM, "quantized weight [%lld][%lld]: out of memory",
                      (long long)w.rows, (long long)w.cols);
        goto done;
    }
    for (int p = 0; p < n && !s.code; p++) {
        const ci_qlinear_src *src = parts[p];
        int64_t r0 = w.part_row0[p];
        if (q->method == CI_QUANT_GPTQ)
            fill_gptq(&w, q, src, r0);
        else if (gptq8)
            s = fill_gptq8(&w, q, src, r0);
        else if (q->method == CI_QUANT_AWQ)
            fill_awq(&w, src, r0);
        else if (q->method == CI_QUANT_CT_INT4)
            fill_ct_int4(&w, src, r0);
        else if (q->method == CI_QUANT_ONLINE_FP8)
            fill_online_fp8(&w, src, r0);
        else
            fill_fp8(&w, q, src, r0);
        if (need_gidx && !s.code) s = fill_gidx(&w, src, p);
    }
    if (!s.code && sh) { /* this rank's share, cut from the repacked whole */
        ci_qweight part;
        s = ci_qweight_shard(&w, sh, &part);
        if (s.code) goto done;
        ci_qweight_host_free(&w);
        w = part;
    }
    /* W8A8 where an FP8 / INT8 tensor-core GEMM takes the shapes; else W8A16 */
    if (!int4 && q->act_group) {
        int64_t g = q->act_group < 0 ? w.cols : q->act_group;
        if (ci_qweight_act_ok(&w, g, block ? q->block_n : 0)) w.act_group = g;
    }
    /* static activation scales: the parts' largest (vLLM's rule for fused
     * q|k|v and gate|up), each a positive finite value */
    for (int p = 0; p < n && !s.code && w.act_group && q->act_static; p++) {
        const float v = ci_st_elem_f32(parts[p]->input_scale, 0);
        if (!(v > 0.0f) || !isfinite(v))
            s = ci_errorf(CI_ERR_FORMAT,
                          "tensor '%s' = %g: a static activation scale must be "
                          "positive and finite",
                          parts[p]->input_scale->name, (double)v);
        else if (v > w.act_scale)
            w.act_scale = v;
    }
    if (!s.code) s = be->ops->qweight_create(be, &w, out);
done:
    ci_qweight_host_free(&w);
    return s;
}
