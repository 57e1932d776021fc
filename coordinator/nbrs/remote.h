/* remote.h: a batch run's searches through a running cluster: Search calls to a coordinator, each carrying
 * up to call_queries queries, `concurrency` calls in flight (one thread, asynchronous calls). Every call is
 * pinned to one index version (the active one when the run starts, or the one named), so a version
 * activated during the run does not mix into its answers, and asks for full coverage (min_coverage 1: a
 * partition without a live replica makes the call fail instead of answering partially). A call failing
 * with UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED is retried up to 5 times with backoff; any
 * other failure ends the search with the coordinator's status and message. Unlike the in-process searcher,
 * answers include the cluster's fresh writes as of each call. */
#ifndef VS_COORDINATOR_NBRS_REMOTE_H
#define VS_COORDINATOR_NBRS_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "common/distance.h"
#include "common/factory.h"
#include "common/status.h"

typedef struct vs_nbrs_remote vs_nbrs_remote_t;

/* Connects to the coordinator at addr and finds the version (version NULL: the active one, from Status).
 * VS_ERR_UNAVAILABLE when it cannot be reached; VS_ERR_NOT_FOUND when there is no active version. */
vs_status vs_nbrs_remote_open(const char *addr, const char *version, int timeout_ms, size_t call_queries,
                              size_t concurrency, vs_nbrs_remote_t **out, char err[VS_ERR_LEN]);
void vs_nbrs_remote_close(vs_nbrs_remote_t *r); /* NULL is a no-op */

/* The version every call is pinned to (borrowed). */
const char *vs_nbrs_remote_version(const vs_nbrs_remote_t *r);
/* The version's metric, known after the first answered call (VS_METRIC_L2 before). */
vs_metric vs_nbrs_remote_metric(const vs_nbrs_remote_t *r);

/* Searches nq queries of dim floats for their k nearest with params (0 fields: the version's defaults):
 * out_dist[nq*k], out_ids[nq*k], padded with -1. The coordinator's status on failure (err names the code
 * and message). Not thread-safe. */
vs_status vs_nbrs_remote_search(vs_nbrs_remote_t *r, size_t nq, const float *q, uint32_t dim, size_t k,
                                const vs_search_params_t *params, float *out_dist, int64_t *out_ids,
                                char err[VS_ERR_LEN]);

#endif
