/* test_rollout: rolling index-version deploys through etcd under constant query load (bounded, loopback).
 * Two shards (one per partition) and the coordinator take every version from etcd (no --manifest).
 * `vecshard deploy v2`, `activate v2`, `rollback`, `activate v2` again: zero failed queries, every response
 * equal to what its version gives in process (so no response mixes versions and each version's recall is
 * its offline recall), both versions seen. Then v3 with one corrupted partition file: the shard reports
 * it FAILED, `activate v3` is refused with the reason, v2 keeps serving. */
#include <pthread.h>
#include <sys/wait.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cli/timing.h"
#include "common/net/rpc.h"
#include "common/topk.h"
#include "shard/index/index.h"
#include "tests/integration/etcd_fixture.h"
#include "tests/support/proc.h"
#include "tests/support/version_fixture.h"
#include "tests/testlib.h"
#include "vecshard/v1/coordinator.pb-c.h"

#define N 4000
#define D 16
#define NQ 30
#define K 10
#define NPROBE 4

static const char *dir;
static vs_etcd_fixture_t *etcd_fx;
static vs_test_version_t ver[3]; /* v1, v2, v3 (corrupt) */
static int64_t expect[2][NQ * K];
static vs_test_proc_t shards[2], coord;
static vs_rpc_channel_t *ch;

/* What version v answers in process (both partition files searched, merged): the ids. */
static void offline(const vs_test_version_t *v, int64_t *out)
{
    char err[VS_ERR_LEN];
    float d[NQ * K];
    vs_search_params_t sp = {.nprobe = NPROBE};
    CHECKF(vs_test_version_search(v, ver[0].queries, NQ, K, &sp, d, out, err) == VS_OK, "%s", err);
}

/* Runs `vecshard <args>` with the cluster's etcd; returns the exit status; stderr kept in `out` (may be
 * NULL). */
static int cli(const char *args, char *out, size_t cap)
{
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/cli.log", dir);
    return vs_test_proc_cli(log, vs_etcd_fixture_endpoint(etcd_fx), "tr", args, out, cap);
}

/* activate, retried while the shards are still loading (up to timeout_s); returns the last exit status. */
static int activate_wait(const char *version, double timeout_s, char *out, size_t cap)
{
    char args[256];
    snprintf(args, sizeof args, "activate %s", version);
    double t0 = vs_now_s();
    int rc;
    while ((rc = cli(args, out, cap)) != 0 && vs_now_s() - t0 < timeout_s)
        usleep(100000);
    return rc;
}

/* One query through the coordinator: the version that answered, and whether the ids equal that version's. */
static int query(size_t q, char version[32], int *match)
{
    Vecshard__V1__SearchRequest r = VECSHARD__V1__SEARCH_REQUEST__INIT;
    Vecshard__V1__SearchParams sp = VECSHARD__V1__SEARCH_PARAMS__INIT;
    r.dim = D;
    r.queries = ver[0].queries + q * D;
    r.n_queries = D;
    r.k = K;
    sp.nprobe = NPROBE;
    r.params = &sp;
    size_t len = vecshard__v1__search_request__get_packed_size(&r), blen = 0;
    uint8_t buf[1024], *body = NULL;
    vecshard__v1__search_request__pack(&r, buf);
    int code = -1;
    char msg[VS_ERR_LEN];
    version[0] = 0;
    *match = 0;
    if (vs_rpc_call_unary(ch, "/vecshard.v1.Coordinator/Search", buf, len, 2000, &code, msg, &body, &blen) ==
            VS_OK &&
        code == 0) {
        Vecshard__V1__SearchResponse *resp = vecshard__v1__search_response__unpack(NULL, blen, body);
        if (resp) {
            snprintf(version, 32, "%s", resp->index_version);
            int vi = strcmp(version, "v1") == 0 ? 0 : strcmp(version, "v2") == 0 ? 1 : -1;
            *match = vi >= 0 && resp->n_ids == K &&
                     memcmp(resp->ids, expect[vi] + q * K, K * sizeof(int64_t)) == 0;
            vecshard__v1__search_response__free_unpacked(resp, NULL);
        }
    }
    free(body);
    return code;
}

static atomic_int stop_load;
static atomic_ulong sent, failed, mismatched, seen_v1, seen_v2;

static void *load_main(void *arg)
{
    size_t i = (size_t)arg;
    while (!atomic_load(&stop_load)) {
        char v[32];
        int match;
        int code = query(i++ % NQ, v, &match);
        atomic_fetch_add(&sent, 1);
        if (code != 0)
            atomic_fetch_add(&failed, 1);
        else if (!match)
            atomic_fetch_add(&mismatched, 1);
        if (strcmp(v, "v1") == 0)
            atomic_fetch_add(&seen_v1, 1);
        if (strcmp(v, "v2") == 0)
            atomic_fetch_add(&seen_v2, 1);
    }
    return NULL;
}

/* Waits until a query is answered by `version` (the coordinator switched). */
static int wait_served_by(const char *version, double timeout_s)
{
    double t0 = vs_now_s();
    while (vs_now_s() - t0 < timeout_s) {
        char v[32];
        int match;
        if (query(0, v, &match) == 0 && strcmp(v, version) == 0)
            return 1;
        usleep(50000);
    }
    return 0;
}

int main(void)
{
    char err[VS_ERR_LEN], out[4096];
    dir = strdup(vs_test_tmpdir("rollout"));
    const char *factories[3] = {"IVF16,Flat", "IVF16,PQ4", "IVF16,PQ4"};
    const char *names[3] = {"v1", "v2", "v3"};
    if (vs_etcd_fixture_start("rollout", &etcd_fx, err) != VS_OK) {
        fprintf(stderr, "etcd: %s\n", err);
        return 1;
    }
    for (int i = 0; i < 3; i++)
        if (vs_test_version_build(dir, names[i], factories[i], VS_METRIC_L2, N, D, 2, NQ, 21, &ver[i], err) !=
            VS_OK) {
            fprintf(stderr, "%s: %s\n", names[i], err);
            return 1;
        }
    /* v3: one byte of partition 1's file flipped after the manifest recorded its CRC32C */
    char p3[PATH_MAX];
    vs_test_version_partition_path(&ver[2], 1, p3);
    size_t len;
    unsigned char *bytes = vs_test_read_file(p3, &len);
    bytes[len / 2] ^= 0x10;
    CHECK(vs_test_write_file(p3, bytes, len) == 0);
    free(bytes);
    offline(&ver[0], expect[0]);
    offline(&ver[1], expect[1]);
    CHECK(memcmp(expect[0], expect[1], sizeof expect[0]) != 0); /* the versions answer differently */

    int ok = 1;
    for (int p = 0; p < 2; p++) {
        char part[8], name[16];
        snprintf(part, sizeof part, "%d", p);
        snprintf(name, sizeof name, "s%d", p);
        const char *argv[] = {"--listen",    "127.0.0.1:0", "--metrics-listen",
                              "none",        "--partition", part,
                              "--cluster",   "tr",          "--replica-id",
                              name,          "--etcd",      vs_etcd_fixture_endpoint(etcd_fx),
                              "--lease-ttl", "3",           "--threads",
                              "2",           NULL};
        ok &= vs_test_proc_start(&shards[p], dir, name, "vecshard-shard", argv) == 0;
    }
    const char *cargv[] = {
        "--listen",  "127.0.0.1:0", "--metrics-listen", "none", "--etcd", vs_etcd_fixture_endpoint(etcd_fx),
        "--cluster", "tr",          "--threads",        "4",    NULL};
    ok &= vs_test_proc_start(&coord, dir, "coordinator", "vecshard-coordinator", cargv) == 0;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", coord.grpc_port);
    ok &= ok && vs_rpc_channel_create(target, 0, &ch, err) == VS_OK;
    CHECK(ok);
    if (ok) {
        int f0 = vs_test_failures;
        char args[PATH_MAX + 32];
        snprintf(args, sizeof args, "deploy %s", ver[0].manifest);
        CHECKF(cli(args, out, sizeof out) == 0, "deploy v1: %s", out);
        CHECKF(cli("activate v9", out, sizeof out) == 1 && strstr(out, "not deployed"), "activate v9: %s",
               out);
        CHECKF(activate_wait("v1", 20, out, sizeof out) == 0, "activate v1: %s", out);
        CHECK(wait_served_by("v1", 10));
        vs_test_case_done("deploy_activate_first", vs_test_failures == f0);

        f0 = vs_test_failures;
        pthread_t th[2];
        for (size_t t = 0; t < 2; t++)
            pthread_create(&th[t], NULL, load_main, (void *)(t * 7));
        usleep(300000);
        snprintf(args, sizeof args, "deploy %s", ver[1].manifest);
        CHECKF(cli(args, out, sizeof out) == 0, "deploy v2: %s", out);
        CHECKF(cli(args, out, sizeof out) == 0 && strstr(out, "already deployed"), "deploy v2 again: %s",
               out);
        double t0 = vs_now_s();
        CHECKF(activate_wait("v2", 20, out, sizeof out) == 0, "activate v2: %s", out);
        printf("  v2 active %.2f s after deploy (shards loaded it meanwhile)\n", vs_now_s() - t0);
        CHECK(wait_served_by("v2", 10));
        usleep(500000);
        CHECKF(cli("rollback", out, sizeof out) == 0, "rollback: %s", out);
        CHECK(wait_served_by("v1", 10));
        usleep(500000);
        CHECKF(activate_wait("v2", 20, out, sizeof out) == 0, "activate v2 again: %s", out);
        CHECK(wait_served_by("v2", 10));
        usleep(500000);
        atomic_store(&stop_load, 1);
        for (size_t t = 0; t < 2; t++)
            pthread_join(th[t], NULL);
        printf("  under load: %lu queries, %lu failed, %lu not equal to their version's offline answer; "
               "served by v1 %lu, by v2 %lu\n",
               atomic_load(&sent), atomic_load(&failed), atomic_load(&mismatched), atomic_load(&seen_v1),
               atomic_load(&seen_v2));
        CHECK(atomic_load(&failed) == 0 && atomic_load(&mismatched) == 0);
        CHECK(atomic_load(&seen_v1) > 0 && atomic_load(&seen_v2) > 0 && atomic_load(&sent) > 100);
        vs_test_case_done("deploy_activate_rollback_under_load", vs_test_failures == f0);

        f0 = vs_test_failures;
        snprintf(args, sizeof args, "deploy %s", ver[2].manifest);
        CHECKF(cli(args, out, sizeof out) == 0, "deploy v3: %s", out);
        /* refused while loading, then refused because partition 1 failed to load */
        t0 = vs_now_s();
        int rc;
        while ((rc = cli("activate v3", out, sizeof out)) == 1 && !strstr(out, "FAILED") &&
               vs_now_s() - t0 < 20)
            usleep(100000);
        CHECKF(rc == 1 && strstr(out, "FAILED") && strstr(out, "CRC32C") && strstr(out, "p1 0/1"),
               "activate v3: %d %s", rc, out);
        printf("  activate v3 refused: %.400s\n", out);
        char v[32];
        int match;
        CHECK(query(3, v, &match) == 0 && strcmp(v, "v2") == 0 && match);
        vs_test_case_done("corrupt_version_refused", vs_test_failures == f0);

        /* crashes mid-rollout recover from etcd alone: a restarted coordinator and a restarted shard
         * (neither given a manifest) come back serving v2, with every partition */
        f0 = vs_test_failures;
        vs_test_proc_stop(&coord, SIGKILL, 5);
        vs_test_proc_stop(&shards[0], SIGKILL, 5);
        const char *s0argv[] = {"--listen",    "127.0.0.1:0", "--metrics-listen",
                                "none",        "--partition", "0",
                                "--cluster",   "tr",          "--replica-id",
                                "s0b",         "--etcd",      vs_etcd_fixture_endpoint(etcd_fx),
                                "--lease-ttl", "3",           NULL};
        CHECK(vs_test_proc_start(&shards[0], dir, "s0b", "vecshard-shard", s0argv) == 0);
        CHECK(vs_test_proc_start(&coord, dir, "coordinator2", "vecshard-coordinator", cargv) == 0);
        vs_rpc_channel_destroy(ch);
        snprintf(target, sizeof target, "127.0.0.1:%d", coord.grpc_port);
        CHECK(vs_rpc_channel_create(target, 0, &ch, err) == VS_OK);
        t0 = vs_now_s();
        int full = 0;
        while (!full && vs_now_s() - t0 < 20) { /* the old record of s0 expires after its lease (3 s) */
            Vecshard__V1__SearchRequest r = VECSHARD__V1__SEARCH_REQUEST__INIT;
            Vecshard__V1__SearchParams sp = VECSHARD__V1__SEARCH_PARAMS__INIT;
            r.dim = D;
            r.queries = ver[0].queries;
            r.n_queries = NQ * D;
            r.k = K;
            sp.nprobe = NPROBE;
            r.params = &sp;
            size_t rlen = vecshard__v1__search_request__get_packed_size(&r), blen = 0;
            uint8_t *buf = malloc(rlen), *body = NULL;
            vecshard__v1__search_request__pack(&r, buf);
            int code = -1;
            char msg[VS_ERR_LEN];
            if (vs_rpc_call_unary(ch, "/vecshard.v1.Coordinator/Search", buf, rlen, 2000, &code, msg, &body,
                                  &blen) == VS_OK &&
                code == 0) {
                Vecshard__V1__SearchResponse *resp = vecshard__v1__search_response__unpack(NULL, blen, body);
                full = resp && !resp->coverage->partial && strcmp(resp->index_version, "v2") == 0 &&
                       memcmp(resp->ids, expect[1], sizeof expect[1]) == 0;
                if (resp)
                    vecshard__v1__search_response__free_unpacked(resp, NULL);
            }
            free(buf);
            free(body);
            if (!full)
                usleep(100000);
        }
        CHECKF(full, "no complete v2 answer %.1f s after the restarts", vs_now_s() - t0);
        printf(
            "  after kill -9 of the coordinator and a shard: complete v2 answers %.2f s after the restarts\n",
            vs_now_s() - t0);
        vs_test_case_done("crash_recovery_from_etcd", vs_test_failures == f0);
    }
    if (vs_test_failures) {
        vs_test_proc_tail(&coord, 25);
        for (int p = 0; p < 2; p++)
            vs_test_proc_tail(&shards[p], 15);
    }
    vs_rpc_channel_destroy(ch);
    vs_test_proc_stop(&coord, SIGTERM, 15);
    for (int p = 0; p < 2; p++)
        vs_test_proc_stop(&shards[p], SIGTERM, 15);
    vs_etcd_fixture_destroy(etcd_fx);
    for (int i = 0; i < 3; i++)
        vs_test_version_fini(&ver[i]);
    int rc = vs_test_finish();
    if (rc == 0)
        vs_test_cleanup("rollout");
    return rc;
}
