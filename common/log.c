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

void vs_log(vs_log_level level, const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    static const char *names[] = {"INFO", "WARN", "ERROR"};
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
            tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level], component, msg);
}
