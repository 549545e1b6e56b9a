/* cpu_bandwidth.c — host memory bandwidth, to quote next to decode's
 * weight-streaming GB/s: memcpy (bytes copied per second; read+write traffic
 * is twice that) and a streaming read (AVX2 sum), single- and multi-threaded.
 * Large buffers (default 512 MiB, far beyond the caches), best of N runs.
 *
 * usage: bench_cpu_bandwidth [MiB] [runs] [threads] */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static float read_sum(const float *p, size_t n) {
#if defined(__AVX2__)
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
           a3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    float s = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
    for (; i < n; i++)
        s += p[i];
    return s;
#else
    float s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    return s;
#endif
}

typedef struct job {
    const float *p;
    size_t n;
    float sum;
} job;

static void *read_thread(void *arg) {
    job *j = arg;
    j->sum = read_sum(j->p, j->n);
    return NULL;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 512;
    int runs = argc > 2 ? atoi(argv[2]) : 8;
    int threads = argc > 3 ? atoi(argv[3]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (mib < 1) mib = 1;
    if (runs < 1) runs = 1;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    size_t bytes = mib << 20;
    char *a = NULL, *b = NULL;
    if (posix_memalign((void **)&a, 64, bytes) || posix_memalign((void **)&b, 64, bytes)) {
        fprintf(stderr, "cannot allocate 2 x %zu MiB\n", mib);
        return 1;
    }
    memset(a, 1, bytes); /* fault the pages in */
    memset(b, 2, bytes);
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        memcpy(b, a, bytes);
        double t = now() - t0;
        if (t < best) best = t;
    }
    double copy_gbs = (double)bytes / best / 1e9;
    printf("memcpy      %zu MiB, best of %d: %.2f GB/s copied (%.2f GB/s read+write)\n", mib, runs,
           copy_gbs, 2 * copy_gbs);
    float sink = 0;
    best = 1e30;
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        sink += read_sum((const float *)a, bytes / 4);
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("read 1T     %zu MiB, best of %d: %.2f GB/s\n", mib, runs, (double)bytes / best / 1e9);
    if (threads > 1) {
        pthread_t th[64];
        job jobs[64];
        size_t per = bytes / 4 / (size_t)threads / 32 * 32;
        best = 1e30;
        for (int r = 0; r < runs; r++) {
            double t0 = now();
            for (int i = 0; i < threads; i++) {
                jobs[i].p = (const float *)a + (size_t)i * per;
                jobs[i].n = per;
                pthread_create(&th[i], NULL, read_thread, &jobs[i]);
            }
            for (int i = 0; i < threads; i++) {
                pthread_join(th[i], NULL);
                sink += jobs[i].sum;
            }
            double t = now() - t0;
            if (t < best) best = t;
        }
        printf("read %dT     %zu MiB, best of %d: %.2f GB/s\n", threads, mib, runs,
               (double)per * 4 * threads / best / 1e9);
    }
    if (sink == 12345.0f) printf(" \n");
    free(a);
    free(b);
    return 0;
}
