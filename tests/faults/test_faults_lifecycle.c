/* test_faults_lifecycle: the version lifecycle as an operator (or an attacker) breaks it (issue 13), on a
 * real local cluster - etcd, 2 partitions x 2 replicas, a coordinator - bootstrapped the way
 * deploy/local/cluster.sh does it (every process given v1 with --manifest), under steady query load whose
 * every answer is compared with its own version's in-process answer.
 *
 * Each case asserts the outcome the issue asks for: refused with a reason, and 0 failed or wrong queries:
 *   bootstrap_rollback      deploy + activate v2, then rollback to the bootstrapped v1 (was refused)
 *   guard_dim_metric        activate a version with another dim, then another metric: refused, named
 *   same_name_other_content deploy a rebuilt "v2" with other data: refused (was a silent fork)
 *   swapped_files           a version whose partition files are swapped loads FAILED (content id), activate
 *                           refused; the other file under an IVF8 build likewise
 *   rogue_replica           a replica serving a rebuilt "v2" (same name, other data) joins: it is in the view
 *                           but never called, and no answer is wrong
 *   smaller_nlist           rollback-safe parameters: nprobe 16 on an IVF8 version is clipped, not refused
 *   admission               a deploy that does not fit a serving shard's memory is refused naming it
 *   cycles                  N deploy/activate/retire/remove cycles including a failing version: no version
 *                           record, slot or lease left behind, etcd writes per cycle bounded
 *   duplicate_replica       a second shard with a live replica's id exits with the reason; the first keeps
 *                           its record and serves
 *   bad_manifest            a shard started with an invalid or non-matching --manifest exits with why
 * VS_FAULT_CYCLES sets N (default 20). */
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli/timing.h"
#include "tests/faults/harness.h"
#include "tests/testlib.h"

#define N 4000
#define D 16
#define NQ 30

static char out[8192];

static int build(const char *dir, const char *name, const char *factory, vs_metric metric, uint32_t d,
                 uint64_t seed, vs_test_version_t *v)
{
    char err[VS_ERR_LEN];
    if (vs_test_version_build(dir, name, factory, metric, N, d, 2, NQ, seed, v, err) != VS_OK) {
        fprintf(stderr, "%s: %s\n", name, err);
        return -1;
    }
    return 0;
}

static void swap_files(const char *a, const char *b)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.swap", a);
    CHECK(rename(a, tmp) == 0 && rename(b, a) == 0 && rename(tmp, b) == 0);
}

static int copy_file(const char *from, const char *to)
{
    size_t len;
    unsigned char *bytes = vs_test_read_file(from, &len);
    int rc = bytes ? vs_test_write_file(to, bytes, len) : -1;
    free(bytes);
    return rc;
}

int main(void)
{
    const char *dir = strdup(vs_test_tmpdir("faults_lifecycle"));
    char other[PATH_MAX], args[2 * PATH_MAX];
    snprintf(other, sizeof other, "%s/other", dir);
    mkdir(other, 0755);
    static vs_test_version_t v1, v2, v2b, vdim, vip, vswap, vfac, vfac8, vc, vadm, vc2;
    if (build(dir, "v1", "IVF16,Flat", VS_METRIC_L2, D, 21, &v1) ||
        build(dir, "v2", "IVF16,PQ4", VS_METRIC_L2, D, 22, &v2) ||
        build(other, "v2", "IVF16,PQ4", VS_METRIC_L2, D, 99, &v2b) ||
        build(dir, "vdim", "IVF16,Flat", VS_METRIC_L2, 8, 23, &vdim) ||
        build(dir, "vip", "IVF16,Flat", VS_METRIC_IP, D, 24, &vip) ||
        build(dir, "vswap", "IVF16,Flat", VS_METRIC_L2, D, 25, &vswap) ||
        build(dir, "vfac", "IVF16,Flat", VS_METRIC_L2, D, 26, &vfac) ||
        build(other, "vfac8", "IVF8,Flat", VS_METRIC_L2, D, 26, &vfac8) ||
        build(dir, "vc", "IVF16,Flat", VS_METRIC_L2, D, 27, &vc) ||
        build(dir, "vadm", "IVF16,Flat", VS_METRIC_L2, D, 28, &vadm) ||
        build(other, "vc", "IVF16,Flat", VS_METRIC_L2, D, 29, &vc2))
        return 1;
    char pa[PATH_MAX], pb[PATH_MAX];
    vs_test_version_partition_path(&vswap, 0, pa);
    vs_test_version_partition_path(&vswap, 1, pb);
    swap_files(pa, pb);
    vs_test_version_partition_path(&vfac8, 1, pa);
    vs_test_version_partition_path(&vfac, 1, pb);
    CHECK(copy_file(pa, pb) == 0); /* an IVF8 file under an IVF16 manifest */

    vs_fault_cluster_t c;
    int ok = vs_fault_start(&c, dir, "fl", 2, 2, &v1) == 0;
    CHECK(ok);
    if (!ok) {
        vs_fault_stop(&c, 1);
        return vs_test_finish();
    }
    c.queries_from = &v1;
    vs_fault_expect(&c, "v1", &v1);
    vs_fault_expect(&c, "v2", &v2);
    vs_fault_expect(&c, "vc", &vc);
    vs_fault_expect(&c, "vfac8", &vfac8);
    CHECK(vs_fault_wait_served_by(&c, "v1", 20));
    vs_fault_load_start(&c, 2);

    /* ---- bootstrap_rollback ---- */
    int f0 = vs_test_failures;
    double t0;
    snprintf(args, sizeof args, "deploy %s", v2.manifest);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0, "deploy v2: %s", out);
    CHECKF(vs_fault_cli_until_ok(&c, "activate v2", 30, out, sizeof out) == 0, "activate v2: %s", out);
    CHECKF(strstr(out, "previous: v1"), "the bootstrapped v1 is recorded as previous: %s", out);
    CHECK(vs_fault_wait_served_by(&c, "v2", 10));
    CHECKF(vs_fault_cli(&c, "rollback", out, sizeof out) == 0, "rollback: %s", out);
    CHECK(vs_fault_wait_served_by(&c, "v1", 10));
    CHECKF(vs_fault_cli_until_ok(&c, "activate v2", 30, out, sizeof out) == 0, "activate v2 again: %s", out);
    CHECK(vs_fault_wait_served_by(&c, "v2", 10));
    vs_fault_check_load(&c, "bootstrap_rollback");
    vs_test_case_done("bootstrap_rollback", vs_test_failures == f0);

    /* ---- guard_dim_metric ---- */
    f0 = vs_test_failures;
    snprintf(args, sizeof args, "deploy %s", vdim.manifest);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0, "deploy vdim: %s", out);
    CHECKF(vs_fault_cli(&c, "activate vdim", out, sizeof out) == 1 && strstr(out, "dim 16 -> 8") &&
               strstr(out, "--force"),
           "activate vdim: %s", out);
    printf("  activate vdim refused: %.300s", out);
    snprintf(args, sizeof args, "deploy %s", vip.manifest);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0, "deploy vip: %s", out);
    CHECKF(vs_fault_cli(&c, "activate vip", out, sizeof out) == 1 && strstr(out, "metric l2 -> ip"),
           "activate vip: %s", out);
    vs_fault_check_load(&c, "guard_dim_metric");
    vs_test_case_done("guard_dim_metric", vs_test_failures == f0);

    /* ---- same_name_other_content ---- */
    f0 = vs_test_failures;
    snprintf(args, sizeof args, "deploy %s", v2b.manifest);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 1 && strstr(out, "other content") &&
               strstr(out, "ALREADY_EXISTS"),
           "deploy of another v2: %s", out);
    snprintf(args, sizeof args, "deploy %s", v2.manifest);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0 && strstr(out, "already deployed"),
           "same v2 again: %s", out);
    vs_test_case_done("same_name_other_content", vs_test_failures == f0);

    /* ---- swapped_files ---- */
    f0 = vs_test_failures;
    snprintf(args, sizeof args, "deploy %s", vswap.manifest);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0, "deploy vswap: %s", out);
    CHECKF(vs_fault_cli_until_says(&c, "activate vswap", "content id", 30, out, sizeof out),
           "activate vswap: %s", out);
    CHECK(strstr(out, "p0 0/1") && strstr(out, "p1 0/1"));
    printf("  activate vswap refused: %.400s", out);
    snprintf(args, sizeof args, "deploy %s", vfac.manifest);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0, "deploy vfac: %s", out);
    /* refused by the size check before the file is even opened, or by its content id */
    CHECKF(vs_fault_cli_until_says(&c, "activate vfac", "FAILED: ", 30, out, sizeof out) &&
               strstr(out, "p1 0/1") && (strstr(out, "the manifest says") || strstr(out, "content id")),
           "activate vfac: %s", out);
    vs_fault_check_load(&c, "swapped_files");
    vs_test_case_done("swapped_files", vs_test_failures == f0);

    /* ---- rogue_replica: same version name, other data ---- */
    f0 = vs_test_failures;
    vs_test_proc_t rogue;
    const char *rogue_args[] = {"--manifest", v2b.manifest, NULL};
    CHECK(vs_fault_start_shard(&c, &rogue, 0, "rogue", rogue_args) == 0);
    double lat = -1;
    t0 = vs_now_s();
    while (vs_fault_coord_member(&c, "rogue", &lat) != 1 && vs_now_s() - t0 < 20)
        usleep(100000);
    CHECK(vs_fault_coord_member(&c, "rogue", &lat) == 1); /* in the view, serving "v2" */
    unsigned long sent0 = atomic_load(&c.sent);
    t0 = vs_now_s();
    while (atomic_load(&c.sent) < sent0 + 2000 && vs_now_s() - t0 < 20)
        usleep(50000);
    CHECK(vs_fault_coord_member(&c, "rogue", &lat) == 1);
    printf("  rogue replica (v2 of another build) in the view; latency EWMA %.3f ms after %lu more queries\n",
           lat, atomic_load(&c.sent) - sent0);
    CHECKF(lat == 0, "the rogue replica was called (EWMA %.3f ms)", lat); /* never routed to */
    CHECK(vs_test_proc_stop(&rogue, SIGTERM, 10) == 0);
    vs_fault_check_load(&c, "rogue_replica");
    vs_test_case_done("rogue_replica", vs_test_failures == f0);

    /* ---- smaller_nlist: parameters belong to the version: nprobe 16 on an IVF8 version is clipped ---- */
    f0 = vs_test_failures;
    char served[64];
    int clipped = 0;
    snprintf(args, sizeof args, "deploy %s", vfac8.manifest);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0, "deploy vfac8: %s", out);
    CHECKF(vs_fault_cli_until_ok(&c, "activate vfac8", 30, out, sizeof out) == 0, "activate vfac8: %s", out);
    CHECK(vs_fault_wait_served_by(&c, "vfac8", 10));
    CHECK(vs_fault_query_nprobe(&c, 1, 16, served, &clipped) == 0 && strcmp(served, "vfac8") == 0 && clipped);
    CHECKF(vs_fault_cli(&c, "rollback", out, sizeof out) == 0, "rollback to v2: %s", out);
    CHECK(vs_fault_wait_served_by(&c, "v2", 10));
    CHECK(vs_fault_query_nprobe(&c, 1, 16, served, &clipped) == 0 && strcmp(served, "v2") == 0 && !clipped);
    /* the previous version cannot be removed; retired first, then removed */
    CHECKF(vs_fault_cli(&c, "remove vfac8", out, sizeof out) == 1 && strstr(out, "previous"),
           "remove previous: %s", out);
    CHECKF(vs_fault_cli(&c, "retire vfac8", out, sizeof out) == 0 &&
               vs_fault_cli(&c, "remove vfac8", out, sizeof out) == 0,
           "retire + remove vfac8: %s", out);
    vs_fault_check_load(&c, "smaller_nlist");
    vs_test_case_done("smaller_nlist", vs_test_failures == f0);

    /* ---- admission: a deploy that does not fit a serving shard is refused, with the shard named ---- */
    f0 = vs_test_failures;
    vs_test_proc_t tiny;
    const char *tiny_args[] = {"--memory-limit-mb", "1", NULL};
    CHECK(vs_fault_start_shard(&c, &tiny, 0, "tiny", tiny_args) == 0);
    snprintf(args, sizeof args, "deploy %s", vadm.manifest);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 1 && strstr(out, "does not fit") &&
               strstr(out, "tiny (partition 0) needs") && strstr(out, "RESOURCE_EXHAUSTED"),
           "deploy over a full shard: %s", out);
    printf("  deploy refused: %.300s", out);
    CHECK(vs_fault_count_keys(&c, "versions/vadm", NULL) == 0); /* nothing written */
    CHECK(vs_test_proc_stop(&tiny, SIGTERM, 10) == 0);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0, "deploy once it left: %s", out);
    CHECKF(vs_fault_cli(&c, "remove vadm", out, sizeof out) == 0, "remove vadm: %s", out);
    vs_fault_check_load(&c, "admission");
    vs_test_case_done("admission", vs_test_failures == f0);

    /* ---- cycles ---- */
    f0 = vs_test_failures;
    const char *rm[] = {"vdim", "vip", "vswap", "vfac"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "remove %s", rm[i]);
        CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0, "remove %s: %s", rm[i], out);
    }
    CHECKF(vs_fault_cli(&c, "remove v2", out, sizeof out) == 1 && strstr(out, "active"), "remove v2: %s",
           out);
    long cycles = getenv("VS_FAULT_CYCLES") ? atol(getenv("VS_FAULT_CYCLES")) : 20;
    int64_t rev0 = 0, rev1 = 0;
    long audit0 = vs_fault_count_keys(&c, "audit/", &rev0);
    t0 = vs_now_s();
    for (long i = 0; i < cycles && vs_test_failures == f0; i++) {
        snprintf(args, sizeof args, "deploy %s", vc.manifest);
        CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0, "cycle %ld deploy vc: %s", i, out);
        snprintf(args, sizeof args, "deploy %s", vswap.manifest);
        CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0, "cycle %ld deploy vswap: %s", i, out);
        CHECKF(vs_fault_cli_until_ok(&c, "activate vc", 30, out, sizeof out) == 0,
               "cycle %ld activate vc: %s", i, out);
        CHECKF(vs_fault_cli_until_ok(&c, "activate v2", 30, out, sizeof out) == 0,
               "cycle %ld activate v2: %s", i, out);
        CHECKF(vs_fault_cli(&c, "retire vc", out, sizeof out) == 0, "cycle %ld retire vc: %s", i, out);
        CHECKF(vs_fault_cli(&c, "remove vc", out, sizeof out) == 0, "cycle %ld remove vc: %s", i, out);
        CHECKF(vs_fault_cli(&c, "remove vswap", out, sizeof out) == 0, "cycle %ld remove vswap: %s", i, out);
    }
    double secs = vs_now_s() - t0;
    /* shards unload what was removed: every replica settles on v1 (its --manifest) and v2 */
    int settled = 0;
    for (double t = vs_now_s(); vs_now_s() - t < 20 && !settled;) {
        settled = 1;
        for (uint32_t p = 0; p < 2; p++)
            for (uint32_t r = 0; r < 2; r++) {
                char id[16];
                snprintf(id, sizeof id, "s%u-%u", p, r);
                settled &= vs_fault_shard_versions(&c, p, id) == 2;
            }
        if (!settled)
            usleep(100000);
    }
    long versions = vs_fault_count_keys(&c, "versions/", NULL),
         members = vs_fault_count_keys(&c, "members/", NULL);
    long audit1 = vs_fault_count_keys(&c, "audit/", &rev1), leases = vs_fault_count_leases(&c);
    long writes = (long)(rev1 - rev0), per_cycle = cycles ? writes / cycles : 0;
    printf("  %ld cycles in %.1f s: %ld version records, %ld members, %ld leases, every replica holds 2 "
           "versions: %s; etcd writes %ld (%ld per cycle, %ld of them audit records)\n",
           cycles, secs, versions, members, leases, settled ? "yes" : "NO", writes, per_cycle,
           audit1 - audit0);
    CHECK(settled);
    CHECK(versions == 1 && members == 4 && leases == 4);
    CHECK(audit1 - audit0 == cycles * 7);
    /* bound: 7 commands, each one transaction, plus each of 4 replicas re-publishing its record a few
     * times per version it loads, switches to or unloads (vc: load, activate, unload; vswap: fail) */
    CHECKF(per_cycle <= 80, "%ld etcd writes per cycle", per_cycle);
    /* audit retention: the oldest records go beyond $VS_AUDIT_KEEP */
    setenv("VS_AUDIT_KEEP", "10", 1);
    snprintf(args, sizeof args, "deploy %s", vc.manifest);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0 &&
               vs_fault_cli(&c, "remove vc", out, sizeof out) == 0,
           "deploy/remove vc: %s", out);
    unsetenv("VS_AUDIT_KEEP");
    CHECK(vs_fault_count_keys(&c, "audit/", NULL) == 10);

    /* the name vc, removed, deployed again with other content: the coordinator reloads it (it kept the
     * old manifest before, so the new replicas never matched and vc never became servable) */
    vs_fault_load_stop(&c);
    vs_fault_expect_replace(&c, "vc", &vc2);
    vs_fault_load_start(&c, 2);
    snprintf(args, sizeof args, "deploy %s", vc2.manifest);
    CHECKF(vs_fault_cli(&c, args, out, sizeof out) == 0, "deploy the new vc: %s", out);
    CHECKF(vs_fault_cli_until_ok(&c, "activate vc", 30, out, sizeof out) == 0, "activate the new vc: %s",
           out);
    CHECK(vs_fault_wait_served_by(&c, "vc", 10));
    CHECKF(vs_fault_cli_until_ok(&c, "activate v2", 30, out, sizeof out) == 0, "back to v2: %s", out);
    CHECK(vs_fault_wait_served_by(&c, "v2", 10));
    CHECKF(vs_fault_cli(&c, "retire vc", out, sizeof out) == 0 &&
               vs_fault_cli(&c, "remove vc", out, sizeof out) == 0,
           "retire + remove vc: %s", out);
    for (double t = vs_now_s(); vs_now_s() - t < 20 && vs_fault_shard_versions(&c, 0, "s0-0") != 2;)
        usleep(100000);
    vs_fault_check_load(&c, "cycles");
    vs_test_case_done("cycles", vs_test_failures == f0);

    /* ---- duplicate_replica ---- */
    f0 = vs_test_failures;
    vs_test_proc_t dup;
    int started = vs_fault_start_shard(&c, &dup, 0, "s0-0", NULL);
    int rc = started == 0 ? vs_test_proc_stop(&dup, 0, 15) : -2;
    size_t len = 0;
    char logp[PATH_MAX + 16];
    snprintf(logp, sizeof logp, "%s/log-s0-0", dir);
    char *log = (char *)vs_test_read_file(logp, &len);
    CHECKF(log && strstr(log, "held by a live shard") && strstr(log, "another --replica-id"),
           "the duplicate says why (start %d, exit %d)", started, rc);
    free(log);
    CHECK(vs_fault_shard_versions(&c, 0, "s0-0") == 2); /* the healthy replica's record is still there */
    vs_fault_check_load(&c, "duplicate_replica");
    vs_test_case_done("duplicate_replica", vs_test_failures == f0);

    /* ---- bad_manifest ---- */
    f0 = vs_test_failures;
    char bad[PATH_MAX + 16];
    snprintf(bad, sizeof bad, "%s/bad-manifest.json", dir);
    CHECK(vs_test_write_file(bad, "{\"format\":", 10) == 0);
    const char *bad_args[] = {"--manifest", bad, NULL};
    vs_test_proc_t b1, b2;
    CHECK(vs_fault_start_shard(&c, &b1, 0, "bad-1", bad_args) != 0); /* exits before it listens */
    snprintf(logp, sizeof logp, "%s/log-bad-1", dir);
    log = (char *)vs_test_read_file(logp, &len);
    CHECKF(log && strstr(log, "not valid JSON"), "invalid manifest: %s", log ? log : "");
    free(log);
    const char *swap_args[] = {"--manifest", vswap.manifest, NULL};
    rc = vs_fault_start_shard(&c, &b2, 0, "bad-2", swap_args) == 0 ? vs_test_proc_stop(&b2, 0, 15) : -2;
    snprintf(logp, sizeof logp, "%s/log-bad-2", dir);
    log = (char *)vs_test_read_file(logp, &len);
    CHECKF(log && strstr(log, "content id") && strstr(log, "exiting"), "non-matching file (exit %d): %s", rc,
           log ? log : "");
    free(log);
    vs_test_case_done("bad_manifest", vs_test_failures == f0);

    vs_fault_load_stop(&c);
    printf("  load: %lu queries, %lu failed, %lu wrong; by v1 %lu, v2 %lu, vc %lu\n", atomic_load(&c.sent),
           atomic_load(&c.failed), atomic_load(&c.wrong), atomic_load(&c.by_version[0]),
           atomic_load(&c.by_version[1]), atomic_load(&c.by_version[2]));
    CHECK(atomic_load(&c.sent) > 100 && atomic_load(&c.by_version[0]) > 0 &&
          atomic_load(&c.by_version[1]) > 0);
    vs_fault_check_load(&c, "end");
    vs_fault_stop(&c, vs_test_failures > 0);
    vs_test_version_fini(&v1);
    vs_test_version_fini(&v2);
    vs_test_version_fini(&v2b);
    vs_test_version_fini(&vdim);
    vs_test_version_fini(&vip);
    vs_test_version_fini(&vswap);
    vs_test_version_fini(&vfac);
    vs_test_version_fini(&vfac8);
    vs_test_version_fini(&vc);
    vs_test_version_fini(&vadm);
    vs_test_version_fini(&vc2);
    if (vs_test_failures == 0)
        vs_test_cleanup("faults_lifecycle");
    return vs_test_finish();
}
