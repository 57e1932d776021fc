/* vecshard-test-version: builds a small index version on disk for tests written in other languages
 * (the Python gRPC client test): index files, manifest.json, and the data as base.fvecs/queries.fvecs.
 * usage: vecshard-test-version DIR VERSION FACTORY METRIC N DIM PARTITIONS NQ SEED
 * Prints the manifest path. */
#include <stdio.h>
#include <stdlib.h>

#include "common/vecio.h"
#include "tests/support/version_fixture.h"

int main(int argc, char **argv)
{
    if (argc != 10) {
        fprintf(stderr, "usage: %s DIR VERSION FACTORY METRIC N DIM PARTITIONS NQ SEED\n", argv[0]);
        return 2;
    }
    char err[VS_ERR_LEN];
    vs_metric metric;
    if (vs_metric_parse(argv[4], &metric, err) != VS_OK) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    vs_test_version_t v;
    vs_status st =
        vs_test_version_build(argv[1], argv[2], argv[3], metric, strtoul(argv[5], NULL, 10),
                              (uint32_t)strtoul(argv[6], NULL, 10), (uint32_t)strtoul(argv[7], NULL, 10),
                              strtoul(argv[8], NULL, 10), strtoull(argv[9], NULL, 10), &v, err);
    char path[PATH_MAX + 32];
    if (st == VS_OK) {
        snprintf(path, sizeof path, "%s/base.fvecs", v.dir);
        st = vs_vecio_write_fvecs(path, v.n, v.dim, v.base, err);
    }
    if (st == VS_OK) {
        snprintf(path, sizeof path, "%s/queries.fvecs", v.dir);
        st = vs_vecio_write_fvecs(path, v.nq, v.dim, v.queries, err);
    }
    if (st != VS_OK) {
        fprintf(stderr, "vecshard-test-version: %s\n", err);
        return 1;
    }
    printf("%s\n", v.manifest);
    vs_test_version_fini(&v);
    return 0;
}
