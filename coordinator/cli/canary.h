/* canary.h: the canary gate of `vecshard activate --canary ADDR` (issue 16, part 2). Before a version
 * becomes active, its recall is measured through a coordinator on the query set stored with the version
 * (tune-queries.fvecs, which vecshard-build keeps beside the manifest): every query answered as clients
 * would get it (pinned to the version, its search defaults, full coverage) and exactly
 * (SearchRequest.exact: each shard scans its partition's float vectors), recall@k = |served ∩ exact| /
 * |exact| averaged. A version whose files are consistent but whose index is broken (scrambled centroids,
 * wrong parameters) passes every load check and fails here. Needs a version keeping exact vectors (IVF,Flat,
 * an RFlat refine, HNSW). */
#ifndef VS_COORDINATOR_CLI_CANARY_H
#define VS_COORDINATOR_CLI_CANARY_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct vs_canary_result {
    size_t queries; /* measured */
    uint32_t k;
    double recall;         /* mean recall@k of the served answers against the exact ones */
    double target;         /* the manifest's search_defaults target_recall (0 when absent) */
    double build_measured; /* what the builder measured (0 when absent) */
} vs_canary_result_t;

/* Measures version (its manifest at manifest_path) through the coordinator at addr with at most max_queries
 * of its stored queries (0 = all) and k (0 = the k the defaults were tuned for, else 10). VS_ERR_NOT_FOUND
 * when the version has no stored query set; the coordinator's status otherwise (UNIMPLEMENTED: no exact
 * vectors). */
vs_status vs_canary_measure(const char *addr, const char *manifest_path, const char *version, uint32_t k,
                            size_t max_queries, int64_t timeout_ms, vs_canary_result_t *out,
                            char err[VS_ERR_LEN]);

#endif
