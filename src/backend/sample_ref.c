/* sample_ref.c — greedy, temperature / top-k / top-p / min-p sampling with a
 * Philox counter RNG, log-softmax, logit adjustments and top logprobs: the
 * reference math (the CPU backend's sample op calls it; the CUDA kernels in
 * src/backend/cuda/cuda_sampling.cu reproduce it). */
#include "backend/sample_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float v; /* scaled logit, later probability */
    int32_t id;
} cand;

struct ci_sampler {
    int vocab;
    cand *c;
};

ci_sampling_params ci_sampling_greedy(void) {
    ci_sampling_params p = {0.0f, 0, 1.0f, 0.0f, 0};
    return p;
}

ci_status ci_sampler_create(int vocab_size, ci_sampler **out) {
    *out = NULL;
    if (vocab_size <= 0) return ci_errorf(CI_ERR_INVALID, "sampler: vocab size %d", vocab_size);
    ci_sampler *s = calloc(1, sizeof *s);
    if (!s) return ci_errorf(CI_ERR_NOMEM, "sampler: out of memory");
    s->vocab = vocab_size;
    s->c = malloc(sizeof(cand) * (size_t)vocab_size);
    if (!s->c) {
        free(s);
        return ci_errorf(CI_ERR_NOMEM, "sampler: out of memory");
    }
    *out = s;
    return ci_ok();
}

void ci_sampler_free(ci_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s);
}

int32_t ci_sample_greedy(const float *logits, int n) {
    int32_t best = 0;
    float bv = -INFINITY;
    int found = 0;
    for (int i = 0; i < n; i++) {
        if (logits[i] > bv || (!found && logits[i] == bv)) { /* strict: lowest id wins ties */
            bv = logits[i];
            best = i;
            found = 1;
        }
    }
    return best;
}

/* ---- Philox4x32-10 (Salmon et al., Random123) ---- */
static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void ci_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(0xD2511F53u, c0, &hi0, &lo0);
        mulhilo(0xCD9E8D57u, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

double ci_philox_uniform(uint64_t seed, uint64_t step) {
    uint32_t ctr[4] = {(uint32_t)step, (uint32_t)(step >> 32), 0, 0};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t o[4];
    ci_philox4x32_10(ctr, key, o);
    uint64_t bits = ((uint64_t)o[0] << 32 | o[1]) >> 11;
    return (double)bits * (1.0 / 9007199254740992.0);
}

double ci_log_softmax(const float *logits, int n, float *out) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > m) m = logits[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp((double)logits[i] - (double)m);
    double lse = (double)m + log(sum);
    if (out)
        for (int i = 0; i < n; i++)
            out[i] = (float)((double)logits[i] - lse);
    return lse;
}

/* ---- candidate filtering ---- */

/* a ranks before b: larger value, then lower id */
static inline int before(const cand *a, const cand *b) {
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (before(a, b)) return -1;
    if (before(b, a)) return 1;
    return 0;
}

/* Rearranges c[0:n] so c[0:k] are the k best (unordered). */
static void select_top(cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        cand pivot = c[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (before(&c[i], &pivot))
                i++;
            while (before(&pivot, &c[j]))
                j--;
            if (i <= j) {
                cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
}

/* Fills s->c[0:n] with the surviving candidates and their probabilities
 * (normalised), in no particular order. Returns n. */
static int filter(ci_sampler *s, const float *logits, const ci_sampling_params *p) {
    const int V = s->vocab;
    cand *c = s->c;
    float inv_t = 1.0f / p->temperature;
    float m = -INFINITY;
    int n = 0;
    for (int i = 0; i < V; i++) {
        float z = logits[i] * inv_t;
        if (z != z) continue; /* NaN never sampled */
        c[n].v = z;
        c[n].id = i;
        n++;
        if (z > m) m = z;
    }
    if (n == 0 || !(m > -INFINITY)) { /* nothing finite: fall back to argmax */
        c[0].v = 1.0f;
        c[0].id = ci_sample_greedy(logits, V);
        return 1;
    }
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    if (k < n) {
        select_top(c, n, k);
        n = k;
    }
    /* probabilities over the remaining set */
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp((double)c[i].v - (double)m);
    float pmax = 0.0f;
    for (int i = 0; i < n; i++) {
        c[i].v = (float)(exp((double)c[i].v - (double)m) / sum);
        if (c[i].v > pmax) pmax = c[i].v;
    }
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        /* The nucleus is a prefix of the sorted order: any {p >= t} whose mass
         * reaches top_p contains it, so only that set needs sorting. */
        double t = pmax * 1e-3;
        int m2 = n;
        for (;;) {
            double mass = 0.0;
            int cnt = 0;
            for (int i = 0; i < n; i++)
                if (c[i].v >= t) mass += c[i].v, cnt++;
            if (mass >= p->top_p || t < 1e-30) {
                if (cnt < n) {
                    int w = 0;
                    for (int i = 0; i < n; i++)
                        if (c[i].v >= t) c[w++] = c[i];
                    m2 = w;
                }
                break;
            }
            t *= 1e-3;
        }
        n = m2;
        qsort(c, (size_t)n, sizeof *c, cmp_cand);
        double cum = 0.0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += c[i].v;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (p->min_p > 0.0f) {
        float thr = p->min_p * pmax;
        int w = 0, best = 0;
        for (int i = 0; i < n; i++) {
            if (before(&c[i], &c[best])) best = i;
            if (c[i].v >= thr) c[w++] = c[i];
        }
        if (w == 0) { /* min_p > 1: keep the best (c is intact: nothing was written) */
            c[0] = c[best];
            w = 1;
        }
        n = w;
    }
    double tot = 0.0;
    for (int i = 0; i < n; i++)
        tot += c[i].v;
    for (int i = 0; i < n; i++)
        c[i].v = (float)(c[i].v / tot);
    return n;
}

static int is_greedy(const ci_sampling_params *p) {
    return !(p->temperature > 0.0f) || p->top_k == 1;
}

static int cmp_id(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    return (a->id > b->id) - (a->id < b->id);
}

/* The draw: inverse CDF over the kept set in token-id order (the order a
 * GPU scan produces without sorting), u < cumulative probability; u at or
 * past the total (rounding) takes the last token with nonzero probability. */
int32_t ci_sampler_draw(ci_sampler *s, const float *logits, const ci_sampling_params *p,
                        uint64_t stream, uint64_t step, int *num_kept) {
    if (is_greedy(p)) {
        if (num_kept) *num_kept = 1;
        return ci_sample_greedy(logits, s->vocab);
    }
    int n = filter(s, logits, p);
    qsort(s->c, (size_t)n, sizeof *s->c, cmp_id);
    double u = ci_philox_uniform3(p->seed, stream, step), cum = 0.0;
    int32_t pick = -1, last = s->c[n - 1].id;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (!(s->c[i].v > 0.0f)) continue;
        kept++;
        last = s->c[i].id;
        cum += s->c[i].v;
        if (pick < 0 && u < cum) pick = s->c[i].id;
    }
    if (num_kept) *num_kept = kept > 0 ? kept : 1;
    return pick >= 0 ? pick : last;
}

int32_t ci_sampler_sample(ci_sampler *s, const float *logits, const ci_sampling_params *p,
                          uint64_t step) {
    return ci_sampler_draw(s, logits, p, 0, step, NULL);
}

void ci_sampler_probs(ci_sampler *s, const float *logits, const ci_sampling_params *p,
                      float *probs) {
    memset(probs, 0, sizeof(float) * (size_t)s->vocab);
    if (is_greedy(p)) {
        probs[ci_sample_greedy(logits, s->vocab)] = 1.0f;
        return;
    }
    int n = filter(s, logits, p);
    for (int i = 0; i < n; i++)
        probs[s->c[i].id] = s->c[i].v;
}

double ci_philox_uniform3(uint64_t seed, uint64_t stream, uint64_t step) {
    uint32_t ctr[4] = {(uint32_t)step, (uint32_t)(step >> 32), (uint32_t)stream,
                       (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t o[4];
    ci_philox4x32_10(ctr, key, o);
    uint64_t bits = ((uint64_t)o[0] << 32 | o[1]) >> 11;
    return (double)bits * (1.0 / 9007199254740992.0);
}

void ci_logit_adjust_apply(float *row, const ci_logit_adjust *adj, int n, float repetition_penalty,
                           float presence_penalty, float frequency_penalty) {
    for (int i = 0; i < n; i++) {
        const ci_logit_adjust *a = &adj[i];
        float v = row[a->token];
        if (a->flags & CI_ADJ_MASK) v = -INFINITY;
        if (a->flags & CI_ADJ_BIAS) v += a->bias;
        if (a->flags & CI_ADJ_REPEAT) v = v > 0 ? v / repetition_penalty : v * repetition_penalty;
        if (a->count > 0) v -= presence_penalty + frequency_penalty * (float)a->count;
        row[a->token] = v;
    }
}

void ci_logit_mask_apply(float *row, const uint32_t *mask, int n) {
    for (int w = 0; w < ci_mask_words(n); w++) {
        uint32_t m = mask[w];
        if (m == 0xffffffffu) continue;
        int end = w * 32 + 32 < n ? w * 32 + 32 : n;
        for (int t = w * 32; t < end; t++)
            if (!((m >> (t & 31)) & 1u)) row[t] = -INFINITY;
    }
}

int ci_top_logprobs(const float *lsm, int n, int k, int32_t *ids, float *vals) {
    int got = 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        float bv = -INFINITY;
        for (int i = 0; i < n; i++) {
            float v = lsm[i];
            if (!(v > bv) && !(best < 0 && v == bv)) continue;
            /* skip the ones already taken: ranked at or above the previous pick */
            if (j > 0 && (v > vals[j - 1] || (v == vals[j - 1] && i <= ids[j - 1]))) continue;
            best = i;
            bv = v;
        }
        if (best < 0) break;
        ids[j] = best;
        vals[j] = bv;
        got = j + 1;
    }
    return got;
}
