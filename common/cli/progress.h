/* progress.h (cli): a progress line for long work, "what: 12.3k/60k (20.5%) 8.1k/s ETA 6s", redrawn
 * in place at most 5 times a second on a TTY (stderr), and a single summary line when stderr is not a
 * TTY (logs and CI stay readable). Thread-safe: updates from several threads are serialised. */
#ifndef VS_COMMON_CLI_PROGRESS_H
#define VS_COMMON_CLI_PROGRESS_H

#include <pthread.h>
#include <stddef.h>

#include "common/progress.h"

typedef struct vs_progress {
    char what[64];
    double t0;
    double last_draw;
    size_t last_done;
    int tty;
    int drawn;
    pthread_mutex_t mu;
} vs_progress_t;

/* Starts timing; quiet = 1 prints nothing at all. */
void vs_progress_start(vs_progress_t *p, const char *what, int quiet);
/* Reports done of total; redraws when due. */
void vs_progress_update(vs_progress_t *p, size_t done, size_t total);
/* Ends the line: "what: 60000 in 3.21 s (18.7k/s)". Returns elapsed seconds. */
double vs_progress_finish(vs_progress_t *p, size_t total);

/* Adapter for algorithms taking a vs_progress_cb_t: ctx is a vs_progress_t. */
void vs_progress_report(void *ctx, size_t done, size_t total);

/* Formats a count with k/M/G suffix into buf (n bytes). */
void vs_format_count(char *buf, size_t n, double v);

#endif
