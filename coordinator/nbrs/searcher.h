/* searcher.h: a built index version searched in process, over its partition files: what a batch run
 * searches with when no cluster is named. Each partition is opened and checked as a shard opens it
 * (vs_shard_open_partition), queries are routed as the coordinator routes them (vs_router_init_manifest:
 * lists ranked once for hash-partitioned IVF, only the owning partitions for cluster partitioning) and the
 * partitions' answers merged (vs_route_merge), so the answers equal the cluster's for the version as built.
 * Fresh writes (the write log) are not applied: a batch run reads the version as built.
 * Each partition's search is a multi-query call (the IVF batch kernel: queries sharing code loads). */
#ifndef VS_COORDINATOR_NBRS_SEARCHER_H
#define VS_COORDINATOR_NBRS_SEARCHER_H

#include <stddef.h>
#include <stdint.h>

#include "common/cluster/manifest.h"
#include "common/factory.h"
#include "common/status.h"

typedef struct vs_nbrs_searcher vs_nbrs_searcher_t;

/* Opens the version described by manifest_path (every partition: all must fit in memory, mmap'd).
 * VS_ERR_NOT_FOUND / VS_ERR_CORRUPT / VS_ERR_IO naming the file. *out on success. */
vs_status vs_nbrs_searcher_open(const char *manifest_path, vs_nbrs_searcher_t **out, char err[VS_ERR_LEN]);
void vs_nbrs_searcher_close(vs_nbrs_searcher_t *s); /* NULL is a no-op */

/* The loaded manifest (borrowed). */
const vs_manifest_t *vs_nbrs_searcher_manifest(const vs_nbrs_searcher_t *s);

/* The parameters queries get: given's non-zero fields, the version's search defaults for the others;
 * nprobe clipped to nlist. */
vs_search_params_t vs_nbrs_searcher_params(const vs_nbrs_searcher_t *s, const vs_search_params_t *given);

/* Searches nq queries (nq*dim floats, finite) for their k nearest with params (resolved by
 * vs_nbrs_searcher_params), n_threads (0 = all CPUs): out_dist[nq*k], out_ids[nq*k] best first, padded
 * with -1. VS_ERR_INVALID_ARGUMENT for bad k or queries (outputs untouched). Thread-safe. */
vs_status vs_nbrs_searcher_search(const vs_nbrs_searcher_t *s, size_t nq, const float *q, size_t k,
                                  const vs_search_params_t *params, size_t n_threads, float *out_dist,
                                  int64_t *out_ids, char err[VS_ERR_LEN]);

#endif
