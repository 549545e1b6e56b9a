/* grammar_test.h — shared by the grammar tests: the demo tokenizer as a
 * grammar vocabulary, random walks that sample allowed tokens and hand the
 * decoded text to an independent checker, and token-by-token acceptance of
 * known-valid texts. */
#ifndef CINFER_TESTS_GRAMMAR_TEST_H
#define CINFER_TESTS_GRAMMAR_TEST_H

#include <stdint.h>

#include "grammar/grammar.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

typedef struct gt_vocab {
    ci_tokenizer *tok;
    ci_grammar_vocab *v;
    int32_t eos;
} gt_vocab;

/* Loads DIR's tokenizer; false when absent (the caller skips that part). */
static inline bool gt_vocab_load(const char *dir, gt_vocab *gv) {
    memset(gv, 0, sizeof *gv);
    char path[1100];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fclose(f);
    ci_status s = ci_tokenizer_load(dir, &gv->tok);
    CHECKF(s.code == CI_OK, "%s", s.msg);
    if (s.code != CI_OK) return false;
    gv->eos = ci_tokenizer_eos_id(gv->tok);
    s = ci_grammar_vocab_from_tokenizer(gv->tok, &gv->eos, gv->eos >= 0, &gv->v);
    CHECKF(s.code == CI_OK, "%s", s.msg);
    return s.code == CI_OK;
}

static inline void gt_vocab_free(gt_vocab *gv) {
    ci_grammar_vocab_free(gv->v);
    ci_tokenizer_free(gv->tok);
}

static inline uint64_t gt_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

typedef bool (*gt_check_fn)(const char *text, size_t len, void *ctx);

/* n random walks: each step fills the mask, picks an allowed token (EOS with
 * some probability when allowed, always when it is the only one), accepts it
 * and checks that accept agrees with the mask. A finished text is decoded by
 * the tokenizer and must pass check. Returns how many walks finished. */
static inline int gt_walks(ci_grammar *g, const gt_vocab *gv, int n, int max_tokens, uint64_t seed,
                           gt_check_fn check, void *ctx, const char *what) {
    int nv = ci_grammar_vocab_size(gv->v);
    uint32_t *mask = malloc(((size_t)nv + 31) / 32 * 4);
    int32_t *ids = malloc((size_t)max_tokens * sizeof *ids);
    int32_t *allowed = malloc((size_t)nv * sizeof *allowed);
    int finished = 0;
    uint64_t rs = seed * 2654435761u + 1;
    for (int w = 0; w < n; w++) {
        ci_grammar_matcher *m = NULL;
        CHECK_OK(ci_grammar_matcher_create(g, gv->v, &m));
        if (!m) break;
        int nt = 0;
        bool done = false;
        while (nt < max_tokens) {
            ci_grammar_matcher_fill_mask(m, mask);
            int na = 0;
            bool eos_ok = false;
            for (int i = 0; i < nv; i++) {
                if (!((mask[i >> 5] >> (i & 31)) & 1)) continue;
                if (i == gv->eos)
                    eos_ok = true;
                else
                    allowed[na++] = i;
            }
            CHECKF(eos_ok == (ci_grammar_matcher_can_end(m) != 0), "%s: EOS in mask != can_end",
                   what);
            if (!na && !eos_ok) {
                CHECKF(0, "%s: walk %d: dead end after %d tokens", what, w, nt);
                break;
            }
            if (!na) CHECK(ci_grammar_matcher_is_done(m));
            if (eos_ok && (!na || gt_rand(&rs) % 100 < (uint64_t)(15 + 60 * nt / max_tokens))) {
                CHECK(ci_grammar_matcher_accept(m, gv->eos) == 0);
                CHECK(ci_grammar_matcher_is_done(m));
                done = true;
                break;
            }
            int32_t id = allowed[gt_rand(&rs) % (uint64_t)na];
            int rc = ci_grammar_matcher_accept(m, id);
            CHECKF(rc == 0, "%s: token %d in the mask was rejected", what, (int)id);
            if (rc) break;
            ids[nt++] = id;
        }
        if (done) {
            char *text = NULL;
            size_t len = 0;
            CHECK_OK(ci_tokenizer_decode(gv->tok, ids, (size_t)nt, true, &text, &len));
            bool ok = text && check(text, len, ctx);
            CHECKF(ok, "%s: walk %d produced an invalid text: [%s]", what, w, text ? text : "");
            free(text);
            finished++;
        }
        ci_grammar_matcher_free(m);
    }
    free(mask);
    free(ids);
    free(allowed);
    return finished;
}

/* Tokenizes text and feeds it token by token: each token must be in the
 * mask and accepted; at the end EOS must be allowed. */
static inline bool gt_accepts_tokens(ci_grammar *g, const gt_vocab *gv, const char *text) {
    int32_t *ids = NULL;
    size_t n = 0;
    ci_status s = ci_tokenizer_encode(gv->tok, text, strlen(text), false, &ids, &n);
    if (s.code != CI_OK) return false;
    int nv = ci_grammar_vocab_size(gv->v);
    uint32_t *mask = malloc(((size_t)nv + 31) / 32 * 4);
    ci_grammar_matcher *m = NULL;
    bool ok = ci_grammar_matcher_create(g, gv->v, &m).code == CI_OK;
    for (size_t i = 0; ok && i < n; i++) {
        ci_grammar_matcher_fill_mask(m, mask);
        ok =
            ((mask[ids[i] >> 5] >> (ids[i] & 31)) & 1) && ci_grammar_matcher_accept(m, ids[i]) == 0;
    }
    if (ok) {
        ci_grammar_matcher_fill_mask(m, mask);
        ok = gv->eos < 0 || ((mask[gv->eos >> 5] >> (gv->eos & 31)) & 1);
    }
    ci_grammar_matcher_free(m);
    free(mask);
    free(ids);
    return ok;
}

/* The grammar accepts text fed as raw bytes, as a complete sentence. */
static inline bool gt_accepts(ci_grammar *g, const gt_vocab *gv, const char *text) {
    ci_grammar_matcher *m = NULL;
    if (ci_grammar_matcher_create(g, gv->v, &m).code != CI_OK) return false;
    bool ok = ci_grammar_matcher_accept_bytes(m, (const uint8_t *)text, strlen(text)) == 0 &&
              ci_grammar_matcher_can_end(m);
    ci_grammar_matcher_free(m);
    return ok;
}

/* A compile that must fail: no grammar, and err names what is wrong. */
static inline void gt_check_error(ci_status s, ci_grammar *g, const char *err, const char *input,
                                  const char *want) {
    CHECKF(s.code != CI_OK && !g, "%s compiled", input);
    CHECKF(strstr(err, want) != NULL, "%s: got [%s] want [%s]", input, err, want);
    CHECK(!strcmp(err, s.msg));
    ci_grammar_free(g);
}

/* fn over the demo tokenizer (the test skips without it) and over the
 * Llama-3 128k (byte-level BPE) and Mistral (SentencePiece with byte
 * fallback: its decoder drops the text's leading space) tokenizers in the
 * shared dir when present. */
static inline void gt_each_vocab(void (*fn)(const gt_vocab *gv, const char *label)) {
    gt_vocab gv;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/tinyqwen2-code", test_source_dir());
    if (!gt_vocab_load(dir, &gv)) test_skip("no demo tokenizer");
    fn(&gv, "tinyqwen2");
    gt_vocab_free(&gv);
    static const char *const shared[] = {"llama3", "mistral"};
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof dir, "%s/tokenizers/%s", test_shared_dir(), shared[k]);
        if (gt_vocab_load(dir, &gv)) {
            fn(&gv, shared[k]);
            gt_vocab_free(&gv);
        } else {
            printf("%s tokenizer absent: that part skipped\n", shared[k]);
        }
    }
}

#endif
