/* rope.c — inverse frequencies and cos/sin tables for every rope type.
 *
 * ci_rope_inv_freq follows transformers' ROPE_INIT_FUNCTIONS
 * (_compute_default_rope_parameters, _compute_linear_scaling_rope_parameters,
 * _compute_llama3_parameters, _compute_yarn_parameters) in double precision.
 *
 * The table, though, mirrors what transformers actually computes at run time:
 * inv_freq is a float32 tensor (every step of the init function rounds to
 * float32), freqs = position * inv_freq is one float32 product, cos/sin are
 * taken of that float32 angle and scaled by attention_scaling in float32.
 * At long positions the angle's float32 rounding dominates, so reproducing it
 * (rather than computing the angle in double) is what keeps logits within
 * 1e-4 of HF. */
#include "model/rope.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF /* no FMA: keep float32 rounding step by step */
#endif

/* yarn's attention factor (transformers' get_mscale logic). */
static double yarn_attention_factor(const ci_rope_config *rc) {
    if (rc->attention_factor > 0) return rc->attention_factor;
    double f = rc->factor;
#define GET_MSCALE(scale, m) ((scale) <= 1 ? 1.0 : 0.1 * (m)*log(scale) + 1.0)
    if (rc->mscale != 0 && rc->mscale_all_dim != 0)
        return GET_MSCALE(f, rc->mscale) / GET_MSCALE(f, rc->mscale_all_dim);
    return GET_MSCALE(f, 1.0);
#undef GET_MSCALE
}

static int yarn_original_max(const ci_rope_config *rc) {
    if (rc->original_max_position > 0) return rc->original_max_position;
    return rc->max_position > 0 ? rc->max_position : 2048;
}

/* find_correction_range: [low, high] dims (as doubles; integral if truncate). */
static void yarn_range(const ci_rope_config *rc, int dim, double *lo, double *hi) {
    double base = rc->theta, omax = yarn_original_max(rc);
#define CORR_DIM(rot) ((dim * log(omax / ((rot)*2 * M_PI))) / (2 * log(base)))
    double low = CORR_DIM(rc->beta_fast), high = CORR_DIM(rc->beta_slow);
#undef CORR_DIM
    if (rc->truncate) {
        low = floor(low);
        high = ceil(high);
    }
    if (low < 0) low = 0;
    if (high > dim - 1) high = dim - 1;
    *lo = low;
    *hi = high;
}

void ci_rope_inv_freq(const ci_rope_config *rc, int rot_dim, double *inv_freq, double *mscale) {
    int half = rot_dim / 2;
    double base = rc->theta;
    *mscale = 1.0;
    for (int i = 0; i < half; i++)
        inv_freq[i] = 1.0 / pow(base, (double)(2 * i) / rot_dim);
    switch (rc->type) {
    case CI_ROPE_DEFAULT: break;
    case CI_ROPE_LINEAR:
        for (int i = 0; i < half; i++)
            inv_freq[i] /= rc->factor;
        break;
    case CI_ROPE_LLAMA3: {
        double old = rc->original_max_position;
        double low_wl = old / rc->low_freq_factor, high_wl = old / rc->high_freq_factor;
        for (int i = 0; i < half; i++) {
            double f = inv_freq[i], wl = 2 * M_PI / f;
            if (wl < high_wl) continue; /* high frequency: unchanged */
            if (wl > low_wl) {          /* low frequency: divided by factor */
                inv_freq[i] = f / rc->factor;
                continue;
            }
            double smooth =
                (old / wl - rc->low_freq_factor) / (rc->high_freq_factor - rc->low_freq_factor);
            inv_freq[i] = (1 - smooth) * f / rc->factor + smooth * f;
        }
        break;
    }
    case CI_ROPE_YARN: {
        double lo, hi;
        yarn_range(rc, rot_dim, &lo, &hi);
        if (lo == hi) hi += 0.001;
        for (int i = 0; i < half; i++) {
            double extra = inv_freq[i], inter = extra / rc->factor;
            double ramp = ((double)i - lo) / (hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            double ef = 1 - ramp; /* extrapolation weight */
            inv_freq[i] = inter * (1 - ef) + extra * ef;
        }
        *mscale = yarn_attention_factor(rc);
        break;
    }
    }
}

/* The same, step by step in float32 as transformers' torch code runs it. */
static int rope_inv_freq_f32(const ci_rope_config *rc, int rot_dim, float *inv, float *mscale) {
    int half = rot_dim / 2;
    float base = (float)rc->theta;
    float *pos_freqs = malloc((size_t)(half > 0 ? half : 1) * sizeof *pos_freqs);
    if (!pos_freqs) return 0;
    for (int i = 0; i < half; i++) {
        volatile float ex = (float)(2 * i) / (float)rot_dim; /* arange(...).float() / dim */
        pos_freqs[i] = (float)pow((double)base, (double)ex); /* base ** ex (float32) */
        inv[i] = 1.0f / pos_freqs[i];
    }
    *mscale = 1.0f;
    switch (rc->type) {
    case CI_ROPE_DEFAULT: break;
    case CI_ROPE_LINEAR:
        for (int i = 0; i < half; i++)
            inv[i] = inv[i] / (float)rc->factor;
        break;
    case CI_ROPE_LLAMA3: {
        double old = rc->original_max_position;
        float low_wl = (float)(old / rc->low_freq_factor);
        float high_wl = (float)(old / rc->high_freq_factor);
        float factor = (float)rc->factor;
        for (int i = 0; i < half; i++) {
            float f = inv[i];
            volatile float recip = 1.0f / f;
            float wl = recip * (float)(2 * M_PI); /* 2*pi / inv_freq */
            float fl = wl > low_wl ? f / factor : f;
            volatile float r2 = 1.0f / wl;
            float sf = (r2 * (float)old - (float)rc->low_freq_factor) /
                       (float)(rc->high_freq_factor - rc->low_freq_factor);
            volatile float a = (1.0f - sf) * fl;
            volatile float a2 = a / factor;
            volatile float b = sf * fl;
            float smoothed = a2 + b;
            int medium = !(wl < high_wl) && !(wl > low_wl);
            inv[i] = medium ? smoothed : fl;
        }
        break;
    }
    case CI_ROPE_YARN: {
        double lo, hi;
        yarn_range(rc, rot_dim, &lo, &hi);
        if (lo == hi) hi += 0.001;
        float factor = (float)rc->factor;
        for (int i = 0; i < half; i++) {
            float extra = inv[i];
            volatile float fp = factor * pos_freqs[i];
            float inter = 1.0f / fp;
            float ramp = ((float)i - (float)lo) / (float)(hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float ef = 1.0f - ramp;
            volatile float a = inter * (1.0f - ef);
            volatile float b = extra * ef;
            inv[i] = a + b;
        }
        *mscale = (float)yarn_attention_factor(rc);
        break;
    }
    }
    free(pos_freqs);
    return 1;
}

ci_status ci_rope_table_create(ci_backend *be, const ci_model_config *cfg, int max_positions,
                               ci_rope_table *out) {
    if (!be || !cfg || !out)
        return ci_errorf(CI_ERR_INVALID, "ci_rope_table_create: NULL argument");
    memset(out, 0, sizeof *out);
    if (max_positions <= 0) max_positions = cfg->max_position_embeddings;
    int rot = ci_config_rot_dim(cfg);
    if (rot < 2 || rot % 2 || rot > cfg->head_dim || max_positions <= 0)
        return ci_errorf(CI_ERR_INVALID, "rope table: bad rot_dim %d / max_positions %d", rot,
                         max_positions);
    size_t n = (size_t)max_positions * (size_t)rot;
    if (n / (size_t)rot != (size_t)max_positions || n > ((size_t)1 << 40) / sizeof(float))
        return ci_errorf(CI_ERR_INVALID, "rope table: %d positions x %d dims is too large",
                         max_positions, rot);
    int half = rot / 2;
    float *host = malloc(n * sizeof *host);
    float *inv = malloc((size_t)half * sizeof *inv);
    if (!host || !inv) {
        free(host);
        free(inv);
        return ci_errorf(CI_ERR_NOMEM, "rope table: out of memory");
    }
    float ms;
    if (!rope_inv_freq_f32(&cfg->rope, rot, inv, &ms)) {
        free(host);
        free(inv);
        return ci_errorf(CI_ERR_NOMEM, "rope table: out of memory");
    }
    for (int p = 0; p < max_positions; p++) {
        float *row = host + (size_t)p * rot;
        float pf = (float)p;
        for (int i = 0; i < half; i++) {
            float ang = pf * inv[i]; /* one float32 product, as HF's matmul */
            float c = (float)cos((double)ang), s = (float)sin((double)ang);
            row[i] = c * ms;
            row[half + i] = s * ms;
        }
    }
    free(inv);
    void *dev = NULL;
    ci_status st = be->ops->alloc(be, n * sizeof *host, &dev);
    if (st.code != CI_OK) {
        free(host);
        return ci_status_wrap(st, "rope table");
    }
    st = be->ops->to_device(be, dev, host, n * sizeof *host);
    free(host);
    if (st.code != CI_OK) {
        be->ops->free(be, dev);
        return ci_status_wrap(st, "rope table");
    }
    out->cos_sin.data = dev;
    out->cos_sin.dtype = CI_F32;
    out->cos_sin.rows = max_positions;
    out->cos_sin.cols = rot;
    out->rot_dim = rot;
    out->max_positions = max_positions;
    out->neox = cfg->rope.neox ? 1 : 0;
    return ci_ok();
}

void ci_rope_table_free(ci_backend *be, ci_rope_table *t) {
    if (!be || !t) return;
    if (t->cos_sin.data) be->ops->free(be, t->cos_sin.data);
    memset(t, 0, sizeof *t);
}
