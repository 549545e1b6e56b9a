/* rope_cache.cu — kernel lab: rotary embedding of q and k in the fused qkv
 * row, in place, plus the write of K (rotated) and V into the paged cache
 * [num_blocks][KV][block_size][head_dim] at each token's slot. BF16,
 * Llama-3-8B shape: H 32, KV 8, head_dim 128, neox pairing, block size 16.
 *
 *   v0  naive: one thread per token, serial over every pair and the copies
 *   v1  the previous production kernel (as of 382d034): one 128-thread CTA
 *       per token, a strided loop over the token's (H + KV) x rot/2 pairs
 *       (an integer division per pair), then K tail and V to the cache
 *   v2  rope_cache_kernel (cuda_rope_cache.cu): one warp per (token, head);
 *       lanes take independent pairs, a k head's warp also writes its K and
 *       V cache rows (production below 64 tokens)
 *   v3  rope_cache_vec_kernel: 16 dims per thread, 16-byte loads and
 *       stores (production from 64 tokens)
 *   prod the launcher ci_cu_rope_cache itself
 *
 * Each version is checked against a CPU reference (qkv after rotation, and
 * the K/V cache: NaN-poisoned first, written slots must match and every
 * other element must still hold the poison) on fresh random inputs and a
 * random permutation of cache slots. A small extra case checks partial
 * rotary (rot 64), GPT-J pairing and padding tokens (slot -1), untimed.
 * Timing: median over 15 reps of the mean of 20 back-to-back launches over
 * rotated buffer copies (>= 256 MiB touched, so reads come from HBM).
 * Bytes per token: q and k read and written, V read, K and V cache rows
 * written, the token's cos/sin row read (BF16 activations, F32 table).
 *
 *   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Isrc \
 *        bench/kernels/rope_cache.cu -o rope_cache && ./rope_cache [--quick]
 * (or: ninja -C build kernel_rope_cache) */
#include "../../src/backend/cuda/cuda_rope_cache.cu"
#include "lab.cuh"

typedef __nv_bfloat16 bf16;

__global__ void rope_v0(bf16 *qkv, int T, int H, int KV, int hd, const float *cos_sin, int rot,
                        int neox, const int32_t *positions, const int32_t *slots, bf16 *kc,
                        bf16 *vc, int bs) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) return;
    bf16 *row = qkv + (int64_t)t * (H + 2 * KV) * hd;
    const float *cs = cos_sin + (int64_t)positions[t] * rot;
    int half = rot / 2, slot = slots[t];
    for (int h = 0; h < H + KV; h++) {
        bf16 *x = row + (int64_t)h * hd;
        for (int i = 0; i < half; i++) {
            int i1 = neox ? i : 2 * i, i2 = neox ? i + half : 2 * i + 1;
            float x1 = __bfloat162float(x[i1]), x2 = __bfloat162float(x[i2]);
            x[i1] = __float2bfloat16_rn(x1 * cs[i] - x2 * cs[half + i]);
            x[i2] = __float2bfloat16_rn(x2 * cs[i] + x1 * cs[half + i]);
        }
    }
    if (slot < 0) return;
    int64_t blk = slot / bs, off = slot % bs;
    for (int g = 0; g < KV; g++) {
        int64_t cbase = ((blk * KV + g) * bs + off) * hd;
        for (int d = 0; d < hd; d++) {
            kc[cbase + d] = row[(int64_t)(H + g) * hd + d];
            vc[cbase + d] = row[(int64_t)(H + KV + g) * hd + d];
        }
    }
}

/* v1: the production kernel as of 382d034, renamed */
template <typename T>
__global__ void rope_cache_v1_kernel(T *qkv, int H, int KV, int hd,
                                     const float *__restrict__ cos_sin, int rot, int neox,
                                     const int32_t *__restrict__ positions,
                                     const int32_t *__restrict__ slots, T *kc, T *vc, int bs) {
    int t = blockIdx.x;
    int64_t stride = (int64_t)(H + 2 * KV) * hd;
    T *row = qkv + (int64_t)t * stride;
    int half = rot / 2;
    const float *cs = cos_sin + (int64_t)positions[t] * rot;
    int32_t slot = slots[t];
    int64_t blk = slot >= 0 ? slot / bs : 0, off = slot >= 0 ? slot % bs : 0;
    int npairs = (H + KV) * half;
    for (int e = threadIdx.x; e < npairs; e += blockDim.x) {
        int h = e / half, i = e - h * half;
        int i1 = neox ? i : 2 * i, i2 = neox ? i + half : 2 * i + 1;
        T *x = row + (int64_t)h * hd;
        float x1 = ci_ld(x, i1), x2 = ci_ld(x, i2), c = cs[i], s = cs[half + i];
        float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
        ci_st(x, i1, y1);
        ci_st(x, i2, y2);
        if (h >= H && slot >= 0) {
            int g = h - H;
            T *dst = kc + ((blk * KV + g) * bs + off) * hd;
            ci_st(dst, i1, y1);
            ci_st(dst, i2, y2);
        }
    }
    if (slot < 0) return;
    int tail = hd - rot;
    for (int e = threadIdx.x; e < KV * (tail + hd); e += blockDim.x) {
        int g = e / (tail + hd), d = e - g * (tail + hd);
        int64_t cbase = ((blk * KV + g) * bs + off) * hd;
        if (d < tail) {
            kc[cbase + rot + d] = row[(int64_t)(H + g) * hd + rot + d];
        } else {
            d -= tail;
            vc[cbase + d] = row[(int64_t)(H + KV + g) * hd + d];
        }
    }
}

/* error over the written elements; counts cache elements that should hold
 * the poison (NaN in ref) but do not */
static double check(const uint16_t *got, const float *ref, size_t n, double *num, double *den) {
    size_t clobbered = 0;
    for (size_t i = 0; i < n; i++) {
        if (std::isnan(ref[i])) {
            clobbered += got[i] != 0xffff;
            continue;
        }
        double g = lab_f32(got[i]), r = ref[i];
        *num += (g - r) * (g - r);
        *den += r * r;
    }
    return (double)clobbered;
}

int main(int argc, char **argv) {
    const int H = 32, KV = 8, hd = 128, bs = 16, max_pos = 8192;
    const bool quick = lab_quick(argc, argv);
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    struct Case {
        int T, rot, neox, timed;
    };
    const std::vector<Case> cases =
        quick ? std::vector<Case>{{5, 128, 1, 1}, {37, 64, 0, 0}}
              : std::vector<Case>{{1, 128, 1, 1},    {64, 128, 1, 1}, {2048, 128, 1, 1},
                                  {8192, 128, 1, 1}, {37, 64, 0, 0},  {100, 64, 1, 0}};
    const char *names[] = {"v0 naive", "v1 prev", "v2 warp", "v3 vec", "prod"};
    printf("%5s %-13s %-9s %9s %8s %8s %10s\n", "T", "rope", "version", "us", "GB/s", "%3TB/s",
           "rel err");
    int bad = 0;
    for (const Case &cs : cases) {
        const int T = cs.T, rot = cs.rot, neox = cs.neox, half = rot / 2;
        /* cos/sin table, llama theta 500000 */
        std::vector<float> tab((size_t)max_pos * rot);
        for (int p = 0; p < max_pos; p++)
            for (int i = 0; i < half; i++) {
                double a = p * std::pow(500000.0, -2.0 * i / rot);
                tab[(size_t)p * rot + i] = (float)std::cos(a);
                tab[(size_t)p * rot + half + i] = (float)std::sin(a);
            }
        const int nb = (T + bs - 1) / bs + 4;
        std::vector<int32_t> pos(T), slot(T), perm(nb * bs);
        for (int i = 0; i < nb * bs; i++)
            perm[i] = i;
        for (int i = nb * bs - 1; i > 0; i--)
            std::swap(perm[i], perm[lab_urand(i + 1)]);
        for (int t = 0; t < T; t++) {
            pos[t] = (int32_t)lab_urand(max_pos);
            slot[t] = (!cs.timed && t % 5 == 3) ? -1 : perm[t]; /* padding in the extra case */
        }
        const size_t stride = (size_t)(H + 2 * KV) * hd, qn = T * stride;
        const size_t cn = (size_t)nb * KV * bs * hd;
        std::vector<uint16_t> hq(qn), gq(qn), gk(cn), gv(cn);
        for (auto &v : hq)
            v = lab_bf16(lab_frand());
        /* CPU reference */
        std::vector<float> rq(qn), rk(cn, NAN), rv(cn, NAN);
        for (size_t i = 0; i < qn; i++)
            rq[i] = lab_f32(hq[i]);
        for (int t = 0; t < T; t++) {
            float *row = &rq[t * stride];
            const float *c = &tab[(size_t)pos[t] * rot];
            for (int h = 0; h < H + KV; h++)
                for (int i = 0; i < half; i++) {
                    int i1 = neox ? i : 2 * i, i2 = neox ? i + half : 2 * i + 1;
                    float *x = row + (size_t)h * hd, x1 = x[i1], x2 = x[i2];
                    x[i1] = lab_round(x1 * c[i] - x2 * c[half + i]);
                    x[i2] = lab_round(x2 * c[i] + x1 * c[half + i]);
                }
            if (slot[t] < 0) continue;
            size_t blk = slot[t] / bs, off = slot[t] % bs;
            for (int g = 0; g < KV; g++)
                for (int d = 0; d < hd; d++) {
                    size_t ci = ((blk * KV + g) * bs + off) * hd + d;
                    rk[ci] = row[(size_t)(H + g) * hd + d];
                    rv[ci] = row[(size_t)(H + KV + g) * hd + d];
                }
        }
        size_t bytes =
            (size_t)T * (2 * (H + KV) * hd * 2 + KV * hd * 2 + 2 * KV * hd * 2 + rot * 4 + 8);
        int copies = cs.timed && !quick ? lab_copies(bytes) : 1;
        float *dtab;
        int32_t *dpos, *dslot;
        bf16 *dq, *dk, *dv;
        CK(cudaMalloc(&dtab, tab.size() * 4));
        CK(cudaMalloc(&dpos, T * 4));
        CK(cudaMalloc(&dslot, T * 4));
        CK(cudaMalloc(&dq, qn * 2 * copies));
        CK(cudaMalloc(&dk, cn * 2 * copies));
        CK(cudaMalloc(&dv, cn * 2 * copies));
        CK(cudaMemcpy(dtab, tab.data(), tab.size() * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dpos, pos.data(), T * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dslot, slot.data(), T * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dq, hq.data(), qn * 2, cudaMemcpyHostToDevice));
        lab_replicate(dq, qn * 2, copies);
        for (int v = 0; v < 5; v++) {
            if (v == 3 && (!neox || rot % 16)) continue; /* v3 takes neox, rot % 16 == 0 */
            auto launch = [&](int c) {
                bf16 *q = dq + c * qn, *k = dk + c * cn, *vv = dv + c * cn;
                if (v == 0)
                    rope_v0<<<(T + 63) / 64, 64, 0, st>>>(q, T, H, KV, hd, dtab, rot, neox, dpos,
                                                          dslot, k, vv, bs);
                else if (v == 1)
                    rope_cache_v1_kernel<bf16>
                        <<<T, 128, 0, st>>>(q, H, KV, hd, dtab, rot, neox, dpos, dslot, k, vv, bs);
                else if (v == 2)
                    rope_cache_kernel<bf16, bf16>
                        <<<dim3(T, (H + KV + ROPE_WARPS - 1) / ROPE_WARPS), ROPE_WARPS * 32, 0,
                           st>>>(q, H, KV, hd, dtab, rot, neox, dpos, dslot, k, vv, bs, 1.0f, 1.0f);
                else if (v == 3)
                    rope_cache_vec_kernel<bf16>
                        <<<(unsigned)(((int64_t)T * (H + 2 * KV) * (hd / 16) + 255) / 256), 256, 0,
                           st>>>(q, T, H, KV, hd, dtab, rot, dpos, dslot, k, vv, bs, 1.0f, 1.0f);
                else
                    CK((cudaError_t)ci_cu_rope_cache(st, 1, q, T, H, KV, hd, dtab, rot, neox, dpos,
                                                     dslot, k, vv, bs, 0, 1.0f, 1.0f));
            };
            CK(cudaMemcpy(dq, hq.data(), qn * 2, cudaMemcpyHostToDevice));
            CK(cudaMemset(dk, 0xff, cn * 2)); /* NaN poison */
            CK(cudaMemset(dv, 0xff, cn * 2));
            launch(0);
            CK(cudaGetLastError());
            CK(cudaMemcpy(gq.data(), dq, qn * 2, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(gk.data(), dk, cn * 2, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(gv.data(), dv, cn * 2, cudaMemcpyDeviceToHost));
            double num = 0, den = 0, clob = 0;
            clob += check(gq.data(), rq.data(), qn, &num, &den);
            clob += check(gk.data(), rk.data(), cn, &num, &den);
            clob += check(gv.data(), rv.data(), cn, &num, &den);
            double rel = std::sqrt(num / den);
            bool ok = rel < 1e-2 && clob == 0;
            bad += !ok;
            char rope[32];
            snprintf(rope, sizeof rope, "%s rot%d", neox ? "neox" : "gptj", rot);
            if (!cs.timed) {
                printf("%5d %-13s %-9s %9s %8s %8s %10.2e%s (pad slots, untimed)\n", T, rope,
                       names[v], "-", "-", "-", rel, ok ? "" : "  FAIL");
                continue;
            }
            double us = lab_time_us(st, copies, launch, v == 0 && T > 64 ? 3 : 15,
                                    v == 0 && T > 64 ? 2 : 20);
            double gbs = bytes / (us * 1e-6) / 1e9;
            printf("%5d %-13s %-9s %9.2f %8.0f %7.1f%% %10.2e%s%s\n", T, rope, names[v], us, gbs,
                   100.0 * gbs / LAB_PEAK_GBS, rel, clob ? " clobbered" : "", ok ? "" : "  FAIL");
            if (v == 4) /* roofline row: 6 flops per rotated pair */
                printf("roof\trope_cache\tT=%d H%d/KV%d hd%d\t%zu\t%zu\t%.4e\n", T, H, KV, hd,
                       (size_t)T * (H + KV) * half * 6, bytes, us * 1e-6);
        }
        cudaFree(dtab);
        cudaFree(dpos);
        cudaFree(dslot);
        cudaFree(dq);
        cudaFree(dk);
        cudaFree(dv);
    }
    printf("%s\n",
           bad ? "FAILED" : "all versions within 1e-2, caches written exactly at the slots");
    return bad ? 1 : 0;
}
