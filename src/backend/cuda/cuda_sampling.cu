/* cuda_sampling.cu — the sample op: adjustments, greedy / temperature /
 * top-k / top-p / min-p sampling and logprobs over logits rows that stay on
 * the device. The math is src/engine/sampling.c's (the reference); see
 * docs/kernels/sampling.md for the algorithm and its cost.
 *
 * Kernels, in stream order (the host skips the ones a step does not need):
 *   adjust   one CTA per logits row with adjustments: saves the raw values
 *            of the adjusted tokens, writes the adjusted ones in place (once
 *            per logits row, so rows sharing it see one adjustment);
 *   sample   one CTA per sample row (a row's bitmask, when it has one, reads
 *            disallowed ids as -inf: the math then equals the CPU's);
 *   restore  puts the raw values back: the caller's logits are unchanged;
 *   logprob  one CTA per row that wants logprobs (raw row): log-softmax of
 *            the sampled token and the top-k.
 *
 * Selection without sorting V: a kept set is always a prefix of the order
 * (key desc, id asc), so top-k / top-p thresholds are found by an MSB-first
 * radix select over the float bits (4 passes of 8 bits, histograms of
 * counts or of fixed-point probability mass in shared memory). As soon as
 * the candidates at or above the current bin fit in shared memory (CAP),
 * they are gathered and finished exactly there (bitonic sort + scans),
 * which is the common case (top-k <= CAP, peaked distributions). Masses are
 * fixed point (p * 2^62 in u64): sums are exact and independent of the
 * order of the atomics, so a seed gives the same token on every run. */
#include <float.h>
#include <math.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_common.cuh"

#define SB 512         /* threads per CTA */
#define CAP 4096       /* candidates finished in shared memory */
#define NOID 0x7fffffff

static __device__ __forceinline__ double fix_scale() { return 4611686018427387904.0; } /* 2^62 */

/* order-preserving u32 of a non-NaN float; -0 folds onto +0 (they compare equal) */
__device__ __forceinline__ uint32_t fkey(float f) {
    if (f == 0.0f) f = 0.0f;
    uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float unfkey(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
__device__ __forceinline__ unsigned long long fixm(float p) {
    return (unsigned long long)((double)p * fix_scale());
}
/* select's element for count weights: NaN never takes part */
__device__ __forceinline__ bool count_key(float v, uint32_t &key, unsigned long long &w) {
    if (v != v) return false;
    key = fkey(v);
    w = 1;
    return true;
}
/* candidate: key high, ~id low, so a descending sort is (key desc, id asc) */
__device__ __forceinline__ unsigned long long cand_of(uint32_t key, int id) {
    return ((unsigned long long)key << 32) | (uint32_t)~(uint32_t)id;
}
__device__ __forceinline__ int cand_id(unsigned long long c) { return (int)~(uint32_t)c; }
__device__ __forceinline__ uint32_t cand_key(unsigned long long c) { return (uint32_t)(c >> 32); }

/* ---- Philox4x32-10, as ci_philox4x32_10 ---- */
__device__ double philox_uniform3(uint64_t seed, uint64_t stream, uint64_t step) {
    uint32_t c0 = (uint32_t)step, c1 = (uint32_t)(step >> 32), c2 = (uint32_t)stream,
             c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    uint64_t bits = (((uint64_t)c0 << 32) | c1) >> 11;
    return (double)bits * (1.0 / 9007199254740992.0);
}

/* ---- shared state of one CTA ---- */
struct Smem {
    unsigned int hc[256];
    unsigned long long hm[256];
    unsigned long long cand[CAP];
    unsigned long long redu[32];
    double redd[32];
    float redf[32];
    int redi[32], redj[32];
    int ncand, found, res_bin;
    unsigned int res_above_c, res_bin_c;
    unsigned long long res_above_w, res_bin_w, res_total;
};

/* op-reduction over the CTA; every thread gets the result (red: 32 slots
 * of shared memory; warp partials combine in warp order, so sums are the
 * same in every thread and every run) */
template <class T, class Op> __device__ __forceinline__ T block_reduce(T v, T *red, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    T t = red[0];
    for (int w = 1; w < SB / 32; w++) t = op(t, red[w]);
    return t;
}
__device__ __forceinline__ double block_sum_d(double v, Smem &sm) {
    return block_reduce(v, sm.redd, [](double a, double b) { return a + b; });
}
__device__ __forceinline__ unsigned long long block_sum_u(unsigned long long v, Smem &sm) {
    return block_reduce(v, sm.redu, [](unsigned long long a, unsigned long long b) { return a + b; });
}
__device__ __forceinline__ int block_sum_i(int v, Smem &sm) {
    return block_reduce(v, sm.redi, [](int a, int b) { return a + b; });
}
__device__ __forceinline__ int block_max_i(int v, Smem &sm) {
    return block_reduce(v, sm.redi, [](int a, int b) { return max(a, b); });
}
__device__ __forceinline__ float block_max_f(float v, Smem &sm) {
    return block_reduce(v, sm.redf, [](float a, float b) { return fmaxf(a, b); });
}
/* (value desc, id asc) best; value -inf with id NOID means "none" */
__device__ __forceinline__ void better(float &bv, int &bi, float v, int i) {
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}
__device__ __forceinline__ int block_argmax(float bv, int bi, Smem &sm) {
    for (int o = 16; o > 0; o >>= 1) {
        float v = __shfl_xor_sync(0xffffffffu, bv, o);
        int i = __shfl_xor_sync(0xffffffffu, bi, o);
        better(bv, bi, v, i);
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0) {
        sm.redf[threadIdx.x >> 5] = bv;
        sm.redj[threadIdx.x >> 5] = bi;
    }
    __syncthreads();
    bv = sm.redf[0];
    bi = sm.redj[0];
    for (int w = 1; w < SB / 32; w++) better(bv, bi, sm.redf[w], sm.redj[w]);
    return bi;
}
/* inclusive scan over the CTA (one value per thread); *total = the sum */
__device__ __forceinline__ unsigned long long block_scan_u(unsigned long long v, Smem &sm,
                                                           unsigned long long *total) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    for (int o = 1; o < 32; o <<= 1) {
        unsigned long long t = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += t;
    }
    __syncthreads();
    if (lane == 31) sm.redu[w] = v;
    __syncthreads();
    unsigned long long off = 0, tot = 0;
    for (int k = 0; k < SB / 32; k++) {
        if (k < w) off += sm.redu[k];
        tot += sm.redu[k];
    }
    *total = tot;
    return v + off;
}

/* descending bitonic sort of sm.cand[0, n), padded to a power of two with 0 */
__device__ void sort_desc(Smem &sm, int n) {
    int N = 1;
    while (N < n) N <<= 1;
    for (int i = n + threadIdx.x; i < N; i += SB) sm.cand[i] = 0;
    __syncthreads();
    for (int k = 2; k <= N; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < N; i += SB) {
                int l = i ^ j;
                if (l > i) {
                    unsigned long long a = sm.cand[i], b = sm.cand[l];
                    bool desc = (i & k) == 0;
                    if (desc ? a < b : a > b) {
                        sm.cand[i] = b;
                        sm.cand[l] = a;
                    }
                }
            }
            __syncthreads();
        }
}

/* Elements of the filter `get` (key, weight) with (key, id) >= cut, gathered
 * into sm.cand (the caller knows they fit). */
template <class G>
__device__ void gather_cut(G get, int V, uint32_t ckey, int cid, Smem &sm) {
    if (threadIdx.x == 0) sm.ncand = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < V; i += SB) {
        uint32_t key;
        unsigned long long w;
        if (!get(i, key, w)) continue;
        if (key > ckey || (key == ckey && i <= cid)) sm.cand[atomicAdd(&sm.ncand, 1)] = cand_of(key, i);
    }
    __syncthreads();
}

enum { SEL_ALL = 0, SEL_GATHERED = 1, SEL_CUT = 2, SEL_PROBE = 3 };

/* Smallest prefix of (key desc, id asc) over the elements `get` accepts
 * whose weight reaches target (weights: 1 = count, else fixed-point mass).
 * SEL_ALL: the total is below target. SEL_GATHERED: every element at or
 * above the bin holding the cut is in sm.cand (ncand <= CAP). SEL_CUT: kept
 * = key > ckey or (key == ckey and id <= cid). */
template <bool MASS, class G>
__device__ int select(G get, int V, unsigned long long target, Smem &sm, uint32_t &ckey, int &cid,
                      bool probe = false) {
    uint32_t prefix = 0;
    unsigned long long above_w = 0, bin_w = 0;
    unsigned int above_c = 0, bin_c = 0;
    for (int pass = 0; pass < 4; pass++) {
        int shift = 24 - 8 * pass;
        for (int b = threadIdx.x; b < 256; b += SB) {
            sm.hc[b] = 0;
            sm.hm[b] = 0;
        }
        __syncthreads();
        /* warp-aggregated: one atomic per distinct bin per warp (rows put
         * most elements in a few bins; per-element atomics on them
         * serialise). The loop is block-uniform so every lane votes. */
        const int lane = threadIdx.x & 31;
        for (int base = 0; base < V; base += SB) {
            int i = base + threadIdx.x, bin = -1;
            unsigned long long w = 0;
            uint32_t key;
            if (i < V && get(i, key, w) && (pass == 0 || (key >> (shift + 8)) == prefix))
                bin = (int)((key >> shift) & 255);
            unsigned todo = __ballot_sync(0xffffffffu, bin >= 0);
            while (todo) {
                int leader = __ffs(todo) - 1;
                int lb = __shfl_sync(0xffffffffu, bin, leader);
                unsigned grp = __ballot_sync(0xffffffffu, bin == lb);
                if (MASS) {
                    unsigned long long t = bin == lb ? w : 0;
                    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
                    if (lane == leader) atomicAdd(&sm.hm[lb], t);
                }
                if (lane == leader) atomicAdd(&sm.hc[lb], (unsigned int)__popc(grp));
                todo &= ~grp;
            }
        }
        __syncthreads();
        if (!MASS) /* count weights */
            for (int b = threadIdx.x; b < 256; b += SB) sm.hm[b] = sm.hc[b];
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned long long acc = above_w, tot = above_w;
            for (int b = 0; b < 256; b++) tot += sm.hm[b];
            unsigned int ac = above_c;
            int b = 255;
            for (; b > 0; b--) {
                if (acc + sm.hm[b] >= target) break;
                acc += sm.hm[b];
                ac += sm.hc[b];
            }
            sm.res_total = tot;
            sm.res_bin = b;
            sm.res_above_w = acc;
            sm.res_above_c = ac;
            sm.res_bin_c = sm.hc[b];
            sm.res_bin_w = sm.hm[b];
        }
        __syncthreads();
        if (pass == 0 && sm.res_total < target) return SEL_ALL;
        if (probe) { /* first pass only: the bin's start key and the count at or above it */
            ckey = (uint32_t)sm.res_bin << 24;
            cid = (int)(sm.res_above_c + sm.res_bin_c);
            return SEL_PROBE;
        }
        prefix = (prefix << 8) | (uint32_t)sm.res_bin;
        above_w = sm.res_above_w;
        above_c = sm.res_above_c;
        bin_c = sm.res_bin_c;
        bin_w = sm.res_bin_w;
        if (above_c + bin_c <= CAP) {
            /* key >= start: key > start - 1 with no tie (id <= -1); start 0 is all */
            uint32_t start = prefix << shift;
            if (start == 0)
                gather_cut(get, V, 0, NOID, sm);
            else
                gather_cut(get, V, start - 1, -1, sm);
            return SEL_GATHERED;
        }
    }
    /* prefix is the exact key of the cut: its bin_c elements all weigh the same */
    ckey = prefix;
    unsigned long long per = bin_c ? bin_w / bin_c : 0;
    unsigned long long need = target - above_w;
    unsigned long long j = per ? (need + per - 1) / per : bin_c;
    if (j >= bin_c) {
        cid = NOID;
        return SEL_CUT;
    }
    /* the j-th lowest id holding the cut key */
    if (threadIdx.x == 0) sm.found = NOID;
    __syncthreads();
    unsigned long long carry = 0;
    for (int base = 0; base < V; base += SB) {
        int i = base + threadIdx.x;
        uint32_t key;
        unsigned long long w;
        unsigned long long f = (i < V && get(i, key, w) && key == ckey) ? 1 : 0;
        unsigned long long tot;
        unsigned long long inc = block_scan_u(f, sm, &tot);
        if (f && carry + inc == j) sm.found = i;
        carry += tot;
        __syncthreads();
        if (sm.found != NOID) break;
    }
    cid = sm.found;
    return SEL_CUT;
}

/* Exact finish in shared memory: sm.cand[0, nc) holds (p key, id), sorted
 * (p desc, id asc), a superset of the kept set that starts at the top.
 * Applies top-p (topp_target, ~0 = off) and min-p (thr, 0 = off), then
 * draws in id order. */
__device__ bool finish_smem(Smem &sm, int nc, unsigned long long topp_target, float thr,
                            unsigned long long U, ci_sample_result *out, bool strict = false) {
    /* top-p: first prefix whose mass reaches the target */
    if (threadIdx.x == 0) sm.found = NOID;
    __syncthreads();
    unsigned long long carry = 0;
    if (topp_target != ~0ull)
        for (int base = 0; base < nc; base += SB) {
            int i = base + threadIdx.x;
            unsigned long long m = i < nc ? fixm(unfkey(cand_key(sm.cand[i]))) : 0, tot;
            unsigned long long inc = block_scan_u(m, sm, &tot);
            if (i < nc && carry + inc >= topp_target) atomicMin(&sm.found, i + 1);
            carry += tot;
            __syncthreads();
            if (sm.found != NOID) break;
        }
    __syncthreads();
    int keep = sm.found;
    /* strict: candidates from the approximate probe must reach the target */
    if (strict && topp_target != ~0ull && keep == NOID) return false;
    if (keep > nc) keep = nc;
    /* min-p keeps a prefix too */
    int c = 0;
    for (int i = threadIdx.x; i < keep; i += SB) c += unfkey(cand_key(sm.cand[i])) >= thr;
    c = block_sum_i(c, sm);
    int nk = c > 0 ? c : 1;
    /* totals over the kept set, then re-sort it by id for the draw */
    unsigned long long m = 0;
    int pos = 0;
    for (int i = threadIdx.x; i < nk; i += SB) {
        float p = unfkey(cand_key(sm.cand[i]));
        m += fixm(p);
        pos += p > 0.0f;
    }
    m = block_sum_u(m, sm);
    pos = block_sum_i(pos, sm);
    double tot = (double)m / fix_scale();
    __syncthreads();
    for (int i = threadIdx.x; i < nk; i += SB) {
        unsigned long long cd = sm.cand[i];
        /* (~id, p bits) descending = id ascending */
        sm.cand[i] = ((unsigned long long)(uint32_t)~(uint32_t)cand_id(cd) << 32) |
                     __float_as_uint(unfkey(cand_key(cd)));
    }
    __syncthreads();
    sort_desc(sm, nk);
    if (threadIdx.x == 0) sm.found = NOID;
    __syncthreads();
    carry = 0;
    int last = -1;
    for (int base = 0; base < nk; base += SB) {
        int i = base + threadIdx.x;
        float pn = 0.0f;
        int id = -1;
        if (i < nk) {
            unsigned long long cd = sm.cand[i];
            id = (int)~(uint32_t)(cd >> 32);
            pn = (float)((double)__uint_as_float((uint32_t)cd) / tot);
        }
        if (pn > 0.0f) last = max(last, id);
        unsigned long long tot_t;
        unsigned long long inc = block_scan_u(fixm(pn), sm, &tot_t);
        if (i < nk && carry + inc > U && carry + inc - fixm(pn) <= U) sm.found = id;
        carry += tot_t;
        __syncthreads();
        if (sm.found != NOID) break;
    }
    int lastall = block_max_i(last, sm);
    if (threadIdx.x == 0) {
        out->token = sm.found != NOID ? sm.found : (lastall >= 0 ? lastall : cand_id(0));
        out->num_kept = pos > 0 ? pos : 1;
    }
    return true;
}

__global__ void __launch_bounds__(SB)
    sample_kernel(const float *__restrict__ logits, int ldv, const ci_sample_row *__restrict__ rows,
                  const uint32_t *__restrict__ masks, ci_sample_result *out, int fast) {
    ci_pdl_trigger();
    ci_pdl_wait();
    __shared__ Smem sm;
    const ci_sample_row R = rows[blockIdx.x];
    ci_sample_result *o = &out[blockIdx.x];
    const float *xr = logits + (size_t)R.logits_row * (size_t)ldv;
    const uint32_t *mk =
        masks && R.mask_row >= 0 ? masks + (size_t)R.mask_row * (size_t)((ldv + 31) / 32) : nullptr;
    /* the row as sampling sees it: ids outside the bitmask are -inf */
    auto xv = [&](int i) -> float {
        return mk && !((mk[i >> 5] >> (i & 31)) & 1u) ? -INFINITY : xr[i];
    };
    /* ids at or above vocab_limit (a padded embedding) are never drawn: the
     * row ends there for every pass below */
    const int V = R.vocab_limit > 0 && R.vocab_limit < ldv ? R.vocab_limit : ldv;
    if (threadIdx.x == 0) { /* set by the logprob kernel when asked */
        o->logprob = 0.0f;
        o->num_top = 0;
    }
    const bool greedy = !(R.temperature > 0.0f) || R.top_k == 1;
    const float inv_t = greedy ? 1.0f : 1.0f / R.temperature;
    /* pass 1: argmax of the row (greedy and the no-finite fallback), max and
     * count of the scaled logits z */
    float bv = -INFINITY, zmax = -INFINITY;
    int bi = NOID, nn = 0;
    auto visit = [&](float v, int i) {
        if (v != v) return;
        better(bv, bi, v, i);
        float z = v * inv_t;
        if (z == z) {
            zmax = fmaxf(zmax, z);
            nn++;
        }
    };
    /* without a bitmask: 16-byte loads, 8 in flight per thread (the row is
     * ~0.5 MB at a 128k vocabulary and one CTA reads it: a scalar loop
     * was 27 us of a batch-1 decode step); the result is order-free */
    int i0 = 0;
    if (!mk && ((uintptr_t)xr & 15) == 0) {
        const float4 *x4 = (const float4 *)xr;
        const int V4 = V / 4;
        constexpr int U = 8;
        int j = threadIdx.x;
        for (; j + (U - 1) * SB < V4; j += U * SB) {
            float4 q[U];
#pragma unroll
            for (int u = 0; u < U; u++)
                q[u] = x4[j + u * SB];
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int i = 4 * (j + u * SB);
                visit(q[u].x, i);
                visit(q[u].y, i + 1);
                visit(q[u].z, i + 2);
                visit(q[u].w, i + 3);
            }
        }
        for (; j < V4; j += SB) {
            const float4 q = x4[j];
            visit(q.x, 4 * j);
            visit(q.y, 4 * j + 1);
            visit(q.z, 4 * j + 2);
            visit(q.w, 4 * j + 3);
        }
        i0 = 4 * V4;
    }
    for (int i = i0 + threadIdx.x; i < V; i += SB)
        visit(xv(i), i);
    int best = block_argmax(bv, bi, sm);
    if (best == NOID) best = 0;
    if (!greedy) {
        zmax = block_max_f(zmax, sm);
        nn = block_sum_i(nn, sm);
    }
    if (greedy || nn == 0 || !(zmax > -INFINITY)) {
        if (threadIdx.x == 0) {
            o->token = best;
            o->num_kept = 1;
        }
        return;
    }
    const double m = (double)zmax;
    const int k = R.top_k > 0 && R.top_k < nn ? R.top_k : nn;
    const bool topp = R.top_p > 0.0f && R.top_p < 1.0f;
    const unsigned long long ptarget =
        topp ? (unsigned long long)((double)R.top_p * fix_scale()) : ~0ull;
    const double u = philox_uniform3(R.seed, R.stream, R.step);
    const unsigned long long U = (unsigned long long)(u * fix_scale());

    auto zget = [&](int i, uint32_t &key, unsigned long long &w) -> bool {
        return count_key(xv(i) * inv_t, key, w);
    };
    uint32_t kkey = 0;
    int kid = NOID;
    bool kcut = false;
    double sum = 0.0;
    if (k < nn) {
        int r = select<false>(zget, V, (unsigned long long)k, sm, kkey, kid);
        if (r == SEL_CUT && k <= CAP) {
            gather_cut(zget, V, kkey, kid, sm);
            r = SEL_GATHERED;
        }
        if (r == SEL_GATHERED) {
            /* the top-k set: sort (z desc, id asc), keep k, then p over it */
            int nc = sm.ncand;
            sort_desc(sm, nc);
            double s = 0.0;
            for (int i = threadIdx.x; i < k; i += SB)
                s += exp((double)unfkey(cand_key(sm.cand[i])) - m);
            sum = block_sum_d(s, sm);
            for (int i = threadIdx.x; i < k; i += SB) {
                unsigned long long cd = sm.cand[i];
                float p = (float)(exp((double)unfkey(cand_key(cd)) - m) / sum);
                sm.cand[i] = cand_of(fkey(p), cand_id(cd));
            }
            __syncthreads();
            sort_desc(sm, k);
            float pmax = (float)(1.0 / sum);
            finish_smem(sm, k, ptarget, R.min_p > 0.0f ? R.min_p * pmax : 0.0f, U, o);
            return;
        }
        kcut = true; /* k > CAP: the cut filters the global path */
    }
    /* global path: F = non-NaN z within the top-k cut */
    auto inF = [&](int i, float &z) -> bool {
        z = xv(i) * inv_t;
        if (z != z) return false;
        if (kcut) {
            uint32_t key = fkey(z);
            if (key < kkey || (key == kkey && i > kid)) return false;
        }
        return true;
    };
    {
        double s = 0.0;
        for (int i = threadIdx.x; i < V; i += SB) {
            float z;
            if (inF(i, z)) s += exp((double)z - m);
        }
        sum = block_sum_d(s, sm);
    }
    const float pmax = (float)(1.0 / sum);
    auto pget = [&](int i, uint32_t &key, unsigned long long &w) -> bool {
        float z;
        if (!inF(i, z)) return false;
        float p = (float)(exp((double)z - m) / sum);
        key = fkey(p);
        w = fixm(p);
        return true;
    };
    uint32_t pkey = 0;
    int pid = NOID;
    /* top-p fast path: one histogram pass on float probabilities (a margin
     * over the target covers their error) finds a bin whose candidates fit;
     * only those get the exact double probabilities. finish_smem checks
     * the exact mass reaches the target, else the exact select runs. */
    if (topp && fast && ptarget < (1ull << 62) - (1ull << 50)) {
        const float inv_sum_f = (float)(1.0 / sum);
        const float zm = (float)m;
        auto aget = [&](int i, uint32_t &key, unsigned long long &w) -> bool {
            float z;
            if (!inF(i, z)) return false;
            float pa = expf(z - zm) * inv_sum_f;
            key = fkey(pa);
            w = fixm(pa);
            return true;
        };
        uint32_t bk = 0;
        int cnt = 0;
        int r = select<true>(aget, V, ptarget + (ptarget >> 12), sm, bk, cnt, true);
        if (r == SEL_PROBE && cnt <= CAP - CAP / 8 && unfkey(bk) > 1e-30f) {
            const float plo = unfkey(bk) * (1.0f - 1e-4f);
            if (threadIdx.x == 0) sm.ncand = 0;
            __syncthreads();
            for (int i = threadIdx.x; i < V; i += SB) {
                float z;
                if (!inF(i, z) || expf(z - zm) * inv_sum_f < plo) continue;
                float p = (float)(exp((double)z - m) / sum);
                uint32_t key = fkey(p);
                if (key < bk) continue;
                int at = atomicAdd(&sm.ncand, 1);
                if (at < CAP) sm.cand[at] = cand_of(key, i);
            }
            __syncthreads();
            int nc = sm.ncand;
            if (nc <= CAP) {
                sort_desc(sm, nc);
                if (finish_smem(sm, nc, ptarget, R.min_p > 0.0f ? R.min_p * pmax : 0.0f, U, o,
                                true))
                    return;
            }
        }
    }
    if (topp) {
        int r = select<true>(pget, V, ptarget, sm, pkey, pid);
        if (r == SEL_GATHERED) {
            int nc = sm.ncand;
            sort_desc(sm, nc);
            finish_smem(sm, nc, ptarget, R.min_p > 0.0f ? R.min_p * pmax : 0.0f, U, o);
            return;
        }
        if (r == SEL_ALL) pkey = 0, pid = NOID;
    }
    const float thr = R.min_p > 0.0f ? R.min_p * pmax : 0.0f;
    auto kget = [&](int i, float &p) -> bool {
        uint32_t key;
        unsigned long long w;
        if (!pget(i, key, w)) return false;
        if (key < pkey || (key == pkey && i > pid)) return false;
        p = unfkey(key);
        return p >= thr;
    };
    /* count pass: total mass, tokens with p > 0, the last of them */
    unsigned long long msum = 0;
    int pos = 0, last = -1;
    for (int i = threadIdx.x; i < V; i += SB) {
        float p;
        if (!kget(i, p)) continue;
        msum += fixm(p);
        if (p > 0.0f) pos++, last = i;
    }
    msum = block_sum_u(msum, sm);
    pos = block_sum_i(pos, sm);
    last = block_max_i(last, sm);
    if (pos == 0) { /* min_p > 1 kept nothing: the best token */
        if (threadIdx.x == 0) {
            o->token = best;
            o->num_kept = 1;
        }
        return;
    }
    const double tot = (double)msum / fix_scale();
    /* draw: inverse CDF in id order */
    if (threadIdx.x == 0) sm.found = NOID;
    __syncthreads();
    unsigned long long carry = 0;
    for (int base = 0; base < V; base += SB) {
        int i = base + threadIdx.x;
        float p, pn = 0.0f;
        if (i < V && kget(i, p)) pn = (float)((double)p / tot);
        unsigned long long mi = fixm(pn), tt;
        unsigned long long inc = block_scan_u(mi, sm, &tt);
        if (mi && carry + inc > U && carry + inc - mi <= U) sm.found = i;
        carry += tt;
        __syncthreads();
        if (sm.found != NOID) break;
    }
    if (threadIdx.x == 0) {
        o->token = sm.found != NOID ? sm.found : last;
        o->num_kept = pos;
    }
}

/* log-softmax of the raw row: the sampled token's and the top-k */
__global__ void __launch_bounds__(SB)
    logprob_kernel(const float *__restrict__ logits, int V, const ci_sample_row *__restrict__ rows,
                   ci_sample_result *out) {
    ci_pdl_trigger();
    ci_pdl_wait();
    __shared__ Smem sm;
    const ci_sample_row R = rows[blockIdx.x];
    if (R.top_logprobs < 0) return;
    ci_sample_result *o = &out[blockIdx.x];
    const float *x = logits + (size_t)R.logits_row * (size_t)V;
    float mx = -INFINITY;
    int nn = 0;
    for (int i = threadIdx.x; i < V; i += SB) {
        float v = x[i];
        if (v == v) {
            mx = fmaxf(mx, v);
            nn++;
        }
    }
    mx = block_max_f(mx, sm);
    nn = block_sum_i(nn, sm);
    double s = 0.0;
    /* double exp: the CPU's lse, so log-probs round (and tie) alike */
    for (int i = threadIdx.x; i < V; i += SB) s += exp((double)x[i] - (double)mx);
    s = block_sum_d(s, sm);
    const double lse = (double)mx + log(s);
    int k = R.top_logprobs < nn ? R.top_logprobs : nn;
    if (lse != lse) k = 0; /* a NaN in the row: every log-prob is NaN */
    if (threadIdx.x == 0) {
        o->logprob = (float)((double)x[o->token] - lse);
        o->num_top = k;
    }
    if (k <= 0) return;
    /* select on the log-softmax value itself, as the CPU ranks them:
     * rounding can merge distinct logits into one value (then lowest id) */
    auto xget = [&](int i, uint32_t &key, unsigned long long &w) -> bool {
        return count_key((float)((double)x[i] - lse), key, w);
    };
    uint32_t ck = 0;
    int cid = NOID;
    int r = select<false>(xget, V, (unsigned long long)k, sm, ck, cid);
    if (r == SEL_CUT) gather_cut(xget, V, ck, cid, sm);
    sort_desc(sm, sm.ncand);
    for (int j = threadIdx.x; j < k; j += SB) {
        unsigned long long cd = sm.cand[j];
        o->top_ids[j] = cand_id(cd);
        o->top_logprobs[j] = unfkey(cand_key(cd));
    }
}

__device__ __forceinline__ float adjust_one(float v, const ci_logit_adjust &a,
                                            const ci_sample_row &R) {
    if (a.flags & CI_ADJ_MASK) v = -INFINITY;
    if (a.flags & CI_ADJ_BIAS) v += a.bias;
    if (a.flags & CI_ADJ_REPEAT) v = v > 0 ? v / R.repetition_penalty : v * R.repetition_penalty;
    if (a.count > 0) v -= R.presence_penalty + R.frequency_penalty * (float)a.count;
    return v;
}

/* restore = 0: save raw values and adjust in place; 1: put them back */
__global__ void adjust_kernel(float *logits, int V, const ci_sample_row *__restrict__ rows,
                              const int32_t *__restrict__ owners, const ci_logit_adjust *adj,
                              float *saved, int restore) {
    ci_pdl_trigger();
    ci_pdl_wait();
    const ci_sample_row R = rows[owners[blockIdx.x]];
    float *x = logits + (size_t)R.logits_row * (size_t)V;
    for (int j = R.adj_start + threadIdx.x; j < R.adj_start + R.adj_count; j += blockDim.x) {
        int t = adj[j].token;
        if (restore) {
            x[t] = saved[j];
        } else {
            float v = x[t];
            saved[j] = v;
            x[t] = adjust_one(v, adj[j], R);
        }
    }
}

extern "C" int ci_cu_sample(ci_cu_stream st, float *logits, int V, const void *rows, int n,
                            const void *adj, float *saved, const int32_t *owners, int nowners,
                            const uint32_t *masks, int any_logprobs, int fast, void *out) {
    if (n <= 0) return cudaSuccess;
    const ci_sample_row *r = (const ci_sample_row *)rows;
    const ci_logit_adjust *a = (const ci_logit_adjust *)adj;
    ci_sample_result *o = (ci_sample_result *)out;
    if (nowners > 0) {
        ci_cu_launch(adjust_kernel, nowners, 256, 0, st, logits, V, r, owners, a, saved, 0);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    ci_cu_launch(sample_kernel, n, SB, 0, st, logits, V, r, masks, o, fast);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    if (nowners > 0) {
        ci_cu_launch(adjust_kernel, nowners, 256, 0, st, logits, V, r, owners, a, saved, 1);
        e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    if (any_logprobs) ci_cu_launch(logprob_kernel, n, SB, 0, st, logits, V, r, o);
    return cudaGetLastError();
}

/* Plan-ahead scheduling: the next step's input ids from the last sample
 * op's results, on the device (the host never waits for that step). */
__global__ void take_samples_kernel(const ci_sample_result *res, int nres, const int32_t *src,
                                    int T, int32_t *ids) {
    ci_pdl_trigger();
    ci_pdl_wait(); /* the sample op and the upload of src before it */
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) return;
    const int r = src[t];
    if (r >= 0 && r < nres) ids[t] = res[r].token;
}

extern "C" int ci_cu_take_samples(ci_cu_stream st, const void *res, int nres, const int32_t *src,
                                  int T, int32_t *ids) {
    if (T <= 0) return cudaSuccess;
    ci_cu_launch(take_samples_kernel, (T + 255) / 256, 256, 0, st, (const ci_sample_result *)res,
                 nres, src, T, ids);
    return cudaGetLastError();
}
