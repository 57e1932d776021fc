/* health.h: grpc.health.v1.Health (Check and Watch, grpc/grpc doc/health-checking.md) over rpc.h.
 *
 * A registry of service name -> status. "" is the server's overall status. Check answers the status or
 * NOT_FOUND for an unknown service; Watch sends the current status at once and again on every change
 * (SERVICE_UNKNOWN for an unknown service, and keeps the stream open in case it appears).
 * Kubernetes gRPC probes call Check. */
#ifndef VS_COMMON_NET_HEALTH_H
#define VS_COMMON_NET_HEALTH_H

#include "common/net/rpc.h"

typedef enum vs_health_status {
    VS_HEALTH_UNKNOWN = 0,
    VS_HEALTH_SERVING = 1,
    VS_HEALTH_NOT_SERVING = 2,
    VS_HEALTH_SERVICE_UNKNOWN = 3,
} vs_health_status;

typedef struct vs_health vs_health_t;

vs_status vs_health_create(vs_health_t **out, char err[VS_ERR_LEN]);
/* Finishes every open Watch stream (status OK), then frees. Call before vs_rpc_server_stop's grace
 * period ends so that watchers do not hold the shutdown. NULL is a no-op. */
void vs_health_destroy(vs_health_t *h);

/* Sets a service's status (registers it on first use) and notifies its watchers. Thread-safe. */
void vs_health_set(vs_health_t *h, const char *service, vs_health_status status);
vs_health_status vs_health_get(vs_health_t *h, const char *service);

/* Ends every Watch stream now (status OK); later Watch calls are answered UNAVAILABLE. */
void vs_health_close_watchers(vs_health_t *h);

/* The two methods to register on a server: "/grpc.health.v1.Health/Check" and ".../Watch". */
void vs_health_methods(vs_health_t *h, vs_rpc_method_t out[2]);

#endif
