/* http.h: the small HTTP server of a vecshard process: GET /metrics (Prometheus text 0.0.4 from a
 * vs_metrics_t registry), GET /healthz, and extra GET endpoints the owner adds (e.g. /statusz).
 *
 * Built on libmicrohttpd with its internal polling thread, so the owner starts it and forgets it. It
 * does not do TLS, authentication, request bodies or compression: it is meant for a cluster-internal
 * scrape port. Answers: 200 for known paths, 404 for other paths, 405 (with `Allow: GET, HEAD`) for
 * methods other than GET and HEAD. */
#ifndef VS_COMMON_NET_HTTP_H
#define VS_COMMON_NET_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "common/net/metrics.h"
#include "common/status.h"

typedef struct vs_http vs_http_t;

#define VS_HTTP_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define VS_HTTP_MAX_HANDLERS 16
/* Concurrent connections served (fewer when the descriptor limit is low: http.c). */
#define VS_HTTP_MAX_CONNECTIONS 4096

/* Starts serving on bind_addr:port. bind_addr: a numeric IPv4 or IPv6 address ("127.0.0.1", "0.0.0.0",
 * "::1"); NULL means "0.0.0.0". port 0 picks an ephemeral port, written to *out_port (may be NULL).
 * reg is borrowed and must outlive the server (vs_http_stop before vs_metrics_destroy); it may be NULL,
 * and then /metrics answers 404. *out: a new server, freed by vs_http_stop.
 * Returns VS_OK; VS_ERR_INVALID_ARGUMENT (bad address, out NULL); VS_ERR_UNAVAILABLE (the port could
 * not be bound or the thread not started), with detail in err (VS_ERR_LEN bytes, may be NULL).
 * Requests are answered on one internal thread, at most 64 connections, 10 s idle timeout. */
vs_status vs_http_start(const char *bind_addr, uint16_t port, vs_metrics_t *reg, vs_http_t **out,
                        uint16_t *out_port, char *err);

/* Stops the server (waits for its thread, closes the socket) and frees it. NULL is a no-op. */
void vs_http_stop(vs_http_t *h);

/* An extra endpoint. Called on the server thread for GET/HEAD of its exact path; fills *out_body with a
 * malloc'd buffer of *out_len bytes (taken by the server, freed with free(); NULL with length 0 for an
 * empty body) and may set *out_content_type to a static string (default "text/plain; charset=utf-8").
 * Returns the HTTP status code to answer (e.g. 200; 500 if it failed). It must not block for long: it
 * delays every other request. */
typedef int (*vs_http_handler_fn)(void *user, char **out_body, size_t *out_len,
                                  const char **out_content_type);

/* Adds (or replaces) the handler of path (e.g. "/statusz"; "/metrics" and "/healthz" are taken). path is
 * copied; fn and user are borrowed until vs_http_stop. Thread-safe; takes effect for the next request.
 * Returns VS_OK, VS_ERR_INVALID_ARGUMENT (path not starting with '/', or reserved),
 * VS_ERR_RESOURCE_EXHAUSTED (VS_HTTP_MAX_HANDLERS reached), VS_ERR_NOMEM. */
vs_status vs_http_add_handler(vs_http_t *h, const char *path, vs_http_handler_fn fn, void *user);

#endif
