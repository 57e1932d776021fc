/* log.c: see log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

static char component[32] = "vecshard";
static vs_log_format format = VS_LOG_TEXT;

void vs_log_set_component(const char *name)
{
    snprintf(component, sizeof component, "%s", name);
}

void vs_log_set_format(vs_log_format f)
{
    format = f;
}

int vs_log_parse_format(const char *s, vs_log_format *out)
{
    if (s && strcmp(s, "text") == 0)
        *out = VS_LOG_TEXT;
    else if (s && strcmp(s, "json") == 0)
        *out = VS_LOG_JSON;
    else
        return -1;
    return 0;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if the bytes there are not one. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len = p[0] < 0x80             ? 1
                 : (p[0] & 0xE0) == 0xC0 ? 2
                 : (p[0] & 0xF0) == 0xE0 ? 3
                 : (p[0] & 0xF8) == 0xF0 ? 4
                                         : 0;
    if (len == 0 || len > n || (len == 2 && p[0] < 0xC2))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if (len == 3) { /* no overlong forms, no surrogates */
        unsigned cp = ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
        if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
    } else if (len == 4) {
        unsigned cp =
            ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
        if (cp < 0x10000 || cp > 0x10FFFF)
            return 0;
    }
    return len;
}

/* Appends s as the body of a JSON string to out (capacity cap, always terminated); returns the new length. */
static size_t json_escape(char *out, size_t len, size_t cap, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    while (n > 0 && len + 7 < cap) {
        size_t l = utf8_len(p, n);
        if (l == 0) {
            len += (size_t)snprintf(out + len, cap - len, "\\ufffd");
            p++;
            n--;
            continue;
        }
        if (l == 1 && (*p == '"' || *p == '\\')) {
            out[len++] = '\\';
            out[len++] = (char)*p;
        } else if (l == 1 && *p == '\n') {
            len += (size_t)snprintf(out + len, cap - len, "\\n");
        } else if (l == 1 && (*p < 0x20 || *p == 0x7F)) {
            len += (size_t)snprintf(out + len, cap - len, "\\u%04x", *p);
        } else {
            memcpy(out + len, p, l);
            len += l;
        }
        p += l;
        n -= l;
    }
    out[len] = '\0';
    return len;
}

static void emit(vs_log_level level, const char *fmt, va_list ap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    char when[64];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    static const char *names[] = {"INFO", "WARN", "ERROR"}, *json_names[] = {"info", "warn", "error"};
    char line[8192];
    size_t len;
    if (format == VS_LOG_JSON) {
        len = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"", when,
                               json_names[level]);
        len = json_escape(line, len, sizeof line - 16, component);
        len += (size_t)snprintf(line + len, sizeof line - len, "\",\"msg\":\"");
        len = json_escape(line, len, sizeof line - 4, msg);
        len += (size_t)snprintf(line + len, sizeof line - len, "\"}\n");
    } else {
        int w = snprintf(line, sizeof line, "%s %s %s: %s\n", when, names[level], component, msg);
        len = w < 0 ? 0 : (size_t)w < sizeof line ? (size_t)w : sizeof line - 1;
    }
    fwrite(line, 1, len, stderr);
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
