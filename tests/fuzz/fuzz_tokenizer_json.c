/* fuzz_tokenizer_json.c — libFuzzer harness: arbitrary bytes as
 * tokenizer.json; when they load, encode/decode/stream a few strings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

static void exercise(const ci_tokenizer *tok, const char *text, size_t len) {
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        size_t n = 0;
        ci_status st = ci_tokenizer_encode(tok, text, len, special, &ids, &n);
        if (st.code != CI_OK) continue;
        char *out = NULL;
        size_t ol = 0;
        st = ci_tokenizer_decode(tok, ids, n, special, &out, &ol);
        if (st.code == CI_OK) free(out);
        ci_detok_stream *s = NULL;
        if (ci_detok_stream_create(tok, special, &s).code == CI_OK) {
            const char *p;
            size_t pl;
            for (size_t i = 0; i < n; i++)
                if (ci_detok_stream_put(s, ids[i], &p, &pl).code != CI_OK) break;
            (void)ci_detok_stream_finish(s, &p, &pl);
            ci_detok_stream_free(s);
        }
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ci_tokenizer *tok = NULL;
    ci_status st = ci_tokenizer_load_json((const char *)data, size, NULL, 0, &tok);
    if (st.code != CI_OK) return 0;
    static const char *texts[] = {
        "Hello world! <s>  it's 1234 caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\n\t x",
        "",
        " ",
        "<|endoftext|>a<unk></s>",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        exercise(tok, texts[i], strlen(texts[i]));
    /* decode every id once, plus out-of-range ones */
    int n = ci_tokenizer_vocab_size(tok);
    if (n > 0 && n < 4096) {
        int32_t *all = malloc((size_t)n * sizeof *all);
        size_t k = 0;
        for (int i = 0; i < n; i++)
            if (ci_tokenizer_id_to_token(tok, i)) all[k++] = i;
        char *out = NULL;
        size_t ol;
        if (ci_tokenizer_decode(tok, all, k, false, &out, &ol).code == CI_OK) free(out);
        free(all);
    }
    int32_t bad[2] = {-1, n};
    char *out = NULL;
    size_t ol;
    if (ci_tokenizer_decode(tok, bad, 2, false, &out, &ol).code == CI_OK) free(out);
    ci_tokenizer_free(tok);
    return 0;
}
