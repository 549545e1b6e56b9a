/* test_swa.c — sliding-window attention through the model and the engine,
 * with no goldens: models are the tests/data fixtures copied into a temp
 * dir with a sliding window written into config.json.
 *
 * - A window at least as long as every context gives exactly (bit for bit)
 *   the logits of the same model without a window; a short one leaves the
 *   rows before it bit-identical and changes the later ones.
 * - The engine's greedy outputs with a window shorter than the prompts are
 *   the same whether a prompt is prefilled alone in one chunk, in chunks
 *   (small max_num_batched_tokens), over a prefix-cache hit, with other
 *   block sizes, in a mixed batch of prefills and decodes.
 * CINFER_TEST_DEVICE=cuda runs the engine part on the GPU (float32). */
#include <jansson.h>
#include <stdint.h>
#include <sys/stat.h>

#include "engine/engine.h"
#include "engine_test.h"
#include "model/model.h"
#include "st_writer.h"
#include "test.h"

static char tmp_dir[512];
static int ndirs;

static int copy_file(const char *from, const char *to) {
    size_t n;
    char *buf = test_read_file(from, &n);
    if (!buf) return 0;
    FILE *f = fopen(to, "wb");
    int ok = f && fwrite(buf, 1, n, f) == n;
    if (f) ok = fclose(f) == 0 && ok;
    free(buf);
    return ok;
}

/* Copies fixture `name` (config.json + model.safetensors) into a new
 * subdirectory of tmp_dir, with config.json's top-level keys replaced by
 * those of `patch` (JSON object text); out: the new model dir. */
static int make_model(const char *name, const char *patch, char *out, size_t n) {
    char src[1024], from[1200], to[1200];
    snprintf(src, sizeof src, "%s/tests/data/%s", test_source_dir(), name);
    snprintf(out, n, "%s/m%d", tmp_dir, ndirs++);
    if (mkdir(out, 0700) != 0) return 0;
    snprintf(from, sizeof from, "%s/model.safetensors", src);
    snprintf(to, sizeof to, "%s/model.safetensors", out);
    if (!copy_file(from, to)) return 0;
    snprintf(from, sizeof from, "%s/config.json", src);
    json_error_t err;
    json_t *cfg = json_load_file(from, 0, &err), *p = json_loads(patch, 0, &err);
    int ok = cfg && p && json_object_update(cfg, p) == 0;
    snprintf(to, sizeof to, "%s/config.json", out);
    ok = ok && json_dump_file(cfg, to, JSON_INDENT(2)) == 0;
    json_decref(cfg);
    json_decref(p);
    return ok;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { /* an LCG: plenty for random token ids */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}

/* ---- model: logits of one prefill of n tokens, every row ---- */

static float *prefill_logits(const char *dir, const int32_t *ids, int n, int *window_last) {
    ci_backend *be = NULL;
    CHECK_OK(ci_backend_create("cpu", &(ci_backend_options){1, 0, CI_ACT_DEFAULT}, &be));
    if (!be) return NULL;
    ci_model_options mo = {.max_batch_tokens = n, .max_logits = n};
    ci_model *m = NULL;
    ci_status s = ci_model_load(dir, be, &mo, &m);
    CHECKF(s.code == CI_OK, "%s: %s", dir, s.msg);
    float *logits = NULL;
    ci_kv_cache *kv = NULL;
    const int bs = 16, nb = (n + bs - 1) / bs;
    if (m) CHECK_OK(ci_model_kv_cache_create(m, nb, bs, &kv));
    if (kv) {
        *window_last = m->cfg.layer_window[m->cfg.num_layers - 1];
        /* one sequence, every row's logits, blocks in reverse physical order */
        int32_t *a = malloc(sizeof(int32_t) * (size_t)(3 * n + nb)), qs[2] = {0, n}, ctx = n;
        int32_t *pos = a, *slots = a + n, *rows = a + 2 * n, *bt = a + 3 * n;
        for (int i = 0; i < nb; i++)
            bt[i] = nb - 1 - i;
        for (int i = 0; i < n; i++) {
            pos[i] = rows[i] = i;
            slots[i] = bt[i / bs] * bs + i % bs;
        }
        ci_batch b = {n, 1, n, nb, n, n, ids, pos, qs, &ctx, bt, slots, rows, 0, NULL};
        logits = malloc(sizeof(float) * (size_t)n * (size_t)m->cfg.vocab_size);
        CHECK_OK(ci_model_forward(m, &b, kv, logits));
        ci_kv_cache_destroy(be, kv);
        free(a);
    }
    ci_model_free(m);
    ci_backend_destroy(be);
    return logits;
}

/* fixture `name` with no window (base_patch) vs windows: a long one (>= the
 * context) must change nothing, bit for bit; a short one must leave the rows
 * before it alone and change the rest */
static void test_window_logits(const char *name, const char *base_patch, const char *long_patch,
                               const char *short_patch, int short_window) {
    enum { N = 200, V = 512 };
    int32_t ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = (int32_t)(rnd() % V);
    char d0[600], d1[600], d2[600];
    int ok = make_model(name, base_patch, d0, sizeof d0) &&
             make_model(name, long_patch, d1, sizeof d1) &&
             make_model(name, short_patch, d2, sizeof d2);
    CHECKF(ok, "%s: making the model copies", name);
    int w0 = -1, w1 = -1, w2 = -1;
    float *l0 = ok ? prefill_logits(d0, ids, N, &w0) : NULL;
    float *l1 = ok ? prefill_logits(d1, ids, N, &w1) : NULL;
    float *l2 = ok ? prefill_logits(d2, ids, N, &w2) : NULL;
    CHECKF(w0 == 0 && w1 >= N && w2 == short_window, "%s: last layer windows %d %d %d", name, w0,
           w1, w2);
    if (l0 && l1 && l2) {
        CHECKF(!memcmp(l0, l1, sizeof(float) * N * V), "%s: window %d >= context changed logits",
               name, w1);
        int before_same = 1, after_diff = 0;
        for (int r = 0; r < N; r++) {
            int same = !memcmp(l0 + (size_t)r * V, l2 + (size_t)r * V, sizeof(float) * V);
            if (r < short_window)
                before_same &= same;
            else
                after_diff += !same;
        }
        CHECKF(before_same, "%s: window %d changed rows before it", name, short_window);
        CHECKF(after_diff == N - short_window, "%s: window %d changed only %d of %d later rows",
               name, short_window, after_diff, N - short_window);
    }
    free(l0);
    free(l1);
    free(l2);
}

/* ---- engine: the same greedy tokens in every batch composition ---- */

#define NJ 10
#define MT 12

typedef struct out {
    int32_t toks[MT];
    int n;
} out;

static ci_engine *mk_engine(const char *dir, int block_size, int mbt, int prefix) {
    ci_engine_config c = ci_engine_default_config();
    c.model_dir = dir;
    c.block_size = block_size;
    c.max_num_batched_tokens = mbt;
    c.enable_prefix_caching = prefix;
    c.kv_cache_tokens = 4096;
    c.max_num_seqs = 16;
    c.num_threads = 1;
    return test_engine_create(&c, NULL);
}

/* Runs requests [0, n) of prompts together to completion; outputs in res. */
static void run(ci_engine *e, int32_t *const *prompts, const int *lens, int n, out *res) {
    int64_t ids[NJ];
    ci_engine_sampling sp = ci_engine_default_sampling();
    sp.temperature = 0.0f;
    sp.max_tokens = MT;
    sp.ignore_eos = 1;
    for (int i = 0; i < n; i++) {
        res[i].n = 0;
        CHECK_OK(ci_engine_add_request(e, prompts[i], lens[i], &sp, 0, &ids[i]));
    }
    for (int steps = 0; ci_engine_has_unfinished(e) && steps < 10000; steps++) {
        const ci_engine_output *o;
        int no;
        ci_status s = ci_engine_step(e, &o, &no);
        CHECK_OK(s);
        if (s.code) return;
        for (int k = 0; k < no; k++)
            for (int i = 0; i < n; i++)
                if (ids[i] == o[k].request_id)
                    for (int t = 0; t < o[k].num_token_ids && res[i].n < MT; t++)
                        res[i].toks[res[i].n++] = o[k].token_ids[t];
    }
}

static int same(const out *a, const out *b) {
    return a->n == b->n && !memcmp(a->toks, b->toks, sizeof(int32_t) * (size_t)a->n);
}

static void test_engine_invariance(void) {
    const int W = 8; /* shorter than most prompts; shorter and longer than blocks */
    char dir[600], dir_full[600];
    char patch[64];
    snprintf(patch, sizeof patch, "{\"sliding_window\":%d}", W);
    int ok = make_model("mistral", patch, dir, sizeof dir) &&
             make_model("mistral", "{\"sliding_window\":null}", dir_full, sizeof dir_full);
    CHECK(ok);
    if (!ok) return;
    /* prompts: 1 token, lengths up to 70, and three sharing a 40-token prefix */
    int32_t *prompts[NJ], shared[40];
    int lens[NJ];
    for (int i = 0; i < 40; i++)
        shared[i] = (int32_t)(rnd() % 512);
    for (int i = 0; i < NJ; i++) {
        lens[i] = i == 0 ? 1 : i == 1 ? 70 : 2 + (int)(rnd() % 60);
        int sh = i >= NJ - 3;
        if (sh) lens[i] = 40 + 3 + i;
        prompts[i] = malloc(sizeof(int32_t) * (size_t)lens[i]);
        for (int t = 0; t < lens[i]; t++)
            prompts[i][t] = sh && t < 40 ? shared[t] : (int32_t)(rnd() % 512);
    }
    /* reference: each alone, one-chunk prefill, no prefix cache */
    out ref[NJ], got[NJ];
    ci_engine *e = mk_engine(dir, 16, 2048, 0);
    if (e) {
        for (int i = 0; i < NJ; i++) {
            run(e, &prompts[i], &lens[i], 1, &ref[i]);
            CHECK(ref[i].n == MT);
        }
        ci_engine_destroy(e);
    }
    struct {
        int bs, mbt, prefix;
        const char *what;
    } cfgs[] = {
        {16, 2048, 0, "mixed batch, one-chunk prefills"},
        {16, 7, 1, "chunks of 7 tokens"},
        {1, 64, 1, "block 1, chunks of 64"},
        {32, 13, 1, "block 32, chunks of 13"},
        {4, 29, 1, "block 4, chunks of 29"},
    };
    const int ncfg = (int)(sizeof cfgs / sizeof cfgs[0]);
    for (int c = 0; c < ncfg; c++) {
        e = mk_engine(dir, cfgs[c].bs, cfgs[c].mbt, cfgs[c].prefix);
        if (!e) continue;
        if (cfgs[c].prefix) {
            /* one shared-prefix request first: the others hit its blocks */
            run(e, &prompts[NJ - 1], &lens[NJ - 1], 1, &got[NJ - 1]);
            CHECKF(same(&got[NJ - 1], &ref[NJ - 1]), "%s: first shared-prefix request",
                   cfgs[c].what);
        }
        run(e, prompts, lens, NJ, got);
        int diff = 0;
        for (int i = 0; i < NJ; i++)
            if (!same(&got[i], &ref[i])) diff++;
        CHECKF(diff == 0, "%s: %d of %d outputs differ from one-chunk prefill alone", cfgs[c].what,
               diff, NJ);
        ci_engine_metrics m = ci_engine_get_metrics(e);
        if (cfgs[c].prefix)
            CHECKF(m.prefix_cache_hit_tokens >= 3 * 32, "%s: prefix cache hit %lld tokens",
                   cfgs[c].what, (long long)m.prefix_cache_hit_tokens);
        printf("%-32s %d of %d same, prefix hits %lld tokens\n", cfgs[c].what, NJ - diff, NJ,
               (long long)m.prefix_cache_hit_tokens);
        ci_engine_destroy(e);
    }
    /* the window matters: without it some continuation differs */
    e = mk_engine(dir_full, 16, 2048, 0);
    if (e) {
        run(e, prompts, lens, NJ, got);
        int diff = 0;
        for (int i = 0; i < NJ; i++)
            diff += !same(&got[i], &ref[i]);
        CHECKF(diff > 0, "window %d: no output differs from full attention", W);
        printf("full attention instead: %d of %d outputs differ\n", diff, NJ);
        ci_engine_destroy(e);
    }
    for (int i = 0; i < NJ; i++)
        free(prompts[i]);
}

/* The SWA fixtures' transformers goldens through the engine: all prompts in
 * one mixed batch, prefilled in chunks of 7 or 29 tokens (block sizes 4 and
 * 16), then again with every prompt already in the prefix cache (a second
 * copy of each queued after the first finished). Every greedy token must be
 * HF's (tests/data/<name>/golden.json, 48 new tokens, EOS ignored). */
#define GT 48
static void test_fixture_goldens(const char *name) {
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/tests/data/%s", test_source_dir(), name);
    snprintf(path, sizeof path, "%s/golden.json", dir);
    json_t *g = json_load_file(path, 0, NULL);
    if (!g) {
        printf("%s goldens: skipped (make them: python3 tools/make_fixtures.py --only %s)\n", name,
               name);
        return;
    }
    json_t *ps = json_object_get(g, "prompts");
    int np = (int)json_array_size(ps);
    int32_t *prompts[8] = {0}, want[8][GT];
    int lens[8] = {0};
    for (int i = 0; i < np && i < 8; i++) {
        json_t *p = json_array_get(ps, (size_t)i), *ids = json_object_get(p, "prompt_token_ids");
        json_t *gr = json_object_get(p, "greedy_token_ids");
        lens[i] = (int)json_array_size(ids);
        prompts[i] = malloc(sizeof(int32_t) * (size_t)lens[i]);
        for (int k = 0; k < lens[i]; k++)
            prompts[i][k] = (int32_t)json_integer_value(json_array_get(ids, (size_t)k));
        for (int k = 0; k < GT; k++)
            want[i][k] = (int32_t)json_integer_value(json_array_get(gr, (size_t)k));
    }
    const int bsz[2] = {4, 16}, mbt[2] = {7, 29};
    for (int c = 0; c < 2; c++) {
        ci_engine *e = mk_engine(dir, bsz[c], mbt[c], 1);
        if (!e) break;
        for (int pass = 0; pass < 2; pass++) { /* pass 1: prefix-cache hits */
            int64_t ids[8];
            int32_t got[8][GT];
            int n[8] = {0};
            ci_engine_sampling sp = ci_engine_default_sampling();
            sp.temperature = 0.0f;
            sp.max_tokens = GT;
            sp.ignore_eos = 1;
            for (int i = 0; i < np; i++)
                CHECK_OK(ci_engine_add_request(e, prompts[i], lens[i], &sp, 0, &ids[i]));
            for (int steps = 0; ci_engine_has_unfinished(e) && steps < 10000; steps++) {
                const ci_engine_output *o;
                int no;
                if (ci_engine_step(e, &o, &no).code) break;
                for (int k = 0; k < no; k++)
                    for (int i = 0; i < np; i++)
                        if (ids[i] == o[k].request_id)
                            for (int t = 0; t < o[k].num_token_ids && n[i] < GT; t++)
                                got[i][n[i]++] = o[k].token_ids[t];
            }
            for (int i = 0; i < np; i++)
                CHECKF(n[i] == GT && !memcmp(got[i], want[i], sizeof want[i]),
                       "%s prompt %d (len %d, block %d, chunks %d, %s): tokens differ from HF",
                       name, i, lens[i], bsz[c], mbt[c], pass ? "prefix hit" : "cold");
        }
        ci_engine_metrics m = ci_engine_get_metrics(e);
        CHECKF(m.prefix_cache_hit_tokens > 0, "%s: no prefix-cache hit", name);
        ci_engine_destroy(e);
    }
    printf("%s goldens through the engine: %d prompts x %d tokens, mixed batch, chunked, "
           "prefix hits\n",
           name, np, GT);
    for (int i = 0; i < 8; i++)
        free(prompts[i]);
    json_decref(g);
}

int main(void) {
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/tests/data/mistral/model.safetensors", test_source_dir());
    FILE *f = fopen(probe, "rb");
    if (!f) test_skip("no tests/data fixtures");
    fclose(f);
    if (!stw_mkdtemp(tmp_dir, sizeof tmp_dir)) {
        CHECK(0);
        return test_finish("test_swa");
    }
    /* Mistral: every layer; Qwen2: layer 1 only (max_window_layers 1) */
    test_window_logits("mistral", "{\"sliding_window\":null}", "{\"sliding_window\":300}",
                       "{\"sliding_window\":24}", 24);
    test_window_logits("qwen2",
                       "{\"use_sliding_window\":false,\"sliding_window\":null,"
                       "\"layer_types\":null}",
                       "{\"use_sliding_window\":true,\"sliding_window\":300,"
                       "\"max_window_layers\":1,\"layer_types\":null}",
                       "{\"use_sliding_window\":true,\"sliding_window\":24,"
                       "\"layer_types\":[\"full_attention\",\"sliding_attention\"]}",
                       24);
    test_engine_invariance();
    test_fixture_goldens("mistral_swa");
    test_fixture_goldens("qwen2_swa");
    stw_rmdir(tmp_dir);
    return test_finish("test_swa");
}
