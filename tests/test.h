/* test.h — a minimal test harness: CHECK records failures and goes on;
 * TEST_MAIN prints "N passed, N failed" and sets the exit code. A test that
 * cannot run here (no data, no GPU) calls test_skip(), exit code 77. */
#ifndef CINFER_TESTS_TEST_H
#define CINFER_TESTS_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CI_ASAN: 1 in AddressSanitizer builds (the slow tests' quick modes) */
#if defined(__SANITIZE_ADDRESS__)
#define CI_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CI_ASAN 1
#endif
#endif
#ifndef CI_ASAN
#define CI_ASAN 0
#endif

static int test_passed_, test_failed_;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            test_passed_++;                                                                        \
        } else {                                                                                   \
            test_failed_++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (cond) {                                                                                \
            test_passed_++;                                                                        \
        } else {                                                                                   \
            test_failed_++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* CHECK that a ci_status is ok, printing its message otherwise. */
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        ci_status chk_s_ = (expr);                                                                 \
        CHECKF(chk_s_.code == CI_OK, "%s", chk_s_.msg);                                            \
    } while (0)

static inline void test_skip(const char *why) {
    printf("SKIP: %s\n", why);
    exit(77);
}

static inline int test_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, test_passed_, test_failed_);
    return test_failed_ ? 1 : 0;
}

/* xorshift64 uniform in [0, 1) and in [-1, 1): reproducible random inputs */
static inline double test_urand(void) {
    static uint64_t s = 0x243f6a8885a308d3ull;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (double)(s >> 11) * (1.0 / 9007199254740992.0);
}
static inline float test_frand(void) {
    return (float)(test_urand() * 2.0 - 1.0);
}

/* Path helpers: data dirs come from the environment ctest sets. */
/* A NeoX-style RoPE table [maxpos][rot] (cos then sin halves), base 10000:
 * the reference the rope + cache op tests rotate with. */
static inline void test_fill_rope(float *cs, int maxpos, int rot) {
    for (int p = 0; p < maxpos; p++)
        for (int i = 0; i < rot / 2; i++) {
            double ang = p * pow(10000.0, -2.0 * i / rot);
            cs[p * rot + i] = (float)cos(ang);
            cs[p * rot + rot / 2 + i] = (float)sin(ang);
        }
}

static inline const char *test_source_dir(void) {
    const char *d = getenv("CINFER_SOURCE_DIR");
    return d ? d : ".";
}
static inline const char *test_shared_dir(void) {
    const char *d = getenv("CINFER_SHARED_DIR");
    return d ? d : "../shared";
}

/* Reads a whole file (NUL-terminated); NULL on failure. */
static inline char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

#endif
