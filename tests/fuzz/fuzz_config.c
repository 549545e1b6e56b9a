/* fuzz_config.c — libFuzzer harness for the config.json parser.
 *
 * Any text must either be rejected with a message or give a config that is
 * self-consistent; then the RoPE inverse frequencies of that config are
 * computed (bounded sizes) so UBSan sees the numeric paths too. Seed corpus:
 * tests/fuzz/corpus/config. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/rope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    ci_model_config c;
    ci_status s = ci_config_parse(text, &c);
    free(text);
    if (s.code != CI_OK) {
        if (s.msg[0] == '\0' || !strstr(s.msg, "config.json")) abort();
        return 0;
    }
    if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
        c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads || c.head_dim <= 0 || c.head_dim % 2 ||
        c.intermediate_size <= 0 || c.max_position_embeddings <= 0)
        abort();
    int rot = ci_config_rot_dim(&c);
    if (rot < 2 || rot % 2 || rot > c.head_dim) abort();
    if (rot <= 4096) {
        double *inv = malloc((size_t)rot / 2 * sizeof *inv), ms = 0;
        if (!inv) return 0;
        ci_rope_inv_freq(&c.rope, rot, inv, &ms);
        volatile double sink = ms;
        for (int i = 0; i < rot / 2; i++)
            sink += inv[i];
        (void)sink;
        free(inv);
    }
    return 0;
}
