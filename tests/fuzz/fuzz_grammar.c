/* fuzz_grammar.c — libFuzzer harness for the grammar compilers and the
 * matcher. The first byte picks the source (GBNF, regex, JSON Schema), the
 * rest is its text. A text must either be rejected with a message or
 * compile; a compiled grammar is then walked over a small vocabulary (every
 * byte, some multi-byte tokens) for a few steps, taking the first allowed
 * token each time: it must be accepted, and EOS must be allowed exactly
 * when the matcher can end. Seed corpus: tests/fuzz/corpus/grammar. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

static ci_grammar_vocab *vocab(void) {
    static ci_grammar_vocab *v;
    if (v) return v;
    static const char *multi[] = {"{\"",      "\":",      "\",",  "true", "null", "ab",
                                  "\xc3\xa9", "\xe2\x82", "\xac", " \"",  "12"};
    enum { N = 256 + sizeof multi / sizeof multi[0] + 1 };
    static uint8_t bytes[256];
    const uint8_t *p[N];
    uint32_t len[N];
    for (int i = 0; i < 256; i++) {
        bytes[i] = (uint8_t)i;
        p[i] = &bytes[i];
        len[i] = 1;
    }
    for (size_t k = 0; k < sizeof multi / sizeof multi[0]; k++) {
        p[256 + k] = (const uint8_t *)multi[k];
        len[256 + k] = (uint32_t)strlen(multi[k]);
    }
    p[N - 1] = NULL; /* EOS */
    len[N - 1] = 0;
    int32_t eos = N - 1;
    if (ci_grammar_vocab_create(p, len, N, &eos, 1, &v).code != CI_OK) abort();
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size || size > 4096) return 0;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    ci_grammar *g = NULL;
    char err[256] = "";
    ci_status s = data[0] % 3 == 0   ? ci_grammar_from_gbnf(text, n, &g, err, sizeof err)
                  : data[0] % 3 == 1 ? ci_grammar_from_regex(text, n, &g, err, sizeof err)
                                     : ci_grammar_from_json_schema(text, n, &g, err, sizeof err);
    if (s.code != CI_OK) {
        if (g || !err[0] || strcmp(err, s.msg)) abort();
        return 0;
    }
    if (!g) abort();
    ci_grammar_vocab *v = vocab();
    int nv = ci_grammar_vocab_size(v), eos = nv - 1;
    uint32_t mask[(300 + 31) / 32];
    ci_grammar_matcher *m = NULL;
    if (ci_grammar_matcher_create(g, v, &m).code != CI_OK) abort();
    for (int step = 0; step < 24; step++) {
        ci_grammar_matcher_fill_mask(m, mask);
        bool eos_ok = (mask[eos >> 5] >> (eos & 31)) & 1;
        if (eos_ok != (ci_grammar_matcher_can_end(m) != 0)) abort();
        int pick = -1;
        for (int i = (step * 37) % (nv - 1), k = 0; k < nv - 1; k++, i = (i + 1) % (nv - 1))
            if ((mask[i >> 5] >> (i & 31)) & 1) {
                pick = i;
                break;
            }
        if (pick < 0) break;
        if (ci_grammar_matcher_accept(m, pick) != 0) abort();
        if (step % 5 == 4) ci_grammar_matcher_rollback(m, 2);
    }
    ci_grammar_matcher_free(m);
    ci_grammar_free(g);
    return 0;
}
