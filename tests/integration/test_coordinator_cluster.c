/* test_coordinator_cluster: centroid routing end to end, with static membership (--shards, no etcd).
 * vecshard-build makes a cluster-partitioned version (3 partitions owning whole IVF lists) and, from the
 * same data and seed, an unpartitioned one (same centroids). Through the coordinator, the cluster
 * version answers exactly what in-process search of the unpartitioned index answers at the same nprobe,
 * while each query reaches only the partitions owning its lists: with nprobe 1 exactly one. The
 * coordinator closes client connections every 200 ms (--max-connection-age-ms): no call may fail for it.
 * Request ids reach the coordinator's (JSON) and the shards' log records; every stage of a request is timed
 * (vecshard_coordinator_stage_seconds, vecshard_shard_stage_seconds). */
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/net/rpc.h"
#include "common/vecio.h"
#include "shard/index/index.h"
#include "tests/support/proc.h"
#include "common/cluster/manifest.h"
#include "tests/testlib.h"
#include "vecshard/v1/coordinator.pb-c.h"

#define N 8000
#define D 16
#define NQ 60
#define K 10
#define P 3

static const char *dir;
static vs_test_proc_t shards[P], coord;
static vs_rpc_channel_t *ch;

static int run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "failed (%d): %s\n", rc, cmd);
    return rc;
}

static double metric(const char *name)
{
    char scratch[PATH_MAX];
    snprintf(scratch, sizeof scratch, "%s/metrics.txt", dir);
    return vs_test_proc_metric(&coord, name, scratch);
}

static Vecshard__V1__SearchResponse *search_id(const float *q, size_t nq, uint32_t nprobe,
                                               const char *request_id, int *code, char msg[VS_ERR_LEN])
{
    Vecshard__V1__SearchRequest r = VECSHARD__V1__SEARCH_REQUEST__INIT;
    if (request_id)
        r.request_id = (char *)request_id;
    Vecshard__V1__SearchParams sp = VECSHARD__V1__SEARCH_PARAMS__INIT;
    r.dim = D;
    r.queries = (float *)q;
    r.n_queries = nq * D;
    r.k = K;
    sp.nprobe = nprobe;
    r.params = &sp;
    size_t len = vecshard__v1__search_request__get_packed_size(&r), blen = 0;
    uint8_t *buf = malloc(len), *body = NULL;
    vecshard__v1__search_request__pack(&r, buf);
    Vecshard__V1__SearchResponse *resp = NULL;
    if (vs_rpc_call_unary(ch, "/vecshard.v1.Coordinator/Search", buf, len, 5000, code, msg, &body, &blen) ==
            VS_OK &&
        *code == 0)
        resp = vecshard__v1__search_response__unpack(NULL, blen, body);
    free(buf);
    free(body);
    return resp;
}

static Vecshard__V1__SearchResponse *search(const float *q, size_t nq, uint32_t nprobe, int *code,
                                            char msg[VS_ERR_LEN])
{
    return search_id(q, nq, nprobe, NULL, code, msg);
}

/* 1 when the process's log has a line containing needle (and, when json, every such line is a JSON record).
 */
static int log_has(const vs_test_proc_t *p, const char *needle, int json)
{
    size_t n;
    char *text = (char *)vs_test_read_file(p->log, &n);
    int found = 0;
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n"))
        if (strstr(line, needle)) {
            found = 1;
            if (json)
                CHECKF(line[0] == '{' && strstr(line, "\"msg\":\""), "not a JSON record: %s", line);
        }
    free(text);
    return found;
}

/* Request ids: the client's is echoed and reaches the coordinator's and the shards' log records (slow
 * requests, logged because --slow-request-ms is tiny); one is made when the client gives none; a bad one is
 * refused. */
static void test_request_ids(const float *q)
{
    int code = -1;
    char msg[VS_ERR_LEN] = "";
    int in_shard_log = 0, in_coord_log = 0;
    for (int64_t t0 = vs_test_now_ms(); vs_test_now_ms() - t0 < 15000 && !(in_shard_log && in_coord_log);) {
        Vecshard__V1__SearchResponse *resp = search_id(q, 1, 4, "trace-me-42", &code, msg);
        CHECKF(resp && strcmp(resp->request_id, "trace-me-42") == 0, "%d %s", code, msg);
        if (resp)
            vecshard__v1__search_response__free_unpacked(resp, NULL);
        for (int p = 0; p < P && !in_shard_log; p++)
            in_shard_log = log_has(&shards[p], "requests: trace-me-42", 0);
        in_coord_log = log_has(&coord, "request trace-me-42: slow", 1);
        if (!(in_shard_log && in_coord_log))
            vs_test_sleep_ms(200); /* the logs are rate-limited: 5 records per 10 s */
    }
    CHECKF(in_shard_log, "no shard log names request trace-me-42");
    CHECKF(in_coord_log, "the coordinator's log does not name request trace-me-42");
    Vecshard__V1__SearchResponse *resp = search_id(q, 1, 4, NULL, &code, msg);
    CHECK(resp && strlen(resp->request_id) == 16 && strspn(resp->request_id, "0123456789abcdef") == 16);
    Vecshard__V1__SearchResponse *resp2 = search_id(q, 1, 4, "", &code, msg);
    CHECK(resp && resp2 && strcmp(resp->request_id, resp2->request_id) != 0);
    if (resp)
        vecshard__v1__search_response__free_unpacked(resp, NULL);
    if (resp2)
        vecshard__v1__search_response__free_unpacked(resp2, NULL);
    char long_id[66];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    const char *bad[] = {"has space", "tab\there", long_id, "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        resp = search_id(q, 1, 4, bad[i], &code, msg);
        CHECKF(!resp && code == VS_GRPC_INVALID_ARGUMENT && strstr(msg, "request_id"), "id %zu: %d %s", i,
               code, msg);
        if (resp)
            vecshard__v1__search_response__free_unpacked(resp, NULL);
    }
    memset(long_id, 'b', 64);
    long_id[64] = '\0';
    resp = search_id(q, 1, 4, long_id, &code, msg);
    CHECK(resp && strcmp(resp->request_id, long_id) == 0); /* 64 characters is the limit, not above it */
    if (resp)
        vecshard__v1__search_response__free_unpacked(resp, NULL);
}

int main(void)
{
    char err[VS_ERR_LEN], cmd[4 * PATH_MAX], base[PATH_MAX];
    dir = strdup(vs_test_tmpdir("coordinator_cluster"));
    float *x = malloc((size_t)N * D * sizeof(float)), q[NQ * D];
    vs_test_clustered(x, N, D, 40, 0.2f, 11, 12);
    vs_test_clustered(q, NQ, D, 40, 0.2f, 11, 13);
    snprintf(base, sizeof base, "%s/base.fvecs", dir);
    CHECK(vs_vecio_write_fvecs(base, N, D, x, err) == VS_OK);
    const char *bin = getenv("VS_BIN_DIR");
    bin = bin ? bin : "build/bin";
    snprintf(cmd, sizeof cmd,
             "%s/vecshard-build --base %s --factory IVF32,Flat --partitions %d --partitioning cluster "
             "--version vc "
             "--model-version m1 --out %s --threads 1 >%s/build-vc.log 2>&1",
             bin, base, P, dir, dir);
    CHECK(run(cmd) == 0);
    snprintf(
        cmd, sizeof cmd,
        "%s/vecshard-build --base %s --factory IVF32,Flat --partitions 1 --version one --out %s --threads 1 "
        ">%s/build-one.log 2>&1",
        bin, base, dir, dir);
    CHECK(run(cmd) == 0);
    char manifest[PATH_MAX];
    snprintf(manifest, sizeof manifest, "%s/vc/manifest.json", dir);

    int ok = vs_test_failures == 0;
    char spec[512] = "";
    for (int p = 0; ok && p < P; p++) {
        char part[8], name[16];
        snprintf(part, sizeof part, "%d", p);
        snprintf(name, sizeof name, "c%d", p);
        const char *argv[] = {"--listen",
                              "127.0.0.1:0",
                              "--metrics-listen",
                              "127.0.0.1:0",
                              "--manifest",
                              manifest,
                              "--partition",
                              part,
                              "--replica-id",
                              name,
                              "--threads",
                              "1",
                              "--slow-request-ms",
                              "0.001",
                              NULL};
        ok &= vs_test_proc_start(&shards[p], dir, name, "vecshard-shard", argv) == 0;
        size_t off = strlen(spec);
        snprintf(spec + off, sizeof spec - off, "%s%d=127.0.0.1:%d", p ? "," : "", p, shards[p].grpc_port);
    }
    if (ok) {
        const char *cargv[] = {"--listen",
                               "127.0.0.1:0",
                               "--metrics-listen",
                               "127.0.0.1:0",
                               "--manifest",
                               manifest,
                               "--shards",
                               spec,
                               "--max-connection-age-ms",
                               "200",
                               "--slow-request-ms",
                               "0.001",
                               "--log-format",
                               "json",
                               NULL};
        ok &= vs_test_proc_start(&coord, dir, "coordinator", "vecshard-coordinator", cargv) == 0;
    }
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", coord.grpc_port);
    ok &= ok && vs_rpc_channel_create(target, 0, &ch, err) == VS_OK;
    CHECK(ok);
    if (ok) {
        int f0 = vs_test_failures;
        /* the oracle: the unpartitioned index (same centroids), in process */
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/one/part-0.vsidx", dir);
        vs_index_t *idx;
        CHECK(vs_index_load(path, &idx, err) == VS_OK);
        const uint32_t probes[] = {1, 4, 32};
        for (size_t pi = 0; pi < 3; pi++) {
            float want_d[NQ * K];
            int64_t want_i[NQ * K];
            vs_search_params_t sp = {.nprobe = probes[pi]};
            CHECK(vs_index_search(idx, NQ, q, K, &sp, 1, want_d, want_i, err) == VS_OK);
            int code = -1;
            char msg[VS_ERR_LEN] = "";
            Vecshard__V1__SearchResponse *resp = search(q, NQ, probes[pi], &code, msg);
            CHECKF(resp != NULL, "nprobe %u: %d %s", probes[pi], code, msg);
            if (!resp)
                continue;
            size_t same = 0;
            for (size_t i = 0; i < NQ; i++)
                same += memcmp(resp->ids + i * K, want_i + i * K, K * sizeof(int64_t)) == 0;
            CHECKF(same == NQ, "nprobe %u: %zu of %d queries equal the unpartitioned index", probes[pi], same,
                   NQ);
            CHECK(resp->coverage && !resp->coverage->partial && resp->coverage->partitions_total == P);
            vecshard__v1__search_response__free_unpacked(resp, NULL);
        }
        vs_index_destroy(idx);
        vs_test_case_done("equal_unpartitioned", vs_test_failures == f0);

        f0 = vs_test_failures;
        test_request_ids(q);
        vs_test_case_done("request_ids", vs_test_failures == f0);

        /* fan-out: one query per request; nprobe 1 reaches one partition, nprobe 4 fewer than all */
        f0 = vs_test_failures;
        for (size_t pi = 0; pi < 2; pi++) {
            double p0 = metric("vecshard_coordinator_fanout_partitions_total");
            double r0 = metric("vecshard_coordinator_fanout_requests_total");
            for (size_t i = 0; i < NQ; i++) {
                int code;
                char msg[VS_ERR_LEN];
                Vecshard__V1__SearchResponse *resp = search(q + i * D, 1, probes[pi], &code, msg);
                CHECK(resp != NULL);
                if (resp)
                    vecshard__v1__search_response__free_unpacked(resp, NULL);
            }
            double fan = (metric("vecshard_coordinator_fanout_partitions_total") - p0) /
                         (metric("vecshard_coordinator_fanout_requests_total") - r0);
            printf("  nprobe %u: mean fan-out %.2f of %d partitions\n", probes[pi], fan, P);
            if (pi == 0)
                CHECKF(fan == 1.0, "nprobe 1 fan-out %.2f", fan);
            else
                CHECKF(fan > 1.0 && fan < P, "nprobe 4 fan-out %.2f", fan);
        }
        vs_test_case_done("fanout", vs_test_failures == f0);

        /* every stage of the requests above was timed, at the coordinator and at the shards */
        f0 = vs_test_failures;
        char scratch[PATH_MAX], name[128];
        snprintf(scratch, sizeof scratch, "%s/metrics-stage.txt", dir);
        static const char *const cstages[] = {"route", "batch_wait", "shard_rpc", "merge"};
        for (size_t i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "vecshard_coordinator_stage_seconds_count{stage=\"%s\"}", cstages[i]);
            double n = metric(name);
            CHECKF(n >= NQ, "%s = %g", name, n);
        }
        static const char *const sstages[] = {"decode", "search", "encode"};
        for (size_t i = 0; i < 3; i++) {
            double n = 0;
            snprintf(name, sizeof name, "vecshard_shard_stage_seconds_count{stage=\"%s\"}", sstages[i]);
            for (int p = 0; p < P; p++)
                n += vs_test_proc_metric(&shards[p], name, scratch);
            CHECKF(n >= NQ, "%s summed over shards = %g", name, n);
        }
        vs_test_case_done("stage_histograms", vs_test_failures == f0);

        /* scrambled centroids: two rows of centroids.fvecs swapped and the manifest's file CRC updated
         * to match (what a careless re-export would do): the coordinator must refuse to route with them,
         * because they are not the centroids the partitions were built with (centroids_data_crc32c). */
        f0 = vs_test_failures;
        char sdir[PATH_MAX], spath[PATH_MAX + 32], cpath[PATH_MAX + 32];
        snprintf(sdir, sizeof sdir, "%s/scrambled", dir);
        mkdir(sdir, 0755);
        vs_manifest_t m;
        size_t nc = 0;
        uint32_t dc = 0;
        float *cent = NULL;
        CHECK(vs_manifest_load(manifest, &m, err) == VS_OK);
        snprintf(cpath, sizeof cpath, "%s/vc/centroids.fvecs", dir);
        CHECK(vs_vecfile_load_f32(cpath, &nc, &dc, &cent, err) == VS_OK && nc >= 2 &&
              m.has_centroids_data_crc32c);
        for (uint32_t j = 0; cent && j < dc; j++) {
            float t = cent[j];
            cent[j] = cent[dc + j];
            cent[dc + j] = t;
        }
        snprintf(cpath, sizeof cpath, "%s/centroids.fvecs", sdir);
        CHECK(vs_vecio_write_fvecs(cpath, nc, dc, cent, err) == VS_OK);
        uint64_t csize;
        CHECK(vs_file_crc32c(cpath, &csize, &m.centroids_crc32c, err) == VS_OK);
        snprintf(spath, sizeof spath, "%s/manifest.json", sdir);
        CHECK(vs_manifest_write(spath, &m, err) == VS_OK);
        vs_manifest_fini(&m);
        free(cent);
        vs_test_proc_t bad;
        const char *bargv[] = {"--listen", "127.0.0.1:0", "--metrics-listen",
                               "none",     "--manifest",  spath,
                               "--shards", spec,          NULL};
        CHECK(vs_test_proc_start(&bad, dir, "coordinator-scrambled", "vecshard-coordinator", bargv) != 0);
        char lpath[PATH_MAX + 32];
        snprintf(lpath, sizeof lpath, "%s/log-coordinator-scrambled", dir);
        size_t llen = 0;
        char *log = (char *)vs_test_read_file(lpath, &llen);
        CHECKF(log && strstr(log, "not the version's centroids"), "scrambled centroids: %s",
               log ? log : "(no log)");
        free(log);
        vs_test_case_done("scrambled_centroids_refused", vs_test_failures == f0);
    }
    if (vs_test_failures) {
        vs_test_proc_tail(&coord, 20);
        for (int p = 0; p < P; p++)
            vs_test_proc_tail(&shards[p], 5);
    }
    vs_rpc_channel_destroy(ch);
    CHECK(vs_test_proc_stop(&coord, SIGTERM, 15) == 0);
    for (int p = 0; p < P; p++)
        vs_test_proc_stop(&shards[p], SIGTERM, 10);
    free(x);
    int rc = vs_test_finish();
    if (rc == 0)
        vs_test_cleanup("coordinator_cluster");
    return rc;
}
