/* serve.h: what every vecshard server process shares around its gRPC server: the RPC metrics
 * (go-grpc-prometheus names), /metrics from a "host:port" flag, the --port-file, the signal set main
 * waits on. Servers (shard/server/main.c, coordinator/main.c) stay small and alike. */
#ifndef VS_COMMON_NET_SERVE_H
#define VS_COMMON_NET_SERVE_H

#include <signal.h>

#include "common/net/health.h"
#include "common/net/http.h"
#include "common/net/metrics.h"
#include "common/net/rpc.h"

/* grpc_server_handled_total and grpc_server_handling_seconds in reg. */
typedef struct vs_rpc_metrics {
    vs_metric_family_t *handled, *handling;
} vs_rpc_metrics_t;

vs_status vs_rpc_metrics_init(vs_rpc_metrics_t *m, vs_metrics_t *reg, char err[VS_ERR_LEN]);

/* A vs_rpc_done_fn: user is a vs_rpc_metrics_t. Unknown methods count as service/method "unknown". */
void vs_rpc_metrics_on_done(void *user, const char *path, int code, double seconds);

/* Raises the soft RLIMIT_NOFILE to the hard limit (at most 65536): Debian and systemd start processes at
 * 1024, which a server with thousands of client, shard and scrape connections outgrows. Best effort. */
void vs_serve_raise_fd_limit(void);

/* Starts /metrics, /healthz (liveness: 200 while the process answers) and, with health, /readyz (200
 * "SERVING" while health's "" service is SERVING, else 503: the readiness probe where gRPC health checks
 * cannot be used, as when the gRPC port requires TLS) on listen ("host:port", port 0 = ephemeral;
 * "none" = no server, *out NULL). *out_port gets the bound port (0 for none). */
vs_status vs_serve_http(const char *listen, vs_metrics_t *reg, vs_health_t *health, vs_http_t **out,
                        int *out_port, char err[VS_ERR_LEN]);

/* Writes "grpc=P\nmetrics=Q\n" to path atomically (tmp + rename). 0 or -1. */
int vs_serve_write_port_file(const char *path, int grpc_port, int metrics_port);

/* Blocks SIGTERM and SIGINT in the calling thread (and the threads it creates later) and ignores
 * SIGPIPE; *out is the set to sigwait on. Call first in main. */
void vs_serve_block_signals(sigset_t *out);

#endif
