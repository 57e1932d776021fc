/* tune.h: per-version search defaults. After a version is built, its partitions are searched with tune
 * queries whose exact neighbours are known, and the cheapest parameters that reach a recall target are
 * recorded in the manifest (search_defaults): queries that give no parameters use them, so a client no
 * longer has to know that IVF16384 needs nprobe 32 while IVF1024 needs 8, and a rollback to a version with
 * a smaller nlist does not turn every client's nprobe into an error.
 *
 * Cost model (deterministic, so rebuilds stay byte-identical): IVF bytes touched per query =
 * nprobe x (mean list length x code bytes + lookup-table bytes) + k x k_factor x refine bytes per vector;
 * HNSW: efSearch. Sweeps: nprobe over 1, 2, 3, 4, 6, 8, 12, ... nlist for each k_factor in {1,2,4,8,16}
 * (with a refine stage; else the index default); efSearch over k, 16, 24, 32, 48 ... 4096. Search runs on
 * one thread, so the measured recall is reproducible. Partitions are searched one by one and merged (for
 * cluster partitioning a partition holds only its own lists, so nprobe over the shared centroids is
 * exactly what centroid routing scans). */
#ifndef VS_SHARD_BUILDER_TUNE_H
#define VS_SHARD_BUILDER_TUNE_H

#include <stddef.h>
#include <stdint.h>

#include "common/cluster/manifest.h"
#include "common/status.h"
#include "shard/index/index.h"

typedef struct vs_tune_opts {
    double target_recall;  /* recall@k to reach, in (0, 1] */
    uint32_t k;            /* 1..1000 */
    const float *queries;  /* nq x dim, borrowed */
    size_t nq;             /* >= 1 */
    const int64_t *gt_ids; /* nq x k exact neighbour ids (best first), borrowed */
    const char *source;    /* recorded: "file" or "base-sample" */
} vs_tune_opts_t;

/* Searches every partition of m (parts[p]: partition p, loaded; borrowed, only searched) and fills
 * m->defaults with the cheapest parameters reaching o->target_recall; when none does, the best recall
 * found (measured_recall says it). Index types without tunable parameters (Flat) get no defaults and VS_OK.
 * VS_ERR_INVALID_ARGUMENT (options), errors of the searches. */
vs_status vs_tune_version(vs_manifest_t *m, vs_index_t *const *parts, const vs_tune_opts_t *o,
                          char err[VS_ERR_LEN]);

/* recall@k of ids (nq x k) against gt (nq x k): |ids_i ∩ gt_i| / k averaged over queries. */
double vs_tune_recall(const int64_t *ids, const int64_t *gt, size_t nq, size_t k);

#endif
