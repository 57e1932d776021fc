/* test_cluster_writes: fresh writes through the whole cluster (issue 15): a real nats-server, two
 * hash-partition shards and the coordinator, all with --nats-url.
 * - Upsert through vecshard.v1.Coordinator is acknowledged with its log position and is searchable
 *   through the coordinator's Search; Delete hides it; each within a bound (times printed).
 * - A retry with the same write_id is a duplicate with the first position; nothing is logged twice.
 * - Bad writes are refused whole with their status and nothing is logged: empty, negative or repeated
 *   ids, the wrong dimension, NaN, too many floats, an embedding model no held version has
 *   (FAILED_PRECONDITION), a malformed message.
 * - Read-your-writes: a search carrying the upsert's log position (min_log_seq) finds it at the first
 *   try, every time (20 upserts, each searched at once); one carrying a position the log never reaches
 *   waits about 1 s and answers without the partitions that could not see it, saying why.
 * - Metrics: the coordinator's write counts; per shard the log position, fresh ids, tombstones and a lag
 *   of 0 once caught up.
 * - A coordinator without --nats-url answers writes UNIMPLEMENTED.
 * - SIGTERM while a client keeps writing: the coordinator answers every write it took and exits 0 within
 *   its grace; every acknowledged write is in the log. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "common/cli/timing.h"
#include "common/hash.h"
#include "common/net/rpc.h"
#include "common/net/wlog.h"
#include "tests/integration/nats_fixture.h"
#include "tests/support/proc.h"
#include "tests/support/version_fixture.h"
#include "tests/support/writes_client.h"
#include "tests/testlib.h"
#include "vecshard/v1/coordinator.pb-c.h"

#define N 3000
#define D 16
#define P 2

static vs_test_version_t ver;
static vs_rpc_channel_t *g_ch;
static char g_url[64];

typedef vs_test_write_answer_t answer_t;

#define call_write vs_test_call_write
#define upsert vs_test_upsert
#define delete_ids vs_test_delete

/* The first id the coordinator answers for q (-2 when the call fails). */
static int64_t first_id(const float *q)
{
    int64_t ids[3];
    int n = vs_test_search_ids(g_ch, q, D, 16, 3, ids);
    return n < 0 ? -2 : n == 0 ? -1 : ids[0];
}

static int64_t wait_first(const float *q, int64_t id, int want, int64_t ms)
{
    int64_t t0 = vs_test_now_ms();
    while (vs_test_now_ms() - t0 < ms) {
        int64_t got = first_id(q);
        if (got != -2 && (got == id) == want)
            return vs_test_now_ms() - t0;
        vs_test_sleep_ms(5);
    }
    return -1;
}

static uint64_t log_last_seq(void)
{
    return vs_test_log_last_seq(g_url, "cw");
}

static void test_writes_through_the_cluster(void)
{
    const float *q = ver.queries + 4 * D;
    CHECK(wait_first(q, 0, 0, 1) >= -1); /* warm the channel */
    int64_t id = 880000; /* partition 1's: the write goes through the routing of both shards */
    while (vs_hash_partition(id, P) != 1)
        id++;
    int64_t t0 = vs_test_now_ms();
    answer_t a = upsert(g_ch, &id, 1, q, D, D, "", "first-write");
    int64_t t_ack = vs_test_now_ms() - t0;
    CHECKF(a.code == 0 && a.seq >= 1 && !a.dup, "upsert: code %d seq %llu: %s", a.code,
           (unsigned long long)a.seq, a.msg);
    int64_t t_up = wait_first(q, id, 1, 5000);
    CHECKF(t_up >= 0, "the upsert never became searchable through the coordinator");
    answer_t again = upsert(g_ch, &id, 1, q, D, D, "", "first-write");
    CHECKF(again.code == 0 && again.dup && again.seq == a.seq, "retry: code %d dup %d seq %llu", again.code,
           again.dup, (unsigned long long)again.seq);
    CHECK(log_last_seq() == a.seq); /* logged once */
    answer_t d = delete_ids(g_ch, &id, 1, NULL);
    CHECKF(d.code == 0 && d.seq == a.seq + 1, "delete: code %d seq %llu: %s", d.code,
           (unsigned long long)d.seq, d.msg);
    int64_t t_del = wait_first(q, id, 0, 5000);
    CHECKF(t_del >= 0, "the delete never took effect");
    fprintf(stderr,
            "test_cluster_writes: upsert acknowledged in %lld ms, searchable %lld ms later; delete %lld ms\n",
            (long long)t_ack, (long long)t_up, (long long)t_del);
}

static void test_read_your_writes(void)
{
    int misses = 0;
    for (int i = 0; i < 20; i++) {
        int64_t id = 890000 + i;
        float v[D];
        for (int j = 0; j < D; j++)
            v[j] = ver.queries[(size_t)i * D + j]; /* near the data, where the codes are good */
        answer_t a = upsert(g_ch, &id, 1, v, D, D, "", NULL);
        CHECKF(a.code == 0, "upsert %d: %d %s", i, a.code, a.msg);
        int64_t ids[3];
        int code, partial;
        char msg[VS_ERR_LEN];
        int n = vs_test_search_at(g_ch, v, D, 16, 3, a.seq, ids, &code, msg, &partial);
        if (!(n > 0 && ids[0] == id && !partial) && misses++ < 3)
            fprintf(stderr, "  write %d (id %lld at %llu): %d answers, first %lld, partial %d, code %d: %s\n",
                    i, (long long)id, (unsigned long long)a.seq, n, n > 0 ? (long long)ids[0] : -1, partial,
                    code, msg);
    }
    CHECKF(misses == 0, "%d of 20 searches with min_log_seq missed their own write", misses);
    int64_t ids[3];
    int code, partial;
    char msg[VS_ERR_LEN];
    double t0 = vs_now_s();
    int n = vs_test_search_at(g_ch, ver.queries, D, 16, 3, log_last_seq() + 1000, ids, &code, msg, &partial);
    double took = vs_now_s() - t0;
    CHECKF((code == 14 || (n >= 0 && partial)) && strstr(msg, "min_log_seq") && took > 0.9 && took < 4.5,
           "a position never reached: code %d, partial %d, %.2f s: %s", code, partial, took, msg);
}

typedef struct stream_writer {
    _Atomic int stop;
    _Atomic long acked;
    long failed;
    uint64_t max_seq;
} stream_writer_t;

static void *stream_writes(void *arg)
{
    stream_writer_t *s = arg;
    for (int64_t id = 990000; !atomic_load(&s->stop) && id < 999999; id++) {
        answer_t a = upsert(g_ch, &id, 1, ver.queries, D, D, "", NULL);
        if (a.code == 0) {
            s->acked++;
            if (a.seq > s->max_seq)
                s->max_seq = a.seq;
        } else {
            s->failed++;
            if (s->failed > 3)
                break; /* the coordinator is gone */
        }
    }
    return NULL;
}

/* Last: the coordinator is stopped with writes in flight. */
static void test_sigterm_with_writes_in_flight(vs_test_proc_t *coord)
{
    stream_writer_t s = {0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, stream_writes, &s) == 0);
    int64_t until = vs_test_now_ms() + 10000;
    while (atomic_load(&s.acked) < 50 && vs_test_now_ms() < until)
        vs_test_sleep_ms(5);
    int rc = vs_test_proc_stop(coord, SIGTERM, 15);
    atomic_store(&s.stop, 1);
    pthread_join(t, NULL);
    CHECKF(rc == 0, "the coordinator exited with %d after SIGTERM with writes in flight", rc);
    uint64_t last = log_last_seq();
    CHECKF(s.acked >= 50 && s.max_seq <= last, "%ld acknowledged up to %llu, the log ends at %llu", s.acked,
           (unsigned long long)s.max_seq, (unsigned long long)last);
}

static void test_bad_writes_log_nothing(void)
{
    uint64_t before = log_last_seq();
    int64_t ids[2] = {1, 2}, twice[2] = {5, 5}, neg[1] = {-1};
    float x[2 * D];
    memcpy(x, ver.queries, sizeof x);
    struct {
        answer_t a;
        int want;
        const char *what;
    } c[8];
    c[0].a = upsert(g_ch, NULL, 0, NULL, 0, D, "", NULL);
    c[0].want = 3, c[0].what = "no ids";
    c[1].a = upsert(g_ch, neg, 1, x, D, D, "", NULL);
    c[1].want = 3, c[1].what = "negative id";
    c[2].a = upsert(g_ch, twice, 2, x, 2 * D, D, "", NULL);
    c[2].want = 3, c[2].what = "an id twice";
    c[3].a = upsert(g_ch, ids, 2, x, 2 * D - 2, D - 1, "", NULL);
    c[3].want = 3, c[3].what = "wrong dimension";
    c[4].a = upsert(g_ch, ids, 2, x, D, D, "", NULL);
    c[4].want = 3, c[4].what = "too few floats";
    x[3] = NAN;
    c[5].a = upsert(g_ch, ids, 2, x, 2 * D, D, "", NULL);
    c[5].want = 3, c[5].what = "NaN";
    x[3] = 0;
    c[6].a = upsert(g_ch, ids, 2, x, 2 * D, D, "some-other-model", NULL);
    c[6].want = 9, c[6].what = "unknown embedding model";
    uint8_t junk[5] = {0xff, 0xff, 0xff, 0xff, 0xff};
    c[7].a = call_write(g_ch, "/vecshard.v1.Coordinator/Delete", junk, sizeof junk);
    c[7].want = 3, c[7].what = "malformed";
    for (int i = 0; i < 8; i++)
        CHECKF(c[i].a.code == c[i].want && c[i].a.msg[0], "%s: code %d (want %d): %s", c[i].what, c[i].a.code,
               c[i].want, c[i].a.msg);
    CHECK(delete_ids(g_ch, neg, 1, NULL).code == 3);
    CHECK(delete_ids(g_ch, ids, 2, "has space").code == 3);
    CHECK(log_last_seq() == before); /* nothing logged */
}

int main(void)
{
    char err[VS_ERR_LEN];
    const char *dir = vs_test_tmpdir("cluster_writes");
    if (vs_test_version_build(dir, "v1", "IVF16,PQ8x4fs,RFlat", VS_METRIC_L2, N, D, P, 20, 9, &ver, err) !=
        VS_OK) {
        fprintf(stderr, "fixture: %s\n", err);
        return 1;
    }
    vs_proc_fixture_t *nats = NULL;
    if (vs_nats_fixture_start("cw", &nats, err) != VS_OK) {
        fprintf(stderr, "test_cluster_writes: %s\n", err);
        return 1;
    }
    vs_nats_fixture_url(nats, g_url, sizeof g_url);
    vs_test_proc_t shards[P], coord, plain;
    memset(shards, 0, sizeof shards);
    memset(&plain, 0, sizeof plain);
    char spec[256] = "";
    int ok = 1;
    for (int p = 0; ok && p < P; p++) {
        char part[8], name[16];
        snprintf(part, sizeof part, "%d", p);
        snprintf(name, sizeof name, "s%d", p);
        const char *argv[] = {"--listen",   "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                              "--manifest", ver.manifest,  "--partition",      part,
                              "--cluster",  "cw",          "--nats-url",       g_url,
                              NULL};
        ok &= vs_test_proc_start(&shards[p], dir, name, "vecshard-shard", argv) == 0;
        size_t off = strlen(spec);
        snprintf(spec + off, sizeof spec - off, "%s%d=127.0.0.1:%d", p ? "," : "", p, shards[p].grpc_port);
    }
    const char *cargv[] = {"--listen",   "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                           "--manifest", ver.manifest,  "--shards",         spec,
                           "--cluster",  "cw",          "--nats-url",       g_url,
                           NULL};
    ok &= ok && vs_test_proc_start(&coord, dir, "coordinator", "vecshard-coordinator", cargv) == 0;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", coord.grpc_port);
    ok &= ok && vs_rpc_channel_create(target, 0, &g_ch, err) == VS_OK;
    CHECK(ok);
    if (ok) {
        int64_t until = vs_test_now_ms() + 30000; /* the shards have loaded: the coordinator answers */
        while (first_id(ver.queries) == -2 && vs_test_now_ms() < until)
            vs_test_sleep_ms(50);
        /* and it has reached the write log (until then it refuses writes UNAVAILABLE, "retry") */
        char scrape[PATH_MAX];
        snprintf(scrape, sizeof scrape, "%s/scrape-start.txt", dir);
        while (vs_test_proc_metric(&coord, "vecshard_coordinator_write_log_connected", scrape) != 1 &&
               vs_test_now_ms() < until)
            vs_test_sleep_ms(20);
        RUN(test_writes_through_the_cluster);
        RUN(test_bad_writes_log_nothing);
        /* what operators see: the coordinator's write counts, the shards' log position and fresh ids */
        char scratch[PATH_MAX];
        snprintf(scratch, sizeof scratch, "%s/scrape.txt", dir);
        double acked = vs_test_proc_metric(&coord, "vecshard_coordinator_writes_acknowledged_total", scratch);
        double refused = vs_test_proc_metric(&coord, "vecshard_coordinator_writes_refused_total", scratch);
        CHECKF(acked == 3 && refused == 10, "coordinator: %g acknowledged (a retry counts), %g refused",
               acked, refused);
        for (int p = 0; p < P; p++) {
            /* a shard that owns none of the writes applies (passes) them on its own time: wait for it */
            double pos = 0, ids = 0;
            int64_t seen_by = vs_test_now_ms() + 10000;
            do {
                pos = vs_test_proc_metric(&shards[p], "vecshard_shard_log_position", scratch);
                ids = vs_test_proc_metric(&shards[p], "vecshard_shard_fresh_ids", scratch);
            } while (pos < 2 && vs_test_now_ms() < seen_by && (vs_test_sleep_ms(20), 1));
            CHECKF(pos == 2 && ids == (p == 1 ? 1 : 0), "shard %d: log position %g, fresh ids %g", p, pos,
                   ids);
            double dels = vs_test_proc_metric(&shards[p], "vecshard_shard_fresh_deleted", scratch);
            double lag = vs_test_proc_metric(&shards[p], "vecshard_shard_log_lag_messages", scratch);
            CHECKF(dels == (p == 1 ? 1 : 0) && lag == 0, "shard %d: %g tombstones, lag %g messages", p, dels,
                   lag);
        }
        RUN(test_read_your_writes); /* after the counts above: it writes more */
        /* a coordinator without the log */
        const char *pargv[] = {"--listen", "127.0.0.1:0", "--metrics-listen",
                               "none",     "--manifest",  ver.manifest,
                               "--shards", spec,          NULL};
        if (vs_test_proc_start(&plain, dir, "plain", "vecshard-coordinator", pargv) == 0) {
            vs_rpc_channel_t *pch = NULL;
            snprintf(target, sizeof target, "127.0.0.1:%d", plain.grpc_port);
            CHECK(vs_rpc_channel_create(target, 0, &pch, err) == VS_OK);
            int64_t one = 1;
            answer_t a = delete_ids(pch, &one, 1, NULL);
            CHECKF(a.code == 12 && strstr(a.msg, "--nats-url"), "code %d: %s", a.code, a.msg);
            vs_rpc_channel_destroy(pch);
            vs_test_proc_stop(&plain, SIGTERM, 10);
        }
    }
    if (ok && coord.pid)
        test_sigterm_with_writes_in_flight(&coord);
    vs_rpc_channel_destroy(g_ch);
    if (coord.pid)
        vs_test_proc_stop(&coord, SIGTERM, 10);
    for (int p = 0; p < P; p++)
        if (shards[p].pid)
            vs_test_proc_stop(&shards[p], SIGTERM, 10);
    vs_proc_fixture_destroy(nats);
    vs_test_version_fini(&ver);
    vs_test_cleanup("cluster_writes");
    nats_Close();
    return vs_test_finish();
}
