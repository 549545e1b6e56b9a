/* The skinny GEMM's work split (src/backend/cuda/stream_k.h), on the CPU:
 * for every shape (small ones exhaustively, the 8B models' GEMMs over 132 /
 * 114 / 78 SMs) the CTA ranges tile [0, units) without gap or overlap,
 * owner() inverts start(), a tile's contributors are the CTAs its units
 * fall in, a tile is split exactly when one CTA's range does not cover it,
 * and no two (CTA, split tile) pairs share a partial slot (slots < 2G: the
 * workspace the backend reserves). */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/stream_k.h"
#include "test.h"

static int check_shape(int tiles, int ksteps, int G) {
    const int units = tiles * ksteps;
    if (G > units) G = units;
    int bad = 0;
    /* ranges: consecutive, non-empty, covering [0, units) */
    for (int c = 0; c < G; c++) {
        const int a = ci_sk_start(c, units, G), b = ci_sk_start(c + 1, units, G);
        if (b <= a) bad++;
        for (int u = a; u < b; u++)
            if (ci_sk_owner(u, units, G) != c) bad++;
    }
    if (ci_sk_start(0, units, G) != 0 || ci_sk_start(G, units, G) != units) bad++;
    /* split tiles: contributors and unique slots */
    unsigned char *used = calloc((size_t)2 * G, 1);
    for (int t = 0; t < tiles; t++) {
        const int clo = ci_sk_owner(t * ksteps, units, G);
        const int chi = ci_sk_owner((t + 1) * ksteps - 1, units, G);
        if (clo < 0 || chi >= G || clo > chi) {
            bad++;
            continue;
        }
        /* as the kernel decides it: a CTA's segment of t is [ka, kb) */
        for (int c = clo; c <= chi; c++) {
            const int a = ci_sk_start(c, units, G), b = ci_sk_start(c + 1, units, G);
            const int ua = a > t * ksteps ? a : t * ksteps;
            const int ub = b < (t + 1) * ksteps ? b : (t + 1) * ksteps;
            if (ub <= ua) bad++; /* every contributor holds a unit of t */
            const int split = ua > t * ksteps || ub < (t + 1) * ksteps;
            if (split != (clo != chi)) bad++;
            if (!split) continue;
            const int s = ci_sk_slot(c, t, units, G, ksteps);
            if (s < 2 * c || s > 2 * c + 1 || used[s]) bad++;
            if (s >= 0 && s < 2 * G) used[s] = 1;
            /* only a range's first or last tile is split */
            if (t != a / ksteps && t != (b - 1) / ksteps) bad++;
        }
    }
    free(used);
    CHECKF(bad == 0, "tiles %d ksteps %d G %d: %d violations", tiles, ksteps, G, bad);
    return bad;
}

int main(void) {
    int shapes = 0;
    for (int tiles = 1; tiles <= 40; tiles++)
        for (int ks = 1; ks <= 24; ks++)
            for (int G = 1; G <= 48; G++, shapes++)
                if (check_shape(tiles, ks, G)) return test_finish("test_stream_k");
    /* Llama-3-8B / Qwen GEMMs at 128- and 256-row tiles: qkv, o, gate|up,
     * down, LM heads (128256, 151936 rows) */
    static const int mk[][2] = {{6144, 4096},  {4096, 4096},   {28672, 4096},
                                {4096, 14336}, {128256, 4096}, {151936, 3584}};
    static const int sms[] = {132, 114, 78, 1, 7};
    for (size_t i = 0; i < sizeof mk / sizeof mk[0]; i++)
        for (int rows = 128; rows <= 256; rows *= 2)
            for (size_t j = 0; j < sizeof sms / sizeof sms[0]; j++, shapes++)
                check_shape((mk[i][0] + rows - 1) / rows, (mk[i][1] + 63) / 64, sms[j]);
    printf("test_stream_k: %d shapes\n", shapes);
    return test_finish("test_stream_k");
}
