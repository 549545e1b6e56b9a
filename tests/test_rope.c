/* test_rope.c — inverse frequencies of every rope type against formulas
 * written out independently here, and the cos/sin table. */
#include "mock_backend.h"
#include "model/config.h"
#include "model/rope.h"
#include "test.h"

static int close_rel(double a, double b, double tol) {
    return fabs(a - b) <= tol * fmax(fabs(a), fabs(b)) || fabs(a - b) < 1e-300;
}

static ci_rope_config base_rc(double theta) {
    ci_rope_config rc;
    memset(&rc, 0, sizeof rc);
    rc.type = CI_ROPE_DEFAULT;
    rc.theta = theta;
    rc.factor = 1;
    rc.partial_rotary_factor = 1;
    rc.beta_fast = 32;
    rc.beta_slow = 1;
    rc.truncate = true;
    rc.neox = true;
    return rc;
}

static void test_default_linear(void) {
    double inv[64], ms;
    ci_rope_config rc = base_rc(10000.0);
    ci_rope_inv_freq(&rc, 128, inv, &ms);
    CHECK(ms == 1.0);
    for (int i = 0; i < 64; i++) {
        double want = exp(-log(10000.0) * (2.0 * i / 128.0)); /* theta^(-2i/d) */
        CHECKF(close_rel(inv[i], want, 1e-13), "default %d: %.17g vs %.17g", i, inv[i], want);
    }
    CHECK(inv[0] == 1.0);
    rc.type = CI_ROPE_LINEAR;
    rc.factor = 4.0;
    ci_rope_inv_freq(&rc, 128, inv, &ms);
    CHECK(ms == 1.0);
    for (int i = 0; i < 64; i++) {
        double want = exp(-log(10000.0) * (2.0 * i / 128.0)) * 0.25;
        CHECKF(close_rel(inv[i], want, 1e-13), "linear %d", i);
    }
}

static void test_llama3(void) {
    ci_rope_config rc = base_rc(500000.0);
    rc.type = CI_ROPE_LLAMA3;
    rc.factor = 8;
    rc.low_freq_factor = 1;
    rc.high_freq_factor = 4;
    rc.original_max_position = 8192;
    double inv[64], ms;
    ci_rope_inv_freq(&rc, 128, inv, &ms);
    CHECK(ms == 1.0);
    int n_hi = 0, n_lo = 0, n_mid = 0;
    for (int i = 0; i < 64; i++) {
        double f = exp(-log(500000.0) * i / 64.0);
        double period = 2 * M_PI / f, want;
        if (period < 8192.0 / 4) { /* fast: kept */
            want = f;
            n_hi++;
        } else if (period > 8192.0 / 1) { /* slow: interpolated by the factor */
            want = f / 8;
            n_lo++;
        } else { /* in between: blend by how many turns fit the old context */
            double t = (8192.0 / period - 1.0) / 3.0;
            want = f * (t + (1 - t) / 8);
            n_mid++;
        }
        CHECKF(close_rel(inv[i], want, 1e-12), "llama3 %d: %.17g vs %.17g", i, inv[i], want);
        if (i) CHECK(inv[i] < inv[i - 1]);
    }
    CHECK(n_hi > 0 && n_lo > 0 && n_mid > 0);
}

/* YaRN by the paper's formulas. */
static void yarn_ref(double theta, int dim, double factor, int omax, double bf, double bs,
                     int trunc, double *out) {
    double lo = dim * log(omax / (bf * 2 * M_PI)) / (2 * log(theta));
    double hi = dim * log(omax / (bs * 2 * M_PI)) / (2 * log(theta));
    if (trunc) {
        lo = floor(lo);
        hi = ceil(hi);
    }
    lo = fmax(lo, 0);
    hi = fmin(hi, dim - 1);
    if (lo == hi) hi += 0.001;
    for (int i = 0; i < dim / 2; i++) {
        double f = pow(theta, -2.0 * i / dim);
        double r = fmin(fmax((i - lo) / (hi - lo), 0), 1); /* 0: extrapolate, 1: interpolate */
        out[i] = f * (1 - r) + (f / factor) * r;
    }
}

static void test_yarn(void) {
    ci_rope_config rc = base_rc(1e6);
    rc.type = CI_ROPE_YARN;
    rc.factor = 4;
    rc.original_max_position = 32768;
    rc.max_position = 131072;
    double inv[64], want[64], ms;
    ci_rope_inv_freq(&rc, 128, inv, &ms);
    yarn_ref(1e6, 128, 4, 32768, 32, 1, 1, want);
    for (int i = 0; i < 64; i++)
        CHECKF(close_rel(inv[i], want[i], 1e-12), "yarn %d", i);
    CHECKF(fabs(ms - (0.1 * log(4.0) + 1)) < 1e-15, "mscale %.17g", ms);
    CHECK(inv[0] == 1.0 && close_rel(inv[63], pow(1e6, -126.0 / 128) / 4, 1e-12));

    /* no truncate, other betas, original from max_position, explicit attention factor */
    rc.truncate = false;
    rc.beta_fast = 16;
    rc.beta_slow = 2;
    rc.original_max_position = 0;
    rc.max_position = 4096;
    rc.attention_factor = 1.5;
    rc.theta = 10000;
    ci_rope_inv_freq(&rc, 64, inv, &ms);
    yarn_ref(10000, 64, 4, 4096, 16, 2, 0, want);
    for (int i = 0; i < 32; i++)
        CHECKF(close_rel(inv[i], want[i], 1e-12), "yarn2 %d", i);
    CHECK(ms == 1.5);
    /* DeepSeek-style mscale ratio */
    rc.attention_factor = 0;
    rc.mscale = 0.707;
    rc.mscale_all_dim = 0.707;
    ci_rope_inv_freq(&rc, 64, inv, &ms);
    CHECK(fabs(ms - 1.0) < 1e-15);
    rc.mscale = 1.0;
    rc.mscale_all_dim = 0.5;
    ci_rope_inv_freq(&rc, 64, inv, &ms);
    CHECK(fabs(ms - (0.1 * log(4.0) + 1) / (0.05 * log(4.0) + 1)) < 1e-15);
    /* factor <= 1 gives mscale 1 */
    rc.mscale = rc.mscale_all_dim = 0;
    rc.factor = 1.0;
    ci_rope_inv_freq(&rc, 64, inv, &ms);
    CHECK(ms == 1.0);
}

static void test_table(void) {
    ci_backend be;
    mock_state st;
    mock_backend_init(&be, &st);
    ci_model_config cfg;
    CHECK_OK(ci_config_parse("{\"architectures\":[\"Qwen2ForCausalLM\"],\"vocab_size\":10,"
                             "\"hidden_size\":256,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                             "\"num_attention_heads\":4,\"num_key_value_heads\":2,"
                             "\"max_position_embeddings\":2048,\"rope_theta\":10000.0}",
                             &cfg));
    ci_rope_table t;
    CHECK_OK(ci_rope_table_create(&be, &cfg, 0, &t));
    CHECK(t.rot_dim == 64 && t.max_positions == 2048 && t.neox == 1);
    CHECK(t.cos_sin.dtype == CI_F32 && t.cos_sin.rows == 2048 && t.cos_sin.cols == 64);
    const float *tab = t.cos_sin.data;
    double worst_dbl = 0, worst_f32 = 0;
    int pos[] = {0, 1, 7, 511, 1000, 2047};
    for (size_t k = 0; k < sizeof pos / sizeof pos[0]; k++) {
        int p = pos[k];
        for (int i = 0; i < 32; i++) {
            double invd = pow(10000.0, -2.0 * i / 64);
            /* exact angle in double */
            double c = cos(p * invd), s = sin(p * invd);
            worst_dbl =
                fmax(worst_dbl, fmax(fabs(tab[p * 64 + i] - c), fabs(tab[p * 64 + 32 + i] - s)));
            /* HF's recipe in float32: inv = 1 / (theta ** (arange/dim)), each
             * step rounded to float32, then angle = float(p) * inv */
            float pw = (float)pow(10000.0, (double)((float)(2 * i) / 64.0f));
            float invf = 1.0f / pw;
            float a = (float)p * invf;
            double cf = cos((double)a), sf = sin((double)a);
            worst_f32 =
                fmax(worst_f32, fmax(fabs(tab[p * 64 + i] - cf), fabs(tab[p * 64 + 32 + i] - sf)));
        }
    }
    CHECKF(worst_f32 < 1e-6, "table vs float32 angle: %g", worst_f32);
    CHECKF(worst_dbl < 5e-4, "table vs exact: %g", worst_dbl);
    CHECK(tab[0] == 1.0f && tab[32] == 0.0f);
    ci_rope_table_free(&be, &t);
    CHECK(st.live == 0 && t.cos_sin.data == NULL);

    /* yarn + partial rotary: cos/sin scaled by mscale, rot_dim < head_dim */
    CHECK_OK(
        ci_config_parse("{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":10,"
                        "\"hidden_size\":256,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                        "\"num_attention_heads\":4,\"max_position_embeddings\":4096,"
                        "\"partial_rotary_factor\":0.5,\"rope_scaling\":{\"rope_type\":\"yarn\","
                        "\"factor\":4.0,\"original_max_position_embeddings\":1024}}",
                        &cfg));
    CHECK_OK(ci_rope_table_create(&be, &cfg, 100, &t));
    CHECK(t.rot_dim == 32 && t.cos_sin.cols == 32 && t.max_positions == 100);
    tab = t.cos_sin.data;
    float ms = (float)(0.1 * log(4.0) + 1);
    CHECK(tab[0] == ms && tab[16] == 0.0f);
    double inv[16], msd;
    ci_rope_inv_freq(&cfg.rope, 32, inv, &msd);
    for (int i = 0; i < 16; i++)
        CHECKF(fabs(tab[99 * 32 + i] - msd * cos(99 * inv[i])) < 1e-5, "yarn table %d", i);
    ci_rope_table_free(&be, &t);
    CHECK(st.live == 0);
}

int main(void) {
    test_default_linear();
    test_llama3();
    test_yarn();
    test_table();
    return test_finish("test_rope");
}
