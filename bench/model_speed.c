/* model_speed.c — prefill and decode throughput of a model on the CPU
 * backend, with the weight-streaming rate decode achieves.
 *
 * usage: bench_model_speed [model_dir] [prompt_tokens] [new_tokens] [threads] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/generate.h"
#include "util/threadpool.h"

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "models/tinyqwen2-code";
    int np = argc > 2 ? atoi(argv[2]) : 256;
    int ng = argc > 3 ? atoi(argv[3]) : 128;
    int nt = argc > 4 ? atoi(argv[4]) : 0;
    ci_backend_options bo = {.num_threads = nt};
    ci_backend *be;
    ci_status s = ci_backend_create("cpu", &bo, &be);
    ci_model *m = NULL;
    if (s.code == CI_OK) s = ci_model_load(dir, be, NULL, &m);
    if (s.code != CI_OK) {
        fprintf(stderr, "error: %s\n", s.msg);
        return 1;
    }
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)np);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(ng > 0 ? ng : 1));
    for (int i = 0; i < np; i++)
        prompt[i] = (int32_t)((i * 7919 + 13) % m->cfg.vocab_size);
    size_t wbytes = 0;
    const ci_weights *w = &m->w;
    for (int l = 0; l < w->num_layers; l++) {
        const ci_layer_weights *L = &w->layers[l];
        const ci_tensor *ts[] = {&L->wqkv, &L->wo, &L->w_gate_up, &L->w_down};
        for (int k = 0; k < 4; k++)
            wbytes += (size_t)(ts[k]->rows * ts[k]->cols) * ci_dtype_size(ts[k]->dtype);
    }
    wbytes += (size_t)(w->lm_head.rows * w->lm_head.cols) * ci_dtype_size(w->lm_head.dtype);
    ci_generate_params gp = {0};
    gp.max_new_tokens = ng;
    gp.sampling = ci_sampling_greedy();
    ci_generate_stats st, best = {0};
    double best_cpu = 1e30;
    for (int r = 0; r < 5; r++) {
        struct timespec c0, c1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        s = ci_generate(m, prompt, np, &gp, out, &st);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) * 1e-9;
        if (cpu < best_cpu) best_cpu = cpu;
        if (s.code != CI_OK) {
            fprintf(stderr, "error: %s\n", s.msg);
            return 1;
        }
        if (r == 0 || st.prefill_s < best.prefill_s) best.prefill_s = st.prefill_s;
        if (r == 0 || st.decode_s < best.decode_s) best.decode_s = st.decode_s;
    }
    double dec = (st.generated_tokens - 1) / best.decode_s;
    printf("threads %d: prefill %d tok: %.0f tok/s; decode %d tok: %.1f tok/s = %.2f GB/s of "
           "matmul weights (%.1f MB/token)\n",
           ci_threadpool_size(NULL) * 0 + (nt ? nt : -1), np, np / best.prefill_s,
           st.generated_tokens, dec, dec * (double)wbytes / 1e9, wbytes / 1e6);
    printf("  CPU time of a whole generate (best of 5): %.3f s = %.1f tokens per CPU-second\n",
           best_cpu, (np + ng) / best_cpu);
    ci_model_free(m);
    ci_backend_destroy(be);
    free(prompt);
    free(out);
    return 0;
}
