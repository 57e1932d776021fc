/* test_faults_compat: the compatibility rule (docs/protocol.md) with real binaries of two releases in one
 * cluster: etcd, 2 partitions x 2 replicas where each partition has one shard of the previous release
 * ($VS_PREV_BIN_DIR/vecshard-shard, built by tests/compat/run.sh from the commit it names) and one of this
 * release, and this release's coordinator and CLI. Under checked load: the bootstrapped v1 serves, v2 (a
 * manifest with this release's fields: content ids, trained state, search defaults) is deployed, loaded by
 * both releases, activated, rolled back and activated again. Asserted: 0 failed and 0 wrong answers, both
 * releases' replicas answer (the coordinator routes to replicas that report no content id), and the old
 * shards list v2 READY. Without $VS_PREV_BIN_DIR the test fails and says how to build it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli/timing.h"
#include "tests/faults/harness.h"
#include "tests/testlib.h"

int main(void)
{
    const char *prev = getenv("VS_PREV_BIN_DIR");
    if (!prev || !prev[0]) {
        fprintf(stderr,
                "test_faults_compat: VS_PREV_BIN_DIR is not set: run tests/compat/run.sh, which builds "
                "the previous release and runs this test\n");
        return 1;
    }
    const char *dir = strdup(vs_test_tmpdir("faults_compat"));
    static vs_test_version_t v1, v2;
    char err[VS_ERR_LEN], out[8192], args[2 * PATH_MAX];
    if (vs_test_version_build(dir, "v1", "IVF16,Flat", VS_METRIC_L2, 4000, 16, 2, 30, 21, &v1, err) !=
            VS_OK ||
        vs_test_version_build(dir, "v2", "IVF16,PQ4", VS_METRIC_L2, 4000, 16, 2, 30, 22, &v2, err) != VS_OK) {
        fprintf(stderr, "versions: %s\n", err);
        return 1;
    }
    /* new shards s<p>-0 and the coordinator; then one shard of the previous release per partition */
    vs_fault_cluster_t c;
    int ok = vs_fault_start(&c, dir, "fc", 2, 1, &v1) == 0;
    vs_test_proc_t old[2];
    memset(old, 0, sizeof old);
    const char *boot[] = {"--manifest", v1.manifest, NULL};
    for (uint32_t p = 0; ok && p < 2; p++) {
        char id[16];
        snprintf(id, sizeof id, "old%u", p);
        ok = vs_fault_start_shard_from(&c, &old[p], p, id, prev, boot) == 0;
    }
    CHECK(ok);
    if (!ok) {
        vs_fault_stop(&c, 1);
        return vs_test_finish();
    }
    c.queries_from = &v1;
    vs_fault_expect(&c, "v1", &v1);
    vs_fault_expect(&c, "v2", &v2);
    CHECK(vs_fault_wait_served_by(&c, "v1", 20));
    double lat = 0;
    double t0 = vs_now_s();
    while ((vs_fault_coord_member(&c, "old0", &lat) != 1 || vs_fault_coord_member(&c, "old1", &lat) != 1) &&
           vs_now_s() - t0 < 20)
        usleep(100000);
    vs_fault_load_start(&c, 2);

    int f0 = vs_test_failures;
    snprintf(args, sizeof args, "deploy %s", v2.manifest);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0, "deploy v2: %s", out);
    CHECKF(vs_fault_cli_until_ok(&c, "activate v2 --min-ready 2", 30, out, sizeof out) == 0,
           "activate v2 on both releases: %s", out);
    CHECK(vs_fault_wait_served_by(&c, "v2", 10));
    CHECKF(vs_fault_cli(&c, "rollback", out, sizeof out) == 0, "rollback: %s", out);
    CHECK(vs_fault_wait_served_by(&c, "v1", 10));
    CHECKF(vs_fault_cli_until_ok(&c, "activate v2 --min-ready 2", 30, out, sizeof out) == 0,
           "activate v2: %s", out);
    CHECK(vs_fault_wait_served_by(&c, "v2", 10));
    unsigned long sent0 = atomic_load(&c.sent);
    t0 = vs_now_s();
    while (atomic_load(&c.sent) < sent0 + 1000 && vs_now_s() - t0 < 20)
        usleep(50000);
    vs_fault_load_stop(&c);
    double lat_old0 = 0, lat_old1 = 0, lat_new0 = 0, lat_new1 = 0;
    CHECK(vs_fault_coord_member(&c, "old0", &lat_old0) == 1 &&
          vs_fault_coord_member(&c, "old1", &lat_old1) == 1 &&
          vs_fault_coord_member(&c, "s0-0", &lat_new0) == 1 &&
          vs_fault_coord_member(&c, "s1-0", &lat_new1) == 1);
    printf("  latency EWMA: previous release %.3f / %.3f ms, this release %.3f / %.3f ms\n", lat_old0,
           lat_old1, lat_new0, lat_new1);
    CHECKF(lat_old0 > 0 && lat_old1 > 0 && lat_new0 > 0 && lat_new1 > 0, "both releases answered");
    CHECK(vs_fault_shard_versions(&c, 0, "old0") >= 2 && vs_fault_shard_versions(&c, 1, "old1") >= 2);
    printf("  load: %lu queries, %lu failed, %lu wrong; by v1 %lu, v2 %lu\n", atomic_load(&c.sent),
           atomic_load(&c.failed), atomic_load(&c.wrong), atomic_load(&c.by_version[0]),
           atomic_load(&c.by_version[1]));
    vs_fault_check_load(&c, "two_releases");
    CHECK(atomic_load(&c.by_version[0]) > 0 && atomic_load(&c.by_version[1]) > 0);
    vs_test_case_done("two_releases", vs_test_failures == f0);

    for (int p = 0; p < 2; p++)
        CHECK(vs_test_proc_stop(&old[p], SIGTERM, 10) == 0);
    vs_fault_stop(&c, vs_test_failures > 0);
    vs_test_version_fini(&v1);
    vs_test_version_fini(&v2);
    if (vs_test_failures == 0)
        vs_test_cleanup("faults_compat");
    return vs_test_finish();
}
