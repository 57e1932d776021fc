/* progress.h: the callback through which long work (train, encode, build, ground truth) reports
 * progress. Algorithms call it; they never read a clock or print. Tools pass vs_progress_report
 * (common/cli/progress.h), which draws a line with rate and ETA on a TTY. */
#ifndef VS_COMMON_PROGRESS_H
#define VS_COMMON_PROGRESS_H

#include <stddef.h>

typedef struct vs_progress_cb {
    /* done of total units finished; may be called from several threads at once. */
    void (*fn)(void *ctx, size_t done, size_t total);
    void *ctx;
} vs_progress_cb_t;

static inline void vs_progress_call(const vs_progress_cb_t *cb, size_t done, size_t total)
{
    if (cb != NULL && cb->fn != NULL)
        cb->fn(cb->ctx, done, total);
}

#endif
