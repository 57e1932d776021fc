/* log.c: see log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "common/log.h"

static char component[32] = "vecshard";

void vs_log_set_component(const char *name)
{
    snprintf(component, sizeof component, "%s", name);
}

static void emit(vs_log_level level, const char *fmt, va_list ap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    static const char *names[] = {"INFO", "WARN", "ERROR"};
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
            tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level], component, msg);
}

void vs_log(vs_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, fmt, ap);
    va_end(ap);
}

void vs_log_limited(vs_log_limit_t *lim, vs_log_level level, const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ts.tv_sec - lim->window_start_s >= VS_LOG_LIMIT_WINDOW_S) {
        if (lim->dropped)
            vs_log(VS_LOG_WARN, "(%u similar lines dropped in the last %d s)", lim->dropped,
                   VS_LOG_LIMIT_WINDOW_S);
        lim->window_start_s = ts.tv_sec;
        lim->printed = lim->dropped = 0;
    }
    if (lim->printed >= VS_LOG_LIMIT_BURST) {
        lim->dropped++;
        return;
    }
    lim->printed++;
    va_list ap;
    va_start(ap, fmt);
    emit(level, fmt, ap);
    va_end(ap);
}
