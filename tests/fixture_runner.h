/* fixture_runner.h — runs a tests/data fixture (random-weight checkpoint
 * made by tools/make_fixtures.py with transformers) on a backend and checks
 * transformers' fp32 logits (norm-wise relative error <= 1e-3) and greedy
 * continuations token for token, with one-shot prefill (block 16) and
 * chunked prefill over a cached prefix (blocks 1 and 32, chunks 7 and 13),
 * on a scrambled block table. Shared by test_fixtures.c (CPU) and
 * test_cuda_model.c (CUDA, F32 mode). Include once per test program.
 * OPTIONAL_FIXTURES are checked when their directory exists (made on
 * demand by `tools/make_fixtures.py --only NAME`), else skipped with a
 * message. */
#ifndef CINFER_TESTS_FIXTURE_RUNNER_H
#define CINFER_TESTS_FIXTURE_RUNNER_H

#include <jansson.h>
#include <math.h>

#include "backend/sample_ref.h"
#include "model/model.h"
#include "test.h"

static const char *FIXTURES[] = {"llama", "mistral", "qwen2", "qwen3", "llama_yarn"};
/* sliding-window attention: prompts of 7, 40 and 100 tokens and 48 new
 * tokens with window 32 */
static const char *OPTIONAL_FIXTURES[] = {"mistral_swa", "qwen2_swa"};

/* Norm-wise relative error ||a - b|| / ||b||; NaN anywhere fails. */
static double rel_err(const float *a, json_t *golden, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double g = json_number_value(json_array_get(golden, (size_t)i));
        double d = a[i] - g;
        if (!(d == d)) return INFINITY;
        num += d * d;
        den += g * g;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

typedef struct {
    ci_model *m;
    ci_kv_cache *kv;
    int block_size;
    int32_t *block_table;
    int nblocks;
} runner;

/* Runs tokens [start, start+n) of one sequence whose first `start` tokens are
 * cached; logits for rows listed in want (relative to start). */
static ci_status run_chunk(runner *r, const int32_t *ids, int start, int n, const int32_t *want,
                           int nwant, float *logits) {
    int32_t pos[1024], slots[1024], qs[2] = {0, n}, ctx = start + n;
    for (int i = 0; i < n; i++) {
        int p = start + i;
        pos[i] = p;
        slots[i] = r->block_table[p / r->block_size] * r->block_size + p % r->block_size;
    }
    ci_batch b = {0};
    b.num_tokens = n;
    b.num_seqs = 1;
    b.num_logits = nwant;
    b.max_blocks_per_seq = r->nblocks;
    b.max_query_len = n;
    b.max_context_len = ctx;
    b.token_ids = ids + start;
    b.positions = pos;
    b.query_start = qs;
    b.context_lens = &ctx;
    b.block_tables = r->block_table;
    b.slot_mapping = slots;
    b.logits_indices = want;
    return ci_model_forward(r->m, &b, r->kv, logits);
}

/* Greedy generation of `ngen` tokens after the prompt, prefilling in chunks
 * of `chunk` tokens. */
static ci_status greedy(runner *r, const int32_t *prompt, int plen, int chunk, int ngen,
                        int32_t *out) {
    int vocab = r->m->cfg.vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)vocab);
    int32_t all[1024];
    memcpy(all, prompt, sizeof(int32_t) * (size_t)plen);
    ci_status s = ci_ok();
    for (int start = 0; start < plen && !s.code; start += chunk) {
        int n = plen - start < chunk ? plen - start : chunk;
        int32_t last = n - 1;
        s = run_chunk(r, all, start, n, &last, 1, logits);
    }
    for (int t = 0; t < ngen && !s.code; t++) {
        out[t] = ci_sample_greedy(logits, vocab);
        all[plen + t] = out[t];
        int32_t zero = 0;
        if (t + 1 < ngen) s = run_chunk(r, all, plen + t, 1, &zero, 1, logits);
    }
    free(logits);
    return s;
}

/* Checks fixture `name` on a new backend `device` with options `bo`;
 * `label` prefixes the summary line. */
static void check_fixture(const char *name, const char *device, const ci_backend_options *bo,
                          const char *label) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/tests/data/%s", test_source_dir(), name);
    snprintf(path, sizeof path, "%s/golden.json", dir);
    json_error_t jerr;
    json_t *g = json_load_file(path, 0, &jerr);
    CHECKF(g != NULL, "%s: %s", path, jerr.text);
    if (!g) return;

    ci_backend *be = NULL;
    CHECK_OK(ci_backend_create(device, bo, &be));
    if (!be) {
        json_decref(g);
        return;
    }
    ci_model_options mo = {.max_batch_tokens = 512, .max_logits = 512};
    ci_model *m = NULL;
    ci_status s = ci_model_load(dir, be, &mo, &m);
    CHECKF(s.code == CI_OK, "%s: %s", name, s.msg);
    if (s.code) {
        ci_backend_destroy(be);
        json_decref(g);
        return;
    }
    int vocab = m->cfg.vocab_size;
    /* the per-layer sliding windows transformers applied (SWA fixtures) */
    json_t *jw = json_object_get(g, "layer_windows");
    if (jw) {
        int nl = (int)json_array_size(jw), bad = nl != m->cfg.num_layers;
        for (int l = 0; l < nl && !bad; l++) {
            int w = (int)json_integer_value(json_array_get(jw, (size_t)l));
            if (w >= m->cfg.max_position_embeddings) w = 0; /* masks nothing */
            bad = w != m->cfg.layer_window[l];
        }
        CHECKF(!bad, "%s: layer windows differ from golden.json's layer_windows", name);
    }
    json_t *prompts = json_object_get(g, "prompts");
    int ok_greedy = 0, nprompts = (int)json_array_size(prompts);
    double worst = 0;
    const int block_sizes[] = {16, 1, 32};
    for (int pi = 0; pi < nprompts; pi++) {
        json_t *p = json_array_get(prompts, (size_t)pi);
        json_t *jids = json_object_get(p, "prompt_token_ids");
        json_t *jgreedy = json_object_get(p, "greedy_token_ids");
        int plen = (int)json_array_size(jids), ngen = (int)json_array_size(jgreedy);
        int32_t ids[1024], want[1024], gen[256];
        for (int i = 0; i < plen; i++)
            ids[i] = (int32_t)json_integer_value(json_array_get(jids, i));

        for (int bi = 0; bi < 3; bi++) {
            runner r = {.m = m, .block_size = block_sizes[bi]};
            r.nblocks = (plen + ngen + r.block_size - 1) / r.block_size + 1;
            if (r.nblocks % 7 == 0) r.nblocks++; /* i -> 7 i + 3 must be a permutation */
            r.block_table = malloc(sizeof(int32_t) * (size_t)r.nblocks);
            /* a scrambled physical layout: blocks need not be contiguous */
            for (int i = 0; i < r.nblocks; i++)
                r.block_table[i] = (i * 7 + 3) % r.nblocks;
            CHECK_OK(ci_model_kv_cache_create(m, r.nblocks, r.block_size, &r.kv));

            if (bi == 0) {
                /* logits at the recorded positions, in one prefill */
                json_t *lp = json_object_get(p, "logits_positions");
                int nw = (int)json_array_size(lp);
                for (int i = 0; i < nw; i++)
                    want[i] = (int32_t)json_integer_value(
                        json_object_get(json_array_get(lp, (size_t)i), "pos"));
                want[nw] = plen - 1;
                /* the last row is asked for once even if also listed */
                int nrows = nw > 0 && want[nw - 1] == plen - 1 ? nw : nw + 1;
                float *logits = malloc(sizeof(float) * (size_t)vocab * (size_t)(nw + 1));
                CHECK_OK(run_chunk(&r, ids, 0, plen, want, nrows, logits));
                for (int i = 0; i < nrows; i++) {
                    json_t *gl = i < nw && want[i] != plen - 1
                                     ? json_object_get(json_array_get(lp, (size_t)i), "logits")
                                     : json_object_get(p, "logits_last");
                    double e = rel_err(logits + (size_t)i * (size_t)vocab, gl, vocab);
                    if (e > worst) worst = e;
                    CHECKF(e <= 1e-3, "%s prompt %d row %d: logits rel err %.3g", name, pi, want[i],
                           e);
                }
                free(logits);
            }
            /* greedy: one-shot prefill (block 16), chunked prefill (others) */
            int chunk = bi == 0 ? plen : (bi == 1 ? 7 : 13);
            CHECK_OK(greedy(&r, ids, plen, chunk, ngen, gen));
            int same = 1;
            for (int t = 0; t < ngen; t++)
                if (gen[t] != json_integer_value(json_array_get(jgreedy, (size_t)t))) {
                    CHECKF(0, "%s prompt %d (block %d, chunk %d): token %d is %d, want %lld", name,
                           pi, r.block_size, chunk, t, gen[t],
                           (long long)json_integer_value(json_array_get(jgreedy, (size_t)t)));
                    same = 0;
                    break;
                }
            if (bi == 0) ok_greedy += same;
            CHECK(same);
            ci_kv_cache_destroy(be, r.kv);
            free(r.block_table);
        }
    }
    printf("%sfixture %-10s greedy %d/%d, worst logits rel err %.2e\n", label, name, ok_greedy,
           nprompts, worst);
    ci_model_free(m);
    ci_backend_destroy(be);
    json_decref(g);
}

/* check_fixture on every fixture, and on every optional one whose
 * directory exists */
static void check_all_fixtures(const char *device, const ci_backend_options *bo,
                               const char *label) {
    for (size_t i = 0; i < sizeof FIXTURES / sizeof FIXTURES[0]; i++)
        check_fixture(FIXTURES[i], device, bo, label);
    for (size_t i = 0; i < sizeof OPTIONAL_FIXTURES / sizeof OPTIONAL_FIXTURES[0]; i++) {
        const char *name = OPTIONAL_FIXTURES[i];
        char path[1200];
        snprintf(path, sizeof path, "%s/tests/data/%s/golden.json", test_source_dir(), name);
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            check_fixture(name, device, bo, label);
        } else {
            printf("%sfixture %-10s skipped: no %s (make it with tools/make_fixtures.py "
                   "--only %s --out tests/data)\n",
                   label, name, path, name);
        }
    }
}

#endif
