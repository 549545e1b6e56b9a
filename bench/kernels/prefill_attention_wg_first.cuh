/* prefill_attention_wg_first.cuh — the prefill attention lab's versions
 * 7-10 (bench/kernels/prefill_attention.cu includes it after its helpers):
 * the first wgmma kernel, kept as the lab's record, never in production. */
#ifndef CINFER_BENCH_PREFILL_ATTENTION_WG_FIRST_CUH
#define CINFER_BENCH_PREFILL_ATTENTION_WG_FIRST_CUH
/* ---- versions 7-11: the first wgmma kernel (kept here, not in production) ----
 * Known wrong when head_dim == BN (hd 64 with BN 64, hd 128 with BN 128):
 * rel. err 0.1-0.5, reproducible; the pipelined kernel (versions 12+, the
 * production one) is right for all four shapes. Not root-caused; this one
 * zero-fills the S accumulator with ordinary moves right before the wgmma
 * and skips wgmma on a (warpgroup-uniform) branch, both of which the
 * pipelined kernel avoids (scale-d = 0 on the first k-step, no branch).
 * BM = 64 x NWG query rows, one warpgroup (4 warps) per 64 rows. S = Q K^T
 * is wgmma m64n{BN}k16 with Q's A fragments in registers and K read by the
 * tensor cores straight from shared memory (K-major, 128-byte swizzle);
 * O += P V is wgmma m64n{HD}k16 with P in registers and V read from shared
 * memory as an MN-major operand (no ldmatrix.trans). Each K/V element in
 * shared memory is read once per warpgroup instead of once per warp, which
 * is what bounds the mma.sync kernel (shared-memory bandwidth). cp.async
 * writes K/V (generic proxy); fence.proxy.async before the barrier makes
 * them visible to wgmma (async proxy). */

template <int HD, int BN, int NWG, int NST>
__global__ void __launch_bounds__(NWG * 128, 1)
    v7_wg_kernel(const ci_prefill_params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using namespace ci_pf;
    constexpr int BM = 64 * NWG, NT = NWG * 128;
    constexpr int CH = HD / 8;
    constexpr int KD = HD / 16;
    constexpr int NB = BN / 8;
    static_assert((HD == 64 || HD == 128) && (BN == 64 || BN == 128) && NST >= 2, "tile shape");
    static_assert((BN * CH) % NT == 0 && (BM * CH) % NT == 0, "copy split");
    extern __shared__ uint4 smem_u4[];
    /* K/V stages first, 1024-byte aligned (swizzle atoms), then Q */
    __nv_bfloat16 *sk = (__nv_bfloat16 *)(((uintptr_t)smem_u4 + 1023) & ~(uintptr_t)1023);
    __nv_bfloat16 *sv = sk + NST * BN * HD;
    __nv_bfloat16 *sq = sv + NST * BN * HD;
    __shared__ int lim_lo, lim_hi, wg_hi[NWG];

    int idx = blockIdx.x;
    const int h = idx % p.H;
    idx /= p.H;
    const int s = idx % p.S;
    const int tile = p.ntiles - 1 - idx / p.S;
    const int q0 = p.qstart[s], qlen = p.qstart[s + 1] - q0, r0 = tile * BM;
    if (r0 >= qlen) return;
    const int nrows = min(BM, qlen - r0);
    const int ctx = p.ctx_lens[s];
    const int kvh = h / (p.H / p.KV);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
    const int64_t qstride = (int64_t)(p.H + 2 * p.KV) * HD;
    const int32_t *bt = p.btab + (int64_t)s * p.mbps;

    auto row_lim = [&](int r) {
        int pos = p.positions[q0 + r0 + min(r, nrows - 1)];
        return min(pos + 1, ctx);
    };
    const int g = lane >> 2, tig = lane & 3;
    const int lim0 = row_lim(warp * 16 + g), lim1 = row_lim(warp * 16 + g + 8);
    int wlim = max(lim0, lim1);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) wlim = max(wlim, __shfl_xor_sync(0xffffffffu, wlim, o));
    int wmin = min(lim0, lim1);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, o));
    if (tid == 0) {
        lim_lo = 1 << 30;
        lim_hi = 0;
    }
    if (tid < NWG) wg_hi[tid] = 0;
    __syncthreads();
    if (lane == 0) {
        atomicMin(&lim_lo, wmin);
        atomicMax(&lim_hi, wlim);
        atomicMax(&wg_hi[wg], wlim);
    }
    __syncthreads();
    const int kv_end = lim_hi;
    const int nblk = (kv_end + BN - 1) / BN;
    const int nfull = lim_lo / BN;
    const int wglim = wg_hi[wg]; /* the warpgroup's largest key limit */

    {
        const __nv_bfloat16 *qbase = p.qkv + (int64_t)h * HD;
#pragma unroll
        for (int i = 0; i < BM * CH / NT; i++) {
            int e = tid + i * NT, r = e / CH, c = e % CH;
            int64_t t = q0 + r0 + min(r, nrows - 1);
            cp_async16(sq + swz<HD>(r, c), qbase + t * qstride + c * 8);
        }
    }
    const int kr = tid / CH, kcol = tid % CH;
    auto load_kv = [&](int n, int st) {
        __nv_bfloat16 *dk = sk + st * BN * HD, *dv = sv + st * BN * HD;
#pragma unroll
        for (int j = 0; j < BN * CH / NT; j++) {
            int r = kr + j * (NT / CH);
            int key = min(n * BN + r, kv_end - 1);
            int64_t off =
                (((int64_t)bt[key / p.bs] * p.KV + kvh) * p.bs + key % p.bs) * HD + kcol * 8;
            cp_async16(dk + swz128<BN>(r, kcol), p.kc + off);
            cp_async16(dv + swz128<BN>(r, kcol), p.vc + off);
        }
    };
#pragma unroll
    for (int st = 0; st < NST - 1; st++) {
        if (st < nblk) load_kv(st, st);
        cp_async_commit();
    }

    float o[HD / 2];
#pragma unroll
    for (int i = 0; i < HD / 2; i++) o[i] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    uint32_t qf[KD][4];
    const float sl2 = p.scale_log2;

    for (int n = 0; n < nblk; n++) {
        cp_async_wait<NST - 2>();
        fence_proxy_async(); /* this thread's cp.async data -> visible to wgmma */
        __syncthreads();
        if (n == 0) {
#pragma unroll
            for (int kk = 0; kk < KD; kk++)
                ldsm_x4(qf[kk], sq + swz<HD>(warp * 16 + (lane & 15), kk * 2 + (lane >> 4)));
        }
        if (n + NST - 1 < nblk) load_kv(n + NST - 1, (n + NST - 1) % NST);
        cp_async_commit();
        if (n * BN >= wglim) continue; /* the whole warpgroup is masked (uniform) */
        const __nv_bfloat16 *kt = sk + (n % NST) * BN * HD, *vt = sv + (n % NST) * BN * HD;

        float sc[BN / 2];
#pragma unroll
        for (int i = 0; i < BN / 2; i++) sc[i] = 0.0f;
        fence_regs<BN / 2>(sc);
        fence_regs<KD * 4>(&qf[0][0]);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < KD; kk++) {
            /* k-step kk: column block kk / 4, 32 bytes per k-step inside it */
            uint64_t dk = gmma_desc(kt + (kk >> 2) * (BN * 64) + (kk & 3) * 16, 16, 1024);
            if constexpr (BN == 64)
                wgmma_n64<0>(sc, qf[kk], dk);
            else
                wgmma_n128<0>(sc, qf[kk], dk);
        }
        wg_commit();
        wg_wait0();
        fence_regs<BN / 2>(sc);
        if (n >= nfull) {
#pragma unroll
            for (int nb = 0; nb < NB; nb++) {
                int key = n * BN + nb * 8 + 2 * tig;
                if (key >= lim0) sc[4 * nb + 0] = -INFINITY;
                if (key + 1 >= lim0) sc[4 * nb + 1] = -INFINITY;
                if (key >= lim1) sc[4 * nb + 2] = -INFINITY;
                if (key + 1 >= lim1) sc[4 * nb + 3] = -INFINITY;
            }
        }
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
            mx0 = fmaxf(mx0, fmaxf(sc[4 * nb], sc[4 * nb + 1]) * sl2);
            mx1 = fmaxf(mx1, fmaxf(sc[4 * nb + 2], sc[4 * nb + 3]) * sl2);
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        /* a row of this warp with no allowed key in the whole run so far
         * cannot occur: tile 0 holds key 0 */
        const float a0 = ex2(m0 - mx0), a1 = ex2(m1 - mx1);
        m0 = mx0;
        m1 = mx1;
        float rs0 = 0.0f, rs1 = 0.0f;
        uint32_t pa[BN / 16][4];
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
            float p0 = ex2(fmaf(sc[4 * nb], sl2, -mx0)), p1 = ex2(fmaf(sc[4 * nb + 1], sl2, -mx0));
            float p2 = ex2(fmaf(sc[4 * nb + 2], sl2, -mx1));
            float p3 = ex2(fmaf(sc[4 * nb + 3], sl2, -mx1));
            rs0 += p0 + p1;
            rs1 += p2 + p3;
            pa[nb >> 1][(nb & 1) * 2 + 0] = pack_bf16(p0, p1);
            pa[nb >> 1][(nb & 1) * 2 + 1] = pack_bf16(p2, p3);
        }
        l0 = l0 * a0 + rs0;
        l1 = l1 * a1 + rs1;
#pragma unroll
        for (int d = 0; d < HD / 8; d++) {
            o[4 * d + 0] *= a0;
            o[4 * d + 1] *= a0;
            o[4 * d + 2] *= a1;
            o[4 * d + 3] *= a1;
        }
        fence_regs<HD / 2>(o);
        fence_regs<BN / 4>(&pa[0][0]);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            /* keys 16 kk..: 2 groups of 8 rows (SBO 1024); dims in column
             * blocks of 64 (LBO = one block) */
            uint64_t dv = gmma_desc(vt + kk * 16 * 64, BN * 128, 1024);
            if constexpr (HD == 64)
                wgmma_n64<1>(o, pa[kk], dv);
            else
                wgmma_n128<1>(o, pa[kk], dv);
        }
        wg_commit();
        wg_wait0(); /* the stage is refilled after the next barrier */
        fence_regs<HD / 2>(o);
        fence_regs<BN / 4>(&pa[0][0]);
    }
    cp_async_wait<0>();

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float il0 = 1.0f / l0, il1 = 1.0f / l1;
    const int ra = warp * 16 + g, rb = ra + 8;
    const int64_t ostride = (int64_t)p.H * HD;
    __nv_bfloat16 *obase = p.out + (int64_t)h * HD + 2 * tig;
#pragma unroll
    for (int d = 0; d < HD / 8; d++) {
        if (ra < nrows)
            *(uint32_t *)(obase + (q0 + r0 + ra) * ostride + d * 8) =
                pack_bf16(o[4 * d] * il0, o[4 * d + 1] * il0);
        if (rb < nrows)
            *(uint32_t *)(obase + (q0 + r0 + rb) * ostride + d * 8) =
                pack_bf16(o[4 * d + 2] * il1, o[4 * d + 3] * il1);
    }
#else
    __trap(); /* built without sm_90a: the launcher never picks this kernel */
#endif
}

#endif
