/* test_shard_server: the real vecshard-shard process with a real etcd, on loopback with ephemeral ports.
 * Registration appears while the shard runs and disappears with it (at once on SIGTERM, after the lease
 * TTL on SIGKILL); health flips to SERVING after load; searches over gRPC return the same ids and
 * distances as in-process search on the same file; every bad input gets its gRPC status; /metrics
 * passes promtool; a second server on the same port is refused; a restart after SIGKILL works. */
#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/cli/timing.h"
#include "common/net/etcd.h"
#include "common/net/rpc.h"
#include "grpc/health/v1/health.pb-c.h"
#include "shard/index/index.h"
#include "tests/integration/etcd_fixture.h"
#include "tests/support/proc.h"
#include "tests/support/version_fixture.h"
#include "tests/testlib.h"
#include "vecshard/v1/shard.pb-c.h"

#define N 4000
#define D 16
#define NQ 25
#define K 10
#define TTL_S 2

static vs_test_version_t v1;
static vs_etcd_fixture_t *etcd_fx;
static vs_etcd_t *etcd;

typedef vs_test_proc_t shard_proc_t;

/* Starts vecshard-shard; listen "127.0.0.1:0" for an ephemeral port; delay_ms: --debug-delay-ms or NULL. */
static int shard_start(shard_proc_t *p, const char *listen, const char *replica, const char *delay_ms)
{
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", TTL_S);
    const char *args[32] = {"--listen",
                            listen,
                            "--metrics-listen",
                            "127.0.0.1:0",
                            "--manifest",
                            v1.manifest,
                            "--partition",
                            "0",
                            "--cluster",
                            "t1",
                            "--replica-id",
                            replica,
                            "--etcd",
                            vs_etcd_fixture_endpoint(etcd_fx),
                            "--lease-ttl",
                            ttl,
                            "--threads",
                            "2",
                            "--grace-ms",
                            "2000",
                            NULL};
    if (delay_ms) {
        args[20] = "--debug-delay-ms";
        args[21] = delay_ms;
        args[22] = NULL;
    }
    return vs_test_proc_start(p, vs_test_tmpdir("shard_server"), replica, "vecshard-shard", args);
}

static int shard_signal_wait(shard_proc_t *p, int sig, double timeout_s)
{
    return vs_test_proc_stop(p, sig, timeout_s);
}

static int call(vs_rpc_channel_t *ch, const char *method, const void *req, size_t len, char msg[VS_ERR_LEN],
                uint8_t **body, size_t *blen)
{
    int code = -1;
    uint8_t *b = NULL;
    size_t bl = 0;
    if (vs_rpc_call_unary(ch, method, req, len, 5000, &code, msg, &b, &bl) != VS_OK)
        return -1;
    if (body) {
        *body = b;
        *blen = bl;
    } else {
        free(b);
    }
    return code;
}

static int health(vs_rpc_channel_t *ch, const char *service)
{
    Grpc__Health__V1__HealthCheckRequest r = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    r.service = (char *)service;
    uint8_t buf[256], *body;
    size_t len = grpc__health__v1__health_check_request__pack(&r, buf), blen;
    char msg[VS_ERR_LEN];
    int code = call(ch, "/grpc.health.v1.Health/Check", buf, len, msg, &body, &blen);
    if (code != 0)
        return -100 - code;
    Grpc__Health__V1__HealthCheckResponse *resp =
        grpc__health__v1__health_check_response__unpack(NULL, blen, body);
    free(body);
    int st = resp ? (int)resp->status : -1;
    if (resp)
        grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
    return st;
}

/* The record's JSON "state" ("" when absent). */
static void member_state(const char *replica, char state[32])
{
    char key[256], err[VS_ERR_LEN];
    snprintf(key, sizeof key, "/vecshard/t1/members/0/%s", replica);
    vs_etcd_kvs_t kvs = {0};
    state[0] = 0;
    if (vs_etcd_get(etcd, key, strlen(key), &kvs, err) != VS_OK || kvs.n == 0) {
        vs_etcd_kvs_fini(&kvs);
        return;
    }
    cJSON *o = cJSON_ParseWithLength(kvs.kvs[0].value, kvs.kvs[0].value_len);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "state");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "address");
    snprintf(state, 32, "%s", cJSON_IsString(s) ? s->valuestring : "?");
    CHECK(cJSON_IsString(a) && strstr(a->valuestring, "127.0.0.1:") == a->valuestring);
    cJSON_Delete(o);
    vs_etcd_kvs_fini(&kvs);
}

static uint8_t *search_req(uint32_t dim, const float *q, size_t nfloats, uint32_t k, const char *version,
                           uint32_t nprobe, size_t *len)
{
    Vecshard__V1__ShardSearchRequest r = VECSHARD__V1__SHARD_SEARCH_REQUEST__INIT;
    Vecshard__V1__SearchParams sp = VECSHARD__V1__SEARCH_PARAMS__INIT;
    r.dim = dim;
    r.queries = (float *)q;
    r.n_queries = nfloats;
    r.k = k;
    r.index_version = (char *)version;
    if (nprobe) {
        sp.nprobe = nprobe;
        r.params = &sp;
    }
    *len = vecshard__v1__shard_search_request__get_packed_size(&r);
    uint8_t *b = malloc(*len + 1);
    vecshard__v1__shard_search_request__pack(&r, b);
    return b;
}

static void test_serving(shard_proc_t *p)
{
    char target[64], msg[VS_ERR_LEN], err[VS_ERR_LEN];
    snprintf(target, sizeof target, "127.0.0.1:%d", p->grpc_port);
    vs_rpc_channel_t *ch;
    CHECK(vs_rpc_channel_create(target, 0, &ch, err) == VS_OK);

    /* health: liveness at once; "" SERVING after load (a few seconds at most) */
    double t0 = vs_now_s();
    int h = -1;
    while (vs_now_s() - t0 < 20 && (h = health(ch, "")) != 1)
        usleep(20000);
    CHECKF(h == 1, "health \"\" = %d", h);
    printf("  shard SERVING %.2f s after start\n", vs_now_s() - t0);
    CHECK(health(ch, "liveness") == 1);
    CHECK(health(ch, "vecshard.v1.Shard") == 1);
    CHECK(health(ch, "no.such.Service") == -100 - VS_GRPC_NOT_FOUND);
    char state[32];
    t0 = vs_now_s();
    do {
        member_state("r0", state);
    } while (strcmp(state, "SERVING") != 0 && vs_now_s() - t0 < 5 && usleep(20000) == 0);
    CHECKF(strcmp(state, "SERVING") == 0, "member state '%s'", state);

    /* results equal in-process search on the same file */
    char path[PATH_MAX];
    vs_test_version_partition_path(&v1, 0, path);
    vs_index_t *idx;
    CHECK(vs_index_load(path, &idx, err) == VS_OK);
    float want_d[NQ * K];
    int64_t want_i[NQ * K];
    vs_search_params_t sp = {.nprobe = 3};
    CHECK(vs_index_search(idx, NQ, v1.queries, K, &sp, 1, want_d, want_i, err) == VS_OK);
    vs_index_destroy(idx);
    size_t len, blen;
    uint8_t *req = search_req(D, v1.queries, NQ * D, K, "", 3, &len), *body = NULL;
    int code = call(ch, "/vecshard.v1.Shard/Search", req, len, msg, &body, &blen);
    free(req);
    CHECKF(code == 0, "Search: %d %s", code, msg);
    Vecshard__V1__ShardSearchResponse *resp =
        code == 0 ? vecshard__v1__shard_search_response__unpack(NULL, blen, body) : NULL;
    free(body);
    CHECK(resp && resp->n_ids == NQ * K);
    if (resp) {
        CHECK(memcmp(resp->ids, want_i, sizeof want_i) == 0);
        CHECK(memcmp(resp->distances, want_d, sizeof want_d) == 0);
        CHECK(strcmp(resp->index_version, "v1") == 0 && resp->partition == 0);
        vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
    }

    /* every bad input gets its status and a message */
    float q[2 * D];
    memcpy(q, v1.queries, sizeof q);
    struct {
        const char *what;
        uint8_t *req;
        size_t len;
        int want;
    } bad[12];
    size_t nb = 0;
#define BAD(w, expr, code_)                                                                                  \
    do {                                                                                                     \
        bad[nb].what = w;                                                                                    \
        bad[nb].req = expr;                                                                                  \
        bad[nb].len = len;                                                                                   \
        bad[nb++].want = code_;                                                                              \
    } while (0)
    BAD("wrong dim", search_req(D + 2, q, D + 2, K, "", 0, &len), VS_GRPC_INVALID_ARGUMENT);
    BAD("empty batch", search_req(D, q, 0, K, "", 0, &len), VS_GRPC_INVALID_ARGUMENT);
    BAD("k = 0", search_req(D, q, D, 0, "", 0, &len), VS_GRPC_INVALID_ARGUMENT);
    BAD("k > 10000", search_req(D, q, D, 10001, "", 0, &len), VS_GRPC_INVALID_ARGUMENT);
    BAD("unknown version", search_req(D, q, D, K, "v404", 0, &len), VS_GRPC_NOT_FOUND);
    q[5] = NAN;
    BAD("NaN", search_req(D, q, D, K, "", 0, &len), VS_GRPC_INVALID_ARGUMENT);
    q[5] = -INFINITY;
    BAD("-Inf", search_req(D, q, D, K, "", 0, &len), VS_GRPC_INVALID_ARGUMENT);
    q[5] = 0;
    static const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
    len = sizeof garbage;
    uint8_t *g = malloc(len);
    memcpy(g, garbage, len);
    BAD("malformed protobuf", g, VS_GRPC_INVALID_ARGUMENT);
#undef BAD
    for (size_t i = 0; i < nb; i++) {
        code = call(ch, "/vecshard.v1.Shard/Search", bad[i].req, bad[i].len, msg, NULL, NULL);
        CHECKF(code == bad[i].want && msg[0], "%s: got %d \"%s\", want %d", bad[i].what, code, msg,
               bad[i].want);
        free(bad[i].req);
    }
    code = call(ch, "/vecshard.v1.Shard/NoSuchMethod", "", 0, msg, NULL, NULL);
    CHECKF(code == VS_GRPC_UNIMPLEMENTED, "unknown method: %d %s", code, msg);

    /* Info */
    code = call(ch, "/vecshard.v1.Shard/Info", "", 0, msg, &body, &blen);
    CHECK(code == 0);
    Vecshard__V1__ShardInfoResponse *info =
        code == 0 ? vecshard__v1__shard_info_response__unpack(NULL, blen, body) : NULL;
    free(body);
    CHECK(info && strcmp(info->active_version, "v1") == 0 && info->n_versions == 1 &&
          info->state == VECSHARD__V1__SHARD_STATE__SHARD_STATE_SERVING &&
          strcmp(info->replica_id, "r0") == 0);
    if (info)
        vecshard__v1__shard_info_response__free_unpacked(info, NULL);

    /* /metrics: promtool accepts it and the calls above are counted */
    char cmd[2 * PATH_MAX], out[PATH_MAX];
    snprintf(out, sizeof out, "%s/metrics.txt", vs_test_tmpdir("shard_server"));
    snprintf(cmd, sizeof cmd, "curl -sf http://127.0.0.1:%d/metrics -o %s", p->metrics_port, out);
    CHECK(system(cmd) == 0);
    size_t mlen;
    char *text = (char *)vs_test_read_file(out, &mlen);
    CHECK(text &&
          strstr(text, "grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"vecshard.v1.Shard\","
                       "grpc_method=\"Search\",grpc_code=\"InvalidArgument\"} 7"));
    CHECK(text && strstr(text, "vecshard_shard_serving 1"));
    CHECK(text && strstr(text, "vecshard_shard_vectors 2000"));
    free(text);
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", out);
    CHECKF(system(cmd) == 0, "promtool check metrics failed on %s", out);
    vs_rpc_channel_destroy(ch);
}

typedef struct slow_call {
    int port;
    int code;
    double seconds;
} slow_call_t;

static void *slow_call_main(void *arg)
{
    slow_call_t *c = arg;
    char target[64], msg[VS_ERR_LEN], err[VS_ERR_LEN];
    snprintf(target, sizeof target, "127.0.0.1:%d", c->port);
    vs_rpc_channel_t *ch;
    c->code = -1;
    if (vs_rpc_channel_create(target, 0, &ch, err) != VS_OK)
        return NULL;
    size_t len;
    uint8_t *req = search_req(D, v1.queries, D, K, "", 0, &len);
    double t0 = vs_now_s();
    c->code = call(ch, "/vecshard.v1.Shard/Search", req, len, msg, NULL, NULL);
    c->seconds = vs_now_s() - t0;
    free(req);
    vs_rpc_channel_destroy(ch);
    return NULL;
}

/* Both workers busy (700 ms delay each): a call with a 200 ms deadline expires while queued; the client
 * gets DEADLINE_EXCEEDED at its deadline and the shard never searches it (counted in /metrics). */
static void test_deadline(shard_proc_t *p)
{
    char target[64], err[VS_ERR_LEN], msg[VS_ERR_LEN];
    snprintf(target, sizeof target, "127.0.0.1:%d", p->grpc_port);
    vs_rpc_channel_t *ch;
    CHECK(vs_rpc_channel_create(target, 0, &ch, err) == VS_OK);
    double t0 = vs_now_s();
    while (vs_now_s() - t0 < 20 && health(ch, "") != 1)
        usleep(20000);
    slow_call_t c[2] = {{.port = p->grpc_port}, {.port = p->grpc_port}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, slow_call_main, &c[i]);
    usleep(100000);
    size_t len;
    uint8_t *req = search_req(D, v1.queries, D, K, "", 0, &len), *body = NULL;
    size_t blen;
    int code = -1;
    t0 = vs_now_s();
    CHECK(vs_rpc_call_unary(ch, "/vecshard.v1.Shard/Search", req, len, 200, &code, msg, &body, &blen) ==
          VS_OK);
    double waited = vs_now_s() - t0;
    free(req);
    free(body);
    CHECKF(code == VS_GRPC_DEADLINE_EXCEEDED && waited < 0.6, "queued call: %d after %.2f s", code, waited);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECKF(c[i].code == 0, "slow call %d: %d", i, c[i].code);
    }
    /* the expired call reached a worker and was skipped, not searched */
    char cmd[2 * PATH_MAX], out[PATH_MAX];
    snprintf(out, sizeof out, "%s/metrics-deadline.txt", vs_test_tmpdir("shard_server"));
    int found = 0;
    t0 = vs_now_s();
    while (!found && vs_now_s() - t0 < 3) {
        snprintf(cmd, sizeof cmd, "curl -sf http://127.0.0.1:%d/metrics -o %s", p->metrics_port, out);
        if (system(cmd) == 0) {
            size_t mlen;
            char *text = (char *)vs_test_read_file(out, &mlen);
            /* gRPC drops or empties a call whose deadline passed in its queue; we answer such a call
             * DEADLINE_EXCEEDED or CANCELLED without searching: only the two slow calls searched */
            found = text && strstr(text, "grpc_method=\"Search\",grpc_code=\"OK\"} 2\n") != NULL;
            free(text);
        }
        if (!found)
            usleep(100000);
    }
    CHECKF(found, "expected exactly 2 searches answered OK in %s", out);
    vs_rpc_channel_destroy(ch);
}

static void test_drain(shard_proc_t *p)
{
    char target[64], err[VS_ERR_LEN];
    snprintf(target, sizeof target, "127.0.0.1:%d", p->grpc_port);
    vs_rpc_channel_t *ch;
    CHECK(vs_rpc_channel_create(target, 0, &ch, err) == VS_OK);
    double t0 = vs_now_s();
    while (vs_now_s() - t0 < 20 && health(ch, "") != 1)
        usleep(20000);
    vs_rpc_channel_destroy(ch);
    slow_call_t c = {.port = p->grpc_port};
    pthread_t th;
    pthread_create(&th, NULL, slow_call_main, &c);
    usleep(300000); /* the call is inside its 700 ms delay */
    t0 = vs_now_s();
    int rc = shard_signal_wait(p, SIGTERM, 10);
    pthread_join(th, NULL);
    CHECKF(rc == 0, "exit status %d", rc);
    CHECKF(c.code == 0, "in-flight call got status %d", c.code);
    printf("  drain: in-flight call answered OK after %.2f s; process exited %.2f s after SIGTERM\n",
           c.seconds, vs_now_s() - t0);
}

int main(void)
{
    char err[VS_ERR_LEN];
    if (vs_etcd_fixture_start("shard_server", &etcd_fx, err) != VS_OK) {
        fprintf(stderr, "etcd: %s\n", err);
        return 1;
    }
    vs_etcd_opts_t eo = {.endpoints = vs_etcd_fixture_endpoint(etcd_fx)};
    if (vs_etcd_create(&eo, &etcd, err) != VS_OK ||
        vs_test_version_build(vs_test_tmpdir("shard_server"), "v1", "IVF16,Flat", VS_METRIC_L2, N, D, 2, NQ,
                              7, &v1, err) != VS_OK) {
        fprintf(stderr, "setup: %s\n", err);
        return 1;
    }

    shard_proc_t p;
    CHECK(shard_start(&p, "127.0.0.1:0", "r0", NULL) == 0);
    if (p.pid > 0) {
        int f0 = vs_test_failures;
        test_serving(&p);
        vs_test_case_done("serving", vs_test_failures == f0);
        f0 = vs_test_failures;

        /* a second server on the same port is refused (so_reuseport off) */
        shard_proc_t dup;
        char listen[64];
        snprintf(listen, sizeof listen, "127.0.0.1:%d", p.grpc_port);
        CHECK(shard_start(&dup, listen, "r-dup", NULL) != 0);
        if (dup.pid > 0)
            shard_signal_wait(&dup, SIGKILL, 5);

        /* SIGTERM: exit 0, record gone at once */
        double t0 = vs_now_s();
        CHECK(shard_signal_wait(&p, SIGTERM, 10) == 0);
        char state[32];
        member_state("r0", state);
        CHECKF(state[0] == 0, "record still there after SIGTERM: %s", state);
        printf("  SIGTERM: exited and deregistered in %.2f s\n", vs_now_s() - t0);
        vs_test_case_done("sigterm", vs_test_failures == f0);
        f0 = vs_test_failures;

        /* restart on the same port; SIGKILL leaves the record until the lease expires; restart again */
        shard_proc_t p2;
        CHECK(shard_start(&p2, listen, "r0", NULL) == 0);
        t0 = vs_now_s();
        do {
            member_state("r0", state);
        } while (strcmp(state, "SERVING") != 0 && vs_now_s() - t0 < 20 && usleep(20000) == 0);
        CHECK(strcmp(state, "SERVING") == 0);
        shard_signal_wait(&p2, SIGKILL, 5);
        member_state("r0", state);
        CHECKF(state[0] != 0, "record vanished before the lease expired");
        t0 = vs_now_s();
        do {
            member_state("r0", state);
        } while (state[0] && vs_now_s() - t0 < 3 * TTL_S + 2 && usleep(50000) == 0);
        CHECKF(state[0] == 0, "record still there %.1f s after SIGKILL", vs_now_s() - t0);
        printf("  SIGKILL: record expired %.2f s after the kill (TTL %d s)\n", vs_now_s() - t0, TTL_S);
        vs_test_case_done("sigkill_restart", vs_test_failures == f0);
        f0 = vs_test_failures;

        /* SIGTERM with a call in flight: the call completes within the grace period, then exit 0 */
        shard_proc_t p3;
        CHECK(shard_start(&p3, listen, "r0", "700") == 0);
        test_deadline(&p3);
        test_drain(&p3);
        vs_test_case_done("drain_in_flight", vs_test_failures == f0);
    } else {
        vs_test_case_done("start", 0);
    }
    if (vs_test_failures != 0) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "tail -n 30 %s", p.log);
        if (system(cmd) != 0)
            fprintf(stderr, "(no shard log)\n");
    }
    vs_etcd_destroy(etcd);
    vs_etcd_fixture_destroy(etcd_fx);
    vs_test_version_fini(&v1);
    int rc = vs_test_finish();
    if (rc == 0)
        vs_test_cleanup("shard_server");
    return rc;
}
