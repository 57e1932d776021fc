/* metrics.h (shard): the shard's Prometheus metrics and the HTTP endpoint serving them (/metrics,
 * /healthz). RPC metrics use the go-grpc-prometheus names (grpc_server_handled_total,
 * grpc_server_handling_seconds); shard metrics are vecshard_shard_*; etcd trouble is
 * vecshard_etcd_errors_total. docs/operations.md lists every metric and what to alert on. */
#ifndef VS_SHARD_SERVER_METRICS_H
#define VS_SHARD_SERVER_METRICS_H

#include "common/net/health.h"
#include "common/net/overload.h"
#include "common/status.h"
#include "shard/server/membership.h"
#include "shard/server/shard.h"

typedef struct vs_shard_metrics vs_shard_metrics_t;

vs_status vs_shard_metrics_create(vs_shard_metrics_t **out, char err[VS_ERR_LEN]);

/* Starts HTTP on listen ("host:port"; port 0 = ephemeral; "none" = no HTTP): /metrics, /healthz, and
 * /readyz from health (vs_serve_http). sh and health are borrowed and read at request time.
 * *out_port = the bound port (0 for none). */
vs_status vs_shard_metrics_start(vs_shard_metrics_t *m, vs_shard_t *sh, vs_health_t *health,
                                 const char *listen, int *out_port, char err[VS_ERR_LEN]);

/* vs_rpc_done_fn: counts a finished call and its latency. */
void vs_shard_metrics_on_call(void *user, const char *path, int code, double seconds);

/* The shard's on_stage callback (vs_shard_opts_t): user is the vs_shard_metrics_t. */
void vs_shard_metrics_on_stage(void *user, vs_shard_stage stage, double seconds);

/* Queue-time and shedding metrics (vecshard_shard_queue_seconds, vecshard_shard_shed_total). */
vs_overload_metrics_t *vs_shard_metrics_overload(vs_shard_metrics_t *m);

/* The membership whose etcd counters are exported (NULL = none any more). Thread-safe. */
void vs_shard_metrics_set_membership(vs_shard_metrics_t *m, vs_membership_t *mem);

/* Stops HTTP and frees. NULL is a no-op. */
void vs_shard_metrics_stop(vs_shard_metrics_t *m);

#endif
