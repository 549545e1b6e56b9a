/* progress.h — a progress bar on stderr, shown only when stderr is a
 * terminal and the work has already taken over a second. */
#ifndef CINFER_UTIL_PROGRESS_H
#define CINFER_UTIL_PROGRESS_H

#include <stddef.h>

typedef struct ci_progress {
    const char *label;
    double start;     /* seconds, monotonic */
    double last_draw; /* seconds */
    int enabled;      /* stderr is a tty */
    int drawn;        /* something was drawn (needs a final newline) */
} ci_progress;

void ci_progress_init(ci_progress *p, const char *label);
/* Redraws at most every 100 ms, after the first second. */
void ci_progress_update(ci_progress *p, size_t done, size_t total);
/* Finishes the line if a bar was drawn. */
void ci_progress_done(ci_progress *p);

/* Monotonic clock in seconds. */
double ci_now(void);

#endif
