/* version_fixture.h: builds small index versions on disk for shard and cluster tests: the data
 * (clustered, fixed seed), one index file per hash partition (id % P) and a manifest.json with sizes
 * and CRC32C, exactly as the offline builder lays them out. */
#ifndef VS_TESTS_SUPPORT_VERSION_FIXTURE_H
#define VS_TESTS_SUPPORT_VERSION_FIXTURE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/distance.h"
#include "common/status.h"

typedef struct vs_test_version {
    char manifest[PATH_MAX]; /* <dir>/<version>/manifest.json */
    char dir[PATH_MAX];      /* <dir>/<version> */
    float *base;             /* n*dim, ids are 0..n-1 (owned) */
    float *queries;          /* nq*dim (owned) */
    size_t n, nq;
    uint32_t dim;
    uint32_t n_partitions;
    vs_metric metric;
} vs_test_version_t;

/* Builds version `version` under dir with factory (e.g. "IVF16,Flat"), metric, n vectors of dim d in
 * n_partitions hash partitions, and nq queries near the data. seed fixes everything. */
vs_status vs_test_version_build(const char *dir, const char *version, const char *factory, vs_metric metric,
                                size_t n, uint32_t d, uint32_t n_partitions, size_t nq, uint64_t seed,
                                vs_test_version_t *out, char err[VS_ERR_LEN]);

/* Path of partition p's index file into buf. */
void vs_test_version_partition_path(const vs_test_version_t *v, uint32_t p, char buf[PATH_MAX]);

/* What the version answers in process: every partition file searched with params (1 thread), the answers
 * merged per query (vs_topk_merge: by distance, ties by id). The oracle of the cluster tests.
 * out_dist and out_ids: nq*k. */
struct vs_search_params;
vs_status vs_test_version_search(const vs_test_version_t *v, const float *q, size_t nq, size_t k,
                                 const struct vs_search_params *params, float *out_dist, int64_t *out_ids,
                                 char err[VS_ERR_LEN]);

void vs_test_version_fini(vs_test_version_t *v);

/* A write-log message (protos/vecshard/v1/writelog.proto LogWrite): op 1 upsert (x: n*dim floats) or
 * 2 delete (x NULL), model version and write id as given. Returns malloc'd bytes, *len their count. */
uint8_t *vs_test_log_write(int op, const int64_t *ids, size_t n, const float *x, uint32_t dim,
                           const char *model, const char *write_id, size_t *len);

#endif
