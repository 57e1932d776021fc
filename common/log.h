/* log.h: one-line log records on stderr for the servers: "2026-11-21T10:00:00.123Z INFO shard: text".
 * Thread-safe (one fprintf per record). Not a logging framework: no levels to configure, no files;
 * the process supervisor (Kubernetes, systemd, the test harness) collects stderr. */
#ifndef VS_COMMON_LOG_H
#define VS_COMMON_LOG_H

typedef enum vs_log_level { VS_LOG_INFO, VS_LOG_WARN, VS_LOG_ERROR } vs_log_level;

/* Sets the component name printed after the level ("shard", "coordinator"); copied. */
void vs_log_set_component(const char *name);

void vs_log(vs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
