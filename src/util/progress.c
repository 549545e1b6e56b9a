#include "util/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double ci_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void ci_progress_init(ci_progress *p, const char *label) {
    p->label = label;
    p->start = ci_now();
    p->last_draw = 0;
    p->enabled = isatty(STDERR_FILENO);
    p->drawn = 0;
}

void ci_progress_update(ci_progress *p, size_t done, size_t total) {
    if (!p->enabled || total == 0) return;
    double t = ci_now();
    if (t - p->start < 1.0 || (t - p->last_draw < 0.1 && done < total)) return;
    p->last_draw = t;
    enum { WIDTH = 30 };
    int fill = (int)((double)done / (double)total * WIDTH);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\r%s [%s] %5.1f%% %.1fs", p->label, bar, 100.0 * (double)done / (double)total,
            t - p->start);
    fflush(stderr);
    p->drawn = 1;
}

void ci_progress_done(ci_progress *p) {
    if (p->drawn) fputc('\n', stderr);
    p->drawn = 0;
}
