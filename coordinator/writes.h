/* writes.h: the coordinator's write API (vecshard.v1.Coordinator Upsert and Delete, issue 15) onto the
 * cluster's write log (common/net/wlog.h). A request is checked whole - ids (>= 0, each once), vectors
 * (the held versions' dimension, finite), the embedding model (a held version of it must exist), the
 * size (one request is one log message, under the server's message limit) - then logged under its write
 * id (the client's or a new one) and answered with its log position once the log acknowledged it.
 * Nothing is half-logged: a refused request writes nothing. Thread-safe. */
#ifndef VS_COORDINATOR_WRITES_H
#define VS_COORDINATOR_WRITES_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/coord.h"

typedef struct vs_writes vs_writes_t;

/* Starts a thread that connects to the log (and creates its stream, with `replicas` copies (0 = 1), when
 * missing), again every second until it works; writes are refused UNAVAILABLE until then. coord outlives
 * the writes. */
vs_status vs_writes_create(const char *nats_url, const char *cluster, int replicas, vs_coord_t *coord,
                           vs_writes_t **out, char err[VS_ERR_LEN]);
/* Shutdown: new writes are refused (UNAVAILABLE) and those handed to the log are answered (waiting up to
 * 5 s for its acknowledgements). Call before the gRPC server stops (the answers need their calls). */
void vs_writes_stop(vs_writes_t *w);
void vs_writes_destroy(vs_writes_t *w); /* stops if needed and frees; NULL is a no-op */

/* Called once per accepted write, on a thread of the log's client: body (a WriteResponse, malloc'd,
 * the callee's) when st is VS_OK, else err says why. */
typedef void (*vs_writes_done_fn)(void *user, vs_status st, const char *err, uint8_t *body, size_t len);

/* Checks an Upsert (is_delete 0) or Delete request and hands it to the log without waiting (writes
 * travel pipelined; the caller - a gRPC worker that searches share - never waits for the log): VS_OK,
 * and done answers it once the log acknowledged it (or failed). Any other status refuses it at once
 * (done is not called): bad request, not connected to the log, or VS_ERR_RESOURCE_EXHAUSTED when
 * VS_WRITES_MAX_IN_FLIGHT writes wait for the log already. Thread-safe. */
#define VS_WRITES_MAX_IN_FLIGHT 4096
/* Writes are refused (RESOURCE_EXHAUSTED) while a replica of the active version reports its fresh state
 * this full (percent of its capacity, from its member record); the rest takes the writes in flight. */
#define VS_WRITES_REFUSE_FILL_PCT 95
vs_status vs_writes_submit(vs_writes_t *w, int is_delete, const uint8_t *req, size_t len,
                           vs_writes_done_fn done, void *user, char err[VS_ERR_LEN]);

/* 1 once the log was opened (writes are taken from then on; libnats reconnects after that), else 0. */
int vs_writes_connected(vs_writes_t *w);

/* Writes acknowledged, refused (bad request) and failed (log unavailable or full) so far. */
void vs_writes_counts(vs_writes_t *w, uint64_t *ok, uint64_t *refused, uint64_t *failed);

#endif
