/* fp8.h — the FP8 E4M3 ("fn") codec shared by quantized weights
 * (qweight.h) and the FP8 KV cache (below src/backend and src/model, like
 * dtype.h). The CUDA kernels convert with cuda_fp8.h's saturating
 * round-to-nearest-even conversion, which gives the same bytes. */
#ifndef CINFER_UTIL_FP8_H
#define CINFER_UTIL_FP8_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define CI_FP8_E4M3_MAX 448.0f

/* E4M3 (fn) -> f32: sign, 4 exponent bits (bias 7), 3 mantissa bits;
 * exponent 0 is subnormal (m * 2^-9); 0x7f / 0xff are NaN. */
static inline float ci_fp8_e4m3_to_f32(uint8_t v) {
    uint32_t s = (uint32_t)(v & 0x80) << 24, e = (v >> 3) & 0xF, m = v & 7;
    float f;
    if (e == 15 && m == 7) return NAN;
    if (e == 0) {
        f = (float)m * (1.0f / 512.0f);
        uint32_t b;
        memcpy(&b, &f, 4);
        b |= s;
        memcpy(&f, &b, 4);
        return f;
    }
    uint32_t b = s | ((e + 120) << 23) | (m << 20);
    memcpy(&f, &b, 4);
    return f;
}

/* f32 -> E4M3, round to nearest even, saturating at +-448 (NaN -> 0x7f). */
static inline uint8_t ci_f32_to_fp8_e4m3(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    uint8_t sign = (uint8_t)((b >> 24) & 0x80);
    if (isnan(x)) return 0x7f;
    float a = fabsf(x);
    if (a >= 448.0f) return sign | 0x7e;
    if (a < 1.0f / 64.0f) { /* subnormal range: multiples of 2^-9 (8 -> the first normal) */
        float q = nearbyintf(a * 512.0f);
        return sign | (uint8_t)q;
    }
    uint32_t u;
    memcpy(&u, &a, 4);
    u += 0x7FFFF + ((u >> 20) & 1); /* round the mantissa to 3 bits, ties to even */
    int e = (int)(u >> 23) - 127;
    uint32_t m = (u >> 20) & 7;
    if (e > 8 || (e == 8 && m == 7)) return sign | 0x7e;
    return sign | (uint8_t)(((uint32_t)(e + 7) << 3) | m);
}

/* ci_fp8_e4m3_to_f32(ci_f32_to_fp8_e4m3(x)) without the byte: x rounded to
 * the nearest E4M3 value (ties to even, saturating at +-448, NaN stays NaN)
 * as a float, branch-free (W8A8's activation rounding runs it per element) */
static inline float ci_e4m3_round(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    const uint32_t sign = b & 0x80000000u, a = b & 0x7fffffffu;
    uint32_t u = (a + 0x7FFFFu + ((a >> 20) & 1)) & 0xFFF00000u; /* 3 mantissa bits */
    float fa, fn;
    memcpy(&fa, &a, 4);
    memcpy(&fn, &u, 4);
    const float fs = nearbyintf(fa * 512.0f) * (1.0f / 512.0f); /* subnormals: k 2^-9 */
    float r = fa < 1.0f / 64.0f ? fs : fn;
    r = r > 448.0f ? 448.0f : r;
    r = a > 0x7f800000u ? fa : r; /* NaN stays NaN (its payload's rounding could reach inf) */
    memcpy(&u, &r, 4);
    u |= sign;
    memcpy(&r, &u, 4);
    return r;
}

/* 256-entry table of e4m3(code) * scale: dequantization by lookup (the
 * CPU attention's K/V reads). */
static inline void ci_fp8_e4m3_table(float scale, float out[256]) {
    for (int i = 0; i < 256; i++)
        out[i] = ci_fp8_e4m3_to_f32((uint8_t)i) * scale;
}

#endif
