/* test_quant_ops.c — the quantized-weight pieces below the model: the FP8
 * E4M3 codec, the CPU quantized matmul against ci_qweight_dequant_row (random
 * INT4 with and without act-order g_idx across fused parts, FP8 with block
 * scales; decode and prefill shapes, bias), and quantization_config parsing
 * (each refused field named in one line). */
#include <math.h>

#include "backend/backend.h"
#include "model/config.h"
#include "model/quant.h"
#include "qweight_test.h"
#include "test.h"
#include "util/qweight.h"

static void test_fp8_codec(void) {
    int bad = 0;
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f) { /* NaN */
            CHECK(isnan(ci_fp8_e4m3_to_f32((uint8_t)c)));
            continue;
        }
        float f = ci_fp8_e4m3_to_f32((uint8_t)c);
        uint8_t back = ci_f32_to_fp8_e4m3(f);
        if (back != c && !(c == 0x80 && back == 0x80)) bad++;
    }
    CHECKF(bad == 0, "%d E4M3 codes do not round-trip", bad);
    CHECK(ci_fp8_e4m3_to_f32(0x7e) == 448.0f);
    CHECK(ci_fp8_e4m3_to_f32(0x01) == 1.0f / 512.0f); /* smallest subnormal */
    CHECK(ci_fp8_e4m3_to_f32(0x08) == 1.0f / 64.0f);  /* smallest normal */
    CHECK(ci_fp8_e4m3_to_f32(0xb8) == -1.0f);
    CHECK(ci_f32_to_fp8_e4m3(1000.0f) == 0x7e); /* saturates */
    CHECK(ci_f32_to_fp8_e4m3(-1000.0f) == 0xfe);
    CHECK(ci_f32_to_fp8_e4m3(1.0625f) == 0x38);  /* tie between 1 and 1.125 -> even (1) */
    CHECK(ci_f32_to_fp8_e4m3(1.1875f) == 0x3a);  /* tie 1.125 / 1.25 -> even (1.25) */
    CHECK(ci_f32_to_fp8_e4m3(1.0f / 1024) == 0); /* half the smallest subnormal: even (0) */
    CHECK(ci_f32_to_fp8_e4m3(3.0f / 1024) == 2); /* 1.5 subnormal steps -> 2 */
    CHECK(ci_f32_to_fp8_e4m3(464.0f) == 0x7e);   /* between 448 and 480: clamps */
    { /* W8A8 activations with a static scale: x / s in E4M3, saturated, times s */
        ci_qweight w = {.format = CI_QW_FP8, .cols = 4, .act_group = 4, .act_scale = 0.5f};
        float x[4] = {1.0f, 1000.0f, -3.3f, 0.0f};
        ci_qweight_quant_act(&w, x);
        CHECK(x[0] == 1.0f && x[1] == 224.0f && x[2] == -3.25f && x[3] == 0.0f);
        w.act_scale = 0.0f; /* dynamic: amax 1000 / 448 */
        float y[4] = {1.0f, 1000.0f, -3.3f, 0.0f};
        ci_qweight_quant_act(&w, y);
        CHECK(fabsf(y[1] - 1000.0f) < 1e-3f);
    }
    /* nearest: every float between two neighbours goes to the nearer */
    for (int i = 0; i < 2000; i++) {
        float x = frand() * 300.0f;
        float d = fabsf(ci_fp8_e4m3_to_f32(ci_f32_to_fp8_e4m3(x)) - x);
        uint8_t c = ci_f32_to_fp8_e4m3(x);
        float up = ci_fp8_e4m3_to_f32((uint8_t)(c + 1)), dn = ci_fp8_e4m3_to_f32((uint8_t)(c - 1));
        if ((c & 0x7f) < 0x7e && !isnan(up) && fabsf(up - x) < d) bad++;
        if ((c & 0x7f) > 0 && fabsf(dn - x) < d) bad++;
    }
    CHECKF(bad == 0, "%d values not rounded to the nearest E4M3", bad);
    /* ci_e4m3_round (W8A8's per-element rounding, no byte) is the code's
     * value: every 499th float bit pattern (8.6 M of them, NaN payloads,
     * infinities, subnormals and both signs included; all 2^32 were checked
     * once) */
    int64_t diff = 0;
    for (uint64_t i = 0; i < (1ull << 32); i += 499) {
        uint32_t b = (uint32_t)i;
        float x, r1, r2;
        memcpy(&x, &b, 4);
        r1 = ci_fp8_e4m3_to_f32(ci_f32_to_fp8_e4m3(x));
        r2 = ci_e4m3_round(x);
        diff += memcmp(&r1, &r2, 4) != 0 && !(isnan(r1) && isnan(r2));
    }
    CHECKF(diff == 0, "ci_e4m3_round: %lld bit patterns differ from the codec", (long long)diff);
}

static void check_qmatmul(ci_backend *be, ci_qweight *h, int n, int with_bias, const char *what) {
    ci_tensor w, x, y, b = {0};
    CHECK_OK(be->ops->qweight_create(be, h, &w));
    CHECK(w.dtype == CI_QW && w.rows == h->rows && w.cols == h->cols);
    CHECK_OK(ci_tensor_alloc(be, CI_F32, n, h->cols, &x));
    CHECK_OK(ci_tensor_alloc(be, CI_F32, n, h->rows, &y));
    float *xs = x.data, *bias = NULL;
    for (int64_t i = 0; i < n * h->cols; i++)
        xs[i] = frand();
    if (with_bias) {
        CHECK_OK(ci_tensor_alloc(be, CI_F32, 1, h->rows, &b));
        bias = b.data;
        for (int64_t i = 0; i < h->rows; i++)
            bias[i] = frand();
    }
    CHECK_OK(be->ops->matmul(be, &x, &w, with_bias ? &b : NULL, &y));
    /* the reference: W8A8 quantizes x at CI_QW_ACT_MIN_ROWS rows and more */
    const int aq = h->act_group && n >= CI_QW_ACT_MIN_ROWS;
    float *row = malloc(sizeof(float) * (size_t)h->cols);
    float *xq = malloc(sizeof(float) * (size_t)(n * h->cols));
    memcpy(xq, xs, sizeof(float) * (size_t)(n * h->cols));
    if (aq)
        for (int i = 0; i < n; i++)
            ci_qweight_quant_act(h, xq + i * h->cols);
    double worst = 0, unq = 0; /* unq: distance from the unquantized-x result */
    for (int64_t r = 0; r < h->rows; r++) {
        ci_qweight_dequant_row(h, r, row);
        for (int i = 0; i < n; i++) {
            double ref = bias ? bias[r] : 0, mag = fabs(ref), plain = ref;
            for (int64_t c = 0; c < h->cols; c++) {
                ref += (double)row[c] * xq[i * h->cols + c];
                plain += (double)row[c] * xs[i * h->cols + c];
                mag += fabs((double)row[c] * xq[i * h->cols + c]);
            }
            double got = ((float *)y.data)[i * h->rows + r];
            double e = fabs(got - ref) / (mag + 1e-6), u = fabs(got - plain) / (mag + 1e-6);
            if (e > worst) worst = e;
            if (u > unq) unq = u;
        }
    }
    CHECKF(worst < 1e-5, "%s n=%d: relative error %.3g", what, n, worst);
    /* quantized activations move the result well past rounding */
    if (aq) CHECKF(unq > 1e-3, "%s n=%d: activations not quantized (%.3g)", what, n, unq);
    free(xq);
    free(row);
    ci_tensor_free(be, &x);
    ci_tensor_free(be, &y);
    if (with_bias) ci_tensor_free(be, &b);
    be->ops->qweight_free(be, &w);
}

/* ci_qweight_shard: a tensor-parallel share dequantizes to exactly the
 * full weight's values at its rows and columns, for every case (act order
 * across parts, groups split between shares or whole, FP8 blocks, one
 * group per row); bad ranges are refused */
static int64_t shard_check(const ci_qweight *h, const ci_qshard *sh) {
    ci_qweight o;
    ci_status s = ci_qweight_shard(h, sh, &o);
    CHECK_OK(s);
    if (s.code) return 1;
    float *full = malloc(sizeof(float) * (size_t)h->cols),
          *part = malloc(sizeof(float) * (size_t)o.cols);
    int64_t bad = 0, orow = 0;
    const int64_t c0 = sh->nc > 0 ? sh->c0 : 0;
    for (int p = 0; p < h->nparts; p++) {
        const int64_t size = h->part_row0[p + 1] - h->part_row0[p];
        const int64_t r0 = sh->nr[0] > 0 ? sh->r0[p] : 0, nr = sh->nr[0] > 0 ? sh->nr[p] : size;
        bad += o.part_row0[p] != orow;
        for (int64_t i = 0; i < nr; i++, orow++) {
            ci_qweight_dequant_row(h, h->part_row0[p] + r0 + i, full);
            ci_qweight_dequant_row(&o, orow, part);
            bad += memcmp(full + c0, part, sizeof(float) * (size_t)o.cols) != 0;
        }
    }
    bad += orow != o.rows;
    free(full);
    free(part);
    ci_qweight_host_free(&o);
    return bad;
}

static void test_shard(void) {
    for (size_t k = 0; k < QWT_NCASES; k++) {
        ci_qweight h = make_case(&k_qwt_cases[k]);
        ci_qshard rows = {{0}, {0}, 0, 0};
        for (int p = 0; p < h.nparts; p++) {
            const int64_t size = h.part_row0[p + 1] - h.part_row0[p];
            rows.r0[p] = size / 4;
            rows.nr[p] = size / 2 > 0 ? size / 2 : 1;
        }
        const int64_t C = h.cols, gs = h.group_size, e = C / 4 & ~(int64_t)1;
        const int64_t cols[][2] = {{0, C / 2 & ~(int64_t)1},
                                   {e, C / 2 & ~(int64_t)1},
                                   {2, C - 4},
                                   {C - e, e},
                                   {gs < C ? gs : 0, gs < C ? C - gs : C}};
        int64_t bad = shard_check(&h, &rows);
        for (size_t j = 0; j < sizeof cols / sizeof cols[0]; j++) {
            ci_qshard sc = {{0}, {0}, cols[j][0], cols[j][1]};
            if (sc.nc > 0) bad += shard_check(&h, &sc);
        }
        CHECKF(bad == 0, "shard of %s: %lld rows differ from the full weight's",
               k_qwt_cases[k].what, (long long)bad);
        /* bad ranges: past the columns, odd INT4 bounds, rows past a part */
        ci_qweight o;
        ci_qshard b1 = {{0}, {0}, C - 2, 4};
        CHECK(ci_qweight_shard(&h, &b1, &o).code == CI_ERR_INVALID);
        if (h.format == CI_QW_INT4) {
            ci_qshard b2 = {{0}, {0}, 1, 2};
            CHECK(ci_qweight_shard(&h, &b2, &o).code == CI_ERR_INVALID);
        }
        ci_qshard b3 = rows;
        b3.nr[0] = h.part_row0[1] + 1;
        CHECK(ci_qweight_shard(&h, &b3, &o).code == CI_ERR_INVALID);
        free_qw(&h);
    }
}

static void test_qmatmul(void) {
    ci_backend *be;
    ci_backend_options o = {.num_threads = 2};
    CHECK_OK(ci_backend_create("cpu", &o, &be));
    int ns[] = {1, 3, 17, 40, 5};
    for (size_t k = 0; k < QWT_NCASES; k++) {
        ci_qweight h = make_case(&k_qwt_cases[k]);
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
            check_qmatmul(be, &h, ns[j], (int)(j & 1), k_qwt_cases[k].what);
        if (h.format == CI_QW_FP8 &&
            k_qwt_cases[k].act < 0) { /* per token: a static scale (AutoFP8) */
            h.act_scale = 0.5f / 448.0f;
            for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
                check_qmatmul(be, &h, ns[j], (int)(j & 1), "fp8 w8a8, a static activation scale");
        }
        free_qw(&h);
    }
    /* INT8 per channel (the shared cases have group scales and one W8A8
     * layout): weight-only, fused parts, and W8A8 with per-token INT8
     * activations (n >= 5); 96 columns decode on the AVX-512 loop where
     * there is one, 48 on AVX2's */
    for (int a8 = 0; a8 < 3; a8++) {
        ci_qweight h = a8 == 2 ? make_qw(CI_QW_INT8, 32, 48, 48, 2, 0)
                               : make_qw(CI_QW_INT8, 48, 96, 96, a8 ? 1 : 3, 0);
        if (a8 == 1) {
            h.act_group = h.cols;
            CHECK(ci_qweight_act_ok(&h, h.cols, 0));
        }
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
            check_qmatmul(be, &h, ns[j], (int)(j & 1),
                          a8 == 1   ? "int8 w8a8 per token"
                          : a8 == 2 ? "int8 48 columns"
                                    : "int8 3 parts");
        free_qw(&h);
    }
    /* a malformed description is refused */
    ci_qweight bad = make_qw(CI_QW_INT4, 8, 16, 8, 1, 0);
    bad.ngroups = 0;
    ci_tensor t;
    CHECK(be->ops->qweight_create(be, &bad, &t).code == CI_ERR_INVALID);
    free_qw(&bad);
    ci_backend_destroy(be);
}

/* config.json with a quantization_config: parse result, or the error's field. */
static ci_status parse_qc(const char *qc, ci_model_config *c) {
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"architectures\": [\"Qwen2ForCausalLM\"], \"vocab_size\": 64, \"hidden_size\": "
             "32, \"intermediate_size\": 64, \"num_hidden_layers\": 1, "
             "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
             "\"quantization_config\": %s}",
             qc);
    return ci_config_parse(buf, c);
}

static void expect_refused(const char *qc, const char *field) {
    ci_model_config c;
    ci_status s = parse_qc(qc, &c);
    CHECKF(s.code != CI_OK && strstr(s.msg, field) && !strchr(s.msg, '\n'),
           "%s: got '%s', want a line naming %s", qc, s.msg, field);
}

static void test_config(void) {
    ci_model_config c;
    CHECK_OK(parse_qc("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 32, "
                      "\"desc_act\": true, \"sym\": false, \"checkpoint_format\": \"gptq_v2\"}",
                      &c));
    CHECK(c.quant.method == CI_QUANT_GPTQ && c.quant.group_size == 32 && c.quant.desc_act &&
          !c.quant.sym && c.quant.gptq_v2);
    CHECK_OK(parse_qc("{\"quant_method\": \"gptq\", \"bits\": 8, \"group_size\": 128, "
                      "\"desc_act\": false, \"sym\": true}",
                      &c));
    CHECK(c.quant.method == CI_QUANT_GPTQ_INT8 && c.quant.group_size == 128 && c.quant.sym);
    CHECK_OK(parse_qc("{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 128, "
                      "\"zero_point\": true, \"version\": \"GEMM\"}",
                      &c));
    CHECK(c.quant.method == CI_QUANT_AWQ && c.quant.group_size == 128);
    CHECK_OK(parse_qc("{\"quant_method\": \"fp8\", \"activation_scheme\": \"dynamic\", "
                      "\"weight_block_size\": [128, 128]}",
                      &c));
    CHECK(c.quant.method == CI_QUANT_FP8_BLOCK && c.quant.block_n == 128 && c.quant.block_k == 128);
    /* AutoFP8 / vLLM per-tensor "fp8": dynamic -> per-token W8A8; static -> W8A8 with
     * the checkpoint's per-tensor input scales */
    CHECK_OK(parse_qc("{\"quant_method\": \"fp8\", \"activation_scheme\": \"dynamic\"}", &c));
    CHECK(c.quant.method == CI_QUANT_FP8_TENSOR && c.quant.ct_strategy == CI_CT_TENSOR &&
          c.quant.act_group == -1);
    CHECK_OK(parse_qc("{\"quant_method\": \"fp8\", \"activation_scheme\": \"static\", "
                      "\"ignored_layers\": [\"lm_head\"]}",
                      &c));
    CHECK(c.quant.method == CI_QUANT_FP8_TENSOR && c.quant.act_group == -1 && c.quant.act_static);
    /* compressed-tensors static activations: FP8 per tensor only */
    CHECK_OK(parse_qc("{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
                      "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                      "\"float\", \"strategy\": \"tensor\"}, \"input_activations\": {\"num_bits\": "
                      "8, \"type\": \"float\", \"strategy\": \"tensor\", \"dynamic\": false}}}}",
                      &c));
    CHECK(c.quant.method == CI_QUANT_CT_FP8 && c.quant.act_group == -1 && c.quant.act_static);
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
                   "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                   "\"int\", \"strategy\": \"channel\"}, \"input_activations\": {\"num_bits\": "
                   "8, \"type\": \"int\", \"strategy\": \"tensor\", \"dynamic\": false}}}}",
                   "input_activations");
    CHECK_OK(parse_qc(
        "{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
        "\"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": "
        "8, \"type\": \"float\", \"strategy\": \"channel\", \"symmetric\": true, \"dynamic\": "
        "false}, \"input_activations\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": "
        "\"token\", \"dynamic\": true}}}, \"ignore\": [\"lm_head\"]}",
        &c));
    CHECK(c.quant.method == CI_QUANT_CT_FP8 && c.quant.ct_strategy == CI_CT_CHANNEL);
    /* a static FP8 kv_cache_scheme: its per-layer scales are read at load */
    CHECK_OK(parse_qc(
        "{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
        "\"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": "
        "8, \"type\": \"float\", \"strategy\": \"tensor\"}}}, \"kv_cache_scheme\": {\"num_bits\": "
        "8, \"type\": \"float\", \"strategy\": \"tensor\", \"dynamic\": false}}",
        &c));
    CHECK_OK(parse_qc(
        "{\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\", "
        "\"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": "
        "4, \"type\": \"int\", \"strategy\": \"group\", \"group_size\": 128, \"symmetric\": "
        "true, \"dynamic\": false, \"actorder\": \"group\"}, \"input_activations\": null}}}",
        &c));
    CHECK(c.quant.method == CI_QUANT_CT_INT4 && c.quant.group_size == 128 && c.quant.desc_act);
    /* llm-compressor's INT8 W8A8 (int-quantized, dynamic per-token INT8 activations) */
    CHECK_OK(parse_qc(
        "{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
        "\"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": "
        "8, \"type\": \"int\", \"strategy\": \"channel\", \"symmetric\": true, \"dynamic\": "
        "false}, \"input_activations\": {\"num_bits\": 8, \"type\": \"int\", \"strategy\": "
        "\"token\", \"dynamic\": true, \"symmetric\": true}}}}",
        &c));
    CHECK(c.quant.method == CI_QUANT_CT_INT8 && c.quant.ct_strategy == CI_CT_CHANNEL &&
          c.quant.act_group == -1);
    CHECK_OK(parse_qc("null", &c));
    CHECK(c.quant.method == CI_QUANT_NONE);

    expect_refused("{\"bits\": 4}", "quant_method");
    expect_refused("{\"quant_method\": \"bitsandbytes\"}", "quant_method");
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": 3}", "'bits'");
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": 2}", "'bits'");
    /* 8 bits: symmetric only (zero point 128: INT8 codes) */
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": 8, \"sym\": false}", "'sym'");
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 100}",
                   "'group_size'");
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": 4, \"checkpoint_format\": \"marlin\"}",
                   "'checkpoint_format'");
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": 4, \"desc_act\": 1}", "'desc_act'");
    expect_refused("{\"quant_method\": \"awq\", \"bits\": 4, \"version\": \"gemv\"}", "'version'");
    expect_refused("{\"quant_method\": \"awq\", \"bits\": 4, \"zero_point\": false}",
                   "'zero_point'");
    expect_refused("{\"quant_method\": \"fp8\", \"activation_scheme\": \"static\", "
                   "\"weight_block_size\": [128, 128]}",
                   "'activation_scheme'");
    expect_refused("{\"quant_method\": \"fp8\", \"activation_scheme\": \"weird\"}",
                   "'activation_scheme'");
    expect_refused("{\"quant_method\": \"fp8\", \"fmt\": \"e5m2\"}", "'fmt'");
    expect_refused("{\"quant_method\": \"fp8\", \"weight_block_size\": [128]}",
                   "'weight_block_size'");
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"marlin-24\"}",
                   "'format'");
    /* INT8: group strategy, asymmetric weights, FP8 activations */
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
                   "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                   "\"int\", \"strategy\": \"group\", \"group_size\": 128}}}}",
                   "'strategy'");
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
                   "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                   "\"int\", \"strategy\": \"channel\", \"symmetric\": false}}}}",
                   "'symmetric'");
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
                   "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                   "\"int\", \"strategy\": \"channel\"}, \"input_activations\": {\"num_bits\": "
                   "8, \"type\": \"float\", \"strategy\": \"token\", \"dynamic\": true}}}}",
                   "input_activations");
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
                   "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                   "\"float\", \"strategy\": \"tensor\"}}}, \"kv_cache_scheme\": {\"num_bits\": 8, "
                   "\"type\": \"int\", \"strategy\": \"tensor\"}}",
                   "'kv_cache_scheme'");
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
                   "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 4, \"type\": "
                   "\"int\", \"strategy\": \"group\"}}}}",
                   "num_bits 4");
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
                   "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                   "\"float\", \"strategy\": \"channel\", \"symmetric\": false}}}}",
                   "'symmetric'");
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\", "
                   "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                   "\"int\", \"strategy\": \"channel\"}}}}",
                   "num_bits 8");
    expect_refused(
        "{\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\", "
        "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 4, \"type\": "
        "\"int\", \"strategy\": \"group\", \"group_size\": 128}, "
        "\"input_activations\": {\"num_bits\": 8, \"type\": \"float\", \"dynamic\": true}}}}",
        "input_activations");
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
                   "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                   "\"float\", \"strategy\": \"group\"}}}}",
                   "'strategy'");
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
                   "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                   "\"float\", \"strategy\": \"tensor\"}, \"input_activations\": {\"num_bits\": "
                   "8, \"type\": \"float\", \"dynamic\": false}}}}",
                   "input_activations");
    /* W8A8: dynamic activations per token, per 128-column group, none */
    CHECK_OK(parse_qc("{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
                      "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                      "\"float\", \"strategy\": \"channel\"}, \"input_activations\": "
                      "{\"num_bits\": 8, \"type\": \"float\", \"dynamic\": true, "
                      "\"strategy\": \"token\"}}}}",
                      &c));
    CHECK(c.quant.act_group == -1);
    CHECK_OK(parse_qc("{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
                      "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                      "\"float\", \"strategy\": \"block\", \"block_structure\": [128, 128]}, "
                      "\"input_activations\": {\"num_bits\": 8, \"type\": \"float\", "
                      "\"dynamic\": true, \"strategy\": \"group\", \"group_size\": 128}}}}",
                      &c));
    CHECK(c.quant.act_group == 128 && c.quant.block_n == 128);
    CHECK_OK(parse_qc("{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
                      "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                      "\"float\", \"strategy\": \"channel\"}}}}",
                      &c));
    CHECK(c.quant.act_group == 0);
    CHECK_OK(parse_qc("{\"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]}", &c));
    CHECK(c.quant.act_group == 128);
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
                   "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                   "\"float\", \"strategy\": \"channel\"}, \"input_activations\": "
                   "{\"num_bits\": 8, \"type\": \"float\", \"dynamic\": true, "
                   "\"strategy\": \"group\", \"group_size\": 64}}}}",
                   "'group_size'");
    expect_refused("{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
                   "\"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                   "\"float\", \"strategy\": \"channel\"}, \"input_activations\": "
                   "{\"num_bits\": 8, \"type\": \"float\", \"dynamic\": true, "
                   "\"strategy\": \"head\"}}}}",
                   "'strategy'");
}

int main(void) {
    test_fp8_codec();
    test_qmatmul();
    test_shard();
    test_config();
    return test_finish("test_quant_ops");
}
