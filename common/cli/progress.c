/* progress.c: see progress.h. */
#include "common/cli/progress.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/cli/timing.h"

void vs_format_count(char *buf, size_t n, double v)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, n, "%.1fk", v / 1e3);
    else
        snprintf(buf, n, "%.0f", v);
}

void vs_progress_start(vs_progress_t *p, const char *what, int quiet)
{
    memset(p, 0, sizeof *p);
    snprintf(p->what, sizeof p->what, "%s", what);
    p->t0 = vs_now_s();
    p->tty = quiet ? -1 : isatty(STDERR_FILENO);
    pthread_mutex_init(&p->mu, NULL);
}

void vs_progress_update(vs_progress_t *p, size_t done, size_t total)
{
    if (p->tty != 1)
        return;
    double now = vs_now_s();
    pthread_mutex_lock(&p->mu);
    if (done >= p->last_done && now - p->last_draw >= 0.2) {
        double el = now - p->t0;
        double rate = el > 0 ? (double)done / el : 0.0;
        char d[32], t[32], r[32];
        vs_format_count(d, sizeof d, (double)done);
        vs_format_count(t, sizeof t, (double)total);
        vs_format_count(r, sizeof r, rate);
        double pct = total ? 100.0 * (double)done / (double)total : 0.0;
        if (rate > 0 && done < total)
            fprintf(stderr, "\r%s: %s/%s (%.1f%%) %s/s ETA %.0fs   ", p->what, d, t, pct, r,
                    (double)(total - done) / rate);
        else
            fprintf(stderr, "\r%s: %s/%s (%.1f%%)   ", p->what, d, t, pct);
        fflush(stderr);
        p->last_draw = now;
        p->last_done = done;
        p->drawn = 1;
    }
    pthread_mutex_unlock(&p->mu);
}

double vs_progress_finish(vs_progress_t *p, size_t total)
{
    double el = vs_now_s() - p->t0;
    if (p->tty >= 0) {
        char t[32], r[32];
        vs_format_count(t, sizeof t, (double)total);
        vs_format_count(r, sizeof r, el > 0 ? (double)total / el : 0.0);
        fprintf(stderr, "%s%s: %s in %.2f s (%s/s)\n", p->drawn ? "\r" : "", p->what, t, el, r);
    }
    pthread_mutex_destroy(&p->mu);
    return el;
}

void vs_progress_report(void *ctx, size_t done, size_t total)
{
    vs_progress_update((vs_progress_t *)ctx, done, total);
}
