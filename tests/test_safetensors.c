/* test_safetensors.c — the demo checkpoint, and every malformed-file case. */
#include <jansson.h>
#include <stdint.h>

#include "model/safetensors.h"
#include "st_writer.h"
#include "test.h"
#include "util/half.h"

static char g_dir[512];

/* Writes DIR/model.safetensors from a header (hlen_field 0: its real length)
 * and data length, opens it and
 * checks the code and that the message holds both substrings. */
static void expect_case(const char *what, const char *header, uint64_t hlen_field, size_t data_len,
                        long truncate_to, ci_code code, const char *sub1, const char *sub2) {
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
    if (hlen_field == 0) hlen_field = strlen(header);
    CHECKF(stw_write_raw(path, header, hlen_field, NULL, data_len, truncate_to), "%s: write", what);
    ci_checkpoint *ck = NULL;
    ci_status s = ci_checkpoint_open(g_dir, &ck);
    CHECKF(s.code == code, "%s: code %s, want %s (%s)", what, ci_code_name(s.code),
           ci_code_name(code), s.msg);
    CHECKF(ck == NULL, "%s: checkpoint returned on error", what);
    CHECKF(strstr(s.msg, "model.safetensors") != NULL, "%s: message lacks file: %s", what, s.msg);
    if (sub1) CHECKF(strstr(s.msg, sub1) != NULL, "%s: message lacks '%s': %s", what, sub1, s.msg);
    if (sub2) CHECKF(strstr(s.msg, sub2) != NULL, "%s: message lacks '%s': %s", what, sub2, s.msg);
    ci_checkpoint_close(ck);
    remove(path);
}

static void test_demo_model(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/models/tinyqwen2-code", test_source_dir());
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t flen = 0;
    char *file = test_read_file(path, &flen);
    if (!file) test_skip("demo model missing");
    CHECK(flen == 13652240);

    ci_checkpoint *ck = NULL;
    CHECK_OK(ci_checkpoint_open(dir, &ck));
    if (!ck) {
        free(file);
        return;
    }
    CHECK(ci_checkpoint_num_tensors(ck) == 74);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | (unsigned char)file[i];
    CHECK(ci_checkpoint_total_bytes(ck) == flen - 8 - hlen);
    for (size_t i = 0; i < ci_checkpoint_num_tensors(ck); i++) {
        const ci_st_tensor *t = ci_checkpoint_tensor(ck, i);
        CHECKF(t->dtype == CI_BF16, "%s not BF16", t->name);
        CHECK(ci_checkpoint_find(ck, t->name) == t);
    }
    CHECK(ci_checkpoint_tensor(ck, 74) == NULL);

    const ci_st_tensor *e = ci_checkpoint_find(ck, "model.embed_tokens.weight");
    CHECK(e && e->ndim == 2 && e->shape[0] == 8192 && e->shape[1] == 256 &&
          e->nbytes == 8192 * 256 * 2);
    const ci_st_tensor *n = ci_checkpoint_find(ck, "model.norm.weight");
    CHECK(n && n->ndim == 1 && n->shape[0] == 256);
    const ci_st_tensor *kb = ci_checkpoint_find(ck, "model.layers.5.self_attn.k_proj.bias");
    CHECK(kb && kb->ndim == 1 && kb->shape[0] == 128);
    CHECK(ci_checkpoint_find(ck, "lm_head.weight") == NULL);
    CHECK(ci_checkpoint_find(ck, "model.layers.6.mlp.up_proj.weight") == NULL);
    CHECK(ci_checkpoint_find(ck, "") == NULL);
    CHECK(strcmp(ci_checkpoint_file_name(ck, 0), "model.safetensors") == 0);

    /* independent header parse: data pointers land where the header says */
    json_t *root = json_loadb(file + 8, (size_t)hlen, 0, NULL);
    CHECK(root != NULL);
    if (root && e) {
        json_t *off =
            json_object_get(json_object_get(root, "model.embed_tokens.weight"), "data_offsets");
        size_t b = (size_t)json_integer_value(json_array_get(off, 0));
        CHECK((const char *)e->data == (const char *)e->data); /* silence */
        CHECK(memcmp(e->data, file + 8 + hlen + b, e->nbytes) == 0);
        uint16_t h0;
        memcpy(&h0, file + 8 + hlen + b, 2);
        uint16_t m0;
        memcpy(&m0, e->data, 2);
        CHECK(h0 == m0);
        CHECK(isfinite(ci_bf16_to_f32(m0)));
    }
    json_decref(root);
    ci_checkpoint_close(ck);
    free(file);
}

static void test_parse_memory(void) {
    /* valid small image, odd header length -> unaligned data */
    const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,3],\"data_offsets\":[8,14]},"
                      "\"z\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[14,14]},"
                      "\"__metadata__\":{\"k\":\"v\"}} ";
    size_t hl = strlen(hdr);
    size_t len = 8 + hl + 14;
    uint8_t *buf = calloc(1, len);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    float v[2] = {1.5f, -2.0f};
    memcpy(buf + 8 + hl, v, 8);
    ci_st_tensor *ts = NULL;
    size_t n = 0;
    CHECK_OK(ci_safetensors_parse(buf, len, "mem.safetensors", &ts, &n));
    CHECK(n == 3);
    if (n == 3) {
        CHECK(strcmp(ts[0].name, "a") == 0 && ts[0].dtype == CI_F32 && ts[0].nbytes == 8);
        float f;
        memcpy(&f, (const uint8_t *)ts[0].data + 4, 4);
        CHECK(f == -2.0f);
        CHECK(strcmp(ts[1].name, "b") == 0 && ts[1].ndim == 2 && ts[1].shape[1] == 3);
        CHECK(ts[2].nbytes == 0);
    }
    ci_safetensors_free_tensors(ts, n);
    /* empty header object is fine */
    const char *e = "{}";
    uint8_t b2[10] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    (void)e;
    CHECK_OK(ci_safetensors_parse(b2, sizeof b2, "empty", &ts, &n));
    CHECK(n == 0);
    ci_safetensors_free_tensors(ts, n);
    /* too short */
    ci_status s = ci_safetensors_parse(b2, 5, "short.safetensors", &ts, &n);
    CHECK(s.code == CI_ERR_IO && strstr(s.msg, "short.safetensors") && strstr(s.msg, "truncated"));
    free(buf);
}

static void test_bad_files(void) {
    const char *good =
        "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
        "\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[16,24]}}";
    /* sanity: the good one opens */
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
    CHECK(stw_write(path, good, 24));
    ci_checkpoint *ck = NULL;
    CHECK_OK(ci_checkpoint_open(g_dir, &ck));
    CHECK(ck && ci_checkpoint_num_tensors(ck) == 2 && ci_checkpoint_total_bytes(ck) == 24);
    ci_checkpoint_close(ck);

    size_t gl = strlen(good);
    expect_case("cut in data", good, gl, 24, (long)(8 + gl + 10), CI_ERR_IO, "'model.norm.weight'",
                "overrun");
    expect_case("cut in header", good, gl, 24, 8 + 20, CI_ERR_IO, "header length", "truncated");
    expect_case("cut in length", good, gl, 24, 5, CI_ERR_IO, "truncated", NULL);
    expect_case("empty file", good, gl, 24, 0, CI_ERR_IO, "truncated", NULL);
    expect_case("header length > file", good, 1u << 30, 24, -1, CI_ERR_IO,
                "header length 1073741824", NULL);
    expect_case("header length huge", good, UINT64_MAX, 24, -1, CI_ERR_IO, "exceeds", NULL);
    expect_case("bad JSON", "{\"w\":{\"dtype\":\"F32\",", 20, 0, -1, CI_ERR_FORMAT, "JSON", NULL);
    expect_case("not an object", "[1,2,3]", 7, 0, -1, CI_ERR_FORMAT, "JSON object", NULL);
    expect_case("duplicate key",
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                0, 0, -1, CI_ERR_FORMAT, "JSON", NULL);
    expect_case(
        "offsets overrun",
        "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,99999999]}}",
        0, 16, -1, CI_ERR_IO, "tensor 'model.norm.weight'", "[0, 99999999] overrun");
    expect_case("begin > end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}",
                0, 16, -1, CI_ERR_FORMAT, "tensor 'w'", "begin > end");
    expect_case("span mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                0, 16, -1, CI_ERR_FORMAT, "tensor 'w'", "needs 12");
    expect_case("overlap",
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                0, 16, -1, CI_ERR_FORMAT, "overlaps", "'a'");
    expect_case("overlap contained",
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
                0, 16, -1, CI_ERR_FORMAT, "overlaps tensor 'a'", NULL);
    expect_case("unsupported dtype",
                "{\"pos\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 0, 16, -1,
                CI_ERR_UNSUPPORTED, "tensor 'pos'", "F64");
    expect_case("unknown dtype",
                "{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 16, -1,
                CI_ERR_FORMAT, "tensor 'w'", "Q4_K");
    expect_case(
        "shape overflow",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}",
        0, 16, -1, CI_ERR_FORMAT, "tensor 'w'", "overflow");
    expect_case(
        "shape bytes overflow",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 0, 16,
        -1, CI_ERR_FORMAT, "tensor 'w'", "overflow");
    expect_case("negative shape",
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}}", 0, 16, -1,
                CI_ERR_FORMAT, "tensor 'w'", "shape");
    expect_case("missing offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, 16, -1,
                CI_ERR_FORMAT, "tensor 'w'", "data_offsets");
    expect_case("offsets not ints",
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 0, 16, -1,
                CI_ERR_FORMAT, "tensor 'w'", "data_offsets");
    expect_case("entry not object", "{\"w\":3}", 0, 0, -1, CI_ERR_FORMAT, "tensor 'w'", NULL);
    expect_case("missing dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4, -1,
                CI_ERR_FORMAT, "tensor 'w'", "dtype");
}

static void test_missing(void) {
    ci_checkpoint *ck = NULL;
    ci_status s = ci_checkpoint_open(g_dir, &ck);
    CHECK(s.code == CI_ERR_IO && strstr(s.msg, "model.safetensors") &&
          strstr(s.msg, "No such file"));
    CHECK(ck == NULL);
}

static void test_sharded(void) {
    char p[700];
    stw_tensor s1[] = {{"model.embed_tokens.weight", "F32", 2, {4, 2}},
                       {"model.norm.weight", "BF16", 1, {2}}};
    stw_tensor s2[] = {{"lm_head.weight", "F32", 2, {4, 2}}, {"extra", "F32", 1, {3}}};
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", g_dir);
    CHECK(stw_build(p, s1, 2));
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", g_dir);
    CHECK(stw_build(p, s2, 2));
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", g_dir);
    CHECK(stw_write_text(p, "{\"metadata\":{\"total_size\":56},\"weight_map\":{"
                            "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\","
                            "\"lm_head.weight\":\"model-00002-of-00002.safetensors\","
                            "\"model.norm.weight\":\"model-00001-of-00002.safetensors\"}}"));
    ci_checkpoint *ck = NULL;
    CHECK_OK(ci_checkpoint_open(g_dir, &ck));
    if (ck) {
        CHECK(ci_checkpoint_num_tensors(ck) == 3);
        const ci_st_tensor *a = ci_checkpoint_find(ck, "model.embed_tokens.weight");
        const ci_st_tensor *b = ci_checkpoint_find(ck, "lm_head.weight");
        const ci_st_tensor *c = ci_checkpoint_find(ck, "model.norm.weight");
        CHECK(a && b && c && a->file_index == c->file_index && a->file_index != b->file_index);
        CHECK(ci_checkpoint_find(ck, "extra") == NULL); /* not in weight_map */
        CHECK(ci_checkpoint_total_bytes(ck) == 32 + 32 + 4);
        if (b) {
            float f;
            memcpy(&f, (const char *)b->data + 4, 4);
            CHECK(f == stw_value(0, 1));
            CHECK(strcmp(ci_checkpoint_file_name(ck, b->file_index),
                         "model-00002-of-00002.safetensors") == 0);
        }
        ci_checkpoint_close(ck);
    }

    /* a tensor missing from its shard */
    CHECK(stw_write_text(p, "{\"weight_map\":{"
                            "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\","
                            "\"lm_head.weight\":\"model-00001-of-00002.safetensors\"}}"));
    ci_status s = ci_checkpoint_open(g_dir, &ck);
    CHECKF(s.code == CI_ERR_FORMAT && strstr(s.msg, "'lm_head.weight'") &&
               strstr(s.msg, "model-00001-of-00002.safetensors"),
           "%s", s.msg);
    CHECK(ck == NULL);

    /* a missing shard */
    CHECK(stw_write_text(p, "{\"weight_map\":{"
                            "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\","
                            "\"lm_head.weight\":\"model-00003-of-00003.safetensors\"}}"));
    s = ci_checkpoint_open(g_dir, &ck);
    CHECKF(s.code == CI_ERR_IO && strstr(s.msg, "model-00003-of-00003.safetensors") &&
               strstr(s.msg, "No such file"),
           "%s", s.msg);

    /* a shard path escaping the directory */
    CHECK(stw_write_text(p, "{\"weight_map\":{\"x\":\"../etc/passwd\"}}"));
    s = ci_checkpoint_open(g_dir, &ck);
    CHECKF(s.code == CI_ERR_FORMAT && strstr(s.msg, "weight_map['x']"), "%s", s.msg);

    /* bad index JSON / no weight_map */
    CHECK(stw_write_text(p, "{\"weight_map\": ["));
    s = ci_checkpoint_open(g_dir, &ck);
    CHECKF(s.code == CI_ERR_FORMAT && strstr(s.msg, "index.json"), "%s", s.msg);
    CHECK(stw_write_text(p, "{\"metadata\":{}}"));
    s = ci_checkpoint_open(g_dir, &ck);
    CHECKF(s.code == CI_ERR_FORMAT && strstr(s.msg, "weight_map"), "%s", s.msg);
    /* a corrupt shard is reported with the shard's name */
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", g_dir);
    const char *lh =
        "{\"lm_head.weight\":{\"dtype\":\"F32\",\"shape\":[4,2],\"data_offsets\":[0,32]}}";
    CHECK(stw_write_raw(p, lh, strlen(lh), NULL, 32, (long)(8 + strlen(lh) + 16)));
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", g_dir);
    CHECK(stw_write_text(
        p, "{\"weight_map\":{\"lm_head.weight\":\"model-00002-of-00002.safetensors\"}}"));
    s = ci_checkpoint_open(g_dir, &ck);
    CHECKF(s.code == CI_ERR_IO &&
               strstr(s.msg, "model-00002-of-00002.safetensors: tensor 'lm_head.weight'"),
           "%s", s.msg);
    remove(p);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", g_dir);
    remove(p);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", g_dir);
    remove(p);
}

int main(void) {
    if (!stw_mkdtemp(g_dir, sizeof g_dir)) {
        fprintf(stderr, "mkdtemp failed\n");
        return 1;
    }
    test_demo_model();
    test_parse_memory();
    test_missing();
    test_bad_files();
    test_sharded();
    stw_rmdir(g_dir);
    return test_finish("test_safetensors");
}
