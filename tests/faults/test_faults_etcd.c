/* test_faults_etcd: etcd frozen under load (issue 13, "Why" 7), on a real local cluster (etcd, 2
 * partitions x 2 replicas with a 3 s lease, a coordinator) with every answer checked against its version.
 *
 * etcd is stopped with SIGSTOP for longer than the lease TTL. Its watch streams stay open (TCP is fine),
 * so only the coordinator's heartbeat can tell: Status must report etcd unreachable within a few seconds.
 * When etcd resumes it expires every lease at once and deletes every member record; the coordinator must
 * keep routing to the replicas whose own health still says SERVING (static stability) until they have
 * re-registered. Asserted: the freeze is detected, every record is re-created after the freeze (so the
 * orphan path really ran), and 0 failed and 0 wrong queries throughout. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli/timing.h"
#include "tests/faults/harness.h"
#include "tests/testlib.h"

#define FREEZE_S 8

int main(void)
{
    const char *dir = strdup(vs_test_tmpdir("faults_etcd"));
    static vs_test_version_t v1;
    char err[VS_ERR_LEN];
    if (vs_test_version_build(dir, "v1", "IVF16,Flat", VS_METRIC_L2, 4000, 16, 2, 30, 21, &v1, err) !=
        VS_OK) {
        fprintf(stderr, "v1: %s\n", err);
        return 1;
    }
    vs_fault_cluster_t c;
    int ok = vs_fault_start(&c, dir, "fe", 2, 2, &v1) == 0;
    CHECK(ok);
    if (!ok) {
        vs_fault_stop(&c, 1);
        return vs_test_finish();
    }
    c.queries_from = &v1;
    vs_fault_expect(&c, "v1", &v1);
    CHECK(vs_fault_wait_served_by(&c, "v1", 20));
    /* every replica registered before the freeze */
    double t0 = vs_now_s();
    while (vs_fault_count_keys(&c, "members/", NULL) != 4 && vs_now_s() - t0 < 20)
        usleep(50000);
    int64_t rev = 0;
    CHECK(vs_fault_count_keys(&c, "members/", &rev) == 4);
    CHECK(vs_fault_coord_etcd_connected(&c) == 1);
    vs_fault_load_start(&c, 2);

    int f0 = vs_test_failures;
    CHECK(vs_etcd_fixture_pause(c.etcd, err) == VS_OK);
    double frozen_at = vs_now_s(), detected = -1;
    while (vs_now_s() - frozen_at < FREEZE_S) {
        if (detected < 0 && vs_fault_coord_etcd_connected(&c) == 0)
            detected = vs_now_s() - frozen_at;
        usleep(100000);
    }
    CHECK(vs_etcd_fixture_resume(c.etcd, err) == VS_OK);
    printf("  etcd frozen %d s: the coordinator reported it unreachable after %.1f s\n", FREEZE_S, detected);
    CHECKF(detected >= 0 && detected < 4, "freeze detected after %.1f s", detected);
    /* every record re-created after the freeze (leases expired), the coordinator connected again */
    double resumed = vs_now_s();
    long recreated = 0;
    while ((recreated = vs_fault_members_created_after(&c, rev)) != 4 && vs_now_s() - resumed < 20)
        usleep(100000);
    double back = vs_now_s() - resumed;
    while (vs_fault_coord_etcd_connected(&c) != 1 && vs_now_s() - resumed < 20)
        usleep(100000);
    printf("  after resuming: %ld of 4 member records re-created in %.1f s; coordinator connected: %d\n",
           recreated, back, vs_fault_coord_etcd_connected(&c));
    CHECK(recreated == 4);
    CHECK(vs_fault_coord_etcd_connected(&c) == 1);
    /* a little more load on the re-registered view */
    unsigned long before = atomic_load(&c.sent);
    double t1 = vs_now_s();
    while (atomic_load(&c.sent) < before + 500 && vs_now_s() - t1 < 10)
        usleep(50000);
    vs_fault_load_stop(&c);
    printf("  load: %lu queries, %lu failed, %lu wrong\n", atomic_load(&c.sent), atomic_load(&c.failed),
           atomic_load(&c.wrong));
    CHECK(atomic_load(&c.sent) > 500);
    vs_fault_check_load(&c, "etcd frozen");
    vs_test_case_done("etcd_frozen", vs_test_failures == f0);

    vs_fault_stop(&c, vs_test_failures > 0);
    vs_test_version_fini(&v1);
    if (vs_test_failures == 0)
        vs_test_cleanup("faults_etcd");
    return vs_test_finish();
}
