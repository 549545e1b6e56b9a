/* config.c — config.json -> ci_model_config (jansson).
 *
 * Follows transformers' config classes: the family's table entry
 * (src/model/arch/) gives the defaults that differ between LlamaConfig,
 * MistralConfig, Qwen2Config and Qwen3Config; RoPE parameters are read from
 * `rope_parameters` (transformers >= 5) or `rope_scaling` (older), with
 * `rope_theta` at the top level as a fallback. Every error names the file and
 * the field. */
#include "model/config.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_FILE "config.json"

/* ---- field helpers ------------------------------------------------------ */

/* An integral JSON number (1 or 1.0) within [minv, INT_MAX]. */
static int json_as_int(const json_t *v, long long *out) {
    if (json_is_integer(v)) {
        *out = (long long)json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (isfinite(d) && d == floor(d) && fabs(d) < 9e15) {
            *out = (long long)d;
            return 1;
        }
    }
    return 0;
}

/* Reads an integer field. Absent or null: *out = def unless required. */
static ci_status get_int(const json_t *obj, const char *prefix, const char *key, int required,
                         int def, int minv, int *out) {
    const json_t *v = json_object_get(obj, key);
    const char *dot = prefix[0] ? "." : "";
    if (!v || json_is_null(v)) {
        if (required)
            return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field '%s%s%s' is missing", prefix, dot,
                             key);
        *out = def;
        return ci_ok();
    }
    long long x;
    if (!json_as_int(v, &x) || x < minv || x > INT_MAX)
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field '%s%s%s' must be a %s integer", prefix,
                         dot, key, minv > 0 ? "positive" : "non-negative");
    *out = (int)x;
    return ci_ok();
}

/* Reads a number field (> 0 when positive). Absent or null: *present = 0. */
static ci_status get_num(const json_t *obj, const char *prefix, const char *key, int positive,
                         double *out, int *present) {
    const json_t *v = json_object_get(obj, key);
    const char *dot = prefix[0] ? "." : "";
    *present = 0;
    if (!v || json_is_null(v)) return ci_ok();
    if (!json_is_number(v) || !isfinite(json_number_value(v)) ||
        (positive && !(json_number_value(v) > 0)))
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field '%s%s%s' must be a %snumber", prefix, dot,
                         key, positive ? "positive " : "");
    /* Bounded so every later float32 conversion is defined. */
    if (fabs(json_number_value(v)) > 1e15)
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field '%s%s%s' is out of range (|x| <= 1e15)",
                         prefix, dot, key);
    *out = json_number_value(v);
    *present = 1;
    return ci_ok();
}

static ci_status get_num_req(const json_t *obj, const char *prefix, const char *key, double *out) {
    int present;
    CI_TRY(get_num(obj, prefix, key, 1, out, &present));
    if (!present)
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field '%s.%s' is missing (required by %s)",
                         prefix, key, prefix);
    return ci_ok();
}

static ci_status get_bool(const json_t *obj, const char *key, bool def, bool *out) {
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return ci_ok();
    }
    if (!json_is_boolean(v))
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field '%s' must be true or false", key);
    *out = json_is_true(v);
    return ci_ok();
}

/* ---- pieces --------------------------------------------------------------- */

/* The family: `architectures[0]`, else `model_type` as transformers' Auto
 * classes do. */
static ci_status parse_arch(const json_t *root, ci_model_config *c) {
    const json_t *a = json_object_get(root, "architectures");
    char supported[256];
    if (a && !json_is_null(a)) {
        if (!json_is_array(a) || json_array_size(a) == 0 || !json_is_string(json_array_get(a, 0)))
            return ci_errorf(CI_ERR_FORMAT,
                             CFG_FILE ": field 'architectures' must be a non-empty array of "
                                      "strings");
        const char *name = json_string_value(json_array_get(a, 0));
        c->arch = ci_arch_by_architecture(name);
        if (!c->arch) {
            ci_arch_list(supported, sizeof supported, false);
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             CFG_FILE ": unsupported architecture '%.80s' in field "
                                      "'architectures' (supported: %s)",
                             name, supported);
        }
    } else {
        const json_t *mt = json_object_get(root, "model_type");
        if (!json_is_string(mt))
            return ci_errorf(CI_ERR_FORMAT,
                             CFG_FILE ": field 'architectures' is missing (and no 'model_type')");
        c->arch = ci_arch_by_model_type(json_string_value(mt));
        if (!c->arch) {
            ci_arch_list(supported, sizeof supported, true);
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             CFG_FILE ": unsupported model_type '%.64s' (supported: %s)",
                             json_string_value(mt), supported);
        }
    }
    snprintf(c->arch_name, sizeof c->arch_name, "%s", c->arch->architectures[0]);
    return ci_ok();
}

static ci_status parse_dtype(const json_t *root, ci_model_config *c) {
    const json_t *v = json_object_get(root, "dtype");
    const char *key = "dtype";
    if (!v || json_is_null(v)) {
        v = json_object_get(root, "torch_dtype");
        key = "torch_dtype";
    }
    c->dtype = CI_F32; /* transformers' default */
    if (!v || json_is_null(v)) return ci_ok();
    if (!json_is_string(v))
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field '%s' must be a string", key);
    const char *s = json_string_value(v);
    if (!strcmp(s, "bfloat16"))
        c->dtype = CI_BF16;
    else if (!strcmp(s, "float16"))
        c->dtype = CI_F16;
    else if (!strcmp(s, "float32"))
        c->dtype = CI_F32;
    /* anything else is informational only: the weights' own dtypes are checked */
    return ci_ok();
}

static ci_status parse_tokens(const json_t *root, ci_model_config *c) {
    const json_t *v = json_object_get(root, "bos_token_id");
    c->bos_token_id = -1;
    if (v && !json_is_null(v)) {
        long long x;
        if (!json_as_int(v, &x) || x < 0 || x > INT_MAX)
            return ci_errorf(CI_ERR_FORMAT,
                             CFG_FILE ": field 'bos_token_id' must be a non-negative integer");
        c->bos_token_id = (int)x;
    }
    c->num_eos_token_ids = 0;
    v = json_object_get(root, "eos_token_id");
    if (!v || json_is_null(v)) return ci_ok();
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (n > sizeof c->eos_token_ids / sizeof c->eos_token_ids[0])
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         CFG_FILE ": field 'eos_token_id' lists %zu ids (at most %zu supported)", n,
                         sizeof c->eos_token_ids / sizeof c->eos_token_ids[0]);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        long long x;
        if (!json_as_int(e, &x) || x < 0 || x > INT_MAX)
            return ci_errorf(CI_ERR_FORMAT,
                             CFG_FILE ": field 'eos_token_id' must be a non-negative integer or "
                                      "a list of them");
        c->eos_token_ids[c->num_eos_token_ids++] = (int)x;
    }
    return ci_ok();
}

static ci_status parse_rope(const json_t *root, ci_model_config *c) {
    ci_rope_config *r = &c->rope;
    memset(r, 0, sizeof *r);
    r->type = CI_ROPE_DEFAULT;
    r->theta = 10000.0;
    r->factor = 1.0;
    r->partial_rotary_factor = 1.0;
    r->beta_fast = 32.0;
    r->beta_slow = 1.0;
    r->truncate = true;
    r->neox = true;
    r->max_position = c->max_position_embeddings;

    const json_t *rp = json_object_get(root, "rope_parameters");
    const json_t *rs = json_object_get(root, "rope_scaling");
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field 'rope_parameters' must be an object");
    if (rs && !json_is_null(rs) && !json_is_object(rs))
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field 'rope_scaling' must be an object");
    if (rp && !json_is_object(rp)) rp = NULL;
    if (rs && !json_is_object(rs)) rs = NULL;

    int present;
    double d;
    /* theta: rope_parameters.rope_theta, else top-level rope_theta */
    if (rp) {
        CI_TRY(get_num(rp, "rope_parameters", "rope_theta", 1, &d, &present));
        if (present) r->theta = d;
    }
    if (!rp || !present) {
        CI_TRY(get_num(root, "", "rope_theta", 1, &d, &present));
        if (present) r->theta = d;
    }

    /* Which object holds the scaling: rope_parameters when it names a type
     * (transformers >= 5), else the legacy rope_scaling. */
    const json_t *src = NULL;
    const char *pfx = NULL;
    if (rp && (json_object_get(rp, "rope_type") || json_object_get(rp, "type"))) {
        src = rp;
        pfx = "rope_parameters";
    } else if (rs) {
        src = rs;
        pfx = "rope_scaling";
    }

    /* partial_rotary_factor: inside the rope object or top level */
    present = 0;
    if (src) CI_TRY(get_num(src, pfx, "partial_rotary_factor", 1, &d, &present));
    if (!present) CI_TRY(get_num(root, "", "partial_rotary_factor", 1, &d, &present));
    if (present) {
        if (d > 1.0)
            return ci_errorf(CI_ERR_FORMAT,
                             CFG_FILE ": field 'partial_rotary_factor' must be in (0, 1]");
        r->partial_rotary_factor = d;
    }

    if (!(r->theta > 1.0))
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field 'rope_theta' must be greater than 1");
    if (!src) return ci_ok();
    const json_t *tv = json_object_get(src, "rope_type");
    const char *tkey = "rope_type";
    if (!tv || json_is_null(tv)) {
        tv = json_object_get(src, "type");
        tkey = "type";
    }
    if (!tv || json_is_null(tv)) return ci_ok(); /* no type: default */
    if (!json_is_string(tv))
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field '%s.%s' must be a string", pfx, tkey);
    const char *t = json_string_value(tv);
    if (!strcmp(t, "default")) return ci_ok();
    if (!strcmp(t, "linear")) {
        r->type = CI_ROPE_LINEAR;
        CI_TRY(get_num_req(src, pfx, "factor", &r->factor));
        return ci_ok();
    }
    if (!strcmp(t, "llama3")) {
        r->type = CI_ROPE_LLAMA3;
        CI_TRY(get_num_req(src, pfx, "factor", &r->factor));
        CI_TRY(get_num_req(src, pfx, "low_freq_factor", &r->low_freq_factor));
        CI_TRY(get_num_req(src, pfx, "high_freq_factor", &r->high_freq_factor));
        CI_TRY(get_int(src, pfx, "original_max_position_embeddings", 1, 0, 1,
                       &r->original_max_position));
        if (!(r->high_freq_factor > r->low_freq_factor))
            return ci_errorf(CI_ERR_FORMAT,
                             CFG_FILE ": field '%s.high_freq_factor' must be greater than "
                                      "'low_freq_factor'",
                             pfx);
        return ci_ok();
    }
    if (!strcmp(t, "yarn")) {
        r->type = CI_ROPE_YARN;
        CI_TRY(get_int(src, pfx, "original_max_position_embeddings", 0, c->max_position_embeddings,
                       1, &r->original_max_position));
        CI_TRY(get_num(src, pfx, "factor", 1, &d, &present));
        if (present) {
            r->factor = d;
        } else if (json_object_get(src, "original_max_position_embeddings")) {
            /* transformers: factor = max_position_embeddings / original */
            r->factor = (double)c->max_position_embeddings / r->original_max_position;
        } else {
            return ci_errorf(CI_ERR_FORMAT,
                             CFG_FILE ": field '%s.factor' is missing (required by yarn)", pfx);
        }
        CI_TRY(get_num(src, pfx, "attention_factor", 1, &d, &present));
        if (present) r->attention_factor = d;
        /* transformers: `get("beta_fast") or 32` — 0 and null mean the default */
        static const char *const betas[2] = {"beta_fast", "beta_slow"};
        for (int b = 0; b < 2; b++) {
            CI_TRY(get_num(src, pfx, betas[b], 0, &d, &present));
            if (!present || d == 0) continue;
            if (d < 0)
                return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field '%s.%s' must be positive", pfx,
                                 betas[b]);
            if (b == 0)
                r->beta_fast = d;
            else
                r->beta_slow = d;
        }
        CI_TRY(get_num(src, pfx, "mscale", 0, &d, &present));
        if (present) r->mscale = d;
        CI_TRY(get_num(src, pfx, "mscale_all_dim", 0, &d, &present));
        if (present) r->mscale_all_dim = d;
        const json_t *tr = json_object_get(src, "truncate");
        if (tr && !json_is_null(tr)) {
            if (!json_is_boolean(tr))
                return ci_errorf(CI_ERR_FORMAT,
                                 CFG_FILE ": field '%s.truncate' must be true or false", pfx);
            r->truncate = json_is_true(tr);
        }
        return ci_ok();
    }
    return ci_errorf(CI_ERR_UNSUPPORTED,
                     CFG_FILE ": field '%s.%s' is '%.40s', which is not supported (supported: "
                              "default, linear, llama3, yarn)",
                     pfx, tkey, t);
}

/* Sliding-window attention, per layer, as transformers 5 sets it up:
 * - Mistral (MistralConfig, MistralModel): `sliding_window` (absent: 4096,
 *   null: none) applies to every layer; `layer_types` is ignored.
 * - Qwen2 / Qwen3 (Qwen2Config.__post_init__): `sliding_window` counts only
 *   when `use_sliding_window` is true (default false). `layer_types`, when
 *   given, names each layer "full_attention" or "sliding_attention" and wins;
 *   else layer i slides when a window is set and i >= `max_window_layers`
 *   (default 28). A sliding layer without a window is an error (transformers'
 *   create_sliding_window_causal_mask raises).
 * - Llama: none.
 * A sliding layer's query at position p sees keys p - w + 1 .. p
 * (masking_utils.sliding_window_overlay: kv_idx > q_idx - sliding_window). */
static ci_status parse_sliding_window(const json_t *root, ci_model_config *c) {
    if (c->num_layers > CI_MAX_LAYERS)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         CFG_FILE ": field 'num_hidden_layers' is %d (at most %d supported)",
                         c->num_layers, CI_MAX_LAYERS);
    c->sliding_window = 0;
    if (c->arch == CI_ARCH_LLAMA) return ci_ok();
    /* the window: absent = transformers' default 4096, null = none */
    const json_t *sw = json_object_get(root, "sliding_window");
    int w = 0;
    if (!json_is_null(sw)) CI_TRY(get_int(root, "", "sliding_window", 0, 4096, 0, &w));
    int has_w = !json_is_null(sw);
    int sliding[CI_MAX_LAYERS] = {0};
    if (c->arch == CI_ARCH_MISTRAL) {
        for (int l = 0; l < c->num_layers; l++)
            sliding[l] = has_w;
    } else {
        bool use = false;
        CI_TRY(get_bool(root, "use_sliding_window", false, &use));
        if (!use) has_w = 0;
        const json_t *lt = json_object_get(root, "layer_types");
        if (lt && !json_is_null(lt)) {
            if (!json_is_array(lt) || json_array_size(lt) != (size_t)c->num_layers)
                return ci_errorf(CI_ERR_FORMAT,
                                 CFG_FILE ": field 'layer_types' must be an array of %d strings "
                                          "(one per layer)",
                                 c->num_layers);
            for (int l = 0; l < c->num_layers; l++) {
                const char *t = json_string_value(json_array_get(lt, (size_t)l));
                if (!t)
                    return ci_errorf(CI_ERR_FORMAT,
                                     CFG_FILE ": field 'layer_types[%d]' must be a string", l);
                if (!strcmp(t, "sliding_attention"))
                    sliding[l] = 1;
                else if (strcmp(t, "full_attention") != 0)
                    return ci_errorf(CI_ERR_UNSUPPORTED,
                                     CFG_FILE ": field 'layer_types[%d]' is '%.40s' (supported: "
                                              "full_attention, sliding_attention)",
                                     l, t);
                if (sliding[l] && !has_w)
                    return ci_errorf(CI_ERR_FORMAT,
                                     CFG_FILE ": field 'layer_types[%d]' is 'sliding_attention' "
                                              "but no sliding window is set ('sliding_window' "
                                              "null or 'use_sliding_window' false)",
                                     l);
            }
        } else {
            int mwl;
            CI_TRY(get_int(root, "", "max_window_layers", 0, 28, 0, &mwl));
            for (int l = 0; l < c->num_layers; l++)
                sliding[l] = has_w && l >= mwl;
        }
    }
    for (int l = 0; l < c->num_layers; l++) {
        if (!sliding[l]) continue;
        if (w <= 0)
            return ci_errorf(CI_ERR_FORMAT,
                             CFG_FILE ": field 'sliding_window' must be a positive integer");
        /* a window that reaches past every position masks nothing */
        if (w < c->max_position_embeddings) c->layer_window[l] = c->sliding_window = w;
    }
    return ci_ok();
}

/* ---- main parse ----------------------------------------------------------- */

static ci_status parse_root(const json_t *root, ci_model_config *c) {
    memset(c, 0, sizeof *c);
    if (!json_is_object(root))
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": top level must be a JSON object");
    CI_TRY(parse_arch(root, c));

    const json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act)) {
        if (!json_is_string(act))
            return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field 'hidden_act' must be a string");
        if (strcmp(json_string_value(act), "silu") != 0)
            return ci_errorf(CI_ERR_UNSUPPORTED,
                             CFG_FILE ": field 'hidden_act' is '%.40s'; only 'silu' is supported",
                             json_string_value(act));
    }

    CI_TRY(get_int(root, "", "vocab_size", 1, 0, 1, &c->vocab_size));
    CI_TRY(get_int(root, "", "hidden_size", 1, 0, 1, &c->hidden_size));
    CI_TRY(get_int(root, "", "intermediate_size", 1, 0, 1, &c->intermediate_size));
    CI_TRY(get_int(root, "", "num_hidden_layers", 1, 0, 1, &c->num_layers));
    CI_TRY(get_int(root, "", "num_attention_heads", 1, 0, 1, &c->num_heads));
    CI_TRY(get_int(root, "", "num_key_value_heads", 0, c->num_heads, 1, &c->num_kv_heads));
    CI_TRY(get_int(root, "", "head_dim", 0, c->hidden_size / c->num_heads, 1, &c->head_dim));
    if (c->head_dim <= 0)
        return ci_errorf(CI_ERR_FORMAT,
                         CFG_FILE ": field 'hidden_size' (%d) is smaller than "
                                  "'num_attention_heads' (%d) and no 'head_dim' is given",
                         c->hidden_size, c->num_heads);
    CI_TRY(get_int(root, "", "max_position_embeddings", 0, c->arch->max_position_default, 1,
                   &c->max_position_embeddings));

    int present;
    c->rms_norm_eps = 1e-6;
    double eps;
    CI_TRY(get_num(root, "", "rms_norm_eps", 1, &eps, &present));
    if (present) c->rms_norm_eps = eps;

    CI_TRY(get_bool(root, "tie_word_embeddings", c->arch->tie_embeddings_default,
                    &c->tie_word_embeddings));

    bool attention_bias = false;
    CI_TRY(get_bool(root, "attention_bias", false, &attention_bias));
    c->qkv_bias = c->arch->qkv_bias;
    c->qk_norm = c->arch->qk_norm;
    if (c->arch->attention_bias_field && attention_bias)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         CFG_FILE ": field 'attention_bias' is true, which needs an o_proj "
                                  "bias (not supported)");

    CI_TRY(parse_sliding_window(root, c));

    CI_TRY(parse_dtype(root, c));
    CI_TRY(parse_tokens(root, c));
    CI_TRY(parse_rope(root, c));
    CI_TRY(ci_quant_config_parse(json_object_get(root, "quantization_config"), &c->quant));
    if (c->arch->parse_config) CI_TRY(c->arch->parse_config(root, c));

    /* consistency */
    if (c->num_heads % c->num_kv_heads != 0)
        return ci_errorf(CI_ERR_FORMAT,
                         CFG_FILE ": field 'num_attention_heads' (%d) must be a multiple of "
                                  "'num_key_value_heads' (%d)",
                         c->num_heads, c->num_kv_heads);
    if (c->head_dim % 2 != 0)
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": field 'head_dim' (%d) must be even",
                         c->head_dim);
    int rot = ci_config_rot_dim(c);
    if (rot < 2 || rot % 2 != 0)
        return ci_errorf(CI_ERR_FORMAT,
                         CFG_FILE ": field 'partial_rotary_factor' (%g) gives %d rotary dims of "
                                  "head_dim %d; must be even and >= 2",
                         c->rope.partial_rotary_factor, rot, c->head_dim);
    /* sizes must fit the int64 products the loader computes */
    if ((long long)c->num_heads * c->head_dim > INT_MAX ||
        (long long)(c->num_heads + 2 * c->num_kv_heads) * c->head_dim > INT_MAX ||
        2LL * c->intermediate_size > INT_MAX)
        return ci_errorf(CI_ERR_FORMAT,
                         CFG_FILE ": fields 'num_attention_heads'/'head_dim'/'intermediate_size' "
                                  "are too large");
    return ci_ok();
}

int ci_config_rot_dim(const ci_model_config *cfg) {
    return (int)(cfg->head_dim * cfg->rope.partial_rotary_factor);
}

ci_status ci_config_parse(const char *json_text, ci_model_config *out) {
    if (!json_text || !out) return ci_errorf(CI_ERR_INVALID, "ci_config_parse: NULL argument");
    json_error_t err;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return ci_errorf(CI_ERR_FORMAT, CFG_FILE ": invalid JSON at line %d column %d: %s",
                         err.line, err.column, err.text);
    ci_status s = parse_root(root, out);
    json_decref(root);
    return s;
}

ci_status ci_config_load(const char *model_dir, ci_model_config *out) {
    if (!model_dir || !out) return ci_errorf(CI_ERR_INVALID, "ci_config_load: NULL argument");
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/config.json", model_dir);
    if (n < 0 || (size_t)n >= sizeof path)
        return ci_errorf(CI_ERR_INVALID, "%.200s...: path too long", model_dir);
    FILE *f = fopen(path, "rb");
    if (!f) return ci_errorf(CI_ERR_IO, "%s: %s", path, strerror(errno));
    json_error_t err;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    int rerr = ferror(f);
    fclose(f);
    if (!root) {
        if (rerr) return ci_errorf(CI_ERR_IO, "%s: read error", path);
        return ci_errorf(CI_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", path, err.line,
                         err.column, err.text);
    }
    ci_status s = parse_root(root, out);
    json_decref(root);
    return s;
}

ci_status ci_config_tp_split(ci_model_config *c, int rank, int size) {
    memset(&c->tp, 0, sizeof c->tp);
    if (size <= 1) return ci_ok();
    if (rank < 0 || rank >= size)
        return ci_errorf(CI_ERR_INVALID, "tensor parallel rank %d outside [0, %d)", rank, size);
    if (c->num_heads % size)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "tensor parallel size %d does not divide num_attention_heads %d", size,
                         c->num_heads);
    if (c->num_kv_heads % size && size % c->num_kv_heads)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "tensor parallel size %d and num_key_value_heads %d: neither divides the "
                         "other",
                         size, c->num_kv_heads);
    if (c->intermediate_size % size)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "tensor parallel size %d does not divide intermediate_size %d", size,
                         c->intermediate_size);
    c->tp.rank = rank;
    c->tp.size = size;
    c->tp.nh = c->num_heads / size;
    c->tp.q0 = rank * c->tp.nh;
    /* kv heads: a share each, or (fewer kv heads than ranks) the one its q
     * heads use */
    c->tp.nkv = c->num_kv_heads >= size ? c->num_kv_heads / size : 1;
    c->tp.kv0 =
        c->num_kv_heads >= size ? rank * c->tp.nkv : c->tp.q0 / (c->num_heads / c->num_kv_heads);
    c->tp.ni = c->intermediate_size / size;
    c->tp.i0 = rank * c->tp.ni;
    c->tp.v0 = (int)((int64_t)rank * c->vocab_size / size);
    c->tp.nv = (int)((int64_t)(rank + 1) * c->vocab_size / size) - c->tp.v0;
    return ci_ok();
}

ci_status ci_config_pp_split(ci_model_config *c, int stage, int size) {
    memset(&c->pp, 0, sizeof c->pp);
    if (size <= 1) return ci_ok();
    if (stage < 0 || stage >= size)
        return ci_errorf(CI_ERR_INVALID, "pipeline stage %d outside [0, %d)", stage, size);
    if (size > c->num_layers)
        return ci_errorf(CI_ERR_UNSUPPORTED,
                         "pipeline parallel size %d exceeds num_hidden_layers %d", size,
                         c->num_layers);
    c->pp.stage = stage;
    c->pp.size = size;
    c->pp.l0 = (int)((int64_t)stage * c->num_layers / size);
    c->pp.l1 = (int)((int64_t)(stage + 1) * c->num_layers / size);
    return ci_ok();
}
