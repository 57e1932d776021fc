/* test_cluster_durability: fresh writes survive what operators and machines do to a cluster (issue 15).
 * A real etcd and nats-server, 2 hash partitions x 2 replicas (membership and versions in etcd, the version
 * deployed and activated with the admin CLI), one coordinator; every process with the write log.
 * - Writes (new ids, every 4th write deletes an earlier one) run while a thread searches through the
 *   coordinator; meanwhile a replica, then the coordinator, then nats-server are killed with SIGKILL and
 *   restarted (nats-server on its file store). A write whose call failed may or may not be in the log.
 * - Afterwards: every replica reaches the log's end; every acknowledged upsert is found by its own vector
 *   and every acknowledged delete is gone (searched several times, so both replicas of a partition answer);
 *   the two replicas of each partition hold the same fresh state (log position, ids, live records);
 *   unacknowledged writes are on both replicas of their partition or on neither.
 * - A fold under write load: vecshard-fold takes the log up to its end into the next build's input,
 *   vecshard-build --log-upto makes v2 - cluster-partitioned (each replica keeps the upserts of the IVF
 *   lists its partition owns), where v1 was hash-partitioned, so `activate v2 --force` (the guard refuses
 *   a partitioning change otherwise) - and `vecshard deploy v2` and the activation run while writes go on:
 *   afterwards every acknowledged write is found (or gone) exactly once - none lost, none doubled by
 *   being both in v2's index and applied again from the log.
 * - Capacity: with --fresh-capacity 3000 per replica, writes (10 ids each) go on until the coordinator
 * refuses them with RESOURCE_EXHAUSTED (a replica reported 95 % full) and a reason; no replica stops at a
 * write it has no room for, and every acknowledged write is still found. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "common/hash.h"
#include "common/net/rpc.h"
#include "common/net/wlog.h"
#include "common/vecio.h"
#include "tests/integration/etcd_fixture.h"
#include "tests/integration/nats_fixture.h"
#include "tests/support/proc.h"
#include "tests/support/version_fixture.h"
#include "tests/support/writes_client.h"
#include "tests/testlib.h"

#define N 2000
#define D 16
#define P 2
#define R 2
#define NLIST 16
#define CAP "3000"
#define MAX_W 12000

static const char *dir;
static vs_test_version_t ver;
static vs_etcd_fixture_t *etcd;
static vs_proc_fixture_t *nats;
static char g_url[64];
static vs_test_proc_t shards[P][R], coord;
static vs_rpc_channel_t *_Atomic g_ch;

/* every write the test tried: its id, vector, kind and outcome */
typedef struct wrec {
    int64_t id;
    float v[D];
    int is_delete, acked;
    uint64_t seq; /* its log position when acknowledged */
} wrec_t;
static wrec_t w[MAX_W];
static _Atomic size_t n_w;      /* written by the writer thread (one at a time), read by main */
static _Atomic size_t n_failed; /* writes whose call failed */

static int start_shard(int p, int r)
{
    char part[8], name[16];
    snprintf(part, sizeof part, "%d", p);
    snprintf(name, sizeof name, "p%dr%d", p, r);
    const char *argv[] = {"--listen",    "127.0.0.1:0", "--metrics-listen",
                          "127.0.0.1:0", "--partition", part,
                          "--cluster",   "cd",          "--replica-id",
                          name,          "--etcd",      vs_etcd_fixture_endpoint(etcd),
                          "--nats-url",  g_url,         "--fresh-capacity",
                          CAP,           NULL};
    return vs_test_proc_start(&shards[p][r], dir, name, "vecshard-shard", argv);
}

static int start_coordinator(void)
{
    const char *argv[] = {"--listen",    "127.0.0.1:0", "--metrics-listen",
                          "127.0.0.1:0", "--etcd",      vs_etcd_fixture_endpoint(etcd),
                          "--cluster",   "cd",          "--nats-url",
                          g_url,         NULL};
    if (vs_test_proc_start(&coord, dir, "coordinator", "vecshard-coordinator", argv) != 0)
        return -1;
    char target[64], err[VS_ERR_LEN];
    snprintf(target, sizeof target, "127.0.0.1:%d", coord.grpc_port);
    vs_rpc_channel_t *ch = NULL;
    if (vs_rpc_channel_create(target, 0, &ch, err) != VS_OK)
        return -1;
    atomic_store(&g_ch, ch); /* the old channel is leaked on purpose: the query thread may still use it */
    return 0;
}

static int cli(const char *args, char *out, size_t cap)
{
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/cli.log", dir);
    return vs_test_proc_cli(log, vs_etcd_fixture_endpoint(etcd), "cd", args, out, cap);
}

static uint64_t log_last_seq(void)
{
    return vs_test_log_last_seq(g_url, "cd");
}

static double metric(int p, int r, const char *name)
{
    char scratch[PATH_MAX];
    snprintf(scratch, sizeof scratch, "%s/scrape-p%dr%d.txt", dir, p, r);
    return vs_test_proc_metric(&shards[p][r], name, scratch);
}

/* Waits until every replica has applied the whole log (up to ms); 1 when they have. */
static int wait_caught_up(int64_t ms)
{
    int64_t until = vs_test_now_ms() + ms;
    for (;;) {
        uint64_t last = log_last_seq();
        int all = last > 0;
        for (int p = 0; p < P && all; p++)
            for (int r = 0; r < R && all; r++)
                all = metric(p, r, "vecshard_shard_log_position") == (double)last;
        if (all)
            return 1;
        if (vs_test_now_ms() > until)
            return 0;
        vs_test_sleep_ms(50);
    }
}

static atomic_int q_stop;
static atomic_long q_ok, q_failed;

static void *query_main(void *arg)
{
    (void)arg;
    size_t i = 0;
    while (!atomic_load(&q_stop)) {
        int64_t ids[10];
        int n = vs_test_search_ids(atomic_load(&g_ch), ver.queries + (i++ % 50) * D, D, NLIST, 10, ids);
        atomic_fetch_add(n >= 0 ? &q_ok : &q_failed, 1);
    }
    return NULL;
}

/* One new write: an upsert of a new id with a new vector, or (every 4th) a delete of an acknowledged upsert.
 */
static vs_test_write_answer_t write_one(uint64_t *rng)
{
    wrec_t *x = &w[n_w];
    memset(x, 0, sizeof *x);
    x->is_delete = n_w % 4 == 3;
    vs_test_write_answer_t a;
    if (x->is_delete) {
        size_t j = (size_t)(vs_test_rand(rng) % n_w);
        while (j > 0 && (w[j].is_delete || !w[j].acked))
            j--;
        x->id = w[j].id;
        a = vs_test_delete(atomic_load(&g_ch), &x->id, 1, NULL);
    } else {
        x->id = 5000000 + (int64_t)n_w;
        for (int j = 0; j < D; j++)
            x->v[j] = 30.0f * vs_test_randf(rng); /* apart from the base and from each other */
        a = vs_test_upsert(atomic_load(&g_ch), &x->id, 1, x->v, D, D, NULL, NULL);
    }
    x->acked = a.code == 0;
    x->seq = a.seq;
    if (!x->acked)
        atomic_fetch_add(&n_failed, 1);
    atomic_fetch_add(&n_w, 1);
    return a;
}

/* What the cluster must hold for id after the test's writes: 1 deleted, 0 upserted (the last write of id
 * was acknowledged), -2 unknown (the last write of id failed: it may or may not be in the log; writes are
 * sequential, so a later acknowledged write settles it), -1 never written. */
static int id_state(int64_t id)
{
    int state = -1;
    for (size_t i = 0; i < n_w; i++)
        if (w[i].id == id)
            state = w[i].acked ? w[i].is_delete : -2;
    return state;
}

/* Checks every acknowledged write through the coordinator, each search `rounds` times. */
static void check_acked(int rounds, const char *when)
{
    size_t lost = 0, undeleted = 0, doubled = 0, checked = 0;
    for (size_t i = 0; i < n_w; i++) {
        if (w[i].is_delete)
            continue;
        int st = id_state(w[i].id);
        if (st < 0)
            continue; /* unknown */
        for (int r = 0; r < rounds; r++) {
            int64_t ids[3];
            int n = vs_test_search_ids(atomic_load(&g_ch), w[i].v, D, NLIST, 3, ids);
            int found = n > 0 && ids[0] == w[i].id;
            lost += st == 0 && !found;
            if (st == 0 && !found && lost <= 5)
                fprintf(stderr, "  lost: write %zu id %lld logged at %llu (answered %d: %lld)\n", i,
                        (long long)w[i].id, (unsigned long long)w[i].seq, n, n > 0 ? (long long)ids[0] : -1);
            doubled += n > 1 && ids[0] == w[i].id && (ids[1] == w[i].id || (n > 2 && ids[2] == w[i].id));
            undeleted += st == 1 && n > 0 && (ids[0] == w[i].id || (n > 1 && ids[1] == w[i].id));
            checked++;
        }
    }
    CHECKF(lost == 0 && undeleted == 0 && doubled == 0 && checked > 0,
           "%s: %zu searches for acknowledged writes: %zu upserts not found, %zu deletes still found, %zu "
           "answered twice",
           when, checked, lost, undeleted, doubled);
}

static void kill_restart_replica(void)
{
    vs_test_proc_stop(&shards[0][1], SIGKILL, 5);
    CHECK(start_shard(0, 1) == 0);
}

static atomic_int w_stop;

/* Writes one after another, one every 10 ms, until w_stop; a failed write waits 10 ms. */
static void *writer_main(void *arg)
{
    (void)arg;
    uint64_t rng = 77 + atomic_load(&n_w); /* every run of the writer its own vectors */
    while (atomic_load(&n_w) < 5000 && !atomic_load(&w_stop)) {
        vs_test_write_answer_t a = write_one(&rng);
        (void)a;
        vs_test_sleep_ms(10);
    }
    return NULL;
}

static void wait_writes(size_t n)
{
    int64_t until = vs_test_now_ms() + 60000;
    while (atomic_load(&n_w) < n && vs_test_now_ms() < until)
        vs_test_sleep_ms(5);
}

static void test_kill_everything_under_writes(void)
{
    pthread_t qt, wt;
    CHECK(pthread_create(&qt, NULL, query_main, NULL) == 0);
    CHECK(pthread_create(&wt, NULL, writer_main, NULL) == 0);
    char err[VS_ERR_LEN];
    /* each kill lands while writes and searches are in flight */
    wait_writes(100);
    kill_restart_replica();
    wait_writes(atomic_load(&n_w) + 60);
    vs_test_proc_stop(&coord, SIGKILL, 5);
    CHECK(start_coordinator() == 0);
    wait_writes(atomic_load(&n_w) + 60);
    size_t failed_before = atomic_load(&n_failed);
    CHECK(vs_proc_fixture_kill(nats, err) == VS_OK);
    /* writes meanwhile are refused or their outcome is unknown, answered and never hanging: the log stays
     * down until one has failed */
    int64_t down_until = vs_test_now_ms() + 20000;
    while (atomic_load(&n_failed) == failed_before && vs_test_now_ms() < down_until)
        vs_test_sleep_ms(5);
    CHECKF(atomic_load(&n_failed) > failed_before, "no write failed while nats-server was down");
    CHECKF(vs_proc_fixture_restart(nats, err) == VS_OK, "%s", err);
    wait_writes(atomic_load(&n_w) + 100);
    atomic_store(&w_stop, 1);
    pthread_join(wt, NULL);
    atomic_store(&q_stop, 1);
    pthread_join(qt, NULL);
    size_t acked = 0;
    for (size_t i = 0; i < n_w; i++)
        acked += w[i].acked;
    printf("  %zu writes, %zu acknowledged; %ld searches answered and %ld failed during the kills\n", n_w,
           acked, atomic_load(&q_ok), atomic_load(&q_failed));
    CHECKF(acked >= 300 && acked < n_w, "%zu of %zu writes acknowledged (the kills must fail some)", acked,
           (size_t)n_w);
    CHECK(wait_caught_up(30000));
    check_acked(3, "after the kills");
    /* the replicas of a partition hold the same fresh state */
    for (int p = 0; p < P; p++) {
        const char *names[] = {"vecshard_shard_log_position", "vecshard_shard_fresh_ids",
                               "vecshard_shard_fresh_live"};
        for (int k = 0; k < 3; k++) {
            double a = metric(p, 0, names[k]), b = metric(p, 1, names[k]);
            CHECKF(a == b && a >= 0, "partition %d: %s %g on replica 0, %g on replica 1", p, names[k], a, b);
        }
    }
    /* an unacknowledged upsert is on both replicas of its partition or on neither: the coordinator
     * answers from either, so ask several times and demand one answer */
    size_t torn = 0;
    for (size_t i = 0; i < n_w; i++) {
        if (w[i].is_delete || w[i].acked || id_state(w[i].id) != -2)
            continue; /* only upserts whose outcome is unknown and still the last word on their id */
        int seen = 0, missed = 0;
        for (int r = 0; r < 6; r++) {
            int64_t ids[1];
            int n = vs_test_search_ids(atomic_load(&g_ch), w[i].v, D, NLIST, 1, ids);
            seen += n > 0 && ids[0] == w[i].id;
            missed += n >= 0 && !(n > 0 && ids[0] == w[i].id);
        }
        torn += seen && missed;
    }
    CHECKF(torn == 0, "%zu unacknowledged writes visible on one replica only", torn);
}

/* Ten new ids in one upsert (all recorded with its outcome). */
static vs_test_write_answer_t write_ten(uint64_t *rng)
{
    int64_t ids[10];
    float v[10 * D];
    size_t at = n_w;
    for (int i = 0; i < 10; i++) {
        wrec_t *x = &w[at + (size_t)i];
        memset(x, 0, sizeof *x);
        x->id = 5000000 + (int64_t)(at + (size_t)i);
        for (int j = 0; j < D; j++)
            x->v[j] = 30.0f * vs_test_randf(rng);
        ids[i] = x->id;
        memcpy(v + i * D, x->v, sizeof x->v);
    }
    vs_test_write_answer_t a = vs_test_upsert(atomic_load(&g_ch), ids, 10, v, 10 * D, D, NULL, NULL);
    for (int i = 0; i < 10; i++)
        w[at + (size_t)i].acked = a.code == 0;
    atomic_fetch_add(&n_w, 10);
    return a;
}

static void test_fold_and_roll_out_under_writes(void)
{
    char err[VS_ERR_LEN], bpath[PATH_MAX], fb[PATH_MAX], fi[PATH_MAX], lg[PATH_MAX], out[4096];
    char cmd[6 * PATH_MAX + 512];
    snprintf(bpath, sizeof bpath, "%s/base-v1.fvecs", dir);
    snprintf(fb, sizeof fb, "%s/folded.fvecs", dir);
    snprintf(fi, sizeof fi, "%s/folded.i64", dir);
    snprintf(lg, sizeof lg, "%s/fold.log", dir);
    CHECK(vs_vecio_write_fvecs(bpath, N, D, ver.base, err) == VS_OK);
    atomic_store(&w_stop, 0);
    pthread_t wt;
    CHECK(pthread_create(&wt, NULL, writer_main, NULL) == 0);
    wait_writes(atomic_load(&n_w) + 50);
    const char *bin = getenv("VS_BIN_DIR") ? getenv("VS_BIN_DIR") : "build/bin";
    snprintf(
        cmd, sizeof cmd,
        "%s/vecshard-fold --base %s --nats-url %s --cluster cd --model-version test-model-1 --out-base %s "
        "--out-ids %s",
        bin, bpath, g_url, fb, fi);
    CHECK(vs_test_run_tool(cmd, lg) == 0);
    unsigned long long upto = 0;
    FILE *f = fopen(lg, "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "\"log_upto\":"))
            sscanf(strstr(line, "\"log_upto\":") + 11, "%llu", &upto);
    if (f)
        fclose(f);
    CHECKF(upto > 0, "vecshard-fold reported no log_upto");
    snprintf(cmd, sizeof cmd,
             "%s/vecshard-build --base %s --ids %s --factory IVF16,Flat --partitions 2 --partitioning "
             "cluster --version v2 "
             "--model-version test-model-1 --log-upto %llu --out %s --quiet",
             bin, fb, fi, upto, dir);
    CHECK(vs_test_run_tool(cmd, lg) == 0);
    char args[PATH_MAX + 16];
    snprintf(args, sizeof args, "deploy %s/v2/manifest.json", dir);
    CHECKF(cli(args, out, sizeof out) == 0, "deploy v2: %s", out);
    int64_t until = vs_test_now_ms() + 30000;
    int rc;
    while ((rc = cli("activate v2 --force", out, sizeof out)) != 0 && vs_test_now_ms() < until)
        vs_test_sleep_ms(100);
    CHECKF(rc == 0, "activate v2: %s", out);
    wait_writes(atomic_load(&n_w) + 50); /* writes after the switch too */
    atomic_store(&w_stop, 1);
    pthread_join(wt, NULL);
    printf("  folded up to log message %llu; v2 active under writes; %zu writes in all\n", upto,
           (size_t)atomic_load(&n_w));
    CHECK(wait_caught_up(30000));
    check_acked(2, "after the fold and the switch to v2");
}

static void test_capacity_refuses_before_full(void)
{
    /* one writer (this thread) now */
    uint64_t rng = 78 + atomic_load(&n_w);
    vs_test_write_answer_t a = {0};
    size_t first = n_w;
    while (n_w + 10 <= MAX_W) {
        a = write_ten(&rng);
        if (a.code == 8) /* RESOURCE_EXHAUSTED */
            break;
        vs_test_sleep_ms(10); /* ~1,000 ids/s: the 5 % left is >= 150 ms of writes on the fullest replica */
    }
    CHECKF(a.code == 8 && strstr(a.msg, "fresh capacity") && strstr(a.msg, "fold"),
           "after %zu more writes: code %d: %s", n_w - first, a.code, a.msg);
    printf("  refused after %zu more writes: %s\n", n_w - first, a.msg);
    CHECK(wait_caught_up(30000)); /* no replica holds at a write it had no room for */
    for (int p = 0; p < P; p++)
        for (int r = 0; r < R; r++) {
            double ids = metric(p, r, "vecshard_shard_fresh_ids");
            CHECKF(ids >= 0.9 * 3000 && ids <= 3000, "p%dr%d: %g fresh ids", p, r, ids);
        }
    check_acked(1, "at capacity");
}

int main(void)
{
    char err[VS_ERR_LEN];
    dir = vs_test_tmpdir("cluster_durability");
    if (vs_test_version_build(dir, "v1", "IVF16,Flat", VS_METRIC_L2, N, D, P, 20, 9, &ver, err) != VS_OK) {
        fprintf(stderr, "fixture: %s\n", err);
        return 1;
    }
    if (vs_etcd_fixture_start("cd", &etcd, err) != VS_OK ||
        vs_nats_fixture_start("cd", &nats, err) != VS_OK) {
        fprintf(stderr, "test_cluster_durability: %s\n", err);
        return 1; /* a test that finds no server fails */
    }
    vs_nats_fixture_url(nats, g_url, sizeof g_url);
    int ok = 1;
    for (int p = 0; p < P; p++)
        for (int r = 0; r < R; r++)
            ok &= start_shard(p, r) == 0;
    ok &= ok && start_coordinator() == 0;
    char args[PATH_MAX + 16], out[4096];
    snprintf(args, sizeof args, "deploy %s", ver.manifest);
    ok &= ok && cli(args, out, sizeof out) == 0;
    int64_t until = vs_test_now_ms() + 30000;
    int rc = 1;
    while (ok && (rc = cli("activate v1", out, sizeof out)) != 0 && vs_test_now_ms() < until)
        vs_test_sleep_ms(100);
    CHECKF(ok && rc == 0, "cluster up, v1 active: %s", out);
    if (ok && rc == 0) {
        /* the coordinator sees the active version and takes writes (it connects to the log on its own) */
        int64_t id = 4999999;
        float v[D] = {0};
        vs_test_write_answer_t a = {.code = -1};
        while ((a = vs_test_upsert(atomic_load(&g_ch), &id, 1, v, D, D, NULL, "warm")).code != 0 &&
               vs_test_now_ms() < until + 20000)
            vs_test_sleep_ms(100);
        CHECKF(a.code == 0, "first write: %d %s", a.code, a.msg);
        RUN(test_kill_everything_under_writes);
        RUN(test_fold_and_roll_out_under_writes);
        RUN(test_capacity_refuses_before_full);
    }
    vs_test_proc_stop(&coord, SIGTERM, 10);
    for (int p = 0; p < P; p++)
        for (int r = 0; r < R; r++)
            vs_test_proc_stop(&shards[p][r], SIGTERM, 10);
    vs_proc_fixture_destroy(nats);
    vs_etcd_fixture_destroy(etcd);
    vs_test_version_fini(&ver);
    nats_Close();
    vs_test_cleanup("cluster_durability");
    return vs_test_finish();
}
