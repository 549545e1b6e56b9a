/* quant_config.c — config.json's quantization_config -> ci_quant_config.
 *
 * quant_method decides the layout: "compressed-tensors" (llm-compressor;
 * format float-quantized: FP8 E4M3 weights with tensor / channel / block
 * scales, dynamic per-token activations; format pack-quantized: INT4
 * W4A16 with group or channel scales, symmetric or with zero points; format
 * int-quantized: INT8 with tensor or channel scales, symmetric, dynamic
 * per-token INT8 activations or none), "fp8" (transformers
 * FineGrainedFP8, weight_block_size; without it AutoFP8 / vLLM's per-tensor
 * layout), "gptq" (AutoGPTQ / GPTQModel, 4 bits, or 8 bits symmetric)
 * and "awq" (AutoAWQ GEMM). Anything else, or a field value these layouts
 * do not cover, is refused with one line naming the field. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "model/quant.h"

#define QC "config.json: quantization_config"

const char *ci_quant_method_name(int method) {
    switch (method) {
    case CI_QUANT_CT_FP8: return "compressed-tensors fp8";
    case CI_QUANT_CT_INT4: return "compressed-tensors int4";
    case CI_QUANT_CT_INT8: return "compressed-tensors int8";
    case CI_QUANT_FP8_BLOCK: return "fp8 (block)";
    case CI_QUANT_GPTQ: return "gptq int4";
    case CI_QUANT_GPTQ_INT8: return "gptq int8";
    case CI_QUANT_FP8_TENSOR: return "fp8 (per-tensor)";
    case CI_QUANT_AWQ: return "awq int4";
    case CI_QUANT_ONLINE_FP8: return "fp8 (online, per-channel)";
    default: return "none";
    }
}

static const char *str_or(const json_t *o, const char *key, const char *def) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

/* Optional integer field; a non-integer is an error naming it. */
static ci_status get_int(const json_t *o, const char *where, const char *key, long long def,
                         long long *out) {
    const json_t *v = json_object_get(o, key);
    *out = def;
    if (!v || json_is_null(v)) return ci_ok();
    if (!json_is_integer(v))
        return ci_errorf(CI_ERR_FORMAT, QC "%s: field '%s' must be an integer", where, key);
    *out = json_integer_value(v);
    return ci_ok();
}

static ci_status get_bool(const json_t *o, const char *where, const char *key, bool def,
                          bool *out) {
    const json_t *v = json_object_get(o, key);
    *out = def;
    if (!v || json_is_null(v)) return ci_ok();
    if (!json_is_boolean(v))
        return ci_errorf(CI_ERR_FORMAT, QC "%s: field '%s' must be true or false", where, key);
    *out = json_is_true(v);
    return ci_ok();
}

static ci_status parse_block(const json_t *v, const char *where, const char *key,
                             ci_quant_config *q) {
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 0)) ||
        !json_is_integer(json_array_get(v, 1)) || json_integer_value(json_array_get(v, 0)) <= 0 ||
        json_integer_value(json_array_get(v, 1)) <= 0)
        return ci_errorf(CI_ERR_FORMAT, QC "%s: field '%s' must be two positive integers", where,
                         key);
    q->block_n = (int)json_integer_value(json_array_get(v, 0));
    q->block_k = (int)json_integer_value(json_array_get(v, 1));
    return ci_ok();
}

/* compressed-tensors 8-bit weights: FP8 (float-quantized: tensor, channel
 * or block scales) or INT8 (int-quantized: tensor or channel scales). */
static ci_status parse_ct_fp8(const json_t *w, const char *where, int int8, ci_quant_config *q) {
    long long bits;
    CI_TRY(get_int(w, where, "num_bits", -1, &bits));
    const char *type = str_or(w, "type", "");
    if (bits != 8 || strcmp(type, int8 ? "int" : "float") != 0)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC "%s: num_bits %lld type '%.20s' is not supported in '%s' (only "
                            "8-bit %s)",
                         where, bits, type, int8 ? "int-quantized" : "float-quantized",
                         int8 ? "int: INT8" : "float: FP8 E4M3");
    const char *st = str_or(w, "strategy", "");
    if (!strcmp(st, "tensor"))
        q->ct_strategy = CI_CT_TENSOR;
    else if (!strcmp(st, "channel"))
        q->ct_strategy = CI_CT_CHANNEL;
    else if (int8)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC "%s: field 'strategy' is '%.20s' (supported for INT8: tensor, channel)",
                         where, st);
    else if (!strcmp(st, "block")) {
        q->ct_strategy = CI_CT_BLOCK;
        CI_TRY(parse_block(json_object_get(w, "block_structure"), where, "block_structure", q));
    } else
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC "%s: field 'strategy' is '%.20s' (supported: tensor, channel, block)",
                         where, st);
    q->method = int8 ? CI_QUANT_CT_INT8 : CI_QUANT_CT_FP8;
    return ci_ok();
}

/* compressed-tensors INT4 weights (pack-quantized, W4A16): group or channel scales,
 * optional act order (actorder "group": weight_g_idx), symmetric or not
 * (sym false: packed weight_zero_point). */
static ci_status parse_ct_int4(const json_t *w, const char *where, bool sym, ci_quant_config *q) {
    long long bits, gs;
    CI_TRY(get_int(w, where, "num_bits", -1, &bits));
    const char *type = str_or(w, "type", "");
    if (bits != 4 || strcmp(type, "int") != 0)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC "%s: num_bits %lld type '%.20s' is not supported in 'pack-quantized' "
                            "(only 4-bit int)",
                         where, bits, type);
    const char *st = str_or(w, "strategy", "");
    CI_TRY(get_int(w, where, "group_size", -1, &gs));
    if (!strcmp(st, "channel"))
        gs = -1;
    else if (strcmp(st, "group") != 0 || gs <= 0 || gs % 8 != 0 || gs > (1 << 20))
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC "%s: field 'strategy' is '%.20s' with group_size %lld (supported: "
                            "channel, group with a positive multiple of 8)",
                         where, st, gs);
    q->group_size = (int)gs;
    const json_t *ao = json_object_get(w, "actorder");
    const char *order = json_is_string(ao) ? json_string_value(ao) : NULL;
    if (ao && !json_is_null(ao) && (!order || (strcmp(order, "group") && strcmp(order, "weight"))))
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC "%s: field 'actorder' must be null, \"group\" or \"weight\"", where);
    q->desc_act = order && !strcmp(order, "group"); /* "weight": reordered at quantization */
    q->sym = sym;
    q->method = CI_QUANT_CT_INT4;
    return ci_ok();
}

/* One config_groups entry of compressed-tensors: weights of the checkpoint's
 * format, activations dynamic FP8 (float-quantized), INT8 (int-quantized)
 * or none. */
static ci_status parse_ct_group(const char *gname, const json_t *g, int int4, int int8,
                                ci_quant_config *q) {
    char where[96];
    snprintf(where, sizeof where, ".config_groups.%.40s.weights", gname);
    const json_t *w = json_object_get(g, "weights");
    if (!json_is_object(w))
        return ci_errorf(CI_ERR_FORMAT, QC "%s: missing or not an object", where);
    bool sym, dyn;
    CI_TRY(get_bool(w, where, "symmetric", true, &sym));
    CI_TRY(get_bool(w, where, "dynamic", false, &dyn));
    if ((!sym && !int4) || dyn)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC "%s: field '%s' is %s; only static weight scales, symmetric for "
                            "FP8 and INT8, are supported",
                         where, dyn ? "dynamic" : "symmetric", dyn ? "true" : "false");
    CI_TRY(int4 ? parse_ct_int4(w, where, sym, q) : parse_ct_fp8(w, where, int8, q));
    const json_t *a = json_object_get(g, "input_activations");
    if (a && !json_is_null(a)) {
        snprintf(where, sizeof where, ".config_groups.%.40s.input_activations", gname);
        long long bits;
        CI_TRY(get_int(a, where, "num_bits", -1, &bits));
        const char *type = str_or(a, "type", "");
        CI_TRY(get_bool(a, where, "dynamic", false, &dyn));
        const char *st = str_or(a, "strategy", "token");
        /* static: one FP8 scale per tensor (P.input_scale) */
        const bool stat = !dyn && !int8 && !strcmp(st, "tensor");
        if (int4 || bits != 8 || strcmp(type, int8 ? "int" : "float") != 0 || (!dyn && !stat))
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             QC "%s: only dynamic 8-bit activations of the weights' kind (float "
                                "with FP8, int with INT8), or static per-tensor FP8 ones, are "
                                "supported (got num_bits %lld type '%.20s' dynamic %s strategy "
                                "'%.20s')",
                             where, bits, type, dyn ? "true" : "false", st);
        q->act_static = stat;
        bool asym_ok = true; /* `symmetric`, true unless the config says otherwise */
        CI_TRY(get_bool(a, where, "symmetric", true, &asym_ok));
        if (!asym_ok)
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             QC "%s: field 'symmetric' is false; only symmetric activations are "
                                "supported",
                             where);
        /* token (and tensor: per token is the finer grain of the same
         * dynamic scheme) or group; vLLM quantizes these per token too */
        if (!strcmp(st, "group") && !int8) {
            long long gs;
            CI_TRY(get_int(a, where, "group_size", -1, &gs));
            if (gs != 128)
                return ci_errorf(CI_ERR_UNSUPPORTED,
                                 QC "%s: field 'group_size' is %lld; only 128-column activation "
                                    "groups are supported",
                                 where, gs);
            q->act_group = 128;
        } else if (!strcmp(st, "token") || !strcmp(st, "tensor")) {
            q->act_group = -1;
        } else {
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             QC "%s: field 'strategy' is '%.20s' (supported: token, tensor%s)",
                             where, st, int8 ? "" : ", group");
        }
    }
    const json_t *o = json_object_get(g, "output_activations");
    if (o && !json_is_null(o))
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC ".config_groups.%.40s: field 'output_activations' is not supported",
                         gname);
    return ci_ok();
}

static ci_status parse_ct(const json_t *qc, ci_quant_config *q) {
    const char *fmt = str_or(qc, "format", "");
    int int4 = !strcmp(fmt, "pack-quantized"), int8 = !strcmp(fmt, "int-quantized");
    if (!int4 && !int8 && strcmp(fmt, "float-quantized") != 0)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC ": field 'format' is '%.40s' (supported: float-quantized for FP8, "
                            "pack-quantized for INT4, int-quantized for INT8)",
                         fmt);
    const json_t *groups = json_object_get(qc, "config_groups");
    if (!json_is_object(groups) || json_object_size(groups) == 0)
        return ci_errorf(CI_ERR_FORMAT, QC ": field 'config_groups' missing or empty");
    const char *k;
    const json_t *g;
    int first = 1;
    json_object_foreach((json_t *)groups, k, g) {
        ci_quant_config one;
        memset(&one, 0, sizeof one);
        CI_TRY(parse_ct_group(k, g, int4, int8, &one));
        if (!first && (one.method != q->method || one.ct_strategy != q->ct_strategy ||
                       one.block_n != q->block_n || one.block_k != q->block_k ||
                       one.group_size != q->group_size || one.desc_act != q->desc_act ||
                       one.act_group != q->act_group || one.act_static != q->act_static))
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             QC ".config_groups: groups with different weight or activation "
                                "schemes are not supported");
        *q = one;
        first = 0;
    }
    /* kv_cache_scheme: static per-tensor FP8 K/V scales, stored per layer
     * (weights.c reads them; --kv-cache-dtype fp8 uses them). Others refused. */
    const json_t *kv = json_object_get(qc, "kv_cache_scheme");
    if (kv && !json_is_null(kv)) {
        long long bits = 0;
        CI_TRY(get_int(kv, ".kv_cache_scheme", "num_bits", 0, &bits));
        const char *type = str_or(kv, "type", "float"), *strat = str_or(kv, "strategy", "tensor");
        const json_t *dyn = json_object_get(kv, "dynamic");
        if (bits != 8 || strcmp(type, "float") != 0 || strcmp(strat, "tensor") != 0 ||
            json_is_true(dyn))
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             QC ": field 'kv_cache_scheme' (num_bits %lld, type %.20s, strategy "
                                "%.20s%s): only static per-tensor 8-bit float scales are supported",
                             bits, type, strat, json_is_true(dyn) ? ", dynamic" : "");
    }
    return ci_ok();
}

static ci_status parse_fp8(const json_t *qc, ci_quant_config *q) {
    const char *act = str_or(qc, "activation_scheme", "dynamic");
    const json_t *bs = json_object_get(qc, "weight_block_size");
    const int block = bs && !json_is_null(bs);
    /* block-wise: dynamic only (transformers' FP8Linear); per tensor
     * (AutoFP8): static too, one input_scale per linear */
    if (strcmp(act, "dynamic") != 0 && (block || strcmp(act, "static") != 0))
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC ": field 'activation_scheme' is '%.20s'; only 'dynamic'%s is supported",
                         act, block ? "" : " or 'static'");
    const char *fmt = str_or(qc, "fmt", "e4m3");
    if (strcmp(fmt, "e4m3") != 0)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC ": field 'fmt' is '%.20s'; only 'e4m3' is supported", fmt);
    if (!block) { /* P.weight E4M3 and one P.weight_scale per tensor */
        q->method = CI_QUANT_FP8_TENSOR;
        q->ct_strategy = CI_CT_TENSOR;
        q->act_group = -1; /* per token, or static per tensor */
        q->act_static = strcmp(act, "static") == 0;
        return ci_ok();
    }
    CI_TRY(parse_block(bs, "", "weight_block_size", q));
    q->method = CI_QUANT_FP8_BLOCK;
    q->act_group = q->block_k; /* transformers' FP8Linear: per token and weight block column */
    return ci_ok();
}

static ci_status parse_group_size(const json_t *qc, const char *key, ci_quant_config *q) {
    long long gs;
    CI_TRY(get_int(qc, "", key, 128, &gs));
    if (gs != -1 && (gs <= 0 || gs % 8 != 0 || gs > (1 << 20)))
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC ": field '%s' is %lld; use -1 or a positive multiple of 8", key, gs);
    q->group_size = (int)gs;
    return ci_ok();
}

static ci_status parse_gptq(const json_t *qc, ci_quant_config *q) {
    long long bits;
    CI_TRY(get_int(qc, "", "bits", -1, &bits));
    if (bits != 4 && bits != 8)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC ": field 'bits' is %lld; only 4 and 8 are supported", bits);
    CI_TRY(parse_group_size(qc, "group_size", q));
    CI_TRY(get_bool(qc, "", "sym", true, &q->sym));
    /* 8 bits: zero point 128 everywhere, so the codes are INT8 (q - 128) */
    if (bits == 8 && !q->sym)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC ": field 'sym' is false; 8-bit GPTQ is supported symmetric only");
    CI_TRY(get_bool(qc, "", "desc_act", false, &q->desc_act));
    const char *cf = str_or(qc, "checkpoint_format", str_or(qc, "format", "gptq"));
    if (!strcmp(cf, "gptq_v2"))
        q->gptq_v2 = true;
    else if (strcmp(cf, "gptq") != 0)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC ": field 'checkpoint_format' is '%.20s' (supported: gptq, gptq_v2)",
                         cf);
    CI_TRY(get_bool(qc, "", "lm_head", false, &q->lm_head));
    q->method = bits == 8 ? CI_QUANT_GPTQ_INT8 : CI_QUANT_GPTQ;
    return ci_ok();
}

static ci_status parse_awq(const json_t *qc, ci_quant_config *q) {
    long long bits;
    CI_TRY(get_int(qc, "", json_object_get(qc, "w_bit") ? "w_bit" : "bits", -1, &bits));
    if (bits != 4)
        return ci_errorf(CI_ERR_UNSUPPORTED, QC ": field 'bits' is %lld; only 4 is supported",
                         bits);
    CI_TRY(parse_group_size(qc, json_object_get(qc, "q_group_size") ? "q_group_size" : "group_size",
                            q));
    if (q->group_size == -1)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC ": field 'group_size' is -1; AWQ needs a positive group size");
    bool zp;
    CI_TRY(get_bool(qc, "", "zero_point", true, &zp));
    if (!zp)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC ": field 'zero_point' is false; only AWQ with zero points is "
                            "supported");
    const char *ver = str_or(qc, "version", "gemm");
    if (strcasecmp(ver, "gemm") != 0)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         QC ": field 'version' is '%.20s'; only the 'gemm' layout is supported",
                         ver);
    q->method = CI_QUANT_AWQ;
    return ci_ok();
}

ci_status ci_quant_config_parse(const json_t *qc, ci_quant_config *out) {
    memset(out, 0, sizeof *out);
    if (!qc || json_is_null(qc)) return ci_ok();
    if (!json_is_object(qc)) return ci_errorf(CI_ERR_FORMAT, QC ": must be a JSON object");
    const json_t *m = json_object_get(qc, "quant_method");
    if (!json_is_string(m))
        return ci_errorf(CI_ERR_FORMAT, QC ": field 'quant_method' missing or not a string");
    const char *method = json_string_value(m);
    if (!strcmp(method, "compressed-tensors")) return parse_ct(qc, out);
    if (!strcmp(method, "fp8")) return parse_fp8(qc, out);
    if (!strcmp(method, "gptq")) return parse_gptq(qc, out);
    if (!strcmp(method, "awq")) return parse_awq(qc, out);
    return ci_errorf(CI_ERR_UNSUPPORTED,
                     QC ": field 'quant_method' is '%.40s' (supported: compressed-tensors, fp8, "
                        "gptq, awq)",
                     method);
}
