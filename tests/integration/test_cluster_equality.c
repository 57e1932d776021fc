/* test_cluster_equality: answers through the cluster equal the in-process index, whatever the
 * distributed path does. Hash partitions that share one IVF quantizer, built by vecshard-build (2
 * partitions of IVF256,Flat over 256-d vectors, so the coarse step takes the PCA preselection path; and
 * v2, the same data as IVF1024_HNSW16,Flat, whose lists come from an HNSW graph over the centroids that the
 * shards and the coordinator each build, checked at nprobe 32; on this data the graph finds the exact
 * lists for every query, so this shows v2 served equal, not which quantizer ranked: test_ivf_recall
 * measures where the graph and the exact ranking differ); v2 is also asked at nprobe 4 with
 * quantizer_efSearch 4, where 4 of 40 queries answer differently than at the default, so equality there
 * shows the parameter reached whoever ranks the lists),
 * served by two real shards and a real coordinator (static membership, no etcd). Every answer must equal,
 * id for id and float for float, the in-process search of both partition files merged, at nprobe 4 (far
 * from exact, so a single different list would show):
 *  - lists ranked once at the coordinator (the default) and by each shard (--coarse-at shard), for one
 *    batch of NQ queries and NQ single-query calls; vecshard_coordinator_coarse_ranked_queries_total
 *    says which side ranked;
 *  - shard calls batched: --shard-window 1 and 8 client threads sending single-query calls, so partition
 *    calls of different requests share shard RPCs (the metrics must show fewer RPCs than calls) and each
 *    gets its own slice back; then the same with exclude_ids, which are never merged into another
 *    request's shard call (each answer equals its in-process search with the exclusions);
 *  - fewer results per partition (--partition-k-probability 0.99: each of the 2 partitions returns 9 of
 *    10): still equal on this data; at 0.5 (6 of 10) some answers must differ, which shows the option is
 *    applied;
 *  - exclude_ids (each query's 3 nearest answers and 100 other ids, one set for every query): equal to the
 *    in-process search with the same exclusions, in one batch and one query per call, both where lists are
 *    ranked (the coordinator sends each partition only the ids it owns);
 *  - SIGTERM of the coordinator while a request waits on a hung (SIGSTOPped) shard, --grace-ms 300: once
 *    the grace period is over the coordinator ends its shard calls, the client gets the partial answer
 *    within a second, not at its 10 s deadline, and the coordinator exits 0. */
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli/timing.h"
#include "common/idset.h"
#include "common/net/rpc.h"
#include "common/topk.h"
#include "common/vecio.h"
#include "shard/index/index.h"
#include "tests/support/proc.h"
#include "tests/support/version_fixture.h"
#include "tests/testlib.h"
#include "vecshard/v1/coordinator.pb-c.h"

#define N 20000
#define D 256
#define NQ 40
#define K 10
#define NPROBE 4

static const char *dir;
static const char *g_version = "v1"; /* the version requests name (both are served) */
static _Atomic int g_last_code;      /* gRPC status of the last call (partial: 100 + code) */
static uint32_t g_nprobe = NPROBE;   /* v2 is checked at nprobe 32 (efSearch 64 of 1,024 centroids) */
static float want2_d[NQ * K];        /* v2's in-process answers */
static int64_t want2_i[NQ * K];
static uint32_t g_qef;        /* quantizer_ef_search of the requests (0 = default) */
static float want3_d[NQ * K]; /* v2's in-process answers at quantizer_efSearch 32 */
static int64_t want3_i[NQ * K];
static float base[(size_t)N * D], queries[(size_t)NQ * D];
static int64_t g_excl[NQ * 3 + 100]; /* the requests' exclude_ids while g_n_excl > 0 */
static size_t g_n_excl;
static atomic_int g_shed_retries; /* calls sent again after a refusal for overload */
static float wantx_d[NQ * K]; /* v1's in-process answers with those exclusions */
static int64_t wantx_i[NQ * K];

/* One Search call of nq queries; the number of queries answered with results equal to want (nq*K), 0
 * when the call failed (printed; the callers count, as this also runs on client threads). */
static size_t search_equal(vs_rpc_channel_t *ch, const float *q, size_t nq, const float *want_d,
                           const int64_t *want_i)
{
    Vecshard__V1__SearchRequest r = VECSHARD__V1__SEARCH_REQUEST__INIT;
    Vecshard__V1__SearchParams p = VECSHARD__V1__SEARCH_PARAMS__INIT;
    p.nprobe = g_nprobe;
    p.quantizer_ef_search = g_qef;
    r.dim = D;
    r.k = K;
    r.n_queries = nq * D;
    r.queries = (float *)q;
    r.params = &p;
    r.index_version = (char *)g_version;
    r.exclude_ids = g_n_excl ? g_excl : NULL;
    r.n_exclude_ids = g_n_excl;
    size_t len = vecshard__v1__search_request__get_packed_size(&r);
    uint8_t *buf = malloc(len), *body = NULL;
    vecshard__v1__search_request__pack(&r, buf);
    int code = -1;
    char msg[VS_ERR_LEN];
    size_t blen = 0, same = 0;
    vs_status st;
    /* a call refused for overload (the sanitizer build on a loaded machine) is sent again after the
     * refusal's hint, as a well-behaved client does; the answers must still be equal */
    for (int attempt = 0;; attempt++) {
        st = vs_rpc_call_unary(ch, "/vecshard.v1.Coordinator/Search", buf, len, 10000, &code, msg, &body,
                               &blen);
        if (st != VS_OK || code != VS_GRPC_RESOURCE_EXHAUSTED || !strstr(msg, "retry after") || attempt == 50)
            break;
        atomic_fetch_add(&g_shed_retries, 1);
        const char *hint = strstr(msg, "retry after ");
        long ms = hint ? atol(hint + strlen("retry after ")) : 0;
        usleep((useconds_t)(ms > 0 && ms < 10000 ? ms : 50) * 1000);
    }
    free(buf);
    if (st != VS_OK || code != 0)
        fprintf(stderr, "search of %zu: %d %s\n", nq, code, msg);
    g_last_code = st != VS_OK ? -1 : code;
    Vecshard__V1__SearchResponse *a = body ? vecshard__v1__search_response__unpack(NULL, blen, body) : NULL;
    if (a && a->coverage && a->coverage->partial) {
        g_last_code = 100 + code;
        fprintf(stderr, "search of %zu: partial answer (%u of %u partitions): %s\n", nq,
                a->coverage->partitions_answered, a->coverage->partitions_total,
                a->coverage->n_reasons ? a->coverage->reasons[0] : "");
    }
    if (a && want_i && a->n_ids == nq * K && a->n_distances == nq * K &&
        !(a->coverage && a->coverage->partial))
        for (size_t i = 0; i < nq; i++)
            same += memcmp(a->ids + i * K, want_i + i * K, K * sizeof(int64_t)) == 0 &&
                    memcmp(a->distances + i * K, want_d + i * K, K * sizeof(float)) == 0;
    if (a)
        vecshard__v1__search_response__free_unpacked(a, NULL);
    free(body);
    return same;
}

typedef struct client {
    const char *target;
    const float *want_d;
    const int64_t *want_i;
    size_t same, calls;
} client_t;

#define ROUNDS 4

static void *client_main(void *arg)
{
    client_t *cl = arg;
    char err[VS_ERR_LEN];
    vs_rpc_channel_t *ch = NULL;
    if (vs_rpc_channel_create(cl->target, 0, &ch, err) != VS_OK)
        return NULL;
    for (int r = 0; r < ROUNDS; r++)
        for (size_t i = 0; i < NQ; i++, cl->calls++)
            cl->same += search_equal(ch, queries + i * D, 1, cl->want_d + i * K, cl->want_i + i * K);
    vs_rpc_channel_destroy(ch);
    return NULL;
}

/* Starts the coordinator over both shards with extra flags (name labels its log), checks every answer
 * against the oracle (expect_equal 0: one batch, some must differ), from n_clients threads when > 0, and
 * returns the coordinator's metric `metric`
 * (and *rpcs: shard RPCs, *calls: partition calls they carried). */
static double run(const vs_test_version_t *v, const vs_test_proc_t *shards, const char *name,
                  const char *flag, const char *value, int n_clients, int expect_equal, const float *want_d,
                  const int64_t *want_i, double *rpcs, double *calls)
{
    char spec[256], scratch[PATH_MAX + 16];
    snprintf(spec, sizeof spec, "0=127.0.0.1:%d,1=127.0.0.1:%d", shards[0].grpc_port, shards[1].grpc_port);
    char v2[PATH_MAX + 32];
    snprintf(v2, sizeof v2, "%s/v2/manifest.json", dir);
    const char *argv[] = {"--listen",
                          "127.0.0.1:0",
                          "--metrics-listen",
                          "127.0.0.1:0",
                          "--manifest",
                          v->manifest,
                          "--manifest",
                          v2,
                          "--shards",
                          spec,
                          flag,
                          value,
                          NULL};
    vs_test_proc_t coord;
    if (vs_test_proc_start(&coord, dir, name, "vecshard-coordinator", argv) != 0) {
        CHECKF(0, "coordinator %s %s did not start", flag, value);
        return -1;
    }
    char target[64], err[VS_ERR_LEN];
    snprintf(target, sizeof target, "127.0.0.1:%d", coord.grpc_port);
    if (n_clients == 0) {
        vs_rpc_channel_t *ch = NULL;
        CHECK(vs_rpc_channel_create(target, 0, &ch, err) == VS_OK);
        size_t same = search_equal(ch, queries, NQ, want_d, want_i);
        if (!expect_equal) { /* fewer results per partition on purpose: some answers differ, most do not */
            CHECKF(same < NQ && same >= NQ / 4, "%s %s: %zu of %d queries equal in-process search", flag,
                   value, same, NQ);
            vs_rpc_channel_destroy(ch);
            CHECK(vs_test_proc_stop(&coord, SIGTERM, 10) == 0);
            return 0;
        }
        CHECKF(same == NQ, "%s %s, one batch: %zu of %d queries equal in-process search", flag, value, same,
               NQ);
        same = 0;
        for (size_t i = 0; i < NQ; i++)
            same += search_equal(ch, queries + i * D, 1, want_d + i * K, want_i + i * K);
        CHECKF(same == NQ, "%s %s, one query per call: %zu of %d equal in-process search", flag, value, same,
               NQ);
        g_n_excl = sizeof g_excl / sizeof *g_excl; /* exclusions: one batch, then one query per call */
        same = search_equal(ch, queries, NQ, wantx_d, wantx_i);
        for (size_t i = 0; i < NQ; i++)
            same += search_equal(ch, queries + i * D, 1, wantx_d + i * K, wantx_i + i * K);
        g_n_excl = 0;
        CHECKF(same == 2 * NQ, "%s %s, exclude_ids: %zu of %d equal in-process search", flag, value, same,
               2 * NQ);
        g_version = "v2"; /* the HNSW-quantizer version, by name */
        g_nprobe = 32;
        same = search_equal(ch, queries, NQ, want2_d, want2_i);
        for (size_t i = 0; i < NQ; i++)
            same += search_equal(ch, queries + i * D, 1, want2_d + i * K, want2_i + i * K);
        g_qef = 4; /* the centroid search's candidate list, passed to whoever ranks the lists */
        g_nprobe = 4;
        size_t same3 = search_equal(ch, queries, NQ, want3_d, want3_i);
        g_qef = 0;
        g_version = "v1";
        g_nprobe = NPROBE;
        CHECKF(same == 2 * NQ, "%s %s, v2 (IVF1024_HNSW16): %zu of %d equal in-process search", flag, value,
               same, 2 * NQ);
        CHECKF(same3 == NQ, "%s %s, v2 at nprobe 4, quantizer_efSearch 4: %zu of %d equal in-process search",
               flag, value, same3, NQ);
        vs_rpc_channel_destroy(ch);
    } else {
        client_t cl[8];
        pthread_t th[8];
        for (int i = 0; i < n_clients; i++) {
            cl[i] = (client_t){target, want_d, want_i, 0, 0};
            CHECK(pthread_create(&th[i], NULL, client_main, &cl[i]) == 0);
        }
        size_t same = 0, n = 0;
        for (int i = 0; i < n_clients; i++) {
            pthread_join(th[i], NULL);
            same += cl[i].same;
            n += cl[i].calls;
        }
        CHECKF(n == (size_t)n_clients * ROUNDS * NQ && same == n,
               "%s %s, %d clients: %zu of %zu single-query calls equal in-process search", flag, value,
               n_clients, same, n);
        if (strcmp(flag, "--shard-window") == 0) { /* with exclusions: never merged into one shard call */
            g_n_excl = sizeof g_excl / sizeof *g_excl;
            for (int i = 0; i < n_clients; i++) {
                cl[i] = (client_t){target, wantx_d, wantx_i, 0, 0};
                CHECK(pthread_create(&th[i], NULL, client_main, &cl[i]) == 0);
            }
            same = n = 0;
            for (int i = 0; i < n_clients; i++) {
                pthread_join(th[i], NULL);
                same += cl[i].same;
                n += cl[i].calls;
            }
            g_n_excl = 0;
            CHECKF(same == n, "%s %s, %d clients with exclude_ids: %zu of %zu calls equal in-process search",
                   flag, value, n_clients, same, n);
        }
    }
    snprintf(scratch, sizeof scratch, "%s/metrics", dir);
    double ranked = vs_test_proc_metric(&coord, "vecshard_coordinator_coarse_ranked_queries_total", scratch);
    *rpcs = vs_test_proc_metric(&coord, "vecshard_coordinator_shard_rpcs_total", scratch);
    *calls = vs_test_proc_metric(&coord, "vecshard_coordinator_shard_rpc_calls_total", scratch);
    CHECK(vs_test_proc_stop(&coord, SIGTERM, 10) == 0);
    return ranked;
}

typedef struct pending {
    const char *target;
    double seconds;
    _Atomic int done;
} pending_t;

static void *one_call(void *arg)
{
    pending_t *pc = arg;
    char err[VS_ERR_LEN];
    vs_rpc_channel_t *ch = NULL;
    double t0 = vs_now_s();
    if (vs_rpc_channel_create(pc->target, 0, &ch, err) == VS_OK) {
        search_equal(ch, queries, 1, NULL, NULL); /* the outcome is not compared: only its time */
        vs_rpc_channel_destroy(ch);
    }
    pc->seconds = vs_now_s() - t0;
    pc->done = 1;
    return NULL;
}

/* SIGTERM while a request waits on a hung shard. */
static void stop_with_hung_shard(const vs_test_version_t *v, vs_test_proc_t *shards)
{
    char spec[256], scratch[PATH_MAX + 16], target[64];
    snprintf(spec, sizeof spec, "0=127.0.0.1:%d,1=127.0.0.1:%d", shards[0].grpc_port, shards[1].grpc_port);
    snprintf(scratch, sizeof scratch, "%s/metrics", dir);
    const char *argv[] = {
        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--manifest", v->manifest,
        "--shards", spec,          "--grace-ms",       "300",         NULL};
    vs_test_proc_t coord;
    if (vs_test_proc_start(&coord, dir, "stop", "vecshard-coordinator", argv) != 0) {
        CHECKF(0, "coordinator did not start");
        return;
    }
    snprintf(target, sizeof target, "127.0.0.1:%d", coord.grpc_port);
    vs_test_proc_signal(&shards[1], SIGSTOP);
    pending_t pc = {target, 0, 0};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, one_call, &pc) == 0);
    double until = vs_now_s() + 10; /* the request has reached the coordinator */
    while (vs_now_s() < until &&
           vs_test_proc_metric(&coord, "vecshard_coordinator_shard_rpcs_total", scratch) < 2)
        usleep(10000);
    CHECK(!pc.done);
    double t0 = vs_now_s();
    int rc = vs_test_proc_stop(&coord, SIGTERM, 8);
    double stop_s = vs_now_s() - t0;
    pthread_join(th, NULL);
    vs_test_proc_signal(&shards[1], SIGCONT);
    printf("  SIGTERM with a hung shard: coordinator exited %d after %.2f s; the client's call took %.2f s\n",
           rc, stop_s, pc.seconds);
    CHECKF(rc == 0 && stop_s < 3.0, "coordinator exit %d after %.2f s", rc, stop_s);
    CHECKF(pc.seconds < 4.0, "the client waited %.2f s (its deadline is 10 s)", pc.seconds);
    CHECKF(g_last_code == 100, "the client's call ended with %d, not a partial answer", (int)g_last_code);
}

int main(void)
{
    char err[VS_ERR_LEN], path[PATH_MAX + 64], cmd[4 * PATH_MAX];
    dir = strdup(vs_test_tmpdir("cluster_equality"));
    vs_test_clustered(base, N, D, 64, 0.3f, 11, 12);
    uint64_t rng = 99;
    for (size_t q = 0; q < NQ; q++) {
        size_t src = (size_t)(vs_test_rand(&rng) % N);
        for (uint32_t j = 0; j < D; j++)
            queries[q * D + j] = base[src * D + j] + 0.2f * vs_test_randf(&rng);
    }
    snprintf(path, sizeof path, "%s/base.fvecs", dir);
    CHECK(vs_vecio_write_fvecs(path, N, D, base, err) == VS_OK);
    const char *bin = getenv("VS_BIN_DIR");
    snprintf(
        cmd, sizeof cmd,
        "%s/vecshard-build --base %s --factory IVF256,Flat --partitions 2 --partitioning hash --version v1 "
        "--out %s --seed 1 --target-recall 0 --quiet > %s/build.log 2>&1",
        bin ? bin : "build/bin", path, dir, dir);
    CHECKF(system(cmd) == 0, "%s", cmd);
    snprintf(cmd, sizeof cmd,
             "%s/vecshard-build --base %s --factory IVF1024_HNSW16,Flat --partitions 2 --partitioning hash "
             "--version v2 --out %s --seed 1 --target-recall 0 --quiet >> %s/build.log 2>&1",
             bin ? bin : "build/bin", path, dir, dir);
    CHECKF(system(cmd) == 0, "%s", cmd);

    vs_test_version_t v = {.n = N, .nq = NQ, .dim = D, .n_partitions = 2, .metric = VS_METRIC_L2};
    snprintf(v.dir, sizeof v.dir, "%s/v1", dir);
    snprintf(v.manifest, sizeof v.manifest, "%s/v1/manifest.json", dir);
    float want_d[NQ * K];
    int64_t want_i[NQ * K];
    vs_search_params_t sp = {.nprobe = NPROBE};
    CHECKF(vs_test_version_search(&v, queries, NQ, K, &sp, want_d, want_i, err) == VS_OK, "%s", err);
    for (size_t i = 0; i < NQ; i++) /* each query's 3 nearest answers, and 100 ids spread over the base */
        for (size_t j = 0; j < 3; j++)
            g_excl[i * 3 + j] = want_i[i * K + j];
    for (size_t i = 0; i < 100; i++)
        g_excl[NQ * 3 + i] = (int64_t)(i * 37 % N);
    vs_idset_t *excl_set = NULL;
    CHECK(vs_idset_create(g_excl, sizeof g_excl / sizeof *g_excl, &excl_set, err) == VS_OK);
    vs_search_params_t spx = {.nprobe = NPROBE, .exclude = excl_set};
    CHECKF(vs_test_version_search(&v, queries, NQ, K, &spx, wantx_d, wantx_i, err) == VS_OK, "%s", err);
    vs_idset_destroy(excl_set);
    for (size_t i = 0; i < NQ * K; i++)
        CHECK(wantx_i[i] != want_i[(i / K) * K] && wantx_i[i] >= 0); /* excluded in process, k still found */
    vs_test_version_t v2 = v;
    snprintf(v2.dir, sizeof v2.dir, "%s/v2", dir);
    snprintf(v2.manifest, sizeof v2.manifest, "%s/v2/manifest.json", dir);
    vs_search_params_t sp2 = {.nprobe = 32};
    CHECKF(vs_test_version_search(&v2, queries, NQ, K, &sp2, want2_d, want2_i, err) == VS_OK, "%s", err);
    /* v2 at nprobe 4 with quantizer_efSearch 4 (the centroid search's smallest list) answers differently
     * from its default (64), so the check through the cluster tells whether the parameter arrived */
    vs_search_params_t sp3 = {.nprobe = 4, .quantizer_ef_search = 4}, sp4 = {.nprobe = 4};
    float def_d[NQ * K];
    int64_t def_i[NQ * K];
    CHECKF(vs_test_version_search(&v2, queries, NQ, K, &sp3, want3_d, want3_i, err) == VS_OK, "%s", err);
    CHECKF(vs_test_version_search(&v2, queries, NQ, K, &sp4, def_d, def_i, err) == VS_OK, "%s", err);
    size_t differ = 0;
    for (size_t i = 0; i < NQ; i++)
        differ += memcmp(def_i + i * K, want3_i + i * K, K * sizeof(int64_t)) != 0;
    printf("  v2 at nprobe 4: %zu of %d queries answer differently at quantizer_efSearch 4 than at the "
           "default\n",
           differ, NQ);
    CHECK(differ > 0);

    vs_test_proc_t shards[2];
    int up = 1;
    for (int p = 0; p < 2 && up; p++) {
        char part[8], name[16];
        snprintf(part, sizeof part, "%d", p);
        snprintf(name, sizeof name, "shard%d", p);
        const char *argv[] = {"--listen",  "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--manifest",
                              v2.manifest, "--manifest",  v.manifest,         "--partition", part,
                              NULL};
        up = vs_test_proc_start(&shards[p], dir, name, "vecshard-shard", argv) == 0;
        CHECKF(up, "shard %d did not start", p);
        /* a shard listens before it has loaded its versions (slowly under TSan): wait for both */
        char scratch[PATH_MAX + 16];
        snprintf(scratch, sizeof scratch, "%s/shard-metrics", dir);
        double until = vs_now_s() + 60;
        while (up && vs_now_s() < until &&
               vs_test_proc_metric(&shards[p], "vecshard_shard_versions_ready", scratch) < 2)
            usleep(20000);
        CHECKF(!up || vs_test_proc_metric(&shards[p], "vecshard_shard_versions_ready", scratch) == 2,
               "shard %d did not load both versions", p);
    }
    if (up) {
        int f0 = vs_test_failures;
        double rpcs, calls;
        double ranked =
            run(&v, shards, "coordinator", "--coarse-at", "coordinator", 0, 1, want_d, want_i, &rpcs, &calls);
        CHECKF(ranked == 7 * NQ,
               "the coordinator ranked %.0f queries' lists, expected %d (v1, v1 with exclusions, v2, v2 at "
               "quantizer_efSearch 32)",
               ranked, 7 * NQ);
        vs_test_case_done("coarse_at_coordinator", vs_test_failures == f0);
        f0 = vs_test_failures;
        ranked = run(&v, shards, "shard", "--coarse-at", "shard", 0, 1, want_d, want_i, &rpcs, &calls);
        CHECKF(ranked == 0, "with --coarse-at shard the coordinator ranked %.0f queries' lists", ranked);
        vs_test_case_done("coarse_at_shard", vs_test_failures == f0);
        f0 = vs_test_failures;
        run(&v, shards, "batched", "--shard-window", "1", 8, 1, want_d, want_i, &rpcs, &calls);
        /* two rounds of 2 x 8 x ROUNDS x NQ partition calls: the first batched into fewer RPCs, the one with
         * exclusions one RPC per call */
        const double round_calls = 2.0 * 8 * ROUNDS * NQ;
        CHECKF(calls == 2 * round_calls && rpcs > round_calls && rpcs < calls,
               "batching: %.0f shard RPCs carried %.0f partition calls (expected %.0f calls, %.0f of them in "
               "their own RPC, the rest in fewer)",
               rpcs, calls, 2 * round_calls, round_calls);
        fprintf(stderr, "batched: %.0f partition calls in %.0f shard RPCs (%.2f per RPC)\n", calls, rpcs,
                rpcs > 0 ? calls / rpcs : 0);
        vs_test_case_done("batched_shard_calls", vs_test_failures == f0);
        f0 = vs_test_failures;
        run(&v, shards, "kprob", "--partition-k-probability", "0.99", 0, 1, want_d, want_i, &rpcs, &calls);
        run(&v, shards, "kprob-low", "--partition-k-probability", "0.5", 0, 0, want_d, want_i, &rpcs, &calls);
        vs_test_case_done("partition_k_probability", vs_test_failures == f0);
        f0 = vs_test_failures;
        stop_with_hung_shard(&v, shards);
        vs_test_case_done("sigterm_with_hung_shard", vs_test_failures == f0);
    }
    for (int p = 0; p < 2; p++)
        if (shards[p].pid > 0)
            vs_test_proc_stop(&shards[p], SIGTERM, 10);
    if (atomic_load(&g_shed_retries))
        printf("  %d calls refused for overload were sent again after their hint\n", atomic_load(&g_shed_retries));
    vs_test_cleanup("cluster_equality");
    return vs_test_finish();
}
