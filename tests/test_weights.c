/* test_weights.c — weights mapping with a mock backend: the demo model's
 * values and layout, and synthetic checkpoints for every error. */
#include <jansson.h>

#include "mock_backend.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "st_writer.h"
#include "test.h"

static char g_dir[512];

typedef struct prog {
    size_t last_done, total;
    int calls, monotonic;
} prog;

static void on_progress(size_t done, size_t total, void *user) {
    prog *p = user;
    if (done < p->last_done || done > total) p->monotonic = 0;
    p->last_done = done;
    p->total = total;
    p->calls++;
}

static float row_val(const ci_tensor *t, int64_t r, int64_t c) {
    return ((const float *)t->data)[r * t->cols + c];
}

static float st_val(const ci_st_tensor *t, size_t i) {
    uint16_t h;
    if (t->dtype == CI_F32) {
        float f;
        memcpy(&f, (const char *)t->data + 4 * i, 4);
        return f;
    }
    memcpy(&h, (const char *)t->data + 2 * i, 2);
    return ci_bf16_to_f32(h);
}

static void test_demo(void) {
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/models/tinyqwen2-code", test_source_dir());
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t flen;
    char *file = test_read_file(path, &flen);
    if (!file) test_skip("demo model missing");
    ci_model_config cfg;
    CHECK_OK(ci_config_load(dir, &cfg));
    ci_checkpoint *ck = NULL;
    CHECK_OK(ci_checkpoint_open(dir, &ck));
    if (!ck) {
        free(file);
        return;
    }
    ci_backend be;
    mock_state st;
    mock_backend_init(&be, &st);
    ci_weights w;
    prog p = {0, 0, 0, 1};
    CHECK_OK(ci_weights_load(&be, ck, &cfg, on_progress, &p, &w));
    CHECK(p.calls > 0 && p.monotonic && p.last_done == p.total);
    CHECK(p.total == ci_checkpoint_total_bytes(ck)); /* tied: every tensor is used */

    CHECK(w.num_layers == 6);
    CHECK(w.embed.rows == 8192 && w.embed.cols == 256);
    CHECK(w.lm_head_tied == 1 && w.lm_head.data == w.embed.data);
    CHECK(w.final_norm.rows == 1 && w.final_norm.cols == 256);

    /* embed row 0 == the bf16 values in the file (independent header parse) */
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | (unsigned char)file[i];
    json_t *root = json_loadb(file + 8, (size_t)hlen, 0, NULL);
    json_t *off =
        json_object_get(json_object_get(root, "model.embed_tokens.weight"), "data_offsets");
    size_t b = (size_t)json_integer_value(json_array_get(off, 0));
    for (int i = 0; i < 8; i++) {
        uint16_t h;
        memcpy(&h, file + 8 + hlen + b + 2 * (size_t)i, 2);
        CHECKF(row_val(&w.embed, 0, i) == ci_bf16_to_f32(h), "embed[0][%d]", i);
    }
    /* last row too */
    for (int i = 0; i < 4; i++) {
        uint16_t h;
        memcpy(&h, file + 8 + hlen + b + 2 * ((size_t)8191 * 256 + (size_t)i), 2);
        CHECK(row_val(&w.embed, 8191, i) == ci_bf16_to_f32(h));
    }
    json_decref(root);

    for (int l = 0; l < 6; l += 5) {
        const ci_layer_weights *L = &w.layers[l];
        char n[128];
        const ci_st_tensor *q, *k, *v, *qb, *kb, *vb, *up, *down, *o, *an;
        snprintf(n, sizeof n, "model.layers.%d.self_attn.q_proj.weight", l);
        q = ci_checkpoint_find(ck, n);
        snprintf(n, sizeof n, "model.layers.%d.self_attn.k_proj.weight", l);
        k = ci_checkpoint_find(ck, n);
        snprintf(n, sizeof n, "model.layers.%d.self_attn.v_proj.weight", l);
        v = ci_checkpoint_find(ck, n);
        snprintf(n, sizeof n, "model.layers.%d.self_attn.q_proj.bias", l);
        qb = ci_checkpoint_find(ck, n);
        snprintf(n, sizeof n, "model.layers.%d.self_attn.k_proj.bias", l);
        kb = ci_checkpoint_find(ck, n);
        snprintf(n, sizeof n, "model.layers.%d.self_attn.v_proj.bias", l);
        vb = ci_checkpoint_find(ck, n);
        snprintf(n, sizeof n, "model.layers.%d.mlp.up_proj.weight", l);
        up = ci_checkpoint_find(ck, n);
        snprintf(n, sizeof n, "model.layers.%d.mlp.down_proj.weight", l);
        down = ci_checkpoint_find(ck, n);
        snprintf(n, sizeof n, "model.layers.%d.self_attn.o_proj.weight", l);
        o = ci_checkpoint_find(ck, n);
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
        an = ci_checkpoint_find(ck, n);
        if (!q || !k || !v || !qb || !kb || !vb || !up || !down || !o || !an) {
            CHECK(0);
            continue;
        }
        CHECK(L->wqkv.rows == 512 && L->wqkv.cols == 256);
        CHECK(L->bqkv.rows == 1 && L->bqkv.cols == 512);
        CHECK(L->w_gate_up.rows == 1536 && L->w_gate_up.cols == 256);
        CHECK(L->w_down.rows == 256 && L->w_down.cols == 768);
        CHECK(L->wo.rows == 256 && L->wo.cols == 256);
        CHECK(L->q_norm.data == NULL && L->k_norm.data == NULL);
        for (int c = 0; c < 256; c += 37) {
            CHECK(row_val(&L->wqkv, 0, c) == st_val(q, (size_t)c)); /* q first */
            CHECK(row_val(&L->wqkv, 255, c) == st_val(q, 255 * 256 + (size_t)c));
            CHECK(row_val(&L->wqkv, 256, c) == st_val(k, (size_t)c)); /* then k */
            CHECK(row_val(&L->wqkv, 384, c) == st_val(v, (size_t)c)); /* then v */
            CHECK(row_val(&L->wqkv, 511, c) == st_val(v, 127 * 256 + (size_t)c));
            CHECK(row_val(&L->w_gate_up, 768, c) == st_val(up, (size_t)c)); /* up after gate */
            CHECK(row_val(&L->w_down, 1, c) == st_val(down, 768 + (size_t)c));
            CHECK(row_val(&L->wo, 3, c) == st_val(o, 3 * 256 + (size_t)c));
            CHECK(row_val(&L->attn_norm, 0, c) == st_val(an, (size_t)c));
        }
        CHECK(row_val(&L->bqkv, 0, 0) == st_val(qb, 0));
        CHECK(row_val(&L->bqkv, 0, 255) == st_val(qb, 255));
        CHECK(row_val(&L->bqkv, 0, 256) == st_val(kb, 0));
        CHECK(row_val(&L->bqkv, 0, 384) == st_val(vb, 0));
        CHECK(row_val(&L->bqkv, 0, 511) == st_val(vb, 127));
    }
    ci_weights_free(&be, &w);
    CHECK(st.live == 0);
    ci_checkpoint_close(ck);
    free(file);
}

/* ---- synthetic checkpoints ---------------------------------------------- */

static const char *k_llama_cfg =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":8,\"hidden_size\":4,"
    "\"intermediate_size\":6,\"num_hidden_layers\":2,\"num_attention_heads\":2,"
    "\"num_key_value_heads\":1,\"head_dim\":2,\"rms_norm_eps\":1e-5,\"tie_word_embeddings\":false}";

/* The tensors of that config; qwen3 adds q/k norms. */
static int synth_tensors(stw_tensor *ts, int qk_norm, char names[][96]) {
    int n = 0;
#define ADD(nm, dt, nd, a, b)                                                                      \
    do {                                                                                           \
        snprintf(names[n], 96, "%s", nm);                                                          \
        ts[n] = (stw_tensor){names[n], dt, nd, {a, b}};                                            \
        n++;                                                                                       \
    } while (0)
    ADD("model.embed_tokens.weight", "F32", 2, 8, 4);
    for (int l = 0; l < 2; l++) {
        char nm[96];
#define L(sfx, dt, nd, a, b)                                                                       \
    snprintf(nm, sizeof nm, "model.layers.%d.%s", l, sfx);                                         \
    ADD(nm, dt, nd, a, b)
        L("input_layernorm.weight", "F32", 1, 4, 0);
        L("self_attn.q_proj.weight", "F32", 2, 4, 4);
        L("self_attn.k_proj.weight", "BF16", 2, 2, 4);
        L("self_attn.v_proj.weight", "F32", 2, 2, 4);
        L("self_attn.o_proj.weight", "F32", 2, 4, 4);
        if (qk_norm) {
            L("self_attn.q_norm.weight", "F32", 1, 2, 0);
            L("self_attn.k_norm.weight", "F32", 1, 2, 0);
        }
        L("post_attention_layernorm.weight", "F32", 1, 4, 0);
        L("mlp.gate_proj.weight", "F32", 2, 6, 4);
        L("mlp.up_proj.weight", "F32", 2, 6, 4);
        L("mlp.down_proj.weight", "F32", 2, 4, 6);
#undef L
    }
    ADD("model.norm.weight", "F32", 1, 4, 0);
    ADD("lm_head.weight", "F32", 2, 8, 4);
#undef ADD
    return n;
}

static int find_idx(const stw_tensor *ts, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(ts[i].name, name)) return i;
    return -1;
}

/* Writes the tensors (minus `drop`), loads with cfg_json, returns status. */
static ci_status synth_load(const char *cfg_json, stw_tensor *ts, int n, const char *drop,
                            mock_state *st_out, int fail_after) {
    stw_tensor keep[64];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!drop || strcmp(ts[i].name, drop)) keep[m++] = ts[i];
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
    CHECK(stw_build(path, keep, m));
    ci_model_config cfg;
    ci_status s = ci_config_parse(cfg_json, &cfg);
    CHECK_OK(s);
    if (s.code) return s;
    ci_checkpoint *ck = NULL;
    s = ci_checkpoint_open(g_dir, &ck); /* may fail: e.g. F64 is rejected here */
    if (s.code) return s;
    ci_backend be;
    mock_backend_init(&be, st_out);
    st_out->fail_after = fail_after;
    ci_weights w;
    s = ci_weights_load(&be, ck, &cfg, NULL, NULL, &w);
    if (s.code == CI_OK) {
        CHECK(w.lm_head_tied == cfg.tie_word_embeddings);
        ci_weights_free(&be, &w);
    }
    CHECKF(st_out->live == 0, "leaked %d allocations", st_out->live);
    ci_checkpoint_close(ck);
    return s;
}

static void test_synthetic(void) {
    char names[64][96];
    stw_tensor ts[64];
    int n = synth_tensors(ts, 0, names);
    mock_state st;

    /* the good one, with values checked */
    {
        char path[700];
        snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
        CHECK(stw_build(path, ts, n));
        ci_model_config cfg;
        CHECK_OK(ci_config_parse(k_llama_cfg, &cfg));
        ci_checkpoint *ck = NULL;
        CHECK_OK(ci_checkpoint_open(g_dir, &ck));
        ci_backend be;
        mock_backend_init(&be, &st);
        ci_weights w;
        CHECK_OK(ci_weights_load(&be, ck, &cfg, NULL, NULL, &w));
        CHECK(w.lm_head_tied == 0 && w.lm_head.data != w.embed.data);
        int li = find_idx(ts, n, "lm_head.weight");
        CHECK(row_val(&w.lm_head, 7, 3) == stw_value(li, 31));
        int ki = find_idx(ts, n, "model.layers.1.self_attn.k_proj.weight");
        int vi = find_idx(ts, n, "model.layers.1.self_attn.v_proj.weight");
        /* k is BF16 in the file: value truncated to bf16 */
        CHECK(fabsf(row_val(&w.layers[1].wqkv, 4, 1) - stw_value(ki, 1)) < 0.01f);
        CHECK(row_val(&w.layers[1].wqkv, 6, 2) == stw_value(vi, 2));
        CHECK(w.layers[0].bqkv.data == NULL);
        ci_weights_free(&be, &w);
        CHECK(st.live == 0);
        ci_checkpoint_close(ck);
    }

    ci_status s;
    /* wrong shape */
    int ki = find_idx(ts, n, "model.layers.0.self_attn.k_proj.weight");
    ts[ki].shape[0] = 4;
    s = synth_load(k_llama_cfg, ts, n, NULL, &st, 0);
    CHECKF(s.code == CI_ERR_FORMAT &&
               strstr(s.msg,
                      "model.safetensors: tensor 'model.layers.0.self_attn.k_proj.weight' has "
                      "shape [4, 4], expected [2, 4] (num_key_value_heads*head_dim, hidden_size)"),
           "%s", s.msg);
    ts[ki].shape[0] = 2;
    /* wrong rank of a norm */
    int ni = find_idx(ts, n, "model.norm.weight");
    ts[ni] = (stw_tensor){ts[ni].name, "F32", 2, {1, 4}};
    s = synth_load(k_llama_cfg, ts, n, NULL, &st, 0);
    CHECKF(s.code == CI_ERR_FORMAT &&
               strstr(s.msg, "'model.norm.weight' has shape [1, 4], expected [4]"),
           "%s", s.msg);
    ts[ni] = (stw_tensor){ts[ni].name, "F32", 1, {4, 0}};
    /* wrong dtype */
    int vi = find_idx(ts, n, "model.layers.1.self_attn.v_proj.weight");
    ts[vi].dtype = "I32";
    s = synth_load(k_llama_cfg, ts, n, NULL, &st, 0);
    CHECKF(s.code == CI_ERR_UNSUPPORTED &&
               strstr(s.msg, "'model.layers.1.self_attn.v_proj.weight' has dtype I32"),
           "%s", s.msg);
    ts[vi].dtype = "F64";
    s = synth_load(k_llama_cfg, ts, n, NULL, &st, 0);
    CHECKF(s.code == CI_ERR_UNSUPPORTED && strstr(s.msg, "F64") &&
               strstr(s.msg, "'model.layers.1.self_attn.v_proj.weight'"),
           "%s", s.msg);
    ts[vi].dtype = "F32";
    /* missing tensor */
    s = synth_load(k_llama_cfg, ts, n, "model.layers.1.mlp.up_proj.weight", &st, 0);
    CHECKF(s.code == CI_ERR_FORMAT &&
               strstr(s.msg, "'model.layers.1.mlp.up_proj.weight' is missing"),
           "%s", s.msg);
    /* missing lm_head with untied embeddings */
    s = synth_load(k_llama_cfg, ts, n, "lm_head.weight", &st, 0);
    CHECKF(s.code == CI_ERR_FORMAT && strstr(s.msg, "'lm_head.weight'") &&
               strstr(s.msg, "tie_word_embeddings"),
           "%s", s.msg);
    /* tied: lm_head absent is fine */
    char tied[1024];
    snprintf(tied, sizeof tied, "%.*s,\"tie_word_embeddings\":true}",
             (int)(strstr(k_llama_cfg, ",\"tie_word_embeddings\"") - k_llama_cfg), k_llama_cfg);
    s = synth_load(tied, ts, n, "lm_head.weight", &st, 0);
    CHECK_OK(s);
    /* o_proj bias present -> unsupported */
    {
        stw_tensor t2[64];
        memcpy(t2, ts, sizeof(stw_tensor) * (size_t)n);
        t2[n] = (stw_tensor){"model.layers.0.self_attn.o_proj.bias", "F32", 1, {4}};
        s = synth_load(k_llama_cfg, t2, n + 1, NULL, &st, 0);
        CHECKF(s.code == CI_ERR_UNSUPPORTED && strstr(s.msg, "o_proj.bias"), "%s", s.msg);
    }
    /* backend failure part-way: error returned, nothing leaked */
    for (int fa = 1; fa <= 12; fa += 5) {
        s = synth_load(k_llama_cfg, ts, n, NULL, &st, fa);
        CHECKF(s.code == CI_ERR_BACKEND && strstr(s.msg, "loading tensor"), "%s", s.msg);
    }

    /* qwen3: q/k norms */
    const char *q3 = "{\"architectures\":[\"Qwen3ForCausalLM\"],\"vocab_size\":8,\"hidden_size\":4,"
                     "\"intermediate_size\":6,\"num_hidden_layers\":2,\"num_attention_heads\":2,"
                     "\"num_key_value_heads\":1,\"head_dim\":2,\"tie_word_embeddings\":false}";
    char names3[64][96];
    stw_tensor t3[64];
    int n3 = synth_tensors(t3, 1, names3);
    s = synth_load(q3, t3, n3, NULL, &st, 0);
    CHECK_OK(s);
    s = synth_load(q3, t3, n3, "model.layers.1.self_attn.k_norm.weight", &st, 0);
    CHECKF(s.code == CI_ERR_FORMAT &&
               strstr(s.msg, "'model.layers.1.self_attn.k_norm.weight' is missing"),
           "%s", s.msg);
    {
        char path[700];
        snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
        CHECK(stw_build(path, t3, n3));
        ci_model_config cfg;
        CHECK_OK(ci_config_parse(q3, &cfg));
        ci_checkpoint *ck = NULL;
        CHECK_OK(ci_checkpoint_open(g_dir, &ck));
        ci_backend be;
        mock_backend_init(&be, &st);
        ci_weights w;
        CHECK_OK(ci_weights_load(&be, ck, &cfg, NULL, NULL, &w));
        int qn = find_idx(t3, n3, "model.layers.1.self_attn.q_norm.weight");
        CHECK(w.layers[1].q_norm.rows == 1 && w.layers[1].q_norm.cols == 2);
        CHECK(row_val(&w.layers[1].q_norm, 0, 1) == stw_value(qn, 1));
        ci_weights_free(&be, &w);
        CHECK(st.live == 0);
        ci_checkpoint_close(ck);
    }
}

/* The synthetic llama split over two shards; then with one tensor unmapped. */
static void test_sharded(void) {
    char names[64][96];
    stw_tensor ts[64];
    int n = synth_tensors(ts, 0, names);
    int h = n / 2;
    char path[700];
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", g_dir);
    CHECK(stw_build(path, ts, h));
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", g_dir);
    CHECK(stw_build(path, ts + h, n - h));
    for (int drop = 0; drop < 2; drop++) {
        char idx[8192];
        size_t len = (size_t)snprintf(idx, sizeof idx, "{\"weight_map\":{");
        for (int i = 0; i < n; i++) {
            if (drop && !strcmp(ts[i].name, "model.layers.1.mlp.down_proj.weight")) continue;
            len += (size_t)snprintf(idx + len, sizeof idx - len,
                                    "%s\"%s\":\"model-0000%d-of-00002.safetensors\"",
                                    len > 15 ? "," : "", ts[i].name, i < h ? 1 : 2);
        }
        snprintf(idx + len, sizeof idx - len, "}}");
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", g_dir);
        CHECK(stw_write_text(path, idx));
        ci_model_config cfg;
        CHECK_OK(ci_config_parse(k_llama_cfg, &cfg));
        ci_checkpoint *ck = NULL;
        CHECK_OK(ci_checkpoint_open(g_dir, &ck));
        ci_backend be;
        mock_state st;
        mock_backend_init(&be, &st);
        ci_weights w;
        ci_status s = ci_weights_load(&be, ck, &cfg, NULL, NULL, &w);
        if (!drop) {
            CHECK_OK(s);
            int li = find_idx(ts, n, "lm_head.weight");
            CHECK(s.code == CI_OK && row_val(&w.lm_head, 7, 3) == stw_value(li - h, 31));
            if (s.code == CI_OK) ci_weights_free(&be, &w);
        } else {
            CHECKF(s.code == CI_ERR_FORMAT &&
                       strstr(s.msg, "model.safetensors.index.json: tensor "
                                     "'model.layers.1.mlp.down_proj.weight' is missing"),
                   "%s", s.msg);
        }
        CHECK(st.live == 0);
        ci_checkpoint_close(ck);
    }
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", g_dir);
    remove(path);
}

int main(void) {
    if (!stw_mkdtemp(g_dir, sizeof g_dir)) return 1;
    test_demo();
    test_synthetic();
    test_sharded();
    stw_rmdir(g_dir);
    return test_finish("test_weights");
}
