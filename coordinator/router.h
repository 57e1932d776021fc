/* router.h: which partitions a batch of queries goes to, and the merge of their answers. Pure: no
 * network, no threads started, no clock.
 *
 * Hash-partitioned versions: every partition gets the whole batch. When the partitions share one IVF
 * coarse quantizer (vs_router_init_hash_ivf), each query's nprobe lists are ranked here once and every
 * partition gets them with the queries, instead of each of P shards ranking all nlist centroids again
 * (FAISS IndexShardsIVF / search_preassigned). Cluster-partitioned versions (IVF lists spread over
 * partitions): each query's nprobe lists are found here, and each partition gets only the queries with
 * at least one of their lists in it, together with those list ids (the others as -1), so the fan-out
 * shrinks. Either way the lists come from vs_coarse_probe (shard/index/coarse.h), the function IVF
 * search itself calls, so the shards scan exactly the lists an unpartitioned index would. The merge is a
 * k-way merge per query of the partitions' sorted lists, duplicate ids dropped. */
#ifndef VS_COORDINATOR_ROUTER_H
#define VS_COORDINATOR_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "common/cluster/manifest.h"
#include "common/distance.h"
#include "common/status.h"
#include "shard/index/coarse.h"

typedef struct vs_router {
    vs_metric metric;
    uint32_t dim;
    uint32_t n_partitions;
    uint32_t nlist;           /* 0 = no coarse quantizer here (hash partitions searched with nprobe) */
    float *centroids;         /* nlist*dim (owned) */
    uint32_t *list_partition; /* nlist (owned): cluster partitioning; NULL = hash (lists ranked once) */
    vs_coarse_t coarse;       /* over centroids */
} vs_router_t;

/* Hash partitioning over n_partitions (1..65536). */
vs_status vs_router_init_hash(vs_router_t *r, vs_metric metric, uint32_t dim, uint32_t n_partitions,
                              char err[VS_ERR_LEN]);

/* Cluster partitioning: centroids (nlist*dim, copied) and the partition owning each list (copied; each
 * < n_partitions); coarse_hnsw_m > 0: the version's "IVF{nlist}_HNSW{M}" quantizer (coarse.h).
 * VS_ERR_INVALID_ARGUMENT for inconsistent input. */
vs_status vs_router_init_cluster(vs_router_t *r, vs_metric metric, uint32_t dim, uint32_t n_partitions,
                                 uint32_t nlist, const float *centroids, const uint32_t *list_partition,
                                 uint32_t coarse_hnsw_m, char err[VS_ERR_LEN]);

/* Hash partitioning over n_partitions whose IVF indexes share these nlist centroids (copied): plans
 * carry each query's nprobe lists for every partition (vs_route_plan_t.lists). */
vs_status vs_router_init_hash_ivf(vs_router_t *r, vs_metric metric, uint32_t dim, uint32_t n_partitions,
                                  uint32_t nlist, const float *centroids, uint32_t coarse_hnsw_m,
                                  char err[VS_ERR_LEN]);

/* The router of a loaded manifest: hash (with the version's coarse quantizer when rank_here, the factory
 * is IVF and there are 2+ partitions: vs_router_init_hash_ivf) or cluster (its centroids and the
 * partitions' lists). The centroids file is checked against the manifest's CRC32C, nlist, dim and the
 * partitions' centroid data CRC32C: VS_ERR_CORRUPT (or VS_ERR_IO / VS_ERR_NOT_FOUND) naming it. */
vs_status vs_router_init_manifest(vs_router_t *r, const vs_manifest_t *m, int rank_here, char err[VS_ERR_LEN]);

void vs_router_fini(vs_router_t *r);

/* The queries one partition gets. */
typedef struct vs_route_part {
    uint32_t partition;
    size_t nq;
    uint32_t *query_idx; /* nq indices into the batch (owned); NULL = all queries in order (hash) */
    int32_t *lists;      /* nq*lists_per_query list ids, -1 = not this partition's (owned); NULL for hash */
} vs_route_part_t;

typedef struct vs_route_plan {
    size_t nq;
    uint32_t lists_per_query; /* nprobe when lists were ranked here, else 0 */
    int32_t *lists;           /* hash with a shared quantizer: nq*lists_per_query, the same for every
                                 partition (owned); else NULL */
    size_t n_parts;
    vs_route_part_t *parts; /* partitions with at least one query, ascending */
} vs_route_plan_t;

/* Plans nq queries (nq*dim floats, finite). nprobe (with a quantizer here; 0 = 1) must be <= nlist. */
vs_status vs_router_plan(const vs_router_t *r, size_t nq, const float *q, uint32_t nprobe,
                         vs_route_plan_t *out, char err[VS_ERR_LEN]);
/* The same with the HNSW coarse quantizer's candidate list (quantizer_efSearch; 0 = the default). */
vs_status vs_router_plan_ef(const vs_router_t *r, size_t nq, const float *q, uint32_t nprobe, uint32_t qef,
                            vs_route_plan_t *out, char err[VS_ERR_LEN]);
void vs_route_plan_fini(vs_route_plan_t *p);

/* A plan sending all nq queries to every partition with no lists (each shard ranks its own): what a
 * filtered request takes, since only the shards know which lists may hold matching items and how much
 * further to probe for the filter's selectivity. VS_ERR_NOMEM. */
vs_status vs_router_plan_all(const vs_router_t *r, size_t nq, vs_route_plan_t *out, char err[VS_ERR_LEN]);

/* Merges the answers: part t (of plan->n_parts) answered part_ids[t]/part_dist[t] (plan->parts[t].nq * k,
 * sorted per query) or nothing (answered[t] == 0). out: nq*k, best first, duplicates dropped, padded
 * with -1. */
vs_status vs_route_merge(const vs_route_plan_t *plan, size_t k, int larger_is_better,
                         const float *const *part_dist, const int64_t *const *part_ids, const int *answered,
                         float *out_dist, int64_t *out_ids, char err[VS_ERR_LEN]);

#endif
