/* log.h: one-line log records on stderr for the servers, as text
 *   2026-11-21T10:00:00.123Z INFO shard: text
 * or, with vs_log_set_format(VS_LOG_JSON) (the servers' --log-format json), one JSON object per line
 *   {"ts":"2026-11-21T10:00:00.123Z","level":"info","component":"shard","msg":"text"}
 * (strings escaped per RFC 8259; bytes that are not UTF-8 become U+FFFD, so every line parses).
 * Thread-safe (one fwrite per record). Not a logging framework: no levels to configure, no files;
 * the process supervisor (Kubernetes, systemd, the test harness) collects stderr. */
#ifndef VS_COMMON_LOG_H
#define VS_COMMON_LOG_H

typedef enum vs_log_level { VS_LOG_INFO, VS_LOG_WARN, VS_LOG_ERROR } vs_log_level;

typedef enum vs_log_format { VS_LOG_TEXT, VS_LOG_JSON } vs_log_format;

/* Sets the component name printed after the level ("shard", "coordinator"); copied. */
void vs_log_set_component(const char *name);

/* Sets the record format (default VS_LOG_TEXT). Call before threads log. */
void vs_log_set_format(vs_log_format f);

/* "text" or "json" -> *out; -1 for anything else. */
int vs_log_parse_format(const char *s, vs_log_format *out);

void vs_log(vs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A rate limit for one repeating log site: at most VS_LOG_LIMIT_BURST lines per VS_LOG_LIMIT_WINDOW_S
 * seconds; the first line after a window that dropped some says how many. Zero-initialise; the owner
 * serialises calls on one limiter (or accepts an approximate count). */
#define VS_LOG_LIMIT_BURST 5
#define VS_LOG_LIMIT_WINDOW_S 10
typedef struct vs_log_limit {
    long long window_start_s;
    unsigned printed, dropped;
} vs_log_limit_t;

void vs_log_limited(vs_log_limit_t *lim, vs_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
