/* stream.c — embedding cinfer: load a model, add one prompt, print its
 * tokens as they are generated. Builds against an installed cinfer:
 *
 *   cc stream.c $(pkg-config --cflags --libs cinfer) -o stream
 *   ./stream models/tinyqwen2-code "def fibonacci(n):" 32
 */
#include <cinfer.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPT [MAX_TOKENS]\n", argv[0]);
        return 2;
    }
    cinfer_engine_config cfg = cinfer_engine_config_default();
    cfg.model_dir = argv[1];
    cfg.kv_cache_tokens = 4096;
    cinfer_engine *e;
    cinfer_error err;
    if (cinfer_engine_create(&cfg, &e, &err)) {
        fprintf(stderr, "error: %s\n", err.message);
        return 1;
    }
    cinfer_sampling_params sp = cinfer_sampling_params_default();
    sp.temperature = 0; /* greedy */
    sp.max_tokens = argc > 3 ? atoi(argv[3]) : 32;
    int64_t id;
    if (cinfer_add_request(e, argv[2], NULL, 0, &sp, 0, &id, &err)) {
        fprintf(stderr, "error: %s\n", err.message);
        cinfer_engine_destroy(e);
        return 1;
    }
    int tokens = 0, rc = 0;
    while (cinfer_has_unfinished(e)) {
        const cinfer_output *out;
        int n;
        if (cinfer_step(e, &out, &n, &err)) {
            fprintf(stderr, "error: %s\n", err.message);
            rc = 1;
            break;
        }
        for (int i = 0; i < n; i++) {
            fwrite(out[i].text, 1, out[i].text_len, stdout); /* as it comes */
            fflush(stdout);
            tokens += out[i].num_token_ids;
            if (out[i].finish_reason == CINFER_FINISH_ERROR) rc = 1;
        }
    }
    fprintf(stderr, "\n[%d tokens]\n", tokens);
    cinfer_engine_destroy(e);
    return rc;
}
